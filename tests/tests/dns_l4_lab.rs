//! DNS discovery on the XDP path: a `server_template` of an L4 (dsr-l2)
//! backend, filled from the A records of a DNS server the test runs in the
//! balancer's namespace (on its loopback), in a namespace lab with real TCP
//! clients. Discovered servers join the XDP backends and Maglev tables; the
//! stick table keeps every client on its backend when a server joins or the
//! records are reordered; a server that leaves the records moves only its
//! clients; a stopped DNS server changes nothing.

mod service;

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use balancer_tests::{
    dns::DnsServer,
    lab::{Lab, LabSpec},
    proc::wait_for,
    require_root,
};
use service::{PORT, Service, VIP};

const NAME: &str = "web.lab.test";
const CLIENTS: usize = 90;

/// Slot -> address of `backend list --json` (filled slots only).
fn slots(svc: &Service) -> BTreeMap<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(&svc.lab.cli(&["backend", "list", "--json"]).unwrap()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|s| s["dns"]["record"].is_string())
        .map(|s| {
            (
                s["server"].as_str().unwrap().to_owned(),
                s["address"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn wait_slots(svc: &Service, want: &[IpAddr]) -> BTreeMap<String, String> {
    let mut want: Vec<String> = want.iter().map(IpAddr::to_string).collect();
    want.sort();
    let mut last = BTreeMap::new();
    let ok = wait_for(Duration::from_secs(30), || {
        last = slots(svc);
        let mut got: Vec<String> = last.values().cloned().collect();
        got.sort();
        got == want
    });
    assert!(
        ok,
        "slots never held {want:?}: {last:?}\n{}",
        svc.daemon.output()
    );
    last
}

#[test]
fn l4_servers_from_dns_keep_their_clients() {
    require_root();
    let lab = Lab::new(LabSpec {
        clients: 1,
        backends: 3,
    })
    .expect("lab");
    lab.hold_vips_on_backends(&[VIP.parse().unwrap()])
        .expect("VIPs on backends");
    let http = lab.start_http_backends(PORT).expect("HTTP backends");
    let addr = |j: usize| IpAddr::V4(lab.backends[j].ipv4);
    let a: Vec<IpAddr> = (0..3).map(addr).collect();
    let records = |js: &[usize]| -> Vec<String> { js.iter().map(|&j| a[j].to_string()).collect() };
    let mut dns = DnsServer::start_in(&lab.balancer.ns).expect("DNS server in the lab");
    let set = |dns: &DnsServer, js: &[usize]| {
        let r = records(js);
        let r: Vec<&str> = r.iter().map(String::as_str).collect();
        dns.set_addresses(NAME, &r, 10);
    };
    set(&dns, &[0, 1]);
    let services = format!(
        "[resolvers.lab]\nnameservers = [\"{}\"]\nrefresh = \"200ms\"\ntimeout = \"300ms\"\n\n\
         [[frontend]]\nname = \"web\"\nbind = \"{VIP}:{PORT}\"\ndefault_backend = \"web\"\n\n\
         [[backend]]\nname = \"web\"\nforward = \"dsr-l2\"\n\
         server_template = {{ prefix = \"s\", count = 4, fqdn = \"{NAME}\", resolvers = \"lab\", init_addr = \"none\" }}\n",
        dns.addr
    );
    let config = lab
        .write_service_config("balancer.toml", "", &services)
        .unwrap();
    let daemon = lab.start_balancer(&config).expect("balancer run");
    let sources = lab.add_client_sources(0, CLIENTS).expect("client sources");
    let mut svc = Service {
        seen: vec![0; 3],
        lab,
        http,
        decap: Vec::new(),
        daemon,
        sources: sources.clone(),
    };

    let s1 = wait_slots(&svc, &[a[0], a[1]]);
    let r1 = svc.round("two servers", &sources, 2);
    let used: std::collections::BTreeSet<usize> =
        sources.iter().map(|c| Service::home(&r1, c)).collect();
    assert_eq!(used, [0, 1].into(), "both discovered servers get clients");

    // A third joins: the stick table keeps everyone where they are.
    set(&dns, &[0, 1, 2]);
    let s2 = wait_slots(&svc, &a);
    for (slot, addr) in &s1 {
        assert_eq!(&s2[slot], addr, "slot {slot} changed");
    }
    let r2 = svc.round("a third joined", &sources, 1);
    for c in &sources {
        assert_eq!(Service::home(&r2, c), Service::home(&r1, c), "{c} moved");
    }

    // Backend 0 leaves the records: only its clients move.
    set(&dns, &[2, 1]);
    wait_slots(&svc, &[a[1], a[2]]);
    let r3 = svc.round("one left", &sources, 2);
    let mut moved = 0;
    for c in &sources {
        let (was, now) = (Service::home(&r1, c), Service::home(&r3, c));
        if was == 0 {
            assert_ne!(now, 0, "{c} still on the server that left");
            moved += 1;
        } else {
            assert_eq!(now, was, "{c} moved although its server stayed");
        }
    }
    assert!(moved > 0);

    // Reordered records, then the DNS server gone: nobody moves.
    let before = slots(&svc);
    let q = dns.queries();
    set(&dns, &[1, 2]);
    dns.expect_queries(q, 6);
    dns.stop();
    svc.daemon.expect_logged(
        "DNS resolution of web.lab.test failed",
        Duration::from_secs(20),
    );
    assert_eq!(slots(&svc), before, "slots changed");
    let r4 = svc.round("reordered, DNS down", &sources, 1);
    for c in &sources {
        assert_eq!(Service::home(&r4, c), Service::home(&r3, c), "{c} moved");
    }
}
