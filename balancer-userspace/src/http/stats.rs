//! Counters of the HTTP proxy, which `GET /metrics` reports (see
//! `metrics.rs`): per frontend, what clients asked and were answered and
//! what their persistence cookies did; per server, what it was sent and
//! how it answered or failed, as HAProxy's `show stat` has them (`req_tot`,
//! `hrsp_1xx`..`hrsp_other`, `econ`, `eresp`, `wretr`...).
//!
//! The proxy's worker threads add to them with relaxed atomic increments
//! (a handful per request); nothing else is kept per request. A server's
//! counters are found by its controller id, which stays the same across
//! reloads and DNS changes, so they live as long as the daemon.

use crate::api;
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// The status classes counted, in the order of [`Responses::get`].
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Responses by status class.
#[derive(Debug, Default)]
pub struct Responses([AtomicU64; 6]);

impl Responses {
    pub fn count(&self, status: u16) {
        let class = match status / 100 {
            c @ 1..=5 => usize::from(c) - 1,
            _ => 5,
        };
        self.0[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts in the order of [`CLASSES`].
    pub fn get(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

impl Responses {
    /// As the admin API shows them.
    pub fn view(&self) -> api::ResponseClasses {
        let [
            responses_1xx,
            responses_2xx,
            responses_3xx,
            responses_4xx,
            responses_5xx,
            responses_other,
        ] = self.get();
        api::ResponseClasses {
            responses_1xx,
            responses_2xx,
            responses_3xx,
            responses_4xx,
            responses_5xx,
            responses_other,
        }
    }
}

/// A counter's value now.
fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// One HTTP frontend's counters.
#[derive(Debug, Default)]
pub struct FrontendCounters {
    /// Requests received (each counted once, however many servers it took).
    pub requests: AtomicU64,
    /// What the clients were answered, the proxy's own error pages included.
    pub responses: Responses,
    /// Requests answered 503 because no server could take them.
    pub no_server: AtomicU64,
    /// Requests sent to another server after their first one refused the
    /// connection (HAProxy's redispatch on connection failure).
    pub redispatched: AtomicU64,
    /// Of requests to a backend with `cookie`: those its cookie sent to its
    /// server.
    pub cookie_used: AtomicU64,
    /// ... those without the persistence cookie.
    pub cookie_absent: AtomicU64,
    /// ... those whose cookie named no server that could take them (none
    /// of that value, or one down, in maintenance, removed): balanced again.
    pub cookie_unusable: AtomicU64,
    /// Of requests to a backend with `stick match` that no cookie sent:
    /// those their client's stick entry sent to its server.
    pub stick_matched: AtomicU64,
    /// ... those whose client has no (live) entry.
    pub stick_absent: AtomicU64,
    /// ... those whose entry names a server that may not take them (down,
    /// in maintenance, removed): balanced again.
    pub stick_unusable: AtomicU64,
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Client connections closed by a client-side timeout
    /// (`timeout_http_request`, `timeout_http_keep_alive`, `timeout_client`).
    pub client_timeouts: AtomicU64,
    /// Requests whose body the client broke off or malformed (answered
    /// 400; no server is blamed).
    pub client_errors: AtomicU64,
    /// Idle client connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// Requests answered 503 after `timeout_queue` (servers full).
    pub queue_timeouts: AtomicU64,
    /// TLS handshakes (frontends with `tls`).
    pub tls: super::tls::TlsCounters,
    /// PROXY protocol headers taken, refused and sent.
    pub proxy: super::pp::ProxyCounters,
    /// Access-log lines dropped: their target's buffer was full.
    pub log_dropped: AtomicU64,
}

impl FrontendCounters {
    /// The persistence outcomes: (name, counter).
    pub fn cookie_outcomes(&self) -> [(&'static str, &AtomicU64); 3] {
        [
            ("used", &self.cookie_used),
            ("absent", &self.cookie_absent),
            ("unusable", &self.cookie_unusable),
        ]
    }

    /// The stick-table outcomes: (name, counter).
    pub fn stick_outcomes(&self) -> [(&'static str, &AtomicU64); 3] {
        [
            ("matched", &self.stick_matched),
            ("absent", &self.stick_absent),
            ("unusable", &self.stick_unusable),
        ]
    }

    /// As the admin API shows them (`/v1/stats`).
    pub fn view(&self) -> api::HttpFrontendStats {
        api::HttpFrontendStats {
            requests: load(&self.requests),
            responses: self.responses.view(),
            cookie_used: load(&self.cookie_used),
            cookie_absent: load(&self.cookie_absent),
            cookie_unusable: load(&self.cookie_unusable),
            stick_matched: load(&self.stick_matched),
            stick_absent: load(&self.stick_absent),
            stick_unusable: load(&self.stick_unusable),
            no_server: load(&self.no_server),
            redispatched: load(&self.redispatched),
            connections: load(&self.connections),
            client_timeouts: load(&self.client_timeouts),
            client_errors: load(&self.client_errors),
            evicted: load(&self.evicted),
            queue_timeouts: load(&self.queue_timeouts),
            log_dropped: load(&self.log_dropped),
            tls: self.tls.view(),
            proxy_headers: self.proxy.view(),
        }
    }
}

/// One server's counters.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Requests sent to it (a connection was made or reused).
    pub requests: AtomicU64,
    /// Its responses, by status class.
    pub responses: Responses,
    /// Connections it refused or that timed out (`timeout_connect`).
    pub connect_errors: AtomicU64,
    /// Connections that failed after the request was sent: reset, closed
    /// early, malformed response (answered 502).
    pub response_errors: AtomicU64,
    /// No response head within `timeout_server` (answered 504).
    pub timeouts: AtomicU64,
}

impl ServerCounters {
    /// The failed exchanges by kind: (name, counter).
    pub fn errors(&self) -> [(&'static str, &AtomicU64); 3] {
        [
            ("connect", &self.connect_errors),
            ("response", &self.response_errors),
            ("timeout", &self.timeouts),
        ]
    }

    /// As the admin API shows them (`/v1/stats`).
    pub fn view(&self) -> api::HttpServerStats {
        api::HttpServerStats {
            requests: load(&self.requests),
            responses: self.responses.view(),
            connect_errors: load(&self.connect_errors),
            response_errors: load(&self.response_errors),
            timeouts: load(&self.timeouts),
            current: None,
            queued: None,
        }
    }
}

/// A server's counters, as [`super::proxy::HttpServerView`] carries them:
/// equal when they are the same counters.
#[derive(Debug, Clone, Default)]
pub struct ServerStats(pub Arc<ServerCounters>);

impl PartialEq for ServerStats {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ServerStats {}

impl std::ops::Deref for ServerStats {
    type Target = ServerCounters;
    fn deref(&self) -> &ServerCounters {
        &self.0
    }
}

/// Every frontend's and server's counters, by name and by id.
#[derive(Debug, Default)]
pub struct HttpStats {
    frontends: Mutex<HashMap<String, Arc<FrontendCounters>>>,
    servers: Mutex<HashMap<u32, ServerStats>>,
}

impl HttpStats {
    /// The counters of frontend `name` (made on first use).
    pub fn frontend(&self, name: &str) -> Arc<FrontendCounters> {
        let mut f = self.frontends.lock().unwrap_or_else(|e| e.into_inner());
        f.entry(name.to_owned()).or_default().clone()
    }

    /// The counters of the server with controller id `id` (made on first
    /// use).
    pub fn server(&self, id: u32) -> ServerStats {
        let mut s = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        s.entry(id).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_their_class() {
        let r = Responses::default();
        for s in [101, 200, 204, 304, 404, 499, 500, 503, 0, 99, 600, 999] {
            r.count(s);
        }
        assert_eq!(r.get(), [1, 2, 1, 2, 2, 4]);
    }

    #[test]
    fn counters_are_shared_by_name_and_id() {
        let s = HttpStats::default();
        s.frontend("web").requests.fetch_add(2, Ordering::Relaxed);
        assert_eq!(s.frontend("web").requests.load(Ordering::Relaxed), 2);
        assert_eq!(s.frontend("other").requests.load(Ordering::Relaxed), 0);
        assert_eq!(s.server(7), s.server(7));
        assert_ne!(s.server(7), s.server(8));
    }
}
