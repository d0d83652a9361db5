//! Forwarding: `dsr-l2` MAC rewrite, `ipip` encapsulation, TX or redirect.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use balancer_common::{
    hash::client_hash_words,
    layout::*,
    maps::{Backend, FAMILY_V4, MODE_IPIP, VipStats},
};

use crate::{
    maps::{CONFIG, EGRESS},
    parse::bytes_at,
    select::Choice,
};

/// Rewrite, then send towards the chosen backend.
#[inline(always)]
pub fn forward(
    ctx: &XdpContext,
    mode: u8,
    family: u8,
    l2_len: usize,
    c: &Choice,
    client: &[u32; 4],
    stats: &mut VipStats,
) -> Result<u32, u32> {
    let b = c.backend;
    if mode == MODE_IPIP {
        encapsulate(ctx, family, l2_len, b, client, stats)?;
    }
    set_macs(ctx, b)?;
    if b.ifindex == ctx.ingress_ifindex() as u32 {
        return Ok(XDP_TX);
    }
    match EGRESS.redirect(b.ifindex, u64::from(XDP_DROP)) {
        Ok(action) => Ok(action),
        Err(fallback) => {
            // Not in the devmap: userspace did not register this egress.
            stats.forward_failed += 1;
            Err(fallback)
        }
    }
}

#[inline(always)]
fn set_macs(ctx: &XdpContext, b: &Backend) -> Result<(), u32> {
    let p = bytes_at(ctx, 0, 2 * ETH_ALEN).ok_or(XDP_DROP)? as *mut u8;
    // SAFETY: 12 bytes in bounds (checked by bytes_at).
    unsafe {
        core::ptr::copy_nonoverlapping(b.dst_mac.as_ptr(), p, ETH_ALEN);
        core::ptr::copy_nonoverlapping(b.src_mac.as_ptr(), p.add(ETH_ALEN), ETH_ALEN);
    }
    Ok(())
}

/// Put an outer IP header of the VIP's family between the Ethernet header
/// (and its VLAN tag) and the packet. Every check that can drop happens
/// before the frame is changed.
#[inline(always)]
fn encapsulate(
    ctx: &XdpContext,
    family: u8,
    l2_len: usize,
    b: &Backend,
    client: &[u32; 4],
    stats: &mut VipStats,
) -> Result<(), u32> {
    if b.family != family {
        stats.forward_failed += 1;
        return Err(XDP_DROP);
    }
    let Some(cfg) = CONFIG.get(0) else {
        stats.forward_failed += 1;
        return Err(XDP_DROP);
    };
    let inner_len = ctx.data_end() - ctx.data() - l2_len;
    let olen = if family == FAMILY_V4 {
        IPV4_MIN_HLEN
    } else {
        IPV6_HLEN
    };
    if inner_len + olen > b.mtu as usize {
        stats.too_big += 1;
        return Err(XDP_DROP);
    }
    let ilen = inner_len as u16;
    let r = if family == FAMILY_V4 {
        let mut dst = [0u8; 4];
        dst.copy_from_slice(&b.addr[..4]);
        let hdr = ipip4_header(cfg.tun_src_v4, dst, ilen);
        if l2_len == ETH_HLEN {
            push::<ETH_HLEN, IPV4_MIN_HLEN>(ctx, &hdr)
        } else {
            push::<{ ETH_HLEN + VLAN_HLEN }, IPV4_MIN_HLEN>(ctx, &hdr)
        }
    } else {
        // The flow label spreads clients over ECMP paths to the backend.
        let hdr = ip6ip6_header(&cfg.tun_src_v6, &b.addr, ilen, client_hash_words(client));
        if l2_len == ETH_HLEN {
            push::<ETH_HLEN, IPV6_HLEN>(ctx, &hdr)
        } else {
            push::<{ ETH_HLEN + VLAN_HLEN }, IPV6_HLEN>(ctx, &hdr)
        }
    };
    if r.is_err() {
        stats.forward_failed += 1;
    }
    r
}

/// Grow the frame by `O` bytes at the front, move the `L2` bytes of link
/// header back to the start, and write `hdr` after it. Constant sizes keep
/// every access provably in bounds for the verifier.
#[inline(always)]
fn push<const L2: usize, const O: usize>(ctx: &XdpContext, hdr: &[u8; O]) -> Result<(), u32> {
    // SAFETY: the helper only moves ctx->data; pointers are re-read below.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(O as i32)) } != 0 {
        return Err(XDP_DROP);
    }
    let p = bytes_at(ctx, 0, O + L2).ok_or(XDP_DROP)? as *mut u8;
    // SAFETY: O + L2 bytes in bounds; source [O, O+L2) and destination
    // [0, L2) do not overlap because O >= 20 > L2 (at most 18).
    unsafe {
        core::ptr::copy_nonoverlapping(p.add(O), p, L2);
        core::ptr::copy_nonoverlapping(hdr.as_ptr(), p.add(L2), O);
    }
    Ok(())
}
