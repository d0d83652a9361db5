//! The benchmarks' reference XDP programs, an object of their own
//! (`balancer-bench-xdp-obj`) that only the benchmark programs embed
//! (xtask/bench's build.rs): nothing here ships in the data plane's object.
//!
//! - `bare`: the floor, what the real program is compared with (parse,
//!   swap MACs, XDP_TX);
//! - `bare_stick`: the floor plus one stick-table lookup, what the cheapest
//!   conceivable sticky program costs.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        macros::{map, xdp},
        maps::LruHashMap,
        programs::XdpContext,
    };
    use balancer_common::{
        layout::*,
        maps::{STICK_SIZE, StickKey, StickValue},
    };
    use balancer_ebpf::bytes_at;

    /// An LRU hash like the data plane's STICK (same name, key, value and
    /// default size), for `bare_stick`'s one lookup.
    #[map(name = "STICK")]
    static STICK: LruHashMap<StickKey, StickValue> = LruHashMap::with_max_entries(STICK_SIZE, 0);

    /// Benchmark floor: parse, swap MACs, XDP_TX.
    #[xdp]
    pub fn bare(ctx: XdpContext) -> u32 {
        floor(&ctx)
    }

    /// Benchmark reference: the floor plus one stick-table lookup.
    #[xdp]
    pub fn bare_stick(ctx: XdpContext) -> u32 {
        floor_plus_lookup(&ctx)
    }

    /// The benchmark floor: parse Ethernet/IPv4/IPv6 and the transport ports as
    /// the real program must, swap the MACs, XDP_TX.
    #[inline(always)]
    fn floor(ctx: &XdpContext) -> u32 {
        let Some(p) = bytes_at(ctx, 0, ETH_HLEN + IPV6_HLEN + 4) else {
            return XDP_PASS;
        };
        let p = p as *mut u8;
        // SAFETY: ETH_HLEN + 44 bytes in bounds.
        unsafe {
            let ty = u16::from_be_bytes([*p.add(12), *p.add(13)]);
            if ty != ETH_P_IPV4 && ty != ETH_P_IPV6 {
                return XDP_PASS;
            }
            let mut i = 0;
            while i < ETH_ALEN {
                let t = *p.add(i);
                *p.add(i) = *p.add(ETH_ALEN + i);
                *p.add(ETH_ALEN + i) = t;
                i += 1;
            }
        }
        XDP_TX
    }

    /// The floor plus one stick-table lookup: what the cheapest conceivable
    /// sticky program costs (parse, look the IPv4 source up in STICK under VIP
    /// id 0, swap MACs, XDP_TX when found). A benchmark reference only.
    #[inline(always)]
    fn floor_plus_lookup(ctx: &XdpContext) -> u32 {
        let Some(p) = bytes_at(ctx, 0, ETH_HLEN + IPV4_MIN_HLEN) else {
            return XDP_PASS;
        };
        // SAFETY: ETH_HLEN + 20 bytes in bounds.
        let src = unsafe {
            let q = p.add(ETH_HLEN + 12);
            [*q, *q.add(1), *q.add(2), *q.add(3)]
        };
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&src);
        let key = StickKey { vip_id: 0, addr };
        // SAFETY: read-only use of the lookup result's presence.
        if unsafe { STICK.get(key) }.is_none() {
            return XDP_PASS;
        }
        floor(ctx)
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

/// Host builds (clippy) see an empty binary; the object is built for
/// `bpfel-unknown-none` by the aya-build of its embedders' build.rs.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
