//! The proxy's balancing for users without a cookie, end to end on
//! loopback: `source` keeps each client address on one server and moves
//! only a removed server's clients; `leastconn` sends new requests away
//! from a server that has one in flight.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use balancer_tests::http::{Backend, Client, Svc};

/// Which server answered each of `clients` (two requests each, which must agree).
fn homes(svc: &Svc, clients: &[IpAddr]) -> BTreeMap<IpAddr, String> {
    clients
        .iter()
        .map(|&ip| {
            let mut c = Client::from(svc.front, ip);
            let a = c.get("/").unwrap().body;
            let b = c.get("/").unwrap().body;
            assert_eq!(a, b, "{ip} changed server between two requests");
            (ip, a)
        })
        .collect()
}

#[test]
fn source_balance_is_sticky_per_address_and_moves_only_a_removed_servers_clients() {
    let svc = Svc::start("http-source", "balance = \"source\"\n", "", 3);
    let clients: Vec<IpAddr> = (0..90u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, 10 + i)))
        .collect();
    let before = homes(&svc, &clients);
    let mut per = BTreeMap::new();
    for s in before.values() {
        *per.entry(s.clone()).or_insert(0) += 1;
    }
    assert_eq!(per.len(), 3, "every server gets clients: {per:?}");
    for n in per.values() {
        assert!((15..=45).contains(n), "uneven: {per:?}");
    }
    // Same again: the hash, not a counter, decides.
    assert_eq!(homes(&svc, &clients), before);
    svc.cli(&["backend", "remove", "s1"]);
    let after = homes(&svc, &clients);
    for ip in &clients {
        if before[ip] == "s1" {
            assert_ne!(after[ip], "s1");
        } else {
            assert_eq!(
                after[ip], before[ip],
                "{ip} moved although its server stayed"
            );
        }
    }
}

#[test]
fn leastconn_avoids_the_server_with_a_request_in_flight() {
    // Two servers; "/slow" is held for a while by whichever gets it, which
    // says so when it starts holding it.
    let busy = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let slow = |name: &'static str| {
        let busy = busy.clone();
        Backend::start_fn(name, 0, move |r| {
            if r.path == "/slow" {
                *busy.lock().unwrap() = Some(name.to_owned());
                std::thread::sleep(Duration::from_secs(2));
            }
            (200, String::new())
        })
        .unwrap()
    };
    let backends = [slow("s0"), slow("s1")];
    let servers: Vec<(&str, std::net::SocketAddr, &str)> = backends
        .iter()
        .map(|b| (b.name.as_str(), b.addr, ""))
        .collect();
    let svc = Svc::start_on("http-leastconn", "balance = \"leastconn\"\n", &servers);
    let front = svc.front;
    let held = std::thread::spawn(move || Client::new(front).get("/slow").unwrap().body);
    let busy = loop {
        if let Some(b) = busy.lock().unwrap().clone() {
            break b;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    for i in 0..10 {
        let got = Client::new(front).get("/").unwrap().body;
        assert_ne!(
            got, busy,
            "request {i} went to the server with a request in flight"
        );
    }
    assert_eq!(held.join().unwrap(), busy);
}
