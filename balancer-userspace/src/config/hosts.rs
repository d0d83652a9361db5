//! Host names in server addresses (`localhost:8080`, `app1.internal`),
//! looked up when a configuration is loaded, as HAProxy does at start
//! (`init-addr`): shared by the TOML and the haproxy.cfg readers. A name
//! is looked up once per start or reload; DNS that follows changes is
//! `server_template` with `[resolvers.NAME]`.
//!
//! Defaults: `init_addr` = `"last,libc"` (HAProxy's).

use std::net::IpAddr;

use super::{Config, ConfigError, Validator};

/// Looks up a host name of a server: its addresses, in the order the
/// resolver gives them, or why there are none.
pub type Resolve<'a> = &'a dyn Fn(&str) -> Result<Vec<IpAddr>, String>;

/// The system resolver (getaddrinfo), as HAProxy's `init-addr libc` at
/// start (and `haproxy -c`) uses it.
pub fn libc_resolve(host: &str) -> Result<Vec<IpAddr>, String> {
    use std::net::ToSocketAddrs as _;
    (host, 0)
        .to_socket_addrs()
        .map(|it| it.map(|a| a.ip()).collect())
        .map_err(|e| e.to_string())
}

/// The resolver of [`Config::parse`], which must look nothing up (fuzz
/// targets call it): every name refused.
pub fn no_resolve(_host: &str) -> Result<Vec<IpAddr>, String> {
    Err("not asked (Config::parse looks no name up; Config::load does)".into())
}

/// How the host names of a configuration's servers are looked up.
#[derive(Clone, Copy)]
pub struct Lookup<'a> {
    /// `init_addr` `libc`.
    pub resolve: Resolve<'a>,
    /// `init_addr` `last`: the running configuration on a reload (the
    /// address a server had, when its address is still the same name);
    /// `None` at a start.
    pub last: Option<&'a Config>,
}

impl Lookup<'_> {
    /// `last`: the address server `backend/server` has in the running
    /// configuration, if its address there is the same host name.
    pub fn last_address(&self, backend: &str, server: &str, host: &str) -> Option<IpAddr> {
        let b = self.last?.backends.iter().find(|b| b.name == backend)?;
        let s = b.servers.iter().find(|s| s.name == server)?;
        (s.host.as_deref() == Some(host)).then_some(s.address)
    }
}

impl Lookup<'static> {
    /// Names refused, nothing looked up ([`Config::parse`]).
    pub fn pure() -> Self {
        Lookup {
            resolve: &no_resolve,
            last: None,
        }
    }

    /// The system resolver, nothing running (a start, `check-config`).
    pub fn system() -> Self {
        Lookup {
            resolve: &libc_resolve,
            last: None,
        }
    }
}

/// A server address that is a host name (`NAME[:PORT]`, not an IP
/// address): the name and the port.
pub fn host_port(addr: &str) -> Option<(&str, Option<&str>)> {
    if addr.parse::<IpAddr>().is_ok() || addr.parse::<std::net::SocketAddr>().is_ok() {
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

/// One method of an `init_addr` list (HAProxy's `init-addr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The address the running daemon had (nothing at a start).
    Last,
    /// The system resolver.
    Libc,
    /// No address: refused (balancer's servers have one from the start).
    None,
    /// This address.
    Ip(IpAddr),
}

/// HAProxy's default `init-addr`.
pub const DEFAULT_INIT_ADDR: &str = "last,libc";

/// An `init_addr` list: methods separated by commas, tried in order.
pub fn parse_methods(list: &str) -> Result<Vec<Method>, String> {
    list.split(',')
        .map(|m| match m.trim() {
            "last" => Ok(Method::Last),
            "libc" => Ok(Method::Libc),
            "none" => Ok(Method::None),
            m => m.parse().map(Method::Ip).map_err(|_| {
                // Only a near name: the message lists them all.
                let near = crate::util::suggest(m, ["last", "libc", "none"]);
                let near = if near.starts_with(" (did you mean") {
                    near
                } else {
                    String::new()
                };
                format!(
                    "{m:?}: want last, libc, none or an IP address{near}, comma-separated \
                     (e.g. \"last,libc,198.18.0.9\")"
                )
            }),
        })
        .collect()
}

/// Why a name gave no address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// `none` was reached.
    None,
    /// Every method failed: why the last that tried did.
    Unresolved(String),
}

/// `host` looked up by `methods` in order, the first address found kept
/// (HAProxy's); `last`: the address the running daemon had.
pub fn look_up(
    host: &str,
    methods: &[Method],
    last: Option<IpAddr>,
    resolve: Resolve<'_>,
) -> Result<IpAddr, Miss> {
    let mut why = String::from("no method gave an address");
    for m in methods {
        match m {
            Method::Last => {
                if let Some(ip) = last {
                    return Ok(ip);
                }
            }
            Method::Libc => match resolve(host) {
                Ok(v) if !v.is_empty() => return Ok(v[0]),
                Ok(_) => why = "the system resolver: no address".into(),
                Err(e) => why = format!("the system resolver: {e}"),
            },
            Method::None => return Err(Miss::None),
            Method::Ip(ip) => return Ok(*ip),
        }
    }
    Err(Miss::Unresolved(why))
}

/// A server's address as resolved: IP, port, and the name it came from.
pub(super) type Resolved = (IpAddr, Option<u16>, Option<String>);

impl Validator<'_> {
    /// A server's `address` (`IP`, `IP:PORT`, `NAME`, `NAME:PORT`) with
    /// a name looked up by its `init_addr` (else the backend's).
    pub(super) fn server_address(
        &self,
        skey: &str,
        (backend, server): (&str, &str),
        address: &str,
        init_addr: Option<&str>,
        backend_init_addr: Option<&str>,
    ) -> Result<Resolved, ConfigError> {
        let Some((host, port)) = host_port(address) else {
            let (ip, port) = super::parse_server_address(address).ok_or_else(|| {
                self.err(
                    format!("{skey}.address"),
                    format!(
                        "{address:?} is not an IP address or host name (or ADDRESS:PORT for \
                         HTTP servers, port 1-65535)"
                    ),
                )
            })?;
            if init_addr.is_some() {
                return Err(self.err(
                    format!("{skey}.init_addr"),
                    format!("{address} is an IP address: it would have no effect"),
                ));
            }
            return Ok((ip, port, None));
        };
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                self.err(
                    format!("{skey}.address"),
                    format!("{address:?}: the port is not 1-65535"),
                )
            })?),
        };
        let (list, key) = match (init_addr, backend_init_addr) {
            (Some(l), _) => (l, format!("{skey}.init_addr")),
            (None, Some(l)) => (l, format!("{}.init_addr", skey_backend(skey))),
            (None, None) => (DEFAULT_INIT_ADDR, format!("{skey}.address")),
        };
        let methods = parse_methods(list).map_err(|r| self.err(&key, r))?;
        let last = self.lookup.last_address(backend, server, host);
        match look_up(host, &methods, last, self.lookup.resolve) {
            Ok(ip) => Ok((ip, port, Some(host.to_owned()))),
            Err(Miss::None) => Err(self.err(
                key,
                format!(
                    "none (server {server}): a server without an address is not supported \
                     (balancer's servers have one from the start): put libc or an IP address \
                     before it, or use server_template for servers DNS fills later"
                ),
            )),
            Err(Miss::Unresolved(why)) => Err(self.err(
                format!("{skey}.address"),
                format!(
                    "could not resolve {host:?} (init_addr {list}; {why}), as HAProxy refuses \
                     to start: fix the name, or add an IP address to init_addr (e.g. \
                     \"libc,198.18.0.9\"); a name is looked up once per start or reload \
                     (server_template follows DNS)"
                ),
            )),
        }
    }
}

/// `backend[0]` of `backend[0].server[1]`.
fn skey_backend(skey: &str) -> &str {
    skey.rsplit_once('.').map_or(skey, |(b, _)| b)
}
