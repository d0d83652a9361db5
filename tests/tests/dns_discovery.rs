//! DNS service discovery end to end: a real DNS server on 127.0.0.1 (the
//! test's own, `balancer_tests::dns`), `balancer run` with a
//! `server_template` asking it, HTTP servers on the loopback addresses its
//! A/AAAA records name (127.0.0.x and ::1, one port), and users with cookie
//! jars, some of them sending requests all along while the test changes
//! the records: 3 addresses -> 3 servers with distinct dynamic cookies
//! (HAProxy's values); a 4th joins without moving anyone; a removed one
//! moves only its users; reordered records move nobody; a stopped DNS
//! server keeps the servers and is logged.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use balancer_tests::{
    dns::DnsServer,
    http::{Backend, Client, Svc},
    proc::wait_for,
};

const NAME: &str = "web.lab.test";
const KEY: &str = "lab-secret";
const COOKIE: &str = "SERVER";

/// HTTP backends named after their address ("127.0.0.2" ...), all on one
/// port, free on every address.
fn backends(addrs: &[&str]) -> (u16, Vec<Backend>) {
    for _ in 0..50 {
        let port = balancer_tests::http::free_port().unwrap();
        let started: Result<Vec<Backend>, _> = addrs
            .iter()
            .map(|a| {
                let ip: IpAddr = a.parse().unwrap();
                Backend::start_at(a, SocketAddr::new(ip, port), |_| (200, String::new()))
            })
            .collect();
        if let Ok(b) = started {
            return (port, b);
        }
    }
    panic!("no port free on all of {addrs:?}");
}

/// Slot name -> filled address (`None`: empty), from `backend list --json`.
fn slots(svc: &Svc) -> BTreeMap<String, Option<String>> {
    let v: serde_json::Value = serde_json::from_str(&svc.cli(&["backend", "list", "--json"]))
        .expect("backend list --json");
    v.as_array()
        .expect("an array")
        .iter()
        .filter(|s| s["dns"].is_object())
        .map(|s| {
            let addr = s["address"].as_str().unwrap_or_default();
            let filled = s["dns"]["record"].is_string().then(|| {
                addr.parse::<SocketAddr>()
                    .map(|sa| sa.ip().to_string())
                    .unwrap_or_else(|_| addr.to_owned())
            });
            (s["server"].as_str().unwrap().to_owned(), filled)
        })
        .collect()
}

fn filled(s: &BTreeMap<String, Option<String>>) -> Vec<String> {
    let mut v: Vec<String> = s.values().flatten().cloned().collect();
    v.sort();
    v
}

fn wait_filled(svc: &Svc, want: &[&str]) -> BTreeMap<String, Option<String>> {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let mut last = BTreeMap::new();
    let ok = wait_for(Duration::from_secs(30), || {
        last = slots(svc);
        filled(&last) == want
    });
    assert!(
        ok,
        "slots never held {want:?}: {last:?}\n{}",
        svc.daemon.output()
    );
    last
}

/// One request per user; (server that answered, cookie value) per user.
fn visit(users: &mut [Client]) -> Vec<(String, String)> {
    users
        .iter_mut()
        .map(|c| {
            let a = c.get("/").expect("request");
            assert_eq!(a.status, 200, "{a:?}");
            (a.body, c.jar.get(COOKIE).cloned().unwrap_or_default())
        })
        .collect()
}

/// The dynamic cookie value of a server, as HAProxy computes it.
/// A backend's `server_template` of `count` slots `web1..` for [`NAME`] on
/// `port`, filled only by the `lab` resolvers (`init_addr = "none"`).
fn name_template(count: usize, port: u16) -> String {
    format!(
        "server_template = {{ prefix = \"web\", count = {count}, fqdn = \"{NAME}\", \
         port = {port}, resolvers = \"lab\", init_addr = \"none\" }}\n"
    )
}

/// `[resolvers.lab]` asking `dns` every 200 ms, plus `extra` lines.
fn lab_resolvers(dns: &DnsServer, extra: &str) -> String {
    format!(
        "[resolvers.lab]\nnameservers = [\"{}\"]\nrefresh = \"200ms\"\n{extra}",
        dns.addr
    )
}

fn dynamic(addr: &str, port: u16) -> String {
    balancer::http::cookie::dynamic_value(KEY.as_bytes(), addr.parse().unwrap(), port)
}

#[test]
fn discovered_servers_follow_dns_and_keep_their_users() {
    let mut dns = DnsServer::start().expect("DNS server");
    dns.set_addresses(NAME, &["127.0.0.2", "127.0.0.3", "::1"], 5);
    let (port, _servers) = backends(&["127.0.0.2", "127.0.0.3", "127.0.0.4", "::1"]);
    let backend = format!(
        "cookie = \"{COOKIE} insert indirect nocache dynamic\"\n\
         dynamic_cookie_key = \"{KEY}\"\n{}",
        name_template(5, port)
    );
    let resolvers = lab_resolvers(&dns, "timeout = \"300ms\"\nretries = 2\n");
    let svc = Svc::launch("dns", "", &backend, &resolvers);
    let front = svc.front;

    // 3 addresses -> 3 servers with distinct dynamic cookies.
    let s0 = wait_filled(&svc, &["127.0.0.2", "127.0.0.3", "::1"]);
    assert_eq!(s0.len(), 5, "{s0:?}");
    let mut users: Vec<Client> = (0..60).map(|_| Client::new(front)).collect();
    let first = visit(&mut users);
    let mut cookie_of: BTreeMap<String, String> = BTreeMap::new();
    for (server, cookie) in &first {
        assert_eq!(cookie, &dynamic(server, port), "{server}'s cookie");
        cookie_of.insert(server.clone(), cookie.clone());
    }
    assert_eq!(cookie_of.len(), 3, "every server gets users: {cookie_of:?}");
    let distinct: std::collections::BTreeSet<&String> = cookie_of.values().collect();
    assert_eq!(distinct.len(), 3, "{cookie_of:?}");

    // Users who keep sending requests while the records change: each may
    // move at most once, and only away from the server that leaves.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::new(Mutex::new(vec![Vec::new(); 12]));
    let runner = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut clients: Vec<Client> = (0..12).map(|_| Client::new(front)).collect();
            while !stop.load(Ordering::Relaxed) {
                for (i, c) in clients.iter_mut().enumerate() {
                    let a = c.get("/").expect("request while DNS changes");
                    assert_eq!(a.status, 200, "{a:?}");
                    seen.lock().unwrap()[i].push(a.body);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // A 4th address joins: nobody moves, new users reach it.
    dns.set_addresses(NAME, &["127.0.0.2", "127.0.0.3", "::1", "127.0.0.4"], 5);
    let s1 = wait_filled(&svc, &["127.0.0.2", "127.0.0.3", "127.0.0.4", "::1"]);
    for (slot, addr) in &s0 {
        if addr.is_some() {
            assert_eq!(&s1[slot], addr, "slot {slot} changed: {s0:?} -> {s1:?}");
        }
    }
    assert_eq!(
        visit(&mut users),
        first,
        "a user moved when a server joined"
    );
    let mut newcomers: Vec<Client> = (0..40).map(|_| Client::new(front)).collect();
    let joined = visit(&mut newcomers);
    assert!(
        joined.iter().any(|(s, _)| s == "127.0.0.4"),
        "no new user reached the new server: {joined:?}"
    );
    let c4 = joined
        .iter()
        .find(|(s, _)| s == "127.0.0.4")
        .map(|(_, c)| c.clone());
    assert_eq!(c4, Some(dynamic("127.0.0.4", port)));

    // One leaves: only its users move (and get the cookie of their new server).
    dns.set_addresses(NAME, &["::1", "127.0.0.4", "127.0.0.2"], 5);
    let s2 = wait_filled(&svc, &["127.0.0.2", "127.0.0.4", "::1"]);
    for (slot, addr) in &s1 {
        if addr.as_deref() != Some("127.0.0.3") {
            assert_eq!(&s2[slot], addr, "slot {slot} changed: {s1:?} -> {s2:?}");
        }
    }
    let after = visit(&mut users);
    let mut moved = 0;
    for ((before, _), (now, cookie)) in first.iter().zip(&after) {
        if before == "127.0.0.3" {
            assert_ne!(now, "127.0.0.3");
            assert_eq!(cookie, &dynamic(now, port));
            moved += 1;
        } else {
            assert_eq!(now, before, "a user of a server that stayed moved");
        }
    }
    assert!(moved > 0);

    // Reordered records (and the same set again several times): nobody moves.
    let queries = dns.queries();
    dns.set_addresses(NAME, &["127.0.0.2", "::1", "127.0.0.4"], 7);
    dns.expect_queries(queries, 10);
    assert_eq!(slots(&svc), s2, "reordered records moved a slot");
    assert_eq!(visit(&mut users), after, "reordered records moved a user");

    // The DNS server stops: the servers stay, the failure is logged.
    dns.stop();
    svc.daemon.expect_logged(
        "DNS resolution of web.lab.test failed",
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(slots(&svc), s2, "a DNS outage changed the servers");
    assert_eq!(visit(&mut users), after, "a DNS outage moved a user");

    stop.store(true, Ordering::Relaxed);
    runner.join().expect("the users sending requests all along");
    for (i, seq) in seen.lock().unwrap().iter().enumerate() {
        assert!(!seq.is_empty());
        let mut changes = seq.windows(2).filter(|w| w[0] != w[1]);
        if let Some(w) = changes.next() {
            assert_eq!(
                w[0], "127.0.0.3",
                "user {i} moved away from a server that stayed"
            );
        }
        assert!(changes.next().is_none(), "user {i} moved twice: {seq:?}");
    }

    // `backend list` says where each server came from.
    let list = svc.cli(&["backend", "list"]);
    assert!(
        list.contains("dns web.lab.test: A 127.0.0.2 ttl 7s")
            && list.contains("dns web.lab.test: AAAA ::1 ttl 7s")
            && list.contains("dns web.lab.test: empty slot"),
        "{list}"
    );
}

#[test]
fn srv_records_give_addresses_and_ports() {
    let mut dns = DnsServer::start().expect("DNS server");
    let (pa, _a) = backends(&["127.0.0.5"]);
    let (pb, _b) = backends(&["127.0.0.6"]);
    dns.set_addresses("a.lab.test", &["127.0.0.5"], 30);
    dns.set_addresses("b.lab.test", &["127.0.0.6"], 30);
    dns.set_srv(
        "_http._tcp.lab.test",
        &[(0, 10, pa, "a.lab.test"), (0, 10, pb, "b.lab.test")],
        30,
    );
    let backend = "server_template = { prefix = \"srv\", count = 3, fqdn = \"_http._tcp.lab.test\", \
                   resolvers = \"lab\", init_addr = \"none\" }\n";
    let resolvers = format!(
        "[resolvers.lab]\nnameservers = [\"{}\"]\nrefresh = \"200ms\"\n",
        dns.addr
    );
    let svc = Svc::launch("dns-srv", "", backend, &resolvers);
    let front = svc.front;
    wait_filled(&svc, &["127.0.0.5", "127.0.0.6"]);
    let v: serde_json::Value =
        serde_json::from_str(&svc.cli(&["backend", "list", "--json"])).unwrap();
    let addrs: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["dns"]["record"].is_string())
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    assert!(addrs.contains(&format!("127.0.0.5:{pa}").as_str()), "{v}");
    assert!(addrs.contains(&format!("127.0.0.6:{pb}").as_str()), "{v}");
    let list = svc.cli(&["backend", "list"]);
    assert!(
        list.contains(&format!("SRV 0 10 {pa} a.lab.test. -> 127.0.0.5")),
        "{list}"
    );
    // Requests reach both.
    let got: std::collections::BTreeSet<String> = (0..10)
        .map(|_| Client::new(front).get("/").unwrap().body)
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    dns.stop();
}

#[test]
fn init_addr_libc_fills_slots_at_start() {
    // The system resolver knows "localhost" from /etc/hosts (no network).
    // (hickory answers "localhost" itself, RFC 6761, without asking the
    // configured nameserver, where nothing listens.)
    let (port, _b) = backends(&["127.0.0.1", "::1"]);
    let dead = balancer_tests::http::free_port().unwrap();
    let backend = format!(
        "server_template = {{ prefix = \"l\", count = 2, fqdn = \"localhost\", port = {port}, \
         resolvers = \"lab\", init_addr = \"libc\" }}\n"
    );
    let resolvers =
        format!("[resolvers.lab]\nnameservers = [\"127.0.0.1:{dead}\"]\nrefresh = \"200ms\"\n");
    let svc = Svc::launch("dns-libc", "", &backend, &resolvers);
    let front = svc.front;
    // Filled before the daemon said it runs: by libc, not by DNS.
    assert!(
        svc.daemon
            .output()
            .contains("from localhost (libc 127.0.0.1, ttl 0s)"),
        "{}",
        svc.daemon.output()
    );
    let s = slots(&svc);
    assert!(s.values().flatten().any(|a| a == "127.0.0.1"), "{s:?}");
    let got = Client::new(front).get("/").unwrap().body;
    assert!(got == "127.0.0.1" || got == "::1", "{got}");
}

#[test]
fn a_name_that_stops_existing_empties_the_slots_after_hold_nx() {
    let dns = DnsServer::start().expect("DNS server");
    let (port, _b) = backends(&["127.0.0.7", "127.0.0.8"]);
    dns.set_addresses(NAME, &["127.0.0.7", "127.0.0.8"], 5);
    let backend = name_template(2, port);
    let resolvers = lab_resolvers(&dns, "hold_nx = \"4s\"\n");
    let svc = Svc::launch("dns-nx", "", &backend, &resolvers);
    let front = svc.front;
    wait_filled(&svc, &["127.0.0.7", "127.0.0.8"]);
    // NXDOMAIN: the servers stay for hold_nx (logged), then go to maint.
    dns.remove(NAME);
    svc.daemon.expect_logged(
        "web.lab.test has no address: its 2 server(s) stay",
        Duration::from_secs(10),
    );
    assert_eq!(filled(&slots(&svc)).len(), 2, "emptied before hold_nx");
    wait_filled(&svc, &[]);
    assert_eq!(Client::new(front).get("/").unwrap().status, 503);
    // The name comes back: the slots fill again.
    dns.set_addresses(NAME, &["127.0.0.8"], 5);
    wait_filled(&svc, &["127.0.0.8"]);
    assert_eq!(Client::new(front).get("/").unwrap().body, "127.0.0.8");
}

#[test]
fn a_reload_keeps_the_discovered_servers() {
    let mut dns = DnsServer::start().expect("DNS server");
    let (port, _b) = backends(&["127.0.0.9", "127.0.0.10"]);
    dns.set_addresses(NAME, &["127.0.0.10", "127.0.0.9"], 5);
    let backend = name_template(3, port);
    let resolvers = lab_resolvers(&dns, "");
    let svc = Svc::launch("dns-reload", "", &backend, &resolvers);
    let before = wait_filled(&svc, &["127.0.0.9", "127.0.0.10"]);
    // With the DNS server gone nothing could refill the slots: what they
    // hold after the reload is what the reload kept.
    dns.stop();
    svc.daemon.signal(libc::SIGHUP).unwrap();
    svc.daemon
        .expect_logged("reloaded:", Duration::from_secs(20));
    assert!(
        svc.daemon
            .output()
            .contains("keeps its 2 address(es) across the reload")
    );
    assert_eq!(slots(&svc), before, "the reload changed the slots");
    svc.daemon.expect_logged(
        "DNS resolution of web.lab.test failed",
        Duration::from_secs(20),
    );
    assert_eq!(slots(&svc), before);
}

#[test]
fn records_naming_no_usable_server_fill_no_slot() {
    let dns = DnsServer::start().expect("DNS server");
    dns.set_addresses(
        NAME,
        &[
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "127.0.0.2",
            "::",
            "ff02::1",
        ],
        5,
    );
    let port = balancer_tests::http::free_port().unwrap();
    let svc = Svc::launch(
        "dns-unusable",
        "",
        &name_template(6, port),
        &lab_resolvers(&dns, ""),
    );
    wait_filled(&svc, &["127.0.0.2"]);
    // And still only that one some refreshes later.
    dns.expect_queries(dns.queries(), 6);
    assert_eq!(filled(&slots(&svc)), ["127.0.0.2"]);
    svc.daemon.expect_logged(
        "ignored record(s) naming no usable server: A 0.0.0.0, A 224.0.0.1, A 255.255.255.255, AAAA ::, AAAA ff02::1",
        Duration::from_secs(5),
    );
}
