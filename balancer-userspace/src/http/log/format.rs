//! The lines: HAProxy 2.6's `option httplog` line (configuration.txt
//! 8.2.3), the same fields as one JSON object, and the RFC 3164 header
//! HAProxy puts before a line sent to syslog. Written into a reused
//! buffer; the dates are formatted once a second per thread.

use std::{cell::RefCell, io::Write as _};

use super::{Fields, Record};

/// `dd/Mmm/yyyy:HH:MM:SS` and `Mmm dd HH:MM:SS` of one second, local time.
struct Dates {
    second: i64,
    long: [u8; 20],
    syslog: [u8; 15],
}

thread_local! {
    static DATES: RefCell<Dates> = const { RefCell::new(Dates { second: -1, long: [0; 20], syslog: [0; 15] }) };
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn two(out: &mut [u8], v: i32) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

impl Dates {
    fn set(&mut self, second: i64) {
        // SAFETY: `tm` is plain data, filled by localtime_r from a valid time_t.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            let t: libc::time_t = second;
            libc::localtime_r(&t, &mut tm);
            tm
        };
        let month = MONTHS[tm.tm_mon.clamp(0, 11) as usize];
        let year = tm.tm_year + 1900;
        let l = &mut self.long;
        two(&mut l[0..2], tm.tm_mday);
        l[2] = b'/';
        l[3..6].copy_from_slice(month);
        l[6] = b'/';
        two(&mut l[7..9], year / 100);
        two(&mut l[9..11], year % 100);
        l[11] = b':';
        two(&mut l[12..14], tm.tm_hour);
        l[14] = b':';
        two(&mut l[15..17], tm.tm_min);
        l[17] = b':';
        two(&mut l[18..20], tm.tm_sec);
        let s = &mut self.syslog;
        s[0..3].copy_from_slice(month);
        s[3] = b' ';
        // RFC 3164: the day padded with a space.
        two(&mut s[4..6], tm.tm_mday);
        if s[4] == b'0' {
            s[4] = b' ';
        }
        s[6] = b' ';
        s[7..15].copy_from_slice(&l[12..20]);
        self.second = second;
    }
}

fn with_dates<R>(second: i64, f: impl FnOnce(&Dates) -> R) -> R {
    DATES.with(|d| {
        let mut d = d.borrow_mut();
        if d.second != second {
            d.set(second);
        }
        f(&d)
    })
}

/// `<PRI>Mmm dd HH:MM:SS TAG[PID]: ` (HAProxy's header to a local socket:
/// no host name). Level info (6).
pub fn syslog_header(out: &mut Vec<u8>, facility: u8, tag: &str, unix_ms: u64) {
    let _ = write!(out, "<{}>", u32::from(facility) * 8 + 6);
    with_dates((unix_ms / 1000) as i64, |d| {
        out.extend_from_slice(&d.syslog)
    });
    let _ = write!(out, " {tag}[{}]: ", std::process::id());
}

/// A timer: -1 when the phase was not reached.
fn timer(out: &mut Vec<u8>, v: i64) {
    let _ = write!(out, "{v}");
}

/// The request line's bytes as HAProxy logs them: controls, non-ASCII,
/// `"` and `#` as `#XX`.
fn escaped(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        if !(0x20..0x7f).contains(&b) || b == b'"' || b == b'#' {
            let _ = write!(out, "#{b:02X}");
        } else {
            out.push(b);
        }
    }
}

/// `ip:port [dd/Mmm/yyyy:HH:MM:SS.mmm]` (`date_ms`: Unix time).
fn client_and_date(out: &mut Vec<u8>, client: std::net::SocketAddr, date_ms: u64) {
    let _ = write!(out, "{}:{} [", client.ip(), client.port());
    with_dates((date_ms / 1000) as i64, |d| out.extend_from_slice(&d.long));
    let _ = write!(out, ".{:03}]", date_ms % 1000);
}

/// The `httplog` line (no newline): `ip:port [date] frontend
/// backend/server TR/Tw/Tc/Tr/Ta status bytes - - TERM
/// actconn/feconn/beconn/srv_conn/retries srv_queue/backend_queue "METHOD
/// URI VERSION"`.
pub fn httplog(out: &mut Vec<u8>, r: &Record, f: &Fields) {
    client_and_date(out, r.client, r.date_ms);
    let _ = write!(out, " {} {}/", f.frontend, f.backend);
    out.extend_from_slice(f.server.as_bytes());
    out.push(b' ');
    for (i, t) in f.timers.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        timer(out, *t);
    }
    let _ = write!(out, " {} {} - - ", r.status, r.bytes);
    out.extend_from_slice(&f.termination);
    let plus = if r.redispatched { "+" } else { "" };
    let _ = write!(
        out,
        " {}/{}/{}/{}/{plus}{} {}/{} \"",
        f.conns[0], f.conns[1], f.conns[2], f.conns[3], r.retries, f.queues[0], f.queues[1]
    );
    request_line(out, r);
    out.push(b'"');
}

fn request_line(out: &mut Vec<u8>, r: &Record) {
    if r.bad {
        out.extend_from_slice(b"<BADREQ>");
        return;
    }
    escaped(out, r.method.as_str().as_bytes());
    out.push(b' ');
    match r.uri.path_and_query() {
        Some(pq) => escaped(out, pq.as_str().as_bytes()),
        None => escaped(out, r.uri.to_string().as_bytes()),
    }
    out.push(b' ');
    out.extend_from_slice(super::version(r.version).as_bytes());
}

/// A JSON string (RFC 8259 escapes).
fn json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..0x20 | 0x7f.. => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// A JSON line's first fields: `client_ip`, `client_port`, `accept_date`
/// (`date_ms`, Unix time) and `frontend_name`.
fn json_start(out: &mut Vec<u8>, client: std::net::SocketAddr, date_ms: u64, frontend: &str) {
    out.extend_from_slice(b"{\"client_ip\":");
    json_str(out, client.ip().to_string().as_bytes());
    let _ = write!(out, ",\"client_port\":{},\"accept_date\":\"", client.port());
    with_dates((date_ms / 1000) as i64, |d| out.extend_from_slice(&d.long));
    let _ = write!(out, ".{:03}\",\"frontend_name\":", date_ms % 1000);
    json_str(out, frontend.as_bytes());
}

/// The same fields as [`httplog`], named as configuration.txt 8.2.3 names
/// them, as one JSON object (no newline).
pub fn json(out: &mut Vec<u8>, r: &Record, f: &Fields) {
    json_start(out, r.client, r.date_ms, f.frontend);
    out.extend_from_slice(b",\"backend_name\":");
    json_str(out, f.backend.as_bytes());
    out.extend_from_slice(b",\"server_name\":");
    json_str(out, f.server.as_bytes());
    let [tr, tw, tc, trs, ta] = f.timers;
    let _ = write!(
        out,
        ",\"TR\":{tr},\"Tw\":{tw},\"Tc\":{tc},\"Tr\":{trs},\"Ta\":{ta},\"status_code\":{},\
         \"bytes_read\":{},\"captured_request_cookie\":\"-\",\"captured_response_cookie\":\"-\",\
         \"termination_state\":",
        r.status, r.bytes
    );
    json_str(out, &f.termination);
    let [ac, fc, bc, sc] = f.conns;
    let _ = write!(
        out,
        ",\"actconn\":{ac},\"feconn\":{fc},\"beconn\":{bc},\"srv_conn\":{sc},\"retries\":{},\
         \"redispatched\":{},\"srv_queue\":{},\"backend_queue\":{},\"http_request\":",
        r.retries, r.redispatched, f.queues[0], f.queues[1]
    );
    let mut line = Vec::with_capacity(64);
    request_line(&mut line, r);
    json_str(out, &line);
    out.push(b'}');
}

/// HAProxy's connection error line (`log/conn.rs`).
pub struct ConnError<'a> {
    pub client: std::net::SocketAddr,
    /// Its accept, Unix time in ms.
    pub date_ms: u64,
    pub frontend: &'a str,
    pub bind: &'a str,
    pub message: &'a str,
}

/// `ip:port [dd/Mmm/yyyy:HH:MM:SS.mmm] frontend/bind: message`.
pub fn conn_error(out: &mut Vec<u8>, e: &ConnError) {
    client_and_date(out, e.client, e.date_ms);
    let _ = write!(out, " {}/{}: {}", e.frontend, e.bind, e.message);
}

/// The same as one JSON object.
pub fn conn_error_json(out: &mut Vec<u8>, e: &ConnError) {
    json_start(out, e.client, e.date_ms, e.frontend);
    out.extend_from_slice(b",\"bind_name\":");
    json_str(out, e.bind.as_bytes());
    out.extend_from_slice(b",\"message\":");
    json_str(out, e.message.as_bytes());
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_as_haproxy_writes_them() {
        let mut d = Dates {
            second: -1,
            long: [0; 20],
            syslog: [0; 15],
        };
        // 2009-02-06 12:14:14 UTC (configuration.txt's example).
        d.set(1_233_922_454);
        let long = std::str::from_utf8(&d.long).unwrap();
        let syslog = std::str::from_utf8(&d.syslog).unwrap();
        assert_eq!(long.len(), 20);
        // Local time: the day may differ by one from UTC's.
        assert!(long[2..].starts_with("/Feb/2009:"), "{long}");
        assert!(syslog.starts_with("Feb "), "{syslog}");
        assert_eq!(&long[12..], &syslog[7..]);
    }

    #[test]
    fn request_bytes_are_escaped() {
        let mut out = Vec::new();
        escaped(&mut out, b"/a\"b#c\x01");
        assert_eq!(out, b"/a#22b#23c#01");
        let mut j = Vec::new();
        json_str(&mut j, b"a\"\\\n");
        assert_eq!(j, b"\"a\\\"\\\\\\u000a\"");
    }
}
