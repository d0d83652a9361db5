//! Reading a PROXY header (HAProxy's proxy-protocol.txt, versions 1 and 2)
//! from the bytes a connection opened with: pure, on a buffer, so that the
//! caller decides how many bytes to wait for and this never reads more
//! than the header (what follows is the client's HTTP or TLS).
//!
//! The header is attacker-facing: every length is checked before use, a
//! header is at most [`V1_MAX`] (text) or [`V2_MAX`] (binary) bytes, and
//! anything not exactly as the specification says is [`Parse::Bad`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 1's longest line, CRLF included (proxy-protocol.txt 2.1).
pub const V1_MAX: usize = 107;
pub use crate::config::V2_SIG;
/// Version 2's fixed part: signature, version and command, family, length.
pub const V2_FIXED: usize = 16;
/// The longest version 2 header taken (its TLVs included): the addresses
/// take at most 216 bytes, and the TLVs senders add (ALPN, authority, SSL
/// details, AWS or Azure ids) fit well within this.
pub const V2_MAX: usize = 4096;
const V1_SIG: &[u8] = b"PROXY ";

/// What a header said of the connection's ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// The client's address (`src`) and the one it reached (`dst`).
    Proxied { src: SocketAddr, dst: SocketAddr },
    /// v2 `LOCAL`, v1 `UNKNOWN`, or a family with no address to use
    /// (`AF_UNSPEC`, `AF_UNIX`): the connection's own ends stand, as in
    /// HAProxy (a health check from the proxy in front, for one).
    Own,
}

/// The outcome of reading a connection's first bytes as a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// A prefix of a header (or of a signature): more bytes are needed.
    Incomplete,
    /// The bytes open with neither version's signature.
    NotProxy,
    /// A signature, then something the specification does not allow.
    Bad(&'static str),
    /// A whole header of `len` bytes, of `version` 1 or 2.
    Done {
        len: usize,
        version: u8,
        addrs: Addresses,
    },
}

/// Which signature a connection's first bytes open with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// Too few bytes to tell (a prefix of one of them).
    Undecided,
    Neither,
    V1,
    V2,
}

/// Which signature `buf` opens with, as far as its bytes tell.
pub fn signature(buf: &[u8]) -> Signature {
    let prefix = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    match (prefix(V1_SIG), prefix(&V2_SIG)) {
        (true, _) if buf.len() >= V1_SIG.len() => Signature::V1,
        (_, true) if buf.len() >= V2_SIG.len() => Signature::V2,
        (false, false) => Signature::Neither,
        _ => Signature::Undecided,
    }
}

/// Read `buf` (the connection's first bytes, possibly not all of the
/// header yet) as a PROXY header.
pub fn parse(buf: &[u8]) -> Parse {
    match signature(buf) {
        Signature::Undecided => Parse::Incomplete,
        Signature::Neither => Parse::NotProxy,
        Signature::V1 => v1(buf),
        Signature::V2 => v2(buf),
    }
}

fn v1(buf: &[u8]) -> Parse {
    let seen = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = seen.iter().position(|&b| b == b'\r') else {
        if buf.len() >= V1_MAX {
            return Parse::Bad("v1: no CRLF within 107 bytes");
        }
        // Only text may come before the CRLF.
        if seen.iter().any(|&b| !(0x20..0x7f).contains(&b)) {
            return Parse::Bad("v1: not text");
        }
        return Parse::Incomplete;
    };
    if cr + 2 > V1_MAX {
        return Parse::Bad("v1: no CRLF within 107 bytes");
    }
    match buf.get(cr + 1) {
        None => return Parse::Incomplete,
        Some(b'\n') => {}
        Some(_) => return Parse::Bad("v1: CR not followed by LF"),
    }
    let Ok(line) = std::str::from_utf8(&buf[V1_SIG.len()..cr]) else {
        return Parse::Bad("v1: not text");
    };
    let len = cr + 2;
    let done = |addrs| Parse::Done {
        len,
        version: 1,
        addrs,
    };
    // UNKNOWN: the rest of the line is to be ignored (2.1).
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return done(Addresses::Own);
    }
    let f: Vec<&str> = line.split(' ').collect();
    let [proto, src, dst, sport, dport] = f[..] else {
        return Parse::Bad("v1: want TCP4|TCP6 SRC DST SPORT DPORT");
    };
    let ip = |s: &str| -> Option<IpAddr> {
        match proto {
            "TCP4" => s.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            "TCP6" => s.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            _ => None,
        }
    };
    if proto != "TCP4" && proto != "TCP6" {
        return Parse::Bad("v1: protocol not TCP4, TCP6 or UNKNOWN");
    }
    match (ip(src), ip(dst), port(sport), port(dport)) {
        (Some(s), Some(d), Some(sp), Some(dp)) => done(Addresses::Proxied {
            src: SocketAddr::new(s, sp),
            dst: SocketAddr::new(d, dp),
        }),
        (None, ..) | (_, None, ..) => Parse::Bad("v1: an address not of the protocol's family"),
        _ => Parse::Bad("v1: a port not 0 to 65535"),
    }
}

/// A v1 port: decimal digits, no sign, no leading zero, at most 65535.
fn port(s: &str) -> Option<u16> {
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

fn v2(buf: &[u8]) -> Parse {
    if buf.len() < V2_FIXED {
        return Parse::Incomplete;
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Parse::Bad("v2: version not 2");
    }
    let local = match ver_cmd & 0xf {
        0 => true,
        1 => false,
        _ => return Parse::Bad("v2: command not LOCAL or PROXY"),
    };
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = V2_FIXED + body;
    if len > V2_MAX {
        return Parse::Bad("v2: longer than 4096 bytes");
    }
    let Some(body) = buf.get(V2_FIXED..len) else {
        return Parse::Incomplete;
    };
    let done = |addrs| Parse::Done {
        len,
        version: 2,
        addrs,
    };
    let (family, transport) = (fam >> 4, fam & 0xf);
    // The address block's size by family (2.2); the TLVs follow it.
    let block = match family {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 216,
        _ => return Parse::Bad("v2: unknown address family"),
    };
    if transport > 2 {
        return Parse::Bad("v2: unknown transport");
    }
    let Some(tlvs) = body.get(block..) else {
        return Parse::Bad("v2: shorter than its addresses");
    };
    if !tlvs_fit(tlvs) {
        return Parse::Bad("v2: a TLV overruns the header");
    }
    // LOCAL: the connection was made by the proxy itself; what it carries
    // is to be ignored (2.2).
    if local || family == 0 || family == 3 {
        return done(Addresses::Own);
    }
    if transport != 1 {
        return Parse::Bad("v2: not over a stream (TCP)");
    }
    let a = &body[..block];
    let (src, dst) = if family == 1 {
        let ip = |o: usize| IpAddr::from(<[u8; 4]>::try_from(&a[o..o + 4]).unwrap_or_default());
        (ip(0), ip(4))
    } else {
        let ip = |o: usize| IpAddr::from(<[u8; 16]>::try_from(&a[o..o + 16]).unwrap_or_default());
        (ip(0), ip(16))
    };
    let p = block - 4;
    let sport = u16::from_be_bytes([a[p], a[p + 1]]);
    let dport = u16::from_be_bytes([a[p + 2], a[p + 3]]);
    done(Addresses::Proxied {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
    })
}

/// Whether `tlvs` is a whole number of type-length-value fields (their
/// contents are not used: skipped).
fn tlvs_fit(mut tlvs: &[u8]) -> bool {
    while !tlvs.is_empty() {
        let Some(&[_, hi, lo]) = tlvs.get(..3) else {
            return false;
        };
        let Some(rest) = tlvs.get(3 + usize::from(u16::from_be_bytes([hi, lo]))..) else {
            return false;
        };
        tlvs = rest;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxied(s: &str, d: &str) -> Addresses {
        Addresses::Proxied {
            src: s.parse().unwrap(),
            dst: d.parse().unwrap(),
        }
    }

    #[test]
    fn v1_forms() {
        let h = b"PROXY TCP4 192.0.2.1 198.18.0.1 56324 443\r\nGET /";
        assert_eq!(
            parse(h),
            Parse::Done {
                len: h.len() - 5,
                version: 1,
                addrs: proxied("192.0.2.1:56324", "198.18.0.1:443")
            }
        );
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
        assert_eq!(
            parse(h),
            Parse::Done {
                len: h.len(),
                version: 1,
                addrs: proxied("[2001:db8::1]:1", "[2001:db8::2]:65535")
            }
        );
        for h in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n",
        ] {
            assert_eq!(
                parse(h),
                Parse::Done {
                    len: h.len(),
                    version: 1,
                    addrs: Addresses::Own
                }
            );
        }
        // The longest: 107 bytes (proxy-protocol.txt's worst case).
        let max = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(max.len(), V1_MAX);
        assert!(matches!(parse(max), Parse::Done { len: V1_MAX, .. }));
    }

    #[test]
    fn v1_refused() {
        for (h, why) in [
            (&b"PROXY TCP4 192.0.2.1 198.18.0.1 1 2\n"[..], "not text"),
            (b"PROXY TCP4 192.0.2.1 198.18.0.1 1 2\rX", "CR not"),
            (b"PROXY TCP4 2001:db8::1 198.18.0.1 1 2\r\n", "family"),
            (b"PROXY TCP6 192.0.2.1 2001:db8::1 1 2\r\n", "family"),
            (b"PROXY TCP4 192.0.2.1 198.18.0.1 1 65536\r\n", "port"),
            (b"PROXY TCP4 192.0.2.1 198.18.0.1 01 2\r\n", "port"),
            (b"PROXY TCP4 192.0.2.1 198.18.0.1 +1 2\r\n", "port"),
            (b"PROXY TCP4 192.0.2.1 198.18.0.1 1\r\n", "want"),
            (b"PROXY TCP4 192.0.2.1  198.18.0.1 1 2\r\n", "want"),
            (b"PROXY TCP4 192.0.2.1 198.18.0.1 1 2 \r\n", "want"),
            (b"PROXY UDP4 192.0.2.1 198.18.0.1 1 2\r\n", "protocol"),
            (b"PROXY TCP4 192.0.2.001 198.18.0.1 1 2\r\n", "family"),
            (b"PROXY \x01", "not text"),
        ] {
            match parse(h) {
                Parse::Bad(r) => assert!(r.contains(why), "{h:?}: {r}"),
                other => panic!("{h:?}: {other:?}"),
            }
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat();
        assert!(matches!(parse(&long), Parse::Bad(r) if r.contains("107")));
        assert_eq!(parse(&long[..100]), Parse::Incomplete);
    }

    fn v2_header(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIG.to_vec();
        h.extend([0x20 | cmd, fam]);
        h.extend((body.len() as u16).to_be_bytes());
        h.extend(body);
        h
    }

    #[test]
    fn v2_forms() {
        let inet = [192, 0, 2, 1, 198, 18, 0, 1, 0xdc, 0x04, 0x01, 0xbb];
        let h = v2_header(1, 0x11, &inet);
        assert_eq!(
            parse(&h),
            Parse::Done {
                len: 28,
                version: 2,
                addrs: proxied("192.0.2.1:56324", "198.18.0.1:443")
            }
        );
        // TLVs are skipped; the bytes after the header are not part of it.
        let mut body = inet.to_vec();
        body.extend([0x01, 0, 2, b'h', b'2', 0x04, 0, 0]);
        let mut h = v2_header(1, 0x11, &body);
        let len = h.len();
        h.extend(b"GET / HTTP/1.1\r\n");
        assert!(matches!(parse(&h), Parse::Done { len: l, .. } if l == len));
        let mut six = Vec::new();
        six.extend("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        six.extend("2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        six.extend([0, 80, 0, 81]);
        assert_eq!(
            parse(&v2_header(1, 0x21, &six)),
            Parse::Done {
                len: 52,
                version: 2,
                addrs: proxied("[2001:db8::1]:80", "[2001:db8::2]:81")
            }
        );
        // LOCAL (with or without addresses), UNSPEC, UNIX: the own ends.
        for h in [
            v2_header(0, 0x00, &[]),
            v2_header(0, 0x11, &inet),
            v2_header(1, 0x00, &[]),
            v2_header(1, 0x31, &[0; 216]),
        ] {
            assert!(
                matches!(
                    parse(&h),
                    Parse::Done {
                        addrs: Addresses::Own,
                        ..
                    }
                ),
                "{h:?}"
            );
        }
    }

    #[test]
    fn v2_refused() {
        let inet = [192, 0, 2, 1, 198, 18, 0, 1, 0, 1, 0, 2];
        let mut bad_version = v2_header(1, 0x11, &inet);
        bad_version[12] = 0x11;
        let mut bad_tlv = inet.to_vec();
        bad_tlv.extend([0x01, 0, 9, 1]);
        let mut huge = V2_SIG.to_vec();
        huge.extend([0x21, 0x11, 0xff, 0xff]);
        for (h, why) in [
            (bad_version, "version"),
            (v2_header(2, 0x11, &inet), "command"),
            (v2_header(1, 0x41, &inet), "family"),
            (v2_header(1, 0x13, &inet), "transport"),
            (v2_header(1, 0x12, &inet), "stream"),
            (v2_header(1, 0x11, &inet[..8]), "shorter"),
            (v2_header(1, 0x21, &inet), "shorter"),
            (v2_header(1, 0x11, &bad_tlv), "TLV"),
            (v2_header(1, 0x11, &[inet.as_slice(), &[7]].concat()), "TLV"),
            (huge, "4096"),
        ] {
            match parse(&h) {
                Parse::Bad(r) => assert!(r.contains(why), "{h:?}: {r}"),
                other => panic!("{h:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn prefixes_are_incomplete_and_others_not_proxy() {
        let v1 = b"PROXY TCP4 192.0.2.1 198.18.0.1 56324 443\r\n";
        let v2 = v2_header(1, 0x11, &[192, 0, 2, 1, 198, 18, 0, 1, 0, 1, 0, 2]);
        for h in [&v1[..], &v2] {
            for n in 0..h.len() {
                assert_eq!(parse(&h[..n]), Parse::Incomplete, "{:?}", &h[..n]);
            }
        }
        for h in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST",
            b"PRI * HTTP/2.0",
            b"\x16\x03\x01",
            b"\r\n\r\nX",
        ] {
            assert_eq!(parse(h), Parse::NotProxy, "{h:?}");
        }
        assert_eq!(signature(b"P"), Signature::Undecided);
        assert_eq!(signature(b"\r\n"), Signature::Undecided);
        assert_eq!(signature(b"PROXY "), Signature::V1);
        assert_eq!(signature(&V2_SIG), Signature::V2);
    }

    /// Fuzz-style: random bytes, random mutations and truncations of valid
    /// headers never panic, and a `Done` never claims more bytes than given.
    #[test]
    fn random_input_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let valid: Vec<Vec<u8>> = vec![
            b"PROXY TCP4 192.0.2.1 198.18.0.1 56324 443\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n".to_vec(),
            v2_header(
                1,
                0x11,
                &[192, 0, 2, 1, 198, 18, 0, 1, 0, 1, 0, 2, 1, 0, 1, 9],
            ),
            v2_header(1, 0x21, &[7; 36]),
        ];
        for i in 0..200_000 {
            let mut b = if i % 4 == 0 {
                (0..next() % 300).map(|_| next() as u8).collect()
            } else {
                valid[(next() % valid.len() as u64) as usize].clone()
            };
            for _ in 0..next() % 4 {
                if !b.is_empty() {
                    let at = (next() % b.len() as u64) as usize;
                    b[at] = next() as u8;
                }
            }
            b.truncate((next() % (b.len() as u64 + 1)) as usize);
            if let Parse::Done { len, .. } = parse(&b) {
                assert!(len <= b.len(), "{b:?}");
            }
        }
    }
}
