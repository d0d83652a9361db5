//! `cargo xtask fuzz [--time SECS] [--target NAME]`: the cargo-fuzz crate
//! (`balancer-userspace/fuzz/`) built on nightly with AddressSanitizer,
//! then each target run by libFuzzer for SECS seconds, one at a time.
//!
//! Each target starts from a working corpus under `target/fuzz/corpus/`
//! that keeps growing from run to run; the committed seeds
//! (`balancer-userspace/fuzz/corpus/<target>/`) and crash regressions
//! (`.../regressions/<target>/`) are copied into it first, so the tree is
//! never written to. A crash leaves its input in `target/fuzz/artifacts/`:
//! the run goes on with the other targets, then fails naming each crash
//! file. The table at the end gives, per target, the executions, their
//! rate, and the working corpus's files and bytes.
//!
//! `cargo xtask test` does not build this (the sanitizer build alone takes
//! longer than CI can spare): it runs every seed and regression file
//! through the same target functions on stable, as a unit test
//! (`balancer-userspace/src/fuzz/mod.rs`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::util::{cargo, on_path, root, status};

/// The cargo-fuzz crate, from the workspace root.
const FUZZ_DIR: &str = "balancer-userspace/fuzz";
/// The target triple cargo-fuzz builds for (its default).
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

pub struct Options {
    /// Seconds per target.
    pub time: u64,
    /// One target only.
    pub target: Option<String>,
}

/// What one target's run came to.
struct Outcome {
    target: String,
    execs: Option<u64>,
    secs: f64,
    files: usize,
    bytes: u64,
    crash: Option<PathBuf>,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    // The fuzz crate links the userspace library, whose build script builds
    // the XDP programs: the same toolchain as `cargo xtask build`.
    crate::setup::run()?;
    install_cargo_fuzz()?;
    let all = targets()?;
    let chosen: Vec<String> = match &opts.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => bail!("no fuzz target {t:?} (targets: {})", all.join(", ")),
        None => all,
    };

    let out = target_dir();
    let started = Instant::now();
    println!(
        "fuzz: building {} (nightly, AddressSanitizer)",
        chosen.join(" ")
    );
    let mut build = nightly_cargo();
    build
        .args(["fuzz", "build", "--fuzz-dir", FUZZ_DIR, "--target-dir"])
        .arg(&out);
    if let [one] = chosen.as_slice() {
        build.arg(one);
    }
    status(&mut build).context("building the fuzz targets")?;
    println!("fuzz: built in {:.0} s", started.elapsed().as_secs_f64());

    let mut outcomes = Vec::new();
    for t in &chosen {
        outcomes.push(run_target(t, opts.time)?);
    }
    println!(
        "\n{:<18} {:>6} {:>12} {:>9} {:>8} {:>10}  result",
        "target", "secs", "execs", "exec/s", "files", "bytes"
    );
    for o in &outcomes {
        let rate = o.execs.map_or(0.0, |n| n as f64 / o.secs.max(1e-3));
        println!(
            "{:<18} {:>6.0} {:>12} {:>9.0} {:>8} {:>10}  {}",
            o.target,
            o.secs,
            o.execs.map_or("?".into(), |n| n.to_string()),
            rate,
            o.files,
            o.bytes,
            o.crash
                .as_ref()
                .map_or("ok".into(), |c| format!("CRASH {}", c.display()))
        );
    }
    let crashes: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.crash.as_ref())
        .map(|c| c.display().to_string())
        .collect();
    if !crashes.is_empty() {
        bail!(
            "fuzzing found {} crash(es): {}\nreproduce: {}/<target> <file>; minimise: \
             cargo +nightly fuzz tmin --fuzz-dir {FUZZ_DIR} <target> <file>; then commit it \
             under {FUZZ_DIR}/regressions/<target>/ with a unit test next to the code",
            crashes.len(),
            crashes.join(" "),
            binary_dir().display()
        );
    }
    Ok(())
}

/// `cargo install cargo-fuzz --locked` unless it is there.
fn install_cargo_fuzz() -> anyhow::Result<()> {
    if on_path("cargo-fuzz").is_some() {
        return Ok(());
    }
    println!("fuzz: installing cargo-fuzz");
    status(cargo().args(["install", "cargo-fuzz", "--locked"])).context("installing cargo-fuzz")
}

/// The targets: the cargo-fuzz crate's binaries, `fuzz_targets/*.rs`.
fn targets() -> anyhow::Result<Vec<String>> {
    let dir = root().join(FUZZ_DIR).join("fuzz_targets");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// cargo on the nightly toolchain (the stable toolchain's variables, set
/// when xtask runs under `cargo`, would override it).
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"])
        .current_dir(root())
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("fuzz")
}

fn binary_dir() -> PathBuf {
    target_dir().join(TRIPLE).join("release")
}

/// Copy the files of `from` (if it exists) into `to`, but those `to` has.
fn copy_new(from: &Path, to: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(());
    };
    for e in entries {
        let path = e?.path();
        let dest = to.join(path.file_name().context("a file name")?);
        if path.is_file() && !dest.exists() {
            std::fs::copy(&path, &dest).with_context(|| format!("{}", path.display()))?;
        }
    }
    Ok(())
}

/// Files and bytes in `dir`.
fn size(dir: &Path) -> anyhow::Result<(usize, u64)> {
    let mut n = (0, 0);
    for e in std::fs::read_dir(dir)? {
        let meta = e?.metadata()?;
        if meta.is_file() {
            n.0 += 1;
            n.1 += meta.len();
        }
    }
    Ok(n)
}

fn run_target(t: &str, secs: u64) -> anyhow::Result<Outcome> {
    let out = target_dir();
    let corpus = out.join("corpus").join(t);
    let artifacts = out.join("artifacts").join(t);
    let log = out.join("logs").join(format!("{t}.log"));
    for d in [&corpus, &artifacts, &out.join("logs")] {
        std::fs::create_dir_all(d).with_context(|| format!("{}", d.display()))?;
    }
    for from in ["corpus", "regressions"] {
        copy_new(&root().join(FUZZ_DIR).join(from).join(t), &corpus)?;
    }
    let before: Vec<PathBuf> = std::fs::read_dir(&artifacts)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    println!(
        "fuzz: {t}: {secs} s from {} ({} files); log {}",
        corpus.display(),
        size(&corpus)?.0,
        log.display()
    );
    let log_file = std::fs::File::create(&log)?;
    let started = Instant::now();
    let st = Command::new(binary_dir().join(t))
        .arg(&corpus)
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .args(["-print_final_stats=1", "-timeout=10"])
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("running the {t} fuzzer"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let execs = text
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok());
    let crash = if st.success() {
        None
    } else {
        let found = std::fs::read_dir(&artifacts)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| !before.contains(p));
        // The end of libFuzzer's report: the panic message and the input.
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        for l in tail.iter().rev() {
            println!("fuzz: {t}: {l}");
        }
        Some(found.unwrap_or_else(|| log.clone()))
    };
    let (files, bytes) = size(&corpus)?;
    Ok(Outcome {
        target: t.to_owned(),
        execs,
        secs: elapsed,
        files,
        bytes,
        crash,
    })
}
