//! The stick table: entries read and written one at a time or in batches
//! (kernel map or process memory), and a handle on it for other tasks.

use std::os::fd::AsFd as _;

use aya::maps::{HashMap, MapData, MapError};
use balancer_common::maps::*;

use super::{Backing, Dataplane, DataplaneError, MemoryStick, map_err, typed};

impl Dataplane {
    pub fn stick_get(&self, key: &StickKey) -> Result<Option<StickValue>, DataplaneError> {
        if let Backing::Memory(m) = &self.backing {
            return Ok(m.stick.get(key));
        }
        let m: HashMap<_, StickKey, StickValue> = typed(STICK_MAP, self.map_ref(STICK_MAP)?)?;
        match m.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(STICK_MAP)(e)),
        }
    }

    pub fn stick_set(&mut self, key: &StickKey, value: &StickValue) -> Result<(), DataplaneError> {
        if let Backing::Memory(m) = &self.backing {
            m.stick.set(key, value);
            return Ok(());
        }
        let mut m: HashMap<_, StickKey, StickValue> = typed(STICK_MAP, self.map_mut(STICK_MAP)?)?;
        m.insert(key, value, 0).map_err(map_err(STICK_MAP))
    }

    /// Delete one entry; `Ok(false)` when there was none.
    pub fn stick_remove(&mut self, key: &StickKey) -> Result<bool, DataplaneError> {
        if let Backing::Memory(m) = &self.backing {
            return Ok(m.stick.remove(key));
        }
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
        if let Backing::Memory(m) = &self.backing {
            return Ok(m.stick.entries(vip_id));
        }
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
        if let Backing::Memory(m) = &self.backing {
            return Ok(m.stick.count(vip_id));
        }
        let m: HashMap<_, StickKey, StickValue> = typed(STICK_MAP, self.map_ref(STICK_MAP)?)?;
        count_stick_keys(&m, vip_id)
    }

    /// Delete every entry of one VIP (or all); returns how many.
    pub fn stick_clear(&mut self, vip_id: Option<u32>) -> Result<usize, DataplaneError> {
        self.stick_delete_where(vip_id, |_| true)
    }

    /// Delete the entries of one VIP (or all) whose value `pick`s.
    pub(super) fn stick_delete_where(
        &mut self,
        vip_id: Option<u32>,
        pick: impl Fn(&StickValue) -> bool,
    ) -> Result<usize, DataplaneError> {
        if let Backing::Memory(m) = &self.backing {
            return Ok(m.stick.delete_where(vip_id, pick));
        }
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
}

/// The stick table as a handle of its own, for the tasks that write and
/// count it without a hold on the controller (the HTTP stick tables'
/// flusher, the metrics' count): the kernel map by its fd, or the table
/// in process memory.
pub enum StickStore {
    Map(std::os::fd::OwnedFd),
    Memory(MemoryStick),
}

impl StickStore {
    /// Write many entries at once (one system call for the map).
    pub fn update(&self, keys: &[StickKey], values: &[StickValue]) -> std::io::Result<()> {
        match self {
            StickStore::Map(fd) => crate::stick_batch::update(fd.as_fd(), keys, values),
            StickStore::Memory(m) => m.update(keys, values),
        }
    }

    /// Entries in the table (read in batches from the map).
    pub fn count(&self) -> std::io::Result<u64> {
        use std::os::fd::AsRawFd as _;
        match self {
            StickStore::Map(fd) => {
                let mut n = 0;
                crate::stick_batch::Scanner::new(4096).scan(fd.as_raw_fd(), |_, _| n += 1)?;
                Ok(n)
            }
            StickStore::Memory(m) => Ok(m.count(None) as u64),
        }
    }
}

impl Dataplane {
    /// A handle on the stick table (see [`StickStore`]).
    pub fn stick_store(&self) -> Result<StickStore, DataplaneError> {
        match &self.backing {
            Backing::Memory(m) => Ok(StickStore::Memory(m.stick.clone())),
            Backing::Kernel { .. } => {
                let fd = self.stick_map_fd()?;
                fd.try_clone_to_owned()
                    .map(StickStore::Map)
                    .map_err(|source| DataplaneError::Batch {
                        name: STICK_MAP,
                        source,
                    })
            }
        }
    }
}

/// Stick entries of one VIP (or all), walking the keys only. An entry
/// deleted during the walk is skipped.
pub(super) fn count_stick_keys<T: std::borrow::Borrow<MapData>>(
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
