//! The CLI's side of the admin API.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode, body::Bytes};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the balancer daemon at {path} ({hint})")]
    Connect {
        path: PathBuf,
        /// What to do, by the cause (see [`connect_hint`]).
        hint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin API: {0}")]
    Http(String),
    #[error("{0}")]
    Api(String),
}

/// What to do when the admin socket at `path` cannot be reached: a
/// daemon that runs but whose socket this user may not open is not
/// "not running".
fn connect_hint(path: &Path, e: &std::io::Error) -> String {
    use std::os::unix::fs::MetadataExt as _;
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => match std::fs::metadata(path) {
            Ok(m) => format!(
                "a daemon runs there, but the socket is uid {}'s with mode {:o}: run the CLI \
                 as root or as that user",
                m.uid(),
                m.mode() & 0o777
            ),
            Err(_) => "its directory may not be read by this user: run the CLI as root".into(),
        },
        std::io::ErrorKind::NotFound => {
            "no socket there: is `balancer run` running, with this admin socket? --socket names \
             another"
                .into()
        }
        std::io::ErrorKind::ConnectionRefused => {
            "nothing listens on it: the daemon that made it has stopped".into()
        }
        _ => "is `balancer run` running, with this admin socket?".into(),
    }
}

/// One request; the JSON answer, or the API's error message.
pub async fn request(
    socket: &Path,
    method: Method,
    path_and_query: &str,
    body: Option<Value>,
) -> Result<Value, ClientError> {
    let bytes = request_bytes(socket, method, path_and_query, body).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Http(format!("answer is not JSON: {e}")))
}

/// One request; the answer's bytes (JSON, not parsed), or the API's error
/// message: for answers too large to hold as a `serde_json::Value` (about
/// 1 KB per stick-table entry), which the caller parses into its own types.
pub async fn request_bytes(
    socket: &Path,
    method: Method,
    path_and_query: &str,
    body: Option<Value>,
) -> Result<Bytes, ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_owned(),
            hint: connect_hint(socket, &source),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(hyper::header::HOST, "balancer")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    conn.abort();
    if status != StatusCode::OK {
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Http(format!("answer is not JSON: {e}")))?;
        let msg = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        return Err(ClientError::Api(msg.to_owned()));
    }
    Ok(bytes)
}
