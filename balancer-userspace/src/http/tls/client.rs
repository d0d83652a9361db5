//! TLS to a backend's servers (`[backend] ssl`): one rustls client
//! configuration per backend, built when the configuration is loaded (the
//! CA file read then, and again on each reload), shared by every
//! connection to its servers, so that sessions are resumed (rustls keeps
//! the last sessions per server name in memory) and connections pooled
//! like cleartext ones.
//!
//! `verify = "required"`: the server's certificate must chain to
//! `ca_file`; with `sni`, it must also be for that name (sent as SNI). As
//! HAProxy without `verifyhost`/`sni`, a certificate's name is not checked
//! when no `sni` is set (servers are reached by address). `verify =
//! "none"` takes any certificate: the connection is encrypted but not
//! authenticated (anyone on the path can read it); the handshake's own
//! signatures are still checked.

use std::{net::SocketAddr, sync::Arc};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::WebPkiServerVerifier,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

use super::{TlsError, provider};
use crate::config::ServerSsl;

/// A backend's TLS to its servers.
#[derive(Debug)]
pub struct ServerTls {
    settings: ServerSsl,
    config: Arc<ClientConfig>,
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &ServerTls) -> bool {
        self.settings == other.settings && Arc::ptr_eq(&self.config, &other.config)
    }
}

impl ServerTls {
    /// For `backend`'s servers: reads and checks `ca_file`.
    pub fn new(backend: &str, settings: &ServerSsl) -> Result<ServerTls, TlsError> {
        let setup = |reason: String| TlsError::Setup {
            frontend: format!("(backend {backend})"),
            reason,
        };
        let provider = Arc::new(provider());
        let chain = match &settings.ca_file {
            Some(path) if settings.verify => {
                let pem = std::fs::read(path)
                    .map_err(|e| setup(format!("ca_file {}: {e}", path.display())))?;
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| {
                        setup(format!("ca_file {}: not valid PEM: {e}", path.display()))
                    })?;
                    roots.add(c).map_err(|e| {
                        setup(format!(
                            "ca_file {}: a certificate unusable as a CA: {e}",
                            path.display()
                        ))
                    })?;
                }
                if roots.is_empty() {
                    return Err(setup(format!(
                        "ca_file {}: no certificate in it",
                        path.display()
                    )));
                }
                let inner =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| setup(format!("ca_file {}: {e}", path.display())))?;
                Some(inner)
            }
            _ => None,
        };
        let verifier = Arc::new(Verify {
            chain,
            check_name: settings.sni.is_some(),
            provider: provider.clone(),
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            settings: settings.clone(),
            config: Arc::new(config),
        })
    }

    /// A handshake with the server at `addr`: the connector, and the name
    /// it asks for (`sni`, else the address: no SNI is sent).
    pub fn connector(&self, addr: SocketAddr) -> (tokio_rustls::TlsConnector, ServerName<'static>) {
        let name = match &self.settings.sni {
            Some(n) => ServerName::try_from(n.clone())
                .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into())),
            None => ServerName::IpAddress(addr.ip().into()),
        };
        (tokio_rustls::TlsConnector::from(self.config.clone()), name)
    }
}

/// The server's certificate check. `verify required` (`chain`): the
/// chain to the CA, and the name only with `sni`; `verify none`: any
/// certificate. Either way the handshake's signatures are checked, with
/// the certificate's own key.
#[derive(Debug)]
struct Verify {
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError as C, Error as E};
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }))
                if !self.check_name =>
            {
                Ok(ServerCertVerified::assertion())
            }
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
