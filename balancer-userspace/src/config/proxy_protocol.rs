//! The PROXY protocol (HAProxy's proxy-protocol.txt) in the configuration:
//! a frontend's `accept_proxy` with the sources allowed to send the header,
//! and a backend's `send_proxy` (the header its servers get).
//!
//! balancer takes a PROXY header only from the sources listed in
//! `accept_proxy_from`, as HAProxy's `tcp-request connection expect-proxy
//! layer4 if { src ... }` does: a connection from a listed source must open
//! with one (without it, it is closed); a connection from any other source
//! is served as a direct client, and one that opens with a PROXY header
//! anyway is closed (a client may not choose the address it is seen as).

use std::net::{IpAddr, SocketAddr};

/// Version 2's signature (proxy-protocol.txt 2.2).
pub const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A network: an address and a prefix length (`198.18.0.0/15`, `2001:db8::/32`;
/// a bare address is the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    /// `ADDR/LEN` or `ADDR`; host bits must be zero (`198.19.0.0/15` is
    /// refused: it most likely means something else).
    pub fn parse(s: &str) -> Result<Net, String> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: want ADDRESS/LENGTH (198.18.0.0/15, 2001:db8::/32)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the length is 0 to {max}")),
            },
        };
        let net = Net { addr, prefix };
        if !net.contains(addr) || net.masked(addr) != bits(addr) {
            return Err(format!(
                "{s:?}: bits set past the prefix length (the network is {})",
                Net {
                    addr: from_bits(addr, net.masked(addr)),
                    prefix
                }
            ));
        }
        Ok(net)
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address as its
    /// IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == bits(self.addr)
    }

    fn masked(&self, ip: IpAddr) -> u128 {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let keep = u32::from(self.prefix).min(width);
        let mask = if keep == 0 {
            0
        } else {
            (u128::MAX << (width - keep)) & (u128::MAX >> (128 - width))
        };
        bits(ip) & mask
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(like: IpAddr, b: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((b as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(b.into()),
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A frontend's `accept_proxy`: the sources that must (and alone may) open
/// their connections with a PROXY header, v1 or v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptProxy {
    pub from: Vec<Net>,
}

impl AcceptProxy {
    /// Whether a connection from `ip` must carry a header.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.from.iter().any(|n| n.contains(ip))
    }
}

/// The PROXY header a backend's servers get first on each new connection
/// (`send-proxy`: v1, text; `send-proxy-v2`: v2, binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendProxy {
    V1,
    V2,
}

impl SendProxy {
    pub fn parse(s: &str) -> Result<SendProxy, String> {
        match s {
            "v1" => Ok(SendProxy::V1),
            "v2" => Ok(SendProxy::V2),
            other => Err(format!("{other:?}: want \"v1\" or \"v2\"")),
        }
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            SendProxy::V1 => "v1",
            SendProxy::V2 => "v2",
        }
    }

    /// What a health check opens with, as HAProxy 2.6's do (the check is
    /// the proxy's own connection, with no client to name): v1 names the
    /// check connection's own ends (`local` to `server`), v2 is `LOCAL`.
    pub fn check_header(self, local: SocketAddr, server: SocketAddr) -> Vec<u8> {
        match self {
            SendProxy::V1 => self.header(local, server),
            SendProxy::V2 => [&V2_SIG[..], &[0x20, 0x00, 0x00, 0x00]].concat(),
        }
    }

    /// The header telling a server that the client `src` reached `dst`. An
    /// IPv4-mapped IPv6 address is written as IPv4; ends of different
    /// families are written as HAProxy writes them: v1 `UNKNOWN`, v2 with no
    /// address (`AF_UNSPEC`), the server then uses the connection's own.
    pub fn header(self, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let (s, d) = (src.ip().to_canonical(), dst.ip().to_canonical());
        match self {
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
}

impl super::Config {
    /// The PROXY header the health checks of a server of `backend` open
    /// with ([`SendProxy::check_header`]): its `send_proxy`, as HAProxy
    /// (not when the check goes to another port than the server's `port`).
    pub fn check_send_proxy(
        &self,
        backend: &str,
        port: Option<u16>,
        checked: u16,
    ) -> Option<SendProxy> {
        let b = self.backends.iter().find(|b| b.name == backend)?;
        let v = b.http.as_ref()?.send_proxy?;
        port.is_none_or(|p| p == checked).then_some(v)
    }
}

/// A frontend's `accept_proxy` and `accept_proxy_from` keys, checked
/// together: the list is required with `accept_proxy = true` and only
/// then allowed. An error is (key, reason).
pub(super) fn accept_proxy(
    on: Option<bool>,
    from: Option<&[String]>,
) -> Result<Option<AcceptProxy>, (&'static str, String)> {
    match (on.unwrap_or(false), from) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err((
            "accept_proxy_from",
            "without accept_proxy = true it would have no effect".into(),
        )),
        (true, None) | (true, Some([])) => Err((
            "accept_proxy",
            "needs accept_proxy_from, the networks allowed to send a PROXY header (a header \
             sets the client's address: from anyone else it is refused)"
                .into(),
        )),
        (true, Some(list)) => Ok(Some(AcceptProxy {
            from: list
                .iter()
                .map(|s| Net::parse(s))
                .collect::<Result<_, _>>()
                .map_err(|r| ("accept_proxy_from", r))?,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nets() {
        let n = Net::parse("127.0.0.0/8").unwrap();
        assert!(n.contains("127.9.9.9".parse().unwrap()));
        assert!(n.contains("::ffff:127.0.0.2".parse().unwrap()));
        assert!(!n.contains("128.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let n = Net::parse("2001:db8::/32").unwrap();
        assert!(n.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!n.contains("2001:db9::".parse().unwrap()));
        let h = Net::parse("198.18.0.1").unwrap();
        assert_eq!(h.prefix, 32);
        assert!(h.contains("198.18.0.1".parse().unwrap()));
        assert!(!h.contains("198.18.0.2".parse().unwrap()));
        let all = Net::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        assert!(Net::parse("::/0").unwrap().contains("::1".parse().unwrap()));
        let e = Net::parse("198.19.0.0/15").unwrap_err();
        assert!(e.contains("198.18.0.0/15"), "{e}");
        assert!(Net::parse("198.18.0.0/33").is_err());
        assert!(Net::parse("198.18.0.0/").is_err());
        assert!(Net::parse("nope/8").is_err());
    }

    #[test]
    fn keys() {
        assert_eq!(accept_proxy(None, None), Ok(None));
        assert_eq!(
            accept_proxy(Some(true), None).unwrap_err().0,
            "accept_proxy"
        );
        assert_eq!(
            accept_proxy(Some(true), Some(&[])).unwrap_err().0,
            "accept_proxy"
        );
        let from = ["127.0.0.0/8".to_string()];
        assert_eq!(
            accept_proxy(None, Some(&from)).unwrap_err().0,
            "accept_proxy_from"
        );
        let a = accept_proxy(Some(true), Some(&from)).unwrap().unwrap();
        assert!(a.allows("127.0.0.2".parse().unwrap()));
        assert!(!a.allows("198.18.0.1".parse().unwrap()));
    }
}
