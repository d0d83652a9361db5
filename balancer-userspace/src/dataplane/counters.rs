//! The data plane's per-CPU counters summed over CPUs.

use aya::maps::{MapData, PerCpuArray};
use balancer_common::{maps::*, stats::Counter};

use super::{DataplaneError, map_err};
use crate::{stats::Stats, util::error_chain};

/// A frontend's counters summed over CPUs.
pub(super) fn sum_vip<T: std::borrow::Borrow<MapData>>(
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
pub(super) fn sum_backend<T: std::borrow::Borrow<MapData>>(
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
