//! Listening for an HTTP frontend: its sockets (one per worker thread,
//! `SO_REUSEPORT`), the worker threads and their accept loops, which give
//! each client connection a slot under the connection caps before it is
//! served (`accept.rs`), and each worker's sweep of its idle server
//! connections.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioExecutor;
use log::{debug, info, warn};
use tokio::{net::TcpListener, sync::watch};

use super::{
    accept::{Builders, connection},
    conn::ConnState,
    proxy::{BalanceState, FrontendSpec, HttpView, Proxy},
    timer::RecyclingTimer,
    upstream::Pool,
};

/// Bind `addr` once per worker (`SO_REUSEPORT`: the kernel spreads new
/// connections over them), listening, non-blocking. Each listener's
/// backlog is `backlog` (HAProxy's default: the frontend's `maxconn`),
/// which the kernel caps at `net.core.somaxconn`: a burst of new clients
/// waits there rather than losing its SYNs (a lost SYN costs its client
/// a second: the first retransmission).
pub fn bind_workers(
    addr: SocketAddr,
    workers: usize,
    backlog: u32,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    (0..workers.max(1))
        .map(|_| {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
            s.set_nonblocking(true)?;
            s.bind(&addr.into())?;
            s.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
            Ok(s.into())
        })
        .collect()
}

/// Serve one frontend with a thread per listener, each running its own
/// single-threaded runtime: a client connection, its requests and the
/// server connections they use stay on one thread (no cross-thread
/// wake-ups), as in HAProxy's per-thread event loops. Balancing state is
/// shared. The threads end when `stop` turns true and their requests in
/// flight are done (at most `grace`).
pub fn spawn_workers(
    listeners: Vec<std::net::TcpListener>,
    spec: &FrontendSpec,
    view: &watch::Receiver<Arc<HttpView>>,
    stop: &watch::Receiver<bool>,
    grace: Duration,
) -> Vec<std::thread::JoinHandle<()>> {
    let shared = Arc::new(BalanceState::default());
    listeners
        .into_iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let (spec, view, stop, shared) =
                (spec.clone(), view.clone(), stop.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("http-{}-{i}", spec.name))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            warn!("{}: worker {i}: no runtime: {e}", spec.name);
                            return;
                        }
                    };
                    rt.block_on(async move {
                        match TcpListener::from_std(l) {
                            Ok(l) => serve(l, spec, view, stop, grace, shared).await,
                            Err(e) => warn!("{}: worker {i}: {e}", spec.name),
                        }
                    });
                    super::timer::clear_spares();
                })
                .map_err(|e| warn!("starting an HTTP worker: {e}"))
                .ok()
        })
        .collect()
}

/// Serve `listener` until `stop` turns true; then stop accepting and let
/// in-flight requests finish (at most `grace`).
///
/// A connection is accepted only with a slot under the frontend's and the
/// global `maxconn`. When there is none, the accepted connection waits for
/// one (no more are accepted meanwhile: the rest wait in the kernel's
/// backlog, holding no descriptor), and the frontend's connection idle
/// longest, if it has one, is closed to make room: idle and slow clients
/// cannot keep new ones out.
pub async fn serve(
    listener: TcpListener,
    spec: FrontendSpec,
    view: watch::Receiver<Arc<HttpView>>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    shared: Arc<BalanceState>,
) {
    let proxy = Arc::new(Proxy {
        pool: Pool::new(spec.slots.servers.clone()),
        spec,
        view,
        shared,
        stopping: stop.clone(),
    });
    let t = &proxy.spec.http;
    let mut h1 = http1::Builder::new();
    h1.timer(RecyclingTimer)
        // One buffer, written with send(2) as HAProxy does, rather than
        // writev(2) of head and body: cheaper in the kernel for the small
        // messages that dominate (large bodies pay one more copy).
        .writev(false)
        .keep_alive(true)
        // A response carries the headers its server sent, as HAProxy's:
        // no `Date` of the proxy's own (the origin's, if any, passes).
        .auto_date_header(false)
        // The connection's watchdog keeps HAProxy's timeouts instead.
        .header_read_timeout(None)
        .max_buf_size(t.max_header_bytes.max(8192));
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(RecyclingTimer)
        .auto_date_header(false)
        .max_header_list_size(t.max_header_bytes as u32)
        .max_concurrent_streams(t.h2_max_concurrent_streams);
    let builders = Arc::new(Builders { h1, h2 });
    // Every connection task holds a subscription: all have ended when the
    // sender sees none left.
    let (open, _) = watch::channel(());
    let sweeper = tokio::spawn(sweep_pool(proxy.pool.clone(), proxy.view.clone()));
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => {
                if std::mem::take(&mut failing) {
                    info!("{}: accepting again", proxy.spec.name);
                }
                x
            }
            Err(e) => {
                // Out of descriptors, most likely: logged once, retried.
                if !std::mem::replace(&mut failing, true) {
                    warn!("{}: accept: {e} (retrying every 50 ms)", proxy.spec.name);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Registered at once, before its task first runs: a client that
        // sends nothing may be the one to make room for the next.
        let state = ConnState::new();
        let registered = proxy.shared.conns.add(state.clone());
        let slot = match proxy.spec.slots.try_take() {
            Some(s) => s,
            None => {
                let taken = async {
                    // Until a slot is free: one more connection asked to
                    // make room every 100 ms (connections that were busy
                    // may have become idle).
                    loop {
                        if !proxy.shared.conns.evict_idlest() {
                            debug!("{}: full; {peer} waits for a connection", proxy.spec.name);
                        }
                        let wait = tokio::time::sleep(Duration::from_millis(100));
                        tokio::select! {
                            s = proxy.spec.slots.take() => return s,
                            _ = wait => {}
                        }
                    }
                };
                tokio::select! {
                    s = taken => s,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        };
        proxy.spec.stats.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let (p, builders, stop, open) = (
            proxy.clone(),
            builders.clone(),
            stop.clone(),
            open.subscribe(),
        );
        tokio::spawn(async move {
            let _open = open;
            let _registered = registered;
            connection(p, stream, peer, state, slot, builders, stop).await;
        });
    }
    // No more connections: the socket closes now (unless a daemon taking
    // over holds it), not when the last request is done.
    drop(listener);
    sweeper.abort();
    if tokio::time::timeout(grace, open.closed()).await.is_err() {
        warn!(
            "{}: requests still in flight after {} s; closing",
            proxy.spec.name,
            grace.as_secs()
        );
    }
}

/// Every [`super::upstream::SWEEP_EVERY`], close this worker's idle server
/// connections that are expired, closed, or to addresses no backend has
/// any more.
async fn sweep_pool(pool: Arc<Pool>, view: watch::Receiver<Arc<HttpView>>) {
    let mut tick = tokio::time::interval(super::upstream::SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let current = view.borrow().clone();
        let closed = pool.sweep(|a| {
            current
                .backends
                .values()
                .any(|b| b.servers.iter().any(|s| s.addr == *a))
        });
        if closed > 0 {
            debug!("closed {closed} idle server connection(s)");
        }
    }
}
