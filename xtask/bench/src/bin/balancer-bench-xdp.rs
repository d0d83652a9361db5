//! `balancer-bench-xdp`: attach one of the benchmark reference XDP programs
//! (the benchmarks' own object, `balancer_bench::OBJECT`) to an interface
//! until SIGINT/SIGTERM, for the `xdp-pps` benchmark's peers
//! (`cargo xtask bench --only xdp-pps`).
//!
//! - `bare`: the floor (parse, swap MACs, XDP_TX), what the real program is
//!   compared with.
//!
//! Prints `attached PROGRAM to INTERFACE` once attached; detaches on exit.

use anyhow::{Context as _, bail};
use balancer::{config::XdpMode, dataplane::AuxProgram};
use balancer_common::maps::BARE_PROGRAM;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "balancer-bench-xdp",
    about = "Attach a benchmark reference XDP program (native mode) until SIGINT/SIGTERM"
)]
struct Cli {
    /// Interface to attach to (in the caller's network namespace).
    #[arg(long, short)]
    interface: String,
    /// Which program.
    #[arg(long, default_value = "bare", value_parser = ["bare"])]
    program: String,
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let program = match cli.program.as_str() {
        "bare" => BARE_PROGRAM,
        other => bail!("unknown program {other:?}"),
    };
    // Block the signals before attaching so none is missed, then wait.
    // SAFETY: plain sigset manipulation on a local set; single-threaded here.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            bail!("blocking SIGINT/SIGTERM failed");
        }
        set
    };
    let attached = AuxProgram::attach_from(
        balancer_bench::OBJECT,
        program,
        &cli.interface,
        XdpMode::Native,
    )
    .with_context(|| format!("attaching {program} to {} (native)", cli.interface))?;
    println!("attached {program} to {}", cli.interface);
    let mut sig = 0;
    // SAFETY: `set` is a valid, initialised signal set.
    if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
        bail!("sigwait failed");
    }
    drop(attached);
    Ok(())
}
