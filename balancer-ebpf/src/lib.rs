//! What balancer-ebpf's objects share: the one bounds-checked access to
//! the frame. The programs themselves are the binaries: `balancer-xdp`
//! (main.rs, the data plane and its helpers, embedded by balancer-userspace)
//! and `balancer-bench-xdp-obj` (bench.rs, the benchmarks' reference
//! programs, embedded by the benchmark programs in xtask/bench).
//!
//! On the host this library is the embedders' build dependency: cargo
//! rebuilds their objects when these sources change, and [`build_objects`]
//! is how their build.rs builds them.
#![cfg_attr(target_arch = "bpf", no_std)]

#[cfg(target_arch = "bpf")]
use aya_ebpf::programs::XdpContext;

/// Both objects' panic handler.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any program that could reach this: there is
    // no unwinding in eBPF, so a reachable panic is a build-time bug.
    loop {}
}

/// Pointer to `len` bytes at `off` from the start of the frame, or `None`
/// when the frame is shorter.
#[cfg(target_arch = "bpf")]
#[inline(always)]
pub fn bytes_at(ctx: &XdpContext, off: usize, len: usize) -> Option<*const u8> {
    let start = ctx.data();
    // The verifier needs this exact comparison of (start + off + len)
    // against data_end before any access in [start + off, start + off + len).
    if start + off + len > ctx.data_end() {
        return None;
    }
    Some((start + off) as *const u8)
}

/// Build this crate's objects (every binary) for bpfel-unknown-none with the
/// nightly toolchain and bpf-linker, and leave them in the calling build
/// script's OUT_DIR under their binary's name (`balancer-xdp`,
/// `balancer-bench-xdp-obj`). `cargo xtask setup` installs what this needs.
#[cfg(not(target_arch = "bpf"))]
pub fn build_objects() -> anyhow::Result<()> {
    use anyhow::Context as _;
    // bpf-linker lives in cargo's bin dir; rebuild when it changes.
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        println!(
            "cargo:rerun-if-changed={}/bin/bpf-linker",
            std::path::PathBuf::from(home).display()
        );
    }
    // aya-build relays every line the inner cargo prints as a warning;
    // compiler diagnostics still come through with --quiet.
    // SAFETY: build scripts are single-threaded here.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: env!("CARGO_PKG_NAME"),
            root_dir: env!("CARGO_MANIFEST_DIR"),
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .context(
        "building the XDP programs failed; run `cargo xtask setup` to install \
         the nightly rust-src and bpf-linker they need",
    )
}
