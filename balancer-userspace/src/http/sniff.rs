//! Telling HTTP/2 (prior knowledge, RFC 9113 3.4) from HTTP/1.1 on a new
//! client connection, by its first bytes, without reading them.

use std::time::Duration;

use tokio::net::TcpStream;

/// The HTTP/2 connection preface (RFC 9113 3.4), which h2c clients with
/// prior knowledge send first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a new connection's first bytes said.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sniffed {
    Http1,
    Http2,
    /// The client closed, or the socket failed.
    Gone,
    /// Not enough to tell within the timeout (`timeout http-request`).
    Silent,
    /// On a TLS port: a TLS handshake record.
    Tls,
    /// On a TLS port: plain HTTP (a request line's first letter).
    PlainHttp,
    /// On a TLS port: anything else.
    NotTls,
}

/// A TLS record's first byte: content type handshake (RFC 8446 5.1).
const TLS_HANDSHAKE: u8 = 0x16;

/// What a client of a TLS port sends first: a handshake record, plain
/// HTTP, or neither, told by its first byte (peeked, not read).
pub(super) async fn sniff_tls(s: &TcpStream, timeout: Duration) -> Sniffed {
    let mut b = [0u8; 1];
    match tokio::time::timeout(timeout, s.peek(&mut b)).await {
        Err(_) => Sniffed::Silent,
        Ok(Err(_) | Ok(0)) => Sniffed::Gone,
        Ok(Ok(_)) => match b[0] {
            TLS_HANDSHAKE => Sniffed::Tls,
            b'A'..=b'Z' => Sniffed::PlainHttp,
            _ => Sniffed::NotTls,
        },
    }
}

/// Whether a client opens with HTTP/2's preface, looked at with `peek` so
/// that the chosen protocol's parser reads every byte itself (no rewinding
/// layer under every later read).
pub(super) async fn sniff_http2(s: &TcpStream, timeout: Duration) -> Sniffed {
    let sniff = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        let n = peek_until(s, &mut buf, |b| *b != H2_PREFACE[..b.len()]).await?;
        Some(buf[..n] == *H2_PREFACE)
    };
    match tokio::time::timeout(timeout, sniff).await {
        Ok(Some(true)) => Sniffed::Http2,
        Ok(Some(false)) => Sniffed::Http1,
        Ok(None) => Sniffed::Gone,
        Err(_) => Sniffed::Silent,
    }
}

/// Peek at `s`'s first bytes into `buf` until `enough` says those seen
/// suffice or `buf` is full: how many were seen, or `None` if the client
/// closed first (or the socket failed). Nothing is read.
pub(super) async fn peek_until(
    s: &TcpStream,
    buf: &mut [u8],
    mut enough: impl FnMut(&[u8]) -> bool,
) -> Option<usize> {
    loop {
        let n = s.peek(buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if n == buf.len() || enough(&buf[..n]) {
            return Some(n);
        }
        // Not enough so far. Peeking again would return the same bytes at
        // once (the socket stays readable): clear tokio's readiness, then
        // wait for its next edge, which only new bytes (or the peer's
        // close) raise. Bytes that came in before the clear are seen by
        // the non-blocking peek after it.
        let _ = s.try_io(tokio::io::Interest::READABLE, || {
            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
        });
        let more = socket2::SockRef::from(s).peek(as_uninit(buf));
        match more {
            Ok(m) if m > n || m == 0 => continue,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
        let ready = s.ready(tokio::io::Interest::READABLE).await.ok()?;
        // Closed by the client (tokio keeps that readiness: waiting again
        // would return at once): what it sent is all there will be.
        if ready.is_read_closed() {
            let last = socket2::SockRef::from(s).peek(as_uninit(buf));
            if matches!(last, Ok(m) if m <= n) || last.is_err() {
                return None;
            }
        }
    }
}

/// `buf` as the uninitialised bytes socket2's `peek` takes.
fn as_uninit(buf: &mut [u8]) -> &mut [std::mem::MaybeUninit<u8>] {
    // SAFETY: initialised bytes are valid `MaybeUninit<u8>`s, and `peek`
    // only writes bytes to them.
    unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) }
}
