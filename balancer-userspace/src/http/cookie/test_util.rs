//! Helpers the cookie editors' tests share.

use http::{HeaderMap, HeaderValue, header::COOKIE};

use super::codec::s30_to_b64;
use crate::config::cookie::CookieConfig;

/// A Unix time divisible by 4, so cookie dates round-trip exactly.
pub(super) const NOW: u64 = 1_700_000_000;
/// Three servers: s1, s2, and one without a cookie.
pub(super) const VALUES: [Option<&str>; 3] = [Some("s1"), Some("s2"), None];

pub(super) fn cfg(args: &str) -> CookieConfig {
    CookieConfig::parse(args).expect("valid config")
}

pub(super) fn request_headers(cookies: &[&[u8]]) -> HeaderMap {
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

pub(super) fn all(headers: &HeaderMap, name: &str) -> Vec<Vec<u8>> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
}

pub(super) fn strings(headers: &HeaderMap, name: &str) -> Vec<String> {
    all(headers, name)
        .into_iter()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .collect()
}

/// The 5-character date HAProxy writes for Unix time `secs`.
pub(super) fn date(secs: u64) -> String {
    String::from_utf8_lossy(&s30_to_b64((secs >> 2) as u32)).into_owned()
}

/// A tiny deterministic generator for the fuzz tests.
pub(super) fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

pub(super) fn random_header(seed: &mut u64) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"SRV", b"SRV=", b"SRV=s1", b"s1", b"s2", b"a", b"x=1", b"=", b";", b";", b",", b" ", b" ",
        b"\t", b"\"", b"\\", b"$", b"~", b"|", b"AAAAB", b"\xff", b"s1~",
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
