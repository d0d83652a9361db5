//! `trafficgen`: the packet generator's XDP program, run by BPF_PROG_TEST_RUN in
//! live-frames mode (the mechanism behind xdp-trafficgen). Each run rewrites
//! the template frame's source address to the next of `src_count` addresses
//! from `src_base` (a permutation: `src_count` packets use each once), fixes the IP and TCP/UDP
//! checksums incrementally, and transmits it out of the interface it was
//! "received" on.
//!
//! Live frames are recycled with whatever the last user left in them: a
//! frame that the receiver rewrote in place (MACs by a forwarder, addresses
//! by DNAT) would go out again rewritten. So every run first restores the
//! template's headers from `GEN_TEMPLATE`.

use aya_ebpf::{macros::map, maps::Array, programs::XdpContext};
use balancer_common::{
    layout::*,
    maps::{FAMILY_V4, GenConfig},
};

use crate::{
    maps::{GEN_CONFIG, GEN_SEQ},
    parse::bytes_at,
};

/// Bytes of the template restored into each frame: Ethernet + IPv6 + TCP
/// (74) fit. Frames are at least the Ethernet minimum of 60 bytes.
const TEMPLATE_MAX: usize = 80;
const FRAME_MIN: usize = 60;

/// Byte 0: how many template bytes to restore (0: none, e.g. a loader that
/// does not fill it); bytes 1..: the template frame's first bytes.
#[map(name = "GEN_TEMPLATE")]
static GEN_TEMPLATE: Array<[u8; TEMPLATE_MAX + 1]> = Array::with_max_entries(1, 0);

/// Write the template's first bytes back over the frame.
#[inline(always)]
fn restore_template(ctx: &XdpContext) {
    let Some(t) = GEN_TEMPLATE.get(0) else {
        return;
    };
    let len = t[0] as usize;
    if len < FRAME_MIN {
        return;
    }
    let Some(p) = bytes_at(ctx, 0, FRAME_MIN) else {
        return;
    };
    let p = p as *mut u8;
    let mut i = 0;
    while i < FRAME_MIN {
        // SAFETY: i < FRAME_MIN bytes, checked above.
        unsafe { *p.add(i) = t[1 + i] };
        i += 1;
    }
    while i < TEMPLATE_MAX && i < len {
        if let Some(q) = bytes_at(ctx, i, 1) {
            // SAFETY: one byte at i, checked by bytes_at.
            unsafe { *(q as *mut u8) = t[1 + i] };
        }
        i += 1;
    }
}

/// 2^32 * (golden ratio - 1), rounded to a prime.
const PRIME: u64 = 2_654_435_761;

/// RFC 1624 incremental update of a 16-bit one's-complement checksum for
/// one 16-bit word changing from `old` to `new`.
#[inline(always)]
fn csum_replace(csum: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!csum) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[inline(always)]
pub fn trafficgen(ctx: &XdpContext) -> u32 {
    let Some(cfg) = GEN_CONFIG.get(0) else {
        return XDP_DROP;
    };
    restore_template(ctx);
    let Some(seq) = GEN_SEQ.get_ptr_mut(0) else {
        return XDP_DROP;
    };
    // SAFETY: this CPU's own slot.
    let n = unsafe {
        let n = *seq;
        *seq = n.wrapping_add(1);
        n
    };
    let count = u64::from(if cfg.src_count == 0 { 1 } else { cfg.src_count });
    // Multiplying by a prime that does not divide `count` permutes
    // 0..count: any `count` consecutive packets use every source once, in
    // an order spread over the whole range rather than walking it.
    let step = match PRIME % count {
        0 => 1,
        s => s,
    };
    let idx = ((n % count) * step + u64::from(cfg.cpu_salt)) % count;
    let idx = idx as u32;
    if cfg.family == FAMILY_V4 {
        rewrite::<4, IPV4_MIN_HLEN>(ctx, cfg, idx, ETH_HLEN + 12, ETH_HLEN + 10)
    } else {
        rewrite::<16, IPV6_HLEN>(ctx, cfg, idx, ETH_HLEN + 8, usize::MAX)
    }
}

/// Write source address base + idx (added to the last 32 bits) at
/// `src_off`; patch the IPv4 header checksum at `ip_csum_off` (IPv4 only)
/// and the transport checksum.
#[inline(always)]
fn rewrite<const A: usize, const L3: usize>(
    ctx: &XdpContext,
    cfg: &GenConfig,
    idx: u32,
    src_off: usize,
    ip_csum_off: usize,
) -> u32 {
    let l4 = ETH_HLEN + L3;
    let Some(p) = bytes_at(ctx, 0, l4 + UDP_HLEN) else {
        return XDP_DROP;
    };
    let p = p as *mut u8;
    let low = u32::from_be_bytes([
        cfg.src_base[A - 4],
        cfg.src_base[A - 3],
        cfg.src_base[A - 2],
        cfg.src_base[A - 1],
    ])
    .wrapping_add(idx)
    .to_be_bytes();
    // SAFETY: all offsets below are within l4 + 8 bytes, checked above.
    unsafe {
        let old_hi = u16::from_be_bytes([*p.add(src_off + A - 4), *p.add(src_off + A - 3)]);
        let old_lo = u16::from_be_bytes([*p.add(src_off + A - 2), *p.add(src_off + A - 1)]);
        let mut i = 0;
        while i < A - 4 {
            *p.add(src_off + i) = cfg.src_base[i];
            i += 1;
        }
        *p.add(src_off + A - 4) = low[0];
        *p.add(src_off + A - 3) = low[1];
        *p.add(src_off + A - 2) = low[2];
        *p.add(src_off + A - 1) = low[3];
        let new_hi = u16::from_be_bytes([low[0], low[1]]);
        let new_lo = u16::from_be_bytes([low[2], low[3]]);
        if ip_csum_off != usize::MAX {
            let c = u16::from_be_bytes([*p.add(ip_csum_off), *p.add(ip_csum_off + 1)]);
            let c = csum_replace(csum_replace(c, old_hi, new_hi), old_lo, new_lo).to_be_bytes();
            *p.add(ip_csum_off) = c[0];
            *p.add(ip_csum_off + 1) = c[1];
        }
        // The pseudo-header holds the source address: TCP checksum at +16,
        // UDP at +6 (0 in UDP/IPv4 means "none": leave it).
        let off = if *p.add(ETH_HLEN + if A == 4 { 9 } else { 6 }) == IPPROTO_TCP {
            16
        } else {
            6
        };
        let Some(t) = bytes_at(ctx, l4 + off, 2) else {
            return XDP_DROP;
        };
        let t = t as *mut u8;
        let c = u16::from_be_bytes([*t, *t.add(1)]);
        if !(off == 6 && A == 4 && c == 0) {
            let c = csum_replace(csum_replace(c, old_hi, new_hi), old_lo, new_lo).to_be_bytes();
            *t = c[0];
            *t.add(1) = c[1];
        }
    }
    XDP_TX
}
