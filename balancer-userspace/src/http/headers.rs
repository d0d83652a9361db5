//! What the proxy changes in the messages it forwards, cookies apart
//! (`cookie/`): hop-by-hop fields dropped (RFC 9110 7.6.1), `Upgrade` kept
//! for a protocol switch the client asked for, the request put in origin
//! form for HTTP/1.1, `X-Forwarded-For` extended and, with `option
//! forwarded`, an RFC 7239 `Forwarded` element appended; an HTTP/2
//! request's `cookie` fields joined into one.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers of RFC 9110 7.6.1 (and the old `Proxy-Connection`),
/// `Upgrade` apart.
fn is_hop_by_hop(n: &HeaderName) -> bool {
    n == header::CONNECTION
        || n == header::TE
        || n == header::TRAILER
        || n == header::TRANSFER_ENCODING
        || n == KEEP_ALIVE
        || n == PROXY_CONNECTION
}

/// Headers that describe one hop and are not forwarded (RFC 9110 7.6.1),
/// plus those named in `Connection`.
pub(super) fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none: one pass over the names, no lookups.
    if !h
        .keys()
        .any(|n| is_hop_by_hop(n) || (!keep_upgrade && n == header::UPGRADE))
    {
        return;
    }
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for n in named {
        if keep_upgrade && n == "upgrade" {
            continue;
        }
        h.remove(n.as_str());
    }
    for n in [
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
    ] {
        h.remove(n);
    }
    if !keep_upgrade {
        h.remove(header::UPGRADE);
    }
}

/// Whether a request asks to switch protocols (WebSocket...). An upgrade
/// to `h2c` (HTTP/2 over cleartext) is not one: the proxy speaks HTTP/1.1
/// to its servers and would turn the connection into an opaque tunnel, so
/// `Upgrade: h2c` is dropped with the other hop-by-hop fields and the
/// request goes on as HTTP/1.1.
pub(super) fn is_upgrade(h: &HeaderMap) -> bool {
    let tokens = |name| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    // Most requests have no Upgrade: one lookup.
    h.contains_key(header::UPGRADE)
        && tokens(header::UPGRADE).any(|p| !p.is_empty() && !p.eq_ignore_ascii_case("h2c"))
        && tokens(header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// Replace several `cookie` fields by one, their values joined with "; ".
pub(super) fn join_cookie_fields(h: &mut HeaderMap) {
    if h.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for v in h.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(header::COOKIE, v);
    }
}

/// The request to send to a server: same method, path and headers minus
/// hop-by-hop ones, `X-Forwarded-For` extended, HTTP/1.1 in origin form.
/// The request's host, as RFC 9112 3.2 has it: an HTTP/1.1 request needs
/// one `Host` field, and no request may have two (`Err`: answer 400); a
/// request-target with an authority (absolute-form, HTTP/2's
/// `:authority`) names the host, whatever `Host` said, so `Host` becomes
/// that authority (without user info).
pub(super) fn settle_host<B>(req: &mut Request<B>) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let any = hosts.next().is_some();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let authority = req.uri().authority().and_then(|a| {
        let host = a.as_str().rsplit('@').next()?;
        HeaderValue::from_str(host).ok()
    });
    if let Some(v) = authority {
        req.headers_mut().insert(header::HOST, v);
        return Ok(());
    }
    if !any && req.version() == http::Version::HTTP_11 {
        return Err("no Host header");
    }
    Ok(())
}

/// What a client connection tells its servers of its client, worked out
/// once per connection.
#[derive(Debug, Clone)]
pub(super) struct ClientSide {
    pub addr: IpAddr,
    /// `addr` as `X-Forwarded-For` carries it.
    pub ip: HeaderValue,
    /// The connection is TLS (`https`).
    pub tls: bool,
    /// With the frontend's `forwarded_proto`: the port the client reached,
    /// for `X-Forwarded-Port` (and `X-Forwarded-Proto` is set).
    pub port: Option<HeaderValue>,
    /// The connection's ends (from its PROXY header, if it had one).
    pub ends: super::pp::Ends,
    /// Its own server connections (`send_proxy`), made on first use.
    pub private: std::sync::OnceLock<std::sync::Arc<super::upstream::Private>>,
}

impl ClientSide {
    pub fn new(ends: super::pp::Ends, tls: bool, forwarded_proto: bool) -> ClientSide {
        let addr = ends.client.ip();
        ClientSide {
            ends,
            private: std::sync::OnceLock::new(),
            addr,
            ip: HeaderValue::from_str(&addr.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            tls,
            port: forwarded_proto.then(|| HeaderValue::from(ends.local.port())),
        }
    }

    fn proto(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// The client's request head `parts` made the server's, in place (a new
/// request would be one more copy of the head per request): origin-form
/// target, HTTP/1.1, no hop-by-hop fields, the forwarding headers added.
pub(super) fn upstream_request(
    parts: &mut http::request::Parts,
    side: &ClientSide,
    upgrade: bool,
    forwarded: bool,
    x_forwarded_for: bool,
) {
    let (client_ip, client) = (&side.ip, side.addr);
    let http::request::Parts {
        uri,
        headers,
        version,
        extensions,
        ..
    } = parts;
    // What hyper attached to the client's request is not the server's.
    extensions.clear();
    *version = http::Version::HTTP_11;
    // `content-length` stays: upstream/codec.rs frames the body itself and writes
    // neither the client's length nor its transfer-encoding.
    strip_hop_by_hop(headers, upgrade);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if !headers.contains_key(header::HOST)
        && let Some(a) = uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        headers.insert(header::HOST, v);
    }
    // Origin form: the target's path and query only.
    if uri.scheme().is_some() || uri.authority().is_some() {
        *uri = match uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
    }
    let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        _ if !x_forwarded_for => None,
        Some(prev) if !prev.trim().is_empty() => {
            HeaderValue::from_str(&format!("{prev}, {client}")).ok()
        }
        _ => Some(client_ip.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if let Some(port) = &side.port {
        // As HAProxy's `http-request set-header`: replaced, not appended.
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(side.proto()));
        headers.insert(X_FORWARDED_PORT, port.clone());
    }
    if forwarded {
        // RFC 7239: IPv6 addresses quoted in brackets; appended to any
        // elements already there.
        let node = match client {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("\"[{a}]\""),
        };
        let mut element = format!("for={node};proto={}", side.proto());
        if let Some(h) = headers.get(header::HOST).and_then(|h| h.to_str().ok())
            && h.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            element.push_str(&format!(";host=\"{h}\""));
        }
        let value = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {element}"),
            _ => element,
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(header::FORWARDED, v);
        }
    }
}

/// HAProxy's `redirect scheme https`: `Location: https://` and the
/// request's `Host` and target (as HAProxy, an empty host when the request
/// has none), no body.
pub(super) fn redirect_https<B, R>(code: u16, req: &Request<B>, body: R) -> http::Response<R> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut r = http::Response::new(body);
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{target}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side() -> ClientSide {
        let ends = super::super::pp::Ends {
            client: "198.18.0.7:40000".parse().unwrap(),
            local: "198.18.0.1:80".parse().unwrap(),
        };
        ClientSide::new(ends, false, false)
    }

    /// An HTTP/2 request (absolute target, no Host) becomes an HTTP/1.1
    /// request in origin form with the target's authority as its Host,
    /// without hop-by-hop fields, with the client in X-Forwarded-For, and
    /// without what hyper attached to the client's request.
    #[test]
    fn the_server_gets_an_origin_form_http11_head() {
        let (mut parts, ()) = Request::builder()
            .version(http::Version::HTTP_2)
            .uri("http://app.example:8080/a/b?c=d")
            .header("te", "trailers")
            .header("x-forwarded-for", "198.18.0.9")
            .extension(7u32)
            .body(())
            .unwrap()
            .into_parts();
        upstream_request(&mut parts, &side(), false, false, true);
        assert_eq!(parts.version, http::Version::HTTP_11);
        assert_eq!(parts.uri.to_string(), "/a/b?c=d");
        assert_eq!(parts.headers["host"], "app.example:8080");
        assert!(!parts.headers.contains_key("te"));
        assert_eq!(parts.headers["x-forwarded-for"], "198.18.0.9, 198.18.0.7");
        assert!(parts.extensions.get::<u32>().is_none());
    }

    /// A request already in origin form keeps its target and its Host.
    #[test]
    fn an_origin_form_target_is_kept() {
        let (mut parts, ()) = Request::builder()
            .uri("/x?y")
            .header("host", "h.example")
            .body(())
            .unwrap()
            .into_parts();
        upstream_request(&mut parts, &side(), false, false, false);
        assert_eq!(parts.uri.to_string(), "/x?y");
        assert_eq!(parts.headers["host"], "h.example");
        assert!(!parts.headers.contains_key("x-forwarded-for"));
    }
}
