//! Connections from the proxy to its servers: HTTP/1.1 over hyper's
//! connection-level client (`hyper::client::conn::http1`), with one pool of
//! idle keep-alive connections per worker thread.
//!
//! hyper-util's pooled `Client` does the same job for any URI, but pays for
//! that generality on every request (an absolute URI formatted and parsed,
//! a pool keyed by scheme and authority behind a shared lock, a task per
//! checkout). Here a worker knows its servers by address, sends
//! origin-form requests, and hands a connection back to its pool when the
//! response body has ended (see [`Leased`]), so the next request on that
//! worker reuses it.
//!
//! A connection taken from the pool may have been closed by the server
//! meanwhile. hyper then gives the request back unsent
//! ([`hyper::client::conn::TrySendError::take_message`]), and [`Pool::send`]
//! sends it once more on a new connection: to the client this is invisible,
//! as it is with HAProxy's connection reuse.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hyper::{
    Request, Response,
    body::Incoming,
    client::conn::http1::{Builder, SendRequest},
};
use hyper_util::rt::TokioIo;
use log::debug;
use tokio::net::TcpStream;

use super::proxy::ProxyBody;

/// Idle connections kept per server and worker; more are closed.
const MAX_IDLE_PER_SERVER: usize = 512;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often each worker closes the idle connections it no longer wants
/// (expired, closed by the server, or to a server no longer configured).
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Why no connection to a server could be made (HAProxy answers 503).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr}: no answer within {} ms", .timeout.as_millis())]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("connect to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP/1.1 handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
}

/// Why a request got no response head (HAProxy answers 502).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Exchange(#[source] hyper::Error),
}

/// A connection in use by one request; goes back to its pool through
/// [`Leased::release`] once its response has been read to the end.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<ProxyBody>,
}

struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// Idle keep-alive connections of one worker thread, by server address.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

impl Pool {
    /// A connection to `addr`: an idle one that is still open, else a new
    /// one (made within `connect_timeout`).
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<(Conn, bool), ConnectError> {
        // Ready at once unless the connection task is still finishing the
        // previous exchange (a closed one says so at once too): the common
        // case stays out of the (boxed) slow path and its timers.
        match self.take_idle(addr) {
            Some(sender) if sender.is_ready() => Ok((Conn { addr, sender }, true)),
            first => Box::pin(self.checkout_slow(addr, connect_timeout, first)).await,
        }
    }

    async fn checkout_slow(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
        mut next: Option<SendRequest<ProxyBody>>,
    ) -> Result<(Conn, bool), ConnectError> {
        while let Some(mut sender) = next {
            if sender.is_ready()
                || tokio::time::timeout(connect_timeout, sender.ready())
                    .await
                    .is_ok_and(|r| r.is_ok())
            {
                return Ok((Conn { addr, sender }, true));
            }
            next = self.take_idle(addr);
        }
        Ok((connect(addr, connect_timeout).await?, false))
    }

    fn take_idle(&self, addr: SocketAddr) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some(i) = list.pop() {
            if !i.sender.is_closed() && i.since.elapsed() < IDLE_TIMEOUT {
                return Some(i.sender);
            }
        }
        None
    }

    /// Close the idle connections that are expired, closed by their
    /// server, or to an address `keep` refuses (a server that was removed
    /// or whose address changed): without this they would stay open until
    /// the server closed them. Returns how many were closed.
    pub fn sweep(&self, keep: impl Fn(&SocketAddr) -> bool) -> usize {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let before: usize = idle.values().map(Vec::len).sum();
        idle.retain(|addr, list| {
            if !keep(addr) {
                return false;
            }
            list.retain(|i| !i.sender.is_closed() && i.since.elapsed() < IDLE_TIMEOUT);
            !list.is_empty()
        });
        before - idle.values().map(Vec::len).sum::<usize>()
    }

    fn put(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(conn.addr).or_default();
        if list.len() >= MAX_IDLE_PER_SERVER {
            // Closes the oldest: its task ends when its sender is dropped.
            list.remove(0);
        }
        list.push(Idle {
            sender: conn.sender,
            since: Instant::now(),
        });
    }

    /// Send `req` on `conn` (from [`Pool::checkout`]) and wait for the
    /// response head. A request a reused connection could not take (closed
    /// by the server while idle) goes once more on a new connection.
    pub async fn send(
        self: &Arc<Self>,
        mut conn: Conn,
        reused: bool,
        connect_timeout: Duration,
        req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Leased), SendError> {
        match conn.sender.try_send_request(req).await {
            Ok(resp) => Ok((resp, self.lease(conn))),
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => {
                    debug!(
                        "{}: pooled connection closed ({}); reconnecting",
                        conn.addr,
                        e.error()
                    );
                    // Rare: boxed, and nothing else kept across it, so that
                    // every request's future stays small.
                    let (addr, resend) = (conn.addr, self.clone());
                    drop((e, conn));
                    Box::pin(resend.resend(addr, connect_timeout, unsent)).await
                }
                _ => Err(SendError::Exchange(e.into_error())),
            },
        }
    }

    /// [`Pool::send`] once more, on a new connection.
    async fn resend(
        self: &Arc<Self>,
        addr: SocketAddr,
        connect_timeout: Duration,
        req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Leased), SendError> {
        let mut conn = connect(addr, connect_timeout).await?;
        match conn.sender.try_send_request(req).await {
            Ok(resp) => Ok((resp, self.lease(conn))),
            Err(e) => Err(SendError::Exchange(e.into_error())),
        }
    }

    fn lease(self: &Arc<Self>, conn: Conn) -> Leased {
        Leased {
            pool: self.clone(),
            conn: Some(conn),
        }
    }
}

/// A new HTTP/1.1 connection; its task runs on the calling worker's
/// runtime (with upgrades, for WebSocket passthrough).
///
/// Only the (boxed) slow paths call this: its future is large (the TCP
/// connect, a timer, hyper's handshake), and inline it would make every
/// request's future, which rarely connects, that much larger to move.
async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    // send(2) of one buffer rather than writev(2), as for clients (proxy.rs).
    let (sender, conn) = Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!("server connection {addr}: {e}");
        }
    });
    Ok(Conn { addr, sender })
}

/// The connection a response came on, until that response is done with:
/// back to the pool if its body was read to the end, else closed.
pub struct Leased {
    pool: Arc<Pool>,
    conn: Option<Conn>,
}

impl Leased {
    /// The response has been read to its end: the connection may take the
    /// next request.
    pub fn release(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.put(c);
        }
    }

    /// The connection is not to be reused (upgraded, or the response was
    /// abandoned).
    pub fn discard(&mut self) {
        self.conn = None;
    }
}
