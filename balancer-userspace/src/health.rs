//! Health checks: a TCP connect, or an HTTP/1.0 request (GET, or the
//! backend's `check_method`) that must answer a
//! status of the backend's `check_status` (default 2xx or 3xx), each
//! bounded by a timeout; over TLS for a backend with `ssl` (the handshake,
//! then the request). The daemon runs one task per checked
//! server and feeds the results to the controller, which applies HAProxy's
//! `rise`/`fall` rule.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    time::timeout,
};

use crate::config::{CheckKind, SendProxy};

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Passed, in this time.
    Passed(Duration),
    /// Failed: why, in one line.
    Failed(String),
    /// Could not be made for a reason of this host's own (out of
    /// descriptors, memory or local ports): says nothing of the server,
    /// so it changes nothing.
    Unknown(String),
}

/// A check over TLS (a backend with `ssl`, as HAProxy checks such
/// servers): the connector, and the name to ask for.
pub type TlsCheck = (
    tokio_rustls::TlsConnector,
    rustls::pki_types::ServerName<'static>,
);

/// Run one check (over TLS with `tls`: the handshake must succeed, and an
/// HTTP check's request goes over it), opening with a PROXY header
/// (before TLS) with `send_proxy` ([`SendProxy::check_header`]).
pub async fn check(
    kind: &CheckKind,
    addr: SocketAddr,
    limit: Duration,
    tls: Option<&TlsCheck>,
    send_proxy: Option<SendProxy>,
) -> Outcome {
    let start = Instant::now();
    match timeout(limit, run(kind, addr, tls, send_proxy)).await {
        Ok(Ok(())) => Outcome::Passed(start.elapsed()),
        Ok(Err(Local(e))) => Outcome::Unknown(e),
        Ok(Err(Remote(e))) => Outcome::Failed(e),
        Err(_) => Outcome::Failed(format!("no answer within {} ms", limit.as_millis())),
    }
}

/// Whether a socket error is this host's own doing.
fn is_local(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

enum Fault {
    Local(String),
    Remote(String),
}
use Fault::{Local, Remote};

impl From<String> for Fault {
    fn from(s: String) -> Fault {
        Remote(s)
    }
}

async fn run(
    kind: &CheckKind,
    addr: SocketAddr,
    tls: Option<&TlsCheck>,
    send_proxy: Option<SendProxy>,
) -> Result<(), Fault> {
    let mut tcp = TcpStream::connect(addr).await.map_err(|e| {
        let m = format!("connect {addr}: {e}");
        if is_local(&e) { Local(m) } else { Remote(m) }
    })?;
    if let Some(v) = send_proxy {
        let local = tcp
            .local_addr()
            .map_err(|e| format!("the check's address: {e}"))?;
        tcp.write_all(&v.check_header(local, addr))
            .await
            .map_err(|e| format!("send the PROXY header: {e}"))?;
    }
    match tls {
        None => ask(tcp, kind, addr).await,
        Some((connector, name)) => {
            let s = connector
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
            ask(s, kind, addr).await
        }
    }
}

/// An HTTP check's request and its status line on `stream` (a TCP check
/// has nothing more to do).
async fn ask<S>(mut stream: S, kind: &CheckKind, addr: SocketAddr) -> Result<(), Fault>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let CheckKind::Http {
        method,
        path,
        status,
    } = kind
    else {
        return Ok(());
    };
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: balancer-check\r\n\r\n",
        addr.ip()
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    // The status line is all we need; read until it is complete.
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 1024 {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status_ok(&buf, status)?)
}

/// `HTTP/1.x NNN ...` with NNN in one of the `status` ranges.
fn status_ok(answer: &[u8], status: &[(u16, u16)]) -> Result<(), String> {
    let line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let code: u16 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    if !version.starts_with("HTTP/1.") || code == 0 {
        return Err(format!("not an HTTP answer: {:?}", line.trim()));
    }
    if status.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code)) {
        Ok(())
    } else {
        Err(format!("HTTP status {code}"))
    }
}

/// HAProxy's rule: `fall` consecutive failures take an up server down,
/// `rise` consecutive successes bring a down server up. Servers start up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub up: bool,
    /// Consecutive results against the current state.
    pub streak: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            up: true,
            streak: 0,
        }
    }
}

impl Health {
    /// Apply one result; true when the state changed.
    pub fn apply(&mut self, ok: bool, rise: u32, fall: u32) -> bool {
        if ok == self.up {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        if self.streak >= if self.up { fall } else { rise } {
            self.up = ok;
            self.streak = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall_count_consecutive_results() {
        let mut h = Health::default();
        assert!(!h.apply(false, 2, 3));
        assert!(!h.apply(false, 2, 3));
        assert!(!h.apply(true, 2, 3), "a success resets the failure streak");
        assert!(!h.apply(false, 2, 3));
        assert!(!h.apply(false, 2, 3));
        assert!(h.apply(false, 2, 3) && !h.up, "third consecutive failure");
        assert!(!h.apply(true, 2, 3));
        assert!(h.apply(true, 2, 3) && h.up, "second consecutive success");
    }

    #[test]
    fn http_status_lines() {
        let d = [crate::config::DEFAULT_CHECK_STATUS];
        assert!(status_ok(b"HTTP/1.0 200 OK\r\n", &d).is_ok());
        assert!(status_ok(b"HTTP/1.1 302 Found\r\n", &d).is_ok());
        assert!(
            status_ok(b"HTTP/1.1 503 Unavailable\r\n", &d)
                .unwrap_err()
                .contains("503")
        );
        assert!(
            status_ok(b"SSH-2.0-OpenSSH\r\n", &d)
                .unwrap_err()
                .contains("not an HTTP answer")
        );
        assert!(status_ok(b"", &d).is_err());
        // `check_status = "200,503"`: a 503 passes, a 204 does not.
        let listed = [(200, 200), (503, 503)];
        assert!(status_ok(b"HTTP/1.1 503 Unavailable\r\n", &listed).is_ok());
        assert!(status_ok(b"HTTP/1.1 204 No Content\r\n", &listed).is_err());
    }

    #[test]
    fn checks_against_a_real_listener() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let mut b = [0u8; 512];
                    let _ = s.read(&mut b).await;
                    // The method is the backend's: HEAD is not allowed here.
                    let answer: &[u8] = if b.starts_with(b"HEAD ") {
                        b"HTTP/1.0 405 Method Not Allowed\r\n\r\n"
                    } else {
                        b"HTTP/1.0 204 No Content\r\n\r\n"
                    };
                    let _ = s.write_all(answer).await;
                }
            });
            let t = Duration::from_secs(2);
            let passed = |o| matches!(o, Outcome::Passed(_));
            assert!(passed(check(&CheckKind::Tcp, addr, t, None, None).await));
            let with = |method: &str, status| CheckKind::Http {
                method: method.into(),
                path: "/".into(),
                status,
            };
            let http = |status| with("GET", status);
            let d = vec![crate::config::DEFAULT_CHECK_STATUS];
            assert!(passed(
                check(&with("OPTIONS", d.clone()), addr, t, None, None).await
            ));
            assert!(!passed(check(&with("HEAD", d), addr, t, None, None).await));
            assert!(passed(
                check(
                    &http(vec![crate::config::DEFAULT_CHECK_STATUS]),
                    addr,
                    t,
                    None,
                    None
                )
                .await
            ));
            assert!(!passed(
                check(&http(vec![(200, 200)]), addr, t, None, None).await
            ));
            // A port nobody listens on (bound then closed).
            let closed = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let Outcome::Failed(e) = check(&CheckKind::Tcp, closed, t, None, None).await else {
                panic!("a refused connection is a failed check");
            };
            assert!(e.contains("connect"), "{e}");
        });
    }

    #[test]
    fn running_out_of_descriptors_says_nothing_of_the_server() {
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::EADDRNOTAVAIL,
        ] {
            assert!(is_local(&std::io::Error::from_raw_os_error(errno)));
        }
        for errno in [libc::ECONNREFUSED, libc::EHOSTUNREACH, libc::ETIMEDOUT] {
            assert!(!is_local(&std::io::Error::from_raw_os_error(errno)));
        }
    }
}
