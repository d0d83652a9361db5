//! The controller's side of DNS discovery: the slot servers of a
//! `server_template`, the resolutions the discovery tasks send applied to
//! them, and `init_addr` at start.

use std::{net::SocketAddr, time::Instant};

use log::{info, warn};

use super::{ControlError, Controller, ServerRt};
use crate::{
    api::DnsView,
    config::{Config, InitAddr, ServerTemplate},
    discovery::{
        DiscoveryError, DnsOutcome, Target, families, libc_addresses,
        slots::{Placement, Slot, place},
    },
    health::Health,
};

/// Per template: what has been logged, and since when the name is missing.
#[derive(Debug, Default, Clone)]
pub struct TemplateState {
    /// The error of the outage in progress (logged when it began).
    failing: Option<String>,
    /// Since when answers have had no address (for `hold_nx`).
    nx_since: Option<Instant>,
    /// Addresses that found no free slot at the last change (logged).
    unplaced: usize,
}

/// A slot server's DNS side, for the controller and `backend list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSlot {
    /// The template's name.
    pub fqdn: String,
    /// What fills the slot; `None`: empty (the server is in maintenance).
    pub filled: Option<Filled>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filled {
    pub record: String,
    pub ttl: u32,
    /// The SRV record's port (part of the slot's identity).
    pub srv_port: Option<u16>,
    /// When the address was last in an answer (for `hold_obsolete`).
    pub last_seen: Instant,
}

impl DnsSlot {
    pub fn view(&self) -> DnsView {
        DnsView {
            fqdn: self.fqdn.clone(),
            record: self.filled.as_ref().map(|f| f.record.clone()),
            ttl: self.filled.as_ref().map(|f| f.ttl),
        }
    }
}

/// The empty slot servers of a template (ids are assigned by the controller).
pub fn slot_servers(
    config: &Config,
    backend: usize,
    t: &ServerTemplate,
    check_port: Option<u16>,
) -> Vec<ServerRt> {
    let b = &config.backends[backend];
    let unspecified = if families(config, backend).v4 {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    t.slot_names()
        .map(|name| ServerRt {
            id: 0,
            backend: b.name.clone(),
            name,
            address: unspecified,
            port: b.http.as_ref().map(|_| t.port.unwrap_or(0)),
            cookie: None,
            weight: t.weight,
            admin: crate::config::AdminState::Up,
            next_hop: Err("empty slot (no address from DNS yet)".into()),
            check: t.check.and_then(|timing| {
                let port = b.check_port.or(t.port).or(check_port)?;
                Some((
                    b.check_kind.clone(),
                    SocketAddr::new(unspecified, port),
                    timing,
                ))
            }),
            health: Health::default(),
            last_check: None,
            dns: Some(DnsSlot {
                fqdn: t.fqdn.clone(),
                filled: None,
            }),
        })
        .collect()
}

impl Controller {
    /// How many of `backend`'s slots hold an address.
    fn filled_slots(&self, backend: &str) -> usize {
        self.servers
            .iter()
            .filter(|s| s.backend == backend)
            .filter(|s| s.dns.as_ref().is_some_and(|d| d.filled.is_some()))
            .count()
    }

    /// Fill the slots of every template by its `init_addr` methods, in
    /// order: `last` (the addresses held before a reload: nothing at a
    /// fresh start), `libc` (the system resolver), `none` (empty slots).
    /// A template whose slots a reload kept filled is left as it is. Fails
    /// when no method gives addresses and `none` is not listed.
    pub async fn init_discovery(&mut self) -> Result<(), DiscoveryError> {
        for bi in 0..self.config.backends.len() {
            let b = &self.config.backends[bi];
            let Some(t) = b.template.clone() else {
                continue;
            };
            let name = b.name.clone();
            let filled = self.filled_slots(&name);
            if filled > 0 {
                info!(
                    "backend {name}: {} keeps its {filled} address(es) across the reload",
                    t.fqdn
                );
                continue;
            }
            let mut done = false;
            for m in &t.init_addr {
                match m {
                    InitAddr::Last => {}
                    InitAddr::Libc if !t.srv => {
                        let fam = families(&self.config, bi);
                        if let Some(v) = libc_addresses(&t.fqdn, fam, t.resolve_prefer).await {
                            info!(
                                "backend {name}: {} has {} address(es) from the system resolver (init_addr libc)",
                                t.fqdn,
                                v.len()
                            );
                            if let Err(e) = self.fill_slots(bi, v, Instant::now()).await {
                                warn!("backend {name}: init_addr libc: {e}");
                            }
                            done = true;
                        }
                    }
                    InitAddr::Libc => {}
                    InitAddr::None => {
                        info!(
                            "backend {name}: {} starts with empty slots (init_addr none)",
                            t.fqdn
                        );
                        done = true;
                    }
                }
                if done {
                    break;
                }
            }
            if !done {
                return Err(DiscoveryError::InitFailed {
                    backend: name,
                    fqdn: t.fqdn.clone(),
                    methods: t
                        .init_addr
                        .iter()
                        .map(|m| format!("{m:?}").to_lowercase())
                        .collect::<Vec<_>>()
                        .join(","),
                });
            }
        }
        Ok(())
    }

    /// Apply one resolution of `backend`'s template. A failure keeps every
    /// server as it is (logged when the outage begins and when it ends); an
    /// answer without addresses empties the slots only after `hold_nx`.
    pub async fn apply_dns(
        &mut self,
        backend: &str,
        outcome: DnsOutcome,
        now: Instant,
    ) -> Result<(), ControlError> {
        let Some(bi) = self.config.backends.iter().position(|b| b.name == backend) else {
            return Ok(());
        };
        let Some(t) = self.config.backends[bi].template.clone() else {
            return Ok(());
        };
        let hold_nx = self.config.resolvers[t.resolvers].hold_nx;
        let filled = self.filled_slots(backend);
        let state = self.discovery.entry(backend.to_owned()).or_default();
        let targets = match outcome {
            DnsOutcome::Failed(e) => {
                if state.failing.is_none() {
                    warn!(
                        "backend {backend}: DNS resolution of {} failed ({e}): its {filled} \
                         discovered server(s) stay as they are until it answers",
                        t.fqdn
                    );
                }
                state.failing = Some(e);
                return Ok(());
            }
            DnsOutcome::Answer(v) => v,
        };
        if state.failing.take().is_some() {
            info!("backend {backend}: {} answers again", t.fqdn);
        }
        if targets.is_empty() {
            let since = *state.nx_since.get_or_insert(now);
            if now.saturating_duration_since(since) < hold_nx {
                if since == now && filled > 0 {
                    warn!(
                        "backend {backend}: {} has no address: its {filled} server(s) stay \
                         for hold_nx ({hold_nx:?})",
                        t.fqdn
                    );
                }
                return Ok(());
            }
        } else {
            state.nx_since = None;
        }
        self.fill_slots(bi, targets, now).await
    }

    /// Place `targets` in backend `bi`'s slots and apply what changed to
    /// the data plane, the HTTP view and the health checks.
    pub(crate) async fn fill_slots(
        &mut self,
        bi: usize,
        targets: Vec<Target>,
        now: Instant,
    ) -> Result<(), ControlError> {
        let b = &self.config.backends[bi];
        let Some(t) = b.template.clone() else {
            return Ok(());
        };
        let hold = self.config.resolvers[t.resolvers].hold_obsolete;
        let settings = b.http.clone();
        let bname = b.name.clone();
        let idx: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.servers[i].backend == bname && self.servers[i].dns.is_some())
            .collect();
        let slots: Vec<Option<Slot>> = idx
            .iter()
            .map(|&i| {
                let s = &self.servers[i];
                let f = s.dns.as_ref()?.filled.as_ref()?;
                Some(Slot {
                    addr: s.address,
                    port: f.srv_port,
                    last_seen: f.last_seen,
                })
            })
            .collect();
        let (placements, unplaced) = place(&slots, &targets, now, hold);
        let state = self.discovery.entry(bname.clone()).or_default();
        if unplaced != state.unplaced && unplaced > 0 {
            warn!(
                "backend {bname}: {} has {unplaced} address(es) more than the {} slots of the template",
                t.fqdn, t.count
            );
        }
        state.unplaced = unplaced;
        let mut changed = false;
        for (&i, p) in idx.iter().zip(placements) {
            match p {
                Placement::Held => {}
                Placement::Kept(k) => {
                    let tg = &targets[k];
                    if let Some(f) = self.servers[i].dns.as_mut().and_then(|d| d.filled.as_mut()) {
                        f.record = tg.record.clone();
                        f.ttl = tg.ttl;
                        f.last_seen = now;
                    }
                }
                Placement::Empty => {
                    let s = &mut self.servers[i];
                    let Some(d) = s.dns.as_mut() else { continue };
                    if d.filled.take().is_none() {
                        continue;
                    }
                    info!(
                        "server {}/{} ({}): {} left the records of {}: slot freed, server in maint, its users move",
                        s.backend, s.name, s.address, s.address, d.fqdn
                    );
                    s.cookie = None;
                    s.next_hop = Err("empty slot (its address left DNS)".into());
                    s.health = Health::default();
                    s.last_check = None;
                    let id = s.id;
                    self.purge_server(id)?;
                    changed = true;
                }
                Placement::Filled(k) => {
                    let tg = targets[k].clone();
                    let port = settings.as_ref().map(|_| tg.port.or(t.port).unwrap_or(0));
                    let next_hop = if port.is_some() {
                        Err("HTTP server: no next hop".into())
                    } else {
                        self.resolve_next_hop(tg.addr).await
                    };
                    let s = &mut self.servers[i];
                    s.address = tg.addr;
                    s.port = port;
                    s.cookie = match (&settings, port) {
                        (Some(h), Some(p)) => h.server_cookie(None, tg.addr, p),
                        _ => None,
                    };
                    if let Some((_, addr, _)) = s.check.as_mut() {
                        addr.set_ip(tg.addr);
                    }
                    s.health = Health::default();
                    s.last_check = None;
                    s.next_hop = next_hop;
                    info!(
                        "server {}/{}: {} from {} ({}, ttl {}s){}",
                        s.backend,
                        s.name,
                        match port {
                            Some(p) => SocketAddr::new(tg.addr, p).to_string(),
                            None => tg.addr.to_string(),
                        },
                        t.fqdn,
                        tg.record,
                        tg.ttl,
                        s.cookie
                            .as_ref()
                            .map(|c| format!(", cookie {c}"))
                            .unwrap_or_default()
                    );
                    if let Some(d) = s.dns.as_mut() {
                        d.filled = Some(Filled {
                            record: tg.record,
                            ttl: tg.ttl,
                            srv_port: tg.port,
                            last_seen: now,
                        });
                    }
                    let id = s.id;
                    self.purge_server(id)?;
                    changed = true;
                }
            }
        }
        if changed {
            self.write_global()?;
            self.write_backends()?;
            self.rebuild_tables()?;
            if t.check.is_some() {
                self.checks_changed.notify_one();
            }
        }
        Ok(())
    }
}
