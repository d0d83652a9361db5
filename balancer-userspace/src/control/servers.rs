//! Changes to servers asked at run time through the admin API (add,
//! remove, state, weight), and the servers as the API shows them.

use std::net::{IpAddr, SocketAddr};

use balancer_common::maps::{self as m, Backend as MapBackend, state_name};
use log::{info, warn};

use super::{ControlError, Controller, RESOLVE_TIMEOUT, ServerRt, ids::assign_one_id, mac};
use crate::{api::ServerView, config::AdminState, health::Health};

/// A server for [`Controller::add_server`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewServer {
    pub backend: String,
    pub name: String,
    pub address: IpAddr,
    /// HTTP backends: the server's port (default: the frontend's).
    pub port: Option<u16>,
    /// HTTP backends: its persistence cookie value (derived when the
    /// backend's cookie is `dynamic`).
    pub cookie: Option<String>,
    pub weight: u32,
    pub state: AdminState,
    pub check: bool,
}

impl Controller {
    /// `NAME` is `SERVER` when unique, else `BACKEND/SERVER`.
    pub fn find_server(&self, name: &str) -> Result<usize, ControlError> {
        let matches: Vec<usize> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| match name.split_once('/') {
                Some((b, n)) => s.backend == b && s.name == n,
                None => s.name == name,
            })
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [i] => Ok(*i),
            [] => {
                let names: Vec<String> = self
                    .servers
                    .iter()
                    .map(|s| format!("{}/{}", s.backend, s.name))
                    .collect();
                let hint = crate::util::suggest(name, names.iter().map(String::as_str));
                Err(ControlError::UnknownServer(name.to_owned(), hint))
            }
            _ => Err(ControlError::AmbiguousServer(name.to_owned())),
        }
    }

    pub fn set_state(&mut self, name: &str, state: AdminState) -> Result<ServerView, ControlError> {
        let i = self.find_server(name)?;
        let s = &mut self.servers[i];
        if s.admin != state {
            info!(
                "server {}/{}: {} -> {} (admin)",
                s.backend,
                s.name,
                s.admin.as_str(),
                state.as_str()
            );
            s.admin = state;
            let full = format!("{}/{}", s.backend, s.name);
            self.write_backends()?;
            self.rebuild_tables()?;
            self.note_admin(&full, state);
        }
        self.view(i)
    }

    /// Add a server to `backend` at run time (`balancer backend add`). It
    /// gets the lowest free id and, when `up`, new clients at once; with
    /// `check`, the backend's health check at the default timing. Not
    /// written to the configuration: kept as a runtime change (see
    /// `state.rs`).
    pub async fn add_server(&mut self, new: NewServer) -> Result<ServerView, ControlError> {
        let bi = self
            .config
            .backends
            .iter()
            .position(|b| b.name == new.backend)
            .ok_or_else(|| ControlError::UnknownBackend(new.backend.clone()))?;
        let b = &self.config.backends[bi];
        if let Some(why) = crate::config::server_name_problem(&b.name, &new.name) {
            return Err(ControlError::InvalidServer(format!("server name {why}")));
        }
        if self
            .servers
            .iter()
            .any(|s| s.backend == b.name && s.name == new.name)
        {
            return Err(ControlError::DuplicateServer {
                backend: b.name.clone(),
                server: new.name,
            });
        }
        if new.weight > crate::config::MAX_WEIGHT {
            return Err(ControlError::InvalidServer(format!(
                "weight {}: want 0 to {}",
                new.weight,
                crate::config::MAX_WEIGHT
            )));
        }
        let users: Vec<_> = self
            .config
            .frontends
            .iter()
            .filter(|f| f.backend == bi)
            .collect();
        let http = b.http.as_ref();
        if http.is_none() && (new.port.is_some() || new.cookie.is_some()) {
            return Err(ControlError::InvalidServer(format!(
                "backend {:?} is L4: its servers take no port and no cookie",
                b.name
            )));
        }
        let port = match http {
            Some(_) => Some(
                new.port
                    .or_else(|| users.first().map(|f| f.vip.port()))
                    .unwrap_or(80),
            ),
            None => None,
        };
        let cookie = match (http, port) {
            (Some(h), Some(p)) => h.server_cookie(new.cookie.clone(), new.address, p),
            _ => None,
        };
        if let Some(f) = users
            .iter()
            .filter(|_| http.is_none())
            .find(|f| f.vip.is_ipv4() != new.address.is_ipv4())
        {
            return Err(ControlError::InvalidServer(format!(
                "address {}: frontend {:?} ({}) needs the same family",
                new.address, f.name, f.vip
            )));
        }
        let check_port = b
            .check_port
            .or(port)
            .or_else(|| users.first().map(|f| f.vip.port()));
        let check = match (new.check, check_port) {
            (false, _) => None,
            (true, Some(p)) => Some((
                b.check_kind.clone(),
                SocketAddr::new(new.address, p),
                crate::config::CheckTiming::default(),
            )),
            (true, None) => {
                return Err(ControlError::InvalidServer(format!(
                    "--check: no port to check (no frontend uses backend {:?} and it has no check_port)",
                    b.name
                )));
            }
        };
        let full = format!("{}/{}", b.name, new.name);
        let id = assign_one_id(&mut self.dp, &full)?;
        let next_hop = if port.is_some() {
            Err("HTTP server: no next hop".into())
        } else {
            self.resolver
                .resolve(new.address, RESOLVE_TIMEOUT)
                .await
                .map_err(|e| e.to_string())
        };
        if let (Err(e), None) = (&next_hop, port) {
            warn!(
                "server {full} ({}): unreachable, treated as down: {e}",
                new.address
            );
        }
        info!(
            "server {full} ({}) added with id {id} (admin API)",
            new.address
        );
        let has_check = check.is_some();
        self.servers.push(ServerRt {
            id,
            backend: b.name.clone(),
            name: new.name,
            address: new.address,
            port,
            cookie,
            weight: new.weight,
            admin: new.state,
            next_hop,
            check,
            health: Health::default(),
            last_check: None,
            dns: None,
        });
        self.write_global()?;
        self.write_backends()?;
        self.rebuild_tables()?;
        if has_check {
            self.checks_changed.notify_one();
        }
        self.note_added(self.servers.len() - 1);
        self.view(self.servers.len() - 1)
    }

    /// Remove a server at run time (`balancer backend remove`): it leaves
    /// the Maglev tables, its stick entries are deleted (its clients get a
    /// new server on their next packet) and its id is freed.
    pub fn remove_server(&mut self, name: &str) -> Result<ServerView, ControlError> {
        let i = self.find_server(name)?;
        if let Some(d) = &self.servers[i].dns {
            return Err(ControlError::InvalidServer(format!(
                "{name} is a slot of the server_template of {}: change its DNS records or the template",
                d.fqdn
            )));
        }
        let view = self.view(i)?;
        let s = self.servers.remove(i);
        self.dp.set_backend(
            s.id,
            &MapBackend {
                state: m::STATE_EMPTY,
                ..Default::default()
            },
        )?;
        // The HTTP proxy drops it from its view too.
        self.publish_http();
        self.rebuild_tables()?;
        let purged = self.purge_server(s.id)?;
        self.dp.set_id_name(m::SERVER_IDS_MAP, s.id, None)?;
        info!(
            "server {}/{} removed (admin API): id {} freed, {purged} stick entries deleted",
            s.backend, s.name, s.id
        );
        // Indexes of the check tasks shift.
        self.checks_changed.notify_one();
        self.note_removed(&format!("{}/{}", s.backend, s.name), s.address);
        Ok(view)
    }

    pub fn set_weight(&mut self, name: &str, weight: u32) -> Result<ServerView, ControlError> {
        let i = self.find_server(name)?;
        if self.servers[i].weight != weight {
            self.servers[i].weight = weight;
            self.write_backends()?;
            self.rebuild_tables()?;
            let full = format!("{}/{}", self.servers[i].backend, self.servers[i].name);
            self.note_weight(&full, weight);
        }
        self.view(i)
    }

    pub fn view(&self, i: usize) -> Result<ServerView, ControlError> {
        let s = &self.servers[i];
        let c = self.dp.backend_stats(s.id)?;
        Ok(ServerView {
            id: s.id,
            backend: s.backend.clone(),
            server: s.name.clone(),
            address: match s.port {
                Some(p) => SocketAddr::new(s.address, p).to_string(),
                None => s.address.to_string(),
            },
            weight: s.weight,
            admin_state: s.admin.as_str().to_owned(),
            state: state_name(s.effective()).to_owned(),
            next_hop: s.next_hop.as_ref().ok().map(|nh| {
                format!(
                    "{} via {} {}",
                    nh.next_hop_addr(s.address),
                    nh.ifname,
                    mac(&nh.dst_mac)
                )
            }),
            error: if s.port.is_some() {
                None
            } else {
                s.next_hop.as_ref().err().cloned()
            },
            check: s.check.as_ref().map(|(_, _, t)| {
                let h = &s.health;
                // Results against the state so far, out of the rise or fall
                // that would change it.
                let state = match (h.up, h.streak) {
                    (true, 0) => "up".to_owned(),
                    (true, n) => format!("up, {n} of {} failures", t.fall),
                    (false, 0) => "down".to_owned(),
                    (false, n) => format!("down, {n} of {} passes", t.rise),
                };
                match &s.last_check {
                    None => format!("{state} (not checked yet)"),
                    Some(Ok(d)) => format!("{state}; last: ok in {} ms", d.as_millis()),
                    Some(Err(e)) => format!("{state}; last: {e}"),
                }
            }),
            packets: c.packets,
            bytes: c.bytes,
            dns: s.dns.as_ref().map(|d| d.view()),
        })
    }

    pub fn views(&self) -> Result<Vec<ServerView>, ControlError> {
        (0..self.servers.len()).map(|i| self.view(i)).collect()
    }

    /// A frontend's position in the configuration. Not its VIP id: ids
    /// are kept by name across reloads and restarts ([`Self::vip_id`]).
    pub fn frontend_index(&self, frontend: &str) -> Result<usize, ControlError> {
        self.config
            .frontends
            .iter()
            .position(|f| f.name == frontend)
            .ok_or_else(|| {
                let names = self.config.frontends.iter().map(|f| f.name.as_str());
                ControlError::UnknownFrontend(
                    frontend.to_owned(),
                    crate::util::suggest(frontend, names),
                )
            })
    }

    /// VIP id of a frontend.
    pub fn vip_id(&self, frontend: &str) -> Result<u32, ControlError> {
        self.frontend_index(frontend).map(|i| self.frontend_ids[i])
    }

    pub fn server_by_id(&self, id: u32) -> Option<&ServerRt> {
        self.servers.iter().find(|s| s.id == id)
    }
}
