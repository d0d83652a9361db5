//! The response side: the server's `Set-Cookie` headers through HAProxy
//! 2.6's `http_manage_server_side_cookies()` (`src/http_ana.c`: the
//! `Set-Cookie` / `Set-Cookie2` parser and the delete / rewrite / prefix
//! actions) and the cookie part of `http_process_res_common()` (when a
//! cookie is inserted, its exact spelling, and `nocache`); and HAProxy's
//! notion of a cacheable response (`http_wait_for_request()` /
//! `http_wait_for_response()` / `http_check_response_for_cacheability()`).

use std::iter;

use http::{
    HeaderMap, HeaderName, HeaderValue, Method,
    header::{CACHE_CONTROL, ETAG, EXPIRES, LAST_MODIFIED, PRAGMA, SET_COOKIE},
};

use super::{
    codec::{
        COOKIE_DELIM, COOKIE_DELIM_DATE, Pair, del_hdr_value, list_elements, replace_all,
        s30_to_b64, scan_pair, starts_with_ignore_case, trim_lws, value_end, whole_secs,
    },
    request::Persist,
};
use crate::config::cookie::{CookieConfig, CookieMode};

/// What follows `<name>` when the server that answered has no cookie value:
/// HAProxy asks the browser to drop the cookie.
const EXPIRED_COOKIE: &[u8] = b"=; Expires=Thu, 01-Jan-1970 00:00:01 GMT; path=/";
/// Response side. `resp` are the server's response headers (edited in place),
/// `status` its status code, `method` the request's method, `chosen` the
/// cookie value of the server that served this response (`None` if that
/// server has no cookie), `persist` what [`process_request`](super::process_request) returned, `now`
/// Unix time in seconds.
///
/// This is the cookie part of HAProxy's `http_process_res_common()`:
///
/// * Interim responses (1xx other than 101) are left alone.
/// * `http_manage_server_side_cookies()`: in each `Set-Cookie` header (then
///   each `Set-Cookie2` header, where several comma-separated cookies are
///   handled) the server's cookie `<name>`: is left alone with `preserve`;
///   else is removed in `insert` mode, or when the client presented a valid
///   cookie for this server and `indirect` is set; else has its value replaced
///   by `chosen` in `rewrite` mode, or prefixed with `chosen~` in `prefix`
///   mode (nothing when `chosen` is `None`). Only the first pair of a
///   `Set-Cookie` line is the cookie (the rest are attributes), and blanks
///   around its `=` are removed, whatever its name. A `Set-Cookie2` line a
///   cookie is removed from keeps its length, as in HAProxy 2.6 (see
///   `process_set_cookie_header`).
/// * Insertion, in `insert` mode only, when the server did not set `<name>`
///   itself with `preserve`, when the request is a POST if `postonly`, and
///   when the client did not present a valid cookie for this server, or
///   `maxidle` (or a "last seen" date in the cookie) asks for a refresh
///   because that date is in the past, or `maxlife` is set and the cookie has
///   no "first seen" date, or `maxlife` is not set and the cookie has one
///   (so it gets dropped). The header added is `Set-Cookie:
///   <name>=<value>[|<last>[|<first>]]; path=/`, then `; domain=<d>` per
///   domain, `; HttpOnly`, `; Secure`, `; <attr>` per attr, in that order;
///   `<last>` is the current date, `<first>` the cookie's first date or the
///   current date. **When `chosen` is `None`** (the server has no cookie, a
///   typical backup server) HAProxy always emits `<name>=; Expires=Thu,
///   01-Jan-1970 00:00:01 GMT; path=/` plus the same attributes, asking the
///   browser to forget the cookie, whether or not the client sent one (such a
///   server can never be named by a cookie, so the "valid cookie" condition
///   never holds).
/// * `nocache`: when a cookie was inserted and the response is cacheable
///   ([`response_cacheability`]), `Cache-control: private` is added. HAProxy
///   does this in `insert` mode only; `nocache` has no effect in other modes.
///
/// The `option checkcache` check that blocks cacheable responses carrying a
/// cookie is not part of `cookie`; [`response_cacheability`] gives what it
/// needs.
pub fn process_response(
    cfg: &CookieConfig,
    resp: &mut HeaderMap,
    status: u16,
    method: &Method,
    chosen: Option<&str>,
    persist: &Persist,
    now: u64,
) -> u8 {
    if status < 200 && status != 101 {
        return b'N';
    }
    // What happened to the cookie, as HAProxy logs it (`sess_set_cookie`):
    // N none, P the server's passed, D deleted, R rewritten, I inserted,
    // U updated (a valid cookie's date refreshed).
    let mut logged = b'N';
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    // HAProxy's SF_DIRECT: the cookie named the server that answered.
    let direct = persist.server.is_some() && chosen.is_some() && persist.value.as_deref() == chosen;
    let chosen_bytes = chosen.map(str::as_bytes);

    let mut found = false; // TX_SCK_FOUND
    for (name, cookie2) in [
        (SET_COOKIE, false),
        (HeaderName::from_static("set-cookie2"), true),
    ] {
        if !resp.contains_key(&name) {
            continue;
        }
        let mut changed = false;
        let mut kept = Vec::new();
        for original in resp.get_all(&name) {
            let before = found;
            let edit = process_set_cookie_header(
                cfg,
                original.as_bytes(),
                cookie2,
                chosen_bytes,
                direct,
                &mut found,
            );
            if found && !before {
                logged = match edit {
                    SetCookieEdit::Unchanged => b'P',
                    SetCookieEdit::Removed => b'D',
                    SetCookieEdit::Changed(_) => b'R',
                };
            }
            match edit {
                SetCookieEdit::Unchanged => kept.push(original.clone()),
                SetCookieEdit::Removed => changed = true,
                SetCookieEdit::Changed(edited) => {
                    changed = true;
                    match HeaderValue::from_bytes(&edited) {
                        Ok(mut value) => {
                            value.set_sensitive(original.is_sensitive());
                            kept.push(value);
                        }
                        // `chosen` held bytes a header cannot carry: keep the
                        // server's header rather than lose it.
                        Err(_) => kept.push(original.clone()),
                    }
                }
            }
        }
        if changed {
            replace_all(resp, name, kept);
        }
    }

    if cfg.mode != CookieMode::Insert || (found && cfg.preserve) {
        return logged;
    }
    let maxidle = whole_secs(cfg.maxidle);
    let maxlife = whole_secs(cfg.maxlife);
    let last = persist.last.unwrap_or(0);
    let first = persist.first.unwrap_or(0);
    let needed = !direct
        || ((maxidle != 0 || last != 0) && (last == 0 || i64::from(last) < now))
        || (maxlife != 0 && first == 0)
        || (maxlife == 0 && first != 0);
    if !needed || (cfg.postonly && *method != Method::POST) {
        return logged;
    }

    let cookie = build_set_cookie(cfg, chosen_bytes, first, now);
    let Ok(value) = HeaderValue::from_bytes(&cookie) else {
        return logged; // `chosen` or the name cannot be sent in a header
    };
    // Decided before adding anything, as HAProxy checks cacheability before
    // inserting.
    let cacheable = cfg.nocache && response_cacheability(method, status, resp).cacheable;
    resp.append(SET_COOKIE, value);
    if cacheable {
        // HAProxy: "private" rather than no-cache="set-cookie", which old
        // caches do not understand.
        resp.append(CACHE_CONTROL, HeaderValue::from_static("private"));
    }
    if direct { b'U' } else { b'I' }
}

/// The `Set-Cookie` value HAProxy inserts (see [`process_response`]).
fn build_set_cookie(cfg: &CookieConfig, chosen: Option<&[u8]>, first: u32, now: i64) -> Vec<u8> {
    let mut cookie = cfg.name.as_bytes().to_vec();
    match chosen {
        None => cookie.extend_from_slice(EXPIRED_COOKIE),
        Some(value) => {
            cookie.push(b'=');
            cookie.extend_from_slice(value);
            let maxlife = whole_secs(cfg.maxlife) != 0;
            if whole_secs(cfg.maxidle) != 0 || maxlife {
                // `(date + 3) >> 2`: the current date rounded up to 4 s.
                let today = (now.max(0).saturating_add(3) >> 2) as u32;
                cookie.push(COOKIE_DELIM_DATE);
                cookie.extend_from_slice(&s30_to_b64(today));
                if maxlife {
                    let first = if first != 0 { first >> 2 } else { today };
                    cookie.push(COOKIE_DELIM_DATE);
                    cookie.extend_from_slice(&s30_to_b64(first));
                }
            }
            cookie.extend_from_slice(b"; path=/");
        }
    }
    for domain in &cfg.domains {
        cookie.extend_from_slice(b"; domain=");
        cookie.extend_from_slice(domain.as_bytes());
    }
    if cfg.httponly {
        cookie.extend_from_slice(b"; HttpOnly");
    }
    if cfg.secure {
        cookie.extend_from_slice(b"; Secure");
    }
    for attr in &cfg.attrs {
        cookie.extend_from_slice(b"; ");
        cookie.extend_from_slice(attr.as_bytes());
    }
    cookie
}

enum SetCookieEdit {
    Unchanged,
    Changed(Vec<u8>),
    Removed,
}

/// One `Set-Cookie` (or `Set-Cookie2`) header through HAProxy's
/// `http_manage_server_side_cookies()`. This one mirrors HAProxy's in-place
/// edits on a buffer, because `Set-Cookie2` removal changes how the rest of
/// the line is read: after removing the *first* cookie of a `Set-Cookie2`
/// line, HAProxy resumes one byte into the next cookie's name (its loop
/// always skips a separator that is no longer there), so e.g. in
/// `SRV=x, SRV=y` the second cookie is read as `RV=y` and kept. This code
/// does the same. Response headers come from the servers, and `Set-Cookie2`
/// is obsolete, so the quadratic worst case of repeated removals is
/// acceptable here.
///
/// **HAProxy 2.6 does not shrink a `Set-Cookie2` header it removed a cookie
/// from.** Its removal (`http_del_hdr_value()`) moves the rest of the line
/// left in place and only shortens the loop's own end (`hdr_end`), never the
/// header's length (no `htx_change_blk_value_len()` there, unlike the blank
/// stripping next to it). What goes out is the whole old length: the edited
/// line followed by the bytes the move left behind, i.e. the original bytes
/// at those positions. `a=1, SRV=x, b=2` becomes `a=1, b=2=x, b=2`, and
/// `SRV=x, SRV=y` becomes `SRV=y, SRV=y`. The loop goes on reading up to its
/// shortened end only; a later blank stripping sets the header's length to
/// that end (dropping the left-over bytes), a rewrite or prefix edits the
/// header with the left-over bytes kept after it. This code does the same,
/// checked against HAProxy 2.6.12 by `tests/tests/haproxy_conformance.rs`
/// (later HAProxy versions dropped `Set-Cookie2` processing altogether).
/// `Set-Cookie` is not affected: its one cookie is removed with the whole
/// header.
fn process_set_cookie_header(
    cfg: &CookieConfig,
    raw: &[u8],
    cookie2: bool,
    chosen: Option<&[u8]>,
    direct: bool,
    found: &mut bool,
) -> SetCookieEdit {
    // `buf` is the header's value as HAProxy will send it; `hdr_end` is the
    // end its loop reads up to (shorter after a removal, see above).
    let mut buf = trim_lws(raw).to_vec();
    let mut hdr_end = buf.len();
    let name = cfg.name.as_bytes();
    let mut changed = false;
    let mut prev = 0;
    let mut first = true;
    while prev < hdr_end {
        let Pair {
            att_beg,
            att_end,
            mut equal,
            mut val_beg,
            mut val_end,
            mut next,
            ..
        } = scan_pair(&buf, prev, first, hdr_end, cookie2);
        first = false;
        if next < hdr_end {
            // Set-Cookie: the rest of the line is attributes (and an Expires
            // date may hold a comma). Set-Cookie2: skip to the next cookie.
            next = if cookie2 {
                value_end(&buf, next, hdr_end, false)
            } else {
                hdr_end
            };
        }
        if equal == val_end {
            prev = next; // no '=': not a cookie
            continue;
        }
        if att_end != equal || val_beg > equal + 1 {
            let before = equal - att_end;
            buf.drain(att_end..equal);
            equal = att_end;
            val_beg -= before;
            let after = val_beg - (equal + 1);
            buf.drain(equal + 1..val_beg);
            val_beg = equal + 1;
            val_end -= before + after;
            next -= before + after;
            hdr_end -= before + after;
            // htx_change_blk_value_len(): the header now ends where the loop
            // does (bytes left behind by an earlier removal are dropped).
            buf.truncate(hdr_end);
            changed = true;
        }

        if &buf[att_beg..att_end] == name {
            *found = true;
            if cfg.preserve {
                // The server's cookie is left untouched.
            } else if cfg.mode == CookieMode::Insert || (direct && cfg.indirect) {
                if prev == 0 && next == hdr_end {
                    return SetCookieEdit::Removed;
                }
                // Moved in place: the header keeps its length, the bytes
                // between the new end and the old one stay as they were.
                let mut line = buf[..hdr_end].to_vec();
                let mut from = prev;
                del_hdr_value(&mut line, &mut from, next);
                hdr_end = line.len();
                buf[..hdr_end].copy_from_slice(&line);
                next = from;
                changed = true;
            } else if let Some(value) = chosen {
                match cfg.mode {
                    CookieMode::Rewrite => {
                        buf.splice(val_beg..val_end, value.iter().copied());
                        next = next - val_end + val_beg + value.len();
                        hdr_end = hdr_end - val_end + val_beg + value.len();
                        changed = true;
                    }
                    CookieMode::Prefix => {
                        buf.splice(
                            val_beg..val_beg,
                            value.iter().copied().chain(iter::once(COOKIE_DELIM)),
                        );
                        next += value.len() + 1;
                        hdr_end += value.len() + 1;
                        changed = true;
                    }
                    CookieMode::Insert | CookieMode::Passive => {}
                }
            }
        }
        prev = next;
    }
    if changed {
        SetCookieEdit::Changed(buf)
    } else {
        SetCookieEdit::Unchanged
    }
}

/// HAProxy's cacheability verdict for a response (`txn->flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cacheability {
    /// `TX_CACHEABLE`: a shared cache may store the response.
    pub cacheable: bool,
    /// `TX_CACHE_COOK`: ... including its `Set-Cookie` headers.
    pub cookie_cacheable: bool,
}

/// Whether HAProxy 2.6 deems a response cacheable, as `nocache` (and `option
/// checkcache`) see it:
///
/// * `http_wait_for_request()`: only GET, HEAD, OPTIONS and TRACE requests
///   start cacheable.
/// * `http_wait_for_response()`: only statuses 200, 203, 204, 206, 300, 301,
///   404, 405, 410, 414 and 501 stay cacheable (RFC 7231 6.1).
/// * `http_check_response_for_cacheability()`: a 1xx is not; the first
///   `Pragma` header equal to `no-cache` makes it not; then each element of
///   the `Cache-Control` headers in order: `public` makes it cacheable (even a
///   POST or a 302!); `private`, `no-cache`, `no-store`, `max-age=0`,
///   `s-maxage=0` make it not (until a later `public`);
///   `no-cache="set-cookie...` keeps it cacheable but not its cookies;
///   `s-maxage...` and `max-age...` are freshness information. Without freshness
///   information, an `Expires` header is; without either, an `ETag` or
///   `Last-Modified` validator is needed or the response is not cacheable
///   (RFC 7234 3). Names and directives compare case-insensitively.
///
/// `max-age=0` is final in HAProxy 2.6.12 (the reference,
/// `tests/tests/haproxy_conformance.rs`): an `s-maxage` does not make such
/// a response cacheable again (`max-age=0, s-maxage=60` gets no `private`),
/// while a later `public` does (`max-age=0, public` gets one). Later HAProxy
/// versions let an `s-maxage` override `max-age=0`; 2.6.12 does not.
pub fn response_cacheability(method: &Method, status: u16, headers: &HeaderMap) -> Cacheability {
    let safe = [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE].contains(method);
    let mut cacheable = safe;
    let mut cookie_cacheable = safe;
    if !matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 404 | 405 | 410 | 414 | 501
    ) {
        cacheable = false;
        cookie_cacheable = false;
    }
    let not_cacheable = Cacheability {
        cacheable: false,
        cookie_cacheable: false,
    };
    if status < 200 {
        return not_cacheable;
    }
    // Only the first Pragma header, as a whole.
    if let Some(pragma) = headers.get(PRAGMA)
        && trim_lws(pragma.as_bytes()).eq_ignore_ascii_case(b"no-cache")
    {
        return not_cacheable;
    }

    let mut has_freshness_info = false;
    for header in headers.get_all(CACHE_CONTROL) {
        for directive in list_elements(header.as_bytes()) {
            if directive.eq_ignore_ascii_case(b"public") {
                cacheable = true;
                cookie_cacheable = true;
            } else if [
                &b"private"[..],
                b"no-cache",
                b"no-store",
                b"max-age=0",
                b"s-maxage=0",
            ]
            .iter()
            .any(|d| directive.eq_ignore_ascii_case(d))
            {
                cacheable = false;
                cookie_cacheable = false;
            } else if starts_with_ignore_case(directive, b"no-cache=\"set-cookie") {
                cookie_cacheable = false;
            } else if starts_with_ignore_case(directive, b"s-maxage")
                || starts_with_ignore_case(directive, b"max-age")
            {
                has_freshness_info = true;
            }
        }
    }
    if !has_freshness_info {
        has_freshness_info = headers.contains_key(EXPIRES);
    }
    let has_validator =
        !has_freshness_info && (headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED));
    if !has_freshness_info && !has_validator {
        cacheable = false;
    }
    Cacheability {
        cacheable,
        cookie_cacheable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::cookie::{request::process_request, test_util::*};

    fn direct(index: usize) -> Persist {
        Persist {
            server: Some(index),
            seen: true,
            value: VALUES[index].map(str::to_owned),
            ..Persist::default()
        }
    }

    /// Run the response side on `set_cookies` (and `extra` headers).
    #[allow(clippy::too_many_arguments)]
    fn respond(
        args: &str,
        set_cookies: &[&str],
        extra: &[(&'static str, &'static str)],
        status: u16,
        method: Method,
        chosen: Option<&str>,
        persist: &Persist,
        now: u64,
    ) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/html"));
        for cookie in set_cookies {
            headers.append(
                SET_COOKIE,
                HeaderValue::from_str(cookie).expect("test header"),
            );
        }
        for (name, value) in extra {
            headers.append(*name, HeaderValue::from_static(value));
        }
        process_response(
            &cfg(args),
            &mut headers,
            status,
            &method,
            chosen,
            persist,
            now,
        );
        headers
    }

    #[test]
    fn insert_for_a_new_client() {
        let h = respond(
            "SRV insert indirect",
            &[],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=s1; path=/"]);
        assert!(h.get(CACHE_CONTROL).is_none());
        assert_eq!(
            h.get("content-type").map(HeaderValue::as_bytes),
            Some(&b"text/html"[..])
        );
    }

    #[test]
    fn inserted_cookie_spelling_and_order() {
        let args = "SRV insert attr SameSite=Lax secure domain .a.com httponly domain .b.com attr Partitioned";
        let h = respond(
            args,
            &[],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(
            strings(&h, "set-cookie"),
            [
                "SRV=s1; path=/; domain=.a.com; domain=.b.com; HttpOnly; Secure; SameSite=Lax; Partitioned"
            ]
        );
    }

    #[test]
    fn no_insert_when_the_client_has_a_valid_cookie() {
        let h = respond(
            "SRV insert indirect",
            &["SRV=from-app; path=/", "other=1; path=/"],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &direct(0),
            NOW,
        );
        // The server's own SRV cookie is removed all the same.
        assert_eq!(strings(&h, "set-cookie"), ["other=1; path=/"]);
    }

    #[test]
    fn redispatched_request_gets_a_new_cookie() {
        // The cookie named s1, but s2 answered (option redispatch).
        let h = respond(
            "SRV insert",
            &[],
            &[],
            200,
            Method::GET,
            Some("s2"),
            &direct(0),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=s2; path=/"]);
        // Same when the caller clears `server` instead.
        let cleared = Persist {
            server: None,
            ..direct(1)
        };
        let h = respond(
            "SRV insert",
            &[],
            &[],
            200,
            Method::GET,
            Some("s2"),
            &cleared,
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=s2; path=/"]);
    }

    #[test]
    fn server_without_cookie_gets_an_expired_cookie() {
        let args = "SRV insert maxidle 1m maxlife 1h domain .a.com httponly attr SameSite=Strict";
        let expected = "SRV=; Expires=Thu, 01-Jan-1970 00:00:01 GMT; path=/; domain=.a.com; HttpOnly; SameSite=Strict";
        for persist in [Persist::default(), direct(0)] {
            let h = respond(args, &[], &[], 200, Method::GET, None, &persist, NOW);
            assert_eq!(strings(&h, "set-cookie"), [expected]);
        }
    }

    #[test]
    fn postonly_inserts_on_post_only() {
        let args = "SRV insert postonly";
        let h = respond(
            args,
            &["SRV=app"],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert!(strings(&h, "set-cookie").is_empty()); // removed, not replaced
        let h = respond(
            args,
            &[],
            &[],
            200,
            Method::POST,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=s1; path=/"]);
    }

    #[test]
    fn preserve_leaves_the_servers_cookie_alone() {
        let args = "SRV insert preserve";
        let logout = "SRV=; Max-Age=0; path=/";
        let h = respond(
            args,
            &[logout],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), [logout]);
        let h = respond(
            args,
            &["a=1"],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["a=1", "SRV=s1; path=/"]);
        // Passive + indirect + preserve: the server's cookie stays even
        // for a client that has a valid one.
        let h = respond(
            "SRV indirect preserve",
            &[logout],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &direct(0),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), [logout]);
    }

    #[test]
    fn insert_replaces_the_servers_own_cookie() {
        let h = respond(
            "SRV insert",
            &[
                "SRV=app; path=/x",
                "srv=lowercase-is-another-cookie",
                "a=1; SRV=attr-position",
            ],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(
            strings(&h, "set-cookie"),
            [
                "srv=lowercase-is-another-cookie",
                "a=1; SRV=attr-position",
                "SRV=s1; path=/"
            ]
        );
    }

    #[test]
    fn rewrite_replaces_the_value() {
        let set = [
            "a=1",
            "SRV=whatever; path=/app; HttpOnly",
            "SRV = x ;Path=/",
            "SRV=; Max-Age=0",
        ];
        let h = respond(
            "SRV rewrite",
            &set,
            &[],
            200,
            Method::GET,
            Some("s2"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(
            strings(&h, "set-cookie"),
            [
                "a=1",
                "SRV=s2; path=/app; HttpOnly",
                "SRV=s2 ;Path=/",
                "SRV=s2; Max-Age=0"
            ]
        );
        // Same for a client with a valid cookie (rewrite has no indirect).
        let h = respond(
            "SRV rewrite",
            &set[1..2],
            &[],
            200,
            Method::GET,
            Some("s2"),
            &direct(1),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=s2; path=/app; HttpOnly"]);
        // A server without a cookie: values untouched (HAProxy still removes
        // the blanks around '='), and nothing inserted.
        let h = respond(
            "SRV rewrite",
            &set,
            &[],
            200,
            Method::GET,
            None,
            &Persist::default(),
            NOW,
        );
        assert_eq!(
            strings(&h, "set-cookie"),
            [
                "a=1",
                "SRV=whatever; path=/app; HttpOnly",
                "SRV=x ;Path=/",
                "SRV=; Max-Age=0"
            ]
        );
    }

    #[test]
    fn prefix_prepends_the_server_value() {
        let h = respond(
            "JSESSIONID prefix",
            &["JSESSIONID=abc; Path=/", "JSESSIONID=; Path=/", "other=abc"],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(
            strings(&h, "set-cookie"),
            [
                "JSESSIONID=s1~abc; Path=/",
                "JSESSIONID=s1~; Path=/",
                "other=abc"
            ]
        );
        // prefix + indirect: a client that has a valid cookie does not get the
        // server's update at all (HAProxy's documented pitfall).
        let h = respond(
            "JSESSIONID prefix indirect",
            &["JSESSIONID=abc"],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &direct(0),
            NOW,
        );
        assert!(strings(&h, "set-cookie").is_empty());
        let h = respond(
            "JSESSIONID prefix indirect",
            &["JSESSIONID=abc"],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["JSESSIONID=s1~abc"]);
    }

    #[test]
    fn passive_mode_never_inserts() {
        let h = respond(
            "SRV",
            &["SRV=x"],
            &[],
            200,
            Method::POST,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=x"]);
        let h = respond(
            "SRV indirect",
            &["SRV=x"],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=x"]);
        let h = respond(
            "SRV indirect",
            &["SRV=x", "b=2"],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &direct(0),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["b=2"]);
    }

    #[test]
    fn interim_responses_are_untouched_but_101_is_not() {
        let h = respond(
            "SRV insert",
            &["SRV=x"],
            &[],
            100,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=x"]);
        let h = respond(
            "SRV insert nocache",
            &[],
            &[],
            101,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=s1; path=/"]);
        assert!(h.get(CACHE_CONTROL).is_none());
    }

    #[test]
    fn nocache_marks_cacheable_responses_private() {
        let args = "SRV insert nocache";
        let fresh = Persist::default();
        let private = |method: Method, status: u16, extra: &[(&'static str, &'static str)]| {
            let h = respond(args, &[], extra, status, method, Some("s1"), &fresh, NOW);
            assert_eq!(strings(&h, "set-cookie"), ["SRV=s1; path=/"]);
            let cc = strings(&h, "cache-control");
            cc.last().is_some_and(|v| v == "private")
        };
        // Cacheable: safe method, cacheable status, freshness or validator.
        assert!(private(
            Method::GET,
            200,
            &[("cache-control", "max-age=60")]
        ));
        assert!(private(Method::GET, 200, &[("etag", "\"x\"")]));
        assert!(private(
            Method::GET,
            200,
            &[("last-modified", "Tue, 15 Nov 1994 12:45:26 GMT")]
        ));
        assert!(private(
            Method::HEAD,
            404,
            &[("expires", "Thu, 01 Dec 2094 16:00:00 GMT")]
        ));
        // HAProxy 2.6.12: a later "public" undoes "max-age=0"...
        assert!(private(
            Method::GET,
            200,
            &[
                ("cache-control", "MAX-AGE=0, public"),
                ("last-modified", "Tue, 15 Nov 1994 12:45:26 GMT")
            ]
        ));
        assert!(private(
            Method::GET,
            200,
            &[("cache-control", "no-cache=\"set-cookie\", max-age=5")]
        ));
        assert!(private(
            Method::GET,
            200,
            &[("pragma", "no-cache, x"), ("cache-control", "max-age=5")]
        ));
        // "public" makes anything cacheable, even a POST or a 302.
        assert!(private(
            Method::POST,
            200,
            &[("cache-control", "public, max-age=60")]
        ));
        assert!(private(
            Method::GET,
            302,
            &[("cache-control", "public"), ("cache-control", "max-age=60")]
        ));
        // Not cacheable.
        assert!(!private(Method::GET, 200, &[]));
        assert!(!private(
            Method::POST,
            200,
            &[("cache-control", "max-age=60")]
        ));
        assert!(!private(
            Method::GET,
            302,
            &[("cache-control", "max-age=60")]
        ));
        assert!(!private(
            Method::GET,
            200,
            &[("cache-control", "private, max-age=60")]
        ));
        assert!(!private(
            Method::GET,
            200,
            &[("cache-control", "max-age=60, No-Store")]
        ));
        assert!(!private(
            Method::GET,
            200,
            &[("cache-control", "no-cache"), ("etag", "\"x\"")]
        ));
        assert!(!private(
            Method::GET,
            200,
            &[("cache-control", "s-maxage=0, max-age=60")]
        ));
        assert!(!private(
            Method::GET,
            200,
            &[("cache-control", "max-age=0")]
        ));
        assert!(!private(
            Method::GET,
            200,
            &[("cache-control", "s-maxage=60, max-age=0")]
        ));
        // ... an "s-maxage" does not (it does in later HAProxy versions).
        assert!(!private(
            Method::GET,
            200,
            &[("cache-control", "MAX-AGE=0, s-maxage=60")]
        ));
        assert!(!private(
            Method::GET,
            200,
            &[
                ("cache-control", "max-age=0"),
                ("cache-control", "s-maxage=60")
            ]
        ));
        assert!(!private(
            Method::GET,
            200,
            &[("pragma", "No-Cache"), ("cache-control", "max-age=60")]
        ));
        assert!(!private(Method::GET, 200, &[("cache-control", "public")]));
    }

    #[test]
    fn nocache_only_applies_when_a_cookie_is_inserted() {
        let extra = [("cache-control", "max-age=60")];
        let h = respond(
            "SRV insert nocache",
            &[],
            &extra,
            200,
            Method::GET,
            Some("s1"),
            &direct(0),
            NOW,
        );
        assert!(strings(&h, "set-cookie").is_empty());
        assert_eq!(strings(&h, "cache-control"), ["max-age=60"]);
        // HAProxy only handles nocache in insert mode.
        let h = respond(
            "SRV rewrite nocache",
            &["SRV=x"],
            &extra,
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=s1"]);
        assert_eq!(strings(&h, "cache-control"), ["max-age=60"]);
        // Without nocache, nothing is added.
        let h = respond(
            "SRV insert",
            &[],
            &extra,
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "cache-control"), ["max-age=60"]);
    }

    #[test]
    fn cacheability_flags() {
        let mut h = HeaderMap::new();
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("no-cache=\"Set-Cookie\", max-age=5"),
        );
        assert_eq!(
            response_cacheability(&Method::GET, 200, &h),
            Cacheability {
                cacheable: true,
                cookie_cacheable: false
            }
        );
        assert!(!response_cacheability(&Method::GET, 100, &h).cacheable);
        assert!(!response_cacheability(&Method::DELETE, 200, &h).cacheable);
        assert!(response_cacheability(&Method::OPTIONS, 501, &h).cacheable);
        assert!(response_cacheability(&Method::TRACE, 414, &h).cacheable);
        // Quoted commas do not split directives; empty elements are fine.
        let elements: Vec<&[u8]> = list_elements(b" a ,\"b,c\" , ,d,").collect();
        assert_eq!(elements, [&b"a"[..], b"\"b,c\"", b"", b"d", b""]);
        let elements: Vec<&[u8]> = list_elements(b"").collect();
        assert_eq!(elements, [&b""[..]]);
    }

    #[test]
    fn maxidle_cookie_carries_the_date_and_is_refreshed() {
        let args = "SRV insert indirect maxidle 30m";
        // Hand-computed: (1_700_000_000 + 3) >> 2 = 425_000_000
        //   = 25*64^4 + 21*64^3 + 15*64^2 + 49*64 + 0 -> "Z" "V" "P" "x" "A".
        let expected = "SRV=s1|ZVPxA; path=/";
        let h = respond(
            args,
            &[],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), [expected]);
        // The rounding is up: NOW + 1 still writes 425_000_001 ("ZVPxB").
        let h = respond(
            args,
            &[],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW + 1,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=s1|ZVPxB; path=/"]);

        let seen = |last: Option<u64>| Persist {
            last: last.map(|l| l as u32),
            ..direct(0)
        };
        // Last seen in the past: refreshed.
        let h = respond(
            args,
            &[],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &seen(Some(NOW - 100)),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), [expected]);
        // Not in the past (same 4-second step, or ahead): left alone.
        for last in [NOW, NOW + 4] {
            let h = respond(
                args,
                &[],
                &[],
                200,
                Method::GET,
                Some("s1"),
                &seen(Some(last)),
                NOW,
            );
            assert!(strings(&h, "set-cookie").is_empty());
        }
        // A cookie without a date gets one.
        let h = respond(
            args,
            &[],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &seen(None),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), [expected]);
        // Without maxidle, a past date in the cookie still triggers a
        // re-insert, which drops it.
        let h = respond(
            "SRV insert",
            &[],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &seen(Some(NOW - 100)),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=s1; path=/"]);
    }

    #[test]
    fn maxlife_cookie_keeps_its_first_date() {
        let args = "SRV insert maxlife 8h";
        let h = respond(
            args,
            &[],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=s1|ZVPxA|ZVPxA; path=/"]);

        let first = NOW - 1000;
        let with = |last: u64| Persist {
            first: Some(first as u32),
            last: Some(last as u32),
            ..direct(0)
        };
        let h = respond(
            args,
            &[],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &with(NOW - 100),
            NOW,
        );
        assert_eq!(
            strings(&h, "set-cookie"),
            [format!("SRV=s1|ZVPxA|{}; path=/", date(first))]
        );
        let h = respond(
            args,
            &[],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &with(NOW),
            NOW,
        );
        assert!(strings(&h, "set-cookie").is_empty());
        // A valid cookie without a first date gets one.
        let h = respond(
            args,
            &[],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &direct(0),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=s1|ZVPxA|ZVPxA; path=/"]);
        // An invalid cookie's first date is reused (HAProxy keeps the
        // transaction's date even when the cookie named no server).
        let stray = Persist {
            seen: true,
            first: Some(first as u32),
            ..Persist::default()
        };
        let h = respond(args, &[], &[], 200, Method::GET, Some("s2"), &stray, NOW);
        assert_eq!(
            strings(&h, "set-cookie"),
            [format!("SRV=s2|ZVPxA|{}; path=/", date(first))]
        );
        // maxlife no longer configured: the first date is dropped.
        let h = respond(
            "SRV insert",
            &[],
            &[],
            200,
            Method::GET,
            Some("s1"),
            &with(NOW),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=s1; path=/"]);
    }

    #[test]
    fn set_cookie2_lists_are_handled_like_haproxy() {
        let run2 = |args: &str, value: &'static str, chosen: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert("set-cookie2", HeaderValue::from_static(value));
            process_response(
                &cfg(args),
                &mut h,
                200,
                &Method::GET,
                chosen,
                &direct(0),
                NOW,
            );
            strings(&h, "set-cookie2")
        };
        // HAProxy 2.6 does not shrink the line after removing a cookie from
        // it: the bytes left behind by the move stay (checked against
        // HAProxy 2.6.12).
        assert_eq!(
            run2("SRV insert", "a=1, SRV=x, b=2", Some("s1")),
            ["a=1, b=2=x, b=2"]
        );
        assert_eq!(run2("SRV insert", "SRV=x, b=2", Some("s1")), ["b=2=x, b=2"]);
        assert_eq!(
            run2("SRV insert", "a=1, SRV=x, SRV=y, b=2", Some("s1")),
            ["a=1, b=2=y, b=2=y, b=2"]
        );
        // Removing the last cookie of a line changes nothing visible.
        assert_eq!(run2("SRV insert", "a=1, SRV=x", Some("s1")), ["a=1, SRV=x"]);
        // A later blank stripping sets the length to what the loop read.
        assert_eq!(
            run2("SRV insert", "a=1, SRV=x; Version=1, b = 2", Some("s1")),
            ["a=1, b=2"]
        );
        assert!(run2("SRV insert", "SRV=x; Version=1", Some("s1")).is_empty());
        assert_eq!(
            run2("SRV rewrite", "a=1, SRV=x; Version=1, b=2", Some("s1")),
            ["a=1, SRV=s1; Version=1, b=2"]
        );
        assert_eq!(
            run2("SRV prefix", "SRV=x, SRV = y", Some("s1")),
            ["SRV=s1~x, SRV=s1~y"]
        );
        // HAProxy quirk: after removing the first cookie of a line it reads
        // the next one from its second byte, so "SRV=y" is seen as "RV=y"
        // (and the line keeps its length).
        assert_eq!(
            run2("SRV insert", "SRV=x, SRV=y", Some("s1")),
            ["SRV=y, SRV=y"]
        );
    }

    #[test]
    fn garbage_set_cookie_never_panics() {
        let inputs: &[&[u8]] = &[
            b"",
            b"=",
            b";",
            b",",
            b"SRV",
            b"SRV=",
            b" SRV = ",
            b"SRV=\"unterminated",
            b"\xff=\xff",
            b"SRV=x,SRV=y,SRV=z",
            b",SRV=x",
            b"SRV=x,",
            b"SRV\t=\t\"a,b\"\t,\tSRV=c",
            b"=SRV=",
        ];
        let configs = [
            "SRV insert",
            "SRV insert preserve",
            "SRV rewrite",
            "SRV prefix",
            "SRV indirect",
        ];
        let mut seed = 7;
        let mut random: Vec<Vec<u8>> = (0..3_000).map(|_| random_header(&mut seed)).collect();
        random.extend(inputs.iter().map(|i| i.to_vec()));
        for args in configs {
            let config = cfg(args);
            for input in &random {
                let Ok(value) = HeaderValue::from_bytes(input) else {
                    continue;
                };
                for name in ["set-cookie", "set-cookie2"] {
                    let mut h = HeaderMap::new();
                    h.insert(name, value.clone());
                    process_response(
                        &config,
                        &mut h,
                        200,
                        &Method::GET,
                        Some("s1"),
                        &direct(0),
                        NOW,
                    );
                    process_response(
                        &config,
                        &mut h,
                        200,
                        &Method::GET,
                        None,
                        &Persist::default(),
                        0,
                    );
                }
            }
        }
    }

    #[test]
    fn unsendable_server_value_is_skipped_not_panicked_on() {
        let h = respond(
            "SRV insert",
            &[],
            &[],
            200,
            Method::GET,
            Some("s\u{1}1"),
            &Persist::default(),
            NOW,
        );
        assert!(strings(&h, "set-cookie").is_empty());
        let h = respond(
            "SRV rewrite",
            &["SRV=x"],
            &[],
            200,
            Method::GET,
            Some("s\n1"),
            &Persist::default(),
            NOW,
        );
        assert_eq!(strings(&h, "set-cookie"), ["SRV=x"]);
    }

    #[test]
    fn round_trip_through_a_client() {
        let config = cfg("SRV insert indirect nocache maxidle 30m");
        // First visit: no cookie, the balancer picks s2 and inserts.
        let mut request = request_headers(&[b"app=1"]);
        let persist = process_request(&config, &mut request, &VALUES, NOW);
        assert_eq!(persist.server, None);
        let mut response = HeaderMap::new();
        process_response(
            &config,
            &mut response,
            200,
            &Method::GET,
            Some("s2"),
            &persist,
            NOW,
        );
        let set = strings(&response, "set-cookie");
        assert_eq!(set, ["SRV=s2|ZVPxA; path=/"]);
        // The browser sends it back (name=value part) with its own cookie.
        let pair = set[0].split(';').next().unwrap_or_default();
        let later = NOW + 600;
        let sent = format!("app=1; {pair}");
        let mut request = request_headers(&[sent.as_bytes()]);
        let persist = process_request(&config, &mut request, &VALUES, later);
        assert_eq!(persist.server, Some(1));
        assert_eq!(strings(&request, "cookie"), ["app=1"]);
        // s2 answers: the last-seen date is refreshed.
        let mut response = HeaderMap::new();
        process_response(
            &config,
            &mut response,
            200,
            &Method::GET,
            Some("s2"),
            &persist,
            later,
        );
        assert_eq!(
            strings(&response, "set-cookie"),
            [format!("SRV=s2|{}; path=/", date(later + 3))]
        );
        // After 30 idle minutes the cookie is ignored.
        let mut request = request_headers(&[sent.as_bytes()]);
        let persist = process_request(&config, &mut request, &VALUES, NOW + 1804 + 3);
        assert_eq!(persist.server, None);
    }
}
