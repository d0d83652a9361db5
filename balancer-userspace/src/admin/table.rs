//! `/v1/table`: the stick tables' entries, L4 and HTTP alike. A table is
//! named by frontend: an L4 frontend's own, an HTTP frontend's backend's
//! (`stick` rules). Keys are the client's address cut to the table's mask.
//! Writes to an HTTP table reach its in-process copy too, so the proxy
//! follows them at once.

use std::net::IpAddr;

use balancer_common::maps::{StickKey, StickValue};
use http::StatusCode;
use serde_json::json;

use super::{Answer, internal, listing, request, request::Refusal, request::TableSelect};
use crate::{api, control::Controller, http::stick::Entry, util::monotonic_ns};

/// The table id the selection names, if it names a frontend.
fn selected(c: &Controller, select: &TableSelect) -> Result<Option<u32>, Refusal> {
    match &select.frontend {
        Some(f) => Ok(Some(c.table_id_of_frontend(f).map_err(internal)?)),
        None => Ok(None),
    }
}

fn dp_err(e: crate::dataplane::DataplaneError) -> Refusal {
    internal(e.into())
}

pub(super) fn count(c: &Controller, frontend: Option<&str>) -> Answer {
    // What the proxy stored in the last 100 ms is counted too.
    c.flush_stick_tables();
    let id = match frontend {
        Some(f) => Some(c.table_id_of_frontend(f).map_err(internal)?),
        None => None,
    };
    let entries = c.dp.stick_count(id).map_err(dp_err)?;
    Ok(json!(api::TableCount { entries }))
}

pub(super) fn show(c: &Controller, select: &TableSelect) -> Result<listing::Listing, Refusal> {
    let id = selected(c, select)?;
    // What the proxy stored in the last 100 ms is listed too.
    c.flush_stick_tables();
    let now = monotonic_ns();
    let mut entries = c.dp.stick_entries(id).map_err(dp_err)?;
    if let Some(a) = select.client {
        entries.retain(|(k, _)| c.client_key(k.vip_id, a) == Some(k.addr));
    }
    // An HTTP table's times are the proxy's (the map's lag by up to
    // `stick_refresh`).
    for (k, v) in &mut entries {
        if let Some(e) = c.http_table(k.vip_id).and_then(|t| t.get(&k.addr, 0))
            && e.server == v.backend
        {
            v.last_seen_ns = v.last_seen_ns.max(e.last_seen_ns);
        }
    }
    // An expired entry is gone (a miss to the XDP program and the proxy),
    // as HAProxy no longer lists it; the map drops it when it needs room.
    let expire = c.table_expiry();
    entries.retain(|(k, v)| {
        expire
            .get(&k.vip_id)
            .is_none_or(|&e| e == 0 || now.saturating_sub(v.last_seen_ns) <= e)
    });
    Ok(listing::Listing::new(entries, listing::Names::of(c), now))
}

pub(super) fn set(c: &mut Controller, frontend: &str, client: IpAddr, server: &str) -> Answer {
    let fi = c.frontend_index(frontend).map_err(internal)?;
    let backend = c.config.backends[c.config.frontends[fi].backend]
        .name
        .clone();
    let id = c.table_id_of_frontend(frontend).map_err(internal)?;
    let Some(addr) = c.client_key(id, client) else {
        return Err(request::bad(format!(
            "client {client} is not of an address family frontend {frontend}'s stick table holds"
        )));
    };
    let i = c.find_server(server).map_err(internal)?;
    let s = &c.servers[i];
    if s.backend != backend {
        return Err(request::bad(format!(
            "server {server} is not in frontend {frontend}'s backend"
        )));
    }
    let key = StickKey { vip_id: id, addr };
    let value = StickValue {
        backend: s.id,
        _pad: 0,
        last_seen_ns: monotonic_ns(),
    };
    c.dp.stick_set(&key, &value).map_err(dp_err)?;
    if let Some(t) = c.http_table(id) {
        t.put(
            &addr,
            Entry {
                server: value.backend,
                last_seen_ns: value.last_seen_ns,
            },
        );
    }
    serde_json::to_value(listing::Names::of(c).entry(&key, &value, value.last_seen_ns))
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

pub(super) fn clear(c: &mut Controller, select: &TableSelect) -> Answer {
    let ids = match selected(c, select)? {
        Some(id) => vec![id],
        None => c.table_ids(),
    };
    let mut removed = 0;
    match select.client {
        Some(a) => {
            for id in ids {
                let Some(addr) = c.client_key(id, a) else {
                    continue;
                };
                if let Some(t) = c.http_table(id) {
                    t.remove(&addr);
                }
                let key = StickKey { vip_id: id, addr };
                removed += usize::from(c.dp.stick_remove(&key).map_err(dp_err)?);
            }
        }
        None => {
            for t in c.http_tables().values().filter(|t| ids.contains(&t.id)) {
                t.remove_where(|_| true);
            }
            removed = match select.frontend {
                Some(_) => c.dp.stick_clear(ids.first().copied()).map_err(dp_err)?,
                // Everything, entries of ids no table has any more included.
                None => c.dp.stick_clear(None).map_err(dp_err)?,
            };
        }
    }
    Ok(json!(api::Removed { removed }))
}
