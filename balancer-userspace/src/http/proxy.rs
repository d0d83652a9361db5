//! The reverse proxy of `mode = "http"` frontends (hyper 1.x).
//!
//! Per request: read the persistence cookie (`cookie::process_request`,
//! which also strips it with `indirect`); if it names a server that may
//! take the request (up or draining; down too with `option persist`), go
//! there, else balance among the up servers; forward with the body
//! streamed both ways; edit the response's cookies
//! (`cookie::process_response`). The servers, their states and the
//! backend settings come from the controller through a `watch` channel, so
//! health checks, the admin API and reloads reach the proxy at once.
//!
//! Connections: HTTP/1.1 with keep-alive and HTTP/2 (h2c, prior knowledge)
//! from clients, told apart by their first bytes (HTTP/2's preface or not);
//! HTTP/1.1 to servers through each worker's pool of keep-alive connections
//! (`upstream/`). `Upgrade` (WebSocket) requests are passed through: after
//! the server's 101 the two connections are spliced. `X-Forwarded-For` gets
//! the client's address appended (and, with `option forwarded`, an RFC 7239
//! `Forwarded` element; these header edits are `headers.rs`'s). Errors, as HAProxy answers them: 503 when no server may take
//! the request or the chosen one refuses the connection, 502 when the
//! connection fails after it was made, 504 when the server is silent for
//! `timeout_server`; the client's faults are its own: 408 for a request
//! body that stalls for `timeout_client`, 400 for one that is malformed or
//! broken off. Connection caps and the client-side timeouts are
//! `conn.rs`'s; tunnels are `tunnel.rs`'s. A request that failed to connect is tried once on
//! another server when that is safe (idempotent method, no body) and the
//! request was not persistent, or `option redispatch` is set.

use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use http::{Method, Request, Response, StatusCode};
use hyper::{body::Incoming, upgrade::OnUpgrade};
use hyper_util::rt::TokioIo;
use log::{debug, warn};
use tokio::sync::watch;

use super::{
    balance::{Chosen, InFlight, SmoothWrr},
    body::{Counted, Hold, ProxyBody, empty},
    conn::{Registry, RequestGuard, Slots},
    cookie,
    headers::{ClientSide, is_upgrade, settle_host, strip_hop_by_hop, upstream_request},
    log::Record,
    pages::error,
    queue::{Admitted, Limit},
    stats::{FrontendCounters, ServerStats},
    tunnel::{Ended, TunnelTimeouts, splice},
    upstream::{Conn, ExchangeError, Hello, Pool, SendError, UpBody, Waits},
};
use crate::config::{Balance, HttpBackend, HttpFrontend};
use crate::util::monotonic_ns;

/// What the proxy serves, as the controller last published it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpView {
    pub backends: BTreeMap<String, Arc<HttpBackendView>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpBackendView {
    pub name: String,
    pub settings: HttpBackend,
    pub servers: Vec<HttpServerView>,
    /// Its stick table, with `stick` rules.
    pub stick: Option<Arc<super::stick::Table>>,
    /// TLS to its servers (`ssl`).
    pub tls: Option<Arc<super::tls::client::ServerTls>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpServerView {
    /// The controller's id (stable across reloads).
    pub id: u32,
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    /// Effective state (`balancer_common::maps::STATE_*`).
    pub state: u8,
    pub cookie: Option<String>,
    /// Its request and error counters.
    pub stats: ServerStats,
    /// Its `maxconn` limit and queue; `None` without `maxconn`.
    pub limit: Option<Limit>,
}

/// One HTTP frontend's fixed settings.
#[derive(Debug, Clone)]
pub struct FrontendSpec {
    pub name: String,
    pub backend: String,
    /// Client-side timeouts and caps.
    pub http: HttpFrontend,
    /// Its connection caps (`maxconn`, its own and the global one).
    pub slots: Slots,
    /// Its counters (the controller's, given when the workers start).
    pub stats: Arc<FrontendCounters>,
    /// TLS termination, if it has it.
    pub tls: Option<Arc<super::tls::Terminator>>,
    /// `forwarded_proto`: requests carry `X-Forwarded-Proto` and `-Port`.
    pub forwarded_proto: bool,
    /// `redirect scheme https`: every request answered with this status.
    pub redirect_https: Option<u16>,
    /// Its access log, if it has one.
    pub log: Option<Arc<super::log::AccessLog>>,
}

/// Balancing state of one frontend, shared by its worker threads.
#[derive(Default)]
pub struct BalanceState {
    pub(super) rr: Mutex<HashMap<String, SmoothWrr>>,
    pub(super) in_flight: InFlight,
    pub(super) rotate: AtomicUsize,
    /// The frontend's client connections (all its workers').
    pub(super) conns: Arc<Registry>,
}

/// State shared by the connections one worker thread serves.
pub(super) struct Proxy {
    pub(super) spec: FrontendSpec,
    pub(super) view: watch::Receiver<Arc<HttpView>>,
    /// Idle server connections of this worker thread: a server connection
    /// stays with the thread that made it.
    pub(super) pool: Arc<Pool>,
    pub(super) shared: Arc<BalanceState>,
    /// True once the frontend stops accepting.
    pub(super) stopping: watch::Receiver<bool>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Requests that found no server connection for a reason of this host's
/// own (the descriptor budget, EMFILE): logged at most once a second.
static LOCAL: crate::util::Throttled = crate::util::Throttled::new(module_path!());

/// An answer the proxy makes itself instead of the server's (see
/// [`error`]): its status and text, counted where it was decided.
pub(super) type Refusal = (StatusCode, &'static str, [u8; 2]);

/// One client request, proxied in phases: choose a server, connect (with
/// one retry elsewhere when that is safe), forward, finish. Each phase may
/// end the request with a [`Refusal`] instead, answered by the proxy. The
/// answer is counted either way. (One async fn on purpose: the phases as a
/// second future awaited from here cost about 250 instructions more per
/// request, callgrind, since that future's poll was no longer inlined.)
pub(super) async fn handle(
    p: Arc<Proxy>,
    in_flight: RequestGuard,
    peer: SocketAddr,
    side: Arc<ClientSide>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    p.spec.stats.requests.fetch_add(1, Ordering::Relaxed);
    // Its access-log line, if the frontend logs.
    let mut rec = p.spec.log.as_ref().map(|log| {
        let (m, u, v) = (req.method().clone(), req.uri().clone(), req.version());
        let (t, head) = (monotonic_ns(), in_flight.head_ms());
        Record::new(log.clone(), p.spec.stats.clone(), peer, t, head, m, u, v)
    });
    let h1 = req.version() < http::Version::HTTP_2;
    let mut resp = 'answer: {
        let view = p.view.borrow().clone();
        let Some(b) = view.backends.get(&p.spec.backend).cloned() else {
            p.spec.stats.no_server.fetch_add(1, Ordering::Relaxed);
            break 'answer refuse(
                (StatusCode::SERVICE_UNAVAILABLE, "no backend", *b"SC"),
                &mut rec,
            );
        };
        if let Some(r) = rec.as_mut() {
            r.backend = Some(b.clone() as Arc<dyn super::log::Backend>);
        }
        if let Err(msg) = settle_host(&mut req) {
            break 'answer refuse((StatusCode::BAD_REQUEST, msg, *b"PR"), &mut rec);
        }
        if let Some(code) = p.spec.redirect_https {
            if let Some(r) = rec.as_mut() {
                r.term = *b"LR";
            }
            break 'answer super::headers::redirect_https(code, &req, empty());
        }
        // The cookie's dates (`maxidle`, `maxlife`): read only for them.
        let now = if b.settings.cookie.is_some() {
            unix_now()
        } else {
            0
        };
        // The client's stick key and the time, with a stick table.
        let stick = b.stick.as_deref().and_then(|t| {
            let key = t.form.key(peer.ip())?;
            Some((t, key, monotonic_ns()))
        });
        let stick_ref = stick.as_ref().map(|(t, k, n)| (*t, k, *n));
        let (chosen, mut persist, how) =
            match p.choose_server(&b, peer.ip(), &mut req, now, stick_ref) {
                Ok(x) => x,
                Err(e) => break 'answer refuse(e, &mut rec),
            };
        let with_cookie = b.settings.cookie.is_some();
        if let Some(r) = rec.as_mut() {
            r.server = Some(chosen);
            if with_cookie {
                r.cookie = [persist.log_char(), b'N'];
            }
        }
        let persistent = how.persistent();
        let picked = chosen;
        let method = req.method().clone();
        let upgrade = is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        // RFC 9110 9.2.2 (TRACE aside, which is not worth a second try).
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::PUT
        );
        // Safe to send again on another server: idempotent and nothing to resend.
        let retryable = idempotent
            && hyper::body::Body::is_end_stream(req.body())
            && !upgrade
            && (!persistent || b.settings.redispatch);
        let (mut parts, body) = req.into_parts();
        let mut body = ProxyBody::Request(body);
        lap(&mut rec, None, None);
        let (chosen, admitted) = match p.try_admit(&b, chosen) {
            Some(x) => x,
            // Rare (a full server): boxed, so that every request's future
            // stays small (a larger one costs copies on each request).
            None => match Box::pin(p.admit(&b, peer.ip(), chosen, persistent)).await {
                Ok(x) => x,
                Err(e) => break 'answer refuse(e, &mut rec),
            },
        };
        lap(&mut rec, Some(1), Some(chosen));
        let asked = chosen;
        let connected = p.connect(&b, &side, chosen, retryable, admitted);
        let (chosen, conn, reused, guard) = match connected.await {
            Ok(x) => x,
            Err(e) => break 'answer refuse(e, &mut rec),
        };
        lap(&mut rec, Some(2), Some(chosen));
        if let Some(r) = rec.as_mut().filter(|_| chosen != asked) {
            // Sent elsewhere after its server refused the connection; a
            // cookie's server, as HAProxy says, was down.
            (r.retries, r.redispatched) = (1, true);
            if how == Chosen::Cookie {
                r.cookie[0] = b'D';
            }
        }
        let server = &b.servers[chosen];
        upstream_request(
            &mut parts,
            &side,
            upgrade,
            b.settings.forwarded,
            b.settings.x_forwarded_for,
        );
        let sent = p.forward(&b, server, conn, reused, idempotent, (&parts, &mut body));
        let mut resp = match sent.await {
            Ok(r) => r,
            Err(e) => break 'answer refuse(e, &mut rec),
        };
        lap(&mut rec, Some(3), None);
        if let Some(r) = rec.as_mut() {
            r.bytes = super::log::htx_head_bytes(resp.status(), resp.headers());
            r.chunked = super::log::is_chunked(resp.headers());
        }
        server.stats.responses.count(resp.status().as_u16());
        // A request served by its stick entry's server needs no store: the
        // match refreshed the entry (and queued it for the map) already.
        if let Some((t, key, now_ns)) = &stick
            && !(how == Chosen::Stick && chosen == picked)
        {
            p.stick_after_response(t, key, *now_ns, &b, server);
        }
        if let Some(c) = &b.settings.cookie {
            // A server chosen by its client's stick entry is as direct as
            // one chosen by the cookie (HAProxy's SF_DIRECT): no cookie is
            // inserted for it.
            if how == Chosen::Stick && chosen == picked {
                persist.server = Some(chosen);
                persist.value = server.cookie.clone();
            }
            let status = resp.status().as_u16();
            let set = cookie::process_response(
                c,
                resp.headers_mut(),
                status,
                &method,
                server.cookie.as_deref(),
                &persist,
                now,
            );
            if let Some(r) = rec.as_mut() {
                r.cookie[1] = set;
            }
        }
        let tunnel = TunnelTimeouts {
            tunnel: b
                .settings
                .timeout_tunnel
                .unwrap_or(b.settings.timeout_server.max(p.spec.http.timeout_client)),
            client_fin: p.spec.http.timeout_client_fin,
            server_fin: b.settings.timeout_server_fin,
        };
        match p.finish(resp, client_upgrade, guard, tunnel) {
            Ok(r) => r,
            Err(e) => refuse(e, &mut rec),
        }
    };
    p.spec.stats.responses.count(resp.status().as_u16());
    // Stopping (a takeover, a reload that removed the frontend, a
    // shutdown): an HTTP/1.1 client learns it from this answer, and opens
    // its next connection elsewhere. (Here, not in a future wrapping this
    // one: moving this large future once more per request cost ~3% CPU.)
    if h1 && *p.stopping.borrow() {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    if let Some(r) = rec.as_mut() {
        r.status = resp.status().as_u16();
        if let ProxyBody::Full(body, ..) = resp.body() {
            // The proxy's own answer (an error page, a redirect, a 101).
            r.bytes = super::log::htx_head_bytes(resp.status(), resp.headers())
                + body.as_ref().map_or(0, |b| b.len() as u64);
        }
    }
    Ok(resp.map(|b| b.in_flight(in_flight).logged(rec)))
}

/// The proxy's own answer `e`, noted in the request's log record.
fn refuse(e: Refusal, rec: &mut Option<Box<Record>>) -> Response<ProxyBody> {
    if let Some(r) = rec.as_mut() {
        r.term = e.2;
    }
    error(e.0, e.1)
}

/// A phase of the request ended: its timer `i` (ms since the last lap) in
/// the log record, and its server (`None`, `None`: the phases start).
fn lap(rec: &mut Option<Box<Record>>, i: Option<usize>, server: Option<usize>) {
    if let Some(r) = rec.as_mut() {
        r.lap(i);
        if server.is_some() {
            r.server = server;
        }
    }
}

impl super::log::Backend for HttpBackendView {
    fn name(&self) -> &str {
        &self.name
    }

    fn server(&self, i: usize) -> Option<(&str, u32, u32)> {
        let s = self.servers.get(i)?;
        let (current, queued) = s
            .limit
            .as_ref()
            .map_or((0, 0), |l| (l.0.current(), l.0.queued()));
        Some((&s.name, current, queued))
    }
}

impl Proxy {
    /// A connection to server `chosen`: an idle one, or a new one. A server
    /// that refuses has not seen the request, so another may take it when
    /// `retryable` (once). Returns the server finally used, the connection,
    /// whether it was reused, and the request's in-flight count (kept only
    /// for `leastconn`).
    async fn connect(
        &self,
        b: &HttpBackendView,
        side: &ClientSide,
        mut chosen: usize,
        retryable: bool,
        mut admitted: Option<Admitted>,
    ) -> Result<(usize, Conn, bool, Hold), Refusal> {
        let fe = &self.spec.stats;
        let ends = side.ends;
        let client = ends.client.ip();
        // `send_proxy`: each server connection opens with the client's
        // ends, and serves this client connection only.
        let hello = b.settings.send_proxy.map(|v| {
            let own = side.private.get_or_init(Default::default).clone();
            (v, v.header(ends.client, ends.local), own)
        });
        let mut attempt = 0;
        loop {
            let server = &b.servers[chosen];
            match self
                .pool
                .checkout(
                    server.addr,
                    b.tls.as_ref(),
                    b.settings.timeout_connect,
                    hello
                        .as_ref()
                        .map(|(_, header, owner)| Hello { header, owner }),
                )
                .await
            {
                Ok((conn, reused)) => {
                    if let Some((v, ..)) = &hello
                        && !reused
                    {
                        fe.proxy.sent(*v);
                    }
                    server.stats.requests.fetch_add(1, Ordering::Relaxed);
                    // Counted only where `leastconn` reads it: the count is
                    // shared by the worker threads.
                    let in_flight = (b.settings.balance == Balance::LeastConn)
                        .then(|| self.shared.in_flight.start(server.id));
                    let hold = Hold {
                        in_flight,
                        admitted,
                    };
                    return Ok((chosen, conn, reused, hold));
                }
                Err(e) if e.is_local() => {
                    // The proxy's own limit: no server is to blame.
                    fe.no_server.fetch_add(1, Ordering::Relaxed);
                    LOCAL.warn(|| format!("{}: {}/{}: {e}", self.spec.name, b.name, server.name));
                    return Err((
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no connection slot",
                        *b"RC",
                    ));
                }
                Err(e) if retryable && attempt == 0 => {
                    server.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        "{}: {}/{}: {e}; trying another server",
                        self.spec.name, b.name, server.name
                    );
                    attempt += 1;
                    // With its place under `maxconn`, if it has one.
                    let next = self
                        .balance(b, client, Some(chosen), true)
                        .and_then(|i| self.try_admit(b, i));
                    match next {
                        Some((i, a)) => {
                            fe.redispatched.fetch_add(1, Ordering::Relaxed);
                            chosen = i;
                            admitted = a;
                        }
                        None => {
                            fe.no_server.fetch_add(1, Ordering::Relaxed);
                            return Err((
                                StatusCode::SERVICE_UNAVAILABLE,
                                "server unavailable",
                                *b"SC",
                            ));
                        }
                    }
                }
                Err(e) => {
                    server.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                    warn!("{}: {}/{}: {e}", self.spec.name, b.name, server.name);
                    // As HAProxy: no connection to the server is a 503.
                    return Err((
                        StatusCode::SERVICE_UNAVAILABLE,
                        "server unavailable",
                        *b"SC",
                    ));
                }
            }
        }
    }

    /// Send the `request` (head, body) on `conn` and wait for the
    /// response head. Waits are bounded by `timeout_server` on the server
    /// and `timeout_client` on the client's request body. A reused
    /// connection found closed may take the request again only if it is
    /// idempotent (`send` also requires that it has no body). Failures are
    /// counted where they belong: the client's (a body that fails or
    /// stalls: 400, 408) are not the server's.
    async fn forward(
        &self,
        b: &HttpBackendView,
        server: &HttpServerView,
        conn: Conn,
        reused: bool,
        idempotent: bool,
        request: (&http::request::Parts, &mut ProxyBody),
    ) -> Result<Response<UpBody>, Refusal> {
        let waits = Waits {
            client: self.spec.http.timeout_client,
            server: b.settings.timeout_server,
        };
        let e = match self
            .pool
            .send(
                conn,
                reused,
                idempotent,
                b.settings.timeout_connect,
                waits,
                request,
            )
            .await
        {
            Ok(x) => return Ok(x),
            Err(e) => e,
        };
        let (name, fe) = (&self.spec.name, &self.spec.stats);
        let what = crate::util::error_chain(&e);
        let at = format_args!("{name}: {}/{} ({})", b.name, server.name, server.addr);
        let count = |c: &std::sync::atomic::AtomicU64| c.fetch_add(1, Ordering::Relaxed);
        Err(match e {
            SendError::Connect(c) if c.is_local() => {
                LOCAL.warn(|| format!("{at}: {what}"));
                count(&fe.no_server);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no connection slot",
                    *b"RC",
                )
            }
            SendError::Connect(_) => {
                warn!("{at}: {what}");
                count(&server.stats.connect_errors);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server unavailable",
                    *b"SC",
                )
            }
            SendError::Exchange(ExchangeError::ClientBody(_)) => {
                // A malformed body, or the client went away: its fault.
                debug!("{at}: {what}");
                count(&fe.client_errors);
                (StatusCode::BAD_REQUEST, "bad request body", *b"CD")
            }
            SendError::Exchange(ExchangeError::ClientTimeout(_)) => {
                debug!("{at}: {what}");
                count(&fe.client_timeouts);
                (StatusCode::REQUEST_TIMEOUT, "request body timeout", *b"cD")
            }
            SendError::Exchange(ExchangeError::ServerTimeout(_)) => {
                warn!("{at}: {what}");
                count(&server.stats.timeouts);
                (StatusCode::GATEWAY_TIMEOUT, "server timeout", *b"sH")
            }
            // A connection that failed after it was made is a 502.
            SendError::Exchange(_) => {
                warn!("{at}: {what}");
                count(&server.stats.response_errors);
                (StatusCode::BAD_GATEWAY, "server connection failed", *b"SH")
            }
        })
    }

    /// The server's response on its way to the client. After a 101, the two
    /// connections are spliced in a task of their own; otherwise the body
    /// streams, without hop-by-hop fields, and the request counts as in
    /// flight until it ends (the body hands its server connection back to
    /// the pool at its end).
    fn finish(
        &self,
        mut resp: Response<UpBody>,
        client_upgrade: Option<OnUpgrade>,
        guard: Hold,
        tunnel: TunnelTimeouts,
    ) -> Result<Response<ProxyBody>, Refusal> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let (parts, body) = resp.into_parts();
            let Some(client_upgrade) = client_upgrade else {
                // A 101 the client did not ask for: nothing to switch to.
                return Err((
                    StatusCode::BAD_GATEWAY,
                    "unexpected protocol switch",
                    *b"PH",
                ));
            };
            let Some((server_io, early, slot)) = body.into_upgraded() else {
                return Err((StatusCode::BAD_GATEWAY, "server connection failed", *b"SH"));
            };
            let name = self.spec.name.clone();
            tokio::spawn(async move {
                let _held = (guard, slot);
                match client_upgrade.await {
                    Ok(c) => match splice(TokioIo::new(c), server_io, early, tunnel).await {
                        Ok(Ended::Closed) => {}
                        Ok(Ended::Timeout(phase)) => {
                            debug!("{name}: upgraded connection closed: timeout {phase}")
                        }
                        Err(e) => debug!("{name}: upgraded connection: {e}"),
                    },
                    Err(e) => debug!("{name}: upgrade failed: {e}"),
                }
            });
            return Ok(Response::from_parts(parts, empty()));
        }
        strip_hop_by_hop(resp.headers_mut(), false);
        let (parts, body) = resp.into_parts();
        let body = ProxyBody::Response(Counted::new(body, guard));
        Ok(Response::from_parts(parts, body))
    }
}
