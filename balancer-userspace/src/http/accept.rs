//! A client connection from its accept to its end: the protocol told from
//! its first bytes (HTTP/2's preface or not; on a TLS frontend, a TLS
//! record or not), the TLS handshake where the frontend terminates TLS
//! (ALPN `h2` then means HTTP/2), then hyper serving it, with its watchdog
//! (`conn.rs`) beside it.
//!
//! On a TLS frontend the handshake must be complete within `timeout
//! client` (HAProxy 2.6 bounds it so; 2.8's `timeout client-hs` defaults
//! to it), and the first request within `timeout http-request` of the
//! accept, as on cleartext. A client that speaks plain HTTP to the TLS
//! port is answered `400` in plain text and closed; any other byte that
//! does not open a TLS record closes the connection. Each outcome is
//! counted (`TlsCounters`).

use std::{net::SocketAddr, sync::Arc, sync::atomic::Ordering, time::Duration};

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use log::debug;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::watch,
};

use super::{
    conn::{Closing, ConnState, HEAD_INCOMPLETE, RAW_400, REQUEST_TIMEOUT, Slot, Watched, watch},
    headers::ClientSide,
    log::conn::{Ending, HANDSHAKE_CLOSED, HANDSHAKE_FAILURE, HANDSHAKE_TIMEOUT},
    pp::{Ends, Refused, receive},
    proxy::{Proxy, handle},
    sniff::{Sniffed, sniff_http2, sniff_tls},
    tls::Failure,
};
use crate::util::AbortOnDrop;

/// When the frontend stops, how long an HTTP/1.1 connection may stay for
/// its next request (answered with `Connection: close`) before it is
/// closed if idle.
const IDLE_CLOSE_DELAY: Duration = Duration::from_secs(2);

/// Answer to plain HTTP on a TLS port (its length checked by a test).
const PLAIN_ON_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n\
content-length: 49\r\nconnection: close\r\n\r\nThis port speaks HTTPS: use https:// to reach it\n";

/// The hyper connection builders a worker shares among its connections.
pub(super) struct Builders {
    pub h1: http1::Builder,
    pub h2: http2::Builder<TokioExecutor>,
}

/// Serve one accepted client connection to its end.
pub(super) async fn connection(
    p: Arc<Proxy>,
    mut stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ConnState>,
    slot: Slot,
    builders: Arc<Builders>,
    mut stop: watch::Receiver<bool>,
) {
    let name = p.spec.name.clone();
    let tls = p.spec.tls.clone();
    let accepted = tokio::time::Instant::now();
    // The client's address from here on: its PROXY header's, if it sent one.
    let Some(ends) = client_ends(&p, &mut stream, peer, &state, &mut stop).await else {
        return;
    };
    let peer = ends.client;
    // (A TLS client's first byte is part of its handshake.)
    let timeout = match tls {
        Some(_) => p.spec.http.timeout_client,
        None => p.spec.http.timeout_http_request,
    }
    .saturating_sub(accepted.elapsed());
    let sniffed = tokio::select! {
        r = async {
            if tls.is_some() { sniff_tls(&stream, timeout).await } else { sniff_http2(&stream, timeout).await }
        } => r,
        // Accepted just before the frontend stopped: its request is on its
        // way (closing now would reset it).
        () = after_stop(&mut stop, IDLE_CLOSE_DELAY) => return,
        _ = state.evicted() => {
            p.spec.stats.evicted.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let counters = &p.spec.stats.tls;
    let age = || accepted.elapsed().as_millis() as u64;
    let is_h2 = match sniffed {
        Sniffed::Http1 => false,
        Sniffed::Http2 => true,
        Sniffed::Tls => false,
        Sniffed::Gone => {
            if tls.is_some() {
                counters.failed(Failure::Closed);
                log_ended(&p, peer, age(), true, Ending::Handshake(HANDSHAKE_CLOSED));
            } else {
                // As HAProxy: the client may still read (it closed its
                // side only).
                p.spec.stats.responses.count(400);
                let _ = stream.try_write(RAW_400);
                log_ended(&p, peer, age(), true, BADREQ_CLOSED);
            }
            debug!("{name}: client {peer}: closed before its first request");
            return;
        }
        Sniffed::Silent => {
            p.spec.stats.client_timeouts.fetch_add(1, Ordering::Relaxed);
            if tls.is_some() {
                counters.failed(Failure::Timeout);
                log_ended(&p, peer, age(), true, Ending::Handshake(HANDSHAKE_TIMEOUT));
            } else {
                // As HAProxy: a first request that does not come in time
                // is answered 408 (without waiting for room).
                p.spec.stats.responses.count(408);
                let _ = stream.try_write(REQUEST_TIMEOUT);
                log_ended(&p, peer, age(), true, BADREQ_TIMEOUT);
            }
            debug!("{name}: client {peer}: nothing within the timeout");
            return;
        }
        Sniffed::PlainHttp => {
            counters.failed(Failure::PlainHttp);
            p.spec.stats.responses.count(400);
            let _ = stream.try_write(PLAIN_ON_TLS);
            log_ended(&p, peer, age(), false, Ending::Handshake(HANDSHAKE_FAILURE));
            debug!("{name}: client {peer}: plain HTTP on the TLS port");
            return;
        }
        Sniffed::NotTls => {
            counters.failed(Failure::Malformed);
            log_ended(&p, peer, age(), false, Ending::Handshake(HANDSHAKE_FAILURE));
            debug!("{name}: client {peer}: not a TLS record; closed");
            return;
        }
    };
    let side = Arc::new(ClientSide::new(ends, tls.is_some(), p.spec.forwarded_proto));
    let watched = Watched::new(stream, state.clone(), slot);
    let Some(t) = tls else {
        state.started(is_h2);
        return serve(
            p,
            TokioIo::new(watched),
            is_h2,
            false,
            state,
            side,
            peer,
            builders,
            stop,
        )
        .await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(t.config());
    let left = p
        .spec
        .http
        .timeout_client
        .saturating_sub(accepted.elapsed());
    let handshake = tokio::time::timeout(left, acceptor.accept(watched));
    let done = tokio::select! {
        r = handshake => r,
        () = after_stop(&mut stop, IDLE_CLOSE_DELAY) => return,
        _ = state.evicted() => {
            p.spec.stats.evicted.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let tls_stream = match done {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let why = Failure::of(&e);
            counters.failed(why);
            // (HAProxy leaves a handshake cut short out of `dontlognull`'s
            // lines, as one that never began.)
            let (null, message) = match why {
                Failure::Closed => (true, HANDSHAKE_CLOSED),
                _ => (false, HANDSHAKE_FAILURE),
            };
            log_ended(&p, peer, age(), null, Ending::Handshake(message));
            debug!(
                "{name}: client {peer}: TLS handshake: {e} ({})",
                why.as_str()
            );
            return;
        }
        Err(_) => {
            counters.failed(Failure::Timeout);
            p.spec.stats.client_timeouts.fetch_add(1, Ordering::Relaxed);
            log_ended(&p, peer, age(), true, Ending::Handshake(HANDSHAKE_TIMEOUT));
            debug!("{name}: client {peer}: TLS handshake not done within timeout_client");
            return;
        }
    };
    let conn = tls_stream.get_ref().1;
    counters.completed(conn);
    let is_h2 = conn.alpn_protocol() == Some(b"h2");
    state.started(is_h2);
    serve(
        p,
        TokioIo::new(tls_stream),
        is_h2,
        true,
        state,
        side,
        peer,
        builders,
        stop,
    )
    .await;
}

/// A new client connection's ends: its own, or from its PROXY header on a
/// frontend with `accept_proxy` (`pp/`); `None` if it is to be closed
/// (refused, counted; or the daemon stops, or it is asked to make room).
/// The local end is looked up only where something uses it
/// (`forwarded_proto`, PROXY headers): else it is the unspecified address.
async fn client_ends(
    p: &Proxy,
    s: &mut TcpStream,
    peer: SocketAddr,
    state: &ConnState,
    stop: &mut watch::Receiver<bool>,
) -> Option<Ends> {
    let accept = p.spec.http.accept_proxy.as_ref();
    let wanted = p.spec.forwarded_proto
        || accept.is_some()
        || p.view
            .borrow()
            .backends
            .get(&p.spec.backend)
            .is_some_and(|b| b.settings.send_proxy.is_some());
    let unspecified = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 0);
    let own = Ends {
        client: peer,
        local: match wanted {
            true => s.local_addr().unwrap_or(unspecified),
            false => unspecified,
        },
    };
    let Some(accept) = accept else {
        return Some(own);
    };
    let timeout = p.spec.http.timeout_http_request;
    let got = tokio::select! {
        r = receive(s, own, accept, timeout, &p.spec.stats.proxy) => r,
        // As for the first request below: its header is on its way.
        () = after_stop(stop, IDLE_CLOSE_DELAY) => return None,
        _ = state.evicted() => {
            p.spec.stats.evicted.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    if got == Err(Refused::Timeout) {
        p.spec.stats.client_timeouts.fetch_add(1, Ordering::Relaxed);
    }
    got.map_err(|why| {
        debug!(
            "{}: client {peer}: PROXY header refused ({})",
            p.spec.name,
            why.as_str()
        )
    })
    .ok()
}

/// hyper serving `io` (HTTP/2 or HTTP/1.1 with upgrades) until it ends or
/// `stop` asks it to finish, with the connection's watchdog beside it.
#[allow(clippy::too_many_arguments)]
async fn serve<I>(
    p: Arc<Proxy>,
    io: TokioIo<I>,
    is_h2: bool,
    tls: bool,
    state: Arc<ConnState>,
    side: Arc<ClientSide>,
    peer: SocketAddr,
    builders: Arc<Builders>,
    stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (p2, s2) = (p.clone(), state.clone());
    let s3 = state.clone();
    // (`handle` adds `Connection: close` while the frontend stops.)
    let svc = hyper::service::service_fn(move |req| {
        handle(p2.clone(), s2.request(), peer, side.clone(), req)
    });
    // Its own task: polled only when a deadline passes or it is asked to
    // make room, not on each of the connection's wake-ups.
    let _watchdog = AbortOnDrop(tokio::spawn(watchdog(p.clone(), state, peer, tls)));
    let served = if is_h2 {
        // GOAWAY at once: the client retries what was not processed.
        until_done(
            builders.h2.serve_connection(io, svc),
            stop,
            Duration::ZERO,
            |c| c.graceful_shutdown(),
        )
        .await
    } else {
        // Its next answer says `Connection: close`; an idle one is closed
        // after a while (a request could cross the close on the wire).
        let conn = builders.h1.serve_connection(io, svc).with_upgrades();
        until_done(conn, stop, IDLE_CLOSE_DELAY, |c| c.graceful_shutdown()).await
    };
    if let Err(e) = served {
        debug!("{}: client {peer}: {e}", p.spec.name);
        // A request head hyper refused (it answered it) or the client cut
        // short: logged as HAProxy logs it.
        if let Some(age) = s3.head_left()
            && let Some(log) = &p.spec.log
        {
            // (Its slot was given back with the socket.)
            let how = refused_head(&e);
            super::log::conn::ended(log, &p.spec.stats, peer, age, false, true, how);
        }
    }
}

/// A head hyper refused (`PR`, with the status hyper answered), or one
/// the client cut short (`CR`: HAProxy logs the 400 it answers then).
fn refused_head(e: &hyper::Error) -> Ending {
    if !e.is_parse() {
        return BADREQ_CLOSED;
    }
    let status = match e.is_parse_too_large() {
        true if e.to_string().contains("URI") => 414,
        true => 431,
        false => 400,
    };
    Ending::BadRequest {
        status,
        term: *b"PR",
    }
}

/// `<BADREQ>` lines (`log/conn.rs`): the client closed before its request
/// was whole; it was not whole within `timeout http-request`.
const BADREQ_CLOSED: Ending = Ending::BadRequest {
    status: 400,
    term: *b"CR",
};
const BADREQ_TIMEOUT: Ending = Ending::BadRequest {
    status: 408,
    term: *b"cR",
};

/// Log, if the frontend logs, how a connection ended without a request
/// (`log/conn.rs`).
fn log_ended(p: &Proxy, peer: SocketAddr, age_ms: u64, null: bool, how: Ending) {
    if let Some(log) = &p.spec.log {
        super::log::conn::ended(log, &p.spec.stats, peer, age_ms, null, false, how);
    }
}

/// `delay` after `stop` turns true.
async fn after_stop(stop: &mut watch::Receiver<bool>, delay: Duration) {
    let _ = stop.wait_for(|s| *s).await;
    tokio::time::sleep(delay).await;
}

/// Drive `conn` to its end; when `stop` turns true, give it `delay` to end
/// by itself, then ask it (`shutdown`) to finish the requests in flight
/// and close, and keep driving it.
async fn until_done<C: Future>(
    conn: C,
    mut stop: watch::Receiver<bool>,
    delay: Duration,
    shutdown: impl FnOnce(std::pin::Pin<&mut C>),
) -> C::Output {
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return r,
        _ = stop.wait_for(|s| *s) => {}
    }
    if let Ok(r) = tokio::time::timeout(delay, conn.as_mut()).await {
        return r;
    }
    shutdown(conn.as_mut());
    conn.await
}

/// A client connection's watchdog (see [`watch`]): when the connection
/// has to go, its socket is shut down, which ends it in hyper. The 408 of
/// an incomplete head is written in plain text, so not on TLS.
async fn watchdog(p: Arc<Proxy>, state: Arc<ConnState>, peer: SocketAddr, tls: bool) {
    let name = &p.spec.name;
    match watch(&state, &p.spec.http).await {
        Closing::Timeout(phase) => {
            p.spec.stats.client_timeouts.fetch_add(1, Ordering::Relaxed);
            debug!("{name}: client {peer}: closed, timeout ({phase})");
            if phase == HEAD_INCOMPLETE {
                log_ended(&p, peer, state.head_age(), false, BADREQ_TIMEOUT);
            }
            if phase == HEAD_INCOMPLETE && !tls {
                p.spec.stats.responses.count(408);
                state.shut_down(Some(REQUEST_TIMEOUT));
            } else {
                state.shut_down(None);
            }
        }
        Closing::Evicted => {
            p.spec.stats.evicted.fetch_add(1, Ordering::Relaxed);
            debug!("{name}: client {peer}: closed to make room (idle longest)");
            state.shut_down(None);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_on_tls_length() {
        let text = std::str::from_utf8(super::PLAIN_ON_TLS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
