//! `cargo xtask bench`: set up, build the measuring programs (package
//! `balancer-bench` in `xtask/bench/`, release) and run the benchmark
//! sections; the report (schema `balancer-bench/2`, [`crate::report`]) goes
//! to `--json PATH` (default `<out>/report.json`), the plots
//! ([`crate::plots`]) to `--out DIR` (default `<target dir>/bench/`);
//! `--readme` also rewrites README's generated "Performance" part from the
//! report, with the report and the plots in `docs/bench/`.
//!
//! Each section is one row of [`SECTIONS`]. The ones measured in-process run
//! as `balancer-bench --only NAME`, which prints its table and writes its part
//! of the report; sections that drive other tools (IPVS, HAProxy, load
//! generators) get their own runner here. Figures are never asserted: a
//! target missed is reported as "misses", the command still succeeds. The
//! report's shape is: a report that does not follow the schema fails the
//! command (after it is written, to be looked at).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Instant, SystemTime, UNIX_EPOCH},
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
    /// The same over TLS, and TLS handshakes (`bench_https`).
    Https,
    /// Packets/s through a veth lab against its peers (`bench_pps`).
    Pps,
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
        name: "xdp-pps",
        about: "packets/s through a veth lab (XDP native, 65,536 sources) vs bare XDP_TX, nftables DNAT, HAProxy",
        runner: Runner::Pps,
    },
    Section {
        name: "http-cookie",
        about: "HTTP cookie proxy vs HAProxy (cookie insert indirect nocache) under wrk, pinned apart",
        runner: Runner::Http,
    },
    Section {
        name: "https",
        about: "TLS termination vs HAProxy (OpenSSL) under wrk: full handshakes/s (ECDSA, RSA, \
                ring), keep-alive requests over TLS with the cookie",
        runner: Runner::Https,
    },
    Section {
        name: "affinity",
        about: "clients that change server when 1 of N fails and recovers: stick table, Maglev, modulo",
        runner: Runner::BenchBinary,
    },
    Section {
        name: "table",
        about: "1,000,000-entry stick table: memory, insert rate, table show, vs an nftables map",
        runner: Runner::BenchBinary,
    },
    Section {
        name: "control-plane",
        about: "state change and failure-to-redispatch latency, daemon memory with a full table",
        runner: Runner::ControlPlane,
    },
    Section {
        name: "peers",
        about: "stick-table replication between two instances: lag, throughput, sender CPU",
        runner: Runner::BenchBinary,
    },
];

const BENCH_BIN: &str = "balancer-bench";

/// What `cargo xtask bench` was asked for.
pub struct Options {
    pub only: Option<String>,
    pub quick: bool,
    /// The report (default `<out>/report.json`).
    pub json: Option<PathBuf>,
    /// Plots and the report (default `<target dir>/bench`).
    pub out: Option<PathBuf>,
    /// Also rewrite README's generated part (and docs/bench/).
    pub readme: bool,
    /// Release binaries (what users run); else debug ones, for a quick
    /// check of the report's shape.
    pub release: bool,
}

/// Every section's name, in order: what a full report holds.
pub fn section_names() -> Vec<&'static str> {
    SECTIONS.iter().map(|s| s.name).collect()
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    let quick = opts.quick;
    let selected: Vec<&Section> = match opts.only.as_deref() {
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
    let out_dir = match &opts.out {
        Some(d) => std::path::absolute(d).with_context(|| format!("resolving {}", d.display()))?,
        None => target.join("bench"),
    };
    let out = opts
        .json
        .clone()
        .unwrap_or_else(|| out_dir.join("report.json"));

    // Every binary a section runs, in one cargo run: with fat LTO each
    // link is long, and cargo runs them side by side. `--bin` names a
    // binary of either package (the daemon's, or the benchmark programs').
    let mut build = vec!["build", "-p", "balancer-userspace", "-p", "balancer-bench"];
    if opts.release {
        build.push("--release");
    }
    for b in [BENCH_BIN, "balancer", crate::bench_pps::HELPER] {
        build.extend(["--bin", b]);
    }
    if !opts.release {
        println!(
            "bench: --dev-build: debug binaries; this run checks that every section runs and \
             reports in shape, its figures (and meets/misses) say nothing of the program"
        );
    }
    println!("bench: cargo {}", build.join(" "));
    status(cargo().args(&build))?;
    let profile_dir = if opts.release { "release" } else { "debug" };
    let bin = target.join(profile_dir).join(BENCH_BIN);
    // The machine is described once, by balancer-bench, whatever ran.
    let machine: Value = serde_json::from_str(&crate::util::stdout(
        Command::new(&bin).arg("--machine").current_dir(root()),
    )?)
    .context("parsing `balancer-bench --machine`")?;

    let mut sections: Vec<Value> = Vec::new();
    let mut section_times = serde_json::Map::new();
    for s in &selected {
        println!("\nbench: {}: {}", s.name, s.about);
        let section_started = Instant::now();
        let part = match s.runner {
            Runner::BenchBinary => run_binary(&bin, &target, s.name, quick)?,
            Runner::Http => {
                let daemon = crate::util::build_balancer(opts.release)?;
                crate::bench_http::run(&daemon, &bin, quick)?
            }
            Runner::Https => {
                let daemon = crate::util::build_balancer(opts.release)?;
                // The handshake figure again with the other crypto provider,
                // built apart (its own target directory keeps the default
                // build's artefacts); not for --dev-build, where figures
                // say nothing and a second debug build would only cost time.
                let ring = if opts.release {
                    Some(crate::util::build_balancer_with(
                        true,
                        &["--no-default-features", "--features", "ring"],
                        Some(&target.join("bench-ring")),
                    )?)
                } else {
                    None
                };
                crate::bench_https::run(&daemon, ring.as_deref(), &bin, quick)?
            }
            Runner::Pps => {
                let daemon = crate::util::build_balancer(opts.release)?;
                let helper = target.join(profile_dir).join(crate::bench_pps::HELPER);
                crate::bench_pps::run(&daemon, &helper, quick)?
            }
            Runner::ControlPlane => {
                let daemon = crate::util::build_balancer(opts.release)?;
                crate::bench_control::run(&daemon, quick)?
            }
        };
        let took = round3(section_started.elapsed().as_secs_f64());
        println!("bench: {}: {took} s", s.name);
        section_times.insert(s.name.to_owned(), json!(took));
        sections.extend(sections_of(part, s)?);
    }
    let invoked: Vec<String> = std::env::args().skip(1).collect();
    let report = json!({
        "schema": crate::report::SCHEMA,
        "generated_unix_s": SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "command": format!("cargo xtask {}", invoked.join(" ")),
        "quick": quick,
        "machine": machine,
        "xtask": {
            "build": format!("cargo {}", build.join(" ")),
            "profile": if opts.release { "release" } else { "dev" },
            "binary": bin,
            "out": out_dir,
            "elapsed_s": round3(started.elapsed().as_secs_f64()),
            "section_elapsed_s": section_times,
        },
        "sections": sections,
    });
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!("\nbench: report written to {}", out.display());
    let expected: Vec<&str> = selected.iter().map(|s| s.name).collect();
    if let Err(errs) = crate::report::validate(&report, &expected) {
        bail!(
            "the report does not follow the schema {} (notes/bench-schema.md):\n  {}",
            crate::report::SCHEMA,
            errs.join("\n  ")
        );
    }
    crate::plots::write_all(&report, &out_dir)?;
    if opts.readme {
        readme(&report, &root().join("README.md"))?;
    }
    println!("bench: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The sections in what a runner returned: `{"sections": [...]}` (a
/// `balancer-bench` report or a runner's part) or one section object. A
/// section without its one-line "about" gets the one of [`SECTIONS`].
fn sections_of(part: Value, s: &Section) -> anyhow::Result<Vec<Value>> {
    let mut list = match part {
        Value::Object(mut o) if o.contains_key("sections") => match o.remove("sections") {
            Some(Value::Array(a)) => a,
            _ => bail!("section {}: \"sections\" is not an array", s.name),
        },
        Value::Object(o) if o.contains_key("name") => vec![Value::Object(o)],
        _ => bail!("section {}: its runner returned no section", s.name),
    };
    for sec in &mut list {
        if sec.get("about").is_none() && sec["name"] == s.name {
            sec["about"] = json!(s.about);
        }
    }
    Ok(list)
}

/// Rewrite README's generated "Performance" part from `report`: the report
/// and its plots go to `docs/bench/` next to the README, which links them.
pub fn readme(report: &Value, readme: &Path) -> anyhow::Result<()> {
    let dir = readme.parent().context("README path has no directory")?;
    let docs = dir.join("docs/bench");
    std::fs::create_dir_all(&docs).with_context(|| format!("creating {}", docs.display()))?;
    std::fs::write(
        docs.join("report.json"),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    let plots: Vec<(String, String)> = crate::plots::write_all(report, &docs)?
        .into_iter()
        .map(|(name, png)| {
            let file = png.file_name().map(|f| f.to_string_lossy().into_owned());
            (name, format!("docs/bench/{}", file.unwrap_or_default()))
        })
        .collect();
    let text =
        std::fs::read_to_string(readme).with_context(|| format!("reading {}", readme.display()))?;
    let new = crate::report::splice_readme(&text, &crate::report::markdown(report, &plots))?;
    std::fs::write(readme, new).with_context(|| format!("writing {}", readme.display()))?;
    println!(
        "bench: {} rewritten between its bench markers; report and plots in {}",
        readme.display(),
        docs.display()
    );
    Ok(())
}

/// `cargo xtask bench-readme REPORT`: the README part from a report written
/// earlier (checked against the schema first).
pub fn readme_from(report: &Path, readme_file: Option<&Path>) -> anyhow::Result<()> {
    let value = crate::report::validate_file(report, &[])?;
    if value["xtask"]["profile"] == "dev" {
        bail!(
            "{} comes from debug binaries (--dev-build): its figures are not the program's",
            report.display()
        );
    }
    let default = root().join("README.md");
    readme(&value, readme_file.unwrap_or(&default))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
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

/// cargo's target directory (CARGO_TARGET_DIR, else `<root>/target`),
/// absolute: `balancer-bench` runs from the workspace root.
fn target_dir() -> anyhow::Result<PathBuf> {
    let dir = crate::util::target_dir();
    std::path::absolute(&dir).with_context(|| format!("resolving {}", dir.display()))
}
