//! Access logs: HAProxy's `option httplog` semantics for HTTP frontends.
//!
//! A request with logging on carries a [`Record`] (boxed: one allocation,
//! only when the frontend logs) that the proxy fills as the request goes:
//! timings, the server, the status, the cookie's verdict, how it ended.
//! It travels with the response body; when the body ends or is dropped
//! (the client went away) the record is dropped, and its drop writes the
//! line: formatted into a per-thread buffer (`format.rs`) and appended to
//! its target's bounded buffer, which a writer thread drains (`sink.rs`).
//! A line that does not fit is dropped and counted
//! (`balancer_log_dropped_total`): a slow or blocked target never slows
//! a request.
//!
//! Fields as HAProxy 2.6 fills them (configuration.txt 8.2.3, 8.5):
//! `TR` from the request head's first byte to its end; `Tw` the wait for
//! a place under the server's `maxconn`; `Tc` the server connection (0
//! for a reused one); `Tr` from the request sent to the response head;
//! `Ta` from the request's start to the end of its response; -1 for a
//! phase not reached. `bytes_read` counts the response head and body as
//! HAProxy 2.6 counts them (see [`htx_head_bytes`]: not the bytes on the
//! wire, but close to them). The termination state is
//! two characters for who ended the request and in which phase (`--`,
//! `CD`, `SC`, `sH`...) and the two persistence cookie characters.

pub mod conn;
pub mod format;
pub mod sink;

use std::{
    cell::RefCell,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
};

use http::{Method, Uri, Version};

use tokio::sync::Semaphore;

use super::stats::FrontendCounters;
use crate::config::{LogFormat, LogSettings};

pub use sink::{Sink, SinkError, Sinks};

/// A frontend's access log: how its lines look and where they go.
pub struct AccessLog {
    pub settings: LogSettings,
    /// The frontend's name as logged (`~` after it for TLS).
    pub frontend: String,
    pub sink: Arc<Sink>,
    /// Its backend's name (for a request that found no backend).
    pub backend: String,
    /// The connection caps (global, frontend) and their semaphores, for
    /// `actconn`/`feconn`.
    pub caps: (usize, usize),
    pub slots: (Arc<Semaphore>, Arc<Semaphore>),
}

/// What a record needs of the backend that took its request (the proxy's
/// view of it implements this).
pub trait Backend: Send + Sync {
    fn name(&self) -> &str;
    /// Server `i`'s name, and its requests at once and in its queue (with
    /// `maxconn`).
    fn server(&self, i: usize) -> Option<(&str, u32, u32)>;
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("settings", &self.settings)
            .finish()
    }
}

/// HAProxy's spelling of an HTTP version in its request line.
pub fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// One request's log line in the making (see the module doc). Written
/// when dropped.
pub struct Record {
    log: Arc<AccessLog>,
    /// Its frontend's counters (dropped lines).
    counters: Arc<FrontendCounters>,
    pub client: SocketAddr,
    /// Unix time (ms) of the request's start.
    pub date_ms: u64,
    /// Monotonic time (ns) of the request's start.
    start_ns: u64,
    /// ... and of the last phase's end (see [`Record::lap`]).
    lap_ns: u64,
    /// `TR`, `Tw`, `Tc`, `Tr` in ms (-1: not reached).
    pub timers: [i64; 4],
    pub backend: Option<Arc<dyn Backend>>,
    /// Index of its server in `backend`.
    pub server: Option<usize>,
    pub status: u16,
    pub bytes: u64,
    /// Who ended it, in which phase (`--`: it completed).
    pub term: [u8; 2],
    /// The persistence cookie's request and response characters.
    pub cookie: [u8; 2],
    pub retries: u8,
    pub redispatched: bool,
    /// The response body is chunked (its end counts one byte more).
    pub chunked: bool,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    /// No request came whole (`conn.rs`): logged as `<BADREQ>`, on the
    /// frontend's own name as HAProxy logs it.
    pub bad: bool,
    /// Its connection's slot was given back already: counted in
    /// `actconn`/`feconn` all the same, as HAProxy counts it.
    pub released: bool,
}

/// What [`Record`] turns into for the formatters.
pub struct Fields<'a> {
    pub frontend: &'a str,
    pub backend: &'a str,
    pub server: &'a str,
    /// `TR/Tw/Tc/Tr/Ta`.
    pub timers: [i64; 5],
    pub termination: [u8; 4],
    /// actconn, feconn, beconn, srv_conn.
    pub conns: [usize; 4],
    /// srv_queue, backend_queue.
    pub queues: [u32; 2],
}

/// Milliseconds from `from` (monotonic ns) to `to`.
pub fn ms_between(from: u64, to: u64) -> i64 {
    (to.saturating_sub(from) / 1_000_000) as i64
}

impl Record {
    /// A request that `proxy` started at `start_ns` (monotonic), its head
    /// taken `t_request` ms to come.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        log: Arc<AccessLog>,
        counters: Arc<FrontendCounters>,
        client: SocketAddr,
        start_ns: u64,
        t_request: i64,
        method: Method,
        uri: Uri,
        version: Version,
    ) -> Box<Record> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Box::new(Record {
            log,
            counters,
            client,
            date_ms: now_ms.saturating_sub(t_request.max(0) as u64),
            start_ns: start_ns.saturating_sub(t_request.max(0) as u64 * 1_000_000),
            lap_ns: start_ns,
            timers: [t_request, -1, -1, -1],
            backend: None,
            server: None,
            status: 0,
            bytes: 0,
            term: *b"--",
            cookie: *b"--",
            retries: 0,
            redispatched: false,
            chunked: false,
            method,
            uri,
            version,
            bad: false,
            released: false,
        })
    }

    /// A phase ended now: timer `i` (1 `Tw`, 2 `Tc`, 3 `Tr`) gets the time
    /// since the last phase ended (`None`: only mark the time).
    pub fn lap(&mut self, i: Option<usize>) {
        let now = crate::util::monotonic_ns();
        if let Some(t) = i.and_then(|i| self.timers.get_mut(i)) {
            *t = ms_between(self.lap_ns, now);
        }
        self.lap_ns = now;
    }

    /// The request was refused by the proxy with `status`: `term` says why.
    pub fn refused(&mut self, status: u16, term: [u8; 2]) {
        self.status = status;
        self.term = term;
    }

    fn write(&self, out: &mut Vec<u8>, now: u64) {
        let log = &self.log;
        let b = self.backend.as_deref();
        let server = b.zip(self.server).and_then(|(b, i)| b.server(i));
        let (global_cap, fe_cap) = log.caps;
        let (current, queued) = server.map_or((0, 0), |(_, c, q)| (c, q));
        let f = Fields {
            frontend: &log.frontend,
            backend: match (b, self.bad) {
                (Some(b), _) => b.name(),
                (None, false) => &log.backend,
                (None, true) => log.frontend.trim_end_matches('~'),
            },
            server: server.map_or("<NOSRV>", |(n, ..)| n),
            timers: [
                self.timers[0],
                self.timers[1],
                self.timers[2],
                self.timers[3],
                ms_between(self.start_ns, now),
            ],
            termination: [self.term[0], self.term[1], self.cookie[0], self.cookie[1]],
            conns: [
                global_cap.saturating_sub(log.slots.0.available_permits()) + self.released as usize,
                fe_cap.saturating_sub(log.slots.1.available_permits()) + self.released as usize,
                0,
                current as usize,
            ],
            queues: [queued, 0],
        };
        match log.settings.format {
            LogFormat::HttpLog => format::httplog(out, self, &f),
            LogFormat::Json => format::json(out, self, &f),
        }
    }
}

thread_local! {
    /// The line being written, reused by every request of the thread.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// One line to `log`'s target: the syslog header (dated `unix_ms`) where
/// the target wants one, what `body` writes, a newline. Counted in
/// `counters` if the target's buffer has no room for it.
fn emit(
    log: &AccessLog,
    counters: &FrontendCounters,
    unix_ms: u64,
    body: impl FnOnce(&mut Vec<u8>),
) {
    LINE.with(|l| {
        let mut out = l.borrow_mut();
        out.clear();
        let s = &log.settings;
        if s.syslog_header {
            format::syslog_header(&mut out, s.facility, &s.tag, unix_ms);
        }
        body(&mut out);
        out.push(b'\n');
        if !log.sink.push(&out) {
            counters.log_dropped.fetch_add(1, Ordering::Relaxed);
        }
    });
}

impl Drop for Record {
    fn drop(&mut self) {
        let now = crate::util::monotonic_ns();
        let at = self.date_ms + ms_between(self.start_ns, now) as u64;
        let this = &*self;
        emit(&this.log, &this.counters, at, |out| this.write(out, now));
    }
}

/// HAProxy 2.6's `bytes_read` of a response head: what the head takes in
/// HAProxy's internal message (HTX) as the response came in (from its
/// server, before the proxy's edits such as an inserted cookie; or as the
/// proxy made it): the start line's three strings and 21 bytes (its block
/// and the end of headers), each field's name and value, `Connection`
/// left out (HAProxy's HTTP/1 parser consumes it). Measured against
/// HAProxy 2.6.12; the body's bytes are added as they go, and a chunked
/// body's end adds 1.
pub fn htx_head_bytes(status: http::StatusCode, headers: &http::HeaderMap) -> u64 {
    let reason = reason(status);
    let mut n = 21 + 8 + 3 + reason.len() as u64;
    for (k, v) in headers {
        if k != http::header::CONNECTION {
            n += (k.as_str().len() + v.len()) as u64;
        }
    }
    n
}

/// The reason phrase the proxy's responses carry: hyper's, except where
/// HAProxy's error pages spell it otherwise (set with
/// [`hyper::ext::ReasonPhrase`]).
pub fn reason(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad request",
        408 => "Request Time-out",
        504 => "Gateway Time-out",
        _ => status.canonical_reason().unwrap_or(""),
    }
}

/// A response head announcing a chunked body (one more byte at its end).
pub fn is_chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"))
}

/// Frontend `f`'s access log, its target opened in `sinks` (shared with
/// the frontends that log to the same target); `caps`: the global and the
/// frontend's connection caps.
pub fn open(
    f: &crate::config::Frontend,
    backend: &str,
    sinks: &mut Sinks,
    caps: (usize, usize),
    slots: &super::conn::Slots,
) -> Result<Option<Arc<AccessLog>>, SinkError> {
    let Some(settings) = &f.log else {
        return Ok(None);
    };
    let sink = sinks.get(&settings.target)?;
    let tilde = if f.tls.is_some() { "~" } else { "" };
    Ok(Some(Arc::new(AccessLog {
        settings: settings.clone(),
        frontend: format!("{}{tilde}", f.name),
        sink,
        backend: backend.to_owned(),
        caps,
        slots: (slots.global.clone(), slots.frontend.clone()),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LogSettings, LogTarget};

    struct App;

    impl Backend for App {
        fn name(&self) -> &str {
            "app"
        }
        fn server(&self, i: usize) -> Option<(&str, u32, u32)> {
            (i == 0).then_some(("s0", 0, 0))
        }
    }

    /// One record through `format` into a file: the line written.
    fn line(format: LogFormat, fill: impl FnOnce(&mut Record)) -> String {
        logged(format, |log, counters| {
            let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
            let uri: Uri = "/a?b=1".parse().unwrap();
            let now = crate::util::monotonic_ns();
            let mut r = Record::new(
                log,
                counters,
                client,
                now,
                0,
                Method::GET,
                uri,
                Version::HTTP_11,
            );
            fill(&mut r);
        })
    }

    /// What `act` logs through `format` into a file.
    fn logged(
        format: LogFormat,
        act: impl FnOnce(Arc<AccessLog>, Arc<FrontendCounters>),
    ) -> String {
        // A directory of its own: tests run at once.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("blb-log-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let mut sinks = Sinks::default();
        let settings = LogSettings {
            format,
            target: LogTarget::File(path.clone()),
            facility: 16,
            tag: "balancer".into(),
            syslog_header: true,
            dontlognull: false,
        };
        let sem = || Arc::new(Semaphore::new(10));
        let (global, fe) = (sem(), sem());
        let _held = fe.clone().try_acquire_owned().unwrap();
        let log = Arc::new(AccessLog {
            sink: sinks.get(&settings.target).unwrap(),
            settings,
            frontend: "web~".into(),
            backend: "app".into(),
            caps: (10, 10),
            slots: (global, fe),
        });
        act(log, Arc::new(FrontendCounters::default()));
        sinks.stop(std::time::Duration::from_secs(2));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        text
    }

    #[test]
    fn an_httplog_line_field_by_field() {
        let text = line(LogFormat::HttpLog, |r| {
            r.backend = Some(Arc::new(App));
            r.server = Some(0);
            (r.status, r.bytes, r.cookie) = (200, 51, *b"NI");
            (r.retries, r.redispatched) = (1, true);
            r.timers[1..].copy_from_slice(&[0, 1, 2]);
        });
        let (header, rest) = text.split_once(": ").unwrap();
        assert!(header.starts_with("<134>"), "{text}");
        assert!(header.ends_with(&format!(" balancer[{}]", std::process::id())));
        let f: Vec<&str> = rest.split(' ').collect();
        assert_eq!(f[0], "192.0.2.7:40000");
        assert_eq!((f[2], f[3]), ("web~", "app/s0"));
        assert!(f[4].starts_with("0/0/1/2/"), "{text}");
        assert_eq!(&f[5..11], ["200", "51", "-", "-", "--NI", "0/1/0/0/+1"]);
        assert_eq!(f[11], "0/0");
        assert_eq!(&f[12..], ["\"GET", "/a?b=1", "HTTP/1.1\"\n"]);
    }

    #[test]
    fn a_refused_request_in_json() {
        let text = line(LogFormat::Json, |r| r.refused(503, *b"SC"));
        let json = text.split_once(": ").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["backend_name"], "app");
        assert_eq!(v["server_name"], "<NOSRV>");
        assert_eq!(v["termination_state"], "SC--");
        assert_eq!((v["Tw"].as_i64(), v["Tr"].as_i64()), (Some(-1), Some(-1)));
        assert_eq!(v["feconn"], 1);
        assert_eq!(v["http_request"], "GET /a?b=1 HTTP/1.1");
    }

    #[test]
    fn connection_lines_in_both_formats() {
        use conn::{Ending, HANDSHAKE_TIMEOUT, ended};
        let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let tls = |log: Arc<AccessLog>, c: Arc<FrontendCounters>| {
            ended(
                &log,
                &c,
                client,
                1500,
                false,
                false,
                Ending::Handshake(HANDSHAKE_TIMEOUT),
            )
        };
        let text = logged(LogFormat::HttpLog, tls);
        let rest = text.split_once("]: ").unwrap().1;
        assert!(rest.starts_with("192.0.2.7:40000 ["), "{text}");
        assert!(
            rest.ends_with("] web/1: Timeout during SSL handshake\n"),
            "{text}"
        );
        let text = logged(LogFormat::Json, tls);
        let v: serde_json::Value = serde_json::from_str(text.split_once("]: ").unwrap().1).unwrap();
        assert_eq!(
            (v["frontend_name"].as_str(), v["bind_name"].as_str()),
            (Some("web"), Some("1"))
        );
        assert_eq!(v["message"], HANDSHAKE_TIMEOUT);
        assert_eq!(v["accept_date"].as_str().unwrap().len(), 24);
        // A request head refused after its slot was given back (counted
        // in feconn); without dontlognull, one that sent nothing is logged
        // too.
        let bad = Ending::BadRequest {
            status: 400,
            term: *b"PR",
        };
        let text = logged(LogFormat::Json, |log, c| {
            ended(&log, &c, client, 3, true, true, bad);
            ended(&log, &c, client, 3, false, true, bad);
        });
        let first = text.lines().next().unwrap();
        let v: serde_json::Value =
            serde_json::from_str(first.split_once("]: ").unwrap().1).unwrap();
        assert_eq!(v["http_request"], "<BADREQ>");
        assert_eq!(
            (v["backend_name"].as_str(), v["server_name"].as_str()),
            (Some("web"), Some("<NOSRV>"))
        );
        assert_eq!(
            (v["termination_state"].as_str(), v["status_code"].as_u64()),
            (Some("PR--"), Some(400))
        );
        assert_eq!(
            (v["TR"].as_i64(), v["feconn"].as_u64()),
            (Some(-1), Some(2))
        );
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
