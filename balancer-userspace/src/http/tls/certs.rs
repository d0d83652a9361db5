//! A frontend's certificates: read from PEM files (HAProxy's `crt`: the
//! chain and the private key in one file, or the key beside it in
//! `FILE.key`) and directories of them, checked (the key matches the
//! certificate, which is within its validity period), and chosen per
//! handshake by the name the client asks for (SNI), as HAProxy does: an
//! exact name first, then a wildcard (`*.example.com` matches one label),
//! else the default, the first certificate loaded. Where one name has
//! certificates of several key types (ECDSA and RSA), the first one whose
//! key can sign with a scheme the client offers is served.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use rustls::{
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

/// A certificate that cannot be served, and why.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("{path}: holds no certificate file (want PEM files with a chain and a key)")]
    EmptyDir { path: PathBuf },
}

fn bad(path: &Path, reason: impl Into<String>) -> CertError {
    CertError::Bad {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// One certificate, as loaded.
#[derive(Debug)]
pub struct Cert {
    pub path: PathBuf,
    /// The DNS names it is for (subjectAltName, else the subject's CN),
    /// lowercase.
    pub names: Vec<String>,
    /// End of its validity period (seconds since the epoch).
    pub not_after: i64,
    /// `ECDSA`, `RSA`, `ED25519`...
    pub key_type: String,
    pub key: Arc<CertifiedKey>,
}

/// Suffixes HAProxy reads as companions of a certificate file, never as
/// certificates when a directory is loaded.
const COMPANIONS: &[&str] = &[".key", ".ocsp", ".issuer", ".sctl"];

/// Every certificate of `crt` (files and directories, in order; a
/// directory's files in name order), checked at `now`.
pub fn load_all(
    crt: &[PathBuf],
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Vec<Cert>, CertError> {
    let mut out = Vec::new();
    for p in crt {
        let meta = std::fs::metadata(p).map_err(|source| CertError::Read {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| CertError::Read {
                    path: p.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    !name.starts_with('.')
                        && !COMPANIONS.iter().any(|s| name.ends_with(s))
                        && f.is_file()
                })
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(CertError::EmptyDir { path: p.clone() });
            }
            for f in files {
                out.push(load_one(&f, provider, now)?);
            }
        } else {
            out.push(load_one(p, provider, now)?);
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

/// One PEM file: its chain, its key (in it, or in `FILE.key`), checked.
pub fn load_one(
    path: &Path,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Cert, CertError> {
    let pem = read(path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(path, format!("not a valid PEM file: {e}")))?;
    if chain.is_empty() {
        return Err(bad(
            path,
            "no certificate in it (want PEM: BEGIN CERTIFICATE)",
        ));
    }
    let key = match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            let mut side = path.as_os_str().to_owned();
            side.push(".key");
            let side = PathBuf::from(side);
            if !side.exists() {
                return Err(bad(
                    path,
                    format!(
                        "no private key in it, nor a {} beside it",
                        side.file_name().and_then(|n| n.to_str()).unwrap_or(".key")
                    ),
                ));
            }
            PrivateKeyDer::from_pem_slice(&read(&side)?)
                .map_err(|e| bad(&side, format!("no usable private key: {e}")))?
        }
        Err(e) => return Err(bad(path, format!("no usable private key: {e}"))),
    };
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(path, format!("private key not usable: {e}")))?;
    let key_type = format!("{:?}", signing.algorithm());
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        bad(
            path,
            "the private key does not belong to the first certificate (the server's \
             certificate must come first, then its chain)",
        )
    })?;
    let (names, validity) = inspect(path, &certified.cert[0])?;
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let not_after = validity.not_after.timestamp();
    if now > not_after {
        return Err(bad(path, format!("expired on {}", validity.not_after)));
    }
    if now < validity.not_before.timestamp() {
        return Err(bad(
            path,
            format!("not valid before {}", validity.not_before),
        ));
    }
    Ok(Cert {
        path: path.to_owned(),
        names,
        not_after,
        key_type,
        key: Arc::new(certified),
    })
}

/// The names and validity period of a certificate.
fn inspect(
    path: &Path,
    der: &CertificateDer<'_>,
) -> Result<(Vec<String>, x509_parser::certificate::Validity), CertError> {
    use x509_parser::prelude::*;
    let (_, x) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| bad(path, format!("the certificate cannot be parsed: {e}")))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in x.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    Ok((names, x.validity().clone()))
}

/// Certificates by the names clients ask for.
#[derive(Debug)]
pub struct Resolver {
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
    default: Vec<Arc<CertifiedKey>>,
}

impl Resolver {
    /// From `certs` (not empty); the first is the default, with the other
    /// certificates of its names.
    pub fn new(certs: &[Cert]) -> Resolver {
        let mut exact: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        for c in certs {
            for n in &c.names {
                let (map, name) = match n.strip_prefix("*.") {
                    Some(rest) => (&mut wildcard, rest),
                    None => (&mut exact, n.as_str()),
                };
                let v = map.entry(name.to_owned()).or_default();
                if !v.iter().any(|k| Arc::ptr_eq(k, &c.key)) {
                    v.push(c.key.clone());
                }
            }
        }
        let mut default = vec![certs[0].key.clone()];
        // The default's other key types: certificates for the same names.
        for c in &certs[1..] {
            if !c.names.is_empty() && c.names == certs[0].names {
                default.push(c.key.clone());
            }
        }
        Resolver {
            exact,
            wildcard,
            default,
        }
    }

    fn pick(
        candidates: &[Arc<CertifiedKey>],
        hello: &ClientHello<'_>,
    ) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        candidates
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or(candidates.first())
            .cloned()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            let name = name.to_ascii_lowercase();
            if let Some(v) = self.exact.get(&name) {
                return Self::pick(v, &hello);
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(v) = self.wildcard.get(parent)
            {
                return Self::pick(v, &hello);
            }
        }
        Self::pick(&self.default, &hello)
    }
}
