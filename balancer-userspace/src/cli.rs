//! The command line: every command, flag and argument, with its help.

use std::path::PathBuf;

use balancer::config::DEFAULT_ADMIN_SOCKET;
use clap::{Parser, Subcommand};

use crate::cfg_args;

#[derive(Parser)]
#[command(
    name = "balancer",
    version,
    about = "Kernel-accelerated sticky load balancer"
)]
pub(crate) struct Cli {
    /// Admin socket of the daemon, for the commands that ask it (status,
    /// stats, backend, table, peers; they take it after their name too).
    /// Default: /run/balancer/admin.sock.
    #[arg(long, value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `--socket` of the commands that ask the running daemon.
#[derive(clap::Args)]
pub(crate) struct Socket {
    /// Admin socket of the daemon (default: /run/balancer/admin.sock).
    #[arg(long, value_name = "PATH", global = true)]
    pub(crate) socket: Option<PathBuf>,
}

/// `--json` of the commands that change something: print the daemon's
/// answer as JSON.
#[derive(clap::Args)]
pub(crate) struct Json {
    /// Print the daemon's answer as JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Load and attach the XDP program and run until SIGINT/SIGTERM.
    Run {
        /// Configuration file: balancer's TOML, or a haproxy.cfg.
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        cfg: cfg_args::CfgArgs,
        /// Discard the state pinned by an earlier daemon (stick table,
        /// counters, XDP attachments) instead of taking it over.
        #[arg(long)]
        reset: bool,
        /// Take over from the daemon running on the same admin socket
        /// without dropping a connection: it hands over its HTTP listening
        /// sockets, stops accepting and lets its requests in flight
        /// finish (a restart or an upgrade; HAProxy's `-x`).
        #[arg(long)]
        takeover: bool,
    },
    /// Remove what `balancer run` leaves behind on purpose: the XDP
    /// attachments (XDP stops) and the pinned stick table and counters.
    /// Refused while a daemon runs with the same pin_dir.
    Detach {
        /// Configuration file whose `dataplane.pin_dir` to clear.
        #[arg(long, short, conflicts_with = "pin_dir")]
        config: Option<PathBuf>,
        /// The pin directory itself.
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Print {"pin_dir", "removed": [paths]} instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a deployment before it bites: privilege, bpffs, network
    /// namespace, pin_dir lock, interfaces and veth peers, DSR backends.
    /// One line per check (ok, warn, FAIL) with the command to run for
    /// anything not ok; exit status 1 when one FAILs.
    #[command(group(clap::ArgGroup::new("what").required(true)))]
    Doctor {
        /// Configuration file to check this host against: balancer's TOML,
        /// or a haproxy.cfg.
        #[arg(long, short, group = "what")]
        config: Option<PathBuf>,
        #[command(flatten)]
        cfg: cfg_args::CfgArgs,
        /// Instead, check this host as a DSR backend of this VIP: the VIP on
        /// lo, arp_ignore and arp_announce (no configuration needed).
        #[arg(long, value_name = "VIP", group = "what")]
        dsr_backend: Option<std::net::IpAddr>,
        /// With --dsr-backend: the balancer forwards with `forward = "ipip"`:
        /// also check the ipip/ip6tnl device and rp_filter.
        #[arg(long, requires = "dsr_backend")]
        ipip: bool,
        /// Print a JSON array of {check, subject, status, detail, fix}.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file without touching the system.
    CheckConfig {
        /// Configuration file: balancer's TOML, or a haproxy.cfg.
        config: PathBuf,
        #[command(flatten)]
        cfg: cfg_args::CfgArgs,
        /// Print the verdict as JSON on stdout ({"file", "ok", and the
        /// counts and warnings, or the error}).
        #[arg(long)]
        json: bool,
    },
    /// Print a haproxy.cfg as balancer's TOML (each block names its lines).
    Convert {
        /// The haproxy.cfg.
        config: PathBuf,
        #[command(flatten)]
        cfg: cfg_args::CfgArgs,
    },
    /// Data-plane counters of a running daemon: packet classes and, through
    /// the admin API, per-frontend stick-table counters. With --pin-dir or
    /// --config, only the packet classes, read from the pinned map.
    Stats {
        /// Read the pinned map under this directory (the daemon's `dataplane.pin_dir`).
        #[arg(long, conflicts_with = "config")]
        pin_dir: Option<PathBuf>,
        /// Read pin_dir from this configuration file instead.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: Socket,
    },
    /// Servers: list them, change their state or weight.
    Backend {
        #[command(subcommand)]
        cmd: BackendCmd,
        #[command(flatten)]
        socket: Socket,
    },
    /// The stick table: show, count, set or clear entries.
    Table {
        #[command(subcommand)]
        cmd: TableCmd,
        #[command(flatten)]
        socket: Socket,
    },
    /// Stick-table replication with the other instances (`[peers]`).
    Peers {
        #[command(subcommand)]
        cmd: PeersCmd,
        #[command(flatten)]
        socket: Socket,
    },
    /// Frontends, servers and table occupancy of the running daemon.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: Socket,
    },
    /// On a backend: strip the IPIP/IP6IP6 encapsulation of `forward = "ipip"`
    /// in XDP (for kernels without ipip/ip6tnl devices), until SIGINT/SIGTERM.
    /// IP-in-IP from any other source than the balancers' is dropped.
    Decap {
        /// Interface the encapsulated packets arrive on.
        #[arg(long, short)]
        interface: String,
        /// A balancer's tunnel source address (its `tunnel_source_v4`/`_v6`):
        /// the only outer sources accepted. Required; repeat for several.
        #[arg(long = "tunnel-source", value_name = "ADDRESS", required = true)]
        tunnel_sources: Vec<std::net::IpAddr>,
        /// How XDP runs: native (in the driver), generic (in the kernel's
        /// stack, any interface), auto (native where the driver has it).
        #[arg(long, default_value = "auto", value_parser = ["auto", "native", "generic"])]
        xdp_mode: String,
    },
    /// Send generated traffic out of an interface (BPF_PROG_TEST_RUN live
    /// frames): one template frame, source addresses cycling through a range.
    Gen {
        /// Interface to send the frames out of.
        #[arg(long, short)]
        interface: String,
        /// Destination ADDRESS:PORT (IPv6 as [ADDRESS]:PORT).
        #[arg(long)]
        dst: std::net::SocketAddr,
        /// Destination MAC (the next hop: the balancer).
        #[arg(long)]
        dst_mac: String,
        /// Source MAC (default: the interface's).
        #[arg(long)]
        src_mac: Option<String>,
        /// First source address.
        #[arg(long)]
        src: std::net::IpAddr,
        /// Number of distinct source addresses.
        #[arg(long, default_value_t = 65536)]
        src_count: u32,
        /// What each frame is: a TCP SYN, a TCP ACK, or a UDP datagram.
        #[arg(long, default_value = "tcp-syn", value_parser = ["tcp-syn", "tcp-ack", "udp"])]
        proto: String,
        /// Frames to send (0: until --duration).
        #[arg(long, default_value_t = 0)]
        count: u64,
        /// Seconds to send for.
        #[arg(long)]
        duration: Option<f64>,
        /// Frames per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<u64>,
        /// Payload bytes after the transport header.
        #[arg(long, default_value_t = 0)]
        payload: usize,
    },
    /// Attach a pass-everything XDP program to the peer of a veth on which
    /// `balancer run` is attached, until SIGINT/SIGTERM: a veth only takes
    /// its peer's XDP_TX frames when it runs XDP or (Linux 5.13 or later)
    /// has GRO on (`ethtool -K IF gro on` does it without a process).
    XdpPass {
        /// The veth peer to attach it to.
        #[arg(long, short)]
        interface: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum BackendCmd {
    /// Every server with its state, next hop and counters.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set a server's state: up, drain (keeps its clients, no new ones),
    /// down or maint (its clients move on their next packet).
    State {
        /// SERVER, or BACKEND/SERVER when several backends have one of that name.
        name: String,
        /// The state to set.
        #[arg(value_parser = ["up", "drain", "down", "maint"])]
        state: String,
        #[command(flatten)]
        out: Json,
    },
    /// Set a server's weight (0-256) for new clients.
    Weight {
        /// SERVER, or BACKEND/SERVER when several backends have one of that name.
        name: String,
        /// 0 (no new clients) to 256.
        weight: u32,
        #[command(flatten)]
        out: Json,
    },
    /// Add a server to a backend of the running daemon (not written to the
    /// config file: a reload or restart applies the file again).
    Add {
        /// The backend (as in the config file).
        backend: String,
        /// The new server's name.
        server: String,
        /// Its address (the family of the backend's frontends); IP:PORT for
        /// HTTP servers.
        address: String,
        /// HTTP backends: the value of the persistence cookie naming it.
        #[arg(long)]
        cookie: Option<String>,
        /// Its weight, 0 to 256.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=256))]
        weight: u32,
        /// Its state to begin with.
        #[arg(long, default_value = "up", value_parser = ["up", "drain", "down", "maint"])]
        state: String,
        /// Health-check it like the backend's servers (inter 2s, rise 2, fall 3).
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        out: Json,
    },
    /// Remove a server from the running daemon: its clients get a new
    /// server on their next packet.
    Remove {
        /// SERVER, or BACKEND/SERVER when several backends have one of that name.
        name: String,
        #[command(flatten)]
        out: Json,
    },
}

#[derive(Subcommand)]
pub(crate) enum PeersCmd {
    /// Each peer's link state, last contact, entries sent/received, lag.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum TableCmd {
    /// Entries, optionally of one frontend and/or one client.
    Show {
        /// Only this frontend's entries (an HTTP frontend's: its backend's).
        #[arg(long)]
        frontend: Option<String>,
        /// Only this client's entries (an IP address).
        #[arg(long)]
        client: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Number of entries (optionally of one frontend).
    Count {
        /// Only this frontend's entries (an HTTP frontend's: its backend's).
        #[arg(long)]
        frontend: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send CLIENT to SERVER on FRONTEND from now on.
    Set {
        /// The frontend whose table it is (an HTTP frontend's: its backend's).
        frontend: String,
        /// The client's IP address (cut to the table's key mask).
        client: String,
        /// SERVER, or BACKEND/SERVER, to send it to.
        server: String,
        #[command(flatten)]
        out: Json,
    },
    /// Delete entries: one frontend's, one client's, or with --all every
    /// frontend's (one of them must be given).
    #[command(group(clap::ArgGroup::new("which").required(true).multiple(true)))]
    Clear {
        /// Only this frontend's entries (an HTTP frontend's: its backend's).
        #[arg(long, group = "which")]
        frontend: Option<String>,
        /// Only this client's entries (an IP address).
        #[arg(long, group = "which")]
        client: Option<String>,
        /// Every entry of every frontend.
        #[arg(long, group = "which", conflicts_with_all = ["frontend", "client"])]
        all: bool,
        #[command(flatten)]
        out: Json,
    },
}

impl Command {
    /// The command's name, as typed.
    fn name(&self) -> String {
        let matches = <Cli as clap::CommandFactory>::command();
        // The first word after the options that clap takes for a command.
        std::env::args()
            .skip(1)
            .find(|a| matches.find_subcommand(a).is_some())
            .unwrap_or_else(|| "this command".to_owned())
    }

    /// The admin socket this command asks: its own `--socket`, else the
    /// one given before the command's name, else the default. A
    /// `--socket` before a command that asks no daemon is refused rather
    /// than ignored.
    pub(crate) fn socket(&self, before: Option<PathBuf>) -> anyhow::Result<PathBuf> {
        let own = match self {
            Command::Backend { socket, .. }
            | Command::Table { socket, .. }
            | Command::Peers { socket, .. }
            | Command::Status { socket, .. } => Some(&socket.socket),
            Command::Stats {
                pin_dir: None,
                config: None,
                socket,
                ..
            } => Some(&socket.socket),
            Command::Stats { socket, .. } => {
                if socket.socket.is_some() || before.is_some() {
                    anyhow::bail!(
                        "--socket: stats with --pin-dir or --config reads the pinned map, \
                         not the daemon; give one or the other"
                    );
                }
                None
            }
            _ => None,
        };
        match own {
            Some(own) => Ok(own
                .clone()
                .or(before)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ADMIN_SOCKET))),
            None => match before {
                Some(_) => anyhow::bail!(
                    "--socket is for the commands that ask the running daemon (status, stats, \
                     backend, table, peers); {} does not use it",
                    self.name()
                ),
                None => Ok(PathBuf::from(DEFAULT_ADMIN_SOCKET)),
            },
        }
    }
}
