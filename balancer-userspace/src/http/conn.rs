//! A client connection's life outside hyper: its slot under the
//! connection caps (`maxconn`), the timeouts of the phases in which it
//! holds resources while sending or taking nothing, and its place in its
//! frontend's list of connections, where the connection idle longest
//! makes room for a new client when the frontend is full.
//!
//! hyper drives the protocol; it does not know HAProxy's timeouts. Each
//! connection has a [`ConnState`] that its requests, its socket
//! ([`Watched`]) and its response bodies keep up to date with a few plain
//! stores, and a watchdog ([`watch`], a task of its own, so that the
//! connection's task polls no timer on its wake-ups) that reads it and says
//! when the connection has to go; the socket is then shut down
//! ([`ConnState::shut_down`]) and hyper, finding it closed, ends the
//! connection:
//! - no request in flight: `timeout http-keep-alive` since the last one
//!   ended (`timeout http-request` for the first), and for HTTP/1.1,
//!   `timeout http-request` from the first byte of a request head (a slow
//!   sender of headers gets no more time by trickling bytes);
//! - a request in flight whose response waits on the client (it takes no
//!   data: a full socket buffer, or HTTP/2 flow control): `timeout client`
//!   since the last byte that moved either way;
//! - a request in flight waiting on the server: the request's own timeouts
//!   (`timeout server`; a request body from the client: `timeout client`).
//!
//! All of a connection's tasks run on its worker's thread, so the state's
//! counters are atomics only to be shareable: they are read and written
//! with plain loads and stores.

use std::{
    collections::BTreeMap,
    io,
    os::fd::{AsRawFd, RawFd},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
};

use crate::config::HttpFrontend;
use crate::util::coarse_ms;

/// What one connection's requests, socket and watchdog share.
pub struct ConnState {
    h2: AtomicBool,
    /// Requests in flight (their responses not yet ended).
    active: AtomicU32,
    /// Response bodies that yielded data and have not been asked for more:
    /// they wait on the client.
    waiting: AtomicU32,
    /// Whether a request has ended on this connection.
    served: AtomicBool,
    /// When (ms, [`coarse_ms`]) a byte last moved either way.
    last_io: AtomicU64,
    /// When the last request ended (or the connection was accepted).
    idle_since: AtomicU64,
    /// When the first byte of the next request head came (0: none yet).
    first_byte: AtomicU64,
    evicted: AtomicBool,
    evict: Notify,
    /// A write to the client's socket is waiting for room: bytes of a
    /// response are pending, so no answer of the watchdog's may be written.
    write_pending: AtomicBool,
    /// The watchdog shut the socket down (it logged why).
    shut: AtomicBool,
    /// The client's socket while it is open (see [`Watched`]): the
    /// watchdog shuts it down, under this lock, so never after it was
    /// closed (its number may be another's by then).
    socket: Mutex<Option<RawFd>>,
}

fn bump(a: &AtomicU32, up: bool) {
    let v = a.load(Relaxed);
    a.store(if up { v + 1 } else { v.saturating_sub(1) }, Relaxed);
}

impl ConnState {
    /// A connection accepted now, its protocol not yet known.
    pub fn new() -> Arc<ConnState> {
        let now = coarse_ms();
        Arc::new(ConnState {
            h2: AtomicBool::new(false),
            active: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            served: AtomicBool::new(false),
            last_io: AtomicU64::new(now),
            idle_since: AtomicU64::new(now),
            first_byte: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            write_pending: AtomicBool::new(false),
            shut: AtomicBool::new(false),
            socket: Mutex::new(None),
        })
    }

    /// Shut the client's socket down both ways, if it is still open: its
    /// reads end and its writes fail, so hyper ends the connection (the
    /// descriptor is closed when hyper drops it). A no-op once closed.
    ///
    /// With `answer`, that answer is written first, as HAProxy answers a
    /// request head that does not come in time with a 408; unless bytes of
    /// an earlier response are still pending (then it would corrupt that
    /// response: the connection is closed without it). It is written
    /// without waiting: a socket with no room gets none.
    pub fn shut_down(&self, answer: Option<&[u8]>) {
        self.shut.store(true, Relaxed);
        let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        let Some(fd) = *socket else { return };
        if let Some(a) = answer
            && !self.write_pending.load(Relaxed)
        {
            // SAFETY: `fd` is open (`Watched` clears it, under this lock,
            // before it closes the socket); `a` is a valid buffer.
            unsafe {
                libc::send(
                    fd,
                    a.as_ptr().cast(),
                    a.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
        }
        // SAFETY: as above.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }

    /// How long ago (ms) the head of a request that hyper has not taken
    /// began to come (`None`: none is coming), unless the watchdog closed
    /// the connection: a head hyper refused or the client cut short.
    pub fn head_left(&self) -> Option<u64> {
        let fb = self.first_byte.load(Relaxed);
        let open = fb != 0 && self.active.load(Relaxed) == 0 && !self.shut.load(Relaxed);
        open.then(|| coarse_ms().saturating_sub(fb))
    }

    /// How long ago (ms) the request head being read began to come (the
    /// connection's accept if none), for the watchdog's log line.
    pub fn head_age(&self) -> u64 {
        let fb = self.first_byte.load(Relaxed);
        let base = if fb != 0 { fb } else { self.idle_base() };
        coarse_ms().saturating_sub(base)
    }

    /// Its first bytes came and told the protocol.
    pub fn started(&self, h2: bool) {
        self.h2.store(h2, Relaxed);
        if !h2 {
            self.first_byte.store(coarse_ms(), Relaxed);
        }
    }

    /// Asked to make room for a new connection (see [`Registry`]).
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    /// A request starts; it is in flight until the guard is dropped (with
    /// its response body, or when that ends).
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        bump(&self.active, true);
        RequestGuard(self.clone())
    }

    fn idle_base(&self) -> u64 {
        self.idle_since.load(Relaxed)
    }

    /// When the watchdog must look again (ms), or why the connection has
    /// to go now.
    fn verdict(&self, now: u64, t: &HttpFrontend) -> Result<u64, &'static str> {
        let ms = |d: Duration| d.as_millis() as u64;
        if self.active.load(Relaxed) == 0 {
            let first = !self.served.load(Relaxed);
            let idle_limit = if first {
                t.timeout_http_request
            } else {
                t.timeout_http_keep_alive
            };
            let fb = self.first_byte.load(Relaxed);
            let (deadline, why) = if self.h2.load(Relaxed) {
                // Frames such as PING don't make an idle HTTP/2 connection
                // busy: only an open stream does.
                (self.idle_base() + ms(idle_limit), "idle")
            } else if fb != 0 {
                (fb + ms(t.timeout_http_request), HEAD_INCOMPLETE)
            } else {
                // A response still being written counts as activity.
                let base = self.idle_base().max(self.last_io.load(Relaxed));
                (base + ms(idle_limit), "idle")
            };
            return if now >= deadline {
                Err(why)
            } else {
                Ok(deadline)
            };
        }
        let client = ms(t.timeout_client);
        if self.waiting.load(Relaxed) > 0 {
            let deadline = self.last_io.load(Relaxed) + client;
            if now >= deadline {
                return Err("client takes no data");
            }
            return Ok(deadline);
        }
        // Waiting on a server or on a request body: their own timeouts
        // apply; look again in a while (a response may start to wait).
        Ok(now + (client / 4).max(100))
    }
}

/// A request in flight on its connection (see [`ConnState::request`]).
pub struct RequestGuard(Arc<ConnState>);

impl RequestGuard {
    /// How long (ms) the request's head took to come: from its first
    /// byte (HTTP/1.1; 0 when not known, as on HTTP/2).
    pub fn head_ms(&self) -> i64 {
        match self.0.first_byte.load(Relaxed) {
            0 => 0,
            t => coarse_ms().saturating_sub(t) as i64,
        }
    }

    /// A response body yielded data (`true`) or was asked for more.
    pub fn set_waiting(&self, waiting: bool) {
        bump(&self.0.waiting, waiting);
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let s = &self.0;
        bump(&s.active, false);
        if s.active.load(Relaxed) == 0 {
            s.idle_since.store(coarse_ms(), Relaxed);
            s.first_byte.store(0, Relaxed);
            s.served.store(true, Relaxed);
        }
    }
}

/// HAProxy's 400 answer as it writes it, for a request hyper did not
/// take (`accept.rs`; the page of `pages.rs`).
pub const RAW_400: &[u8] = b"HTTP/1.1 400 Bad request\r\nContent-length: 90\r\n\
Cache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/html\r\n\r\n\
<html><body><h1>400 Bad request</h1>\nYour browser sent an invalid request.\n</body></html>\n";

/// HAProxy's answer (its page, as it writes it) to a request head that
/// did not come within `timeout http-request`.
pub const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Time-out\r\nContent-length: 110\r\n\
Cache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/html\r\n\r\n\
<html><body><h1>408 Request Time-out</h1>\nYour browser didn't send a complete request in time.\n</body></html>\n";

/// The phase whose timeout [`ConnState::verdict`] found passed.
pub const HEAD_INCOMPLETE: &str = "request head incomplete";

/// Why [`watch`] ended.
pub enum Closing {
    /// A timeout: which phase (when [`HEAD_INCOMPLETE`], the client is
    /// answered [`REQUEST_TIMEOUT`]).
    Timeout(&'static str),
    /// Made room for a new connection (the frontend was full).
    Evicted,
}

/// The connection's watchdog: returns when it has to be closed.
pub async fn watch(state: &ConnState, t: &HttpFrontend) -> Closing {
    loop {
        let now = coarse_ms();
        let at = match state.verdict(now, t) {
            Ok(at) => at,
            Err(why) => return Closing::Timeout(why),
        };
        // The coarse clock may lag the timer by a few ms: never spin.
        let wait = Duration::from_millis(at.saturating_sub(now).max(5));
        tokio::select! {
            _ = super::timer::Deadline::after(wait) => {}
            _ = state.evicted() => return Closing::Evicted,
        }
    }
}

/// The client's socket, noting when bytes move (see [`ConnState`]).
/// It holds the connection's [`Slot`]: the slot is free when the socket
/// is closed, whoever holds it last (an upgraded connection's tunnel).
pub struct Watched {
    io: TcpStream,
    state: Arc<ConnState>,
    _slot: Slot,
}

impl Watched {
    pub fn new(io: TcpStream, state: Arc<ConnState>, slot: Slot) -> Watched {
        *state.socket.lock().unwrap_or_else(|e| e.into_inner()) = Some(io.as_raw_fd());
        Watched {
            io,
            state,
            _slot: slot,
        }
    }
}

impl Watched {
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        let s = &self.state;
        s.write_pending.store(r.is_pending(), Relaxed);
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            s.last_io.store(coarse_ms(), Relaxed);
        }
    }
}

impl Drop for Watched {
    /// Runs before the socket (a field) is closed.
    fn drop(&mut self) {
        *self.state.socket.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let s = &self.state;
            let now = coarse_ms();
            s.last_io.store(now, Relaxed);
            if s.active.load(Relaxed) == 0 && s.first_byte.load(Relaxed) == 0 && !s.h2.load(Relaxed)
            {
                s.first_byte.store(now, Relaxed);
            }
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The connection caps of one frontend: its own `maxconn` and the global
/// one, shared by its workers; and the global cap on server connections.
#[derive(Clone, Debug)]
pub struct Slots {
    pub frontend: Arc<Semaphore>,
    pub global: Arc<Semaphore>,
    pub servers: Arc<super::upstream::ServerSlots>,
}

/// A connection's place under both caps.
pub struct Slot {
    _frontend: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl Slots {
    /// A slot at once, if both caps have room.
    pub fn try_take(&self) -> Option<Slot> {
        let f = self.frontend.clone().try_acquire_owned().ok()?;
        let g = self.global.clone().try_acquire_owned().ok()?;
        Some(Slot {
            _frontend: f,
            _global: g,
        })
    }

    /// A slot when both caps have room.
    pub async fn take(&self) -> Slot {
        let f = self.frontend.clone().acquire_owned().await;
        let g = self.global.clone().acquire_owned().await;
        match (f, g) {
            (Ok(f), Ok(g)) => Slot {
                _frontend: f,
                _global: g,
            },
            // The semaphores are never closed.
            _ => std::future::pending().await,
        }
    }
}

/// The client connections of one frontend (all its workers'), oldest
/// first.
#[derive(Default)]
pub struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<ConnState>>>,
    next: AtomicU64,
}

/// A connection's entry in its [`Registry`], removed when dropped.
pub struct Registered {
    registry: Arc<Registry>,
    key: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut conns = self
            .registry
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        conns.remove(&self.key);
    }
}

impl Registry {
    pub fn add(self: &Arc<Self>, state: Arc<ConnState>) -> Registered {
        let key = self.next.fetch_add(1, Relaxed);
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.insert(key, state);
        Registered {
            registry: self.clone(),
            key,
        }
    }

    /// Ask the connection with no request in flight that has been idle
    /// longest to close. Whether there was one.
    pub fn evict_idlest(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let victim = conns
            .values()
            .filter(|s| s.active.load(Relaxed) == 0 && !s.evicted.load(Relaxed))
            .min_by_key(|s| s.idle_base().max(s.first_byte.load(Relaxed)));
        match victim {
            Some(s) => {
                s.evicted.store(true, Relaxed);
                s.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> HttpFrontend {
        HttpFrontend {
            timeout_client: Duration::from_millis(1000),
            timeout_http_request: Duration::from_millis(300),
            timeout_http_keep_alive: Duration::from_millis(200),
            ..HttpFrontend::default()
        }
    }

    #[test]
    fn phases_and_their_deadlines() {
        let t = timeouts();
        let s = ConnState::new();
        let t0 = s.idle_base();
        // The first request: http-request from the accept.
        assert_eq!(s.verdict(t0, &t), Ok(t0 + 300));
        assert!(s.verdict(t0 + 300, &t).is_err());
        // A request in flight, waiting on its server: looked at again.
        let g = s.request();
        assert!(s.verdict(t0 + 10_000, &t).is_ok());
        // Its response waits on the client: timeout client from the last
        // byte moved.
        g.set_waiting(true);
        let io = s.last_io.load(Relaxed);
        assert_eq!(s.verdict(io, &t), Ok(io + 1000));
        assert_eq!(s.verdict(io + 1000, &t), Err("client takes no data"));
        g.set_waiting(false);
        drop(g);
        // Then keep-alive, and http-request once a head has started.
        let idle = s.idle_base().max(s.last_io.load(Relaxed));
        assert_eq!(s.verdict(idle, &t), Ok(idle + 200));
        s.first_byte.store(idle + 50, Relaxed);
        assert_eq!(s.verdict(idle + 100, &t), Ok(idle + 350));
        assert_eq!(s.verdict(idle + 350, &t), Err(HEAD_INCOMPLETE));
    }

    #[test]
    fn http2_pings_do_not_keep_a_connection_busy() {
        let t = timeouts();
        let s = ConnState::new();
        s.started(true);
        let t0 = s.idle_base();
        s.last_io.store(t0 + 250, Relaxed);
        assert!(s.verdict(t0 + 300, &t).is_err());
    }

    #[test]
    fn the_idlest_connection_is_evicted_never_a_busy_one() {
        let r = Arc::new(Registry::default());
        let (a, b, c) = (ConnState::new(), ConnState::new(), ConnState::new());
        a.idle_since.store(100, Relaxed);
        b.idle_since.store(50, Relaxed);
        c.idle_since.store(10, Relaxed);
        let _busy = c.request();
        let (_ra, _rb, _rc) = (r.add(a.clone()), r.add(b.clone()), r.add(c.clone()));
        assert!(r.evict_idlest());
        assert!(b.evicted.load(Relaxed) && !a.evicted.load(Relaxed));
        assert!(r.evict_idlest());
        assert!(a.evicted.load(Relaxed) && !c.evicted.load(Relaxed));
        assert!(!r.evict_idlest());
        assert_eq!(r.conns.lock().unwrap().len(), 3);
    }
}
