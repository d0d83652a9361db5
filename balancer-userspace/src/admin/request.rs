//! The admin API's requests, typed: [`decode`] turns a request's method,
//! path, query and body into an [`AdminRequest`] before the controller is
//! locked, so a malformed request is refused without touching it, and the
//! decoding can be tested (and fuzzed) on its own. The CLI writes its query
//! strings with [`query_string`], the inverse of [`parse_query`].

use std::{collections::BTreeMap, net::IpAddr};

use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::{
    config::{AdminState, parse_server_address},
    control::NewServer,
};

/// A refused request: the status and the message of the answer.
pub type Refusal = (StatusCode, String);

/// One request of the table in the [module doc](super).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    /// `GET /v1/status`
    Status,
    /// `GET /v1/backends`
    Backends,
    /// `POST /v1/backends`
    AddServer(NewServer),
    /// `DELETE /v1/backends?server=NAME`
    RemoveServer { server: String },
    /// `PUT /v1/backends/state`
    SetState { server: String, state: AdminState },
    /// `PUT /v1/backends/weight`
    SetWeight { server: String, weight: u32 },
    /// `GET /v1/stats`
    Stats,
    /// `GET /v1/table`
    TableShow(TableSelect),
    /// `GET /v1/table/count`
    TableCount { frontend: Option<String> },
    /// `PUT /v1/table`
    TableSet {
        frontend: String,
        client: IpAddr,
        server: String,
    },
    /// `DELETE /v1/table`
    TableClear(TableSelect),
    /// `GET /v1/peers`
    Peers,
}

/// The stick entries `table show` and `table clear` act on: those of one
/// frontend, of one client, or both (neither: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSelect {
    pub frontend: Option<String>,
    pub client: Option<IpAddr>,
}

/// Decode one request; `body` is empty or JSON (anything else is refused,
/// whatever the endpoint).
pub fn decode(
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<AdminRequest, Refusal> {
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|e| bad(format!("request body is not JSON: {e}")))?
    };
    let query = parse_query(query);
    Ok(match (method, path) {
        (&Method::GET, "/v1/status") => AdminRequest::Status,
        (&Method::GET, "/v1/backends") => AdminRequest::Backends,
        (&Method::POST, "/v1/backends") => AdminRequest::AddServer(new_server(&body)?),
        (&Method::DELETE, "/v1/backends") => AdminRequest::RemoveServer {
            server: query
                .get("server")
                .cloned()
                .ok_or_else(|| bad("missing query parameter \"server\""))?,
        },
        (&Method::PUT, "/v1/backends/state") => {
            let server = str_field(&body, "server")?.to_owned();
            let state = str_field(&body, "state")?;
            let state = AdminState::parse(state)
                .ok_or_else(|| bad(format!("state {state:?}: want up, drain, down or maint")))?;
            AdminRequest::SetState { server, state }
        }
        (&Method::PUT, "/v1/backends/weight") => {
            let server = str_field(&body, "server")?.to_owned();
            let weight = body
                .get("weight")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("missing integer field \"weight\""))?;
            if weight > 256 {
                return Err(bad(format!("weight {weight}: at most 256")));
            }
            AdminRequest::SetWeight {
                server,
                weight: weight as u32,
            }
        }
        (&Method::GET, "/v1/stats") => AdminRequest::Stats,
        (&Method::GET, "/v1/table") => AdminRequest::TableShow(select(&query)?),
        (&Method::GET, "/v1/table/count") => AdminRequest::TableCount {
            frontend: query.get("frontend").cloned(),
        },
        (&Method::PUT, "/v1/table") => AdminRequest::TableSet {
            frontend: str_field(&body, "frontend")?.to_owned(),
            client: str_field(&body, "client")?
                .parse()
                .map_err(|_| bad("client is not an IP address"))?,
            server: str_field(&body, "server")?.to_owned(),
        },
        (&Method::DELETE, "/v1/table") => {
            let s = select(&query)?;
            let all = match query.get("all").map(String::as_str) {
                None => false,
                Some("1" | "true") => true,
                Some(v) => return Err(bad(format!("all={v:?}: 1 or true"))),
            };
            match (s.frontend.is_some() || s.client.is_some(), all) {
                (false, false) => {
                    return Err(bad(
                        "say which entries to delete: frontend=NAME, client=ADDR, or all=1 for \
                         every frontend's",
                    ));
                }
                (true, true) => {
                    return Err(bad(
                        "all=1 deletes every entry: not with frontend= or client=",
                    ));
                }
                _ => {}
            }
            AdminRequest::TableClear(s)
        }
        (&Method::GET, "/v1/peers") => AdminRequest::Peers,
        _ => {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {method} {path}"),
            ));
        }
    })
}

/// `POST /v1/backends`'s body; the first problem found is the one reported
/// (the address first, the names last).
fn new_server(body: &Value) -> Result<NewServer, Refusal> {
    let address = str_field(body, "address")?;
    let (address, port) = parse_server_address(address).ok_or_else(|| {
        bad(format!(
            "address {address:?} is not an IP address (or IP:PORT for HTTP servers); the admin \
             API takes no host names (a name in the configuration file is looked up at start \
             and reload)"
        ))
    })?;
    let cookie = match body.get("cookie") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .filter(|c| {
                    !c.is_empty()
                        && c.bytes()
                            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
                })
                .ok_or_else(|| bad("\"cookie\" must be a non-empty token"))?
                .to_owned(),
        ),
    };
    let weight = match body.get("weight") {
        None | Some(Value::Null) => 1,
        Some(w) => w
            .as_u64()
            .and_then(|w| u32::try_from(w).ok())
            .ok_or_else(|| bad("\"weight\" must be an integer from 0 to 256"))?,
    };
    let state = match body.get("state") {
        None | Some(Value::Null) => AdminState::Up,
        Some(v) => {
            let st = v.as_str().unwrap_or_default();
            AdminState::parse(st)
                .ok_or_else(|| bad(format!("state {v}: want up, drain, down or maint")))?
        }
    };
    let check = match body.get("check") {
        None | Some(Value::Null) => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad("\"check\" must be true or false"))?,
    };
    Ok(NewServer {
        backend: str_field(body, "backend")?.to_owned(),
        name: str_field(body, "server")?.to_owned(),
        address,
        port,
        cookie,
        weight,
        state,
        check,
    })
}

fn select(query: &BTreeMap<String, String>) -> Result<TableSelect, Refusal> {
    let client = match query.get("client") {
        Some(a) => Some(
            a.parse::<IpAddr>()
                .map_err(|_| bad(format!("client {a:?} is not an IP address")))?,
        ),
        None => None,
    };
    Ok(TableSelect {
        frontend: query.get("frontend").cloned(),
        client,
    })
}

pub(super) fn bad(msg: impl Into<String>) -> Refusal {
    (StatusCode::BAD_REQUEST, msg.into())
}

fn str_field<'a>(body: &'a Value, key: &str) -> Result<&'a str, Refusal> {
    body.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("missing string field {key:?}")))
}

/// `?k=v&...` for the pairs that have a value ("" if none has), every byte
/// but RFC 3986's unreserved ones percent-encoded: names may hold `&`, `=`,
/// `%` or `:` (an IPv6 client).
pub fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut out = String::new();
    for (key, value) in pairs {
        let Some(value) = value else { continue };
        out.push(if out.is_empty() { '?' } else { '&' });
        percent_encode(key, &mut out);
        out.push('=');
        percent_encode(value, &mut out);
    }
    out
}

fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A query string's `key=value` pairs, percent-decoded (a `%` not followed
/// by two hex digits stays as it is; bytes that are not UTF-8 become
/// U+FFFD). A pair without `=` is ignored; of a repeated key, the last wins.
pub fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_round_trip_names_with_delimiters() {
        let names = ["web", "a&b=c", "100%3A", "2001:db8::1", "é x+y", ""];
        for name in names {
            let q = query_string(&[("frontend", Some(name)), ("client", None)]);
            let parsed = parse_query(q.strip_prefix('?').unwrap());
            assert_eq!(
                parsed.get("frontend").map(String::as_str),
                Some(name),
                "{q}"
            );
            assert_eq!(parsed.len(), 1);
        }
        assert_eq!(query_string(&[("server", None)]), "");
        assert_eq!(
            query_string(&[("frontend", Some("web")), ("client", Some("::1"))]),
            "?frontend=web&client=%3A%3A1"
        );
    }

    #[test]
    fn what_older_clients_sent_still_decodes() {
        // Before query_string, the CLI escaped ':' only, as %3A.
        let q = parse_query("frontend=web&client=2001%3adb8%3A%3A1&bare&%zz=%4");
        assert_eq!(q["client"], "2001:db8::1");
        assert_eq!(q["frontend"], "web");
        assert_eq!(q["%zz"], "%4");
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn decoding_refuses_before_the_controller_is_asked() {
        let d = |m: Method, p: &str, q: &str, b: &str| decode(&m, p, q, b.as_bytes());
        assert_eq!(
            d(Method::GET, "/v1/status", "", ""),
            Ok(AdminRequest::Status)
        );
        assert_eq!(d(Method::GET, "/v1/nope", "", "").unwrap_err().0, 404);
        assert_eq!(d(Method::GET, "/v1/status", "", "{").unwrap_err().0, 400);
        assert_eq!(
            d(
                Method::PUT,
                "/v1/backends/weight",
                "",
                r#"{"server":"a","weight":257}"#
            )
            .unwrap_err()
            .1,
            "weight 257: at most 256"
        );
        // Every entry only when asked for by name.
        assert!(
            d(Method::DELETE, "/v1/table", "", "")
                .unwrap_err()
                .1
                .contains("all=1")
        );
        assert_eq!(
            d(Method::DELETE, "/v1/table", "all=1", ""),
            Ok(AdminRequest::TableClear(TableSelect {
                frontend: None,
                client: None,
            }))
        );
        assert!(d(Method::DELETE, "/v1/table", "all=1&frontend=web", "").is_err());
        assert_eq!(
            d(Method::DELETE, "/v1/table", "client=%3A%3A1", ""),
            Ok(AdminRequest::TableClear(TableSelect {
                frontend: None,
                client: Some("::1".parse().unwrap()),
            }))
        );
        let add = r#"{"backend":"b","server":"s","address":"198.18.0.1:80","cookie":"c1"}"#;
        match d(Method::POST, "/v1/backends", "", add) {
            Ok(AdminRequest::AddServer(s)) => {
                assert_eq!((s.port, s.weight, s.state), (Some(80), 1, AdminState::Up));
                assert_eq!(s.cookie.as_deref(), Some("c1"));
            }
            other => panic!("{other:?}"),
        }
    }
}
