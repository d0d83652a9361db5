//! `decap`: an XDP program for backends on kernels without ipip/ip6tnl
//! devices. It strips the outer header of IPv4-in-IPv4 and IPv6-in-IPv6
//! packets from the balancers' tunnel sources (the DECAP_SOURCES map) and
//! passes the inner packet to the stack, which then delivers it to the VIP
//! configured on the backend's loopback. IP-in-IP from any other source is
//! dropped; everything else passes untouched. The rules, and why a refused
//! packet is dropped rather than passed, are those of
//! `balancer_common::decap` (the host-side model the tests compare with).

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use balancer_common::{
    layout::*,
    maps::{
        DECAP_IP6IP6, DECAP_IPIP, DECAP_REFUSED_V4, DECAP_REFUSED_V6, FAMILY_V4, FAMILY_V6,
        TunnelSource,
    },
};

use crate::{
    maps::{DECAP_SOURCES, DECAP_STATS},
    parse::bytes_at,
};

#[inline(always)]
pub fn decap(ctx: &XdpContext) -> u32 {
    let Some(eth) = bytes_at(ctx, 0, ETH_HLEN) else {
        return XDP_PASS;
    };
    // SAFETY: ETH_HLEN bytes in bounds.
    let ty = unsafe { u16::from_be_bytes([*eth.add(12), *eth.add(13)]) };
    if ty == ETH_P_8021Q || ty == ETH_P_8021AD {
        let Some(eth) = bytes_at(ctx, 0, ETH_HLEN + VLAN_HLEN) else {
            return XDP_PASS;
        };
        // SAFETY: ETH_HLEN + VLAN_HLEN bytes in bounds.
        let inner = unsafe { u16::from_be_bytes([*eth.add(16), *eth.add(17)]) };
        return l3::<{ ETH_HLEN + VLAN_HLEN }>(ctx, inner);
    }
    l3::<ETH_HLEN>(ctx, ty)
}

/// The link header's length is a constant in each copy, so every offset
/// below is one the verifier can bound.
#[inline(always)]
fn l3<const L2: usize>(ctx: &XdpContext, ty: u16) -> u32 {
    match ty {
        ETH_P_IPV4 => v4::<L2>(ctx),
        ETH_P_IPV6 => v6::<L2>(ctx),
        _ => XDP_PASS,
    }
}

#[inline(always)]
fn v4<const L2: usize>(ctx: &XdpContext) -> u32 {
    let Some(h) = bytes_at(ctx, L2, IPV4_MIN_HLEN) else {
        return XDP_PASS;
    };
    // SAFETY: 20 bytes in bounds.
    let (vihl, frag, proto) =
        unsafe { (*h, u16::from_be_bytes([*h.add(6), *h.add(7)]), *h.add(9)) };
    if vihl >> 4 != 4 || !is_tunnel_proto(proto) {
        return XDP_PASS;
    }
    let mut src = source(FAMILY_V4);
    // SAFETY: bytes 12..16 of the checked header.
    unsafe { core::ptr::copy_nonoverlapping(h.add(12), src.addr.as_mut_ptr(), 4) };
    if !listed(&src) {
        return refuse(DECAP_REFUSED_V4);
    }
    // Only option-less, unfragmented outer headers, as balancer writes them.
    if vihl == 0x45
        && proto == IPPROTO_IPIP
        && frag & (IPV4_FRAG_OFFSET_MASK | IPV4_MORE_FRAGMENTS) == 0
    {
        return strip::<L2, IPV4_MIN_HLEN>(ctx, DECAP_IPIP);
    }
    XDP_PASS
}

#[inline(always)]
fn v6<const L2: usize>(ctx: &XdpContext) -> u32 {
    let Some(h) = bytes_at(ctx, L2, IPV6_HLEN) else {
        return XDP_PASS;
    };
    // SAFETY: 40 bytes in bounds.
    let (ver, next) = unsafe { (*h >> 4, *h.add(6)) };
    if ver != 6 {
        return XDP_PASS;
    }
    if let Some(p) = upper_v6(ctx, next, L2 + IPV6_HLEN)
        && !is_tunnel_proto(p)
    {
        return XDP_PASS;
    }
    let mut src = source(FAMILY_V6);
    // SAFETY: bytes 8..24 of the checked header.
    unsafe { core::ptr::copy_nonoverlapping(h.add(8), src.addr.as_mut_ptr(), 16) };
    if !listed(&src) {
        return refuse(DECAP_REFUSED_V6);
    }
    if next == IPPROTO_IPV6 {
        return strip::<L2, IPV6_HLEN>(ctx, DECAP_IP6IP6);
    }
    XDP_PASS
}

/// The upper-layer protocol behind at most IPV6_MAX_EXT extension headers
/// starting at `off`; `None` for a longer chain or one cut short.
#[inline(always)]
fn upper_v6(ctx: &XdpContext, mut next: u8, mut off: usize) -> Option<u8> {
    let mut i = 0;
    // At most IPV6_MAX_EXT + 1 rounds; each adds at most 2,048 to `off`,
    // so the verifier can bound every read.
    loop {
        let ext = matches!(
            next,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT | IPPROTO_AH
        );
        if !ext {
            return Some(next);
        }
        if i == IPV6_MAX_EXT {
            return None;
        }
        let h = bytes_at(ctx, off, 2)?;
        // SAFETY: 2 bytes in bounds.
        let (n, l) = unsafe { (*h, usize::from(*h.add(1))) };
        off += match next {
            IPPROTO_FRAGMENT => 8,
            IPPROTO_AH => (l + 2) * 4,
            _ => (l + 1) * 8,
        };
        next = n;
        i += 1;
    }
}

#[inline(always)]
fn source(family: u8) -> TunnelSource {
    TunnelSource {
        addr: [0; 16],
        family,
        _pad: [0; 3],
    }
}

#[inline(always)]
fn listed(src: &TunnelSource) -> bool {
    DECAP_SOURCES.get_ptr(src).is_some()
}

#[inline(always)]
fn count(slot: u32) {
    if let Some(c) = DECAP_STATS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot.
        unsafe { *c += 1 };
    }
}

/// IP-in-IP from a source that is not a balancer's. Dropped, not passed:
/// the kernel's tunnel modules would decapsulate it from anyone.
#[inline(always)]
fn refuse(slot: u32) -> u32 {
    count(slot);
    XDP_DROP
}

/// Move the `L2`-byte link header forward over the `O`-byte outer header
/// and drop the bytes in front of it. The EtherType stays: 4-in-4 and
/// 6-in-6 keep the family.
#[inline(always)]
fn strip<const L2: usize, const O: usize>(ctx: &XdpContext, slot: u32) -> u32 {
    let Some(p) = bytes_at(ctx, 0, L2 + O) else {
        return XDP_PASS;
    };
    let p = p as *mut u8;
    // SAFETY: L2 + O bytes in bounds; source [0, L2) and destination
    // [O, O + L2) overlap only if O < L2, which never happens (O >= 20 >
    // 18 >= L2); copied backwards byte by byte for clarity.
    unsafe {
        let mut i = L2;
        while i > 0 {
            i -= 1;
            *p.add(O + i) = *p.add(i);
        }
    }
    // SAFETY: shrinks the head by O bytes, which the check above covered.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, O as i32) } != 0 {
        return XDP_PASS;
    }
    count(slot);
    XDP_PASS
}
