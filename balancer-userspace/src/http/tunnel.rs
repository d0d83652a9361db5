//! An upgraded connection (WebSocket, after the server's 101): the bytes
//! of each side copied to the other until both have ended, with HAProxy's
//! tunnel timeouts: `timeout tunnel` while both sides are open, then
//! `timeout client-fin` once the client has closed its side (the server
//! may still send), `timeout server-fin` once the server has. A tunnel in
//! which no byte moves for that long is closed.

use std::{
    io,
    sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::util::coarse_ms;

/// The limits of one tunnel.
#[derive(Debug, Clone, Copy)]
pub struct TunnelTimeouts {
    pub tunnel: Duration,
    pub client_fin: Duration,
    pub server_fin: Duration,
}

/// How a tunnel ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed.
    Closed,
    /// No byte moved for the timeout of this phase.
    Timeout(&'static str),
}

const CLIENT_DONE: u8 = 1;
const SERVER_DONE: u8 = 2;

/// Copy between `client` and `server` (sending `early`, what the server
/// sent after its 101, first) until both sides have ended or a timeout.
pub async fn splice<C, S>(
    client: C,
    server: S,
    early: Bytes,
    t: TunnelTimeouts,
) -> io::Result<Ended>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let last = AtomicU64::new(coarse_ms());
    let done = AtomicU8::new(0);
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let copies = async {
        if !early.is_empty() {
            cw.write_all(&early).await?;
        }
        let up = copy(&mut cr, &mut sw, &last, &done, CLIENT_DONE);
        let down = copy(&mut sr, &mut cw, &last, &done, SERVER_DONE);
        tokio::try_join!(up, down).map(|_| Ended::Closed)
    };
    let watchdog = async {
        loop {
            let (limit, phase) = match done.load(Relaxed) {
                CLIENT_DONE => (t.client_fin, "client-fin"),
                SERVER_DONE => (t.server_fin, "server-fin"),
                _ => (t.tunnel, "tunnel"),
            };
            let now = coarse_ms();
            let deadline = last.load(Relaxed) + limit.as_millis() as u64;
            if now >= deadline {
                return Ended::Timeout(phase);
            }
            // Looked at again at the deadline, or sooner when a fin
            // timeout may be shorter.
            let wait = (deadline - now).min(t.client_fin.min(t.server_fin).as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(wait.max(5))).await;
        }
    };
    tokio::select! {
        r = copies => r,
        e = watchdog => Ok(e),
    }
}

/// One direction: until `from` ends, then `to` is shut down (the FIN passed
/// on) and `side` marked done.
async fn copy<R, W>(
    from: &mut R,
    to: &mut W,
    last: &AtomicU64,
    done: &AtomicU8,
    side: u8,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.shutdown().await?;
            done.fetch_or(side, Relaxed);
            return Ok(());
        }
        last.store(coarse_ms(), Relaxed);
        to.write_all(&buf[..n]).await?;
        last.store(coarse_ms(), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ms: u64) -> TunnelTimeouts {
        TunnelTimeouts {
            tunnel: Duration::from_millis(ms),
            client_fin: Duration::from_millis(ms / 2),
            server_fin: Duration::from_millis(ms / 2),
        }
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_then_both_ends_close() {
        let (client, mut c) = tokio::io::duplex(64);
        let (server, mut s) = tokio::io::duplex(64);
        let t = tokio::spawn(splice(
            client,
            server,
            Bytes::from_static(b"early"),
            limits(5000),
        ));
        let mut b = [0u8; 5];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"early");
        c.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        drop(c);
        drop(s);
        assert_eq!(t.await.unwrap().unwrap(), Ended::Closed);
    }

    #[tokio::test]
    async fn a_silent_tunnel_is_closed() {
        let (client, _c) = tokio::io::duplex(64);
        let (server, _s) = tokio::io::duplex(64);
        let start = std::time::Instant::now();
        let r = splice(client, server, Bytes::new(), limits(300))
            .await
            .unwrap();
        assert_eq!(r, Ended::Timeout("tunnel"));
        assert!(
            start.elapsed() >= Duration::from_millis(290),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_half_closed_tunnel_gets_the_fin_timeout() {
        let (client, c) = tokio::io::duplex(64);
        let (server, _s) = tokio::io::duplex(64);
        // The client closes its side at once; the server never answers.
        let (_cr, mut cw) = tokio::io::split(c);
        cw.shutdown().await.unwrap();
        let t = TunnelTimeouts {
            client_fin: Duration::from_millis(200),
            ..limits(10_000)
        };
        let start = std::time::Instant::now();
        let r = splice(client, server, Bytes::new(), t).await.unwrap();
        assert_eq!(r, Ended::Timeout("client-fin"));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}
