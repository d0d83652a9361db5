//! `cargo xtask <command>`: the only entry points a person needs.
//!
//! xtask must build on a fresh machine before anything is installed, so it
//! does not depend on the userspace crate (whose build script compiles the
//! eBPF program); it drives cargo and the `balancer` binary instead.

mod bench;
mod bench_control;
mod bench_http;
mod bench_https;
mod bench_log;
mod bench_open;
mod bench_pps;
mod cpu_cap;
mod demo;
mod fuzz;
mod install;
mod layers;
mod plots;
mod report;
mod setup;
mod test;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the build and the tests need (idempotent).
    Setup,
    /// Set up, then build the release `balancer` binary.
    Build,
    /// Set up, lint, then run unit, BPF_PROG_TEST_RUN and lab tests (root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Set up, build, and show the balancer working in a namespace lab.
    Demo,
    /// Check that the daemon's modules import only downwards (the layers
    /// in xtask/src/layers.rs), with no circle inside a folder and no file
    /// over 800 lines of non-test code; prints the module graph by layer.
    Layers {
        /// Another copy of balancer-userspace/src (default: this tree's).
        #[arg(long)]
        src: Option<std::path::PathBuf>,
    },
    /// Remove labs (namespaces, pins, logs) left behind by killed runs.
    Sweep,
    /// Build the release binary and install it with the systemd units
    /// (balancer.service with XDP, balancer-http.service without root), the
    /// README and the examples.
    Install {
        /// The binary goes to PREFIX/bin, the docs to PREFIX/share/doc/balancer.
        #[arg(long, default_value = "/usr/local")]
        prefix: std::path::PathBuf,
        /// Where the systemd units go.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: std::path::PathBuf,
        /// A staging root for packaging: every file is written under it,
        /// the units still name the final paths.
        #[arg(long)]
        destdir: Option<std::path::PathBuf>,
        /// Install this binary instead of building the release one.
        #[arg(long)]
        bin: Option<std::path::PathBuf>,
    },
    /// Set up, build the cargo-fuzz targets (nightly, AddressSanitizer) and
    /// run each for a while over its seed corpus; fails on a crash, naming
    /// the input (balancer-userspace/fuzz/, xtask/src/fuzz.rs).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Run only this target (default: all, one after the other).
        #[arg(long)]
        target: Option<String>,
    },
    /// Set up, build and run the benchmarks (root); prints tables, writes
    /// the JSON report and plots.
    Bench {
        /// Run only this section (xdp-testrun, xdp-pps, http-cookie, ...).
        #[arg(long)]
        only: Option<String>,
        /// Fewer repetitions: a quick, noisier run.
        #[arg(long)]
        quick: bool,
        /// Where to write the JSON report (default <out>/report.json).
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Where to write plots and the report (default <target>/bench).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Also rewrite README's Performance figures (between its bench
        /// markers) and docs/bench/ (report and plots) from this run.
        #[arg(long)]
        readme: bool,
        /// Build and run debug (dev-profile) binaries: a fast check that
        /// every section runs and reports in shape, as `cargo xtask test`
        /// does; the figures then mean nothing and `--readme` refuses them.
        #[arg(long, conflicts_with = "readme")]
        dev_build: bool,
    },
    /// Rewrite README's Performance figures and docs/bench/ from a report
    /// written earlier by `cargo xtask bench`.
    BenchReadme {
        /// The report (JSON).
        report: std::path::PathBuf,
        /// The README to rewrite (default: the workspace's README.md); its
        /// plots and report go to docs/bench/ next to it.
        #[arg(long)]
        readme_file: Option<std::path::PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    util::ensure_cargo_bin_on_path();
    let result = match cli.command {
        Command::Setup => setup::run(),
        Command::Build => setup::run().and_then(|()| util::build_balancer(true).map(|_| ())),
        Command::Test { args } => test::run(&args),
        Command::Demo => demo::run(),
        Command::Layers { src } => layers::run(src.as_deref()),
        Command::Sweep => sweep(),
        Command::Install {
            prefix,
            unit_dir,
            destdir,
            bin,
        } => install::run(&install::Options {
            prefix,
            unit_dir,
            destdir,
            bin,
        }),
        Command::Fuzz { time, target } => fuzz::run(&fuzz::Options { time, target }),
        Command::Bench {
            only,
            quick,
            json,
            out,
            readme,
            dev_build,
        } => bench::run(&bench::Options {
            only,
            quick,
            json,
            out,
            readme,
            release: !dev_build,
        }),
        Command::BenchReadme {
            report,
            readme_file,
        } => bench::readme_from(&report, readme_file.as_deref()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn sweep() -> anyhow::Result<()> {
    let removed = balancer_tests::lab::sweep()?;
    if removed.is_empty() {
        println!("sweep: nothing left behind");
    }
    for r in removed {
        println!("sweep: removed {r}");
    }
    Ok(())
}
