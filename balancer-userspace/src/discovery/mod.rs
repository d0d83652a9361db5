//! DNS service discovery: a backend's `server_template` slots filled from
//! the A/AAAA (or SRV) records of a name, as HAProxy's `server-template`
//! with `resolvers`.
//!
//! One task per template queries the template's `[resolvers.NAME]`
//! nameservers (through hickory-resolver, pointed only at them; the
//! system's configuration is never read) every `refresh`, and sends the
//! answer on a channel; like health checks, it knows no controller. The
//! daemon hands each answer to the controller (`Controller::apply_dns`),
//! which places it in the slots ([`slots::place`]):
//! - a slot keeps its address while the address is in the records, in any
//!   order, so its users keep their server;
//! - an address that left the records frees its slot (after
//!   `hold_obsolete`): the server goes to maintenance, its users are
//!   redispatched, its stick entries are deleted;
//! - a new address takes the lowest free slot.
//!
//! A failed resolution (timeout, refused, server failure) changes nothing:
//! the last known servers stay and the outage is logged once. A name that
//! answers "no such name" or has no address for `hold_nx` empties the slots.

pub mod slots;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use hickory_resolver::{
    TokioResolver,
    config::{NameServerConfig, ResolveHosts, ResolverConfig},
    net::{NetError, runtime::TokioRuntimeProvider},
    proto::rr::{RData, RecordType},
};
use log::warn;

use crate::config::{Config, Family, Mode, Resolvers, ServerTemplate};

/// Longest wait for the system resolver (`init_addr = "libc"`).
const LIBC_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("resolvers {name}: {source}")]
    Resolver {
        name: String,
        #[source]
        source: NetError,
    },
    #[error(
        "backend {backend}: server_template {fqdn}: init_addr {methods} gave no address \
         (add \"none\" to start with empty slots)"
    )]
    InitFailed {
        backend: String,
        fqdn: String,
        methods: String,
    },
}

/// One address a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: IpAddr,
    /// SRV records: the port they give; else `None` (the template's port).
    pub port: Option<u16>,
    /// The record, as `backend list` shows it (`A 127.0.0.2`,
    /// `SRV 0 10 8080 web1.example.local. -> 127.0.0.2`).
    pub record: String,
    /// TTL of the record, in seconds.
    pub ttl: u32,
}

/// The result of one resolution of a template's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsOutcome {
    /// The name's addresses, in the order of the answers (empty: the name
    /// does not exist or has no address of the wanted families).
    Answer(Vec<Target>),
    /// No usable answer (timeout, refused, server failure): keep what is.
    Failed(String),
}

/// Which address families a template wants: an L4 backend's servers must
/// be of its VIP's family; HTTP servers may be either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    pub const BOTH: Families = Families { v4: true, v6: true };

    pub fn allows(self, a: IpAddr) -> bool {
        if a.is_ipv4() { self.v4 } else { self.v6 }
    }
}

/// The address families a backend's template may use.
pub fn families(config: &Config, backend: usize) -> Families {
    let users: Vec<_> = config
        .frontends
        .iter()
        .filter(|f| f.backend == backend)
        .collect();
    match users.first() {
        Some(f) if f.mode == Mode::L4 => Families {
            v4: f.vip.is_ipv4(),
            v6: f.vip.is_ipv6(),
        },
        _ => Families::BOTH,
    }
}

/// A DNS client for one `[resolvers.NAME]` section.
pub struct DnsClient {
    resolver: TokioResolver,
}

impl DnsClient {
    /// A resolver asking only `r.nameservers` (UDP, TCP on truncation),
    /// without cache, hosts file or search domains.
    pub fn new(r: &Resolvers) -> Result<Self, DiscoveryError> {
        let mut config = ResolverConfig::from_name_servers(Vec::new());
        for ns in &r.nameservers {
            let mut n = NameServerConfig::udp_and_tcp(ns.ip());
            for c in &mut n.connections {
                c.port = ns.port();
            }
            config.add_name_server(n);
        }
        let mut b = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        let o = b.options_mut();
        o.timeout = r.timeout;
        o.attempts = r.retries as usize;
        o.edns_payload_len = r.accepted_payload_size;
        o.cache_size = 0;
        o.use_hosts_file = ResolveHosts::Never;
        o.ndots = 0;
        let resolver = b.build().map_err(|source| DiscoveryError::Resolver {
            name: r.name.clone(),
            source,
        })?;
        Ok(DnsClient { resolver })
    }

    /// Resolve a template's name: A and/or AAAA, or SRV and then each
    /// target's addresses (from the answer's additional records when there,
    /// else queried).
    pub async fn resolve(&self, t: &ServerTemplate, families: Families) -> DnsOutcome {
        let name = format!("{}.", t.fqdn);
        if !t.srv {
            return match self.addresses(&name, families).await {
                Ok(v) => DnsOutcome::Answer(
                    preferred(v, t.resolve_prefer, |a| a.0)
                        .into_iter()
                        .map(|(addr, ttl, rtype)| Target {
                            addr,
                            port: None,
                            record: format!("{rtype} {addr}"),
                            ttl,
                        })
                        .collect(),
                ),
                Err(e) => DnsOutcome::Failed(e),
            };
        }
        self.resolver.clear_cache();
        let lookup = match self.resolver.lookup(name.as_str(), RecordType::SRV).await {
            Ok(l) => l,
            Err(e) if e.is_no_records_found() => return DnsOutcome::Answer(Vec::new()),
            Err(e) => return DnsOutcome::Failed(format!("SRV {name}: {e}")),
        };
        let mut out = Vec::new();
        for rec in lookup.answers() {
            let RData::SRV(srv) = &rec.data else {
                continue;
            };
            let srv_text = format!(
                "SRV {} {} {} {}",
                srv.priority, srv.weight, srv.port, srv.target
            );
            let extra: Vec<(IpAddr, u32, &str)> = lookup
                .additionals()
                .iter()
                .filter(|a| a.name == srv.target)
                .filter_map(|a| match &a.data {
                    RData::A(x) => Some((IpAddr::V4(x.0), a.ttl, "A")),
                    RData::AAAA(x) => Some((IpAddr::V6(x.0), a.ttl, "AAAA")),
                    _ => None,
                })
                .filter(|(ip, _, _)| families.allows(*ip))
                .collect();
            let addrs = if extra.is_empty() {
                match self.addresses(&srv.target.to_string(), families).await {
                    Ok(v) => v,
                    Err(e) => return DnsOutcome::Failed(e),
                }
            } else {
                extra
            };
            let addrs = preferred(addrs, t.resolve_prefer, |a| a.0);
            for (addr, ttl, _) in addrs {
                out.push(Target {
                    addr,
                    port: Some(srv.port),
                    record: format!("{srv_text} -> {addr}"),
                    ttl: ttl.min(rec.ttl),
                });
            }
        }
        DnsOutcome::Answer(out)
    }

    /// A then AAAA records of `name` (as allowed): (address, TTL, type).
    async fn addresses(
        &self,
        name: &str,
        families: Families,
    ) -> Result<Vec<(IpAddr, u32, &'static str)>, String> {
        self.resolver.clear_cache();
        let mut out = Vec::new();
        for (want, rtype, label) in [
            (families.v4, RecordType::A, "A"),
            (families.v6, RecordType::AAAA, "AAAA"),
        ] {
            if !want {
                continue;
            }
            match self.resolver.lookup(name, rtype).await {
                Ok(l) => out.extend(l.answers().iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some((IpAddr::V4(a.0), r.ttl, label)),
                    RData::AAAA(a) => Some((IpAddr::V6(a.0), r.ttl, label)),
                    _ => None,
                })),
                Err(e) if e.is_no_records_found() => {}
                Err(e) => return Err(format!("{label} {name}: {e}")),
            }
        }
        Ok(out)
    }
}

/// HAProxy's `resolve-prefer`: the items whose address is of the preferred
/// family when there are any, else all of them (HAProxy asks for the
/// preferred record type, then for the other when it has none).
fn preferred<T>(items: Vec<T>, prefer: Option<Family>, addr: impl Fn(&T) -> IpAddr) -> Vec<T> {
    match prefer {
        Some(f) if items.iter().any(|i| Family::of(addr(i)) == f) => items
            .into_iter()
            .filter(|i| Family::of(addr(i)) == f)
            .collect(),
        _ => items,
    }
}

/// `init_addr = "libc"`: the system resolver's addresses for the name (no
/// SRV: getaddrinfo has none), the preferred family's if any. `None` when
/// it gives nothing in time.
pub async fn libc_addresses(
    fqdn: &str,
    families: Families,
    prefer: Option<Family>,
) -> Option<Vec<Target>> {
    let found = tokio::time::timeout(LIBC_TIMEOUT, tokio::net::lookup_host((fqdn, 0))).await;
    let addrs: Vec<IpAddr> = match found {
        Ok(Ok(it)) => it.map(|sa: SocketAddr| sa.ip()).collect(),
        Ok(Err(e)) => {
            warn!("init_addr libc: {fqdn}: {e}");
            return None;
        }
        Err(_) => {
            warn!("init_addr libc: {fqdn}: no answer within {LIBC_TIMEOUT:?}");
            return None;
        }
    };
    let mut out: Vec<Target> = Vec::new();
    for a in addrs
        .into_iter()
        .filter(|a| families.allows(*a) && usable(*a))
    {
        if !out.iter().any(|t| t.addr == a) {
            out.push(Target {
                addr: a,
                port: None,
                record: format!("libc {a}"),
                ttl: 0,
            });
        }
    }
    let out = preferred(out, prefer, |t| t.addr);
    (!out.is_empty()).then_some(out)
}

/// One resolution, as a discovery task sends it: the generation it was
/// started for (the daemon ignores older ones), the backend, the outcome.
pub type DnsResult = (u64, String, DnsOutcome);

/// Whether an address from DNS may be a server's, as a configured one may:
/// not unspecified (`0.0.0.0`, `::`), multicast or IPv4 broadcast.
pub fn usable(addr: IpAddr) -> bool {
    let broadcast = matches!(addr, IpAddr::V4(a) if a.is_broadcast());
    !(addr.is_unspecified() || addr.is_multicast() || broadcast)
}

/// Drop the targets no server can have (see [`usable`]; an SRV record's
/// port 0 too); their records, to log.
fn drop_unusable(targets: &mut Vec<Target>) -> Vec<String> {
    let mut ignored = Vec::new();
    targets.retain(|t| {
        let keep = usable(t.addr) && t.port != Some(0);
        if !keep {
            ignored.push(t.record.clone());
        }
        keep
    });
    ignored
}

/// The discovery task of one backend's template: resolve every `refresh`
/// and send the outcome, until aborted or the receiver is gone.
pub async fn run(
    tx: tokio::sync::mpsc::Sender<DnsResult>,
    generation: u64,
    backend: String,
    template: ServerTemplate,
    resolvers: Resolvers,
    families: Families,
) {
    let client = match DnsClient::new(&resolvers) {
        Ok(c) => c,
        Err(e) => {
            warn!("backend {backend}: DNS discovery not running: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(resolvers.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ignored_before = Vec::new();
    loop {
        tick.tick().await;
        let mut outcome = client.resolve(&template, families).await;
        if let DnsOutcome::Answer(targets) = &mut outcome {
            let ignored = drop_unusable(targets);
            if ignored != ignored_before && !ignored.is_empty() {
                warn!(
                    "backend {backend}: {}: ignored record(s) naming no usable server: {}",
                    template.fqdn,
                    ignored.join(", ")
                );
            }
            ignored_before = ignored;
        }
        if tx
            .send((generation, backend.clone(), outcome))
            .await
            .is_err()
        {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(addr: &str, port: Option<u16>) -> Target {
        Target {
            addr: addr.parse().unwrap(),
            port,
            record: addr.to_owned(),
            ttl: 5,
        }
    }

    #[test]
    fn unusable_targets_are_dropped_and_named() {
        let mut t = vec![
            target("198.18.0.1", None),
            target("0.0.0.0", None),
            target("224.0.0.9", None),
            target("255.255.255.255", None),
            target("2001:db8::1", Some(80)),
            target("::", None),
            target("ff02::1", None),
            target("2001:db8::2", Some(0)),
        ];
        let ignored = drop_unusable(&mut t);
        let kept: Vec<String> = t.iter().map(|t| t.record.clone()).collect();
        assert_eq!(kept, ["198.18.0.1", "2001:db8::1"]);
        assert_eq!(
            ignored,
            [
                "0.0.0.0",
                "224.0.0.9",
                "255.255.255.255",
                "::",
                "ff02::1",
                "2001:db8::2"
            ]
        );
    }

    #[test]
    fn resolve_prefer_takes_the_preferred_family_when_there_is_one() {
        let both = vec![
            target("198.18.0.1", None),
            target("2001:db8::1", None),
            target("198.18.0.2", None),
        ];
        let v4 = vec![target("198.18.0.1", None)];
        let names = |v: Vec<Target>| v.into_iter().map(|t| t.record).collect::<Vec<_>>();
        let pick = |v: &Vec<Target>, f| names(preferred(v.clone(), f, |t| t.addr));
        assert_eq!(pick(&both, Some(Family::V4)), ["198.18.0.1", "198.18.0.2"]);
        assert_eq!(pick(&both, Some(Family::V6)), ["2001:db8::1"]);
        assert_eq!(pick(&both, None).len(), 3);
        // None of the preferred family: the other's (HAProxy's fallback).
        assert_eq!(pick(&v4, Some(Family::V6)), ["198.18.0.1"]);
    }
}
