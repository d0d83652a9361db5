//! A `mode tcp` haproxy.cfg (`balance source`, `stick-table`, `stick on
//! src`) run by `balancer run --config haproxy.cfg --interface eth0` on the
//! XDP path, in a namespace lab with real TCP: the clients stick and spread
//! as with the TOML, a server down moves only its clients.

mod service;

use service::{Service, ServiceSpec, service};

const CLIENTS: usize = 90;

#[test]
fn a_mode_tcp_haproxy_cfg_runs_on_the_xdp_path() {
    let mut svc = service(&ServiceSpec {
        forward: "dsr-l2",
        dataplane: "",
        stick_size: "64k",
        ipv6_stick_size: None,
        sources: CLIENTS,
        backend_extra: "",
        server_extra: "",
        haproxy_cfg: true,
    });
    let clients = svc.sources.clone();
    let r1 = svc.round("first", &clients, 2);
    let mut load = [0usize; 3];
    for src in &clients {
        load[Service::home(&r1, src)] += 1;
    }
    println!("spread over the three backends: {load:?}");
    assert!(
        load.iter().all(|n| *n > 0),
        "every backend serves: {load:?}"
    );
    let count = svc.lab.cli(&["table", "count"]).unwrap();
    assert_eq!(count.trim(), CLIENTS.to_string(), "stick entries");
    // s1 down: exactly its clients move.
    svc.lab.cli(&["backend", "state", "s1", "down"]).unwrap();
    let r2 = svc.round("s1 down", &clients, 2);
    for src in &clients {
        let (before, now) = (Service::home(&r1, src), Service::home(&r2, src));
        if before == 1 {
            assert_ne!(now, 1, "client {src} still on the down backend");
        } else {
            assert_eq!(now, before, "client {src} moved although s{before} is up");
        }
    }
}
