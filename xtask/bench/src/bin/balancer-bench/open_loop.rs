//! `balancer-bench --open-loop ADDR --rate R`: an HTTP/1.1 load generator
//! that sends at a fixed rate whatever the server does, and measures each
//! request's latency from the moment it was due (the latency figures of
//! `cargo xtask bench --only http-cookie`).
//!
//! Why not wrk: wrk is a closed loop. Each of its connections sends the
//! next request when the previous answer arrives, so at saturation its
//! latency is the length of the proxy's queue over its rate (Little's law)
//! and its p99 says how unevenly the proxy serves its 32 connections from
//! one moment to the next, not how long a user waits at a given load; and
//! a stall delays the requests that would have been sent meanwhile without
//! counting them (coordinated omission). Here the load is fixed: connection
//! `i` of `C` is due to send at `start + (i / C + k) * C / R`, `k = 0, 1,
//! ...`; a request that finds its connection still waiting for the previous
//! answer is sent as soon as that answer arrives and its latency counts
//! from when it was due (the server's delay is in it), a request sent on
//! time counts from when it was sent (the generator's own timer lag is not
//! the server's). Both cases are counted (`late`, `send_lag_p99_us`), so a
//! reader sees when the load was more than the server could take or the
//! generator could not keep time.
//!
//! Several `--open-loop` addresses share the connections in turn
//! (connection `i` to address `i % n`), and with them the rate: servers
//! measured in the same trial see the same moments of the machine.
//!
//! One thread, non-blocking sockets on epoll, a timerfd armed for the next
//! due request (timer slack set to 1 ns), so the generator costs a few
//! microseconds of CPU per request and keeps its schedule to tens of
//! microseconds. Requests are `GET / HTTP/1.1` with `Host` and the given
//! headers; answers are read by `Content-Length` (no chunked bodies: the
//! benchmark's origins never send one). A status other than 2xx, a closed
//! connection or a malformed answer counts as an error and the connection
//! is opened again.
//!
//! Output, one line per address: `OPEN-LOOP target=ADDR requests=N rate=.. p50_us=.. p90_us=..
//! p99_us=.. p999_us=.. max_us=.. late=N send_lag_p99_us=.. errors=N`.
//! Requests due in the first `--warmup` seconds are sent but not counted.
//! `--latencies FILE` also writes every counted latency (microseconds,
//! little-endian u32) of address `k` to `FILE.k`, for the caller to pool
//! several trials.

use std::{
    collections::BinaryHeap,
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd as _,
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};

/// What `--open-loop` was asked to do.
pub struct Load {
    /// The servers measured: connection `i` goes to `addrs[i % n]`, so
    /// with two the same load is spread over both at the same moments.
    pub addrs: Vec<SocketAddr>,
    pub rate: f64,
    pub connections: usize,
    pub secs: f64,
    pub warmup: f64,
    pub headers: Vec<String>,
    /// Where to write every counted latency, in microseconds, as
    /// little-endian u32s (the caller pools several trials).
    pub latencies: Option<std::path::PathBuf>,
}

/// Longest answer head taken; longer is an error.
const MAX_HEAD: usize = 16 * 1024;
/// How long answers still due are waited for once the schedule has ended.
const DRAIN: Duration = Duration::from_secs(2);
const TIMER: u64 = u64::MAX;

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn os_err(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", std::io::Error::last_os_error())
}

struct Conn {
    stream: TcpStream,
    /// When the next request on this connection is due.
    due: u64,
    /// The request in flight: when its latency counts from, and when it
    /// was due.
    in_flight: Option<(u64, u64)>,
    buf: Vec<u8>,
}

#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    send_lag_ns: Vec<u64>,
    late: u64,
    errors: u64,
}

struct Gen {
    load: Load,
    epfd: i32,
    /// The request of each address (its own `Host`).
    requests: Vec<Vec<u8>>,
    /// Due time of each connection's requests after the previous one.
    interval_ns: u64,
    count_from: u64,
    stop_at: u64,
    conns: Vec<Conn>,
    /// Idle connections by due time (earliest first).
    idle: BinaryHeap<std::cmp::Reverse<(u64, usize)>>,
    /// One per address.
    tallies: Vec<Tally>,
}

pub fn run(load: Load) -> anyhow::Result<()> {
    ensure!(load.rate > 0.0, "--rate must be above 0");
    ensure!(load.connections > 0, "--connections must be above 0");
    ensure!(!load.addrs.is_empty(), "--open-loop needs an address");
    ensure!(
        load.connections.is_multiple_of(load.addrs.len()),
        "--connections must be a multiple of the number of addresses"
    );
    let mut g = Gen::new(load)?;
    g.run()?;
    for k in 0..g.load.addrs.len() {
        println!("{}", g.report(k));
        if let Some(path) = &g.load.latencies {
            let path = path.with_extension(format!("{k}"));
            let bytes: Vec<u8> = g.tallies[k]
                .latencies_ns
                .iter()
                .flat_map(|ns| ((ns / 1000).min(u64::from(u32::MAX)) as u32).to_le_bytes())
                .collect();
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

impl Gen {
    fn new(load: Load) -> anyhow::Result<Gen> {
        // SAFETY: plain syscalls on values we own.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(os_err("epoll_create1"));
        }
        // SAFETY: PR_SET_TIMERSLACK takes a value, no pointer.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1) };
        let requests = load
            .addrs
            .iter()
            .map(|a| {
                let mut request = format!("GET / HTTP/1.1\r\nHost: {a}\r\n");
                for h in &load.headers {
                    request.push_str(h);
                    request.push_str("\r\n");
                }
                request.push_str("\r\n");
                request.into_bytes()
            })
            .collect();
        let interval_ns = (load.connections as f64 / load.rate * 1e9) as u64;
        let start = now_ns() + 20_000_000;
        let count_from = start + (load.warmup * 1e9) as u64;
        let stop_at = count_from + (load.secs * 1e9) as u64;
        let mut g = Gen {
            epfd,
            requests,
            interval_ns,
            count_from,
            stop_at,
            conns: Vec::new(),
            idle: BinaryHeap::new(),
            tallies: (0..load.addrs.len()).map(|_| Tally::default()).collect(),
            load,
        };
        for i in 0..g.load.connections {
            let stream = g.connect(i)?;
            let due = start + interval_ns * i as u64 / g.load.connections as u64;
            g.conns.push(Conn {
                stream,
                due,
                in_flight: None,
                buf: Vec::with_capacity(4096),
            });
            g.idle.push(std::cmp::Reverse((due, i)));
        }
        Ok(g)
    }

    /// The address (and tally) of connection `i`.
    fn target(&self, i: usize) -> usize {
        i % self.load.addrs.len()
    }

    fn connect(&self, i: usize) -> anyhow::Result<TcpStream> {
        let addr = self.load.addrs[self.target(i)];
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("connect to {addr}"))?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        self.watch(s.as_raw_fd(), i as u64)?;
        Ok(s)
    }

    fn watch(&self, fd: i32, token: u64) -> anyhow::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is valid for the call; `fd` is open.
        if unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            return Err(os_err("epoll_ctl"));
        }
        Ok(())
    }

    fn run(&mut self) -> anyhow::Result<()> {
        // SAFETY: plain syscall.
        let tfd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if tfd < 0 {
            return Err(os_err("timerfd_create"));
        }
        let result = self.run_with(tfd);
        // SAFETY: closing fds this function created.
        unsafe {
            libc::close(tfd);
            libc::close(self.epfd);
        }
        result
    }

    fn run_with(&mut self, tfd: i32) -> anyhow::Result<()> {
        self.watch(tfd, TIMER)?;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
        let give_up = self.stop_at + DRAIN.as_nanos() as u64;
        loop {
            let now = now_ns();
            while let Some(&std::cmp::Reverse((due, i))) = self.idle.peek() {
                if due > now {
                    break;
                }
                self.idle.pop();
                self.send(i, now, due, now)?;
            }
            let busy = self.conns.iter().any(|c| c.in_flight.is_some());
            if self.idle.is_empty() && !busy {
                return Ok(());
            }
            if now > give_up {
                for i in 0..self.conns.len() {
                    if self.conns[i].in_flight.is_some() {
                        let k = self.target(i);
                        self.tallies[k].errors += 1;
                    }
                }
                return Ok(());
            }
            let wake = self.idle.peek().map_or(give_up, |r| r.0.0.min(give_up));
            arm(tfd, wake)?;
            // SAFETY: `events` has room for its length.
            let n = unsafe {
                libc::epoll_wait(self.epfd, events.as_mut_ptr(), events.len() as i32, -1)
            };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(os_err("epoll_wait"));
            }
            for ev in &events[..n as usize] {
                let token = ev.u64;
                if token == TIMER {
                    let mut buf = [0u8; 8];
                    // SAFETY: reading the expiry count into an 8-byte buffer.
                    unsafe { libc::read(tfd, buf.as_mut_ptr().cast(), 8) };
                } else {
                    self.readable(token as usize)?;
                }
            }
        }
    }

    /// Send connection `i`'s request due at `due`, its latency counted from
    /// `from`.
    fn send(&mut self, i: usize, now: u64, due: u64, from: u64) -> anyhow::Result<()> {
        if due >= self.stop_at {
            return Ok(());
        }
        let k = self.target(i);
        if due >= self.count_from && from == now {
            self.tallies[k].send_lag_ns.push(now - due);
        }
        let request = &self.requests[k];
        let c = &mut self.conns[i];
        c.in_flight = Some((from, due));
        match c.stream.write(request) {
            Ok(n) if n == request.len() => Ok(()),
            // A request this small fits an empty socket buffer: anything
            // else means the connection is gone.
            _ => self.fail(i, now),
        }
    }

    fn readable(&mut self, i: usize) -> anyhow::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let c = &mut self.conns[i];
            match c.stream.read(&mut chunk) {
                Ok(0) => return self.fail(i, now_ns()),
                Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.fail(i, now_ns()),
            }
        }
        let c = &mut self.conns[i];
        let Some((from, due)) = c.in_flight else {
            // An answer nobody asked for.
            return self.fail(i, now_ns());
        };
        match parse_answer(&c.buf) {
            Answer::Partial => Ok(()),
            Answer::Bad => self.fail(i, now_ns()),
            Answer::Complete { len, ok } => {
                let now = now_ns();
                c.buf.drain(..len);
                if !c.buf.is_empty() {
                    return self.fail(i, now);
                }
                c.in_flight = None;
                let k = self.target(i);
                if !ok {
                    self.tallies[k].errors += 1;
                } else if due >= self.count_from {
                    self.tallies[k].latencies_ns.push(now - from);
                }
                self.next(i, now)
            }
        }
    }

    /// Connection `i` is free at `now`: send its next request if it is
    /// already due (late: latency from when it was due), else wait for it.
    fn next(&mut self, i: usize, now: u64) -> anyhow::Result<()> {
        let c = &mut self.conns[i];
        c.due += self.interval_ns;
        let due = c.due;
        if due <= now {
            if due >= self.count_from && due < self.stop_at {
                let k = self.target(i);
                self.tallies[k].late += 1;
            }
            self.send(i, now, due, due)
        } else {
            self.idle.push(std::cmp::Reverse((due, i)));
            Ok(())
        }
    }

    /// Count an error on connection `i`, open it again and go on with its
    /// schedule.
    fn fail(&mut self, i: usize, now: u64) -> anyhow::Result<()> {
        let k = self.target(i);
        self.tallies[k].errors += 1;
        if self.tallies[k].errors > 1000 {
            bail!("more than 1,000 errors from {}", self.load.addrs[k]);
        }
        let stream = self.connect(i)?;
        let c = &mut self.conns[i];
        // (The old stream's fd leaves epoll as it closes.)
        c.stream = stream;
        c.buf.clear();
        match c.in_flight.take() {
            Some(_) => self.next(i, now),
            // Closed while idle: its next request is already scheduled.
            None => Ok(()),
        }
    }

    /// The result line of address `k`.
    fn report(&mut self, k: usize) -> String {
        let addr = self.load.addrs[k];
        let t = &mut self.tallies[k];
        t.latencies_ns.sort_unstable();
        t.send_lag_ns.sort_unstable();
        let pct = |v: &[u64], p: f64| -> u64 {
            if v.is_empty() {
                return 0;
            }
            let k = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len());
            v[k - 1] / 1000
        };
        let l = &t.latencies_ns;
        format!(
            "OPEN-LOOP target={addr} requests={} rate={:.0} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} \
             late={} send_lag_p99_us={} errors={}",
            l.len(),
            l.len() as f64 / self.load.secs,
            pct(l, 0.50),
            pct(l, 0.90),
            pct(l, 0.99),
            pct(l, 0.999),
            l.last().map_or(0, |v| v / 1000),
            t.late,
            pct(&t.send_lag_ns, 0.99),
            t.errors
        )
    }
}

/// Arm `tfd` to fire at `at` (CLOCK_MONOTONIC nanoseconds).
fn arm(tfd: i32, at: u64) -> anyhow::Result<()> {
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (at / 1_000_000_000) as libc::time_t,
            // At least 1 ns: a zero value disarms the timer.
            tv_nsec: ((at % 1_000_000_000).max(1)) as libc::c_long,
        },
    };
    // SAFETY: `spec` is valid for the call; `tfd` is a timerfd.
    if unsafe { libc::timerfd_settime(tfd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) }
        != 0
    {
        return Err(os_err("timerfd_settime"));
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Answer {
    Partial,
    Bad,
    /// A whole answer of `len` bytes; `ok`: its status is 2xx.
    Complete {
        len: usize,
        ok: bool,
    },
}

/// The first answer in `buf`, framed by `Content-Length` (none: no body).
fn parse_answer(buf: &[u8]) -> Answer {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Answer::Bad
        } else {
            Answer::Partial
        };
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return Answer::Bad;
    };
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code = match status
        .strip_prefix("HTTP/1.1 ")
        .or(status.strip_prefix("HTTP/1.0 "))
    {
        Some(rest) => rest.get(..3).and_then(|c| c.parse::<u16>().ok()),
        None => None,
    };
    let Some(code) = code else {
        return Answer::Bad;
    };
    let mut body = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Answer::Bad;
        };
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Answer::Bad;
        }
        if name.eq_ignore_ascii_case("content-length") {
            match value.trim().parse() {
                Ok(n) => body = n,
                Err(_) => return Answer::Bad,
            }
        }
    }
    let len = head_end + 4 + body;
    if buf.len() < len {
        return Answer::Partial;
    }
    Answer::Complete {
        len,
        ok: (200..300).contains(&code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_framed_by_content_length() {
        let a = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\ns0";
        assert_eq!(
            parse_answer(a),
            Answer::Complete {
                len: a.len(),
                ok: true
            }
        );
        assert_eq!(parse_answer(&a[..a.len() - 1]), Answer::Partial);
        assert_eq!(parse_answer(b"HTTP/1.1 200 OK\r\n"), Answer::Partial);
        let e = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            parse_answer(e),
            Answer::Complete {
                len: e.len(),
                ok: false
            }
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_answer(chunked), Answer::Bad);
        assert_eq!(parse_answer(b"SSH-2.0\r\n\r\n"), Answer::Bad);
        assert_eq!(parse_answer(&[b'x'; MAX_HEAD + 1]), Answer::Bad);
    }
}
