//! DNS service discovery settings: `[resolvers.NAME]` sections (HAProxy's
//! `resolvers`) and a backend's `server_template` (HAProxy's
//! `server-template`). Defaults:
//! - `resolvers.accepted_payload_size` = 512 (EDNS0 UDP payload, 512-8192)
//! - `resolvers.refresh` = `"1s"` (HAProxy's `timeout resolve`)
//! - `resolvers.timeout` = `"1s"` (one query's limit, `timeout retry`)
//! - `resolvers.retries` = 3 (`resolve_retries`)
//! - `resolvers.hold_nx` = `"30s"`, `resolvers.hold_obsolete` = `"0s"`
//! - `server_template.init_addr` = `"last,libc,none"`, `weight` = 1,
//!   `resolve_prefer` unset (addresses of both families)

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use serde::Deserialize;

use super::{
    CheckTiming, ConfigError, MAX_WEIGHT, Validator, default_check_timeout, parse_duration,
    server_name_problem,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResolvers {
    nameservers: Vec<String>,
    accepted_payload_size: Option<u32>,
    refresh: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    hold_nx: Option<String>,
    hold_obsolete: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTemplate {
    prefix: String,
    count: u32,
    fqdn: String,
    port: Option<u16>,
    resolvers: String,
    init_addr: Option<String>,
    weight: Option<u32>,
    check: Option<bool>,
    resolve_prefer: Option<String>,
}

/// A `[resolvers.NAME]` section: the nameservers that discovery queries
/// (and only those: the system's resolver configuration is never read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolvers {
    pub name: String,
    pub nameservers: Vec<SocketAddr>,
    /// EDNS0 UDP payload size advertised in queries.
    pub accepted_payload_size: u16,
    /// Time between two resolutions of a name.
    pub refresh: Duration,
    /// One query's time limit.
    pub timeout: Duration,
    /// Attempts per resolution before it counts as failed.
    pub retries: u32,
    /// How long a name may answer "no such name" (or no address) before
    /// its servers are put in maintenance.
    pub hold_nx: Duration,
    /// How long an address missing from valid answers keeps its slot.
    pub hold_obsolete: Duration,
}

/// How a template's slots get their first addresses (HAProxy's `init-addr`),
/// tried in order until one gives addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitAddr {
    /// The addresses the slots held before a reload (SIGHUP; a reload
    /// keeps them whatever the list says); nothing at a fresh start (no
    /// state file), so the next method applies.
    Last,
    /// The system resolver (getaddrinfo) at start.
    Libc,
    /// Start with empty slots; DNS fills them.
    None,
}

/// A backend's `server_template`: `count` slots named `prefix1..prefixN`
/// filled from the DNS records of `fqdn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTemplate {
    pub prefix: String,
    pub count: u32,
    /// The name resolved, without a trailing dot.
    pub fqdn: String,
    /// `fqdn` starts with `_` (`_http._tcp.name`): SRV records give the
    /// targets and their ports.
    pub srv: bool,
    /// The servers' port (HTTP backends; default: the frontend's). `None`
    /// for L4 backends and SRV templates.
    pub port: Option<u16>,
    /// Index into [`super::Config::resolvers`].
    pub resolvers: usize,
    pub init_addr: Vec<InitAddr>,
    pub weight: u32,
    pub check: Option<CheckTiming>,
    /// HAProxy's `resolve-prefer`: the slots take the addresses of this
    /// family when the name has any, else those of the other. `None`:
    /// both families (an L4 backend's: its VIP's).
    pub resolve_prefer: Option<Family>,
}

/// An address family (`resolve_prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

impl ServerTemplate {
    /// Slot names: `prefix1` .. `prefixN`.
    pub fn slot_names(&self) -> impl Iterator<Item = String> + '_ {
        (1..=self.count).map(|i| format!("{}{i}", self.prefix))
    }
}

/// Why `fqdn` is not a DNS name (`None`: it is one). Letters, digits, `-`
/// and `_` in labels of 1-63 bytes, 253 bytes in all, an optional trailing
/// dot; an IP address is not a name.
pub fn fqdn_problem(fqdn: &str) -> Option<String> {
    let name = fqdn.strip_suffix('.').unwrap_or(fqdn);
    if name.parse::<IpAddr>().is_ok() {
        return Some(format!(
            "{fqdn:?} is an address, not a name (use [[backend.server]] for fixed addresses)"
        ));
    }
    if name.is_empty() || name.len() > 253 {
        return Some(format!("{fqdn:?}: want a DNS name of 1 to 253 bytes"));
    }
    for label in name.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Some(format!(
                "{fqdn:?} is not a DNS name (label {label:?}: 1-63 letters, digits, '-' or '_')"
            ));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(format!("{fqdn:?}: a name's last label is not all digits"));
    }
    None
}

impl Validator<'_> {
    pub(super) fn resolvers(
        &self,
        raw: BTreeMap<String, RawResolvers>,
    ) -> Result<Vec<Resolvers>, ConfigError> {
        let mut out = Vec::new();
        for (name, r) in raw {
            let key = format!("resolvers.{name}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(self.err(&key, format!("{name:?}: want letters, digits, '-' or '_'")));
            }
            if r.nameservers.is_empty() {
                return Err(self.err(
                    format!("{key}.nameservers"),
                    "at least one nameserver (IP:PORT)",
                ));
            }
            let mut nameservers = Vec::new();
            for (i, ns) in r.nameservers.iter().enumerate() {
                let a = match (ns.parse::<SocketAddr>(), ns.parse::<IpAddr>()) {
                    (Ok(sa), _) if sa.port() != 0 => sa,
                    (_, Ok(ip)) => SocketAddr::new(ip, 53),
                    _ => {
                        return Err(self.err(
                            format!("{key}.nameservers[{i}]"),
                            format!("{ns:?}: want IP:PORT (\"[IPv6]:PORT\"), or IP for port 53"),
                        ));
                    }
                };
                if a.ip().is_unspecified() || a.ip().is_multicast() {
                    return Err(self.err(
                        format!("{key}.nameservers[{i}]"),
                        format!("{ns:?} is not a unicast address"),
                    ));
                }
                nameservers.push(a);
            }
            let payload = r.accepted_payload_size.unwrap_or(512);
            if !(512..=8192).contains(&payload) {
                return Err(self.err(
                    format!("{key}.accepted_payload_size"),
                    format!("{payload}: want 512 to 8192"),
                ));
            }
            let time = |k: &str, v: &Option<String>, default: Duration, min: Duration| {
                let d = match v {
                    None => default,
                    Some(t) => parse_duration(t).map_err(|r| self.err(format!("{key}.{k}"), r))?,
                };
                if d < min {
                    return Err(self.err(format!("{key}.{k}"), format!("at least {min:?}")));
                }
                Ok(d)
            };
            let ms = Duration::from_millis;
            let retries = r.retries.unwrap_or(3);
            if !(1..=10).contains(&retries) {
                return Err(self.err(format!("{key}.retries"), format!("{retries}: want 1 to 10")));
            }
            out.push(Resolvers {
                name,
                nameservers,
                accepted_payload_size: payload as u16,
                refresh: time("refresh", &r.refresh, ms(1000), ms(100))?,
                timeout: time("timeout", &r.timeout, ms(1000), ms(10))?,
                retries,
                hold_nx: time("hold_nx", &r.hold_nx, ms(30_000), ms(0))?,
                hold_obsolete: time("hold_obsolete", &r.hold_obsolete, ms(0), ms(0))?,
            });
        }
        Ok(out)
    }

    /// A backend's template; `static_names` are its `[[backend.server]]`
    /// names (a slot may not take one).
    pub(super) fn template(
        &self,
        key: &str,
        backend: &str,
        t: RawTemplate,
        resolvers: &[Resolvers],
        static_names: &std::collections::BTreeSet<String>,
        check_timeout: Option<Duration>,
    ) -> Result<ServerTemplate, ConfigError> {
        let key = format!("{key}.server_template");
        let max = balancer_common::maps::MAX_BACKENDS;
        if t.count == 0 || t.count > max {
            return Err(self.err(
                format!("{key}.count"),
                format!("{}: want 1 to {max} (the servers limit)", t.count),
            ));
        }
        let last = format!("{}{}", t.prefix, t.count);
        if let Some(why) = server_name_problem(backend, &last) {
            return Err(self.err(format!("{key}.prefix"), format!("slot name {why}")));
        }
        if let Some(clash) = (1..=t.count)
            .map(|i| format!("{}{i}", t.prefix))
            .find(|n| static_names.contains(n))
        {
            return Err(self.err(
                format!("{key}.prefix"),
                format!("slot {clash:?} has the name of a [[backend.server]] of {backend:?}"),
            ));
        }
        if let Some(why) = fqdn_problem(&t.fqdn) {
            return Err(self.err(format!("{key}.fqdn"), why));
        }
        let fqdn = t.fqdn.trim_end_matches('.').to_owned();
        let srv = fqdn.starts_with('_');
        if srv && t.port.is_some() {
            return Err(self.err(
                format!("{key}.port"),
                "an SRV name (_service._proto.name) gives the ports itself",
            ));
        }
        if t.port == Some(0) {
            return Err(self.err(format!("{key}.port"), "0 is not a port"));
        }
        let resolvers_idx = resolvers
            .iter()
            .position(|r| r.name == t.resolvers)
            .ok_or_else(|| {
                self.err(
                    format!("{key}.resolvers"),
                    format!("no [resolvers.{}] section", t.resolvers),
                )
            })?;
        let mut init_addr = Vec::new();
        for m in t
            .init_addr
            .as_deref()
            .unwrap_or("last,libc,none")
            .split(',')
        {
            let m = match m.trim() {
                "last" => InitAddr::Last,
                "libc" => InitAddr::Libc,
                "none" => InitAddr::None,
                other => {
                    return Err(self.err(
                        format!("{key}.init_addr"),
                        format!("{other:?}: want a list of last, libc, none (e.g. \"libc,none\")"),
                    ));
                }
            };
            if init_addr.contains(&m) {
                return Err(self.err(format!("{key}.init_addr"), "a method is listed twice"));
            }
            init_addr.push(m);
        }
        // The default ("last,libc,none") is kept for SRV names too, as
        // HAProxy's; only a list the file gives is held to it.
        if srv && t.init_addr.is_some() && init_addr.contains(&InitAddr::Libc) {
            return Err(self.err(
                format!("{key}.init_addr"),
                "`libc` (getaddrinfo) cannot resolve an SRV name (_service._proto.name): it \
                 would have no effect (use \"none\", or \"last,none\")",
            ));
        }
        let weight = t.weight.unwrap_or(1);
        if weight > MAX_WEIGHT {
            return Err(self.err(
                format!("{key}.weight"),
                format!("{weight}: at most {MAX_WEIGHT}"),
            ));
        }
        let check = t.check.unwrap_or(false).then(|| {
            let d = CheckTiming::default();
            CheckTiming {
                timeout: check_timeout.unwrap_or_else(|| default_check_timeout(d.inter)),
                ..d
            }
        });
        let resolve_prefer = match t.resolve_prefer.as_deref() {
            None => None,
            Some("ipv4") => Some(Family::V4),
            Some("ipv6") => Some(Family::V6),
            Some(other) => {
                return Err(self.err(
                    format!("{key}.resolve_prefer"),
                    format!("{other:?}: want \"ipv4\" or \"ipv6\""),
                ));
            }
        };
        Ok(ServerTemplate {
            resolve_prefer,
            prefix: t.prefix,
            count: t.count,
            fqdn,
            srv,
            port: t.port,
            resolvers: resolvers_idx,
            init_addr,
            weight,
            check,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::fqdn_problem;

    #[test]
    fn names_and_not_names() {
        for ok in [
            "myservice.example.local",
            "web.",
            "_http._tcp.web.example",
            "a-b.c1",
            "localhost",
        ] {
            assert_eq!(fqdn_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            ".",
            "127.0.0.1",
            "::1",
            "a..b",
            "-a.b",
            "a b.c",
            "a/b",
            "1.2.3",
            &"x".repeat(64),
        ] {
            assert!(fqdn_problem(bad).is_some(), "{bad:?}");
        }
    }
}
