//! Lines for the connections that brought no request the proxy took, as
//! HAProxy 2.6 logs them (checked against it by `access_log.rs`):
//! - a request head that is invalid or too large (`PR--`), cut short by
//!   the client's close (`CR--`, and a client that closes before its
//!   first byte), or not complete within `timeout http-request` (`cR--`,
//!   answered 408): an httplog line on `frontend/<NOSRV>` whose request is
//!   `<BADREQ>`, timers `-1` but `Ta`;
//! - a TLS handshake that did not complete: HAProxy's connection error
//!   line, `ip:port [accept date] frontend/bind: message`.
//!
//! With `option dontlognull`, a connection that sent nothing (a port
//! probe, a browser's spare connection) is not logged.

use std::{net::SocketAddr, sync::Arc};

use http::{Method, Uri, Version};

use super::{AccessLog, Record, emit, format};
use crate::{config::LogFormat, http::stats::FrontendCounters};

/// How a connection ended without a request (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// An httplog `<BADREQ>` line: the status it was answered (or would
    /// have been, had the client stayed) and the termination state.
    BadRequest { status: u16, term: [u8; 2] },
    /// A TLS handshake that failed: one of HAProxy's messages below.
    Handshake(&'static str),
}

pub const HANDSHAKE_FAILURE: &str = "SSL handshake failure";
pub const HANDSHAKE_TIMEOUT: &str = "Timeout during SSL handshake";
pub const HANDSHAKE_CLOSED: &str = "Connection closed during SSL handshake";

/// Log how a connection from `client` ended, `age_ms` after it started
/// (its accept, or the first byte of the request head that failed);
/// `null`: it had sent nothing (left out with `dontlognull`); `released`:
/// its slot under the connection caps was given back already.
pub fn ended(
    log: &Arc<AccessLog>,
    counters: &Arc<FrontendCounters>,
    client: SocketAddr,
    age_ms: u64,
    null: bool,
    released: bool,
    how: Ending,
) {
    if null && log.settings.dontlognull {
        return;
    }
    match how {
        Ending::BadRequest { status, term } => {
            let now = crate::util::monotonic_ns();
            let mut r = Record::new(
                log.clone(),
                counters.clone(),
                client,
                now,
                age_ms as i64,
                Method::GET,
                Uri::default(),
                Version::HTTP_11,
            );
            r.timers[0] = -1;
            r.bad = true;
            r.released = released;
            r.refused(status, term);
            // (Written as it is dropped.)
        }
        Ending::Handshake(message) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let accepted = now.saturating_sub(age_ms);
            let (frontend, bind) = names(&log.frontend);
            emit(log, counters, now, |out| {
                let e = format::ConnError {
                    client,
                    date_ms: accepted,
                    frontend,
                    bind,
                    message,
                };
                match log.settings.format {
                    LogFormat::HttpLog => format::conn_error(out, &e),
                    LogFormat::Json => format::conn_error_json(out, &e),
                }
            });
        }
    }
}

/// A frontend's name and its bind's as HAProxy logs them: the converter
/// names a proxy's second `bind` `NAME:2`, and HAProxy numbers its binds
/// from 1.
fn names(logged: &str) -> (&str, &str) {
    let name = logged.trim_end_matches('~');
    match name.rsplit_once(':') {
        Some((f, n)) if !f.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (f, n)
        }
        _ => (name, "1"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bind_names() {
        assert_eq!(super::names("web~"), ("web", "1"));
        assert_eq!(super::names("web:2~"), ("web", "2"));
        assert_eq!(super::names("a:b"), ("a:b", "1"));
    }
}
