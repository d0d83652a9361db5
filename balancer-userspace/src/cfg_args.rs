//! The command line's settings for a haproxy.cfg: what HAProxy has no
//! words for (`balancer run|check-config|convert`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use balancer::config::{Config, haproxy::Options};
use clap::Args;

#[derive(Args, Debug, Default)]
pub struct CfgArgs {
    /// haproxy.cfg only: an XDP interface for `mode tcp` frontends (repeat for several).
    #[arg(long = "interface", value_name = "IF")]
    pub interfaces: Vec<String>,
    /// haproxy.cfg only: XDP attach mode (auto, native, generic).
    #[arg(long, value_name = "MODE")]
    pub xdp_mode: Option<String>,
    /// haproxy.cfg only: how `mode tcp` backends forward packets (dsr-l2,
    /// the default, or ipip).
    #[arg(long, value_name = "MODE")]
    pub forward: Option<String>,
    /// haproxy.cfg only: where the maps are pinned (a bpffs directory).
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<String>,
    /// haproxy.cfg only: the admin API's socket.
    #[arg(long, value_name = "PATH")]
    pub admin_socket: Option<String>,
    /// haproxy.cfg only: this instance's name in `peers` (default: global
    /// `localpeer`, else the host name).
    #[arg(long, value_name = "NAME")]
    pub local_peer: Option<String>,
    /// haproxy.cfg only: a file holding the peers' shared secret (16 bytes
    /// or more; HAProxy's peers have none, balancer's links are authenticated).
    #[arg(long, value_name = "FILE")]
    pub peers_secret_file: Option<PathBuf>,
}

impl CfgArgs {
    pub fn options(&self) -> anyhow::Result<Options> {
        let peers_secret = match &self.peers_secret_file {
            None => None,
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading the peers secret {}", f.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
        };
        Ok(Options {
            interfaces: self.interfaces.clone(),
            xdp_mode: self.xdp_mode.clone(),
            forward: self.forward.clone(),
            pin_dir: self.pin_dir.clone(),
            admin_socket: self.admin_socket.clone(),
            local_peer: self.local_peer.clone(),
            peers_secret,
        })
    }
}

/// `balancer check-config`: validate, show what was skipped, summarize;
/// with `json`, the same as one JSON object on stdout (the error too, also
/// said on stderr as every error is).
pub fn check_config(config: &Path, cfg: &CfgArgs, json: bool) -> anyhow::Result<()> {
    let result = checked(config, cfg);
    if json {
        let v = match &result {
            Ok(s) => serde_json::json!({
                "file": config, "ok": true, "frontends": s.frontends, "backends": s.backends,
                "servers": s.servers, "certificates": s.certificates, "warnings": s.warnings,
                "resolved": s.resolved.iter().map(|(server, host, address)| serde_json::json!({
                    "server": server, "host": host, "address": address,
                })).collect::<Vec<_>>(),
            }),
            Err(e) => serde_json::json!({
                "file": config, "ok": false, "error": crate::one_line(e),
            }),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    let s = result?;
    if !json {
        for w in &s.warnings {
            eprintln!("warning: {w}");
        }
        println!(
            "{}: ok ({} frontends, {} backends, {} servers{})",
            config.display(),
            s.frontends,
            s.backends,
            s.servers,
            if s.certificates == 0 {
                String::new()
            } else {
                format!(", {} certificates", s.certificates)
            }
        );
        for (server, name, addr) in &s.resolved {
            println!("server {server}: {name} resolved to {addr}");
        }
    }
    Ok(())
}

/// What `check-config` found in a valid file.
struct Summary {
    frontends: usize,
    backends: usize,
    servers: usize,
    certificates: usize,
    warnings: Vec<String>,
    /// Servers written with a host name: server, name, address found.
    resolved: Vec<(String, String, String)>,
}

fn checked(config: &Path, cfg: &CfgArgs) -> anyhow::Result<Summary> {
    let c = Config::load_with(config, &cfg.options()?)?;
    // The certificates too: what the daemon would load.
    let tls = crate::daemon::load_tls(&c)?;
    balancer::control::server_tls_of(&c)?;
    // Host names: what the system resolver (or init_addr) gave now; a
    // start or reload looks them up again.
    let mut resolved = Vec::new();
    for b in &c.backends {
        for s in &b.servers {
            if let Some(host) = &s.host {
                let (name, addr) = match s.port {
                    Some(p) => (
                        format!("{host}:{p}"),
                        std::net::SocketAddr::new(s.address, p).to_string(),
                    ),
                    None => (host.clone(), s.address.to_string()),
                };
                resolved.push((format!("{}/{}", b.name, s.name), name, addr));
            }
        }
    }
    Ok(Summary {
        frontends: c.frontends.len(),
        backends: c.backends.len(),
        servers: c.backends.iter().map(|b| b.servers.len()).sum(),
        certificates: tls.values().map(|t| t.certificates().len()).sum(),
        warnings: c.warnings.iter().map(ToString::to_string).collect(),
        resolved,
    })
}
