//! Configuration: TOML file -> raw serde structs -> validated [`Config`].
//!
//! The concepts mirror HAProxy's: `frontend`s bind a virtual service and
//! name a `default_backend`; `backend`s hold `server`s, a `stick_table` and
//! the forwarding mode. Defaults live here, in one place:
//! - `dataplane.xdp_mode` = `"auto"` (native, falling back to generic with a warning)
//! - `dataplane.pin_dir`  = `"/sys/fs/bpf/balancer"`
//! - `dataplane.insert_cap` = [`DEFAULT_INSERT_CAP`] (10,000 new stick entries per CPU
//!   per second; 0 = no cap)
//! - `dataplane.stick_refresh` = `"1s"`
//! - `global.maxconn`: what the descriptor limit allows (the daemon's budget)
//! - `frontend.mode` = `"l4"`, `frontend.proto` = `"tcp"`
//! - `backend.forward` = `"dsr-l2"`
//! - `backend.stick_table` = `{ type = <the VIP's family>, size = "1m", expire = "30m" }`
//! - `server.weight` = 1, `server.state` = `"up"`
//! - `server.init_addr` = the backend's `init_addr`, else `"last,libc"`: see [`hosts`]
//! - `admin.socket` = `"/run/balancer/admin.sock"`
//! - `metrics.bind`: none (no metrics endpoint unless set, e.g. `"127.0.0.1:9100"`)
//! - `metrics.table_count_interval` = `"10s"` (stick-table entry count, at least 1s)
//! - `[resolvers.NAME]` and `server_template`: see [`resolvers`]
//! - `[peers.NAME]`: see [`peers`]
//!
//! A key valid on its own that would have no effect where it stands is an
//! error too (the context checks of `backend.rs`, `cookie.rs`, `peers.rs`,
//! `resolvers.rs` and `effect.rs`).

mod backend;
pub mod cookie;
mod dataplane;
mod effect;
mod frontend;
pub mod haproxy;
mod hints;
mod hosts;
#[cfg(test)]
mod hosts_tests;
mod log;
#[cfg(test)]
mod log_tests;
mod peers;
mod proxy_protocol;
mod resolvers;
mod server;
mod stick;
mod tls;
mod units;

use balancer_common::maps::ID_NAME_LEN;
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

pub use backend::{
    Backend, Balance, DEFAULT_TIMEOUT_CONNECT, DEFAULT_TIMEOUT_SERVER, Forward, HttpBackend,
};
pub use dataplane::{DEFAULT_INSERT_CAP, Dataplane, XdpMode};
pub use frontend::{
    DEFAULT_H2_MAX_STREAMS, DEFAULT_MAX_HEADER_BYTES, DEFAULT_TIMEOUT_CLIENT, Frontend,
    HttpFrontend, Mode, Proto,
};
pub use hosts::{Lookup, Resolve, libc_resolve, no_resolve};
pub use log::{FACILITIES, LogFormat, LogSettings, LogTarget};
pub use peers::PeersConfig;
pub use proxy_protocol::{AcceptProxy, Net, SendProxy, V2_SIG};
pub use resolvers::{Family, InitAddr, Resolvers, ServerTemplate, fqdn_problem};
use serde::Deserialize;
pub use server::{
    AdminState, CheckKind, CheckTiming, DEFAULT_CHECK_STATUS, Server, default_check_timeout,
    method_problem, parse_server_address, parse_status_list, server_name_problem,
};
pub use stick::{KeyMask, StickRules};
pub use tls::{ALPN_PROTOCOLS, ServerSsl, TLS12_SUITES, TLS13_SUITES, TlsSettings, TlsVersion};
pub use units::{parse_duration, parse_size};

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/balancer";
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/balancer/admin.sock";
const DEFAULT_STICK_SIZE: u64 = 1 << 20;
const DEFAULT_EXPIRE: Duration = Duration::from_secs(30 * 60);
pub const MAX_WEIGHT: u32 = 256;
const DEFAULT_TABLE_COUNT_INTERVAL: Duration = Duration::from_secs(10);
/// Largest `stick_table.size` of one backend, and of all together: the
/// kernel preallocates the LRU table (about 100 bytes an entry): `16m`,
/// 16 x 2^20 entries.
pub const MAX_STICK_SIZE: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}:{line}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        /// Line of the offending value (or of its table when the key is
        /// missing); 0 when it cannot be located.
        line: usize,
        key: String,
        reason: String,
    },
    #[error(
        "config {path} is {size} bytes, more than {MAX_CONFIG_BYTES}: not a configuration file?"
    )]
    TooLarge { path: PathBuf, size: u64 },
    #[error("config {path} is not a regular file")]
    NotAFile { path: PathBuf },
}

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// The line of `key` (as the validator names it: `backend[0].server[1].weight`)
/// in `text`: the value's line, else the nearest enclosing table's. 0 if
/// nothing of the path is found.
fn locate(text: &str, key: &str) -> usize {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else {
        return 0;
    };
    let mut item: &toml_edit::Item = doc.as_item();
    let mut span = None;
    for seg in key.split('.') {
        let (name, index) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let Some(next) = item.get(name) else {
            break;
        };
        item = next;
        span = item.span().or(span);
        if let Some(i) = index {
            let Some(next) = item.get(i) else {
                break;
            };
            item = next;
            span = item.span().or(span);
        }
    }
    span.map_or(0, |s| line_col(text, s.start).0)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    dataplane: dataplane::RawDataplane,
    #[serde(default)]
    frontend: Vec<frontend::RawFrontend>,
    #[serde(default)]
    backend: Vec<backend::RawBackend>,
    global: Option<RawGlobal>,
    /// Defaults for the frontends' `log` tables.
    log: Option<log::RawLog>,
    admin: Option<RawAdmin>,
    metrics: Option<RawMetrics>,
    #[serde(default)]
    resolvers: BTreeMap<String, resolvers::RawResolvers>,
    #[serde(default)]
    peers: std::collections::BTreeMap<String, peers::RawPeers>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    bind: String,
    table_count_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    maxconn: Option<u32>,
    server_state_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    socket: Option<PathBuf>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[global] maxconn`: client connections of all HTTP frontends at
    /// once; `None`: as many as the descriptor limit allows (see the
    /// daemon's descriptor budget).
    pub maxconn: Option<u32>,
    /// `[global] server_state_file`: where runtime server changes are kept
    /// for a restart (HAProxy's `server-state-file`); `None`: a reload
    /// keeps them, a restart does not.
    pub server_state_file: Option<PathBuf>,
    pub dataplane: Dataplane,
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
    pub admin_socket: PathBuf,
    /// `[metrics] bind`: where `GET /metrics` is served; None = not served.
    pub metrics_bind: Option<SocketAddr>,
    /// `[metrics] table_count_interval`: how often the stick table's
    /// entries are counted (a walk over the whole table).
    pub table_count_interval: Duration,
    /// `[resolvers.NAME]` sections, by name.
    pub resolvers: Vec<Resolvers>,
    /// `[peers.<section>]`: stick-table replication with other instances.
    pub peers: Option<PeersConfig>,
    /// Read from a haproxy.cfg: balancer's own settings it was given (a
    /// reload reads the file again with them).
    pub haproxy: Option<haproxy::Options>,
    /// Keywords skipped, each `FILE:LINE: why` (a haproxy.cfg's `log`,
    /// `daemon`, ...), for the caller to show.
    pub warnings: Vec<String>,
}

/// Entries of the stick tables that use the shared table: those of
/// backends of L4 frontends, and of HTTP ones with `stick` rules (an HTTP
/// backend without them has no table).
pub fn stick_size_total(frontends: &[Frontend], backends: &[Backend]) -> u64 {
    backends
        .iter()
        .enumerate()
        .filter(|(bi, b)| {
            let l4 = frontends
                .iter()
                .any(|f| f.backend == *bi && f.mode == Mode::L4);
            l4 || b.http.as_ref().is_some_and(|h| h.stick.any())
        })
        .map(|(_, b)| b.stick_size)
        .sum()
}

/// What to write instead of a bare number where a string is wanted (TOML
/// says only "expected a string"): a duration with its unit, a size with
/// its suffix. `at`: where the value starts in `text`.
fn quote_hint(text: &str, at: usize, message: &str) -> Option<String> {
    if !(message.starts_with("invalid type: integer") || message.starts_with("invalid type: float"))
        || !message.contains("expected a string")
    {
        return None;
    }
    let before = text.get(..at)?;
    let key = before[..before.rfind('=')?]
        .trim_end()
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .next()?;
    let value = text[at..]
        .split(|c: char| c == ',' || c == '}' || c.is_whitespace())
        .next()
        .unwrap_or_default();
    let duration = [
        "timeout", "inter", "expire", "refresh", "interval", "hold", "maxidle", "maxlife",
    ]
    .iter()
    .any(|d| key.contains(d));
    Some(if duration {
        format!(
            "{key} is a duration: a string with its unit, e.g. \"{value}s\" or \"{value}ms\" (ms, s, \
             m, h, d)"
        )
    } else if key == "size" {
        format!(
            "{key} is a string: \"{value}\", or with a suffix, e.g. \"1m\" (k = 1,024, m = 1,048,576)"
        )
    } else {
        format!("{key} is a string: write \"{value}\"")
    })
}

impl Config {
    /// Whether the daemon needs the kernel data plane (the XDP program,
    /// its maps pinned under `pin_dir`, so root and a bpffs): with an XDP
    /// interface, or with `pin_dir` set (HTTP stick tables then live in a
    /// pinned map, which a restart keeps, `kill -9` included). Otherwise
    /// (HTTP only) the maps live in the process and nothing of the
    /// kernel's is needed; `[peers]` replicates the table in memory.
    pub fn needs_kernel(&self) -> bool {
        self.dataplane.needs_kernel()
    }

    /// Read and validate a config file (TOML, or a haproxy.cfg with no
    /// settings of balancer's own: see [`Config::load_with`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, &haproxy::Options::default())
    }

    /// Read and validate a config file: balancer's TOML, or a haproxy.cfg
    /// (by its `.cfg` name or its first word) with `opts` for what HAProxy
    /// has no words for. `opts` must be empty for a TOML file (its own
    /// keys say it).
    pub fn load_with(path: &Path, opts: &haproxy::Options) -> Result<Self, ConfigError> {
        Self::load_looking_up(path, opts, &Lookup::system())
    }

    /// A reload's [`Config::load_with`], with the haproxy.cfg settings
    /// `running` was given: `init_addr` `last` takes the address a server
    /// has in `running` (when its address is still the same host name).
    pub fn reload(path: &Path, running: &Config) -> Result<Self, ConfigError> {
        let lookup = Lookup {
            last: Some(running),
            ..Lookup::system()
        };
        let opts = running.haproxy.clone().unwrap_or_default();
        Self::load_looking_up(path, &opts, &lookup)
    }

    /// [`Config::load_with`] with the servers' host names looked up by
    /// `lookup`.
    pub fn load_looking_up(
        path: &Path,
        opts: &haproxy::Options,
        lookup: &Lookup<'_>,
    ) -> Result<Self, ConfigError> {
        let text = read_config(path)?;
        if haproxy::is_haproxy(path, &text) {
            return Self::parse_haproxy_looking_up(path, &text, opts, lookup);
        }
        if *opts != haproxy::Options::default() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                line: 0,
                key: "command line".into(),
                reason: "--interface, --xdp-mode, --pin-dir, --admin-socket, --local-peer and \
                         --peers-secret-file are for a haproxy.cfg; a TOML file says them with \
                         its own keys"
                    .into(),
            });
        }
        Self::parse_with(path, &text, lookup)
    }

    /// Validate a haproxy.cfg's text: converted to TOML (`haproxy`), then
    /// validated like any TOML, every error naming the .cfg's line.
    pub fn parse_haproxy(
        path: &Path,
        text: &str,
        opts: &haproxy::Options,
    ) -> Result<Self, ConfigError> {
        Self::parse_haproxy_looking_up(path, text, opts, &Lookup::system())
    }

    /// [`Config::parse_haproxy`] with the host names of `server` lines
    /// looked up by `lookup`.
    pub fn parse_haproxy_looking_up(
        path: &Path,
        text: &str,
        opts: &haproxy::Options,
        lookup: &Lookup<'_>,
    ) -> Result<Self, ConfigError> {
        let conv = haproxy_toml(path, text, opts, lookup)?;
        let mut c = Self::parse(path, &conv.toml).map_err(|e| match e {
            ConfigError::Parse {
                path,
                line,
                message,
                ..
            } => ConfigError::Invalid {
                path,
                line: conv.source(line),
                key: "value".into(),
                reason: message,
            },
            ConfigError::Invalid {
                path,
                line,
                key,
                reason,
            } => ConfigError::Invalid {
                path,
                line: conv.source(line),
                key,
                reason,
            },
            other => other,
        })?;
        c.warnings = conv
            .warnings
            .iter()
            .map(|w| format!("{}:{}: {}", path.display(), w.line, w.text))
            .collect();
        c.haproxy = Some(opts.clone());
        // The names the TOML's addresses came from.
        for (backend, server, host) in conv.hosts {
            let b = c.backends.iter_mut().find(|b| b.name == backend);
            if let Some(s) = b.and_then(|b| b.servers.iter_mut().find(|s| s.name == server)) {
                s.host = Some(host);
            }
        }
        Ok(c)
    }

    /// Validate config text; `path` only names the source in errors. Pure:
    /// a server's host name is refused, not looked up ([`Config::parse_with`]).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::parse_with(path, text, &Lookup::pure())
    }

    /// [`Config::parse`] with the servers' host names looked up by `lookup`.
    pub fn parse_with(path: &Path, text: &str, lookup: &Lookup<'_>) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            let mut message = e.message().trim().to_owned();
            if let Some(hint) = e.span().and_then(|s| quote_hint(text, s.start, &message)) {
                message = format!("{message}: {hint}");
            } else if let Some(near) = hints::unknown_key(&message) {
                message = near;
            }
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        })?;
        Validator { path, lookup }
            .validate(raw)
            .map_err(|e| match e {
                ConfigError::Invalid {
                    path, key, reason, ..
                } => ConfigError::Invalid {
                    line: locate(text, &key),
                    path,
                    key,
                    reason,
                },
                other => other,
            })
    }
}

/// A config file's text: a regular file, at most [`MAX_CONFIG_BYTES`], UTF-8.
fn read_config(path: &Path) -> Result<String, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() {
        return Err(ConfigError::NotAFile {
            path: path.to_owned(),
        });
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
        });
    }
    std::fs::read_to_string(path).map_err(read_err)
}

/// A haproxy.cfg's text as TOML (environment variables from the process);
/// a line it cannot convert is an error naming it.
fn haproxy_toml(
    path: &Path,
    text: &str,
    opts: &haproxy::Options,
    lookup: &Lookup<'_>,
) -> Result<haproxy::Converted, ConfigError> {
    let env = |k: &str| std::env::var(k).ok();
    haproxy::convert_looking_up(text, opts, &env, lookup).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        line: e.line,
        key: e.keyword,
        reason: e.reason,
    })
}

/// `balancer convert`: the haproxy.cfg at `path` as balancer's TOML, once
/// it validates (so the output passes `check-config`), headed by what was
/// skipped.
pub fn convert_file(path: &Path, opts: &haproxy::Options) -> Result<String, ConfigError> {
    let text = read_config(path)?;
    let checked = Config::parse_haproxy(path, &text, opts)?;
    let conv = haproxy_toml(path, &text, opts, &Lookup::system())?;
    let mut out = format!(
        "# {} as balancer's TOML (`balancer convert`); each block names the lines it comes from.\n",
        path.display()
    );
    for w in &checked.warnings {
        out.push_str(&format!("# skipped: {w}\n"));
    }
    out.push_str(&conv.toml);
    Ok(out)
}

struct Validator<'a> {
    path: &'a Path,
    lookup: &'a Lookup<'a>,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: 0,
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let (dataplane, dataplane_keys) = self.dataplane(raw.dataplane)?;
        let resolvers = self.resolvers(raw.resolvers)?;
        let mut backends = Vec::new();
        let mut names = BTreeSet::new();
        for (i, b) in raw.backend.into_iter().enumerate() {
            let key = format!("backend[{i}]");
            if !names.insert(b.name.clone()) {
                return Err(self.err(
                    format!("{key}.name"),
                    format!("duplicate backend name {:?}", b.name),
                ));
            }
            // "backend/NAME" names its HTTP stick table in the id map.
            if b.name.is_empty() || b.name.len() + 8 > ID_NAME_LEN || b.name.contains('/') {
                return Err(self.err(
                    format!("{key}.name"),
                    format!(
                        "{:?}: empty, longer than {} bytes or with a '/'",
                        b.name,
                        ID_NAME_LEN - 8
                    ),
                ));
            }
            backends.push(self.backend(&key, b, &resolvers)?);
        }
        let mut frontends = Vec::new();
        let mut fnames = BTreeSet::new();
        let mut vips = BTreeSet::new();
        for (i, f) in raw.frontend.into_iter().enumerate() {
            let key = format!("frontend[{i}]");
            if !fnames.insert(f.name.clone()) {
                return Err(self.err(
                    format!("{key}.name"),
                    format!("duplicate frontend name {:?}", f.name),
                ));
            }
            if f.name.is_empty() || f.name.len() > ID_NAME_LEN || f.name.contains('/') {
                return Err(self.err(
                    format!("{key}.name"),
                    format!(
                        "{:?}: empty, longer than {ID_NAME_LEN} bytes or with a '/'",
                        f.name
                    ),
                ));
            }
            let fe = self.frontend(&key, f, &backends, raw.log.as_ref())?;
            if !vips.insert((fe.vip, fe.proto.number())) {
                return Err(self.err(
                    format!("{key}.bind"),
                    format!(
                        "{} {} is bound by another frontend",
                        fe.proto.as_str(),
                        fe.vip
                    ),
                ));
            }
            frontends.push(fe);
        }
        self.settle_modes(dataplane.interfaces.is_empty(), &frontends, &mut backends)?;
        let max_vips = balancer_common::maps::MAX_VIPS as usize;
        if frontends.len() > max_vips {
            return Err(self.err("frontend", format!("at most {max_vips} frontends")));
        }
        // HTTP stick tables take their ids from the same space.
        let http_tables = backends
            .iter()
            .filter(|b| b.http.as_ref().is_some_and(|h| h.stick.any()))
            .count();
        if frontends.len() + http_tables > max_vips {
            return Err(self.err(
                "backend",
                format!(
                    "{} frontends and {http_tables} http stick tables: at most {max_vips} together",
                    frontends.len()
                ),
            ));
        }
        // The kernel's table holds them all; in process, each table is
        // its own and takes memory only for its entries.
        let total_stick = stick_size_total(&frontends, &backends);
        let kernel = dataplane.needs_kernel();
        if kernel && total_stick > MAX_STICK_SIZE {
            return Err(self.err(
                "backend",
                format!(
                    "stick tables total {total_stick} entries, more than the kernel table's \
                     {MAX_STICK_SIZE}"
                ),
            ));
        }
        let servers: usize = backends
            .iter()
            .map(|b| b.servers.len() + b.template.as_ref().map_or(0, |t| t.count as usize))
            .sum();
        let max_servers = balancer_common::maps::MAX_BACKENDS as usize;
        if servers > max_servers {
            return Err(self.err("backend", format!("at most {max_servers} servers in all")));
        }
        let table_count_interval_set = raw
            .metrics
            .as_ref()
            .is_some_and(|m| m.table_count_interval.is_some());
        let (metrics_bind, table_count_interval) = match raw.metrics {
            None => (None, DEFAULT_TABLE_COUNT_INTERVAL),
            Some(m) => {
                let bind = m.bind.parse::<SocketAddr>().map_err(|_| {
                    self.err(
                        "metrics.bind",
                        format!(
                            "{:?} is not ADDRESS:PORT (e.g. \"127.0.0.1:9100\" or \"[::1]:9100\")",
                            m.bind
                        ),
                    )
                })?;
                let every = match m.table_count_interval {
                    None => DEFAULT_TABLE_COUNT_INTERVAL,
                    Some(t) => parse_duration(&t)
                        .map_err(|r| self.err("metrics.table_count_interval", r))?,
                };
                if every < Duration::from_secs(1) {
                    return Err(self.err("metrics.table_count_interval", "at least 1s"));
                }
                (Some(bind), every)
            }
        };
        let peers =
            peers::validate(raw.peers, &backends).map_err(|(key, reason)| self.err(key, reason))?;
        let (maxconn, server_state_file) = raw
            .global
            .map_or((None, None), |g| (g.maxconn, g.server_state_file));
        if maxconn == Some(0) {
            return Err(self.err("global.maxconn", "at least 1"));
        }
        if let Some(p) = &server_state_file
            && (!p.is_absolute() || p.file_name().is_none())
        {
            return Err(self.err(
                "global.server_state_file",
                format!("{}: an absolute path to a file", p.display()),
            ));
        }
        let keys = effect::GlobalKeys {
            dataplane: dataplane_keys,
            maxconn: maxconn.is_some(),
            table_count_interval: table_count_interval_set,
        };
        self.settle_globals(&keys, &dataplane, &frontends, &backends, &resolvers)?;
        Ok(Config {
            maxconn,
            server_state_file,
            peers,
            dataplane,
            frontends,
            backends,
            metrics_bind,
            table_count_interval,
            resolvers,
            admin_socket: raw
                .admin
                .and_then(|a| a.socket)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ADMIN_SOCKET)),
            haproxy: None,
            warnings: Vec::new(),
        })
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod no_effect_tests;
#[cfg(test)]
mod tests;
