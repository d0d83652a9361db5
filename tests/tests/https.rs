//! TLS termination on an HTTP frontend, with real clients: curl over
//! HTTP/2 and HTTP/1.1 with SNI choosing between two certificates (ECDSA
//! and RSA) and the cookie persisting over both; `openssl s_client`
//! resuming a session; bad input (plain HTTP, bytes that are not TLS, a
//! ClientHello cut short, a client that stops after its ClientHello, a
//! thousand half-open handshakes); certificates replaced by SIGHUP, and
//! bad replacements refused while the old certificate keeps serving.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use balancer_tests::{
    http::{Backend, Svc, free_port, scrape, server_tables},
    proc::wait_for,
    tls::{Key, Pki, curl, fingerprint, served_fingerprint},
};

/// A frontend with `tls` in front of `n` backends with the cookie, and
/// metrics; returns (service, metrics address).
fn start(tag: &str, tls: &str, frontend_extra: &str, n: usize) -> (Svc, SocketAddr, Vec<Backend>) {
    let backends: Vec<Backend> = (0..n)
        .map(|j| Backend::start(&format!("s{j}"), 0).expect("backend"))
        .collect();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let mut tail = server_tables(&backends, true, "");
    tail.push_str(&format!("\n[metrics]\nbind = \"{metrics}\"\n"));
    let svc = Svc::launch(
        tag,
        &format!("{tls}\n{frontend_extra}"),
        "balance = \"roundrobin\"\ncookie = \"SERVER insert indirect nocache secure\"\n",
        &tail,
    );
    (svc, metrics, backends)
}

fn tls_line(crt: &[&Path]) -> String {
    let list: Vec<String> = crt.iter().map(|p| format!("\"{}\"", p.display())).collect();
    format!("tls = {{ crt = [{}] }}", list.join(", "))
}

fn pki(tag: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("blb-{}-pki-{tag}", std::process::id()));
    Pki::new(&dir).expect("openssl: a test CA")
}

#[test]
fn sni_alpn_and_the_cookie_over_http2_and_http1() {
    let pki = pki("sni");
    let a = pki
        .server("a.pem", &["a.test", "*.a.test"], Key::EcdsaP256, 30)
        .unwrap();
    let b = pki.server("b.pem", &["b.test"], Key::Rsa2048, 30).unwrap();
    let (svc, metrics, backends) = start(
        "https-sni",
        &tls_line(&[&a, &b]),
        "forwarded_proto = true",
        2,
    );
    let front = svc.front;

    // SNI picks the certificate; ALPN the protocol.
    let h2 = curl(front, "a.test", "/one", &pki.ca, &["--http2"]).unwrap();
    assert_eq!((h2.status, h2.http_version.as_str()), (200, "2"), "{h2:?}");
    assert_eq!(h2.subject, "CN=a.test", "{h2:?}");
    let h1 = curl(front, "b.test", "/two", &pki.ca, &["--http1.1"]).unwrap();
    assert_eq!(
        (h1.status, h1.http_version.as_str()),
        (200, "1.1"),
        "{h1:?}"
    );
    assert_eq!(h1.subject, "CN=b.test", "{h1:?}");
    // A wildcard name, and a name no certificate has (the default, the
    // first: curl then refuses it, as the name does not match; it checks
    // the name after the handshake).
    let w = curl(front, "x.a.test", "/", &pki.ca, &[]).unwrap();
    assert_eq!(w.subject, "CN=a.test", "{w:?}");
    let unknown = curl(front, "c.test", "/", &pki.ca, &[]);
    assert!(unknown.is_err(), "{unknown:?}");
    let insecure = curl(front, "c.test", "/", &pki.ca, &["-k"]).unwrap();
    assert_eq!(insecure.subject, "CN=a.test", "{insecure:?}");
    // A client that does not trust the certificate's issuer refuses the
    // handshake itself (an alert).
    let untrusted = curl(front, "a.test", "/", &b, &[]);
    assert!(untrusted.is_err(), "{untrusted:?}");

    // The cookie is set with `secure`, and sends the client back to its
    // server on both protocols (round robin alone would alternate).
    let cookie = h2
        .headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .expect("a persistence cookie");
    assert!(cookie.contains("Secure"), "{cookie}");
    let value = cookie.split(';').next().unwrap().to_owned();
    let server = value.split('=').nth(1).unwrap().to_owned();
    for version in ["--http2", "--http1.1"] {
        for _ in 0..3 {
            let r = curl(
                front,
                "a.test",
                "/again",
                &pki.ca,
                &[version, "-H", &format!("Cookie: {value}")],
            )
            .unwrap();
            assert_eq!(r.status, 200);
            assert!(!r.headers.iter().any(|(k, _)| k == "set-cookie"), "{r:?}");
        }
    }
    let home = backends.iter().find(|b| b.name == server).unwrap();
    let again: Vec<_> = home
        .requests()
        .into_iter()
        .filter(|s| s.path == "/again")
        .collect();
    assert_eq!(again.len(), 6, "every cookie request on {server}");
    // What the server is told of the client's side.
    let seen = &again[0];
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{seen:?}");
    assert_eq!(
        seen.header("x-forwarded-port"),
        Some(front.port().to_string().as_str()),
        "{seen:?}"
    );

    let m = scrape(metrics);
    let get = |k: &str| m.get(k).copied().unwrap_or(-1.0);
    // curl speaks h2 unless told --http1.1: 7 and 4 of the 11 that
    // completed (each curl a new process: no resumption).
    assert_eq!(
        get("balancer_tls_alpn_total{frontend=\"web\",protocol=\"h2\"}"),
        7.0,
        "{m:?}"
    );
    assert_eq!(
        get("balancer_tls_alpn_total{frontend=\"web\",protocol=\"http/1.1\"}"),
        4.0,
        "{m:?}"
    );
    assert_eq!(
        get("balancer_tls_handshakes_total{frontend=\"web\",kind=\"full\"}"),
        11.0,
        "{m:?}"
    );
    assert_eq!(
        get("balancer_tls_versions_total{frontend=\"web\",version=\"TLSv1.3\"}"),
        11.0,
        "{m:?}"
    );
    assert_eq!(
        get("balancer_tls_handshake_failures_total{frontend=\"web\",reason=\"client_alert\"}"),
        1.0,
        "curl refusing a certificate it cannot trust: {m:?}"
    );
    // `balancer stats`: the same counts, and the certificates in use.
    let stats = svc.cli(&["stats"]);
    assert!(
        stats
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["tls_full", "11"]),
        "{stats}"
    );
    for (pem, names) in [(&a, "a.test, *.a.test, ECDSA"), (&b, "b.test, RSA")] {
        // 30 days from when openssl made it: 29 or 30 whole days left.
        let head = format!("certificate {} ({names}): expires in ", pem.display());
        let days = stats
            .lines()
            .find_map(|l| l.trim().strip_prefix(head.as_str()))
            .unwrap_or_else(|| panic!("want {head:?} in:\n{stats}"));
        assert!(days == "29 days" || days == "30 days", "{days}");
    }
}

/// `openssl s_client` with one request (`Connection: close`), keeping
/// (`-sess_out`) or offering (`-sess_in`) the session in `sess`; `extra`:
/// more options (`-tls1_2`). Returns its output.
fn s_client(front: SocketAddr, ca: &Path, sess: &Path, offer: bool, extra: &[&str]) -> String {
    let mut c = Command::new("openssl");
    c.args([
        "s_client",
        "-connect",
        &front.to_string(),
        "-servername",
        "a.test",
        "-ign_eof",
        "-CAfile",
    ])
    .arg(ca)
    .arg(if offer { "-sess_in" } else { "-sess_out" })
    .arg(sess)
    .args(extra)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().expect("openssl s_client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /r HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().expect("s_client ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two connections with Python's ssl module, the second offering the
/// first's session; prints each status and whether it was resumed.
const RESUMING_CLIENT: &str = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
session, out = None, []
for _ in range(2):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="a.test", session=session)
    s.sendall(b"GET /py HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    out += [data.split()[1].decode(), str(s.session_reused)]
    session = s.session
    s.close()
print(" ".join(out))
"#;

#[test]
fn sessions_resume_with_tls13_tickets_and_tls12() {
    let pki = pki("resume");
    let a = pki
        .server("a.pem", &["a.test"], Key::EcdsaP256, 30)
        .unwrap();
    let (svc, metrics, _backends) = start("https-resume", &tls_line(&[&a]), "", 1);
    let sess = pki.dir.join("session");
    for (version, extra) in [("TLSv1.3", &[][..]), ("TLSv1.2", &["-tls1_2"][..])] {
        let first = s_client(svc.front, &pki.ca, &sess, false, extra);
        assert!(first.contains("New, "), "{version}: {first}");
        assert!(first.contains("HTTP/1.1 200"), "{version}: {first}");
        let again = s_client(svc.front, &pki.ca, &sess, true, extra);
        assert!(
            again.contains(&format!("Reused, {version}")),
            "{version}: the session was not resumed:\n{again}"
        );
        assert!(again.contains("HTTP/1.1 200"), "{version}: {again}");
    }
    // Python's ssl module (OpenSSL), TLS 1.3: a second connection offers
    // the first one's session.
    let py = Command::new("python3")
        .args(["-c", RESUMING_CLIENT, &svc.front.port().to_string()])
        .arg(&pki.ca)
        .output()
        .expect("python3");
    let said = String::from_utf8_lossy(&py.stdout);
    assert_eq!(
        said.trim(),
        "200 False 200 True",
        "{said} {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let m = scrape(metrics);
    let get = |k: &str| m.get(k).copied().unwrap_or(-1.0);
    assert_eq!(
        get("balancer_tls_handshakes_total{frontend=\"web\",kind=\"resumed\"}"),
        3.0,
        "{m:?}"
    );
    assert_eq!(
        get("balancer_tls_handshakes_total{frontend=\"web\",kind=\"full\"}"),
        3.0,
        "{m:?}"
    );
    assert_eq!(
        get("balancer_tls_versions_total{frontend=\"web\",version=\"TLSv1.2\"}"),
        2.0,
        "{m:?}"
    );
}

/// A real ClientHello (from `openssl s_client` for `a.test`), as its first
/// bytes on the wire.
fn client_hello() -> Vec<u8> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = l.local_addr().unwrap();
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &to.to_string(),
            "-servername",
            "a.test",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let (mut c, _) = l.accept().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut hello = Vec::new();
    let mut buf = [0u8; 4096];
    // A record header (5 bytes, the length in the last two), then its body.
    while hello.len() < 5 || hello.len() < 5 + usize::from(u16::from_be_bytes([hello[3], hello[4]]))
    {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "s_client closed before its ClientHello");
        hello.extend_from_slice(&buf[..n]);
    }
    let _ = child.kill();
    let _ = child.wait();
    hello
}

/// Connect to `to`, send `bytes`, and read until the server closes (at
/// most 10 s): what it answered, and after how long it closed.
fn send_and_read(to: SocketAddr, bytes: &[u8], close_write: bool) -> (Vec<u8>, Duration) {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    s.write_all(bytes).unwrap();
    if close_write {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (out, t.elapsed())
}

#[test]
fn bad_input_on_the_tls_port_is_answered_or_closed_and_counted() {
    let pki = pki("bad");
    let a = pki
        .server("a.pem", &["a.test"], Key::EcdsaP256, 30)
        .unwrap();
    let (svc, metrics, _backends) =
        start("https-bad", &tls_line(&[&a]), "timeout_client = \"1s\"", 1);
    // Plain HTTP: a 400 in plain text that says why.
    let (plain, _) = send_and_read(svc.front, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false);
    let plain = String::from_utf8_lossy(&plain);
    assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
    assert!(plain.contains("speaks HTTPS"), "{plain}");
    // Not TLS: closed without a byte.
    let (garbage, _) = send_and_read(svc.front, &[0, 1, 2, 3, 0xff, 0xfe], false);
    assert!(garbage.is_empty(), "{garbage:?}");
    // A ClientHello cut short, then the client's side closed.
    let hello = client_hello();
    let (cut, _) = send_and_read(svc.front, &hello[..hello.len() / 2], true);
    assert!(cut.is_empty(), "{cut:?}");
    // A whole ClientHello, then nothing: the server's flight, then closed
    // at timeout_client.
    let (flight, after) = send_and_read(svc.front, &hello, false);
    assert_eq!(flight.first(), Some(&0x16), "a ServerHello record first");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(8),
        "closed after {after:?}, want about 1 s (timeout_client)"
    );
    // Each is counted as its connection ends (a moment after the client
    // sees it closed).
    let failures = |m: &std::collections::BTreeMap<String, f64>, r: &str| {
        m.get(&format!(
            "balancer_tls_handshake_failures_total{{frontend=\"web\",reason=\"{r}\"}}"
        ))
        .copied()
        .unwrap_or(-1.0)
    };
    let want = [
        ("plain_http", 1.0),
        ("malformed", 1.0),
        ("closed", 1.0),
        ("timeout", 1.0),
    ];
    let counted = |m: &std::collections::BTreeMap<String, f64>| {
        want.iter().all(|(r, n)| failures(m, r) == *n)
    };
    wait_for(Duration::from_secs(5), || counted(&scrape(metrics)));
    let m = scrape(metrics);
    for (r, n) in want {
        assert_eq!(failures(&m, r), n, "{r}: {m:?}");
    }
    assert_eq!(
        m.get("balancer_tls_handshakes_total{frontend=\"web\",kind=\"full\"}")
            .copied(),
        Some(0.0),
        "{m:?}"
    );
}

#[test]
fn a_thousand_half_open_handshakes_leave_room_for_a_real_client() {
    // The test holds 1,000 connections: room for them.
    let limit = libc::rlimit {
        rlim_cur: 8192,
        rlim_max: 8192,
    };
    // SAFETY: setrlimit with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    let pki = pki("flood");
    let a = pki
        .server("a.pem", &["a.test"], Key::EcdsaP256, 30)
        .unwrap();
    let (svc, metrics, _backends) = start("https-flood", &tls_line(&[&a]), "", 1);
    let hello = client_hello();
    let mut held = Vec::new();
    for _ in 0..1000 {
        let mut s = TcpStream::connect(svc.front).unwrap();
        s.write_all(&hello).unwrap();
        held.push(s);
    }
    // Each got its server flight (the server did its part of the
    // handshake), and waits for the client's Finished, which never comes.
    assert!(
        wait_for(Duration::from_secs(30), || {
            let m = scrape(metrics);
            m.get("balancer_http_connections_total{frontend=\"web\"}")
                .copied()
                >= Some(1000.0)
        }),
        "the 1,000 connections were not all accepted"
    );
    let mut times = Vec::new();
    for _ in 0..5 {
        let r = curl(svc.front, "a.test", "/", &pki.ca, &[]).unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        times.push(r.seconds);
    }
    times.sort_by(f64::total_cmp);
    eprintln!("curl total times while 1,000 handshakes are held (s): {times:?}");
    assert!(
        times[2] < 1.0,
        "median {} s, want under 1 s: {times:?}",
        times[2]
    );
    drop(held);
}

/// A client on one keep-alive TLS connection (Python's ssl module): one
/// request now, another each time a line is written to its stdin; prints
/// each status.
const KEEP_ALIVE_CLIENT: &str = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="a.test")
f = s.makefile("rb")
def get():
    s.sendall(b"GET /ka HTTP/1.1\r\nHost: a.test\r\n\r\n")
    status = f.readline().split()[1].decode()
    length = 0
    while True:
        line = f.readline().strip()
        if not line:
            break
        k, _, v = line.partition(b":")
        if k.lower() == b"content-length":
            length = int(v)
    f.read(length)
    print(status, flush=True)
get()
for _ in sys.stdin:
    get()
"#;

#[test]
fn sighup_replaces_certificates_and_refuses_bad_ones() {
    let pki = pki("reload");
    let live = pki.dir.join("live.pem");
    let first = pki
        .server("first.pem", &["a.test"], Key::EcdsaP256, 30)
        .unwrap();
    std::fs::copy(&first, &live).unwrap();
    let (svc, metrics, _backends) = start("https-reload", &tls_line(&[&live]), "", 1);
    // The expiry metric: days from now of the certificate in use.
    let days_left = || {
        let m = scrape(metrics);
        let (_, v) = m
            .iter()
            .find(|(k, _)| k.starts_with("balancer_tls_certificate_not_after_seconds{"))
            .unwrap_or_else(|| panic!("no expiry metric: {m:?}"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        ((v - now) / 86_400.0).round()
    };
    assert_eq!(days_left(), 30.0);
    assert_eq!(
        served_fingerprint(svc.front, "a.test").unwrap(),
        fingerprint(&first).unwrap()
    );

    // A client keeps one connection open across the reloads.
    let mut ka = Command::new("python3")
        .args(["-c", KEEP_ALIVE_CLIENT, &svc.front.port().to_string()])
        .arg(&pki.ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut ka_in = ka.stdin.take().unwrap();
    let mut ka_out = std::io::BufReader::new(ka.stdout.take().unwrap());
    let mut status = || {
        let mut l = String::new();
        std::io::BufRead::read_line(&mut ka_out, &mut l).unwrap();
        l.trim().to_owned()
    };
    assert_eq!(status(), "200");

    // A new certificate: served from the reload on.
    let second = pki
        .server("second.pem", &["a.test"], Key::Rsa2048, 60)
        .unwrap();
    std::fs::copy(&second, &live).unwrap();
    let reloads = |svc: &Svc| svc.daemon.output().matches("SIGHUP: reloading").count();
    let hup = |svc: &Svc| {
        let n = reloads(svc);
        svc.daemon.signal(libc::SIGHUP).unwrap();
        assert!(wait_for(Duration::from_secs(10), || reloads(svc) > n));
    };
    hup(&svc);
    svc.daemon
        .expect_logged("reloaded:", Duration::from_secs(10));
    assert_eq!(
        served_fingerprint(svc.front, "a.test").unwrap(),
        fingerprint(&second).unwrap()
    );
    assert_eq!(days_left(), 60.0);
    ka_in.write_all(b"\n").unwrap();
    assert_eq!(status(), "200", "the connection opened before the reload");

    // Bad replacements: refused, each with its reason; the second stays.
    let expired = pki
        .server("expired.pem", &["a.test"], Key::EcdsaP256, -1)
        .unwrap();
    let other = pki
        .server("other.pem", &["a.test"], Key::EcdsaP256, 30)
        .unwrap();
    let mismatch = {
        let cert = std::fs::read_to_string(&second).unwrap();
        let key = std::fs::read_to_string(&other).unwrap();
        let cert_part = &cert[..cert.find("-----BEGIN PRIVATE KEY").unwrap()];
        let key_part = &key[key.find("-----BEGIN PRIVATE KEY").unwrap()..];
        format!("{cert_part}{key_part}")
    };
    let cases: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        (
            "expired",
            Some(std::fs::read(&expired).unwrap()),
            "expired on",
        ),
        (
            "key mismatch",
            Some(mismatch.into_bytes()),
            "does not belong",
        ),
        (
            "garbage",
            Some(b"not a certificate\n".to_vec()),
            "no certificate",
        ),
        ("missing", None, "cannot read"),
    ];
    for (what, content, reason) in cases {
        match &content {
            Some(c) => std::fs::write(&live, c).unwrap(),
            None => std::fs::remove_file(&live).unwrap(),
        }
        let before = svc.daemon.output().matches("reload refused").count();
        hup(&svc);
        assert!(
            wait_for(Duration::from_secs(10), || svc
                .daemon
                .output()
                .matches("reload refused")
                .count()
                > before),
            "{what}: the reload was not refused:\n{}",
            svc.daemon.output()
        );
        let log = svc.daemon.output();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("reload refused"))
            .unwrap();
        assert!(line.contains(reason), "{what}: {line}");
        assert!(line.contains(&live.display().to_string()), "{what}: {line}");
        // check-config says the same.
        let check = Command::new(balancer_tests::balancer_bin())
            .arg("check-config")
            .arg(svc.dir.join("balancer.toml"))
            .output()
            .unwrap();
        assert!(!check.status.success(), "{what}: check-config passed");
        assert!(
            String::from_utf8_lossy(&check.stderr).contains(reason),
            "{what}: {check:?}"
        );
        assert_eq!(
            served_fingerprint(svc.front, "a.test").unwrap(),
            fingerprint(&second).unwrap(),
            "{what}: the running certificate was replaced"
        );
    }
    ka_in.write_all(b"\n").unwrap();
    assert_eq!(status(), "200", "the connection opened before the reloads");
    drop(ka_in);
    let _ = ka.wait();
}

#[test]
fn tls_to_servers_verified_pooled_and_resumed() {
    let pki = pki("upstream");
    let pem = pki
        .server("backend.pem", &["backend.test"], Key::EcdsaP256, 30)
        .unwrap();
    // s0 keeps its connections; s1 closes each after one response, so
    // every request to it is a new TLS connection (resumed after the first).
    let keep = Backend::start_tls("s0", &pem, false).unwrap();
    let close = Backend::start_tls("s1", &pem, true).unwrap();
    let servers = format!(
        "[[backend.server]]\nname = \"s0\"\naddress = \"{}\"\ncookie = \"s0\"\n\
         [[backend.server]]\nname = \"s1\"\naddress = \"{}\"\ncookie = \"s1\"\n",
        keep.addr, close.addr
    );
    let backend = |ssl: &str| {
        format!("balance = \"roundrobin\"\ncookie = \"SERVER insert indirect\"\nssl = {ssl}\n")
    };
    let ssl = format!(
        "{{ ca_file = \"{}\", sni = \"backend.test\" }}",
        pki.ca.display()
    );
    let svc = Svc::launch("https-up", "", &backend(&ssl), &servers);
    let mut c = balancer_tests::http::Client::new(svc.front);
    for (server, n) in [("s0", 5), ("s1", 5)] {
        c.jar.insert("SERVER".into(), server.into());
        for _ in 0..n {
            let a = c.get("/up").unwrap();
            assert_eq!((a.status, a.body.as_str()), (200, server), "{a:?}");
        }
    }
    // Pooled: s0's five requests took one connection per worker at most.
    let (full0, resumed0) = keep.tls_handshakes();
    assert!(
        full0 + resumed0 <= 2,
        "s0: {full0} full, {resumed0} resumed handshakes"
    );
    // Resumed: five connections to s1, the later ones resuming.
    let (full1, resumed1) = close.tls_handshakes();
    assert_eq!(full1 + resumed1, 5, "s1: {full1} full, {resumed1} resumed");
    assert!(resumed1 >= 3, "s1: {full1} full, {resumed1} resumed");

    // A certificate that is not for the name asked: refused, answered 503.
    let wrong = format!(
        "{{ ca_file = \"{}\", sni = \"other.test\" }}",
        pki.ca.display()
    );
    let bad = Svc::launch("https-up-name", "", &backend(&wrong), &servers);
    let a = balancer_tests::http::Client::new(bad.front)
        .get("/")
        .unwrap();
    assert_eq!(a.status, 503, "{a:?}");
    // An untrusted issuer: refused too; with verify = "none", taken.
    let other_ca = self::pki("upstream-other");
    let untrusted = format!("{{ ca_file = \"{}\" }}", other_ca.ca.display());
    let bad = Svc::launch("https-up-ca", "", &backend(&untrusted), &servers);
    let a = balancer_tests::http::Client::new(bad.front)
        .get("/")
        .unwrap();
    assert_eq!(a.status, 503, "{a:?}");
    let none = Svc::launch(
        "https-up-none",
        "",
        &backend("{ verify = \"none\" }"),
        &servers,
    );
    let a = balancer_tests::http::Client::new(none.front)
        .get("/")
        .unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    // A CA file that is not one: check-config says which and why.
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let cfg = std::fs::read_to_string(svc.dir.join("balancer.toml"))
        .unwrap()
        .replace(
            &pki.ca.display().to_string(),
            &garbage.display().to_string(),
        );
    let file = pki.dir.join("bad-ca.toml");
    std::fs::write(&file, cfg).unwrap();
    let check = Command::new(balancer_tests::balancer_bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        !check.status.success() && err.contains("no certificate in it"),
        "{err}"
    );
}

/// Raw bytes of the answer to `req` on a new connection to `to` (read
/// until the server closes or 2 s pass).
fn raw_answer(to: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    // The status line, then the header fields sorted (their order carries
    // no meaning), without `date` (hyper adds it to every answer).
    let text = String::from_utf8_lossy(&out).to_lowercase();
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let status = lines.next().unwrap_or_default().to_owned();
    let mut fields: Vec<&str> = lines.filter(|l| !l.starts_with("date:")).collect();
    fields.sort_unstable();
    format!("{status}\n{}", fields.join("\n"))
}

#[test]
fn one_haproxy_cfg_with_ssl_binds_and_a_redirect_runs_in_both() {
    let pki = pki("cfg");
    let pem = pki
        .server("site.pem", &["site.test"], Key::EcdsaP256, 30)
        .unwrap();
    // The server behind both speaks TLS too, verified against the CA.
    let origin_pem = pki
        .server("origin.pem", &["origin.test"], Key::EcdsaP256, 30)
        .unwrap();
    let origin = Backend::start_tls("s1", &origin_pem, false).unwrap();
    let (ha_tls, bl_tls) = (free_port().unwrap(), free_port().unwrap());
    let cfg = |front: SocketAddr, tls_port: u16, sock: &Path| {
        format!(
            "global\n    stats socket {}\n    ssl-default-bind-options ssl-min-ver TLSv1.2\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    \
             timeout server 5s\n\
             frontend www\n    bind {front}\n    bind 127.0.0.1:{tls_port} ssl crt {} alpn h2,http/1.1\n    \
             redirect scheme https code 301 if !{{ ssl_fc }}\n    default_backend app\n\
             backend app\n    cookie SERVER insert indirect nocache secure\n    \
             server s1 {} cookie s1 ssl verify required ca-file {} sni str(origin.test)\n",
            sock.display(),
            pem.display(),
            origin.addr,
            pki.ca.display()
        )
    };
    let ha = balancer_tests::haproxy::Haproxy::start("https-cfg", |front, sock| {
        cfg(front, ha_tls, sock)
    });
    let bl = Svc::launch_cfg("https-cfg", |front| {
        cfg(front, bl_tls, Path::new("/dev/null"))
    });
    // Cleartext: the redirect, byte for byte (headers lower-cased).
    for req in [
        &b"GET /a/b?x=1 HTTP/1.1\r\nHost: www.test:8080\r\n\r\n"[..],
        b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    ] {
        assert_eq!(
            raw_answer(bl.front, req),
            raw_answer(ha.front, req),
            "{}",
            String::from_utf8_lossy(req)
        );
    }
    // TLS: proxied, the same cookie.
    let at = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
    let (h, b) = (
        curl(at(ha_tls), "site.test", "/", &pki.ca, &[]).unwrap(),
        curl(at(bl_tls), "site.test", "/", &pki.ca, &[]).unwrap(),
    );
    assert_eq!((h.status, &h.http_version), (b.status, &b.http_version));
    let cookie = |c: &balancer_tests::tls::Curl| {
        c.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(cookie(&b), cookie(&h));
    assert_eq!(cookie(&b), ["SERVER=s1; path=/; Secure"]);
    // No `option forwardfor` in the file: neither adds X-Forwarded-For.
    let seen = origin.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|r| r.header("x-forwarded-for").is_none()),
        "{seen:?}"
    );
    // Both reached the server over TLS.
    let (full, resumed) = origin.tls_handshakes();
    assert!(
        full >= 2 && full + resumed >= 2,
        "{full} full, {resumed} resumed"
    );
}

#[test]
fn ssl_servers_are_checked_over_tls() {
    let pki = pki("checks");
    let other = self::pki("checks-other");
    let good = pki
        .server("good.pem", &["backend.test"], Key::EcdsaP256, 30)
        .unwrap();
    // Signed by a CA the backend does not trust: its handshake fails.
    let bad = other
        .server("bad.pem", &["backend.test"], Key::EcdsaP256, 30)
        .unwrap();
    let (s0, s1) = (
        Backend::start_tls("s0", &good, false).unwrap(),
        Backend::start_tls("s1", &bad, false).unwrap(),
    );
    let servers = format!(
        "[[backend.server]]\nname = \"s0\"\naddress = \"{}\"\ncheck = true\ninter = \"200ms\"\nfall = 1\nrise = 1\n\
         [[backend.server]]\nname = \"s1\"\naddress = \"{}\"\ncheck = true\ninter = \"200ms\"\nfall = 1\nrise = 1\n",
        s0.addr, s1.addr
    );
    let backend = format!(
        "check_type = \"http\"\ncheck_path = \"/health\"\nssl = {{ ca_file = \"{}\", sni = \"backend.test\" }}\n",
        pki.ca.display()
    );
    let svc = Svc::launch("https-checks", "", &backend, &servers);
    let state = |name: &str| svc.server_state(name);
    assert!(
        wait_for(Duration::from_secs(10), || state("s1") == "down"),
        "s1 (untrusted certificate) was not marked down: {}",
        svc.daemon.output()
    );
    assert_eq!(state("s0"), "up");
    // s0's checks were HTTP requests over TLS.
    assert!(
        wait_for(Duration::from_secs(5), || s0
            .requests()
            .iter()
            .any(|r| r.path == "/health")),
        "no check request reached s0"
    );
    let mut c = balancer_tests::http::Client::new(svc.front);
    for _ in 0..4 {
        assert_eq!(c.get("/").unwrap().body, "s0");
    }
}
