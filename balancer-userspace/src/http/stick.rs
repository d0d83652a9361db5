//! An HTTP backend's stick table as the proxy reads and writes it: in
//! process, so that a request pays no system call.
//!
//! The backend's logical table is the pinned kernel map (`STICK`, entries
//! keyed by the table's id): `table show`, a restart, the peers and the
//! metrics read it there, as they read the XDP path's. This copy is kept
//! in step with it both ways:
//! - the proxy's new entries, changed servers and refreshed times (at
//!   most once per `stick_refresh` an entry) are queued here and written
//!   to the map in batches by the controller's flusher (`control/stick.rs`)
//!   every [`FLUSH_INTERVAL`];
//! - whatever else writes the map writes here too: the controller loads
//!   the map's entries at start (a restart keeps them), the admin API's
//!   `table set|clear` and a removed server's purge, and the peers engine's
//!   entries learned from other balancers.
//!
//! Expired entries count as absent, and are dropped by [`Table::sweep`].
//! A table holds at most its `size`; a full shard gives up its
//! least recently seen entry of a few sampled ones (the map, an LRU hash,
//! evicts on its own).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use balancer_common::{
    hash::mask_addr,
    maps::{FAMILY_V4, FAMILY_V6, StickKey, StickValue, family_addr},
};

use crate::config::KeyMask;

/// How often queued writes reach the pinned map.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Shards (each a lock and a hash map).
const SHARDS: usize = 64;
/// Entries looked at to choose one to evict from a full shard.
const EVICT_SAMPLE: usize = 8;

/// One entry: the server's id and when its client was last seen
/// (CLOCK_MONOTONIC ns, as the map's `last_seen_ns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub server: u32,
    pub last_seen_ns: u64,
}

/// One shard's entries, by key.
type Shard = HashMap<[u8; 16], Slot>;

#[derive(Debug, Clone, Copy)]
struct Slot {
    entry: Entry,
    /// `last_seen_ns` the map has (or is queued to get).
    written_ns: u64,
}

/// The key form of a table: which clients it holds and how they are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyForm {
    /// `type ipv6`: IPv6 clients, and IPv4 ones as IPv4-mapped addresses.
    /// `type ip`: IPv4 clients only (and IPv4-mapped IPv6 ones).
    pub ipv6: bool,
    pub mask: KeyMask,
}

impl KeyForm {
    /// The key of `client`, or `None` for a client the table cannot hold
    /// (an IPv6 client of a `type ip` table, as HAProxy does not store it).
    pub fn key(self, client: IpAddr) -> Option<[u8; 16]> {
        let client = match client {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        match (client, self.ipv6) {
            (IpAddr::V4(a), false) => Some(mask_addr(
                &family_addr(IpAddr::V4(a)).1,
                self.mask.prefix_for(true),
            )),
            (IpAddr::V4(a), true) => {
                let prefix = match self.mask.prefix_for(true) {
                    0 => 0,
                    p => 96 + p,
                };
                Some(mask_addr(&a.to_ipv6_mapped().octets(), prefix))
            }
            (IpAddr::V6(_), false) => None,
            (IpAddr::V6(a), true) => Some(mask_addr(&a.octets(), self.mask.prefix_for(false))),
        }
    }

    /// The family the table's keys are shown in.
    pub fn family(self) -> u8 {
        if self.ipv6 { FAMILY_V6 } else { FAMILY_V4 }
    }
}

/// One HTTP backend's table.
pub struct Table {
    /// Its id in the map's keys (`StickKey::vip_id`).
    pub id: u32,
    pub form: KeyForm,
    /// An entry not seen for this long is gone; 0: never.
    expire_ns: AtomicU64,
    /// The least time between two writes of one entry's `last_seen_ns`.
    refresh_ns: AtomicU64,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// Writes waiting for the flusher.
    pending: Mutex<Vec<(StickKey, StickValue)>>,
}

/// Tables compare by identity (the controller republishes the same one).
impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Table {}

/// Its id and key form, not its entries.
impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("id", &self.id)
            .field("form", &self.form)
            .finish_non_exhaustive()
    }
}

impl Table {
    pub fn new(id: u32, form: KeyForm, size: u64, expire: Duration, refresh: Duration) -> Table {
        let per_shard = (size as usize).div_ceil(SHARDS).max(1);
        Table {
            id,
            form,
            expire_ns: AtomicU64::new(expire.as_nanos() as u64),
            refresh_ns: AtomicU64::new(refresh.as_nanos() as u64),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
            pending: Mutex::new(Vec::new()),
        }
    }

    /// A reload's new `expire` and `stick_refresh`.
    pub fn set_times(&self, expire: Duration, refresh: Duration) {
        self.expire_ns
            .store(expire.as_nanos() as u64, Ordering::Relaxed);
        self.refresh_ns
            .store(refresh.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn expire_ns(&self) -> u64 {
        self.expire_ns.load(Ordering::Relaxed)
    }

    fn shard(&self, key: &[u8; 16]) -> &Mutex<Shard> {
        // The key's low bytes vary most (a masked key's trailing ones are
        // zero, so the whole key is folded).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        &self.shards[(h as usize) % self.shards.len()]
    }

    fn expired(&self, e: &Entry, now_ns: u64) -> bool {
        let expire = self.expire_ns();
        expire != 0 && now_ns.saturating_sub(e.last_seen_ns) > expire
    }

    /// The live entry of `key`.
    pub fn get(&self, key: &[u8; 16], now_ns: u64) -> Option<Entry> {
        let shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        shard
            .get(key)
            .map(|s| s.entry)
            .filter(|e| !self.expired(e, now_ns))
    }

    /// `stick match`: the live entry of `key`, and whether `usable` takes
    /// its server; a usable entry is refreshed at once (as HAProxy touches
    /// a matched entry when the request starts, whatever then happens to
    /// it), queued for the map when its time there has aged past
    /// `stick_refresh`.
    pub fn matched(
        &self,
        key: &[u8; 16],
        now_ns: u64,
        usable: impl Fn(u32) -> bool,
    ) -> Option<(Entry, bool)> {
        let refresh = self.refresh_ns.load(Ordering::Relaxed);
        let queued = {
            let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
            let s = shard.get_mut(key)?;
            if self.expired(&s.entry, now_ns) {
                return None;
            }
            let found = s.entry;
            if !usable(found.server) {
                return Some((found, false));
            }
            s.entry.last_seen_ns = now_ns;
            if now_ns.saturating_sub(s.written_ns) < refresh {
                return Some((found, true));
            }
            s.written_ns = now_ns;
            s.entry
        };
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.map_key(key), map_value(queued)));
        Some((queued, true))
    }

    /// `key`'s client was answered by `server` at `now_ns` (a store): kept here, queued for the map when the server
    /// changed, the entry is new, or its time in the map has aged past
    /// `stick_refresh`.
    pub fn record(&self, key: &[u8; 16], server: u32, now_ns: u64) {
        let refresh = self.refresh_ns.load(Ordering::Relaxed);
        let entry = Entry {
            server,
            last_seen_ns: now_ns,
        };
        {
            let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
            match shard.get_mut(key) {
                Some(s)
                    if s.entry.server == server
                        && now_ns.saturating_sub(s.written_ns) < refresh =>
                {
                    s.entry.last_seen_ns = now_ns;
                    return;
                }
                _ => self.set(&mut shard, key, entry, now_ns),
            }
        }
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.map_key(key), map_value(entry)));
    }

    /// An entry written to the map by someone else (loaded at start, set
    /// through the admin API, learned from a peer): kept as it is, not
    /// queued. A newer entry of ours is not overwritten by an older one.
    pub fn put(&self, key: &[u8; 16], entry: Entry) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if shard
            .get(key)
            .is_some_and(|s| s.entry.last_seen_ns > entry.last_seen_ns)
        {
            return;
        }
        self.set(&mut shard, key, entry, entry.last_seen_ns);
    }

    /// Set `key`'s slot in its (locked) shard, making room if it is new.
    fn set(&self, shard: &mut Shard, key: &[u8; 16], entry: Entry, written_ns: u64) {
        let slot = Slot { entry, written_ns };
        if let Some(s) = shard.get_mut(key) {
            *s = slot;
            return;
        }
        if shard.len() >= self.per_shard {
            evict(shard);
        }
        shard.insert(*key, slot);
    }

    /// Forget `key` (the map's entry is deleted by the caller).
    pub fn remove(&self, key: &[u8; 16]) -> bool {
        self.shard(key)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
            .is_some()
    }

    /// Forget the entries for which `gone` holds; how many.
    pub fn remove_where(&self, gone: impl Fn(&Entry) -> bool) -> usize {
        let mut n = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            shard.retain(|_, s| !gone(&s.entry));
            n += before - shard.len();
        }
        n
    }

    /// Drop expired entries; how many.
    pub fn sweep(&self, now_ns: u64) -> usize {
        self.remove_where(|e| self.expired(e, now_ns))
    }

    /// Entries held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The writes queued for the map since the last call.
    pub fn take_pending(&self) -> Vec<(StickKey, StickValue)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn map_key(&self, key: &[u8; 16]) -> StickKey {
        StickKey {
            vip_id: self.id,
            addr: *key,
        }
    }
}

fn map_value(e: Entry) -> StickValue {
    StickValue {
        backend: e.server,
        _pad: 0,
        last_seen_ns: e.last_seen_ns,
    }
}

/// Make room in a full shard: the least recently seen of a few entries goes.
fn evict(shard: &mut Shard) {
    let victim = shard
        .iter()
        .take(EVICT_SAMPLE)
        .min_by_key(|(_, s)| s.entry.last_seen_ns)
        .map(|(k, _)| *k);
    if let Some(k) = victim {
        shard.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn table(size: u64) -> Table {
        let form = KeyForm {
            ipv6: false,
            mask: KeyMask::default(),
        };
        Table::new(
            7,
            form,
            size,
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
    }

    fn key(s: &str) -> [u8; 16] {
        family_addr(s.parse().unwrap()).1
    }

    #[test]
    fn records_are_queued_once_per_refresh_and_on_a_change() {
        let t = table(100);
        let k = key("198.18.0.2");
        t.record(&k, 3, 10 * SEC);
        t.record(&k, 3, 10 * SEC + SEC / 2);
        assert_eq!(t.take_pending().len(), 1, "a new entry is written once");
        assert_eq!(
            t.get(&k, 11 * SEC).unwrap().last_seen_ns,
            10 * SEC + SEC / 2
        );
        t.record(&k, 3, 11 * SEC + 1);
        let p = t.take_pending();
        assert_eq!(p.len(), 1, "aged past stick_refresh: written again");
        assert_eq!(p[0].0, StickKey { vip_id: 7, addr: k });
        t.record(&k, 4, 11 * SEC + 2);
        let p = t.take_pending();
        assert_eq!(p[0].1.backend, 4, "a new server is written at once");
    }

    #[test]
    fn a_match_refreshes_a_usable_entry_only() {
        let t = table(100);
        let k = key("198.18.0.2");
        t.record(&k, 3, 10 * SEC);
        t.take_pending();
        assert_eq!(
            t.matched(&k, 11 * SEC, |s| s != 3).map(|(_, u)| u),
            Some(false)
        );
        assert_eq!(t.get(&k, 11 * SEC).unwrap().last_seen_ns, 10 * SEC);
        let (e, usable) = t.matched(&k, 11 * SEC, |_| true).unwrap();
        assert!(usable);
        assert_eq!(e.server, 3);
        assert_eq!(t.get(&k, 11 * SEC).unwrap().last_seen_ns, 11 * SEC);
        assert_eq!(
            t.take_pending().len(),
            1,
            "aged past stick_refresh: written"
        );
        assert!(t.matched(&k, 41 * SEC + 1, |_| true).is_none(), "expired");
        assert!(t.matched(&key("198.18.0.3"), 11 * SEC, |_| true).is_none());
    }

    #[test]
    fn expired_entries_are_absent_and_swept() {
        let t = table(100);
        let k = key("198.18.0.2");
        t.record(&k, 1, SEC);
        assert!(t.get(&k, 31 * SEC).is_some());
        assert!(t.get(&k, 31 * SEC + 1).is_none());
        assert_eq!(t.sweep(31 * SEC + 1), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_evicts_the_oldest_sampled() {
        let t = table(64);
        for i in 0..200u32 {
            let k = key(&format!("198.18.{}.{}", i / 256, i % 256));
            t.record(&k, 1, u64::from(i) * SEC / 100);
        }
        assert!(t.len() <= 64, "{} entries", t.len());
        // The newest is kept.
        assert!(t.get(&key("198.18.0.199"), 2 * SEC).is_some());
    }

    #[test]
    fn an_older_entry_from_elsewhere_does_not_undo_a_newer_change() {
        let t = table(100);
        let k = key("198.18.0.2");
        t.record(&k, 2, 5 * SEC);
        t.put(
            &k,
            Entry {
                server: 1,
                last_seen_ns: 4 * SEC,
            },
        );
        assert_eq!(t.get(&k, 6 * SEC).unwrap().server, 2);
        t.put(
            &k,
            Entry {
                server: 1,
                last_seen_ns: 6 * SEC,
            },
        );
        assert_eq!(t.get(&k, 6 * SEC).unwrap().server, 1);
    }

    #[test]
    fn keys_by_type_and_mask() {
        let mut form = KeyForm {
            ipv6: false,
            mask: KeyMask { v4: 24, v6: 64 },
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(form.key(ip("198.18.7.9")), form.key(ip("198.18.7.200")));
        assert_ne!(form.key(ip("198.18.7.9")), form.key(ip("198.18.8.9")));
        assert_eq!(
            form.key(ip("::ffff:198.18.7.9")),
            form.key(ip("198.18.7.1"))
        );
        assert_eq!(
            form.key(ip("2001:db8::1")),
            None,
            "type ip holds no IPv6 client"
        );
        form.ipv6 = true;
        assert_eq!(
            form.key(ip("198.18.7.9")).unwrap(),
            ip("::ffff:198.18.7.0")
                .to_string()
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(
            form.key(ip("2001:db8:0:1::5")),
            form.key(ip("2001:db8:0:1:ff::9"))
        );
        assert_ne!(
            form.key(ip("2001:db8:0:1::5")),
            form.key(ip("2001:db8:0:2::5"))
        );
    }
}
