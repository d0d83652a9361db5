//! The admin API: JSON over HTTP/1.1 on a Unix socket (mode 0600), served
//! by hyper. The CLI (`balancer backend|table|stats|status`) is its client.
//!
//! | method | path | body / query | answer |
//! |---|---|---|---|
//! | GET | `/v1/status` | | frontends, servers, stick entries |
//! | GET | `/v1/backends` | | every server with state, next hop, counters |
//! | POST | `/v1/backends` | `{"backend": B, "server": NAME, "address": IP, "weight": N, "state": S, "check": BOOL}` (the last three optional) | the new server (409 if the name exists) |
//! | DELETE | `/v1/backends` | `?server=NAME` | the removed server |
//! | PUT | `/v1/backends/state` | `{"server": NAME, "state": "up"\|"drain"\|"down"\|"maint"}` | the server |
//! | PUT | `/v1/backends/weight` | `{"server": NAME, "weight": N}` | the server |
//! | GET | `/v1/stats` | | packet classes and per-frontend counters; `http`: the HTTP proxy's counters per frontend and per `backend/server` |
//! | GET | `/v1/table` | `?frontend=F&client=ADDR` (both optional) | stick entries |
//! | GET | `/v1/table/count` | `?frontend=F` (optional) | `{"entries": N}` |
//! | PUT | `/v1/table` | `{"frontend": F, "client": ADDR, "server": NAME}` | the entry |
//! | DELETE | `/v1/table` | `?frontend=F&client=ADDR` (both optional) | `{"removed": N}` |
//! | GET | `/v1/peers` | | peers section, each peer's link state and counters |
//!
//! Errors answer 400 (bad request), 404 (unknown name) or 500, with
//! `{"error": "..."}`. Query values are percent-encoded; [`request`]
//! decodes every request before the controller is locked.

pub mod client;
pub mod listing;
pub mod request;
mod table;

use std::{
    collections::BTreeMap,
    convert::Infallible,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use balancer_common::{maps::VipStats, stats::Class};
use http_body_util::{BodyExt as _, Either, Full};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use log::debug;
use serde_json::{Value, json};
use tokio::net::UnixListener;

use self::request::{AdminRequest, Refusal};
use crate::{
    api,
    config::Mode,
    control::{ControlError, Controller, Shared},
    util::{ControlAccept, control_http1},
};

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Bind the socket (replacing a stale one, refusing a live one) with mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, AdminError> {
    let err = |source| AdminError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another balancer answers on it",
            )));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    // Created 0600 (umask 0177 while it is made), not chmod-ed afterwards:
    // there is no moment in which another user could connect. The umask is
    // the process's: nothing else creates files while the daemon starts.
    // SAFETY: umask has no preconditions.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(err)?;
    // Also when the umask was stricter than asked (a no-op otherwise).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// What `GET /v1/peers` answers, from the running peers (the daemon hands
/// it over when the configuration has a peers section).
pub type PeersStatus = Arc<dyn Fn() -> crate::api::PeersStatus + Send + Sync>;

/// Serve connections until the task is dropped.
pub async fn serve(
    listener: UnixListener,
    shared: Shared,
    peers: Option<PeersStatus>,
    raw: Option<RawCommand>,
) {
    let mut accept = ControlAccept::new("admin socket");
    loop {
        let (stream, slot) = accept.next(&listener).await;
        let shared = shared.clone();
        let peers = peers.clone();
        let raw = raw.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Some(raw) = raw
                && opens_with(&stream, raw.hello).await
            {
                // Read past the opening, then hand the connection over.
                let mut hello = vec![0u8; raw.hello.len()];
                let mut stream = stream;
                if tokio::io::AsyncReadExt::read_exact(&mut stream, &mut hello)
                    .await
                    .is_err()
                {
                    return;
                }
                let Ok(std) = stream.into_std() else { return };
                if std.set_nonblocking(false).is_ok() {
                    let _ = tokio::task::spawn_blocking(move || (raw.run)(std)).await;
                }
                return;
            }
            let svc = service_fn(move |req| handle(shared.clone(), peers.clone(), req));
            if let Err(e) = control_http1()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!("admin connection: {e}");
            }
        });
    }
}

/// A command spoken on the admin socket instead of HTTP by a connection
/// that opens with `hello` (the daemon's takeover): `run` gets the
/// connection (blocking) past those bytes.
#[derive(Clone)]
pub struct RawCommand {
    pub hello: &'static [u8],
    pub run: Arc<dyn Fn(std::os::unix::net::UnixStream) + Send + Sync>,
}

/// Whether the first bytes `stream` receives are `hello` (looked at
/// without reading them; false at the first byte that differs, at end of
/// file, or when they do not come within 5 s).
async fn opens_with(stream: &tokio::net::UnixStream, hello: &[u8]) -> bool {
    use std::os::fd::AsRawFd as _;
    let look = async {
        let mut buf = vec![0u8; hello.len()];
        loop {
            if stream.readable().await.is_err() {
                return false;
            }
            // SAFETY: `buf` is valid for `buf.len()` bytes; MSG_PEEK
            // leaves the data in the socket.
            let n = unsafe {
                libc::recv(
                    stream.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            match n {
                0 => return false,
                n if n < 0 => {
                    if std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock {
                        return false;
                    }
                }
                n => {
                    let n = n as usize;
                    if buf[..n] != hello[..n] {
                        return false;
                    }
                    if n == hello.len() {
                        return true;
                    }
                    // A prefix so far: the rest is on its way.
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), look)
        .await
        .unwrap_or(false)
}

type Answer = Result<Value, Refusal>;

/// Answers are whole JSON documents, but for `table show`'s, which is
/// written while the client reads it (`listing.rs`).
type AdminBody = Either<Full<Bytes>, listing::Listing>;

async fn handle(
    shared: Shared,
    peers: Option<PeersStatus>,
    req: Request<Incoming>,
) -> Result<Response<AdminBody>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let decoded = match read_body(req).await {
        Ok(body) => request::decode(&method, &path, &query, &body),
        Err(e) => Err(e),
    };
    let request = match decoded {
        Ok(r) => r,
        Err(e) => return Ok(reply(Err(e))),
    };
    let mut c = shared.lock().await;
    let answer = match request {
        AdminRequest::TableShow(select) => {
            return Ok(match table::show(&c, &select) {
                Ok(l) => json_response(StatusCode::OK, Either::Right(l)),
                Err(e) => reply(Err(e)),
            });
        }
        AdminRequest::Status => status(&c),
        AdminRequest::Backends => c.views().map(|v| json!(v)).map_err(internal),
        AdminRequest::AddServer(new) => c.add_server(new).await.map(|v| json!(v)).map_err(internal),
        AdminRequest::RemoveServer { server } => {
            c.remove_server(&server).map(|v| json!(v)).map_err(internal)
        }
        AdminRequest::SetState { server, state } => c
            .set_state(&server, state)
            .map(|v| json!(v))
            .map_err(internal),
        AdminRequest::SetWeight { server, weight } => c
            .set_weight(&server, weight)
            .map(|v| json!(v))
            .map_err(internal),
        AdminRequest::Stats => stats(&c),
        AdminRequest::TableCount { frontend } => table::count(&c, frontend.as_deref()),
        AdminRequest::TableSet {
            frontend,
            client,
            server,
        } => table::set(&mut c, &frontend, client, &server),
        AdminRequest::TableClear(select) => table::clear(&mut c, &select),
        AdminRequest::Peers => peers
            .as_ref()
            .map(|status| json!(status()))
            .ok_or_else(|| request::bad("no [peers] section in the configuration")),
    };
    Ok(reply(answer))
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Refusal> {
    Ok(http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("request body: {e}")))?
        .to_bytes())
}

fn reply(answer: Answer) -> Response<AdminBody> {
    let (status, body) = match answer {
        Ok(v) => (StatusCode::OK, v),
        Err((s, msg)) => (s, json!({ "error": msg })),
    };
    json_response(
        status,
        Either::Left(Full::new(Bytes::from(body.to_string()))),
    )
}

fn json_response(status: StatusCode, body: AdminBody) -> Response<AdminBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn internal(e: ControlError) -> Refusal {
    let status = match e {
        ControlError::UnknownServer(..)
        | ControlError::UnknownFrontend(..)
        | ControlError::NoStickTable(_)
        | ControlError::UnknownBackend(_) => StatusCode::NOT_FOUND,
        ControlError::AmbiguousServer(_) | ControlError::InvalidServer(_) => {
            StatusCode::BAD_REQUEST
        }
        ControlError::DuplicateServer { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, e.to_string())
}

fn status(c: &Controller) -> Answer {
    let entries = c.dp.stick_count(None).map_err(|e| internal(e.into()))?;
    let frontends = c
        .config
        .frontends
        .iter()
        .map(|f| {
            let b = &c.config.backends[f.backend];
            // An HTTP frontend: the proxy's protocol, and no XDP forwarding.
            let http = f.mode == crate::config::Mode::Http;
            let (proto, forward) = match (http, f.tls.is_some()) {
                (true, true) => ("https", "proxied"),
                (true, false) => ("http", "proxied"),
                (false, _) => (f.proto.as_str(), b.forward.as_str()),
            };
            api::FrontendStatus {
                name: f.name.clone(),
                bind: f.vip.to_string(),
                proto: proto.to_owned(),
                backend: b.name.clone(),
                forward: forward.to_owned(),
            }
        })
        .collect();
    Ok(json!(api::Status {
        interfaces: c.config.dataplane.interfaces.clone(),
        frontends,
        servers: c.servers.len(),
        stick_entries: entries,
        stick_capacity: c.dp.options().stick_size,
    }))
}

/// A frontend's XDP counters by name.
fn vip_counters(s: &VipStats) -> BTreeMap<String, u64> {
    [
        ("packets", s.packets),
        ("bytes", s.bytes),
        ("stick_hits", s.stick_hits),
        ("new_sticks", s.new_sticks),
        ("redispatches", s.redispatches),
        ("expired", s.expired),
        ("non_syn_misses", s.non_syn_misses),
        ("insert_capped", s.insert_capped),
        ("no_backend", s.no_backend),
        ("too_big", s.too_big),
        ("forward_failed", s.forward_failed),
        ("icmp_errors", s.icmp_errors),
        ("fragments", s.fragments),
        ("icmp_mismatched", s.icmp_mismatched),
        ("icmp_no_flow", s.icmp_no_flow),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect()
}

fn stats(c: &Controller) -> Answer {
    let packets = c.dp.stats().map_err(|e| internal(e.into()))?;
    let traffic = |t: balancer_common::stats::Counter| api::Traffic {
        packets: t.packets,
        bytes: t.bytes,
    };
    let mut out = api::Stats {
        classes: Class::ALL
            .iter()
            .map(|&class| (class.name().to_owned(), traffic(packets.get(class))))
            .collect(),
        total: traffic(packets.total()),
        ..Default::default()
    };
    for (f, &id) in c.config.frontends.iter().zip(&c.frontend_ids) {
        let s = c.dp.vip_stats(id).map_err(|e| internal(e.into()))?;
        out.frontends.insert(f.name.clone(), vip_counters(&s));
    }
    // The HTTP proxy's counters, of HTTP frontends and the servers of
    // HTTP backends.
    for f in c.config.frontends.iter().filter(|f| f.mode == Mode::Http) {
        let counters = c.http_stats.frontend(&f.name).view();
        out.http.frontends.insert(f.name.clone(), counters);
    }
    for s in c.http_servers() {
        let name = format!("{}/{}", s.backend, s.name);
        let mut view = c.http_stats.server(s.id).view();
        if let Some((current, queued)) = c.http_limits.gauges(s.id) {
            (view.current, view.queued) = (Some(current), Some(queued));
        }
        out.http.servers.insert(name, view);
    }
    Ok(json!(out))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[tokio::test]
    async fn the_socket_is_created_private_and_the_umask_restored() {
        let dir = std::env::temp_dir().join(format!("balancer-admin-umask-{}", std::process::id()));
        let path = dir.join("admin.sock");
        let _l = super::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // SAFETY: umask has no preconditions; set back at once.
        let now = unsafe { libc::umask(0o022) };
        unsafe { libc::umask(now) };
        assert_ne!(now, 0o177, "bind left the umask changed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
