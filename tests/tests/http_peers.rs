//! The guide's third configuration across two balancers: `stick on src`
//! on an HTTP backend whose table is replicated by `peers`. Entries the
//! proxy of A makes reach B through the same replication as the XDP
//! path's, so the same clients reach the same servers through B (by B's
//! table, not by chance: B answers them in another order and counts the
//! matches); a `kill -9` of B keeps them.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use balancer_tests::{
    http::{Backend, Client, Svc, free_port},
    proc::wait_for,
};

fn served(svc: &Svc, ip: IpAddr) -> String {
    Client::from(svc.front, ip)
        .get("/")
        .unwrap_or_else(|e| panic!("request from {ip}: {e}"))
        .body
}

/// client -> server, as `svc`'s `table show` lists them.
fn table(svc: &Svc) -> BTreeMap<String, String> {
    let out = svc.cli(&["table", "show", "--json"]);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("table show --json: {e}: {out}"));
    rows.iter()
        .map(|r| {
            (
                r["client"].as_str().unwrap().to_owned(),
                r["server"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn stick_matched(svc: &Svc) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&svc.cli(&["stats", "--json"])).unwrap();
    v["http"]["frontends"]["web"]["stick_matched"]
        .as_u64()
        .unwrap()
}

#[test]
fn entries_made_by_the_proxy_on_a_route_the_same_clients_through_b() {
    replicate(true);
}

/// The same without kernel maps (HTTP only, no pin_dir): the engine
/// replicates the table the daemons keep in memory, and a `kill -9`d B
/// gets its entries back from A (the resync of a new link), where the
/// pinned map kept them above.
#[test]
fn http_only_daemons_replicate_their_tables_in_memory() {
    replicate(false);
}

fn replicate(kernel: bool) {
    let launch = if kernel {
        Svc::launch
    } else {
        Svc::launch_in_memory
    };
    let tag = if kernel {
        "http-peers"
    } else {
        "http-peers-mem"
    };
    let backends: Vec<Backend> = (0..3)
        .map(|j| Backend::start(&format!("s{j}"), 0).expect("backend"))
        .collect();
    let (pa, pb) = (free_port().unwrap(), free_port().unwrap());
    let servers: String = backends
        .iter()
        .map(|b| {
            format!(
                "[[backend.server]]\nname = \"{}\"\naddress = \"{}\"\n",
                b.name, b.addr
            )
        })
        .collect();
    let instance = |local: &str| {
        format!(
            "{servers}\n[peers.lb]\nlocal = \"{local}\"\nsecret = \"http-peers-lab-secret\"\n\
             scan_interval = \"100ms\"\n[peers.lb.peer]\na = \"127.0.0.1:{pa}\"\nb = \"127.0.0.1:{pb}\"\n"
        )
    };
    let stick =
        "stick_table = { size = \"1k\", expire = \"5m\", peers = \"lb\" }\nstick = \"on src\"\n";
    let a = launch(&format!("{tag}-a"), "", stick, &instance("a"));
    let mut b = launch(&format!("{tag}-b"), "", stick, &instance("b"));
    assert_eq!(
        b.daemon
            .output()
            .contains("running: HTTP only (no XDP program"),
        !kernel,
        "{}",
        b.daemon.output()
    );

    let clients: Vec<IpAddr> = (0..12)
        .map(|j| IpAddr::V4(Ipv4Addr::new(127, 0, 5, 10 + j)))
        .collect();
    let mut home = BTreeMap::new();
    for &ip in &clients {
        home.insert(ip.to_string(), format!("app/{}", served(&a, ip)));
    }
    assert!(
        wait_for(Duration::from_secs(10), || table(&b) == home),
        "B's table {:?}, A's clients {home:?}",
        table(&b)
    );
    // Through B, in reverse order (B's own round robin would not repeat
    // A's choices), each client finds its server by B's table.
    for &ip in clients.iter().rev() {
        assert_eq!(
            format!("app/{}", served(&b, ip)),
            home[&ip.to_string()],
            "{ip}"
        );
    }
    assert_eq!(stick_matched(&b), 12);

    // kill -9 of B: its pinned table keeps the entries; in memory, A's
    // resync brings them back.
    b.daemon
        .stop_with(libc::SIGKILL, Duration::from_secs(5))
        .expect("kill -9");
    let config = b.dir.join("balancer.toml");
    b.start_again(&config);
    if kernel {
        assert_eq!(table(&b), home);
    }
    assert!(
        wait_for(Duration::from_secs(10), || table(&b) == home),
        "B's table after its restart {:?}, A's clients {home:?}",
        table(&b)
    );
    for &ip in &clients {
        assert_eq!(
            format!("app/{}", served(&b, ip)),
            home[&ip.to_string()],
            "{ip}"
        );
    }
    drop(backends);
}
