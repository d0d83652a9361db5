//! HTTP access logs.
//!
//! - The httplog line against HAProxy 2.6's: one haproxy.cfg text run by
//!   both (`log <unix socket> local0`, `option httplog`), in front of the
//!   same backends, the same requests; each proxy's datagrams read from a
//!   socket the test owns. Field by field: frontend, backend/server,
//!   status, bytes, the termination state with its cookie characters,
//!   retries, queues and the request line must be equal; the syslog
//!   header, date and timers must have HAProxy's shape.
//! - JSON lines parse and hold the values the httplog line has.
//! - A blocked target (a FIFO nobody reads) does not slow requests: they
//!   complete, lines are dropped and counted.
//! - SIGUSR1 reopens a file target (log rotation).
//! - A target that cannot work stops the start, naming it.

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use balancer_tests::{
    haproxy::Haproxy,
    http::{Client, Svc, free_port, launch_http},
    proc::wait_for,
};

/// A directory of the test's, removed when dropped (on failure too).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("blb-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A backend named `name`: `/` answers 200 with its name; `/slow` never
/// answers; `/big` sends a 64 MiB body slowly, until the connection
/// breaks. Keep-alive. Stops (and closes its connections) when dropped.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(name: &str) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (name, s) = (name.to_owned(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (name, s) = (name.clone(), s.clone());
                        std::thread::spawn(move || serve(c, &name, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { addr, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut c: TcpStream, name: &str, stop: &AtomicBool) {
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = Vec::new();
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let mut chunk = [0; 4096];
            match c.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) if !stop.load(Ordering::Relaxed) => {}
                Err(_) => return,
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        match path.as_str() {
            "/slow" => {
                // Silent until the proxy gives up (it closes).
                let mut b = [0; 64];
                while !stop.load(Ordering::Relaxed) {
                    match c.read(&mut b) {
                        Ok(0) => return,
                        _ => continue,
                    }
                }
                return;
            }
            "/big" => {
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 67108864\r\n\r\n";
                if c.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = [b'x'; 16384];
                for _ in 0..4096 {
                    if stop.load(Ordering::Relaxed) || c.write_all(&chunk).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            _ => {
                let r = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
                    name.len()
                );
                if c.write_all(r.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

/// A unix datagram socket in `dir` that a proxy logs to.
struct Syslog {
    sock: UnixDatagram,
    lines: Vec<String>,
}

impl Syslog {
    fn bind(path: &Path) -> Syslog {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Syslog {
            sock,
            lines: Vec::new(),
        }
    }

    /// The next line, waiting at most 5 s.
    fn next(&mut self, who: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut b = [0; 8192];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut b) {
                let line = String::from_utf8_lossy(&b[..n]).into_owned();
                self.lines.push(line.clone());
                return line;
            }
        }
        panic!("{who}: no log line within 5 s (so far: {:#?})", self.lines);
    }
}

/// An httplog line's fields, after its syslog header (checked for shape:
/// `<134>Mmm dd hh:mm:ss TAG[PID]: `).
#[derive(Debug, Clone, PartialEq)]
struct Line {
    frontend: String,
    backend_server: String,
    status: String,
    bytes: String,
    termination: String,
    retries: String,
    queues: String,
    request: String,
}

fn is_num(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse(raw: &str) -> Line {
    let bad = |why: &str| -> ! { panic!("{why}: {raw:?}") };
    let rest = raw.strip_prefix("<134>").unwrap_or_else(|| bad("PRI"));
    // "Mmm dd hh:mm:ss " (15 + 1)
    let (date, rest) = rest.split_at(16);
    let d = date.as_bytes();
    if !(d[3] == b' ' && d[6] == b' ' && d[9] == b':' && d[12] == b':' && d[15] == b' ') {
        bad("syslog date");
    }
    let (tag, rest) = rest.split_once(": ").unwrap_or_else(|| bad("tag"));
    if !(tag.ends_with(']') && tag.contains('[')) {
        bad("TAG[PID]");
    }
    let rest = rest.strip_suffix('\n').unwrap_or_else(|| bad("newline"));
    let (fields, request) = rest.split_once(" \"").unwrap_or_else(|| bad("request"));
    let f: Vec<&str> = fields.split(' ').collect();
    if f.len() != 12 {
        bad("field count");
    }
    let (ip, port) = f[0].rsplit_once(':').unwrap_or_else(|| bad("client"));
    if ip != "127.0.0.1" || !is_num(port) {
        bad("client");
    }
    // [dd/Mmm/yyyy:hh:mm:ss.mmm]
    let ad = f[1].as_bytes();
    if !(ad.len() == 26
        && ad[0] == b'['
        && ad[3] == b'/'
        && ad[7] == b'/'
        && ad[21] == b'.'
        && ad[25] == b']')
    {
        bad("accept date");
    }
    let timers: Vec<&str> = f[4].split('/').collect();
    if timers.len() != 5 || !timers.iter().all(|t| is_num(t)) {
        bad("timers");
    }
    if f[7] != "-" || f[8] != "-" {
        bad("captured cookies");
    }
    let conns: Vec<&str> = f[10].split('/').collect();
    if conns.len() != 5 || !conns[..4].iter().all(|t| is_num(t)) {
        bad("connection counts");
    }
    Line {
        frontend: f[2].into(),
        backend_server: f[3].into(),
        status: f[5].into(),
        bytes: f[6].into(),
        termination: f[9].into(),
        retries: conns[4].into(),
        queues: f[11].into(),
        request: request.trim_end_matches('"').into(),
    }
}

/// One request on a fresh connection: `head` is written; with `abort`,
/// the connection is closed once the response head has come.
fn request(to: SocketAddr, path: &str, cookie: Option<&str>, abort: bool) {
    let mut c = TcpStream::connect(to).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let cookie = cookie.map_or(String::new(), |v| format!("Cookie: SRV={v}\r\n"));
    // One write: the head in one segment.
    let head = format!("GET {path} HTTP/1.1\r\nHost: lab\r\n{cookie}Connection: close\r\n\r\n");
    c.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut b = [0; 65536];
    while let Ok(n) = c.read(&mut b) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&b[..n]);
        if abort && got.windows(4).any(|w| w == b"\r\n\r\n") {
            let _ = c.shutdown(Shutdown::Both);
            break;
        }
    }
}

fn config(log: &Path, front: SocketAddr, nosrv: u16, s: &[&Server], dead: u16) -> String {
    format!(
        "global\n    log {} local0\n\n\
         defaults\n    mode http\n    log global\n    option httplog\n    option dontlognull\n    \
         timeout connect 200ms\n    \
         timeout client 10s\n    timeout server 500ms\n    retries 1\n    option redispatch\n\n\
         frontend fe\n    bind {front}\n    default_backend app\n\n\
         frontend fe2\n    bind 127.0.0.1:{nosrv}\n    default_backend none\n\n\
         backend app\n    cookie SRV insert indirect nocache\n    server s0 {} cookie s0\n    \
         server s1 {} cookie s1\n    server dead 127.0.0.1:{dead} cookie dead weight 0\n\n\
         backend none\n    server x 127.0.0.1:{dead} disabled\n",
        log.display(),
        s[0].addr,
        s[1].addr
    )
}

#[test]
fn httplog_lines_match_haproxy() {
    balancer_tests::require_root();
    let (s0, s1) = (Server::start("s0"), Server::start("s1"));
    let dead = free_port().unwrap();
    let dir = TempDir::new("alog");
    let (hsock, bsock) = (dir.join("h.sock"), dir.join("b.sock"));
    let (mut hlog, mut blog) = (Syslog::bind(&hsock), Syslog::bind(&bsock));
    let (h2, b2) = (free_port().unwrap(), free_port().unwrap());
    let hap = Haproxy::start("alog", |front, _| {
        config(&hsock, front, h2, &[&s0, &s1], dead)
    });
    let bal = Svc::launch_cfg("alog", |front| config(&bsock, front, b2, &[&s0, &s1], dead));
    let nosrv = |front: SocketAddr, port| SocketAddr::new(front.ip(), port);
    // (what, path, cookie, to the no-server frontend, client aborts)
    let cases: &[(&str, &str, Option<&str>, bool, bool)] = &[
        ("new client: cookie inserted", "/", None, false, false),
        ("valid cookie", "/", Some("s1"), false, false),
        (
            "cookie of a dead server, redispatched",
            "/",
            Some("dead"),
            false,
            false,
        ),
        ("invalid cookie", "/", Some("bogus"), false, false),
        ("no server: 503", "/", None, true, false),
        ("server timeout", "/slow", Some("s1"), false, false),
        (
            "client aborts during the body",
            "/big",
            Some("s0"),
            false,
            true,
        ),
    ];
    let mut diffs = Vec::new();
    for (what, path, cookie, to_nosrv, abort) in cases {
        let (h, b) = if *to_nosrv {
            (nosrv(hap.front, h2), nosrv(bal.front, b2))
        } else {
            (hap.front, bal.front)
        };
        request(h, path, *cookie, *abort);
        let hl = parse(&hlog.next("haproxy"));
        request(b, path, *cookie, *abort);
        let bl = parse(&blog.next("balancer"));
        if *path == "/slow" {
            // One `timeout server` (500 ms), not two: a pooled connection
            // whose server is only slow is not tried again.
            let raw = blog.lines.last().unwrap();
            // After "TAG[PID]: ": client, date, frontend, backend/server, timers.
            let ta: u64 = raw
                .split_once("]: ")
                .and_then(|(_, rest)| rest.split(' ').nth(4))
                .and_then(|t| t.rsplit('/').next()?.parse().ok())
                .unwrap_or_else(|| panic!("no Ta in {raw:?}"));
            assert!(
                (480..900).contains(&ta),
                "balancer's Ta {ta} ms: {:?}",
                blog.lines.last()
            );
        }
        let mut want = hl.clone();
        let mut got = bl.clone();
        if *abort {
            // What an aborted transfer moved depends on when each noticed.
            assert!(is_num(&hl.bytes) && is_num(&bl.bytes));
            (want.bytes, got.bytes) = (String::new(), String::new());
        }
        eprintln!(
            "{what}:\n  haproxy:  {}  balancer: {}",
            hlog.lines.last().unwrap(),
            blog.lines.last().unwrap()
        );
        if want != got {
            diffs.push(format!(
                "{what}:\n  haproxy:  {}\n  balancer: {}",
                hlog.lines.last().unwrap(),
                blog.lines.last().unwrap()
            ));
        }
    }
    drop((hap, bal));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// A daemon with one http frontend logging `log` in front of `servers`.
fn daemon(tag: &str, log: &str, servers: &[&Server]) -> Svc {
    let tables: String = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "[[backend.server]]\nname = \"s{i}\"\naddress = \"{}\"\ncookie = \"s{i}\"\n",
                s.addr
            )
        })
        .collect();
    Svc::launch(
        tag,
        &format!("log = {log}\n"),
        "cookie = \"SRV insert indirect nocache\"\n",
        &tables,
    )
}

fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let ok = wait_for(Duration::from_secs(5), || {
        lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.len() >= n
    });
    assert!(
        ok,
        "{}: {} line(s), want {n}: {lines:?}",
        path.display(),
        lines.len()
    );
    lines
}

#[test]
fn json_lines_parse_and_hold_the_httplog_values() {
    balancer_tests::require_root();
    let s0 = Server::start("s0");
    let dir = TempDir::new("alog-json-files");
    let (json, text) = (dir.join("a.json"), dir.join("a.log"));
    let j = daemon(
        "alog-json",
        &format!("{{ format = \"json\", target = \"{}\" }}", json.display()),
        &[&s0],
    );
    let t = daemon(
        "alog-text",
        &format!(
            "{{ format = \"httplog\", target = \"{}\" }}",
            text.display()
        ),
        &[&s0],
    );
    for svc in [&j, &t] {
        let mut c = Client::new(svc.front);
        c.get("/a?b=c").unwrap();
        c.get("/").unwrap();
    }
    let jl = wait_lines(&json, 2);
    let tl = wait_lines(&text, 2);
    for (j, t) in jl.iter().zip(&tl) {
        let v: serde_json::Value = serde_json::from_str(j).unwrap_or_else(|e| panic!("{e}: {j}"));
        let f: Vec<&str> = t.split(' ').collect();
        assert_eq!(v["frontend_name"], f[2], "{j}\n{t}");
        assert_eq!(
            format!(
                "{}/{}",
                v["backend_name"].as_str().unwrap(),
                v["server_name"].as_str().unwrap()
            ),
            f[3]
        );
        assert_eq!(v["status_code"].to_string(), f[5]);
        assert_eq!(v["bytes_read"].to_string(), f[6]);
        assert_eq!(v["termination_state"], f[9]);
        assert_eq!(v["client_ip"], "127.0.0.1");
        assert!(v["client_port"].as_u64().is_some() && v["Ta"].as_i64().is_some());
        assert_eq!(v["accept_date"].as_str().unwrap().len(), 24);
        let req = t.split_once(" \"").unwrap().1.trim_end_matches('"');
        assert_eq!(v["http_request"], req);
    }
    assert_eq!(jl.len(), 2);
    let v: serde_json::Value = serde_json::from_str(&jl[0]).unwrap();
    assert_eq!(v["termination_state"], "--NI");
    assert_eq!(v["http_request"], "GET /a?b=c HTTP/1.1");
    let v: serde_json::Value = serde_json::from_str(&jl[1]).unwrap();
    assert_eq!(v["termination_state"], "--VN");
    drop((j, t));
}

/// `log_dropped` from `balancer stats`.
fn dropped(svc: &Svc) -> u64 {
    let out = svc.cli(&["stats"]);
    out.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("log_dropped")).then(|| w.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no log_dropped in {out}"))
}

/// 4,000 requests while the daemon logs to `target` (a TOML string), which
/// takes nothing: each completes quickly, lines are dropped and counted.
fn blocked_target_does_not_stall_requests(tag: &str, target: &str, s0: &Server) {
    let svc = daemon(tag, &format!("{{ target = \"{target}\" }}"), &[s0]);
    let mut client = Client::new(svc.front);
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..4000 {
        let t = Instant::now();
        assert_eq!(client.get("/").unwrap().status, 200);
        slowest = slowest.max(t.elapsed());
    }
    let took = start.elapsed();
    let n = dropped(&svc);
    eprintln!("{target}: 4000 requests in {took:?}, slowest {slowest:?}, {n} lines dropped");
    assert!(
        n > 0,
        "{target}: nothing dropped: the target was not blocked?"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "{target}: a request took {slowest:?}"
    );
}

#[test]
fn a_blocked_target_does_not_stall_requests() {
    balancer_tests::require_root();
    let s0 = Server::start("s0");
    let dir = TempDir::new("alog-fifo-files");
    // A FIFO with a reader that never reads: the daemon can open it, its
    // writes block once the pipe is full.
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open(&fifo)
        .unwrap();
    blocked_target_does_not_stall_requests("alog-fifo", fifo.to_str().unwrap(), &s0);
    // A syslog socket nobody reads: its queue fills, sends block.
    let sock = dir.join("log.sock");
    let _unread = UnixDatagram::bind(&sock).unwrap();
    let target = format!("unix:{}", sock.display());
    blocked_target_does_not_stall_requests("alog-full-socket", &target, &s0);
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

#[test]
fn sigusr1_reopens_the_file() {
    balancer_tests::require_root();
    let s0 = Server::start("s0");
    let dir = TempDir::new("alog-rotate-files");
    let file = dir.join("access.log");
    let svc = daemon(
        "alog-rotate",
        &format!("{{ target = \"{}\" }}", file.display()),
        &[&s0],
    );
    let mut c = Client::new(svc.front);
    c.get("/").unwrap();
    wait_lines(&file, 1);
    let rotated = dir.join("access.log.1");
    std::fs::rename(&file, &rotated).unwrap();
    // Before the signal: still the old file.
    c.get("/").unwrap();
    wait_lines(&rotated, 2);
    svc.daemon.signal(libc::SIGUSR1).unwrap();
    svc.daemon
        .expect_logged("SIGUSR1: reopening", Duration::from_secs(5));
    // The writer reopens before its next batch.
    std::thread::sleep(Duration::from_millis(50));
    c.get("/").unwrap();
    let new = wait_lines(&file, 1);
    assert_eq!(new.len(), 1);
    assert!(new[0].contains("--VN"), "{new:?}");
    assert_eq!(wait_lines(&rotated, 2).len(), 2);
    drop(svc);
}

#[test]
fn a_target_that_cannot_work_stops_the_start() {
    balancer_tests::require_root();
    let missing: PathBuf =
        std::env::temp_dir().join(format!("blb-{}-no-such-dir/a.log", std::process::id()));
    let servers = "[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:9\"\n";
    let e = launch_http(
        "alog-bad",
        &format!("log = {{ target = \"{}\" }}\n", missing.display()),
        "",
        servers,
    )
    .map(|_| ())
    .expect_err("started with an impossible log target");
    let e = e.to_string();
    assert!(
        e.contains(&format!("access log {}", missing.display())),
        "{e}"
    );
    let sock =
        std::env::temp_dir().join(format!("blb-{}-no-such-dir/log.sock", std::process::id()));
    let e = launch_http(
        "alog-bad2",
        &format!("log = {{ target = \"unix:{}\" }}\n", sock.display()),
        "",
        servers,
    )
    .map(|_| ())
    .expect_err("started with an impossible log socket")
    .to_string();
    assert!(e.contains("access log unix:"), "{e}");
    for tag in ["alog-bad", "alog-bad2"] {
        let id = format!("blb-{}-{tag}", std::process::id());
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&id));
        let _ = std::fs::remove_dir_all(Path::new(balancer_tests::lab::BPFFS).join(&id));
    }
}

/// What a proxy answered a raw exchange, and how long it took: `data` is
/// written; with `half_close`, the client's side is closed then; the
/// answer is read until the proxy closes (at most 5 s).
fn raw_exchange(to: SocketAddr, data: &[u8], half_close: bool) -> Vec<u8> {
    let mut c = TcpStream::connect(to).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if !data.is_empty() {
        c.write_all(data).unwrap();
    }
    if half_close {
        c.shutdown(Shutdown::Write).unwrap();
    }
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    got
}

/// A line after its syslog header, client and accept date: `fe/1: SSL
/// handshake failure` for HAProxy's connection error lines.
fn after_date(raw: &str) -> &str {
    raw.split_once("] ")
        .map_or(raw, |(_, rest)| rest.trim_end())
}

fn bad_config(
    log: &Path,
    front: SocketAddr,
    quiet: u16,
    tls: u16,
    pem: &Path,
    s0: &Server,
) -> String {
    format!(
        "global\n    log {} local0\n\n\
         defaults\n    mode http\n    log global\n    option httplog\n    \
         timeout connect 200ms\n    timeout client 1s\n    timeout server 1s\n    \
         timeout http-request 700ms\n\n\
         frontend fe\n    bind {front}\n    default_backend app\n\n\
         frontend quiet\n    bind 127.0.0.1:{quiet}\n    option dontlognull\n    \
         default_backend app\n\n\
         frontend sec\n    bind 127.0.0.1:{tls} ssl crt {}\n    default_backend app\n\n\
         backend app\n    server s0 {}\n",
        log.display(),
        pem.display(),
        s0.addr,
    )
}

/// Connections that bring no request the proxy takes, against HAProxy
/// 2.6: a request head refused (`PR--`), cut short (`CR--`) or not whole
/// within `timeout http-request` (`cR--` and HAProxy's 408 page), a
/// client that closes or stays silent before its first byte (logged
/// unless `option dontlognull`), and TLS handshakes that fail (HAProxy's
/// connection error lines).
#[test]
fn connections_without_a_request_are_logged_as_haproxy_logs_them() {
    balancer_tests::require_root();
    let s0 = Server::start("s0");
    let dir = TempDir::new("alog-bad");
    let pki = balancer_tests::tls::Pki::new(&dir.join("pki")).unwrap();
    let pem = pki
        .server("lab.pem", &["lab"], balancer_tests::tls::Key::EcdsaP256, 3)
        .unwrap();
    let (hsock, bsock) = (dir.join("h.sock"), dir.join("b.sock"));
    let (mut hlog, mut blog) = (Syslog::bind(&hsock), Syslog::bind(&bsock));
    let ports = |_| (free_port().unwrap(), free_port().unwrap());
    let ((hq, ht), (bq, bt)) = (ports(0), ports(1));
    let hap = Haproxy::start("alog-bad", |front, _| {
        bad_config(&hsock, front, hq, ht, &pem, &s0)
    });
    let bal = Svc::launch_cfg("alog-bad", |front| {
        bad_config(&bsock, front, bq, bt, &pem, &s0)
    });
    let at = |front: SocketAddr, port| SocketAddr::new(front.ip(), port);
    let too_large = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(20000)
    );
    // (what, frontend: 0 fe, 1 quiet, 2 sec, bytes, half close, whether
    // the answer must be the same bytes)
    let cases: &[(&str, usize, &[u8], bool, bool)] = &[
        ("garbage", 0, b"GARBAGE\r\n\r\n", false, false),
        (
            "a header without a colon",
            0,
            b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
            false,
            false,
        ),
        (
            "a head larger than HAProxy's buffer",
            0,
            too_large.as_bytes(),
            false,
            false,
        ),
        (
            "a head not whole in time",
            0,
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            false,
            true,
        ),
        (
            "a head cut short by the client",
            0,
            b"GET / HT",
            true,
            false,
        ),
        ("silent until the timeout", 0, b"", false, true),
        ("closed before a byte", 0, b"", true, true),
        // With dontlognull: the first two leave no line (the garbage's is
        // the next one read).
        ("dontlognull: silent", 1, b"", false, true),
        ("dontlognull: closed before a byte", 1, b"", true, true),
        ("dontlognull: garbage", 1, b"GARBAGE\r\n\r\n", false, false),
        (
            "TLS: not a handshake",
            2,
            b"\x01\x02\x03garbage",
            false,
            true,
        ),
        ("TLS: closed before a byte", 2, b"", true, true),
        ("TLS: silent until the timeout", 2, b"", false, true),
    ];
    let mut diffs = Vec::new();
    // `Haproxy::start` connected (and closed at once) to see it up:
    // balancer gets the same.
    drop(TcpStream::connect(bal.front).unwrap());
    let (h, b) = (hlog.next("haproxy"), blog.next("balancer"));
    if format!("{:?}", parse(&h)) != format!("{:?}", parse(&b)) {
        diffs.push(format!(
            "a probe's connection:\n  haproxy:  {h}  balancer: {b}"
        ));
    }
    for (what, fe, data, half, same) in cases {
        let to = |p: &SocketAddr, q, t| match fe {
            0 => *p,
            1 => at(*p, q),
            _ => at(*p, t),
        };
        let ha = raw_exchange(to(&hap.front, hq, ht), data, *half);
        let ba = raw_exchange(to(&bal.front, bq, bt), data, *half);
        if what.starts_with("dontlognull: ") && !what.ends_with("garbage") {
            continue;
        }
        let (h, b) = (hlog.next("haproxy"), blog.next("balancer"));
        eprintln!("{what}:\n  haproxy:  {h}  balancer: {b}");
        let (want, mut got) = match fe {
            2 => (after_date(&h).to_owned(), after_date(&b).to_owned()),
            _ => (format!("{:?}", parse(&h)), format!("{:?}", parse(&b))),
        };
        if *what == "a head larger than HAProxy's buffer" {
            // hyper answers 431 (RFC 6585) where HAProxy answers 400.
            got = got.replacen("\"431\"", "\"400\"", 1);
            assert!(String::from_utf8_lossy(&ba).starts_with("HTTP/1.1 431 "));
        }
        if want != got {
            diffs.push(format!("{what}:\n  haproxy:  {h}  balancer: {b}"));
        }
        if *same && ha != ba {
            diffs.push(format!(
                "{what}: answers differ:\n  haproxy:  {:?}\n  balancer: {:?}",
                String::from_utf8_lossy(&ha),
                String::from_utf8_lossy(&ba)
            ));
        }
    }
    drop((hap, bal));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
