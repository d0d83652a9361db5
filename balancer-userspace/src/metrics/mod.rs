//! Prometheus metrics: `GET /metrics` on `[metrics] bind` (text format
//! 0.0.4, encoded by the `prometheus-client` crate).
//!
//! Every scrape takes a snapshot of the controller (server states, the
//! data plane's per-CPU counters summed) and encodes it; nothing is
//! accumulated here, so the figures are the kernel's own counters, which
//! live in pinned maps and continue across daemon restarts; the HTTP
//! proxy's counters (`http/stats.rs`) are the daemon's own and start at
//! zero with it. The stick
//! table's entry count needs a walk over the whole table, so a background
//! task counts it every `[metrics] table_count_interval` on the pinned map (without holding
//! the controller) and scrapes report the last count and its time.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `balancer_packets_total`, `balancer_bytes_total` | counter | `class` (ipv4_tcp, ..., malformed) |
//! | `balancer_frontend_packets_total`, `..._bytes_total` | counter | `frontend` |
//! | `balancer_frontend_stick_hits_total` | counter | `frontend` |
//! | `balancer_frontend_stick_misses_total` | counter | `frontend`, `kind` (new_entry, expired, non_syn, insert_capped) |
//! | `balancer_frontend_redispatches_total` | counter | `frontend` |
//! | `balancer_frontend_dropped_total` | counter | `frontend`, `reason` (no_backend, too_big, forward_failed, icmp_mismatched, icmp_no_flow) |
//! | `balancer_frontend_icmp_errors_total`, `..._fragments_total` | counter | `frontend` |
//! | `balancer_server_packets_total`, `..._bytes_total` | counter | `backend`, `server` |
//! | `balancer_server_up` | gauge (0/1) | `backend`, `server` |
//! | `balancer_server_state` | gauge (1 for the current state) | `backend`, `server`, `state` |
//! | `balancer_server_weight` | gauge | `backend`, `server` |
//! | `balancer_server_check_duration_seconds` | gauge (last successful check) | `backend`, `server` |
//! | `balancer_server_check_up` | gauge (last check passed) | `backend`, `server` |
//! | `balancer_http_requests_total`, `balancer_http_no_server_total` (answered 503: no server could take it), `balancer_http_redispatched_total` (sent to another server after a refused connection) | counter | `frontend` (HTTP) |
//! | `balancer_http_connections_total`, `balancer_http_client_timeouts_total` (closed, or answered 408, by a client-side timeout), `balancer_http_client_errors_total` (a request body broken off or malformed: 400), `balancer_http_evicted_total` (idle, closed to make room: frontend full), `balancer_http_queue_timeouts_total` (503 after `timeout_queue`: servers at `maxconn`) | counter | `frontend` (HTTP) |
//! | `balancer_log_dropped_total` (access-log lines dropped: the target's buffer was full) | counter | `frontend` (HTTP, with `log`) |
//! | `balancer_http_responses_total` (the proxy's own error pages included) | counter | `frontend`, `code` = 1xx, 2xx, 3xx, 4xx, 5xx, other |
//! | `balancer_http_persistence_total` (requests to a backend with `cookie`) | counter | `frontend`, `cookie` = used, absent, unusable (names no server that may take it: balanced again) |
//! | `balancer_http_server_requests_total` | counter | `backend`, `server` (HTTP) |
//! | `balancer_http_server_responses_total` | counter | `backend`, `server`, `code` |
//! | `balancer_http_server_errors_total` | counter | `backend`, `server`, `kind` = connect (503 or redispatched), response (502), timeout (504) |
//! | `balancer_http_server_current`, `balancer_http_server_queued` (requests at the server now, and waiting in its queue: servers with `maxconn`) | gauge | `backend`, `server` |
//! | `balancer_tls_handshakes_total` | counter | `frontend` (TLS), `kind` = full, resumed |
//! | `balancer_tls_handshake_failures_total` | counter | `frontend`, `reason` = timeout, closed, plain_http, malformed, incompatible, client_alert, other |
//! | `balancer_tls_versions_total`, `balancer_tls_alpn_total` (completed handshakes) | counter | `frontend`, `version` = TLSv1.2, TLSv1.3 / `protocol` = h2, http/1.1, none |
//! | `balancer_proxy_headers_accepted_total`, `_refused_total`, `_sent_total` | counter | `frontend`, `version` = v1, v2 / `reason` = not_allowed, malformed, timeout |
//! | `balancer_tls_certificate_not_after_seconds` (expiry, Unix time) | gauge | `frontend`, `path`, `names` |
//! | `balancer_stick_table_capacity` | gauge | |
//! | `balancer_stick_table_entries` | gauge (last count) | |
//! | `balancer_stick_table_counted_timestamp_seconds` | gauge | |

use crate::dataplane::PinnedCounters;
use crate::http::stats::{CLASSES, FrontendCounters, ServerStats};
use std::{
    convert::Infallible,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use balancer_common::{
    maps::{VipStats, state_name},
    stats::Class,
};
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use log::{debug, warn};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{TypedMetric, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use tokio::net::TcpListener;

use crate::{
    control::{Controller, Shared},
    stats::Stats,
    util::{ControlAccept, control_http1},
};

mod count;
pub use count::{TableCount, count_loop};

/// Serve `GET /metrics` until the task is dropped. The data plane's
/// counters are read through the maps pinned under `pin_dir`, without the
/// controller's lock (which a scrape holds only to copy names and ids);
/// with no kernel data plane (`None`), they are zero.
pub async fn serve(
    listener: TcpListener,
    shared: Shared,
    count: Arc<TableCount>,
    pin_dir: Option<PathBuf>,
) {
    let counters = match pin_dir.as_deref().map(PinnedCounters::open).transpose() {
        Ok(c) => Ok(c.map(Arc::new)),
        Err(e) => {
            warn!("metrics: the data plane's counters: {e}");
            Err(Arc::new(e.to_string()))
        }
    };
    let mut accept = ControlAccept::new("metrics");
    loop {
        let (stream, slot) = accept.next(&listener).await;
        let (shared, count, counters) = (shared.clone(), count.clone(), counters.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let svc =
                service_fn(move |req| handle(shared.clone(), count.clone(), counters.clone(), req));
            if let Err(e) = control_http1()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!("metrics connection: {e}");
            }
        });
    }
}

async fn handle<B>(
    shared: Shared,
    count: Arc<TableCount>,
    counters: Result<Option<Arc<PinnedCounters>>, Arc<String>>,
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let plan = Plan::take(&*shared.lock().await);
            let snap = match counters {
                // A system call per counter: off the runtime's threads.
                Ok(c) => tokio::task::spawn_blocking(move || plan.read(c.as_deref(), &count))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string())),
                Err(e) => Err(e.to_string()),
            };
            match snap.map(|s| s.encode()) {
                Ok(Ok(text)) => (StatusCode::OK, text),
                Ok(Err(e)) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("encoding: {e}\n"),
                ),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET /metrics\n".to_owned(),
        ),
        _ => (StatusCode::NOT_FOUND, "see /metrics\n".to_owned()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}

/// What a scrape copies from the controller, under its lock: names, ids,
/// states; no map is read.
struct Plan {
    frontends: Vec<(String, u32)>,
    servers: Vec<(ServerSnap, u32)>,
    capacity: u64,
    http_frontends: Vec<(String, Arc<FrontendCounters>)>,
    http_servers: Vec<(String, String, ServerStats)>,
    /// Servers with `maxconn`: (backend, server, requests now, queued).
    http_gauges: Vec<(String, String, u32, u32)>,
}

impl Plan {
    fn take(c: &Controller) -> Plan {
        let frontends = c
            .config
            .frontends
            .iter()
            .zip(&c.frontend_ids)
            .map(|(f, &id)| (f.name.clone(), id))
            .collect();
        let servers = c
            .servers
            .iter()
            .map(|s| {
                let snap = ServerSnap {
                    backend: s.backend.clone(),
                    server: s.name.clone(),
                    state: state_name(s.effective()),
                    weight: s.weight,
                    packets: 0,
                    bytes: 0,
                    check: s
                        .last_check
                        .as_ref()
                        .map(|r| r.as_ref().map(Duration::as_secs_f64).map_err(|_| ())),
                };
                (snap, s.id)
            })
            .collect();
        let http_frontends = c
            .config
            .frontends
            .iter()
            .filter(|f| f.mode == crate::config::Mode::Http)
            .map(|f| (f.name.clone(), c.http_stats.frontend(&f.name)))
            .collect();
        let http_servers = c
            .http_servers()
            .map(|s| (s.backend.clone(), s.name.clone(), c.http_stats.server(s.id)))
            .collect();
        let http_gauges = c
            .http_servers()
            .filter_map(|s| {
                let (cur, queued) = c.http_limits.gauges(s.id)?;
                Some((s.backend.clone(), s.name.clone(), cur, queued))
            })
            .collect();
        Plan {
            frontends,
            servers,
            capacity: u64::from(c.dp.options().stick_size),
            http_frontends,
            http_servers,
            http_gauges,
        }
    }

    /// The snapshot, with the data plane's counters read now.
    fn read(
        self,
        counters: Option<&PinnedCounters>,
        count: &TableCount,
    ) -> Result<Snapshot, String> {
        let e = |e: crate::dataplane::DataplaneError| e.to_string();
        let mut frontends = Vec::new();
        for (name, id) in self.frontends {
            let c = counters.map(|c| c.vip(id)).transpose().map_err(e)?;
            frontends.push((name, c.unwrap_or_default()));
        }
        let mut servers = Vec::new();
        for (mut snap, id) in self.servers {
            let c = counters.map(|c| c.backend(id)).transpose().map_err(e)?;
            let c = c.unwrap_or_default();
            (snap.packets, snap.bytes) = (c.packets, c.bytes);
            servers.push(snap);
        }
        Ok(Snapshot {
            classes: counters
                .map(PinnedCounters::classes)
                .transpose()
                .map_err(e)?
                .unwrap_or_default(),
            frontends,
            servers,
            capacity: self.capacity,
            entries: count.entries.load(Ordering::Relaxed),
            counted_at: count.at.load(Ordering::Relaxed),
            http_frontends: self.http_frontends,
            http_servers: self.http_servers,
            http_gauges: self.http_gauges,
        })
    }
}

#[derive(Debug)]
struct ServerSnap {
    backend: String,
    server: String,
    state: &'static str,
    weight: u32,
    packets: u64,
    bytes: u64,
    /// Last check: Some(Ok(seconds)) passed, Some(Err) failed, None unchecked.
    check: Option<Result<f64, ()>>,
}

/// What one scrape reports.
#[derive(Debug)]
struct Snapshot {
    classes: Stats,
    frontends: Vec<(String, VipStats)>,
    servers: Vec<ServerSnap>,
    capacity: u64,
    entries: u64,
    counted_at: u64,
    /// The HTTP frontends' counters, and the HTTP servers' (backend,
    /// server, counters).
    http_frontends: Vec<(String, Arc<FrontendCounters>)>,
    http_servers: Vec<(String, String, ServerStats)>,
    /// Servers with `maxconn`: (backend, server, requests now, queued).
    http_gauges: Vec<(String, String, u32, u32)>,
}

impl Snapshot {
    fn encode(self) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

/// One metric family: name, help, and (labels, value) samples.
fn family<L, M>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error>
where
    L: prometheus_client::encoding::EncodeLabelSet,
    M: EncodeMetric + TypedMetric,
{
    let mut m = enc.encode_descriptor(name, help, None, M::TYPE)?;
    for (labels, metric) in samples {
        metric.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: f64) -> ConstGauge<f64> {
    ConstGauge::new(v)
}

type Labels = Vec<(&'static str, String)>;

/// A per-frontend counter read from [`VipStats`].
type Field = fn(&VipStats) -> u64;

/// One sample per frontend and `(label value, field)`, labelled
/// `frontend` and `label`.
fn per_frontend_split<'a>(
    frontends: &'a [(String, VipStats)],
    label: &'static str,
    fields: &'a [(&'static str, Field)],
) -> impl Iterator<Item = (Labels, ConstCounter<u64>)> + 'a {
    frontends.iter().flat_map(move |(n, s)| {
        fields.iter().map(move |(v, f)| {
            (
                vec![("frontend", n.clone()), (label, (*v).to_owned())],
                counter(f(s)),
            )
        })
    })
}

impl Snapshot {
    /// Families `prefix` + name (with its help) of the HTTP frontends'
    /// counters `of` gives as (family, label, value, count) (`None`: the
    /// frontend has none), labelled `frontend` and the label.
    fn labelled(
        &self,
        e: &mut DescriptorEncoder<'_>,
        prefix: &str,
        families: &[(&'static str, &str)],
        of: impl Fn(&FrontendCounters) -> Option<Vec<(&'static str, &'static str, &'static str, u64)>>,
    ) -> Result<(), std::fmt::Error> {
        for (name, help) in families {
            let samples = self.http_frontends.iter().flat_map(|(n, s)| {
                of(s)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(f, ..)| f == name)
                    .map(|(_, label, value, count)| {
                        let labels: Labels =
                            vec![("frontend", n.clone()), (label, value.to_owned())];
                        (labels, counter(count))
                    })
                    .collect::<Vec<_>>()
            });
            family(e, &format!("{prefix}{name}"), help, samples)?;
        }
        Ok(())
    }
}

/// A counter of [`FrontendCounters`].
type FeField = fn(&FrontendCounters) -> &AtomicU64;

impl Snapshot {
    /// The HTTP proxy's families.
    fn encode_http(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let fe = |n: &str| -> Labels { vec![("frontend", n.to_owned())] };
        let per_fe = |f: FeField| {
            self.http_frontends
                .iter()
                .map(move |(n, s)| (fe(n), counter(f(s).load(Ordering::Relaxed))))
                .collect::<Vec<_>>()
        };
        family(
            e,
            "balancer_http_requests",
            "HTTP requests received by the frontend",
            per_fe(|s| &s.requests),
        )?;
        family(
            e,
            "balancer_http_responses",
            "HTTP responses sent to the frontend's clients (the proxy's own error pages included), \
             by status class",
            self.http_frontends.iter().flat_map(|(n, s)| {
                CLASSES.iter().zip(s.responses.get()).map(move |(c, v)| {
                    (
                        vec![("frontend", n.clone()), ("code", (*c).to_owned())],
                        counter(v),
                    )
                })
            }),
        )?;
        family(
            e,
            "balancer_http_persistence",
            "Requests to a backend with a persistence cookie: used (sent to the server it names), \
             absent (none), unusable (naming no server that may take the request: balanced again)",
            self.http_frontends.iter().flat_map(|(n, s)| {
                s.cookie_outcomes().map(|(o, c)| {
                    (
                        vec![("frontend", n.clone()), ("cookie", o.to_owned())],
                        counter(c.load(Ordering::Relaxed)),
                    )
                })
            }),
        )?;
        family(
            e,
            "balancer_http_stick",
            "Requests to a backend with `stick match src` that no cookie sent: matched (sent to \
             the server their client's entry names), absent (no live entry), unusable (the entry \
             names a server that may not take the request: balanced again)",
            self.http_frontends.iter().flat_map(|(n, s)| {
                s.stick_outcomes().map(|(o, c)| {
                    (
                        vec![("frontend", n.clone()), ("outcome", o.to_owned())],
                        counter(c.load(Ordering::Relaxed)),
                    )
                })
            }),
        )?;
        family(
            e,
            "balancer_http_no_server",
            "HTTP requests answered 503 because no server could take them",
            per_fe(|s| &s.no_server),
        )?;
        family(
            e,
            "balancer_http_redispatched",
            "HTTP requests sent to another server after the first refused the connection",
            per_fe(|s| &s.redispatched),
        )?;
        family(
            e,
            "balancer_http_connections",
            "HTTP client connections accepted",
            per_fe(|s| &s.connections),
        )?;
        family(
            e,
            "balancer_http_client_timeouts",
            "HTTP client connections closed by a client-side timeout (http-request, \
             http-keep-alive, client)",
            per_fe(|s| &s.client_timeouts),
        )?;
        family(
            e,
            "balancer_http_client_errors",
            "HTTP requests whose body the client broke off or malformed (answered 400)",
            per_fe(|s| &s.client_errors),
        )?;
        family(
            e,
            "balancer_http_evicted",
            "Idle HTTP client connections closed to make room for a new one (frontend full)",
            per_fe(|s| &s.evicted),
        )?;
        family(
            e,
            "balancer_log_dropped",
            "Access-log lines dropped because their target's buffer was full (a slow or blocked target)",
            per_fe(|s| &s.log_dropped),
        )?;
        family(
            e,
            "balancer_http_queue_timeouts",
            "HTTP requests answered 503 after waiting timeout_queue for a server with room (maxconn)",
            per_fe(|s| &s.queue_timeouts),
        )?;
        let tls = [
            (
                "handshakes",
                "TLS handshakes completed by the frontend: full, or resumed (session id or ticket)",
            ),
            (
                "handshake_failures",
                "TLS handshakes that failed, by reason: timeout (timeout_client), closed (by the \
                 client), plain_http (answered 400), malformed (not TLS, or a bad message), \
                 incompatible (no common version, suite or group), client_alert (the client \
                 refused, often the certificate), other",
            ),
            ("versions", "TLS handshakes completed, by protocol version"),
            (
                "alpn",
                "TLS handshakes completed, by the protocol chosen by ALPN (none: the client \
                 offered none, HTTP/1.1 is spoken)",
            ),
        ];
        self.labelled(e, "balancer_tls_", &tls, |s| {
            s.tls
                .enabled
                .load(Ordering::Relaxed)
                .then(|| s.tls.families())
        })?;
        let proxy = crate::http::pp::ProxyCounters::FAMILIES;
        self.labelled(e, "balancer_proxy_headers_", &proxy, |s| {
            Some(s.proxy.families())
        })?;
        family(
            e,
            "balancer_tls_certificate_not_after_seconds",
            "When each certificate a TLS frontend serves expires (Unix time; alert well before)",
            self.http_frontends.iter().flat_map(|(n, s)| {
                let certs = s
                    .tls
                    .certificates
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                certs.into_iter().map(move |c| {
                    (
                        vec![
                            ("frontend", n.clone()),
                            ("path", c.path),
                            ("names", c.names.join(",")),
                        ],
                        gauge(c.not_after as f64),
                    )
                })
            }),
        )?;
        let sv = |b: &str, s: &str| -> Labels {
            vec![("backend", b.to_owned()), ("server", s.to_owned())]
        };
        family(
            e,
            "balancer_http_server_requests",
            "HTTP requests sent to the server",
            self.http_servers
                .iter()
                .map(|(b, n, s)| (sv(b, n), counter(s.requests.load(Ordering::Relaxed)))),
        )?;
        family(
            e,
            "balancer_http_server_responses",
            "HTTP responses from the server, by status class",
            self.http_servers.iter().flat_map(|(b, n, s)| {
                CLASSES.iter().zip(s.responses.get()).map(move |(c, v)| {
                    let mut l = sv(b, n);
                    l.push(("code", (*c).to_owned()));
                    (l, counter(v))
                })
            }),
        )?;
        family(
            e,
            "balancer_http_server_errors",
            "Failed HTTP exchanges with the server: connect (refused or timeout_connect: 503 or \
             redispatched), response (connection failed or response malformed before its head: \
             502), timeout (no response head within timeout_server: 504)",
            self.http_servers.iter().flat_map(|(b, n, s)| {
                s.errors().map(|(k, c)| {
                    let mut l = sv(b, n);
                    l.push(("kind", k.to_owned()));
                    (l, counter(c.load(Ordering::Relaxed)))
                })
            }),
        )?;
        family(
            e,
            "balancer_http_server_current",
            "HTTP requests at the server now (servers with maxconn; HAProxy's scur)",
            self.http_gauges
                .iter()
                .map(|(b, n, cur, _)| (sv(b, n), gauge(f64::from(*cur)))),
        )?;
        family(
            e,
            "balancer_http_server_queued",
            "HTTP requests waiting in the server's queue now (servers with maxconn; HAProxy's qcur)",
            self.http_gauges
                .iter()
                .map(|(b, n, _, q)| (sv(b, n), gauge(f64::from(*q)))),
        )?;
        Ok(())
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &mut enc;
        let class = |c: Class| -> Labels { vec![("class", c.name().to_owned())] };
        family(
            e,
            "balancer_packets",
            "Packets seen by the XDP program, by class",
            Class::ALL
                .iter()
                .map(|&c| (class(c), counter(self.classes.get(c).packets))),
        )?;
        family(
            e,
            "balancer_bytes",
            "Bytes seen by the XDP program, by class",
            Class::ALL
                .iter()
                .map(|&c| (class(c), counter(self.classes.get(c).bytes))),
        )?;
        let fe = |n: &str| -> Labels { vec![("frontend", n.to_owned())] };
        let per_fe = |f: Field| {
            self.frontends
                .iter()
                .map(move |(n, s)| (fe(n), counter(f(s))))
                .collect::<Vec<_>>()
        };
        family(
            e,
            "balancer_frontend_packets",
            "Packets to the frontend's VIP",
            per_fe(|s| s.packets),
        )?;
        family(
            e,
            "balancer_frontend_bytes",
            "Bytes to the frontend's VIP",
            per_fe(|s| s.bytes),
        )?;
        family(
            e,
            "balancer_frontend_stick_hits",
            "Packets that found a live stick entry",
            per_fe(|s| s.stick_hits),
        )?;
        let kinds: [(&str, Field); 4] = [
            ("new_entry", |s| s.new_sticks),
            ("expired", |s| s.expired),
            ("non_syn", |s| s.non_syn_misses),
            ("insert_capped", |s| s.insert_capped),
        ];
        family(
            e,
            "balancer_frontend_stick_misses",
            "Stick-table misses: new_entry (stored), expired (entry too old), non_syn (TCP without SYN \
             and no entry: affinity broke), insert_capped (not stored: flood guard)",
            per_frontend_split(&self.frontends, "kind", &kinds),
        )?;
        family(
            e,
            "balancer_frontend_redispatches",
            "Clients whose server was down, in maintenance or removed, re-picked",
            per_fe(|s| s.redispatches),
        )?;
        let reasons: [(&str, Field); 5] = [
            ("no_backend", |s| s.no_backend),
            ("too_big", |s| s.too_big),
            ("forward_failed", |s| s.forward_failed),
            ("icmp_mismatched", |s| s.icmp_mismatched),
            ("icmp_no_flow", |s| s.icmp_no_flow),
        ];
        family(
            e,
            "balancer_frontend_dropped",
            "Packets dropped, by reason",
            per_frontend_split(&self.frontends, "reason", &reasons),
        )?;
        family(
            e,
            "balancer_frontend_icmp_errors",
            "ICMP errors to the frontend's VIP about one of its flows (sent to the quoted \
             client's server, or dropped: icmp_mismatched, icmp_no_flow)",
            per_fe(|s| s.icmp_errors),
        )?;
        family(
            e,
            "balancer_frontend_fragments",
            "Non-first fragments forwarded by their client's entry",
            per_fe(|s| s.fragments),
        )?;
        let sv = |s: &ServerSnap| -> Labels {
            vec![("backend", s.backend.clone()), ("server", s.server.clone())]
        };
        family(
            e,
            "balancer_server_packets",
            "Packets forwarded to the server",
            self.servers.iter().map(|s| (sv(s), counter(s.packets))),
        )?;
        family(
            e,
            "balancer_server_bytes",
            "Bytes forwarded to the server (before encapsulation)",
            self.servers.iter().map(|s| (sv(s), counter(s.bytes))),
        )?;
        family(
            e,
            "balancer_server_up",
            "1 when the server takes traffic (up or drain), else 0",
            self.servers.iter().map(|s| {
                let up = s.state == "up" || s.state == "drain";
                (sv(s), gauge(if up { 1.0 } else { 0.0 }))
            }),
        )?;
        family(
            e,
            "balancer_server_state",
            "1 for the server's effective state",
            self.servers.iter().flat_map(|s| {
                ["up", "drain", "down", "maint"].into_iter().map(move |st| {
                    let mut l = sv(s);
                    l.push(("state", st.to_owned()));
                    (l, gauge(if s.state == st { 1.0 } else { 0.0 }))
                })
            }),
        )?;
        family(
            e,
            "balancer_server_weight",
            "The server's weight",
            self.servers
                .iter()
                .map(|s| (sv(s), gauge(f64::from(s.weight)))),
        )?;
        family(
            e,
            "balancer_server_check_duration_seconds",
            "Duration of the server's last successful health check",
            self.servers.iter().filter_map(|s| match s.check {
                Some(Ok(secs)) => Some((sv(s), gauge(secs))),
                _ => None,
            }),
        )?;
        family(
            e,
            "balancer_server_check_up",
            "1 when the server's last health check passed, 0 when it failed",
            self.servers.iter().filter_map(|s| {
                s.check
                    .map(|r| (sv(s), gauge(if r.is_ok() { 1.0 } else { 0.0 })))
            }),
        )?;
        self.encode_http(e)?;
        let none: Labels = Vec::new();
        family(
            e,
            "balancer_stick_table_capacity",
            "Stick-table size (entries; the least recently used is evicted when full)",
            [(none.clone(), gauge(self.capacity as f64))],
        )?;
        family(
            e,
            "balancer_stick_table_entries",
            "Stick-table entries at the last count (every metrics.table_count_interval)",
            [(none.clone(), gauge(self.entries as f64))],
        )?;
        family(
            e,
            "balancer_stick_table_counted_timestamp_seconds",
            "Unix time of the last stick-table count (0: not counted yet)",
            [(none, gauge(self.counted_at as f64))],
        )?;
        Ok(())
    }
}
