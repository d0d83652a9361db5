//! `cargo xtask bench`: set up, build the measuring program
//! (`balancer-bench`, release) and run the benchmark sections; the report
//! goes to `--json PATH` (default `<target dir>/bench/report.json`).
//!
//! Each section is one row of [`SECTIONS`]. The ones measured in-process run
//! as `balancer-bench --only NAME`, which prints its table and writes its part
//! of the report; sections that drive other tools (IPVS, HAProxy, load
//! generators) get their own runner here. Figures are never asserted: a
//! target missed is reported as "misses", the command still succeeds.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::util::{cargo, is_root, root, status};

/// How xtask runs a section.
enum Runner {
    /// `balancer-bench --only <name>`.
    BenchBinary,
    /// The daemon in a namespace lab (`bench_control`).
    ControlPlane,
    /// The HTTP proxy against HAProxy under wrk (`bench_http`).
    Http,
}

struct Section {
    name: &'static str,
    about: &'static str,
    runner: Runner,
}

/// Every section, in the order a full run takes them.
const SECTIONS: &[Section] = &[
    Section {
        name: "xdp-testrun",
        about: "ns/packet of the XDP program through BPF_PROG_TEST_RUN against the bare floor",
        runner: Runner::BenchBinary,
    },
    Section {
        name: "http",
        about: "HTTP cookie proxy vs HAProxy 2.6 (cookie insert indirect nocache) under wrk",
        runner: Runner::Http,
    },
    Section {
        name: "control-plane",
        about: "state change and failure-to-redispatch latency, daemon memory with a full table",
        runner: Runner::ControlPlane,
    },
];

const BENCH_BIN: &str = "balancer-bench";

pub fn run(only: Option<&str>, quick: bool, json: Option<&Path>) -> anyhow::Result<()> {
    let selected: Vec<&Section> = match only {
        None => SECTIONS.iter().collect(),
        Some(name) => match SECTIONS.iter().find(|s| s.name == name) {
            Some(s) => vec![s],
            None => bail!(
                "unknown bench section {name:?}; known: {}",
                SECTIONS
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    if !is_root() {
        bail!("the benchmarks load XDP programs and run BPF_PROG_TEST_RUN: run as root");
    }
    let started = Instant::now();
    crate::setup::run()?;
    let target = target_dir()?;
    let out = json.map_or_else(|| target.join("bench/report.json"), Path::to_owned);

    let build = [
        "build",
        "--release",
        "-p",
        "balancer-userspace",
        "--bin",
        BENCH_BIN,
    ];
    println!("bench: cargo {}", build.join(" "));
    status(cargo().args(build))?;
    let bin = target.join("release").join(BENCH_BIN);

    let mut report: Option<Value> = None;
    for s in selected {
        println!("\nbench: {}: {}", s.name, s.about);
        let part = match s.runner {
            Runner::BenchBinary => run_binary(&bin, &target, s.name, quick)?,
            Runner::Http => {
                let daemon = crate::util::build_balancer(true)?;
                crate::bench_http::run(&daemon, quick)?
            }
            Runner::ControlPlane => {
                let daemon = crate::util::build_balancer(true)?;
                crate::bench_control::run(&daemon, quick)?
            }
        };
        merge(&mut report, part);
    }
    let mut report = report.context("no section ran")?;
    let invoked: Vec<String> = std::env::args().skip(1).collect();
    report["xtask"] = json!({
        "command": format!("cargo xtask {}", invoked.join(" ")),
        "build": format!("cargo {}", build.join(" ")),
        "binary": bin,
        "elapsed_s": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    });
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "\nbench: report written to {} ({:.1} s in all)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Run one section of `balancer-bench` (its table goes to our stdout) and
/// return the report it wrote.
fn run_binary(bin: &Path, target: &Path, name: &str, quick: bool) -> anyhow::Result<Value> {
    let part = target.join("bench").join(format!("{name}.part.json"));
    let mut cmd = Command::new(bin);
    cmd.args(["--only", name]);
    if quick {
        cmd.arg("--quick");
    }
    cmd.arg("--json").arg(&part).current_dir(root());
    status(&mut cmd)?;
    let text =
        std::fs::read_to_string(&part).with_context(|| format!("reading {}", part.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", part.display()))
}

/// The first report is the base (schema, machine, ...); later ones add
/// their sections.
fn merge(report: &mut Option<Value>, part: Value) {
    match report {
        None => *report = Some(part),
        Some(r) => {
            if let (Some(all), Some(more)) = (
                r.get_mut("sections").and_then(Value::as_array_mut),
                part.get("sections").and_then(Value::as_array),
            ) {
                all.extend(more.iter().cloned());
            }
        }
    }
}

/// cargo's target directory (CARGO_TARGET_DIR, else `<root>/target`),
/// absolute: `balancer-bench` runs from the workspace root.
fn target_dir() -> anyhow::Result<PathBuf> {
    let dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    std::path::absolute(&dir).with_context(|| format!("resolving {}", dir.display()))
}
