//! Bounds-checked header access and the parser.
//!
//! Mirrors `balancer_common::packet::parse` rule for rule (its doc comment
//! is the specification). Every read goes through `bytes_at`, whose explicit
//! comparison against `data_end` is what lets the verifier accept it; every
//! offset is built from masked or byte-sized values so the verifier can
//! bound it.

use aya_ebpf::programs::XdpContext;
use balancer_common::{
    layout::*,
    maps::{FAMILY_V4, FAMILY_V6},
    stats::Class,
    vip_index::vip_last_word,
};

/// `balancer_common::packet::FlowKind`, as integers.
pub const KIND_NORMAL: u8 = 0;
pub const KIND_FRAGMENT: u8 = 1;
pub const KIND_ICMP_ERROR: u8 = 2;
pub const KIND_ICMP_MISMATCH: u8 = 3;

pub struct Flow {
    pub kind: u8,
    pub family: u8,
    pub proto: u8,
    /// Host order; 0 for a non-first fragment.
    pub port: u16,
    /// The VIP's and the client's address, as `addr_words`.
    pub vip_addr: [u32; 4],
    pub client: [u32; 4],
    pub opening: bool,
}

impl Flow {
    /// `balancer_common::vip_index::key_words` of the flow's VIP key.
    #[inline(always)]
    pub fn vip_key_words(&self) -> [u32; 5] {
        let a = &self.vip_addr;
        [
            a[0],
            a[1],
            a[2],
            a[3],
            vip_last_word(self.port, self.proto, self.family),
        ]
    }
}

pub struct Parsed {
    pub class: Class,
    /// 14 or 18.
    pub l2_len: usize,
    pub flow: Option<Flow>,
}

/// The one bounds check (in the library: the benchmark object uses it too).
pub use balancer_ebpf::bytes_at;

#[inline(always)]
fn be16_at(ctx: &XdpContext, off: usize) -> Option<u16> {
    let p = bytes_at(ctx, off, 2)?;
    // SAFETY: bounds checked by bytes_at; read byte by byte (no alignment).
    Some(unsafe { u16::from_be_bytes([*p, *p.add(1)]) })
}

/// Read `W` address words (IPv4: 1, into the first of 4; IPv6: 4) from a
/// header already bounds-checked by the caller, as the little-endian words
/// of the address bytes (`balancer_common::hash::addr_words`). Words, not
/// a byte array: LLVM keeps four registers instead of sixteen stack slots.
/// Reading through the checked header's own pointer matters: a fresh
/// `bytes_at` for a sub-range is folded away by LLVM and the re-derived
/// pointer has no verified range.
///
/// # Safety
/// `p..p + 4 * W` must be inside a range checked with `bytes_at`.
#[inline(always)]
unsafe fn addr_words<const W: usize>(p: *const u8) -> [u32; 4] {
    let mut a = [0u32; 4];
    let mut i = 0;
    while i < W {
        // SAFETY: the caller guarantees 4 * W readable bytes.
        a[i] = unsafe {
            u32::from_le_bytes([
                *p.add(4 * i),
                *p.add(4 * i + 1),
                *p.add(4 * i + 2),
                *p.add(4 * i + 3),
            ])
        };
        i += 1;
    }
    a
}

/// True when the frame holds at least `len` bytes from the start.
#[inline(always)]
fn has(ctx: &XdpContext, len: usize) -> bool {
    ctx.data() + len <= ctx.data_end()
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Parsed {
    let mut out = Parsed {
        class: Class::Malformed,
        l2_len: ETH_HLEN,
        flow: None,
    };
    let Some(mut proto) = be16_at(ctx, ETH_TYPE_OFF) else {
        return out;
    };
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        let Some(inner) = be16_at(ctx, ETH_TYPE_OFF + VLAN_HLEN) else {
            return out;
        };
        proto = inner;
        out.l2_len = ETH_HLEN + VLAN_HLEN;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            out.class = Class::NonIp;
            return out;
        }
    }
    let r = match proto {
        ETH_P_IPV4 => ipv4(ctx, out.l2_len),
        ETH_P_IPV6 => ipv6(ctx, out.l2_len),
        _ => Some((Class::NonIp, None)),
    };
    if let Some((class, flow)) = r {
        out.class = class;
        out.flow = flow;
    }
    out
}

type L3 = Option<(Class, Option<Flow>)>;

#[inline(always)]
fn ipv4(ctx: &XdpContext, l3: usize) -> L3 {
    let hdr = bytes_at(ctx, l3, IPV4_MIN_HLEN)?;
    // SAFETY: the 20-byte header is in bounds (checked just above).
    let (vihl, total, frag, proto) = unsafe {
        (
            *hdr,
            u16::from_be_bytes([*hdr.add(2), *hdr.add(3)]),
            u16::from_be_bytes([*hdr.add(6), *hdr.add(7)]),
            *hdr.add(9),
        )
    };
    if vihl >> 4 != 4 {
        return None;
    }
    // Masked to 4 bits, so the verifier knows ihl <= 60.
    let ihl = usize::from(vihl & 0x0f) * 4;
    let total = usize::from(total);
    if ihl < IPV4_MIN_HLEN || !has(ctx, l3 + ihl) || total < ihl || !has(ctx, l3 + total) {
        return None;
    }
    // SAFETY: bytes 12..20 of the checked 20-byte header.
    let (src, dst) = unsafe { (addr_words::<1>(hdr.add(12)), addr_words::<1>(hdr.add(16))) };
    if frag & IPV4_FRAG_OFFSET_MASK != 0 {
        return Some((Class::Ipv4Other, Some(fragment(FAMILY_V4, dst, src, proto))));
    }
    let l4 = l3 + ihl;
    match proto {
        IPPROTO_TCP => Some((Class::Ipv4Tcp, Some(tcp(ctx, l4, FAMILY_V4, src, dst)?))),
        IPPROTO_UDP => Some((Class::Ipv4Udp, Some(udp(ctx, l4, FAMILY_V4, src, dst)?))),
        IPPROTO_ICMP => Some((Class::Ipv4Other, icmp4_error(ctx, l4, &dst))),
        _ => Some((Class::Ipv4Other, None)),
    }
}

/// One step of the IPv6 extension-header walk: `Ok(true)` to go on,
/// `Ok(false)` when `next` is not an extension header, `Err(Some(flow))`
/// for a non-first fragment, `Err(None)` for a header cut short.
#[inline(always)]
fn ext_step(
    ctx: &XdpContext,
    next: &mut u8,
    off: &mut usize,
    src: &[u32; 4],
    dst: &[u32; 4],
) -> Result<bool, Option<Flow>> {
    match *next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
            let h = bytes_at(ctx, *off, 2).ok_or(None)?;
            // SAFETY: 2 bytes in bounds.
            let (n, l) = unsafe { (*h, *h.add(1)) };
            *next = n;
            *off += (usize::from(l) + 1) * 8;
        }
        IPPROTO_AH => {
            let h = bytes_at(ctx, *off, 2).ok_or(None)?;
            // SAFETY: 2 bytes in bounds.
            let (n, l) = unsafe { (*h, *h.add(1)) };
            *next = n;
            *off += (usize::from(l) + 2) * 4;
        }
        IPPROTO_FRAGMENT => {
            let h = bytes_at(ctx, *off, 8).ok_or(None)?;
            // SAFETY: 8 bytes in bounds.
            let (n, fo) = unsafe { (*h, u16::from_be_bytes([*h.add(2), *h.add(3)])) };
            *next = n;
            *off += 8;
            if fo & IPV6_FRAG_OFFSET_MASK != 0 {
                return Err(Some(fragment(FAMILY_V6, *dst, *src, n)));
            }
        }
        _ => return Ok(false),
    }
    // An extension header whose length runs past the frame.
    if !has(ctx, *off) {
        return Err(None);
    }
    Ok(true)
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, l3: usize) -> L3 {
    let hdr = bytes_at(ctx, l3, IPV6_HLEN)?;
    // SAFETY: the 40-byte header is in bounds (checked just above).
    let (ver, payload, mut next) = unsafe {
        (
            *hdr >> 4,
            u16::from_be_bytes([*hdr.add(4), *hdr.add(5)]),
            *hdr.add(6),
        )
    };
    if ver != 6 || !has(ctx, l3 + IPV6_HLEN + usize::from(payload)) {
        return None;
    }
    // SAFETY: bytes 8..40 of the checked 40-byte header.
    let (src, dst) = unsafe { (addr_words::<4>(hdr.add(8)), addr_words::<4>(hdr.add(24))) };
    let mut off = l3 + IPV6_HLEN;
    // IPV6_MAX_EXT (4) steps, unrolled: the verifier then sees straight-line
    // code with bounded offsets.
    macro_rules! step {
        () => {
            match ext_step(ctx, &mut next, &mut off, &src, &dst) {
                Ok(true) => {}
                Ok(false) => return l4_v6(ctx, next, off, src, dst),
                Err(Some(frag)) => return Some((Class::Ipv6Other, Some(frag))),
                Err(None) => return None,
            }
        };
    }
    step!();
    step!();
    step!();
    step!();
    l4_v6(ctx, next, off, src, dst)
}

#[inline(always)]
fn l4_v6(ctx: &XdpContext, next: u8, off: usize, src: [u32; 4], dst: [u32; 4]) -> L3 {
    match next {
        IPPROTO_TCP => Some((Class::Ipv6Tcp, Some(tcp(ctx, off, FAMILY_V6, src, dst)?))),
        IPPROTO_UDP => Some((Class::Ipv6Udp, Some(udp(ctx, off, FAMILY_V6, src, dst)?))),
        IPPROTO_ICMPV6 => Some((Class::Ipv6Other, icmp6_error(ctx, off, &dst))),
        _ => Some((Class::Ipv6Other, None)),
    }
}

#[inline(always)]
fn fragment(family: u8, dst: [u32; 4], src: [u32; 4], proto: u8) -> Flow {
    Flow {
        kind: KIND_FRAGMENT,
        vip_addr: dst,
        port: 0,
        proto,
        family,
        client: src,
        opening: false,
    }
}

#[inline(always)]
fn tcp(ctx: &XdpContext, l4: usize, family: u8, src: [u32; 4], dst: [u32; 4]) -> Option<Flow> {
    let hdr = bytes_at(ctx, l4, TCP_MIN_HLEN)?;
    // SAFETY: 20 bytes in bounds.
    let (dport, doff, flags) = unsafe {
        (
            u16::from_be_bytes([*hdr.add(2), *hdr.add(3)]),
            *hdr.add(12),
            *hdr.add(TCP_FLAGS_OFF),
        )
    };
    let doff = usize::from(doff >> 4) * 4;
    if doff < TCP_MIN_HLEN || !has(ctx, l4 + doff) {
        return None;
    }
    Some(Flow {
        kind: KIND_NORMAL,
        vip_addr: dst,
        port: dport,
        proto: IPPROTO_TCP,
        family,
        client: src,
        opening: flags & TCP_FLAG_SYN != 0 && flags & TCP_FLAG_ACK == 0,
    })
}

#[inline(always)]
fn udp(ctx: &XdpContext, l4: usize, family: u8, src: [u32; 4], dst: [u32; 4]) -> Option<Flow> {
    let hdr = bytes_at(ctx, l4, UDP_HLEN)?;
    // SAFETY: 8 bytes in bounds.
    let dport = unsafe { u16::from_be_bytes([*hdr.add(2), *hdr.add(3)]) };
    Some(Flow {
        kind: KIND_NORMAL,
        vip_addr: dst,
        port: dport,
        proto: IPPROTO_UDP,
        family,
        client: src,
        // No handshake: any datagram from a client without an entry opens
        // a session, under the same insert cap as TCP SYNs.
        opening: true,
    })
}

/// The type of an ICMP/ICMPv6 message. Reads through an 8-byte bound (the
/// header) rather than 1 byte: LLVM turns `p + 1 > end` into `p >= end`,
/// from which the verifier derives no readable range at offset 0. (Errors
/// need the quoted packet after those 8 bytes anyway, so nothing changes.)
#[inline(always)]
fn icmp_type(ctx: &XdpContext, l4: usize) -> Option<u8> {
    let p = bytes_at(ctx, l4, ICMP_HLEN)?;
    // SAFETY: 8 bytes in bounds.
    Some(unsafe { *p })
}

#[inline(always)]
fn icmp4_error(ctx: &XdpContext, l4: usize, outer_dst: &[u32; 4]) -> Option<Flow> {
    let ty = icmp_type(ctx, l4)?;
    if ty != ICMP_DEST_UNREACH && ty != ICMP_TIME_EXCEEDED {
        return None;
    }
    let inner = l4 + ICMP_HLEN;
    let hdr = bytes_at(ctx, inner, IPV4_MIN_HLEN)?;
    // SAFETY: 20 bytes in bounds.
    let (vihl, proto) = unsafe { (*hdr, *hdr.add(9)) };
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < IPV4_MIN_HLEN {
        return None;
    }
    // SAFETY: bytes 12..20 of the checked 20-byte header.
    let (src, client) = unsafe { (addr_words::<1>(hdr.add(12)), addr_words::<1>(hdr.add(16))) };
    quoted(ctx, inner + ihl, proto, FAMILY_V4, src, client, outer_dst)
}

#[inline(always)]
fn icmp6_error(ctx: &XdpContext, l4: usize, outer_dst: &[u32; 4]) -> Option<Flow> {
    let ty = icmp_type(ctx, l4)?;
    if ty != ICMPV6_DEST_UNREACH && ty != ICMPV6_PKT_TOOBIG && ty != ICMPV6_TIME_EXCEED {
        return None;
    }
    let inner = l4 + ICMP_HLEN;
    let hdr = bytes_at(ctx, inner, IPV6_HLEN)?;
    // SAFETY: 40 bytes in bounds.
    let (ver, proto) = unsafe { (*hdr >> 4, *hdr.add(6)) };
    if ver != 6 {
        return None;
    }
    // SAFETY: bytes 8..40 of the checked 40-byte header.
    let (src, client) = unsafe { (addr_words::<4>(hdr.add(8)), addr_words::<4>(hdr.add(24))) };
    quoted(
        ctx,
        inner + IPV6_HLEN,
        proto,
        FAMILY_V6,
        src,
        client,
        outer_dst,
    )
}

/// The error went to `outer_dst` (the VIP) about a packet to the client;
/// that packet must have come from the same VIP, or it is a mismatch.
#[inline(always)]
fn quoted(
    ctx: &XdpContext,
    l4: usize,
    proto: u8,
    family: u8,
    src: [u32; 4],
    client: [u32; 4],
    outer_dst: &[u32; 4],
) -> Option<Flow> {
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    let p = bytes_at(ctx, l4, ICMP_QUOTED_L4)?;
    // SAFETY: 4 bytes in bounds.
    let sport = unsafe { u16::from_be_bytes([*p, *p.add(1)]) };
    // Unused words are zero on both sides for IPv4.
    let kind = if src[0] == outer_dst[0]
        && src[1] == outer_dst[1]
        && src[2] == outer_dst[2]
        && src[3] == outer_dst[3]
    {
        KIND_ICMP_ERROR
    } else {
        KIND_ICMP_MISMATCH
    };
    Some(Flow {
        kind,
        vip_addr: *outer_dst,
        port: sport,
        proto,
        family,
        client,
        opening: false,
    })
}
