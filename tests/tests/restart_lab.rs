//! Restart without losing the stick table: `kill -9` the daemon while
//! clients hold sticky sessions, start it again, and check with real
//! traffic that every client is still on its server and that a TCP
//! connection opened before the kill keeps working across it. Then
//! `--reset` starts clean and `balancer detach` removes everything.

mod service;

use std::{net::Ipv4Addr, time::Duration};

use balancer_tests::proc::wait_for;
use service::{PORT, Service, ServiceSpec, VIP, service};

const CLIENTS: usize = 200;

#[test]
fn kill_9_and_restart_keeps_every_client_and_open_connections() {
    let mut svc = service(&ServiceSpec {
        forward: "dsr-l2",
        dataplane: "",
        stick_size: "100k",
        ipv6_stick_size: None,
        sources: CLIENTS + 1,
        backend_extra: "",
        server_extra: "",
        haproxy_cfg: false,
    });
    let clients: Vec<Ipv4Addr> = svc.sources[..CLIENTS].to_vec();
    let held_src = svc.sources[CLIENTS];
    // Make many stick entries differ from what Maglev would pick, so that
    // only the stick table (not a recomputed Maglev table) can keep them:
    // s1 goes down (its clients move) and comes back (they stay away).
    let first = svc.round("first", &clients, 1);
    svc.lab.cli(&["backend", "state", "s1", "down"]).unwrap();
    svc.round("s1 down", &clients, 1);
    svc.lab.cli(&["backend", "state", "s1", "up"]).unwrap();
    let before = svc.round("before the kill", &clients, 2);
    let off_maglev = clients
        .iter()
        .filter(|c| Service::home(&first, c) != Service::home(&before, c))
        .count();
    assert!(off_maglev > 0, "no client away from its Maglev pick");
    assert_eq!(
        svc.lab.cli(&["table", "count"]).unwrap().trim(),
        CLIENTS.to_string()
    );
    // The held connection's client too, pinned away from its Maglev pick.
    let probe = svc.round("held client probe", &[held_src], 1);
    let held_home = (Service::home(&probe, &held_src) + 1) % 3;
    svc.lab
        .cli(&[
            "table",
            "set",
            "web",
            &held_src.to_string(),
            &format!("s{held_home}"),
        ])
        .unwrap();

    // A connection whose handshake went through the first daemon's program.
    let go = svc.lab.dir.join("go");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/held_connection.py");
    let held = svc
        .lab
        .spawn(
            &svc.lab.clients[0],
            "held",
            "python3",
            &[
                script,
                VIP,
                &PORT.to_string(),
                &held_src.to_string(),
                go.to_str().unwrap(),
            ],
        )
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || held
            .output()
            .contains("connected")),
        "held connection did not open: {}",
        held.output()
    );

    // kill -9: no cleanup runs. XDP must stay attached.
    let attached = svc.lab.xdp_attached(&svc.lab.balancer).unwrap();
    svc.daemon
        .stop_with(libc::SIGKILL, Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        svc.lab.xdp_attached(&svc.lab.balancer).unwrap(),
        attached,
        "XDP must stay attached after kill -9"
    );

    // Restart with the same config: adopts the pinned maps and link.
    let config = svc.lab.dir.join("balancer.toml");
    svc.daemon = svc.lab.start_balancer(&config).expect("restart");
    let log = svc.daemon.output();
    assert!(
        log.contains("adopted pinned state") && log.contains("took over the XDP attachment"),
        "restart did not take over: {log}"
    );
    let prog_after = svc.lab.xdp_attached(&svc.lab.balancer).unwrap();
    assert!(prog_after.is_some(), "XDP attached after restart");
    assert_ne!(prog_after, attached, "the new daemon's program runs now");

    // The held connection completes on the server of its handshake.
    std::fs::write(&go, b"go").unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || held
            .output()
            .contains("answer:")
            || held.output().contains("ERR")),
        "held connection: no outcome: {}",
        held.output()
    );
    let out = held.output();
    assert!(
        out.contains(&format!("answer: backend s{held_home}")),
        "the connection opened before the kill broke: {out}"
    );

    // Every client is still on its server (their backends' logs say so).
    let after = svc.round("after the restart", &clients, 2);
    for src in &clients {
        assert_eq!(
            Service::home(&after, src),
            Service::home(&before, src),
            "client {src} moved across the restart"
        );
    }
    println!("{off_maglev} of {CLIENTS} clients were away from their Maglev pick; all stayed");
    assert_eq!(
        svc.lab.cli(&["table", "count"]).unwrap().trim(),
        (CLIENTS + 1).to_string(),
        "stick entries after the restart"
    );

    // --reset: a clean start (empty table), still attached.
    svc.daemon.stop().unwrap();
    assert!(
        svc.lab.xdp_attached(&svc.lab.balancer).unwrap().is_some(),
        "SIGTERM leaves XDP attached"
    );
    svc.daemon = svc
        .lab
        .start_balancer_with(&config, &["--reset"])
        .expect("run --reset");
    assert_eq!(svc.lab.cli(&["table", "count"]).unwrap().trim(), "0");

    // detach: refused while the daemon runs, then removes everything.
    let busy = svc
        .lab
        .balancer
        .command(balancer_tests::balancer_bin())
        .args(["detach", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!busy.status.success());
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(err.contains("locked"), "{err}");
    svc.daemon.stop().unwrap();
    svc.lab
        .balancer
        .run(
            balancer_tests::balancer_bin().to_str().unwrap(),
            &["detach", "--config", config.to_str().unwrap()],
        )
        .expect("detach");
    assert_eq!(svc.lab.xdp_attached(&svc.lab.balancer).unwrap(), None);
    assert!(!svc.lab.pin_dir.exists(), "pins left after detach");
}
