//! Host names in `server` lines, looked up when the file is read as
//! HAProxy does at start (`init-addr`), by the TOML reader's rules
//! ([`crate::config::hosts`]).

use super::{CfgError, Lookup, sections::Server};
use crate::config::hosts::{self, DEFAULT_INIT_ADDR, Miss};

pub(super) use hosts::host_port;

fn err(line: usize, keyword: &str, reason: impl Into<String>) -> CfgError {
    CfgError {
        line,
        keyword: keyword.to_owned(),
        reason: reason.into(),
    }
}

/// A server's host name (of backend `backend`) looked up as HAProxy does
/// at start: its `init-addr` methods in order (default `last,libc`;
/// `last`: the address the running daemon gives it on a reload, nothing
/// at a start), the first address found kept.
pub(super) fn look_up(
    backend: &str,
    s: &Server,
    host: &str,
    port: Option<&str>,
    lookup: &Lookup<'_>,
) -> Result<String, CfgError> {
    let methods = s.init_addr.as_deref().unwrap_or(DEFAULT_INIT_ADDR);
    let line = s.at("init-addr");
    let list = hosts::parse_methods(methods).map_err(|r| err(line, "server init-addr", r))?;
    let last = lookup.last_address(backend, &s.name, host);
    match hosts::look_up(host, &list, last, lookup.resolve) {
        Ok(ip) => Ok(match (port, ip) {
            (Some(p), std::net::IpAddr::V6(v6)) => format!("[{v6}]:{p}"),
            (Some(p), ip) => format!("{ip}:{p}"),
            (None, ip) => ip.to_string(),
        }),
        Err(Miss::None) => Err(err(
            line,
            "server init-addr",
            format!(
                "none (server {}): a server without an address is not supported \
                 (balancer's servers have one from the start)",
                s.name
            ),
        )),
        Err(Miss::Unresolved(why)) => Err(err(
            s.line,
            "server",
            format!(
                "could not resolve address '{host}' (init-addr {methods}; {why}), as HAProxy \
                 refuses to start"
            ),
        )),
    }
}
