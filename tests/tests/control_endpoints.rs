//! The control endpoints (admin API, metrics) bound what a client can hold
//! (issue 16 item 5): a request head must arrive within 5 s, and at most 16
//! connections are served at once, more waiting in the listen backlog
//! without taking a descriptor of the daemon. They had no timeout and no
//! cap: idle connections held a descriptor each, for ever.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

use balancer_tests::http::{Svc, free_port};

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Send `head` (not a whole request head) and wait for the server to close.
fn closed_within(mut s: impl std::io::Read + std::io::Write, head: &[u8]) -> Duration {
    let t = Instant::now();
    s.write_all(head).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return t.elapsed(),
            Ok(_) => {}
            Err(e) => panic!("not closed after {:?}: {e}", t.elapsed()),
        }
    }
}

#[test]
fn control_endpoints_time_out_slow_heads_and_cap_connections() {
    let port = free_port().unwrap();
    let svc = Svc::launch(
        "control-endpoints",
        "",
        "",
        &format!(
            "[[backend.server]]\nname = \"s0\"\naddress = \"127.0.0.1:9\"\n\n[metrics]\nbind = \"127.0.0.1:{port}\"\n"
        ),
    );
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // A head that never ends: closed after the header timeout.
    let s = TcpStream::connect(metrics).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let took = closed_within(s, b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
    assert!(
        took < Duration::from_secs(9),
        "metrics: closed after {took:?}"
    );
    let s = UnixStream::connect(svc.dir.join("admin.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let took = closed_within(s, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n");
    assert!(
        took < Duration::from_secs(9),
        "admin: closed after {took:?}"
    );

    // 100 idle connections: at most 16 take a descriptor.
    let pid = svc.daemon.pid();
    let before = fds(pid);
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(metrics).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = fds(pid) - before;
    assert!(held <= 16, "{held} descriptors for 100 idle connections");
    // Once they go, a scrape is answered.
    drop(idle);
    let mut s = TcpStream::connect(metrics).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
