//! `cargo xtask bench --only control-plane`: the daemon in a namespace lab
//! (release build), measured from outside:
//!
//! - state change: round trip of `PUT /v1/backends/state` on the admin
//!   socket, toggling a server down and up. The daemon answers after it has
//!   written the backend slot and the Maglev table, so the round trip bounds
//!   the time until the next packet sees the new state (target < 10 ms).
//! - failure to redispatch: a checked server's HTTP server is killed; time
//!   until the daemon reports it down (its clients are redispatched from the
//!   same map write). Target: `inter * fall` plus one interval.
//! - memory: the daemon's RSS idle, and its peak after walking a stick table
//!   filled to 1,000,000 entries by `balancer gen`; the kernel memory
//!   (memlock) of every map the daemon holds, from its fdinfo.

use std::{
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use balancer_tests::{
    lab::{Lab, LabSpec},
    proc::wait_for,
};
use serde_json::{Value, json};

use crate::report::{Cpus, Figure, Target};

const VIP: &str = "198.18.2.100";
const PORT: u16 = 80;
const INTER_MS: u64 = 500;
const FALL: u32 = 2;
const RISE: u32 = 2;
const TABLE: u64 = 1_000_000;

pub fn run(bin: &Path, quick: bool) -> anyhow::Result<Value> {
    // SAFETY: single-threaded here; the lab library reads it.
    unsafe { std::env::set_var("BALANCER_BIN", bin) };
    balancer_tests::lab::sweep()?;
    let mut lab = Lab::new(LabSpec {
        clients: 1,
        backends: 3,
    })?;
    let result = measure(&lab, bin, quick);
    lab.teardown().context("tearing the lab down")?;
    result
}

fn measure(lab: &Lab, bin: &Path, quick: bool) -> anyhow::Result<Value> {
    lab.hold_vips_on_backends(&[VIP.parse()?])?;
    let mut http = lab.start_http_backends(PORT)?;
    let servers: String = lab
        .backends
        .iter()
        .enumerate()
        .map(|(j, s)| {
            format!(
                "[[backend.server]]\nname = \"s{j}\"\naddress = \"{}\"\ncheck = true\n\
                 inter = \"{INTER_MS}ms\"\nrise = {RISE}\nfall = {FALL}\n",
                s.ipv4
            )
        })
        .collect();
    // insert_cap = 0: the memory figure fills the table with SYNs at
    // 150 kpps, faster than the default flood guard lets in.
    let config = lab.write_service_config(
        "bench.toml",
        "insert_cap = 0\n",
        &format!(
            "[[frontend]]\nname = \"web\"\nbind = \"{VIP}:{PORT}\"\ndefault_backend = \"web\"\n\n\
             [[backend]]\nname = \"web\"\ncheck_type = \"http\"\n\
             stick_table = {{ size = \"{TABLE}\", expire = \"30m\" }}\n{servers}"
        ),
    )?;
    let daemon = lab.start_balancer(&config)?;
    let pid = daemon.pid();
    let sock = lab.admin_socket();
    // Let the first checks pass.
    std::thread::sleep(Duration::from_millis(INTER_MS * u64::from(RISE) + 200));
    let rss_idle = rss_kib(pid)?;
    let anon_idle = anon_kib(pid)?;

    // 1. State changes.
    let rounds = if quick { 20 } else { 200 };
    let mut ms = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let state = if i % 2 == 0 { "down" } else { "up" };
        let t = Instant::now();
        let answer = request(
            &sock,
            "PUT",
            "/v1/backends/state",
            &json!({"server": "s1", "state": state}).to_string(),
        )?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if !answer.starts_with("HTTP/1.1 200") {
            bail!("state change refused: {answer}");
        }
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    let (median, p99, max) = (pct(0.5), pct(0.99), ms[ms.len() - 1]);
    println!(
        "state change (PUT /v1/backends/state, answered after the maps are written), {rounds} \
         changes: median {median:.2} ms, p99 {p99:.2} ms, max {max:.2} ms (target < 10 ms: {})",
        if p99 < 10.0 { "meets" } else { "misses" }
    );

    // 2. A real failure: s2's HTTP server dies.
    let deadline = Duration::from_millis(INTER_MS * u64::from(FALL) + INTER_MS);
    let killed = Instant::now();
    http[2].stop()?;
    let down = wait_for(Duration::from_secs(10), || {
        request(&sock, "GET", "/v1/backends", "")
            .ok()
            .and_then(|a| a.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|s| s["server"] == "s2")
                    .map(|s| s["state"] == "down")
            })
            .unwrap_or(false)
    });
    let detect = killed.elapsed();
    if !down {
        bail!("s2 was not marked down within 10 s");
    }
    println!(
        "failure to redispatch (inter {INTER_MS} ms, fall {FALL}): {:.0} ms \
         (target inter*fall + inter = {} ms: {})",
        detect.as_secs_f64() * 1000.0,
        deadline.as_millis(),
        if detect <= deadline {
            "meets"
        } else {
            "misses"
        }
    );

    // 3. Memory with a full table.
    let fill = if quick { 100_000 } else { TABLE };
    // The generator transmits XDP frames: the client's bridge port must run XDP.
    lab.accept_xdp_frames_from(&lab.clients[0])?;
    let mut gen_cmd = lab.clients[0].command(bin);
    gen_cmd
        .args([
            "gen",
            "--interface",
            "eth0",
            "--dst",
            &format!("{VIP}:{PORT}"),
        ])
        .args([
            "--dst-mac",
            &lab.balancer.mac_string(),
            "--src",
            "198.19.0.0",
        ])
        .args(["--src-count", &fill.to_string(), "--proto", "tcp-syn"])
        // Paced: a burst at full speed overruns the veth/bridge path.
        .args([
            "--count",
            &(fill + fill / 5).to_string(),
            "--rate",
            "150000",
        ]);
    let gen_command = crate::report::command_line(&gen_cmd);
    let generated = gen_cmd.output()?;
    if !generated.status.success() {
        bail!("gen: {}", String::from_utf8_lossy(&generated.stderr));
    }
    println!("gen: {}", String::from_utf8_lossy(&generated.stdout).trim());
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let count: u64 = lab.cli(&["table", "count"])?.trim().parse()?;
    let walk = t.elapsed();
    let rss_after = rss_kib(pid)?;
    let anon_after = anon_kib(pid)?;
    let hwm = hwm_kib(pid)?;
    let memlock = map_memlock(pid)?;
    println!(
        "memory: daemon idle RSS {rss_idle} KiB (own, RssAnon: {anon_idle} KiB; the rest is the \
         mmap'ed Maglev map); after walking {count} stick entries ({:.2} s): RSS {rss_after} KiB \
         (RssAnon {anon_after} KiB), peak {hwm} KiB; kernel memory (memlock) of its maps {} KiB",
        walk.as_secs_f64(),
        memlock / 1024
    );
    drop(daemon);
    let ms_target = |v: f64, limit: f64| Target::below(v, limit, "ms");
    let deadline_ms = deadline.as_millis() as f64;
    let detect_ms = detect.as_secs_f64() * 1000.0;
    let figures = [
        Figure::new(
            "state-change-median",
            format!(
                "state change: PUT /v1/backends/state round trip, answered after the backend \
                 slot and the Maglev table are written; median of {rounds}"
            ),
            "ms",
            median,
        ),
        Figure::new(
            "state-change-p99",
            format!("state change round trip, p99 of {rounds}"),
            "ms",
            p99,
        )
        .target(ms_target(p99, 10.0)),
        Figure::new(
            "state-change-max",
            format!("state change round trip, max of {rounds}"),
            "ms",
            max,
        ),
        Figure::new(
            "failure-to-redispatch",
            format!(
                "a checked server's HTTP server killed to the daemon reporting it down (its \
                 clients redispatched by the same map write); inter {INTER_MS} ms, fall {FALL}"
            ),
            "ms",
            detect_ms,
        )
        .target(Target {
            text: format!("<= inter*fall + inter = {deadline_ms} ms"),
            met: detect <= deadline,
        }),
        Figure::new(
            "rss-idle",
            "daemon resident memory, idle (includes the mmap'ed Maglev map, kernel memory)",
            "bytes",
            rss_idle as f64 * 1024.0,
        ),
        Figure::new(
            "rss-anon-idle",
            "daemon's own memory (RssAnon), idle",
            "bytes",
            anon_idle as f64 * 1024.0,
        ),
        Figure::new(
            "rss-anon-after-walk",
            format!("daemon's own memory (RssAnon) after walking {count} stick entries"),
            "bytes",
            anon_after as f64 * 1024.0,
        ),
        Figure::new(
            "rss-peak",
            format!("daemon peak resident memory (VmHWM) after walking {count} stick entries"),
            "bytes",
            hwm as f64 * 1024.0,
        ),
        Figure::new(
            "table-walk",
            format!("`balancer table count` walking {count} stick entries"),
            "s",
            walk.as_secs_f64(),
        ),
        Figure::new(
            "maps-memlock",
            format!(
                "kernel memory (memlock) of every map the daemon holds, {TABLE}-entry stick table"
            ),
            "bytes",
            memlock as f64,
        ),
    ];
    Ok(json!({
        "sections": [{
            "name": "control-plane",
            "how": format!(
                "the release daemon in a namespace lab with 3 HTTP-checked servers (inter \
                 {INTER_MS} ms, rise {RISE}, fall {FALL}), measured from outside: {rounds} state \
                 changes on the admin socket toggling s1 down/up; s2's HTTP server killed and \
                 GET /v1/backends polled until s2 is down; memory from /proc/PID/status and \
                 the map fds' fdinfo, the stick table filled by `balancer gen` SYNs from {fill} \
                 fresh sources and walked by `balancer table count`"
            ),
            "commands": [
                gen_command,
                format!("{} --socket {} table count", bin.display(), sock.display()),
            ],
            "versions": {},
            "cpus": Cpus {
                generator: None,
                subject: None,
                note: "not pinned: the daemon, its checks and the admin client share the \
                       machine's CPUs (these are latencies of single operations, not a load test)"
                    .into(),
            }
            .json(),
            "figures": figures.iter().map(Figure::json).collect::<Vec<_>>(),
            "state_change_ms": {"rounds": rounds, "median": median, "p99": p99, "max": max},
            "memory": {"rss_idle_kib": rss_idle, "rss_anon_idle_kib": anon_idle,
                       "rss_anon_after_walk_kib": anon_after, "stick_entries": count,
                       "sources_sent": fill, "table_walk_s": walk.as_secs_f64(),
                       "rss_after_walk_kib": rss_after, "rss_peak_kib": hwm,
                       "maps_memlock_bytes": memlock},
        }]
    }))
}

/// One HTTP/1.1 request on the admin socket; the whole answer.
fn request(sock: &Path, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{key} in /proc/{pid}/status"))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// The process's own memory: VmRSS without the shared mappings (the
/// mmap'ed Maglev map, which is kernel memory counted in memlock).
fn anon_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "RssAnon:")
}

fn hwm_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// Sum of `memlock:` over the process's BPF map fds.
fn map_memlock(pid: u32) -> anyhow::Result<u64> {
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))?.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_owned())
        };
        if let (Some(_), Some(id), Some(m)) =
            (field("map_type:"), field("map_id:"), field("memlock:"))
            && seen.insert(id)
        {
            total += m.parse::<u64>().unwrap_or(0);
        }
    }
    Ok(total)
}
