//! `balancer-bench`: the measuring program behind `cargo xtask bench`.
//!
//! Every figure is measured in this run, side by side with its peer, and
//! reported with its unit, the peer's figure, the ratio and how it was taken;
//! `--json` writes the same as a machine-readable report. Ratios are compared
//! with the project's targets and reported as "meets"/"misses", never as a
//! failure: a benchmark documents, the tests assert.
//!
//! Sections (`--only NAME` runs one):
//! - `xdp-testrun`: ns/packet of the real XDP program through
//!   BPF_PROG_TEST_RUN, against the `bare` floor program (parse Ethernet/IP,
//!   swap MACs, XDP_TX) from the benchmarks' own object (`balancer_bench::OBJECT`).
//! - `affinity`: share of clients that change server when one of N fails
//!   and when it comes back, through the real program (stick table, Maglev
//!   alone) against modulo hashing (modelled).
//! - `table`: a 1,000,000-entry stick table (memory, inserts, `table
//!   show`) against an nftables map.
//! - `peers`: stick-table replication between two instances (lag,
//!   throughput, sender CPU); no peer program (figures without a ratio).
//!
//! `--origin NAME` is no section: it serves the HTTP benchmark's origin
//! servers (origin.rs) for xtask's `http-cookie` section.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, BorrowedFd},
    path::PathBuf,
    process::{Command, ExitCode},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail, ensure};
use balancer::{
    dataplane::{AuxProgram, Dataplane, LoadOptions},
    testrun::{TestRun, test_run},
};
use balancer_bench_report::{Cpus, SCHEMA, Target, allowed_cpus, tool_version};
use balancer_common::{
    hash::MAGLEV_M,
    layout::{IPPROTO_IPIP, IPPROTO_TCP, IPV4_MIN_HLEN, XDP_PASS, XDP_TX},
    maglev::{MaglevBackend, build},
    maps::*,
    stats::Class,
};
use clap::{Parser, ValueEnum};
use etherparse::PacketBuilder;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "balancer-bench",
    about = "balancer's benchmarks (run through `cargo xtask bench`, as root)"
)]
struct Cli {
    /// Run only this section.
    #[arg(long, value_enum)]
    only: Option<Section>,
    /// Fewer repetitions and calls: a smoke run, noisier figures.
    #[arg(long)]
    quick: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Pin the measuring thread to this CPU (default: the highest-numbered
    /// CPU this process may run on).
    #[arg(long)]
    cpu: Option<usize>,
    /// Print the machine's description (the report's `machine`) as JSON
    /// and exit: `cargo xtask bench` puts it in every report.
    #[arg(long, conflicts_with_all = ["only", "json"])]
    machine: bool,
    /// Serve an HTTP origin server by this name (repeatable) until stdin
    /// closes: the backends of `cargo xtask bench --only http-cookie`
    /// (see origin.rs for the protocol).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["only", "json", "machine"])]
    origin: Vec<String>,
    /// Send HTTP/1.1 requests to this address at a fixed rate and print
    /// their latency from when each was due (open_loop.rs): the latency
    /// figures of `cargo xtask bench --only http-cookie`.
    /// Repeat it to measure several servers at the same moments: the
    /// connections (and --rate) are shared out among them in turn.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["only", "json", "machine", "origin"])]
    open_loop: Vec<std::net::SocketAddr>,
    /// --open-loop: requests per second, all connections together.
    #[arg(long, requires = "open_loop", default_value_t = 1000.0)]
    rate: f64,
    /// --open-loop: keep-alive connections the requests are spread over.
    #[arg(long, requires = "open_loop", default_value_t = 32)]
    connections: usize,
    /// --open-loop: seconds measured, after the warm-up.
    #[arg(long, requires = "open_loop", default_value_t = 3.0)]
    secs: f64,
    /// --open-loop: seconds of requests sent first and not counted.
    #[arg(long, requires = "open_loop", default_value_t = 0.5)]
    warmup: f64,
    /// --open-loop: a header line added to every request (repeatable).
    #[arg(long, requires = "open_loop", value_name = "NAME: VALUE")]
    header: Vec<String>,
    /// --open-loop: also write every latency counted (microseconds,
    /// little-endian u32) to FILE.0 (and FILE.1, ... for more addresses).
    #[arg(long, requires = "open_loop", value_name = "FILE")]
    latencies: Option<PathBuf>,
}

/// The benchmark sections, in the order a full run takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Section {
    /// ns/packet through BPF_PROG_TEST_RUN, against the `bare` floor program.
    XdpTestrun,
    /// Share of clients that change server when one of N fails and comes back.
    Affinity,
    /// A 1,000,000-entry stick table: memory, inserts, `table show`.
    Table,
    /// Stick-table replication between two instances: lag, throughput, CPU.
    Peers,
}

impl Section {
    const ALL: [Section; 4] = [
        Section::XdpTestrun,
        Section::Affinity,
        Section::Table,
        Section::Peers,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::XdpTestrun => "xdp-testrun",
            Section::Affinity => "affinity",
            Section::Table => "table",
            Section::Peers => "peers",
        }
    }

    fn run(self, ctx: &Ctx) -> anyhow::Result<Value> {
        match self {
            Section::XdpTestrun => xdp_testrun::run(ctx),
            Section::Affinity => affinity::run(ctx),
            Section::Table => table::run(ctx),
            Section::Peers => peers::run(ctx),
        }
    }
}

/// What every section gets: the run's sizes and where it is pinned.
struct Ctx {
    quick: bool,
    cpu: usize,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("balancer-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.machine {
        println!("{}", machine());
        return Ok(());
    }
    if !cli.origin.is_empty() {
        return origin::run(&cli.origin);
    }
    if !cli.open_loop.is_empty() {
        return open_loop::run(open_loop::Load {
            addrs: cli.open_loop,
            rate: cli.rate,
            connections: cli.connections,
            secs: cli.secs,
            warmup: cli.warmup,
            headers: cli.header,
            latencies: cli.latencies,
        });
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("loading XDP programs and BPF_PROG_TEST_RUN need root");
    }
    // Read before pinning: afterwards this process sees one CPU.
    let machine = machine();
    let cpu = pin_to_cpu(cli.cpu)?;
    let ctx = Ctx {
        quick: cli.quick,
        cpu,
    };
    let sections: Vec<Section> = match cli.only {
        Some(s) => vec![s],
        None => Section::ALL.to_vec(),
    };
    let mut reports = Vec::new();
    for s in sections {
        let noise = Noise::start(cpu);
        let mut report = s
            .run(&ctx)
            .with_context(|| format!("section {}", s.name()))?;
        let (noise, line) = noise.finish();
        println!("{}: {line}", s.name());
        report["name"] = json!(s.name());
        report["elapsed_s"] = noise["elapsed_s"].clone();
        report["noise"] = noise;
        reports.push(report);
    }
    if let Some(path) = cli.json {
        let report = json!({
            // The shape shared by every section (notes/bench-schema.md,
            // checked by xtask/src/report.rs).
            "schema": SCHEMA,
            "generated_unix_s": SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            "command": std::env::args().collect::<Vec<_>>(),
            "quick": cli.quick,
            "pinned_cpu": cpu,
            "machine": machine,
            "sections": reports,
        });
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&report)? + "\n";
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

// ---- the machine -----------------------------------------------------------

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    // x86 says "model name"; some arm64 kernels only give "Hardware" or nothing.
    let cpu_model = ["model name", "Hardware", "cpu model"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == *key).then(|| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    // --no-optional-locks: `status` must not rewrite the index (another
    // engineer may be using the tree).
    let dirty = commit.as_ref().and_then(|_| {
        git(&[
            "--no-optional-locks",
            "status",
            "--porcelain",
            "--untracked-files=no",
        ])
        .map(|s| !s.is_empty())
    });
    json!({
        "cpu_model": cpu_model,
        "cpus_online": online,
        "kernel_release": kernel,
        "git_commit": commit,
        "git_dirty": dirty,
    })
}

/// Pin this thread (the only one) to `want`, or to the highest-numbered CPU
/// it may run on: BPF_PROG_TEST_RUN runs the program on the calling CPU with
/// migration disabled, so every trial then runs on the same core.
fn pin_to_cpu(want: Option<usize>) -> anyhow::Result<usize> {
    let allowed = allowed_cpus()?;
    let cpu = match want {
        Some(c) => {
            ensure!(
                allowed.contains(&c),
                "CPU {c} is not one this process may run on"
            );
            c
        }
        None => *allowed
            .last()
            .context("no CPU in this process's affinity mask")?,
    };
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only reads
    // the set we pass, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            bail!(
                "sched_setaffinity to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(cpu)
}

/// How much of the pinned CPU a section really had: this thread's CPU time
/// against the wall clock, and the CPU's steal and interrupt time from
/// /proc/stat. Other tasks on the CPU show as a share below 100 % (the
/// kernel pauses its BPF_PROG_TEST_RUN timer while they run); steal is time
/// the hypervisor gave the virtual CPU to someone else, which the timer
/// cannot exclude.
struct Noise {
    cpu: usize,
    wall: Instant,
    thread_ns: u64,
    ticks: Option<Vec<u64>>,
}

impl Noise {
    fn start(cpu: usize) -> Noise {
        Noise {
            cpu,
            wall: Instant::now(),
            thread_ns: thread_cpu_ns(),
            ticks: cpu_ticks(cpu),
        }
    }

    /// The figures as JSON and as one line for the human output.
    fn finish(self) -> (Value, String) {
        let wall = self.wall.elapsed().as_secs_f64();
        let share = (thread_cpu_ns() - self.thread_ns) as f64 / 1e9 / wall;
        // user nice system idle iowait irq softirq steal
        let pct = match (self.ticks, cpu_ticks(self.cpu)) {
            (Some(a), Some(b)) if a.len() >= 8 && b.len() >= 8 => {
                let d: Vec<u64> = b
                    .iter()
                    .zip(&a)
                    .map(|(b, a)| b.saturating_sub(*a))
                    .collect();
                let total: u64 = d.iter().take(8).sum();
                (total > 0).then(|| {
                    let p = |n: u64| 100.0 * n as f64 / total as f64;
                    (p(d[7]), p(d[5] + d[6]))
                })
            }
            _ => None,
        };
        let mut line = format!(
            "{wall:.1} s; this thread ran {:.0} % of that time on CPU {} (100 % = the CPU to itself)",
            100.0 * share,
            self.cpu
        );
        if let Some((steal, irq)) = pct {
            let _ = write!(
                line,
                "; CPU {}: steal {steal:.1} %, irq+softirq {irq:.1} %",
                self.cpu
            );
        }
        let json = json!({
            "elapsed_s": round3(wall),
            "thread_cpu_share": round3(share),
            "pinned_cpu_steal_pct": pct.map(|p| round3(p.0)),
            "pinned_cpu_irq_softirq_pct": pct.map(|p| round3(p.1)),
        });
        (json, line)
    }
}

use balancer::util::thread_cpu_ns;

/// The `cpuN` line of /proc/stat, in ticks.
fn cpu_ticks(cpu: usize) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let label = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))?;
    line.split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect()
}

// ---- figures ---------------------------------------------------------------

/// One entry of a section's "figures" (the report's [`Figure`], schema
/// `balancer-bench/2`), in the sections' terms: a measured value in `unit`,
/// its peer measured in the same run (`(name, value)`) and a target
/// (`(text, met)`).
///
/// [`Figure`]: balancer_bench_report::Figure
fn report_figure(
    id: &str,
    what: &str,
    unit: &'static str,
    value: f64,
    peer: Option<(&str, f64)>,
    target: Option<(String, bool)>,
) -> Value {
    let mut figure = balancer_bench_report::Figure::new(id, what, unit, value);
    if let Some((name, v)) = peer {
        figure = figure.peer(name, v);
    }
    if let Some((text, met)) = target {
        figure = figure.target(Target { text, met });
    }
    figure.json()
}

/// One figure over several trials.
#[derive(Debug, Clone, Default)]
struct Trials {
    trials: Vec<f64>,
}

impl Trials {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.trials.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    fn median(&self) -> f64 {
        balancer_bench_report::median(self.trials.iter().copied())
    }

    fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// `median [min..max]`.
    fn show(&self) -> String {
        format!(
            "{} [{}..{}]",
            ns(self.median()),
            ns(self.min()),
            ns(self.max())
        )
    }

    fn json(&self, unit: &str) -> Value {
        json!({
            "unit": unit,
            "median": round3(self.median()),
            "min": round3(self.min()),
            "max": round3(self.max()),
            "trials": self.trials.iter().map(|&t| round3(t)).collect::<Vec<_>>(),
        })
    }
}

fn ns(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Thousands separators, for counts in the human output.
fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Counts heap bytes while the `table` section asks (`heap.rs`).
#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

mod affinity;
mod common;
mod heap;
mod open_loop;
mod origin;
mod peers;
mod table;
mod xdp_testrun;
