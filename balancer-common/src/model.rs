//! The reference model: the XDP program's whole per-packet decision written
//! plainly for the host, over ordinary collections standing in for the maps.
//! Tests run the compiled program and this model on the same packets with
//! the same map contents and require the same verdict, output bytes, map
//! state and counters.
//!
//! Per packet (a single CPU is modelled; the flood guard's window is per CPU):
//! 1. parse ([`crate::packet`]) and count the class; no flow, or a flow
//!    whose [`VipKey`] is not a VIP: `XDP_PASS`, frame untouched;
//! 2. an `IcmpMismatch` flow (an ICMP error to the VIP quoting a packet
//!    from another source): `XDP_DROP`, counted (`icmp_mismatched`);
//! 3. stick lookup by (VIP id, client address):
//!    - live entry (not older than the VIP's `expire_ns`, 0 = never) whose
//!      backend is up or draining: a hit; `last_seen` is rewritten only
//!      when older than `stick_refresh_ns`;
//!    - an `IcmpError` flow without such a hit: `XDP_DROP`, counted
//!      (`icmp_no_flow`; an expired entry is counted `expired` too). An
//!      error is only ever about a flow the table knows: a spoofed one must
//!      not reach a backend Maglev picks, and never changes the table;
//!    - live entry whose backend is down, in maintenance or removed:
//!      redispatch: pick from the Maglev table and overwrite the entry;
//!    - no entry or an expired one: pick from the Maglev table; store it
//!      only for a `Normal` flow that opens a session (TCP SYN without ACK,
//!      or any UDP packet: UDP has no handshake) while this CPU is under its
//!      insert cap (0: no cap); otherwise count why not;
//! 4. a pick of `NO_BACKEND` or an empty backend slot: `XDP_DROP`, counted;
//! 5. forward by the VIP's mode:
//!    - `dsr-l2`: destination MAC := backend's next hop, source MAC := egress
//!      interface's; rest unchanged;
//!    - `ipip`: a same-family outer header (IPv4 proto 4 / IPv6 next header
//!      41, TTL 64) from the configured tunnel source to the backend is put
//!      between the Ethernet header (VLAN tag kept) and the packet; if the
//!      result would exceed the backend's egress MTU, or the backend's family
//!      differs from the VIP's: `XDP_DROP`, counted (`too_big`,
//!      `forward_failed`). No ICMP "too big" is generated.
//!    
//!    `XDP_TX` when the egress interface is the ingress one, `XDP_REDIRECT`
//!    when it is in the egress devmap, else `XDP_DROP` (`forward_failed`).

use alloc::{
    collections::{BTreeMap, BTreeSet},
    vec::Vec,
};

use crate::{
    hash::{MAGLEV_M, NO_BACKEND, client_hash, maglev_slot, mask_addr},
    layout::*,
    maps::*,
    packet::{FlowKind, parse},
    stats::{CLASS_COUNT, Class, Counter},
};

#[derive(Clone, Debug, Default)]
pub struct Model {
    pub vips: BTreeMap<VipKey, VipInfo>,
    /// Backend slots; a missing id is `STATE_EMPTY`.
    pub backends: BTreeMap<u32, Backend>,
    /// VIP id -> its `MAGLEV_M` slots.
    pub maglev: BTreeMap<u32, Vec<u32>>,
    pub stick: BTreeMap<StickKey, StickValue>,
    pub config: GlobalConfig,
    pub window: InsertWindow,
    /// Interfaces present in the egress devmap.
    pub egress: BTreeSet<u32>,
    pub classes: [Counter; CLASS_COUNT],
    pub vip_stats: BTreeMap<u32, VipStats>,
    pub backend_stats: BTreeMap<u32, Counter>,
}

/// The program's answer for one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub action: u32,
    /// The frame as the program leaves it.
    pub data: Vec<u8>,
}

const WINDOW_NS: u64 = 1_000_000_000;

impl Model {
    /// Process one frame received on `ingress_ifindex` at `now_ns`.
    pub fn process(&mut self, frame: &[u8], now_ns: u64, ingress_ifindex: u32) -> Verdict {
        let pass = |frame: &[u8]| Verdict {
            action: XDP_PASS,
            data: frame.to_vec(),
        };
        let drop = |frame: &[u8]| Verdict {
            action: XDP_DROP,
            data: frame.to_vec(),
        };
        let len = frame.len() as u64;
        let p = parse(frame);
        let c = &mut self.classes[p.class.index() as usize];
        c.packets += 1;
        c.bytes += len;
        if p.class == Class::Malformed {
            return pass(frame);
        }
        let Some(flow) = p.flow else {
            return pass(frame);
        };
        let Some(vip) = self.vips.get(&flow.vip).copied() else {
            return pass(frame);
        };
        let stats = self.vip_stats.entry(vip.id).or_default();
        stats.packets += 1;
        stats.bytes += len;
        match flow.kind {
            FlowKind::IcmpError => stats.icmp_errors += 1,
            FlowKind::IcmpMismatch => {
                stats.icmp_errors += 1;
                stats.icmp_mismatched += 1;
                return drop(frame);
            }
            FlowKind::Fragment => stats.fragments += 1,
            FlowKind::Normal => {}
        }
        let icmp = flow.kind == FlowKind::IcmpError;

        // ---- select ----
        // Clients of one network (`key_prefix`) share the key and the hash.
        let client = mask_addr(&flow.client, vip.key_prefix);
        let key = StickKey {
            vip_id: vip.id,
            addr: client,
        };
        let hash = client_hash(&client);
        let pick = self
            .maglev
            .get(&vip.id)
            .and_then(|t| t.get(maglev_slot(hash) as usize).copied())
            .unwrap_or(NO_BACKEND);
        let state_of = |b: u32| self.backends.get(&b).map_or(STATE_EMPTY, |b| b.state);
        let pick_ok = pick != NO_BACKEND && state_of(pick) != STATE_EMPTY;
        let entry = self.stick.get(&key).copied();
        let live = entry.filter(|e| {
            vip.expire_ns == 0 || now_ns.saturating_sub(e.last_seen_ns) <= vip.expire_ns
        });
        let stats = self.vip_stats.entry(vip.id).or_default();
        let backend_id = match live {
            Some(e) if keeps_clients(state_of(e.backend)) => {
                stats.stick_hits += 1;
                if now_ns.saturating_sub(e.last_seen_ns) > self.config.stick_refresh_ns {
                    self.stick.insert(
                        key,
                        StickValue {
                            last_seen_ns: now_ns,
                            ..e
                        },
                    );
                }
                e.backend
            }
            Some(_) if icmp => {
                stats.icmp_no_flow += 1;
                return drop(frame);
            }
            Some(_) => {
                if !pick_ok {
                    stats.no_backend += 1;
                    return drop(frame);
                }
                stats.redispatches += 1;
                self.stick.insert(key, stick_value(pick, now_ns));
                pick
            }
            None => {
                if entry.is_some() {
                    stats.expired += 1;
                }
                if icmp {
                    stats.icmp_no_flow += 1;
                    return drop(frame);
                }
                if !pick_ok {
                    stats.no_backend += 1;
                    return drop(frame);
                }
                if flow.kind == FlowKind::Normal {
                    if !flow.opening {
                        stats.non_syn_misses += 1;
                    } else {
                        if now_ns.saturating_sub(self.window.start_ns) >= WINDOW_NS {
                            self.window = InsertWindow {
                                start_ns: now_ns,
                                inserts: 0,
                            };
                        }
                        let cap = u64::from(self.config.insert_cap);
                        if cap != 0 && self.window.inserts >= cap {
                            stats.insert_capped += 1;
                        } else {
                            self.window.inserts += 1;
                            stats.new_sticks += 1;
                            self.stick.insert(key, stick_value(pick, now_ns));
                        }
                    }
                }
                pick
            }
        };

        // ---- forward ----
        let Some(b) = self.backends.get(&backend_id).copied() else {
            self.vip_stats.entry(vip.id).or_default().no_backend += 1;
            return drop(frame);
        };
        let bs = self.backend_stats.entry(backend_id).or_default();
        bs.packets += 1;
        bs.bytes += len;
        let stats = self.vip_stats.entry(vip.id).or_default();
        let mut out = Vec::with_capacity(frame.len() + IPV6_HLEN);
        out.extend_from_slice(&frame[..p.l2_len]);
        out[..ETH_ALEN].copy_from_slice(&b.dst_mac);
        out[ETH_ALEN..2 * ETH_ALEN].copy_from_slice(&b.src_mac);
        let inner = &frame[p.l2_len..];
        if vip.mode == MODE_IPIP {
            if b.family != flow.vip.family {
                stats.forward_failed += 1;
                return drop(frame);
            }
            let olen = if b.family == FAMILY_V4 {
                IPV4_MIN_HLEN
            } else {
                IPV6_HLEN
            };
            if inner.len() + olen > b.mtu as usize {
                stats.too_big += 1;
                return drop(frame);
            }
            let ilen = inner.len() as u16;
            if b.family == FAMILY_V4 {
                let mut dst = [0u8; 4];
                dst.copy_from_slice(&b.addr[..4]);
                out.extend_from_slice(&ipip4_header(self.config.tun_src_v4, dst, ilen));
            } else {
                out.extend_from_slice(&ip6ip6_header(&self.config.tun_src_v6, &b.addr, ilen, hash));
            }
        }
        out.extend_from_slice(inner);
        let action = if b.ifindex == ingress_ifindex {
            XDP_TX
        } else if self.egress.contains(&b.ifindex) {
            XDP_REDIRECT
        } else {
            stats.forward_failed += 1;
            return drop(frame);
        };
        Verdict { action, data: out }
    }
}

fn stick_value(backend: u32, now_ns: u64) -> StickValue {
    StickValue {
        backend,
        _pad: 0,
        last_seen_ns: now_ns,
    }
}

/// Maglev table size, re-exported for callers building model tables.
pub const TABLE_SIZE: u32 = MAGLEV_M;
