//! The backends' `decap` program through BPF_PROG_TEST_RUN: IP-in-IP is
//! stripped only when its outer source is one of the balancers' tunnel
//! sources; from anyone else it is dropped and counted, never passed to a
//! kernel that might decapsulate it (CVE-2020-10136). Every frame is also
//! run through the host model (`balancer_common::decap`), which must agree.

use std::{collections::BTreeSet, net::IpAddr};

use balancer::{dataplane::AuxProgram, testrun::test_run};
use balancer_common::{
    decap::decap,
    layout::{ETH_HLEN, IPV4_MIN_HLEN, IPV6_HLEN, XDP_DROP, XDP_PASS},
    maps::*,
};
use balancer_tests::{
    packets::{CLIENT_V4, CLIENT_V6, Frame, L4, SERVICE_V4, SERVICE_V6, encapsulate},
    require_root,
};

const BALANCER_V4: &str = "198.18.1.1";
const BALANCER_V6: &str = "2001:db8:0:1::1";
const BACKEND_V4: &str = "198.18.1.10";
const BACKEND_V6: &str = "2001:db8:0:1::10";
/// Someone else on the backends' network (or anywhere on the internet).
const STRANGER_V4: &str = "198.18.9.9";
const STRANGER_V6: &str = "2001:db8:9::9";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Decap {
    prog: AuxProgram,
    sources: BTreeSet<TunnelSource>,
    /// The model's count per `DECAP_*` slot.
    counted: [u64; DECAP_COUNTERS as usize],
}

impl Decap {
    fn load() -> Decap {
        require_root();
        Decap {
            prog: AuxProgram::load(DECAP_PROGRAM).expect("loading decap"),
            sources: BTreeSet::new(),
            counted: [0; DECAP_COUNTERS as usize],
        }
    }

    fn set_sources(&mut self, sources: &[&str]) {
        let ips: Vec<IpAddr> = sources.iter().map(|s| ip(s)).collect();
        self.prog.set_decap_sources(&ips).expect("decap sources");
        self.sources = ips.into_iter().map(TunnelSource::new).collect();
    }

    /// Run `frame`; the program and the model must agree. Returns the
    /// verdict and the frame as the program left it.
    fn run(&mut self, what: &str, frame: &[u8]) -> (u32, Vec<u8>) {
        let r = test_run(self.prog.program_fd().unwrap(), frame, 1)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let want = decap(frame, &self.sources);
        assert_eq!(r.action, want.action, "{what}: verdict (program vs model)");
        if r.action != XDP_DROP {
            assert_eq!(r.data, want.data, "{what}: bytes (program vs model)");
        }
        if let Some(slot) = want.counted {
            self.counted[slot as usize] += 1;
        }
        (r.action, r.data)
    }

    fn counts(&self) -> [u64; DECAP_COUNTERS as usize] {
        let c = self.prog.counts().unwrap();
        assert_eq!(c, self.counted, "counters (program vs model)");
        c
    }
}

fn tcp4() -> Vec<u8> {
    Frame::new(L4::TcpSyn)
        .payload(b"inner")
        .ipv4(CLIENT_V4, SERVICE_V4)
}

fn tcp6() -> Vec<u8> {
    Frame::new(L4::Udp)
        .payload(b"inner")
        .ipv6(CLIENT_V6, SERVICE_V6)
}

/// IP-in-IP of every kind from `v4`/`v6` outer sources to the backend:
/// 4-in-4, 6-in-6, 6-in-4, 4-in-6, VLAN-tagged, an outer IPv4 fragment.
fn every_kind(v4: &str, v6: &str) -> Vec<(&'static str, Vec<u8>)> {
    let (b4, b6) = (ip(BACKEND_V4), ip(BACKEND_V6));
    let mut frag = encapsulate(ip(v4), b4, &tcp4());
    frag[ETH_HLEN + 6] = 0x20; // more fragments
    vec![
        ("4-in-4", encapsulate(ip(v4), b4, &tcp4())),
        ("6-in-6", encapsulate(ip(v6), b6, &tcp6())),
        ("6-in-4", encapsulate(ip(v4), b4, &tcp6())),
        ("4-in-6", encapsulate(ip(v6), b6, &tcp4())),
        (
            "4-in-4, VLAN-tagged",
            encapsulate(
                ip(v4),
                b4,
                &Frame::new(L4::TcpAck).vlan(7).ipv4(CLIENT_V4, SERVICE_V4),
            ),
        ),
        ("4-in-4, first fragment", frag),
    ]
}

#[test]
fn ip_in_ip_from_an_unlisted_source_is_dropped_not_decapsulated() {
    let mut d = Decap::load();
    // Nothing listed yet: every tunnel source is refused.
    for (what, f) in every_kind(BALANCER_V4, BALANCER_V6) {
        let (action, _) = d.run(&format!("{what}, no source listed"), &f);
        assert_eq!(action, XDP_DROP, "{what}: an empty list refuses all");
    }
    d.set_sources(&[BALANCER_V4, BALANCER_V6]);
    for (what, f) in every_kind(STRANGER_V4, STRANGER_V6) {
        let (action, _) = d.run(&format!("{what} from a stranger"), &f);
        assert_eq!(action, XDP_DROP, "{what} from an unlisted source");
    }
    let c = d.counts();
    assert_eq!(
        c[DECAP_IPIP as usize] + c[DECAP_IP6IP6 as usize],
        0,
        "{c:?}"
    );
    assert_eq!(c[DECAP_REFUSED_V4 as usize], 8, "{c:?}");
    assert_eq!(c[DECAP_REFUSED_V6 as usize], 4, "{c:?}");
    // Traffic that is not IP-in-IP passes untouched, from anyone.
    for (what, f) in [("IPv4 TCP", tcp4()), ("IPv6 UDP", tcp6())] {
        let (action, data) = d.run(what, &f);
        assert_eq!((action, data), (XDP_PASS, f), "{what}");
    }
    d.counts();
}

#[test]
fn ip_in_ip_from_a_listed_source_is_decapsulated() {
    let mut d = Decap::load();
    d.set_sources(&[BALANCER_V4, BALANCER_V6, "198.18.1.2"]);
    let (b4, b6) = (ip(BACKEND_V4), ip(BACKEND_V6));
    for (what, src, dst, inner, outer) in [
        ("4-in-4", BALANCER_V4, b4, tcp4(), IPV4_MIN_HLEN),
        (
            "4-in-4, second balancer",
            "198.18.1.2",
            b4,
            tcp4(),
            IPV4_MIN_HLEN,
        ),
        ("6-in-6", BALANCER_V6, b6, tcp6(), IPV6_HLEN),
        (
            "4-in-4, VLAN-tagged",
            BALANCER_V4,
            b4,
            Frame::new(L4::TcpAck).vlan(7).ipv4(CLIENT_V4, SERVICE_V4),
            IPV4_MIN_HLEN,
        ),
    ] {
        let f = encapsulate(ip(src), dst, &inner);
        assert_eq!(f.len(), inner.len() + outer);
        let (action, data) = d.run(what, &f);
        assert_eq!((action, data), (XDP_PASS, inner), "{what}: the inner frame");
    }
    // Listed, but not what balancer sends (6-in-4, a fragment): for the
    // kernel's own tunnel devices, untouched.
    let mut frag = encapsulate(ip(BALANCER_V4), b4, &tcp4());
    frag[ETH_HLEN + 6] = 0x20;
    for (what, f) in [
        ("6-in-4", encapsulate(ip(BALANCER_V4), b4, &tcp6())),
        ("outer fragment", frag),
    ] {
        let (action, data) = d.run(what, &f);
        assert_eq!((action, data), (XDP_PASS, f), "{what}");
    }
    let c = d.counts();
    assert_eq!(c[DECAP_IPIP as usize], 3, "{c:?}");
    assert_eq!(c[DECAP_IP6IP6 as usize], 1, "{c:?}");
    // Removing a source refuses it from then on.
    d.set_sources(&[BALANCER_V6]);
    let (action, _) = d.run(
        "4-in-4 from a source no longer listed",
        &encapsulate(ip(BALANCER_V4), b4, &tcp4()),
    );
    assert_eq!(action, XDP_DROP);
    assert_eq!(d.counts()[DECAP_REFUSED_V4 as usize], 1);
}
