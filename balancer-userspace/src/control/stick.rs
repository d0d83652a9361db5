//! HTTP backends' stick tables: their ids, their in-process copies
//! (`http::stick`) and the flusher that writes the proxy's entries to the
//! pinned map.
//!
//! An HTTP backend with `stick` rules owns one table id, kept by name
//! (`backend/NAME`) in the FRONTEND_IDS map beside the frontends' VIP ids:
//! its entries are `StickKey { vip_id: id, .. }` in the one pinned map the
//! XDP path uses too, so `table show|count|set|clear`, a restart, the peers
//! and the metrics see them as they see the L4 entries.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::Duration};

use balancer_common::{
    hash::mask_addr,
    maps::{StickValue, family_addr},
};
use log::{info, warn};
use tokio::sync::watch;

use super::{ControlError, Controller};
use crate::{
    config::{Config, Mode},
    dataplane::StickStore,
    http::{
        proxy::HttpView,
        stick::{Entry, FLUSH_INTERVAL, KeyForm, Table},
    },
    util::monotonic_ns,
};

/// HTTP stick tables' ids: (backend name, table id).
pub(super) type TableIds = Vec<(String, u32)>;

/// How often expired entries leave the in-process tables.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The FRONTEND_IDS name of backend `name`'s HTTP stick table. Frontend
/// and backend names cannot hold a '/', so it names nothing else.
pub fn table_id_name(backend: &str) -> String {
    format!("backend/{backend}")
}

/// The backends whose HTTP stick tables need an id: those of `http`
/// frontends with `stick` rules.
pub(super) fn http_table_backends(config: &Config) -> Vec<String> {
    config
        .backends
        .iter()
        .filter(|b| b.http.as_ref().is_some_and(|h| h.stick.any()))
        .filter(|b| {
            config
                .frontends
                .iter()
                .any(|f| f.mode == Mode::Http && config.backends[f.backend].name == b.name)
        })
        .map(|b| b.name.clone())
        .collect()
}

impl Controller {
    /// Make the in-process tables match the configuration: a table whose
    /// key form (type, masks) changed starts empty and its old entries
    /// leave the map (they could never match); a new one takes what the
    /// map holds for its id (a restart keeps the entries).
    pub(super) fn sync_stick_tables(&mut self, ids: &[(String, u32)]) -> Result<(), ControlError> {
        let refresh = self.config.dataplane.stick_refresh;
        let mut tables = BTreeMap::new();
        for (name, id) in ids {
            let Some(b) = self.config.backends.iter().find(|b| &b.name == name) else {
                continue;
            };
            let form = KeyForm {
                ipv6: b.stick_ipv6,
                mask: b.key_mask,
            };
            let old = self.stick_tables.remove(name);
            let table = match old {
                Some(t) if t.id == *id && t.form == form => {
                    t.set_times(b.expire, refresh);
                    t
                }
                old => {
                    let t = Arc::new(Table::new(*id, form, b.stick_size, b.expire, refresh));
                    if old.is_some_and(|o| o.id == *id) {
                        let n = self.dp.stick_clear(Some(*id))?;
                        info!(
                            "backend {name}: the stick key changed (type or mask): its {n} entries are deleted"
                        );
                    } else {
                        let now = monotonic_ns();
                        let expire = t.expire_ns();
                        let mut loaded = 0;
                        for (k, v) in self.dp.stick_entries(Some(*id))? {
                            if expire != 0 && now.saturating_sub(v.last_seen_ns) > expire {
                                continue;
                            }
                            t.put(&k.addr, entry(&v));
                            loaded += 1;
                        }
                        if loaded > 0 {
                            info!(
                                "backend {name}: {loaded} stick entries taken from the pinned table"
                            );
                        }
                    }
                    t
                }
            };
            tables.insert(name.clone(), table);
        }
        // Servers a reload removed lost their ids (and their entries in the
        // map): a later server given the same id must not inherit them.
        let live: std::collections::BTreeSet<u32> = self.servers.iter().map(|s| s.id).collect();
        for t in tables.values() {
            t.remove_where(|e| !live.contains(&e.server));
        }
        self.stick_tables = tables;
        Ok(())
    }

    /// Delete the stick entries naming server `id`, in the map and in the
    /// HTTP tables; how many were in the map.
    pub(crate) fn purge_server(&mut self, id: u32) -> Result<usize, ControlError> {
        for t in self.stick_tables.values() {
            t.remove_where(|e| e.server == id);
        }
        Ok(self.dp.stick_purge_backend(id)?)
    }

    /// Write every table's queued entries to the pinned map now (at stop).
    pub fn flush_stick_tables(&self) {
        let Ok(store) = self.dp.stick_store() else {
            return;
        };
        for t in self.stick_tables.values() {
            write_pending(&store, t);
        }
    }

    /// The stick table of frontend `frontend` as the admin API names it:
    /// an L4 frontend's VIP id, an HTTP frontend's backend's table id.
    pub fn table_id_of_frontend(&self, frontend: &str) -> Result<u32, ControlError> {
        let i = self.frontend_index(frontend)?;
        let f = &self.config.frontends[i];
        if f.mode == Mode::L4 {
            return Ok(self.frontend_ids[i]);
        }
        let b = &self.config.backends[f.backend].name;
        self.stick_tables
            .get(b)
            .map(|t| t.id)
            .ok_or_else(|| ControlError::NoStickTable(frontend.to_owned()))
    }

    /// Each table's `expire` in ns (0: never), by id.
    pub fn table_expiry(&self) -> BTreeMap<u32, u64> {
        let l4 = self
            .config
            .frontends
            .iter()
            .zip(&self.frontend_ids)
            .filter(|(f, _)| f.mode == Mode::L4)
            .map(|(f, &id)| (id, self.config.backends[f.backend].expire.as_nanos() as u64));
        l4.chain(self.stick_tables.values().map(|t| (t.id, t.expire_ns())))
            .collect()
    }

    /// Every table's id: the L4 frontends' and the HTTP tables'.
    pub fn table_ids(&self) -> Vec<u32> {
        self.config
            .frontends
            .iter()
            .zip(&self.frontend_ids)
            .filter(|(f, _)| f.mode == Mode::L4)
            .map(|(_, &id)| id)
            .chain(self.stick_tables.values().map(|t| t.id))
            .collect()
    }

    /// `client`'s key in table `id` (its address, cut to the table's
    /// mask); `None` when the table holds no client of its family.
    pub fn client_key(&self, id: u32, client: IpAddr) -> Option<[u8; 16]> {
        if let Some(t) = self.http_table(id) {
            return t.form.key(client);
        }
        let (f, _) = self
            .config
            .frontends
            .iter()
            .zip(&self.frontend_ids)
            .find(|(f, fid)| **fid == id && f.mode == Mode::L4)?;
        let v4 = f.vip.is_ipv4();
        if client.is_ipv4() != v4 {
            return None;
        }
        let mask = self.config.backends[f.backend].key_mask;
        Some(mask_addr(&family_addr(client).1, mask.prefix_for(v4)))
    }

    /// The HTTP stick table with id `id`, if one has it.
    pub fn http_table(&self, id: u32) -> Option<&Arc<Table>> {
        self.stick_tables.values().find(|t| t.id == id)
    }

    /// The HTTP stick table of backend `name`.
    pub fn http_table_of(&self, backend: &str) -> Option<&Arc<Table>> {
        self.stick_tables.get(backend)
    }

    /// Every HTTP stick table, by backend name.
    pub fn http_tables(&self) -> &BTreeMap<String, Arc<Table>> {
        &self.stick_tables
    }
}

fn entry(v: &StickValue) -> Entry {
    Entry {
        server: v.backend,
        last_seen_ns: v.last_seen_ns,
    }
}

/// Write the proxy's queued entries to the pinned map every
/// [`FLUSH_INTERVAL`] (one batched system call a table), and sweep expired
/// entries out of the in-process tables. Runs until the view's sender goes.
pub async fn flush(store: StickStore, mut view: watch::Receiver<Arc<HttpView>>) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = monotonic_ns();
    let tables = |view: &mut watch::Receiver<Arc<HttpView>>| -> Vec<Arc<Table>> {
        view.borrow_and_update()
            .backends
            .values()
            .filter_map(|b| b.stick.clone())
            .collect()
    };
    let mut current = tables(&mut view);
    loop {
        // Without a table, nothing wakes it but a new view (a reload).
        if current.is_empty() {
            if view.changed().await.is_err() {
                return;
            }
        } else {
            tokio::select! {
                _ = tick.tick() => {}
                changed = view.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
        if view.has_changed().unwrap_or(false) || current.is_empty() {
            current = tables(&mut view);
        }
        let now = monotonic_ns();
        let sweep = now.saturating_sub(last_sweep) >= SWEEP_INTERVAL.as_nanos() as u64;
        if sweep {
            last_sweep = now;
        }
        for t in &current {
            write_pending(&store, t);
            if sweep {
                t.sweep(now);
            }
        }
    }
}

/// Failed writes to the pinned map, logged at most once a second.
static WRITE_FAILED: crate::util::Throttled = crate::util::Throttled::new(module_path!());

/// Write `t`'s queued entries to `store` (one batched call).
fn write_pending(store: &StickStore, t: &Table) {
    let pending = t.take_pending();
    if pending.is_empty() {
        return;
    }
    let (keys, values): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
    if let Err(e) = store.update(&keys, &values) {
        WRITE_FAILED.warn(|| {
            format!(
                "writing {} HTTP stick entries to the pinned table: {e}",
                keys.len()
            )
        });
    }
}

/// The stick table's handle for [`flush`], from the controller's data plane.
pub fn flush_store(c: &Controller) -> Option<StickStore> {
    c.dp.stick_store()
        .map_err(|e| warn!("HTTP stick tables: no handle on the stick table: {e}"))
        .ok()
}
