use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask's manifest dir is `<root>/xtask`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Run to completion, inheriting stdio; fail if it fails.
pub fn status(cmd: &mut Command) -> anyhow::Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed ({st})");
    }
    Ok(())
}

/// Run to completion and capture stdout; fail (with stderr) if it fails.
pub fn stdout(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Build the `balancer` binary (debug shares artefacts with the tests) and
/// return its path.
pub fn build_balancer(release: bool) -> anyhow::Result<PathBuf> {
    build_balancer_with(release, &[], None)
}

/// Build the `balancer` binary with more cargo arguments (`features`, e.g.
/// `--no-default-features --features ring`) into `target` (default cargo's
/// target directory), and return its path.
pub fn build_balancer_with(
    release: bool,
    features: &[&str],
    target: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--package",
        "balancer-userspace",
        "--bin",
        "balancer",
    ]);
    cmd.args(features);
    if release {
        cmd.arg("--release");
    }
    if let Some(dir) = target {
        cmd.arg("--target-dir").arg(dir);
    }
    status(&mut cmd)?;
    let target = target.map_or_else(target_dir, Path::to_owned);
    let bin = target
        .join(if release { "release" } else { "debug" })
        .join("balancer");
    println!("built {}", bin.display());
    Ok(bin)
}

/// cargo's target directory: CARGO_TARGET_DIR, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Is `name` an executable on PATH?
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// bpf-linker is installed into cargo's bin dir; rustc finds it on PATH.
pub fn ensure_cargo_bin_on_path() {
    let bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin"));
    let Some(bin) = bin else { return };
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|p| p == bin) {
        return;
    }
    let joined = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path)));
    if let Ok(joined) = joined {
        // SAFETY: called first thing in main, before any thread exists.
        unsafe { std::env::set_var("PATH", joined) };
    }
}
