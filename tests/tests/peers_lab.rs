//! Peers: two balancers (A and B, their own namespaces) in front of the
//! same three backends replicate their stick tables over an authenticated
//! TCP link. Which backend served whom is read from the backends' access
//! logs. B lists the servers in another order than A, so the two give the
//! servers different ids: entries travel by server name.

mod peer_client;
mod service;

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use balancer::peers::{listen::REFUSAL, wire::Msg};
use balancer_tests::{
    lab::{Lab, LabSpec, Node},
    proc::{Proc, wait_for},
    require_root,
};
use peer_client::PEER_PORT;
use serde_json::Value;
use service::{PORT, Service, VIP};

const CLIENTS: usize = 200;
const SECRET: &str = "lab-peers-secret-0123456789";

/// The lab: `svc.daemon` is A (in `svc.lab.balancer`), `b` runs in `b_node`.
struct Pair {
    svc: Service,
    b_node: Node,
    b: Proc,
    b_config: PathBuf,
    a_sock: PathBuf,
    b_sock: PathBuf,
}

fn services(order: &[usize], lab: &Lab) -> String {
    let servers: String = order
        .iter()
        .map(|&j| {
            format!(
                "[[backend.server]]\nname = \"s{j}\"\naddress = \"{}\"\n",
                lab.backends[j].ipv4
            )
        })
        .collect();
    format!(
        "[[frontend]]\nname = \"web\"\nbind = \"{VIP}:{PORT}\"\ndefault_backend = \"web\"\n\n\
         [[backend]]\nname = \"web\"\n\
         stick_table = {{ type = \"ip\", size = \"100k\", expire = \"30m\", peers = \"lb\" }}\n{servers}"
    )
}

fn peers_section(local: &str) -> String {
    format!(
        "[peers.lb]\nlocal = \"{local}\"\nsecret = \"{SECRET}\"\nscan_interval = \"100ms\"\n\
         [peers.lb.peer]\na = \"198.18.0.1:{PEER_PORT}\"\nb = \"198.18.0.2:{PEER_PORT}\"\n"
    )
}

fn write_config(lab: &Lab, name: &str, order: &[usize], local: &str) -> (PathBuf, PathBuf) {
    let pin = lab.pin_dir.join(name);
    let sock = lab.dir.join(format!("{name}.sock"));
    let path = lab.dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[dataplane]\ninterfaces = [\"eth0\"]\npin_dir = \"{}\"\n\n[admin]\nsocket = \"{}\"\n\n{}\n{}",
            pin.display(),
            sock.display(),
            services(order, lab),
            peers_section(local)
        ),
    )
    .unwrap();
    (path, sock)
}

fn setup() -> Pair {
    require_root();
    let mut lab = Lab::new(LabSpec {
        clients: 1,
        backends: 3,
    })
    .expect("lab");
    let b_node = lab.add_balancer().expect("second balancer");
    lab.hold_vips_on_backends(&[VIP.parse().unwrap()])
        .expect("VIPs on backends");
    let http = lab.start_http_backends(PORT).expect("HTTP backends");
    std::fs::create_dir_all(&lab.pin_dir).unwrap();
    let (a_config, a_sock) = write_config(&lab, "a", &[0, 1, 2], "a");
    let (b_config, b_sock) = write_config(&lab, "b", &[2, 0, 1], "b");
    let a = lab
        .start_balancer_in(&lab.balancer.clone(), &a_config, &[])
        .expect("balancer A");
    let b = lab
        .start_balancer_in(&b_node, &b_config, &[])
        .expect("balancer B");
    let sources = lab.add_client_sources(0, CLIENTS).expect("client sources");
    lab.route(&b_node, "198.18.8.0/22", lab.clients[0].ipv4)
        .unwrap();
    let pair = Pair {
        svc: Service {
            lab,
            http,
            decap: Vec::new(),
            daemon: a,
            seen: vec![0; 3],
            sources,
        },
        b_node,
        b,
        b_config,
        a_sock,
        b_sock,
    };
    pair.wait_links_up(Duration::from_secs(20));
    pair
}

impl Pair {
    fn cli(&self, sock: &Path, args: &[&str]) -> String {
        peer_client::cli(sock, args)
    }

    fn peers(&self, sock: &Path) -> Value {
        peer_client::cli_json(sock, &["peers", "status"])
    }

    /// State of the link from the daemon at `sock` to its one peer.
    fn outbound(&self, sock: &Path) -> String {
        self.peers(sock)["peers"][0]["outbound"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn wait_links_up(&self, within: Duration) {
        let ok = wait_for(within, || {
            self.outbound(&self.a_sock) == "up" && self.outbound(&self.b_sock) == "up"
        });
        assert!(
            ok,
            "peer links not up: A {} B {}\nA log: {}\nB log: {}",
            self.peers(&self.a_sock),
            self.peers(&self.b_sock),
            self.svc.daemon.output(),
            self.b.output()
        );
    }

    /// client -> (server name, server id) of the daemon at `sock`.
    fn table(&self, sock: &Path) -> BTreeMap<String, (String, u64)> {
        peer_client::table(sock)
    }

    fn by_name(t: &BTreeMap<String, (String, u64)>) -> BTreeMap<String, String> {
        t.iter().map(|(c, (s, _))| (c.clone(), s.clone())).collect()
    }

    /// Poll until A's and B's tables name the same server for every client
    /// and hold `n` entries; how long that took.
    fn wait_converged(&self, n: usize, within: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        wait_for(within, || {
            let a = Self::by_name(&self.table(&self.a_sock));
            a.len() == n && a == Self::by_name(&self.table(&self.b_sock))
        })
        .then(|| t0.elapsed())
    }

    /// Route the services (VIP network) through balancer `via`.
    fn route_via(&self, via: Ipv4Addr) {
        self.svc.lab.clients[0]
            .run(
                "ip",
                &["route", "replace", "198.18.2.0/24", "via", &via.to_string()],
            )
            .unwrap();
    }

    fn stick_hits(&self, sock: &Path) -> u64 {
        let v = peer_client::cli_json(sock, &["stats"]);
        v["frontends"]["web"]["stick_hits"].as_u64().unwrap()
    }
}

const A_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

#[test]
fn clients_keep_their_backend_through_the_other_balancer_and_after_a_reset() {
    let mut p = setup();
    let clients: Vec<Ipv4Addr> = p.svc.sources[..CLIENTS].to_vec();
    // Through A: first picks, then s1 down on A alone (its clients are
    // redispatched there), s1 back up (they stay where they went).
    let first = p.svc.round("first via A", &clients, 1);
    p.cli(&p.a_sock.clone(), &["backend", "state", "s1", "down"]);
    p.svc.round("s1 down via A", &clients, 1);
    p.cli(&p.a_sock.clone(), &["backend", "state", "s1", "up"]);
    let before = p.svc.round("before via A", &clients, 2);
    let redispatched = clients
        .iter()
        .filter(|c| Service::home(&first, c) != Service::home(&before, c))
        .count();
    assert!(redispatched > 0, "no client away from its Maglev pick");

    let took = p
        .wait_converged(CLIENTS, Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "B did not learn A's table: A {} B {}",
                p.peers(&p.a_sock),
                p.peers(&p.b_sock)
            )
        });
    println!("B had A's {CLIENTS} entries {took:?} after the last round");
    // Same servers, different ids: the wire carries names.
    let (ta, tb) = (p.table(&p.a_sock), p.table(&p.b_sock));
    assert!(
        ta.iter().any(|(c, (_, id))| tb[c].1 != *id),
        "A and B gave the servers the same ids; the test needs them to differ"
    );

    // Now every client goes through B.
    p.route_via(B_V4);
    let hits_before = p.stick_hits(&p.b_sock);
    let via_b = p.svc.round("via B", &clients, 2);
    for c in &clients {
        assert_eq!(
            Service::home(&via_b, c),
            Service::home(&before, c),
            "client {c} moved when routed through B"
        );
    }
    let hits = p.stick_hits(&p.b_sock) - hits_before;
    assert!(
        hits >= (CLIENTS * 2) as u64,
        "B's stick hits grew by {hits}: traffic did not go through B"
    );
    println!(
        "{redispatched} of {CLIENTS} clients were redispatched on A; all kept their server via B"
    );

    // Restart B with --reset: it starts empty and relearns from A.
    p.route_via(A_V4);
    p.b.stop().unwrap();
    p.b = p
        .svc
        .lab
        .start_balancer_in(&p.b_node.clone(), &p.b_config.clone(), &["--reset"])
        .expect("B --reset");
    let t0 = Instant::now();
    let relearned = wait_for(Duration::from_secs(5), || {
        Pair::by_name(&p.table(&p.b_sock)) == Pair::by_name(&p.table(&p.a_sock))
    });
    assert!(
        relearned,
        "B did not relearn A's table within 5 s of its restart: B has {} entries\nB log: {}",
        p.table(&p.b_sock).len(),
        p.b.output()
    );
    println!(
        "B relearned {CLIENTS} entries {:?} after its --reset restart",
        t0.elapsed()
    );
    assert!(p.b.output().contains("--reset: removed"), "B did not reset");
    p.route_via(B_V4);
    let after = p.svc.round("via B after its reset", &clients, 1);
    for c in &clients {
        assert_eq!(
            Service::home(&after, c),
            Service::home(&before, c),
            "client {c} moved after B's reset"
        );
    }
}

/// Dial A as `from` with `secret`; what A answered instead of a welcome.
fn impostor(ns: &str, from: &str, secret: &str) -> Option<Msg> {
    let s = peer_client::connect(ns, (A_V4, PEER_PORT).into(), None);
    match peer_client::dial(s, "lb", from, "a", secret) {
        Ok(_) => panic!("A accepted {from:?} with secret {secret:?}"),
        Err(answer) => answer,
    }
}

/// Write `bytes` to A's peer port; true when A closed the connection.
fn garbage(ns: &str, bytes: Vec<u8>) -> bool {
    let mut s = peer_client::connect(ns, (A_V4, PEER_PORT).into(), None);
    s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let _ = s.write_all(&bytes);
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn cut_link_converges_and_bad_peers_are_refused() {
    let mut p = setup();
    let all: Vec<Ipv4Addr> = p.svc.sources[..CLIENTS].to_vec();
    let (old, rest) = all.split_at(100);
    let (new_a, new_b) = rest.split_at(50);
    p.svc.round("first 100 via A", old, 1);
    assert!(
        p.wait_converged(100, Duration::from_secs(10)).is_some(),
        "B did not learn the first 100"
    );

    // Cut the link both ways.
    let (a_node, b_node) = (p.svc.lab.balancer.clone(), p.b_node.clone());
    let cut = |add: bool| {
        let verb = if add { "add" } else { "del" };
        a_node
            .run("ip", &["route", verb, "blackhole", &format!("{B_V4}/32")])
            .unwrap();
        b_node
            .run("ip", &["route", verb, "blackhole", &format!("{A_V4}/32")])
            .unwrap();
    };
    cut(true);
    assert!(
        wait_for(Duration::from_secs(15), || p.outbound(&p.a_sock) != "up"
            && p.outbound(&p.b_sock) != "up"),
        "links still up after the cut"
    );
    // New sticky clients on each side while cut.
    let a_side = p.svc.round("new via A while cut", new_a, 1);
    p.route_via(B_V4);
    let b_side = p.svc.round("new via B while cut", new_b, 1);
    // Deterministic first choice: clients new to A (B's new ones, not
    // replicated while cut) get on A the server B gave them (same Maglev
    // tables from the same config, whatever the server ids).
    p.route_via(A_V4);
    let first_on_a = p
        .svc
        .round("B's new clients via A while cut", &new_b[..20], 1);
    for c in &new_b[..20] {
        assert_eq!(
            Service::home(&first_on_a, c),
            Service::home(&b_side, c),
            "client {c}: A and B picked different servers for a new client"
        );
    }
    assert_eq!(p.table(&p.a_sock).len(), 170);
    assert_eq!(p.table(&p.b_sock).len(), 150);
    assert_ne!(
        Pair::by_name(&p.table(&p.a_sock)),
        Pair::by_name(&p.table(&p.b_sock)),
        "tables already agree while cut"
    );

    // Restore: links come back (backoff at most 2 s), then converge.
    cut(false);
    let t0 = Instant::now();
    p.wait_links_up(Duration::from_secs(15));
    let reconnected = t0.elapsed();
    let took = p
        .wait_converged(CLIENTS, Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "tables did not converge within 5 s of reconnection: A {} B {}",
                p.table(&p.a_sock).len(),
                p.table(&p.b_sock).len()
            )
        });
    println!("reconnected {reconnected:?} after the restore, converged {took:?} later");
    // Every client keeps its server through either balancer.
    let via_b = p.svc.round("all via B", &all, 1);
    p.route_via(A_V4);
    let via_a = p.svc.round("all via A", &all, 1);
    for c in &all {
        assert_eq!(Service::home(&via_a, c), Service::home(&via_b, c), "{c}");
    }
    for (side, m) in [(&a_side, new_a), (&b_side, new_b)] {
        for c in m {
            assert_eq!(Service::home(&via_a, c), Service::home(side, c), "{c}");
        }
    }

    // Bad peers, from the client's namespace: refused alike (the reasons
    // are in A's log).
    let ns = p.svc.lab.clients[0].ns.clone();
    for (from, secret) in [("b", "not-the-secret-at-all"), ("mallory", SECRET)] {
        match impostor(&ns, from, secret) {
            Some(Msg::Refused { reason }) => assert_eq!(reason, REFUSAL),
            other => panic!("{from} with {secret:?}: A answered {other:?}"),
        }
    }
    assert!(garbage(&ns, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()));
    // A plausible length, then a body that is no message (no variant 0xee).
    let mut junk = vec![0, 0, 0, 200, 0xee];
    junk.extend((1..200u32).map(|i| (i * 37 % 251) as u8));
    assert!(garbage(&ns, junk));
    assert!(garbage(&ns, vec![0xff; 100_000]));
    let log = p.svc.daemon.output();
    assert!(
        log.contains("failed authentication (bad HMAC")
            && log.contains("unknown peer name \"mallory\"")
            && log.contains("bad frame in the handshake"),
        "A's log does not show the refusals: {log}"
    );
    let st = p.peers(&p.a_sock);
    assert!(st["refused_handshakes"].as_u64().unwrap() >= 2, "{st}");
    assert!(st["bad_frames"].as_u64().unwrap() >= 3, "{st}");
    // The daemon and its real link are undisturbed: a new client via A
    // still reaches B's table.
    assert_eq!(p.outbound(&p.a_sock), "up");
    p.cli(
        &p.a_sock.clone(),
        &["table", "set", "web", "198.18.9.200", "s2"],
    );
    // Set by hand, not by a packet: found by the periodic full scan
    // (every refresh / 2 = 5 s here).
    assert!(
        wait_for(Duration::from_secs(20), || p
            .table(&p.b_sock)
            .get("198.18.9.200")
            .is_some_and(|(s, _)| s == "web/s2")),
        "replication stopped after the bad peers"
    );
    p.b.stop().unwrap();
}
