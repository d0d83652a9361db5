//! `balancer-bench --origin NAME...`: the origin servers of the HTTP
//! benchmark (`cargo xtask bench --only http-cookie`), the cheapest
//! keep-alive HTTP/1.1 servers that still parse what they receive, so that
//! the load generator's CPU has room to spare and the proxy under test is
//! what limits the rate.
//!
//! The tests' `balancer_tests::http::Backend` is built to observe: a thread
//! per connection, every request's headers kept for assertions, in a debug
//! build. Under wrk that costs a thread wake-up per request and memory
//! growing with the run, on the CPU shared with the load generator, which
//! then limits both proxies alike and hides the difference between them.
//! Here one thread of a release build serves all connections of all origins
//! from a single-threaded tokio runtime and only counts requests.
//!
//! Protocol with the caller: one line `ORIGIN <name> <address>` per origin
//! on stdout once all listen; the origins serve until stdin closes; then
//! one line `ORIGIN-COUNT <name> <answered> <refused>` each, and exit.
//!
//! What it accepts: requests without a body (the benchmark sends `GET`s).
//! A head that announces a body (`Content-Length` other than 0, or
//! `Transfer-Encoding`), a head over 64 KiB, or anything without an HTTP/1.1
//! request line gets `400` and the connection is closed; each is counted as
//! refused, and the benchmark fails rather than measure errors.

use std::{
    io::{BufRead as _, Write as _},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

const MAX_HEAD: usize = 64 * 1024;
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[derive(Default)]
struct Counts {
    answered: AtomicU64,
    refused: AtomicU64,
}

/// Serve one origin per name on 127.0.0.1 (free ports) until stdin closes.
pub fn run(names: &[String]) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("origin runtime")?;
    let mut origins = Vec::new();
    let stdout = std::io::stdout();
    for name in names {
        let (addr, counts) = rt.block_on(start(&rt, name))?;
        writeln!(stdout.lock(), "ORIGIN {name} {addr}")?;
        origins.push((name, counts));
    }
    stdout.lock().flush()?;
    // The runtime's thread serves while this one waits for stdin to close.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin()
            .lock()
            .read_line(&mut line)
            .is_ok_and(|n| n > 0)
        {
            line.clear();
        }
        let _ = done_tx.send(());
    });
    rt.block_on(async {
        let _ = done_rx.await;
    });
    for (name, c) in origins {
        writeln!(
            stdout.lock(),
            "ORIGIN-COUNT {name} {} {}",
            c.answered.load(Ordering::Relaxed),
            c.refused.load(Ordering::Relaxed)
        )?;
    }
    Ok(())
}

async fn start(
    rt: &tokio::runtime::Runtime,
    name: &str,
) -> anyhow::Result<(SocketAddr, Arc<Counts>)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .with_context(|| format!("origin {name}: bind"))?;
    let addr = listener.local_addr()?;
    let response: Arc<[u8]> = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{name}",
        name.len()
    )
    .into_bytes()
    .into();
    let counts = Arc::new(Counts::default());
    rt.spawn(accept_loop(listener, response, counts.clone()));
    Ok((addr, counts))
}

async fn accept_loop(listener: TcpListener, response: Arc<[u8]>, counts: Arc<Counts>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, response.clone(), counts.clone()));
    }
}

/// Answer every complete request head in the buffer (pipelined ones in one
/// write), until the client closes or sends something refused.
async fn serve(mut s: TcpStream, response: Arc<[u8]>, counts: Arc<Counts>) {
    let mut buf = vec![0u8; 8192];
    let mut filled = 0;
    let mut out = Vec::with_capacity(response.len());
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match s.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        let mut used = 0;
        let mut answered = 0;
        let mut refused = false;
        while let Some(end) = find_head_end(&buf[used..filled]) {
            let head = &buf[used..used + end];
            used += end;
            if !acceptable(head) {
                refused = true;
                break;
            }
            out.extend_from_slice(&response);
            answered += 1;
        }
        refused |= filled - used > MAX_HEAD;
        if refused {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            out.extend_from_slice(BAD_REQUEST);
        }
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            counts.answered.fetch_add(answered, Ordering::Relaxed);
            out.clear();
        }
        if refused {
            return;
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
    }
}

/// The length of the head at the start of `b` (through its empty line).
fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// An HTTP/1.1 request line and no body announced.
fn acceptable(head: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(head) else {
        return false;
    };
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    if request_line.split(' ').count() != 3 || !request_line.ends_with(" HTTP/1.1") {
        return false;
    }
    lines.all(|l| {
        let Some((name, value)) = l.split_once(':') else {
            return l.is_empty();
        };
        let name = name.trim();
        !(name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value.trim() != "0"))
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    fn exchange(addr: SocketAddr, send: &[u8]) -> String {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        c.write_all(send).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = String::new();
        let _ = c.read_to_string(&mut got);
        got
    }

    #[test]
    fn answers_pipelined_requests_and_refuses_bodies() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let (addr, counts) = rt.block_on(start(&rt, "s0")).unwrap();
        let served = std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));
        let got = exchange(
            addr,
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nCookie: SERVER=s0\r\n\r\n",
        );
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 2, "{got}");
        assert!(got.ends_with("\r\n\r\ns0"), "{got}");
        let got = exchange(
            addr,
            b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        );
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 1, "{got}");
        assert!(got.contains("400 Bad Request"), "{got}");
        let got = exchange(addr, b"garbage\r\n\r\n");
        assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
        assert_eq!(
            (
                counts.answered.load(Ordering::Relaxed),
                counts.refused.load(Ordering::Relaxed)
            ),
            (3, 2)
        );
        drop(served);
    }
}
