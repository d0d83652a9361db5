//! Restarts and reloads under load drop nothing: while clients run
//! keep-alive and new-connection traffic, the daemon is restarted 10 times
//! with `balancer run --takeover` (each new daemon takes the listening
//! sockets over from the running one) and reloaded 10 times (one reload
//! adds a frontend, a later one removes it). Every request gets its
//! answer (no error, no reset, counted by the clients, which never retry),
//! and each client stays on its server: by cookie on keep-alive
//! connections, by its source address (the stick table, kept in the
//! pinned map) on new connections.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use balancer_tests::{
    http::{Backend, Client, Svc, free_port, server_tables},
    proc::{Proc, wait_for},
};

/// What the clients saw.
#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    failed: Mutex<Vec<String>>,
    /// Client -> the servers that answered it.
    servers: Mutex<BTreeMap<String, Vec<String>>>,
}

impl Seen {
    /// No request failed, at least `min` succeeded, no client moved: how
    /// many succeeded.
    fn check(&self, min: u64) -> u64 {
        let failed = self.failed.lock().unwrap().clone();
        let ok = self.ok.load(Ordering::Relaxed);
        assert!(
            failed.is_empty(),
            "{} failed of {}: {failed:?}",
            failed.len(),
            ok + failed.len() as u64
        );
        assert!(ok > min, "only {ok} requests");
        for (who, servers) in self.servers.lock().unwrap().iter() {
            assert_eq!(servers.len(), 1, "{who} moved: {servers:?}");
        }
        ok
    }

    fn answer(&self, who: &str, a: std::io::Result<balancer_tests::http::Answer>) {
        match a {
            Ok(a) if a.status == 200 => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let mut s = self.servers.lock().unwrap();
                let v = s.entry(who.to_owned()).or_default();
                if v.last() != Some(&a.body) {
                    v.push(a.body);
                }
            }
            Ok(a) => self
                .failed
                .lock()
                .unwrap()
                .push(format!("{who}: {}", a.status)),
            Err(e) => self.failed.lock().unwrap().push(format!("{who}: {e}")),
        }
    }
}

/// A keep-alive client with a cookie, from its own source address `from`
/// (a client without a cookie whose source has an entry goes where the
/// entry says and gets no cookie, as in HAProxy: clients sharing a source
/// would share that entry), never retrying: a request on a connection the
/// proxy closed counts as failed.
fn keep_alive(front: SocketAddr, from: IpAddr, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    let who = format!("keep-{from}");
    let mut c = Client::from(front, from);
    let mut cookie = String::new();
    while !stop.load(Ordering::Relaxed) {
        let a = c.raw(&format!("GET / HTTP/1.1\r\nHost: lab\r\n{cookie}\r\n"));
        if let Ok(a) = &a
            && let Some(v) = a.header("set-cookie")
        {
            cookie = format!("Cookie: {}\r\n", v.split(';').next().unwrap_or_default());
        }
        let failed = a.is_err();
        seen.answer(&who, a);
        if failed {
            // Count it, then go on on a new connection.
            c = Client::from(front, from);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A new connection per request, from source address `from` (no cookie:
/// the stick table keeps it on its server).
fn new_connections(front: SocketAddr, from: IpAddr, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    let who = format!("new-{from}");
    while !stop.load(Ordering::Relaxed) {
        let a = Client::from(front, from)
            .raw("GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n");
        seen.answer(&who, a);
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn ten_takeovers_and_ten_reloads_under_load_fail_no_request() {
    let backends: Vec<Backend> = (0..3)
        .map(|i| Backend::start(&format!("s{i}"), 0).unwrap())
        .collect();
    let servers = server_tables(&backends, true, "");
    let mut svc = Svc::launch(
        "takeover",
        "",
        "cookie = \"SERVER insert indirect nocache\"\n\
         stick_table = { size = \"1k\" }\nstick = \"on src\"\n",
        &servers,
    );
    let config = svc.dir.join("balancer.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let front = svc.front;
    let (seen, stop) = (Arc::new(Seen::default()), Arc::new(AtomicBool::new(false)));
    let mut load = Vec::new();
    for i in 10..14u8 {
        let (seen, stop) = (seen.clone(), stop.clone());
        let from = IpAddr::from([127, 0, 0, i]);
        load.push(std::thread::spawn(move || {
            keep_alive(front, from, seen, stop)
        }));
    }
    for i in 2..6u8 {
        let (seen, stop) = (seen.clone(), stop.clone());
        let from = IpAddr::from([127, 0, 0, i]);
        load.push(std::thread::spawn(move || {
            new_connections(front, from, seen, stop)
        }));
    }
    std::thread::sleep(Duration::from_millis(300));

    let extra: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let with_extra = original.replacen(
        "[[backend]]",
        &format!(
            "[[frontend]]\nname = \"extra\"\nmode = \"http\"\nbind = \"{extra}\"\n\
             default_backend = \"app\"\n\n[[backend]]"
        ),
        1,
    );
    let mut old = Vec::new();
    for round in 0..10 {
        // A reload: the 3rd adds a frontend, the 7th removes it.
        let text = if (3..7).contains(&round) {
            &with_extra
        } else {
            &original
        };
        std::fs::write(&config, text).unwrap();
        svc.reload();
        if round == 3 {
            assert_eq!(Client::new(extra).get("/").unwrap().status, 200);
        }
        std::thread::sleep(Duration::from_millis(150));

        // A restart by takeover.
        let mut cmd = Command::new(balancer_tests::balancer_bin());
        cmd.args(["run", "--takeover", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info");
        let next = Proc::spawn(&format!("balancer-{}", round + 1), cmd, &svc.dir).unwrap();
        let up = wait_for(Duration::from_secs(20), || {
            next.output().contains("running:")
        });
        assert!(up, "round {round}: the new daemon: {}", next.output());
        old.push(std::mem::replace(&mut svc.daemon, next));
        std::thread::sleep(Duration::from_millis(150));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    // Every old daemon let go and ended by itself.
    for mut p in old {
        assert!(
            wait_for(Duration::from_secs(20), || p
                .try_wait()
                .ok()
                .flatten()
                .is_some()),
            "{} did not end: {}",
            p.name,
            p.output()
        );
        assert!(p.output().contains("takeover: let go"), "{}", p.output());
    }
    let ok = seen.check(1000);
    println!("{ok} requests, none failed, through 10 takeovers and 10 reloads");
}

/// Three backends, and an HTTP-only configuration in a directory of the
/// test's (its admin socket there): frontend `web` on a free port, backend
/// `app` sticking on the source (and with `cookies`, inserting a cookie).
fn http_only(
    tag: &str,
    cookies: bool,
) -> (
    Vec<Backend>,
    std::path::PathBuf,
    SocketAddr,
    std::path::PathBuf,
) {
    let backends: Vec<Backend> = (0..3)
        .map(|i| Backend::start(&format!("s{i}"), 0).unwrap())
        .collect();
    let dir = std::env::temp_dir().join(format!("blb-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let front: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let cookie = match cookies {
        true => "cookie = \"SERVER insert indirect nocache\"\n",
        false => "",
    };
    let config = dir.join("balancer.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nsocket = \"{}\"\n\n[[frontend]]\nname = \"web\"\nmode = \"http\"\n\
             bind = \"{front}\"\ndefault_backend = \"app\"\n\n[[backend]]\nname = \"app\"\n\
             {cookie}stick_table = {{ size = \"1k\" }}\nstick = \"on src\"\n{}",
            dir.join("admin.sock").display(),
            server_tables(&backends, cookies, "")
        ),
    )
    .unwrap();
    (backends, dir, front, config)
}

/// Without kernel maps (HTTP only, no pin_dir: the stick table lives in the
/// daemon's memory), a takeover hands the table over too: each client
/// stays on its server, and `table show` lists the same entries.
#[test]
fn a_takeover_without_kernel_maps_hands_the_stick_table_over() {
    let (_backends, dir, front, config) = http_only("takeover-mem", false);
    let spawn = |name: &str, takeover: bool| {
        let mut cmd = Command::new(balancer_tests::balancer_bin());
        cmd.arg("run");
        if takeover {
            cmd.arg("--takeover");
        }
        cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
        let p = Proc::spawn(name, cmd, &dir).unwrap();
        assert!(
            wait_for(Duration::from_secs(20), || p.output().contains("running:")),
            "{}",
            p.output()
        );
        p
    };
    let cli = |args: &[&str]| {
        balancer_tests::lab::output(
            Command::new(balancer_tests::balancer_bin())
                .arg("--socket")
                .arg(dir.join("admin.sock"))
                .args(args),
        )
        .unwrap()
    };
    let mut first = spawn("balancer-1", false);
    assert!(
        first.output().contains("running: HTTP only"),
        "{}",
        first.output()
    );
    let home = |i: u8| {
        Client::from(front, IpAddr::from([127, 0, 0, i]))
            .get("/")
            .unwrap()
            .body
    };
    let before: Vec<String> = (2..14).map(home).collect();
    let spread: std::collections::BTreeSet<&String> = before.iter().collect();
    assert!(
        spread.len() > 1,
        "round robin spreads new clients: {before:?}"
    );
    // The proxy writes its entries to the table every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        cli(&["table", "count"]).trim(),
        "12",
        "{}",
        cli(&["table", "show"])
    );
    let mut second = spawn("balancer-2", true);
    assert!(
        second.output().contains("took over 12 stick entries"),
        "{}",
        second.output()
    );
    assert!(
        wait_for(Duration::from_secs(20), || first
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "{}",
        first.output()
    );
    let after: Vec<String> = (2..14).map(home).collect();
    assert_eq!(after, before, "clients moved");
    assert_eq!(cli(&["table", "count"]).trim(), "12");
    second.stop().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Processes the test did not start itself (a daemon's successors): killed
/// when dropped, on failure too.
struct Pids(Vec<u32>);

impl Drop for Pids {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: signalling a PID.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')),
    }
}

/// Under systemd (`Type=notify`), as its notification socket sees it:
/// the daemon says `READY=1`; on SIGUSR2 it starts its successor, which
/// takes over, and hands it the main PID (`MAINPID=`) before it lets go;
/// the successor says `READY=1`; the old daemon ends by itself. Three
/// upgrades while clients run: no request fails, no client moves.
#[test]
fn sigusr2_upgrades_and_systemd_follows_the_successor() {
    let (_backends, dir, front, config) = http_only("takeover-usr2", true);
    let notify_path = dir.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let next_message = || {
        let mut b = [0u8; 512];
        let n = notify.recv(&mut b).expect("a notification within 20 s");
        String::from_utf8_lossy(&b[..n]).into_owned()
    };
    let main_pid = |m: &str| -> Option<u32> {
        m.lines()
            .find_map(|l| l.strip_prefix("MAINPID=")?.parse().ok())
    };
    let mut cmd = Command::new(balancer_tests::balancer_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &notify_path);
    let mut first = Proc::spawn("balancer-1", cmd, &dir).unwrap();
    let ready = next_message();
    assert_eq!(ready, format!("READY=1\nMAINPID={}\n", first.pid()));
    let mut successors = Pids(Vec::new());

    let (seen, stop) = (Arc::new(Seen::default()), Arc::new(AtomicBool::new(false)));
    let mut load = Vec::new();
    for i in 2..4u8 {
        let (s1, t1) = (seen.clone(), stop.clone());
        let from = IpAddr::from([127, 0, 0, i]);
        load.push(std::thread::spawn(move || keep_alive(front, from, s1, t1)));
        let (s2, t2) = (seen.clone(), stop.clone());
        let from = IpAddr::from([127, 0, 0, i + 10]);
        load.push(std::thread::spawn(move || {
            new_connections(front, from, s2, t2)
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut main = first.pid();
    // A successor that cannot start (its file is bad now): the daemon says
    // so and goes on, and the next upgrades are not refused for it.
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        good.replace("[[backend]]", "[[backend]]\nbogus = 1"),
    )
    .unwrap();
    // SAFETY: signalling a PID.
    assert_eq!(unsafe { libc::kill(main as i32, libc::SIGUSR2) }, 0);
    first.expect_logged("failed (exit status: ", Duration::from_secs(20));
    // One whose file adds a frontend on a port in use: it binds what it can
    // before the daemon lets go, so it fails first, and the daemon goes on.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let with_busy = good.replacen(
        "[[backend]]",
        &format!(
            "[[frontend]]\nname = \"busy\"\nmode = \"http\"\nbind = \"{}\"\n\
             default_backend = \"app\"\n\n[[backend]]",
            busy.local_addr().unwrap()
        ),
        1,
    );
    std::fs::write(&config, with_busy).unwrap();
    // SAFETY: signalling a PID.
    assert_eq!(unsafe { libc::kill(main as i32, libc::SIGUSR2) }, 0);
    let failures = || first.output().matches("failed (exit status: ").count();
    assert!(
        wait_for(Duration::from_secs(20), || failures() == 2),
        "{}",
        first.output()
    );
    assert!(first.output().contains("in use"), "{}", first.output());
    drop(busy);
    std::fs::write(&config, good).unwrap();
    for round in 0..3 {
        // SAFETY: signalling a PID.
        assert_eq!(unsafe { libc::kill(main as i32, libc::SIGUSR2) }, 0);
        // From the old daemon, before it lets go: the successor's PID.
        let handed = next_message();
        let next = main_pid(&handed).unwrap_or_else(|| panic!("{handed:?}"));
        assert_eq!(handed, format!("MAINPID={next}\n"), "round {round}");
        assert_ne!(next, main);
        successors.0.push(next);
        // From the successor, once it serves.
        assert_eq!(next_message(), format!("READY=1\nMAINPID={next}\n"));
        let old = main;
        assert!(
            wait_for(Duration::from_secs(20), || ended(old)),
            "round {round}: process {old} did not end: {}",
            first.output()
        );
        main = next;
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert!(first.try_wait().unwrap().is_some());
    // SAFETY: signalling a PID.
    unsafe { libc::kill(main as i32, libc::SIGTERM) };
    assert!(wait_for(Duration::from_secs(20), || ended(main)));
    let out = first.output();
    assert_eq!(out.matches("SIGUSR2: started ").count(), 5, "{out}");
    assert_eq!(out.matches("takeover: let go").count(), 3, "{out}");
    let ok = seen.check(100);
    println!("{ok} requests, none failed, through 3 upgrades by SIGUSR2");
    drop(successors);
    std::fs::remove_dir_all(&dir).unwrap();
}
