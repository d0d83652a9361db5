//! The single owner of the loaded XDP program, its attachments and its maps.

mod aux;
mod mmap;
mod pins;

use std::{
    collections::BTreeMap,
    ffi::CString,
    os::fd::{AsFd as _, BorrowedFd},
    path::PathBuf,
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, HashMap, Map, MapData, MapError, PerCpuArray},
    programs::{ProgramError, Xdp, XdpMode as AyaXdpMode, xdp::XdpLinkId},
};
use balancer_common::{hash::MAGLEV_M, maps::*, stats::Counter, vip_index};
use log::{info, warn};

pub use aux::AuxProgram;
use mmap::MapMmap;
pub use pins::{Adopted, PERSISTENT_MAPS};

use crate::{config::XdpMode, stats::Stats, util::error_chain};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("cannot load the XDP object: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("the kernel refused the XDP program: {0}")]
    Program(#[source] ProgramError),
    #[error("interface {name:?} does not exist")]
    UnknownInterface { name: String },
    #[error("cannot attach XDP to interface {name:?} in {mode} mode: {reason}")]
    Attach {
        name: String,
        mode: &'static str,
        reason: String,
    },
    #[error("program {name} is missing from the XDP object")]
    MissingProgram { name: &'static str },
    #[error("map {name} is missing from the XDP object")]
    MissingMap { name: &'static str },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("{count} VIP table entries do not fit the VIP table ({VIP_INDEX_SLOTS} slots)")]
    VipTableFull { count: usize },
    #[error("VIP id {id} is out of range (at most {max} VIPs)")]
    VipIdOutOfRange { id: u32, max: u32 },
    #[error("backend id {id} is out of range (at most {max} backends)")]
    BackendIdOutOfRange { id: u32, max: u32 },
    #[error("Maglev table for VIP {vip_id} has {len} slots, want {MAGLEV_M}")]
    MaglevSize { vip_id: u32, len: usize },
    #[error("cannot add interface {ifindex} to the egress devmap: {reason}")]
    Egress { ifindex: u32, reason: String },
    #[error("cannot pin maps under {path}: {reason}")]
    Pin { path: PathBuf, reason: String },
    #[error(
        "pinned map {path} does not fit this balancer ({reason}); \
         start with `balancer run --reset` to discard the pinned state"
    )]
    PinnedIncompatible { path: PathBuf, reason: String },
    #[error("map {name}: batched read: {source}")]
    Batch {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("name {name:?} is longer than {ID_NAME_LEN} bytes")]
    NameTooLong { name: String },
    #[error("no free id in {map} (all {max} in use)")]
    NoFreeId { map: &'static str, max: u32 },
    #[error("cannot reuse the XDP attachment pinned at {path}: {reason}")]
    Link { path: PathBuf, reason: String },
    #[error(
        "no pinned stats map at {path} (is `balancer run` running with this pin_dir?): {reason}"
    )]
    NotPinned { path: PathBuf, reason: String },
}

/// How an interface ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    Native,
    Generic,
}

impl Attached {
    pub const fn as_str(self) -> &'static str {
        match self {
            Attached::Native => "native",
            Attached::Generic => "generic",
        }
    }
}

/// Sizes chosen at load time (the object's defaults are in balancer_common::maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Stick-table capacity (LRU: the least recently used entry is evicted when full).
    pub stick_size: u32,
    /// VIPs, and so Maglev tables of MAGLEV_M slots each.
    pub max_vips: u32,
    pub max_backends: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            stick_size: STICK_SIZE,
            max_vips: MAX_VIPS,
            max_backends: MAX_BACKENDS,
        }
    }
}

impl LoadOptions {
    /// Sizes for `config`. Stick-table size: the sum of the backends'
    /// `stick_table.size` (HAProxy keeps one table per backend; here they
    /// share one LRU map).
    pub fn for_config(config: &crate::config::Config) -> Self {
        let mut opts = LoadOptions::default();
        if !config.backends.is_empty() {
            let total: u64 = config.backends.iter().map(|b| b.stick_size).sum();
            opts.stick_size = total.clamp(1024, crate::config::MAX_STICK_SIZE) as u32;
        }
        opts
    }
}

/// After flipping the live VIP table generation, wait this long before
/// rewriting the other one: a packet that read the old selector is
/// processed within microseconds, so this is a wide margin.
const VIP_TABLE_GRACE: Duration = Duration::from_millis(20);

pub struct Dataplane {
    ebpf: Ebpf,
    opts: LoadOptions,
    /// The VIP table as last written (the map holds it in open-addressed form).
    vips: BTreeMap<VipKey, VipInfo>,
    vip_sel: VipSel,
    vip_flipped: Option<Instant>,
    /// Attachments made by [`Dataplane::attach`] (not pinned): undone on drop.
    links: Vec<(String, XdpLinkId)>,
    /// The MAGLEV map, mapped into this process (BPF_F_MMAPABLE).
    maglev: MapMmap,
}

impl Dataplane {
    /// Names in an id map ([`SERVER_IDS_MAP`] or [`FRONTEND_IDS_MAP`]):
    /// (id, name) for each id in use.
    pub fn id_names(&self, map: &'static str) -> Result<Vec<(u32, String)>, DataplaneError> {
        let a: Array<_, IdName> = typed(map, self.map_ref(map)?)?;
        let mut out = Vec::new();
        for (i, v) in a.iter().enumerate() {
            let v = v.map_err(map_err(map))?;
            let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
            if end > 0 {
                out.push((i as u32, String::from_utf8_lossy(&v[..end]).into_owned()));
            }
        }
        Ok(out)
    }

    /// Record `name` as the owner of `id` (`None`: free it).
    pub fn set_id_name(
        &mut self,
        map: &'static str,
        id: u32,
        name: Option<&str>,
    ) -> Result<(), DataplaneError> {
        let mut v: IdName = [0; ID_NAME_LEN];
        if let Some(n) = name {
            if n.len() > ID_NAME_LEN || n.is_empty() {
                return Err(DataplaneError::NameTooLong { name: n.into() });
            }
            v[..n.len()].copy_from_slice(n.as_bytes());
        }
        let mut a: Array<_, IdName> = typed(map, self.map_mut(map)?)?;
        a.set(id, v, 0).map_err(map_err(map))
    }

    /// Delete the stick entries that point at backend `id`. Returns how many.
    pub fn stick_purge_backend(&mut self, id: u32) -> Result<usize, DataplaneError> {
        self.stick_delete_where(None, |v| v.backend == id)
    }

    /// Load the embedded object and the program into the kernel (this is
    /// where the verifier runs). Nothing is attached yet.
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_with(LoadOptions::default())
    }

    pub fn load_with(opts: LoadOptions) -> Result<Self, DataplaneError> {
        Self::load_from(&mut EbpfLoader::new(), opts)
    }

    fn load_from(loader: &mut EbpfLoader<'_>, opts: LoadOptions) -> Result<Self, DataplaneError> {
        let mut ebpf = loader
            .map_max_entries(STICK_MAP, opts.stick_size)
            .map_max_entries(VIP_STATS_MAP, opts.max_vips)
            .map_max_entries(MAGLEV_MAP, opts.max_vips.saturating_mul(MAGLEV_M))
            .map_max_entries(BACKENDS_MAP, opts.max_backends)
            .map_max_entries(BACKEND_STATS_MAP, opts.max_backends)
            .load(crate::OBJECT)?;
        program_mut(&mut ebpf)?
            .load()
            .map_err(DataplaneError::Program)?;
        let slots = opts.max_vips as usize * MAGLEV_M as usize;
        let maglev = match ebpf.map(MAGLEV_MAP) {
            Some(Map::Array(data)) => MapMmap::new(data.fd().as_fd(), slots)
                .map_err(|e| map_err(MAGLEV_MAP)(MapError::SyscallError(e)))?,
            _ => return Err(DataplaneError::MissingMap { name: MAGLEV_MAP }),
        };
        Ok(Dataplane {
            ebpf,
            opts,
            maglev,
            vips: BTreeMap::new(),
            vip_sel: VipSel::default(),
            vip_flipped: None,
            links: Vec::new(),
        })
    }

    /// The loaded program's fd, for BPF_PROG_TEST_RUN.
    pub fn program_fd(&self) -> Result<BorrowedFd<'_>, DataplaneError> {
        let prog: &Xdp = self
            .ebpf
            .program(XDP_PROGRAM)
            .ok_or(DataplaneError::MissingProgram { name: XDP_PROGRAM })?
            .try_into()
            .map_err(DataplaneError::Program)?;
        Ok(prog.fd().map_err(DataplaneError::Program)?.as_fd())
    }

    /// Hand the aya-log ring buffer to a logger (see `daemon`).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Attach to `name`. `Auto` tries native mode and falls back to generic
    /// with a warning; the other modes try only themselves.
    pub fn attach(&mut self, name: &str, mode: XdpMode) -> Result<Attached, DataplaneError> {
        let prog = program_mut(&mut self.ebpf)?;
        let (link, attached) = attach_xdp(prog, name, mode)?;
        self.links.push((name.to_owned(), link));
        Ok(attached)
    }

    /// Detach from every interface, newest first.
    pub fn detach_all(&mut self) {
        let Ok(prog) = program_mut(&mut self.ebpf) else {
            return;
        };
        while let Some((name, link)) = self.links.pop() {
            match prog.detach(link) {
                Ok(()) => info!("detached XDP from {name}"),
                Err(e) => warn!("detaching XDP from {name}: {}", error_chain(&e)),
            }
        }
    }

    pub fn options(&self) -> LoadOptions {
        self.opts
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, DataplaneError> {
        self.ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap { name })
    }

    fn map_ref(&self, name: &'static str) -> Result<&Map, DataplaneError> {
        self.ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap { name })
    }

    pub fn set_config(&mut self, cfg: &GlobalConfig) -> Result<(), DataplaneError> {
        let mut a: Array<_, GlobalConfig> = typed(CONFIG_MAP, self.map_mut(CONFIG_MAP)?)?;
        a.set(0, cfg, 0).map_err(map_err(CONFIG_MAP))
    }

    /// Add or replace one VIP table entry.
    pub fn set_vip(&mut self, key: &VipKey, info: &VipInfo) -> Result<(), DataplaneError> {
        let mut vips = self.vips.clone();
        vips.insert(*key, *info);
        self.set_vips(vips)
    }

    pub fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        let mut vips = self.vips.clone();
        if vips.remove(key).is_none() {
            return Ok(());
        }
        self.set_vips(vips)
    }

    /// The VIP table as last written.
    pub fn vips(&self) -> &BTreeMap<VipKey, VipInfo> {
        &self.vips
    }

    /// Replace the whole VIP table: build it for the generation the program
    /// is not reading, write it, then switch the program to it.
    pub fn set_vips(&mut self, vips: BTreeMap<VipKey, VipInfo>) -> Result<(), DataplaneError> {
        if let Some(info) = vips.values().find(|i| i.id >= self.opts.max_vips) {
            return Err(DataplaneError::VipIdOutOfRange {
                id: info.id,
                max: self.opts.max_vips,
            });
        }
        let entries: Vec<_> = vips.iter().map(|(k, v)| (*k, *v)).collect();
        let table = vip_index::build(&entries).ok_or(DataplaneError::VipTableFull {
            count: entries.len(),
        })?;
        if let Some(t) = self.vip_flipped {
            std::thread::sleep(VIP_TABLE_GRACE.saturating_sub(t.elapsed()));
        }
        let next = self.vip_sel.generation ^ 1;
        {
            let mut a: Array<_, VipSlot> = typed(VIP_INDEX_MAP, self.map_mut(VIP_INDEX_MAP)?)?;
            for (i, slot) in table.slots.iter().enumerate() {
                a.set(next * VIP_INDEX_SLOTS + i as u32, slot, 0)
                    .map_err(map_err(VIP_INDEX_MAP))?;
            }
        }
        let mut sel = self.vip_sel;
        sel.seeds[next as usize] = table.seed;
        let mut a: Array<_, VipSel> = typed(VIP_SEL_MAP, self.map_mut(VIP_SEL_MAP)?)?;
        // Two writes, in this order: see VipSel.
        a.set(0, sel, 0).map_err(map_err(VIP_SEL_MAP))?;
        sel.generation = next;
        a.set(0, sel, 0).map_err(map_err(VIP_SEL_MAP))?;
        self.vip_sel = sel;
        self.vip_flipped = Some(Instant::now());
        self.vips = vips;
        Ok(())
    }

    /// Write a backend slot (state `STATE_EMPTY` frees it).
    pub fn set_backend(&mut self, id: u32, b: &Backend) -> Result<(), DataplaneError> {
        if id >= self.opts.max_backends {
            return Err(DataplaneError::BackendIdOutOfRange {
                id,
                max: self.opts.max_backends,
            });
        }
        let mut a: Array<_, Backend> = typed(BACKENDS_MAP, self.map_mut(BACKENDS_MAP)?)?;
        a.set(id, b, 0).map_err(map_err(BACKENDS_MAP))
    }

    pub fn backend(&self, id: u32) -> Result<Backend, DataplaneError> {
        let a: Array<_, Backend> = typed(BACKENDS_MAP, self.map_ref(BACKENDS_MAP)?)?;
        a.get(&id, 0).map_err(map_err(BACKENDS_MAP))
    }

    /// Replace a VIP's Maglev table (`MAGLEV_M` backend ids). Only the slots
    /// that differ from `previous` (when given) are written.
    pub fn set_maglev(
        &mut self,
        vip_id: u32,
        table: &[u32],
        previous: Option<&[u32]>,
    ) -> Result<(), DataplaneError> {
        if vip_id >= self.opts.max_vips {
            return Err(DataplaneError::VipIdOutOfRange {
                id: vip_id,
                max: self.opts.max_vips,
            });
        }
        if table.len() != MAGLEV_M as usize || previous.is_some_and(|p| p.len() != table.len()) {
            return Err(DataplaneError::MaglevSize {
                vip_id,
                len: table.len(),
            });
        }
        let base = (vip_id * MAGLEV_M) as usize;
        for (slot, &id) in table.iter().enumerate() {
            if previous.is_some_and(|p| p[slot] == id) {
                continue;
            }
            // One aligned 32-bit store per slot: a packet reads the old or
            // the new backend id, never a mix.
            self.maglev.store(base + slot, id);
        }
        Ok(())
    }

    /// Let XDP_REDIRECT send to `ifindex` (for backends behind another interface).
    pub fn add_egress(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        let mut m: DevMapHash<_> = typed(EGRESS_MAP, self.map_mut(EGRESS_MAP)?)?;
        m.insert(ifindex, ifindex, None, 0)
            .map_err(|e| DataplaneError::Egress {
                ifindex,
                reason: error_chain(&e),
            })
    }

    // ---- stick table ----

    pub fn stick_get(&self, key: &StickKey) -> Result<Option<StickValue>, DataplaneError> {
        let m: HashMap<_, StickKey, StickValue> = typed(STICK_MAP, self.map_ref(STICK_MAP)?)?;
        match m.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(STICK_MAP)(e)),
        }
    }

    pub fn stick_set(&mut self, key: &StickKey, value: &StickValue) -> Result<(), DataplaneError> {
        let mut m: HashMap<_, StickKey, StickValue> = typed(STICK_MAP, self.map_mut(STICK_MAP)?)?;
        m.insert(key, value, 0).map_err(map_err(STICK_MAP))
    }

    /// Delete one entry; `Ok(false)` when there was none.
    pub fn stick_remove(&mut self, key: &StickKey) -> Result<bool, DataplaneError> {
        let mut m: HashMap<_, StickKey, StickValue> = typed(STICK_MAP, self.map_mut(STICK_MAP)?)?;
        match m.remove(key) {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            // aya 0.14 reports a missing key on delete as the syscall's
            // ENOENT, not as KeyNotFound.
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(false)
            }
            Err(e) => Err(map_err(STICK_MAP)(e)),
        }
    }

    /// Every entry, optionally only one VIP's. Entries changed while
    /// iterating may be seen or missed (the kernel iterates a live table).
    pub fn stick_entries(
        &self,
        vip_id: Option<u32>,
    ) -> Result<Vec<(StickKey, StickValue)>, DataplaneError> {
        use std::os::fd::AsRawFd as _;
        let fd = self.stick_map_fd()?;
        let mut out = Vec::new();
        // BPF_MAP_LOOKUP_BATCH: 4,096 entries per syscall, where aya's
        // iterator makes two syscalls per entry.
        crate::stick_batch::Scanner::new(4096)
            .scan(fd.as_raw_fd(), |k, v| {
                if vip_id.is_none_or(|id| id == k.vip_id) {
                    out.push((*k, *v));
                }
            })
            .map_err(|source| DataplaneError::Batch {
                name: STICK_MAP,
                source,
            })?;
        Ok(out)
    }

    /// Entries of one VIP (or all), walking the keys only.
    pub fn stick_count(&self, vip_id: Option<u32>) -> Result<usize, DataplaneError> {
        let m: HashMap<_, StickKey, StickValue> = typed(STICK_MAP, self.map_ref(STICK_MAP)?)?;
        count_stick_keys(&m, vip_id)
    }

    /// Delete every entry of one VIP (or all); returns how many.
    pub fn stick_clear(&mut self, vip_id: Option<u32>) -> Result<usize, DataplaneError> {
        self.stick_delete_where(vip_id, |_| true)
    }

    /// Delete the entries of one VIP (or all) whose value `pick`s.
    fn stick_delete_where(
        &mut self,
        vip_id: Option<u32>,
        pick: impl Fn(&StickValue) -> bool,
    ) -> Result<usize, DataplaneError> {
        let keys: Vec<StickKey> = self
            .stick_entries(vip_id)?
            .into_iter()
            .filter(|(_, v)| pick(v))
            .map(|(k, _)| k)
            .collect();
        let mut removed = 0;
        for k in &keys {
            if self.stick_remove(k)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    // ---- counters ----

    /// A VIP's counters summed over CPUs.
    pub fn vip_stats(&self, vip_id: u32) -> Result<VipStats, DataplaneError> {
        let a: PerCpuArray<_, VipStats> = typed(VIP_STATS_MAP, self.map_ref(VIP_STATS_MAP)?)?;
        sum_vip(&a, vip_id)
    }

    /// A backend's packets and bytes summed over CPUs.
    pub fn backend_stats(&self, id: u32) -> Result<Counter, DataplaneError> {
        let a: PerCpuArray<_, Counter> =
            typed(BACKEND_STATS_MAP, self.map_ref(BACKEND_STATS_MAP)?)?;
        sum_backend(&a, id)
    }

    /// Counters summed over CPUs, from this process's own map handle.
    pub fn stats(&self) -> Result<Stats, DataplaneError> {
        let map = self
            .ebpf
            .map(STATS_MAP)
            .ok_or(DataplaneError::MissingMap { name: STATS_MAP })?;
        let array: PerCpuArray<&MapData, Counter> =
            PerCpuArray::try_from(map).map_err(|source| DataplaneError::Map {
                name: STATS_MAP,
                source,
            })?;
        Stats::read(&array).map_err(|source| DataplaneError::Map {
            name: STATS_MAP,
            source,
        })
    }

    /// The stick table's map fd, e.g. to read the kernel's `memlock:`
    /// accounting for it from `/proc/self/fdinfo/<fd>` (the benchmarks do).
    pub fn stick_map_fd(&self) -> Result<BorrowedFd<'_>, DataplaneError> {
        match self.map_ref(STICK_MAP)? {
            Map::LruHashMap(data) | Map::HashMap(data) => Ok(data.fd().as_fd()),
            // Any other type: let the typed view report which it is.
            other => Err(
                typed::<_, HashMap<&MapData, StickKey, StickValue>>(STICK_MAP, other)
                    .err()
                    .unwrap_or(DataplaneError::MissingMap { name: STICK_MAP }),
            ),
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// Attach `prog` to interface `name`. `Auto` tries native mode and falls
/// back to generic with a warning; the other modes try only themselves.
fn attach_xdp(
    prog: &mut Xdp,
    name: &str,
    mode: XdpMode,
) -> Result<(XdpLinkId, Attached), DataplaneError> {
    let unknown = || DataplaneError::UnknownInterface {
        name: name.to_owned(),
    };
    let cname = CString::new(name).map_err(|_| unknown())?;
    // SAFETY: a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(unknown());
    }
    let attempt = |prog: &mut Xdp, aya_mode, label| {
        prog.attach_to_if_index(ifindex, aya_mode)
            .map_err(|e| DataplaneError::Attach {
                name: name.to_owned(),
                mode: label,
                reason: error_chain(&e),
            })
    };
    let r = match mode {
        XdpMode::Native => (
            attempt(prog, AyaXdpMode::Driver, "native")?,
            Attached::Native,
        ),
        XdpMode::Generic => (
            attempt(prog, AyaXdpMode::Skb, "generic")?,
            Attached::Generic,
        ),
        XdpMode::Auto => match attempt(prog, AyaXdpMode::Driver, "native") {
            Ok(link) => (link, Attached::Native),
            Err(native) => {
                warn!(
                    "{native}; falling back to generic XDP (slower: runs after the skb is built)"
                );
                (
                    attempt(prog, AyaXdpMode::Skb, "generic")?,
                    Attached::Generic,
                )
            }
        },
    };
    info!(
        "attached XDP to {name} (ifindex {ifindex}) in {} mode",
        r.1.as_str()
    );
    Ok(r)
}

/// A typed view of a map, or which map did not have the expected type.
/// Stick entries of one VIP (or all), walking the keys only. An entry
/// deleted during the walk is skipped.
fn count_stick_keys<T: std::borrow::Borrow<MapData>>(
    m: &HashMap<T, StickKey, StickValue>,
    vip_id: Option<u32>,
) -> Result<usize, DataplaneError> {
    let mut n = 0;
    for k in m.keys() {
        match k {
            Ok(k) if vip_id.is_none_or(|id| id == k.vip_id) => n += 1,
            Ok(_) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(map_err(STICK_MAP)(e)),
        }
    }
    Ok(n)
}

/// A frontend's counters summed over CPUs.
fn sum_vip<T: std::borrow::Borrow<MapData>>(
    a: &PerCpuArray<T, VipStats>,
    vip_id: u32,
) -> Result<VipStats, DataplaneError> {
    let per_cpu = a.get(&vip_id, 0).map_err(map_err(VIP_STATS_MAP))?;
    // VipStats is all u64 counters: sum it as an array.
    const N: usize = std::mem::size_of::<VipStats>() / 8;
    let mut sum = [0u64; N];
    for s in per_cpu.iter() {
        let words: [u64; N] = bytemuck::cast(*s);
        for (acc, w) in sum.iter_mut().zip(words) {
            *acc += w;
        }
    }
    Ok(bytemuck::cast(sum))
}

/// A backend's packets and bytes summed over CPUs.
fn sum_backend<T: std::borrow::Borrow<MapData>>(
    a: &PerCpuArray<T, Counter>,
    id: u32,
) -> Result<Counter, DataplaneError> {
    let per_cpu = a.get(&id, 0).map_err(map_err(BACKEND_STATS_MAP))?;
    Ok(per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    }))
}

/// The data plane's per-CPU counters, read through their pinned maps: a
/// handle of its own, so that reading them (a system call per entry)
/// needs no hold on the controller.
pub struct PinnedCounters {
    classes: PerCpuArray<MapData, Counter>,
    vips: PerCpuArray<MapData, VipStats>,
    backends: PerCpuArray<MapData, Counter>,
}

impl PinnedCounters {
    /// The counter maps pinned under `dir`.
    pub fn open(dir: &std::path::Path) -> Result<PinnedCounters, DataplaneError> {
        fn open<V: aya::Pod>(
            dir: &std::path::Path,
            name: &'static str,
        ) -> Result<PerCpuArray<MapData, V>, DataplaneError> {
            let path = dir.join(name);
            let not_pinned = |reason: String| DataplaneError::NotPinned {
                path: path.clone(),
                reason,
            };
            let data = MapData::from_pin(&path).map_err(|e| not_pinned(error_chain(&e)))?;
            let map =
                aya::maps::Map::from_map_data(data).map_err(|e| not_pinned(error_chain(&e)))?;
            PerCpuArray::try_from(map).map_err(|e| not_pinned(error_chain(&e)))
        }
        Ok(PinnedCounters {
            classes: open(dir, STATS_MAP)?,
            vips: open(dir, VIP_STATS_MAP)?,
            backends: open(dir, BACKEND_STATS_MAP)?,
        })
    }

    pub fn classes(&self) -> Result<Stats, DataplaneError> {
        Stats::read(&self.classes).map_err(map_err(STATS_MAP))
    }

    pub fn vip(&self, vip_id: u32) -> Result<VipStats, DataplaneError> {
        sum_vip(&self.vips, vip_id)
    }

    pub fn backend(&self, id: u32) -> Result<Counter, DataplaneError> {
        sum_backend(&self.backends, id)
    }
}

fn typed<R, T>(name: &'static str, map: R) -> Result<T, DataplaneError>
where
    T: TryFrom<R, Error = MapError>,
{
    T::try_from(map).map_err(map_err(name))
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, DataplaneError> {
    ebpf.program_mut(XDP_PROGRAM)
        .ok_or(DataplaneError::MissingProgram { name: XDP_PROGRAM })?
        .try_into()
        .map_err(DataplaneError::Program)
}
