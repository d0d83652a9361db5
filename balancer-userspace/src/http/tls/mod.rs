//! TLS termination on an HTTP frontend (`[frontend.tls]`, HAProxy's
//! `bind ... ssl crt`), with rustls.
//!
//! A frontend's [`Terminator`] holds the rustls configuration its
//! handshakes use: the certificates (chosen by SNI, see [`certs`]), the
//! ALPN protocols (`h2` then serves HTTP/2, anything else HTTP/1.1), the
//! protocol versions and suites. A reload loads the certificates anew
//! ([`Terminator::prepare`]: every file read and checked, nothing changed
//! yet) and, once the whole reload is accepted, swaps them in
//! ([`Terminator::commit`]): handshakes from then on use the new ones,
//! connections already open keep theirs, and a certificate that cannot be
//! served leaves the running ones in place. The session cache and the
//! ticket keys outlive reloads, so clients resume across them.
//!
//! The crypto provider is a build choice (cargo features `aws-lc-rs`, the
//! default, and `ring`); see the README's TLS section for the measurement
//! behind the default.

pub mod certs;
pub mod client;

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::SystemTime,
};

use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions},
};

use crate::config::{TlsSettings, TlsVersion};
pub use certs::CertError;

/// Sessions kept for resumption by session id (HAProxy's
/// `tune.ssl.cachesize` default).
const SESSION_CACHE: usize = 20_000;

#[cfg(feature = "aws-lc-rs")]
fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(feature = "aws-lc-rs")]
fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    rustls::crypto::aws_lc_rs::Ticketer::new()
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    rustls::crypto::ring::Ticketer::new()
}

/// The crypto provider this build uses (for the logs and `status`).
pub const PROVIDER: &str = if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};

/// Why a frontend's TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("frontend {frontend}: certificate {source}")]
    Cert {
        frontend: String,
        #[source]
        source: CertError,
    },
    #[error("frontend {frontend}: TLS: {reason}")]
    Setup { frontend: String, reason: String },
}

/// What `status` says of a certificate in use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertSummary {
    pub path: String,
    pub names: Vec<String>,
    pub key_type: String,
    /// Seconds since the epoch.
    pub not_after: i64,
}

/// A configuration loaded and checked, not yet in use.
pub struct Prepared {
    config: Arc<ServerConfig>,
    certs: Vec<CertSummary>,
}

struct Active {
    config: Arc<ServerConfig>,
    certs: Vec<CertSummary>,
}

/// One frontend's TLS: see the module's documentation.
pub struct Terminator {
    frontend: String,
    active: RwLock<Arc<Active>>,
    sessions: Arc<dyn StoresServerSessions>,
    tickets: Arc<dyn ProducesTickets>,
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminator")
            .field("frontend", &self.frontend)
            .finish_non_exhaustive()
    }
}

/// IANA suite names (`config::tls`) to code points.
fn code_point(iana: &str) -> Option<u16> {
    Some(match iana {
        "TLS_AES_128_GCM_SHA256" => 0x1301,
        "TLS_AES_256_GCM_SHA384" => 0x1302,
        "TLS_CHACHA20_POLY1305_SHA256" => 0x1303,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => 0xc02b,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => 0xc02c,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => 0xc02f,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => 0xc030,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => 0xcca8,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => 0xcca9,
        _ => return None,
    })
}

impl Terminator {
    /// Load `settings`' certificates for `frontend`.
    pub fn new(frontend: &str, settings: &TlsSettings) -> Result<Terminator, TlsError> {
        let tickets = ticketer().map_err(|e| TlsError::Setup {
            frontend: frontend.to_owned(),
            reason: format!("no ticket keys: {e}"),
        })?;
        let sessions: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(SESSION_CACHE);
        let p = build(frontend, settings, &sessions, &tickets)?;
        Ok(Terminator {
            frontend: frontend.to_owned(),
            active: RwLock::new(Arc::new(Active {
                config: p.config,
                certs: p.certs,
            })),
            sessions,
            tickets,
        })
    }

    /// Load and check `settings` (see the module's documentation).
    pub fn prepare(&self, settings: &TlsSettings) -> Result<Prepared, TlsError> {
        build(&self.frontend, settings, &self.sessions, &self.tickets)
    }

    /// Serve new handshakes with `p`; `counters` learn its certificates.
    pub fn commit_counted(&self, p: Prepared, counters: &TlsCounters) {
        *counters
            .certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = p.certs.clone();
        self.commit(p);
    }

    /// Serve new handshakes with `p`.
    pub fn commit(&self, p: Prepared) {
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Active {
            config: p.config,
            certs: p.certs,
        });
    }

    /// The configuration new handshakes use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .config
            .clone()
    }

    /// The certificates in use.
    pub fn certificates(&self) -> Vec<CertSummary> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .certs
            .clone()
    }
}

/// A rustls configuration for `settings`, sharing `sessions` and `tickets`.
fn build(
    frontend: &str,
    settings: &TlsSettings,
    sessions: &Arc<dyn StoresServerSessions>,
    tickets: &Arc<dyn ProducesTickets>,
) -> Result<Prepared, TlsError> {
    let mut p = provider();
    let allowed = |list: &Option<Vec<&str>>, code: u16| {
        list.as_ref()
            .is_none_or(|l| l.iter().any(|n| code_point(n) == Some(code)))
    };
    p.cipher_suites.retain(|s| {
        let code = u16::from(s.suite());
        if s.tls13().is_some() {
            allowed(&settings.tls13_suites, code)
        } else {
            allowed(&settings.tls12_suites, code)
        }
    });
    let certs =
        certs::load_all(&settings.crt, &p, SystemTime::now()).map_err(|source| TlsError::Cert {
            frontend: frontend.to_owned(),
            source,
        })?;
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if settings.min_version <= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if settings.max_version >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    let mut config = ServerConfig::builder_with_provider(Arc::new(p))
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::Setup {
            frontend: frontend.to_owned(),
            reason: format!("versions and suites: {e}"),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certs::Resolver::new(&certs)));
    config.alpn_protocols = settings
        .alpn
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
    config.session_storage = sessions.clone();
    config.ticketer = tickets.clone();
    // The server's order of suites, not the client's (AES-GCM first where
    // the CPU has AES instructions), as HAProxy's `prefer-client-ciphers`
    // unset.
    config.ignore_client_order = true;
    let certs = certs
        .iter()
        .map(|c| CertSummary {
            path: c.path.display().to_string(),
            names: c.names.clone(),
            key_type: c.key_type.clone(),
            not_after: c.not_after,
        })
        .collect();
    Ok(Prepared {
        config: Arc::new(config),
        certs,
    })
}

/// Why a handshake failed (the label of its counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not complete within `timeout client`.
    Timeout,
    /// The client closed (or reset) before it was complete.
    Closed,
    /// The client spoke plain HTTP to the TLS port (answered 400).
    PlainHttp,
    /// Bytes that are not TLS, or a malformed TLS message.
    Malformed,
    /// Nothing in common: versions, suites, key exchange, ALPN.
    Incompatible,
    /// The client refused the handshake with an alert (most often: it
    /// does not trust the certificate).
    ClientAlert,
    Other,
}

impl Failure {
    pub const ALL: [Failure; 7] = [
        Failure::Timeout,
        Failure::Closed,
        Failure::PlainHttp,
        Failure::Malformed,
        Failure::Incompatible,
        Failure::ClientAlert,
        Failure::Other,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Closed => "closed",
            Failure::PlainHttp => "plain_http",
            Failure::Malformed => "malformed",
            Failure::Incompatible => "incompatible",
            Failure::ClientAlert => "client_alert",
            Failure::Other => "other",
        }
    }

    /// What a failed `accept` said.
    pub fn of(e: &std::io::Error) -> Failure {
        use rustls::Error as E;
        if let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) {
            return match r {
                E::InvalidMessage(_) | E::InappropriateMessage { .. } => Failure::Malformed,
                E::InappropriateHandshakeMessage { .. } | E::DecryptError => Failure::Malformed,
                E::PeerIncompatible(_) | E::NoApplicationProtocol => Failure::Incompatible,
                E::AlertReceived(_) => Failure::ClientAlert,
                E::PeerMisbehaved(_) => Failure::Malformed,
                _ => Failure::Other,
            };
        }
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::NotConnected => Failure::Closed,
            std::io::ErrorKind::InvalidData => Failure::Malformed,
            _ => Failure::Other,
        }
    }
}

/// A frontend's handshake counters.
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// The frontend terminates TLS (else the counters are not shown).
    pub enabled: std::sync::atomic::AtomicBool,
    pub full: AtomicU64,
    pub resumed: AtomicU64,
    failures: [AtomicU64; Failure::ALL.len()],
    pub tls12: AtomicU64,
    pub tls13: AtomicU64,
    pub alpn_h2: AtomicU64,
    pub alpn_http11: AtomicU64,
    pub alpn_none: AtomicU64,
    /// The certificates in use (see [`Terminator::certificates`]), for
    /// `/metrics`.
    pub certificates: std::sync::Mutex<Vec<CertSummary>>,
}

impl TlsCounters {
    pub fn failed(&self, f: Failure) {
        self.failures[f as usize].fetch_add(1, Relaxed);
    }

    /// (reason, count) of every failure reason.
    pub fn failures(&self) -> [(&'static str, u64); Failure::ALL.len()] {
        std::array::from_fn(|i| (Failure::ALL[i].as_str(), self.failures[i].load(Relaxed)))
    }

    /// Every counter as (metric family, label, value, count): the
    /// `balancer_tls_*` families of `/metrics`.
    pub fn families(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let l = |c: &AtomicU64| c.load(Relaxed);
        let mut out = vec![
            ("handshakes", "kind", "full", l(&self.full)),
            ("handshakes", "kind", "resumed", l(&self.resumed)),
        ];
        for (reason, n) in self.failures() {
            out.push(("handshake_failures", "reason", reason, n));
        }
        out.extend([
            ("versions", "version", "TLSv1.2", l(&self.tls12)),
            ("versions", "version", "TLSv1.3", l(&self.tls13)),
            ("alpn", "protocol", "h2", l(&self.alpn_h2)),
            ("alpn", "protocol", "http/1.1", l(&self.alpn_http11)),
            ("alpn", "protocol", "none", l(&self.alpn_none)),
        ]);
        out
    }

    /// As the admin API shows them (`None` without TLS).
    pub fn view(&self) -> Option<crate::api::TlsStats> {
        if !self.enabled.load(Relaxed) {
            return None;
        }
        let counts = self
            .families()
            .into_iter()
            .map(|(family, _, value, n)| {
                let name = match family {
                    "handshakes" => value.to_owned(),
                    "handshake_failures" => format!("failed_{value}"),
                    "alpn" => format!("alpn_{value}"),
                    _ => value.to_owned(),
                };
                (name, n)
            })
            .collect();
        let certificates = self
            .certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| crate::api::CertificateInfo {
                path: c.path.clone(),
                names: c.names.clone(),
                key_type: c.key_type.clone(),
                not_after: c.not_after,
            })
            .collect();
        Some(crate::api::TlsStats {
            counts,
            certificates,
        })
    }

    /// A completed handshake.
    pub fn completed(&self, c: &rustls::ServerConnection) {
        let resumed = c.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        (if resumed { &self.resumed } else { &self.full }).fetch_add(1, Relaxed);
        match c.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => &self.tls13,
            _ => &self.tls12,
        }
        .fetch_add(1, Relaxed);
        match c.alpn_protocol() {
            Some(b"h2") => &self.alpn_h2,
            Some(_) => &self.alpn_http11,
            None => &self.alpn_none,
        }
        .fetch_add(1, Relaxed);
    }
}
