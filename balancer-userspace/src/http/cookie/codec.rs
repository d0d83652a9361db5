//! What the two cookie editors share: HAProxy's header-value scanning
//! (`src/http.c` `http_find_cookie_value_end()`,
//! `http_find_hdr_value_end()`, `http_del_hdr_value()`; `src/http_htx.c`
//! `__http_find_header()`: values are trimmed of linear white space, list
//! headers are split on unquoted commas), the cookie pair scanner both
//! cookie parsers use, the dates a cookie carries (`src/base64.c`
//! `s30tob64()` / `b64tos30()`: Unix time / 4 as 5 base64 characters), and
//! replacing a header's values in place.

use std::{iter, time::Duration};

use http::{HeaderMap, HeaderName, HeaderValue, header::Entry};

use crate::config::cookie::MAX_TIMER;

/// Separator between the server's value and the application's value in
/// `prefix` mode (HAProxy's `COOKIE_DELIM`).
pub(super) const COOKIE_DELIM: u8 = b'~';
/// Separator before each date in `insert` mode with `maxidle` / `maxlife`
/// (HAProxy's `COOKIE_DELIM_DATE`).
pub(super) const COOKIE_DELIM_DATE: u8 = b'|';
/// One `NAME=VALUE` pair found by the cookie parsers, as byte offsets.
/// `prev` (the caller's) is the separator before the pair, or the start.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pair {
    pub(super) att_beg: usize,
    /// First byte after the name's last non-blank byte.
    pub(super) att_end: usize,
    /// The `=`, or the separator / end that stopped the name.
    pub(super) equal: usize,
    pub(super) val_beg: usize,
    /// First byte after the value's last non-blank byte.
    pub(super) val_end: usize,
    /// The separator that ends the pair, or the end.
    pub(super) next: usize,
    pub(super) has_equal: bool,
}

/// Scan one pair starting at `prev` (a separator, or the start when `first`),
/// the way both HAProxy cookie parsers do. The name stops at `=`, `;`, and,
/// when `comma_ends_name` (`Cookie`, `Set-Cookie2`), `,`. The value stops at
/// an unquoted `;` or `,` (`http_find_cookie_value_end()`).
pub(super) fn scan_pair(
    buf: &[u8],
    prev: usize,
    first: bool,
    end: usize,
    comma_ends_name: bool,
) -> Pair {
    let mut att_beg = if first { prev } else { prev + 1 };
    while att_beg < end && is_spht(buf[att_beg]) {
        att_beg += 1;
    }
    let mut equal = att_beg;
    let mut att_end = att_beg;
    while equal < end {
        let c = buf[equal];
        if c == b'=' || c == b';' || (comma_ends_name && c == b',') {
            break;
        }
        equal += 1;
        if !is_spht(c) {
            att_end = equal;
        }
    }
    if equal < end && buf[equal] == b'=' {
        let mut val_beg = equal + 1;
        while val_beg < end && is_spht(buf[val_beg]) {
            val_beg += 1;
        }
        let next = value_end(buf, val_beg, end, true);
        let mut val_end = next;
        while val_end > val_beg && is_spht(buf[val_end - 1]) {
            val_end -= 1;
        }
        Pair {
            att_beg,
            att_end,
            equal,
            val_beg,
            val_end,
            next,
            has_equal: true,
        }
    } else {
        Pair {
            att_beg,
            att_end,
            equal,
            val_beg: equal,
            val_end: equal,
            next: equal,
            has_equal: false,
        }
    }
}

/// HAProxy's `http_del_hdr_value()` on a whole buffer: remove the value
/// between the separator (or start) `*from` and the separator (or end)
/// `next`. At the start, `next`'s separator and the blanks after it go too;
/// elsewhere the blanks before `*from` go, `next`'s separator takes `*from`'s
/// place followed by one space when there is room, and the blanks after it go.
/// `*from` ends on the separator kept.
pub(super) fn del_hdr_value(buf: &mut Vec<u8>, from: &mut usize, next: usize) {
    let end = buf.len();
    let mut write = *from;
    let mut read = next;
    if write == 0 {
        if read < end {
            read += 1;
        }
    } else {
        while write > 0 && is_spht(buf[write - 1]) {
            write -= 1;
        }
        *from = write;
        if read < end {
            buf[write] = buf[read];
            write += 1;
            read += 1;
            if write + 1 < read {
                buf[write] = b' ';
                write += 1;
            }
        }
    }
    while read < end && is_spht(buf[read]) {
        read += 1;
    }
    buf.drain(write..read);
}

/// HAProxy's `HTTP_IS_SPHT`.
pub(super) fn is_spht(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// HAProxy's `HTTP_IS_LWS`.
fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Header values as `http_find_header()` returns them: without leading or
/// trailing linear white space.
pub(super) fn trim_lws(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_lws(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| !is_lws(b)).map_or(start, |p| p + 1);
    &v[start..end]
}

/// `http_find_cookie_value_end()` (`semicolon`) and
/// `http_find_hdr_value_end()`: the first unquoted `,` (or `;`) at or after
/// `s`, honouring double quotes and backslash escapes inside them; `e` if none.
pub(super) fn value_end(buf: &[u8], mut s: usize, e: usize, semicolon: bool) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    while s < e {
        let c = buf[s];
        if escaped {
            escaped = false;
        } else if quoted {
            if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                quoted = false;
            }
        } else if c == b'"' {
            quoted = true;
        } else if c == b',' || (semicolon && c == b';') {
            return s;
        }
        s += 1;
    }
    s
}

/// The elements of a comma-separated header value, trimmed, as
/// `http_find_header(..., full = 0)` iterates them (empty elements included).
pub(super) fn list_elements(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = Some(0);
    iter::from_fn(move || {
        let start = pos?;
        let end = value_end(v, start, v.len(), false);
        pos = (end < v.len()).then_some(end + 1);
        Some(trim_lws(&v[start..end]))
    })
}

pub(super) fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `(signed)(a - b)` in HAProxy's date checks: the difference truncated to
/// 32 bits.
pub(super) fn diff_i32(a: i64, b: i64) -> i32 {
    a.wrapping_sub(b) as i32
}

/// A configured duration in whole seconds, rounded up like HAProxy's parser
/// and capped like it; 0 means "not set".
pub(super) fn whole_secs(d: Option<Duration>) -> u32 {
    d.map_or(0, |d| {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        u32::try_from(secs.min(MAX_TIMER)).unwrap_or(u32::MAX)
    })
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `s30tob64()`: the low 30 bits of `v` as 5 base64 digits, most significant
/// first, unpadded.
pub(super) fn s30_to_b64(v: u32) -> [u8; 5] {
    let mut out = [0u8; 5];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = BASE64[((v >> (24 - 6 * i)) & 0x3f) as usize];
    }
    out
}

/// `b64tos30()`: 5 base64 digits back to a 30-bit value; `None` when any is
/// not a base64 digit (`=` padding included).
pub(super) fn b64_to_s30(s: &[u8]) -> Option<u32> {
    let digits = s.get(..5)?;
    digits.iter().try_fold(0u32, |acc, &c| {
        let d = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some((acc << 6) | u32::from(d))
    })
}

/// Replace every value of `name` with `values`, in order, keeping the header's
/// place in the map; no values removes the header.
pub(super) fn replace_all(map: &mut HeaderMap, name: HeaderName, values: Vec<HeaderValue>) {
    let mut values = values.into_iter();
    let Some(first) = values.next() else {
        map.remove(&name);
        return;
    };
    // One field replaced by one (the usual case): in place. `entry` and
    // `insert` first make room for one more field, which regrows a map
    // that is full, as the maps hyper parses are.
    if values.len() == 0
        && map.get_all(&name).iter().nth(1).is_none()
        && let Some(v) = map.get_mut(&name)
    {
        *v = first;
        return;
    }
    match map.entry(name) {
        Entry::Occupied(mut entry) => {
            entry.insert(first);
            for value in values {
                entry.append(value);
            }
        }
        Entry::Vacant(entry) => {
            let mut entry = entry.insert_entry(first);
            for value in values {
                entry.append(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_encoding_is_haproxys_base64() {
        assert_eq!(&s30_to_b64(425_000_000), b"ZVPxA");
        assert_eq!(&s30_to_b64(0), b"AAAAA");
        assert_eq!(&s30_to_b64((1 << 30) - 1), b"/////");
        // Only the low 30 bits count.
        assert_eq!(s30_to_b64(0xc000_0005), s30_to_b64(5));
        for v in [0, 1, 63, 64, 425_000_000, (1 << 30) - 1] {
            assert_eq!(b64_to_s30(&s30_to_b64(v)), Some(v));
        }
        assert_eq!(
            b64_to_s30(b"+/09a"),
            Some((62 << 24) | (63 << 18) | (52 << 12) | (61 << 6) | 26)
        );
        for bad in [
            &b"AAAA="[..],
            b"AAAA|",
            b"AAAA",
            b"AA AA",
            b"AAAA\xff",
            b"-AAAA",
        ] {
            assert_eq!(b64_to_s30(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn helpers_behave() {
        assert_eq!(trim_lws(b" \t\r\na b \n"), b"a b");
        assert_eq!(trim_lws(b" \t "), b"");
        assert_eq!(value_end(b"a\"b;c\"d;e", 0, 9, true), 7);
        assert_eq!(value_end(b"\"a\\\"b,\"c,d", 0, 10, false), 8);
        assert_eq!(whole_secs(Some(Duration::from_millis(1500))), 2);
        assert_eq!(whole_secs(Some(Duration::ZERO)), 0);
        assert_eq!(whole_secs(None), 0);
        assert_eq!(whole_secs(Some(Duration::from_secs(u64::MAX))), 0x7fff_ffff);
        assert_eq!(diff_i32(1 << 32, 1), -1);
    }
}
