//! The admin API's messages: what the daemon answers (`admin`) and the CLI
//! reads (`balancer backend|table|stats|status|peers`), one type each, so
//! neither side spells a field by string.
//!
//! The daemon turns each into a `serde_json::Value` before writing it (its
//! keys come out sorted, as they always have); the CLI prints `--json` from
//! the answer as received and its tables from these types.

use std::{borrow::Cow, collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

/// `GET /v1/backends` (a list), and the answer to every server change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    pub id: u32,
    pub backend: String,
    pub server: String,
    /// `IP` (L4) or `IP:PORT` (HTTP).
    pub address: String,
    pub weight: u32,
    /// `up`, `drain`, `down` or `maint`, as set by the configuration or
    /// `backend state`.
    pub admin_state: String,
    /// The effective state: `admin_state`, or `down` when unreachable or
    /// failing its checks, `maint` for an empty DNS slot.
    pub state: String,
    /// `ADDRESS via IFNAME MAC`; `None` when unresolved (see `error`).
    pub next_hop: Option<String>,
    pub error: Option<String>,
    /// `up`/`down` by health check, with the last result; `None` unchecked.
    pub check: Option<String>,
    pub packets: u64,
    pub bytes: u64,
    /// Servers of a `server_template`: the name, record and TTL.
    pub dns: Option<DnsView>,
}

/// A discovered server's DNS side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsView {
    pub fqdn: String,
    /// The record that fills the slot; `None` for an empty slot.
    pub record: Option<String>,
    pub ttl: Option<u32>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub interfaces: Vec<String>,
    pub frontends: Vec<FrontendStatus>,
    /// How many servers (configured, added, DNS slots).
    pub servers: usize,
    pub stick_entries: usize,
    pub stick_capacity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontendStatus {
    pub name: String,
    pub bind: String,
    pub proto: String,
    pub backend: String,
    pub forward: String,
}

/// One stick-table entry: `GET /v1/table` (a list, streamed) and the
/// answer of `PUT /v1/table`. Borrowed names while the daemon writes a
/// listing. Fields in alphabetical order: the listing, the `PUT` answer
/// and `table show --json` all print them in the order a
/// `serde_json::Value` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry<'a> {
    pub client: IpAddr,
    /// The L4 frontend whose table it is; `None`: an HTTP backend's
    /// table, or a VIP id no frontend has any more.
    #[serde(borrow)]
    pub frontend: Option<Cow<'a, str>>,
    /// The HTTP backend whose table (`stick` rules) it is.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Cow<'a, str>>,
    pub idle_ms: u64,
    /// Time left before the entry expires (its table's `expire` less
    /// `idle_ms`, as HAProxy's `show table` says `exp=`); `None` where the
    /// table is not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
    /// `backend/server`; `None`: a server that was removed.
    #[serde(borrow)]
    pub server: Option<Cow<'a, str>>,
    pub server_id: u32,
}

/// `GET /v1/table/count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    pub entries: usize,
}

/// `DELETE /v1/table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub removed: usize,
}

/// Packets and bytes of one class (or all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

/// `GET /v1/stats`. Counter sets are maps by counter name: their names
/// belong to the data plane's `VipStats` and the proxy's `http::stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Packets by class (`balancer_common::stats::Class` names).
    pub classes: BTreeMap<String, Traffic>,
    pub total: Traffic,
    /// Per frontend: the XDP program's counters.
    pub frontends: BTreeMap<String, BTreeMap<String, u64>>,
    pub http: HttpStats,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpStats {
    /// Per HTTP frontend.
    pub frontends: BTreeMap<String, HttpFrontendStats>,
    /// Per `backend/server` of HTTP backends.
    pub servers: BTreeMap<String, HttpServerStats>,
}

/// Responses by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseClasses {
    pub responses_1xx: u64,
    pub responses_2xx: u64,
    pub responses_3xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    pub responses_other: u64,
}

impl ResponseClasses {
    /// (name, count), 1xx to other.
    pub fn rows(&self) -> [(&'static str, u64); 6] {
        [
            ("responses_1xx", self.responses_1xx),
            ("responses_2xx", self.responses_2xx),
            ("responses_3xx", self.responses_3xx),
            ("responses_4xx", self.responses_4xx),
            ("responses_5xx", self.responses_5xx),
            ("responses_other", self.responses_other),
        ]
    }
}

/// One HTTP frontend's counters (the proxy's `http::stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpFrontendStats {
    /// Requests received (each counted once, however many servers it took).
    pub requests: u64,
    /// What the clients were answered, the proxy's own error pages included.
    #[serde(flatten)]
    pub responses: ResponseClasses,
    /// Of requests to a backend with `cookie`: sent by their cookie...
    pub cookie_used: u64,
    /// ... without the cookie...
    pub cookie_absent: u64,
    /// ... with a cookie naming no server that could take them.
    pub cookie_unusable: u64,
    /// Of requests to a backend with `stick match` no cookie sent: sent by
    /// their client's stick entry...
    #[serde(default)]
    pub stick_matched: u64,
    /// ... whose client had no entry...
    #[serde(default)]
    pub stick_absent: u64,
    /// ... whose entry named a server that could not take them.
    #[serde(default)]
    pub stick_unusable: u64,
    /// Answered 503: no server could take them.
    pub no_server: u64,
    /// Sent to another server after their first refused the connection.
    pub redispatched: u64,
    /// Client connections accepted.
    #[serde(default)]
    pub connections: u64,
    /// Client connections closed, or requests answered 408, by a
    /// client-side timeout.
    #[serde(default)]
    pub client_timeouts: u64,
    /// Requests whose body the client broke off or malformed (400).
    #[serde(default)]
    pub client_errors: u64,
    /// Idle client connections closed to make room (the frontend was full).
    #[serde(default)]
    pub evicted: u64,
    /// Answered 503 after `timeout_queue`: the servers were full.
    #[serde(default)]
    pub queue_timeouts: u64,
    /// Access-log lines dropped (their target's buffer was full).
    #[serde(default)]
    pub log_dropped: u64,
    /// A TLS frontend's handshakes and certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStats>,
    /// PROXY protocol headers (shown once one was taken, refused or sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_headers: Option<ProxyHeaderStats>,
}

/// A frontend's PROXY protocol headers (the `balancer_proxy_headers_*`
/// metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyHeaderStats {
    pub accepted_v1: u64,
    pub accepted_v2: u64,
    pub refused_not_allowed: u64,
    pub refused_malformed: u64,
    pub refused_timeout: u64,
    pub sent_v1: u64,
    pub sent_v2: u64,
}

/// A TLS frontend's handshakes (as the `balancer_tls_*` metrics count
/// them) and the certificates it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsStats {
    /// (name, count): `full`, `resumed`, `failed_REASON`..., `TLSv1.2`,
    /// `TLSv1.3`, `alpn_h2`, `alpn_http/1.1`, `alpn_none`.
    pub counts: Vec<(String, u64)>,
    pub certificates: Vec<CertificateInfo>,
}

/// A certificate in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    pub path: String,
    pub names: Vec<String>,
    pub key_type: String,
    /// Expiry, Unix time.
    pub not_after: i64,
}

impl HttpFrontendStats {
    /// (name, count): requests and responses first, then the rest by name.
    pub fn rows(&self) -> Vec<(&'static str, u64)> {
        let mut rows = vec![("requests", self.requests)];
        rows.extend(self.responses.rows());
        rows.extend([
            ("cookie_absent", self.cookie_absent),
            ("cookie_unusable", self.cookie_unusable),
            ("cookie_used", self.cookie_used),
            ("stick_absent", self.stick_absent),
            ("stick_matched", self.stick_matched),
            ("stick_unusable", self.stick_unusable),
            ("no_server", self.no_server),
            ("redispatched", self.redispatched),
            ("connections", self.connections),
            ("client_timeouts", self.client_timeouts),
            ("client_errors", self.client_errors),
            ("evicted", self.evicted),
            ("queue_timeouts", self.queue_timeouts),
            ("log_dropped", self.log_dropped),
        ]);
        if let Some(p) = &self.proxy_headers {
            rows.extend([
                ("proxy_accepted_v1", p.accepted_v1),
                ("proxy_accepted_v2", p.accepted_v2),
                ("proxy_refused_not_allowed", p.refused_not_allowed),
                ("proxy_refused_malformed", p.refused_malformed),
                ("proxy_refused_timeout", p.refused_timeout),
                ("proxy_sent_v1", p.sent_v1),
                ("proxy_sent_v2", p.sent_v2),
            ]);
        }
        rows
    }

    /// A TLS frontend's counters (`tls_NAME COUNT`) and certificates
    /// (their expiry in days from `now`), as `balancer stats` prints them.
    pub fn tls_lines(&self, now: std::time::SystemTime) -> Vec<String> {
        let now = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let Some(t) = &self.tls else {
            return Vec::new();
        };
        let mut out: Vec<String> = t
            .counts
            .iter()
            .map(|(k, v)| format!("{:<24} {v:>6}", format!("tls_{k}")))
            .collect();
        out.extend(t.certificates.iter().map(|c| {
            format!(
                "certificate {} ({}, {}): expires in {} days",
                c.path,
                c.names.join(", "),
                c.key_type,
                (c.not_after - now) / 86_400
            )
        }));
        out
    }
}

/// One server's counters, of an HTTP backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpServerStats {
    /// Requests sent to it.
    pub requests: u64,
    #[serde(flatten)]
    pub responses: ResponseClasses,
    /// Connections refused or timed out (503, or redispatched).
    pub connect_errors: u64,
    /// Connections that failed after the request was sent (502).
    pub response_errors: u64,
    /// No response within `timeout_server` (504).
    pub timeouts: u64,
    /// With `maxconn`: its requests now (HAProxy's `scur`), and those
    /// waiting in its queue (`qcur`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<u32>,
}

/// `GET /v1/peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeersStatus {
    pub section: String,
    pub local: String,
    pub bind: String,
    pub peers: Vec<PeerStatus>,
    pub refused_handshakes: u64,
    pub last_refusal: Option<String>,
    pub bad_frames: u64,
    pub last_bad_frame: Option<String>,
    /// Frames after the handshake whose MAC did not check out (each
    /// closed its link).
    #[serde(default)]
    pub auth_failures: u64,
    #[serde(default)]
    pub last_auth_failure: Option<String>,
    pub engine: EngineStats,
}

/// The engine's own figures (`balancer peers status`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    pub scans: u64,
    /// Ticks where the counters showed no new entry and no scan was due.
    pub scans_skipped: u64,
    /// Entries read by the last scan.
    pub last_scan_entries: u64,
    /// Wall time of the last scan (with sending its changes).
    pub last_scan_us: u64,
    /// CPU time of the engine thread during the last scan.
    pub last_scan_cpu_us: u64,
    pub max_scan_us: u64,
    pub total_scan_us: u64,
    /// Replicated entries the shadow holds.
    pub tracked_entries: u64,
    /// Changes found by scans (new, redispatched, refreshed).
    pub changes_found: u64,
    pub scan_errors: u64,
    /// Peer links dropped because their queue was full.
    pub slow_peers_dropped: u64,
    pub learned: Applied,
}

/// State of this instance's dialed link to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutState {
    Connecting,
    Handshake,
    Resync,
    Up,
    Backoff,
}

impl OutState {
    /// As the API names it.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutState::Connecting => "connecting",
            OutState::Handshake => "handshake",
            OutState::Resync => "resync",
            OutState::Up => "up",
            OutState::Backoff => "backoff",
        }
    }
}

/// What `peers status` shows about one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub name: String,
    pub address: String,
    /// Our link to it (we push our entries over it).
    pub outbound: OutState,
    /// Its authenticated links to us (it pushes its entries over them): 0
    /// or 1 (a newer one replaces the older; both count for a moment).
    pub inbound: u32,
    /// Since the last frame from it or our link coming up; `None`: never.
    pub last_contact_ms_ago: Option<u64>,
    pub entries_sent: u64,
    pub entries_received: u64,
    /// What became of the received entries.
    pub learned: Applied,
    pub resyncs_sent: u64,
    pub resyncs_received: u64,
    pub batches_unacked: u64,
    /// Time from a batch's scan to its acknowledgement, last batch (ms).
    pub lag_ms: f64,
    pub last_error: Option<String>,
}

/// Result of applying entries learned from a peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Written into the stick table (new, or newer than the local entry).
    pub written: u64,
    /// Not written: the local entry is as new or newer, or the entry expired.
    pub stale: u64,
    /// Refused: unknown frontend or server, other backend, wrong family.
    pub rejected: u64,
}
