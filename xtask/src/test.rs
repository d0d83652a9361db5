//! `cargo xtask test`: setup, lints, then every test tier, as root; at the
//! end (unless a test filter was given) a quick `cargo xtask bench` whose
//! report is checked against the bench schema (its shape, not its figures).

use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
};

use anyhow::{Context as _, bail};

use crate::util::{build_balancer, cargo, is_root, status};

pub fn run(extra: &[String]) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the tests attach XDP programs and create network namespaces: run as root");
    }
    crate::setup::run()?;
    let swept = balancer_tests::lab::sweep()?;
    for s in &swept {
        println!("test: removed leftover {s}");
    }

    println!("test: cargo fmt --check");
    status(cargo().args(["fmt", "--all", "--check"]))?;
    println!("test: clippy (host crates)");
    status(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    println!("test: clippy (eBPF crate, bpfel-unknown-none)");
    let ebpf_target = crate::util::root().join("target/ebpf-clippy");
    status(
        std::process::Command::new("rustup")
            .args(["run", "nightly", "cargo", "clippy", "--release"])
            .args([
                "--package",
                "balancer-ebpf",
                "--target",
                "bpfel-unknown-none",
            ])
            .args(["-Z", "build-std=core", "--target-dir"])
            .arg(&ebpf_target)
            .args(["--", "-D", "warnings"])
            .current_dir(crate::util::root())
            // The stable toolchain's variables would override the nightly's.
            .env_remove("CARGO")
            .env_remove("RUSTC")
            .env_remove("RUSTUP_TOOLCHAIN"),
    )?;

    let bin = build_balancer(false)?;
    println!("test: cargo test (unit, BPF_PROG_TEST_RUN, labs)");
    let mut child = cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(extra)
        .env("BALANCER_BIN", &bin)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let mut totals = [0u64; 3]; // passed, failed, ignored
    let out = child.stdout.take().context("cargo test stdout")?;
    for line in BufReader::new(out).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for (i, key) in ["passed", "failed", "ignored"].iter().enumerate() {
                totals[i] += count_before(rest, key);
            }
        }
    }
    let ok = child.wait()?.success();
    // The benchmark schema check, after the other tests (a lab namespace
    // left behind by a test is reported below, not swept by the bench).
    let schema = if extra.is_empty() {
        let leftovers = balancer_tests::lab::stale_namespaces()?;
        if leftovers.is_empty() {
            Some(bench_schema_check())
        } else {
            None
        }
    } else {
        println!("test: a test filter was given: the bench schema check is skipped");
        None
    };

    // Every test process has exited: a lab namespace still here was not
    // cleaned up by its test. Report it, then remove it.
    let leftovers = balancer_tests::lab::stale_namespaces()?;
    balancer_tests::lab::sweep()?;
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals[0], totals[1], totals[2]
    );
    if !leftovers.is_empty() {
        bail!("tests left lab namespaces behind: {}", leftovers.join(" "));
    }
    if !ok || totals[1] > 0 {
        bail!("tests failed");
    }
    if totals[0] == 0 {
        bail!("no test ran");
    }
    if let Some(result) = schema {
        result.context("bench schema check")?;
    }
    Ok(())
}

/// `cargo xtask bench --quick --dev-build --json <tmp> --out <tmp>` (debug
/// binaries: no release build in the test run), then the report
/// must hold every section of [`crate::bench::SECTIONS`] in the schema's
/// shape.
fn bench_schema_check() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("blb-{}-bench-schema", std::process::id()));
    let json = dir.join("report.json");
    println!(
        "test: bench schema check: cargo xtask bench --quick --dev-build --json {} --out {}",
        json.display(),
        dir.display()
    );
    let started = std::time::Instant::now();
    let result = status(
        std::process::Command::new(std::env::current_exe().context("xtask's own path")?)
            .args(["bench", "--quick", "--dev-build", "--json"])
            .arg(&json)
            .arg("--out")
            .arg(&dir),
    )
    .and_then(|()| crate::report::validate_file(&json, &crate::bench::section_names()));
    println!(
        "test: bench schema check: {} in {:.0} s",
        if result.is_ok() { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|_| ())
}

/// `N` in "... N passed; ..." (0 when absent).
fn count_before(s: &str, key: &str) -> u64 {
    s.split(';')
        .filter_map(|part| {
            let mut it = part.split_whitespace().rev();
            if it.next() != Some(key) {
                return None;
            }
            it.next()?.parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn reads_cargo_test_summaries() {
        let s = "ok. 12 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.1s";
        assert_eq!(count_before(s, "passed"), 12);
        assert_eq!(count_before(s, "failed"), 1);
        assert_eq!(count_before(s, "ignored"), 3);
        assert_eq!(count_before("FAILED. 0 passed", "failed"), 0);
    }
}
