//! A client that sends part of HTTP/2's connection preface and goes quiet
//! costs the proxy nothing while it waits: the worker waits for the socket
//! to have more bytes, where it used to peek again every 2 ms (a busy poll
//! per such connection, for up to `timeout_client`). A preface completed
//! later is still served as HTTP/2.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use balancer_tests::http::{Client, Svc};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Connections holding a partial preface.
const HOLDERS: usize = 64;
const HOLD: Duration = Duration::from_secs(2);

/// User + system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_partial_h2_preface_is_waited_for_without_polling() {
    let svc = Svc::start("h2-preface", "", "", 1);
    let pid = svc.daemon.pid();
    let before = cpu_ticks(pid);
    let mut held: Vec<TcpStream> = (0..HOLDERS)
        .map(|_| {
            let mut s = TcpStream::connect(svc.front).unwrap();
            s.write_all(&PREFACE[..16]).unwrap();
            s
        })
        .collect();
    // Others are served meanwhile.
    let mut c = Client::new(svc.front);
    assert_eq!(c.get("/").unwrap().status, 200);
    std::thread::sleep(HOLD);
    let used = cpu_ticks(pid) - before;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    println!(
        "daemon CPU while {HOLDERS} connections held a partial preface for {HOLD:?}: {used} ticks ({hz} a second)"
    );
    // Peeking every 2 ms took 40 ticks here (20% of a CPU for 64 such
    // connections); waiting takes none (measured 0).
    assert!(
        used * 10 < hz * 2,
        "the daemon used {used} ticks ({hz}/s) while connections held a partial preface"
    );
    // One of them completes its preface: the server answers with its
    // SETTINGS frame (type 4), as HTTP/2 asks.
    let s = &mut held[0];
    s.write_all(&PREFACE[16..]).unwrap();
    // An empty SETTINGS frame of our own.
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[3], 4, "first frame from the server: {head:?}");
}
