//! The HTTP path end to end on loopback: `balancer run` with an http
//! frontend (no XDP interface), three real backends, and 1,000 clients
//! with cookie jars (see `balancer_tests::http`). Which server answered is
//! the backend's own body; what the backend received is its own record.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use balancer_tests::{
    http::{Client, Svc},
    proc::wait_for,
};

const CLIENTS: usize = 1000;
const REQUESTS: usize = 10;
const THREADS: usize = 20;

/// Each client makes `REQUESTS` requests; returns, per client, the servers
/// that answered, in order, and the first answer's headers.
fn run_clients(front: SocketAddr, clients: &mut [Client]) -> Vec<Vec<String>> {
    let chunk = clients.len().div_ceil(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .chunks_mut(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter_mut()
                        .map(|c| {
                            (0..REQUESTS)
                                .map(|_| match c.get("/") {
                                    Ok(a) if a.status == 200 => a.body,
                                    Ok(a) => format!("HTTP {}", a.status),
                                    Err(e) => format!("ERR {e}"),
                                })
                                .collect::<Vec<_>>()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let _ = front;
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    })
}

#[test]
fn insert_indirect_nocache_keeps_1000_users_on_their_servers() {
    // A validator makes the answers cacheable (RFC 7234 3, as HAProxy
    // judges it), so `nocache` must mark the ones that set the cookie.
    let svc = Svc::start_with(
        "http-insert",
        "balance = \"roundrobin\"\ncookie = \"SERVER insert indirect nocache\"\n",
        "",
        3,
        "Last-Modified: Sat, 28 Nov 2026 10:00:00 GMT\r\n",
    );
    // The first answer of one client, in full.
    let mut one = Client::new(svc.front);
    one.extra_cookie = Some("app=1; theme=dark".into());
    let a = one.get("/").unwrap();
    assert_eq!(a.status, 200);
    let set = a.all("set-cookie");
    assert_eq!(
        set,
        [format!("SERVER={}; path=/", a.body)],
        "{:?}",
        a.headers
    );
    assert_eq!(
        a.header("cache-control")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("private"),
        "{:?}",
        a.headers
    );
    let b = one.get("/").unwrap();
    assert_eq!(b.body, a.body, "second request left its server");
    assert!(
        b.all("set-cookie").is_empty(),
        "cookie set again: {:?}",
        b.headers
    );
    assert!(b.header("cache-control").is_none(), "{:?}", b.headers);

    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| {
            let mut c = Client::new(svc.front);
            c.extra_cookie = Some("app=1; theme=dark".into());
            c
        })
        .collect();
    let answers = run_clients(svc.front, &mut clients);
    let mut first = BTreeMap::new();
    for (i, a) in answers.iter().enumerate() {
        assert!(
            a.iter().all(|s| s == &a[0]),
            "client {i} changed server: {a:?}"
        );
        assert!(a[0].starts_with('s'), "client {i}: {a:?}");
        assert_eq!(
            clients[i].jar.get("SERVER"),
            Some(&a[0]),
            "client {i}'s cookie"
        );
        *first.entry(a[0].clone()).or_insert(0usize) += 1;
    }
    let even = CLIENTS as f64 / 3.0;
    for (s, n) in &first {
        assert!(
            (*n as f64 - even).abs() <= 0.1 * even,
            "{s} got {n} of {CLIENTS} first requests: {first:?}"
        );
    }
    // indirect: the backends never see SERVER, and the other cookies
    // arrive byte for byte.
    for b in &svc.backends {
        let reqs = b.requests();
        assert!(!reqs.is_empty());
        for r in reqs {
            let c = r.header("cookie").unwrap_or_default();
            assert!(!c.contains("SERVER"), "{}: saw {c:?}", b.name);
            assert_eq!(c, "app=1; theme=dark", "{}", b.name);
            assert!(
                r.header("x-forwarded-for") == Some("127.0.0.1"),
                "{:?}",
                r.headers
            );
        }
    }
    println!("first requests per server: {first:?}");
}

#[test]
fn a_dead_server_loses_only_its_users_who_get_a_new_cookie() {
    let svc = Svc::start(
        "http-fail",
        "cookie = \"SERVER insert indirect nocache\"\noptions = [\"redispatch\"]\n",
        "check = true\ninter = \"200ms\"\nrise = 2\nfall = 2\n",
        3,
    );
    let mut clients: Vec<Client> = (0..300).map(|_| Client::new(svc.front)).collect();
    let before = run_clients(svc.front, &mut clients);
    let home: Vec<String> = before.iter().map(|a| a[0].clone()).collect();
    svc.backends[1].kill();
    let down = wait_for(Duration::from_secs(10), || {
        svc.cli(&["backend", "list", "--json"]).contains("\"down\"")
    });
    assert!(
        down,
        "s1 never marked down: {}",
        svc.cli(&["backend", "list"])
    );
    let after = run_clients(svc.front, &mut clients);
    for (i, a) in after.iter().enumerate() {
        assert!(
            a.iter().all(|s| s.starts_with('s')),
            "client {i} got an error after s1 was marked down: {a:?}"
        );
        assert!(a.iter().all(|s| s == &a[0]), "client {i} wandered: {a:?}");
        if home[i] == "s1" {
            assert_ne!(a[0], "s1");
            assert_eq!(
                clients[i].jar.get("SERVER"),
                Some(&a[0]),
                "new cookie for {i}"
            );
        } else {
            assert_eq!(a[0], home[i], "client {i} moved although its server lives");
        }
    }
}

#[test]
fn option_forwarded_adds_an_rfc7239_element() {
    let svc = Svc::start("http-fwd", "options = [\"forwarded\"]\n", "", 1);
    let mut c = Client::new(svc.front);
    assert_eq!(c.get("/").unwrap().status, 200);
    let r = svc.backends[0].requests();
    let seen = r.last().unwrap();
    assert_eq!(
        seen.header("forwarded"),
        Some("for=127.0.0.1;proto=http;host=\"lab\""),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
}

/// A response carries the headers its server sent and no others: no `Date`
/// of the proxy's own (HAProxy adds none; the lab's servers send none), on
/// HTTP/1.1 and on HTTP/2.
#[test]
fn responses_carry_no_header_the_server_did_not_send() {
    let svc = Svc::start("http-hdrs", "", "", 1);
    let mut c = Client::new(svc.front);
    let a = c.get("/").unwrap();
    assert_eq!(a.status, 200);
    let mut names: Vec<&str> = a.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-length", "content-type"], "{:?}", a.headers);
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--http2-prior-knowledge",
        ])
        .arg(format!("http://{}/", svc.front))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(!head.contains("\ndate:"), "{head}");
}

/// A keep-alive HTTP/1.1 server on loopback that counts the connections and
/// requests it gets; with `idle_close`, it closes each connection that long
/// after answering a request (an idle timeout, without `Connection: close`).
struct CountingServer {
    addr: SocketAddr,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Connections the proxy closed (end of file before a request).
    closed_by_peer: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingServer {
    fn start(idle_close: Option<Duration>) -> CountingServer {
        use std::{
            io::{BufRead as _, BufReader, Write as _},
            sync::{Arc, atomic::AtomicUsize, atomic::Ordering::Relaxed},
        };
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let closed_by_peer = Arc::new(AtomicUsize::new(0));
        let (c, r, cl) = (
            connections.clone(),
            requests.clone(),
            closed_by_peer.clone(),
        );
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                c.fetch_add(1, Relaxed);
                let (r, cl) = (r.clone(), cl.clone());
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(idle_close.or(Some(Duration::from_secs(30))));
                    let mut w = s.try_clone().unwrap();
                    let mut rd = BufReader::new(s);
                    loop {
                        let mut line = String::new();
                        // The head; a timeout is the idle close.
                        loop {
                            line.clear();
                            match rd.read_line(&mut line) {
                                Ok(0) => {
                                    cl.fetch_add(1, Relaxed);
                                    let _ = w.shutdown(std::net::Shutdown::Both);
                                    return;
                                }
                                Err(_) => {
                                    let _ = w.shutdown(std::net::Shutdown::Both);
                                    return;
                                }
                                Ok(_) if line == "\r\n" => break,
                                Ok(_) => {}
                            }
                        }
                        r.fetch_add(1, Relaxed);
                        let body = "counted";
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if w.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        CountingServer {
            addr,
            connections,
            requests,
            closed_by_peer,
        }
    }

    fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.connections.load(Relaxed), self.requests.load(Relaxed))
    }
}

#[test]
fn server_connections_are_reused_and_survive_idle_closes() {
    // A server that keeps connections open: one client's sequential
    // requests all go over one pooled server connection.
    let keep = CountingServer::start(None);
    let svc = Svc::start_on("http-pool", "", &[("k", keep.addr, "")]);
    let mut c = Client::new(svc.front);
    for i in 0..50 {
        let a = c.get("/").unwrap();
        assert_eq!((a.status, a.body.as_str()), (200, "counted"), "request {i}");
    }
    assert_eq!(keep.counts(), (1, 50), "(server connections, requests)");
    drop(svc);

    // A server that closes idle connections after 50 ms: requests 200 ms
    // apart find their pooled connection closed; each still gets its
    // answer, and the server sees each request exactly once.
    let closing = CountingServer::start(Some(Duration::from_millis(50)));
    let svc = Svc::start_on("http-idle", "", &[("c", closing.addr, "")]);
    let mut c = Client::new(svc.front);
    for i in 0..10 {
        let a = c.get("/").unwrap();
        assert_eq!((a.status, a.body.as_str()), (200, "counted"), "request {i}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (conns, reqs) = closing.counts();
    assert_eq!(reqs, 10, "each request reached the server once");
    assert_eq!(conns, 10, "a closed connection was not reused");
}

/// Send `parts` on one connection, `gap` apart, then read until the proxy
/// closes (at most 5 s); the text.
fn send_in_parts(to: SocketAddr, parts: &[&[u8]], gap: Duration) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(gap);
        }
        s.write_all(p).unwrap();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn first_bytes_in_pieces_silent_clients_and_shutdown_with_requests_in_flight() {
    // `/slow` is answered after 1.5 s.
    let slow = balancer_tests::http::Backend::start_fn("s0", 0, |seen| {
        if seen.path == "/slow" {
            std::thread::sleep(Duration::from_millis(1500));
        }
        (200, String::new())
    })
    .unwrap();
    let mut svc = Svc::start_on_with(
        "http-conn",
        "timeout_client = \"1s\"\n",
        "",
        &[("s0", slow.addr, "")],
    );
    let front = svc.front;

    // The proxy tells HTTP/1.1 from HTTP/2's preface by the first bytes:
    // a request whose first byte ("P", as in "PRI * HTTP/2.0") comes alone,
    // or whose start matches the preface longer, is still HTTP/1.1.
    let tail = b" / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    for (first, rest) in [
        (&b"P"[..], [&b"OST"[..], tail].concat()),
        (&b"PRI"[..], [&b""[..], tail].concat()),
        (&b"G"[..], [&b"ET"[..], tail].concat()),
    ] {
        let a = send_in_parts(front, &[first, &rest], Duration::from_millis(100));
        let method = String::from_utf8_lossy(first).into_owned();
        if method == "PRI" {
            // "PRI / HTTP/1.1" is no HTTP/2 preface: HTTP/1.1's parser
            // answers it (the server refuses the unknown method or not,
            // but it is a response, not a hang).
            assert!(a.starts_with("HTTP/1.1 "), "PRI request: {a:?}");
        } else {
            assert!(
                a.starts_with("HTTP/1.1 200 "),
                "split after {method:?}: {a:?}"
            );
            assert!(a.ends_with("s0"), "{a:?}");
        }
    }

    // A client that connects and says nothing is answered 408 and closed
    // after `timeout_client` (1 s here; at most 5 s allowed), as HAProxy
    // does.
    let t = std::time::Instant::now();
    let a = send_in_parts(front, &[], Duration::ZERO);
    assert!(a.starts_with("HTTP/1.1 408 "), "{a:?}");
    assert!(
        t.elapsed() < Duration::from_millis(4500),
        "silent client kept {:?}",
        t.elapsed()
    );

    // SIGTERM while a request is in flight: the request is answered, then
    // the daemon exits and the frontend no longer accepts.
    let in_flight = std::thread::spawn(move || {
        send_in_parts(
            front,
            &[b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"],
            Duration::ZERO,
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    svc.daemon.signal(libc::SIGTERM).unwrap();
    let a = in_flight.join().unwrap();
    assert!(
        a.starts_with("HTTP/1.1 200 "),
        "request in flight at SIGTERM: {a:?}"
    );
    assert!(a.ends_with("s0"), "{a:?}");
    assert!(
        wait_for(Duration::from_secs(10), || svc
            .daemon
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "the daemon did not exit after its last request: {}",
        svc.daemon.output()
    );
    assert!(std::net::TcpStream::connect(front).is_err());
}

#[test]
fn idle_connections_to_a_removed_server_are_closed() {
    use std::sync::atomic::Ordering::Relaxed;
    // Round robin over two servers: sequential requests leave one idle
    // pooled connection to each.
    let (a, b) = (CountingServer::start(None), CountingServer::start(None));
    let svc = Svc::start_on("http-sweep", "", &[("a", a.addr, ""), ("b", b.addr, "")]);
    let mut c = Client::new(svc.front);
    for i in 0..4 {
        let r = c.get("/").unwrap();
        assert_eq!(r.status, 200, "request {i}");
    }
    assert_eq!((a.counts(), b.counts()), ((1, 2), (1, 2)));
    svc.cli(&["backend", "remove", "b"]);
    // The worker's next sweep (every 2 s) closes b's idle connection, not a's.
    assert!(
        wait_for(Duration::from_secs(10), || b.closed_by_peer.load(Relaxed)
            == 1),
        "the idle connection to the removed server is still open"
    );
    assert_eq!(
        a.closed_by_peer.load(Relaxed),
        0,
        "a's idle connection was closed"
    );
    let r = c.get("/").unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "counted"));
    assert_eq!(a.counts(), (1, 3), "a's pooled connection is still used");
}
