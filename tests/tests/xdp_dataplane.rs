//! The data plane through BPF_PROG_TEST_RUN: the real object and the
//! reference model (balancer_common::model) on the same frames and maps.
//! Every run asserts the program and the model agree on the verdict and the
//! output bytes; each fixture then asserts the documented outcome.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use balancer_common::{layout::*, maps::*, packet::parse, stats::Class};
use balancer_tests::packets::{Frame, L4};
use common::*;

const VIP4: [u8; 4] = [198, 18, 0, 100];
const VIP6: &str = "2001:db8::100";
const V4_TCP: u32 = 0;
const V4_UDP: u32 = 1;
const V6_TCP: u32 = 2;

fn vip6() -> Ipv6Addr {
    VIP6.parse().unwrap()
}

fn client4(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10 + n)
}

fn client6(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10 + n)
}

/// Three VIPs (IPv4 TCP :80 with its fragment entry, IPv4 UDP :53, IPv6
/// TCP :80), three IPv4 and three IPv6 backends, all up, in `mode`.
fn setup(mode: u8, expire_ns: u64) -> Pair {
    let mut p = Pair::new();
    p.add_vip(
        vip_key(FAMILY_V4, v4(VIP4), 80, IPPROTO_TCP),
        vip_info(V4_TCP, mode, expire_ns),
    );
    // Non-first fragments carry no port: the address-wide entry sends
    // them through the same VIP id, so they follow the client's entry.
    p.add_vip(
        vip_key(FAMILY_V4, v4(VIP4), 0, IPPROTO_TCP),
        vip_info(V4_TCP, mode, expire_ns),
    );
    p.add_vip(
        vip_key(FAMILY_V4, v4(VIP4), 53, IPPROTO_UDP),
        vip_info(V4_UDP, mode, expire_ns),
    );
    p.add_vip(
        vip_key(FAMILY_V6, v6(vip6()), 80, IPPROTO_TCP),
        vip_info(V6_TCP, mode, expire_ns),
    );
    for i in 0..3u8 {
        p.set_backend(
            u32::from(i),
            backend(FAMILY_V4, v4([198, 18, 1, 10 + i]), 10 + i, STATE_UP),
        );
        let a = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x10 + u16::from(i));
        p.set_backend(
            4 + u32::from(i),
            backend(FAMILY_V6, v6(a), 20 + i, STATE_UP),
        );
    }
    p.set_pool(V4_TCP, &[(0, "s0"), (1, "s1"), (2, "s2")]);
    p.set_pool(V4_UDP, &[(0, "s0"), (1, "s1"), (2, "s2")]);
    p.set_pool(V6_TCP, &[(4, "s4"), (5, "s5"), (6, "s6")]);
    p
}

fn syn4(n: u8) -> Vec<u8> {
    Frame::new(L4::TcpSyn)
        .ports(40000 + u16::from(n), 80)
        .ipv4(client4(n), VIP4.into())
}

fn ack4(n: u8) -> Vec<u8> {
    Frame::new(L4::TcpAck)
        .ports(40000 + u16::from(n), 80)
        .payload(b"GET /")
        .ipv4(client4(n), VIP4.into())
}

fn to(p: &Pair, v: &balancer_common::model::Verdict, mode: u8, frame: &[u8]) -> u32 {
    destination(v, &p.model.backends, mode, parse(frame).l2_len)
}

#[test]
fn miss_inserts_then_hits_then_stays() {
    for mode in [MODE_DSR_L2, MODE_IPIP] {
        let mut p = setup(mode, 0);
        let v = p.run("SYN, new client", &syn4(1));
        let first = to(&p, &v, mode, &syn4(1));
        assert_eq!(
            p.stick(V4_TCP, v4(client4(1).octets())).map(|e| e.backend),
            Some(first)
        );
        for i in 0..5 {
            let v = p.run(&format!("ACK {i}"), &ack4(1));
            assert_eq!(
                to(&p, &v, mode, &ack4(1)),
                first,
                "hit must go to the stored backend"
            );
        }
        let s = p.vip_stats(V4_TCP);
        assert_eq!((s.new_sticks, s.stick_hits, s.packets), (1, 5, 6), "{s:?}");
        p.assert_state_matches("after hits");
    }
}

#[test]
fn non_vip_traffic_is_passed_byte_for_byte() {
    let mut p = setup(MODE_DSR_L2, 0);
    let frames = [
        (
            "other address",
            Frame::new(L4::TcpSyn).ipv4(client4(1), Ipv4Addr::new(198, 18, 0, 200)),
        ),
        (
            "VIP address, other port",
            Frame::new(L4::TcpSyn)
                .ports(1, 443)
                .ipv4(client4(1), VIP4.into()),
        ),
        (
            "VIP address, UDP on the TCP port",
            Frame::new(L4::Udp)
                .ports(1, 80)
                .ipv4(client4(1), VIP4.into()),
        ),
        (
            "IPv6 other address",
            Frame::new(L4::Udp).ipv6(client6(1), "2001:db8::200".parse().unwrap()),
        ),
    ];
    for (what, f) in &frames {
        let v = p.run(what, f);
        assert_eq!(v.action, XDP_PASS, "{what}");
        assert_eq!(&v.data, f, "{what}: bytes must be identical");
    }
    assert_eq!(p.dp.stick_count(None).unwrap(), 0);
    p.assert_state_matches("non-VIP");
}

#[test]
fn expired_entry_counts_as_a_miss() {
    let expire = 5_000_000_000;
    let mut p = setup(MODE_DSR_L2, expire);
    // Find the backend Maglev gives client 2, then store a stale entry
    // pointing elsewhere.
    let v = p.run("probe", &syn4(2));
    let pick = to(&p, &v, MODE_DSR_L2, &syn4(2));
    let other = (pick + 1) % 3;
    let key = StickKey {
        vip_id: V4_TCP,
        addr: v4(client4(2).octets()),
    };
    let old = monotonic_ns() - 2 * expire;
    p.set_stick(
        key,
        StickValue {
            backend: other,
            _pad: 0,
            last_seen_ns: old,
        },
    );
    let v = p.run("ACK after expiry", &ack4(2));
    assert_eq!(
        to(&p, &v, MODE_DSR_L2, &ack4(2)),
        pick,
        "expired entry must not be followed"
    );
    assert_eq!(p.vip_stats(V4_TCP).expired, 1);
    assert_eq!(
        p.vip_stats(V4_TCP).non_syn_misses,
        1,
        "an ACK does not store a new entry"
    );
    let v = p.run("SYN after expiry", &syn4(2));
    assert_eq!(to(&p, &v, MODE_DSR_L2, &syn4(2)), pick);
    assert_eq!(
        p.stick(V4_TCP, key.addr).unwrap().backend,
        pick,
        "the SYN replaced the stale entry"
    );
    // A fresh entry is followed even if Maglev would pick elsewhere.
    p.set_stick(
        key,
        StickValue {
            backend: other,
            _pad: 0,
            last_seen_ns: monotonic_ns(),
        },
    );
    let v = p.run("ACK, fresh entry", &ack4(2));
    assert_eq!(to(&p, &v, MODE_DSR_L2, &ack4(2)), other);
    p.assert_state_matches("expiry");
}

#[test]
fn down_backend_redispatches_only_its_clients_and_drain_keeps_its_own() {
    let mut p = setup(MODE_DSR_L2, 0);
    // 30 clients: record where each landed.
    let mut home = Vec::new();
    for n in 0..30u8 {
        let v = p.run("SYN", &syn4(n));
        home.push(to(&p, &v, MODE_DSR_L2, &syn4(n)));
    }
    assert!(
        (0..3).all(|b| home.contains(&b)),
        "30 clients should reach all 3 backends: {home:?}"
    );
    p.set_state(1, STATE_DOWN);
    for n in 0..30u8 {
        let v = p.run("ACK after s1 down", &ack4(n));
        let now = to(&p, &v, MODE_DSR_L2, &ack4(n));
        if home[n as usize] == 1 {
            assert_ne!(now, 1, "client {n} still sent to the down backend");
        } else {
            assert_eq!(
                now, home[n as usize],
                "client {n} moved although its backend is up"
            );
        }
    }
    let moved = home.iter().filter(|&&b| b == 1).count() as u64;
    assert_eq!(p.vip_stats(V4_TCP).redispatches, moved);
    // Back up: redispatched clients stay where they are now.
    let before: Vec<u32> = (0..30u8)
        .map(|n| p.stick(V4_TCP, v4(client4(n).octets())).unwrap().backend)
        .collect();
    p.set_state(1, STATE_UP);
    for n in 0..30u8 {
        let v = p.run("ACK after s1 back", &ack4(n));
        assert_eq!(
            to(&p, &v, MODE_DSR_L2, &ack4(n)),
            before[n as usize],
            "client {n} moved back"
        );
    }
    // Drain backend 0: its clients stay, new clients avoid it.
    p.set_state(0, STATE_DRAIN);
    for n in 0..30u8 {
        let v = p.run("ACK while s0 drains", &ack4(n));
        assert_eq!(
            to(&p, &v, MODE_DSR_L2, &ack4(n)),
            before[n as usize],
            "draining must keep client {n}"
        );
    }
    for n in 100..140u8 {
        let v = p.run("new client while s0 drains", &syn4(n));
        assert_ne!(
            to(&p, &v, MODE_DSR_L2, &syn4(n)),
            0,
            "new client {n} sent to a draining backend"
        );
    }
    // Maintenance and removal redispatch like down.
    let on2: Vec<u8> = (0..30u8).filter(|&n| before[n as usize] == 2).collect();
    p.set_state(2, STATE_MAINT);
    for &n in &on2 {
        let v = p.run("ACK, s2 in maintenance", &ack4(n));
        assert_ne!(to(&p, &v, MODE_DSR_L2, &ack4(n)), 2);
    }
    p.assert_state_matches("states");
}

#[test]
fn ipv6_and_vlan_tagged_flows() {
    for mode in [MODE_DSR_L2, MODE_IPIP] {
        let mut p = setup(mode, 0);
        let syn6 = Frame::new(L4::TcpSyn)
            .ports(41000, 80)
            .ipv6(client6(1), vip6());
        let v = p.run("IPv6 SYN", &syn6);
        let b = to(&p, &v, mode, &syn6);
        assert!((4..7).contains(&b), "IPv6 VIP must use IPv6 backends: {b}");
        let ack6 = Frame::new(L4::TcpAck)
            .ports(41000, 80)
            .ipv6(client6(1), vip6());
        let v = p.run("IPv6 ACK", &ack6);
        assert_eq!(to(&p, &v, mode, &ack6), b);

        let tagged = Frame::new(L4::TcpSyn)
            .vlan(100)
            .ports(40005, 80)
            .ipv4(client4(5), VIP4.into());
        let v = p.run("VLAN-tagged SYN", &tagged);
        to(&p, &v, mode, &tagged);
        assert_eq!(&v.data[12..16], &tagged[12..16], "the VLAN tag is kept");
        // A tagged and an untagged packet of one client go to one backend.
        let v2 = p.run("untagged ACK of the same client", &ack4(5));
        assert_eq!(to(&p, &v2, mode, &ack4(5)), to(&p, &v, mode, &tagged));
        p.assert_state_matches("ipv6+vlan");
    }
}

/// A non-first IPv4 fragment of `client`'s packet to the VIP.
fn fragment4(client: Ipv4Addr) -> Vec<u8> {
    let mut f = Frame::new(L4::TcpAck)
        .payload(&[7u8; 64])
        .ipv4(client, VIP4.into());
    // Offset 185 (x8 = 1480 bytes): a later fragment; its first bytes are
    // payload, not a TCP header.
    f[ETH_HLEN + 6..ETH_HLEN + 8].copy_from_slice(&185u16.to_be_bytes());
    f
}

/// ICMP "fragmentation needed" from a router about a packet the VIP sent
/// to `client` from port 80.
fn frag_needed(client: Ipv4Addr, client_port: u16) -> Vec<u8> {
    icmp4_about(VIP4, VIP4, client, client_port)
}

/// ICMP "fragmentation needed" from a router to `to`, quoting a TCP packet
/// from `from`:80 to `client`:`client_port`.
fn icmp4_about(to: [u8; 4], from: [u8; 4], client: Ipv4Addr, client_port: u16) -> Vec<u8> {
    let quoted =
        etherparse::PacketBuilder::ipv4(from, client.octets(), 60).tcp(80, client_port, 1, 1000);
    let mut inner = Vec::new();
    quoted.write(&mut inner, &[]).unwrap();
    inner.truncate(IPV4_MIN_HLEN + 8);
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xfe], [2, 0xb1, 0, 1, 0, 0])
        .ipv4([198, 18, 0, 254], to, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ));
    let mut out = Vec::new();
    b.write(&mut out, &inner).unwrap();
    out
}

/// ICMPv6 "packet too big" from a router to `to`, quoting a TCP packet
/// from [`from`]:80 to [`client`]:`client_port`.
fn too_big6(to: Ipv6Addr, from: Ipv6Addr, client: Ipv6Addr, client_port: u16) -> Vec<u8> {
    let quoted = etherparse::PacketBuilder::ipv6(from.octets(), client.octets(), 60).tcp(
        80,
        client_port,
        1,
        1000,
    );
    let mut inner = Vec::new();
    quoted.write(&mut inner, &[]).unwrap();
    let router: Ipv6Addr = "2001:db8::fe".parse().unwrap();
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xfe], [2, 0xb1, 0, 1, 0, 0])
        .ipv6(router.octets(), to.octets(), 64)
        .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 });
    let mut out = Vec::new();
    b.write(&mut out, &inner).unwrap();
    out
}

fn syn6(n: u16) -> Vec<u8> {
    Frame::new(L4::TcpSyn)
        .ports(41000 + n, 80)
        .ipv6(client6(n), vip6())
}

/// Point `client`'s entry on `vip_id` at another backend of its pool
/// (`first..first + 3`) than `home`, so following the entry and following
/// Maglev differ; returns the new home.
fn move_entry(p: &mut Pair, vip_id: u32, client: [u8; 16], home: u32, first: u32) -> u32 {
    let moved = first + (home - first + 1) % 3;
    p.set_stick(
        StickKey {
            vip_id,
            addr: client,
        },
        StickValue {
            backend: moved,
            _pad: 0,
            last_seen_ns: monotonic_ns(),
        },
    );
    moved
}

/// Forwarded frames per backend, for "nothing reached a backend".
fn forwarded(p: &Pair) -> Vec<u64> {
    [0, 1, 2, 4, 5, 6]
        .iter()
        .map(|&id| p.dp.backend_stats(id).unwrap().packets)
        .collect()
}

#[test]
fn spoofed_icmp_errors_about_unknown_clients_are_dropped_and_counted() {
    for mode in [MODE_DSR_L2, MODE_IPIP] {
        let mut p = setup(mode, 0);
        // Nobody the VIPs talk to: Maglev would pick a backend for them,
        // the errors must not reach it.
        let v = p.run(
            "frag needed about an unknown IPv4 client",
            &frag_needed(client4(7), 40007),
        );
        assert_eq!(v.action, XDP_DROP, "IPv4, {mode}");
        let v = p.run(
            "packet too big about an unknown IPv6 client",
            &too_big6(vip6(), vip6(), client6(7), 41007),
        );
        assert_eq!(v.action, XDP_DROP, "IPv6, {mode}");
        let (s4, s6) = (p.vip_stats(V4_TCP), p.vip_stats(V6_TCP));
        assert_eq!(
            (s4.icmp_errors, s4.icmp_no_flow, s4.no_backend),
            (1, 1, 0),
            "{s4:?}"
        );
        assert_eq!((s6.icmp_errors, s6.icmp_no_flow), (1, 1), "{s6:?}");
        assert_eq!(p.dp.stick_count(None).unwrap(), 0, "errors create no entry");
        assert_eq!(forwarded(&p), [0; 6], "an error reached a backend");

        // A client whose server went down: the flow the error is about is
        // gone; the error is dropped, the entry is not redispatched by it.
        let v = p.run("SYN", &syn4(8));
        let home = to(&p, &v, mode, &syn4(8));
        p.set_state(home, STATE_DOWN);
        let v = p.run(
            "frag needed about a client of a down server",
            &frag_needed(client4(8), 40008),
        );
        assert_eq!(v.action, XDP_DROP);
        assert_eq!(
            p.stick(V4_TCP, v4(client4(8).octets())).unwrap().backend,
            home
        );
        let s4 = p.vip_stats(V4_TCP);
        assert_eq!((s4.icmp_no_flow, s4.redispatches), (2, 0), "{s4:?}");
        p.assert_state_matches("spoofed ICMP errors");
    }

    // An expired entry is a miss: counted as such, and dropped.
    let expire = 5_000_000_000;
    let mut p = setup(MODE_DSR_L2, expire);
    let key = StickKey {
        vip_id: V4_TCP,
        addr: v4(client4(9).octets()),
    };
    p.set_stick(
        key,
        StickValue {
            backend: 1,
            _pad: 0,
            last_seen_ns: monotonic_ns() - 2 * expire,
        },
    );
    let v = p.run(
        "frag needed about an expired client",
        &frag_needed(client4(9), 40009),
    );
    assert_eq!(v.action, XDP_DROP);
    let s = p.vip_stats(V4_TCP);
    assert_eq!((s.expired, s.icmp_no_flow), (1, 1), "{s:?}");
    p.assert_state_matches("ICMP error, expired entry");
}

#[test]
fn icmp_errors_to_a_vip_about_another_source_are_dropped() {
    let mut p = setup(MODE_DSR_L2, 0);
    let v = p.run("SYN", &syn4(3));
    to(&p, &v, MODE_DSR_L2, &syn4(3));
    let v = p.run("IPv6 SYN", &syn6(3));
    to(&p, &v, MODE_DSR_L2, &syn6(3));
    let sent = forwarded(&p);
    // To the VIP, about a packet the VIP did not send (its source is
    // another address), for a client that has an entry.
    let f = icmp4_about(VIP4, [198, 18, 0, 77], client4(3), 40003);
    let v = p.run("IPv4 error to the VIP quoting another source", &f);
    assert_eq!(v.action, XDP_DROP);
    let other6: Ipv6Addr = "2001:db8::77".parse().unwrap();
    let f = too_big6(vip6(), other6, client6(3), 41003);
    let v = p.run("IPv6 error to the VIP quoting another source", &f);
    assert_eq!(v.action, XDP_DROP);
    // Quoting a packet from the VIP, but sent to another address: not the
    // VIP's traffic, so passed untouched like any other (it used to be
    // steered by the quoted flow).
    let f = icmp4_about([198, 18, 0, 200], VIP4, client4(3), 40003);
    let v = p.run("error to another address quoting the VIP", &f);
    assert_eq!((v.action, &v.data), (XDP_PASS, &f));
    let (s4, s6) = (p.vip_stats(V4_TCP), p.vip_stats(V6_TCP));
    assert_eq!((s4.icmp_errors, s4.icmp_mismatched), (1, 1), "{s4:?}");
    assert_eq!((s6.icmp_errors, s6.icmp_mismatched), (1, 1), "{s6:?}");
    assert_eq!(forwarded(&p), sent, "a mismatched error reached a backend");
    p.assert_state_matches("mismatched ICMP errors");
}

#[test]
fn genuine_icmp_errors_reach_the_stuck_clients_backend() {
    for mode in [MODE_DSR_L2, MODE_IPIP] {
        let mut p = setup(mode, 0);
        let v = p.run("SYN", &syn4(4));
        let home4 = to(&p, &v, mode, &syn4(4));
        let v = p.run("IPv6 SYN", &syn6(4));
        let home6 = to(&p, &v, mode, &syn6(4));
        let home4 = move_entry(&mut p, V4_TCP, v4(client4(4).octets()), home4, 0);
        let home6 = move_entry(&mut p, V6_TCP, v6(client6(4)), home6, 4);
        let f = frag_needed(client4(4), 40004);
        let v = p.run("frag needed about a stuck client", &f);
        assert_eq!(to(&p, &v, mode, &f), home4);
        let f = too_big6(vip6(), vip6(), client6(4), 41004);
        let v = p.run("packet too big about a stuck client", &f);
        assert_eq!(to(&p, &v, mode, &f), home6);
        for id in [V4_TCP, V6_TCP] {
            let s = p.vip_stats(id);
            assert_eq!(
                (s.icmp_errors, s.icmp_mismatched, s.icmp_no_flow),
                (1, 0, 0),
                "{s:?}"
            );
        }
        p.assert_state_matches("genuine ICMP errors");
    }
}

/// SYNs and UDP datagrams from `sent` distinct spoofed sources as fast as
/// BPF_PROG_TEST_RUN takes them, under the configured default cap: every
/// one is forwarded, at most the cap per CPU per second is stored, UDP
/// counting against the same cap as SYNs.
#[test]
fn the_default_insert_cap_bounds_a_flood_of_new_sources() {
    let cap = balancer::config::DEFAULT_INSERT_CAP;
    let mut p = setup(MODE_DSR_L2, 0);
    let mut cfg = p.model.config;
    cfg.insert_cap = cap;
    p.set_config(cfg);
    // Three times the cap, at least 30,000; 198.18.0.0/15 holds 131,072
    // sources.
    let sent = (3 * u64::from(cap)).clamp(30_000, 131_072);
    let fd = p.dp.program_fd().unwrap();
    let started = std::time::Instant::now();
    for n in 0..sent {
        let n = n as u32;
        let src = Ipv4Addr::new(198, 18 + (n >> 16) as u8, (n >> 8) as u8, n as u8);
        let f = if n.is_multiple_of(2) {
            Frame::new(L4::TcpSyn).ipv4(src, VIP4.into())
        } else {
            Frame::new(L4::Udp).ports(5000, 53).ipv4(src, VIP4.into())
        };
        // Not through the model: its window follows another clock, and at
        // a window's edge the two may disagree on one insert.
        let r = balancer::testrun::test_run(fd, &f, 1).unwrap();
        assert_eq!(r.action, XDP_TX, "flood packet {n} not forwarded");
    }
    let secs = started.elapsed().as_secs_f64();
    // The windows one CPU can open in that time (each lasts >= 1 s).
    let windows = secs.ceil() as u64 + 1;
    let (t, u) = (p.vip_stats(V4_TCP), p.vip_stats(V4_UDP));
    let stored = t.new_sticks + u.new_sticks;
    let capped = t.insert_capped + u.insert_capped;
    println!("{sent} new sources in {secs:.2} s: {stored} stored, {capped} capped");
    assert_eq!(stored + capped, sent, "{t:?} {u:?}");
    assert!(u.new_sticks > 0 && u.insert_capped > 0, "UDP: {u:?}");
    assert!(
        stored <= u64::from(cap) * windows,
        "{stored} entries stored in {secs:.2} s, cap {cap}"
    );
    assert_eq!(p.dp.stick_count(None).unwrap() as u64, stored);
    if windows < 3 {
        assert!(capped >= sent - 2 * u64::from(cap), "{capped} capped");
    }
}

#[test]
fn fragments_and_icmp_errors_follow_the_clients_entry() {
    for mode in [MODE_DSR_L2, MODE_IPIP] {
        let mut p = setup(mode, 0);
        let mut homes = Vec::new();
        for n in 0..12u8 {
            let v = p.run("SYN", &syn4(n));
            homes.push(to(&p, &v, mode, &syn4(n)));
        }
        // Point every entry at a backend Maglev would not choose, so
        // following the entry and following Maglev differ.
        for n in 0..12u8 {
            let key = StickKey {
                vip_id: V4_TCP,
                addr: v4(client4(n).octets()),
            };
            let moved = (homes[n as usize] + 1) % 3;
            p.set_stick(
                key,
                StickValue {
                    backend: moved,
                    _pad: 0,
                    last_seen_ns: monotonic_ns(),
                },
            );
            homes[n as usize] = moved;
        }
        for n in 0..12u8 {
            let frag = fragment4(client4(n));
            let v = p.run("non-first fragment", &frag);
            assert_eq!(
                to(&p, &v, mode, &frag),
                homes[n as usize],
                "fragment of client {n}"
            );
            let icmp = frag_needed(client4(n), 40000 + u16::from(n));
            let v = p.run("ICMP frag needed", &icmp);
            assert_eq!(
                to(&p, &v, mode, &icmp),
                homes[n as usize],
                "ICMP error about client {n}"
            );
        }
        let s = p.vip_stats(V4_TCP);
        assert_eq!((s.fragments, s.icmp_errors), (12, 12), "{s:?}");
        assert_eq!(
            s.new_sticks, 12,
            "fragments and ICMP errors never create entries"
        );
        p.assert_state_matches("fragments+icmp");
    }
}

#[test]
fn flood_guard_stores_only_opening_packets_under_the_cap() {
    let mut p = setup(MODE_DSR_L2, 0);
    let mut cfg = p.model.config;
    cfg.insert_cap = 5;
    p.set_config(cfg);
    for n in 0..12u8 {
        let v = p.run("SYN burst", &syn4(n));
        to(&p, &v, MODE_DSR_L2, &syn4(n));
    }
    let s = p.vip_stats(V4_TCP);
    assert_eq!((s.new_sticks, s.insert_capped), (5, 7), "{s:?}");
    assert_eq!(p.dp.stick_count(Some(V4_TCP)).unwrap(), 5);
    for n in 50..55u8 {
        let v = p.run("ACK from an unknown client", &ack4(n));
        to(&p, &v, MODE_DSR_L2, &ack4(n));
    }
    assert_eq!(p.vip_stats(V4_TCP).non_syn_misses, 5);
    // UDP opens sessions too (same window, so still capped here).
    let udp = Frame::new(L4::Udp)
        .ports(5000, 53)
        .ipv4(client4(60), VIP4.into());
    let v = p.run("UDP", &udp);
    to(&p, &v, MODE_DSR_L2, &udp);
    assert_eq!(p.vip_stats(V4_UDP).insert_capped, 1);
    p.assert_state_matches("flood guard");
}

#[test]
fn drops_are_documented_and_counted() {
    // No usable backend.
    let mut p = setup(MODE_DSR_L2, 0);
    for b in 0..3 {
        p.set_state(b, STATE_DOWN);
    }
    let v = p.run("all backends down", &syn4(1));
    assert_eq!(v.action, XDP_DROP);
    assert_eq!(p.vip_stats(V4_TCP).no_backend, 1);

    // IPIP larger than the backend's MTU.
    let mut p = setup(MODE_IPIP, 0);
    let big = Frame::new(L4::TcpAck)
        .payload(&[0u8; 1460])
        .ports(40001, 80)
        .ipv4(client4(1), VIP4.into());
    let v = p.run("IPIP too big", &big);
    assert_eq!(v.action, XDP_DROP);
    assert_eq!(p.vip_stats(V4_TCP).too_big, 1);
    let fits = Frame::new(L4::TcpAck)
        .payload(&[0u8; 1440])
        .ports(40001, 80)
        .ipv4(client4(1), VIP4.into());
    let v = p.run("IPIP that fits", &fits);
    assert_eq!(v.data.len(), fits.len() + IPV4_MIN_HLEN);
    to(&p, &v, MODE_IPIP, &fits);

    // Egress interface missing from the devmap.
    let mut p = setup(MODE_DSR_L2, 0);
    for id in 0..3u32 {
        let mut b = p.dp.backend(id).unwrap();
        b.ifindex = 999_999;
        p.set_backend(id, b);
    }
    let v = p.run("egress not registered", &syn4(1));
    assert_eq!(v.action, XDP_DROP);
    assert_eq!(p.vip_stats(V4_TCP).forward_failed, 1);
    p.assert_state_matches("drops");
}

/// At least 20 malformed frames, each passed untouched and counted.
#[test]
fn malformed_frames_are_passed_and_counted_never_forwarded() {
    let mut p = setup(MODE_DSR_L2, 0);
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let syn = syn4(1);
    let tagged = Frame::new(L4::TcpSyn)
        .vlan(9)
        .ports(40001, 80)
        .ipv4(client4(1), VIP4.into());
    let syn6 = Frame::new(L4::TcpSyn)
        .ports(41000, 80)
        .ipv6(client6(1), vip6());
    // Truncated at (and just before) every header boundary.
    for (name, f, bounds) in [
        (
            "IPv4 TCP",
            &syn,
            vec![ETH_HLEN + 1, ETH_HLEN + 19, ETH_HLEN + 20, ETH_HLEN + 39],
        ),
        (
            "VLAN IPv4 TCP",
            &tagged,
            vec![ETH_HLEN + 2, 18, 18 + 19, 18 + 20, 18 + 39],
        ),
        (
            "IPv6 TCP",
            &syn6,
            vec![ETH_HLEN + 1, ETH_HLEN + 39, ETH_HLEN + 40, ETH_HLEN + 59],
        ),
    ] {
        for cut in bounds {
            cases.push((format!("{name} cut at {cut}"), f[..cut].to_vec()));
        }
    }
    let mut bad_ihl = syn.clone();
    bad_ihl[ETH_HLEN] = 0x44;
    cases.push(("IHL 4".into(), bad_ihl));
    let mut ihl_past_end = syn.clone();
    ihl_past_end[ETH_HLEN] = 0x4f;
    ihl_past_end.truncate(ETH_HLEN + 50);
    cases.push(("IHL 15 past the end".into(), ihl_past_end));
    let mut total_long = syn.clone();
    total_long[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&1500u16.to_be_bytes());
    cases.push(("total length past the end".into(), total_long));
    let mut total_short = syn.clone();
    total_short[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&10u16.to_be_bytes());
    cases.push(("total length below the header".into(), total_short));
    let mut doff = syn.clone();
    doff[ETH_HLEN + 20 + 12] = 0x30;
    cases.push(("TCP data offset 3".into(), doff));
    let mut v6len = syn6.clone();
    v6len[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&500u16.to_be_bytes());
    cases.push(("IPv6 payload length past the end".into(), v6len));
    // IPv6 extension chains that end early: hop-by-hop claiming 64 bytes
    // in a 28-byte payload; a fragment header cut short.
    let mut hbh = syn6[..ETH_HLEN + 40].to_vec();
    hbh[ETH_HLEN + 6] = IPPROTO_HOPOPTS;
    hbh.extend_from_slice(&[IPPROTO_TCP, 7, 0, 0, 0, 0, 0, 0]);
    hbh.extend_from_slice(&[0u8; 20]);
    hbh[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&28u16.to_be_bytes());
    cases.push(("IPv6 hop-by-hop longer than the packet".into(), hbh));
    let mut fragcut = syn6[..ETH_HLEN + 40].to_vec();
    fragcut[ETH_HLEN + 6] = IPPROTO_FRAGMENT;
    fragcut.extend_from_slice(&[IPPROTO_TCP, 0, 0]);
    fragcut[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&3u16.to_be_bytes());
    cases.push(("IPv6 fragment header cut short".into(), fragcut));
    let mut dst_chain = syn6[..ETH_HLEN + 40].to_vec();
    dst_chain[ETH_HLEN + 6] = IPPROTO_DSTOPTS;
    dst_chain.extend_from_slice(&[IPPROTO_TCP, 0, 1, 4, 0, 0, 0, 0]);
    dst_chain.extend_from_slice(&[0u8; 10]);
    dst_chain[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&18u16.to_be_bytes());
    cases.push(("IPv6 chain ends inside the TCP header".into(), dst_chain));
    assert!(cases.len() >= 20, "{}", cases.len());
    for (what, f) in &cases {
        assert_eq!(
            parse(f).class,
            Class::Malformed,
            "{what}: the model must call it malformed"
        );
        let v = p.run(what, f);
        assert_eq!(v.action, XDP_PASS, "{what}");
        assert_eq!(&v.data, f, "{what}: untouched");
    }
    assert_eq!(
        p.dp.stats().unwrap().get(Class::Malformed).packets,
        cases.len() as u64
    );
    assert_eq!(p.dp.stick_count(None).unwrap(), 0);
    p.assert_state_matches("malformed");
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let mut p = setup(MODE_DSR_L2, 0);
    let syn6 = Frame::new(L4::TcpSyn)
        .ports(41000, 80)
        .ipv6(client6(3), vip6());
    // hop-by-hop (8 bytes) + destination options (16 bytes) before TCP.
    let mut f = syn6[..ETH_HLEN + 40].to_vec();
    f[ETH_HLEN + 6] = IPPROTO_HOPOPTS;
    f.extend_from_slice(&[IPPROTO_DSTOPTS, 0, 1, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&[IPPROTO_TCP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&syn6[ETH_HLEN + 40..]);
    let plen = (f.len() - ETH_HLEN - 40) as u16;
    f[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&plen.to_be_bytes());
    assert_eq!(parse(&f).class, Class::Ipv6Tcp);
    let v = p.run("IPv6 SYN behind two extension headers", &f);
    let b = to(&p, &v, MODE_DSR_L2, &f);
    assert!((4..7).contains(&b));
    assert_eq!(p.vip_stats(V6_TCP).new_sticks, 1);
    p.assert_state_matches("ext headers");
}

#[test]
fn removing_a_vip_passes_its_traffic_and_keeps_the_others() {
    let mut p = setup(MODE_DSR_L2, 0);
    let tcp80 = vip_key(FAMILY_V4, v4(VIP4), 80, IPPROTO_TCP);
    let v = p.run("SYN before removal", &syn4(1));
    to(&p, &v, MODE_DSR_L2, &syn4(1));
    // Port 80 keeps another VIP entry (the port-0 fragment entry is on
    // port 0; the IPv6 VIP is on 80): the port filter must still let IPv6
    // through while IPv4 :80 passes untouched.
    p.remove_vip(tcp80);
    let v = p.run("SYN after removal", &syn4(1));
    assert_eq!((v.action, &v.data), (XDP_PASS, &syn4(1)));
    let syn6 = Frame::new(L4::TcpSyn)
        .ports(41000, 80)
        .ipv6(client6(1), vip6());
    let v = p.run("IPv6 SYN, its VIP still there", &syn6);
    to(&p, &v, MODE_DSR_L2, &syn6);
    p.add_vip(tcp80, vip_info(V4_TCP, MODE_DSR_L2, 0));
    let v = p.run("SYN after re-adding", &syn4(1));
    to(&p, &v, MODE_DSR_L2, &syn4(1));
    p.assert_state_matches("vip removal");
}
