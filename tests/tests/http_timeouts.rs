//! HAProxy's timeouts, on every phase where a client or a server can hold
//! the proxy's resources by sending or taking nothing. The daemon runs with
//! `timeout_client = 1s` (so `http-request`, `http-keep-alive` and
//! `client-fin` are 1 s too) and `timeout_server = 1s` (the tunnel's
//! timeout is then 1 s as well); each case checks that the connection is
//! closed, or the request answered, within a few of those seconds, where
//! it used to be held for as long as the other side liked.
//!
//! And client faults are the client's: a request body that stalls is
//! answered 408 and one that is malformed 400, with no server blamed.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use balancer_tests::{http::Svc, stream::StreamBackend};

const FRONT: &str = "timeout_client = \"1s\"\n";
const BACK: &str = "timeout_server = \"1s\"\n";
/// How long a case waits at most for the proxy to close or answer.
const LIMIT: Duration = Duration::from_secs(4);

fn connect(to: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s
}

/// Reads until the proxy closes the connection; the bytes read and the
/// time it took. Panics if it stays open for `LIMIT`.
fn until_closed(s: &mut TcpStream, what: &str) -> (usize, Duration) {
    let (total, _, t) = answer_until_closed(s, what);
    (total, t)
}

/// As [`until_closed`], with the first 4 KiB read.
fn answer_until_closed(s: &mut TcpStream, what: &str) -> (usize, Vec<u8>, Duration) {
    let start = Instant::now();
    let (mut total, mut first) = (0, Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (total, first, start.elapsed()),
            Ok(n) => {
                total += n;
                let keep = n.min(4096usize.saturating_sub(first.len()));
                first.extend_from_slice(&buf[..keep]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (total, first, start.elapsed());
            }
            Err(e) => panic!("{what}: still open after {:?} ({e})", start.elapsed()),
        }
    }
}

/// `answer` is HAProxy's answer to a request head that did not come in
/// time.
fn assert_408(answer: &[u8]) {
    assert_eq!(
        status_of(answer),
        "408",
        "{}",
        String::from_utf8_lossy(answer)
    );
}

fn status_of(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// The daemon's HTTP counters (`balancer stats --json`).
fn http_stats(svc: &Svc) -> serde_json::Value {
    let out = svc.cli(&["stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("stats --json");
    v["http"].clone()
}

#[test]
fn idle_and_slow_clients_are_closed_in_time() {
    let b = StreamBackend::start().unwrap();
    let svc = Svc::start_on_with("to-client", FRONT, BACK, &[("s0", b.addr, "")]);

    // A connection that sends nothing: answered 408, as HAProxy does.
    let mut s = connect(svc.front);
    let (_, answer, t) = answer_until_closed(&mut s, "a silent connection");
    println!("silent connection closed after {t:?}");
    assert_408(&answer);

    // A request head sent a few bytes at a time (slowloris): the
    // http-request timeout runs from its first byte, not from the last,
    // and the client is told (408).
    let mut s = connect(svc.front);
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n").unwrap();
    let mut answer = Vec::new();
    let mut closed = false;
    while start.elapsed() < LIMIT && !closed {
        std::thread::sleep(Duration::from_millis(200));
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 512];
        loop {
            match s.read(&mut b) {
                Ok(0) => closed = true,
                Ok(n) => {
                    answer.extend_from_slice(&b[..n]);
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => closed = true,
            }
            break;
        }
        s.set_nonblocking(false).unwrap();
        if !closed && s.write_all(b"X-Slow: y\r\n").is_err() {
            closed = true;
        }
    }
    assert!(
        closed,
        "a trickled request head kept its connection for {LIMIT:?}"
    );
    println!("trickled head closed after {:?}", start.elapsed());
    assert_408(&answer);

    // Keep-alive: idle after a response.
    let mut s = connect(svc.front);
    s.write_all(b"GET /download/10 HTTP/1.1\r\nHost: lab\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(status_of(&head), "200");
    let (_, rest, t) = answer_until_closed(&mut s, "an idle keep-alive connection");
    println!("idle keep-alive connection closed after {t:?}");
    // Closed without a word, as HAProxy does between requests.
    assert!(
        !String::from_utf8_lossy(&rest).contains("408"),
        "an idle keep-alive connection was answered"
    );

    // HTTP/2: the preface and SETTINGS, then nothing.
    let mut s = connect(svc.front);
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    let (_, t) = until_closed(&mut s, "an idle HTTP/2 connection");
    println!("idle HTTP/2 connection closed after {t:?}");

    // A client that asks for a large body and never reads it.
    let len = 64 << 20;
    let mut s = connect(svc.front);
    s.write_all(format!("GET /download/{len} HTTP/1.1\r\nHost: lab\r\n\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (read, _) = until_closed(&mut s, "a client that does not read");
    println!("a client that did not read got {read} of {len} bytes, then the connection closed");
    assert!(
        read < len,
        "the whole body was kept for a client that does not read"
    );

    let st = http_stats(&svc);
    let timeouts = st["frontends"]["web"]["client_timeouts"].as_u64();
    assert!(timeouts >= Some(4), "client timeouts counted: {st}");
}

#[test]
fn a_slow_or_broken_upload_is_the_clients_fault() {
    let b = StreamBackend::start().unwrap();
    let svc = Svc::start_on_with("to-upload", FRONT, BACK, &[("s0", b.addr, "")]);

    // A body that stops halfway: 408.
    let mut s = connect(svc.front);
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: lab\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    let mut answer = vec![0u8; 512];
    let n = s.read(&mut answer).expect("an answer to a stalled upload");
    assert_eq!(
        status_of(&answer[..n]),
        "408",
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );

    // A malformed chunked body: 400.
    let mut s = connect(svc.front);
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: lab\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .unwrap();
    let n = s.read(&mut answer).expect("an answer to a malformed body");
    assert_eq!(
        status_of(&answer[..n]),
        "400",
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );

    let st = http_stats(&svc);
    let server = &st["servers"]["app/s0"];
    for kind in ["connect_errors", "response_errors", "timeouts"] {
        assert_eq!(
            server[kind].as_u64(),
            Some(0),
            "{kind} blamed the server: {st}"
        );
    }
    let fe = &st["frontends"]["web"];
    assert_eq!(fe["client_timeouts"].as_u64(), Some(1), "{st}");
    assert_eq!(fe["client_errors"].as_u64(), Some(1), "{st}");
}

#[test]
fn a_server_that_stalls_mid_body_or_a_silent_tunnel_is_cut() {
    // A server that sends 10 bytes of a 100-byte body, then nothing.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut b = [0u8; 4096];
                let _ = c.read(&mut b);
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
                std::thread::sleep(Duration::from_secs(30));
            });
        }
    });
    let svc = Svc::start_on_with("to-server", FRONT, BACK, &[("s0", addr, "")]);
    let mut s = connect(svc.front);
    s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n").unwrap();
    let (read, t) = until_closed(&mut s, "a response whose server stalled");
    println!("stalled response cut after {t:?} ({read} bytes)");

    // A WebSocket tunnel in which nothing moves.
    let b = StreamBackend::start().unwrap();
    let svc = Svc::start_on_with("to-tunnel", FRONT, BACK, &[("s0", b.addr, "")]);
    let mut s = connect(svc.front);
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: lab\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(status_of(&head), "101");
    let (_, t) = until_closed(&mut s, "a silent tunnel");
    println!("silent tunnel closed after {t:?}");
}
