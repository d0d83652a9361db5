//! Connections from the proxy to its servers: HTTP/1.1, spoken by the
//! request's own task, with one pool of idle keep-alive connections per
//! worker thread.
//!
//! hyper's client (`hyper::client::conn::http1`) runs each server
//! connection as a task of its own: every request then crosses tasks and
//! channels twice (request in, response head and body out) and is parsed
//! into a message hyper owns before the proxy sees it. Here the task that
//! serves the client's request writes the request to the server and reads
//! the response head itself ([`Pool::send`]); the response body
//! ([`UpBody`]) reads the server's socket when the client side asks for
//! the next piece. Nothing else runs per request, and a connection goes
//! back to its worker's pool the moment its response has been read to the
//! end, ready for the next request on that worker.
//!
//! What is implemented of RFC 9112, as a client: requests framed by
//! `content-length` (known size) or chunked (unknown size, trailers kept);
//! responses framed as section 6.3 says (no body for HEAD, 1xx, 204, 304;
//! chunked; `content-length`, where differing or malformed values are an
//! error; else read until the server closes); interim 1xx responses skipped;
//! 101 hands the connection to the caller for an upgrade; `Connection:
//! close` and HTTP/1.0 responses are not reused; heads are limited to
//! [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields.
//!
//! A connection taken from the pool may have been closed by the server
//! meanwhile. An idle connection whose socket has anything to read (the
//! server's FIN, or bytes it had no business sending) is closed rather than
//! used; and a request that meets a closed connection before any byte of a
//! response came back is sent once more on a new connection when that is
//! safe (idempotent method, no body): to the client this is invisible, as
//! with HAProxy's connection reuse.

mod body;
pub(crate) mod codec;
mod errors;
mod private;
mod server_io;

pub use body::UpBody;
pub use errors::{ConnectError, ExchangeError, SendError};
use private::PrivateTag;
pub use private::{Hello, Private};
pub use server_io::ServerIo;

use super::timer::Deadline;
use std::{
    collections::HashMap,
    future::poll_fn,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http::{Method, Response};
use hyper::body::{Body, Frame, SizeHint};
use log::debug;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
};

use super::tls::client::ServerTls;
use codec::{
    Framing, Head, Parsed, ReqFraming, Step, decode_chunk, encode_frame, encode_request, parse_head,
};
pub use codec::{MAX_HEAD, MAX_HEADERS};

/// A request body's error, as [`ExchangeError::ClientBody`] keeps it.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT_MS: u64 = 60_000;
/// How often each worker closes the idle connections it no longer wants
/// (expired, closed by the server, or to a server no longer configured).
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Room made in a connection's read buffer before a read: at first, and at
/// most (it doubles each time a read fills it, for large bodies).
const READ_ROOM: usize = 16 * 1024;
const MAX_READ_ROOM: usize = 256 * 1024;

/// How long an exchange waits on either side without progress.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// On the client's request body (`timeout client`).
    pub client: Duration,
    /// On the server (`timeout server`).
    pub server: Duration,
}

/// An HTTP/1.1 connection to a server, owned by one request at a time.
/// Boxed once, when it is made: a request moves its connection from the
/// pool through several futures and back, and a pointer is cheaper to move
/// than the connection (184 bytes, moved about ten times per request).
pub struct Conn(Box<Link>);

impl std::ops::Deref for Conn {
    type Target = Link;
    fn deref(&self) -> &Link {
        &self.0
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Link {
        &mut self.0
    }
}

/// What a [`Conn`] holds.
pub struct Link {
    addr: SocketAddr,
    /// Over TLS (pooled apart from cleartext connections to `addr`).
    tls: Option<Arc<ServerTls>>,
    io: ServerIo,
    /// Bytes read from the server and not yet consumed.
    rbuf: BytesMut,
    /// The request being written (kept, for a request without body, until
    /// its response starts, so that it can be sent again).
    wbuf: Vec<u8>,
    /// Room made in `rbuf` before a read.
    room: usize,
    /// Its place under the cap on server connections.
    _slot: OwnedSemaphorePermit,
    /// Opened with a PROXY header naming one client: kept for that
    /// client's connection only (see [`Private`]).
    private: Option<PrivateTag>,
}

impl Link {
    /// See [`ServerIo::is_usable`].
    fn is_usable(&mut self) -> bool {
        self.io.is_usable()
    }

    /// Read what the server has sent into `rbuf`; `Ok(0)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < self.room / 4 {
            self.rbuf.reserve(self.room);
        }
        let spare = self.rbuf.spare_capacity_mut();
        let offered = spare.len();
        let mut rb = ReadBuf::uninit(spare);
        match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == offered && self.room < MAX_READ_ROOM {
                    self.room *= 2;
                }
                // SAFETY: `poll_read` initialised the first `n` spare bytes.
                unsafe { self.rbuf.set_len(self.rbuf.len() + n) };
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Write `wbuf[*pos..]`; `Ready(Ok)` once all of it is written.
    fn poll_flush_wbuf(&mut self, pos: &mut usize, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while *pos < self.wbuf.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf[*pos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *pos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl Conn {
    /// The upgraded connection (after a 101): the socket, and what the
    /// server already sent beyond its response head.
    /// Its slot goes with it: a tunnel holds a server connection.
    pub fn into_upgraded(self) -> (ServerIo, Bytes, OwnedSemaphorePermit) {
        let link = *self.0;
        (link.io, link.rbuf.freeze(), link._slot)
    }
}

struct Idle {
    conn: Conn,
    /// When it went idle: [`crate::util::coarse_ms`] (two precise clock
    /// reads per request cost more than the few ms this is off by).
    since_ms: u64,
}

impl Idle {
    /// Idle for less than [`IDLE_TIMEOUT_MS`] at `now` (coarse ms).
    fn fresh(&self, now: u64) -> bool {
        now.saturating_sub(self.since_ms) < IDLE_TIMEOUT_MS
    }
}

/// Idle keep-alive connections of one worker thread, by server address
/// (foldhash: SipHash's flooding resistance buys nothing for keys that are
/// the configured servers, and it costs on every request).
pub struct Pool {
    idle: Mutex<HashMap<(SocketAddr, bool), Vec<Idle>, foldhash::fast::RandomState>>,
    /// The cap on server connections (all workers'), idle ones included.
    slots: Arc<ServerSlots>,
}

/// The cap on server connections, shared by every worker's [`Pool`]; the
/// pools are listed so that any worker can close another's idle
/// connection when the cap is reached (idle connections hold slots).
#[derive(Debug)]
pub struct ServerSlots {
    sem: Arc<Semaphore>,
    pools: Mutex<Vec<std::sync::Weak<Pool>>>,
    /// Requests waiting for a slot: while there are any, a connection
    /// whose response ended is closed, not kept idle (it would keep its
    /// slot from them).
    waiting: std::sync::atomic::AtomicUsize,
}

impl ServerSlots {
    pub fn new(n: usize) -> ServerSlots {
        ServerSlots {
            sem: Arc::new(Semaphore::new(n)),
            pools: Mutex::default(),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Close the oldest idle connection of any pool, `first`'s before the
    /// others'. Whether one was closed.
    fn close_idle(&self, first: &Pool) -> bool {
        if first.close_oldest() {
            return true;
        }
        let pools: Vec<Arc<Pool>> = {
            let mut p = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            p.retain(|w| w.strong_count() > 0);
            p.iter().filter_map(std::sync::Weak::upgrade).collect()
        };
        pools.iter().any(|p| p.close_oldest())
    }
}

impl Pool {
    /// A worker's pool, listed in `slots`.
    pub fn new(slots: Arc<ServerSlots>) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            idle: Mutex::default(),
            slots: slots.clone(),
        });
        let mut pools = slots.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.push(Arc::downgrade(&pool));
        pool
    }

    /// Close this pool's oldest idle connection; whether it had one.
    fn close_oldest(&self) -> bool {
        let oldest = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let list = idle
                .values_mut()
                .filter(|l| !l.is_empty())
                .min_by_key(|l| l[0].since_ms);
            list.map(|l| l.remove(0))
        };
        oldest.is_some()
    }

    /// A slot for a new server connection: if all are taken, the oldest
    /// idle connection (this worker's first, else another's) is closed to
    /// free one; if there is none, the request waits for a slot, at most
    /// `wait` (a burst that takes them all delays others a little instead
    /// of failing them).
    async fn slot(
        &self,
        addr: SocketAddr,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, ConnectError> {
        use std::sync::atomic::Ordering::Relaxed;
        if let Ok(p) = self.slots.sem.clone().try_acquire_owned() {
            return Ok(p);
        }
        self.slots.waiting.fetch_add(1, Relaxed);
        let deadline = tokio::time::Instant::now() + wait;
        let got = loop {
            // Connections that went idle meanwhile are closed for us.
            self.slots.close_idle(self);
            let retry = (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline);
            match tokio::time::timeout_at(retry, self.slots.sem.clone().acquire_owned()).await {
                Ok(Ok(p)) => break Ok(p),
                Ok(Err(_)) => break Err(ConnectError::NoSlot { addr }),
                Err(_) if retry >= deadline => break Err(ConnectError::NoSlot { addr }),
                Err(_) => {}
            }
        };
        self.slots.waiting.fetch_sub(1, Relaxed);
        got
    }

    /// A connection to `addr`: an idle one that is still open, else a new
    /// one (made within `connect_timeout`). The flag says it was reused.
    /// With a PROXY header (`hello`), the client's own: an idle one of
    /// its [`Private`], else a new one that opens with the header.
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        tls: Option<&Arc<ServerTls>>,
        connect_timeout: Duration,
        hello: Option<Hello<'_>>,
    ) -> Result<(Conn, bool), ConnectError> {
        let idle = match hello {
            None => self.take_idle(addr, tls.is_some()),
            Some(h) => h.owner.take(addr, tls.is_some()),
        };
        match idle {
            Some(conn) => Ok((conn, true)),
            // Rare: boxed, so that every request's future stays small.
            None => Box::pin(async move {
                let slot = self.slot(addr, connect_timeout).await?;
                connect(addr, tls, connect_timeout, slot, hello).await
            })
            .await
            .map(|c| (c, false)),
        }
    }

    fn take_idle(&self, addr: SocketAddr, tls: bool) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&(addr, tls))?;
        let now = crate::util::coarse_ms();
        while let Some(mut i) = list.pop() {
            if i.fresh(now) && i.conn.is_usable() {
                return Some(i.conn);
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
        let now = crate::util::coarse_ms();
        idle.retain(|(addr, _), list| {
            if !keep(addr) {
                return false;
            }
            list.retain_mut(|i| i.fresh(now) && i.conn.is_usable());
            !list.is_empty()
        });
        before - idle.values().map(Vec::len).sum::<usize>()
    }

    /// Only [`UpBody::finish`] calls this, with a connection whose read
    /// buffer is empty (its response ended exactly).
    fn put(&self, conn: Conn) {
        if self
            .slots
            .waiting
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
        {
            // Its slot is wanted for another connection.
            return;
        }
        if conn.private.is_some() {
            return Private::put_back(conn);
        }
        // Kept however many there are, as HAProxy's `pool-max-conn` is
        // unlimited by default: the cap on server connections (the global
        // `maxconn`) bounds them, closing the oldest idle one when a new
        // connection needs its slot, and so does `IDLE_TIMEOUT_MS`. A cap per
        // server would close connections that a burst of concurrent
        // requests (1,000 clients) needs again at once.
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry((conn.addr, conn.tls.is_some())).or_default();
        list.push(Idle {
            conn,
            since_ms: crate::util::coarse_ms(),
        });
    }

    /// Send the request, `(parts, body)` (origin form, HTTP/1.1), on
    /// `conn` (from
    /// [`Pool::checkout`]), streaming its body, and read the response head.
    /// The response's body reads the rest from the connection, which goes
    /// back to the pool when that body has ended. A request met by a
    /// closed reused connection (closed or reset before any byte of a
    /// response: not a timeout) goes once more on a new one when `resend`
    /// allows it (idempotent) and it has no body. The body is the caller's
    /// type (generic, so the proxy's body enum is used as is: no boxing,
    /// and this module knows nothing of the proxy).
    pub async fn send<B>(
        self: &Arc<Self>,
        mut conn: Conn,
        reused: bool,
        resend: bool,
        connect_timeout: Duration,
        waits: Waits,
        (parts, body): (&http::request::Parts, &mut B),
    ) -> Result<Response<UpBody>, SendError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let mut framing = encode_request(parts, body, &mut conn.wbuf);
        let no_body = matches!(framing, ReqFraming::None);
        match exchange(&mut conn, body, &mut framing, &parts.method, waits).await {
            Ok(head) => Ok(self.response(conn, head, waits.server)),
            // A connection found closed, not a server that is only slow
            // (sending it again would double its wait, as HAProxy does not).
            Err((e, received))
                if reused
                    && resend
                    && no_body
                    && !received
                    && matches!(e, ExchangeError::Closed | ExchangeError::Io(_)) =>
            {
                debug!(
                    "{}: pooled connection closed ({e}); reconnecting",
                    conn.addr
                );
                let wbuf = std::mem::take(&mut conn.wbuf);
                let (addr, tls, private) = (conn.addr, conn.tls.take(), conn.private.take());
                drop(conn);
                let resent = self.resend(
                    (addr, tls, private),
                    connect_timeout,
                    waits,
                    wbuf,
                    &parts.method,
                    body,
                );
                Box::pin(resent).await
            }
            Err((e, _)) => Err(e.into()),
        }
    }

    /// A request without body (its bytes in `wbuf`; `body` has ended, and
    /// is not read) once more, on a new connection to the same server (a
    /// private one again, with its header, for a private one).
    async fn resend<B>(
        self: &Arc<Self>,
        (addr, tls, private): (SocketAddr, Option<Arc<ServerTls>>, Option<PrivateTag>),
        connect_timeout: Duration,
        waits: Waits,
        wbuf: Vec<u8>,
        method: &Method,
        body: &mut B,
    ) -> Result<Response<UpBody>, SendError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let owner = private.as_ref().map(|t| t.owner.upgrade());
        let hello = match (&private, &owner) {
            (Some(t), Some(Some(o))) => Some(Hello {
                header: &t.hello,
                owner: o,
            }),
            (None, _) => None,
            // Its client is gone: nobody waits for the answer.
            (Some(_), _) => {
                let source = io::Error::other("the client connection has ended");
                return Err(ConnectError::Io { addr, source }.into());
            }
        };
        let slot = self.slot(addr, connect_timeout).await?;
        let mut conn = connect(addr, tls.as_ref(), connect_timeout, slot, hello).await?;
        conn.wbuf = wbuf;
        match exchange(&mut conn, body, &mut ReqFraming::None, method, waits).await {
            Ok(head) => Ok(self.response(conn, head, waits.server)),
            Err((e, _)) => Err(e.into()),
        }
    }

    fn response(self: &Arc<Self>, conn: Conn, head: Head, wait: Duration) -> Response<UpBody> {
        let mut body = UpBody {
            conn: Some(conn),
            pool: self.clone(),
            framing: head.framing,
            reusable: head.reusable,
            wait,
            deadline: None,
        };
        // Nothing to read: the connection is free at once (hyper does not
        // poll a body it knows to be empty).
        if body.framing == Framing::Length(0) {
            body.finish();
        }
        let mut r = Response::new(body);
        *r.status_mut() = head.status;
        *r.version_mut() = head.version;
        *r.headers_mut() = head.headers;
        r
    }
}

/// A new connection to `addr` (TLS with `tls`: the handshake within the
/// same `timeout`), in `slot`, opening with `hello` (a PROXY header,
/// before TLS) if given.
async fn connect(
    addr: SocketAddr,
    tls: Option<&Arc<ServerTls>>,
    timeout: Duration,
    slot: OwnedSemaphorePermit,
    hello: Option<Hello<'_>>,
) -> Result<Conn, ConnectError> {
    let started = tokio::time::Instant::now();
    let mut io = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
        Ok(Err(source))
            if matches!(
                source.raw_os_error(),
                Some(
                    libc::EMFILE
                        | libc::ENFILE
                        | libc::ENOBUFS
                        | libc::ENOMEM
                        | libc::EADDRNOTAVAIL
                )
            ) =>
        {
            return Err(ConnectError::Local { addr, source });
        }
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = io.set_nodelay(true);
    if let Some(h) = hello {
        use tokio::io::AsyncWriteExt;
        match tokio::time::timeout_at(started + timeout, io.write_all(h.header)).await {
            Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
            Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
            Ok(Ok(())) => {}
        }
    }
    let io = match tls {
        None => ServerIo::Plain(io),
        Some(t) => {
            let (connector, name) = t.connector(addr);
            match tokio::time::timeout_at(started + timeout, connector.connect(name, io)).await {
                Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
                Ok(Err(source)) => return Err(ConnectError::Tls { addr, source }),
                Ok(Ok(s)) => ServerIo::Tls(Box::new(s)),
            }
        }
    };
    Ok(Conn(Box::new(Link {
        addr,
        tls: tls.cloned(),
        io,
        rbuf: BytesMut::new(),
        wbuf: Vec::new(),
        room: READ_ROOM,
        _slot: slot,
        private: hello.map(|h| PrivateTag {
            owner: Arc::downgrade(h.owner),
            hello: h.header.to_vec(),
        }),
    })))
}

/// Write the request in `conn.wbuf` and its `body`, and read the response
/// head; interim (1xx) responses are skipped. On error, whether any byte
/// of a response had come (if none, the server may not have seen the
/// request).
///
/// Waiting is bounded by `waits`, on whichever side holds the exchange up:
/// the client while its body is awaited (and the server takes what it was
/// given), else the server. Any progress starts the wait again.
async fn exchange<B>(
    conn: &mut Conn,
    body: &mut B,
    framing: &mut ReqFraming,
    method: &Method,
    waits: Waits,
) -> Result<Head, (ExchangeError, bool)>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut wpos = 0;
    // A request without body stays in `wbuf` until a response starts, so
    // that it can be sent again.
    let keep_request = matches!(framing, ReqFraming::None);
    let mut body_done = matches!(framing, ReqFraming::None);
    let mut received = false;
    // The wait running, and whether it is on the client.
    let mut wait: Option<(Deadline, bool)> = None;
    poll_fn(|cx| {
        let (mut progress, mut write_blocked, mut body_blocked) = (false, false, false);
        // Write what there is to write, the request's body as it comes.
        while wpos < conn.wbuf.len() || !body_done {
            let before = wpos;
            let flushed = conn.poll_flush_wbuf(&mut wpos, cx);
            progress |= wpos != before;
            match flushed {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err((e.into(), received))),
                Poll::Pending => {
                    write_blocked = true;
                    break;
                }
            }
            if body_done {
                break;
            }
            conn.wbuf.clear();
            wpos = 0;
            let frame = Pin::new(&mut *body).poll_frame(cx);
            progress |= frame.is_ready();
            match frame {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Err(e) = encode_frame(frame, framing, &mut conn.wbuf) {
                        return Poll::Ready(Err((e, received)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err((ExchangeError::ClientBody(e.into()), received)));
                }
                Poll::Ready(None) => {
                    match framing {
                        ReqFraming::Chunked(false) => conn.wbuf.extend_from_slice(b"0\r\n\r\n"),
                        ReqFraming::Length(n) if *n > 0 => {
                            return Poll::Ready(Err((
                                ExchangeError::Malformed("request body shorter than its length"),
                                received,
                            )));
                        }
                        _ => {}
                    }
                    body_done = true;
                }
                Poll::Pending => {
                    body_blocked = true;
                    break;
                }
            }
        }
        // Read the response head.
        loop {
            if !conn.rbuf.is_empty() {
                received = true;
                match parse_head(&mut conn.rbuf, method) {
                    Ok(Parsed::Final(mut head)) => {
                        if keep_request {
                            conn.wbuf.clear();
                        }
                        // A response before the request was all sent: what
                        // is left of it will not be, so neither can the
                        // connection carry another request.
                        if !body_done || wpos < conn.wbuf.len() {
                            head.reusable = false;
                        }
                        return Poll::Ready(Ok(head));
                    }
                    // Consumed: look at what follows it.
                    Ok(Parsed::Interim) => continue,
                    Ok(Parsed::Partial) if conn.rbuf.len() > MAX_HEAD => {
                        return Poll::Ready(Err((
                            ExchangeError::Malformed("response head too large"),
                            received,
                        )));
                    }
                    Ok(Parsed::Partial) => {}
                    Err(e) => return Poll::Ready(Err((e, received))),
                }
            }
            match conn.poll_fill(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err((ExchangeError::Closed, received))),
                Poll::Ready(Ok(_)) => progress = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err((e.into(), received))),
                Poll::Pending => break,
            }
        }
        // Nothing more can happen now: bound the wait on whoever holds it.
        let on_client = body_blocked && !write_blocked;
        if progress || wait.as_ref().is_some_and(|(_, c)| *c != on_client) {
            wait = None;
        }
        let (deadline, _) = wait.get_or_insert_with(|| {
            let d = if on_client {
                waits.client
            } else {
                waits.server
            };
            (Deadline::after(d), on_client)
        });
        match Pin::new(deadline).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) if on_client => {
                Poll::Ready(Err((ExchangeError::ClientTimeout(waits.client), received)))
            }
            Poll::Ready(()) => {
                Poll::Ready(Err((ExchangeError::ServerTimeout(waits.server), received)))
            }
        }
    })
    .await
}
