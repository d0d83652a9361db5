//! The single owner of the loaded XDP program, its attachments and its maps.

use std::{
    collections::BTreeMap,
    ffi::CString,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, HashMap, Map, MapData, MapError, PerCpuArray},
    programs::{
        ProgramError, Xdp, XdpMode as AyaXdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use balancer_common::{hash::MAGLEV_M, maps::*, stats::Counter, vip_index};
use log::{info, warn};

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

/// Maps whose contents outlive a daemon: pinned under the pin directory by
/// [`Dataplane::load_pinned`] and reused by the next daemon, so a restart
/// keeps the stick table, the counters and the ids they refer to. The
/// configuration maps (VIPs, backends, Maglev tables) are not among them:
/// each daemon writes its own before its program replaces the old one.
pub const PERSISTENT_MAPS: [&str; 6] = [
    STICK_MAP,
    STATS_MAP,
    VIP_STATS_MAP,
    BACKEND_STATS_MAP,
    SERVER_IDS_MAP,
    FRONTEND_IDS_MAP,
];

/// A BPF array map of u32 mapped into this process (BPF_F_MMAPABLE), for
/// writes without a syscall per element. Unmapped on drop. The kernel
/// stores array elements at 8-byte strides (`round_up(value_size, 8)`), so
/// element `i` is the (little-endian, low) u32 at byte `8 * i`.
struct MapMmap {
    ptr: std::ptr::NonNull<AtomicU32>,
    len: usize,
    bytes: usize,
}

/// Bytes between two array elements of a 4-byte value.
const ARRAY_STRIDE: usize = 8;

// SAFETY: the mapping is owned by this value and only reached through it;
// the elements are atomics.
unsafe impl Send for MapMmap {}

impl MapMmap {
    fn new(fd: BorrowedFd<'_>, len: usize) -> Result<Self, aya::sys::SyscallError> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = (len * ARRAY_STRIDE).div_ceil(page) * page;
        // SAFETY: a shared read-write mapping of a BPF_F_MMAPABLE array
        // (the kernel checks the flag and the size).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(aya::sys::SyscallError {
                call: "mmap",
                io_error: std::io::Error::last_os_error(),
            });
        }
        let ptr = std::ptr::NonNull::new(p.cast::<AtomicU32>()).ok_or_else(|| {
            aya::sys::SyscallError {
                call: "mmap",
                io_error: std::io::Error::other("null mapping"),
            }
        })?;
        Ok(MapMmap { ptr, len, bytes })
    }

    /// Store `v` into element `i` (< len).
    fn store(&mut self, i: usize, v: u32) {
        assert!(i < self.len, "element {i} of {}", self.len);
        // SAFETY: element i's u32 is at byte 8 * i < bytes, 4-aligned (the
        // mapping is page-aligned); AtomicU32 has u32's layout.
        let slot = unsafe { &*self.ptr.as_ptr().add(i * ARRAY_STRIDE / 4) };
        // Little-endian: the value's u32 is the element's first 4 bytes.
        slot.store(v, Ordering::Relaxed);
    }
}

impl Drop for MapMmap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

/// Pinned XDP links are named `link-<interface>` in the pin directory.
const LINK_PREFIX: &str = "link-";

/// Kernel attributes a persistent map must have: (key, value, max_entries).
fn persistent_shape(name: &str, opts: &LoadOptions) -> (u32, u32, u32) {
    use std::mem::size_of;
    let sz = |n: usize| n as u32;
    match name {
        STICK_MAP => (
            sz(size_of::<StickKey>()),
            sz(size_of::<StickValue>()),
            opts.stick_size,
        ),
        STATS_MAP => (4, sz(size_of::<Counter>()), STATS_LEN),
        VIP_STATS_MAP => (4, sz(size_of::<VipStats>()), opts.max_vips),
        BACKEND_STATS_MAP => (4, sz(size_of::<Counter>()), opts.max_backends),
        SERVER_IDS_MAP => (4, sz(ID_NAME_LEN), MAX_BACKENDS),
        _ => (4, sz(ID_NAME_LEN), MAX_VIPS),
    }
}

/// What [`Dataplane::load_pinned`] found already pinned.
#[derive(Debug, Default)]
pub struct Adopted {
    /// Maps reused from the pin directory.
    pub maps: Vec<&'static str>,
    /// The stick table's size when the pinned one differs from the
    /// configured size (the pinned one is kept: resizing would empty it).
    pub stick_size_kept: Option<u32>,
}

/// Detach the link pinned at `path` from its hook now (BPF_LINK_DETACH,
/// Linux 5.9+). Removing the pin alone detaches it only when the kernel
/// frees the link, which it does later, not by the time `unlink` returns:
/// `balancer detach` must leave the interface without XDP when it exits.
fn detach_pinned_link(path: &Path) -> std::io::Result<()> {
    const BPF_LINK_DETACH: libc::c_long = 34;
    let link = crate::stick_batch::obj_get(path)?;
    // union bpf_attr, BPF_LINK_DETACH: link_fd.
    let mut detach = [0u64; 1];
    detach[0] = u64::from(std::os::fd::AsRawFd::as_raw_fd(&link) as u32);
    // SAFETY: `detach` is a valid bpf_attr prefix for BPF_LINK_DETACH.
    unsafe { crate::stick_batch::sys_bpf(BPF_LINK_DETACH, &mut detach) }?;
    Ok(())
}

impl Dataplane {
    /// Load with the [`PERSISTENT_MAPS`] pinned under `dir` (a bpffs
    /// directory, created if missing): maps already pinned there by an
    /// earlier daemon are reused after checking that they fit, the others
    /// are created and pinned.
    pub fn load_pinned(
        mut opts: LoadOptions,
        dir: &Path,
    ) -> Result<(Self, Adopted), DataplaneError> {
        let pin_err = |reason: String| DataplaneError::Pin {
            path: dir.to_owned(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| pin_err(e.to_string()))?;
        let mut adopted = Adopted::default();
        for name in PERSISTENT_MAPS {
            let path = dir.join(name);
            if !path.exists() {
                continue;
            }
            let bad = |reason: String| DataplaneError::PinnedIncompatible {
                path: path.clone(),
                reason,
            };
            let info = MapData::from_pin(&path)
                .and_then(|m| m.info())
                .map_err(|e| bad(error_chain(&e)))?;
            let (key, value, max) = persistent_shape(name, &opts);
            if info.key_size() != key || info.value_size() != value {
                return Err(bad(format!(
                    "key/value sizes {}/{}, want {key}/{value}",
                    info.key_size(),
                    info.value_size()
                )));
            }
            if info.max_entries() != max {
                if name == STICK_MAP {
                    adopted.stick_size_kept = Some(info.max_entries());
                    opts.stick_size = info.max_entries();
                } else {
                    return Err(bad(format!("{} entries, want {max}", info.max_entries())));
                }
            }
            adopted.maps.push(name);
        }
        let paths: Vec<_> = PERSISTENT_MAPS.iter().map(|n| (*n, dir.join(n))).collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let dp = Self::load_from(&mut loader, opts)?;
        Ok((dp, adopted))
    }

    /// Remove everything pinned under `dir` by a daemon: the maps (their
    /// state is lost) and the XDP links (which detaches XDP). The directory
    /// stays. Returns what was removed.
    pub fn remove_pins(dir: &Path) -> Result<Vec<PathBuf>, DataplaneError> {
        let mut removed = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => {
                return Err(DataplaneError::Pin {
                    path: dir.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let ours = PERSISTENT_MAPS.contains(&name.as_ref()) || name.starts_with(LINK_PREFIX);
            if ours {
                if name.starts_with(LINK_PREFIX)
                    && let Err(err) = detach_pinned_link(&e.path())
                {
                    // Unpinning below still detaches it, once the kernel
                    // frees the link (later, not at once).
                    warn!("{}: BPF_LINK_DETACH: {err}", e.path().display());
                }
                std::fs::remove_file(e.path()).map_err(|err| DataplaneError::Pin {
                    path: e.path(),
                    reason: err.to_string(),
                })?;
                removed.push(e.path());
            }
        }
        Ok(removed)
    }

    /// Attach to `name` through a pinned link `link-<name>` under `dir`:
    /// when the link is already pinned (an earlier daemon's), atomically
    /// replace its program with this one, so XDP never leaves the
    /// interface; otherwise attach and pin the new link. The link outlives
    /// this process: XDP stays attached until [`Dataplane::remove_pins`].
    /// Returns true when an existing attachment was taken over.
    pub fn attach_pinned(
        &mut self,
        name: &str,
        mode: XdpMode,
        dir: &Path,
    ) -> Result<bool, DataplaneError> {
        let path = dir.join(format!("{LINK_PREFIX}{name}"));
        let link_err = |reason: String| DataplaneError::Link {
            path: path.clone(),
            reason,
        };
        let prog = program_mut(&mut self.ebpf)?;
        if path.exists() {
            let taken = PinnedLink::from_pin(&path)
                .map_err(|e| link_err(error_chain(&e)))
                .and_then(|p| {
                    XdpLink::try_from(FdLink::from(p)).map_err(|e| link_err(error_chain(&e)))
                })
                .and_then(|l| {
                    prog.attach_to_link(l)
                        .map_err(|e| link_err(error_chain(&e)))
                });
            match taken {
                Ok(id) => {
                    // The pin keeps the link; our fd can go.
                    drop(prog.take_link(id).map_err(DataplaneError::Program)?);
                    info!(
                        "took over the XDP attachment on {name} ({})",
                        path.display()
                    );
                    return Ok(true);
                }
                Err(e) => {
                    // E.g. the interface was deleted and re-created: the
                    // old link is defunct. Start over on this interface.
                    warn!("{e}; attaching afresh");
                    std::fs::remove_file(&path).map_err(|e| link_err(e.to_string()))?;
                }
            }
        }
        let (id, _) = attach_xdp(prog, name, mode)?;
        let link = prog.take_link(id).map_err(DataplaneError::Program)?;
        match FdLink::try_from(link) {
            Ok(fd) => {
                fd.pin(&path).map_err(|e| link_err(error_chain(&e)))?;
            }
            Err(e) => {
                warn!(
                    "XDP on {name} is attached through netlink, not a link ({}): it stays \
                     attached after this process, but a restarted daemon cannot take it over",
                    error_chain(&e)
                );
            }
        }
        Ok(false)
    }

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
    pub fn backend_stats(&self, id: u32) -> Result<Counter, DataplaneError> {
        let a: PerCpuArray<_, Counter> =
            typed(BACKEND_STATS_MAP, self.map_ref(BACKEND_STATS_MAP)?)?;
        let per_cpu = a.get(&id, 0).map_err(map_err(BACKEND_STATS_MAP))?;
        Ok(per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
            packets: acc.packets + c.packets,
            bytes: acc.bytes + c.bytes,
        }))
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

    /// Counters of a running daemon, through the map it pinned under `dir`.
    pub fn pinned_stats(dir: &Path) -> Result<Stats, DataplaneError> {
        let path = dir.join(STATS_MAP);
        let not_pinned = |reason: String| DataplaneError::NotPinned {
            path: path.clone(),
            reason,
        };
        let data = MapData::from_pin(&path).map_err(|e| not_pinned(error_chain(&e)))?;
        let map = Map::from_map_data(data).map_err(|e| not_pinned(error_chain(&e)))?;
        let array: PerCpuArray<MapData, Counter> =
            PerCpuArray::try_from(map).map_err(|e| not_pinned(error_chain(&e)))?;
        Stats::read(&array).map_err(|source| DataplaneError::Map {
            name: STATS_MAP,
            source,
        })
    }

    /// Entries of the stick table pinned under `dir`, counted by walking
    /// its keys (no values copied). Needs no handle on the daemon, so it
    /// runs without holding the controller.
    pub fn pinned_stick_count(dir: &Path) -> Result<u64, DataplaneError> {
        let path = dir.join(STICK_MAP);
        let not_pinned = |reason: String| DataplaneError::NotPinned {
            path: path.clone(),
            reason,
        };
        let data = MapData::from_pin(&path).map_err(|e| not_pinned(error_chain(&e)))?;
        let map = Map::from_map_data(data).map_err(|e| not_pinned(error_chain(&e)))?;
        let m: HashMap<MapData, StickKey, StickValue> =
            HashMap::try_from(map).map_err(|e| not_pinned(error_chain(&e)))?;
        Ok(count_stick_keys(&m, None)? as u64)
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

/// One of the object's small helper programs (`decap` for backends, `pass`
/// for veth peers), attached to one interface until dropped; or, with
/// [`AuxProgram::load_from`] and [`AuxProgram::attach_from`], a program of
/// another object (the benchmarks' reference programs are in their own).
pub struct AuxProgram {
    ebpf: Ebpf,
    program: &'static str,
    link: Option<(String, XdpLinkId)>,
}

impl AuxProgram {
    /// `program` is `DECAP_PROGRAM` or `PASS_PROGRAM`.
    pub fn attach(
        program: &'static str,
        name: &str,
        mode: XdpMode,
    ) -> Result<Self, DataplaneError> {
        Self::attach_from(crate::OBJECT, program, name, mode)
    }

    /// [`AuxProgram::attach`] for a program of `object`.
    pub fn attach_from(
        object: &[u8],
        program: &'static str,
        name: &str,
        mode: XdpMode,
    ) -> Result<Self, DataplaneError> {
        let mut aux = Self::load_from(object, program)?;
        let prog: &mut Xdp = aux
            .ebpf
            .program_mut(program)
            .ok_or(DataplaneError::MissingProgram { name: program })?
            .try_into()
            .map_err(DataplaneError::Program)?;
        let (link, _) = attach_xdp(prog, name, mode)?;
        aux.link = Some((name.to_owned(), link));
        Ok(aux)
    }

    /// Load `program` (any of the object's programs) without attaching it,
    /// e.g. for BPF_PROG_TEST_RUN.
    pub fn load(program: &'static str) -> Result<Self, DataplaneError> {
        Self::load_from(crate::OBJECT, program)
    }

    /// [`AuxProgram::load`] for a program of `object`.
    pub fn load_from(object: &[u8], program: &'static str) -> Result<Self, DataplaneError> {
        // The object's other maps are created too: keep them minimal.
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(STICK_MAP, 64)
            .map_max_entries(VIP_STATS_MAP, 1)
            .map_max_entries(MAGLEV_MAP, 1)
            .map_max_entries(BACKENDS_MAP, 1)
            .map_max_entries(BACKEND_STATS_MAP, 1)
            .load(object)?;
        let prog: &mut Xdp = ebpf
            .program_mut(program)
            .ok_or(DataplaneError::MissingProgram { name: program })?
            .try_into()
            .map_err(DataplaneError::Program)?;
        prog.load().map_err(DataplaneError::Program)?;
        Ok(AuxProgram {
            ebpf,
            program,
            link: None,
        })
    }

    /// The loaded program's fd, for BPF_PROG_TEST_RUN.
    pub fn program_fd(&self) -> Result<BorrowedFd<'_>, DataplaneError> {
        let prog: &Xdp = self
            .ebpf
            .program(self.program)
            .ok_or(DataplaneError::MissingProgram { name: self.program })?
            .try_into()
            .map_err(DataplaneError::Program)?;
        Ok(prog.fd().map_err(DataplaneError::Program)?.as_fd())
    }

    /// The loaded object (e.g. to write the generator's settings).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// `decap` only: packets decapsulated so far (IPv4-in-IPv4, IPv6-in-IPv6).
    pub fn counts(&self) -> Result<(u64, u64), DataplaneError> {
        let map = self
            .ebpf
            .map(DECAP_STATS_MAP)
            .ok_or(DataplaneError::MissingMap {
                name: DECAP_STATS_MAP,
            })?;
        let a: PerCpuArray<_, u64> = typed(DECAP_STATS_MAP, map)?;
        let sum = |i: u32| -> Result<u64, DataplaneError> {
            Ok(a.get(&i, 0).map_err(map_err(DECAP_STATS_MAP))?.iter().sum())
        };
        Ok((sum(0)?, sum(1)?))
    }
}

impl Drop for AuxProgram {
    fn drop(&mut self) {
        let program = self.program;
        if let Some((name, link)) = self.link.take()
            && let Some(p) = self.ebpf.program_mut(program)
            && let Ok(prog) = <&mut Xdp>::try_from(p)
        {
            match prog.detach(link) {
                Ok(()) => info!("detached {program} from {name}"),
                Err(e) => warn!("detaching {program} from {name}: {}", error_chain(&e)),
            }
        }
    }
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
