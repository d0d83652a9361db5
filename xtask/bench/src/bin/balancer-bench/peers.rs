//! `peers`: stick-table replication between two instances in this process.
//!
//! Instance A is the real XDP program (loaded, its stick table pinned) and
//! A's replication engine and peer link; instance B is a second pinned
//! stick table with B's engine and link, which gives the servers other ids
//! (entries travel by name). The link is real TCP over 127.0.0.1 with the
//! HMAC handshake. New clients are made by running a TCP SYN from each
//! client address through A's program (BPF_PROG_TEST_RUN): the program's
//! own insert creates the entry, as for a packet from the NIC.
//!
//! Measured:
//! - **burst**: `clients` new clients as fast as test runs go; throughput
//!   = clients / (last entry visible in B's table - first created in A's);
//!   lag = visible on B - created on A for every 100th client, polled
//!   on B's table by a watcher thread (lookups about 1 ms apart);
//! - **paced**: new clients at a fixed rate (no backlog), lag as above;
//! - **CPU**: CPU time of A's threads (engine `peers-a`, link runtime
//!   `peers-a-net`) from /proc/self/task/*/schedstat during the burst, and
//!   while idle with the table full (the cost of the periodic scan).

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use balancer::{
    config::PeersConfig,
    peers::{
        self, Ctx as PeersCtx,
        engine::{Names, TableInfo},
    },
    stick_batch::Scanner,
    util::monotonic_ns,
};

use super::*;
use crate::{
    common::{syn_v4, v4},
    xdp_testrun::{VIP_V4, VIP4, configure},
};

const SECTION: &str = "bench";
const SCAN_INTERVAL: Duration = Duration::from_millis(100);
/// First client of the burst; clients are consecutive IPv4 addresses from
/// here (198.18.64.0 + 100,000 stays inside 198.18.0.0/15).
const BURST_BASE: u32 = u32::from_be_bytes([198, 18, 64, 0]);
const PACED_BASE: u32 = u32::from_be_bytes([198, 19, 230, 0]);
const SAMPLE_EVERY: usize = 100;

struct Sizes {
    clients: usize,
    paced_clients: usize,
    paced_rate: f64,
    idle: Duration,
}

/// Pinned maps under a directory of our own on the bpffs, removed on drop.
struct PinDir(PathBuf);
impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One instance's replication, on a runtime thread of its own.
struct Instance {
    ctx: Arc<PeersCtx>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn names(ids: &[(u32, &str)]) -> Names {
    let mut servers: Vec<(String, u32)> = ids.iter().map(|(i, n)| (n.to_string(), *i)).collect();
    servers.sort();
    let table = TableInfo {
        frontend: "web".into(),
        backend: "web".into(),
        v4: true,
        expire_ns: 30 * 60 * 1_000_000_000,
        index: servers
            .iter()
            .enumerate()
            .map(|(i, (_, id))| (*id, i as u16))
            .collect(),
        ids: servers.iter().cloned().collect(),
        servers: servers.into_iter().map(|(n, _)| n).collect(),
    };
    Names {
        by_frontend: [("web".to_owned(), VIP_V4)].into(),
        tables: [(VIP_V4, table)].into(),
        http: Default::default(),
    }
}

fn start_instance(
    local: &str,
    listener: std::net::TcpListener,
    remote: (&str, SocketAddr),
    pin_dir: &Path,
    names: Names,
) -> anyhow::Result<Instance> {
    let config = PeersConfig {
        section: SECTION.into(),
        local: local.into(),
        bind: listener.local_addr()?,
        secret: "benchmark-shared-secret".into(),
        remotes: [(remote.0.to_owned(), remote.1)].into(),
        scan_interval: SCAN_INTERVAL,
        refresh: Duration::from_secs(10),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let (stop2, pin_dir) = (stop.clone(), pin_dir.to_owned());
    let thread = std::thread::Builder::new()
        .name(format!("peers-{local}-net"))
        .spawn(move || {
            unpin();
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!("runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let started = (|| {
                    listener.set_nonblocking(true)?;
                    let l = tokio::net::TcpListener::from_std(listener)?;
                    Ok::<_, anyhow::Error>(peers::start_with(
                        config,
                        l,
                        peers::Source::Pinned(&pin_dir),
                        names,
                    )?)
                })();
                let _running = match started {
                    Ok(p) => {
                        let _ = tx.send(Ok(p.ctx.clone()));
                        p
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                while !stop2.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        })?;
    let ctx = rx.recv().context("instance thread ended")??;
    Ok(Instance {
        ctx,
        stop,
        thread: Some(thread),
    })
}

/// Let this thread run on every online CPU (balancer-bench pins its main
/// thread to one, and threads inherit that).
fn unpin() {
    // SAFETY: a zeroed cpu_set_t with the online CPUs set, for this thread.
    unsafe {
        let n = libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in 0..n.min(8 * std::mem::size_of::<libc::cpu_set_t>()) {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

/// CPU time (ns) of this process's threads whose name starts with `prefix`.
fn threads_cpu_ns(prefix: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(prefix))
        })
        .filter_map(|t| {
            let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            s.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

fn open_pinned(dir: &Path) -> anyhow::Result<(BpfHashMap<MapData, StickKey, StickValue>, i32)> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let data = MapData::from_pin(dir.join(STICK_MAP))?;
    let fd = data.fd().as_fd().as_raw_fd();
    Ok((BpfHashMap::try_from(Map::from_map_data(data)?)?, fd))
}

/// Watch B's table for the sampled keys; (key index, first seen ns).
fn watch(
    dir: PathBuf,
    keys: Vec<StickKey>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<Vec<Option<u64>>>> {
    std::thread::spawn(move || {
        unpin();
        let (map, _) = open_pinned(&dir)?;
        let mut seen: Vec<Option<u64>> = vec![None; keys.len()];
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        while !pending.is_empty() && !stop.load(Ordering::Relaxed) {
            pending.retain(|&i| {
                if map.get(&keys[i], 0).is_ok() {
                    seen[i] = Some(monotonic_ns());
                    false
                } else {
                    true
                }
            });
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(seen)
    })
}

fn count(fd: i32) -> usize {
    let mut s = Scanner::new(4096);
    s.scan(fd, |_, _| {}).unwrap_or(0)
}

struct Run {
    created: Vec<u64>,
    seen: Vec<Option<u64>>,
    first_ns: u64,
    done_ns: Option<u64>,
    sender_cpu_ns: u64,
    receiver_cpu_ns: u64,
    wall_ns: u64,
}

/// Create `n` clients from `base` through A's program, `rate` per second
/// (None: as fast as possible); watch every SAMPLE_EVERY-th on B.
fn create(
    prog: &Dataplane,
    b_dir: &Path,
    b_fd: i32,
    base: u32,
    n: usize,
    rate: Option<f64>,
    want_on_b: usize,
) -> anyhow::Result<Run> {
    let keys: Vec<StickKey> = (0..n)
        .step_by(SAMPLE_EVERY)
        .map(|i| StickKey {
            vip_id: VIP_V4,
            addr: v4(Ipv4Addr::from(base + i as u32)),
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(b_dir.to_owned(), keys, stop.clone());
    let (cpu_a, cpu_b) = (threads_cpu_ns("peers-a"), threads_cpu_ns("peers-b"));
    let t0 = Instant::now();
    let first_ns = monotonic_ns();
    let mut created = Vec::with_capacity(n / SAMPLE_EVERY + 1);
    for i in 0..n {
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(i as f64 / r);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let frame = syn_v4(Ipv4Addr::from(base + i as u32), VIP4);
        let now = monotonic_ns();
        let r = test_run(prog.program_fd()?, &frame, 1)?;
        ensure!(r.action == XDP_TX, "SYN {i}: action {}", r.action);
        if i % SAMPLE_EVERY == 0 {
            created.push(now);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut done_ns = None;
    while Instant::now() < deadline {
        if count(b_fd) >= want_on_b {
            done_ns = Some(monotonic_ns());
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall_ns = t0.elapsed().as_nanos() as u64;
    let (sender_cpu_ns, receiver_cpu_ns) = (
        threads_cpu_ns("peers-a") - cpu_a,
        threads_cpu_ns("peers-b") - cpu_b,
    );
    // Give the watcher a moment for the last samples, then stop it.
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let seen = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
    Ok(Run {
        created,
        seen,
        first_ns,
        done_ns,
        sender_cpu_ns,
        receiver_cpu_ns,
        wall_ns,
    })
}

impl Run {
    /// Lag of the sampled clients, in µs, sorted; and how many were never seen.
    fn lags(&self) -> (Vec<f64>, usize) {
        let mut l: Vec<f64> = self
            .created
            .iter()
            .zip(&self.seen)
            .filter_map(|(c, s)| s.map(|s| s.saturating_sub(*c) as f64 / 1000.0))
            .collect();
        l.sort_by(f64::total_cmp);
        let missing = self.seen.iter().filter(|s| s.is_none()).count();
        (l, missing)
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn figure(id: &str, what: &str, unit: &str, value: f64) -> Value {
    json!({
        "id": id, "what": what, "unit": unit, "value": round3(value),
        "peer": null, "ratio": null, "target": null, "measured": true,
    })
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let sz = if ctx.quick {
        Sizes {
            clients: 20_000,
            paced_clients: 2_000,
            paced_rate: 2_000.0,
            idle: Duration::from_secs(1),
        }
    } else {
        Sizes {
            clients: 100_000,
            paced_clients: 5_000,
            paced_rate: 5_000.0,
            idle: Duration::from_secs(3),
        }
    };
    let root = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/balancer-bench-peers-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(&root.0).context("creating the pin dir on /sys/fs/bpf")?;
    let (a_dir, b_dir) = (root.0.join("a"), root.0.join("b"));
    let opts = LoadOptions {
        stick_size: 1 << 18,
        ..LoadOptions::default()
    };
    let (mut a_dp, _) = Dataplane::load_pinned(opts, &a_dir)?;
    configure(&mut a_dp)?;
    // B: only its stick table is used (its own program is never run).
    let (_b_dp, _) = Dataplane::load_pinned(opts, &b_dir)?;
    let (_b_map_handle, b_fd) = open_pinned(&b_dir)?;
    // Same servers, other ids on B.
    let servers = ["server0", "server1", "server2", "server3"];
    let a_names = names(&[
        (0, servers[0]),
        (1, servers[1]),
        (2, servers[2]),
        (3, servers[3]),
    ]);
    let b_names = names(&[
        (7, servers[0]),
        (5, servers[1]),
        (6, servers[2]),
        (4, servers[3]),
    ]);
    let la = std::net::TcpListener::bind("127.0.0.1:0")?;
    let lb = std::net::TcpListener::bind("127.0.0.1:0")?;
    let (aa, ba) = (la.local_addr()?, lb.local_addr()?);
    let a = start_instance("a", la, ("b", ba), &a_dir, a_names)?;
    let b = start_instance("b", lb, ("a", aa), &b_dir, b_names)?;
    let up = Instant::now();
    while !(a.ctx.is_up("b") && b.ctx.is_up("a")) {
        ensure!(
            up.elapsed() < Duration::from_secs(10),
            "peer links not up in 10 s: A {} B {}",
            json!(a.ctx.status()),
            json!(b.ctx.status())
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let burst = create(
        &a_dp, &b_dir, b_fd, BURST_BASE, sz.clients, None, sz.clients,
    )?;
    let done = burst
        .done_ns
        .with_context(|| format!("B did not get all {} entries in 120 s", sz.clients))?;
    let throughput = sz.clients as f64 / ((done - burst.first_ns) as f64 / 1e9);
    let (burst_lags, burst_missing) = burst.lags();
    ensure!(
        burst_missing == 0,
        "{burst_missing} sampled clients never reached B"
    );
    let create_rate = sz.clients as f64
        / ((burst.created.last().copied().unwrap_or(done) - burst.first_ns).max(1) as f64 / 1e9);

    // Idle with the table full: what the periodic scan costs.
    let (cpu0, t0) = (threads_cpu_ns("peers-a"), Instant::now());
    std::thread::sleep(sz.idle);
    let idle_share = (threads_cpu_ns("peers-a") - cpu0) as f64 / t0.elapsed().as_nanos() as f64;
    let engine = json!(a.ctx.status())["engine"].clone();

    let paced = create(
        &a_dp,
        &b_dir,
        b_fd,
        PACED_BASE,
        sz.paced_clients,
        Some(sz.paced_rate),
        sz.clients + sz.paced_clients,
    )?;
    let (paced_lags, paced_missing) = paced.lags();
    ensure!(
        paced_missing == 0,
        "{paced_missing} paced clients never reached B"
    );
    // B names every entry by the same server as A.
    let (a_map, _) = open_pinned(&a_dir)?;
    let (b_map, _) = open_pinned(&b_dir)?;
    let a_name = |id: u32| servers[id as usize];
    let b_name = |id: u32| match id {
        7 => "server0",
        5 => "server1",
        6 => "server2",
        _ => "server3",
    };
    let mut checked = 0;
    for (i, k) in a_map
        .keys()
        .flatten()
        .enumerate()
        .filter(|(i, _)| i % 97 == 0)
    {
        let _ = i;
        let (va, vb) = (a_map.get(&k, 0)?, b_map.get(&k, 0)?);
        ensure!(
            a_name(va.backend) == b_name(vb.backend),
            "entry differs on B"
        );
        checked += 1;
    }
    let status_a = json!(a.ctx.status());
    let status_b = json!(b.ctx.status());
    drop((a, b));

    let sender_cpu_per_entry_us = burst.sender_cpu_ns as f64 / 1000.0 / sz.clients as f64;
    let figures = vec![
        figure(
            "throughput",
            &format!(
                "entries/s replicated A -> B, {} new clients in a burst (first created on A to last visible on B)",
                sz.clients
            ),
            "entries/s",
            throughput,
        ),
        figure(
            "lag-p50-burst",
            "lag created on A -> visible on B, burst, median of every 100th client",
            "us",
            pct(&burst_lags, 50.0),
        ),
        figure(
            "lag-p99-burst",
            "lag created on A -> visible on B, burst, 99th percentile",
            "us",
            pct(&burst_lags, 99.0),
        ),
        figure(
            "lag-p50-paced",
            &format!(
                "lag created on A -> visible on B at {} new clients/s, median",
                sz.paced_rate
            ),
            "us",
            pct(&paced_lags, 50.0),
        ),
        figure(
            "lag-p99-paced",
            &format!(
                "lag created on A -> visible on B at {} new clients/s, 99th percentile",
                sz.paced_rate
            ),
            "us",
            pct(&paced_lags, 99.0),
        ),
        figure(
            "sender-cpu-per-entry",
            "CPU time of the sending instance's threads (engine scan + link) per replicated entry, burst",
            "us",
            sender_cpu_per_entry_us,
        ),
        figure(
            "sender-cpu-share-idle",
            &format!(
                "share of one CPU the sending instance uses idle with {} entries (the {} ms scan)",
                sz.clients,
                SCAN_INTERVAL.as_millis()
            ),
            "share",
            idle_share,
        ),
        figure(
            "scan-time",
            &format!(
                "one batched scan of A's table with {} entries (BPF_MAP_LOOKUP_BATCH, 4096 per call) and the shadow comparison: CPU time of the engine thread",
                sz.clients
            ),
            "us",
            engine["last_scan_cpu_us"].as_f64().unwrap_or(f64::NAN),
        ),
    ];
    println!("peers: {} clients, A -> B over 127.0.0.1", sz.clients);
    println!(
        "  created on A at {:.0} clients/s (BPF_PROG_TEST_RUN SYNs)",
        create_rate
    );
    println!(
        "  throughput {:.0} entries/s; lag burst p50 {:.0} us p99 {:.0} us",
        throughput,
        pct(&burst_lags, 50.0),
        pct(&burst_lags, 99.0)
    );
    println!(
        "  lag at {:.0}/s p50 {:.0} us p99 {:.0} us",
        sz.paced_rate,
        pct(&paced_lags, 50.0),
        pct(&paced_lags, 99.0)
    );
    println!(
        "  sender CPU {:.2} us/entry (burst: {:.0} ms sender, {:.0} ms receiver over {:.0} ms)",
        sender_cpu_per_entry_us,
        burst.sender_cpu_ns as f64 / 1e6,
        burst.receiver_cpu_ns as f64 / 1e6,
        burst.wall_ns as f64 / 1e6
    );
    println!(
        "  idle: {:.1} % of a CPU; scan of {} entries: {} us CPU, {} us wall",
        100.0 * idle_share,
        engine["last_scan_entries"],
        engine["last_scan_cpu_us"],
        engine["last_scan_us"]
    );
    let ncpu = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    Ok(json!({
        "about": "stick-table replication between two instances: lag, throughput, sender CPU",
        "how": format!(
            "two instances in one process: A = the XDP program with its pinned stick table, its replication engine and peer link; B = a second pinned table with its engine and link, other server ids; TCP over 127.0.0.1 with the HMAC handshake. New clients = TCP SYNs run through A's program with BPF_PROG_TEST_RUN (the program inserts the entry). Burst: {} clients as fast as possible; paced: {} clients at {}/s. Lag sampled on every {}th client by a thread polling B's table (bpf lookups, ~1 ms apart). CPU from /proc/self/task/*/schedstat of A's threads. scan_interval {} ms (the engine checks the data plane's new-entry counters that often and scans the table when they moved, and at least every 5 s = refresh / 2).",
            sz.clients, sz.paced_clients, sz.paced_rate, SAMPLE_EVERY, SCAN_INTERVAL.as_millis()
        ),
        "commands": [],
        "versions": {},
        "cpus": Cpus {
            generator: None,
            subject: None,
            note: format!("the generating thread is pinned to CPU {}; both instances' threads and the watcher may run on all {} online CPUs, shared with each other", ctx.cpu, ncpu),
        }
        .json(),
        "figures": figures,
        "detail": {
            "clients": sz.clients,
            "created_per_s": round3(create_rate),
            "burst_wall_ms": round3(burst.wall_ns as f64 / 1e6),
            "burst_sender_cpu_ms": round3(burst.sender_cpu_ns as f64 / 1e6),
            "burst_receiver_cpu_ms": round3(burst.receiver_cpu_ns as f64 / 1e6),
            "paced_sender_cpu_ms": round3(paced.sender_cpu_ns as f64 / 1e6),
            "samples_burst": burst_lags.len(),
            "samples_paced": paced_lags.len(),
            "entries_checked_same_server_on_b": checked,
            "engine_a": engine,
            "status_a": status_a,
            "status_b": status_b,
        },
    }))
}
