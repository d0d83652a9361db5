//! The cookie editors: `cookie_request` (the `Cookie` editor) and
//! `cookie_response` (the `Set-Cookie` editor, after a request through the
//! first). Input: lines (`\n`-separated), see each function.

use http::{
    HeaderMap, HeaderName, HeaderValue, Method,
    header::{CACHE_CONTROL, COOKIE, SET_COOKIE},
};

use super::{lines, number, text};
use crate::{
    config::cookie::{CookieConfig, CookieMode},
    http::cookie::{Persist, process_request, process_response},
};

/// A Unix time divisible by 4 (the default `now`).
const NOW: u64 = 1_700_000_000;
/// Used when the input's first line is not a valid `cookie` line.
const DEFAULT_CONFIG: &str = "SRV insert indirect nocache";

/// The `cookie` keyword's arguments.
fn config(line: Option<&[u8]>) -> CookieConfig {
    CookieConfig::parse(text(line))
        .unwrap_or_else(|_| CookieConfig::parse(DEFAULT_CONFIG).expect("the default is valid"))
}

/// Server cookie values, space-separated; `-`: a server without one.
fn values(line: Option<&[u8]>) -> Vec<Option<&str>> {
    text(line)
        .split(' ')
        .take(8)
        .map(|v| (v != "-").then_some(v))
        .collect()
}

/// No byte that could end or split a header line.
fn assert_clean(name: &HeaderName, value: &HeaderValue) {
    assert!(
        !value
            .as_bytes()
            .iter()
            .any(|b| matches!(b, b'\r' | b'\n' | 0)),
        "{name}: {value:?} holds CR, LF or NUL"
    );
}

/// What [`Persist`] may say: the first server whose value is the cookie's,
/// never an empty value or a server without one.
fn check_persist(p: &Persist, values: &[Option<&str>]) {
    if let Some(i) = p.server {
        let v = values.get(i).copied().flatten();
        assert!(
            v.is_some_and(|v| !v.is_empty()),
            "server {i} ({v:?}) chosen"
        );
        assert_eq!(p.value.as_deref(), v);
        assert_eq!(
            values.iter().position(|x| *x == v),
            Some(i),
            "not the first"
        );
        assert!(p.seen);
    }
}

/// Lines: the `cookie` arguments; the server values; `now` (Unix seconds);
/// then one `Cookie` header value a line.
///
/// Asserts: the persistence verdict names a server with that value; the
/// headers stay clean and never grow; other headers are untouched; with
/// `insert indirect` no persistence cookie reaches the server; the edit is
/// idempotent (but in `prefix` mode, where `a~b~c` loses one prefix a pass).
pub fn cookie_request(data: &[u8]) {
    let mut lines = lines(data);
    let cfg = config(lines.next());
    let values = values(lines.next());
    let now = number(lines.next()).unwrap_or(NOW);
    let host = HeaderValue::from_static("example.com");
    let mut headers = HeaderMap::new();
    headers.insert("host", host.clone());
    let mut before = 0;
    for v in lines.filter_map(|l| HeaderValue::from_bytes(l).ok()) {
        before += v.len();
        headers.append(COOKIE, v);
    }
    let persist = process_request(&cfg, &mut headers, &values, now);
    check_persist(&persist, &values);
    assert_eq!(headers.get("host"), Some(&host));
    let mut after = 0;
    for v in headers.get_all(COOKIE) {
        assert_clean(&COOKIE, v);
        after += v.len();
    }
    assert!(
        after <= before,
        "the Cookie headers grew: {before} -> {after} bytes"
    );

    let mut again = headers.clone();
    let second = process_request(&cfg, &mut again, &values, now);
    let strips = cfg.mode == CookieMode::Insert && cfg.indirect;
    if strips {
        assert!(!second.seen, "insert indirect forwarded {headers:?}");
    }
    if cfg.mode != CookieMode::Prefix {
        assert_eq!(again, headers, "a second pass edited the headers again");
    }
    if !strips && cfg.mode != CookieMode::Prefix {
        assert_eq!(second, persist, "the edit changed the verdict");
    }
}

/// `METHOD STATUS CHOSEN`: the request's method, the response's status,
/// the index (into the values) of the server that answered (none: a server
/// without a cookie value).
fn exchange(line: Option<&[u8]>) -> (Method, u16, Option<usize>) {
    let mut words = text(line).split(' ');
    let method = words
        .next()
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(Method::GET);
    let status = words.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let chosen = words.next().and_then(|s| s.parse().ok());
    (method, status, chosen)
}

/// A `name: value` line as a header, if it is one.
fn field(line: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = HeaderName::from_bytes(line[..colon].trim_ascii()).ok()?;
    let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
    Some((name, value))
}

/// A cookie name or value the request side reads back as it was written.
fn plain_token(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('$')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Lines: the `cookie` arguments; `METHOD STATUS CHOSEN` (see
/// [`exchange`]); the server values; `now`; the client's `Cookie` header
/// (through [`process_request`] first, as in a transaction); then the
/// server's response headers, `name: value` a line.
///
/// Asserts: every header stays clean; headers other than `Set-Cookie`,
/// `Set-Cookie2` and `Cache-Control` are untouched, and `Cache-Control` only
/// gains one `private`; on a response that set no cookie itself, at most one
/// is inserted, only in `insert` mode, always when the client named no
/// server and the mode allows it, and a client sending it back is sent to
/// the server that answered.
pub fn cookie_response(data: &[u8]) {
    let mut lines = lines(data);
    let cfg = config(lines.next());
    let (method, status, chosen) = exchange(lines.next());
    let values = values(lines.next());
    let now = number(lines.next()).unwrap_or(NOW);
    let mut request = HeaderMap::new();
    if let Some(Ok(v)) = lines.next().map(HeaderValue::from_bytes) {
        request.append(COOKIE, v);
    }
    let persist = process_request(&cfg, &mut request, &values, now);
    let chosen = chosen.and_then(|i| values.get(i).copied().flatten());
    let mut resp = HeaderMap::new();
    for (name, value) in lines.filter_map(field) {
        resp.append(name, value);
    }
    let before = resp.clone();
    process_response(&cfg, &mut resp, status, &method, chosen, &persist, now);

    let set_cookie2 = HeaderName::from_static("set-cookie2");
    let edited = [&SET_COOKIE, &set_cookie2, &CACHE_CONTROL];
    for (name, value) in &resp {
        assert_clean(name, value);
    }
    for name in before.keys().chain(resp.keys()) {
        if !edited.contains(&name) {
            let was: Vec<_> = before.get_all(name).iter().collect();
            let is: Vec<_> = resp.get_all(name).iter().collect();
            assert_eq!(was, is, "{name} changed");
        }
    }
    let cc_before: Vec<_> = before.get_all(CACHE_CONTROL).iter().collect();
    let cc_after: Vec<_> = resp.get_all(CACHE_CONTROL).iter().collect();
    assert!(cc_after.starts_with(&cc_before), "Cache-Control edited");
    assert!(cc_after.len() <= cc_before.len() + 1);
    if cc_after.len() > cc_before.len() {
        assert_eq!(cc_after.last().map(|v| v.as_bytes()), Some(&b"private"[..]));
    }

    if before.contains_key(SET_COOKIE) || before.contains_key(&set_cookie2) {
        return;
    }
    assert!(!resp.contains_key(&set_cookie2));
    let inserted: Vec<_> = resp.get_all(SET_COOKIE).iter().collect();
    assert!(inserted.len() <= 1, "{inserted:?}");
    let interim = status < 200 && status != 101;
    let wanted = cfg.mode == CookieMode::Insert
        && !interim
        && (!cfg.postonly || method == Method::POST)
        && persist.server.is_none()
        && chosen.is_some_and(|v| HeaderValue::from_str(&format!("{}={v}", cfg.name)).is_ok());
    if wanted {
        assert_eq!(inserted.len(), 1, "a new client got no cookie");
    }
    let Some(cookie) = inserted.first() else {
        return;
    };
    assert_eq!(cfg.mode, CookieMode::Insert, "inserted outside insert mode");
    assert!(
        cookie
            .as_bytes()
            .starts_with(format!("{}=", cfg.name).as_bytes())
    );
    let Some(v) = chosen else {
        return;
    };
    // Sent back at once, the cookie names the server that answered (but a
    // `maxlife` the client's old first date has used up).
    let old_first = cfg.maxlife.is_some() && persist.first.is_some();
    if plain_token(&cfg.name) && plain_token(v) && now < 1 << 32 && !old_first {
        let pair = cookie
            .as_bytes()
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default();
        let mut back = HeaderMap::new();
        back.insert(
            COOKIE,
            HeaderValue::from_bytes(pair).expect("part of a header"),
        );
        let p = process_request(&cfg, &mut back, &values, now);
        let expected = values.iter().position(|x| *x == Some(v));
        assert_eq!(
            p.server, expected,
            "the inserted {cookie:?} does not lead back"
        );
    }
}
