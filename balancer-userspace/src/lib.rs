//! balancer's userspace: configuration, the data-plane owner, the daemon and
//! the pieces the CLI and the tests share.

pub mod admin;
pub mod api;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod discovery;
/// The fuzz targets' bodies (`balancer-userspace/fuzz/`): built for the
/// tests and for `cargo fuzz` only.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz;
pub mod health;
pub mod http;
pub mod metrics;
pub mod netlink;
pub mod peers;
pub mod stats;
pub mod stick_batch;
pub mod testrun;
pub mod trafficgen;
pub mod util;

/// The XDP object built from balancer-ebpf by build.rs, embedded so the
/// binary is self-contained.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/balancer-xdp"));
