//! A backend's `server`: its address, administrative state, weight and
//! health-check timing; the server names and addresses the admin API takes.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use balancer_common::maps::ID_NAME_LEN;

/// Health check type of a backend (`check_type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP connection is accepted.
    Tcp,
    /// `METHOD path HTTP/1.0` (default GET) answers a status in one of the
    /// `status` ranges (inclusive; default 200-399, HAProxy's 2xx or 3xx).
    Http {
        method: String,
        path: String,
        status: Vec<(u16, u16)>,
    },
}

/// Why `m` cannot be a check's method (`None`: it can): an HTTP token.
pub fn method_problem(m: &str) -> Option<String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    (m.is_empty() || !m.chars().all(token))
        .then(|| format!("{m:?}: want an HTTP method (GET, HEAD, OPTIONS, ...)"))
}

impl CheckKind {
    /// A backend's `check_type`, `check_path`, `check_method` and
    /// `check_status` (the last three for `http` only: with a tcp check
    /// they would have no effect); an error names the key and why.
    pub(super) fn from_keys(
        check_type: Option<&str>,
        path: Option<String>,
        method: Option<String>,
        status: Option<&str>,
    ) -> Result<CheckKind, (&'static str, String)> {
        match check_type.unwrap_or("tcp") {
            "tcp" => match [
                ("check_path", path.is_some()),
                ("check_method", method.is_some()),
                ("check_status", status.is_some()),
            ]
            .into_iter()
            .find(|(_, set)| *set)
            {
                Some((k, _)) => Err((
                    k,
                    "a tcp check (check_type unset or \"tcp\") only connects and sends no \
                     request: it would have no effect (set check_type = \"http\")"
                        .into(),
                )),
                None => Ok(CheckKind::Tcp),
            },
            "http" => {
                let path = path.unwrap_or_else(|| "/".into());
                if !path.starts_with('/') || path.contains(['\r', '\n', ' ']) {
                    return Err(("check_path", format!("{path:?}: want /PATH without spaces")));
                }
                let status = match status {
                    None => vec![DEFAULT_CHECK_STATUS],
                    Some(s) => parse_status_list(s).map_err(|r| ("check_status", r))?,
                };
                let method = method.unwrap_or_else(|| "GET".into());
                if let Some(why) = method_problem(&method) {
                    return Err(("check_method", why));
                }
                Ok(CheckKind::Http {
                    method,
                    path,
                    status,
                })
            }
            other => Err(("check_type", format!("{other:?}: want \"tcp\" or \"http\""))),
        }
    }
}

/// What an HTTP check passes on without `check_status`: 2xx and 3xx.
pub const DEFAULT_CHECK_STATUS: (u16, u16) = (200, 399);

/// `check_status` (HAProxy's `http-check expect status`): codes and
/// ranges separated by commas (`"200-299,301"`), each 100 to 599.
pub fn parse_status_list(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let code = |c: &str| {
        c.parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| format!("{c:?} in {s:?}: want status codes 100 to 599"))
    };
    s.split(',')
        .map(|item| {
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (code(lo)?, code(hi)?),
                None => (code(item)?, code(item)?),
            };
            if lo > hi {
                return Err(format!("{item:?}: the range ends before it starts"));
            }
            Ok((lo, hi))
        })
        .collect()
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
    /// The host name `address` gave (looked up when the file was loaded:
    /// `address` is what it resolved to); `None` for an IP address.
    pub host: Option<String>,
    /// HTTP: the persistence cookie's value for this server (or derived
    /// from `dynamic_cookie_key` when the backend's cookie is `dynamic`).
    pub cookie: Option<String>,
    pub weight: u32,
    pub state: AdminState,
    /// `Some` when `check = true`.
    pub check: Option<CheckTiming>,
    /// HTTP: requests at once (HAProxy's server `maxconn`); 0: no limit.
    pub maxconn: u32,
    /// HTTP: requests waiting for this server (`maxqueue`); 0: no limit.
    pub maxqueue: u32,
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
