//! `cargo xtask bench --only http`: the HTTP cookie proxy against HAProxy
//! 2.6, side by side in one run, on loopback: the same two backends (the
//! tests' small HTTP/1.1 server, in this process), the same load generator
//! (wrk, keep-alive), the same `cookie SERVER insert indirect nocache`
//! setup, small responses. Each proxy is measured in alternating trials;
//! reported: requests/s, latency p50/p99/p99.9 (wrk's own histogram, via a
//! Lua `done` hook), CPU seconds per 100k requests (the proxy process's
//! utime+stime from /proc), RSS after the run.
//!
//! Everything shares the machine's cores (wrk, both proxies' workers, the
//! backends): figures are for comparing the two proxies in the same run,
//! not absolutes.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context as _, bail};
use balancer_tests::{
    http::{Backend, free_port},
    proc::{Proc, wait_for},
};
use serde_json::{Value, json};

const CONNECTIONS: u32 = 32;
const LUA: &str = r#"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %f %d %d %d %d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50),
    latency:percentile(99), latency:percentile(99.9),
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
"#;

struct Trial {
    requests: u64,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    errors: u64,
    cpu_s_per_100k: f64,
    rss_kib: u64,
}

pub fn run(bin: &Path, quick: bool) -> anyhow::Result<Value> {
    let id = format!("blb-{}-bench-http", std::process::id());
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir)?;
    let result = measure(bin, quick, &dir, &id);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(Path::new(balancer_tests::lab::BPFFS).join(&id));
    result
}

fn measure(bin: &Path, quick: bool, dir: &Path, id: &str) -> anyhow::Result<Value> {
    let backends = [Backend::start("s0", 0)?, Backend::start("s1", 0)?];
    let (bal_port, hap_port) = (free_port()?, free_port()?);
    // balancer
    let servers: String = backends
        .iter()
        .map(|b| {
            format!(
                "[[backend.server]]\nname = \"{}\"\naddress = \"{}\"\ncookie = \"{}\"\n",
                b.name, b.addr, b.name
            )
        })
        .collect();
    let cfg = dir.join("balancer.toml");
    std::fs::write(
        &cfg,
        format!(
            "[dataplane]\ninterfaces = []\npin_dir = \"{}\"\n\n[admin]\nsocket = \"{}\"\n\n\
             [[frontend]]\nname = \"web\"\nmode = \"http\"\nbind = \"127.0.0.1:{bal_port}\"\n\
             default_backend = \"app\"\n\n[[backend]]\nname = \"app\"\nbalance = \"roundrobin\"\n\
             cookie = \"SERVER insert indirect nocache\"\n{servers}",
            Path::new(balancer_tests::lab::BPFFS).join(id).display(),
            dir.join("admin.sock").display()
        ),
    )?;
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn");
    let mut bal = Proc::spawn("balancer", cmd, dir)?;
    // HAProxy, equivalent: one process, as many threads as cores.
    let hcfg = dir.join("haproxy.cfg");
    let hservers: String = backends
        .iter()
        .map(|b| format!("  server {} {} cookie {}\n", b.name, b.addr, b.name))
        .collect();
    std::fs::write(
        &hcfg,
        format!(
            "global\n  maxconn 4096\n\ndefaults\n  mode http\n  timeout connect 5s\n  \
             timeout client 30s\n  timeout server 30s\n\nfrontend web\n  bind 127.0.0.1:{hap_port}\n  \
             default_backend app\n\nbackend app\n  balance roundrobin\n  \
             cookie SERVER insert indirect nocache\n{hservers}"
        ),
    )?;
    let mut hcmd = Command::new("haproxy");
    hcmd.args(["-db", "-f"]).arg(&hcfg);
    let mut hap = Proc::spawn("haproxy", hcmd, dir)?;
    let up = |port: u16| {
        wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    };
    if !up(bal_port) || bal.try_wait()?.is_some() {
        bail!("balancer did not start: {}", bal.output());
    }
    if !up(hap_port) || hap.try_wait()?.is_some() {
        bail!("haproxy did not start: {}", hap.output());
    }
    let lua = dir.join("report.lua");
    std::fs::write(&lua, LUA)?;
    let secs = if quick { 3 } else { 10 };
    let trials = if quick { 1 } else { 3 };
    let targets = [
        ("balancer", bal_port, bal.pid()),
        ("haproxy", hap_port, hap.pid()),
    ];
    let mut results: Vec<Vec<Trial>> = vec![Vec::new(), Vec::new()];
    for t in 0..trials {
        let order: [usize; 2] = if t % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (name, port, pid) = targets[i];
            // Warm up (connections, pools), then measure.
            wrk(&lua, port, 1)?;
            let cpu0 = cpu_seconds(pid)?;
            let r = wrk(&lua, port, secs)?;
            let cpu = cpu_seconds(pid)? - cpu0;
            let trial = Trial {
                cpu_s_per_100k: cpu / r.0 as f64 * 100_000.0,
                rss_kib: rss_kib(pid)?,
                requests: r.0,
                rps: r.0 as f64 / r.1,
                p50_us: r.2,
                p99_us: r.3,
                p999_us: r.4,
                errors: r.5,
            };
            println!(
                "  {name:<9} trial {t}: {:>9.0} req/s  p50 {:>6} us  p99 {:>6} us  p99.9 {:>6} us  \
                 {:.3} CPU s/100k req  RSS {} KiB  errors {}",
                trial.rps,
                trial.p50_us,
                trial.p99_us,
                trial.p999_us,
                trial.cpu_s_per_100k,
                trial.rss_kib,
                trial.errors
            );
            results[i].push(trial);
        }
    }
    let med = |v: &[Trial], f: fn(&Trial) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let summary: Vec<Value> = targets
        .iter()
        .zip(&results)
        .map(|((name, _, _), r)| {
            json!({
                "proxy": name,
                "requests_per_s": med(r, |t| t.rps),
                "p50_us": med(r, |t| t.p50_us as f64),
                "p99_us": med(r, |t| t.p99_us as f64),
                "p999_us": med(r, |t| t.p999_us as f64),
                "cpu_s_per_100k": med(r, |t| t.cpu_s_per_100k),
                "rss_kib": med(r, |t| t.rss_kib as f64),
                "errors": r.iter().map(|t| t.errors).sum::<u64>(),
                "requests": r.iter().map(|t| t.requests).sum::<u64>(),
            })
        })
        .collect();
    let (b, h) = (&summary[0], &summary[1]);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let rps_ratio = f(b, "requests_per_s") / f(h, "requests_per_s");
    let p99_ratio = f(b, "p99_us") / f(h, "p99_us");
    let cpu_ratio = f(b, "cpu_s_per_100k") / f(h, "cpu_s_per_100k");
    let verdict = |ok: bool| if ok { "meets" } else { "misses" };
    println!(
        "http: medians of {trials} trial(s) of {secs} s, wrk {CONNECTIONS} connections, \
         cookie SERVER=s0 on every request:\n  \
         balancer/haproxy requests/s {rps_ratio:.2}x (target >= 1: {}), p99 {p99_ratio:.2}x \
         (target <= 1: {}), CPU per request {cpu_ratio:.2}x (target <= 1.2: {})",
        verdict(rps_ratio >= 1.0),
        verdict(p99_ratio <= 1.0),
        verdict(cpu_ratio <= 1.2)
    );
    drop(bal);
    drop(hap);
    Ok(json!({
        "sections": [{
            "name": "http",
            "how": format!("wrk -t1 -c{CONNECTIONS} -d{secs}s with 'Cookie: SERVER=s0' against each \
                            proxy in turn (alternating), same two loopback backends; CPU from \
                            /proc/PID/stat utime+stime of the proxy process"),
            "proxies": summary,
            "ratios": {"requests_per_s": rps_ratio, "p99": p99_ratio, "cpu_per_request": cpu_ratio},
            "targets": {"requests_per_s": verdict(rps_ratio >= 1.0), "p99": verdict(p99_ratio <= 1.0),
                        "cpu_per_request": verdict(cpu_ratio <= 1.2)},
        }]
    }))
}

/// (requests, seconds, p50 us, p99 us, p99.9 us, errors) of one wrk run.
fn wrk(lua: &Path, port: u16, secs: u32) -> anyhow::Result<(u64, f64, u64, u64, u64, u64)> {
    let url = format!("http://127.0.0.1:{port}/");
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{CONNECTIONS}"), &format!("-d{secs}s")])
        .args(["-H", "Cookie: SERVER=s0", "-s"])
        .arg(lua)
        .arg(&url)
        .output()
        .context("running wrk (cargo xtask setup installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| format!("wrk: no result in {text}"))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() != 6 {
        bail!("wrk: bad result line {line:?}");
    }
    Ok((
        v[0] as u64,
        v[1],
        v[2] as u64,
        v[3] as u64,
        v[4] as u64,
        v[5] as u64,
    ))
}

fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")
}
