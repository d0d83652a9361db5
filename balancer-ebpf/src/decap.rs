//! `decap`: an XDP program for backends on kernels without ipip/ip6tnl
//! devices. It strips the outer header of IPv4-in-IPv4 and IPv6-in-IPv6
//! packets and passes the inner packet to the stack, which then delivers it
//! to the VIP configured on the backend's loopback. Everything else passes
//! untouched.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use balancer_common::layout::*;

use crate::{maps::DECAP_STATS, parse::bytes_at};

/// DECAP_STATS slots.
pub const DECAP_IPIP: u32 = 0;
pub const DECAP_IP6IP6: u32 = 1;

#[inline(always)]
pub fn decap(ctx: &XdpContext) -> u32 {
    let Some(eth) = bytes_at(ctx, 0, ETH_HLEN + IPV6_HLEN) else {
        // Too short for IPv6-in-IPv6; IPv4-in-IPv4 needs less.
        return try_v4(ctx);
    };
    // SAFETY: ETH_HLEN + 40 bytes in bounds.
    let (ty, next) = unsafe {
        (
            u16::from_be_bytes([*eth.add(12), *eth.add(13)]),
            *eth.add(ETH_HLEN + 6),
        )
    };
    if ty == ETH_P_IPV6 && next == IPPROTO_IPV6 {
        return strip::<IPV6_HLEN>(ctx, DECAP_IP6IP6);
    }
    try_v4(ctx)
}

#[inline(always)]
fn try_v4(ctx: &XdpContext) -> u32 {
    let Some(eth) = bytes_at(ctx, 0, ETH_HLEN + IPV4_MIN_HLEN) else {
        return XDP_PASS;
    };
    // SAFETY: ETH_HLEN + 20 bytes in bounds.
    let (ty, vihl, proto) = unsafe {
        (
            u16::from_be_bytes([*eth.add(12), *eth.add(13)]),
            *eth.add(ETH_HLEN),
            *eth.add(ETH_HLEN + 9),
        )
    };
    // Only option-less outer headers, as balancer writes them.
    if ty == ETH_P_IPV4 && vihl == 0x45 && proto == IPPROTO_IPIP {
        return strip::<IPV4_MIN_HLEN>(ctx, DECAP_IPIP);
    }
    XDP_PASS
}

/// Move the Ethernet header forward over the `O`-byte outer header and drop
/// the bytes in front of it. The EtherType stays: 4-in-4 and 6-in-6 keep
/// the family.
#[inline(always)]
fn strip<const O: usize>(ctx: &XdpContext, slot: u32) -> u32 {
    let Some(p) = bytes_at(ctx, 0, ETH_HLEN + O) else {
        return XDP_PASS;
    };
    let p = p as *mut u8;
    // SAFETY: ETH_HLEN + O bytes in bounds; source [0, 14) and destination
    // [O, O + 14) overlap when O < 14, which never happens (O >= 20), so a
    // plain copy is fine, done backwards byte by byte for clarity.
    unsafe {
        let mut i = ETH_HLEN;
        while i > 0 {
            i -= 1;
            *p.add(O + i) = *p.add(i);
        }
    }
    // SAFETY: shrinks the head by O bytes, which the check above covered.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, O as i32) } != 0 {
        return XDP_PASS;
    }
    if let Some(c) = DECAP_STATS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot.
        unsafe { *c += 1 };
    }
    XDP_PASS
}
