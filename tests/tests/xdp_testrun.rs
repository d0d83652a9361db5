//! The real compiled XDP program, run by the kernel on crafted frames
//! through BPF_PROG_TEST_RUN, checked against the reference model in
//! balancer-common: verdict, output bytes and per-class counters.

use balancer::{dataplane::Dataplane, stats::Stats, testrun::test_run};
use balancer_common::{
    classify::classify,
    layout::{ETH_HLEN, ETH_TYPE_OFF},
    stats::{Class, Counter},
};
use balancer_tests::{
    packets::{CLIENT_V4, CLIENT_V6, Frame, L4, Rng, SERVICE_V4, SERVICE_V6},
    require_root,
};

const XDP_PASS: u32 = 2;

fn load() -> Dataplane {
    require_root();
    Dataplane::load().unwrap_or_else(|e| panic!("loading the XDP program: {e}"))
}

/// Run one frame; assert it was passed unchanged and counted exactly once,
/// in `expected`, with its length. Returns the class the program chose.
fn run_one(dp: &Dataplane, what: &str, frame: &[u8]) -> Class {
    let before = dp.stats().expect("stats before");
    let fd = dp.program_fd().expect("program fd");
    let r = test_run(fd, frame, 1).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(r.action, XDP_PASS, "{what}: verdict");
    assert_eq!(
        r.data, frame,
        "{what}: the program must not modify the frame"
    );
    let delta = dp.stats().expect("stats after").since(&before);
    let counted: Vec<Class> = Class::ALL
        .into_iter()
        .filter(|c| delta.get(*c).packets > 0)
        .collect();
    assert_eq!(
        counted.len(),
        1,
        "{what}: counted in {counted:?}, want exactly one class: {delta:?}"
    );
    let class = counted[0];
    assert_eq!(
        delta.get(class),
        Counter {
            packets: 1,
            bytes: frame.len() as u64
        },
        "{what}: counter of {class:?}"
    );
    class
}

#[test]
fn fixtures_get_the_verdict_and_counter_the_model_predicts() {
    let dp = load();
    let v4_tcp = Frame::new(L4::TcpSyn)
        .payload(b"GET / HTTP/1.1\r\n\r\n")
        .ipv4(CLIENT_V4, SERVICE_V4);
    let v6_udp = Frame::new(L4::Udp)
        .ports(5353, 53)
        .payload(b"query")
        .ipv6(CLIENT_V6, SERVICE_V6);
    let v4_udp_vlan = Frame::new(L4::Udp).vlan(100).ipv4(CLIENT_V4, SERVICE_V4);
    let v6_tcp = Frame::new(L4::TcpAck).ipv6(CLIENT_V6, SERVICE_V6);
    let mut v4_icmp = Frame::new(L4::Udp).ipv4(CLIENT_V4, SERVICE_V4);
    v4_icmp[ETH_HLEN + 9] = 1;
    let mut arp = v4_tcp.clone();
    arp[ETH_TYPE_OFF..ETH_TYPE_OFF + 2].copy_from_slice(&0x0806u16.to_be_bytes());
    let mut bad_ihl = v4_tcp.clone();
    bad_ihl[ETH_HLEN] = 0x43;
    // Declared lengths that agree with the frame but leave no room for the
    // transport header: only the transport check can catch these.
    let mut v6_udp_short = v6_udp[..ETH_HLEN + 40 + 4].to_vec();
    v6_udp_short[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&4u16.to_be_bytes());
    let mut v4_tcp_short = v4_tcp[..ETH_HLEN + 20 + 12].to_vec();
    v4_tcp_short[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&32u16.to_be_bytes());
    let mut v6_lying_length = v6_udp.clone();
    v6_lying_length[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&1400u16.to_be_bytes());

    // (description, frame, expected class)
    let table: Vec<(&str, Vec<u8>, Class)> = vec![
        ("IPv4 TCP SYN with payload", v4_tcp.clone(), Class::Ipv4Tcp),
        ("IPv6 UDP", v6_udp.clone(), Class::Ipv6Udp),
        ("IPv4 UDP behind an 802.1Q tag", v4_udp_vlan, Class::Ipv4Udp),
        ("IPv6 TCP ACK", v6_tcp, Class::Ipv6Tcp),
        ("IPv4 ICMP", v4_icmp, Class::Ipv4Other),
        ("ARP", arp, Class::NonIp),
        (
            "IPv4 TCP cut inside the TCP header",
            v4_tcp[..ETH_HLEN + 20 + 10].to_vec(),
            Class::Malformed,
        ),
        (
            "IPv4 cut inside the IP header",
            v4_tcp[..ETH_HLEN + 12].to_vec(),
            Class::Malformed,
        ),
        (
            "IPv6 UDP cut inside the UDP header",
            v6_udp[..ETH_HLEN + 40 + 4].to_vec(),
            Class::Malformed,
        ),
        (
            "bare Ethernet header claiming IPv6",
            v6_udp[..ETH_HLEN].to_vec(),
            Class::Malformed,
        ),
        ("IPv4 header length 12 bytes", bad_ihl, Class::Malformed),
        (
            "IPv6 payload length beyond the frame",
            v6_lying_length,
            Class::Malformed,
        ),
        (
            "IPv6 UDP header cut, payload length agreeing",
            v6_udp_short,
            Class::Malformed,
        ),
        (
            "IPv4 TCP header cut, total length agreeing",
            v4_tcp_short,
            Class::Malformed,
        ),
    ];
    for (what, frame, expected) in &table {
        assert_eq!(
            classify(frame),
            *expected,
            "{what}: reference model disagrees with the table"
        );
        assert_eq!(
            run_one(&dp, what, frame),
            *expected,
            "{what}: program class"
        );
    }
}

#[test]
fn frames_shorter_than_ethernet_are_refused_by_the_harness_not_run() {
    // The kernel itself refuses test frames under 14 bytes; the harness
    // says so instead of returning a bogus verdict.
    let dp = load();
    let err = test_run(dp.program_fd().unwrap(), &[0u8; 13], 1).unwrap_err();
    assert!(err.to_string().contains("14 bytes"), "{err}");
}

/// Mutate valid frames at random (header bytes, lengths, truncation) and
/// require the program and the model to agree on every one. Also checks
/// that the program never drops, aborts or rewrites garbage.
#[test]
fn program_agrees_with_the_reference_model_on_mutated_frames() {
    let dp = load();
    let seeds = [
        Frame::new(L4::TcpSyn)
            .payload(b"hello")
            .ipv4(CLIENT_V4, SERVICE_V4),
        Frame::new(L4::Udp)
            .vlan(7)
            .payload(b"x")
            .ipv4(CLIENT_V4, SERVICE_V4),
        Frame::new(L4::TcpAck)
            .payload(b"abc")
            .ipv6(CLIENT_V6, SERVICE_V6),
        Frame::new(L4::Udp).vlan(4000).ipv6(CLIENT_V6, SERVICE_V6),
    ];
    let mut rng = Rng::new(0x005e_edb1);
    let mut seen = std::collections::HashSet::new();
    for case in 0..3000 {
        let mut frame = seeds[case % seeds.len()].clone();
        for _ in 0..1 + rng.below(3) {
            // Mostly header bytes, where the parser's decisions are.
            let at = rng.below(frame.len().min(80));
            frame[at] = match rng.below(4) {
                0 => 0,
                1 => 0xff,
                2 => frame[at] ^ (1 << rng.below(8)),
                _ => rng.next_u64() as u8,
            };
        }
        if rng.below(3) == 0 {
            frame.truncate(ETH_HLEN + rng.below(frame.len() - ETH_HLEN + 1));
        }
        let want = classify(&frame);
        let got = run_one(&dp, &format!("case {case}: {frame:02x?}"), &frame);
        assert_eq!(
            got, want,
            "case {case}: program and model disagree on {frame:02x?}"
        );
        seen.insert(want);
    }
    // The mutations must have exercised more than one outcome, or this
    // test proves little.
    assert!(seen.len() >= 5, "mutations only reached {seen:?}");
}

#[test]
fn counters_sum_over_many_runs() {
    let dp = load();
    let frame = Frame::new(L4::Udp).ipv6(CLIENT_V6, SERVICE_V6);
    let before = dp.stats().unwrap();
    let r = test_run(dp.program_fd().unwrap(), &frame, 1000).unwrap();
    assert_eq!(r.action, XDP_PASS);
    let d: Stats = dp.stats().unwrap().since(&before);
    assert_eq!(d.get(Class::Ipv6Udp).packets, 1000);
    assert_eq!(d.total().packets, 1000);
}
