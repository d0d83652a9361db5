//! Per-server `maxconn` with its queue and `timeout queue`, and the cap on
//! HTTP/2 streams per connection: one client connection cannot make the
//! proxy open hundreds of server connections, and a server gets at most
//! `maxconn` requests at once while the others wait their turn.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use balancer_tests::{h2::burst as h2_burst, http::Svc};

/// A server that holds every request for `hold` before answering, and
/// records how many it held at once at most.
struct Slow {
    addr: SocketAddr,
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Slow {
    fn start(hold: Duration) -> Slow {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, m) = (now.clone(), most.clone());
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let (n, m) = (n.clone(), m.clone());
                std::thread::spawn(move || serve_slow(c, hold, &n, &m));
            }
        });
        Slow { addr, now, most }
    }
}

fn serve_slow(c: TcpStream, hold: Duration, now: &AtomicUsize, most: &AtomicUsize) {
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    loop {
        let mut line = String::new();
        let mut len = 0usize;
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(at_once, Ordering::SeqCst);
        std::thread::sleep(hold);
        now.fetch_sub(1, Ordering::SeqCst);
        if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn one_http2_connection_opens_at_most_its_stream_cap_of_server_connections() {
    let slow = Slow::start(Duration::from_millis(500));
    let svc = Svc::start_on_with("q-h2", "", "", &[("s0", slow.addr, "")]);
    let statuses = h2_burst(svc.front, 300);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let most = slow.most.load(Ordering::SeqCst);
    println!("300 streams on one connection: the server held {most} requests at once");
    assert!(
        most <= 100,
        "one HTTP/2 connection had {most} requests at the server at once"
    );
}

#[test]
fn a_server_gets_at_most_maxconn_requests_and_the_rest_wait_their_turn() {
    let slow = Slow::start(Duration::from_millis(200));
    let svc = Svc::start_on_with(
        "q-maxconn",
        "",
        "timeout_queue = \"10s\"\n",
        &[("s0", slow.addr, "maxconn = 3")],
    );
    let front = svc.front;
    let burst = std::thread::spawn(move || h2_burst(front, 30));
    // Meanwhile (30 requests of 200 ms, 3 at a time: 2 s), the server's
    // gauge shows it full.
    let current = |svc: &Svc| {
        let out = svc.cli(&["stats", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["http"]["servers"]["app/s0"]["current"].as_u64()
    };
    let full = balancer_tests::proc::wait_for(Duration::from_secs(2), || current(&svc) == Some(3));
    let statuses = burst.join().unwrap();
    assert!(full, "the server's current requests never showed 3");
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let most = slow.most.load(Ordering::SeqCst);
    println!("30 requests, maxconn 3: the server held {most} at once");
    assert!(most <= 3, "the server held {most} requests at once");
    assert_eq!(slow.now.load(Ordering::SeqCst), 0);
    assert_eq!(current(&svc), Some(0));
}

#[test]
fn a_request_that_waits_longer_than_timeout_queue_gets_503() {
    let slow = Slow::start(Duration::from_millis(1500));
    let svc = Svc::start_on_with(
        "q-timeout",
        "",
        "timeout_queue = \"300ms\"\n",
        &[("s0", slow.addr, "maxconn = 1")],
    );
    // The first alone, then three at once: one is served, two time out.
    let mut statuses = h2_burst(svc.front, 4);
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503, 503]);
    let out = svc.cli(&["stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["http"]["frontends"]["web"]["queue_timeouts"].as_u64(),
        Some(2),
        "{out}"
    );
}
