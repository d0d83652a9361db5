//! What the benchmark programs share: the benchmarks' own XDP object
//! (`bare`, `bare_stick`: balancer-ebpf's `balancer-bench-xdp-obj`, built by
//! build.rs), which the daemon's object does not carry.

/// The benchmarks' reference programs, for `balancer::dataplane::AuxProgram::load_from`.
pub static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/balancer-bench-xdp-obj"));
