//! The hostile-load lab: a daemon with its descriptor limit lowered to 256
//! (an HTTP frontend, the metrics endpoint, a peers port, two checked
//! servers) under floods of idle, slowloris, partial-preface and HTTP/2
//! fan-out connections on all three ports, kept up (closed connections
//! are opened again) for the whole run. Meanwhile and after:
//! - no server changes state (no check is lost to the flood);
//! - `balancer status` answers within 1 s;
//! - a normal client is answered within 1 s;
//! - the daemon's CPU use is printed (a figure, not a pass mark).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use balancer_tests::http::{Backend, Client, Svc, checked_servers, free_port};

const NOFILE: u64 = 256;
const RUN: Duration = Duration::from_secs(8);
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// User + system CPU time of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// What a flooding connection does once open.
#[derive(Clone, Copy)]
enum Kind {
    /// Nothing.
    Idle,
    /// A request head, one line every 200 ms, never finished.
    Slowloris,
    /// 16 bytes of HTTP/2's preface.
    PartialPreface,
}

/// Keep `n` connections of `kind` open to `to` until `stop`, opening again
/// those the daemon closes; counts the connections opened.
fn flood(to: SocketAddr, n: usize, kind: Kind, stop: Arc<AtomicBool>) -> Arc<AtomicUsize> {
    let opened = Arc::new(AtomicUsize::new(0));
    let count = opened.clone();
    std::thread::spawn(move || {
        let open = |count: &AtomicUsize| {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(1)).ok()?;
            count.fetch_add(1, Ordering::Relaxed);
            match kind {
                Kind::Idle => {}
                Kind::Slowloris => s.write_all(b"GET / HTTP/1.1\r\n").ok()?,
                Kind::PartialPreface => s.write_all(&PREFACE[..16]).ok()?,
            }
            s.set_nonblocking(true).ok()?;
            Some(s)
        };
        let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| open(&count)).collect();
        while !stop.load(Ordering::Relaxed) {
            for c in conns.iter_mut() {
                let alive = c.as_mut().is_some_and(|s| {
                    let mut b = [0u8; 256];
                    let read_ok = match s.read(&mut b) {
                        Ok(0) => false,
                        Ok(_) => true,
                        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                    };
                    read_ok
                        && (!matches!(kind, Kind::Slowloris) || s.write_all(b"X-a: b\r\n").is_ok())
                });
                if !alive {
                    *c = open(&count);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    opened
}

#[test]
fn floods_on_every_port_change_nothing_and_cost_little() {
    let backends: Vec<Backend> = (0..2)
        .map(|j| Backend::start(&format!("s{j}"), 0).expect("backend"))
        .collect();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let peers: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    // The other peer: a port nothing listens on.
    let other: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let tail = format!(
        "{}\n[metrics]\nbind = \"{metrics}\"\n\n[peers.lab]\nlocal = \"a\"\n\
         secret = \"0123456789abcdef0123\"\n\n[peers.lab.peer]\na = \"{peers}\"\nb = \"{other}\"\n",
        checked_servers(&backends)
    );
    // The backend's stick table is what the peers section replicates (a
    // section that replicates nothing is refused).
    let svc = Svc::launch_limited(
        "hostile",
        "timeout_http_request = \"2s\"\ntimeout_http_keep_alive = \"1s\"\n",
        "stick_table = { size = \"1k\", peers = \"lab\" }\nstick = \"on src\"\n",
        &tail,
        Some(NOFILE),
    );
    let pid = svc.daemon.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let mut opened = Vec::new();
    for (to, kinds) in [
        (
            svc.front,
            [
                (Kind::Idle, 200),
                (Kind::Slowloris, 100),
                (Kind::PartialPreface, 100),
            ],
        ),
        (
            metrics,
            [
                (Kind::Idle, 100),
                (Kind::Slowloris, 50),
                (Kind::PartialPreface, 20),
            ],
        ),
        (
            peers,
            [
                (Kind::Idle, 100),
                (Kind::Slowloris, 50),
                (Kind::PartialPreface, 20),
            ],
        ),
    ] {
        for (kind, n) in kinds {
            opened.push(flood(to, n, kind, stop.clone()));
        }
    }
    // HTTP/2 fan-out: connections of 200 streams each, one after another.
    let fan_stop = stop.clone();
    let front = svc.front;
    let fan = std::thread::spawn(move || {
        let mut statuses = Vec::new();
        while !fan_stop.load(Ordering::Relaxed) {
            statuses.extend(balancer_tests::h2::burst(front, 200));
        }
        statuses
    });
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let (mut worst_status, mut worst_request) = (Duration::ZERO, Duration::ZERO);
    while start.elapsed() < RUN {
        let t = Instant::now();
        let status = svc.cli(&["status"]);
        worst_status = worst_status.max(t.elapsed());
        assert!(status.contains("frontend web"), "{status}");
        let list = svc.cli(&["backend", "list", "--json"]);
        assert!(!list.contains("\"down\""), "a server changed state: {list}");
        let t = Instant::now();
        let a = Client::new(svc.front).get("/").expect("a normal client");
        worst_request = worst_request.max(t.elapsed());
        assert_eq!(a.status, 200, "{}", a.body);
        std::thread::sleep(Duration::from_millis(250));
    }
    let cpu = (cpu_seconds(pid) - cpu0) / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let statuses = fan.join().unwrap();
    let total: usize = opened.iter().map(|o| o.load(Ordering::Relaxed)).sum();
    println!(
        "{total} flood connections opened; {} HTTP/2 streams ({} answered 200); status within \
         {worst_status:?}, a normal client within {worst_request:?}; daemon CPU {:.0}% of a core",
        statuses.len(),
        statuses.iter().filter(|&&s| s == 200).count(),
        cpu * 100.0
    );
    assert!(
        worst_status < Duration::from_secs(1),
        "status took {worst_status:?}"
    );
    assert!(
        worst_request < Duration::from_secs(1),
        "a client waited {worst_request:?}"
    );
    // The CPU figure is printed, not asserted: this machine is shared and
    // the debug daemon's share varies with what else runs (26% alone, 84%
    // beside the whole test suite); a target belongs in a benchmark.
    // After: served, nothing down, and no log flood.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(Client::new(svc.front).get("/").unwrap().status, 200);
    let list = svc.cli(&["backend", "list", "--json"]);
    assert!(!list.contains("\"down\""), "{list}");
    let log = svc.daemon.output();
    let lines = log.lines().count();
    assert!(lines < 200, "the daemon logged {lines} lines:\n{log}");
}
