//! Descriptors and connection caps: a daemon whose descriptor limit is low
//! (256) and whose HTTP frontend is flooded with idle connections keeps
//! its health checks (no server goes down: an out-of-descriptors check
//! changes nothing, and descriptors are set aside for checks), keeps
//! answering the admin API, and keeps serving new clients: at the
//! frontend's cap, the connection idle longest makes room.

use std::{
    net::TcpStream,
    time::{Duration, Instant},
};

use balancer_tests::http::{Backend, Client, Svc, checked_servers};

/// Idle connections opened at once: far more than the limit allows.
const FLOOD: usize = 600;
const NOFILE: u64 = 256;

#[test]
fn an_idle_flood_takes_no_server_down_and_new_clients_get_in() {
    let backends: Vec<Backend> = (0..2)
        .map(|j| Backend::start(&format!("s{j}"), 0).expect("backend"))
        .collect();
    let svc = Svc::launch_limited(
        "fd-flood",
        "",
        "",
        &checked_servers(&backends),
        Some(NOFILE),
    );
    let flood: Vec<TcpStream> = (0..FLOOD)
        .filter_map(|_| TcpStream::connect(svc.front).ok())
        .collect();
    println!("{} idle connections opened", flood.len());
    let start = Instant::now();
    let mut worst_status = Duration::ZERO;
    let mut worst_request = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(4) {
        let t = Instant::now();
        let list = svc.cli(&["backend", "list", "--json"]);
        worst_status = worst_status.max(t.elapsed());
        assert!(
            !list.contains("\"down\""),
            "a server went down under the flood: {list}\n{}",
            svc.daemon.output()
        );
        let t = Instant::now();
        let mut c = Client::new(svc.front);
        let a = c.get("/").expect("a new client is served during the flood");
        worst_request = worst_request.max(t.elapsed());
        assert_eq!(a.status, 200, "{a:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "during the flood: admin API within {worst_status:?}, new client within {worst_request:?}"
    );
    assert!(
        worst_status < Duration::from_secs(1),
        "admin API took {worst_status:?}"
    );
    assert!(
        worst_request < Duration::from_secs(1),
        "a new client waited {worst_request:?}"
    );
    drop(flood);
    let log = svc.daemon.output();
    let emfile = log.matches("Too many open files").count();
    assert!(emfile <= 2, "{emfile} descriptor errors logged:\n{log}");
    let stats = svc.cli(&["stats", "--json"]);
    println!("{stats}");
    assert!(
        stats.contains("\"evicted\""),
        "no eviction counter in stats: {stats}"
    );
    // And after: both servers up, requests served.
    let mut c = Client::new(svc.front);
    assert_eq!(c.get("/").unwrap().status, 200);
    let list = svc.cli(&["backend", "list", "--json"]);
    assert!(!list.contains("\"down\""), "{list}");
}

#[test]
fn a_maxconn_beyond_the_descriptor_limit_is_refused_at_start() {
    let backends = [Backend::start("s0", 0).expect("backend")];
    let tail = format!(
        "{}\n[global]\nmaxconn = 100000\n",
        checked_servers(&backends)
    );
    let r = balancer_tests::http::launch_http_limited("fd-maxconn", "", "", &tail, Some(NOFILE));
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("blb-{}-fd-maxconn", std::process::id())),
    );
    let Err(e) = r else {
        panic!("a daemon started with maxconn 100000 and {NOFILE} descriptors");
    };
    let e = e.to_string();
    assert!(
        e.contains("global.maxconn 100000 needs") && e.contains("the limit is 256"),
        "{e}"
    );
}
