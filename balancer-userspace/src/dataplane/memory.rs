//! The maps without a kernel: what a configuration that needs no XDP
//! (no interface, no pin directory: an HTTP-only daemon) keeps in the
//! process instead, so it runs without root, bpffs or locked memory.
//!
//! Only what the control plane reads back is kept: the backends' slots,
//! the id maps and the stick table (the HTTP stick tables' shared home, as
//! the pinned map is with a kernel). The VIP and Maglev tables, the
//! configuration record and the egress devmap have no reader without a
//! program: they are checked as the kernel's would be, then dropped. The
//! packet counters stay zero (no packet passes through XDP).
//!
//! The stick table lives as long as the process: a restart starts it
//! empty, as HAProxy's tables do without peers (`pin_dir` keeps it in a
//! pinned map instead).

use std::{
    collections::HashMap,
    io,
    sync::{Arc, Mutex, MutexGuard},
};

use balancer_common::maps::{
    Backend, FRONTEND_IDS_MAP, ID_NAME_LEN, IdName, MAX_BACKENDS, MAX_VIPS, SERVER_IDS_MAP,
    StickKey, StickValue,
};

use super::DataplaneError;

/// The stick table in process memory, shared with the HTTP stick
/// tables' flusher (see [`StickWriter`](super::StickWriter)).
#[derive(Clone)]
pub struct MemoryStick {
    entries: Arc<Mutex<HashMap<StickKey, StickValue>>>,
    /// Writes so far (the peers engine scans when it moved).
    writes: Arc<std::sync::atomic::AtomicU64>,
    /// Entries at most (the kernel map's `max_entries`).
    cap: usize,
}

impl MemoryStick {
    fn new(cap: u32) -> MemoryStick {
        MemoryStick {
            entries: Default::default(),
            writes: Default::default(),
            cap: cap as usize,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<StickKey, StickValue>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes so far: it moves when the table may have changed.
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn wrote(&self) {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Insert or replace `key`. A full table gives up the least recently
    /// seen of a few entries (the kernel's LRU map evicts on its own).
    pub fn set(&self, key: &StickKey, value: &StickValue) {
        let mut m = self.lock();
        if m.len() >= self.cap && !m.contains_key(key) {
            let oldest = m
                .iter()
                .take(8)
                .min_by_key(|(_, v)| v.last_seen_ns)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                m.remove(&k);
            }
        }
        m.insert(*key, *value);
        drop(m);
        self.wrote();
    }

    /// Write many entries at once (the flusher's batch).
    pub fn update(&self, keys: &[StickKey], values: &[StickValue]) -> io::Result<()> {
        if keys.len() != values.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "as many keys as values",
            ));
        }
        for (k, v) in keys.iter().zip(values) {
            self.set(k, v);
        }
        Ok(())
    }

    pub fn get(&self, key: &StickKey) -> Option<StickValue> {
        self.lock().get(key).copied()
    }

    pub fn remove(&self, key: &StickKey) -> bool {
        let removed = self.lock().remove(key).is_some();
        self.wrote();
        removed
    }

    /// Entries of one VIP (or all).
    pub fn entries(&self, vip_id: Option<u32>) -> Vec<(StickKey, StickValue)> {
        self.lock()
            .iter()
            .filter(|(k, _)| vip_id.is_none_or(|id| id == k.vip_id))
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    pub fn count(&self, vip_id: Option<u32>) -> usize {
        match vip_id {
            None => self.lock().len(),
            Some(id) => self.lock().keys().filter(|k| k.vip_id == id).count(),
        }
    }

    /// Delete the entries of one VIP (or all) whose value `pick`s.
    pub fn delete_where(&self, vip_id: Option<u32>, pick: impl Fn(&StickValue) -> bool) -> usize {
        let mut m = self.lock();
        let before = m.len();
        m.retain(|k, v| !(vip_id.is_none_or(|id| id == k.vip_id) && pick(v)));
        let n = before - m.len();
        drop(m);
        self.wrote();
        n
    }
}

/// The maps of a data plane with no kernel program.
pub(super) struct Memory {
    backends: Vec<Backend>,
    server_ids: Vec<IdName>,
    frontend_ids: Vec<IdName>,
    pub(super) stick: MemoryStick,
}

/// What a daemon without kernel maps hands to the one taking over (see
/// `daemon::takeover`): its ids by name and its stick entries, so that the
/// new daemon gives every server the id the entries name.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Snapshot {
    server_ids: Vec<(u32, String)>,
    frontend_ids: Vec<(u32, String)>,
    /// (table id, client, server id, last seen in CLOCK_MONOTONIC ns).
    stick: Vec<(u32, [u8; 16], u32, u64)>,
}

/// A snapshot larger than this is refused (a full 16m-entry table takes
/// about 600 MB; more is not one of ours).
const MAX_SNAPSHOT: usize = 1 << 30;

impl Memory {
    pub(super) fn snapshot(&self) -> Result<Vec<u8>, DataplaneError> {
        let snap = Snapshot {
            server_ids: self.id_names(SERVER_IDS_MAP)?,
            frontend_ids: self.id_names(FRONTEND_IDS_MAP)?,
            stick: self
                .stick
                .entries(None)
                .into_iter()
                .map(|(k, v)| (k.vip_id, k.addr, v.backend, v.last_seen_ns))
                .collect(),
        };
        postcard::to_stdvec(&snap).map_err(|e| DataplaneError::Snapshot(e.to_string()))
    }

    /// Take the ids and entries of `bytes` (from [`Memory::snapshot`]).
    pub(super) fn restore(&mut self, bytes: &[u8]) -> Result<usize, DataplaneError> {
        if bytes.len() > MAX_SNAPSHOT {
            return Err(DataplaneError::Snapshot(format!(
                "{} bytes, more than {MAX_SNAPSHOT}",
                bytes.len()
            )));
        }
        let snap: Snapshot =
            postcard::from_bytes(bytes).map_err(|e| DataplaneError::Snapshot(e.to_string()))?;
        for (map, ids) in [
            (SERVER_IDS_MAP, &snap.server_ids),
            (FRONTEND_IDS_MAP, &snap.frontend_ids),
        ] {
            for (id, name) in ids {
                let mut v: IdName = [0; ID_NAME_LEN];
                if name.is_empty() || name.len() > ID_NAME_LEN {
                    return Err(DataplaneError::NameTooLong { name: name.clone() });
                }
                v[..name.len()].copy_from_slice(name.as_bytes());
                self.set_id_name(map, *id, v)?;
            }
        }
        for &(vip_id, addr, backend, last_seen_ns) in &snap.stick {
            self.stick.set(
                &StickKey { vip_id, addr },
                &StickValue {
                    backend,
                    _pad: 0,
                    last_seen_ns,
                },
            );
        }
        Ok(snap.stick.len())
    }

    pub(super) fn new(stick_size: u32, max_backends: u32) -> Memory {
        Memory {
            backends: vec![Backend::default(); max_backends as usize],
            server_ids: vec![[0; ID_NAME_LEN]; MAX_BACKENDS as usize],
            frontend_ids: vec![[0; ID_NAME_LEN]; MAX_VIPS as usize],
            stick: MemoryStick::new(stick_size),
        }
    }

    fn ids(&self, map: &'static str) -> Result<&Vec<IdName>, DataplaneError> {
        match map {
            SERVER_IDS_MAP => Ok(&self.server_ids),
            FRONTEND_IDS_MAP => Ok(&self.frontend_ids),
            name => Err(DataplaneError::MissingMap { name }),
        }
    }

    pub(super) fn id_names(&self, map: &'static str) -> Result<Vec<(u32, String)>, DataplaneError> {
        super::names_in(self.ids(map)?.iter().copied().map(Ok))
    }

    pub(super) fn set_id_name(
        &mut self,
        map: &'static str,
        id: u32,
        name: IdName,
    ) -> Result<(), DataplaneError> {
        let ids = match map {
            SERVER_IDS_MAP => &mut self.server_ids,
            FRONTEND_IDS_MAP => &mut self.frontend_ids,
            name => return Err(DataplaneError::MissingMap { name }),
        };
        let max = ids.len() as u32;
        let slot = ids
            .get_mut(id as usize)
            .ok_or(DataplaneError::NoFreeId { map, max })?;
        *slot = name;
        Ok(())
    }

    pub(super) fn set_backend(&mut self, id: u32, b: &Backend) {
        if let Some(slot) = self.backends.get_mut(id as usize) {
            *slot = *b;
        }
    }

    pub(super) fn backend(&self, id: u32) -> Backend {
        self.backends.get(id as usize).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dataplane::testing::{key, value};

    #[test]
    fn a_full_table_evicts_its_least_recently_seen_entry() {
        let s = MemoryStick::new(3);
        for i in 0..3 {
            s.set(&key(1, i), &value(7, 100 + u64::from(i)));
        }
        // Replacing an entry in a full table evicts nothing.
        s.set(&key(1, 2), &value(8, 200));
        assert_eq!(s.count(None), 3);
        s.set(&key(1, 9), &value(7, 300));
        assert_eq!(s.count(None), 3);
        assert_eq!(s.get(&key(1, 0)), None, "the oldest entry went");
        assert_eq!(s.get(&key(1, 2)), Some(value(8, 200)));
    }

    #[test]
    fn entries_counts_and_deletes_by_vip() {
        let s = MemoryStick::new(100);
        s.update(
            &[key(1, 1), key(1, 2), key(2, 1)],
            &[value(5, 1), value(6, 1), value(5, 1)],
        )
        .unwrap();
        assert_eq!(s.count(Some(1)), 2);
        assert_eq!(s.entries(Some(2)), vec![(key(2, 1), value(5, 1))]);
        assert_eq!(s.delete_where(None, |v| v.backend == 5), 2);
        assert_eq!(s.count(None), 1);
        assert!(s.remove(&key(1, 2)));
        assert!(!s.remove(&key(1, 2)));
        assert!(s.update(&[key(1, 1)], &[]).is_err());
    }

    #[test]
    fn a_snapshot_carries_ids_and_entries_to_another_process() {
        let mut m = Memory::new(16, 8);
        let mut name = [0; ID_NAME_LEN];
        name[..5].copy_from_slice(b"app/a");
        m.set_id_name(SERVER_IDS_MAP, 3, name).unwrap();
        m.stick.set(&key(9, 1), &value(3, 77));
        let bytes = m.snapshot().unwrap();
        let mut n = Memory::new(16, 8);
        assert_eq!(n.restore(&bytes).unwrap(), 1);
        assert_eq!(
            n.id_names(SERVER_IDS_MAP).unwrap(),
            vec![(3, "app/a".into())]
        );
        assert_eq!(n.stick.get(&key(9, 1)), Some(value(3, 77)));
        assert!(n.restore(&bytes[..bytes.len() - 1]).is_err(), "truncated");
    }

    #[test]
    fn ids_are_bounded_like_the_kernel_arrays() {
        let mut m = Memory::new(16, 4);
        let mut name = [0; ID_NAME_LEN];
        name[..3].copy_from_slice(b"a/b");
        m.set_id_name(SERVER_IDS_MAP, 2, name).unwrap();
        assert_eq!(m.id_names(SERVER_IDS_MAP).unwrap(), vec![(2, "a/b".into())]);
        assert!(m.set_id_name(FRONTEND_IDS_MAP, MAX_VIPS, name).is_err());
    }
}
