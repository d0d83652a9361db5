//! The PROXY protocol (HAProxy's proxy-protocol.txt, v1 and v2) on the HTTP
//! path: a frontend with `accept_proxy` takes the client's address from
//! the header its listed sources open their connections with
//! ([`receive`]), before the TLS or HTTP sniff; a backend with
//! `send_proxy` opens each server connection with one
//! ([`crate::config::SendProxy::header`]).
//!
//! The header is read with `peek` until it is whole, then exactly its
//! bytes are read: what follows is the client's and is left for TLS or
//! HTTP. At most [`parse::V2_MAX`] bytes are looked at; a header that is
//! malformed, cut short or late (`timeout_http_request` from the accept)
//! closes its connection only, and is counted ([`ProxyCounters`]).

pub mod parse;
#[cfg(test)]
mod send;

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use tokio::{io::AsyncReadExt, net::TcpStream};

use super::sniff::peek_until;
use crate::config::AcceptProxy;
use parse::{Addresses, Parse, Signature};

/// Why a connection was closed for its PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A header from a source not in `accept_proxy_from`.
    NotAllowed,
    /// From an allowed source: no header, a malformed one, or one the
    /// client closed before its end.
    Malformed,
    /// From an allowed source: no whole header within
    /// `timeout_http_request`.
    Timeout,
}

impl Refused {
    pub const ALL: [Refused; 3] = [Refused::NotAllowed, Refused::Malformed, Refused::Timeout];
    pub const fn as_str(self) -> &'static str {
        match self {
            Refused::NotAllowed => "not_allowed",
            Refused::Malformed => "malformed",
            Refused::Timeout => "timeout",
        }
    }
}

/// A frontend's PROXY protocol counters.
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Headers taken, by version (index 0: v1, 1: v2).
    accepted: [AtomicU64; 2],
    refused: [AtomicU64; Refused::ALL.len()],
    /// Headers sent to servers (new server connections), by version.
    sent: [AtomicU64; 2],
}

impl ProxyCounters {
    /// The `balancer_proxy_headers_*` families of `/metrics`: (name, help).
    pub const FAMILIES: [(&str, &str); 3] = [
        (
            "accepted",
            "PROXY protocol headers taken from clients (accept_proxy), by version",
        ),
        (
            "refused",
            "Client connections closed for their PROXY header, by reason: not_allowed (a \
             header from a source not in accept_proxy_from), malformed (from an allowed \
             source: none, malformed or cut short), timeout (none whole within \
             timeout_http_request)",
        ),
        (
            "sent",
            "PROXY protocol headers sent to servers (send_proxy: one per new server \
             connection), by version",
        ),
    ];

    pub fn refused(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    pub fn sent(&self, v: crate::config::SendProxy) {
        self.sent[v as usize].fetch_add(1, Relaxed);
    }

    /// As the admin API shows them (`None` while all are zero).
    pub fn view(&self) -> Option<crate::api::ProxyHeaderStats> {
        let l = |c: &AtomicU64| c.load(Relaxed);
        let [not_allowed, malformed, timeout] = Refused::ALL.map(|r| l(&self.refused[r as usize]));
        let v = crate::api::ProxyHeaderStats {
            accepted_v1: l(&self.accepted[0]),
            accepted_v2: l(&self.accepted[1]),
            refused_not_allowed: not_allowed,
            refused_malformed: malformed,
            refused_timeout: timeout,
            sent_v1: l(&self.sent[0]),
            sent_v2: l(&self.sent[1]),
        };
        (v != crate::api::ProxyHeaderStats::default()).then_some(v)
    }

    /// Every counter as (metric family, label, value, count): the
    /// `balancer_proxy_headers_*` families of `/metrics`.
    pub fn families(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let l = |c: &AtomicU64| c.load(Relaxed);
        let mut out = Vec::new();
        for (i, v) in ["v1", "v2"].into_iter().enumerate() {
            out.push(("accepted", "version", v, l(&self.accepted[i])));
        }
        for r in Refused::ALL {
            out.push((
                "refused",
                "reason",
                r.as_str(),
                l(&self.refused[r as usize]),
            ));
        }
        for (i, v) in ["v1", "v2"].into_iter().enumerate() {
            out.push(("sent", "version", v, l(&self.sent[i])));
        }
        out
    }
}

/// The ends of a client connection as the proxy uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    /// The client: its address in X-Forwarded-For, `Forwarded`, the stick
    /// table, `balance source`, the logs.
    pub client: SocketAddr,
    /// The address it reached (what a `send_proxy` header says it reached).
    pub local: SocketAddr,
}

/// Before anything else on a connection of a frontend with `accept_proxy`:
/// from an allowed source, read its PROXY header and return the ends it
/// gives (its own for `LOCAL`, `UNKNOWN`); from any other source, refuse
/// a connection that opens with a header and leave the others' bytes
/// alone. Bounded by `timeout` (a silent client of another source is left
/// to the HTTP sniff's own timeout).
pub(super) async fn receive(
    s: &mut TcpStream,
    own: Ends,
    accept: &AcceptProxy,
    timeout: Duration,
    counters: &ProxyCounters,
) -> Result<Ends, Refused> {
    let allowed = accept.allows(own.client.ip());
    let got = tokio::time::timeout(timeout, read_header(s, allowed)).await;
    let outcome = match got {
        Err(_) if allowed => Err(Refused::Timeout),
        Err(_) => Ok(own),
        Ok(Ok(None)) => Ok(own),
        Ok(Ok(Some((version, addrs)))) => {
            counters.accepted[usize::from(version - 1)].fetch_add(1, Relaxed);
            Ok(match addrs {
                Addresses::Proxied { src, dst } => Ends {
                    client: src,
                    local: dst,
                },
                Addresses::Own => own,
            })
        }
        Ok(Err(why)) => Err(why),
    };
    if let Err(why) = outcome {
        counters.refused(why);
    }
    outcome
}

/// The header's version and addresses, read off `s` (from an allowed
/// source; `None`: not allowed and without a header).
async fn read_header(s: &mut TcpStream, allowed: bool) -> Result<Option<(u8, Addresses)>, Refused> {
    let mut buf = vec![0u8; parse::V2_MAX];
    // Until the bytes tell a whole header (or not a header) apart.
    let n = peek_until(s, &mut buf, |b| match allowed {
        true => parse::parse(b) != Parse::Incomplete,
        false => parse::signature(b) != Signature::Undecided,
    })
    .await;
    let Some(n) = n else {
        // Closed before a whole header: from a stranger, nothing to count
        // (the HTTP sniff sees it gone).
        return if allowed {
            Err(Refused::Malformed)
        } else {
            Ok(None)
        };
    };
    if !allowed {
        return match parse::signature(&buf[..n]) {
            Signature::V1 | Signature::V2 => Err(Refused::NotAllowed),
            _ => Ok(None),
        };
    }
    match parse::parse(&buf[..n]) {
        Parse::Done {
            len,
            version,
            addrs,
        } => {
            s.read_exact(&mut buf[..len])
                .await
                .map_err(|_| Refused::Malformed)?;
            Ok(Some((version, addrs)))
        }
        // NotProxy, Bad, or a buffer full of an incomplete header.
        _ => Err(Refused::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    use super::*;
    use crate::config::{Net, V2_SIG};

    /// `receive` on the server side of a loopback connection whose client
    /// writes `pieces` (each flushed on its own) then closes if `close`:
    /// its outcome and the bytes left on the socket for HTTP.
    async fn run(
        from: &str,
        pieces: &[&[u8]],
        close: bool,
        timeout: Duration,
    ) -> (Result<Ends, Refused>, Vec<u8>, ProxyCounters) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = l.local_addr().unwrap();
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(to).await.unwrap();
            c.set_nodelay(true).unwrap();
            for p in pieces {
                c.write_all(&p).await.unwrap();
                // Apart, so the server sees the header come in pieces.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if close {
                c.shutdown().await.unwrap();
            } else {
                tokio::time::sleep(timeout * 2).await;
            }
        });
        let (mut s, peer) = l.accept().await.unwrap();
        let accept = AcceptProxy {
            from: vec![Net::parse(from).unwrap()],
        };
        let own = Ends {
            client: peer,
            local: to,
        };
        let counters = ProxyCounters::default();
        let got = receive(&mut s, own, &accept, timeout, &counters).await;
        let mut rest = Vec::new();
        if got.is_ok() {
            let _ = tokio::time::timeout(timeout, s.read_to_end(&mut rest)).await;
        }
        client.abort();
        (got, rest, counters)
    }

    const V1: &[u8] = b"PROXY TCP4 198.18.0.7 198.18.0.1 1000 80\r\n";

    #[tokio::test]
    async fn a_header_in_pieces_leaves_what_follows() {
        let t = Duration::from_secs(2);
        let (got, rest, c) = run(
            "127.0.0.0/8",
            &[&V1[..5], &V1[5..20], &V1[20..], b"GET /"],
            true,
            t,
        )
        .await;
        assert_eq!(got.unwrap().client, "198.18.0.7:1000".parse().unwrap());
        assert_eq!(rest, b"GET /");
        assert_eq!(c.accepted[0].load(Relaxed), 1);
        let mut v2 = V2_SIG.to_vec();
        v2.extend([
            0x21, 0x11, 0x00, 0x11, 198, 18, 0, 8, 198, 18, 0, 1, 0x07, 0xd0, 0, 80,
        ]);
        v2.extend([0x04, 0x00, 0x02, b'x', b'y']);
        let (got, rest, _) = run("127.0.0.1", &[&v2[..14], &v2[14..], b"\x16\x03"], true, t).await;
        let ends = got.unwrap();
        assert_eq!(ends.client, "198.18.0.8:2000".parse().unwrap());
        assert_eq!(ends.local, "198.18.0.1:80".parse().unwrap());
        assert_eq!(rest, b"\x16\x03");
    }

    #[tokio::test]
    async fn strangers_truncated_and_silent() {
        let t = Duration::from_secs(2);
        // Not allowed: with a header refused, without one left alone.
        let (got, _, c) = run("198.18.0.0/15", &[V1], true, t).await;
        assert_eq!(got, Err(Refused::NotAllowed));
        assert_eq!(c.refused[Refused::NotAllowed as usize].load(Relaxed), 1);
        let (got, rest, _) = run("198.18.0.0/15", &[b"P", b"OST / HTTP/1.1\r\n"], true, t).await;
        assert!(got.unwrap().client.ip().is_loopback());
        assert_eq!(rest, b"POST / HTTP/1.1\r\n");
        // Cut short by the client's close: at once, not at the timeout.
        let started = std::time::Instant::now();
        let (got, _, _) = run("127.0.0.0/8", &[&V1[..20]], true, t).await;
        assert_eq!(got, Err(Refused::Malformed));
        assert!(started.elapsed() < Duration::from_secs(1));
        let (got, _, c) = run("127.0.0.0/8", &[], false, Duration::from_millis(200)).await;
        assert_eq!(got, Err(Refused::Timeout));
        assert_eq!(c.refused[Refused::Timeout as usize].load(Relaxed), 1);
    }
}
