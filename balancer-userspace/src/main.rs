//! The `balancer` command: the daemon and the operator's CLI.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use balancer::{
    config::{Config, DEFAULT_PIN_DIR},
    daemon,
    dataplane::Dataplane,
};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "balancer",
    version,
    about = "Kernel-accelerated sticky load balancer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load and attach the XDP program and run until SIGINT/SIGTERM.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file without touching the system.
    CheckConfig {
        /// Configuration file (TOML).
        config: PathBuf,
    },
    /// Show the data-plane packet counters of a running daemon.
    Stats {
        /// Where the daemon pinned its maps (its `dataplane.pin_dir`).
        #[arg(long, default_value = DEFAULT_PIN_DIR, conflicts_with = "config")]
        pin_dir: PathBuf,
        /// Read pin_dir from this configuration file instead.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes joined by ": ".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(daemon::run(config))?;
        }
        Command::CheckConfig { config } => {
            Config::load(&config)?;
            println!("{}: ok", config.display());
        }
        Command::Stats {
            pin_dir,
            config,
            json,
        } => {
            let pin_dir = match config {
                Some(path) => Config::load(&path)?.dataplane.pin_dir,
                None => pin_dir,
            };
            let stats = Dataplane::pinned_stats(&pin_dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats.to_json())?);
            } else {
                print!("{}", stats.table());
            }
        }
    }
    Ok(())
}
