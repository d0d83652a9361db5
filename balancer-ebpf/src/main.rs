//! balancer's XDP data plane.
//!
//! At this stage the program parses Ethernet (one VLAN tag), IPv4, IPv6, TCP
//! and UDP, counts every packet in exactly one class of the per-CPU `STATS`
//! array and passes it to the stack. The classification rules are those of
//! `balancer_common::classify`, the host-side reference model the tests
//! compare this program with.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod stats;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
    use balancer_common::stats::Class;

    use crate::{parse, stats};

    /// Entry point. Every packet is passed; the verdict is returned once, here.
    #[xdp]
    pub fn balancer(ctx: XdpContext) -> u32 {
        let class = parse::classify(&ctx);
        stats::count(&ctx, class);
        if class == Class::Malformed {
            stats::log_malformed(&ctx);
        }
        xdp_action::XDP_PASS
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
        // The verifier rejects any program that could reach this: there is
        // no unwinding in eBPF, so a reachable panic is a build-time bug.
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

/// Host builds (clippy, `cargo test --workspace`) see an empty binary; the
/// real object is built for `bpfel-unknown-none` by balancer-userspace's build.rs.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
