//! `cargo xtask <command>`: the only entry points a person needs.
//!
//! xtask must build on a fresh machine before anything is installed, so it
//! does not depend on the userspace crate (whose build script compiles the
//! eBPF program); it drives cargo and the `balancer` binary instead.

mod bench;
mod bench_control;
mod bench_http;
mod demo;
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
    /// Remove labs (namespaces, pins, logs) left behind by killed runs.
    Sweep,
    /// Set up, build and run the benchmarks (root); prints tables, writes JSON.
    Bench {
        /// Run only this section (xdp-testrun).
        #[arg(long)]
        only: Option<String>,
        /// Fewer repetitions: a quick, noisier run.
        #[arg(long)]
        quick: bool,
        /// Where to write the JSON report (default target/bench/report.json).
        #[arg(long)]
        json: Option<std::path::PathBuf>,
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
        Command::Sweep => sweep(),
        Command::Bench { only, quick, json } => bench::run(only.as_deref(), quick, json.as_deref()),
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
