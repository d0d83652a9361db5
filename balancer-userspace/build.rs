//! Builds the XDP program (balancer-ebpf) for bpfel-unknown-none with the
//! nightly toolchain and bpf-linker, and leaves it in OUT_DIR/balancer-xdp, which
//! src/lib.rs embeds. `cargo xtask setup` installs what this needs.
use std::path::PathBuf;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest.join("../balancer-ebpf").canonicalize()?;
    let ebpf_dir = ebpf_dir
        .to_str()
        .context("non-UTF-8 path to balancer-ebpf")?;
    // bpf-linker lives in cargo's bin dir; rebuild when it changes.
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        println!(
            "cargo:rerun-if-changed={}/bin/bpf-linker",
            PathBuf::from(home).display()
        );
    }
    // aya-build relays every line the inner cargo prints as a warning;
    // compiler diagnostics still come through with --quiet.
    // SAFETY: build scripts are single-threaded here.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "balancer-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .context(
        "building the XDP program failed; run `cargo xtask setup` to install \
         the nightly rust-src and bpf-linker it needs",
    )
}
