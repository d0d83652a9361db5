//! Bad input on the HTTP path: request smuggling attempts, enormous and
//! non-UTF-8 Cookie headers, forged cookies, slow clients. Each gets a 4xx
//! or a clean close (never a panic, never a request to an unknown server),
//! and other clients are unaffected.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use balancer_tests::http::{Backend, Client, Svc};

/// Send raw bytes, read until the proxy closes or 3 s pass; the text.
fn raw(to: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn bad_requests_get_4xx_or_a_close_and_hurt_nobody() {
    let backends: Vec<Backend> = (0..2)
        .map(|j| Backend::start(&format!("s{j}"), 0).unwrap())
        .collect();
    let cookies: Vec<String> = backends
        .iter()
        .map(|b| format!("cookie = \"{}\"", b.name))
        .collect();
    let servers: Vec<(&str, SocketAddr, &str)> = backends
        .iter()
        .zip(&cookies)
        .map(|(b, c)| (b.name.as_str(), b.addr, c.as_str()))
        .collect();
    let mut p = Svc::start_on_with(
        "http-bad",
        "timeout_client = \"1s\"\nmax_header_bytes = 16384\n",
        "cookie = \"SERVER insert indirect nocache\"\n",
        &servers,
    );
    let mut good = Client::new(p.front);
    let home = good.get("/").unwrap().body;

    // 1. Content-Length and Transfer-Encoding together (a smuggling
    // attempt): refused, or the body framed by Transfer-Encoding alone;
    // the backend never sees the would-be smuggled request as a request of
    // its own on a connection shared with other users.
    let a = raw(
        p.front,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    // hyper follows RFC 9112 6.3: Transfer-Encoding wins, and the
    // connection is closed after the answer, so nothing after the chunked
    // body is read as a request.
    let s = status_of(&a);
    assert!(
        s == 400 || (s == 200 && a.to_ascii_lowercase().contains("connection: close")),
        "CL+TE: {a:?}"
    );
    // 2. Two Content-Lengths that disagree.
    let a = raw(
        p.front,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 7\r\n\r\nabcdefg",
    );
    assert_eq!(status_of(&a), 400, "CL/CL: {a:?}");
    // 3. A head over max_header_bytes.
    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\nCookie: a=".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 100_000));
    huge.extend_from_slice(b"\r\n\r\n");
    let a = raw(p.front, &huge);
    let s = status_of(&a);
    assert!(a.is_empty() || (400..500).contains(&s), "huge head: {a:?}");
    // 4. Non-UTF-8 and malformed cookies: served like any request.
    let a = raw(
        p.front,
        b"GET / HTTP/1.1\r\nHost: x\r\nCookie: SERVER=\xff\xfe; ;;=;a\xc3=1; SERVER\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&a), 200, "garbage cookie: {a:?}");
    // 5. A cookie naming no server (or a forged address): balanced as a
    // new user, never sent anywhere but s0/s1.
    for forged in [
        "SERVER=s9",
        "SERVER=127.0.0.1:22",
        "SERVER=../s0",
        "SERVER=s0~x",
    ] {
        let a = raw(
            p.front,
            format!("GET / HTTP/1.1\r\nHost: x\r\nCookie: {forged}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(status_of(&a), 200, "{forged}: {a:?}");
        assert!(
            a.contains("SERVER=s0; path=/") || a.contains("SERVER=s1; path=/"),
            "{forged}: {a:?}"
        );
    }
    // 6. A slow client (half a head, then silence) is closed after
    // timeout_client.
    let mut slow = TcpStream::connect(p.front).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "slow client not closed: {:?}",
        t.elapsed()
    );
    let a = String::from_utf8_lossy(&buf);
    assert!(a.is_empty() || status_of(&a) == 408, "{a:?}");

    // Nobody else noticed: the first client is still served by its server,
    // the daemon lives, and no backend saw a request it should not have.
    assert_eq!(good.get("/").unwrap().body, home);
    assert!(p.daemon.try_wait().unwrap().is_none(), "daemon died");
    for b in &backends {
        for r in b.requests() {
            assert_ne!(
                r.path, "/smuggled",
                "{}: a smuggled request got through",
                b.name
            );
        }
    }
}

/// RFC 9112 3.2: an HTTP/1.1 request without `Host`, or any with two, is
/// answered 400 and reaches no server; an absolute-form request names its
/// host in the request-target, and that is the `Host` the server sees.
#[test]
fn host_is_required_once_and_absolute_form_names_it() {
    let b = Backend::start("s0", 0).unwrap();
    let p = Svc::start_on("http-host", "", &[("s0", b.addr, "")]);
    for (what, req) in [
        ("no Host", &b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n"[..]),
        (
            "two Hosts",
            b"GET /b HTTP/1.1\r\nHost: one.example\r\nHost: two.example\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let a = raw(p.front, req);
        assert_eq!(status_of(&a), 400, "{what}: {a:?}");
    }
    assert!(
        b.requests().is_empty(),
        "a refused request reached the server"
    );
    // HTTP/1.0 needs no Host.
    let a = raw(p.front, b"GET /c HTTP/1.0\r\n\r\n");
    assert_eq!(status_of(&a), 200, "HTTP/1.0 without Host: {a:?}");
    // Absolute-form: the target's authority wins over Host.
    let a = raw(
        p.front,
        b"GET http://right.example:8080/d HTTP/1.1\r\nHost: wrong.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&a), 200, "absolute-form: {a:?}");
    let seen = b.requests();
    let d = seen.iter().find(|r| r.path == "/d").expect("/d reached s0");
    assert_eq!(d.header("host"), Some("right.example:8080"));
}

/// `Upgrade: h2c` is not passed on (the proxy would tunnel whatever the
/// server answered with 101): the request goes on as HTTP/1.1 without it.
/// A WebSocket upgrade is still one (tests/http_proxy.rs).
#[test]
fn an_h2c_upgrade_is_dropped_not_tunnelled() {
    let b = Backend::start("s0", 0).unwrap();
    let p = Svc::start_on("http-h2c", "", &[("s0", b.addr, "")]);
    let a = raw(
        p.front,
        b"GET /e HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    assert_eq!(status_of(&a), 200, "{a:?}");
    let seen = b.requests();
    let e = seen.iter().find(|r| r.path == "/e").expect("/e reached s0");
    for h in ["upgrade", "http2-settings"] {
        assert_eq!(e.header(h), None, "{h} was forwarded: {:?}", e.headers);
    }
}
