//! The admin API's request decoder (`admin/request.rs`): `admin_request`.

use std::net::SocketAddr;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::text;
use crate::admin::request::{AdminRequest, TableSelect, decode, query_string};

/// `req` as the CLI sends it: method, path and query, body.
fn encode(req: &AdminRequest) -> (Method, String, Value) {
    let table = |s: &TableSelect| {
        let client = s.client.map(|c| c.to_string());
        query_string(&[
            ("frontend", s.frontend.as_deref()),
            ("client", client.as_deref()),
        ])
    };
    let get = |path: &str| (Method::GET, path.to_owned(), Value::Null);
    match req {
        AdminRequest::Status => get("/v1/status"),
        AdminRequest::Backends => get("/v1/backends"),
        AdminRequest::Stats => get("/v1/stats"),
        AdminRequest::Peers => get("/v1/peers"),
        AdminRequest::AddServer(s) => {
            let address = match s.port {
                None => s.address.to_string(),
                Some(p) => SocketAddr::new(s.address, p).to_string(),
            };
            let body = json!({"backend": s.backend, "server": s.name, "address": address,
                "cookie": s.cookie, "weight": s.weight, "state": s.state.as_str(),
                "check": s.check});
            (Method::POST, "/v1/backends".into(), body)
        }
        AdminRequest::RemoveServer { server } => {
            let q = query_string(&[("server", Some(server))]);
            (Method::DELETE, format!("/v1/backends{q}"), Value::Null)
        }
        AdminRequest::SetState { server, state } => {
            let body = json!({"server": server, "state": state.as_str()});
            (Method::PUT, "/v1/backends/state".into(), body)
        }
        AdminRequest::SetWeight { server, weight } => {
            let body = json!({"server": server, "weight": weight});
            (Method::PUT, "/v1/backends/weight".into(), body)
        }
        AdminRequest::TableShow(s) => (Method::GET, format!("/v1/table{}", table(s)), Value::Null),
        AdminRequest::TableCount { frontend } => {
            let q = query_string(&[("frontend", frontend.as_deref())]);
            (Method::GET, format!("/v1/table/count{q}"), Value::Null)
        }
        AdminRequest::TableSet {
            frontend,
            client,
            server,
        } => {
            let body =
                json!({"frontend": frontend, "client": client.to_string(), "server": server});
            (Method::PUT, "/v1/table".into(), body)
        }
        AdminRequest::TableClear(s) => (
            Method::DELETE,
            format!("/v1/table{}", table(s)),
            Value::Null,
        ),
    }
}

fn decode_target(method: &Method, target: &str, body: &[u8]) -> Result<AdminRequest, StatusCode> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    decode(method, path, query, body).map_err(|(status, msg)| {
        assert!(!msg.is_empty());
        status
    })
}

/// Input: a line `METHOD PATH[?QUERY]`, then the body.
///
/// Asserts: a refusal is a 400 or a 404 with a message; an accepted
/// request, sent again as the CLI sends it, decodes to the same request
/// (names holding `&`, `=`, `%` or `:` included).
pub fn admin_request(data: &[u8]) {
    let (line, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let line = text(Some(line));
    let (method, target) = line.split_once(' ').unwrap_or((line, ""));
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
    let req = match decode_target(&method, target, body) {
        Ok(req) => req,
        Err(status) => {
            assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND);
            return;
        }
    };
    let (method, target, body) = encode(&req);
    let body = match body {
        Value::Null => Vec::new(),
        b => b.to_string().into_bytes(),
    };
    assert_eq!(
        decode_target(&method, &target, &body),
        Ok(req),
        "sent as {method} {target} {}",
        String::from_utf8_lossy(&body)
    );
}
