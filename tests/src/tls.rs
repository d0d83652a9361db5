//! Certificates for the TLS tests, made with the `openssl` command line
//! (as an operator would make them): a test CA, and server certificates
//! it signs, each written as HAProxy's `crt` wants it (one PEM file: the
//! certificate, then the private key); and the clients the TLS tests use
//! (curl, `openssl s_client`).

use std::{
    io,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Arc,
};

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

/// A server key's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    EcdsaP256,
    Rsa2048,
}

/// A test CA in `dir` (`ca.crt`, `ca.key`); the directory is removed
/// when the `Pki` is dropped.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
}

fn run(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out)
}

fn genkey(path: &Path, key: Key) -> io::Result<()> {
    let mut c = Command::new("openssl");
    c.arg("genpkey");
    match key {
        Key::EcdsaP256 => c.args(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        Key::Rsa2048 => c.args(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
    };
    run(c.arg("-out").arg(path)).map(drop)
}

impl Pki {
    pub fn new(dir: &Path) -> io::Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let (ca, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        genkey(&key, Key::EcdsaP256)?;
        run(Command::new("openssl")
            .args(["req", "-x509", "-new", "-key"])
            .arg(&key)
            .args(["-subj", "/CN=balancer test CA", "-days", "30", "-out"])
            .arg(&ca))?;
        Ok(Pki {
            dir: dir.to_owned(),
            ca,
        })
    }

    /// A certificate for `names` (the first is the subject's CN, all are
    /// subjectAltNames), valid for `days` from now (-1: expired
    /// yesterday), signed by the CA, written with its key to `DIR/file`.
    pub fn server(&self, file: &str, names: &[&str], key: Key, days: i32) -> io::Result<PathBuf> {
        let base = self.dir.join(format!("{file}.parts"));
        std::fs::create_dir_all(&base)?;
        let (k, csr, crt, ext) = (
            base.join("key"),
            base.join("csr"),
            base.join("crt"),
            base.join("ext"),
        );
        genkey(&k, key)?;
        run(Command::new("openssl")
            .args(["req", "-new", "-key"])
            .arg(&k)
            .args(["-subj", &format!("/CN={}", names[0]), "-out"])
            .arg(&csr))?;
        let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        std::fs::write(&ext, format!("subjectAltName={}\n", san.join(",")))?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&self.ca)
            .arg("-CAkey")
            .arg(self.dir.join("ca.key"))
            .args(["-CAcreateserial", "-days", &days.to_string(), "-extfile"])
            .arg(&ext)
            .arg("-out")
            .arg(&crt))?;
        let pem = self.dir.join(file);
        let mut text = std::fs::read(&crt)?;
        text.extend(std::fs::read(&k)?);
        std::fs::write(&pem, text)?;
        Ok(pem)
    }
}

/// The CA, its certificates and keys are removed with it.
impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The SHA-256 fingerprint of the first certificate in a PEM file.
pub fn fingerprint(pem: &Path) -> io::Result<String> {
    let out = run(Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The SHA-256 fingerprint of the certificate `to` serves for `name`
/// (SNI), as `openssl s_client` receives it.
pub fn served_fingerprint(to: SocketAddr, name: &str) -> io::Result<String> {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &to.to_string(), "-servername", name])
        .stdin(std::process::Stdio::null())
        .output()?;
    let dir = std::env::temp_dir().join(format!("blb-{}-served", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let f = dir.join(format!("{name}-{}.pem", to.port()));
    std::fs::write(&f, &out.stdout)?;
    let fp = fingerprint(&f);
    let _ = std::fs::remove_dir_all(&dir);
    fp
}

/// What curl saw of one HTTPS request.
#[derive(Debug)]
pub struct Curl {
    pub status: u16,
    /// `1.1` or `2`.
    pub http_version: String,
    /// The certificate's subject, as curl -v prints it (`CN=a.test`).
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub seconds: f64,
}

/// `curl` to `https://NAME:PORT/path`, NAME resolving to `to`, trusting
/// `ca`; `args` adds options (`--http2`, `--http1.1`, `-H ...`).
pub fn curl(to: SocketAddr, name: &str, path: &str, ca: &Path, args: &[&str]) -> io::Result<Curl> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "--cacert",
        ])
        .arg(ca)
        .args([
            "--resolve",
            &format!("{name}:{}:{}", to.port(), to.ip()),
            "-w",
            "%{http_code} %{http_version} %{time_total}\n",
        ])
        .args(args)
        .arg(format!("https://{name}:{}{path}", to.port()))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(io::Error::other(format!("curl failed: {stderr}")));
    }
    let mut w = stdout.split_whitespace();
    let status = w.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let http_version = w.next().unwrap_or("").to_owned();
    let seconds = w.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    let subject = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("*  subject: "))
        .unwrap_or("")
        .to_owned();
    let headers = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("< "))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Curl {
        status,
        http_version,
        subject,
        headers,
        seconds,
    })
}

/// What a test client needs to speak TLS: trust in the test CA, the name
/// to ask for (SNI, and checked in the certificate), HTTP/1.1 by ALPN.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl ClientTls {
    pub fn new(ca: &Path, name: &str) -> io::Result<ClientTls> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).map_err(io::Error::other)? {
            roots
                .add(c.map_err(io::Error::other)?)
                .map_err(io::Error::other)?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ClientTls {
            config: Arc::new(config),
            name: ServerName::try_from(name.to_owned()).map_err(io::Error::other)?,
        })
    }

    /// TLS over `s`, the handshake done.
    pub fn connect(
        &self,
        mut s: TcpStream,
    ) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        let mut c = rustls::ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(io::Error::other)?;
        while c.is_handshaking() {
            c.complete_io(&mut s)?;
        }
        Ok(rustls::StreamOwned::new(c, s))
    }
}

/// A rustls server configuration with the certificate and key of `pem`
/// (a test backend speaking TLS).
pub fn server_config(pem: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::PrivateKeyDer;
    let text = std::fs::read(pem)?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(io::Error::other)?;
    let key = PrivateKeyDer::from_pem_slice(&text).map_err(io::Error::other)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(io::Error::other)?;
    Ok(Arc::new(config))
}

/// The server side of a TLS handshake on `s`: the stream, and whether the
/// session was resumed.
pub fn accept(
    config: Arc<rustls::ServerConfig>,
    mut s: TcpStream,
) -> io::Result<(
    rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    bool,
)> {
    let mut c = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    while c.is_handshaking() {
        c.complete_io(&mut s)?;
    }
    let resumed = c.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    Ok((rustls::StreamOwned::new(c, s), resumed))
}
