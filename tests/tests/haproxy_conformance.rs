//! HAProxy conformance of the HTTP path's cookie persistence.
//!
//! Every scenario is one haproxy.cfg text, run by HAProxy 2.6 (`haproxy
//! -db`) and by `balancer run --config` (the same text but for the
//! frontend's port: no second, hand-kept TOML copy), both in front of the
//! *same* backends (so dynamic cookies, which hash the server's address and
//! port, must come out identical). A server "down" fails its health checks
//! (to a port where nothing listens) in both; "maint" is `disabled`;
//! "drain" is set through each one's admin interface.
//!
//! For each request the two sides must agree on: the status, which server
//! answered (the backend's own record of the request, and its body), every
//! `Set-Cookie` and `Set-Cookie2` header (name, value, attributes, order),
//! every `Cache-Control` header, and every `Cookie` header the server
//! received (byte for byte, in order). A difference fails the test with both
//! sides shown.
//!
//! Server choice for users without a valid cookie is made deterministic with
//! weights: one server has weight 1, the others 0 (they only take persistent
//! requests, in HAProxy as in balancer).
//!
//! Dates (`maxidle` / `maxlife`): the inserted cookie is `VALUE|last|first`,
//! each date 5 base64 characters of Unix time / 4, taken from each proxy's
//! own clock when it answers. The two answers are compared after
//! normalising, in the persistence cookie only, every date that lies within
//! `DATE_SLACK` seconds of the test's clock to the token `<now>`. Any other
//! date stays literal, so a date carried over from the request (the "first
//! seen" date of a refreshed cookie) must be reproduced exactly, and the
//! structure (which dates are present, in which order) must be identical.
//! This is stricter than allowing the two dates to differ by a few seconds:
//! it also checks that "now" is really now on both sides. Request cookies
//! carry dates at least 60 s away from any limit, so the verdicts do not
//! depend on when exactly each proxy reads its clock.
//!
//! Each request is a fresh HTTP/1.1 connection (a few go over HTTP/2 with
//! prior knowledge, sent by curl), and each is made twice: in cleartext, and
//! over TLS to a second `bind ... ssl crt FILE alpn h2,http/1.1` of the same
//! frontend, both proxies serving the same certificate (HTTP/1.1 from the
//! test's rustls client; the HTTP/2 ones through curl with ALPN h2). Backends answer `200` (or the status the
//! request asks for) with extra response headers chosen by the request
//! itself: its path carries them percent-encoded (`/r?st=404&h=...`).
//! HAProxy runs without logging or `option forwardfor`, so it adds none of
//! the compared headers itself (its own error pages carry `Cache-Control:
//! no-cache`, as balancer's do, and are compared as they are); both retry a
//! refused connection once (`retries 1`, `timeout connect 200ms`).
//!
//! Besides the hand-written scenarios, generated `Cookie` and `Set-Cookie` /
//! `Set-Cookie2` headers (a fixed seed, tricky pieces: blanks around `=`,
//! quotes, `$` attributes, empty pairs, cookies without `=`, duplicates) go
//! through several modes.
//!
//! Every difference is a failure (none is ignored).

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use balancer_tests::{
    haproxy::{HAPROXY, Haproxy, http_config_binds},
    http::{Answer, Backend, Client, Seen, Svc, free_port},
    proc::{Proc, wait_for},
    require_root,
    tls::{ClientTls, Key, Pki},
};

/// Dates this close to the test's clock are normalised to `<now>`.
const DATE_SLACK: i64 = 8;
const COOKIE_KEY: &str = "conformance-key";

// ----- configuration ---------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Up,
    /// Marked down: failing health checks (HAProxy), `state = "down"`
    /// (balancer). The server itself still answers unless `dead`.
    Down,
    /// Maintenance: `disabled` (HAProxy), `state = "maint"` (balancer).
    Maint,
    /// Draining: `set server BACKEND/SERVER state drain` on HAProxy's admin
    /// socket, `state = "drain"` (balancer).
    Drain,
}

#[derive(Clone, Copy, Debug)]
struct Srv {
    name: &'static str,
    /// The server's `cookie` value; `None`: no `cookie` keyword (dynamic
    /// value, or no value at all).
    cookie: Option<&'static str>,
    weight: u32,
    state: State,
    /// Nothing listens on its address.
    dead: bool,
}

const fn srv(name: &'static str, weight: u32) -> Srv {
    Srv {
        name,
        cookie: Some(name),
        weight,
        state: State::Up,
        dead: false,
    }
}

impl Srv {
    const fn no_cookie(mut self) -> Srv {
        self.cookie = None;
        self
    }
    const fn state(mut self, state: State) -> Srv {
        self.state = state;
        self
    }
    const fn dead(mut self) -> Srv {
        self.dead = true;
        self
    }
}

/// s0 takes every new user; s1 and s2 only persistent ones.
const THREE: [Srv; 3] = [srv("s0", 1), srv("s1", 0), srv("s2", 0)];

struct Spec {
    tag: &'static str,
    /// HAProxy's `cookie` arguments, given verbatim to both.
    cookie: &'static str,
    /// `persist` and/or `redispatch`.
    options: &'static [&'static str],
    dynamic_key: Option<&'static str>,
    servers: Vec<Srv>,
}

impl Spec {
    fn new(tag: &'static str, cookie: &'static str) -> Spec {
        Spec {
            tag,
            cookie,
            options: &[],
            dynamic_key: None,
            servers: THREE.to_vec(),
        }
    }
    fn options(mut self, options: &'static [&'static str]) -> Spec {
        self.options = options;
        self
    }
    fn servers(mut self, servers: &[Srv]) -> Spec {
        self.servers = servers.to_vec();
        self
    }
    fn dynamic(mut self, key: &'static str) -> Spec {
        self.dynamic_key = Some(key);
        self
    }
    fn cookie_name(&self) -> &str {
        self.cookie
            .split_ascii_whitespace()
            .next()
            .unwrap_or_default()
    }
}

// ----- requests --------------------------------------------------------------

#[derive(Clone, Debug)]
struct Req {
    note: String,
    method: &'static str,
    /// One `Cookie` header each, sent as is.
    cookies: Vec<String>,
    /// The status the server answers.
    status: u16,
    /// Header lines (without CRLF) the server adds to its answer.
    answer: Vec<String>,
    /// The server HAProxy must pick (a check of the scenario itself).
    expect: Option<&'static str>,
    /// Sent over HTTP/2 (prior knowledge, by curl), each `Cookie` header
    /// as one `cookie` field.
    h2: bool,
}

fn get(note: impl Into<String>) -> Req {
    Req {
        note: note.into(),
        method: "GET",
        cookies: Vec::new(),
        status: 200,
        answer: Vec::new(),
        expect: None,
        h2: false,
    }
}

fn post(note: impl Into<String>) -> Req {
    Req {
        method: "POST",
        ..get(note)
    }
}

impl Req {
    fn cookie(mut self, header: impl Into<String>) -> Req {
        self.cookies.push(header.into());
        self
    }
    fn answer(mut self, line: impl Into<String>) -> Req {
        self.answer.push(line.into());
        self
    }
    fn status(mut self, status: u16) -> Req {
        self.status = status;
        self
    }
    fn method(mut self, method: &'static str) -> Req {
        self.method = method;
        self
    }
    fn h2(mut self) -> Req {
        self.h2 = true;
        self
    }
    fn expect(mut self, server: &'static str) -> Req {
        self.expect = Some(server);
        self
    }

    /// The request line's target: the answer the server must give, encoded.
    fn target(&self) -> String {
        let mut t = format!("/r?st={}", self.status);
        for line in &self.answer {
            t.push_str("&h=");
            t.push_str(&pct_encode(line));
        }
        t
    }

    fn raw(&self) -> String {
        let mut r = format!(
            "{} {} HTTP/1.1\r\nHost: lab\r\n",
            self.method,
            self.target()
        );
        for c in &self.cookies {
            let _ = write!(r, "Cookie: {c}\r\n");
        }
        if self.method == "POST" || self.method == "PUT" {
            r.push_str(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\nx=1",
            );
        } else {
            r.push_str("\r\n");
        }
        r
    }
}

fn pct_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .map_err(|_| ())
                .and_then(|h| u8::from_str_radix(h, 16).map_err(|_| ()))
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The backends' answer: what the request's target asks for.
fn respond(seen: &Seen) -> (u16, String) {
    let query = seen.path.split_once('?').map_or("", |(_, q)| q);
    let mut status = 200;
    let mut extra = String::new();
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("st", v)) => status = v.parse().unwrap_or(200),
            Some(("h", v)) => {
                extra.push_str(&pct_decode(v));
                extra.push_str("\r\n");
            }
            _ => {}
        }
    }
    (status, extra)
}

// ----- dates -----------------------------------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A cookie date: Unix time `t` / 4 in 5 base64 digits.
fn date(t: i64) -> String {
    let v = (t >> 2) as u32;
    (0..5)
        .map(|i| char::from(B64[((v >> (24 - 6 * i)) & 0x3f) as usize]))
        .collect()
}

/// Unix time of a cookie date, if it is one.
fn undate(s: &str) -> Option<i64> {
    if s.len() != 5 {
        return None;
    }
    s.bytes()
        .try_fold(0i64, |acc, c| {
            let d = B64.iter().position(|&x| x == c)? as i64;
            Some((acc << 6) | d)
        })
        .map(|v| v << 2)
}

/// `Set-Cookie` of the persistence cookie with its current dates as `<now>`.
fn normalise_dates(name: &str, header: &str, now: i64) -> String {
    let (pair, rest) = header.split_at(header.find(';').unwrap_or(header.len()));
    let Some((n, value)) = pair.split_once('=') else {
        return header.to_owned();
    };
    if n.trim() != name || !value.contains('|') {
        return header.to_owned();
    }
    let mut parts = value.split('|');
    let mut out = format!("{n}={}", parts.next().unwrap_or_default());
    for p in parts {
        out.push('|');
        match undate(p) {
            Some(t) if (t - now).abs() <= DATE_SLACK => out.push_str("<now>"),
            _ => out.push_str(p),
        }
    }
    out + rest
}

// ----- the two proxies -------------------------------------------------------

/// `haproxy -db` with its config in `blb-<pid>-ha-<tag>`.
/// The scenario's haproxy.cfg, for a frontend on `front` and an admin
/// socket at `sock`: HAProxy runs it, and balancer runs the same text (on
/// another port). A `Down` server is checked on `dead_port`, where nothing
/// listens (down after one check, never back up during the test).
fn cfg_text(
    spec: &Spec,
    addrs: &[SocketAddr],
    dead_port: u16,
    front: SocketAddr,
    tls: &str,
    sock: &Path,
) -> String {
    let mut backend = format!("    balance roundrobin\n    cookie {}\n", spec.cookie);
    if let Some(k) = spec.dynamic_key {
        let _ = writeln!(backend, "    dynamic-cookie-key {k}");
    }
    for o in spec.options {
        let _ = writeln!(backend, "    option {o}");
    }
    for (s, addr) in spec.servers.iter().zip(addrs) {
        let _ = write!(backend, "    server {} {addr} weight {}", s.name, s.weight);
        if let Some(c) = s.cookie {
            let _ = write!(backend, " cookie {c}");
        }
        match s.state {
            State::Up => {}
            State::Down => {
                let _ = write!(
                    backend,
                    " check port {dead_port} inter 100ms fall 1 rise 100"
                );
            }
            State::Maint => backend.push_str(" disabled"),
            State::Drain => {}
        }
        backend.push('\n');
    }
    http_config_binds(front, tls, sock, &backend)
}

/// Until both have marked the `Down` servers down (by their checks) and
/// drained the `Drain` ones.
fn wait_ready(ha: &mut Haproxy, bl: &Svc, spec: &Spec) {
    for s in spec.servers.iter().filter(|s| s.state == State::Down) {
        let line = format!("Server app/{} is DOWN", s.name);
        assert!(
            wait_for(Duration::from_secs(10), || ha.proc.output().contains(&line)),
            "haproxy never marked {} down: {}",
            s.name,
            ha.proc.output()
        );
    }
    for s in spec.servers.iter().filter(|s| s.state == State::Drain) {
        let answer = ha.admin(&format!("set server app/{} state drain", s.name));
        assert!(
            answer.trim().is_empty(),
            "haproxy: drain {}: {answer}",
            s.name
        );
        bl.cli(&["backend", "state", &format!("app/{}", s.name), "drain"]);
    }
    let down = |name: &str| {
        let out = bl.cli(&["backend", "list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .any(|s| s["server"] == name && s["state"] == "down")
    };
    for s in spec.servers.iter().filter(|s| s.state == State::Down) {
        assert!(
            wait_for(Duration::from_secs(10), || down(s.name)),
            "balancer never marked {} down",
            s.name
        );
    }
}

/// Both proxies in front of the same backends.
struct Pair {
    spec: Spec,
    /// One per server; `None` for a dead one.
    backends: Vec<Option<Backend>>,
    addrs: Vec<SocketAddr>,
    ha: Haproxy,
    bl: Svc,
    /// Each proxy's TLS bind (one certificate, the same file for both).
    ha_tls: SocketAddr,
    bl_tls: SocketAddr,
    /// The test CA and the client's trust in it.
    pki: Pki,
    client_tls: ClientTls,
}

/// The name of the certificate both proxies serve.
const TLS_NAME: &str = "conformance.test";

impl Pair {
    fn start(spec: Spec) -> Pair {
        require_root();
        let backends: Vec<Option<Backend>> = spec
            .servers
            .iter()
            .map(|s| (!s.dead).then(|| Backend::start_fn(s.name, 0, respond).expect("backend")))
            .collect();
        let addrs: Vec<SocketAddr> = backends
            .iter()
            .map(|b| match b {
                Some(b) => b.addr,
                None => format!("127.0.0.1:{}", free_port().unwrap())
                    .parse()
                    .unwrap(),
            })
            .collect();
        let dead_port = free_port().unwrap();
        let pki = Pki::new(&std::env::temp_dir().join(format!(
            "blb-{}-pki-{}",
            std::process::id(),
            spec.tag
        )))
        .expect("openssl: a test CA");
        let pem = pki
            .server("site.pem", &[TLS_NAME], Key::EcdsaP256, 30)
            .expect("openssl: a certificate");
        let port = || -> SocketAddr {
            format!("127.0.0.1:{}", free_port().unwrap())
                .parse()
                .unwrap()
        };
        let (ha_tls, bl_tls) = (port(), port());
        let bind =
            |a: SocketAddr| format!("    bind {a} ssl crt {} alpn h2,http/1.1\n", pem.display());
        let mut ha = Haproxy::start(&format!("ha-{}", spec.tag), |front, sock| {
            cfg_text(&spec, &addrs, dead_port, front, &bind(ha_tls), sock)
        });
        let bl = Svc::launch_cfg(&format!("conf-{}", spec.tag), |front| {
            cfg_text(
                &spec,
                &addrs,
                dead_port,
                front,
                &bind(bl_tls),
                Path::new("/dev/null"),
            )
        });
        wait_ready(&mut ha, &bl, &spec);
        let client_tls = ClientTls::new(&pki.ca, TLS_NAME).expect("the test CA");
        Pair {
            spec,
            backends,
            addrs,
            ha,
            bl,
            ha_tls,
            bl_tls,
            pki,
            client_tls,
        }
    }

    fn addr_of(&self, name: &str) -> SocketAddr {
        let i = self
            .spec
            .servers
            .iter()
            .position(|s| s.name == name)
            .expect("server");
        self.addrs[i]
    }

    fn counts(&self) -> Vec<usize> {
        self.backends
            .iter()
            .map(|b| b.as_ref().map_or(0, |b| b.requests().len()))
            .collect()
    }

    /// One request through one proxy.
    fn exchange(&self, front: SocketAddr, req: &Req, tls: bool) -> Outcome {
        let before = self.counts();
        let answer = match (req.h2, tls) {
            (true, false) => curl_h2(front, req, None),
            (true, true) => curl_h2(front, req, Some(&self.pki.ca)),
            (false, false) => Client::new(front).raw(&req.raw()),
            (false, true) => Client::tls(front, self.client_tls.clone()).raw(&req.raw()),
        };
        let after = self.counts();
        let reached: Vec<(usize, Seen)> = before
            .iter()
            .zip(&after)
            .enumerate()
            .filter(|(_, (b, a))| a > b)
            .filter_map(|(i, _)| {
                let b = self.backends[i].as_ref()?;
                Some((i, b.requests().last()?.clone()))
            })
            .collect();
        let (server, backend_cookie) = match reached.as_slice() {
            [] => ("-".to_owned(), Vec::new()),
            [(i, seen)] => (
                self.spec.servers[*i].name.to_owned(),
                seen.headers
                    .iter()
                    .filter(|(n, _)| n == "cookie")
                    .map(|(_, v)| v.clone())
                    .collect(),
            ),
            more => (
                format!(
                    "several: {:?}",
                    more.iter()
                        .map(|(i, _)| self.spec.servers[*i].name)
                        .collect::<Vec<_>>()
                ),
                Vec::new(),
            ),
        };
        let now = unix_now();
        match answer {
            Err(e) => Outcome {
                status: 0,
                server: format!("{server} (client error: {e})"),
                set_cookie: Vec::new(),
                set_cookie2: Vec::new(),
                cache_control: Vec::new(),
                backend_cookie,
            },
            Ok(a) => Outcome::from_answer(&a, server, backend_cookie, self.spec.cookie_name(), now),
        }
    }
}

/// `req` over HTTP/2 through curl: with prior knowledge (h2c), or over
/// TLS (ALPN h2) trusting `ca`.
fn curl_h2(front: SocketAddr, req: &Req, ca: Option<&Path>) -> std::io::Result<Answer> {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "10", "-X"])
        .arg(req.method);
    for c in &req.cookies {
        cmd.arg("-H").arg(format!("Cookie: {c}"));
    }
    let url = match ca {
        None => {
            cmd.arg("--http2-prior-knowledge");
            format!("http://{front}{}", req.target())
        }
        Some(ca) => {
            cmd.args(["--http2", "--cacert"]).arg(ca).args([
                "--resolve",
                &format!("{TLS_NAME}:{}:{}", front.port(), front.ip()),
            ]);
            format!("https://{TLS_NAME}:{}{}", front.port(), req.target())
        }
    };
    let out = cmd
        .arg(url)
        .output()
        .expect("curl (`cargo xtask setup` installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("curl: {text:?} {out:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("curl status: {head:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// What one proxy did with one request, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    status: u16,
    /// The server that received the request (`-`: none).
    server: String,
    /// Dates of the persistence cookie normalised (see the module doc).
    set_cookie: Vec<String>,
    set_cookie2: Vec<String>,
    cache_control: Vec<String>,
    /// Every `Cookie` header the server received, in order.
    backend_cookie: Vec<String>,
}

impl Outcome {
    fn from_answer(
        a: &Answer,
        server: String,
        backend_cookie: Vec<String>,
        name: &str,
        now: i64,
    ) -> Outcome {
        let mut server = server;
        // The body is the name of the server that answered.
        if a.status < 500 && server != "-" && a.body != server {
            server = format!("{server} (body {:?})", a.body);
        }
        let strings = |n: &str| a.all(n).into_iter().map(str::to_owned).collect::<Vec<_>>();
        Outcome {
            status: a.status,
            server,
            set_cookie: a
                .all("set-cookie")
                .into_iter()
                .map(|v| normalise_dates(name, v, now))
                .collect(),
            set_cookie2: strings("set-cookie2"),
            cache_control: strings("cache-control"),
            backend_cookie,
        }
    }

    fn show(&self) -> String {
        let mut s = format!("{} {}", self.status, self.server);
        if !self.set_cookie.is_empty() {
            let _ = write!(s, " set-cookie={:?}", self.set_cookie);
        }
        if !self.set_cookie2.is_empty() {
            let _ = write!(s, " set-cookie2={:?}", self.set_cookie2);
        }
        if !self.cache_control.is_empty() {
            let _ = write!(s, " cache-control={:?}", self.cache_control);
        }
        if !self.backend_cookie.is_empty() {
            let _ = write!(s, " server-got-cookie={:?}", self.backend_cookie);
        }
        s
    }
}

/// Run `reqs` through both proxies; fail with every difference.
fn conform(spec: Spec, reqs: impl FnOnce(&Pair) -> Vec<Req>) {
    let started = Instant::now();
    let pair = Pair::start(spec);
    let reqs = reqs(&pair);
    let mut diffs = Vec::new();
    let mut report = String::new();
    // Each request in cleartext, then over TLS (the same certificate on
    // both sides).
    let runs = reqs
        .iter()
        .enumerate()
        .flat_map(|(n, r)| [(n, r, false), (n, r, true)]);
    for (n, req, tls) in runs {
        let (ha_front, bl_front) = match tls {
            false => (pair.ha.front, pair.bl.front),
            true => (pair.ha_tls, pair.bl_tls),
        };
        let ha = pair.exchange(ha_front, req, tls);
        let bl = pair.exchange(bl_front, req, tls);
        let what = format!(
            "[{}#{n}{}] {}: {}{} cookies={:?} answer={:?} status={}",
            pair.spec.tag,
            if tls { " tls" } else { "" },
            req.note,
            req.method,
            if req.h2 { " (h2)" } else { "" },
            req.cookies,
            req.answer,
            req.status
        );
        if let Some(e) = req.expect
            && ha.server != e
        {
            diffs.push(format!(
                "{what}\n    scenario check: HAProxy should have picked {e}, got {}",
                ha.show()
            ));
        }
        if ha == bl {
            let _ = writeln!(report, "  ok   {what}\n         both: {}", ha.show());
        } else {
            let _ = writeln!(report, "  DIFF {what}");
            diffs.push(format!(
                "{what}\n    haproxy:  {}\n    balancer: {}",
                ha.show(),
                bl.show()
            ));
        }
    }
    println!(
        "scenario {} ({} requests, each in cleartext and over TLS, {:.2} s):\n{report}",
        pair.spec.tag,
        reqs.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        diffs.is_empty(),
        "{} difference(s) between HAProxy and balancer (cookie {:?}):\n{}",
        diffs.len(),
        pair.spec.cookie,
        diffs.join("\n")
    );
}

// ----- scenarios ---------------------------------------------------------------

const LAST_MODIFIED: &str = "Last-Modified: Sat, 28 Nov 2026 10:00:00 GMT";

#[test]
fn insert() {
    conform(Spec::new("insert", "SRV insert"), |_| {
        let now = unix_now();
        vec![
            get("no cookie: balanced, cookie inserted").expect("s0"),
            get("cookie names s1").cookie("SRV=s1").expect("s1"),
            get("cookie names s2").cookie("SRV=s2").expect("s2"),
            get("cookie names no server")
                .cookie("SRV=nosuch")
                .expect("s0"),
            get("empty cookie value").cookie("SRV=").expect("s0"),
            get("name is case-sensitive").cookie("srv=s1").expect("s0"),
            get("value is case-sensitive").cookie("SRV=S1").expect("s0"),
            get("quoted value").cookie("SRV=\"s1\""),
            get("duplicate: first valid one wins")
                .cookie("SRV=s1; SRV=s2")
                .expect("s1"),
            get("duplicate: invalid then valid")
                .cookie("SRV=nosuch; SRV=s2")
                .expect("s2"),
            get("duplicate across two Cookie headers")
                .cookie("SRV=s2")
                .cookie("SRV=s1")
                .expect("s2"),
            get("comma-separated duplicates")
                .cookie("SRV=s1, SRV=s2")
                .expect("s1"),
            get("other cookies around it")
                .cookie("a=1; SRV=s1; b=2")
                .expect("s1"),
            get("other cookie in its own header")
                .cookie("a=1")
                .cookie("SRV=s1")
                .expect("s1"),
            get("blanks around '='")
                .cookie("a = 1 ;SRV = s2; b=\"x; y\"")
                .expect("s2"),
            get("$-attributes and a cookie without '='")
                .cookie("$Version=1; flag; SRV=s1; $Path=/")
                .expect("s1"),
            get("server sets the persistence cookie itself")
                .answer("Set-Cookie: SRV=app; Path=/")
                .expect("s0"),
            get("valid cookie, server sets SRV and another cookie")
                .cookie("SRV=s1")
                .answer("Set-Cookie: SRV=app; Path=/")
                .answer("Set-Cookie: other=1; Path=/")
                .expect("s1"),
            get("server cookie with blanks around '='")
                .answer("Set-Cookie: other = 1 ; Path=/")
                .expect("s0"),
            get("server cookies before the inserted one")
                .answer("Set-Cookie: a=1")
                .answer("Set-Cookie: b=2; HttpOnly")
                .expect("s0"),
            get("server's cookie of another case is not ours")
                .answer("Set-Cookie: srv=app")
                .expect("s0"),
            post("POST without cookie").expect("s0"),
            get("404 without cookie").status(404).expect("s0"),
            get("500 without cookie").status(500).expect("s0"),
            get("302 with valid cookie")
                .status(302)
                .cookie("SRV=s2")
                .expect("s2"),
            // Without maxidle a date still makes HAProxy refresh the cookie.
            get("valid cookie carrying a past date")
                .cookie(format!("SRV=s1|{}", date(now - 100)))
                .expect("s1"),
            get("valid cookie carrying a future date")
                .cookie(format!("SRV=s1|{}", date(now + 600)))
                .expect("s1"),
            get("valid cookie carrying both dates")
                .cookie(format!("SRV=s1|{}|{}", date(now - 100), date(now - 1000)))
                .expect("s1"),
        ]
    });
}

#[test]
fn insert_indirect() {
    conform(Spec::new("indirect", "SRV insert indirect"), |_| {
        vec![
            get("no cookie").cookie("a=1; b=2").expect("s0"),
            get("alone: header removed").cookie("SRV=s1").expect("s1"),
            get("first").cookie("SRV=s1; a=1").expect("s1"),
            get("last").cookie("a=1; SRV=s1").expect("s1"),
            get("middle").cookie("a=1; SRV=s1; b=2").expect("s1"),
            get("no spaces").cookie("a=1;SRV=s1;b=2").expect("s1"),
            get("odd spaces").cookie("a=1 ;  SRV=s1  ;b=2").expect("s1"),
            get("tabs").cookie("a=1;\tSRV=s1\t;\tb=2").expect("s1"),
            get("commas").cookie("a=1,SRV=s1, b=2").expect("s1"),
            get("two in a row")
                .cookie("a=1; SRV=s1; SRV=s2; b=2")
                .expect("s1"),
            get("two apart")
                .cookie("SRV=s2; a=1; SRV=s1; b=2")
                .expect("s2"),
            get("invalid one removed too")
                .cookie("SRV=nosuch; a=1")
                .expect("s0"),
            get("with $-attributes")
                .cookie("$Version=1; SRV=s1; $Path=/; a=1")
                .expect("s1"),
            get("quoted neighbour")
                .cookie("a=\"x;SRV=s2\"; SRV=s1")
                .expect("s1"),
            get("cookie without '=' before")
                .cookie("flag; SRV=s1; b=2")
                .expect("s1"),
            get("cookie without '=' after")
                .cookie("a=1; SRV=s1; flag")
                .expect("s1"),
            get("blanks around other cookies' '='")
                .cookie("a = 1; SRV=s1; b= 2")
                .expect("s1"),
            get("trailing separator")
                .cookie("a=1; SRV=s1;")
                .expect("s1"),
            get("two headers, ours in the second")
                .cookie("a=1")
                .cookie("SRV=s1; b=2")
                .expect("s1"),
            get("two headers, ours alone in the first")
                .cookie("SRV=s2")
                .cookie("a=1")
                .expect("s2"),
            get("$-attributes only left")
                .cookie("$Version=1; SRV=s1; $Path=/")
                .expect("s1"),
            get("empty Cookie header").cookie("").expect("s0"),
            get("untouched when absent")
                .cookie("a=1;b=2 ;  c=3")
                .expect("s0"),
            get("valid cookie, server sets SRV too")
                .cookie("SRV=s1")
                .answer("Set-Cookie: SRV=app; Path=/")
                .expect("s1"),
            get("no cookie, server sets SRV and another")
                .answer("Set-Cookie: app=1; Path=/")
                .answer("Set-Cookie: SRV=app; Path=/")
                .expect("s0"),
        ]
    });
}

#[test]
fn insert_nocache() {
    conform(Spec::new("nocache", "SRV insert nocache"), |_| {
        vec![
            get("cacheable: validator")
                .answer(LAST_MODIFIED)
                .expect("s0"),
            get("not cacheable: no validator, no freshness").expect("s0"),
            get("cacheable: max-age")
                .answer("Cache-Control: max-age=60")
                .expect("s0"),
            get("public without validator").answer("Cache-Control: public"),
            get("no-cache")
                .answer(LAST_MODIFIED)
                .answer("Cache-Control: no-cache"),
            get("private")
                .answer(LAST_MODIFIED)
                .answer("Cache-Control: private"),
            get("no-store").answer("Cache-Control: max-age=60, no-store"),
            get("Pragma: no-cache")
                .answer(LAST_MODIFIED)
                .answer("Pragma: no-cache"),
            get("Expires").answer("Expires: Sat, 28 Nov 2099 10:00:00 GMT"),
            get("ETag").answer("ETag: \"v1\""),
            get("max-age=0").answer("Cache-Control: max-age=0"),
            get("max-age=0 then s-maxage").answer("Cache-Control: max-age=0, s-maxage=60"),
            get("s-maxage=0").answer("Cache-Control: s-maxage=0"),
            get("s-maxage then max-age=0").answer("Cache-Control: s-maxage=60, max-age=0"),
            get("MAX-AGE=0 then public")
                .answer(LAST_MODIFIED)
                .answer("Cache-Control: MAX-AGE=0, public"),
            get("max-age=0 and s-maxage in two headers")
                .answer("Cache-Control: max-age=0")
                .answer("Cache-Control: s-maxage=60"),
            get("Pragma is compared whole")
                .answer(LAST_MODIFIED)
                .answer("Pragma: no-cache, x"),
            get("OPTIONS is cacheable")
                .method("OPTIONS")
                .answer(LAST_MODIFIED),
            get("no-cache=\"set-cookie\"")
                .answer(LAST_MODIFIED)
                .answer("Cache-Control: no-cache=\"set-cookie\""),
            get("two Cache-Control headers")
                .answer("Cache-Control: max-age=60")
                .answer("Cache-Control: must-revalidate"),
            get("404 is cacheable").status(404).answer(LAST_MODIFIED),
            get("302 is not").status(302).answer(LAST_MODIFIED),
            get("302 made public")
                .status(302)
                .answer("Cache-Control: public, max-age=60"),
            post("POST is not").answer(LAST_MODIFIED),
            post("POST made public").answer("Cache-Control: public, max-age=60"),
            get("valid cookie: nothing inserted")
                .cookie("SRV=s1")
                .answer(LAST_MODIFIED)
                .expect("s1"),
            get("invalid cookie: inserted")
                .cookie("SRV=nosuch")
                .answer(LAST_MODIFIED)
                .expect("s0"),
        ]
    });
}

#[test]
fn insert_postonly() {
    conform(Spec::new("postonly", "SRV insert postonly nocache"), |_| {
        vec![
            get("GET: no insert").expect("s0"),
            post("POST: insert").expect("s0"),
            get("HEAD-like methods neither").method("PUT").expect("s0"),
            post("POST, cacheable").answer("Cache-Control: public, max-age=60"),
            post("POST with valid cookie").cookie("SRV=s1").expect("s1"),
            get("GET with valid cookie").cookie("SRV=s2").expect("s2"),
            post("POST with invalid cookie")
                .cookie("SRV=nosuch")
                .expect("s0"),
        ]
    });
}

#[test]
fn insert_preserve() {
    conform(
        Spec::new("preserve", "SRV insert indirect preserve"),
        |_| {
            vec![
                get("server sets nothing: insert").expect("s0"),
                get("server sets SRV: kept, no insert")
                    .answer("Set-Cookie: SRV=app; Path=/")
                    .expect("s0"),
                get("valid cookie, server logs out")
                    .cookie("SRV=s1; a=1")
                    .answer("Set-Cookie: SRV=; Max-Age=0")
                    .expect("s1"),
                get("valid cookie, server sets nothing")
                    .cookie("a=1; SRV=s1")
                    .expect("s1"),
                get("server cookie with blanks around '='")
                    .answer("Set-Cookie: SRV = app ; Path=/")
                    .expect("s0"),
                get("invalid cookie, server sets another cookie")
                    .cookie("SRV=nosuch")
                    .answer("Set-Cookie: a=1")
                    .expect("s0"),
            ]
        },
    );
}

#[test]
fn insert_attributes() {
    conform(
        Spec::new(
            "attrs",
            "SRV insert httponly secure domain .a.example domain b.example attr SameSite=Lax attr Partitioned",
        ),
        |_| {
            vec![
                get("no cookie").expect("s0"),
                get("invalid cookie").cookie("SRV=x").expect("s0"),
                get("valid cookie").cookie("SRV=s1").expect("s1"),
            ]
        },
    );
}

#[test]
fn insert_server_without_cookie() {
    // A server without a cookie value answering: HAProxy asks the browser
    // to drop the cookie, attributes included.
    conform(
        Spec::new(
            "nocookie",
            "SRV insert indirect domain .a.example attr SameSite=Strict",
        )
        .servers(&[srv("s0", 1).no_cookie(), srv("s1", 0)]),
        |_| {
            vec![
                get("no cookie").expect("s0"),
                get("invalid cookie").cookie("SRV=s0").expect("s0"),
                get("empty cookie").cookie("SRV=").expect("s0"),
                get("valid cookie").cookie("SRV=s1").expect("s1"),
            ]
        },
    );
}

#[test]
fn rewrite() {
    conform(Spec::new("rewrite", "SRV rewrite"), |_| {
        vec![
            get("server sets SRV")
                .answer("Set-Cookie: SRV=app; Path=/")
                .expect("s0"),
            get("server sets nothing").expect("s0"),
            get("valid cookie, server sets SRV")
                .cookie("a=1; SRV=s1; b=2")
                .answer("Set-Cookie: SRV=app; Path=/; HttpOnly")
                .expect("s1"),
            get("valid cookie, server sets nothing")
                .cookie("SRV=s2")
                .answer(LAST_MODIFIED)
                .expect("s2"),
            get("several server cookies, order kept")
                .answer("Set-Cookie: a=1")
                .answer("Set-Cookie: SRV=x; Max-Age=60")
                .answer("Set-Cookie: b=2")
                .expect("s0"),
            get("blanks around '='")
                .answer("Set-Cookie: SRV = app ; Path=/")
                .expect("s0"),
            get("Set-Cookie2 list")
                .answer("Set-Cookie2: a=1, SRV=x; Version=1, b=2")
                .expect("s0"),
            get("invalid cookie, server sets SRV")
                .cookie("SRV=nosuch")
                .answer("Set-Cookie: SRV=app")
                .expect("s0"),
            get("quoted server value")
                .answer("Set-Cookie: SRV=\"a;b\"; Path=/")
                .expect("s0"),
        ]
    });
}

#[test]
fn prefix() {
    conform(Spec::new("prefix", "SRV prefix"), |_| {
        vec![
            get("server sets SRV")
                .answer("Set-Cookie: SRV=abc; Path=/")
                .expect("s0"),
            get("server sets nothing").expect("s0"),
            get("prefixed cookie names s1")
                .cookie("SRV=s1~abc")
                .expect("s1"),
            get("prefix names no server: stripped anyway")
                .cookie("SRV=nosuch~abc")
                .expect("s0"),
            get("no prefix").cookie("SRV=abc").expect("s0"),
            get("bare server value").cookie("SRV=s1").expect("s1"),
            get("empty application value")
                .cookie("SRV=s2~")
                .expect("s2"),
            get("around other cookies")
                .cookie("a=1; SRV=s2~x|y; b=2")
                .expect("s2"),
            get("valid cookie, server sets SRV again")
                .cookie("SRV=s1~abc")
                .answer("Set-Cookie: SRV=new; Path=/")
                .expect("s1"),
            get("duplicates").cookie("SRV=s2~a; SRV=s1~b").expect("s2"),
            get("Set-Cookie2")
                .answer("Set-Cookie2: SRV=x, SRV = y")
                .expect("s0"),
        ]
    });
}

#[test]
fn prefix_indirect() {
    conform(Spec::new("prefix-ind", "SRV prefix indirect"), |_| {
        vec![
            get("no cookie, server sets SRV")
                .answer("Set-Cookie: SRV=abc")
                .expect("s0"),
            get("valid cookie, server sets SRV: removed")
                .cookie("SRV=s1~abc")
                .answer("Set-Cookie: SRV=new")
                .answer("Set-Cookie: other=1")
                .expect("s1"),
            get("invalid cookie, server sets SRV: prefixed")
                .cookie("SRV=nosuch~abc")
                .answer("Set-Cookie: SRV=new")
                .expect("s0"),
        ]
    });
}

#[test]
fn passive() {
    conform(Spec::new("passive", "SRV"), |_| {
        let now = unix_now();
        vec![
            get("no cookie").expect("s0"),
            get("cookie names s1").cookie("SRV=s1").expect("s1"),
            get("cookie names no server")
                .cookie("SRV=nosuch")
                .expect("s0"),
            get("server sets SRV: untouched")
                .answer("Set-Cookie: SRV=s2; Path=/")
                .answer(LAST_MODIFIED)
                .expect("s0"),
            get("blanks around '='")
                .cookie("a = 1; SRV=s2")
                .expect("s2"),
            get("a dated cookie still names its server")
                .cookie(format!("SRV=s1|{}", date(now - 100)))
                .expect("s1"),
            get("duplicates")
                .cookie("SRV=x; SRV=s2; SRV=s1")
                .expect("s2"),
        ]
    });
}

#[test]
fn passive_indirect() {
    conform(Spec::new("passive-ind", "SRV indirect"), |_| {
        vec![
            get("valid cookie kept in the request, server's SRV removed")
                .cookie("a=1; SRV=s1; b=2")
                .answer("Set-Cookie: SRV=s1; Path=/")
                .expect("s1"),
            get("no cookie: server's SRV kept")
                .answer("Set-Cookie: SRV=s0; Path=/")
                .expect("s0"),
            get("invalid cookie: server's SRV kept")
                .cookie("SRV=nosuch")
                .answer("Set-Cookie: SRV=s0; Path=/")
                .expect("s0"),
        ]
    });
}

#[test]
fn passive_indirect_preserve() {
    conform(Spec::new("passive-pres", "SRV indirect preserve"), |_| {
        vec![
            get("valid cookie, server's SRV preserved")
                .cookie("SRV=s1")
                .answer("Set-Cookie: SRV=; Max-Age=0")
                .expect("s1"),
            get("no cookie").answer("Set-Cookie: SRV=s0").expect("s0"),
        ]
    });
}

#[test]
fn maxidle_maxlife() {
    conform(
        Spec::new("dates", "SRV insert indirect maxidle 30m maxlife 2h"),
        |_| {
            let now = unix_now();
            let d = |t: i64| date(now + t);
            vec![
                get("no cookie: both dates now").expect("s0"),
                get("fresh cookie: last refreshed, first kept")
                    .cookie(format!("a=1; SRV=s1|{}|{}; b=2", d(-100), d(-1000)))
                    .expect("s1"),
                get("idle too long")
                    .cookie(format!("SRV=s1|{}|{}", d(-3600), d(-4000)))
                    .expect("s0"),
                get("lived too long")
                    .cookie(format!("SRV=s1|{}|{}", d(-100), d(-3 * 3600)))
                    .expect("s0"),
                get("last date more than a day ahead")
                    .cookie(format!("SRV=s1|{}|{}", d(3 * 86_400), d(-100)))
                    .expect("s0"),
                get("first date more than a day ahead")
                    .cookie(format!("SRV=s1|{}|{}", d(-100), d(3 * 86_400)))
                    .expect("s0"),
                get("last date slightly ahead: nothing to refresh")
                    .cookie(format!("SRV=s1|{}|{}", d(600), d(-100)))
                    .expect("s1"),
                get("no dates: dated cookie issued")
                    .cookie("SRV=s1")
                    .expect("s1"),
                get("no first date")
                    .cookie(format!("SRV=s1|{}", d(-100)))
                    .expect("s1"),
                get("undecodable date")
                    .cookie("SRV=s1|!!!!!|AAAA")
                    .expect("s1"),
                get("zero dates").cookie("SRV=s1|AAAAA|AAAAA").expect("s1"),
                get("short date").cookie("SRV=s1|AAA").expect("s1"),
                get("names no server: its first date is reused")
                    .cookie(format!("SRV=nosuch|{}|{}", d(-100), d(-1000)))
                    .expect("s0"),
                get("duplicates: a stale second one clears the dates")
                    .cookie(format!(
                        "SRV=s1|{}|{}; SRV=s2|{}",
                        d(-100),
                        d(-1000),
                        d(-3600)
                    ))
                    .expect("s1"),
                get("duplicates: stale first, valid second")
                    .cookie(format!(
                        "SRV=s1|{}; SRV=s2|{}|{}",
                        d(-3600),
                        d(-100),
                        d(-1000)
                    ))
                    .expect("s2"),
                post("POST with a fresh cookie")
                    .cookie(format!("SRV=s2|{}|{}", d(-100), d(-1000)))
                    .expect("s2"),
            ]
        },
    );
}

#[test]
fn maxidle_only() {
    conform(Spec::new("maxidle", "SRV insert maxidle 30m"), |_| {
        let now = unix_now();
        let d = |t: i64| date(now + t);
        vec![
            get("no cookie: last date only").expect("s0"),
            get("a first date is dropped")
                .cookie(format!("SRV=s1|{}|{}", d(-100), d(-1000)))
                .expect("s1"),
            get("fresh cookie refreshed")
                .cookie(format!("SRV=s1|{}", d(-100)))
                .expect("s1"),
            get("date ahead: nothing")
                .cookie(format!("SRV=s1|{}", d(600)))
                .expect("s1"),
            get("idle too long")
                .cookie(format!("SRV=s1|{}", d(-3600)))
                .expect("s0"),
            get("old first date not checked without maxlife")
                .cookie(format!("SRV=s2|{}|{}", d(-100), d(-400 * 86_400)))
                .expect("s2"),
        ]
    });
}

#[test]
fn maxlife_only() {
    conform(Spec::new("maxlife", "SRV insert maxlife 1h"), |_| {
        let now = unix_now();
        let d = |t: i64| date(now + t);
        vec![
            get("no cookie: both dates").expect("s0"),
            get("past last date refreshed, first kept")
                .cookie(format!("SRV=s1|{}|{}", d(-100), d(-1000)))
                .expect("s1"),
            get("last date ahead: nothing")
                .cookie(format!("SRV=s1|{}|{}", d(600), d(-1000)))
                .expect("s1"),
            get("lived too long")
                .cookie(format!("SRV=s1|{}|{}", d(-100), d(-7200)))
                .expect("s0"),
            get("old last date not checked without maxidle")
                .cookie(format!("SRV=s2|{}|{}", d(-400 * 86_400), d(-1000)))
                .expect("s2"),
        ]
    });
}

#[test]
fn rewrite_maxidle() {
    // Dates are checked in rewrite mode too, though never written.
    conform(
        Spec::new("rewrite-dates", "SRV rewrite maxidle 30m"),
        |_| {
            let now = unix_now();
            vec![
                get("fresh date")
                    .cookie(format!("SRV=s1|{}", date(now - 100)))
                    .answer("Set-Cookie: SRV=app")
                    .expect("s1"),
                get("idle too long")
                    .cookie(format!("SRV=s1|{}", date(now - 3600)))
                    .answer("Set-Cookie: SRV=app")
                    .expect("s0"),
            ]
        },
    );
}

#[test]
fn dynamic() {
    let servers = [
        srv("s0", 1).no_cookie(),
        srv("s1", 0).no_cookie(),
        srv("s2", 0),
    ];
    conform(
        Spec::new("dynamic", "SRV insert indirect dynamic")
            .dynamic(COOKIE_KEY)
            .servers(&servers),
        |pair| {
            let value = |name: &str| {
                let a = pair.addr_of(name);
                balancer::http::cookie::dynamic_value(COOKIE_KEY.as_bytes(), a.ip(), a.port())
            };
            vec![
                get("no cookie: s0's dynamic value").expect("s0"),
                get("s1's dynamic value")
                    .cookie(format!("a=1; SRV={}", value("s1")))
                    .expect("s1"),
                get("s2 keeps its explicit value")
                    .cookie("SRV=s2")
                    .expect("s2"),
                get("s2's would-be dynamic value names nobody")
                    .cookie(format!("SRV={}", value("s2")))
                    .expect("s0"),
                get("s0's dynamic value")
                    .cookie(format!("SRV={}", value("s0")))
                    .expect("s0"),
            ]
        },
    );
}

#[test]
fn down_without_persist() {
    let servers = [
        srv("s0", 1),
        srv("s1", 0).state(State::Down),
        srv("s2", 0).state(State::Maint),
        srv("s3", 0),
    ];
    conform(
        Spec::new("down", "SRV insert indirect")
            .options(&["redispatch"])
            .servers(&servers),
        |_| {
            vec![
                get("cookie names a down server")
                    .cookie("a=1; SRV=s1")
                    .expect("s0"),
                get("cookie names a server in maintenance")
                    .cookie("SRV=s2; a=1")
                    .expect("s0"),
                get("down server, then a live one")
                    .cookie("SRV=s1; SRV=s3")
                    .expect("s3"),
                get("cookie names an up server")
                    .cookie("SRV=s3")
                    .expect("s3"),
            ]
        },
    );
}

#[test]
fn down_with_persist() {
    let servers = [srv("s0", 1), srv("s1", 0).state(State::Down), srv("s2", 0)];
    conform(
        Spec::new("persist", "SRV insert indirect")
            .options(&["persist"])
            .servers(&servers),
        |_| {
            vec![
                get("cookie names a down server: goes there")
                    .cookie("a=1; SRV=s1")
                    .expect("s1"),
                get("no cookie: not to the down server").expect("s0"),
                get("cookie names an up server")
                    .cookie("SRV=s2")
                    .expect("s2"),
            ]
        },
    );
}

#[test]
fn maint_with_persist() {
    let servers = [srv("s0", 1), srv("s1", 0).state(State::Maint)];
    conform(
        Spec::new("persist-maint", "SRV insert indirect")
            .options(&["persist"])
            .servers(&servers),
        |_| {
            vec![
                get("cookie names a server in maintenance")
                    .cookie("SRV=s1")
                    .expect("s1"),
            ]
        },
    );
}

#[test]
fn dead_server_with_persist_and_redispatch() {
    let servers = [
        srv("s0", 1),
        srv("s1", 0).state(State::Down).dead(),
        srv("s2", 0).dead(),
    ];
    conform(
        Spec::new("redispatch", "SRV insert indirect maxlife 2h")
            .options(&["persist", "redispatch"])
            .servers(&servers),
        |_| {
            let now = unix_now();
            vec![
                get("down and dead: tried, then redispatched")
                    .cookie("SRV=s1")
                    .expect("s0"),
                get("up but dead: redispatched")
                    .cookie("a=1; SRV=s2")
                    .expect("s0"),
                get("redispatched: the first date is kept")
                    .cookie(format!("SRV=s2|{}|{}", date(now - 100), date(now - 1000)))
                    .expect("s0"),
            ]
        },
    );
}

#[test]
fn dead_server_with_persist_only() {
    let servers = [
        srv("s0", 1),
        srv("s1", 0).state(State::Down).dead(),
        srv("s2", 0).dead(),
    ];
    conform(
        Spec::new("no-redispatch", "SRV insert indirect")
            .options(&["persist"])
            .servers(&servers),
        |_| {
            vec![
                get("down and dead, no redispatch").cookie("SRV=s1"),
                get("up but dead, no redispatch").cookie("SRV=s2"),
            ]
        },
    );
}

#[test]
fn prefix_reads_no_dates() {
    // Prefix mode reads no dates: what looks like one is part of the
    // application's value. (`maxidle` here would check nothing, so balancer
    // refuses it; HAProxy accepts it silently.)
    conform(Spec::new("prefix-dates", "SRV prefix"), |_| {
        let now = unix_now();
        vec![
            get("prefixed value").cookie("SRV=s1~abc").expect("s1"),
            get("dated-looking value")
                .cookie(format!("SRV=s1~x|{}", date(now - 3600)))
                .expect("s1"),
            get("server sets SRV")
                .answer("Set-Cookie: SRV=abc")
                .expect("s0"),
        ]
    });
}

#[test]
fn rewrite_server_without_cookie() {
    conform(
        Spec::new("rewrite-nocookie", "SRV rewrite")
            .servers(&[srv("s0", 1).no_cookie(), srv("s1", 0)]),
        |_| {
            vec![
                get("server without value sets SRV: left alone")
                    .answer("Set-Cookie: SRV=app; Path=/")
                    .expect("s0"),
                get("valid cookie").cookie("SRV=s1").expect("s1"),
            ]
        },
    );
}

#[test]
fn drain() {
    // A draining server takes no new users but keeps those whose cookie
    // names it: both s0 and s1 have weight 1, s1 drains.
    let servers = [srv("s0", 1), srv("s1", 1).state(State::Drain)];
    conform(
        Spec::new("drain", "SRV insert indirect").servers(&servers),
        |_| {
            vec![
                get("no cookie #1").expect("s0"),
                get("no cookie #2").expect("s0"),
                get("cookie names the draining server")
                    .cookie("SRV=s1")
                    .expect("s1"),
                get("no cookie #3").expect("s0"),
            ]
        },
    );
}

#[test]
fn all_down() {
    let servers = [
        srv("s0", 1).state(State::Down),
        srv("s1", 1).state(State::Maint),
    ];
    conform(
        Spec::new("all-down", "SRV insert indirect nocache").servers(&servers),
        |_| {
            vec![
                get("no cookie"),
                get("cookie names a down server").cookie("SRV=s0"),
            ]
        },
    );
}

#[test]
fn down_with_dates() {
    // The cookie of a user whose server is down still carries its first
    // date into the new cookie.
    let servers = [srv("s0", 1), srv("s1", 0).state(State::Down)];
    conform(
        Spec::new("down-dates", "SRV insert indirect maxidle 30m maxlife 2h").servers(&servers),
        |_| {
            let now = unix_now();
            vec![
                get("dated cookie naming a down server")
                    .cookie(format!("SRV=s1|{}|{}", date(now - 100), date(now - 1000)))
                    .expect("s0"),
            ]
        },
    );
}

#[test]
fn set_cookie2() {
    // Obsolete, but HAProxy 2.6 still edits it, cookie by cookie.
    conform(Spec::new("cookie2", "SRV insert"), |_| {
        vec![
            get("ours alone").answer("Set-Cookie2: SRV=x; Version=1"),
            get("ours first").answer("Set-Cookie2: SRV=x, b=2"),
            get("ours in the middle").answer("Set-Cookie2: a=1, SRV=x, b=2"),
            get("ours last").answer("Set-Cookie2: a=1, SRV=x"),
            get("ours twice").answer("Set-Cookie2: SRV=x, SRV=y"),
            get("ours twice after another").answer("Set-Cookie2: a=1, SRV=x, SRV=y, b=2"),
            get("blanks after the removed one").answer("Set-Cookie2: a=1, SRV=x; Version=1, b = 2"),
            get("with attributes")
                .answer("Set-Cookie2: a=1; Version=1, SRV=x; Version=1; Port=\"80,81\", c=3"),
            get("two headers")
                .answer("Set-Cookie2: SRV=x, a=1")
                .answer("Set-Cookie2: b=2, SRV=y"),
            get("with Set-Cookie")
                .answer("Set-Cookie: SRV=z")
                .answer("Set-Cookie2: a=1, SRV=x, b=2"),
        ]
    });
}

#[test]
fn set_cookie2_indirect() {
    conform(Spec::new("cookie2-ind", "SRV indirect"), |_| {
        vec![
            get("valid cookie: ours removed")
                .cookie("SRV=s1")
                .answer("Set-Cookie2: a=1, SRV=s1, b=2")
                .expect("s1"),
            get("no cookie: kept").answer("Set-Cookie2: a=1, SRV=s0, b=2"),
        ]
    });
}

#[test]
fn set_cookie2_rewrite_prefix() {
    conform(Spec::new("cookie2-rw", "SRV rewrite"), |_| {
        vec![get("rewritten").answer("Set-Cookie2: a=1, SRV=x; Version=1, SRV = yy, b=2")]
    });
    conform(Spec::new("cookie2-pfx", "SRV prefix indirect"), |_| {
        vec![
            get("prefixed").answer("Set-Cookie2: a=1, SRV=x, b=2"),
            get("valid cookie: removed")
                .cookie("SRV=s1~x")
                .answer("Set-Cookie2: a=1, SRV=x, SRV = y, b=2"),
        ]
    });
}

// ----- generated headers -----------------------------------------------------

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    /// 1 to `max` items, each followed by a separator (the last one only
    /// sometimes).
    fn header(&mut self, items: &[&str], seps: &[&str], max: usize) -> String {
        let n = 1 + self.below(max);
        let mut h = String::new();
        for i in 0..n {
            h.push_str(items[self.below(items.len())]);
            if i + 1 < n || self.below(4) == 0 {
                h.push_str(seps[self.below(seps.len())]);
            }
        }
        h
    }
}

/// Items of `Cookie` headers: our cookie (valid, invalid, prefixed, spaced,
/// empty), others, quotes, `$` attributes, cookies without `=`, nothing.
const COOKIE_ITEMS: &[&str] = &[
    "SRV=s1",
    "SRV=s2",
    "SRV=x",
    "SRV=",
    "SRV = s1",
    "SRV=s2~app",
    "SRV=x~y",
    "a=1",
    "b = 2",
    "c=\"q;,\"",
    "$Path=/",
    "flag",
    "=",
    "SRV",
    "",
    " ",
];
const COOKIE_SEPS: &[&str] = &["; ", "; ", ";", ",", ", ", " ;  ", ";\t", ";;", ""];

/// Items of `Set-Cookie` / `Set-Cookie2` lines, and their separators.
const SET_COOKIE_ITEMS: &[&str] = &[
    "SRV=x",
    "SRV = y",
    "SRV=",
    "SRV=x; Version=1",
    "a=1",
    "b = 2; Path=/",
    "c=\"q,;\"",
    "SRV",
    "d",
    "=",
    "",
];
const SET_COOKIE_SEPS: &[&str] = &[", ", ",", " , ", ",\t", "; Max-Age=0, ", ""];

/// Generated `Cookie` headers (one or two per request) through `cookie`.
fn generated_cookies(tag: &'static str, cookie: &'static str, seed: u64) {
    conform(Spec::new(tag, cookie), |_| {
        let mut rng = Rng(seed);
        (0..60)
            .map(|i| {
                let mut r =
                    get(format!("generated #{i}")).cookie(rng.header(COOKIE_ITEMS, COOKIE_SEPS, 6));
                if rng.below(4) == 0 {
                    r = r.cookie(rng.header(COOKIE_ITEMS, COOKIE_SEPS, 4));
                }
                r
            })
            .collect()
    });
}

#[test]
fn generated_cookie_headers_insert_indirect() {
    generated_cookies("gen-indirect", "SRV insert indirect", 0x5eed_0001);
}

#[test]
fn generated_cookie_headers_prefix() {
    generated_cookies("gen-prefix", "SRV prefix", 0x5eed_0002);
}

#[test]
fn generated_cookie_headers_passive() {
    generated_cookies("gen-passive", "SRV", 0x5eed_0003);
}

/// Generated server cookies, with and without a valid request cookie.
fn generated_set_cookies(tag: &'static str, cookie: &'static str, seed: u64) {
    conform(Spec::new(tag, cookie), |_| {
        let mut rng = Rng(seed);
        (0..60)
            .map(|i| {
                let name = if rng.below(2) == 0 {
                    "Set-Cookie2"
                } else {
                    "Set-Cookie"
                };
                let line = rng.header(SET_COOKIE_ITEMS, SET_COOKIE_SEPS, 5);
                let mut r = get(format!("generated #{i}")).answer(format!("{name}: {line}"));
                if rng.below(3) == 0 {
                    let line = rng.header(SET_COOKIE_ITEMS, SET_COOKIE_SEPS, 4);
                    r = r.answer(format!("Set-Cookie2: {line}"));
                }
                if rng.below(2) == 0 {
                    r = r.cookie("SRV=s1");
                }
                r
            })
            .collect()
    });
}

#[test]
fn generated_set_cookie_headers_insert() {
    generated_set_cookies("gen-set-insert", "SRV insert", 0x5eed_0011);
}

#[test]
fn generated_set_cookie_headers_indirect() {
    generated_set_cookies("gen-set-indirect", "SRV indirect", 0x5eed_0012);
}

#[test]
fn generated_set_cookie_headers_rewrite() {
    generated_set_cookies("gen-set-rewrite", "SRV rewrite", 0x5eed_0013);
}

#[test]
fn generated_set_cookie_headers_prefix() {
    generated_set_cookies("gen-set-prefix", "SRV prefix indirect", 0x5eed_0014);
}

#[test]
fn http2_cookie_field() {
    conform(Spec::new("h2", "SRV insert indirect"), |_| {
        vec![
            get("one field, ours in it")
                .cookie("a=1; SRV=s1; b=2")
                .h2()
                .expect("s1"),
            get("no cookie").h2().expect("s0"),
            get("one field, not ours")
                .cookie("a=1, b=2")
                .h2()
                .expect("s0"),
        ]
    });
}

#[test]
fn http2_split_cookie_fields() {
    // HTTP/2 clients may split `cookie` into several fields (RFC 9113
    // 8.2.3); HAProxy joins them with "; " before anything else.
    conform(Spec::new("h2-split", "SRV insert indirect"), |_| {
        vec![
            get("split, ours alone in a field")
                .cookie("a=1")
                .cookie("SRV=s1")
                .cookie("b=2")
                .h2()
                .expect("s1"),
            get("split, not ours")
                .cookie("a=1")
                .cookie("b=2")
                .h2()
                .expect("s0"),
        ]
    });
}

// ----- servers discovered through DNS -----------------------------------------

/// Fresh users until `want` servers (by address, not `skip`) have
/// answered: the cookie each inserted.
fn discovered_cookies(
    front: SocketAddr,
    want: usize,
    skip: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut seen = std::collections::BTreeMap::new();
    let ok = wait_for(Duration::from_secs(30), || {
        if let Ok(a) = Client::new(front).get("/")
            && a.status == 200
            && a.body != skip
            && let Some(c) = a.header("set-cookie")
        {
            seen.insert(a.body.clone(), c.to_owned());
        }
        seen.len() >= want
    });
    assert!(ok, "{front}: only {seen:?}");
    seen
}

#[test]
fn dynamic_cookies_of_discovered_servers() {
    // HAProxy 2.6 and balancer, on the same haproxy.cfg text, resolve the
    // same name at the same DNS server (server-template, init-addr none,
    // resolve-prefer ipv4); the cookie each
    // gives a discovered server must be the same, before and after the
    // records change.
    require_root();
    const NAME: &str = "conf.lab.test";
    let mut dns = balancer_tests::dns::DnsServer::start().expect("DNS server");
    let addrs = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let (port, _backends) = (0..50)
        .find_map(|_| {
            let port = free_port().ok()?;
            let b: Result<Vec<Backend>, _> = addrs
                .iter()
                .map(|a| {
                    Backend::start_at(a, SocketAddr::new(a.parse().unwrap(), port), |_| {
                        (200, String::new())
                    })
                })
                .collect();
            b.ok().map(|b| (port, b))
        })
        .expect("a port free on every address");
    dns.set_addresses(NAME, &addrs[..3], 5);
    let cookie = "SERVER insert indirect nocache dynamic";

    let dir = std::env::temp_dir().join(format!("blb-{}-ha-dns", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ha_front: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    // One text for both (but the frontend's address).
    let config = |front: SocketAddr| {
        format!(
            "global\n    nbthread 1\n\n\
             resolvers lab\n    nameserver ns1 {}\n    resolve_retries 2\n    \
             timeout resolve 200ms\n    timeout retry 200ms\n    hold valid 10s\n\n\
             defaults\n    mode http\n    timeout connect 200ms\n    timeout client 10s\n    \
             timeout server 10s\n\n\
             frontend fe\n    bind {front}\n    default_backend app\n\n\
             backend app\n    balance roundrobin\n    cookie {cookie}\n    \
             dynamic-cookie-key {COOKIE_KEY}\n    \
             server-template web 3 {NAME}:{port} resolvers lab init-addr none resolve-prefer ipv4\n",
            dns.addr
        )
    };
    std::fs::write(dir.join("haproxy.cfg"), config(ha_front)).unwrap();
    let mut cmd = Command::new(HAPROXY);
    cmd.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
    let mut ha = Proc::spawn("haproxy", cmd, &dir).expect("haproxy (run `cargo xtask setup`)");
    let svc = Svc::launch_cfg("conf-dns", config);

    let ours = discovered_cookies(svc.front, 3, "");
    let theirs = discovered_cookies(ha_front, 3, "");
    assert_eq!(ours, theirs, "balancer vs HAProxy, discovered servers");
    for (server, set_cookie) in &ours {
        let value = balancer::http::cookie::dynamic_value(
            COOKIE_KEY.as_bytes(),
            server.parse().unwrap(),
            port,
        );
        assert!(
            set_cookie.starts_with(&format!("SERVER={value};")),
            "{server}: {set_cookie}"
        );
    }
    // 127.0.0.3 leaves, 127.0.0.5 comes: its cookie, on both sides.
    dns.set_addresses(NAME, &["127.0.0.5", "127.0.0.4", "127.0.0.2"], 5);
    let has_new = |front: SocketAddr| {
        wait_for(Duration::from_secs(30), || {
            Client::new(front)
                .get("/")
                .is_ok_and(|a| a.body == "127.0.0.5")
        })
    };
    assert!(has_new(svc.front) && has_new(ha_front), "{}", ha.output());
    let ours = discovered_cookies(svc.front, 3, "127.0.0.3");
    let theirs = discovered_cookies(ha_front, 3, "127.0.0.3");
    assert!(ours.contains_key("127.0.0.5"), "{ours:?}");
    assert_eq!(
        ours, theirs,
        "balancer vs HAProxy after the records changed"
    );
    let _ = ha.stop();
    dns.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The servers a front reaches within `tries` fresh requests (by body).
fn reached(front: SocketAddr, tries: usize) -> std::collections::BTreeSet<String> {
    (0..tries)
        .filter_map(|_| Client::new(front).get("/").ok())
        .filter(|a| a.status == 200)
        .map(|a| a.body)
        .collect()
}

#[test]
fn resolve_prefer_picks_the_family_haproxy_picks() {
    // A name with an A and an AAAA record; `resolve-prefer` unset (HAProxy's
    // default: ipv6), ipv4 and ipv6: HAProxy 2.6 and balancer, on the same
    // haproxy.cfg text, must reach the same servers.
    require_root();
    const NAME: &str = "prefer.lab.test";
    let mut dns = balancer_tests::dns::DnsServer::start().expect("DNS server");
    let (port, _backends) = (0..50)
        .find_map(|_| {
            let port = free_port().ok()?;
            let v4 = Backend::start_at("v4", SocketAddr::from(([127, 0, 0, 2], port)), |_| {
                (200, String::new())
            });
            let v6 = Backend::start_at(
                "v6",
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
                |_| (200, String::new()),
            );
            Some((port, [v4.ok()?, v6.ok()?]))
        })
        .expect("a port free on both addresses");
    dns.set_addresses(NAME, &["127.0.0.2", "::1"], 5);
    for (tag, prefer, want) in [
        ("unset", "", "v6"),
        ("ipv4", " resolve-prefer ipv4", "v4"),
        ("ipv6", " resolve-prefer ipv6", "v6"),
    ] {
        let config = |front: SocketAddr| {
            format!(
                "global\n    nbthread 1\n\n\
                 resolvers lab\n    nameserver ns1 {}\n    timeout resolve 200ms\n    \
                 timeout retry 200ms\n\n\
                 defaults\n    mode http\n    timeout connect 200ms\n    \
                 timeout client 10s\n    timeout server 10s\n\n\
                 frontend fe\n    bind {front}\n    default_backend app\n\n\
                 backend app\n    \
                 server-template web 2 {NAME}:{port} resolvers lab init-addr none{prefer}\n",
                dns.addr
            )
        };
        let dir = std::env::temp_dir().join(format!("blb-{}-ha-prefer-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ha_front: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
            .parse()
            .unwrap();
        std::fs::write(dir.join("haproxy.cfg"), config(ha_front)).unwrap();
        let mut cmd = Command::new(HAPROXY);
        cmd.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
        let mut ha = Proc::spawn("haproxy", cmd, &dir).expect("haproxy");
        let svc = Svc::launch_cfg(&format!("conf-prefer-{tag}"), config);
        for front in [ha_front, svc.front] {
            assert!(
                wait_for(Duration::from_secs(20), || !reached(front, 1).is_empty()),
                "{tag}: {front} never served: {}",
                ha.output()
            );
        }
        // Past the first resolution: what each reaches, over several users.
        let theirs = reached(ha_front, 8);
        let ours = reached(svc.front, 8);
        assert_eq!(ours, theirs, "{tag}: balancer vs HAProxy");
        assert_eq!(
            ours.into_iter().collect::<Vec<_>>(),
            [want],
            "{tag}: the family reached"
        );
        let _ = ha.stop();
        drop(svc);
        let _ = std::fs::remove_dir_all(&dir);
    }
    dns.stop();
}
