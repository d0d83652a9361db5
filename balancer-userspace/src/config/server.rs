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
