//! balancer's XDP data plane: source-IP affinity at the NIC.
//!
//! parse -> VIP lookup (not a VIP: `XDP_PASS`, untouched) -> stick table ->
//! Maglev on a miss -> forward (`dsr-l2` or `ipip`). The decision is
//! specified by `balancer_common::model`, the host-side reference the tests
//! compare this program with; the parsing rules by `balancer_common::packet`.
//!
//! Verdict convention: helpers return `Result<T, u32>` where `Err` is the
//! final XDP action, so `?` ends processing; the entry point returns it.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod decap;
#[cfg(target_arch = "bpf")]
mod forward;
#[cfg(target_arch = "bpf")]
mod generator;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod select;
#[cfg(target_arch = "bpf")]
mod stats;
#[cfg(target_arch = "bpf")]
mod vip;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{macros::xdp, programs::XdpContext};
    use balancer_common::{
        layout::{XDP_DROP, XDP_PASS},
        stats::Class,
    };

    use crate::{
        forward::forward,
        maps::VIP_STATS,
        parse::{self, KIND_FRAGMENT, KIND_ICMP_ERROR, KIND_ICMP_MISMATCH},
        select::select,
        stats, vip,
    };

    #[xdp]
    pub fn balancer(ctx: XdpContext) -> u32 {
        match process(&ctx) {
            Ok(action) | Err(action) => action,
        }
    }

    /// For backends: strip IPIP/IP6IP6 encapsulation (see `decap`).
    #[xdp]
    pub fn decap(ctx: XdpContext) -> u32 {
        crate::decap::decap(&ctx)
    }

    /// Passes everything. Attached to the peer of a veth that receives
    /// XDP_TX/XDP_REDIRECT frames: the kernel only schedules the peer's
    /// receive of such frames when the peer runs an XDP program.
    #[xdp]
    pub fn pass(_ctx: XdpContext) -> u32 {
        XDP_PASS
    }

    /// Packet generator (BPF_PROG_TEST_RUN live frames): see `gen`.
    #[xdp]
    pub fn trafficgen(ctx: XdpContext) -> u32 {
        crate::generator::trafficgen(&ctx)
    }

    #[inline(always)]
    fn process(ctx: &XdpContext) -> Result<u32, u32> {
        let len = stats::frame_len(ctx);
        let p = parse::parse(ctx);
        stats::count(p.class, len);
        if p.class == Class::Malformed {
            stats::log_malformed(ctx);
            return Err(XDP_PASS);
        }
        let flow = p.flow.ok_or(XDP_PASS)?;
        // Copied out of the table: userspace may replace it under us.
        let vip = vip::lookup(&flow.vip_key_words()).ok_or(XDP_PASS)?;
        let vs = VIP_STATS.get_ptr_mut(vip.id).ok_or(XDP_PASS)?;
        // SAFETY: this CPU's own slot of a per-CPU array.
        let vs = unsafe { &mut *vs };
        vs.packets += 1;
        vs.bytes += len;
        if flow.kind == KIND_ICMP_ERROR {
            vs.icmp_errors += 1;
        } else if flow.kind == KIND_FRAGMENT {
            vs.fragments += 1;
        } else if flow.kind == KIND_ICMP_MISMATCH {
            // To this VIP, about a packet from another source.
            vs.icmp_errors += 1;
            vs.icmp_mismatched += 1;
            return Err(XDP_DROP);
        }
        let choice = select(&vip, &flow, vs)?;
        stats::count_backend(choice.backend_id, len);
        forward(
            ctx,
            vip.mode,
            flow.family,
            p.l2_len,
            &choice,
            &flow.client,
            vs,
        )
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

/// Host builds (clippy, `cargo test --workspace`) see an empty binary; the
/// real object is built for `bpfel-unknown-none` by balancer-userspace's build.rs.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
