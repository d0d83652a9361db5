//! The request side: the client's `Cookie` headers through HAProxy 2.6's
//! `http_manage_client_side_cookies()` (`src/http_ana.c`): the `Cookie`
//! header parser, date decoding and expiry, server matching, removal of the
//! cookie in `insert indirect` mode (`http_del_hdr_value()`), prefix
//! stripping. What it found ([`Persist`]) goes on to the response side.

use http::{HeaderMap, HeaderValue, header::COOKIE};

use super::codec::{
    COOKIE_DELIM, COOKIE_DELIM_DATE, b64_to_s30, diff_i32, is_spht, replace_all, scan_pair,
    trim_lws, whole_secs,
};
use crate::config::cookie::{CookieConfig, CookieMode};

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
    /// same encoding as `first`. [`process_response`](super::process_response) needs it to decide
    /// whether the date must be refreshed.
    pub last: Option<u32>,
    /// The server part of the cookie that named `server` (equals
    /// `values[server]`). [`process_response`](super::process_response) compares it with the value of
    /// the server that actually answered, so a redispatched request gets a new
    /// cookie.
    pub value: Option<String>,
    /// The cookie named a server that may not take requests now (down, in
    /// maintenance), and no other (HAProxy's `TX_CK_DOWN`).
    pub down: bool,
    /// The cookie was too old: `b'O'` its first date (`maxlife`), `b'E'`
    /// its last date (`maxidle`), as HAProxy logs them.
    pub stale: Option<u8>,
}

impl Persist {
    /// The request's cookie character of HAProxy's logs: `N` none, `V`
    /// valid, `I` invalid, `D` for a server down, `E` expired, `O` old.
    pub fn log_char(&self) -> u8 {
        match (self.seen, self.server.is_some(), self.stale, self.down) {
            (false, ..) => b'N',
            (true, true, ..) => b'V',
            (true, false, Some(c), _) => c,
            (true, false, None, true) => b'D',
            (true, false, None, false) => b'I',
        }
    }
}

/// Request side. `headers` are the client's request headers (possibly several
/// `Cookie` headers); `values[i]` is server i's cookie value (`None`: the
/// server has no cookie, or must not be chosen by cookie right now, see the
/// [module doc](super)); `now` is Unix time in seconds.
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
    process_request_down(cfg, headers, values, &[], now)
}

/// [`process_request`], where `down[i]` is server i's cookie value when
/// the server may not be chosen by its cookie now (and `values[i]` is
/// `None`): a cookie naming only such a server is reported
/// ([`Persist::down`]).
pub fn process_request_down(
    cfg: &CookieConfig,
    headers: &mut HeaderMap,
    values: &[Option<&str>],
    down: &[Option<&str>],
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
            match process_cookie_header(cfg, original.as_bytes(), (values, down), &mut state) {
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
        down: state.down && state.server.is_none(),
        stale: state.stale,
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
    down: bool,
    stale: Option<u8>,
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
    (values, down): (&[Option<&str>], &[Option<&str>]),
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
            let old = stale(state.first_date, maxlife);
            if old || stale(state.last_date, maxidle) {
                state.stale = Some(if old { b'O' } else { b'E' });
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
                } else if down.iter().flatten().any(|v| v.as_bytes() == wanted) {
                    state.down = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::cookie::{
        codec::{Pair, del_hdr_value},
        test_util::*,
    };

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
                stale: Some(b'E'),
                ..Persist::default()
            }
        );
        assert_eq!(p.log_char(), b'E');
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
                stale: Some(b'O'),
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
            let ours = process_cookie_header(&config, &input, (&VALUES, &[]), &mut state)
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
}
