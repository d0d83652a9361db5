//! The L4 controller: turns the configuration, the servers' states and the
//! kernel's next hops into the data plane's maps, and keeps them in step.
//!
//! Ids: frontends get VIP ids in configuration order; servers get backend
//! ids in configuration order across all backends. A server's effective
//! state is its administrative state, except that a server whose next hop
//! does not resolve is `down` (and reported) rather than forwarded to
//! blindly. Maglev tables hold only `up` servers; `drain` servers keep their
//! stick entries; `down`/`maint` servers' clients are redispatched by the
//! data plane on their next packet.

pub mod dns;
mod ids;
mod servers;
mod state;
pub mod stick;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use balancer_common::{
    hash::MAGLEV_M,
    maglev::{self, MaglevBackend},
    maps::{self as m, Backend as MapBackend, GlobalConfig, VipInfo, VipKey, family_addr},
};
use log::{info, warn};

use crate::http::tls::client::ServerTls;
use crate::{
    config::{AdminState, CheckKind, CheckTiming, Config, Forward, Mode},
    dataplane::{Dataplane, DataplaneError, LoadOptions},
    health::Health,
    http::proxy::{HttpBackendView, HttpServerView, HttpView},
    netlink::{NetlinkError, NextHop, Resolver},
};
pub use dns::{DnsSlot, Filled};
use dns::{TemplateState, slot_servers};
use ids::assign_ids;
pub use servers::NewServer;

pub(super) const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Tls(#[from] crate::http::tls::TlsError),
    #[error("Maglev table for frontend {frontend}: {source}")]
    Maglev {
        frontend: String,
        #[source]
        source: maglev::MaglevError,
    },
    /// The name, and what the names that exist suggest (see [`suggest`]).
    #[error("no server named {0:?}{1}")]
    UnknownServer(String, String),
    #[error("server name {0:?} is ambiguous: use BACKEND/SERVER")]
    AmbiguousServer(String),
    #[error("no frontend named {0:?}{1}")]
    UnknownFrontend(String, String),
    #[error("frontend {0:?} has no stick table (its backend has no stick rules)")]
    NoStickTable(String),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("no backend named {0:?}")]
    UnknownBackend(String),
    #[error("backend {backend:?} already has a server named {server:?}")]
    DuplicateServer { backend: String, server: String },
    #[error("{0}")]
    InvalidServer(String),
    #[error("changing {0} needs a restart (`balancer run`); the running configuration stays")]
    NeedsRestart(String),
}

/// What a reload changed, by server.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReloadSummary {
    pub kept: usize,
    pub added: usize,
    pub removed: usize,
}

/// One server as the controller tracks it.
#[derive(Debug, Clone)]
pub struct ServerRt {
    pub id: u32,
    pub backend: String,
    pub name: String,
    pub address: IpAddr,
    /// HTTP servers (behind the proxy): their port. L4 servers: `None`.
    pub port: Option<u16>,
    /// HTTP: the persistence cookie value naming this server.
    pub cookie: Option<String>,
    pub weight: u32,
    pub admin: AdminState,
    pub next_hop: Result<NextHop, String>,
    /// Health check: what, where, when; `None` without `check = true`.
    pub check: Option<(CheckKind, SocketAddr, CheckTiming)>,
    pub health: Health,
    /// The last check's outcome, for `backend list`.
    pub last_check: Option<Result<Duration, String>>,
    /// A `server_template` slot: the name and record that fill it.
    pub dns: Option<DnsSlot>,
}

impl ServerRt {
    /// Admin `down`/`maint` win; then an unresolved next hop or a failed
    /// health check make the server `down`; else its admin state.
    pub fn effective(&self) -> u8 {
        // An empty DNS slot has no address: maintenance.
        if self.dns.as_ref().is_some_and(|d| d.filled.is_none()) {
            return m::STATE_MAINT;
        }
        match self.admin {
            AdminState::Down => return m::STATE_DOWN,
            AdminState::Maint => return m::STATE_MAINT,
            AdminState::Up | AdminState::Drain => {}
        }
        // HTTP servers are reached through the kernel's own routing.
        if (self.port.is_none() && self.next_hop.is_err()) || !self.health.up {
            return m::STATE_DOWN;
        }
        if self.admin == AdminState::Drain {
            m::STATE_DRAIN
        } else {
            m::STATE_UP
        }
    }
}

/// The controller as the services around it hold it.
pub type Shared = std::sync::Arc<tokio::sync::Mutex<Controller>>;

pub struct Controller {
    pub dp: Dataplane,
    pub config: Config,
    pub servers: Vec<ServerRt>,
    /// VIP id of each frontend (parallel to `config.frontends`).
    pub frontend_ids: Vec<u32>,
    /// Notified when the set of health checks changes at run time (a
    /// server added or removed through the admin API): the daemon restarts
    /// its check tasks.
    pub checks_changed: std::sync::Arc<tokio::sync::Notify>,
    /// What the HTTP proxy serves: republished on every server change.
    pub http: tokio::sync::watch::Sender<std::sync::Arc<HttpView>>,
    /// The HTTP proxy's counters, for the metrics endpoint.
    pub http_stats: std::sync::Arc<crate::http::stats::HttpStats>,
    /// The HTTP servers' `maxconn` limits and queues, by id.
    pub http_limits: crate::http::queue::Limits,
    /// VIP id -> its current Maglev table.
    tables: BTreeMap<u32, Vec<u32>>,
    /// HTTP backends' stick tables, by backend name (`stick.rs`).
    stick_tables: BTreeMap<String, std::sync::Arc<crate::http::stick::Table>>,
    /// HTTP backends' TLS to their servers (`ssl`), by backend name.
    server_tls: BTreeMap<String, std::sync::Arc<ServerTls>>,
    resolver: Resolver,
    /// DNS discovery state per backend with a `server_template`.
    discovery: BTreeMap<String, TemplateState>,
    /// Runtime server changes, applied again on reload (`state.rs`).
    runtime: state::RuntimeState,
}

/// A health check to run: (server index, kind, address, timing, TLS, the
/// PROXY header it opens with).
pub type Check = (
    usize,
    CheckKind,
    SocketAddr,
    CheckTiming,
    Option<crate::health::TlsCheck>,
    Option<crate::config::SendProxy>,
);

/// Each HTTP backend's TLS to its servers (its CA file read).
pub fn server_tls_of(
    config: &Config,
) -> Result<BTreeMap<String, std::sync::Arc<ServerTls>>, crate::http::tls::TlsError> {
    let mut out = BTreeMap::new();
    for b in &config.backends {
        if let Some(ssl) = b.http.as_ref().and_then(|h| h.ssl.as_ref()) {
            out.insert(
                b.name.clone(),
                std::sync::Arc::new(ServerTls::new(&b.name, ssl)?),
            );
        }
    }
    Ok(out)
}

impl Controller {
    /// Resolve every server's next hop and write all maps.
    pub async fn new(dp: Dataplane, mut config: Config) -> Result<Self, ControlError> {
        let mut runtime = match &config.server_state_file {
            Some(path) => state::RuntimeState::load(path),
            None => state::RuntimeState::default(),
        };
        let forgot = runtime.overlay(&mut config);
        let resolver = Resolver::new().await?;
        let mut servers = build_servers(&config);
        let mut dp = dp;
        let names: Vec<String> = servers
            .iter()
            .map(|s| format!("{}/{}", s.backend, s.name))
            .collect();
        let ids = assign_ids(&mut dp, m::SERVER_IDS_MAP, &names)?;
        for (s, id) in servers.iter_mut().zip(ids) {
            s.id = id;
        }
        let server_tls = server_tls_of(&config)?;
        let (frontend_ids, table_ids) = frontend_and_table_ids(&mut dp, &config)?;
        let mut c = Controller {
            dp,
            config,
            servers,
            frontend_ids,
            checks_changed: Default::default(),
            http: tokio::sync::watch::Sender::new(Default::default()),
            http_stats: Default::default(),
            http_limits: Default::default(),
            tables: BTreeMap::new(),
            stick_tables: BTreeMap::new(),
            server_tls,
            resolver,
            discovery: BTreeMap::new(),
            runtime,
        };
        if forgot {
            c.save_runtime();
        }
        c.sync_stick_tables(&table_ids)?;
        c.resolve_all().await;
        c.write_global()?;
        c.write_vips()?;
        c.write_backends()?;
        c.rebuild_tables()?;
        Ok(c)
    }

    /// Apply a new configuration (SIGHUP). Servers and frontends keep their
    /// ids by name, so the stick entries of every server that stays keep
    /// pointing at it; a server whose address is unchanged also keeps its
    /// health-check state and next hop. Servers and frontends that left lose
    /// their ids and stick entries. Settings that only a restart can change
    /// (interfaces, XDP mode, pin_dir, admin socket, stick-table size) make
    /// the reload fail before anything is touched.
    pub async fn reload(&mut self, mut config: Config) -> Result<ReloadSummary, ControlError> {
        let (old, new) = (&self.config, &config);
        let mut fixed: Vec<String> = Vec::new();
        if old.dataplane.interfaces != new.dataplane.interfaces {
            fixed.push("dataplane.interfaces".into());
        }
        if old.dataplane.xdp_mode != new.dataplane.xdp_mode {
            fixed.push("dataplane.xdp_mode".into());
        }
        if old.dataplane.pin_dir != new.dataplane.pin_dir {
            fixed.push("dataplane.pin_dir".into());
        }
        if old.admin_socket != new.admin_socket {
            fixed.push("admin.socket".into());
        }
        if old.server_state_file != new.server_state_file {
            fixed.push("global.server_state_file".into());
        }
        // HTTP frontends may come and go (the daemon starts and stops
        // them); one that stays (same name and bind) keeps the settings its
        // workers took at start.
        for f1 in new.frontends.iter().filter(|f| f.mode == Mode::Http) {
            let kept = old
                .frontends
                .iter()
                .find(|f0| f0.mode == Mode::Http && f0.name == f1.name && f0.vip == f1.vip);
            if let Some(f0) = kept {
                for k in f0.http.changed(&f1.http) {
                    fixed.push(format!("frontend {} {k}", f1.name));
                }
            }
            // The access logs' targets were opened at start.
            for (f0, f1) in old.frontends.iter().zip(&new.frontends) {
                if f0.mode == Mode::Http && f0.log != f1.log {
                    fixed.push(format!("frontend {} log", f0.name));
                }
            }
        }
        if old.maxconn != new.maxconn {
            fixed.push("global.maxconn".into());
        }
        // The peer links and the engine took the section at start (a new
        // secret must not leave the old one working).
        if old.peers != new.peers {
            fixed.push("peers (the [peers] section)".into());
        }
        if old.metrics_bind != new.metrics_bind
            || old.table_count_interval != new.table_count_interval
        {
            fixed.push("metrics".into());
        }
        // The kernel's table cannot grow in place; shrinking the sum
        // leaves room, and the in-process table has no fixed size.
        let (have, want) = (
            self.dp.options().stick_size,
            LoadOptions::for_config(new).stick_size,
        );
        if self.dp.is_kernel() && want > have {
            fixed.push(format!(
                "stick_table.size (the stick tables now add up to {want} entries; the kernel \
                 table holds {have}: `balancer run --reset` makes a larger one, emptying it)"
            ));
        }
        if !fixed.is_empty() {
            return Err(ControlError::NeedsRestart(fixed.join(", ")));
        }
        // CA files read again (a bad one refuses the reload).
        let server_tls = server_tls_of(&config)?;
        // The runtime changes apply to the new file's servers.
        let mut runtime = self.runtime.clone();
        let forgot = runtime.overlay(&mut config);
        let mut servers = build_servers(&config);
        let names: Vec<String> = servers
            .iter()
            .map(|s| format!("{}/{}", s.backend, s.name))
            .collect();
        let ids = assign_ids(&mut self.dp, m::SERVER_IDS_MAP, &names)?;
        let mut summary = ReloadSummary::default();
        for (s, id) in servers.iter_mut().zip(ids) {
            s.id = id;
            match self
                .servers
                .iter()
                .find(|o| o.backend == s.backend && o.name == s.name)
            {
                // A DNS slot of an unchanged name keeps what fills it.
                Some(o)
                    if s.dns.is_some()
                        && o.dns.as_ref().is_some_and(|d| d.filled.is_some())
                        && s.dns.as_ref().map(|d| &d.fqdn) == o.dns.as_ref().map(|d| &d.fqdn) =>
                {
                    s.address = o.address;
                    s.port = o.port;
                    s.cookie = o.cookie.clone();
                    s.dns = o.dns.clone();
                    if let Some((_, addr, _)) = s.check.as_mut() {
                        addr.set_ip(o.address);
                    }
                    s.next_hop = o.next_hop.clone();
                    summary.kept += 1;
                }
                Some(o) if o.address == s.address => {
                    s.next_hop = o.next_hop.clone();
                    if s.check.is_some() && o.check.is_some() {
                        s.health = o.health;
                        s.last_check = o.last_check.clone();
                    }
                    summary.kept += 1;
                }
                _ => summary.added += 1,
            }
        }
        for o in &self.servers {
            if !servers.iter().any(|s| s.id == o.id) {
                // Its slot empties: stick entries still naming it (none
                // after assign_ids) would be redispatched.
                self.dp.set_backend(
                    o.id,
                    &MapBackend {
                        state: m::STATE_EMPTY,
                        ..Default::default()
                    },
                )?;
                summary.removed += 1;
            }
        }
        let (frontend_ids, table_ids) = frontend_and_table_ids(&mut self.dp, &config)?;
        self.tables.retain(|id, _| frontend_ids.contains(id));
        self.config = config;
        self.server_tls = server_tls;
        self.servers = servers;
        self.frontend_ids = frontend_ids;
        self.sync_stick_tables(&table_ids)?;
        self.runtime = runtime;
        if forgot {
            self.save_runtime();
        }
        self.discovery.clear();
        self.resolve_all().await;
        self.write_global()?;
        self.write_vips()?;
        self.write_backends()?;
        self.rebuild_tables()?;
        Ok(summary)
    }

    /// Re-resolve every next hop (after a netlink change); rewrite what changed.
    pub async fn refresh(&mut self) -> Result<(), ControlError> {
        let before: Vec<_> = self
            .servers
            .iter()
            .map(|s| (s.next_hop.clone(), s.effective()))
            .collect();
        self.resolve_all().await;
        let changed = self
            .servers
            .iter()
            .zip(&before)
            .any(|(s, (nh, st))| &s.next_hop != nh || s.effective() != *st);
        if changed {
            self.write_global()?;
            self.write_backends()?;
            self.rebuild_tables()?;
        }
        Ok(())
    }

    async fn resolve_all(&mut self) {
        for s in self
            .servers
            .iter_mut()
            .filter(|s| s.port.is_none() && s.dns.as_ref().is_none_or(|d| d.filled.is_some()))
        {
            let r = self
                .resolver
                .resolve(s.address, RESOLVE_TIMEOUT)
                .await
                .map_err(|e| e.to_string());
            match (&s.next_hop, &r) {
                (Ok(old), Ok(new)) if old == new => {}
                (_, Ok(nh)) => info!(
                    "server {}/{} ({}): next hop {} via {} ({}), mtu {}",
                    s.backend,
                    s.name,
                    s.address,
                    nh.next_hop_addr(s.address),
                    nh.ifname,
                    mac(&nh.dst_mac),
                    nh.mtu
                ),
                (Err(old), Err(new)) if old == new => {}
                (_, Err(e)) => warn!(
                    "server {}/{} ({}): unreachable, treated as down: {e}",
                    s.backend, s.name, s.address
                ),
            }
            s.next_hop = r;
        }
    }

    /// The next hop towards `addr` (a server filled from DNS).
    pub(crate) async fn resolve_next_hop(&mut self, addr: IpAddr) -> Result<NextHop, String> {
        let r = self
            .resolver
            .resolve(addr, RESOLVE_TIMEOUT)
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &r {
            warn!("server address {addr}: unreachable, treated as down: {e}");
        }
        r
    }

    pub(crate) fn write_global(&mut self) -> Result<(), ControlError> {
        let d = &self.config.dataplane;
        let prefsrc = |v4: bool| {
            self.servers
                .iter()
                .find_map(|s| match (&s.next_hop, s.address.is_ipv4() == v4) {
                    (Ok(nh), true) => nh.prefsrc,
                    _ => None,
                })
        };
        let tun4 = d.tunnel_source_v4.map(IpAddr::V4).or_else(|| prefsrc(true));
        let tun6 = d
            .tunnel_source_v6
            .map(IpAddr::V6)
            .or_else(|| prefsrc(false));
        let mut cfg = GlobalConfig {
            stick_refresh_ns: d.stick_refresh.as_nanos() as u64,
            insert_cap: d.insert_cap,
            ..Default::default()
        };
        if let Some(IpAddr::V4(a)) = tun4 {
            cfg.tun_src_v4 = a.octets();
        }
        if let Some(IpAddr::V6(a)) = tun6 {
            cfg.tun_src_v6 = a.octets();
        }
        self.dp.set_config(&cfg)?;
        Ok(())
    }

    fn write_vips(&mut self) -> Result<(), ControlError> {
        let mut vips = BTreeMap::new();
        let mut fragment_entries = BTreeMap::new();
        for (f, &id) in self.config.frontends.iter().zip(&self.frontend_ids) {
            if f.mode == Mode::Http {
                continue;
            }
            let b = &self.config.backends[f.backend];
            let (family, addr) = family_addr(f.vip.ip());
            let info = VipInfo {
                id,
                mode: match b.forward {
                    Forward::DsrL2 => m::MODE_DSR_L2,
                    Forward::Ipip => m::MODE_IPIP,
                },
                key_prefix: b.key_mask.prefix_for(f.vip.is_ipv4()),
                _pad: [0; 2],
                expire_ns: b.expire.as_nanos() as u64,
            };
            let key = VipKey {
                addr,
                port: f.vip.port(),
                proto: f.proto.number(),
                family,
            };
            vips.insert(key, info);
            // Non-first fragments carry no port: the first frontend on an
            // address and protocol also takes its fragments.
            fragment_entries
                .entry(VipKey { port: 0, ..key })
                .or_insert(info);
        }
        for (key, info) in fragment_entries {
            vips.entry(key).or_insert(info);
        }
        self.dp.set_vips(vips)?;
        Ok(())
    }

    pub(crate) fn write_backends(&mut self) -> Result<(), ControlError> {
        self.publish_http();
        for s in self.servers.iter().filter(|s| s.port.is_none()) {
            let (family, addr) = family_addr(s.address);
            let mut b = MapBackend {
                addr,
                family,
                state: s.effective(),
                weight: s.weight,
                ..Default::default()
            };
            if let Ok(nh) = &s.next_hop {
                b.ifindex = nh.ifindex;
                b.mtu = nh.mtu;
                b.dst_mac = nh.dst_mac;
                b.src_mac = nh.src_mac;
                self.dp.add_egress(nh.ifindex)?;
            }
            self.dp.set_backend(s.id, &b)?;
        }
        Ok(())
    }

    /// The servers of HTTP backends.
    pub fn http_servers(&self) -> impl Iterator<Item = &ServerRt> {
        self.servers.iter().filter(|s| {
            self.config
                .backends
                .iter()
                .any(|b| b.name == s.backend && b.http.is_some())
        })
    }

    /// Publish the HTTP backends (servers with their effective states) to
    /// the proxy; a no-op for the proxy when nothing changed.
    fn publish_http(&self) {
        let backends = self
            .config
            .backends
            .iter()
            .filter_map(|b| {
                let settings = b.http.clone()?;
                // `maxconn` and `maxqueue` of the configured servers (not
                // of DNS slots or servers added at run time).
                let limits: std::collections::HashMap<&str, (u32, u32)> = b
                    .servers
                    .iter()
                    .map(|s| (s.name.as_str(), (s.maxconn, s.maxqueue)))
                    .collect();
                let servers = self
                    .servers
                    .iter()
                    .filter(|s| s.backend == b.name)
                    // Empty DNS slots have no address to offer.
                    .filter(|s| s.dns.as_ref().is_none_or(|d| d.filled.is_some()))
                    .filter_map(|s| {
                        Some(HttpServerView {
                            id: s.id,
                            name: s.name.clone(),
                            addr: SocketAddr::new(s.address, s.port?),
                            weight: s.weight,
                            state: s.effective(),
                            cookie: s.cookie.clone(),
                            stats: self.http_stats.server(s.id),
                            limit: {
                                let (c, q) =
                                    limits.get(s.name.as_str()).copied().unwrap_or_default();
                                self.http_limits.server(s.id, &b.name, c, q)
                            },
                        })
                    })
                    .collect();
                Some((
                    b.name.clone(),
                    std::sync::Arc::new(HttpBackendView {
                        name: b.name.clone(),
                        stick: self
                            .stick_tables
                            .get(&b.name)
                            .filter(|_| settings.stick.any())
                            .cloned(),
                        tls: self.server_tls.get(&b.name).cloned(),
                        settings,
                        servers,
                    }),
                ))
            })
            .collect();
        self.http.send_if_modified(|v| {
            let new = HttpView { backends };
            if **v == new {
                return false;
            }
            *v = std::sync::Arc::new(new);
            true
        });
    }

    /// Rebuild each VIP's Maglev table from its `up` servers; only slots
    /// that change are written.
    pub(crate) fn rebuild_tables(&mut self) -> Result<(), ControlError> {
        for (f, &vip_id) in self.config.frontends.iter().zip(&self.frontend_ids) {
            if f.mode == Mode::Http {
                continue;
            }
            let bname = &self.config.backends[f.backend].name;
            let keys: Vec<(u32, String, u32)> = self
                .servers
                .iter()
                .filter(|s| &s.backend == bname && s.effective() == m::STATE_UP)
                .map(|s| (s.id, format!("{}/{}", s.backend, s.name), s.weight))
                .collect();
            let members: Vec<MaglevBackend<'_>> = keys
                .iter()
                .map(|(id, key, weight)| MaglevBackend {
                    id: *id,
                    key: key.as_bytes(),
                    weight: *weight,
                })
                .collect();
            let table =
                maglev::build(&members, MAGLEV_M).map_err(|source| ControlError::Maglev {
                    frontend: f.name.clone(),
                    source,
                })?;
            let previous = self.tables.get(&vip_id).map(Vec::as_slice);
            if previous != Some(table.as_slice()) {
                self.dp.set_maglev(vip_id, &table, previous)?;
                self.tables.insert(vip_id, table);
            }
        }
        Ok(())
    }

    /// The checks the daemon must run: (server index, kind, address, timing).
    pub fn checks(&self) -> Vec<Check> {
        self.servers
            .iter()
            .enumerate()
            // An empty DNS slot has no address to check.
            .filter(|(_, s)| s.dns.as_ref().is_none_or(|d| d.filled.is_some()))
            .filter_map(|(i, s)| {
                let (k, a, t) = s.check.clone()?;
                // A backend with `ssl` is checked over TLS, as HAProxy does.
                let tls = self.server_tls.get(&s.backend).map(|t| t.connector(a));
                let hello = self.config.check_send_proxy(&s.backend, s.port, a.port());
                Some((i, k, a, t, tls, hello))
            })
            .collect()
    }

    /// Apply one check result; on a rise or a fall, rewrite the data plane.
    pub fn check_result(
        &mut self,
        i: usize,
        result: Result<Duration, String>,
    ) -> Result<(), ControlError> {
        let Some(s) = self.servers.get_mut(i) else {
            return Ok(());
        };
        let Some((_, addr, t)) = s.check.clone() else {
            return Ok(());
        };
        let before = s.effective();
        let changed = s.health.apply(result.is_ok(), t.rise, t.fall);
        if changed {
            match &result {
                Ok(_) => info!(
                    "server {}/{} ({addr}): check passed {} times: up",
                    s.backend, s.name, t.rise
                ),
                Err(e) => warn!(
                    "server {}/{} ({addr}): check failed {} times ({e}): down",
                    s.backend, s.name, t.fall
                ),
            }
        }
        s.last_check = Some(result);
        if s.effective() != before {
            self.write_backends()?;
            self.rebuild_tables()?;
        }
        Ok(())
    }
}

/// Ids from FRONTEND_IDS: each frontend's VIP id (in configuration order),
/// and each HTTP stick table's (`stick::table_id_name`), by backend name.
fn frontend_and_table_ids(
    dp: &mut Dataplane,
    config: &Config,
) -> Result<(Vec<u32>, stick::TableIds), ControlError> {
    let backends = stick::http_table_backends(config);
    let names: Vec<String> = config
        .frontends
        .iter()
        .map(|f| f.name.clone())
        .chain(backends.iter().map(|b| stick::table_id_name(b)))
        .collect();
    let mut ids = assign_ids(dp, m::FRONTEND_IDS_MAP, &names)?;
    let tables = ids.split_off(config.frontends.len());
    Ok((ids, backends.into_iter().zip(tables).collect()))
}

/// The servers of `config`, in order, with fresh runtime state (ids are
/// assigned by `assign_ids`).
fn build_servers(config: &Config) -> Vec<ServerRt> {
    let mut servers = Vec::new();
    for (bi, b) in config.backends.iter().enumerate() {
        // Checked port: the backend's check_port, else the first
        // frontend's port using this backend.
        let port = b.check_port.or_else(|| {
            config
                .frontends
                .iter()
                .find(|f| f.backend == bi)
                .map(|f| f.vip.port())
        });
        for s in &b.servers {
            // HTTP servers are checked on their own port unless check_port says otherwise.
            let port = b.check_port.or(s.port).or(port);
            let check = match (s.check, port) {
                (Some(t), Some(p)) => {
                    Some((b.check_kind.clone(), SocketAddr::new(s.address, p), t))
                }
                (Some(_), None) => {
                    warn!(
                        "server {}/{}: check = true but no port to check (no frontend uses backend {}; set check_port)",
                        b.name, s.name, b.name
                    );
                    None
                }
                (None, _) => None,
            };
            servers.push(ServerRt {
                check,
                health: Health::default(),
                last_check: None,
                id: 0,
                backend: b.name.clone(),
                name: s.name.clone(),
                address: s.address,
                port: s.port,
                cookie: s.cookie.clone(),
                weight: s.weight,
                admin: s.state,
                next_hop: Err("not resolved yet".into()),
                dns: None,
            });
        }
        if let Some(t) = &b.template {
            servers.extend(slot_servers(config, bi, t, port));
        }
    }
    servers
}

pub(super) fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
