//! Map names and capacities. The eBPF side declares the maps with these
//! names; userspace finds them by the same names.

/// Per-CPU array of [`crate::stats::Counter`], indexed by [`crate::stats::Class`].
pub const STATS_MAP: &str = "STATS";
/// Number of slots in [`STATS_MAP`].
pub const STATS_LEN: u32 = crate::stats::CLASS_COUNT as u32;

/// Per-CPU array of one u64: when this CPU last emitted a rate-limited log line.
pub const LOG_GATE_MAP: &str = "LOG_GATE";

/// Name of the XDP entry point in the object.
pub const XDP_PROGRAM: &str = "balancer";

/// Minimum nanoseconds between two rate-limited log lines from one CPU.
pub const LOG_INTERVAL_NS: u64 = 1_000_000_000;
