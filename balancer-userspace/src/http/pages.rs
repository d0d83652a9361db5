//! The proxy's own error answers, as HAProxy 2.6 writes them (its built-in
//! error pages: same status line, fields and body), so that clients and
//! access logs see the same thing behind either.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::ProxyBody;

/// HAProxy's page for `status`, if it has one.
fn page(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => {
            "<html><body><h1>400 Bad request</h1>\nYour browser sent an invalid request.\n</body></html>\n"
        }
        408 => {
            "<html><body><h1>408 Request Time-out</h1>\nYour browser didn't send a complete request in time.\n</body></html>\n"
        }
        500 => {
            "<html><body><h1>500 Internal Server Error</h1>\nAn internal server error occurred.\n</body></html>\n"
        }
        502 => {
            "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an invalid or incomplete response.\n</body></html>\n"
        }
        503 => {
            "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n"
        }
        504 => {
            "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't respond in time.\n</body></html>\n"
        }
        _ => return None,
    })
}

/// The answer with `status`: HAProxy's page, or `msg` as plain text for a
/// status HAProxy has none for.
pub(super) fn error(status: StatusCode, msg: &str) -> Response<ProxyBody> {
    let (body, kind) = match page(status.as_u16()) {
        Some(p) => (Bytes::from_static(p.as_bytes()), "text/html"),
        None => (Bytes::from(format!("{msg}\n")), "text/plain; charset=utf-8"),
    };
    let mut r = Response::new(ProxyBody::full(body.clone()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    let reason = super::log::reason(status);
    if Some(reason) != status.canonical_reason() {
        r.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(reason.as_bytes()));
    }
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn lengths_as_haproxy_sends_them() {
        // Content-Length of HAProxy 2.6's 503 and 504 pages.
        assert_eq!(super::page(503).unwrap().len(), 107);
        assert_eq!(super::page(504).unwrap().len(), 92);
        assert_eq!(super::page(400).unwrap().len(), 90);
    }

    #[test]
    fn raw_pages_are_the_pages() {
        use crate::http::conn::{RAW_400, REQUEST_TIMEOUT};
        for (raw, status) in [(RAW_400, 400), (REQUEST_TIMEOUT, 408)] {
            let text = std::str::from_utf8(raw).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert_eq!(body, super::page(status).unwrap());
            assert!(head.contains(&format!("Content-length: {}\r\n", body.len())));
            let reason = super::super::log::reason(http::StatusCode::from_u16(status).unwrap());
            assert!(head.starts_with(&format!("HTTP/1.1 {status} {reason}\r\n")));
        }
    }
}
