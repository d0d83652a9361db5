//! Which server takes a request: the one its persistence cookie names if
//! that one may take it, else the backend's balancing choice; and its
//! place under that server's `maxconn` (`queue.rs`).

use std::{net::IpAddr, sync::atomic::Ordering};

use balancer_common::maps::{STATE_DOWN, STATE_DRAIN, STATE_MAINT, STATE_UP};
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::{
    balance::{Candidate, Chosen, least_conn, source},
    cookie::{self, Persist},
    headers::join_cookie_fields,
    proxy::{HttpBackendView, HttpServerView, Proxy, Refusal},
    queue::{Admitted, Full, any_with_room},
    stick::Table,
};
use crate::config::Balance;

impl Proxy {
    /// A server for a user without a usable cookie: up, weight > 0, not in
    /// `exclude`, and with `with_room`, not at its `maxconn`.
    pub(super) fn balance(
        &self,
        b: &HttpBackendView,
        client: IpAddr,
        exclude: Option<usize>,
        with_room: bool,
    ) -> Option<usize> {
        let cands: Vec<Candidate> = b
            .servers
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                s.state == STATE_UP
                    && s.weight > 0
                    && Some(*i) != exclude
                    && (!with_room || s.limit.as_ref().is_none_or(|l| l.0.has_room()))
            })
            .map(|(_, s)| Candidate {
                id: s.id,
                weight: s.weight,
            })
            .collect();
        let id = match b.settings.balance {
            Balance::RoundRobin => {
                let mut rr = self.shared.rr.lock().unwrap_or_else(|e| e.into_inner());
                rr.entry(b.name.clone()).or_default().pick(&cands)
            }
            Balance::LeastConn => least_conn(
                &cands,
                |id| self.shared.in_flight.get(id),
                self.shared.rotate.fetch_add(1, Ordering::Relaxed),
            ),
            Balance::Source => source(&cands, client),
        }?;
        b.servers.iter().position(|s| s.id == id)
    }

    /// A place at server `chosen` under its `maxconn` at once (none needed
    /// without), or `None` if it is full (then [`Proxy::admit`]).
    pub(super) fn try_admit(
        &self,
        b: &HttpBackendView,
        chosen: usize,
    ) -> Option<(usize, Option<Admitted>)> {
        match &b.servers[chosen].limit {
            None => Some((chosen, None)),
            Some(l) => l.0.try_admit().map(|a| (chosen, Some(a))),
        }
    }

    /// A place at server `chosen` under its `maxconn` (none needed
    /// without). A full server: a persistent request waits in its queue
    /// (`timeout_queue`), unless the queue holds `maxqueue` already; then,
    /// and for a request free to go anywhere, any server with room is
    /// taken, waiting up to `timeout_queue` for one. Returns the server and
    /// the place.
    pub(super) async fn admit(
        &self,
        b: &HttpBackendView,
        client: IpAddr,
        chosen: usize,
        by_cookie: bool,
    ) -> Result<(usize, Option<Admitted>), Refusal> {
        if let Some(x) = self.try_admit(b, chosen) {
            return Ok(x);
        }
        // Full, so it has a limit.
        let Some(l) = &b.servers[chosen].limit else {
            return Ok((chosen, None));
        };
        let fe = &self.spec.stats;
        let wait = b.settings.timeout_queue;
        let timed_out = || {
            fe.queue_timeouts.fetch_add(1, Ordering::Relaxed);
            Err((StatusCode::SERVICE_UNAVAILABLE, "queue timeout", *b"sQ"))
        };
        if by_cookie {
            match l.0.admit(wait).await {
                Ok(a) => return Ok((chosen, Some(a))),
                Err(Full::Timeout) => return timed_out(),
                // Persistence gives way, as HAProxy's `maxqueue` does.
                Err(Full::QueueFull) => {}
            }
        }
        let pick = || self.try_admit(b, self.balance(b, client, None, true)?);
        match any_with_room(l.0.backend_waiters(), wait, pick).await {
            Some(x) => Ok(x),
            None => timed_out(),
        }
    }

    /// The server for `req`: the one its persistence cookie names, if that
    /// one may take it; else, with `stick match`, the one its client's
    /// stick entry (`stick`: the table and the client's key) names, if that
    /// one may take it; else [`Proxy::balance`]'s choice (HAProxy looks at
    /// the cookie first, and its stick rules only for a request the cookie
    /// did not assign). Reading the cookie edits the request's `Cookie`
    /// headers (see [`cookie::process_request`]) and counts its outcome.
    /// Returns the server's index, the cookie's verdict (for the response's
    /// cookie), and what chose: the cookie, the stick entry, or neither.
    pub(super) fn choose_server(
        &self,
        b: &HttpBackendView,
        client: IpAddr,
        req: &mut Request<Incoming>,
        now: u64,
        stick: Option<(&Table, &[u8; 16], u64)>,
    ) -> Result<(usize, Persist, Chosen), Refusal> {
        // HTTP/2 may split `cookie` into several fields; joined with "; " as
        // RFC 9113 8.2.3 asks before forwarding to HTTP/1.1 (and as HAProxy does
        // before it looks at them).
        if req.version() == http::Version::HTTP_2 {
            join_cookie_fields(req.headers_mut());
        }
        // Only servers that may take a persistent request are matched against
        // the cookie (up or draining; down too with `option persist`), as
        // HAProxy skips the others when it looks the value up.
        let may_persist = |s: &HttpServerView| {
            s.state == STATE_UP
                || s.state == STATE_DRAIN
                // HAProxy's `option persist` follows the cookie to any stopped
                // server, in maintenance too.
                || (b.settings.persist && (s.state == STATE_DOWN || s.state == STATE_MAINT))
        };
        let persist = match &b.settings.cookie {
            Some(c) => {
                let values: Vec<Option<&str>> = b
                    .servers
                    .iter()
                    .map(|s| s.cookie.as_deref().filter(|_| may_persist(s)))
                    .collect();
                // The values of the servers left out, for the log's `D`
                // (no allocation when every server may persist).
                let down: Vec<Option<&str>> = if values.iter().all(Option::is_some) {
                    Vec::new()
                } else {
                    b.servers
                        .iter()
                        .map(|s| s.cookie.as_deref().filter(|_| !may_persist(s)))
                        .collect()
                };
                cookie::process_request_down(c, req.headers_mut(), &values, &down, now)
            }
            None => Persist::default(),
        };
        let by_cookie = persist
            .server
            .filter(|&i| b.servers.get(i).is_some_and(may_persist));
        let fe = &self.spec.stats;
        if b.settings.cookie.is_some() {
            match (by_cookie, persist.seen) {
                (Some(_), _) => &fe.cookie_used,
                (None, false) => &fe.cookie_absent,
                (None, true) => &fe.cookie_unusable,
            }
            .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(i) = by_cookie {
            return Ok((i, persist, Chosen::Cookie));
        }
        let by_stick = match stick {
            Some((t, key, now_ns)) if b.settings.stick.matches => {
                let index = |id: u32| b.servers.iter().position(|s| s.id == id && may_persist(s));
                let found = t.matched(key, now_ns, |id| index(id).is_some());
                let usable = found.and_then(|(e, ok)| if ok { index(e.server) } else { None });
                match (found, usable) {
                    (Some(_), Some(_)) => &fe.stick_matched,
                    (None, _) => &fe.stick_absent,
                    (Some(_), None) => &fe.stick_unusable,
                }
                .fetch_add(1, Ordering::Relaxed);
                usable
            }
            _ => None,
        };
        if let Some(i) = by_stick {
            return Ok((i, persist, Chosen::Stick));
        }
        let Some(chosen) = self.balance(b, client, None, false) else {
            fe.no_server.fetch_add(1, Ordering::Relaxed);
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "no server available",
                *b"SC",
            ));
        };
        Ok((chosen, persist, Chosen::Balance))
    }

    /// After a response from `server`: `stick store-request` stores it as
    /// the client's entry (a new entry, a changed server, or a refreshed
    /// time). (A match refreshed its entry when the request started; the
    /// caller does not store a request its entry sent to its server.)
    pub(super) fn stick_after_response(
        &self,
        t: &Table,
        key: &[u8; 16],
        now_ns: u64,
        b: &HttpBackendView,
        server: &HttpServerView,
    ) {
        if b.settings.stick.stores {
            t.record(key, server.id, now_ns);
        }
    }
}
