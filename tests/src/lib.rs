//! Shared by the integration tests and xtask: the network-namespace lab,
//! processes inside it, and packet builders.
//!
//! This crate must not depend on balancer-userspace: xtask links it, and
//! xtask has to build before `cargo xtask setup` has installed what the
//! eBPF build needs.

pub mod dns;
pub mod h2;
pub mod haproxy;
pub mod http;
pub mod lab;
pub mod packets;
pub mod proc;
pub mod stream;
pub mod tls;

use std::path::PathBuf;

/// The `balancer` binary under test: `$BALANCER_BIN`, else the one cargo
/// built next to the running test or xtask executable.
pub fn balancer_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BALANCER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> or target/<profile>/xtask
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("balancer");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "no balancer binary next to {}; build it (`cargo build -p balancer-userspace`) or set BALANCER_BIN",
        exe.display()
    )
}

/// True when running as root (labs, XDP and BPF_PROG_TEST_RUN need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Fail loudly, not silently pass, when a privileged test runs without root.
pub fn require_root() {
    assert!(
        is_root(),
        "this test needs root (XDP, BPF_PROG_TEST_RUN, network namespaces): run `cargo xtask test` as root"
    );
}
