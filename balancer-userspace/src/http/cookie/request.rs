//! HAProxy 2.6 `cookie` persistence, reproduced byte for byte. The
//! `cookie` keyword's parser and model ([`CookieConfig`]) are the config
//! layer's (`config/cookie.rs`).
//!
//! # The model
//!
//! A backend configured with HAProxy's `cookie <name> [options]` keyword pins
//! each client to a server through an HTTP cookie. Every server has a *cookie
//! value* (its `cookie` keyword, or a [`dynamic_value`]). One HTTP transaction
//! goes through this module twice:
//!
//! 1. [`process_request`] reads the client's `Cookie` headers, finds the
//!    persistence cookie `<name>`, validates it (its value must equal one of
//!    the servers' values exactly, and its dates must be fresh when `maxidle`
//!    / `maxlife` are set) and edits the headers the way HAProxy does before
//!    forwarding (`insert indirect` removes the cookie, `prefix` strips the
//!    `VALUE~` prefix). It returns a [`Persist`]: the server the cookie names,
//!    if any. The caller then picks the server: the named one when it can take
//!    the request, otherwise its usual load-balancing choice (HAProxy's
//!    `option redispatch`).
//! 2. [`process_response`] edits the server's response headers: in `insert`
//!    mode it adds `Set-Cookie: <name>=<value>; path=/...` when the client
//!    did not already present a valid cookie for the server that answered (or
//!    when the cookie's dates need refreshing); in `rewrite` / `prefix` mode it
//!    rewrites the server's own `Set-Cookie: <name>=...`; `nocache` adds
//!    `Cache-control: private` to cacheable responses that get a cookie.
//!
//! The [`Persist`] value returned by the first call carries the per-transaction
//! state HAProxy keeps in its `struct http_txn` (`SF_DIRECT`, the cookie's
//! "last seen" and "first seen" dates) to the second call.
//!
//! # Where this comes from
//!
//! Everything here follows HAProxy 2.6's source, not its documentation alone
//! (the two disagree in places, and the source wins):
//!
//! * `src/http_ana.c` `http_manage_client_side_cookies()`: the `Cookie`
//!   header parser, date decoding and expiry, server matching, removal of the
//!   cookie in `insert indirect` mode (`http_del_hdr_value()`), prefix
//!   stripping.
//! * `src/http_ana.c` `http_manage_server_side_cookies()`: the `Set-Cookie` /
//!   `Set-Cookie2` parser and the delete / rewrite / prefix actions.
//! * `src/http_ana.c` `http_process_res_common()`: when a cookie is inserted,
//!   its exact spelling, and `nocache`; `http_wait_for_request()` /
//!   `http_wait_for_response()` / `http_check_response_for_cacheability()`:
//!   HAProxy's notion of a cacheable response.
//! * `src/http.c` `http_find_cookie_value_end()`, `http_find_hdr_value_end()`;
//!   `src/http_htx.c` `__http_find_header()` (values are trimmed of
//!   linear white space, list headers are split on unquoted commas).
//! * `src/base64.c` `s30tob64()` / `b64tos30()`: the 5-character date
//!   encoding.
//!
//! No HAProxy code is copied; the algorithms are re-implemented, and where
//! HAProxy's behaviour is surprising the doc comment of the function says what
//! HAProxy does and that this code does the same on purpose.
//!
//! # Things the caller must know
//!
//! * **Server states.** HAProxy skips a cookie that names a *stopped* server
//!   (unless `option persist` / `force-persist`) and keeps looking for another
//!   running server with the same value. Pass `None` in `values` for a server
//!   that must not be chosen by cookie (down without `option persist`, or
//!   without a cookie at all) to get exactly that.
//! * **Redispatch.** When the named server cannot be used and the caller sends
//!   the request elsewhere, pass that server's value as `chosen` to
//!   [`process_response`]: it differs from [`Persist::value`], so, like HAProxy
//!   after clearing `SF_DIRECT`, a fresh cookie is inserted. Clearing
//!   [`Persist::server`] has the same effect.
//! * **Responses the balancer generates itself** (errors, redirects) have no
//!   server: do not call [`process_response`] for them (HAProxy only inserts
//!   when `objt_server(s->target)` is set).
//! * **HTTP/2.** HAProxy's H2 demultiplexer joins all `cookie` fields into one
//!   `Cookie` header before analysis; the proxy does the same before calling
//!   [`process_request`] (which would otherwise process each field alone).

use std::iter;

use http::{
    HeaderMap, HeaderName, HeaderValue, Method,
    header::{CACHE_CONTROL, COOKIE, ETAG, EXPIRES, LAST_MODIFIED, PRAGMA, SET_COOKIE},
};

use super::codec::{
    COOKIE_DELIM, COOKIE_DELIM_DATE, Pair, b64_to_s30, del_hdr_value, diff_i32, is_spht,
    list_elements, replace_all, s30_to_b64, scan_pair, starts_with_ignore_case, trim_lws,
    value_end, whole_secs,
};
pub use crate::config::cookie::dynamic_value;
use crate::config::cookie::{CookieConfig, CookieMode};

/// What follows `<name>` when the server that answered has no cookie value:
/// HAProxy asks the browser to drop the cookie.
const EXPIRED_COOKIE: &[u8] = b"=; Expires=Thu, 01-Jan-1970 00:00:01 GMT; path=/";
/// Cookies dated more than this far in the future are ignored (HAProxy lets an
/// admin fix a clock without everyone keeping a bogus date for long).
const FUTURE_DATE_TOLERANCE: i32 = 86_400;
/// What the request's cookies said about persistence; the state HAProxy keeps
/// in its transaction between the request and the response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persist {
    /// Index (into `values` of [`process_request`]) of the server the
    /// request's persistence cookie validly names (HAProxy's `SF_DIRECT`).
    pub server: Option<usize>,
    /// The request carried the persistence cookie at all (valid or not).
    pub seen: bool,
    /// For `maxlife`: the cookie's "first seen" date, if present, as HAProxy
    /// stores it (`txn->cookie_first_date`): Unix seconds, a multiple of 4
    /// (the cookie holds seconds / 4 in 30 bits). Kept even when the cookie
    /// names no server: HAProxy then reuses it in the cookie it inserts.
    pub first: Option<u32>,
    /// For `maxidle`: the cookie's "last seen" date (`txn->cookie_last_date`),
    /// same encoding as `first`. [`process_response`] needs it to decide
    /// whether the date must be refreshed.
    pub last: Option<u32>,
    /// The server part of the cookie that named `server` (equals
    /// `values[server]`). [`process_response`] compares it with the value of
    /// the server that actually answered, so a redispatched request gets a new
    /// cookie.
    pub value: Option<String>,
}

/// Request side. `headers` are the client's request headers (possibly several
/// `Cookie` headers); `values[i]` is server i's cookie value (`None`: the
/// server has no cookie, or must not be chosen by cookie right now, see the
/// module doc); `now` is Unix time in seconds.
///
/// This is HAProxy's `http_manage_client_side_cookies()`. Every `Cookie`
/// header is parsed in order with HAProxy's grammar: pairs separated by `;`
/// or `,`, white space around names and values ignored, double-quoted values
/// (with backslash escapes) kept whole, names starting with `$` (RFC 2109
/// attributes) skipped, names compared case-sensitively. Header values are
/// handled as bytes, so non-UTF-8 headers are processed, not dropped.
///
/// For each occurrence of the persistence cookie:
///
/// * The server part is the whole value, or in `prefix` mode what precedes
///   the first `~`, or otherwise what precedes the first `|`. After a `|`
///   come the "last seen" date and, after a second `|`, the "first seen" date
///   (5 base64 characters each, Unix time / 4). A date that does not decode,
///   or decodes to 0, is ignored; a value with a broken date still names its
///   server. Dates are decoded in every mode but `prefix`, whatever the
///   options (HAProxy does); they are only *checked* when `maxidle` /
///   `maxlife` are set: older than that (`maxlife` first), or more than a day
///   in the future, and the cookie is treated as absent.
/// * An empty server part never matches (so a client that learnt an empty
///   cookie cannot stick to a server without cookie).
/// * The server is the first `values[i]` equal to the server part byte for
///   byte. **Duplicates:** once one occurrence validly named a server, later
///   ones are not used for the choice (HAProxy's `SF_ASSIGNED`); an invalid
///   occurrence does not prevent a later valid one from being used. The dates
///   are the transaction's, not the occurrence's: each occurrence that
///   carries a decodable date overwrites them, an expired one clears them,
///   exactly as HAProxy's `txn->cookie_last_date` / `cookie_first_date`.
///
/// Edits, made exactly as HAProxy makes them:
///
/// * `insert` + `indirect`: every occurrence is removed (valid or not), with
///   the `$` attributes that follow it. The other cookies keep their bytes,
///   except for HAProxy's `http_del_hdr_value()` joint: the separator that
///   followed the removed cookie takes its place, followed by one space, and
///   spaces before it are dropped (`a=1;SRV=x;b=2` becomes `a=1; b=2`). A
///   header left with nothing is removed.
/// * `prefix`: `VALUE~` is stripped from the value (whether or not `VALUE`
///   names a server) so the application finds its own cookie.
/// * In every mode, spaces around the `=` of any cookie are removed
///   (`a = 1` becomes `a=1`): HAProxy normalises them so it can parse and
///   rewrite cookies. This is the one way in which cookies other than the
///   persistence cookie can change.
///
/// A header whose content does not change is left untouched, including any
/// leading or trailing white space.
pub fn process_request(
    cfg: &CookieConfig,
    headers: &mut HeaderMap,
    values: &[Option<&str>],
    now: u64,
) -> Persist {
    let mut state = RequestState {
        now: i64::try_from(now).unwrap_or(i64::MAX),
        ..RequestState::default()
    };
    if headers.contains_key(COOKIE) {
        let mut changed = false;
        let mut kept = Vec::new();
        for original in headers.get_all(COOKIE) {
            match process_cookie_header(cfg, original.as_bytes(), values, &mut state) {
                None => kept.push(original.clone()),
                Some(edited) => {
                    changed = true;
                    if edited.is_empty() {
                        continue; // HAProxy removes a header left empty.
                    }
                    match HeaderValue::from_bytes(&edited) {
                        Ok(mut value) => {
                            value.set_sensitive(original.is_sensitive());
                            kept.push(value);
                        }
                        // Cannot happen (only bytes of a valid value, ';', ',' and
                        // ' ' are ever written), but never lose a header over it.
                        Err(_) => kept.push(original.clone()),
                    }
                }
            }
        }
        if changed {
            replace_all(headers, COOKIE, kept);
        }
    }
    Persist {
        server: state.server,
        seen: state.seen,
        first: (state.first_date != 0).then_some(state.first_date),
        last: (state.last_date != 0).then_some(state.last_date),
        value: state.value,
    }
}

/// HAProxy's per-transaction cookie state while the request is analysed.
#[derive(Default)]
struct RequestState {
    now: i64,
    /// `SF_DIRECT | SF_ASSIGNED`: a server was found.
    server: Option<usize>,
    value: Option<String>,
    seen: bool,
    /// `txn->cookie_first_date` / `txn->cookie_last_date` (seconds, 0 = none).
    first_date: u32,
    last_date: u32,
}

/// Process one `Cookie` header value. Returns the new value when it changed
/// (empty: remove the header), `None` when it did not.
///
/// HAProxy edits the header in place with `memmove()` as it walks it. The
/// pair boundaries it finds are the same as those of the original bytes
/// (every edit only removes bytes, or writes a separator where one is
/// removed, behind the walk), so this walks the original bytes and builds the
/// edited header in one pass: linear time even for huge headers full of
/// persistence cookies, where repeated `memmove()`s would be quadratic.
/// `out` is always the edited header up to the separator before the current
/// pair; `del_from` (an offset into `out`) marks the start of a run of
/// persistence cookies pending removal, as HAProxy's `del_from` does.
fn process_cookie_header(
    cfg: &CookieConfig,
    raw: &[u8],
    values: &[Option<&str>],
    state: &mut RequestState,
) -> Option<Vec<u8>> {
    let src = trim_lws(raw);
    let end = src.len();
    let name = cfg.name.as_bytes();
    let prefix_mode = cfg.mode == CookieMode::Prefix;
    let remove_ours = cfg.mode == CookieMode::Insert && cfg.indirect;
    let maxidle = whole_secs(cfg.maxidle);
    let maxlife = whole_secs(cfg.maxlife);

    let mut out: Vec<u8> = Vec::with_capacity(end);
    let mut del_from: Option<usize> = None;
    // Some cookie must stay: remove only the pending run, not the header.
    let mut preserve_hdr = false;
    let mut prev = 0;
    let mut first = true;
    while prev < end {
        let pair = scan_pair(src, prev, first, end, true);
        first = false;
        let mut emit_from = prev;

        // `$Version`, `$Path`...: skipped, and removed along with a
        // persistence cookie they follow.
        if src.get(pair.att_beg) == Some(&b'$') {
            out.extend_from_slice(&src[prev..pair.next]);
            prev = pair.next;
            continue;
        }
        if !pair.has_equal {
            // Not ours, so it stays; a pending run before it goes.
            preserve_hdr = true;
            if let Some(from) = del_from.take() {
                emit_from = delete_run(&mut out, src, from, prev);
            }
            out.extend_from_slice(&src[emit_from..pair.next]);
            prev = pair.next;
            continue;
        }

        let mut value_start = pair.val_beg;
        if &src[pair.att_beg..pair.att_end] == name {
            state.seen = true;
            let (val_beg, val_end) = (pair.val_beg, pair.val_end);
            let value = &src[val_beg..val_end];
            let mut delim;
            if prefix_mode {
                delim = value
                    .iter()
                    .position(|&b| b == COOKIE_DELIM)
                    .map_or(val_end, |i| val_beg + i);
            } else {
                delim = val_end;
                if let Some(i) = value.iter().position(|&b| b == COOKIE_DELIM_DATE) {
                    delim = val_beg + i;
                    let after = delim + 1;
                    // At least 5 bytes after the first '|': the last-seen
                    // date; more than 5 after a second '|': the first-seen
                    // date. A date decoding to 0 counts as absent.
                    if val_end - after >= 5
                        && let Some(date) = b64_to_s30(&src[after..after + 5]).filter(|&d| d > 0)
                    {
                        state.last_date = date << 2;
                    }
                    let rest = &src[after..val_end];
                    if let Some(j) = rest.iter().position(|&b| b == COOKIE_DELIM_DATE)
                        && val_end - (after + j) > 5
                        && let Some(date) =
                            b64_to_s30(&src[after + j + 1..after + j + 6]).filter(|&d| d > 0)
                    {
                        state.first_date = date << 2;
                    }
                }
            }

            // Too old, or too far in the future: "pretend we have not found
            // the cookie" and forget the dates. The differences are truncated
            // to 32 bits as HAProxy's `(signed)` casts do.
            let stale = |date: u32, limit: u32| {
                date != 0
                    && limit != 0
                    && (diff_i32(state.now, i64::from(date)) > limit as i32
                        || diff_i32(i64::from(date), state.now) > FUTURE_DATE_TOLERANCE)
            };
            if stale(state.first_date, maxlife) || stale(state.last_date, maxidle) {
                delim = val_beg;
                state.first_date = 0;
                state.last_date = 0;
            }

            if delim != val_beg && state.server.is_none() {
                let wanted = &src[val_beg..delim];
                let found = values
                    .iter()
                    .enumerate()
                    .find_map(|(i, v)| v.filter(|v| v.as_bytes() == wanted).map(|v| (i, v)));
                if let Some((index, value)) = found {
                    state.server = Some(index);
                    state.value = Some(value.to_owned());
                }
            }

            if prefix_mode && delim != val_end {
                value_start = delim + 1; // strip "VALUE~"
                del_from = None;
                preserve_hdr = true;
            } else if del_from.is_none() && remove_ours {
                del_from = Some(out.len());
            }
        } else {
            preserve_hdr = true;
            if let Some(from) = del_from.take() {
                emit_from = delete_run(&mut out, src, from, prev);
            }
        }
        // The pair, without blanks around its '=' (and without "VALUE~").
        out.extend_from_slice(&src[emit_from..pair.att_end]);
        out.push(b'=');
        out.extend_from_slice(&src[value_start..pair.next]);
        prev = pair.next;
    }

    if let Some(from) = del_from {
        // A run still pending at the end: cut from it (the bytes before it,
        // trailing spaces included, stay), or drop the whole header.
        out.truncate(if preserve_hdr { from } else { 0 });
    }
    (out.as_slice() != src).then_some(out)
}

/// Remove the pending run of persistence cookies `out[from..]` just before the
/// separator `src[sep]` of the pair being processed, the way
/// `http_del_hdr_value()` does it: at the start of the header the separator
/// and the blanks after it go too; elsewhere the blanks before the run go,
/// the separator moves to where the run began, and one space follows it.
/// Returns where in `src` the current pair's bytes resume.
fn delete_run(out: &mut Vec<u8>, src: &[u8], from: usize, sep: usize) -> usize {
    let old_len = out.len(); // where `sep` sits in the edited header
    if from == 0 {
        out.clear();
    } else {
        out.truncate(from);
        while out.last().is_some_and(|&b| is_spht(b)) {
            out.pop();
        }
        let new_from = out.len();
        out.push(src[sep]);
        // HAProxy writes the space only when the removed run leaves room for
        // it, which it always does (the run holds at least a separator, a
        // name and '=').
        if new_from + 1 < old_len {
            out.push(b' ');
        }
    }
    let mut resume = sep + 1;
    while resume < src.len() && is_spht(src[resume]) {
        resume += 1;
    }
    resume
}

/// Response side. `resp` are the server's response headers (edited in place),
/// `status` its status code, `method` the request's method, `chosen` the
/// cookie value of the server that served this response (`None` if that
/// server has no cookie), `persist` what [`process_request`] returned, `now`
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
) {
    if status < 200 && status != 101 {
        return;
    }
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
            match process_set_cookie_header(
                cfg,
                original.as_bytes(),
                cookie2,
                chosen_bytes,
                direct,
                &mut found,
            ) {
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
        return;
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
        return;
    }

    let cookie = build_set_cookie(cfg, chosen_bytes, first, now);
    let Ok(value) = HeaderValue::from_bytes(&cookie) else {
        return; // `chosen` or the name cannot be sent in a header
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

    /// A Unix time divisible by 4, so cookie dates round-trip exactly.
    const NOW: u64 = 1_700_000_000;
    /// Three servers: s1, s2, and one without a cookie.
    const VALUES: [Option<&str>; 3] = [Some("s1"), Some("s2"), None];

    fn cfg(args: &str) -> CookieConfig {
        CookieConfig::parse(args).expect("valid config")
    }

    fn request_headers(cookies: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.com"));
        for cookie in cookies {
            headers.append(
                COOKIE,
                HeaderValue::from_bytes(cookie).expect("test header"),
            );
        }
        headers
    }

    fn all(headers: &HeaderMap, name: &str) -> Vec<Vec<u8>> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    }

    fn strings(headers: &HeaderMap, name: &str) -> Vec<String> {
        all(headers, name)
            .into_iter()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .collect()
    }

    /// Run the request side; return the Cookie headers left and the verdict.
    fn run(
        args: &str,
        cookies: &[&[u8]],
        values: &[Option<&str>],
        now: u64,
    ) -> (Vec<String>, Persist) {
        let mut headers = request_headers(cookies);
        let persist = process_request(&cfg(args), &mut headers, values, now);
        assert_eq!(
            headers.get("host").map(HeaderValue::as_bytes),
            Some(&b"example.com"[..])
        );
        (strings(&headers, "cookie"), persist)
    }

    fn run1(args: &str, cookie: &str) -> (Vec<String>, Persist) {
        run(args, &[cookie.as_bytes()], &VALUES, NOW)
    }

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

    /// The 5-character date HAProxy writes for Unix time `secs`.
    fn date(secs: u64) -> String {
        String::from_utf8_lossy(&s30_to_b64((secs >> 2) as u32)).into_owned()
    }

    // ----- request side ----------------------------------------------------

    #[test]
    fn no_cookie_header_means_no_persistence() {
        let mut headers = request_headers(&[]);
        let persist = process_request(&cfg("SRV insert indirect"), &mut headers, &VALUES, NOW);
        assert_eq!(persist, Persist::default());
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn valid_cookie_names_its_server() {
        let (left, p) = run1("SRV insert", "a=1; SRV=s2; b=2");
        assert_eq!(left, ["a=1; SRV=s2; b=2"]); // no indirect: untouched
        assert_eq!(
            p,
            Persist {
                server: Some(1),
                seen: true,
                value: Some("s2".into()),
                ..Persist::default()
            }
        );
    }

    #[test]
    fn indirect_removes_the_cookie_wherever_it_is() {
        let cases = [
            ("a=1; SRV=s1; b=2", vec!["a=1; b=2"]),
            ("SRV=s1; b=2", vec!["b=2"]),
            ("a=1; SRV=s1", vec!["a=1"]),
            ("SRV=s1", vec![]),
            ("  SRV=s1  ", vec![]),
            // Runs of persistence cookies go in one piece.
            ("a=1; SRV=s1; SRV=s2; b=2", vec!["a=1; b=2"]),
            // Invalid ones are removed too.
            ("a=1; SRV=nobody", vec!["a=1"]),
        ];
        for (cookie, expected) in cases {
            let (left, p) = run1("SRV insert indirect", cookie);
            assert_eq!(left, expected, "{cookie:?}");
            assert!(p.seen, "{cookie:?}");
        }
    }

    #[test]
    fn indirect_joint_is_haproxys() {
        // http_del_hdr_value(): the next separator replaces the removed run,
        // followed by one space; blanks before the run go.
        let cases = [
            ("a=1;SRV=s1;b=2", "a=1; b=2"),
            ("a=1 ;  SRV=s1 ;b=2", "a=1; b=2"),
            ("a=1, SRV=s1, b=2", "a=1, b=2"),
            ("a=1; SRV=s1, b=2", "a=1, b=2"),
            // A run pending at the end is cut where it starts; what precedes
            // stays as it is, trailing blank or separator included.
            ("a=1 ; SRV=s1", "a=1 "),
            ("a=1; SRV=s1;", "a=1; "),
        ];
        for (cookie, expected) in cases {
            let (left, _) = run1("SRV insert indirect", cookie);
            assert_eq!(left, [expected], "{cookie:?}");
        }
    }

    #[test]
    fn indirect_keeps_other_cookies_and_headers_byte_for_byte() {
        let other: &[u8] = b"\xff\x80=\xfe; z=\"q;u\"; odd  thing;\tt=\"x\\\"y\"";
        let (left, p) = run(
            "SRV insert indirect",
            &[b"a=1", b"SRV=s1", other, b"SRV=s2; k=v"],
            &VALUES,
            NOW,
        );
        assert_eq!(p.server, Some(0));
        let left: Vec<Vec<u8>> = left.into_iter().map(String::into_bytes).collect();
        // `strings()` is lossy; compare the raw bytes instead.
        let mut headers = request_headers(&[b"a=1", b"SRV=s1", other, b"SRV=s2; k=v"]);
        process_request(&cfg("SRV insert indirect"), &mut headers, &VALUES, NOW);
        assert_eq!(
            all(&headers, "cookie"),
            vec![b"a=1".to_vec(), other.to_vec(), b"k=v".to_vec()]
        );
        assert_eq!(left.len(), 3);
    }

    #[test]
    fn rfc2109_dollar_attributes_follow_their_cookie() {
        let (left, _) = run1("SRV insert indirect", "$Version=1; SRV=s1; $Path=/; a=1");
        assert_eq!(left, ["$Version=1; a=1"]);
        // Nothing but attributes left: the header goes.
        let (left, _) = run1("SRV insert indirect", "$Version=1; SRV=s1; $Path=/");
        assert!(left.is_empty());
        // Attributes alone are kept.
        let (left, p) = run1("SRV insert indirect", "$Version=1");
        assert_eq!(left, ["$Version=1"]);
        assert!(!p.seen);
        // A name starting with '$' is never the persistence cookie.
        let (_, p) = run1("$SRV insert", "$SRV=s1");
        assert!(!p.seen);
    }

    #[test]
    fn cookies_without_equal_sign_are_kept() {
        let (left, p) = run1("SRV insert indirect", "SRV=s1; flag; a=1");
        assert_eq!(left, ["flag; a=1"]);
        assert_eq!(p.server, Some(0));
        let (left, _) = run1("SRV insert indirect", "flag; SRV=s1");
        assert_eq!(left, ["flag"]);
        // A bare "SRV" is not the cookie.
        let (left, p) = run1("SRV insert indirect", "SRV; a=1");
        assert_eq!(left, ["SRV; a=1"]);
        assert!(!p.seen);
    }

    #[test]
    fn blanks_around_equal_signs_are_normalised_in_every_mode() {
        let (left, p) = run1("SRV", "a = 1; SRV =\ts1");
        assert_eq!(left, ["a=1; SRV=s1"]);
        assert_eq!(p.server, Some(0));
        // An unchanged header keeps its surrounding white space.
        let mut headers = request_headers(&[b"  a=1; SRV=s1 "]);
        process_request(&cfg("SRV"), &mut headers, &VALUES, NOW);
        assert_eq!(all(&headers, "cookie"), vec![b"  a=1; SRV=s1 ".to_vec()]);
    }

    #[test]
    fn value_naming_no_server_is_absent() {
        for cookie in ["SRV=s9", "SRV=", "SRV=S1", "SRV= ", "SRV=s1x", "SRV=\"s1\""] {
            let (_, p) = run1("SRV insert", cookie);
            assert_eq!(
                p,
                Persist {
                    seen: true,
                    ..Persist::default()
                },
                "{cookie:?}"
            );
        }
        // A server without a cookie (None) can never be named.
        let (_, p) = run("SRV insert", &[b"SRV=s1"], &[None, Some("s2")], NOW);
        assert_eq!(p.server, None);
        let (_, p) = run("SRV insert", &[b"SRV=s2"], &[None, Some("s2")], NOW);
        assert_eq!(p.server, Some(1));
        // Names are case-sensitive and exact.
        let (_, p) = run1("SRV insert", "srv=s1; SRVX=s1; XSRV=s1");
        assert!(!p.seen);
    }

    #[test]
    fn duplicate_cookies_first_valid_one_wins() {
        // HAProxy stops choosing once a server is assigned (SF_ASSIGNED); an
        // invalid occurrence does not block a later valid one.
        let (left, p) = run1("SRV insert indirect", "SRV=bad; a=1; SRV=s2; SRV=s1");
        assert_eq!(p.server, Some(1));
        assert_eq!(p.value.as_deref(), Some("s2"));
        assert_eq!(left, ["a=1"]);
        // Across headers too.
        let (left, p) = run(
            "SRV insert indirect",
            &[b"x=1; SRV=zz", b"SRV=s2; y=2", b"SRV=s1"],
            &VALUES,
            NOW,
        );
        assert_eq!(p.server, Some(1));
        assert_eq!(left, ["x=1", "y=2"]);
        // Servers sharing a value: the first one in order.
        let (_, p) = run("SRV", &[b"SRV=a"], &[None, Some("a"), Some("a")], NOW);
        assert_eq!(p.server, Some(1));
    }

    #[test]
    fn quoted_values_are_kept_whole() {
        let (_, p) = run1("SRV", "a=\"x;SRV=s1, \\\"y\"; SRV=s2");
        assert_eq!(p.server, Some(1));
        let (left, _) = run1("SRV insert indirect", "a=\"x;SRV=s1\"; SRV=s2");
        assert_eq!(left, ["a=\"x;SRV=s1\""]);
        // An unterminated quote swallows the rest of the header.
        let (_, p) = run1("SRV", "a=\"x; SRV=s1");
        assert!(!p.seen);
    }

    #[test]
    fn prefix_mode_strips_the_server_prefix() {
        let cases = [
            ("JSESSIONID=s1~abc; x=1", "JSESSIONID=abc; x=1", Some(0)),
            (
                "x=1; JSESSIONID=s2~abc~def",
                "x=1; JSESSIONID=abc~def",
                Some(1),
            ),
            // Stripped whatever the prefix names.
            ("JSESSIONID=zz~abc", "JSESSIONID=abc", None),
            ("JSESSIONID=~abc", "JSESSIONID=abc", None),
            ("JSESSIONID = s1~abc", "JSESSIONID=abc", Some(0)),
            // No '~': the whole value is the server part, nothing stripped.
            ("JSESSIONID=s1", "JSESSIONID=s1", Some(0)),
            ("JSESSIONID=abc", "JSESSIONID=abc", None),
            // Dates are not a thing in prefix mode.
            ("JSESSIONID=s1|AAAAB~x", "JSESSIONID=x", None),
        ];
        for (cookie, expected, server) in cases {
            let (left, p) = run1("JSESSIONID prefix", cookie);
            assert_eq!(left, [expected], "{cookie:?}");
            assert_eq!(p.server, server, "{cookie:?}");
            assert!(p.seen);
        }
    }

    #[test]
    fn maxidle_dates_are_checked() {
        let args = "SRV insert indirect maxidle 30m";
        let with_last = |last: u64| run1(args, &format!("a=1; SRV=s1|{}", date(last)));

        let (left, p) = with_last(NOW - 100);
        assert_eq!(left, ["a=1"]);
        assert_eq!(p.server, Some(0));
        assert_eq!(p.last, Some((NOW - 100) as u32));
        assert_eq!(p.first, None);
        // Exactly maxidle old is still valid; one 4-second step more is not.
        assert_eq!(with_last(NOW - 1800).1.server, Some(0));
        let (left, p) = with_last(NOW - 1804);
        assert_eq!(left, ["a=1"]);
        assert_eq!(
            p,
            Persist {
                seen: true,
                ..Persist::default()
            }
        );
        // In the future: accepted up to a day ahead.
        assert_eq!(with_last(NOW + 86_400).1.server, Some(0));
        assert_eq!(with_last(NOW + 86_404).1.server, None);
        // No date at all: accepted (the response will add one).
        let (_, p) = run1(args, "SRV=s1");
        assert_eq!((p.server, p.last), (Some(0), None));
    }

    #[test]
    fn maxlife_dates_are_checked() {
        let args = "SRV insert maxlife 1h";
        let with_dates = |first: u64| run1(args, &format!("SRV=s1|{}|{}", date(NOW), date(first)));
        let p = with_dates(NOW - 3600).1;
        assert_eq!(p.server, Some(0));
        assert_eq!(p.first, Some((NOW - 3600) as u32));
        assert_eq!(p.last, Some(NOW as u32));
        assert_eq!(
            with_dates(NOW - 3604).1,
            Persist {
                seen: true,
                ..Persist::default()
            }
        );
        assert_eq!(with_dates(NOW + 86_404).1.server, None);
        // maxlife is checked before maxidle, and either kills the cookie.
        let both = "SRV insert maxidle 10m maxlife 1h";
        let (_, p) = run1(
            both,
            &format!("SRV=s1|{}|{}", date(NOW - 700), date(NOW - 100)),
        );
        assert_eq!(p.server, None);
        // An empty "last" field still lets "first" be read.
        let (_, p) = run1(args, &format!("SRV=s1||{}", date(NOW - 8)));
        assert_eq!(
            (p.server, p.last, p.first),
            (Some(0), None, Some((NOW - 8) as u32))
        );
    }

    #[test]
    fn dates_are_decoded_even_when_not_checked() {
        // HAProxy parses the dates in every non-prefix mode; without
        // maxidle/maxlife it does not reject old ones.
        let (_, p) = run1("SRV insert", &format!("SRV=s2|{}|{}", date(8), date(4)));
        assert_eq!((p.server, p.last, p.first), (Some(1), Some(8), Some(4)));
    }

    #[test]
    fn broken_dates_are_ignored_but_the_server_part_counts() {
        for cookie in [
            "SRV=s1|",
            "SRV=s1|ab",
            "SRV=s1|!!!!!",
            "SRV=s1|AAAAA",
            "SRV=s1|AAAA=",
            "SRV=s1|\u{e9}\u{e9}\u{e9}",
            "SRV=s1|!!!!!|",
            "SRV=s1|!!!!!|zz",
            "SRV=s1|||||||",
        ] {
            let (_, p) = run1("SRV insert maxidle 30m maxlife 1h", cookie);
            assert_eq!(p.server, Some(0), "{cookie:?}");
            assert_eq!(p.first, None, "{cookie:?}");
        }
        // "AAAAB" = 1, i.e. Unix time 4: far too old for maxidle.
        let (_, p) = run1("SRV insert maxidle 30m", "SRV=s1|AAAAB");
        assert_eq!(p.server, None);
    }

    #[test]
    fn dates_belong_to_the_transaction_not_the_occurrence() {
        let args = "SRV insert maxidle 30m";
        // An invalid occurrence's fresh date is kept for the valid one.
        let (_, p) = run1(args, &format!("SRV=zz|{}; SRV=s1", date(NOW - 8)));
        assert_eq!((p.server, p.last), (Some(0), Some((NOW - 8) as u32)));
        // A later expired occurrence clears the dates of the chosen one.
        let (_, p) = run1(
            args,
            &format!("SRV=s1|{}; SRV=s2|{}", date(NOW - 8), date(NOW - 4000)),
        );
        assert_eq!((p.server, p.last), (Some(0), None));
    }

    #[test]
    fn other_modes_do_not_touch_the_request() {
        for args in ["SRV", "SRV rewrite", "SRV insert", "SRV indirect"] {
            let (left, p) = run1(args, "a=1; SRV=s2; b=2");
            assert_eq!(left, ["a=1; SRV=s2; b=2"], "{args}");
            assert_eq!(p.server, Some(1), "{args}");
        }
    }

    #[test]
    fn garbage_headers_never_panic() {
        let inputs: &[&[u8]] = &[
            b"",
            b" ",
            b";",
            b";;;",
            b",,,",
            b"=",
            b"==;=",
            b"=s1",
            b"SRV",
            b"SRV=",
            b"SRV=;SRV=;",
            b"$",
            b"$=",
            b"\"",
            b"SRV=\"s1",
            b"SRV=s1\\",
            b"SRV=\"\\",
            b" ; SRV=s1 , ",
            b"\xff\xfe\xfd",
            b"SRV=\xffs1|\xff\xff\xff\xff\xff|\x80",
            b"SRV=s1|ZZZZZ|ZZZZZ|ZZZZZ",
            b"SRV=s1~",
            b"SRV=~",
            b"~~~",
            b"SRV=s1|",
            b"SRV\t=\t",
            b"a=1;\t;\t;SRV=s1;\t",
        ];
        let configs = [
            "SRV insert indirect maxidle 1m maxlife 1h",
            "SRV insert",
            "SRV prefix",
            "SRV prefix indirect",
            "SRV rewrite",
            "SRV",
            "SRV indirect",
        ];
        for args in configs {
            for input in inputs {
                let mut headers = request_headers(&[input]);
                let _ = process_request(&cfg(args), &mut headers, &VALUES, NOW);
                let _ = process_request(&cfg(args), &mut headers, &[], 0);
                let _ = process_request(&cfg(args), &mut headers, &VALUES, u64::MAX);
            }
        }
    }

    /// A tiny deterministic generator for the fuzz tests.
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *seed >> 33
    }

    fn random_header(seed: &mut u64) -> Vec<u8> {
        const TOKENS: &[&[u8]] = &[
            b"SRV", b"SRV=", b"SRV=s1", b"s1", b"s2", b"a", b"x=1", b"=", b";", b";", b",", b" ",
            b" ", b"\t", b"\"", b"\\", b"$", b"~", b"|", b"AAAAB", b"\xff", b"s1~",
        ];
        let len = lcg(seed) % 16;
        (0..len)
            .flat_map(|_| {
                TOKENS[(lcg(seed) % TOKENS.len() as u64) as usize]
                    .iter()
                    .copied()
            })
            .collect()
    }

    fn without_blanks(v: &[u8]) -> Vec<u8> {
        v.iter().copied().filter(|&b| !is_spht(b)).collect()
    }

    #[test]
    fn fuzz_request_side() {
        let mut seed = 42;
        let insert = cfg("SRV insert indirect maxidle 1m");
        let passive = cfg("SRV");
        for _ in 0..5_000 {
            let input = random_header(&mut seed);
            let Ok(value) = HeaderValue::from_bytes(&input) else {
                continue;
            };
            // insert + indirect: nothing named SRV survives.
            let mut headers = HeaderMap::new();
            headers.insert(COOKIE, value.clone());
            process_request(&insert, &mut headers, &VALUES, NOW);
            let again = process_request(&insert, &mut headers, &VALUES, NOW);
            assert!(!again.seen, "{:?} -> {:?}", input, all(&headers, "cookie"));
            // Passive: at most blanks are removed.
            let mut headers = HeaderMap::new();
            headers.insert(COOKIE, value);
            process_request(&passive, &mut headers, &VALUES, NOW);
            let left = all(&headers, "cookie");
            assert_eq!(left.len(), 1);
            assert_eq!(
                without_blanks(&left[0]),
                without_blanks(&input),
                "{input:?}"
            );
        }
    }

    /// HAProxy's in-place algorithm, transcribed literally (edits made on the
    /// buffer as it is walked, re-scanning the edited bytes), to check the
    /// single-pass rewrite of `process_cookie_header` against it.
    fn in_place_request(raw: &[u8], name: &[u8], remove_ours: bool, prefix: bool) -> Vec<u8> {
        let mut buf = trim_lws(raw).to_vec();
        let mut del_from: Option<usize> = None;
        let mut preserve = false;
        let mut prev = 0;
        let mut first = true;
        while prev < buf.len() {
            let pair = scan_pair(&buf, prev, first, buf.len(), true);
            first = false;
            let Pair {
                att_beg,
                att_end,
                mut equal,
                mut val_beg,
                mut val_end,
                mut next,
                has_equal,
            } = pair;
            if buf.get(att_beg) == Some(&b'$') {
                prev = next;
                continue;
            }
            if !has_equal {
                preserve = true;
                if let Some(mut from) = del_from.take() {
                    let before = buf.len();
                    del_hdr_value(&mut buf, &mut from, prev);
                    next -= before - buf.len();
                }
                prev = next;
                continue;
            }
            if att_end != equal || val_beg > equal + 1 {
                let removed = (equal - att_end) + (val_beg - equal - 1);
                buf.drain(equal + 1..val_beg);
                buf.drain(att_end..equal);
                equal = att_end;
                val_beg = equal + 1;
                val_end -= removed;
                next -= removed;
            }
            if &buf[att_beg..att_end] == name {
                let delim = if prefix {
                    buf[val_beg..val_end]
                        .iter()
                        .position(|&b| b == COOKIE_DELIM)
                        .map_or(val_end, |i| val_beg + i)
                } else {
                    val_end
                };
                if prefix && delim != val_end {
                    buf.drain(val_beg..=delim);
                    next -= delim + 1 - val_beg;
                    del_from = None;
                    preserve = true;
                } else if del_from.is_none() && remove_ours {
                    del_from = Some(prev);
                }
            } else {
                preserve = true;
                if let Some(mut from) = del_from.take() {
                    let before = buf.len();
                    del_hdr_value(&mut buf, &mut from, prev);
                    next -= before - buf.len();
                }
            }
            prev = next;
        }
        if let Some(from) = del_from {
            buf.truncate(if preserve { from } else { 0 });
        }
        buf
    }

    #[test]
    fn single_pass_rewrite_equals_haproxys_in_place_algorithm() {
        let configs = [
            ("SRV insert indirect", true, false),
            ("SRV prefix", false, true),
            ("SRV", false, false),
        ];
        let mut seed = 1234;
        for round in 0..20_000 {
            let input = random_header(&mut seed);
            let (args, remove_ours, prefix) = configs[round % configs.len()];
            let config = cfg(args);
            let mut state = RequestState::default();
            let ours = process_cookie_header(&config, &input, &VALUES, &mut state)
                .unwrap_or_else(|| trim_lws(&input).to_vec());
            let theirs = in_place_request(&input, b"SRV", remove_ours, prefix);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "{args}: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn enormous_header_is_processed_in_linear_time() {
        const N: usize = 20_000;
        let header = "SRV=s1; a=1; ".repeat(N);
        let (left, p) = run("SRV insert indirect", &[header.as_bytes()], &VALUES, NOW);
        assert_eq!(p.server, Some(0));
        let expected = format!("{};", vec!["a=1"; N].join("; "));
        assert_eq!(left, [expected]);
        // And one with nothing to remove.
        let header = "a=1; ".repeat(N);
        let (left, _) = run("SRV insert indirect", &[header.as_bytes()], &VALUES, NOW);
        assert_eq!(left, [header]);
    }

    // ----- response side ---------------------------------------------------

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
