//! Every map of the program, one line each. Names and sizes come from
//! balancer_common::maps so userspace opens the same ones.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use balancer_common::{maps::STATS_LEN, stats::Counter};

/// Packets and bytes per `balancer_common::stats::Class`, per CPU.
#[map(name = "STATS")]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(STATS_LEN, 0);

/// Per CPU: time (ns) of the last rate-limited log line.
#[map(name = "LOG_GATE")]
pub static LOG_GATE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
