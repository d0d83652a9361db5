//! Map names, capacities and the plain-data types stored in them. The eBPF
//! side declares the maps with these names; userspace finds them by name and
//! may resize the sized ones at load time (`set_max_entries`).
//!
//! All values are `#[repr(C)]` + `bytemuck::Pod` (no implicit padding), and
//! use integers with named constants instead of enums or bools.

use bytemuck::{Pod, Zeroable};

/// Name of the XDP entry point in the object.
pub const XDP_PROGRAM: &str = "balancer";
/// The backends' decapsulation program in the same object.
pub const DECAP_PROGRAM: &str = "decap";
/// A program that passes everything: attached to the peer of a veth that
/// receives XDP_TX frames, since a veth only takes them when it runs XDP.
pub const PASS_PROGRAM: &str = "pass";
/// The packet generator's program and its maps.
pub const GEN_PROGRAM: &str = "trafficgen";
pub const GEN_CONFIG_MAP: &str = "GEN_CONFIG";
pub const GEN_SEQ_MAP: &str = "GEN_SEQ";
/// The benchmark floor: parse, swap MACs, XDP_TX. In the benchmarks' own
/// object (`balancer-bench-xdp-obj`), not the daemon's.
pub const BARE_PROGRAM: &str = "bare";
/// The floor plus one stick-table lookup (benchmark reference), in the
/// benchmarks' own object like `bare`.
pub const BARE_STICK_PROGRAM: &str = "bare_stick";
/// Per-CPU array of [`DECAP_COUNTERS`] u64, indexed by the `DECAP_*` slots.
pub const DECAP_STATS_MAP: &str = "DECAP_STATS";
/// Hash: [`TunnelSource`] -> u32 (unused, 1): the outer source addresses
/// the `decap` program accepts IP-in-IP from (the balancers' tunnel
/// sources). Empty: every IP-in-IP packet is refused.
pub const DECAP_SOURCES_MAP: &str = "DECAP_SOURCES";
/// Most outer sources the `decap` program can be given.
pub const MAX_TUNNEL_SOURCES: u32 = 64;

/// [`DECAP_STATS_MAP`] slots: IPv4-in-IPv4 and IPv6-in-IPv6 packets
/// decapsulated; IP-in-IP packets (IPv4 protocol 4 or 41, IPv6 next header
/// 4 or 41) dropped because their outer source is not listed, by outer family.
pub const DECAP_IPIP: u32 = 0;
pub const DECAP_IP6IP6: u32 = 1;
pub const DECAP_REFUSED_V4: u32 = 2;
pub const DECAP_REFUSED_V6: u32 = 3;
pub const DECAP_COUNTERS: u32 = 4;
/// The slots' names, as `balancer decap` reports them.
pub const DECAP_COUNTER_NAMES: [&str; DECAP_COUNTERS as usize] = [
    "decapsulated_ipip",
    "decapsulated_ip6ip6",
    "refused_ipv4",
    "refused_ipv6",
];

// ---- map names -----------------------------------------------------------
/// Per-CPU array of [`crate::stats::Counter`], indexed by [`crate::stats::Class`].
pub const STATS_MAP: &str = "STATS";
/// Per-CPU array of one u64: when this CPU last emitted a rate-limited log line.
pub const LOG_GATE_MAP: &str = "LOG_GATE";
/// Array of [`VipSlot`]: the VIP table, two generations of
/// [`VIP_INDEX_SLOTS`] open-addressed slots each (see `crate::vip_index`).
/// An array because the JIT inlines array reads: on the lab VM a hash map
/// lookup costs ~40 ns, a probe of this table a few.
pub const VIP_INDEX_MAP: &str = "VIP_INDEX";
/// Array of one [`VipSel`]: which generation of [`VIP_INDEX_MAP`] is live.
pub const VIP_SEL_MAP: &str = "VIP_SEL";
/// Array: backend id -> [`Backend`].
pub const BACKENDS_MAP: &str = "BACKENDS";
/// Array: `vip_id * MAGLEV_M + slot` -> backend id (or `NO_BACKEND`).
pub const MAGLEV_MAP: &str = "MAGLEV";
/// LRU hash, shared by all CPUs: [`StickKey`] -> [`StickValue`].
pub const STICK_MAP: &str = "STICK";
/// Per-CPU array: vip id -> [`VipStats`].
pub const VIP_STATS_MAP: &str = "VIP_STATS";
/// Per-CPU array: backend id -> [`crate::stats::Counter`].
pub const BACKEND_STATS_MAP: &str = "BACKEND_STATS";
/// Array of one [`GlobalConfig`].
pub const CONFIG_MAP: &str = "CONFIG";
/// Per-CPU array of one [`InsertWindow`] (flood guard).
pub const INSERT_WINDOW_MAP: &str = "INSERT_WINDOW";
/// Array of [`IdName`]: which server ("backend/server") owns each backend
/// id. Control-plane bookkeeping, pinned with the stick table so that a
/// restarted or reloaded daemon gives every server the id its stick entries
/// name. The program never reads it.
pub const SERVER_IDS_MAP: &str = "SERVER_IDS";
/// Array of [`IdName`]: which frontend owns each VIP id (as above).
pub const FRONTEND_IDS_MAP: &str = "FRONTEND_IDS";
/// Devmap hash: ifindex -> ifindex, for XDP_REDIRECT to another interface.
pub const EGRESS_MAP: &str = "EGRESS";

// ---- capacities (defaults; userspace may change the sized ones) ----------
pub const STATS_LEN: u32 = crate::stats::CLASS_COUNT as u32;
/// VIPs (also the number of Maglev tables).
pub const MAX_VIPS: u32 = 64;
/// Slots per generation of the VIP table (a power of two). A VIP takes one
/// slot, plus one for its address-wide fragment entry: at most
/// `2 * MAX_VIPS` of them, so the table is at most 1/8 full.
pub const VIP_INDEX_SLOTS: u32 = 1024;
/// A key sits at most this many slots after its hash's slot.
pub const VIP_INDEX_PROBES: u32 = 4;
pub const MAX_BACKENDS: u32 = 1024;
/// Default stick-table capacity (HAProxy's `size 1m`).
pub const STICK_SIZE: u32 = 1 << 20;
pub const MAX_EGRESS: u32 = 64;

/// Longest name an [`IdName`] holds.
pub const ID_NAME_LEN: usize = 96;
/// A name in [`SERVER_IDS_MAP`]/[`FRONTEND_IDS_MAP`]: UTF-8, zero-padded;
/// all zero = id free.
pub type IdName = [u8; ID_NAME_LEN];

/// Minimum nanoseconds between two rate-limited log lines from one CPU.
pub const LOG_INTERVAL_NS: u64 = 1_000_000_000;

// ---- constants stored in map values --------------------------------------
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Forwarding modes ([`VipInfo::mode`]).
pub const MODE_DSR_L2: u8 = 0;
pub const MODE_IPIP: u8 = 1;

/// Backend states ([`Backend::state`]). `EMPTY` is an unused slot: a stick
/// entry pointing at it is redispatched like one pointing at a down server.
pub const STATE_EMPTY: u8 = 0;
pub const STATE_UP: u8 = 1;
/// Keeps its existing clients, gets no new ones (not in the Maglev table).
pub const STATE_DRAIN: u8 = 2;
pub const STATE_DOWN: u8 = 3;
pub const STATE_MAINT: u8 = 4;

/// True for states whose stick entries stay valid.
#[inline(always)]
pub const fn keeps_clients(state: u8) -> bool {
    state == STATE_UP || state == STATE_DRAIN
}

/// A backend state as the admin API, the CLI and the metrics name it.
pub const fn state_name(state: u8) -> &'static str {
    match state {
        STATE_UP => "up",
        STATE_DRAIN => "drain",
        STATE_DOWN => "down",
        STATE_MAINT => "maint",
        _ => "empty",
    }
}

/// Family and 16-byte map form of an address (IPv4 in the first four bytes).
pub fn family_addr(ip: core::net::IpAddr) -> (u8, [u8; 16]) {
    match ip {
        core::net::IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.octets());
            (FAMILY_V4, o)
        }
        core::net::IpAddr::V6(a) => (FAMILY_V6, a.octets()),
    }
}

/// The address a map key holds ([`family_addr`] undone).
pub fn addr_of(family: u8, addr: &[u8; 16]) -> core::net::IpAddr {
    if family == FAMILY_V4 {
        core::net::IpAddr::from([addr[0], addr[1], addr[2], addr[3]])
    } else {
        core::net::IpAddr::from(*addr)
    }
}

// ---- keys and values -------------------------------------------------------

/// A virtual service. IPv4 addresses use the first 4 bytes of `addr`, the
/// rest zero. `port` in host order; 0 is the address-wide entry that
/// non-first fragments (which carry no port) are matched against.
///
/// Aligned to 4 (no padding: 20 bytes) so the program reads it as words.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct VipKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VipInfo {
    /// Index of this VIP's Maglev table and stats slot; `< MAX_VIPS`.
    pub id: u32,
    /// `MODE_*`.
    pub mode: u8,
    /// The stick key keeps this many leading bits of the client address
    /// (of 128; an IPv4 address is the first 32): clients of one network
    /// share an entry. 0 = the whole address.
    pub key_prefix: u8,
    pub _pad: [u8; 2],
    /// A stick entry not seen for this long counts as a miss; 0 = never expires.
    pub expire_ns: u64,
}

/// One slot of [`VIP_INDEX_MAP`]. `used == 0`: empty, which ends a probe.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VipSlot {
    pub key: VipKey,
    pub used: u32,
    pub info: VipInfo,
}

/// [`VIP_SEL_MAP`]'s value. Userspace fills the inactive generation, then
/// writes its seed, then flips `generation`: each write changes bytes the
/// program does not read at that moment, or one byte, so no reader sees a
/// half-written table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VipSel {
    /// 0 or 1.
    pub generation: u32,
    /// Hash seed of each generation.
    pub seeds: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Backend {
    /// IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    pub family: u8,
    /// `STATE_*`.
    pub state: u8,
    pub _pad: [u8; 2],
    pub weight: u32,
    /// Egress interface; equal to the ingress one means XDP_TX, else XDP_REDIRECT.
    pub ifindex: u32,
    /// Egress MTU: IPIP packets that would exceed it are dropped and counted.
    pub mtu: u32,
    /// Next hop's MAC (the backend itself when on-link).
    pub dst_mac: [u8; 6],
    /// The egress interface's MAC.
    pub src_mac: [u8; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct StickKey {
    pub vip_id: u32,
    /// Client address; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct StickValue {
    pub backend: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when last refreshed.
    pub last_seen_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct GlobalConfig {
    /// Refresh a stick entry's `last_seen_ns` only when older than this, to
    /// avoid a cache-line write per packet on a shared map.
    pub stick_refresh_ns: u64,
    /// New stick entries per CPU per second; 0 = no cap.
    pub insert_cap: u32,
    /// Outer source address of IPIP (IPv4) packets.
    pub tun_src_v4: [u8; 4],
    /// Outer source address of IP6IP6 packets.
    pub tun_src_v6: [u8; 16],
}

/// A key of [`DECAP_SOURCES_MAP`]: an outer source address the `decap`
/// program accepts. IPv4 in the first 4 bytes, the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct TunnelSource {
    pub addr: [u8; 16],
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    pub _pad: [u8; 3],
}

impl TunnelSource {
    pub fn new(ip: core::net::IpAddr) -> Self {
        let (family, addr) = family_addr(ip);
        TunnelSource {
            addr,
            family,
            _pad: [0; 3],
        }
    }
}

/// Flood guard: inserts made by this CPU in the current one-second window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct InsertWindow {
    pub start_ns: u64,
    pub inserts: u64,
}

/// Per-VIP counters (per CPU; userspace sums them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VipStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packet found a live stick entry.
    pub stick_hits: u64,
    /// New stick entries stored.
    pub new_sticks: u64,
    /// Stick entry pointed at a down/maint/removed backend: re-picked and overwritten.
    pub redispatches: u64,
    /// Stick entry older than the VIP's expire: treated as a miss.
    pub expired: u64,
    /// TCP packet without SYN and no entry: forwarded by Maglev, not stored.
    /// The signal that affinity broke (table full, flood, restart without pins).
    pub non_syn_misses: u64,
    /// New entry not stored because this CPU hit the insert cap.
    pub insert_capped: u64,
    /// Dropped: the VIP has no usable backend.
    pub no_backend: u64,
    /// Dropped: the IPIP packet would exceed the egress MTU.
    pub too_big: u64,
    /// Dropped: could not grow the packet for encapsulation, backend family differs
    /// from the VIP's, or the egress interface is not in the devmap.
    pub forward_failed: u64,
    /// ICMP/ICMPv6 errors to this VIP quoting a TCP/UDP packet from its
    /// port (forwarded to the quoted client's backend, or dropped and
    /// counted below).
    pub icmp_errors: u64,
    /// Non-first IPv4/IPv6 fragments forwarded by their client's entry.
    pub fragments: u64,
    /// Dropped: an ICMP error to this VIP quoting a packet from another
    /// source: not about anything the VIP sent.
    pub icmp_mismatched: u64,
    /// Dropped: an ICMP error about a client with no live stick entry on a
    /// server that keeps its clients (a spoofed error, or one about a flow
    /// that is gone); Maglev is not asked.
    pub icmp_no_flow: u64,
}

/// Packet generator settings ([`GEN_CONFIG_MAP`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct GenConfig {
    /// First source address (IPv4 in the first 4 bytes); the generator adds
    /// 0..src_count to its last 32 bits.
    pub src_base: [u8; 16],
    pub src_count: u32,
    /// Mixed into the source order so several generator runs differ.
    pub cpu_salt: u32,
    /// `FAMILY_V4` or `FAMILY_V6`: the template frame's family (untagged).
    pub family: u8,
    pub _pad: [u8; 3],
}

#[cfg(feature = "user")]
mod user {
    // SAFETY (all): `#[repr(C)]` plain data without padding (bytemuck checks it).
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::VipInfo {}
    unsafe impl aya::Pod for super::VipSlot {}
    unsafe impl aya::Pod for super::VipSel {}
    unsafe impl aya::Pod for super::Backend {}
    unsafe impl aya::Pod for super::StickKey {}
    unsafe impl aya::Pod for super::StickValue {}
    unsafe impl aya::Pod for super::GlobalConfig {}
    unsafe impl aya::Pod for super::InsertWindow {}
    unsafe impl aya::Pod for super::TunnelSource {}
    unsafe impl aya::Pod for super::VipStats {}
    unsafe impl aya::Pod for super::GenConfig {}
}
