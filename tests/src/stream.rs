//! A streaming backend for the proxy tests, on loopback, std threads:
//!
//! - `POST /upload`: reads the body (Content-Length or chunked) without
//!   keeping it, answers the byte count;
//! - `GET /download/N`: answers N zero bytes (Content-Length), written in
//!   64 KiB pieces;
//! - `GET /ws`: a WebSocket echo (tungstenite).
//!
//! And the client side of those transfers, counting bytes as they stream.

use std::{
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

const PIECE: usize = 64 * 1024;

pub struct StreamBackend {
    pub addr: SocketAddr,
}

impl StreamBackend {
    pub fn start() -> io::Result<StreamBackend> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?;
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = serve(c);
                });
            }
        });
        Ok(StreamBackend { addr })
    }
}

fn serve(c: TcpStream) -> io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = c.try_clone()?;
    let mut r = BufReader::with_capacity(PIECE, c);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            if line == b"\r\n" {
                break;
            }
            head.extend_from_slice(&line);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let first = head.lines().next().unwrap_or_default().to_ascii_lowercase();
        let header = |name: &str| {
            head.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        };
        if first.starts_with("get /ws") {
            // A WebSocket handshake, possibly on a reused connection: answer
            // it here and hand the socket to tungstenite.
            let key = header("sec-websocket-key").unwrap_or_default();
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            write!(
                w,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )?;
            let mut ws = tungstenite::WebSocket::from_raw_socket(
                w,
                tungstenite::protocol::Role::Server,
                None,
            );
            loop {
                let m = ws.read().map_err(io::Error::other)?;
                if m.is_close() {
                    return Ok(());
                }
                if m.is_text() || m.is_binary() {
                    ws.send(m).map_err(io::Error::other)?;
                }
            }
        } else if first.starts_with("post /upload") {
            let n = if header("transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
            {
                read_chunked(&mut r, &mut io::sink())?
            } else {
                let len: u64 = header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                io::copy(&mut (&mut r).take(len), &mut io::sink())?
            };
            let body = n.to_string();
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
        } else if let Some(n) = first
            .strip_prefix("get /download/")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
        {
            write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n")?;
            let zeros = vec![0u8; PIECE];
            let mut left = n;
            while left > 0 {
                let k = left.min(PIECE as u64) as usize;
                w.write_all(&zeros[..k])?;
                left -= k as u64;
            }
        } else {
            w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
        }
    }
}

/// Decode a chunked body from `r` into `out` (trailers read and dropped);
/// the body's length.
pub fn read_chunked(r: &mut impl io::BufRead, out: &mut impl io::Write) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(io::Error::other)?;
        if size == 0 {
            // Trailers until the empty line.
            loop {
                let mut t = String::new();
                r.read_line(&mut t)?;
                if t == "\r\n" || t.is_empty() {
                    return Ok(total);
                }
            }
        }
        total += io::copy(&mut r.by_ref().take(size), out)?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

/// POST `len` zero bytes to `to` (`/upload`); the byte count the backend
/// answered.
pub fn upload(to: SocketAddr, len: u64) -> io::Result<u64> {
    let mut s = TcpStream::connect(to)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "POST /upload HTTP/1.1\r\nHost: lab\r\nContent-Length: {len}\r\n\r\n"
    )?;
    let zeros = vec![0u8; PIECE];
    let mut left = len;
    while left > 0 {
        let k = left.min(PIECE as u64) as usize;
        s.write_all(&zeros[..k])?;
        left -= k as u64;
    }
    let mut r = BufReader::new(s);
    let (status, body_len) = read_head(&mut r)?;
    if status != 200 {
        return Err(io::Error::other(format!("upload: HTTP {status}")));
    }
    let mut body = vec![0; body_len as usize];
    r.read_exact(&mut body)?;
    String::from_utf8_lossy(&body)
        .trim()
        .parse()
        .map_err(io::Error::other)
}

/// GET `/download/len` from `to`; the bytes received (all checked zero).
pub fn download(to: SocketAddr, len: u64) -> io::Result<u64> {
    let mut s = TcpStream::connect(to)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(s, "GET /download/{len} HTTP/1.1\r\nHost: lab\r\n\r\n")?;
    let mut r = BufReader::with_capacity(PIECE, s);
    let (status, body_len) = read_head(&mut r)?;
    if status != 200 {
        return Err(io::Error::other(format!("download: HTTP {status}")));
    }
    let mut got = 0u64;
    let mut buf = vec![0u8; PIECE];
    while got < body_len {
        let want = (body_len - got).min(PIECE as u64) as usize;
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(io::Error::other("download: corrupted bytes"));
        }
        got += n as u64;
    }
    Ok(got)
}

/// Status and Content-Length of a response head.
fn read_head(r: &mut impl io::BufRead) -> io::Result<(u16, u64)> {
    let mut status = 0;
    let mut len = 0;
    let mut first = true;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::other("connection closed in the head"));
        }
        if line == "\r\n" {
            return Ok((status, len));
        }
        if first {
            status = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            first = false;
        } else if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS"))
}
