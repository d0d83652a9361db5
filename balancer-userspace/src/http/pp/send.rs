//! The PROXY header a server gets first on a connection made for a
//! backend with `send_proxy` (HAProxy's `send-proxy`, `send-proxy-v2`).

use std::net::{IpAddr, SocketAddr};

use super::parse::V2_SIG;
use crate::config::SendProxy;

/// The header telling a server that the client `src` reached `dst`. An
/// IPv4-mapped IPv6 address is written as IPv4; ends of different
/// families are written as HAProxy writes them: v1 `UNKNOWN`, v2 with no
/// address (`AF_UNSPEC`), the server then uses the connection's own.
pub fn header(version: SendProxy, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (s, d) = (src.ip().to_canonical(), dst.ip().to_canonical());
    match version {
        SendProxy::V1 => {
            let proto = match (s, d) {
                (IpAddr::V4(_), IpAddr::V4(_)) => "TCP4",
                (IpAddr::V6(_), IpAddr::V6(_)) => "TCP6",
                _ => return b"PROXY UNKNOWN\r\n".to_vec(),
            };
            format!("PROXY {proto} {s} {d} {} {}\r\n", src.port(), dst.port()).into_bytes()
        }
        SendProxy::V2 => {
            let mut h = Vec::with_capacity(52);
            h.extend(V2_SIG);
            // Version 2, command PROXY.
            h.push(0x21);
            let mut addrs = Vec::with_capacity(36);
            let family = match (s, d) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    addrs.extend(a.octets());
                    addrs.extend(b.octets());
                    0x11
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => {
                    addrs.extend(a.octets());
                    addrs.extend(b.octets());
                    0x21
                }
                _ => 0x00,
            };
            if family != 0 {
                addrs.extend(src.port().to_be_bytes());
                addrs.extend(dst.port().to_be_bytes());
            }
            h.push(family);
            h.extend((addrs.len() as u16).to_be_bytes());
            h.extend(addrs);
            h
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::{Addresses, Parse, parse};
    use super::*;

    #[test]
    fn what_is_sent_reads_back() {
        for (s, d) in [
            ("192.0.2.1:56324", "198.18.0.1:443"),
            ("[2001:db8::1]:1", "[2001:db8::2]:65535"),
        ] {
            let (src, dst) = (s.parse().unwrap(), d.parse().unwrap());
            for (v, n) in [(SendProxy::V1, 1), (SendProxy::V2, 2)] {
                let h = header(v, src, dst);
                assert_eq!(
                    parse(&h),
                    Parse::Done {
                        len: h.len(),
                        version: n,
                        addrs: Addresses::Proxied { src, dst }
                    }
                );
            }
        }
        let h = header(
            SendProxy::V1,
            "192.0.2.1:5".parse().unwrap(),
            "198.18.0.1:80".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 198.18.0.1 5 80\r\n");
    }

    #[test]
    fn mapped_and_mixed() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:5".parse().unwrap();
        let dst: SocketAddr = "198.18.0.1:80".parse().unwrap();
        assert_eq!(
            header(SendProxy::V1, mapped, dst),
            b"PROXY TCP4 192.0.2.1 198.18.0.1 5 80\r\n"
        );
        let six: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        assert_eq!(header(SendProxy::V1, six, dst), b"PROXY UNKNOWN\r\n");
        let h = header(SendProxy::V2, six, dst);
        assert!(matches!(
            parse(&h),
            Parse::Done {
                addrs: Addresses::Own,
                ..
            }
        ));
    }
}
