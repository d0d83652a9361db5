//! HAProxy's `stick on src` on an HTTP backend, end to end on loopback:
//! clients from many 127/8 source addresses keep their server across
//! connections; the entries are the backend's table in the pinned map
//! (`table show|count|set|clear`, kept by a `kill -9` and a restart); a
//! server in maintenance loses its clients, whose entries are overwritten;
//! a key mask puts clients of one network on one server.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use balancer_tests::{
    http::{Backend, Client, Svc, free_port, scrape, server_tables},
    proc::wait_for,
};

const STICK: &str = "stick_table = { size = \"1k\", expire = \"30s\" }\nstick = \"on src\"\n";

fn client(i: u8, j: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, i, j))
}

/// The server that answers one request from `ip` on a new connection.
fn served(svc: &Svc, ip: IpAddr) -> String {
    Client::from(svc.front, ip)
        .get("/")
        .unwrap_or_else(|e| panic!("request from {ip}: {e}"))
        .body
}

fn rows(svc: &Svc) -> Vec<serde_json::Value> {
    let out = svc.cli(&["table", "show", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("table show --json: {e}: {out}"))
}

/// client -> server ("app/sN") as `table show` lists them (after the
/// flusher wrote them, within 100 ms).
fn table(svc: &Svc, want: usize) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    wait_for(Duration::from_secs(3), || {
        t = rows(svc)
            .iter()
            .map(|r| {
                assert_eq!(r["backend"], "app", "{r}");
                (
                    r["client"].as_str().unwrap().to_owned(),
                    r["server"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        t.len() == want
    });
    t
}

fn restart_killed(svc: &mut Svc) {
    svc.daemon
        .stop_with(libc::SIGKILL, Duration::from_secs(5))
        .expect("kill -9");
    let config = svc.dir.join("balancer.toml");
    svc.start_again(&config);
}

#[test]
fn stick_on_src_keeps_clients_in_the_pinned_table_across_a_kill() {
    let mut svc = Svc::start("http-stick", STICK, "", 3);
    let clients: Vec<IpAddr> = (0..12).map(|j| client(2, 10 + j)).collect();
    // Round robin alone would rotate each client's new connections over
    // the three servers.
    let mut home = BTreeMap::new();
    for &ip in &clients {
        let first = served(&svc, ip);
        for _ in 0..3 {
            assert_eq!(served(&svc, ip), first, "{ip} moved");
        }
        home.insert(ip.to_string(), format!("app/{first}"));
    }
    let per: std::collections::BTreeSet<&String> = home.values().collect();
    assert_eq!(per.len(), 3, "new clients are balanced: {home:?}");
    assert_eq!(table(&svc, 12), home);
    assert_eq!(
        svc.cli(&["table", "count", "--frontend", "web"]).trim(),
        "12"
    );
    let shown = svc.cli(&["table", "show"]);
    assert!(shown.contains("backend/app"), "{shown}");
    // Sorted by client, with the time left before each entry expires
    // (expire 30s), as a person reads it.
    assert!(
        shown.lines().next().unwrap().ends_with("expires in"),
        "{shown}"
    );
    let rows: Vec<Vec<&str>> = shown
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let listed: Vec<std::net::IpAddr> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "{shown}");
    for r in &rows {
        let left: f64 = r[4].strip_suffix('s').unwrap().parse().unwrap();
        assert!(left > 0.0 && left <= 30.0, "{shown}");
    }

    // kill -9, then a new daemon on the same pins: the entries are kept,
    // and the proxy follows them.
    restart_killed(&mut svc);
    assert_eq!(table(&svc, 12), home);
    for &ip in &clients {
        assert_eq!(
            format!("app/{}", served(&svc, ip)),
            home[&ip.to_string()],
            "{ip}"
        );
    }

    // `table set` moves a client at once; `table clear` forgets one.
    let ip = clients[0];
    let other = ["s0", "s1", "s2"]
        .into_iter()
        .find(|s| format!("app/{s}") != home[&ip.to_string()])
        .unwrap();
    // (--json: the daemon's answer, the entry as `table show --json` has it.)
    let set: serde_json::Value =
        serde_json::from_str(&svc.cli(&["table", "set", "web", &ip.to_string(), other, "--json"]))
            .unwrap();
    assert_eq!(set["client"], ip.to_string(), "{set}");
    assert_eq!(set["server"], format!("app/{other}"), "{set}");
    assert_eq!(served(&svc, ip), other);
    assert_eq!(
        svc.cli(&[
            "table",
            "clear",
            "--frontend",
            "web",
            "--client",
            &clients[1].to_string()
        ])
        .trim(),
        "removed 1"
    );
    assert_eq!(table(&svc, 11).len(), 11);
}

#[test]
fn a_server_in_maintenance_loses_its_clients_and_their_entries_are_overwritten() {
    let svc = Svc::start("http-stick-maint", STICK, "", 3);
    let clients: Vec<IpAddr> = (0..9).map(|j| client(3, 10 + j)).collect();
    let before: BTreeMap<IpAddr, String> =
        clients.iter().map(|&ip| (ip, served(&svc, ip))).collect();
    svc.cli(&["backend", "state", "s0", "maint"]);
    let moved: Vec<IpAddr> = clients
        .iter()
        .copied()
        .filter(|ip| before[ip] == "s0")
        .collect();
    assert!(!moved.is_empty(), "{before:?}");
    let mut after = BTreeMap::new();
    for &ip in &clients {
        let now = served(&svc, ip);
        if before[&ip] == "s0" {
            assert_ne!(now, "s0", "{ip} went to a server in maintenance");
        } else {
            assert_eq!(now, before[&ip], "{ip} moved although its server stayed");
        }
        after.insert(ip, now);
    }
    // The new server is stored: back from maintenance, s0 gets none of them.
    svc.cli(&["backend", "state", "s0", "up"]);
    for &ip in &clients {
        assert_eq!(served(&svc, ip), after[&ip], "{ip}");
    }
    let t = table(&svc, 9);
    for ip in &moved {
        assert_eq!(t[&ip.to_string()], format!("app/{}", after[ip]));
    }
    let stats = svc.cli(&["stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let fe = &v["http"]["frontends"]["web"];
    assert!(
        fe["stick_unusable"].as_u64().unwrap() >= moved.len() as u64,
        "{fe}"
    );
    assert!(fe["stick_matched"].as_u64().unwrap() > 0, "{fe}");
}

#[test]
fn a_key_mask_puts_the_clients_of_one_network_on_one_server() {
    let svc = Svc::start(
        "http-stick-mask",
        "stick_table = { size = \"1k\", key_mask_v4 = 24 }\nstick = \"on src\"\n",
        "",
        3,
    );
    // The first client of each /24 is balanced (round robin: the networks
    // spread); every other client of that /24 goes where it went.
    let mut nets = BTreeMap::new();
    for i in 20..26u8 {
        let first = served(&svc, client(i, 1));
        for j in [2, 77, 254] {
            assert_eq!(served(&svc, client(i, j)), first, "127.0.{i}.{j}");
        }
        nets.insert(i, first);
    }
    let servers: std::collections::BTreeSet<&String> = nets.values().collect();
    assert!(servers.len() > 1, "networks spread: {nets:?}");
    // One entry per network, keyed by the network's address.
    let t = table(&svc, 6);
    for (i, s) in &nets {
        assert_eq!(t[&format!("127.0.{i}.0")], format!("app/{s}"), "{t:?}");
    }
}

#[test]
fn metrics_count_http_entries_and_a_removed_servers_entries_go() {
    let backends: Vec<Backend> = (0..3)
        .map(|j| Backend::start(&format!("s{j}"), 0).expect("backend"))
        .collect();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let mut tail = server_tables(&backends, false, "");
    tail.push_str(&format!(
        "\n[metrics]\nbind = \"{metrics}\"\ntable_count_interval = \"1s\"\n"
    ));
    let svc = Svc::launch("http-stick-metrics", "", STICK, &tail);
    let clients: Vec<IpAddr> = (0..6).map(|j| client(6, 10 + j)).collect();
    let mut home = BTreeMap::new();
    for _ in 0..2 {
        for &ip in &clients {
            home.insert(ip, served(&svc, ip));
        }
    }
    let stick = |m: &BTreeMap<String, f64>, outcome: &str| {
        m.get(&format!(
            "balancer_http_stick_total{{frontend=\"web\",outcome=\"{outcome}\"}}"
        ))
        .copied()
    };
    let mut m = BTreeMap::new();
    assert!(
        wait_for(Duration::from_secs(5), || {
            m = scrape(metrics);
            m.get("balancer_stick_table_entries") == Some(&6.0)
        }),
        "{m:#?}"
    );
    assert_eq!(stick(&m, "absent"), Some(6.0), "{m:#?}");
    assert_eq!(stick(&m, "matched"), Some(6.0), "{m:#?}");

    // A removed server's entries leave the table at once; its clients
    // get new servers (and entries).
    let gone: Vec<IpAddr> = clients
        .iter()
        .copied()
        .filter(|ip| home[ip] == "s0")
        .collect();
    assert!(!gone.is_empty(), "{home:?}");
    svc.cli(&["backend", "remove", "app/s0"]);
    let t = table(&svc, 6 - gone.len());
    assert!(t.values().all(|s| s != "app/s0"), "{t:?}");
    for &ip in &gone {
        assert_ne!(served(&svc, ip), "s0");
    }
    assert_eq!(table(&svc, 6).len(), 6);
    drop(backends);
}

#[test]
fn a_reload_keeps_the_entries_unless_the_key_changes() {
    let svc = Svc::start("http-stick-reload", STICK, "", 3);
    let clients: Vec<IpAddr> = (0..6).map(|j| client(7, 10 + j)).collect();
    let home: BTreeMap<IpAddr, String> = clients.iter().map(|&ip| (ip, served(&svc, ip))).collect();
    let config = svc.dir.join("balancer.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    // Another expire: the same key, the entries stay and still route.
    std::fs::write(
        &config,
        text.replace("expire = \"30s\"", "expire = \"60s\""),
    )
    .unwrap();
    svc.reload();
    assert_eq!(table(&svc, 6).len(), 6);
    for &ip in &clients {
        assert_eq!(served(&svc, ip), home[&ip], "{ip}");
    }
    // A key mask: the old keys could never match again; they are dropped,
    // and the clients' network gets one entry.
    std::fs::write(
        &config,
        text.replace("expire = \"30s\"", "expire = \"30s\", key_mask_v4 = 24"),
    )
    .unwrap();
    svc.reload();
    assert!(table(&svc, 0).is_empty());
    let first = served(&svc, clients[0]);
    for &ip in &clients {
        assert_eq!(served(&svc, ip), first, "{ip}: the /24 shares one entry");
    }
    let t = table(&svc, 1);
    assert_eq!(t["127.0.7.0"], format!("app/{first}"), "{t:?}");
}
