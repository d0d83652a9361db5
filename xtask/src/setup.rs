//! `cargo xtask setup`: everything the build and the tests need, installed
//! idempotently. Follows ../shared/TOOLCHAIN.md (the verified recipe):
//!
//! 1. Debian packages the tests and the demo use;
//! 2. the nightly toolchain (for the eBPF crate);
//! 3. nightly `rust-src`: rustup's component first; else the verified
//!    Debian package kept in `../shared/cache`; else Debian sid's package;
//!    always checked to be the nightly's own minor version;
//! 4. `bpf-linker` built against the nightly toolchain's own libLLVM;
//! 5. a bpffs on /sys/fs/bpf.
//!
//! Each step prints what it found or did, and fails naming what is missing.

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::util::{cargo, is_root, on_path, root, status, stdout};

/// Commands the tests and the demo run, and the Debian package of each.
const COMMANDS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ethtool", "ethtool"),
    ("curl", "curl"),
    ("python3", "python3"),
    ("sha256sum", "coreutils"),
    ("dpkg", "dpkg"),
    // The HTTP path is compared with HAProxy (conformance tests, benchmark)
    // and loaded with wrk.
    ("haproxy", "haproxy"),
    ("wrk", "wrk"),
    // The font of the bench plots (xtask/src/plots.rs); a path, not a
    // command: the check below finds an absolute path as it is.
    (crate::plots::FONT, "fonts-dejavu-core"),
    // Peers and the outside reference generator of the xdp-pps benchmark.
    ("nft", "nftables"),
    ("trafgen", "netsniff-ng"),
];

const BPF_LINKER_VERSION: &str = "0.13.0";
/// sha256 of the verified rust-src package (TOOLCHAIN.md).
const VERIFIED_RUST_SRC_DEB: (&str, &str) = (
    "rust-src_1.97.1+dfsg1-1_all.deb",
    "d0637f8f464234ffb12baa55fc0e851f5f9dcfd0199c1a0922e4488a4f591992",
);
const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

pub fn run() -> anyhow::Result<()> {
    step("Debian packages", packages)?;
    step("nightly toolchain", nightly)?;
    step("nightly rust-src", rust_src)?;
    step("bpf-linker", bpf_linker)?;
    step("bpffs", bpffs)?;
    Ok(())
}

fn step(name: &str, f: fn() -> anyhow::Result<String>) -> anyhow::Result<()> {
    match f() {
        Ok(what) => {
            println!("setup: {name}: {what}");
            Ok(())
        }
        Err(e) => Err(e.context(format!("setup: {name}"))),
    }
}

/// Durable cache for what setup builds or extracts.
fn cache_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/balancer"))
}

fn packages() -> anyhow::Result<String> {
    let missing: Vec<&str> = COMMANDS
        .iter()
        .filter(|(cmd, _)| on_path(cmd).is_none() && !Path::new("/usr/sbin").join(cmd).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok("present".into());
    }
    if !is_root() {
        bail!("missing {} and not root to install them", missing.join(" "));
    }
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        status(&mut c)
    };
    apt(&["update", "-q"]).context("apt-get update")?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args).with_context(|| format!("installing {}", missing.join(" ")))?;
    Ok(format!("installed {}", missing.join(" ")))
}

fn rustup() -> Command {
    Command::new("rustup")
}

fn nightly() -> anyhow::Result<String> {
    let list = stdout(rustup().args(["toolchain", "list"])).context("rustup is required")?;
    if list.lines().any(|l| l.starts_with("nightly")) {
        return Ok(nightly_version()?.0);
    }
    status(rustup().args(["toolchain", "install", "nightly", "--profile", "minimal"]))
        .context("no nightly toolchain, and rustup could not install one")?;
    Ok(format!("installed {}", nightly_version()?.0))
}

/// (`rustc --version` of the nightly, its minor version, its LLVM major).
fn nightly_version() -> anyhow::Result<(String, u32, u32)> {
    let v = stdout(Command::new("rustc").args(["+nightly", "--version", "--verbose"]))?;
    let first = v.lines().next().unwrap_or_default().to_owned();
    let minor = first
        .split_whitespace()
        .nth(1)
        .and_then(|ver| ver.split('.').nth(1))
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("cannot read the nightly's version from {first:?}"))?;
    let llvm = v
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|l| l.split('.').next())
        .and_then(|m| m.parse().ok())
        .context("cannot read the nightly's LLVM version")?;
    Ok((first, minor, llvm))
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(
        stdout(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?.trim(),
    ))
}

/// Minor version of a `rustc-1.MINOR.PATCH` source directory name.
fn src_minor(dir: &Path) -> Option<u32> {
    dir.file_name()?
        .to_str()?
        .strip_prefix("rustc-1.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn rust_src() -> anyhow::Result<String> {
    let (version, minor, _) = nightly_version()?;
    let link = nightly_sysroot()?.join("lib/rustlib/src/rust");
    if link.join("library/core/Cargo.toml").exists() {
        match std::fs::read_link(&link) {
            // Ours: a link to an extracted Debian tree; check its version.
            Ok(target) => match src_minor(&target) {
                Some(m) if m == minor => return Ok(format!("present ({})", target.display())),
                _ => println!(
                    "setup: {} does not match {version}; replacing it",
                    target.display()
                ),
            },
            // rustup's own component matches its toolchain.
            Err(_) => return Ok("present (rustup component)".into()),
        }
    }

    // 1. The normal route. BALANCER_SETUP_NO_RUSTUP=1 skips it, to exercise
    // the fallbacks on a machine where rustup could download.
    if std::env::var_os("BALANCER_SETUP_NO_RUSTUP").is_none() {
        let out = Command::new("rustup")
            .args(["component", "add", "rust-src", "--toolchain", "nightly"])
            .output();
        if out.is_ok_and(|o| o.status.success()) && link.join("library/core").exists() {
            return Ok("installed by rustup".into());
        }
        println!("setup: rustup cannot fetch rust-src here (offline?); trying the Debian package");
    }

    // 2. The verified package kept in ../shared/cache.
    let shared = root().join("../shared/cache").join(VERIFIED_RUST_SRC_DEB.0);
    let mut tried = Vec::new();
    if shared.exists() {
        let sum = stdout(Command::new("sha256sum").arg(&shared))?;
        if sum.split_whitespace().next() == Some(VERIFIED_RUST_SRC_DEB.1) {
            match install_rust_src_deb(&shared, minor, &link) {
                Ok(dir) => {
                    return Ok(format!(
                        "installed from {} ({})",
                        shared.display(),
                        dir.display()
                    ));
                }
                Err(e) => tried.push(format!("{}: {e:#}", shared.display())),
            }
        } else {
            tried.push(format!("{}: sha256 mismatch", shared.display()));
        }
    } else {
        tried.push(format!("{}: not found", shared.display()));
    }

    // 3. Debian sid, through a private apt list (the system's is untouched).
    match fetch_sid_rust_src() {
        Ok(deb) => match install_rust_src_deb(&deb, minor, &link) {
            Ok(dir) => return Ok(format!("installed from Debian sid ({})", dir.display())),
            Err(e) => tried.push(format!("Debian sid: {e:#}")),
        },
        Err(e) => tried.push(format!("Debian sid: {e:#}")),
    }
    bail!(
        "no rust-src for {version} (library sources of rustc 1.{minor} are needed): {}",
        tried.join("; ")
    )
}

/// Extract a Debian rust-src package into the cache and link it into the
/// nightly sysroot if its version matches.
fn install_rust_src_deb(deb: &Path, minor: u32, link: &Path) -> anyhow::Result<PathBuf> {
    let stem = deb
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("rust-src");
    let dest = cache_dir()?.join(stem);
    if !dest.join("usr/src").exists() {
        std::fs::create_dir_all(&dest)?;
        status(Command::new("dpkg").arg("-x").arg(deb).arg(&dest))?;
    }
    let src = std::fs::read_dir(dest.join("usr/src"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| src_minor(p).is_some())
        .context("the package holds no usr/src/rustc-1.* tree")?;
    let found = src_minor(&src).unwrap_or_default();
    if found != minor {
        bail!("it carries rustc 1.{found} sources, the nightly is 1.{minor}");
    }
    std::fs::create_dir_all(link.parent().context("sysroot path")?)?;
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    symlink(&src, link).with_context(|| format!("linking {}", link.display()))?;
    Ok(src)
}

fn fetch_sid_rust_src() -> anyhow::Result<PathBuf> {
    let sources = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .context("reading /etc/apt/sources.list.d/debian.sources")?;
    let uri = sources
        .lines()
        .find_map(|l| l.strip_prefix("URIs:"))
        .map(str::trim)
        .and_then(|l| l.split_whitespace().next())
        .context("no URIs: line in debian.sources")?;
    let d = cache_dir()?.join("apt-sid");
    for sub in ["lists/partial", "cache/partial"] {
        std::fs::create_dir_all(d.join(sub))?;
    }
    std::fs::write(d.join("sources.list"), format!("deb {uri} sid main\n"))?;
    let opts = [
        format!(
            "-oDir::Etc::SourceList={}",
            d.join("sources.list").display()
        ),
        "-oDir::Etc::SourceParts=/dev/null".to_owned(),
        format!("-oDir::State::Lists={}", d.join("lists").display()),
        format!("-oDir::Cache::archives={}", d.join("cache").display()),
    ];
    status(Command::new("apt-get").args(&opts).arg("update").arg("-q"))?;
    status(
        Command::new("apt-get")
            .args(&opts)
            .args(["download", "rust-src"])
            .current_dir(&d),
    )?;
    std::fs::read_dir(&d)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb")
}

fn bpf_linker() -> anyhow::Result<String> {
    let (_, _, llvm) = nightly_version()?;
    if let Ok(v) = stdout(Command::new("bpf-linker").arg("--version"))
        && v.contains(BPF_LINKER_VERSION)
    {
        return Ok(format!("present ({})", v.trim()));
    }
    // bpf-linker must link the same LLVM major as the rustc emitting the
    // bitcode: point it at the nightly toolchain's own libLLVM.
    let prefix = cache_dir()?.join("llvm-prefix");
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib)?;
    let so = std::fs::read_dir(nightly_sysroot()?.join("lib"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so"))
        })
        .context("the nightly toolchain has no libLLVM.so")?;
    for name in [
        PathBuf::from("libLLVM.so"),
        PathBuf::from(so.file_name().unwrap_or_default()),
    ] {
        let l = lib.join(name);
        if l.symlink_metadata().is_ok() {
            std::fs::remove_file(&l)?;
        }
        symlink(&so, &l)?;
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against {} (about a minute)",
        so.display()
    );
    status(
        cargo()
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm}"),
            ])
            .env("LLVM_PREFIX", &prefix),
    )
    .context("building bpf-linker")?;
    let v = stdout(Command::new("bpf-linker").arg("--version"))
        .context("bpf-linker was installed but does not run (is ~/.cargo/bin on PATH?)")?;
    Ok(format!("installed ({})", v.trim()))
}

fn bpffs() -> anyhow::Result<String> {
    if is_bpffs(Path::new(BPFFS)) {
        return Ok(format!("mounted on {BPFFS}"));
    }
    if !is_root() {
        bail!("{BPFFS} is not a bpffs and mounting one needs root");
    }
    status(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    Ok(format!("mounted on {BPFFS} now"))
}

fn is_bpffs(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct; c is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0) && st.f_type as i64 == BPF_FS_MAGIC
}
