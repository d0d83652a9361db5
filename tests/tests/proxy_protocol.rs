//! The PROXY protocol (v1 and v2) on the HTTP path, on loopback: a
//! frontend with `accept_proxy` takes the client's address from the header
//! (curl `--haproxy-protocol`, HAProxy 2.6 `send-proxy-v2`, raw headers),
//! for X-Forwarded-For and `stick on src`; headers from sources not
//! allowed, garbage, cut short or late close only their connection and are
//! counted; a backend with `send_proxy` opens each server connection with
//! the client's header (a test server parses it) and never shares one
//! between clients.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use balancer_tests::{
    haproxy::{Haproxy, http_config},
    http::{Backend, Client, Svc, free_port, read_head, scrape, server_tables},
    proc::wait_for,
    tls::{Key, Pki, curl},
};

const STICK: &str = "stick_table = { size = \"1k\", expire = \"30s\" }\nstick = \"on src\"\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A connection from `from` to `to` (bound to that source address).
fn connect_from(to: SocketAddr, from: IpAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(from, 0).into()).unwrap();
    sock.connect(&to.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// `prefix` (a PROXY header, or anything), then `GET /` on a new
/// connection from `from`: (status, X-Forwarded-For the server saw via
/// its body, body), or the error when the connection was closed.
fn get_with(to: SocketAddr, from: IpAddr, prefix: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = connect_from(to, from);
    s.write_all(prefix)?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")?;
    answer(&mut BufReader::new(s))
}

/// One response: (status, body).
fn answer(r: &mut impl BufRead) -> std::io::Result<(u16, String)> {
    let head = read_head(r)?.ok_or_else(|| std::io::Error::other("closed"))?;
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Whether the peer closed `s` (EOF or reset) within 5 s, no byte sent.
fn closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn v1(src: &str, dst: &str) -> Vec<u8> {
    let (s, d): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        s.ip(),
        d.ip(),
        s.port(),
        d.port()
    )
    .into_bytes()
}

fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    h.extend(s.octets());
    h.extend(d.octets());
    h.extend(src.port().to_be_bytes());
    h.extend(dst.port().to_be_bytes());
    h
}

/// client -> server as `table show --json` lists them, once there are
/// `want` rows (the flusher writes them within 100 ms).
fn table(svc: &Svc, want: usize) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    wait_for(Duration::from_secs(3), || {
        let out = svc.cli(&["table", "show", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        t = rows
            .iter()
            .map(|r| {
                (
                    r["client"].as_str().unwrap().to_owned(),
                    r["server"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        t.len() == want
    });
    t
}

/// A daemon with `accept_proxy` from `from` in front of three backends
/// with `stick on src`, answering X-Forwarded-For as their body's second
/// line; metrics on `metrics`.
fn svc_accepting(tag: &str, from: &str, frontend_extra: &str) -> (Svc, SocketAddr) {
    let backends: Vec<Backend> = (0..3)
        .map(|j| Backend::start(&format!("s{j}"), 0).unwrap())
        .collect();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let tail = format!(
        "{}\n[metrics]\nbind = \"{metrics}\"\n",
        server_tables(&backends, false, "")
    );
    let front = format!("accept_proxy = true\naccept_proxy_from = {from}\n{frontend_extra}");
    let mut svc = Svc::launch(tag, &front, STICK, &tail);
    svc.backends = backends;
    (svc, metrics)
}

/// The X-Forwarded-For of the last request backend `name` saw.
fn xff(svc: &Svc, name: &str) -> String {
    let b = svc.backends.iter().find(|b| b.name == name.trim());
    let last = b.and_then(|b| b.requests().pop());
    let last = last.unwrap_or_else(|| panic!("no request at {name:?}"));
    last.header("x-forwarded-for")
        .unwrap_or_default()
        .to_owned()
}

fn proxy_metric(metrics: SocketAddr, family: &str, label: &str) -> f64 {
    let m = scrape(metrics);
    let key = format!("balancer_proxy_headers_{family}_total{{frontend=\"web\",{label}}}");
    m.get(&key)
        .copied()
        .unwrap_or_else(|| panic!("{key} not in {m:#?}"))
}

#[test]
fn curl_v1_and_raw_headers_set_the_client_address_and_its_stick_entry() {
    let (svc, metrics) = svc_accepting("pp-curl", "[\"127.0.0.0/8\"]", "");
    // curl's v1 header names its own source (127.0.0.5 here).
    let out = Command::new("curl")
        .args(["-s", "--haproxy-protocol", "--interface", "127.0.0.5"])
        .arg(format!("http://{}/", svc.front))
        .output()
        .expect("curl");
    assert_eq!(
        xff(&svc, &String::from_utf8_lossy(&out.stdout)),
        "127.0.0.5"
    );
    // Two header addresses from the same socket source (127.0.0.9): each
    // gets its own stick entry, and keeps its server.
    let a = v1("198.18.0.7:1000", "198.18.0.1:80");
    let b = v2(
        "198.18.0.8:2000".parse().unwrap(),
        "198.18.0.1:80".parse().unwrap(),
    );
    let first_a = get_with(svc.front, ip("127.0.0.9"), &a).unwrap();
    assert_eq!(xff(&svc, &first_a.1), "198.18.0.7");
    let first_b = get_with(svc.front, ip("127.0.0.9"), &b).unwrap();
    assert_eq!(xff(&svc, &first_b.1), "198.18.0.8");
    assert_eq!((first_a.0, first_b.0), (200, 200));
    for _ in 0..5 {
        assert_eq!(get_with(svc.front, ip("127.0.0.9"), &a).unwrap(), first_a);
        assert_eq!(get_with(svc.front, ip("127.0.0.9"), &b).unwrap(), first_b);
    }
    let t = table(&svc, 3);
    assert_eq!(
        t.get("198.18.0.7"),
        Some(&format!("app/{}", first_a.1)),
        "{t:?}"
    );
    assert_eq!(
        t.get("198.18.0.8"),
        Some(&format!("app/{}", first_b.1)),
        "{t:?}"
    );
    assert!(t.contains_key("127.0.0.5"), "{t:?}");
    assert!(!t.contains_key("127.0.0.9"), "{t:?}");
    // UNKNOWN and LOCAL keep the connection's own address.
    let unknown = get_with(svc.front, ip("127.0.0.10"), b"PROXY UNKNOWN\r\n").unwrap();
    assert_eq!(unknown.0, 200);
    assert_eq!(xff(&svc, &unknown.1), "127.0.0.10");
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let local = get_with(svc.front, ip("127.0.0.11"), local).unwrap();
    assert_eq!(local.0, 200);
    assert_eq!(xff(&svc, &local.1), "127.0.0.11");
    assert_eq!(proxy_metric(metrics, "accepted", "version=\"v1\""), 8.0);
    assert_eq!(proxy_metric(metrics, "accepted", "version=\"v2\""), 7.0);
}

#[test]
fn the_header_comes_before_tls_and_http2() {
    let dir = std::env::temp_dir().join(format!("blb-{}-pki-pp", std::process::id()));
    let pki = Pki::new(&dir).expect("openssl: a test CA");
    let pem = pki
        .server("a.pem", &["a.test"], Key::EcdsaP256, 30)
        .unwrap();
    let tls = format!("tls = {{ crt = [\"{}\"] }}\n", pem.display());
    let (svc, metrics) = svc_accepting("pp-tls", "[\"127.0.0.0/8\"]", &tls);
    for (i, version) in ["--http2", "--http1.1"].into_iter().enumerate() {
        let from = format!("127.0.0.{}", 20 + i);
        let args = ["--haproxy-protocol", "--interface", &from, version];
        let c = curl(svc.front, "a.test", "/", &pki.ca, &args).unwrap();
        assert_eq!(c.status, 200, "{c:?}");
        let seen: Vec<_> = svc.backends.iter().flat_map(|b| b.requests()).collect();
        let xff: Vec<_> = seen
            .iter()
            .filter_map(|r| r.header("x-forwarded-for"))
            .collect();
        assert!(xff.contains(&from.as_str()), "{xff:?}");
    }
    assert_eq!(proxy_metric(metrics, "accepted", "version=\"v1\""), 2.0);
    // Without the header (from a source that must send one): closed.
    let c = curl(
        svc.front,
        "a.test",
        "/",
        &pki.ca,
        &["--interface", "127.0.0.22"],
    );
    assert!(c.is_err(), "{c:?}");
    assert_eq!(
        proxy_metric(metrics, "refused", "reason=\"malformed\""),
        1.0
    );
}

#[test]
fn refused_garbage_truncated_and_silent_headers_close_only_their_connection() {
    let (svc, metrics) = svc_accepting(
        "pp-refuse",
        "[\"127.0.0.2/32\"]",
        "timeout_http_request = \"1s\"\n",
    );
    let allowed = ip("127.0.0.2");
    let header = v1("198.18.0.7:1000", "198.18.0.1:80");
    // A keep-alive client through the whole test: never disturbed.
    let mut steady = connect_from(svc.front, allowed);
    steady.write_all(&header).unwrap();
    let mut steady = BufReader::new(steady);
    let mut ask = |what: &str| {
        steady
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
            .unwrap();
        let (status, _) = answer(&mut steady).unwrap_or_else(|e| panic!("after {what}: {e}"));
        assert_eq!(status, 200, "after {what}");
    };
    ask("start");
    // Not allowed: a header from 127.0.0.3 is refused; without one, it is
    // a direct client with its own address.
    let mut s = connect_from(svc.front, ip("127.0.0.3"));
    s.write_all(&header).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n").unwrap();
    assert!(closed(&mut s), "a header from a source not allowed");
    ask("not allowed");
    let direct = get_with(svc.front, ip("127.0.0.3"), b"").unwrap();
    assert_eq!(direct.0, 200);
    assert_eq!(xff(&svc, &direct.1), "127.0.0.3");
    // Garbage, a header the client cuts short, no header at all.
    for (what, bytes) in [
        ("garbage", &b"PROXY TCP4 nonsense here 1 2\r\n"[..]),
        ("binary garbage", b"\r\n\r\n\0\r\nQUIT\n\x99\x11\x00\x0c"),
        ("no header", b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n"),
        ("truncated v1", b"PROXY TCP4 198.18.0.7 198."),
        (
            "truncated v2",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc6\x12",
        ),
    ] {
        let mut s = connect_from(svc.front, allowed);
        s.write_all(bytes).unwrap();
        if what.starts_with("truncated") {
            s.shutdown(Shutdown::Write).unwrap();
        }
        assert!(closed(&mut s), "{what}");
        ask(what);
    }
    // A client that sends nothing is closed after timeout_http_request.
    let started = Instant::now();
    let mut s = connect_from(svc.front, allowed);
    assert!(closed(&mut s), "silent");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    ask("silent");
    assert_eq!(get_with(svc.front, allowed, &header).unwrap().0, 200);
    let refused = |r: &str| proxy_metric(metrics, "refused", &format!("reason=\"{r}\""));
    assert_eq!(refused("not_allowed"), 1.0);
    assert_eq!(refused("malformed"), 5.0);
    assert_eq!(refused("timeout"), 1.0);
    assert_eq!(proxy_metric(metrics, "accepted", "version=\"v1\""), 2.0);
    // `balancer stats` shows them too.
    stats_rows(
        &svc,
        &[
            "proxy_accepted_v1 2",
            "proxy_refused_not_allowed 1",
            "proxy_refused_malformed 5",
            "proxy_refused_timeout 1",
        ],
    );
}

/// `balancer stats` has each of `rows` ("NAME COUNT").
fn stats_rows(svc: &Svc, rows: &[&str]) {
    let shown = svc.cli(&["stats"]);
    for row in rows {
        let found = shown
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == *row);
        assert!(found, "{row} not in {shown}");
    }
}

#[test]
fn haproxy_send_proxy_v2_in_front_gives_balancer_the_clients_addresses() {
    let (svc, _) = svc_accepting("pp-haproxy", "[\"127.0.0.1/32\"]", "");
    let lb = svc.front;
    let ha = Haproxy::start("pp-haproxy", |front, sock| {
        http_config(front, sock, &format!("    server lb {lb} send-proxy-v2\n"))
    });
    let mut home = BTreeMap::new();
    for round in 0..3 {
        for c in ["127.0.0.2", "127.0.0.3"] {
            let a = Client::from(ha.front, ip(c)).get("/").unwrap();
            assert_eq!(a.status, 200);
            assert_eq!(xff(&svc, &a.body), c, "round {round}");
            assert_eq!(home.entry(c).or_insert(a.body.clone()), &a.body);
        }
    }
    let t = table(&svc, 2);
    for c in ["127.0.0.2", "127.0.0.3"] {
        assert_eq!(t.get(c), Some(&format!("app/{}", home[c])), "{t:?}");
    }
    assert!(!t.contains_key("127.0.0.1"), "{t:?}");
}

/// What a PROXY-parsing test server saw on one connection: the source
/// its header named, and the X-Forwarded-For of each request on it.
#[derive(Debug, Clone, Default)]
struct PpConn {
    header: String,
    src: Option<SocketAddr>,
    xff: Vec<String>,
    /// balancer closed it.
    closed: bool,
}

/// A server that reads a PROXY header (v1 or v2, IPv4) first on each
/// connection, then answers keep-alive requests with its header's source.
struct PpServer {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<PpConn>>>,
}

impl PpServer {
    fn start() -> PpServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let c = conns.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let c = c.clone();
                std::thread::spawn(move || serve_pp(s, c));
            }
        });
        PpServer { addr, conns }
    }
}

fn serve_pp(s: TcpStream, conns: Arc<Mutex<Vec<PpConn>>>) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s);
    // Six bytes tell v1 from v2 (v1 UNKNOWN is 15 bytes in all).
    let mut first = [0u8; 16];
    if r.read_exact(&mut first[..6]).is_err() {
        return;
    }
    let mut conn = PpConn::default();
    if first.starts_with(b"PROXY ") {
        let mut line = String::from_utf8_lossy(&first[..6]).into_owned();
        r.read_line(&mut line).unwrap();
        let f: Vec<&str> = line.trim_end().split(' ').collect();
        match f.as_slice() {
            [_, "TCP4", src, _, sport, _] => {
                conn.header = "v1".into();
                conn.src = format!("{src}:{sport}").parse().ok();
            }
            _ => conn.header = format!("v1 {}", f[1..].join(" ")),
        }
    } else if r.read_exact(&mut first[6..]).is_ok() && first.starts_with(b"\r\n\r\n\0\r\nQUIT\n") {
        let len = u16::from_be_bytes([first[14], first[15]]) as usize;
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        conn.header = format!("v2 {:#04x} {:#04x}", first[12], first[13]);
        if first[13] == 0x11 {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            conn.src = Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([body[8], body[9]]),
            ));
        }
    } else {
        conn.header = format!("none: {first:?}");
    }
    let i = {
        let mut all = conns.lock().unwrap();
        all.push(conn.clone());
        all.len() - 1
    };
    while let Ok(Some(head)) = read_head(&mut r) {
        let xff = head
            .lines()
            .find_map(|l| l.strip_prefix("x-forwarded-for: "))
            .unwrap_or("")
            .to_owned();
        conns.lock().unwrap()[i].xff.push(xff);
        let body = conn.src.map(|a| a.to_string()).unwrap_or_default();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if r.get_mut().write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
    conns.lock().unwrap()[i].closed = true;
}

#[test]
fn send_proxy_v1_and_v2_give_each_client_its_own_server_connection() {
    for version in ["v1", "v2"] {
        let server = PpServer::start();
        // Checked over HTTP: the checks open with a header too.
        let svc = Svc::start_on(
            &format!("pp-send-{version}"),
            &format!("send_proxy = \"{version}\"\ncheck_type = \"http\"\n"),
            &[("pp", server.addr, "check = true\ninter = \"200ms\"")],
        );
        assert!(
            wait_for(Duration::from_secs(5), || {
                let seen = server.conns.lock().unwrap().clone();
                seen.iter()
                    .any(|c| is_check(c) && c.header == check_header(version))
            }),
            "no check with the header: {:?}",
            server.conns.lock().unwrap()
        );
        assert_eq!(svc.server_state("pp"), "up");
        let mut clients: Vec<(IpAddr, Client)> = ["127.0.0.2", "127.0.0.3"]
            .into_iter()
            .map(|c| (ip(c), Client::from(svc.front, ip(c))))
            .collect();
        for _ in 0..3 {
            for (c, client) in &mut clients {
                let a = client.get("/").unwrap();
                assert_eq!(a.status, 200);
                // The server's connection was opened with this client's
                // address (the body is what its header said).
                let src: SocketAddr = a.body.parse().unwrap_or_else(|_| panic!("{a:?}"));
                assert_eq!(src.ip(), *c);
            }
        }
        let mut conns = server.conns.lock().unwrap().clone();
        conns.retain(|c| !is_check(c));
        assert!(conns.len() >= 2, "{conns:?}");
        for c in &conns {
            let want = if version == "v1" {
                "v1"
            } else {
                "v2 0x21 0x11"
            };
            assert_eq!(c.header, want, "{conns:?}");
            let src = c.src.expect("a source").ip().to_string();
            // Never shared: every request on a connection is its client's.
            assert!(c.xff.iter().all(|x| *x == src), "{conns:?}");
        }
        // Each client connection has its own server connection, kept for
        // its three requests (HAProxy's private connections).
        assert_eq!(conns.len(), 2, "{conns:?}");
        assert!(conns.iter().all(|c| c.xff.len() == 3), "{conns:?}");
        stats_rows(&svc, &[&format!("proxy_sent_{version} 2")]);
        // They close with their client's connection.
        drop(clients);
        let closed = wait_for(Duration::from_secs(5), || {
            let all = server.conns.lock().unwrap().clone();
            all.iter().filter(|c| !is_check(c)).all(|c| c.closed)
        });
        assert!(closed, "{:?}", server.conns.lock().unwrap());
    }
}

/// A haproxy.cfg with both: the client's address from its header goes on
/// in the header sent to the server.
#[test]
fn a_haproxy_cfg_takes_and_sends_headers() {
    let server = PpServer::start();
    let addr = server.addr;
    let svc = Svc::launch_cfg("pp-cfg", |front| {
        format!(
            "defaults\n    mode http\n    timeout client 10s\n    timeout connect 1s\n    \
             timeout server 10s\n\n\
             frontend fe\n    bind {front}\n    \
             tcp-request connection expect-proxy layer4 if {{ src 127.0.0.0/8 }}\n    \
             default_backend app\n\n\
             backend app\n    default-server send-proxy-v2\n    server s1 {addr}\n"
        )
    });
    let header = v1("198.18.0.7:4321", "198.18.0.1:80");
    let (status, body) = get_with(svc.front, ip("127.0.0.2"), &header).unwrap();
    assert_eq!((status, body.as_str()), (200, "198.18.0.7:4321"));
    let conns = server.conns.lock().unwrap().clone();
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0].header, "v2 0x21 0x11", "{conns:?}");
}

/// A health check's connection (its request has no X-Forwarded-For).
fn is_check(c: &PpConn) -> bool {
    c.xff.iter().all(String::is_empty)
}

/// What a check opens with, as [`PpConn::header`] records it: v1 naming
/// the check's own connection (from 127.0.0.1), v2 LOCAL.
fn check_header(version: &str) -> &'static str {
    if version == "v1" {
        "v1"
    } else {
        "v2 0x20 0x00"
    }
}

/// HAProxy 2.6's health checks of a server with send-proxy / -v2 open with
/// what balancer's do (v1 TCP4 with the check's own addresses, v2 LOCAL).
#[test]
fn haproxy_checks_open_with_the_same_header() {
    for (word, version) in [("send-proxy-v2", "v2"), ("send-proxy", "v1")] {
        let server = PpServer::start();
        let addr = server.addr;
        let _ha = Haproxy::start(&format!("pp-check-{word}"), |front, sock| {
            http_config(
                front,
                sock,
                &format!("    option httpchk\n    server s {addr} {word} check inter 200ms\n"),
            )
        });
        let seen = wait_for(Duration::from_secs(5), || {
            !server.conns.lock().unwrap().is_empty()
        });
        assert!(seen, "no check");
        let first = server.conns.lock().unwrap()[0].clone();
        assert!(is_check(&first), "{first:?}");
        assert_eq!(first.header, check_header(version), "{first:?}");
        if version == "v1" {
            assert_eq!(
                first.src.map(|a| a.ip()),
                Some(ip("127.0.0.1")),
                "{first:?}"
            );
        }
    }
}
