//! Counters on the fast path, logs on the slow path.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use aya_log_ebpf::warn;
use balancer_common::{maps::LOG_INTERVAL_NS, stats::Class};

use crate::maps::{BACKEND_STATS, LOG_GATE, STATS};

/// Frame length as XDP sees it. Root loads the program, so the verifier
/// allows pkt_end - pkt.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}

/// Count one packet of `class`. Per-CPU slots: plain adds, no atomics.
#[inline(always)]
pub fn count(class: Class, len: u64) {
    if let Some(slot) = STATS.get_ptr_mut(class.index()) {
        // SAFETY: a per-CPU array slot, only this CPU writes it.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += len;
        }
    }
}

#[inline(always)]
pub fn count_backend(id: u32, len: u64) {
    if let Some(slot) = BACKEND_STATS.get_ptr_mut(id) {
        // SAFETY: a per-CPU array slot, only this CPU writes it.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += len;
        }
    }
}

/// At most one line per CPU per LOG_INTERVAL_NS, so a flood of garbage
/// costs a counter increment, not a log record each.
#[inline(never)]
pub fn log_malformed(ctx: &XdpContext) {
    let Some(last) = LOG_GATE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: per-CPU slot owned by this CPU.
    unsafe {
        if now.wrapping_sub(*last) < LOG_INTERVAL_NS && *last != 0 {
            return;
        }
        *last = now;
    }
    let len = frame_len(ctx) as u32;
    let ifindex = ctx.ingress_ifindex() as u32;
    warn!(
        ctx,
        "malformed packet passed: {} bytes on ifindex {}", len, ifindex
    );
}
