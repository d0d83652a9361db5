//! Host names in `server` lines, looked up when the file is read as
//! HAProxy does at start (`init-addr`).

use super::{CfgError, Resolve, sections::Server};

fn err(line: usize, keyword: &str, reason: impl Into<String>) -> CfgError {
    CfgError {
        line,
        keyword: keyword.to_owned(),
        reason: reason.into(),
    }
}

/// A server address that is a host name (`NAME[:PORT]`, not an IP
/// address): the name and the port.
pub(super) fn host_port(addr: &str) -> Option<(&str, Option<&str>)> {
    if addr.parse::<std::net::IpAddr>().is_ok() || addr.parse::<std::net::SocketAddr>().is_ok() {
        return None;
    }
    let (host, port) = match addr.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (addr, None),
    };
    let name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
    (!host.is_empty()
        && host.chars().all(name)
        && host.contains(|c: char| !c.is_ascii_digit() && c != '.'))
    .then_some((host, port))
}

/// A server's host name looked up as HAProxy does at start: its
/// `init-addr` methods in order (default `last,libc`; `last` has nothing
/// here, there is no state file), the first address found kept.
pub(super) fn look_up(
    s: &Server,
    host: &str,
    port: Option<&str>,
    resolve: Resolve<'_>,
) -> Result<String, CfgError> {
    let methods = s.init_addr.as_deref().unwrap_or("last,libc");
    let line = s.at("init-addr");
    let mut why = String::from("no method gave an address");
    for m in methods.split(',') {
        let ip = match m {
            "last" => continue,
            "libc" => match resolve(host) {
                Ok(v) if !v.is_empty() => v[0],
                Ok(_) => continue,
                Err(e) => {
                    why = format!("the system resolver: {e}");
                    continue;
                }
            },
            "none" => {
                return Err(err(
                    line,
                    "server init-addr",
                    format!(
                        "none (server {}): a server without an address is not supported \
                         (balancer's servers have one from the start)",
                        s.name
                    ),
                ));
            }
            m => m.parse().map_err(|_| {
                err(
                    line,
                    "server init-addr",
                    format!("{m:?}: want last, libc, none or an IP address"),
                )
            })?,
        };
        return Ok(match (port, ip) {
            (Some(p), std::net::IpAddr::V6(v6)) => format!("[{v6}]:{p}"),
            (Some(p), ip) => format!("{ip}:{p}"),
            (None, ip) => ip.to_string(),
        });
    }
    Err(err(
        s.line,
        "server",
        format!(
            "could not resolve address '{host}' (init-addr {methods}; {why}), as HAProxy \
             refuses to start"
        ),
    ))
}
