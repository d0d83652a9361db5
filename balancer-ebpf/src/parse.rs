//! Bounds-checked header access and the packet classifier.
//!
//! Mirrors `balancer_common::classify` rule for rule. Every read goes through
//! `ptr_at`, whose explicit comparison against `data_end` is what lets the
//! verifier accept the access.

use aya_ebpf::programs::XdpContext;
use balancer_common::{layout::*, stats::Class};

/// Pointer to `len` bytes at `off` from the start of the frame, or `None`
/// when the frame is shorter.
#[inline(always)]
fn bytes_at(ctx: &XdpContext, off: usize, len: usize) -> Option<*const u8> {
    let start = ctx.data();
    // The verifier needs this exact comparison of (start + off + len)
    // against data_end before any access in [start + off, start + off + len).
    if start + off + len > ctx.data_end() {
        return None;
    }
    Some((start + off) as *const u8)
}

#[inline(always)]
fn u8_at(ctx: &XdpContext, off: usize) -> Option<u8> {
    let p = bytes_at(ctx, off, 1)?;
    // SAFETY: bounds checked by bytes_at.
    Some(unsafe { *p })
}

#[inline(always)]
fn be16_at(ctx: &XdpContext, off: usize) -> Option<u16> {
    let p = bytes_at(ctx, off, 2)?;
    // SAFETY: bounds checked by bytes_at; read byte by byte (no alignment).
    Some(unsafe { u16::from_be_bytes([*p, *p.add(1)]) })
}

/// True when the frame holds at least `len` bytes from the start.
#[inline(always)]
fn has(ctx: &XdpContext, len: usize) -> bool {
    ctx.data() + len <= ctx.data_end()
}

#[inline(always)]
pub fn classify(ctx: &XdpContext) -> Class {
    match classify_inner(ctx) {
        Some(class) => class,
        None => Class::Malformed,
    }
}

#[inline(always)]
fn classify_inner(ctx: &XdpContext) -> Option<Class> {
    let mut proto = be16_at(ctx, ETH_TYPE_OFF)?;
    let mut l3 = ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = be16_at(ctx, ETH_TYPE_OFF + VLAN_HLEN)?;
        l3 += VLAN_HLEN;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            return Some(Class::NonIp);
        }
    }
    match proto {
        ETH_P_IPV4 => ipv4(ctx, l3),
        ETH_P_IPV6 => ipv6(ctx, l3),
        _ => Some(Class::NonIp),
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, l3: usize) -> Option<Class> {
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
    if frag & IPV4_FRAG_OFFSET_MASK != 0 {
        return Some(Class::Ipv4Other);
    }
    match proto {
        IPPROTO_TCP => tcp(ctx, l3 + ihl).then_some(Class::Ipv4Tcp),
        IPPROTO_UDP => has(ctx, l3 + ihl + UDP_HLEN).then_some(Class::Ipv4Udp),
        _ => Some(Class::Ipv4Other),
    }
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, l3: usize) -> Option<Class> {
    let hdr = bytes_at(ctx, l3, IPV6_HLEN)?;
    // SAFETY: the 40-byte header is in bounds (checked just above).
    let (ver, payload, next) = unsafe {
        (
            *hdr >> 4,
            u16::from_be_bytes([*hdr.add(4), *hdr.add(5)]),
            *hdr.add(6),
        )
    };
    if ver != 6 || !has(ctx, l3 + IPV6_HLEN + usize::from(payload)) {
        return None;
    }
    let l4 = l3 + IPV6_HLEN;
    match next {
        IPPROTO_TCP => tcp(ctx, l4).then_some(Class::Ipv6Tcp),
        IPPROTO_UDP => has(ctx, l4 + UDP_HLEN).then_some(Class::Ipv6Udp),
        _ => Some(Class::Ipv6Other),
    }
}

#[inline(always)]
fn tcp(ctx: &XdpContext, l4: usize) -> bool {
    let Some(doff) = u8_at(ctx, l4 + 12) else {
        return false;
    };
    let doff = usize::from(doff >> 4) * 4;
    has(ctx, l4 + TCP_MIN_HLEN) && doff >= TCP_MIN_HLEN && has(ctx, l4 + doff)
}
