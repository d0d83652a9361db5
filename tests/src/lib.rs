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

/// An XDP configuration (`lo`, a pin_dir under the bpffs that is not
/// created) in a new directory `nobody` can read, for running balancer
/// without privilege: (the directory, the pin_dir, the configuration).
/// The caller removes the directory and, if anything made it, the pin_dir.
pub fn xdp_config_for_nobody(id: &str) -> (PathBuf, PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pin_dir = std::path::Path::new(lab::BPFFS).join(id);
    let config = dir.join("l4.toml");
    std::fs::write(
        &config,
        format!(
            "[dataplane]\ninterfaces = [\"lo\"]\npin_dir = \"{}\"\n\n[admin]\nsocket = \"{}\"\n\n\
             [[frontend]]\nname = \"web\"\nbind = \"198.18.2.100:80\"\ndefault_backend = \"app\"\n\n\
             [[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1\"\n",
            pin_dir.display(),
            dir.join("admin.sock").display()
        ),
    )
    .unwrap();
    (dir, pin_dir, config)
}
