//! The replication engine: one thread that owns this instance's view of
//! the replicated part of the stick table.
//!
//! Outgoing: every `scan_interval` it reads the data plane's per-frontend
//! counters of new entries and redispatches (one syscall per replicated
//! frontend); when they moved, or at least every `refresh / 2` (1 s to
//! 30 s: entries set through the admin API, refreshed last-seen times), it
//! reads the whole stick table with
//! batched lookups ([`super::scan`]) and compares it with a shadow copy:
//! a new entry, or one whose server changed (a redispatch), is sent at
//! once; an entry whose last-seen time moved by at least `refresh` since it
//! was last sent is sent again (so refreshes travel at a bounded rate per
//! entry). Changes go to every subscribed peer link as shared batches.
//!
//! Incoming: entries learned from peers are written into the stick table
//! when they are newer than the local entry (or there is none), and into
//! the shadow, so they are not sent back. Entries for frontends this
//! instance does not replicate, servers it does not have, or of the wrong
//! address family are rejected and counted.

use std::{
    collections::{BTreeMap, HashMap, hash_map::Entry},
    os::fd::{AsFd as _, AsRawFd as _, RawFd},
    path::Path,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray};
use balancer_common::maps::{
    STICK_MAP, StickKey, StickValue, VIP_STATS_MAP, VipStats, addr_of, family_addr,
};
use log::{debug, warn};
use tokio::sync::{mpsc as tmpsc, oneshot};

use super::wire::{MAX_BATCH, TableUpdates, WireEntry};
pub use crate::api::{Applied, EngineStats};
use crate::{
    config::Mode,
    control::{Controller, stick::table_id_name},
    dataplane::MemoryStick,
    stick_batch::Scanner,
    util::{error_chain, monotonic_ns, thread_cpu_ns},
};

/// Batches queued for one peer link before it is considered too slow (it
/// is then dropped and resyncs when it reconnects).
const QUEUE: usize = 512;
/// Entries read per `BPF_MAP_LOOKUP_BATCH` call.
const SCAN_CHUNK: usize = 4096;

/// One replicated table: a frontend whose backend's stick table names this
/// peers section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub frontend: String,
    pub backend: String,
    pub v4: bool,
    pub expire_ns: u64,
    /// Server names in a fixed order (the wire's index space).
    pub servers: Vec<String>,
    /// Backend id -> index into `servers`.
    pub index: BTreeMap<u32, u16>,
    /// Server name -> backend id.
    pub ids: BTreeMap<String, u32>,
}

/// What the engine needs to name entries: the replicated tables by VIP id
/// (an HTTP backend's table by its table id, named `backend/NAME` on the
/// wire).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub tables: BTreeMap<u32, TableInfo>,
    pub by_frontend: BTreeMap<String, u32>,
    /// The in-process copies of the replicated HTTP tables, which learn
    /// what the engine writes to the map.
    pub http: BTreeMap<u32, Arc<crate::http::stick::Table>>,
}

impl Names {
    /// The tables of `c` replicated by peers section `section`.
    pub fn build(c: &Controller, section: &str) -> Names {
        let mut n = Names::default();
        let mut add = |name: String, id: u32, b: &crate::config::Backend, v4: bool| {
            let mut servers: Vec<(String, u32)> = c
                .servers
                .iter()
                .filter(|s| s.backend == b.name)
                .map(|s| (s.name.clone(), s.id))
                .collect();
            servers.sort();
            let index = servers
                .iter()
                .enumerate()
                .map(|(i, (_, id))| (*id, i as u16))
                .collect();
            let ids = servers.iter().cloned().collect();
            n.by_frontend.insert(name.clone(), id);
            n.tables.insert(
                id,
                TableInfo {
                    frontend: name,
                    backend: b.name.clone(),
                    v4,
                    expire_ns: b.expire.as_nanos() as u64,
                    servers: servers.into_iter().map(|(n, _)| n).collect(),
                    index,
                    ids,
                },
            );
        };
        for (f, &vip) in c.config.frontends.iter().zip(&c.frontend_ids) {
            let b = &c.config.backends[f.backend];
            if f.mode != Mode::L4 || b.peers.as_deref() != Some(section) {
                continue;
            }
            add(f.name.clone(), vip, b, f.vip.is_ipv4());
        }
        let mut http = BTreeMap::new();
        for (name, t) in c.http_tables() {
            let Some(b) = c.config.backends.iter().find(|b| &b.name == name) else {
                continue;
            };
            if b.peers.as_deref() != Some(section) {
                continue;
            }
            add(table_id_name(name), t.id, b, !t.form.ipv6);
            http.insert(t.id, t.clone());
        }
        n.http = http;
        n
    }
}

/// Entries ready to send: made from the table at `made_ns` (CLOCK_MONOTONIC).
#[derive(Debug)]
pub struct Batch {
    pub made_ns: u64,
    pub resync: bool,
    pub tables: Vec<TableUpdates>,
    pub entries: usize,
}

/// A peer link's feed: the table as it is now, then its changes.
pub struct Subscription {
    pub snapshot: Vec<Arc<Batch>>,
    pub updates: tmpsc::Receiver<Arc<Batch>>,
}

pub enum Command {
    Subscribe {
        peer: String,
        reply: oneshot::Sender<Subscription>,
    },
    Apply {
        held_us: u64,
        tables: Vec<TableUpdates>,
        reply: oneshot::Sender<Applied>,
    },
    Names(Arc<Names>),
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("stick table pinned at {path}: {reason}")]
    Map { path: String, reason: String },
}

/// The sending side of the engine's command queue.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    pub stats: Arc<Mutex<EngineStats>>,
}

impl EngineHandle {
    pub async fn subscribe(&self, peer: &str) -> Option<Subscription> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Subscribe {
                peer: peer.to_owned(),
                reply,
            })
            .ok()?;
        rx.await.ok()
    }

    pub async fn apply(&self, held_us: u64, tables: Vec<TableUpdates>) -> Option<Applied> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Apply {
                held_us,
                tables,
                reply,
            })
            .ok()?;
        rx.await.ok()
    }

    pub fn set_names(&self, names: Arc<Names>) {
        let _ = self.tx.send(Command::Names(names));
    }
}

#[derive(Debug, Clone, Copy)]
struct Shadow {
    backend: u32,
    last_seen: u64,
    /// last_seen as of the last time this entry was sent (or learned).
    sent_seen: u64,
    /// Scan generation that last saw it.
    mark: u32,
}

/// Where the replicated entries live.
pub enum Source<'a> {
    /// The stick table pinned under this directory (the kernel's).
    Pinned(&'a Path),
    /// The daemon's table in its memory (no kernel data plane).
    Memory(MemoryStick),
}

/// The table the engine reads and writes.
enum Table {
    Pinned(Box<Pinned>),
    Memory(MemoryStick),
}

/// The kernel's stick table, with its per-VIP counters (the cheap change
/// signature).
struct Pinned {
    map: BpfHashMap<MapData, StickKey, StickValue>,
    vip_stats: PerCpuArray<MapData, VipStats>,
    fd: RawFd,
    scanner: Scanner,
}

impl Table {
    /// Call `f` on every entry; how many there were.
    fn scan(&mut self, mut f: impl FnMut(&StickKey, &StickValue)) -> std::io::Result<usize> {
        match self {
            Table::Pinned(p) => p.scanner.scan(p.fd, f),
            Table::Memory(m) => {
                let all = m.entries(None);
                for (k, v) in &all {
                    f(k, v);
                }
                Ok(all.len())
            }
        }
    }

    fn get(&self, key: &StickKey) -> Result<Option<StickValue>, String> {
        match self {
            Table::Pinned(p) => match p.map.get(key, 0) {
                Ok(v) => Ok(Some(v)),
                Err(MapError::KeyNotFound) => Ok(None),
                Err(e) => Err(error_chain(&e)),
            },
            Table::Memory(m) => Ok(m.get(key)),
        }
    }

    fn insert(&mut self, key: StickKey, value: StickValue) -> Result<(), String> {
        match self {
            Table::Pinned(p) => p.map.insert(key, value, 0).map_err(|e| error_chain(&e)),
            Table::Memory(m) => {
                m.set(&key, &value);
                Ok(())
            }
        }
    }
}

pub struct Engine {
    table: Table,
    /// The table's change signature at the last scan (see
    /// [`Engine::signature`]).
    signature: u64,
    shadow: HashMap<StickKey, Shadow>,
    generation: u32,
    names: Arc<Names>,
    subscribers: Vec<(String, tmpsc::Sender<Arc<Batch>>)>,
    scan_interval: Duration,
    /// Scan at least this often even when the counters say nothing changed.
    full_every: Duration,
    refresh_ns: u64,
    stats: Arc<Mutex<EngineStats>>,
}

impl Engine {
    /// Open the table of `source`.
    pub fn open(
        source: Source<'_>,
        names: Names,
        scan_interval: Duration,
        refresh: Duration,
    ) -> Result<Self, EngineError> {
        let table = match source {
            Source::Memory(m) => Table::Memory(m),
            Source::Pinned(pin_dir) => {
                let path = pin_dir.join(STICK_MAP);
                let err = |reason: String| EngineError::Map {
                    path: path.display().to_string(),
                    reason,
                };
                let data = MapData::from_pin(&path).map_err(|e| err(error_chain(&e)))?;
                let fd = data.fd().as_fd().as_raw_fd();
                let map = Map::from_map_data(data).map_err(|e| err(error_chain(&e)))?;
                let map = BpfHashMap::try_from(map).map_err(|e| err(error_chain(&e)))?;
                let stats_path = pin_dir.join(VIP_STATS_MAP);
                let vip_stats = MapData::from_pin(&stats_path)
                    .and_then(Map::from_map_data)
                    .map_err(|e| err(error_chain(&e)))
                    .and_then(|m| PerCpuArray::try_from(m).map_err(|e| err(error_chain(&e))))?;
                Table::Pinned(Box::new(Pinned {
                    map,
                    vip_stats,
                    fd,
                    scanner: Scanner::new(SCAN_CHUNK),
                }))
            }
        };
        Ok(Engine {
            table,
            signature: u64::MAX,
            shadow: HashMap::new(),
            generation: 0,
            names: Arc::new(names),
            subscribers: Vec::new(),
            scan_interval,
            full_every: (refresh / 2).clamp(Duration::from_secs(1), Duration::from_secs(30)),
            refresh_ns: refresh.as_nanos() as u64,
            stats: Default::default(),
        })
    }

    /// Run on a thread of its own until every handle is dropped.
    pub fn spawn(self, thread_name: &str) -> std::io::Result<EngineHandle> {
        let (tx, rx) = mpsc::channel();
        let stats = self.stats.clone();
        // Linux keeps 15 bytes of a thread's name.
        let name: String = thread_name.chars().take(15).collect();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run(rx))?;
        Ok(EngineHandle { tx, stats })
    }

    fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut next_tick = Instant::now();
        let mut last_scan = Instant::now();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(cmd) => self.command(cmd),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next_tick {
                let sig = self.signature();
                if sig != Some(self.signature) || last_scan.elapsed() >= self.full_every {
                    // Read before the scan: a change during it is seen next time.
                    self.signature = sig.unwrap_or(u64::MAX);
                    self.scan_and_send();
                    last_scan = Instant::now();
                } else {
                    self.stats
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .scans_skipped += 1;
                }
                next_tick = Instant::now() + self.scan_interval;
            }
        }
    }

    /// What changes when the table may have: with the kernel's, new
    /// entries plus redispatches of the replicated frontends, summed over
    /// CPUs; in memory, its writes. `None` if it cannot be read.
    fn signature(&self) -> Option<u64> {
        let vip_stats = match &self.table {
            Table::Memory(m) => return Some(m.writes()),
            Table::Pinned(p) => &p.vip_stats,
        };
        let mut sum = 0u64;
        for &vip in self.names.tables.keys() {
            let per_cpu = vip_stats.get(&vip, 0).ok()?;
            for s in per_cpu.iter() {
                sum = sum.wrapping_add(s.new_sticks).wrapping_add(s.redispatches);
            }
        }
        Some(sum)
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Names(n) => {
                if *n != *self.names {
                    // Ids may have moved: forget what was sent, so the
                    // next scan describes every entry with the new names.
                    self.shadow.clear();
                    self.names = n;
                }
            }
            Command::Subscribe { peer, reply } => {
                // A fresh scan first: the snapshot is the table as it is
                // now, and later changes come as updates.
                self.scan_and_send();
                let (tx, rx) = tmpsc::channel(QUEUE);
                let snapshot = self.snapshot();
                if reply
                    .send(Subscription {
                        snapshot,
                        updates: rx,
                    })
                    .is_ok()
                {
                    self.subscribers.retain(|(p, _)| *p != peer);
                    self.subscribers.push((peer, tx));
                }
            }
            Command::Apply {
                held_us,
                tables,
                reply,
            } => {
                let a = self.apply(held_us, &tables);
                let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                s.learned.written += a.written;
                s.learned.stale += a.stale;
                s.learned.rejected += a.rejected;
                drop(s);
                let _ = reply.send(a);
            }
        }
    }

    /// Scan the table; send what changed to every subscriber.
    pub fn scan_and_send(&mut self) {
        let started = Instant::now();
        let cpu_before = thread_cpu_ns();
        let now = monotonic_ns();
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let refresh_ns = self.refresh_ns;
        let names = self.names.clone();
        let shadow = &mut self.shadow;
        let mut changed: BTreeMap<u32, Vec<(StickKey, u32, u64)>> = BTreeMap::new();
        let scanned = self.table.scan(|k, v| {
            let Some(t) = names.tables.get(&k.vip_id) else {
                return;
            };
            if t.expire_ns != 0 && now.saturating_sub(v.last_seen_ns) > t.expire_ns {
                return;
            }
            let send = match shadow.entry(*k) {
                Entry::Vacant(e) => {
                    e.insert(Shadow {
                        backend: v.backend,
                        last_seen: v.last_seen_ns,
                        sent_seen: v.last_seen_ns,
                        mark: generation,
                    });
                    true
                }
                Entry::Occupied(mut e) => {
                    let s = e.get_mut();
                    s.mark = generation;
                    let send = s.backend != v.backend
                        || v.last_seen_ns >= s.sent_seen.saturating_add(refresh_ns);
                    s.backend = v.backend;
                    s.last_seen = v.last_seen_ns;
                    if send {
                        s.sent_seen = v.last_seen_ns;
                    }
                    send
                }
            };
            if send {
                changed
                    .entry(k.vip_id)
                    .or_default()
                    .push((*k, v.backend, v.last_seen_ns));
            }
        });
        let scanned = match scanned {
            Ok(n) => n,
            Err(e) => {
                warn!("peers: scanning the stick table: {e}");
                self.stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .scan_errors += 1;
                return;
            }
        };
        self.shadow.retain(|_, s| s.mark == generation);
        let found: usize = changed.values().map(Vec::len).sum();
        let batches = make_batches(&self.names, now, false, changed);
        self.broadcast(batches);
        let took = started.elapsed().as_micros() as u64;
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.scans += 1;
        s.last_scan_entries = scanned as u64;
        s.last_scan_us = took;
        s.last_scan_cpu_us = thread_cpu_ns().saturating_sub(cpu_before) / 1000;
        s.max_scan_us = s.max_scan_us.max(took);
        s.total_scan_us += took;
        s.tracked_entries = self.shadow.len() as u64;
        s.changes_found += found as u64;
    }

    fn broadcast(&mut self, batches: Vec<Arc<Batch>>) {
        if batches.is_empty() {
            return;
        }
        let stats = &self.stats;
        self.subscribers.retain(|(peer, tx)| {
            for b in &batches {
                match tx.try_send(b.clone()) {
                    Ok(()) => {}
                    Err(tmpsc::error::TrySendError::Full(_)) => {
                        warn!(
                            "peers: link to {peer} is too slow: dropped, it resyncs on reconnect"
                        );
                        stats
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .slow_peers_dropped += 1;
                        return false;
                    }
                    Err(tmpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
    }

    /// Every tracked entry, as resync batches.
    fn snapshot(&self) -> Vec<Arc<Batch>> {
        let now = monotonic_ns();
        let mut all: BTreeMap<u32, Vec<(StickKey, u32, u64)>> = BTreeMap::new();
        for (k, s) in &self.shadow {
            all.entry(k.vip_id)
                .or_default()
                .push((*k, s.backend, s.last_seen));
        }
        make_batches(&self.names, now, true, all)
    }

    /// Write entries learned from a peer where they are newer.
    pub fn apply(&mut self, held_us: u64, tables: &[TableUpdates]) -> Applied {
        let now = monotonic_ns();
        let mut a = Applied::default();
        for t in tables {
            let n = t.entries.len() as u64;
            let Some(info) = self
                .names
                .by_frontend
                .get(&t.frontend)
                .and_then(|vip| self.names.tables.get(vip).map(|i| (*vip, i)))
                .filter(|(_, i)| i.backend == t.backend)
            else {
                debug!(
                    "peers: {} entries for frontend {:?} (backend {:?}) rejected: not replicated here",
                    n, t.frontend, t.backend
                );
                a.rejected += n;
                continue;
            };
            let (vip_id, info) = info;
            let ids: Vec<Option<u32>> =
                t.servers.iter().map(|s| info.ids.get(s).copied()).collect();
            for e in &t.entries {
                let Some(Some(id)) = ids.get(e.server as usize) else {
                    a.rejected += 1;
                    continue;
                };
                if e.client.is_ipv4() != info.v4 {
                    a.rejected += 1;
                    continue;
                }
                let age_ns = e.age_us.saturating_add(held_us).saturating_mul(1000);
                if info.expire_ns != 0 && age_ns > info.expire_ns {
                    a.stale += 1;
                    continue;
                }
                let last_seen = now.saturating_sub(age_ns);
                let key = StickKey {
                    vip_id,
                    addr: family_addr(e.client).1,
                };
                match self.table.get(&key) {
                    Ok(Some(cur)) if cur.last_seen_ns >= last_seen => {
                        a.stale += 1;
                        continue;
                    }
                    Ok(_) => {}
                    Err(err) => {
                        warn!("peers: reading the stick table: {err}");
                        a.stale += 1;
                        continue;
                    }
                }
                let value = StickValue {
                    backend: *id,
                    _pad: 0,
                    last_seen_ns: last_seen,
                };
                if let Err(err) = self.table.insert(key, value) {
                    warn!("peers: writing the stick table: {err}");
                    a.stale += 1;
                    continue;
                }
                if let Some(t) = self.names.http.get(&vip_id) {
                    t.put(
                        &key.addr,
                        crate::http::stick::Entry {
                            server: *id,
                            last_seen_ns: last_seen,
                        },
                    );
                }
                self.shadow.insert(
                    key,
                    Shadow {
                        backend: *id,
                        last_seen,
                        sent_seen: last_seen,
                        mark: self.generation,
                    },
                );
                a.written += 1;
            }
        }
        a
    }
}

/// Group `(key, backend id, last seen)` by table into batches of at most
/// [`MAX_BATCH`] entries. Entries naming a server the table does not have
/// (a removed one) are left out.
fn make_batches(
    names: &Names,
    now: u64,
    resync: bool,
    by_vip: BTreeMap<u32, Vec<(StickKey, u32, u64)>>,
) -> Vec<Arc<Batch>> {
    let mut out = Vec::new();
    let mut cur = Batch {
        made_ns: now,
        resync,
        tables: Vec::new(),
        entries: 0,
    };
    for (vip, entries) in by_vip {
        let Some(t) = names.tables.get(&vip) else {
            continue;
        };
        let family = if t.v4 {
            balancer_common::maps::FAMILY_V4
        } else {
            balancer_common::maps::FAMILY_V6
        };
        for chunk in entries.chunks(MAX_BATCH) {
            if cur.entries + chunk.len() > MAX_BATCH {
                out.push(Arc::new(std::mem::replace(
                    &mut cur,
                    Batch {
                        made_ns: now,
                        resync,
                        tables: Vec::new(),
                        entries: 0,
                    },
                )));
            }
            let wire: Vec<WireEntry> = chunk
                .iter()
                .filter_map(|(k, backend, seen)| {
                    Some(WireEntry {
                        client: addr_of(family, &k.addr),
                        server: *t.index.get(backend)?,
                        age_us: now.saturating_sub(*seen) / 1000,
                    })
                })
                .collect();
            cur.entries += wire.len();
            cur.tables.push(TableUpdates {
                frontend: t.frontend.clone(),
                backend: t.backend.clone(),
                servers: t.servers.clone(),
                entries: wire,
            });
        }
    }
    if cur.entries > 0 {
        out.push(Arc::new(cur));
    }
    out
}
