//! The stick key by network on the XDP path (`stick_table.key_mask_v4`,
//! `key_mask_v6` -> `VipInfo::key_prefix`), through BPF_PROG_TEST_RUN with
//! the reference model beside it: a client's entry is stored under its
//! network's address, and another client of that network follows it, even
//! where Maglev alone would send it elsewhere.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use balancer_common::{layout::*, maps::*, packet::parse};
use balancer_tests::packets::{Frame, L4};
use common::*;

const VIP4: [u8; 4] = [198, 18, 0, 100];
/// VIP ids: masked and plain VIPs of each family, on ports 80 and 81.
const V4_MASKED: u32 = 0;
const V4_PLAIN: u32 = 1;
const V6_MASKED: u32 = 2;
const V6_PLAIN: u32 = 3;

fn vip6() -> Ipv6Addr {
    "2001:db8::100".parse().unwrap()
}

fn setup() -> Pair {
    let mut p = Pair::new();
    let masked = |id, prefix| VipInfo {
        key_prefix: prefix,
        ..vip_info(id, MODE_DSR_L2, 0)
    };
    p.add_vip(
        vip_key(FAMILY_V4, v4(VIP4), 80, IPPROTO_TCP),
        masked(V4_MASKED, 24),
    );
    p.add_vip(
        vip_key(FAMILY_V4, v4(VIP4), 81, IPPROTO_TCP),
        vip_info(V4_PLAIN, MODE_DSR_L2, 0),
    );
    p.add_vip(
        vip_key(FAMILY_V6, v6(vip6()), 80, IPPROTO_TCP),
        masked(V6_MASKED, 64),
    );
    p.add_vip(
        vip_key(FAMILY_V6, v6(vip6()), 81, IPPROTO_TCP),
        vip_info(V6_PLAIN, MODE_DSR_L2, 0),
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
    let pool4 = [(0, "s0"), (1, "s1"), (2, "s2")];
    let pool6 = [(4, "s4"), (5, "s5"), (6, "s6")];
    p.set_pool(V4_MASKED, &pool4);
    p.set_pool(V4_PLAIN, &pool4);
    p.set_pool(V6_MASKED, &pool6);
    p.set_pool(V6_PLAIN, &pool6);
    p
}

fn syn4(client: Ipv4Addr, port: u16) -> Vec<u8> {
    Frame::new(L4::TcpSyn)
        .ports(40000, port)
        .ipv4(client, VIP4.into())
}

fn syn6(client: Ipv6Addr, port: u16) -> Vec<u8> {
    Frame::new(L4::TcpSyn)
        .ports(40000, port)
        .ipv6(client, vip6())
}

/// The backend a frame was sent to.
fn to(p: &mut Pair, what: &str, frame: &[u8]) -> u32 {
    let v = p.run(what, frame);
    destination(&v, &p.model.backends, MODE_DSR_L2, parse(frame).l2_len)
}

/// One family's case: `a` and `b` share a network (`net`, the masked key);
/// `first` is the pool's first backend id.
fn case(p: &mut Pair, a: &[u8], b_masked: &[u8], b_plain: &[u8], ids: (u32, u32), net: [u8; 16]) {
    let (masked, plain) = ids;
    // `a` stores its network's entry, not its own address.
    let home = to(p, "a, masked", a);
    let entry = p
        .stick(masked, net)
        .expect("an entry under the network's key");
    assert_eq!(entry.backend, home);
    assert_eq!(p.dp.stick_count(Some(masked)).unwrap(), 1);
    // Where Maglev alone sends `b` (the plain VIP has the same pool, so the
    // same table); the network's entry is pointed elsewhere.
    let maglev_b = to(p, "b, plain", b_plain);
    let first = maglev_b - maglev_b % 4;
    let moved = first + (maglev_b - first + 1) % 3;
    p.set_stick(
        StickKey {
            vip_id: masked,
            addr: net,
        },
        StickValue {
            backend: moved,
            _pad: 0,
            last_seen_ns: monotonic_ns(),
        },
    );
    assert_eq!(
        to(p, "b, masked", b_masked),
        moved,
        "b follows its network's entry"
    );
    assert_eq!(p.vip_stats(masked).stick_hits, 1);
    assert_eq!(p.dp.stick_count(Some(plain)).unwrap(), 1);
    p.assert_state_matches("after both clients");
}

#[test]
fn clients_of_one_network_share_an_entry() {
    let mut p = setup();
    let (a, b) = (
        Ipv4Addr::new(198, 18, 7, 11),
        Ipv4Addr::new(198, 18, 7, 200),
    );
    case(
        &mut p,
        &syn4(a, 80),
        &syn4(b, 80),
        &syn4(b, 81),
        (V4_MASKED, V4_PLAIN),
        v4([198, 18, 7, 0]),
    );
    let (a, b): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8:0:7::11".parse().unwrap(),
        "2001:db8:0:7:ab::9".parse().unwrap(),
    );
    case(
        &mut p,
        &syn6(a, 80),
        &syn6(b, 80),
        &syn6(b, 81),
        (V6_MASKED, V6_PLAIN),
        v6("2001:db8:0:7::".parse().unwrap()),
    );
    // A client of another network is a new entry.
    let c = Ipv4Addr::new(198, 18, 8, 11);
    to(&mut p, "c, masked", &syn4(c, 80));
    assert!(p.stick(V4_MASKED, v4([198, 18, 8, 0])).is_some());
    p.assert_state_matches("after another network");
}
