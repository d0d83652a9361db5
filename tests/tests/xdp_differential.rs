//! Differential test: the compiled XDP program and the reference model
//! (`balancer_common::model`) on the same long stream of random frames,
//! valid and damaged, with the same map contents.
//!
//! Every frame goes through `Pair::run`, which asserts the same verdict and
//! (unless dropped) the same output bytes; the stick table and every counter
//! are compared every `CHECK_EVERY` frames and at the end. Along the way the
//! backend set changes every `EPOCH` frames (up/drain/down/maint and back)
//! and stick entries are occasionally pointed at down, empty, cross-family,
//! unreachable or stale backends, so redispatch, drain, expiry and every
//! drop path (no backend, too big, forward failed, ICMP errors about
//! clients without an entry or quoting another source than the VIP they
//! are sent to) run too.
//!
//! Deterministic for a seed: the frames, the state changes and the stick
//! edits all come from one `Rng`. The only wall-clock dependence is expiry,
//! which is either off (`expire_ns` 0) or minutes away from any timestamp
//! the test writes, so the microseconds between the program's clock and the
//! model's cannot matter. `insert_cap` is 0 for the same reason, and the
//! stick table stays far below its 65,536 entries so the LRU never evicts.
//!
//! A second test does the same for the backends' `decap` program and its
//! model (`balancer_common::decap`): IP-in-IP from listed and unlisted
//! outer sources, of every family pair, tagged, fragmented, with outer
//! options or extension headers, damaged; and traffic that is no tunnel.
//!
//! Reproduce a failure with `BALANCER_DIFF_SEED=<seed>` (printed first);
//! `BALANCER_DIFF_FRAMES=<n>` changes the number of frames (the "every path
//! was exercised" assertions need the default 100,000 or more);
//! `BALANCER_DIFF_VERBOSE=1` prints each backend state change.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    panic::{AssertUnwindSafe, catch_unwind, resume_unwind},
    time::{Duration, Instant},
};

use balancer::{dataplane::AuxProgram, testrun::test_run};
use balancer_common::{
    decap::decap,
    layout::*,
    maps::*,
    model::Verdict,
    packet::parse,
    stats::{Class, Counter},
};
use balancer_tests::{
    packets::{BALANCER_MAC, Frame, L4, Rng, encapsulate},
    require_root,
};
use common::*;

const DEFAULT_SEED: u64 = 0x5eed_ba1a_0c3e_0001;
const DEFAULT_FRAMES: usize = 100_000;
/// Full state comparison (stick table, all counters) this often.
const CHECK_EVERY: usize = 2_000;
/// One backend changes state this often.
const EPOCH: usize = 5_000;
/// One stick entry is overwritten by hand this often.
const POKE_EVERY: usize = 400;
/// The expiry of the VIPs that expire at all: far longer than the run.
const EXPIRE_NS: u64 = 300_000_000_000;
/// How far past `EXPIRE_NS` a deliberately stale entry is: a minute, so
/// both sides see it expired whatever the scheduling.
const STALE_MARGIN_NS: u64 = 60_000_000_000;
/// Distinct clients per family.
const CLIENTS: usize = 300;
/// Backend ids without a backend (40 is an empty slot of the 64-slot
/// array, 1000 is past it, and the "no backend" marker): stick entries
/// pointing there must be redispatched.
const EMPTY_SLOTS: [u32; 3] = [40, 1000, NO];
/// An up IPv4 backend in no pool, behind an interface missing from the
/// egress devmap: entries pointing at it end in `forward_failed`.
const UNREGISTERED: u32 = 8;

const ROUTER_MAC: [u8; 6] = [0x02, 0xb1, 0, 9, 0, 0xfe];
const ROUTER_V4: [u8; 4] = [198, 18, 0, 254];
const NON_VIP_V4: [u8; 4] = [198, 18, 0, 200];

fn router_v6() -> [u8; 16] {
    v6("2001:db8::fe".parse().unwrap())
}

fn non_vip_v6() -> [u8; 16] {
    v6("2001:db8::200".parse().unwrap())
}

#[derive(Clone, Copy, Debug)]
struct Vip {
    id: u32,
    family: u8,
    proto: u8,
    addr: [u8; 16],
    port: u16,
    mode: u8,
    expire_ns: u64,
    /// Has the address-wide port-0 entry that non-first fragments match.
    frag_entry: bool,
    pool: &'static [u32],
    /// `VipInfo::key_prefix` (clients of one network share an entry).
    key_prefix: u8,
}

impl Vip {
    fn new(id: u32, family: u8, addr: [u8; 16], proto: u8, port: u16, pool: &'static [u32]) -> Vip {
        Vip {
            id,
            family,
            proto,
            addr,
            port,
            mode: MODE_DSR_L2,
            expire_ns: 0,
            frag_entry: false,
            pool,
            key_prefix: 0,
        }
    }

    fn masked(self, key_prefix: u8) -> Vip {
        Vip { key_prefix, ..self }
    }

    fn ipip(self) -> Vip {
        Vip {
            mode: MODE_IPIP,
            ..self
        }
    }

    fn expiring(self) -> Vip {
        Vip {
            expire_ns: EXPIRE_NS,
            ..self
        }
    }

    fn with_frag_entry(self) -> Vip {
        Vip {
            frag_entry: true,
            ..self
        }
    }
}

fn vips() -> Vec<Vip> {
    let a4 = v4([198, 18, 0, 100]);
    let b4 = v4([198, 18, 0, 101]);
    let a6 = v6("2001:db8::100".parse().unwrap());
    let b6 = v6("2001:db8::101".parse().unwrap());
    let (v4, v6, tcp, udp) = (FAMILY_V4, FAMILY_V6, IPPROTO_TCP, IPPROTO_UDP);
    vec![
        Vip::new(0, v4, a4, tcp, 80, &[0, 1, 2, 3])
            .with_frag_entry()
            .masked(30),
        // A two-backend pool: it sometimes has no usable backend at all.
        Vip::new(1, v4, a4, udp, 53, &[0, 1])
            .expiring()
            .with_frag_entry(),
        Vip::new(2, v6, a6, tcp, 443, &[4, 5, 6, 7])
            .expiring()
            .with_frag_entry()
            .masked(126),
        Vip::new(3, v6, a6, udp, 53, &[5, 6]),
        Vip::new(4, v4, b4, tcp, 80, &[0, 1, 2, 3])
            .ipip()
            .with_frag_entry(),
        // The IPv6 counterpart of the IPIP path (ip6ip6, flow label).
        Vip::new(5, v6, b6, udp, 4500, &[4, 5, 6, 7])
            .ipip()
            .expiring()
            .with_frag_entry(),
        // Every server gone: an all-NO_BACKEND Maglev table. New clients
        // are dropped; entries made before (pokes) still hit or fail to
        // redispatch.
        Vip::new(6, v4, b4, udp, 123, &[]),
    ]
}

/// Four IPv4 and four IPv6 backends, distinct MACs; one of each family
/// with a small MTU so encapsulation runs into `too_big` often; and
/// `UNREGISTERED`, reached only through stick entries set by hand.
fn setup(vips: &[Vip]) -> Pair {
    let mut p = Pair::new();
    for v in vips {
        let info = VipInfo {
            key_prefix: v.key_prefix,
            ..vip_info(v.id, v.mode, v.expire_ns)
        };
        p.add_vip(vip_key(v.family, v.addr, v.port, v.proto), info);
        if v.frag_entry {
            p.add_vip(vip_key(v.family, v.addr, 0, v.proto), info);
        }
    }
    for i in 0..4u8 {
        let mut b = backend(FAMILY_V4, v4([198, 18, 1, 10 + i]), 0x10 + i, STATE_UP);
        if i == 3 {
            b.mtu = 1000;
        }
        p.set_backend(u32::from(i), b);
        let a = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x10 + u16::from(i));
        let mut b = backend(FAMILY_V6, v6(a), 0x20 + i, STATE_UP);
        if i == 3 {
            b.mtu = 1200;
        }
        p.set_backend(4 + u32::from(i), b);
    }
    let mut b = backend(FAMILY_V4, v4([198, 18, 1, 18]), 0x18, STATE_UP);
    b.ifindex = 999_999;
    p.set_backend(UNREGISTERED, b);
    let names: Vec<String> = (0..8).map(|i| format!("b{i}")).collect();
    for v in vips {
        let pool: Vec<(u32, &str)> = v
            .pool
            .iter()
            .map(|&i| (i, names[i as usize].as_str()))
            .collect();
        p.set_pool(v.id, &pool);
    }
    p
}

// ---- frame surgery -------------------------------------------------------

fn ip4(a: [u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(a[0], a[1], a[2], a[3])
}

fn ip6(a: [u8; 16]) -> Ipv6Addr {
    Ipv6Addr::from(a)
}

fn build(f: Frame<'_>, family: u8, src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    if family == FAMILY_V4 {
        f.ipv4(ip4(src), ip4(dst))
    } else {
        f.ipv6(ip6(src), ip6(dst))
    }
}

/// Insert an 802.1Q/802.1ad tag after the MAC addresses.
fn tag(mut f: Vec<u8>, tpid: u16, vid: u16) -> Vec<u8> {
    let t = tpid.to_be_bytes();
    let v = vid.to_be_bytes();
    f.splice(12..12, [t[0], t[1], v[0], v[1]]);
    f
}

fn be16(f: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([f[off], f[off + 1]])
}

fn put16(f: &mut [u8], off: usize, v: u16) {
    f[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Recompute the header checksum of the IPv4 header at `l3` after an edit
/// (nothing checks it; the frames just stay realistic).
fn fix_ipv4_checksum(f: &mut [u8], l3: usize) {
    let ihl = usize::from(f[l3] & 0x0f) * 4;
    put16(f, l3 + 10, 0);
    let mut sum: u32 = f[l3..l3 + ihl]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    put16(f, l3 + 10, !(sum as u16));
}

/// One IPv6 extension header: (next-header value, argument), the argument
/// being the length field for options/routing/AH and the offset/flags
/// field for a fragment header.
type Ext = (u8, u16);

fn ext_bytes((ty, arg): Ext, next: u8) -> Vec<u8> {
    match ty {
        IPPROTO_FRAGMENT => {
            let o = arg.to_be_bytes();
            vec![next, 0, o[0], o[1], 0, 0, 0x12, 0x34]
        }
        IPPROTO_AH => {
            let size = (usize::from(arg) + 2) * 4;
            let mut h = vec![0u8; size];
            h[0] = next;
            h[1] = arg as u8;
            h
        }
        _ => {
            // Hop-by-hop, destination options (one PadN), routing.
            let size = (usize::from(arg) + 1) * 8;
            let mut h = vec![0u8; size];
            h[0] = next;
            h[1] = arg as u8;
            if ty != IPPROTO_ROUTING {
                h[2] = 1;
                h[3] = (size - 4) as u8;
            }
            h
        }
    }
}

/// Put `chain` between the (untagged) IPv6 header and its payload.
fn with_ext(mut f: Vec<u8>, chain: &[Ext]) -> Vec<u8> {
    let l3 = ETH_HLEN;
    let mut next = f[l3 + 6];
    let mut hdrs = Vec::new();
    for &e in chain.iter().rev() {
        let mut h = ext_bytes(e, next);
        h.extend_from_slice(&hdrs);
        hdrs = h;
        next = e.0;
    }
    f[l3 + 6] = next;
    let plen = be16(&f, l3 + 4) as usize + hdrs.len();
    put16(&mut f, l3 + 4, plen as u16);
    f.splice(l3 + IPV6_HLEN..l3 + IPV6_HLEN, hdrs);
    f
}

// ---- the generator -------------------------------------------------------

struct Gen {
    rng: Rng,
    vips: Vec<Vip>,
    /// Clients per family: `[IPv4, IPv6]`.
    clients: [Vec<[u8; 16]>; 2],
    tagged: u64,
    with_ext: u64,
}

fn fam(family: u8) -> usize {
    usize::from(family == FAMILY_V6)
}

impl Gen {
    fn new(seed: u64, vips: Vec<Vip>) -> Gen {
        let c4 = (0..CLIENTS)
            .map(|n| v4([198, 18, 2 + (n / 256) as u8, (n % 256) as u8]))
            .collect();
        // 2001:db8:0:2::100 onwards.
        let c6 = (0..CLIENTS)
            .map(|n| {
                v6(Ipv6Addr::from(
                    0x2001_0db8_0000_0002_0000_0000_0000_0100 + n as u128,
                ))
            })
            .collect();
        Gen {
            rng: Rng::new(seed),
            vips,
            clients: [c4, c6],
            tagged: 0,
            with_ext: 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        self.rng.below(n)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    fn byte(&mut self) -> u8 {
        self.rng.next_u64() as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    fn vip(&mut self) -> Vip {
        let i = self.below(self.vips.len());
        self.vips[i]
    }

    fn client(&mut self, family: u8) -> [u8; 16] {
        let i = self.below(CLIENTS);
        self.clients[fam(family)][i]
    }

    fn port(&mut self) -> u16 {
        1024 + self.below(64_000) as u16
    }

    /// Mostly small, sometimes near the MTU (the IPIP size checks).
    fn payload(&mut self) -> Vec<u8> {
        let n = match self.below(10) {
            0..=5 => self.below(64),
            6..=7 => self.below(600),
            _ => 900 + self.below(541),
        };
        self.bytes(n)
    }

    /// A random extension chain of `n` headers (non-first fragments aside).
    fn ext_chain(&mut self, n: usize) -> Vec<Ext> {
        (0..n)
            .map(|_| match self.below(5) {
                0 => (IPPROTO_HOPOPTS, self.below(3) as u16),
                1 => (IPPROTO_DSTOPTS, self.below(3) as u16),
                2 => (IPPROTO_ROUTING, self.below(2) as u16),
                // Offset 0, with or without "more fragments": a first
                // fragment, walked through.
                3 => (IPPROTO_FRAGMENT, self.below(2) as u16),
                _ => (IPPROTO_AH, 4),
            })
            .collect()
    }

    /// `f` (untagged IPv6) with 1 to `IPV6_MAX_EXT` extension headers
    /// before its payload, or (`past_percent` of the time) one more.
    fn ext_headers(&mut self, f: Vec<u8>, past_percent: usize) -> Vec<u8> {
        let n = if self.chance(past_percent) {
            IPV6_MAX_EXT + 1
        } else {
            1 + self.below(IPV6_MAX_EXT)
        };
        let chain = self.ext_chain(n);
        self.with_ext += 1;
        with_ext(f, &chain)
    }

    /// Maybe a VLAN tag, maybe Ethernet padding / trailing bytes.
    fn l2_dressing(&mut self, mut f: Vec<u8>) -> Vec<u8> {
        if self.chance(15) {
            let tpid = if self.chance(70) {
                ETH_P_8021Q
            } else {
                ETH_P_8021AD
            };
            let vid = 1 + self.below(4094) as u16;
            f = tag(f, tpid, vid);
            self.tagged += 1;
        }
        if self.chance(10) {
            if f.len() < 60 {
                f.resize(60, 0);
            } else {
                let n = self.below(16);
                let t = self.bytes(n);
                f.extend_from_slice(&t);
            }
        }
        f
    }

    fn frame(&mut self) -> (&'static str, Vec<u8>) {
        match self.below(1000) {
            0..300 => ("tcp-syn", self.vip_flow(L4::TcpSyn)),
            300..530 => ("tcp-ack", self.vip_flow(L4::TcpAck)),
            530..650 => ("udp", self.vip_flow(L4::Udp)),
            650..700 => ("non-vip", self.non_vip()),
            700..760 => ("fragment", self.fragment()),
            760..830 => ("icmp-error", self.icmp_error()),
            830..850 => ("non-ip", self.non_ip()),
            _ => self.damaged(),
        }
    }

    /// TCP SYN/ACK or UDP from the client pool to a VIP of that protocol.
    fn vip_flow(&mut self, l4: L4) -> Vec<u8> {
        let proto = if l4 == L4::Udp {
            IPPROTO_UDP
        } else {
            IPPROTO_TCP
        };
        let cands: Vec<Vip> = self
            .vips
            .iter()
            .filter(|v| v.proto == proto)
            .copied()
            .collect();
        let v = self.pick(&cands);
        let client = self.client(v.family);
        let sport = self.port();
        let payload = self.payload();
        let mut f = build(
            Frame::new(l4).ports(sport, v.port).payload(&payload),
            v.family,
            client,
            v.addr,
        );
        if v.family == FAMILY_V6 && self.chance(20) {
            // 1 to 4 headers are walked; 5 is past IPV6_MAX_EXT (no flow).
            f = self.ext_headers(f, 5);
        }
        self.l2_dressing(f)
    }

    /// TCP/UDP that is not for any VIP: other address, other port, the
    /// other protocol on a VIP's port.
    fn non_vip(&mut self) -> Vec<u8> {
        let v = self.vip();
        let client = self.client(v.family);
        let sport = self.port();
        let l4 = self.pick(&[L4::TcpSyn, L4::TcpAck, L4::Udp]);
        let (dst, dport) = match self.below(3) {
            0 => {
                let other = if v.family == FAMILY_V4 {
                    v4(NON_VIP_V4)
                } else {
                    non_vip_v6()
                };
                (other, v.port)
            }
            1 => (v.addr, 8080),
            // The VIP's port with the other protocol (none of the VIPs
            // shares a port across protocols on one address).
            _ => (v.addr, v.port),
        };
        let l4 = if dst == v.addr && dport == v.port {
            if v.proto == IPPROTO_TCP {
                L4::Udp
            } else {
                self.pick(&[L4::TcpSyn, L4::TcpAck])
            }
        } else {
            l4
        };
        let payload = self.payload();
        let f = build(
            Frame::new(l4).ports(sport, dport).payload(&payload),
            v.family,
            client,
            dst,
        );
        self.l2_dressing(f)
    }

    /// Non-first IPv4/IPv6 fragments (and a few first ones), mostly to
    /// VIP addresses with or without a port-0 entry for that protocol.
    fn fragment(&mut self) -> Vec<u8> {
        let v = self.vip();
        let client = self.client(v.family);
        let dst = if self.chance(80) {
            v.addr
        } else if v.family == FAMILY_V4 {
            v4(NON_VIP_V4)
        } else {
            non_vip_v6()
        };
        let l4 = if v.proto == IPPROTO_TCP && self.chance(85) {
            L4::TcpAck
        } else {
            L4::Udp
        };
        let n = 8 + self.below(200);
        let payload = self.bytes(n);
        let sport = self.port();
        let f = build(
            Frame::new(l4).ports(sport, v.port).payload(&payload),
            v.family,
            client,
            dst,
        );
        let first = self.chance(10);
        let more = if self.chance(50) { 1u16 } else { 0 };
        let offset = if first {
            0
        } else {
            1 + self.below(0x1fff) as u16
        };
        let f = if v.family == FAMILY_V4 {
            let mut f = f;
            put16(&mut f, ETH_HLEN + 6, (more << 13) | offset);
            fix_ipv4_checksum(&mut f, ETH_HLEN);
            f
        } else {
            let mut chain = if self.chance(25) {
                vec![(IPPROTO_HOPOPTS, 0)]
            } else {
                Vec::new()
            };
            chain.push((IPPROTO_FRAGMENT, (offset << 3) | more));
            with_ext(f, &chain)
        };
        self.l2_dressing(f)
    }

    /// An address of `family` that is sometimes another VIP's, sometimes
    /// no VIP's, for ICMP errors whose addresses do not match.
    fn elsewhere(&mut self, v: &Vip) -> [u8; 16] {
        let others: Vec<[u8; 16]> = self
            .vips
            .iter()
            .filter(|o| o.family == v.family && o.addr != v.addr)
            .map(|o| o.addr)
            .collect();
        if !others.is_empty() && self.chance(50) {
            self.pick(&others)
        } else if v.family == FAMILY_V4 {
            v4(NON_VIP_V4)
        } else {
            non_vip_v6()
        }
    }

    /// ICMP/ICMPv6 errors quoting a packet from a VIP to a client (one the
    /// VIP knows or not); some quote another protocol, another family, or
    /// too few bytes, some quote another source than the VIP or are sent
    /// to another address; some are not errors at all.
    fn icmp_error(&mut self) -> Vec<u8> {
        let v = self.vip();
        let quoted_src = if self.chance(8) {
            self.elsewhere(&v)
        } else {
            v.addr
        };
        let outer_dst = if self.chance(8) {
            self.elsewhere(&v)
        } else {
            v.addr
        };
        let client = if self.chance(90) {
            self.client(v.family)
        } else {
            // Someone outside the client pool (still a lab address).
            let mut a = self.client(v.family);
            let last = if v.family == FAMILY_V4 { 3 } else { 15 };
            a[last] = self.byte();
            a
        };
        let sport = if self.chance(85) { v.port } else { self.port() };
        let cport = self.port();
        let proto = match self.below(20) {
            0 => {
                if v.family == FAMILY_V4 {
                    IPPROTO_ICMP
                } else {
                    IPPROTO_ICMPV6
                }
            }
            // GRE; for IPv6, a hop-by-hop header the quote walk ignores.
            1 => {
                if v.family == FAMILY_V4 {
                    47
                } else {
                    IPPROTO_HOPOPTS
                }
            }
            _ => v.proto,
        };
        // The quoted transport header: TCP (20) or UDP (8 + payload).
        let mut l4 = vec![0u8; if proto == IPPROTO_TCP { 20 } else { 8 }];
        put16(&mut l4, 0, sport);
        put16(&mut l4, 2, cport);
        if proto == IPPROTO_TCP {
            l4[12] = 0x50;
            l4[13] = 0x18;
        } else {
            put16(&mut l4, 4, 8 + 16);
            l4.extend_from_slice(&[0xab; 16]);
        }
        // How much of it is quoted: 8 bytes (RFC 792), all, or cut short.
        let q = match self.below(10) {
            0..=5 => 8,
            6..=7 => l4.len(),
            _ => self.below(8),
        };
        l4.truncate(q);
        // A wrong-family quote now and then (version mismatch: no flow).
        let quoted_family = if self.chance(3) {
            if v.family == FAMILY_V4 {
                FAMILY_V6
            } else {
                FAMILY_V4
            }
        } else {
            v.family
        };
        let mut quoted = Vec::new();
        if quoted_family == FAMILY_V4 {
            let opts = self.chance(10);
            let ihl = if opts { 24 } else { 20 };
            let total = (ihl + 40) as u16;
            quoted.extend_from_slice(&[if opts { 0x46 } else { 0x45 }, 0]);
            quoted.extend_from_slice(&total.to_be_bytes());
            quoted.extend_from_slice(&[0, 0, 0x40, 0, 63, proto, 0, 0]);
            quoted.extend_from_slice(&quoted_src[..4]);
            quoted.extend_from_slice(&client[..4]);
            if opts {
                quoted.extend_from_slice(&[1, 1, 1, 0]);
            }
            fix_ipv4_checksum(&mut quoted, 0);
        } else {
            let (src, dst) = if v.family == FAMILY_V6 {
                (quoted_src, client)
            } else {
                (v6("2001:db8::100".parse().unwrap()), non_vip_v6())
            };
            quoted.extend_from_slice(&[0x60, 0, 0, 0, 0, 40, proto, 63]);
            quoted.extend_from_slice(&src);
            quoted.extend_from_slice(&dst);
        }
        quoted.extend_from_slice(&l4);
        let eth = etherparse::PacketBuilder::ethernet2(ROUTER_MAC, BALANCER_MAC);
        let mut out = Vec::new();
        if v.family == FAMILY_V4 {
            let (ty, code, rest) = match self.below(10) {
                0..=4 => (ICMP_DEST_UNREACH, 4, [0, 0, 0x05, 0x78]),
                5..=6 => (ICMP_DEST_UNREACH, self.below(4) as u8, [0; 4]),
                7..=8 => (ICMP_TIME_EXCEEDED, 0, [0; 4]),
                // Redirect also quotes a packet but is not an error we use.
                _ => (self.pick(&[0u8, 5, 8, 12]), 0, [0; 4]),
            };
            eth.ipv4(ROUTER_V4, ip4(outer_dst).octets(), 64)
                .icmpv4_raw(ty, code, rest)
                .write(&mut out, &quoted)
                .expect("ICMP frame");
        } else {
            let (ty, code, rest) = match self.below(10) {
                0..=4 => (ICMPV6_PKT_TOOBIG, 0, [0, 0, 0x05, 0x00]),
                5..=6 => (ICMPV6_DEST_UNREACH, self.below(5) as u8, [0; 4]),
                7..=8 => (ICMPV6_TIME_EXCEED, 0, [0; 4]),
                // Parameter problem, echo request/reply: no flow.
                _ => (self.pick(&[4u8, 128, 129]), 0, [0; 4]),
            };
            eth.ipv6(router_v6(), outer_dst, 64)
                .icmpv6_raw(ty, code, rest)
                .write(&mut out, &quoted)
                .expect("ICMPv6 frame");
            if self.chance(10) {
                // Extension headers before the ICMPv6 header are walked.
                let n = 1 + self.below(2);
                let chain = self.ext_chain(n);
                out = with_ext(out, &chain);
                self.with_ext += 1;
            }
        }
        self.l2_dressing(out)
    }

    /// ARP, LLDP, 802.3 length frames, QinQ, a VLAN-tagged ARP.
    fn non_ip(&mut self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&ROUTER_MAC);
        match self.below(5) {
            0 | 1 => {
                f.extend_from_slice(&0x0806u16.to_be_bytes());
                f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
                f.extend_from_slice(&ROUTER_MAC);
                f.extend_from_slice(&ROUTER_V4);
                f.extend_from_slice(&[0; 6]);
                f.extend_from_slice(&[198, 18, 0, 100]);
                if self.chance(50) {
                    f.resize(60, 0);
                }
                if self.chance(30) {
                    f = tag(f, ETH_P_8021Q, 7);
                }
            }
            2 => {
                f.extend_from_slice(&0x88ccu16.to_be_bytes());
                let n = 20 + self.below(40);
                let b = self.bytes(n);
                f.extend_from_slice(&b);
            }
            3 => {
                // 802.3 length field + LLC.
                let n = 3 + self.below(40);
                f.extend_from_slice(&(n as u16).to_be_bytes());
                f.extend_from_slice(&[0x42, 0x42, 0x03]);
                let b = self.bytes(n - 3);
                f.extend_from_slice(&b);
            }
            _ => {
                // QinQ around a SYN to a VIP: not parsed past the tags.
                let inner = self.vip_flow(L4::TcpSyn);
                let inner = if be16(&inner, 12) == ETH_P_8021Q || be16(&inner, 12) == ETH_P_8021AD {
                    inner
                } else {
                    tag(inner, ETH_P_8021Q, 10)
                };
                return tag(inner, ETH_P_8021AD, 20);
            }
        }
        f
    }

    /// A frame from the other generators with random bytes changed (mostly
    /// in the first 80), cut short, or with a length field that lies.
    fn damaged(&mut self) -> (&'static str, Vec<u8>) {
        let mut f = match self.below(10) {
            0..=5 => {
                let l4 = self.pick(&[L4::TcpSyn, L4::TcpAck, L4::Udp]);
                self.vip_flow(l4)
            }
            6 => self.fragment(),
            7..=8 => self.icmp_error(),
            _ => self.non_vip(),
        };
        let kind = match self.below(10) {
            0..=4 => {
                let n = 1 + self.below(4);
                for _ in 0..n {
                    let pos = if self.chance(85) {
                        self.below(f.len().min(80))
                    } else {
                        self.below(f.len())
                    };
                    f[pos] = if self.chance(50) {
                        self.byte()
                    } else {
                        f[pos] ^ (1 << self.below(8))
                    };
                }
                "damaged-bytes"
            }
            5..=6 => {
                let len = ETH_HLEN + self.below(f.len() - ETH_HLEN);
                f.truncate(len);
                "damaged-cut"
            }
            _ => {
                self.lie(&mut f);
                "damaged-length"
            }
        };
        if self.chance(15) && f.len() > ETH_HLEN {
            let len = ETH_HLEN + self.below(f.len() - ETH_HLEN);
            f.truncate(len);
        }
        (kind, f)
    }

    /// Make one length field of a valid frame lie: IPv4 total length or
    /// IHL, IPv6 payload length or an extension header's length, TCP data
    /// offset.
    fn lie(&mut self, f: &mut [u8]) {
        let l2 = parse(f).l2_len;
        if f.len() < l2 + IPV4_MIN_HLEN {
            return;
        }
        let small = |g: &mut Gen, v: u16| -> u16 {
            let d = 1 + g.below(40) as u16;
            if g.chance(50) {
                v.wrapping_add(d)
            } else {
                v.wrapping_sub(d)
            }
        };
        match be16(f, l2 - 2) {
            ETH_P_IPV4 => {
                let ihl = usize::from(f[l2] & 0x0f) * 4;
                match self.below(4) {
                    0 => put16(f, l2 + 2, self.rng.next_u64() as u16),
                    1 => {
                        let t = small(self, be16(f, l2 + 2));
                        put16(f, l2 + 2, t);
                    }
                    2 => f[l2] = 0x40 | self.below(16) as u8,
                    _ => {
                        if f[l2 + 9] == IPPROTO_TCP && f.len() >= l2 + ihl + 20 {
                            f[l2 + ihl + 12] = (self.below(16) as u8) << 4;
                        } else {
                            f[l2] = 0x40 | self.below(16) as u8;
                        }
                    }
                }
            }
            ETH_P_IPV6 if f.len() >= l2 + IPV6_HLEN => {
                let next = f[l2 + 6];
                match self.below(4) {
                    0 => put16(f, l2 + 4, self.rng.next_u64() as u16),
                    1 => {
                        let t = small(self, be16(f, l2 + 4));
                        put16(f, l2 + 4, t);
                    }
                    2 if matches!(next, IPPROTO_HOPOPTS | IPPROTO_DSTOPTS | IPPROTO_ROUTING)
                        && f.len() > l2 + IPV6_HLEN + 1 =>
                    {
                        f[l2 + IPV6_HLEN + 1] = self.byte();
                    }
                    _ => {
                        if next == IPPROTO_TCP && f.len() >= l2 + IPV6_HLEN + 20 {
                            f[l2 + IPV6_HLEN + 12] = (self.below(16) as u8) << 4;
                        } else {
                            let t = small(self, be16(f, l2 + 4));
                            put16(f, l2 + 4, t);
                        }
                    }
                }
            }
            _ => {
                let pos = self.below(f.len().min(80));
                f[pos] ^= 0xff;
            }
        }
    }

    /// Every `EPOCH` frames: one backend changes state. Up backends go to
    /// drain, down or maintenance; others come back up or move between
    /// those; never more than three out of the eight are not up.
    fn change_backends(&mut self, p: &mut Pair) -> String {
        let state = |p: &Pair, id: u32| p.model.backends[&id].state;
        let not_up: Vec<u32> = (0..8).filter(|&id| state(p, id) != STATE_UP).collect();
        let id = if not_up.len() >= 3 {
            self.pick(&not_up)
        } else {
            self.below(8) as u32
        };
        let old = state(p, id);
        let new = if old == STATE_UP {
            self.pick(&[STATE_DRAIN, STATE_DOWN, STATE_MAINT])
        } else if not_up.len() >= 3 || self.chance(60) {
            STATE_UP
        } else {
            let others: Vec<u8> = [STATE_DRAIN, STATE_DOWN, STATE_MAINT]
                .into_iter()
                .filter(|&s| s != old)
                .collect();
            self.pick(&others)
        };
        p.set_state(id, new);
        format!("backend {id}: {} -> {}", state_name(old), state_name(new))
    }

    /// Overwrite one client's stick entry, pointing it at a backend that
    /// exercises a path: down/maintenance (redispatch), an empty slot
    /// (redispatch), the other family on an IPIP VIP or `UNREGISTERED`
    /// (`forward_failed`), an old timestamp on an expiring VIP (`expired`),
    /// or a pool member (hit, possibly on a draining backend).
    fn poke(&mut self, p: &mut Pair, uptime_ns: u64) -> &'static str {
        let v = self.vip();
        let client = self.client(v.family);
        let key = StickKey {
            vip_id: v.id,
            addr: client,
        };
        let now = monotonic_ns();
        let state = |id: u32| p.model.backends.get(&id).map_or(STATE_EMPTY, |b| b.state);
        let down: Vec<u32> = (0..8)
            .filter(|&id| matches!(state(id), STATE_DOWN | STATE_MAINT))
            .collect();
        // An empty pool: an entry left from when it had servers.
        let member = if v.pool.is_empty() {
            self.below(8) as u32
        } else {
            self.pick(v.pool)
        };
        let empty = self.pick(&EMPTY_SLOTS);
        let unregistered = self.chance(30);
        let cross = if v.family == FAMILY_V4 {
            4 + self.below(4) as u32
        } else {
            self.below(4) as u32
        };
        let down_pick = if down.is_empty() {
            None
        } else {
            Some(self.pick(&down))
        };
        let (what, backend, last_seen_ns) = match (self.below(10), down_pick) {
            (0..=3, Some(d)) => ("down", d, now),
            (4..=5, _) => ("empty", empty, now),
            (6..=7, _) if v.mode == MODE_IPIP => ("cross-family", cross, now),
            (6..=7, _) if unregistered => ("unregistered-egress", UNREGISTERED, now),
            (8, _) if v.expire_ns != 0 && uptime_ns > v.expire_ns + 2 * STALE_MARGIN_NS => {
                ("stale", member, now - v.expire_ns - STALE_MARGIN_NS)
            }
            _ => ("member", member, now),
        };
        p.set_stick(
            key,
            StickValue {
                backend,
                _pad: 0,
                last_seen_ns,
            },
        );
        what
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let s = std::env::var(name).ok()?;
    let s = s.trim();
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16),
        None => s.replace('_', "").parse(),
    };
    Some(r.unwrap_or_else(|e| panic!("{name}={s}: {e}")))
}

fn hex(f: &[u8]) -> String {
    f.iter().map(|b| format!("{b:02x}")).collect()
}

/// `Pair::run`, plus a reproduction line (seed, index, the input frame in
/// hex) if the two sides disagree.
fn run_one(p: &mut Pair, seed: u64, i: usize, kind: &str, f: &[u8]) -> Verdict {
    let what = format!("frame #{i} ({kind}, seed {seed:#x})");
    match catch_unwind(AssertUnwindSafe(|| p.run(&what, f))) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "xdp_differential: program and model disagree on frame #{i} ({kind}); \
                 reproduce with BALANCER_DIFF_SEED={seed:#x}; input frame ({} bytes): {}",
                f.len(),
                hex(f)
            );
            resume_unwind(e)
        }
    }
}

fn sum_vip_stats(a: &mut VipStats, b: &VipStats) {
    a.packets += b.packets;
    a.bytes += b.bytes;
    a.stick_hits += b.stick_hits;
    a.new_sticks += b.new_sticks;
    a.redispatches += b.redispatches;
    a.expired += b.expired;
    a.non_syn_misses += b.non_syn_misses;
    a.insert_capped += b.insert_capped;
    a.no_backend += b.no_backend;
    a.too_big += b.too_big;
    a.forward_failed += b.forward_failed;
    a.icmp_errors += b.icmp_errors;
    a.fragments += b.fragments;
    a.icmp_mismatched += b.icmp_mismatched;
    a.icmp_no_flow += b.icmp_no_flow;
}

#[test]
fn program_and_model_agree_on_random_traffic() {
    let seed = env_u64("BALANCER_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let frames = env_u64("BALANCER_DIFF_FRAMES").map_or(DEFAULT_FRAMES, |n| n as usize);
    println!(
        "xdp_differential: seed {seed:#x}, {frames} frames \
         (BALANCER_DIFF_SEED / BALANCER_DIFF_FRAMES to change)"
    );
    let started = Instant::now();
    let vips = vips();
    let mut p = setup(&vips);
    let setup_time = started.elapsed();
    let uptime = monotonic_ns();
    let mut g = Gen::new(seed, vips.clone());
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut pokes: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut actions: BTreeMap<u32, u64> = BTreeMap::new();
    let mut state_time = Duration::ZERO;
    let mut check_time = Duration::ZERO;
    let mut changes = 0;
    for i in 0..frames {
        if i > 0 && i % EPOCH == 0 {
            let t = Instant::now();
            let change = g.change_backends(&mut p);
            state_time += t.elapsed();
            changes += 1;
            if std::env::var_os("BALANCER_DIFF_VERBOSE").is_some() {
                println!("frame #{i}: {change}");
            }
        }
        if i % POKE_EVERY == POKE_EVERY / 2 {
            *pokes.entry(g.poke(&mut p, uptime)).or_default() += 1;
        }
        let (kind, f) = g.frame();
        *kinds.entry(kind).or_default() += 1;
        let v = run_one(&mut p, seed, i, kind, &f);
        *actions.entry(v.action).or_default() += 1;
        if (i + 1) % CHECK_EVERY == 0 {
            let t = Instant::now();
            p.assert_state_matches(&format!("after frame #{i} (seed {seed:#x})"));
            check_time += t.elapsed();
        }
    }
    p.assert_state_matches(&format!("end (seed {seed:#x})"));

    let mut s = VipStats::default();
    for v in &vips {
        sum_vip_stats(&mut s, &p.vip_stats(v.id));
    }
    let classes = p.dp.stats().unwrap();
    let malformed: Counter = classes.get(Class::Malformed);
    let entries = p.dp.stick_count(None).unwrap();
    let elapsed = started.elapsed();
    let action_name = |a: u32| match a {
        XDP_ABORTED => "aborted",
        XDP_DROP => "drop",
        XDP_PASS => "pass",
        XDP_TX => "tx",
        XDP_REDIRECT => "redirect",
        _ => "?",
    };
    let join = |m: &BTreeMap<&'static str, u64>| {
        m.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "xdp_differential: {frames} frames in {:.1?} (setup {:.1?}, {changes} state changes {:.1?}, \
         state checks {:.1?}); mix: {}, vlan-tagged {}, ipv6 ext headers {}; pokes: {}; \
         actions: {}; vip: packets {} stick_hits {} new_sticks {} redispatches {} expired {} \
         non_syn_misses {} no_backend {} too_big {} forward_failed {} fragments {} icmp_errors {} \
         icmp_mismatched {} icmp_no_flow {}; malformed {}; stick entries {entries}",
        elapsed,
        setup_time,
        state_time,
        check_time,
        join(&kinds),
        g.tagged,
        g.with_ext,
        join(&pokes),
        actions
            .iter()
            .map(|(a, n)| format!("{} {n}", action_name(*a)))
            .collect::<Vec<_>>()
            .join(", "),
        s.packets,
        s.stick_hits,
        s.new_sticks,
        s.redispatches,
        s.expired,
        s.non_syn_misses,
        s.no_backend,
        s.too_big,
        s.forward_failed,
        s.fragments,
        s.icmp_errors,
        s.icmp_mismatched,
        s.icmp_no_flow,
        malformed.packets,
    );

    // The stick table never came near its capacity: no LRU eviction, which
    // the model does not simulate.
    let cap = p.dp.options().stick_size as usize;
    assert!(
        entries < cap / 4,
        "{entries} stick entries: too close to the table size {cap}"
    );
    if frames >= DEFAULT_FRAMES {
        for (name, n) in [
            ("stick_hits", s.stick_hits),
            ("new_sticks", s.new_sticks),
            ("redispatches", s.redispatches),
            ("non_syn_misses", s.non_syn_misses),
            ("no_backend", s.no_backend),
            ("too_big", s.too_big),
            ("forward_failed", s.forward_failed),
            ("fragments", s.fragments),
            ("icmp_errors", s.icmp_errors),
            ("icmp_mismatched", s.icmp_mismatched),
            ("icmp_no_flow", s.icmp_no_flow),
            ("malformed frames", malformed.packets),
        ] {
            assert!(n > 0, "the mix never exercised {name}");
        }
        // Stale entries need CLOCK_MONOTONIC past the expiry plus margins.
        if uptime > EXPIRE_NS + 2 * STALE_MARGIN_NS {
            assert!(s.expired > 0, "the mix never exercised expired");
        }
    }
}

// ---- the backends' decap program -----------------------------------------

const DECAP_LISTED: [&str; 4] = [
    "198.18.1.1",
    "198.18.1.2",
    "2001:db8:0:1::1",
    "2001:db8:0:1::2",
];
/// Outer sources that are not listed, one next to a listed one.
const DECAP_STRANGERS: [&str; 4] = [
    "198.18.1.3",
    "198.18.9.9",
    "2001:db8:0:1::3",
    "2001:db8:9::9",
];

impl Gen {
    /// An outer source of `family`: listed (60%) or not.
    fn outer_source(&mut self, family: u8) -> IpAddr {
        let list = if self.chance(60) {
            DECAP_LISTED
        } else {
            DECAP_STRANGERS
        };
        let i = 2 * fam(family) + self.below(2);
        list[i].parse().unwrap()
    }

    /// A frame for the decap program: mostly IP-in-IP (same or other family
    /// inside, outer options, outer fragments, extension headers before the
    /// inner packet, VLAN tags), some plain traffic and non-IP frames.
    fn tunnel_frame(&mut self) -> (&'static str, Vec<u8>) {
        let v = self.vip();
        let inner_family = v.family;
        let outer_family = if self.chance(80) {
            inner_family
        } else if inner_family == FAMILY_V4 {
            FAMILY_V6
        } else {
            FAMILY_V4
        };
        let l4 = self.pick(&[L4::TcpSyn, L4::TcpAck, L4::Udp]);
        let client = self.client(inner_family);
        let sport = self.port();
        let payload = self.payload();
        let inner = build(
            Frame::new(l4).ports(sport, v.port).payload(&payload),
            inner_family,
            client,
            v.addr,
        );
        let (kind, mut f) = match self.below(100) {
            0..10 => return ("plain", self.l2_dressing(inner)),
            10..14 => return ("non-ip", self.non_ip()),
            _ => {
                let dst: IpAddr = if outer_family == FAMILY_V4 {
                    "198.18.1.10".parse().unwrap()
                } else {
                    "2001:db8:0:1::10".parse().unwrap()
                };
                (
                    "tunnel",
                    encapsulate(self.outer_source(outer_family), dst, &inner),
                )
            }
        };
        let l3 = ETH_HLEN;
        if outer_family == FAMILY_V4 {
            match self.below(10) {
                // Options: IHL 6.
                0 => {
                    f.splice(l3 + 20..l3 + 20, [1, 1, 1, 0]);
                    f[l3] = 0x46;
                    let total = be16(&f, l3 + 2) + 4;
                    put16(&mut f, l3 + 2, total);
                    fix_ipv4_checksum(&mut f, l3);
                }
                // A fragment: more fragments, or a later offset.
                1 => {
                    let fo = if self.chance(50) {
                        0x2000
                    } else {
                        1 + self.below(0x1fff) as u16
                    };
                    put16(&mut f, l3 + 6, fo);
                    fix_ipv4_checksum(&mut f, l3);
                }
                // Another protocol (GRE, UDP).
                2 => {
                    f[l3 + 9] = self.pick(&[47u8, IPPROTO_UDP]);
                    fix_ipv4_checksum(&mut f, l3);
                }
                _ => {}
            }
        } else if self.chance(20) {
            // 1 to 4 are walked; 5 cannot be told from a tunnel.
            f = self.ext_headers(f, 10);
        }
        f = self.l2_dressing(f);
        if self.chance(15) {
            let n = 1 + self.below(3);
            for _ in 0..n {
                let pos = self.below(f.len().min(80));
                f[pos] ^= 1 << self.below(8);
            }
            return ("tunnel-damaged", f);
        }
        if self.chance(5) && f.len() > ETH_HLEN {
            let len = ETH_HLEN + self.below(f.len() - ETH_HLEN);
            f.truncate(len);
            return ("tunnel-cut", f);
        }
        (kind, f)
    }
}

#[test]
fn decap_program_and_model_agree_on_random_traffic() {
    require_root();
    let seed = env_u64("BALANCER_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let frames = env_u64("BALANCER_DIFF_FRAMES").map_or(DEFAULT_FRAMES, |n| n as usize) / 5;
    let mut prog = AuxProgram::load(DECAP_PROGRAM).expect("loading decap");
    let listed: Vec<IpAddr> = DECAP_LISTED.iter().map(|a| a.parse().unwrap()).collect();
    prog.set_decap_sources(&listed).expect("decap sources");
    let sources: BTreeSet<TunnelSource> = listed.into_iter().map(TunnelSource::new).collect();
    let fd = prog.program_fd().unwrap();
    let mut g = Gen::new(seed, vips());
    let mut counted = [0u64; DECAP_COUNTERS as usize];
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<&'static str, u64> = BTreeMap::new();
    for i in 0..frames {
        let (kind, f) = g.tunnel_frame();
        *kinds.entry(kind).or_default() += 1;
        let r = test_run(fd, &f, 1).unwrap_or_else(|e| panic!("decap frame #{i}: {e}"));
        let want = decap(&f, &sources);
        let same = r.action == want.action && (r.action == XDP_DROP || r.data == want.data);
        assert!(
            same,
            "decap frame #{i} ({kind}, seed {seed:#x}): program {} vs model {}; \
             reproduce with BALANCER_DIFF_SEED={seed:#x}; input frame ({} bytes): {}",
            r.action,
            want.action,
            f.len(),
            hex(&f)
        );
        let outcome = match (r.action, r.data.len() < f.len()) {
            (XDP_DROP, _) => "dropped",
            (_, true) => "decapsulated",
            _ => "passed",
        };
        *outcomes.entry(outcome).or_default() += 1;
        if let Some(slot) = want.counted {
            counted[slot as usize] += 1;
        }
    }
    let got = prog.counts().unwrap();
    println!(
        "decap differential: {frames} frames; {kinds:?}; {outcomes:?}; counters {:?}",
        DECAP_COUNTER_NAMES.iter().zip(got).collect::<Vec<_>>()
    );
    assert_eq!(got, counted, "counters (program vs model)");
    if frames >= DEFAULT_FRAMES / 5 {
        for (slot, n) in DECAP_COUNTER_NAMES.iter().zip(got) {
            assert!(n > 0, "the mix never exercised {slot}");
        }
        assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    }
}
