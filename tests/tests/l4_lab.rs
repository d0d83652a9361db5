//! Source-IP affinity end to end, in a namespace lab with real TCP (see
//! `service`): hundreds of client sources, three backends, `dsr-l2` and
//! `ipip`, through a failure, a recovery and a drain.

mod service;

use std::net::Ipv4Addr;

use service::{Service, ServiceSpec, service};

const CLIENTS: usize = 240;
const NEW_CLIENTS: usize = 60;

fn affinity_survives_failure_recovery_and_drain(forward: &str) {
    let mut svc = service(&ServiceSpec {
        forward,
        dataplane: "",
        stick_size: "100k",
        ipv6_stick_size: None,
        sources: CLIENTS + NEW_CLIENTS,
        backend_extra: "",
        server_extra: "",
        haproxy_cfg: false,
    });
    let old: Vec<Ipv4Addr> = svc.sources[..CLIENTS].to_vec();
    let new: Vec<Ipv4Addr> = svc.sources[CLIENTS..].to_vec();

    // 1. Every client sticks to one backend; the load is spread evenly.
    let r1 = svc.round("first", &old, 3);
    let mut load = [0usize; 3];
    for src in &old {
        load[Service::home(&r1, src)] += 1;
    }
    let even = CLIENTS as f64 / 3.0;
    for (j, n) in load.iter().enumerate() {
        assert!(
            (*n as f64 - even).abs() <= 0.25 * even,
            "backend s{j} got {n} of {CLIENTS} clients, outside +-25% of {even:.0}: {load:?}"
        );
    }
    println!("{forward}: first round spread {load:?}");
    let count = svc.lab.cli(&["table", "count"]).unwrap();
    assert_eq!(count.trim(), CLIENTS.to_string(), "stick entries");

    // 2. s1 down: exactly its clients move; everyone else stays.
    svc.lab.cli(&["backend", "state", "s1", "down"]).unwrap();
    let r2 = svc.round("s1 down", &old, 2);
    let mut moved = 0;
    for src in &old {
        let (before, now) = (Service::home(&r1, src), Service::home(&r2, src));
        if before == 1 {
            assert_ne!(now, 1, "client {src} still on the down backend");
            moved += 1;
        } else {
            assert_eq!(now, before, "client {src} moved although s{before} is up");
        }
    }
    assert_eq!(moved, load[1]);

    // 3. s1 back: nobody moves back.
    svc.lab.cli(&["backend", "state", "s1", "up"]).unwrap();
    let r3 = svc.round("s1 up again", &old, 2);
    for src in &old {
        assert_eq!(
            Service::home(&r3, src),
            Service::home(&r2, src),
            "client {src} moved on recovery"
        );
    }

    // 4. s0 draining: its clients stay, new clients avoid it.
    svc.lab.cli(&["backend", "state", "s0", "drain"]).unwrap();
    let r4 = svc.round("s0 drains, old clients", &old, 2);
    for src in &old {
        assert_eq!(
            Service::home(&r4, src),
            Service::home(&r3, src),
            "client {src} moved while s0 drains"
        );
    }
    let r5 = svc.round("s0 drains, new clients", &new, 2);
    for src in &new {
        assert_ne!(
            Service::home(&r5, src),
            0,
            "new client {src} sent to the draining s0"
        );
    }
    let listing = svc.lab.cli(&["backend", "list"]).unwrap();
    assert!(listing.contains("drain"), "{listing}");

    let status = svc.daemon.stop().unwrap();
    assert!(status.success(), "{}", svc.daemon.output());
}

#[test]
fn dsr_l2_keeps_clients_on_their_backend_through_failure_recovery_and_drain() {
    affinity_survives_failure_recovery_and_drain("dsr-l2");
}

#[test]
fn ipip_keeps_clients_on_their_backend_through_failure_recovery_and_drain() {
    affinity_survives_failure_recovery_and_drain("ipip");
}

/// Wait until `backend list --json` shows `server` in `state`.
fn wait_state(svc: &Service, server: &str, state: &str) {
    let ok = balancer_tests::proc::wait_for(std::time::Duration::from_secs(10), || {
        let list = svc
            .lab
            .cli(&["backend", "list", "--json"])
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&list).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .any(|s| s["server"] == server && s["state"] == state)
    });
    assert!(
        ok,
        "{server} never became {state}: {}",
        svc.lab.cli(&["backend", "list"]).unwrap_or_default()
    );
}

#[test]
fn http_health_checks_take_a_dead_server_out_and_bring_it_back() {
    let mut svc = service(&ServiceSpec {
        forward: "dsr-l2",
        dataplane: "",
        stick_size: "100k",
        ipv6_stick_size: None,
        sources: 60,
        backend_extra: "check_type = \"http\"\ncheck_path = \"/\"\n",
        server_extra: "check = true\ninter = \"200ms\"\nrise = 2\nfall = 2\n",
        haproxy_cfg: false,
    });
    let clients = svc.sources.clone();
    let r1 = svc.round("all healthy", &clients, 2);
    let on_s1: Vec<Ipv4Addr> = clients
        .iter()
        .copied()
        .filter(|c| Service::home(&r1, c) == 1)
        .collect();
    assert!(!on_s1.is_empty(), "no client on s1");

    // s1's HTTP server dies: its checks fail, it goes down, its clients move.
    svc.http[1].stop().unwrap();
    wait_state(&svc, "s1", "down");
    let r2 = svc.round("s1 failed its checks", &clients, 2);
    for c in &clients {
        if Service::home(&r1, c) == 1 {
            assert_ne!(Service::home(&r2, c), 1);
        } else {
            assert_eq!(
                Service::home(&r2, c),
                Service::home(&r1, c),
                "client {c} moved"
            );
        }
    }
    let list = svc.lab.cli(&["backend", "list"]).unwrap();
    assert!(list.contains("check down"), "{list}");
    // Down after exactly `fall` failed checks (the time this takes is a
    // benchmark figure: `cargo xtask bench --only control-plane`).
    let log = svc.daemon.output();
    assert!(
        log.contains("server web/s1") && log.contains("check failed 2 times"),
        "{log}"
    );

    // Back: it rises after two good checks; nobody moves back.
    svc.http[1] = svc.lab.start_http_backend(1, service::PORT).unwrap();
    svc.seen[1] = 0;
    wait_state(&svc, "s1", "up");
    assert!(
        svc.daemon.output().contains("check passed 2 times: up"),
        "{}",
        svc.daemon.output()
    );
    let r3 = svc.round("s1 healthy again", &clients, 2);
    for c in &clients {
        assert_eq!(
            Service::home(&r3, c),
            Service::home(&r2, c),
            "client {c} moved on recovery"
        );
    }
    assert!(
        svc.daemon.stop().unwrap().success(),
        "{}",
        svc.daemon.output()
    );
    assert!(
        svc.daemon.output().contains("check failed 2 times"),
        "{}",
        svc.daemon.output()
    );
}

#[test]
fn table_and_weight_commands_steer_clients() {
    let mut svc = service(&ServiceSpec {
        forward: "dsr-l2",
        dataplane: "",
        stick_size: "100k",
        ipv6_stick_size: None,
        sources: 40,
        backend_extra: "",
        server_extra: "",
        haproxy_cfg: false,
    });
    let (first, later) = svc.sources.split_at(20);
    let (first, later) = (first.to_vec(), later.to_vec());
    let r1 = svc.round("start", &first, 1);

    // `table set`: pin a client to another server.
    let c = first[0];
    let target = (Service::home(&r1, &c) + 1) % 3;
    svc.lab
        .cli(&["table", "set", "web", &c.to_string(), &format!("s{target}")])
        .unwrap();
    let shown = svc
        .lab
        .cli(&["table", "show", "--client", &c.to_string(), "--json"])
        .unwrap();
    assert!(shown.contains(&format!("web/s{target}")), "{shown}");
    let r2 = svc.round("after table set", &[c], 2);
    assert_eq!(Service::home(&r2, &c), target, "table set did not move {c}");

    // `table clear --client`: the client is new again and Maglev picks.
    let cleared = svc
        .lab
        .cli(&["table", "clear", "--client", &c.to_string()])
        .unwrap();
    assert_eq!(cleared.trim(), "removed 1");
    // A client without an entry: nothing removed, and no error.
    let again = svc
        .lab
        .cli(&["table", "clear", "--client", &c.to_string()])
        .unwrap();
    assert_eq!(again.trim(), "removed 0");
    let r3 = svc.round("after table clear", &[c], 1);
    assert_eq!(
        Service::home(&r3, &c),
        Service::home(&r1, &c),
        "Maglev's pick for {c}"
    );
    assert_eq!(svc.lab.cli(&["table", "count"]).unwrap().trim(), "20");

    // Weight 0: new clients avoid s0, its existing clients stay.
    svc.lab.cli(&["backend", "weight", "s0", "0"]).unwrap();
    let r4 = svc.round("new clients, s0 weight 0", &later, 1);
    assert!(
        later.iter().all(|c| Service::home(&r4, c) != 0),
        "a new client reached s0"
    );
    let r5 = svc.round("old clients, s0 weight 0", &first, 1);
    for c in &first {
        assert_eq!(
            Service::home(&r5, c),
            Service::home(&r1, c),
            "client {c} moved"
        );
    }
    // Bad input: clear errors, nothing changes.
    let err = svc
        .lab
        .cli(&["table", "set", "web", "not-an-ip", "s0"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("client is not an IP address"), "{err}");
    let err = svc
        .lab
        .cli(&["backend", "state", "nosuch", "down"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no server named"), "{err}");
    assert!(
        svc.daemon.stop().unwrap().success(),
        "{}",
        svc.daemon.output()
    );
}
