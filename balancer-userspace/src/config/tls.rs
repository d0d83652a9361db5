//! `[frontend.tls]`: TLS termination on an HTTP frontend, with HAProxy's
//! `bind ... ssl` words: `crt` (PEM files holding a certificate chain and
//! its private key, or directories of them; the certificate served is
//! chosen by SNI, the first one loaded being the default), `alpn`,
//! `ssl_min_ver` / `ssl_max_ver`, `ciphers` (TLS 1.2, OpenSSL's names) and
//! `ciphersuites` (TLS 1.3).
//!
//! Only names and paths are checked here (this layer reads no file): the
//! certificates themselves are loaded and checked (readable, key matching,
//! in their validity period) by `http::tls` when the daemon starts, on
//! `check-config` and on each reload, where a bad one is refused and the
//! certificates in use keep serving.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    crt: Option<CrtList>,
    alpn: Option<Vec<String>>,
    ssl_min_ver: Option<String>,
    ssl_max_ver: Option<String>,
    ciphers: Option<String>,
    ciphersuites: Option<String>,
}

/// `crt = "FILE"` or `crt = ["FILE", "DIR/", ...]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CrtList {
    One(String),
    Many(Vec<String>),
}

/// A TLS protocol version rustls implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub const fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }

    /// HAProxy's names (`ssl-min-ver TLSv1.2`).
    pub fn parse(s: &str) -> Result<TlsVersion, String> {
        match s {
            "TLSv1.2" => Ok(TlsVersion::Tls12),
            "TLSv1.3" => Ok(TlsVersion::Tls13),
            "SSLv3" | "TLSv1.0" | "TLSv1.1" => Err(format!(
                "{s:?}: not implemented (rustls speaks TLSv1.2 and TLSv1.3 only; older versions \
                 are obsolete, RFC 8996)"
            )),
            other => Err(format!("{other:?}: want TLSv1.2 or TLSv1.3")),
        }
    }
}

/// The TLS 1.2 suites that can be offered, by OpenSSL's name (HAProxy's
/// `ciphers`) and IANA's (rustls's).
pub const TLS12_SUITES: &[(&str, &str)] = &[
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// The TLS 1.3 suites (`ciphersuites`; OpenSSL and IANA use one name).
pub const TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// The protocols `alpn` may offer.
pub const ALPN_PROTOCOLS: &[&str] = &["h2", "http/1.1"];

/// A frontend's TLS settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Files and directories, in order (relative ones resolved against the
    /// configuration file's directory).
    pub crt: Vec<PathBuf>,
    /// Offered by ALPN, in order of preference.
    pub alpn: Vec<String>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// IANA names of the TLS 1.2 suites allowed; `None`: every one.
    pub tls12_suites: Option<Vec<&'static str>>,
    /// TLS 1.3 suites allowed; `None`: every one.
    pub tls13_suites: Option<Vec<&'static str>>,
}

/// Split an OpenSSL-style list (`A:B:C`) into the known names, each by its
/// IANA name; an unknown one is an error naming it and what is known.
fn suites(list: &str, known: &[(&'static str, &'static str)]) -> Result<Vec<&'static str>, String> {
    let mut out = Vec::new();
    for name in list.split(':').map(str::trim).filter(|n| !n.is_empty()) {
        let Some((_, iana)) = known.iter().find(|(o, i)| *o == name || *i == name) else {
            return Err(format!(
                "{name:?}: not a suite balancer offers (list them one by one, by name; known: {})",
                known.iter().map(|(o, _)| *o).collect::<Vec<_>>().join(", ")
            ));
        };
        if !out.contains(iana) {
            out.push(*iana);
        }
    }
    if out.is_empty() {
        return Err("empty list".into());
    }
    Ok(out)
}

impl Validator<'_> {
    pub(super) fn tls(&self, key: &str, raw: RawTls) -> Result<TlsSettings, ConfigError> {
        let key = format!("{key}.tls");
        let crt = match raw.crt {
            None => return Err(self.err(format!("{key}.crt"), "required: the certificates")),
            Some(CrtList::One(p)) => vec![p],
            Some(CrtList::Many(v)) => v,
        };
        if crt.is_empty() {
            return Err(self.err(
                format!("{key}.crt"),
                "empty: name at least one PEM file or directory",
            ));
        }
        let base = self.path.parent().unwrap_or(Path::new("."));
        let crt = crt
            .iter()
            .map(|p| {
                if p.is_empty() {
                    return Err(self.err(format!("{key}.crt"), "an empty path"));
                }
                Ok(base.join(p))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let alpn = match raw.alpn {
            None => ALPN_PROTOCOLS.iter().map(|s| s.to_string()).collect(),
            Some(v) => {
                if v.is_empty() {
                    return Err(self.err(
                        format!("{key}.alpn"),
                        "empty: leave it out to offer h2 and http/1.1",
                    ));
                }
                for (i, p) in v.iter().enumerate() {
                    if !ALPN_PROTOCOLS.contains(&p.as_str()) {
                        return Err(
                            self.err(format!("{key}.alpn"), format!("{p:?}: want h2 or http/1.1"))
                        );
                    }
                    if v[..i].contains(p) {
                        return Err(self.err(format!("{key}.alpn"), format!("{p:?} twice")));
                    }
                }
                v
            }
        };
        let version = |k: &str, v: &Option<String>, default| match v {
            None => Ok(default),
            Some(s) => TlsVersion::parse(s).map_err(|r| self.err(format!("{key}.{k}"), r)),
        };
        let min_version = version("ssl_min_ver", &raw.ssl_min_ver, TlsVersion::Tls12)?;
        let max_version = version("ssl_max_ver", &raw.ssl_max_ver, TlsVersion::Tls13)?;
        if min_version > max_version {
            return Err(self.err(
                format!("{key}.ssl_min_ver"),
                format!(
                    "{} is above ssl_max_ver {}",
                    min_version.as_str(),
                    max_version.as_str()
                ),
            ));
        }
        let tls12_suites = match &raw.ciphers {
            None => None,
            Some(_) if min_version > TlsVersion::Tls12 => {
                return Err(self.err(
                    format!("{key}.ciphers"),
                    "TLS 1.2 suites, but ssl_min_ver is TLSv1.3: they would never be used",
                ));
            }
            Some(l) => {
                Some(suites(l, TLS12_SUITES).map_err(|r| self.err(format!("{key}.ciphers"), r))?)
            }
        };
        let tls13_suites = match &raw.ciphersuites {
            None => None,
            Some(_) if max_version < TlsVersion::Tls13 => {
                return Err(self.err(
                    format!("{key}.ciphersuites"),
                    "TLS 1.3 suites, but ssl_max_ver is TLSv1.2: they would never be used",
                ));
            }
            Some(l) => {
                let known: Vec<(&str, &str)> = TLS13_SUITES.iter().map(|s| (*s, *s)).collect();
                Some(suites(l, &known).map_err(|r| self.err(format!("{key}.ciphersuites"), r))?)
            }
        };
        Ok(TlsSettings {
            crt,
            alpn,
            min_version,
            max_version,
            tls12_suites,
            tls13_suites,
        })
    }
}

/// `ssl` on a backend: TLS to its servers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServerSsl {
    verify: Option<String>,
    ca_file: Option<String>,
    sni: Option<String>,
}

/// TLS to a backend's servers, validated (HAProxy's `server ... ssl
/// verify required ca-file FILE sni str(NAME)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSsl {
    /// `verify required`: the server's certificate must chain to
    /// `ca_file` (and carry `sni` when it is set); `false` (`verify none`):
    /// any certificate is taken, which an attacker on the path can use.
    pub verify: bool,
    pub ca_file: Option<PathBuf>,
    /// Sent as SNI, and the name the certificate must carry.
    pub sni: Option<String>,
}

impl Validator<'_> {
    pub(super) fn server_ssl(
        &self,
        key: &str,
        raw: &RawServerSsl,
    ) -> Result<ServerSsl, ConfigError> {
        let key = format!("{key}.ssl");
        let verify = match raw.verify.as_deref().unwrap_or("required") {
            "required" => true,
            "none" => false,
            other => {
                return Err(self.err(
                    format!("{key}.verify"),
                    format!("{other:?}: want \"required\" or \"none\""),
                ));
            }
        };
        let base = self.path.parent().unwrap_or(Path::new("."));
        let ca_file = match (&raw.ca_file, verify) {
            (None, true) => {
                return Err(self.err(
                    format!("{key}.ca_file"),
                    "verify = \"required\" (the default) needs the CA that signs the servers' \
                     certificates (or verify = \"none\", which trusts anyone on the path)",
                ));
            }
            (Some(_), false) => {
                return Err(self.err(
                    format!("{key}.ca_file"),
                    "with verify = \"none\" no certificate is checked: it would have no effect",
                ));
            }
            (Some(f), true) => Some(base.join(f)),
            (None, false) => None,
        };
        if let Some(n) = &raw.sni
            && (n.is_empty()
                || n.len() > 253
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        {
            return Err(self.err(format!("{key}.sni"), format!("{n:?}: want a DNS name")));
        }
        Ok(ServerSsl {
            verify,
            ca_file,
            sni: raw.sni.clone(),
        })
    }
}
