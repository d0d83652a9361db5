//! Every map of the program, one line each. Names, types and default sizes
//! come from balancer_common::maps, so userspace opens the same ones (and
//! resizes the sized ones at load time).

use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray},
};
use balancer_common::{
    hash::MAGLEV_M,
    maps::{
        Backend, GlobalConfig, InsertWindow, MAX_BACKENDS, MAX_EGRESS, MAX_VIPS, STATS_LEN,
        STICK_SIZE, StickKey, StickValue, VipInfo, VipKey, VipStats,
    },
    stats::Counter,
};

/// Packets and bytes per `balancer_common::stats::Class`, per CPU.
#[map(name = "STATS")]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(STATS_LEN, 0);
/// Per CPU: time (ns) of the last rate-limited log line.
#[map(name = "LOG_GATE")]
pub static LOG_GATE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
/// Virtual services: (address, port, protocol) -> id, mode, expire.
#[map(name = "VIPS")]
pub static VIPS: HashMap<VipKey, VipInfo> = HashMap::with_max_entries(MAX_VIPS * 4, 0);
/// Backend id -> address, state, next hop.
#[map(name = "BACKENDS")]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);
/// `vip_id * MAGLEV_M + slot` -> backend id: one Maglev table per VIP.
#[map(name = "MAGLEV")]
pub static MAGLEV: Array<u32> = Array::with_max_entries(MAX_VIPS * MAGLEV_M, 0);
/// The stick table, shared by all CPUs (one client's flows land on several).
#[map(name = "STICK")]
pub static STICK: LruHashMap<StickKey, StickValue> = LruHashMap::with_max_entries(STICK_SIZE, 0);
/// Per-VIP counters, per CPU.
#[map(name = "VIP_STATS")]
pub static VIP_STATS: PerCpuArray<VipStats> = PerCpuArray::with_max_entries(MAX_VIPS, 0);
/// Per-backend packets and bytes, per CPU.
#[map(name = "BACKEND_STATS")]
pub static BACKEND_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);
/// Global settings written by userspace (tunnel sources, insert cap, refresh).
#[map(name = "CONFIG")]
pub static CONFIG: Array<GlobalConfig> = Array::with_max_entries(1, 0);
/// Flood guard: this CPU's inserts in the current second.
#[map(name = "INSERT_WINDOW")]
pub static INSERT_WINDOW: PerCpuArray<InsertWindow> = PerCpuArray::with_max_entries(1, 0);
/// Egress interfaces other than the ingress one, for XDP_REDIRECT (key = ifindex).
#[map(name = "EGRESS")]
pub static EGRESS: DevMapHash = DevMapHash::with_max_entries(MAX_EGRESS, 0);
/// `decap` program: packets decapsulated (0: IPIP, 1: IP6IP6), per CPU.
#[map(name = "DECAP_STATS")]
pub static DECAP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);
