//! The single owner of the loaded XDP program, its attachments and its maps.

use std::{
    ffi::CString,
    os::fd::{AsFd as _, BorrowedFd},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, PerCpuArray},
    programs::{ProgramError, Xdp, XdpMode as AyaXdpMode, xdp::XdpLinkId},
};
use balancer_common::{
    maps::{STATS_MAP, XDP_PROGRAM},
    stats::Counter,
};
use log::{info, warn};

use crate::{config::XdpMode, stats::Stats};

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
    #[error("cannot pin maps under {path}: {reason}")]
    Pin { path: PathBuf, reason: String },
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

pub struct Dataplane {
    ebpf: Ebpf,
    links: Vec<(String, XdpLinkId)>,
    pinned: Vec<PathBuf>,
    pin_dir_created: Option<PathBuf>,
}

impl Dataplane {
    /// Load the embedded object and the program into the kernel (this is
    /// where the verifier runs). Nothing is attached yet.
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_object(crate::OBJECT)
    }

    pub fn load_object(object: &[u8]) -> Result<Self, DataplaneError> {
        let mut ebpf = EbpfLoader::new().load(object)?;
        program_mut(&mut ebpf)?
            .load()
            .map_err(DataplaneError::Program)?;
        Ok(Dataplane {
            ebpf,
            links: Vec::new(),
            pinned: Vec::new(),
            pin_dir_created: None,
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
        let cname = CString::new(name).map_err(|_| DataplaneError::UnknownInterface {
            name: name.to_owned(),
        })?;
        // SAFETY: a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(DataplaneError::UnknownInterface {
                name: name.to_owned(),
            });
        }
        let prog = program_mut(&mut self.ebpf)?;
        let attempt = |prog: &mut Xdp, aya_mode, label| {
            prog.attach_to_if_index(ifindex, aya_mode)
                .map_err(|e| DataplaneError::Attach {
                    name: name.to_owned(),
                    mode: label,
                    reason: error_chain(&e),
                })
        };
        let (link, attached) = match mode {
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
            attached.as_str()
        );
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

    /// Pin the maps the CLI reads under `dir` (created if missing; the
    /// filesystem must be a bpffs).
    pub fn pin_maps(&mut self, dir: &Path) -> Result<(), DataplaneError> {
        let pin_err = |reason: String| DataplaneError::Pin {
            path: dir.to_owned(),
            reason,
        };
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| pin_err(e.to_string()))?;
            self.pin_dir_created = Some(dir.to_owned());
        }
        let path = dir.join(STATS_MAP);
        let map = self
            .ebpf
            .map(STATS_MAP)
            .ok_or(DataplaneError::MissingMap { name: STATS_MAP })?;
        map.pin(&path).map_err(|e| pin_err(error_chain(&e)))?;
        self.pinned.push(path);
        Ok(())
    }

    /// Remove what `pin_maps` created.
    pub fn unpin_maps(&mut self) {
        for path in self.pinned.drain(..) {
            if let Err(e) = std::fs::remove_file(&path) {
                warn!("unpinning {}: {e}", path.display());
            }
        }
        if let Some(dir) = self.pin_dir_created.take()
            && let Err(e) = std::fs::remove_dir(&dir)
        {
            warn!("removing {}: {e}", dir.display());
        }
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
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.detach_all();
        self.unpin_maps();
    }
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, DataplaneError> {
    ebpf.program_mut(XDP_PROGRAM)
        .ok_or(DataplaneError::MissingProgram { name: XDP_PROGRAM })?
        .try_into()
        .map_err(DataplaneError::Program)
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        // Many errors already include their source's text in their own.
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}
