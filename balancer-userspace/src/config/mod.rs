//! Configuration: TOML file -> raw serde structs -> validated [`Config`].
//!
//! The concepts mirror HAProxy's: `frontend`s bind a virtual service and
//! name a `default_backend`; `backend`s hold `server`s, a `stick_table` and
//! the forwarding mode. Defaults live here, in one place:
//! - `dataplane.xdp_mode` = `"auto"` (native, falling back to generic with a warning)
//! - `dataplane.pin_dir`  = `"/sys/fs/bpf/balancer"`
//! - `dataplane.insert_cap` = 0 (no cap on new stick entries per CPU per second)
//! - `dataplane.stick_refresh` = `"1s"`
//! - `frontend.mode` = `"l4"`, `frontend.proto` = `"tcp"`
//! - `backend.forward` = `"dsr-l2"`
//! - `backend.stick_table` = `{ type = <the VIP's family>, size = "1m", expire = "30m" }`
//! - `server.weight` = 1, `server.state` = `"up"`
//! - `admin.socket` = `"/run/balancer/admin.sock"`
//! - `metrics.bind`: none (no metrics endpoint unless set, e.g. `"127.0.0.1:9100"`)
//! - `metrics.table_count_interval` = `"10s"` (stick-table entry count, at least 1s)
//! - `[resolvers.NAME]` and `server_template`: see [`resolvers`]

pub mod cookie;
mod resolvers;
mod units;

use balancer_common::maps::ID_NAME_LEN;
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

pub use resolvers::{InitAddr, Resolvers, ServerTemplate, fqdn_problem};
use serde::Deserialize;
pub use units::{parse_duration, parse_size};

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/balancer";
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/balancer/admin.sock";
const DEFAULT_STICK_SIZE: u64 = 1 << 20;
const DEFAULT_EXPIRE: Duration = Duration::from_secs(30 * 60);
pub const MAX_WEIGHT: u32 = 256;
const DEFAULT_TABLE_COUNT_INTERVAL: Duration = Duration::from_secs(10);
/// Largest `stick_table.size` of one backend, and of all together: the
/// kernel preallocates the LRU table (about 90 bytes an entry).
pub const MAX_STICK_SIZE: u64 = 16_000_000;

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

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic with a warning.
    #[default]
    Auto,
    /// Native only: fail if the driver cannot run XDP.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    dataplane: RawDataplane,
    #[serde(default)]
    frontend: Vec<RawFrontend>,
    #[serde(default)]
    backend: Vec<RawBackend>,
    admin: Option<RawAdmin>,
    metrics: Option<RawMetrics>,
    #[serde(default)]
    resolvers: BTreeMap<String, resolvers::RawResolvers>,
    #[serde(default)]
    peers: std::collections::BTreeMap<String, crate::peers::config::RawPeers>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    interfaces: Vec<String>,
    #[serde(default)]
    xdp_mode: XdpMode,
    pin_dir: Option<PathBuf>,
    insert_cap: Option<u32>,
    stick_refresh: Option<String>,
    tunnel_source_v4: Option<Ipv4Addr>,
    tunnel_source_v6: Option<Ipv6Addr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrontend {
    name: String,
    bind: String,
    mode: Option<String>,
    proto: Option<String>,
    default_backend: String,
    // HTTP frontends only.
    timeout_client: Option<String>,
    max_header_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    name: String,
    forward: Option<String>,
    stick_table: Option<RawStickTable>,
    check_type: Option<String>,
    check_path: Option<String>,
    check_port: Option<u16>,
    check_timeout: Option<String>,
    // HTTP backends only.
    balance: Option<String>,
    cookie: Option<String>,
    dynamic_cookie_key: Option<String>,
    #[serde(default)]
    options: Vec<String>,
    timeout_connect: Option<String>,
    timeout_server: Option<String>,
    #[serde(default)]
    server: Vec<RawServer>,
    server_template: Option<resolvers::RawTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStickTable {
    #[serde(rename = "type")]
    ty: Option<String>,
    size: Option<String>,
    expire: Option<String>,
    /// Name of the `[peers.<section>]` this table is replicated with.
    peers: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    name: String,
    address: String,
    /// HTTP backends: the value of the persistence cookie naming this server.
    cookie: Option<String>,
    weight: Option<u32>,
    state: Option<String>,
    check: Option<bool>,
    inter: Option<String>,
    rise: Option<u32>,
    fall: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    bind: String,
    table_count_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    socket: Option<PathBuf>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
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
    pub peers: Option<crate::peers::config::PeersConfig>,
}

#[derive(Debug, Clone)]
pub struct Dataplane {
    /// Interfaces the XDP program is attached to (at least one, no duplicates).
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    /// Directory on a bpffs where the daemon pins its maps.
    pub pin_dir: PathBuf,
    /// New stick entries per CPU per second; 0 = no cap.
    pub insert_cap: u32,
    pub stick_refresh: Duration,
    /// Outer source of IPIP packets; default: the route's preferred source
    /// towards the first IPv4 server.
    pub tunnel_source_v4: Option<Ipv4Addr>,
    pub tunnel_source_v6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// An L4 frontend: a virtual service (VIP) handled by the XDP program.
#[derive(Debug, Clone)]
pub struct Frontend {
    pub name: String,
    pub vip: SocketAddr,
    pub proto: Proto,
    /// Index into [`Config::backends`].
    pub backend: usize,
    pub mode: Mode,
    /// HTTP: how long a client connection may stay idle or take to send
    /// its request headers.
    pub timeout_client: Duration,
    /// HTTP: largest request head (request line and headers).
    pub max_header_bytes: usize,
}

/// A frontend's mode: `l4` is served by the XDP data plane (`bind` is a
/// VIP), `http` by the reverse proxy (`bind` is a local listening address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    L4,
    Http,
}

/// How an HTTP backend picks a server for a user without a valid cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Fewest requests in flight, weighted.
    LeastConn,
    /// Consistent hash of the client address (Maglev over the up servers).
    Source,
}

impl Balance {
    pub const fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "roundrobin",
            Balance::LeastConn => "leastconn",
            Balance::Source => "source",
        }
    }
}

/// Settings of a backend served by the HTTP proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBackend {
    pub balance: Balance,
    pub cookie: Option<cookie::CookieConfig>,
    /// `dynamic` cookies: the secret their values are derived from.
    pub dynamic_cookie_key: Option<String>,
    /// `option persist`: a cookie naming a down server still goes there.
    pub persist: bool,
    /// `option redispatch`: a persistent request whose server cannot be
    /// reached is sent to another one (and gets a new cookie).
    pub redispatch: bool,
    /// `option forwarded`: also add an RFC 7239 `Forwarded` element
    /// (`X-Forwarded-For` is always extended).
    pub forwarded: bool,
    pub timeout_connect: Duration,
    /// Longest wait for the server's response headers.
    pub timeout_server: Duration,
}

impl HttpBackend {
    /// A server's cookie value: its own, else with a `dynamic` cookie the
    /// value derived from `dynamic_cookie_key`, address and port.
    pub fn server_cookie(&self, own: Option<String>, addr: IpAddr, port: u16) -> Option<String> {
        own.or_else(|| match (&self.cookie, &self.dynamic_cookie_key) {
            (Some(c), Some(k)) if c.dynamic => {
                Some(cookie::dynamic_value(k.as_bytes(), addr, port))
            }
            _ => None,
        })
    }
}

pub const DEFAULT_TIMEOUT_CONNECT: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT_SERVER: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT_CLIENT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    DsrL2,
    Ipip,
}

impl Forward {
    pub const fn as_str(self) -> &'static str {
        match self {
            Forward::DsrL2 => "dsr-l2",
            Forward::Ipip => "ipip",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub forward: Forward,
    /// Entries this backend's clients may take in the shared stick table.
    pub stick_size: u64,
    /// An entry unused for this long counts as a miss (HAProxy `expire`).
    pub expire: Duration,
    /// `stick_table.peers`: the peers section replicating this table.
    pub peers: Option<String>,
    /// How servers with `check = true` are checked.
    pub check_kind: CheckKind,
    /// Port checked; default: the first frontend's port using this backend.
    pub check_port: Option<u16>,
    pub servers: Vec<Server>,
    /// Servers discovered through DNS (`server_template`), besides `servers`.
    pub template: Option<ServerTemplate>,
    /// HTTP settings (`balance`, `cookie`, ...): present when an `http`
    /// frontend uses this backend.
    pub http: Option<HttpBackend>,
    /// The first HTTP-only key set in the file (for the error when the
    /// backend turns out to be L4).
    http_key: Option<&'static str>,
}

/// Health check type of a backend (`check_type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP connection is accepted.
    Tcp,
    /// `GET path HTTP/1.0` answers 2xx or 3xx.
    Http { path: String },
}

/// A server's health-check timing (HAProxy's `inter`, `rise`, `fall`,
/// `timeout check`); the default is `inter = 2s, rise = 2, fall = 3`,
/// timeout 2s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckTiming {
    /// Time between checks; also the timeout of one check.
    pub inter: Duration,
    /// Consecutive successes that bring a down server up.
    pub rise: u32,
    /// Consecutive failures that take an up server down.
    pub fall: u32,
    /// One check's time limit (HAProxy's `timeout check`): the backend's
    /// `check_timeout`, else `inter` capped at 5 s.
    pub timeout: Duration,
}

impl Default for CheckTiming {
    fn default() -> Self {
        CheckTiming {
            inter: Duration::from_secs(2),
            rise: 2,
            fall: 3,
            timeout: Duration::from_secs(2),
        }
    }
}

/// The default check timeout for an interval.
pub fn default_check_timeout(inter: Duration) -> Duration {
    inter.min(Duration::from_secs(5))
}

/// Administrative state of a server (HAProxy's `ready`/`drain`/`maint`,
/// plus `down` for a server taken out by hand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    Up,
    Drain,
    Down,
    Maint,
}

impl AdminState {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "up" | "ready" => AdminState::Up,
            "drain" => AdminState::Drain,
            "down" => AdminState::Down,
            "maint" => AdminState::Maint,
            _ => return None,
        })
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            AdminState::Up => "up",
            AdminState::Drain => "drain",
            AdminState::Down => "down",
            AdminState::Maint => "maint",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub address: IpAddr,
    /// HTTP servers: the port (`address = "IP:PORT"`); default: the port of
    /// the frontend using the backend. L4 servers have none.
    pub port: Option<u16>,
    /// HTTP: the persistence cookie's value for this server (or derived
    /// from `dynamic_cookie_key` when the backend's cookie is `dynamic`).
    pub cookie: Option<String>,
    pub weight: u32,
    pub state: AdminState,
    /// `Some` when `check = true`.
    pub check: Option<CheckTiming>,
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
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
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::parse(path, &text)
    }

    /// Validate config text; `path` only names the source in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        Validator { path }.validate(raw).map_err(|e| match e {
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

struct Validator<'a> {
    path: &'a Path,
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
        let dataplane = self.dataplane(raw.dataplane)?;
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
            if f.name.is_empty() || f.name.len() > ID_NAME_LEN {
                return Err(self.err(
                    format!("{key}.name"),
                    format!("{:?}: empty or longer than {ID_NAME_LEN} bytes", f.name),
                ));
            }
            let fe = self.frontend(&key, f, &backends)?;
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
        let total_stick: u64 = backends.iter().map(|b| b.stick_size).sum();
        if total_stick > MAX_STICK_SIZE {
            return Err(self.err(
                "backend",
                format!("stick tables total {total_stick} entries, more than {MAX_STICK_SIZE}"),
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
        let peers = crate::peers::config::validate(raw.peers, &backends)
            .map_err(|(key, reason)| self.err(key, reason))?;
        Ok(Config {
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
        })
    }

    fn dataplane(&self, d: RawDataplane) -> Result<Dataplane, ConfigError> {
        // An empty list is checked against the frontends in settle_modes.
        for (i, name) in d.interfaces.iter().enumerate() {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
                return Err(self.err(
                    "dataplane.interfaces",
                    format!("{name:?} is not a valid interface name"),
                ));
            }
            if d.interfaces[..i].contains(name) {
                return Err(self.err("dataplane.interfaces", format!("{name:?} is listed twice")));
            }
        }
        let pin_dir = d.pin_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR));
        if !pin_dir.is_absolute() {
            return Err(self.err(
                "dataplane.pin_dir",
                format!("{} is not an absolute path", pin_dir.display()),
            ));
        }
        let stick_refresh = match d.stick_refresh {
            Some(s) => parse_duration(&s).map_err(|r| self.err("dataplane.stick_refresh", r))?,
            None => Duration::from_secs(1),
        };
        Ok(Dataplane {
            interfaces: d.interfaces,
            xdp_mode: d.xdp_mode,
            pin_dir,
            insert_cap: d.insert_cap.unwrap_or(0),
            stick_refresh,
            tunnel_source_v4: d.tunnel_source_v4,
            tunnel_source_v6: d.tunnel_source_v6,
        })
    }

    fn frontend(
        &self,
        key: &str,
        f: RawFrontend,
        backends: &[Backend],
    ) -> Result<Frontend, ConfigError> {
        let mode = match f.mode.as_deref().unwrap_or("l4") {
            "l4" => Mode::L4,
            "http" => Mode::Http,
            other => {
                return Err(self.err(
                    format!("{key}.mode"),
                    format!("{other:?}: want \"l4\" or \"http\""),
                ));
            }
        };
        let proto = match f.proto.as_deref().unwrap_or("tcp") {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => {
                return Err(self.err(
                    format!("{key}.proto"),
                    format!("{other:?}: want \"tcp\" or \"udp\""),
                ));
            }
        };
        let vip: SocketAddr = f.bind.parse().map_err(|_| {
            self.err(
                format!("{key}.bind"),
                format!("{:?}: want ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)", f.bind),
            )
        })?;
        if vip.port() == 0
            || vip.ip().is_multicast()
            || (mode == Mode::L4 && vip.ip().is_unspecified())
        {
            return Err(self.err(
                format!("{key}.bind"),
                format!("{vip}: needs a unicast address and a port"),
            ));
        }
        let backend = backends
            .iter()
            .position(|b| b.name == f.default_backend)
            .ok_or_else(|| {
                self.err(
                    format!("{key}.default_backend"),
                    format!("no backend named {:?}", f.default_backend),
                )
            })?;
        let b = &backends[backend];
        let (mut timeout_client, mut max_header_bytes) =
            (DEFAULT_TIMEOUT_CLIENT, DEFAULT_MAX_HEADER_BYTES);
        if mode == Mode::Http {
            if proto != Proto::Tcp {
                return Err(self.err(format!("{key}.proto"), "http frontends are tcp"));
            }
            if let Some(t) = &f.timeout_client {
                timeout_client =
                    parse_duration(t).map_err(|r| self.err(format!("{key}.timeout_client"), r))?;
                if timeout_client < Duration::from_millis(100) {
                    return Err(self.err(format!("{key}.timeout_client"), "at least 100ms"));
                }
            }
            if let Some(n) = f.max_header_bytes {
                if !(1024..=1 << 20).contains(&n) {
                    return Err(self.err(
                        format!("{key}.max_header_bytes"),
                        format!("{n}: want 1024 to 1048576"),
                    ));
                }
                max_header_bytes = n;
            }
        }
        let fe = Frontend {
            name: f.name,
            vip,
            proto,
            backend,
            mode,
            timeout_client,
            max_header_bytes,
        };
        if mode == Mode::Http {
            return Ok(fe);
        }
        for (k, set) in [
            ("timeout_client", f.timeout_client.is_some()),
            ("max_header_bytes", f.max_header_bytes.is_some()),
        ] {
            if set {
                return Err(self.err(format!("{key}.{k}"), "only for mode = \"http\" frontends"));
            }
        }
        for s in &b.servers {
            if s.address.is_ipv4() != vip.is_ipv4() {
                return Err(self.err(
                    format!("{key}.default_backend"),
                    format!(
                        "server {:?} ({}) is not of the VIP's address family; {} needs both the same",
                        s.name,
                        s.address,
                        b.forward.as_str()
                    ),
                ));
            }
        }
        Ok(fe)
    }

    /// The HTTP settings of a backend; `None` when no HTTP key is set.
    fn http_backend(&self, key: &str, b: &RawBackend) -> Result<Option<HttpBackend>, ConfigError> {
        if http_key(b).is_none() {
            return Ok(None);
        }
        let balance = match b.balance.as_deref().unwrap_or("roundrobin") {
            "roundrobin" => Balance::RoundRobin,
            "leastconn" => Balance::LeastConn,
            "source" => Balance::Source,
            other => {
                return Err(self.err(
                    format!("{key}.balance"),
                    format!("{other:?}: want \"roundrobin\", \"leastconn\" or \"source\""),
                ));
            }
        };
        let cookie = match &b.cookie {
            None => None,
            Some(c) => Some(
                cookie::CookieConfig::parse(c).map_err(|r| self.err(format!("{key}.cookie"), r))?,
            ),
        };
        if cookie.as_ref().is_some_and(|c| c.dynamic) && b.dynamic_cookie_key.is_none() {
            return Err(self.err(
                format!("{key}.cookie"),
                "`dynamic` needs dynamic_cookie_key in the same backend",
            ));
        }
        let (mut persist, mut redispatch, mut forwarded) = (false, false, false);
        for (i, o) in b.options.iter().enumerate() {
            match o.as_str() {
                "persist" => persist = true,
                "redispatch" => redispatch = true,
                "forwarded" => forwarded = true,
                other => {
                    return Err(self.err(
                        format!("{key}.options[{i}]"),
                        format!("{other:?}: want \"persist\", \"redispatch\" or \"forwarded\""),
                    ));
                }
            }
        }
        let time =
            |k: &str, v: &Option<String>, default: Duration| -> Result<Duration, ConfigError> {
                match v {
                    None => Ok(default),
                    Some(t) => {
                        let d = parse_duration(t).map_err(|r| self.err(format!("{key}.{k}"), r))?;
                        if d < Duration::from_millis(10) {
                            return Err(self.err(format!("{key}.{k}"), "at least 10ms"));
                        }
                        Ok(d)
                    }
                }
            };
        Ok(Some(HttpBackend {
            balance,
            cookie,
            dynamic_cookie_key: b.dynamic_cookie_key.clone(),
            persist,
            redispatch,
            forwarded,
            timeout_connect: time(
                "timeout_connect",
                &b.timeout_connect,
                DEFAULT_TIMEOUT_CONNECT,
            )?,
            timeout_server: time("timeout_server", &b.timeout_server, DEFAULT_TIMEOUT_SERVER)?,
        }))
    }

    fn backend(
        &self,
        key: &str,
        b: RawBackend,
        resolvers: &[Resolvers],
    ) -> Result<Backend, ConfigError> {
        let http = self.http_backend(key, &b)?;
        let http_key = http_key(&b);
        let forward = match b.forward.as_deref().unwrap_or("dsr-l2") {
            "dsr-l2" => Forward::DsrL2,
            "ipip" => Forward::Ipip,
            other => {
                return Err(self.err(
                    format!("{key}.forward"),
                    format!("{other:?}: want \"dsr-l2\" or \"ipip\""),
                ));
            }
        };
        let (mut stick_size, mut expire) = (DEFAULT_STICK_SIZE, DEFAULT_EXPIRE);
        let mut peers = None;
        if let Some(t) = b.stick_table {
            peers = t.peers;
            if let Some(ty) = t.ty.as_deref()
                && ty != "ip"
                && ty != "ipv6"
            {
                return Err(self.err(
                    format!("{key}.stick_table.type"),
                    format!("{ty:?}: want \"ip\" or \"ipv6\""),
                ));
            }
            if let Some(s) = t.size {
                stick_size =
                    parse_size(&s).map_err(|r| self.err(format!("{key}.stick_table.size"), r))?;
                if stick_size == 0 || stick_size > MAX_STICK_SIZE {
                    return Err(self.err(
                        format!("{key}.stick_table.size"),
                        format!("{s:?} is out of range (1 to {MAX_STICK_SIZE})"),
                    ));
                }
            }
            if let Some(e) = t.expire {
                expire = parse_duration(&e)
                    .map_err(|r| self.err(format!("{key}.stick_table.expire"), r))?;
            }
        }
        let check_timeout = match &b.check_timeout {
            None => None,
            Some(t) => {
                let t =
                    parse_duration(t).map_err(|r| self.err(format!("{key}.check_timeout"), r))?;
                if t < Duration::from_millis(10) || t > Duration::from_secs(60) {
                    return Err(self.err(format!("{key}.check_timeout"), "want 10ms to 60s"));
                }
                Some(t)
            }
        };
        let mut servers = Vec::new();
        let mut names = BTreeSet::new();
        for (j, s) in b.server.into_iter().enumerate() {
            let skey = format!("{key}.server[{j}]");
            if !names.insert(s.name.clone()) {
                return Err(self.err(
                    format!("{skey}.name"),
                    format!("duplicate server name {:?} in backend {:?}", s.name, b.name),
                ));
            }
            if let Some(why) = server_name_problem(&b.name, &s.name) {
                return Err(self.err(format!("{skey}.name"), why));
            }
            let (address, port) = parse_server_address(&s.address).ok_or_else(|| {
                self.err(
                    format!("{skey}.address"),
                    format!(
                        "{:?} is not an IP address (or IP:PORT for HTTP servers)",
                        s.address
                    ),
                )
            })?;
            if address.is_unspecified() || address.is_multicast() {
                return Err(self.err(
                    format!("{skey}.address"),
                    format!("{address} is not a unicast server address"),
                ));
            }
            let weight = s.weight.unwrap_or(1);
            if weight > MAX_WEIGHT {
                return Err(self.err(
                    format!("{skey}.weight"),
                    format!("{weight}: at most {MAX_WEIGHT}"),
                ));
            }
            let state = match s.state.as_deref() {
                None => AdminState::Up,
                Some(st) => AdminState::parse(st).ok_or_else(|| {
                    self.err(
                        format!("{skey}.state"),
                        format!("{st:?}: want up, drain, down or maint"),
                    )
                })?,
            };
            let inter = match &s.inter {
                Some(i) => parse_duration(i).map_err(|r| self.err(format!("{skey}.inter"), r))?,
                None => CheckTiming::default().inter,
            };
            if inter < Duration::from_millis(100) {
                return Err(self.err(format!("{skey}.inter"), "at least 100ms"));
            }
            let d = CheckTiming::default();
            let (rise, fall) = (s.rise.unwrap_or(d.rise), s.fall.unwrap_or(d.fall));
            for (k, v) in [("rise", rise), ("fall", fall)] {
                if !(1..=100).contains(&v) {
                    return Err(self.err(format!("{skey}.{k}"), format!("{v}: want 1 to 100")));
                }
            }
            let check = s.check.unwrap_or(false).then_some(CheckTiming {
                inter,
                rise,
                fall,
                timeout: check_timeout.unwrap_or_else(|| default_check_timeout(inter)),
            });
            servers.push(Server {
                name: s.name,
                address,
                port,
                cookie: s.cookie,
                weight,
                state,
                check,
            });
        }
        let check_kind = match b.check_type.as_deref().unwrap_or("tcp") {
            "tcp" => CheckKind::Tcp,
            "http" => {
                let path = b.check_path.unwrap_or_else(|| "/".into());
                if !path.starts_with('/') || path.contains(['\r', '\n', ' ']) {
                    return Err(self.err(
                        format!("{key}.check_path"),
                        format!("{path:?}: want /PATH without spaces"),
                    ));
                }
                CheckKind::Http { path }
            }
            other => {
                return Err(self.err(
                    format!("{key}.check_type"),
                    format!("{other:?}: want \"tcp\" or \"http\""),
                ));
            }
        };
        if b.check_port == Some(0) {
            return Err(self.err(format!("{key}.check_port"), "0 is not a port"));
        }
        let template = match b.server_template {
            None => None,
            Some(t) => Some(self.template(key, &b.name, t, resolvers, &names, check_timeout)?),
        };
        Ok(Backend {
            name: b.name,
            forward,
            stick_size,
            expire,
            peers,
            check_kind,
            check_port: b.check_port,
            servers,
            template,
            http,
            http_key,
        })
    }

    /// Now that the frontends say how each backend is used: HTTP keys only
    /// on HTTP backends, ports and cookies only on HTTP servers, loopback
    /// only behind the proxy; dynamic cookie values and default ports filled in.
    fn settle_modes(
        &self,
        interfaces_empty: bool,
        frontends: &[Frontend],
        backends: &mut [Backend],
    ) -> Result<(), ConfigError> {
        let http_only = !frontends.is_empty() && frontends.iter().all(|f| f.mode == Mode::Http);
        if interfaces_empty && !http_only {
            return Err(self.err(
                "dataplane.interfaces",
                "at least one interface is needed (only a config whose frontends are all http may have none)",
            ));
        }
        for (bi, b) in backends.iter_mut().enumerate() {
            let key = format!("backend[{bi}]");
            let users: Vec<&Frontend> = frontends.iter().filter(|f| f.backend == bi).collect();
            let http = users.iter().filter(|f| f.mode == Mode::Http).count();
            if http > 0 && http < users.len() {
                return Err(self.err(
                    format!("{key}.name"),
                    format!("{:?} is used by both l4 and http frontends", b.name),
                ));
            }
            if http > 0 {
                let settings = b.http.get_or_insert(HttpBackend {
                    balance: Balance::RoundRobin,
                    cookie: None,
                    dynamic_cookie_key: None,
                    persist: false,
                    redispatch: false,
                    forwarded: false,
                    timeout_connect: DEFAULT_TIMEOUT_CONNECT,
                    timeout_server: DEFAULT_TIMEOUT_SERVER,
                });
                let default_port = users[0].vip.port();
                for s in &mut b.servers {
                    let port = *s.port.get_or_insert(default_port);
                    s.cookie = settings.server_cookie(s.cookie.take(), s.address, port);
                }
                if let Some(t) = b.template.as_mut().filter(|t| !t.srv) {
                    t.port.get_or_insert(default_port);
                }
                continue;
            }
            if let Some(k) = b.http_key {
                return Err(self.err(
                    format!("{key}.{k}"),
                    "only for backends of mode = \"http\" frontends",
                ));
            }
            if b.template.as_ref().is_some_and(|t| t.port.is_some()) {
                return Err(self.err(
                    format!("{key}.server_template.port"),
                    "an L4 server takes no port (the VIP's port is kept)",
                ));
            }
            for (j, s) in b.servers.iter().enumerate() {
                let skey = format!("{key}.server[{j}]");
                if s.port.is_some() {
                    return Err(self.err(
                        format!("{skey}.address"),
                        "an L4 server takes no port (the VIP's port is kept)",
                    ));
                }
                if s.cookie.is_some() {
                    return Err(self.err(format!("{skey}.cookie"), "only for HTTP servers"));
                }
                if s.address.is_loopback() {
                    return Err(self.err(
                        format!("{skey}.address"),
                        format!("{} is not a unicast server address", s.address),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A server address as the config and the admin API take it: `IP`, or for
/// HTTP servers `IP:PORT` (`[IPv6]:PORT`), port not 0.
pub fn parse_server_address(s: &str) -> Option<(IpAddr, Option<u16>)> {
    match s.parse::<IpAddr>() {
        Ok(a) => Some((a, None)),
        Err(_) => match s.parse::<SocketAddr>() {
            Ok(sa) if sa.port() != 0 => Some((sa.ip(), Some(sa.port()))),
            _ => None,
        },
    }
}

/// Why `server` cannot be the name of a server of `backend` (`None`: it
/// can). "backend/server" is what the id map records (`maps::IdName`).
pub fn server_name_problem(backend: &str, server: &str) -> Option<String> {
    if server.is_empty() || server.contains(['/', ' ']) {
        return Some(format!("{server:?}: empty, or contains '/' or a space"));
    }
    if backend.len() + 1 + server.len() > ID_NAME_LEN {
        return Some(format!(
            "\"{backend}/{server}\" is longer than {ID_NAME_LEN} bytes"
        ));
    }
    None
}

/// The first HTTP-only key set in a raw backend.
fn http_key(b: &RawBackend) -> Option<&'static str> {
    [
        ("balance", b.balance.is_some()),
        ("cookie", b.cookie.is_some()),
        ("dynamic_cookie_key", b.dynamic_cookie_key.is_some()),
        ("options", !b.options.is_empty()),
        ("timeout_connect", b.timeout_connect.is_some()),
        ("timeout_server", b.timeout_server.is_some()),
    ]
    .into_iter()
    .find(|(_, set)| *set)
    .map(|(k, _)| k)
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
mod tests;
