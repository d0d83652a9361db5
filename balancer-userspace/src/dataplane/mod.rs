//! The single owner of the loaded XDP program, its attachments and its maps.

mod aux;
mod counters;
mod memory;
mod mmap;
mod pins;
mod stick;

/// Stick entries for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use balancer_common::maps::{StickKey, StickValue};

    /// Client 198.18.0.`last` of VIP `vip_id`.
    pub(crate) fn key(vip_id: u32, last: u8) -> StickKey {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[198, 18, 0, last]);
        StickKey { vip_id, addr }
    }

    pub(crate) fn value(backend: u32, last_seen_ns: u64) -> StickValue {
        StickValue {
            backend,
            _pad: 0,
            last_seen_ns,
        }
    }
}

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
pub use counters::PinnedCounters;
use counters::{sum_backend, sum_vip};
use memory::Memory;
pub use memory::MemoryStick;
use mmap::MapMmap;
pub use pins::{Adopted, PERSISTENT_MAPS, xdp_owner_parts};
pub use stick::StickStore;
use stick::count_stick_keys;

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
    #[error("interface {name:?} already runs an XDP program, {owner}")]
    Occupied { name: String, owner: String },
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
    #[error("the maps handed over by the daemon taken over: {0}")]
    Snapshot(String),
    #[error(
        "no kernel data plane: this daemon runs without XDP (no interface and no pin_dir \
         configured)"
    )]
    NoKernel,
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
    /// Sizes for `config`. Stick-table size: the sum of the
    /// `stick_table.size` of the backends that use the table (HAProxy
    /// keeps one table per backend; here they share one LRU map): those of
    /// L4 frontends, and HTTP ones with `stick` rules. An HTTP backend
    /// without them reserves nothing.
    pub fn for_config(config: &crate::config::Config) -> Self {
        let mut opts = LoadOptions::default();
        let total = crate::config::stick_size_total(&config.frontends, &config.backends);
        opts.stick_size = total.clamp(1024, crate::config::MAX_STICK_SIZE) as u32;
        opts
    }
}

/// After flipping the live VIP table generation, wait this long before
/// rewriting the other one: a packet that read the old selector is
/// processed within microseconds, so this is a wide margin.
const VIP_TABLE_GRACE: Duration = Duration::from_millis(20);

pub struct Dataplane {
    backing: Backing,
    opts: LoadOptions,
    /// The VIP table as last written (the map holds it in open-addressed form).
    vips: BTreeMap<VipKey, VipInfo>,
    vip_sel: VipSel,
    vip_flipped: Option<Instant>,
    /// Attachments made by [`Dataplane::attach`] (not pinned): undone on drop.
    links: Vec<(String, XdpLinkId)>,
}

/// Where the maps are.
enum Backing {
    /// The loaded object, and its MAGLEV map mapped into this process
    /// (BPF_F_MMAPABLE).
    Kernel { ebpf: Box<Ebpf>, maglev: MapMmap },
    /// No program: see [`memory`].
    Memory(Memory),
}

impl Dataplane {
    /// Names in an id map ([`SERVER_IDS_MAP`] or [`FRONTEND_IDS_MAP`]):
    /// (id, name) for each id in use.
    pub fn id_names(&self, map: &'static str) -> Result<Vec<(u32, String)>, DataplaneError> {
        if let Backing::Memory(m) = &self.backing {
            return m.id_names(map);
        }
        let a: Array<_, IdName> = typed(map, self.map_ref(map)?)?;
        names_in(a.iter().map(|v| v.map_err(map_err(map))))
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
        if let Backing::Memory(m) = &mut self.backing {
            return m.set_id_name(map, id, v);
        }
        let mut a: Array<_, IdName> = typed(map, self.map_mut(map)?)?;
        a.set(id, v, 0).map_err(map_err(map))
    }

    /// Delete the stick entries that point at backend `id`. Returns how many.
    pub fn stick_purge_backend(&mut self, id: u32) -> Result<usize, DataplaneError> {
        self.stick_delete_where(None, |v| v.backend == id)
    }

    /// A data plane with no kernel program: its maps in this process (see
    /// [`memory`]). For a configuration that needs no XDP.
    pub fn in_memory(opts: LoadOptions) -> Self {
        Dataplane {
            // The HTTP tables hold at most their sizes: this bound only
            // keeps a reload that adds tables from having to restart.
            backing: Backing::Memory(Memory::new(
                crate::config::MAX_STICK_SIZE as u32,
                opts.max_backends,
            )),
            opts,
            vips: BTreeMap::new(),
            vip_sel: VipSel::default(),
            vip_flipped: None,
            links: Vec::new(),
        }
    }

    /// [`Dataplane::in_memory`] with the ids and stick entries of a
    /// daemon taken over ([`Dataplane::snapshot`]'s bytes).
    pub fn in_memory_from(opts: LoadOptions, snapshot: &[u8]) -> Result<Self, DataplaneError> {
        let mut dp = Self::in_memory(opts);
        if let Backing::Memory(m) = &mut dp.backing {
            let n = m.restore(snapshot)?;
            info!("took over {n} stick entries from the previous daemon");
        }
        Ok(dp)
    }

    /// The maps in process memory as bytes for a daemon taking over;
    /// empty with kernel maps (they are pinned, the new daemon opens them).
    pub fn snapshot(&self) -> Result<Vec<u8>, DataplaneError> {
        match &self.backing {
            Backing::Memory(m) => m.snapshot(),
            Backing::Kernel { .. } => Ok(Vec::new()),
        }
    }

    /// Whether the maps are the kernel's (a loaded XDP program).
    pub fn is_kernel(&self) -> bool {
        matches!(self.backing, Backing::Kernel { .. })
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
            backing: Backing::Kernel {
                ebpf: Box::new(ebpf),
                maglev,
            },
            opts,
            vips: BTreeMap::new(),
            vip_sel: VipSel::default(),
            vip_flipped: None,
            links: Vec::new(),
        })
    }

    /// The loaded program's fd, for BPF_PROG_TEST_RUN.
    pub fn program_fd(&self) -> Result<BorrowedFd<'_>, DataplaneError> {
        let prog: &Xdp = self
            .ebpf()?
            .program(XDP_PROGRAM)
            .ok_or(DataplaneError::MissingProgram { name: XDP_PROGRAM })?
            .try_into()
            .map_err(DataplaneError::Program)?;
        Ok(prog.fd().map_err(DataplaneError::Program)?.as_fd())
    }

    /// Hand the aya-log ring buffer to a logger (see `daemon`).
    pub fn ebpf_mut(&mut self) -> Result<&mut Ebpf, DataplaneError> {
        match &mut self.backing {
            Backing::Kernel { ebpf, .. } => Ok(ebpf),
            Backing::Memory(_) => Err(DataplaneError::NoKernel),
        }
    }

    fn ebpf(&self) -> Result<&Ebpf, DataplaneError> {
        match &self.backing {
            Backing::Kernel { ebpf, .. } => Ok(ebpf),
            Backing::Memory(_) => Err(DataplaneError::NoKernel),
        }
    }

    /// Attach to `name`. `Auto` tries native mode and falls back to generic
    /// with a warning; the other modes try only themselves.
    pub fn attach(&mut self, name: &str, mode: XdpMode) -> Result<Attached, DataplaneError> {
        let prog = program_mut(self.ebpf_mut()?)?;
        let (link, attached) = attach_xdp(prog, name, mode)?;
        self.links.push((name.to_owned(), link));
        Ok(attached)
    }

    /// Detach from every interface, newest first.
    pub fn detach_all(&mut self) {
        let Backing::Kernel { ebpf, .. } = &mut self.backing else {
            return;
        };
        let Ok(prog) = program_mut(ebpf) else {
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
        self.ebpf_mut()?
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap { name })
    }

    fn map_ref(&self, name: &'static str) -> Result<&Map, DataplaneError> {
        self.ebpf()?
            .map(name)
            .ok_or(DataplaneError::MissingMap { name })
    }

    pub fn set_config(&mut self, cfg: &GlobalConfig) -> Result<(), DataplaneError> {
        if !self.is_kernel() {
            return Ok(());
        }
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
        if !self.is_kernel() {
            self.vips = vips;
            return Ok(());
        }
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
        if let Backing::Memory(m) = &mut self.backing {
            m.set_backend(id, b);
            return Ok(());
        }
        let mut a: Array<_, Backend> = typed(BACKENDS_MAP, self.map_mut(BACKENDS_MAP)?)?;
        a.set(id, b, 0).map_err(map_err(BACKENDS_MAP))
    }

    pub fn backend(&self, id: u32) -> Result<Backend, DataplaneError> {
        if let Backing::Memory(m) = &self.backing {
            return Ok(m.backend(id));
        }
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
        let Backing::Kernel { maglev, .. } = &mut self.backing else {
            return Ok(());
        };
        let base = (vip_id * MAGLEV_M) as usize;
        for (slot, &id) in table.iter().enumerate() {
            if previous.is_some_and(|p| p[slot] == id) {
                continue;
            }
            // One aligned 32-bit store per slot: a packet reads the old or
            // the new backend id, never a mix.
            maglev.store(base + slot, id);
        }
        Ok(())
    }

    /// Let XDP_REDIRECT send to `ifindex` (for backends behind another interface).
    pub fn add_egress(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        if !self.is_kernel() {
            return Ok(());
        }
        let mut m: DevMapHash<_> = typed(EGRESS_MAP, self.map_mut(EGRESS_MAP)?)?;
        m.insert(ifindex, ifindex, None, 0)
            .map_err(|e| DataplaneError::Egress {
                ifindex,
                reason: error_chain(&e),
            })
    }

    // ---- counters ----

    /// A VIP's counters summed over CPUs.
    pub fn vip_stats(&self, vip_id: u32) -> Result<VipStats, DataplaneError> {
        if !self.is_kernel() {
            return Ok(VipStats::default());
        }
        let a: PerCpuArray<_, VipStats> = typed(VIP_STATS_MAP, self.map_ref(VIP_STATS_MAP)?)?;
        sum_vip(&a, vip_id)
    }

    /// A backend's packets and bytes summed over CPUs.
    pub fn backend_stats(&self, id: u32) -> Result<Counter, DataplaneError> {
        if !self.is_kernel() {
            return Ok(Counter::default());
        }
        let a: PerCpuArray<_, Counter> =
            typed(BACKEND_STATS_MAP, self.map_ref(BACKEND_STATS_MAP)?)?;
        sum_backend(&a, id)
    }

    /// Counters summed over CPUs, from this process's own map handle.
    pub fn stats(&self) -> Result<Stats, DataplaneError> {
        if !self.is_kernel() {
            return Ok(Stats::default());
        }
        let map = self
            .ebpf()?
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
    // An interface that runs another program: said so, not tried again in
    // generic mode (which the kernel refuses the same way).
    let occupied = |e: DataplaneError| match &e {
        DataplaneError::Attach { reason, .. }
            if reason.contains("File exists") || reason.contains("Device or resource busy") =>
        {
            DataplaneError::Occupied {
                name: name.to_owned(),
                owner: pins::xdp_owner(name),
            }
        }
        _ => e,
    };
    let attempt =
        |prog: &mut Xdp, aya_mode, label| attempt(prog, aya_mode, label).map_err(occupied);
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
            Err(e @ DataplaneError::Occupied { .. }) => return Err(e),
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

/// The (id, name) of each id in use in an id map's values.
fn names_in(
    values: impl Iterator<Item = Result<IdName, DataplaneError>>,
) -> Result<Vec<(u32, String)>, DataplaneError> {
    let mut out = Vec::new();
    for (i, v) in values.enumerate() {
        let v = v?;
        let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
        if end > 0 {
            out.push((i as u32, String::from_utf8_lossy(&v[..end]).into_owned()));
        }
    }
    Ok(out)
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
