//! State that outlives a daemon: the maps and XDP links pinned under the
//! pin directory, taken over by the next daemon, removed by `balancer
//! detach`, read by `balancer stats --pin-dir`.

use std::path::{Path, PathBuf};

use aya::{
    EbpfLoader,
    maps::{HashMap, Map, MapData, PerCpuArray},
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use balancer_common::{maps::*, stats::Counter};
use log::{info, warn};

use super::{Dataplane, DataplaneError, LoadOptions, attach_xdp, count_stick_keys, program_mut};
use crate::{config::XdpMode, stats::Stats, util::error_chain};

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

/// Pinned XDP links are named `link-<interface>` in the pin directory.
const LINK_PREFIX: &str = "link-";

/// Who runs the XDP program already attached to interface `name`, for an
/// error: the balancer whose pin directory (any directory of the bpffs at
/// /sys/fs/bpf) holds its link, else another tool, and what to do.
pub(super) fn xdp_owner(name: &str) -> String {
    let (who, fix) = xdp_owner_parts(name);
    format!("{who}: {fix}")
}

/// [`xdp_owner`] as (whose it is, what to do), for `balancer doctor`.
pub fn xdp_owner_parts(name: &str) -> (String, String) {
    let link = format!("{LINK_PREFIX}{name}");
    let owner = std::fs::read_dir("/sys/fs/bpf").ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| d.path())
            .find(|d| d.join(&link).exists())
    });
    match owner {
        Some(dir) => (
            format!(
                "another balancer's (its pin_dir {} holds {link})",
                dir.display()
            ),
            "stop that daemon, then `balancer detach` with its configuration removes it; or give \
             this one another interface"
                .to_owned(),
        ),
        None => (
            format!("not a balancer's (no pin_dir under /sys/fs/bpf holds {link})"),
            format!(
                "`ip link show dev {name}` names it, `ip link set dev {name} xdp off` removes it"
            ),
        ),
    }
}

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
    /// Counter maps pinned with another layout (by an older or newer
    /// balancer), replaced by new ones: their counters start from zero.
    pub counters_reset: Vec<&'static str>,
}

/// Persistent maps that hold only counters: one pinned with another value
/// layout (a balancer that counts other things) is replaced rather than
/// refused, so an upgrade that adds a counter keeps the stick table.
const COUNTER_MAPS: [&str; 3] = [STATS_MAP, VIP_STATS_MAP, BACKEND_STATS_MAP];

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
                if COUNTER_MAPS.contains(&name) {
                    warn!(
                        "{}: pinned with {}-byte values, this balancer counts in {value}: \
                         replaced, its counters start from zero",
                        path.display(),
                        info.value_size()
                    );
                    std::fs::remove_file(&path).map_err(|e| bad(e.to_string()))?;
                    adopted.counters_reset.push(name);
                    continue;
                }
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
        let prog = program_mut(self.ebpf_mut()?)?;
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
}
