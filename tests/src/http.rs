//! Minimal HTTP/1.1 peers for the proxy tests, on loopback, std only: a
//! backend that answers its own name and records what it was sent, and a
//! keep-alive client with a cookie jar, and [`Svc`]: `balancer run` with
//! one http frontend in front of such backends. Deliberately small and strict: they
//! read exactly what `Content-Length` says, so framing mistakes of the proxy
//! show up as errors instead of being papered over.

use std::{
    collections::{BTreeMap, HashMap},
    io::{self, BufReader, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use crate::proc::{Proc, wait_for};

/// What a backend saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Every header, lower-cased names, in order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A backend answering `200` with its name as the body.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    /// Open client connections (by accept number), shut down on stop (a
    /// dead server); each is removed when its connection ends, so a
    /// server that sees many connections holds no descriptor for the
    /// closed ones.
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
    /// TLS handshakes: full, resumed.
    tls_counts: Arc<[AtomicU32; 2]>,
}

impl Backend {
    /// Listen on 127.0.0.1 (a free port, or `port`).
    pub fn start(name: &str, port: u16) -> io::Result<Backend> {
        Self::start_with(name, port, "")
    }

    /// ... adding `extra` (whole header lines, each ending in `\r\n`) to
    /// every response, e.g. a validator that makes it cacheable.
    pub fn start_with(name: &str, port: u16, extra: &str) -> io::Result<Backend> {
        let extra = extra.to_owned();
        Self::start_fn(name, port, move |_| (200, extra.clone()))
    }

    /// ... answering each request with the status and the extra header
    /// lines (each ending in `\r\n`) that `respond` chooses from what was
    /// received (e.g. from the request's path); the body is still the name.
    pub fn start_fn(
        name: &str,
        port: u16,
        respond: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
    ) -> io::Result<Backend> {
        Self::start_at(name, SocketAddr::from(([127, 0, 0, 1], port)), respond)
    }

    /// ... listening on `addr` (any loopback address, e.g. 127.0.0.3:PORT
    /// or [::1]:PORT, as DNS records can name them).
    pub fn start_at(
        name: &str,
        addr: SocketAddr,
        respond: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
    ) -> io::Result<Backend> {
        Self::start_inner(name, addr, None, Arc::new(respond))
    }

    /// A backend on 127.0.0.1 speaking TLS with the certificate and key of
    /// `pem` (see [`crate::tls::Pki`]); [`Backend::tls_handshakes`] counts
    /// its handshakes. With `close`, it closes each connection after one
    /// response (`Connection: close`).
    pub fn start_tls(name: &str, pem: &std::path::Path, close: bool) -> io::Result<Backend> {
        let config = crate::tls::server_config(pem)?;
        let extra = if close { "Connection: close\r\n" } else { "" };
        Self::start_inner(
            name,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(config),
            Arc::new(move |_: &Seen| (200, extra.to_owned())),
        )
    }

    /// (full, resumed) TLS handshakes completed (a TLS backend).
    pub fn tls_handshakes(&self) -> (u32, u32) {
        (
            self.tls_counts[0].load(Ordering::Relaxed),
            self.tls_counts[1].load(Ordering::Relaxed),
        )
    }

    fn start_inner(
        name: &str,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        respond: Arc<Responder>,
    ) -> io::Result<Backend> {
        let l = TcpListener::bind(addr)?;
        let addr = l.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(HashMap::new()));
        let (n, s, st, cs) = (name.to_owned(), seen.clone(), stop.clone(), conns.clone());
        let tls_counts: Arc<[AtomicU32; 2]> = Arc::default();
        let counts = tls_counts.clone();
        std::thread::spawn(move || {
            for (i, c) in (0u64..).zip(l.incoming()) {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(c) = c else { continue };
                if let Ok(dup) = c.try_clone() {
                    cs.lock().unwrap_or_else(|e| e.into_inner()).insert(i, dup);
                }
                let (n, s, r, cs) = (n.clone(), s.clone(), respond.clone(), cs.clone());
                let (tls, counts) = (tls.clone(), counts.clone());
                std::thread::spawn(move || {
                    serve_fn(c, tls, &counts, &n, &s, &*r);
                    cs.lock().unwrap_or_else(|e| e.into_inner()).remove(&i);
                });
            }
        });
        Ok(Backend {
            name: name.to_owned(),
            addr,
            seen,
            stop,
            conns,
            tls_counts,
        })
    }

    /// Stop listening and cut every open connection: the server is dead.
    pub fn kill(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
        for c in self.conns.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = c.1.shutdown(Shutdown::Both);
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What [`Backend::start_fn`] calls per request: (status, extra header lines).
type Responder = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

/// Serve one connection of a [`Backend`] (over TLS with `tls`, counting
/// its handshake in `counts`: full, resumed).
fn serve_fn(
    c: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    counts: &[AtomicU32; 2],
    name: &str,
    seen: &Mutex<Vec<Seen>>,
    respond: &Responder,
) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
    // `kill` keeps a duplicate of the socket: close it for real on return.
    let closer = c.try_clone();
    let stream: Box<dyn Stream> = match tls {
        None => Box::new(c),
        Some(config) => match crate::tls::accept(config, c) {
            Ok((s, resumed)) => {
                counts[usize::from(resumed)].fetch_add(1, Ordering::Relaxed);
                Box::new(s)
            }
            Err(_) => return,
        },
    };
    serve_loop(stream, name, seen, respond);
    if let Ok(c) = closer {
        let _ = c.shutdown(Shutdown::Both);
    }
}

/// Answer requests on `c` until it closes or asks to: each answer's status
/// and extra header lines come from `respond`, its body is `name`.
fn serve_loop(
    c: Box<dyn Stream>,
    name: &str,
    seen: &Mutex<Vec<Seen>>,
    respond: &(dyn Fn(&Seen) -> (u16, String) + Send + Sync),
) {
    let mut r = BufReader::new(c);
    loop {
        let Ok(Some(head)) = read_head(&mut r) else {
            return;
        };
        let mut lines = head.lines();
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_owned();
        let path = first.next().unwrap_or_default().to_owned();
        let headers = parse_headers(lines);
        let len: usize = header_of(&headers, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let mut close =
            header_of(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let request = Seen {
            method,
            path,
            headers,
        };
        let (status, extra) = respond(&request);
        close |= extra.contains("Connection: close");
        seen.lock().unwrap_or_else(|e| e.into_inner()).push(request);
        let reason = match status {
            200 => "OK",
            301 => "Moved Permanently",
            302 => "Found",
            404 => "Not Found",
            500 => "Internal Server Error",
            _ => "Status",
        };
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\n\r\n{name}",
            name.len()
        );
        let w = r.get_mut();
        if w.write_all(answer.as_bytes())
            .and_then(|()| w.flush())
            .is_err()
            || close
        {
            return;
        }
    }
}

/// The head of a message (up to the empty line, each line with its line
/// end); `None` at a clean EOF.
pub fn read_head(r: &mut impl io::BufRead) -> io::Result<Option<String>> {
    let mut head = String::new();
    loop {
        // Bytes, not UTF-8: header values may carry any octet (obs-text).
        let mut bytes = Vec::new();
        if r.read_until(b'\n', &mut bytes)? == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut head"))
            };
        }
        let line = String::from_utf8_lossy(&bytes);
        if line == "\r\n" || line == "\n" {
            return Ok(Some(head));
        }
        head.push_str(&line);
        if head.len() > 1 << 20 {
            return Err(io::Error::other("head too large"));
        }
    }
}

fn parse_headers<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

fn header_of<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// One response as the client saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A client's connection: a TCP stream, or TLS over one.
pub trait Stream: io::Read + io::Write + Send {}
impl<T: io::Read + io::Write + Send> Stream for T {}

/// A browser-like client: one keep-alive connection (reopened when the
/// server closes it) and a cookie jar (name -> value, from `Set-Cookie`).
pub struct Client {
    to: SocketAddr,
    /// Source address to connect from (any of 127/8 on loopback).
    from: Option<std::net::IpAddr>,
    /// Over TLS: the client configuration and the name it asks for (SNI).
    tls: Option<crate::tls::ClientTls>,
    conn: Option<BufReader<Box<dyn Stream>>>,
    pub jar: BTreeMap<String, String>,
    /// Cookies always sent besides the jar's (e.g. an application's).
    pub extra_cookie: Option<String>,
}

impl Client {
    /// A client connecting from `from` (e.g. 127.0.0.7: all of 127/8 is
    /// loopback on Linux), so tests can have many client addresses.
    pub fn from(to: SocketAddr, from: std::net::IpAddr) -> Client {
        Client {
            from: Some(from),
            ..Client::new(to)
        }
    }

    pub fn new(to: SocketAddr) -> Client {
        Client {
            from: None,
            tls: None,
            to,
            conn: None,
            jar: BTreeMap::new(),
            extra_cookie: None,
        }
    }

    /// A client of `to` over TLS (`tls`: see [`crate::tls::ClientTls`]).
    pub fn tls(to: SocketAddr, tls: crate::tls::ClientTls) -> Client {
        Client {
            tls: Some(tls),
            ..Client::new(to)
        }
    }

    fn connect(&mut self) -> io::Result<&mut BufReader<Box<dyn Stream>>> {
        if self.conn.is_none() {
            let s = match self.from {
                None => TcpStream::connect(self.to)?,
                Some(ip) => {
                    let sock = socket2::Socket::new(
                        socket2::Domain::for_address(self.to),
                        socket2::Type::STREAM,
                        None,
                    )?;
                    sock.bind(&SocketAddr::new(ip, 0).into())?;
                    sock.connect(&self.to.into())?;
                    sock.into()
                }
            };
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.set_nodelay(true)?;
            let stream: Box<dyn Stream> = match &self.tls {
                None => Box::new(s),
                Some(t) => Box::new(t.connect(s)?),
            };
            self.conn = Some(BufReader::new(stream));
        }
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection"))
    }

    /// `GET path` with the jar's cookies; updates the jar from the answer.
    pub fn get(&mut self, path: &str) -> io::Result<Answer> {
        let mut cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Some(e) = &self.extra_cookie {
            cookies.push(e.clone());
        }
        let cookie = if cookies.is_empty() {
            String::new()
        } else {
            format!("Cookie: {}\r\n", cookies.join("; "))
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: lab\r\n{cookie}\r\n");
        let a = match self.exchange(&req) {
            Ok(a) => a,
            // The proxy may close an idle keep-alive connection: once more
            // on a fresh one.
            Err(_) => {
                self.conn = None;
                self.exchange(&req)?
            }
        };
        for v in a.all("set-cookie") {
            let first = v.split(';').next().unwrap_or_default();
            if let Some((k, val)) = first.split_once('=') {
                let (k, val) = (k.trim().to_owned(), val.trim().to_owned());
                let expired = v.to_ascii_lowercase().contains("expires=thu, 01-jan-1970")
                    || v.to_ascii_lowercase().contains("max-age=0");
                if expired {
                    self.jar.remove(&k);
                } else {
                    self.jar.insert(k, val);
                }
            }
        }
        Ok(a)
    }

    /// Send `req` (a whole request: head, empty line, body) as is, on the
    /// current connection; the jar is neither used nor updated.
    pub fn raw(&mut self, req: &str) -> io::Result<Answer> {
        self.exchange(req)
    }

    fn exchange(&mut self, req: &str) -> io::Result<Answer> {
        let r = self.connect()?;
        r.get_mut().write_all(req.as_bytes())?;
        r.get_mut().flush()?;
        let head = read_head(r)?.ok_or_else(|| io::Error::other("connection closed"))?;
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
        let headers = parse_headers(lines);
        let len: usize = header_of(&headers, "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no content-length in {head:?}")))?;
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        if header_of(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            self.conn = None;
        }
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// A `[[backend.server]]` table per backend, at its address, with its
/// name as its cookie value when `cookie`, and `extra` lines.
pub fn server_tables(backends: &[Backend], cookie: bool, extra: &str) -> String {
    backends
        .iter()
        .map(|b| {
            let value = match cookie {
                true => format!("cookie = \"{}\"\n", b.name),
                false => String::new(),
            };
            format!(
                "[[backend.server]]\nname = \"{}\"\naddress = \"{}\"\n{value}{extra}",
                b.name, b.addr
            )
        })
        .collect()
}

/// A daemon serving one http frontend in front of `backends`.
pub struct Svc {
    pub dir: PathBuf,
    pub pin_dir: PathBuf,
    pub daemon: Proc,
    pub front: SocketAddr,
    pub backends: Vec<Backend>,
}

impl Svc {
    pub fn start(tag: &str, backend_extra: &str, server_extra: &str, n: usize) -> Svc {
        Self::start_with(tag, backend_extra, server_extra, n, "")
    }

    /// `response_extra`: header lines every backend adds to its answers.
    /// Each server gets its name as its cookie value when `backend_extra`
    /// sets the backend's `cookie` (without one, a server's value would
    /// have no effect, and the config would be refused).
    pub fn start_with(
        tag: &str,
        backend_extra: &str,
        server_extra: &str,
        n: usize,
        response_extra: &str,
    ) -> Svc {
        crate::require_root();
        let backends: Vec<Backend> = (0..n)
            .map(|j| Backend::start_with(&format!("s{j}"), 0, response_extra).expect("backend"))
            .collect();
        let with_cookie = backend_extra
            .lines()
            .any(|l| l.split('=').next().is_some_and(|k| k.trim() == "cookie"));
        let servers = server_tables(&backends, with_cookie, server_extra);
        let mut svc = Self::launch(tag, "", backend_extra, &servers);
        svc.backends = backends;
        svc
    }

    /// A daemon in front of servers that already run elsewhere (e.g.
    /// backends shared with another proxy): `servers` are (name, address,
    /// extra TOML lines of that `[[backend.server]]`, e.g. `cookie = "a"`,
    /// `weight = 0`, `state = "down"`); no cookie value is added for them.
    /// [`Svc::backends`] stays empty.
    pub fn start_on(tag: &str, backend_extra: &str, servers: &[(&str, SocketAddr, &str)]) -> Svc {
        Self::start_on_with(tag, "", backend_extra, servers)
    }

    /// [`Svc::start_on`] with more lines in the `[[frontend]]` table.
    pub fn start_on_with(
        tag: &str,
        frontend_extra: &str,
        backend_extra: &str,
        servers: &[(&str, SocketAddr, &str)],
    ) -> Svc {
        let servers: String = servers
            .iter()
            .map(|(name, addr, extra)| {
                format!("[[backend.server]]\nname = \"{name}\"\naddress = \"{addr}\"\n{extra}\n")
            })
            .collect();
        Self::launch(tag, frontend_extra, backend_extra, &servers)
    }

    /// [`launch_http`] as a `Svc` without backends of its own; `tail` may
    /// also hold other top-level tables (e.g. `[resolvers.NAME]`).
    pub fn launch(tag: &str, frontend_extra: &str, backend_extra: &str, tail: &str) -> Svc {
        Self::launch_limited(tag, frontend_extra, backend_extra, tail, None)
    }

    /// [`Svc::launch`] without kernel maps (no `[dataplane]`, no pin_dir:
    /// the daemon keeps its stick table in memory).
    pub fn launch_in_memory(
        tag: &str,
        frontend_extra: &str,
        backend_extra: &str,
        tail: &str,
    ) -> Svc {
        Svc::of(launch_http_as(
            tag,
            frontend_extra,
            backend_extra,
            tail,
            None,
            false,
        ))
    }

    fn of(launched: io::Result<(PathBuf, PathBuf, Proc, SocketAddr)>) -> Svc {
        let (dir, pin_dir, daemon, front) = launched.expect("balancer run");
        Svc {
            dir,
            pin_dir,
            daemon,
            front,
            backends: Vec::new(),
        }
    }

    /// [`Svc::launch`] with the daemon's descriptor limit set to `nofile`.
    pub fn launch_limited(
        tag: &str,
        frontend_extra: &str,
        backend_extra: &str,
        tail: &str,
        nofile: Option<u64>,
    ) -> Svc {
        Svc::of(launch_http_limited(
            tag,
            frontend_extra,
            backend_extra,
            tail,
            nofile,
        ))
    }

    /// A daemon on a haproxy.cfg: `config(front)` is its text for a
    /// frontend on `front` (a free 127.0.0.1 port); pins and admin socket
    /// are given on the command line, named after `tag`.
    pub fn launch_cfg(tag: &str, config: impl FnOnce(SocketAddr) -> String) -> Svc {
        Self::launch_cfg_with(tag, config, |_| {})
    }

    /// [`Svc::launch_cfg`] with more `balancer run` arguments (`args`
    /// adds them to the command).
    pub fn launch_cfg_with(
        tag: &str,
        config: impl FnOnce(SocketAddr) -> String,
        args: impl FnOnce(&mut Command),
    ) -> Svc {
        Self::launch_cfg_as(tag, config, args, false)
    }

    /// [`Svc::launch_cfg_with`], but run on the TOML that `balancer
    /// convert` (given the same arguments) prints for the file, which must
    /// pass `check-config`: the service as the converted configuration
    /// runs it.
    pub fn launch_converted_with(
        tag: &str,
        config: impl FnOnce(SocketAddr) -> String,
        args: impl FnOnce(&mut Command),
    ) -> Svc {
        Self::launch_cfg_as(tag, config, args, true)
    }

    fn launch_cfg_as(
        tag: &str,
        config: impl FnOnce(SocketAddr) -> String,
        args: impl FnOnce(&mut Command),
        converted: bool,
    ) -> Svc {
        crate::require_root();
        let id = format!("blb-{}-{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        let pin_dir = PathBuf::from(crate::lab::BPFFS).join(&id);
        std::fs::create_dir_all(&dir).expect("test dir");
        let front: SocketAddr = format!("127.0.0.1:{}", free_port().expect("a port"))
            .parse()
            .expect("an address");
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config(front)).expect("haproxy.cfg");
        let own = |cmd: &mut Command| {
            cmd.arg("--pin-dir")
                .arg(&pin_dir)
                .arg("--admin-socket")
                .arg(dir.join("admin.sock"));
        };
        let mut cmd = Command::new(crate::balancer_bin());
        if converted {
            let mut convert = Command::new(crate::balancer_bin());
            convert.arg("convert").arg(&file);
            own(&mut convert);
            args(&mut convert);
            let toml = crate::lab::output(&mut convert).expect("balancer convert");
            let toml_file = dir.join("converted.toml");
            std::fs::write(&toml_file, toml).expect("converted.toml");
            let ok = crate::lab::output(
                Command::new(crate::balancer_bin())
                    .arg("check-config")
                    .arg(&toml_file),
            )
            .expect("check-config of the converted TOML");
            assert!(ok.contains(": ok"), "{ok}");
            cmd.args(["run", "--config"]).arg(&toml_file);
        } else {
            cmd.args(["run", "--config"]).arg(&file);
            own(&mut cmd);
            args(&mut cmd);
        }
        cmd.env("RUST_LOG", "info");
        let mut daemon = Proc::spawn("balancer", cmd, &dir).expect("balancer run");
        let ready = wait_for(Duration::from_secs(20), || {
            daemon.output().contains("running:") || daemon.try_wait().ok().flatten().is_some()
        });
        assert!(
            ready && daemon.try_wait().ok().flatten().is_none(),
            "balancer did not start on {}: {}",
            file.display(),
            daemon.output()
        );
        Svc {
            dir,
            pin_dir,
            daemon,
            front,
            backends: Vec::new(),
        }
    }

    /// Start the daemon again on `config` (the same pins and socket), once
    /// the previous one has stopped; waits until it runs.
    pub fn start_again(&mut self, config: &std::path::Path) {
        let mut cmd = Command::new(crate::balancer_bin());
        cmd.args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info");
        self.daemon = Proc::spawn("balancer-2", cmd, &self.dir).expect("balancer run");
        assert!(
            wait_for(Duration::from_secs(20), || self
                .daemon
                .output()
                .contains("running:")),
            "the daemon did not start again: {}",
            self.daemon.output()
        );
    }

    /// A server's state as `backend list --json` gives it ("" if none).
    pub fn server_state(&self, name: &str) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&self.cli(&["backend", "list", "--json"])).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .find(|s| s["server"] == name)
            .map(|s| s["state"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }

    /// SIGHUP, then wait (10 s at most) for one more "reloaded:" line.
    pub fn reload(&self) {
        let before = self.daemon.output().matches("reloaded:").count();
        self.daemon.signal(libc::SIGHUP).expect("SIGHUP");
        assert!(
            wait_for(Duration::from_secs(10), || self
                .daemon
                .output()
                .matches("reloaded:")
                .count()
                > before),
            "no reload: {}",
            self.daemon.output()
        );
    }

    pub fn cli(&self, args: &[&str]) -> String {
        crate::lab::output(
            Command::new(crate::balancer_bin())
                .arg("--socket")
                .arg(self.dir.join("admin.sock"))
                .args(args),
        )
        .unwrap()
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        let _ = self.daemon.stop();
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("logs kept in {}", self.dir.display());
        }
    }
}

/// Write an http-only config (one frontend `web` on a free 127.0.0.1 port,
/// backend `app` with `backend_extra` and the `[[backend.server]]` tables
/// in `servers`, pins and admin socket named after `tag`) and start
/// `balancer run` on it; returns (work dir, pin dir, daemon, frontend).
pub fn launch_http(
    tag: &str,
    frontend_extra: &str,
    backend_extra: &str,
    servers: &str,
) -> io::Result<(PathBuf, PathBuf, Proc, SocketAddr)> {
    launch_http_limited(tag, frontend_extra, backend_extra, servers, None)
}

/// [`launch_http`] with the daemon's descriptor limit (soft and hard) set
/// to `nofile` (by `prlimit`, which then runs the daemon itself).
pub fn launch_http_limited(
    tag: &str,
    frontend_extra: &str,
    backend_extra: &str,
    servers: &str,
    nofile: Option<u64>,
) -> io::Result<(PathBuf, PathBuf, Proc, SocketAddr)> {
    launch_http_as(tag, frontend_extra, backend_extra, servers, nofile, true)
}

/// [`launch_http_limited`]; without `kernel`, the file has no
/// `[dataplane]` (no pin_dir): the daemon keeps its maps in memory.
fn launch_http_as(
    tag: &str,
    frontend_extra: &str,
    backend_extra: &str,
    servers: &str,
    nofile: Option<u64>,
    kernel: bool,
) -> io::Result<(PathBuf, PathBuf, Proc, SocketAddr)> {
    crate::require_root();
    let id = format!("blb-{}-{tag}", std::process::id());
    let dir = std::env::temp_dir().join(&id);
    let pin_dir = PathBuf::from(crate::lab::BPFFS).join(&id);
    std::fs::create_dir_all(&dir)?;
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()?)
        .parse()
        .map_err(io::Error::other)?;
    let config = dir.join("balancer.toml");
    let dataplane = match kernel {
        true => format!(
            "[dataplane]\ninterfaces = []\npin_dir = \"{}\"\n\n",
            pin_dir.display()
        ),
        false => String::new(),
    };
    std::fs::write(
        &config,
        format!(
            "{dataplane}[admin]\nsocket = \"{}\"\n\n\
             [[frontend]]\nname = \"web\"\nmode = \"http\"\nbind = \"{front}\"\ndefault_backend = \"app\"\n\
             {frontend_extra}\n[[backend]]\nname = \"app\"\n{backend_extra}\n{servers}",
            dir.join("admin.sock").display()
        ),
    )?;
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}"))
                .arg(crate::balancer_bin());
            c
        }
        None => Command::new(crate::balancer_bin()),
    };
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info");
    let mut daemon = Proc::spawn("balancer", cmd, &dir)?;
    let ready = wait_for(Duration::from_secs(20), || {
        daemon.output().contains("running:") || daemon.try_wait().ok().flatten().is_some()
    });
    if !ready || daemon.try_wait()?.is_some() {
        return Err(io::Error::other(format!(
            "daemon did not start: {}",
            daemon.output()
        )));
    }
    Ok((dir, pin_dir, daemon, front))
}

/// `name{labels}` -> value, from `GET /metrics` at `addr`.
pub fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let mut s = TcpStream::connect(addr).expect("metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    parse_metrics(body)
}

/// A TCP port of 127.0.0.1 that nothing listens on, for a process the test
/// starts (HAProxy, the daemon) to bind.
///
/// Both of those bind with `SO_REUSEPORT`, so two of them given one port
/// by two tests running at once would both start and silently share its
/// connections (it happened: a bound-and-released `:0` port came back to
/// another test). So no port is handed out twice by one test process, and
/// they come from just below the kernel's ephemeral range, where no
/// `bind(:0)` or outgoing connection lands, starting at an offset from the
/// process id; a probe bind skips any that something holds.
pub fn free_port() -> io::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const SPAN: u32 = 12_000;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&low| (SPAN + 1024..=65_535).contains(&low))
        .unwrap_or(32_768);
    let base = low - SPAN;
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free port below the ephemeral range"))
}

/// `name{labels}` -> value, from Prometheus' text format (comments and
/// blank lines skipped).
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// `[[backend.server]]` tables for `backends`, each health-checked every
/// 200 ms (rise 2, fall 2).
pub fn checked_servers(backends: &[Backend]) -> String {
    backends
        .iter()
        .map(|b| {
            format!(
                "[[backend.server]]\nname = \"{}\"\naddress = \"{}\"\ncheck = true\n\
                 inter = \"200ms\"\nrise = 2\nfall = 2\n",
                b.name, b.addr
            )
        })
        .collect()
}
