//! `cargo xtask bench --only http-cookie`: the HTTP cookie proxy against
//! HAProxy, side by side in one run, on loopback: the same two origin
//! servers (`balancer-bench --origin`: one single-threaded keep-alive
//! server per name, release-built, cheap enough that the proxy under test
//! and not the load generator's CPU limits the rate), the same load
//! generator (wrk, keep-alive), the same `cookie SERVER insert indirect
//! nocache` setup, small responses. Each proxy is measured in alternating
//! trials (the machine's speed drifts; pairs taken back to back see the
//! same drift); reported: requests/s, latency p50/p99/p99.9 (wrk's own
//! histogram, via a Lua `done` hook), CPU seconds per 100k requests (the
//! proxy process's utime+stime from /proc), RSS after the run; every figure
//! with HAProxy's as its peer. The origins' request counts are reported too
//! (every request carries `SERVER=s0`, so s1 should see none), and a
//! request an origin refused fails the section.
//!
//! Then a second pair of the same proxies with `stick-table type ip size 1m
//! expire 30m` + `stick on src` (balancer: `stick_table` + `stick = "on
//! src"`) instead of the cookie, under the same wrk load without a cookie
//! (figures `stick-*`): each request is a lookup and a refresh of its
//! client's entry (wrk's connections all come from 127.0.0.1: one entry).
//!
//! CPUs: with two or more CPUs, wrk and the origins run on the first CPU
//! this process may use and the proxy under test (balancer and HAProxy
//! alike) on the last one, through `taskset`; with one CPU they share it
//! (and the report says so). Both proxies size themselves from their CPU
//! affinity: balancer runs one HTTP worker per CPU it may use
//! (`available_parallelism`), HAProxy one thread per CPU it is bound to; the
//! report records the counts they really ran with.
//!
//! A peer that cannot be started (HAProxy missing, failing to bind) or that
//! answers with errors fails the section: there is no ratio against nothing.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use balancer_tests::{
    http::free_port,
    proc::{Proc, wait_for},
};
use serde_json::{Value, json};

use crate::report::{Cpus, Figure, Target, allowed_cpus, command_line, tool_version};

/// wrk's connections: the usual load, where the proxy's per-request cost
/// counts, and many clients (issue 16: 1,000 keep-alive connections),
/// where its cost per connection does too.
const CONNECTIONS: u32 = 32;
const MANY: u32 = 1000;
const LUA: &str = r#"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %f %d %d %d %d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50),
    latency:percentile(99), latency:percentile(99.9),
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
"#;
/// More failed requests than this share fails the section.
const MAX_ERROR_SHARE: f64 = 0.01;

struct Trial {
    requests: u64,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    errors: u64,
    cpu_s_per_100k: f64,
    rss_kib: u64,
    /// Share of the trial the generator's and the subject's CPUs were busy.
    generator_busy: f64,
    subject_busy: f64,
}

/// Busy and total jiffies of `cpu` so far, from /proc/stat (busy: user,
/// nice, system, irq, softirq, steal; total adds idle and iowait).
fn cpu_jiffies(cpu: usize) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let tag = format!("cpu{cpu} ");
    let line = stat
        .lines()
        .find(|l| l.starts_with(&tag))
        .with_context(|| format!("no {tag}line in /proc/stat"))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Ok((busy, busy + at(3) + at(4)))
}

/// Busy share of `cpu` between two [`cpu_jiffies`] readings.
fn busy_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return f64::NAN;
    }
    after.0.saturating_sub(before.0) as f64 / total as f64
}

/// Where the load generator and the proxies run.
struct Placement {
    generator: usize,
    subject: usize,
}

impl Placement {
    fn new() -> anyhow::Result<Placement> {
        let all = allowed_cpus()?;
        let (first, last) = (
            *all.first().context("no CPU allowed")?,
            *all.last().context("no CPU allowed")?,
        );
        Ok(Placement {
            generator: first,
            subject: last,
        })
    }

    fn taskset(cpu: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("taskset");
        c.args(["-c", &cpu.to_string()]).arg(program);
        c
    }
}

pub fn run(bin: &Path, bench_bin: &Path, quick: bool) -> anyhow::Result<Value> {
    let id = format!("blb-{}-bench-http", std::process::id());
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir)?;
    let result = measure(bin, bench_bin, quick, &dir, &id);
    let _ = std::fs::remove_dir_all(&dir);
    for pins in [id.clone(), format!("{id}-stick")] {
        let _ = std::fs::remove_dir_all(Path::new(balancer_tests::lab::BPFFS).join(pins));
    }
    result
}

fn measure(
    bin: &Path,
    bench_bin: &Path,
    quick: bool,
    dir: &Path,
    id: &str,
) -> anyhow::Result<Value> {
    // The peer and the load generator must exist before anything runs.
    let versions = json!({
        "haproxy": tool_version("haproxy", &["-v"])
            .context("HAProxy, the peer of this section, is not available")?,
        "wrk": tool_version("wrk", &["-v"]).context("wrk, the load generator, is not available")?,
        "taskset": tool_version("taskset", &["--version"])?,
    });
    let mut commands = Vec::new();
    let place = Placement::new()?;
    // The origins run with the load generator, away from the proxy under test.
    let mut ocmd = Placement::taskset(place.generator, bench_bin);
    ocmd.args(["--origin", "s0", "--origin", "s1"]);
    commands.push(command_line(&ocmd));
    let mut origins = Origins::start(ocmd)?;
    let backends = origins.servers.clone();
    let Proxies {
        mut bal,
        mut hap,
        bal_port,
        hap_port,
        bal_cfg,
        hap_cfg,
    } = start_proxies(
        bin,
        &place,
        dir,
        id,
        &backends,
        Persistence::Cookie,
        &mut commands,
    )?;
    // Logged right after the listeners are bound: it may lag a little.
    let logged_workers = |p: &Proc| {
        p.output().lines().find_map(|l| {
            let (_, rest) = l.split_once(" worker threads)")?.0.rsplit_once('(')?;
            rest.trim().parse::<u64>().ok()
        })
    };
    wait_for(Duration::from_secs(10), || logged_workers(&bal).is_some());
    let bal_workers = logged_workers(&bal).context("balancer did not log its HTTP worker count")?;
    let hap_threads = threads(hap.pid())?;

    let lua = dir.join("report.lua");
    std::fs::write(&lua, LUA)?;
    // Many short trials, the two proxies in turn (ABBA...): back-to-back
    // pairs on this kind of shared VM differ by up to 20% either way, from
    // the machine, so the medians need many of them.
    let secs = 3;
    let trials = if quick { 1 } else { 12 };
    let targets = [
        ("balancer", bal_port, bal.pid()),
        ("haproxy", hap_port, hap.pid()),
    ];
    for conns in [CONNECTIONS, MANY] {
        let load = Load {
            conns,
            cookie: true,
        };
        for (_, port, _) in targets {
            for s in [1, secs] {
                commands.push(command_line(&wrk_command(&place, &lua, port, load, s)));
            }
        }
    }
    let load = |conns| Load {
        conns,
        cookie: true,
    };
    let results = run_trials(&place, &lua, &targets, load(CONNECTIONS), trials, secs)?;
    // Fewer pairs with many connections: the ratio there is far from 1.
    let many_trials = if quick { 1 } else { 6 };
    let many = run_trials(&place, &lua, &targets, load(MANY), many_trials, secs)?;
    for (p, name) in [(&mut bal, "balancer"), (&mut hap, "haproxy")] {
        if let Some(st) = p.try_wait()? {
            bail!("{name} exited during the run ({st}): {}", p.output());
        }
    }
    drop(bal);
    drop(hap);
    // Stick on src: the same two proxies' configurations with HAProxy's
    // `stick on src` instead of the cookie, requests without a cookie.
    let stick_id = format!("{id}-stick");
    let stick = start_proxies(
        bin,
        &place,
        dir,
        &stick_id,
        &backends,
        Persistence::StickOnSrc,
        &mut commands,
    )?;
    let stick_targets = [
        ("balancer", stick.bal_port, stick.bal.pid()),
        ("haproxy", stick.hap_port, stick.hap.pid()),
    ];
    let stick_load = Load {
        conns: CONNECTIONS,
        cookie: false,
    };
    for (_, port, _) in stick_targets {
        commands.push(command_line(&wrk_command(
            &place, &lua, port, stick_load, secs,
        )));
    }
    let stick_results = run_trials(&place, &lua, &stick_targets, stick_load, trials, secs)?;
    let Proxies {
        bal: mut sbal,
        hap: mut shap,
        bal_cfg: stick_bal_cfg,
        hap_cfg: stick_hap_cfg,
        ..
    } = stick;
    for (p, name) in [(&mut sbal, "balancer"), (&mut shap, "haproxy")] {
        if let Some(st) = p.try_wait()? {
            bail!(
                "{name} (stick on src) exited during the run ({st}): {}",
                p.output()
            );
        }
    }
    drop(sbal);
    drop(shap);
    let counts = origins.finish()?;
    let refused: u64 = counts.iter().map(|c| c.refused).sum();
    if refused > 0 {
        bail!("the origin servers refused {refused} request(s): no figure from this run");
    }
    let origin_requests: serde_json::Map<String, Value> = counts
        .iter()
        .map(|c| (c.name.clone(), json!(c.answered)))
        .collect();

    let names = [targets[0].0, targets[1].0];
    let summary = summarize(names, &results);
    let pairs = pairs_of(&results);
    let many_summary = summarize(names, &many);
    let many_pairs = pairs_of(&many);
    let stick_summary = summarize(names, &stick_results);
    let stick_pairs = pairs_of(&stick_results);
    let peer = versions["haproxy"]
        .as_str()
        .and_then(|v| v.split_whitespace().take(3).nth(2))
        .map_or_else(
            || "HAProxy".to_owned(),
            |v| format!("HAProxy {}", v.split('-').next().unwrap_or(v)),
        );
    let (b, h) = (&summary[0], &summary[1]);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let pair = |id: &'static str, what: &str, unit: &'static str, key: &str, scale: f64| {
        pair_figure(
            &summary,
            &peer,
            id,
            format!("balancer {what}"),
            unit,
            key,
            scale,
        )
    };
    let rps = pair(
        "requests-per-s",
        "requests/s",
        "requests/s",
        "requests_per_s",
        1.0,
    );
    let rps_ratio = rps.ratio().unwrap_or(f64::NAN);
    let p99 = pair("latency-p99", "latency p99", "us", "p99_us", 1.0);
    let p99_ratio = p99.ratio().unwrap_or(f64::NAN);
    let cpu = pair(
        "cpu-per-100k-requests",
        "CPU time (user+system) per 100,000 requests",
        "s",
        "cpu_s_per_100k",
        1.0,
    );
    let cpu_ratio = cpu.ratio().unwrap_or(f64::NAN);
    let mut figures = vec![
        rps.target(Target::ratio_at_least(rps_ratio, 1.0, &peer)),
        pair("latency-p50", "latency p50", "us", "p50_us", 1.0),
        p99.target(Target::ratio_at_most(p99_ratio, 1.0, &peer)),
        pair("latency-p99-9", "latency p99.9", "us", "p999_us", 1.0),
        cpu.target(Target::ratio_at_most(cpu_ratio, 1.2, &peer)),
        pair(
            "rss",
            "resident memory after the run (includes the mmap'ed Maglev map, kernel memory)",
            "bytes",
            "rss_kib",
            1024.0,
        ),
        Figure::new(
            "requests-per-s-pairs",
            format!(
                "balancer/HAProxy requests/s, median of the {trials} per-pair ratios (each pair \
                 back to back; balancer ahead in {} of them)",
                pairs["requests_per_s_pairs_at_least_1"]
            ),
            "x",
            pairs["requests_per_s_median"].as_f64().unwrap_or(f64::NAN),
        ),
        Figure::new(
            "latency-p99-pairs",
            format!(
                "balancer/HAProxy latency p99, median of the {trials} per-pair ratios (balancer \
                 lower or equal in {} of them)",
                pairs["p99_pairs_at_most_1"]
            ),
            "x",
            pairs["p99_median"].as_f64().unwrap_or(f64::NAN),
        ),
        Figure::new(
            "proxy-cpu-busy",
            "busy share of the proxy's CPU during balancer's trials (median)",
            "%",
            f(b, "proxy_cpu_busy") * 100.0,
        )
        .peer(format!("{peer}'s trials"), f(h, "proxy_cpu_busy") * 100.0),
        Figure::new(
            "generator-cpu-busy",
            "busy share of the load generator's CPU (wrk, origins) during balancer's trials \
             (median)",
            "%",
            f(b, "generator_cpu_busy") * 100.0,
        )
        .peer(
            format!("{peer}'s trials"),
            f(h, "generator_cpu_busy") * 100.0,
        ),
    ];
    // Many connections: the same figures, ids suffixed.
    let many_pair = |id: &'static str, what: &str, unit: &'static str, key: &str, scale: f64| {
        let what = format!("balancer {what}, {MANY} connections");
        pair_figure(&many_summary, &peer, id, what, unit, key, scale)
    };
    let many_rps = many_pair(
        "requests-per-s-1000-connections",
        "requests/s",
        "requests/s",
        "requests_per_s",
        1.0,
    );
    let many_rps_ratio = many_rps.ratio().unwrap_or(f64::NAN);
    let many_p99 = many_pair(
        "latency-p99-1000-connections",
        "latency p99",
        "us",
        "p99_us",
        1.0,
    );
    let many_p99_ratio = many_p99.ratio().unwrap_or(f64::NAN);
    figures.extend([
        many_rps.target(Target::ratio_at_least(many_rps_ratio, 1.0, &peer)),
        many_p99.target(Target::ratio_at_most(many_p99_ratio, 1.0, &peer)),
        many_pair(
            "cpu-per-100k-requests-1000-connections",
            "CPU time (user+system) per 100,000 requests",
            "s",
            "cpu_s_per_100k",
            1.0,
        ),
        many_pair(
            "rss-1000-connections",
            "resident memory after the run",
            "bytes",
            "rss_kib",
            1024.0,
        ),
    ]);
    // Stick on src: the same figures, ids prefixed.
    let stick_pair = |id: &'static str, what: &str, unit: &'static str, key: &str, scale: f64| {
        let what = format!("balancer {what}, stick on src (no cookie)");
        pair_figure(&stick_summary, &peer, id, what, unit, key, scale)
    };
    let stick_rps = stick_pair(
        "stick-requests-per-s",
        "requests/s",
        "requests/s",
        "requests_per_s",
        1.0,
    );
    let stick_rps_ratio = stick_rps.ratio().unwrap_or(f64::NAN);
    let stick_p99 = stick_pair("stick-latency-p99", "latency p99", "us", "p99_us", 1.0);
    let stick_p99_ratio = stick_p99.ratio().unwrap_or(f64::NAN);
    figures.extend([
        stick_rps.target(Target::ratio_at_least(stick_rps_ratio, 1.0, &peer)),
        stick_p99.target(Target::ratio_at_most(stick_p99_ratio, 1.0, &peer)),
        stick_pair(
            "stick-cpu-per-100k-requests",
            "CPU time (user+system) per 100,000 requests",
            "s",
            "cpu_s_per_100k",
            1.0,
        ),
        Figure::new(
            "stick-requests-per-s-pairs",
            format!(
                "balancer/HAProxy requests/s with stick on src, median of the {trials} per-pair \
                 ratios (balancer ahead in {} of them)",
                stick_pairs["requests_per_s_pairs_at_least_1"]
            ),
            "x",
            stick_pairs["requests_per_s_median"]
                .as_f64()
                .unwrap_or(f64::NAN),
        ),
    ]);
    let verdict = |ok: bool| if ok { "meets" } else { "misses" };
    println!(
        "http-cookie: medians of {trials} trial(s) of {secs} s, wrk {CONNECTIONS} connections, \
         cookie SERVER=s0 on every request:\n  \
         balancer/haproxy requests/s {rps_ratio:.2}x (target >= 1: {}), p99 {p99_ratio:.2}x \
         (target <= 1: {}), CPU per request {cpu_ratio:.2}x (target <= 1.2: {})",
        verdict(rps_ratio >= 1.0),
        verdict(p99_ratio <= 1.0),
        verdict(cpu_ratio <= 1.2)
    );
    println!(
        "  pair by pair (balancer/haproxy, {trials} pairs): requests/s median {:.2}x, >= 1 in {}; \
         p99 median {:.2}x, <= 1 in {}; CPUs busy (medians): generator {:.0}% / {:.0}%, proxy \
         {:.0}% / {:.0}% (balancer / haproxy runs)",
        pairs["requests_per_s_median"].as_f64().unwrap_or(f64::NAN),
        pairs["requests_per_s_pairs_at_least_1"],
        pairs["p99_median"].as_f64().unwrap_or(f64::NAN),
        pairs["p99_pairs_at_most_1"],
        f(b, "generator_cpu_busy") * 100.0,
        f(h, "generator_cpu_busy") * 100.0,
        f(b, "proxy_cpu_busy") * 100.0,
        f(h, "proxy_cpu_busy") * 100.0,
    );
    println!(
        "  {MANY} connections, {many_trials} pair(s): requests/s {many_rps_ratio:.2}x (target >= 1: \
         {}), p99 {many_p99_ratio:.2}x (target <= 1: {}); pair by pair: requests/s median \
         {:.2}x, p99 median {:.2}x",
        verdict(many_rps_ratio >= 1.0),
        verdict(many_p99_ratio <= 1.0),
        many_pairs["requests_per_s_median"]
            .as_f64()
            .unwrap_or(f64::NAN),
        many_pairs["p99_median"].as_f64().unwrap_or(f64::NAN),
    );
    println!(
        "  stick on src, {trials} pair(s), no cookie: requests/s {stick_rps_ratio:.2}x (target >= 1: \
         {}), p99 {stick_p99_ratio:.2}x (target <= 1: {}); pair by pair: requests/s median {:.2}x, \
         p99 median {:.2}x",
        verdict(stick_rps_ratio >= 1.0),
        verdict(stick_p99_ratio <= 1.0),
        stick_pairs["requests_per_s_median"]
            .as_f64()
            .unwrap_or(f64::NAN),
        stick_pairs["p99_median"].as_f64().unwrap_or(f64::NAN),
    );
    let shared = place.generator == place.subject;
    let cpus = Cpus {
        generator: Some(vec![place.generator]),
        subject: Some(vec![place.subject]),
        note: format!(
            "{}; balancer ran {bal_workers} HTTP worker(s) (one per CPU it may use), HAProxy \
             {hap_threads} thread(s) (one per CPU it is bound to)",
            if shared {
                format!(
                    "one CPU only: wrk, the origins and the proxy under test share CPU {}",
                    place.subject
                )
            } else {
                format!(
                    "wrk and the two origin servers (balancer-bench --origin) on CPU {}, the proxy under test \
                     on CPU {} (taskset); other work on the machine is not excluded",
                    place.generator, place.subject
                )
            }
        ),
    };
    Ok(json!({
        "sections": [{
            "name": "http-cookie",
            "how": format!("wrk -t1 -c{CONNECTIONS}, one 1 s warm-up per proxy, then {trials} \
                            pair(s) of {secs} s trials, the two proxies in turn (ABBA...); then \
                            the same with -c{MANY} ({many_trials} pairs; figures with ids ending \
                            -1000-connections); with \
                            'Cookie: SERVER=s0'; then a second pair of proxies with \
                            'stick-table type ip size 1m expire 30m' + 'stick on src' instead of \
                            the cookie, requests without a cookie, -c{CONNECTIONS} ({trials} \
                            pairs; figures with ids starting stick-; every request comes from \
                            127.0.0.1, so each is a lookup and a refresh of one entry); figures: each proxy's medians; 'pairs': each \
                            trial's ratio to the other proxy's trial of its pair; same two loopback \
                            origin servers answering their name; CPU from /proc/PID/stat \
                            utime+stime of the proxy process; CPU busy shares from /proc/stat; \
                            RSS from /proc/PID/status after each trial"),
            "commands": commands,
            "versions": versions,
            "cpus": cpus.json(),
            "figures": figures.iter().map(Figure::json).collect::<Vec<_>>(),
            "proxies": summary,
            "pairs": pairs,
            "many_connections": {"connections": MANY, "proxies": many_summary, "pairs": many_pairs},
            "stick_on_src": {
                "connections": CONNECTIONS,
                "proxies": stick_summary,
                "pairs": stick_pairs,
                "balancer_config": stick_bal_cfg,
                "haproxy_config": stick_hap_cfg,
            },
            "workers": {"balancer_http_workers": bal_workers, "haproxy_threads": hap_threads},
            "origin_requests": origin_requests,
            "balancer_config": bal_cfg,
            "haproxy_config": hap_cfg,
        }]
    }))
}

/// How the two proxies keep a user on a server.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Persistence {
    /// `cookie SERVER insert indirect nocache`.
    Cookie,
    /// `stick-table type ip size 1m expire 30m` + `stick on src`.
    StickOnSrc,
}

/// balancer and HAProxy with the same settings, both on the subject's CPU.
struct Proxies {
    bal: Proc,
    hap: Proc,
    bal_port: u16,
    hap_port: u16,
    bal_cfg: String,
    hap_cfg: String,
}

fn start_proxies(
    bin: &Path,
    place: &Placement,
    dir: &Path,
    id: &str,
    backends: &[Server],
    persistence: Persistence,
    commands: &mut Vec<String>,
) -> anyhow::Result<Proxies> {
    let (bal_port, hap_port) = (free_port()?, free_port()?);
    let tag = match persistence {
        Persistence::Cookie => "",
        Persistence::StickOnSrc => "-stick",
    };

    // balancer
    let cookie = persistence == Persistence::Cookie;
    let servers: String = backends
        .iter()
        .map(|b| {
            let value = if cookie {
                format!("cookie = \"{}\"\n", b.name)
            } else {
                String::new()
            };
            format!(
                "[[backend.server]]\nname = \"{}\"\naddress = \"{}\"\n{value}",
                b.name, b.addr
            )
        })
        .collect();
    let keys = match persistence {
        Persistence::Cookie => "cookie = \"SERVER insert indirect nocache\"\n",
        Persistence::StickOnSrc => {
            "stick_table = { type = \"ip\", size = \"1m\", expire = \"30m\" }\nstick = \"on src\"\n"
        }
    };
    let bal_cfg = format!(
        "[dataplane]\ninterfaces = []\npin_dir = \"{}\"\n\n[admin]\nsocket = \"{}\"\n\n\
         [[frontend]]\nname = \"web\"\nmode = \"http\"\nbind = \"127.0.0.1:{bal_port}\"\n\
         default_backend = \"app\"\n\n[[backend]]\nname = \"app\"\nbalance = \"roundrobin\"\n\
         {keys}{servers}",
        Path::new(balancer_tests::lab::BPFFS).join(id).display(),
        dir.join(format!("admin{tag}.sock")).display()
    );
    let cfg = dir.join(format!("balancer{tag}.toml"));
    std::fs::write(&cfg, &bal_cfg)?;
    let mut cmd = Placement::taskset(place.subject, bin);
    cmd.args(["run", "--config"])
        .arg(&cfg)
        // The daemon logs its HTTP worker count at info.
        .env("RUST_LOG", "warn,balancer::daemon=info");
    commands.push(format!(
        "RUST_LOG=warn,balancer::daemon=info {}",
        command_line(&cmd)
    ));
    let mut bal = Proc::spawn("balancer", cmd, dir)?;

    // HAProxy, equivalent: one process, one thread per CPU it is bound to;
    // `option forwardfor` because balancer always appends X-Forwarded-For.
    let hservers: String = backends
        .iter()
        .map(|b| match persistence {
            Persistence::Cookie => format!("  server {} {} cookie {}\n", b.name, b.addr, b.name),
            Persistence::StickOnSrc => format!("  server {} {}\n", b.name, b.addr),
        })
        .collect();
    let lines = match persistence {
        Persistence::Cookie => "  cookie SERVER insert indirect nocache\n",
        Persistence::StickOnSrc => "  stick-table type ip size 1m expire 30m\n  stick on src\n",
    };
    let hap_cfg = format!(
        "global\n  maxconn 4096\n\ndefaults\n  mode http\n  timeout connect 5s\n  \
         timeout client 30s\n  timeout server 30s\n\nfrontend web\n  bind 127.0.0.1:{hap_port}\n  \
         default_backend app\n\nbackend app\n  balance roundrobin\n{lines}  option forwardfor\n{hservers}"
    );
    let hcfg = dir.join(format!("haproxy{tag}.cfg"));
    std::fs::write(&hcfg, &hap_cfg)?;
    let mut hcmd = Placement::taskset(place.subject, "haproxy");
    hcmd.args(["-db", "-f"]).arg(&hcfg);
    commands.push(command_line(&hcmd));
    let mut hap = Proc::spawn("haproxy", hcmd, dir)?;

    wait_listening(&mut bal, bal_port).context("balancer, the system under test")?;
    wait_listening(&mut hap, hap_port).context("HAProxy, the peer")?;
    Ok(Proxies {
        bal,
        hap,
        bal_port,
        hap_port,
        bal_cfg,
        hap_cfg,
    })
}

/// Balancer's median `key` (times `scale`) from `summary` (see
/// [`summarize`]), with HAProxy's as its peer.
fn pair_figure(
    summary: &[Value],
    peer: &str,
    id: &'static str,
    what: String,
    unit: &'static str,
    key: &str,
    scale: f64,
) -> Figure {
    let f = |v: &Value| v[key].as_f64().unwrap_or(f64::NAN) * scale;
    Figure::new(id, what, unit, f(&summary[0])).peer(peer, f(&summary[1]))
}

/// Each proxy's medians over its trials, and its trials.
fn summarize(names: [&str; 2], results: &[Vec<Trial>]) -> Vec<Value> {
    let med = |v: &[Trial], f: fn(&Trial) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    names
        .iter()
        .zip(results)
        .map(|(name, r)| {
            json!({
                "proxy": name,
                "requests_per_s": med(r, |t| t.rps),
                "p50_us": med(r, |t| t.p50_us as f64),
                "p99_us": med(r, |t| t.p99_us as f64),
                "p999_us": med(r, |t| t.p999_us as f64),
                "cpu_s_per_100k": med(r, |t| t.cpu_s_per_100k),
                "rss_kib": med(r, |t| t.rss_kib as f64),
                "generator_cpu_busy": med(r, |t| t.generator_busy),
                "proxy_cpu_busy": med(r, |t| t.subject_busy),
                "errors": r.iter().map(|t| t.errors).sum::<u64>(),
                "requests": r.iter().map(|t| t.requests).sum::<u64>(),
                "trials": r.iter().map(|t| json!({
                    "requests_per_s": t.rps, "p50_us": t.p50_us, "p99_us": t.p99_us,
                    "p999_us": t.p999_us, "cpu_s_per_100k": t.cpu_s_per_100k,
                    "rss_kib": t.rss_kib, "errors": t.errors, "requests": t.requests,
                    "generator_cpu_busy": t.generator_busy, "proxy_cpu_busy": t.subject_busy,
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// Each trial's ratio to the other proxy's trial of its pair (balancer's
/// over HAProxy's), and their medians.
fn pairs_of(results: &[Vec<Trial>]) -> Value {
    // Each trial's ratio to the other proxy's trial of the same pair, taken
    // back to back: drift of the machine slower than a pair cancels out.
    let pair_ratios = |f: fn(&Trial) -> f64| -> Vec<f64> {
        results[0]
            .iter()
            .zip(&results[1])
            .map(|(b, h)| f(b) / f(h))
            .collect()
    };
    let median = |mut x: Vec<f64>| {
        x.sort_by(f64::total_cmp);
        x.get(x.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let rps_pairs = pair_ratios(|t| t.rps);
    let p99_pairs = pair_ratios(|t| t.p99_us as f64);
    json!({
        "requests_per_s": rps_pairs,
        "p99": p99_pairs,
        "requests_per_s_median": median(rps_pairs.clone()),
        "p99_median": median(p99_pairs.clone()),
        "requests_per_s_pairs_at_least_1": rps_pairs.iter().filter(|&&r| r >= 1.0).count(),
        "p99_pairs_at_most_1": p99_pairs.iter().filter(|&&r| r <= 1.0).count(),
    })
}

/// `trials` pairs of `secs`-second wrk runs with `conns` connections after a
/// warm-up, the two proxies in turn (ABBA...): each proxy's trials. A
/// trial with errors beyond [`MAX_ERROR_SHARE`] fails the section.
fn run_trials(
    place: &Placement,
    lua: &Path,
    targets: &[(&str, u16, u32); 2],
    load: Load,
    trials: usize,
    secs: u32,
) -> anyhow::Result<Vec<Vec<Trial>>> {
    let conns = load.conns;
    // Warm up each once (server connections, pools, caches).
    for (name, port, _) in targets {
        wrk(place, lua, *port, load, 1)
            .with_context(|| format!("{name}: warm-up, {conns} connections"))?;
    }
    let mut results: Vec<Vec<Trial>> = vec![Vec::new(), Vec::new()];
    for t in 0..trials {
        let order: [usize; 2] = if t % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (name, port, pid) = targets[i];
            let cpu0 = cpu_seconds(pid)?;
            let (g0, s0) = (cpu_jiffies(place.generator)?, cpu_jiffies(place.subject)?);
            let r = wrk(place, lua, port, load, secs)
                .with_context(|| format!("{name}: trial {t}, {conns} connections"))?;
            let cpu = cpu_seconds(pid)? - cpu0;
            let (g1, s1) = (cpu_jiffies(place.generator)?, cpu_jiffies(place.subject)?);
            let trial = Trial {
                generator_busy: busy_share(g0, g1),
                subject_busy: busy_share(s0, s1),
                cpu_s_per_100k: cpu / r.requests as f64 * 100_000.0,
                rss_kib: rss_kib(pid)?,
                requests: r.requests,
                rps: r.requests as f64 / r.seconds,
                p50_us: r.p50_us,
                p99_us: r.p99_us,
                p999_us: r.p999_us,
                errors: r.errors,
            };
            println!(
                "  {name:<9} c{conns} trial {t:>2}: {:>6.0} req/s  p50 {:>5} us  p99 {:>5} us  p99.9 {:>5} us  \
                 {:.3} CPU s/100k req  CPUs busy: generator {:.0}%, proxy {:.0}%  RSS {} KiB  \
                 errors {}",
                trial.rps,
                trial.p50_us,
                trial.p99_us,
                trial.p999_us,
                trial.cpu_s_per_100k,
                trial.generator_busy * 100.0,
                trial.subject_busy * 100.0,
                trial.rss_kib,
                trial.errors
            );
            if trial.requests == 0 || trial.errors as f64 > MAX_ERROR_SHARE * trial.requests as f64
            {
                bail!(
                    "{name}: {} of {} requests failed under wrk: no figure from it",
                    trial.errors,
                    trial.requests
                );
            }
            results[i].push(trial);
        }
    }
    Ok(results)
}

/// One origin server as `balancer-bench --origin` announced it.
#[derive(Clone)]
struct Server {
    name: String,
    addr: std::net::SocketAddr,
}

struct OriginCount {
    name: String,
    answered: u64,
    refused: u64,
}

/// The `balancer-bench --origin` process: killed if dropped unfinished.
struct Origins {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
    servers: Vec<Server>,
}

impl Origins {
    fn start(mut cmd: Command) -> anyhow::Result<Origins> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the origin servers (balancer-bench --origin)")?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let mut o = Origins {
            child,
            stdin,
            stdout: BufReader::new(stdout.context("origin servers' stdout")?),
            servers: Vec::new(),
        };
        let wanted = cmd.get_args().filter(|a| *a == "--origin").count();
        while o.servers.len() < wanted {
            let line = o.line()?;
            let mut w = line.split_whitespace();
            if let (Some("ORIGIN"), Some(name), Some(addr)) = (w.next(), w.next(), w.next()) {
                o.servers.push(Server {
                    name: name.to_owned(),
                    addr: addr
                        .parse()
                        .with_context(|| format!("origin address in {line:?}"))?,
                });
            }
        }
        Ok(o)
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!(
                "the origin servers exited early ({:?})",
                self.child.try_wait()?
            );
        }
        Ok(line)
    }

    /// Stop the servers and read what each answered and refused.
    fn finish(&mut self) -> anyhow::Result<Vec<OriginCount>> {
        self.stdin = None;
        let mut counts = Vec::new();
        while counts.len() < self.servers.len() {
            let line = self.line()?;
            let w: Vec<&str> = line.split_whitespace().collect();
            if let ["ORIGIN-COUNT", name, answered, refused] = w[..] {
                counts.push(OriginCount {
                    name: name.to_owned(),
                    answered: answered.parse()?,
                    refused: refused.parse()?,
                });
            }
        }
        self.child.wait()?;
        Ok(counts)
    }
}

impl Drop for Origins {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Wait until `port` accepts connections; fail at once if the process
/// exits, and after 20 s if it never listens.
fn wait_listening(p: &mut Proc, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = p.try_wait()? {
            bail!("{} exited at start ({st}): {}", p.name, p.output().trim());
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} is not listening on 127.0.0.1:{port} after 20 s: {}",
                p.name,
                p.output().trim()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct WrkResult {
    requests: u64,
    seconds: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    errors: u64,
}

/// The load: wrk's connections, and whether every request carries the
/// persistence cookie (the cookie proxies) or none (stick on src).
#[derive(Clone, Copy)]
struct Load {
    conns: u32,
    cookie: bool,
}

fn wrk_command(place: &Placement, lua: &Path, port: u16, load: Load, secs: u32) -> Command {
    let mut cmd = Placement::taskset(place.generator, "wrk");
    cmd.args(["-t1", &format!("-c{}", load.conns), &format!("-d{secs}s")]);
    if load.cookie {
        cmd.args(["-H", "Cookie: SERVER=s0"]);
    }
    cmd.arg("-s")
        .arg(lua)
        .arg(format!("http://127.0.0.1:{port}/"));
    cmd
}

/// One wrk run, pinned to the generator's CPU.
fn wrk(
    place: &Placement,
    lua: &Path,
    port: u16,
    load: Load,
    secs: u32,
) -> anyhow::Result<WrkResult> {
    let out = wrk_command(place, lua, port, load, secs)
        .output()
        .context("running wrk (cargo xtask setup installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| format!("wrk: no result in {text}"))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let [requests, seconds, p50, p99, p999, errors] = v[..] else {
        bail!("wrk: bad result line {line:?}");
    };
    Ok(WrkResult {
        requests: requests as u64,
        seconds,
        p50_us: p50 as u64,
        p99_us: p99 as u64,
        p999_us: p999 as u64,
        errors: errors as u64,
    })
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

fn status_field(pid: u32, key: &str) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{key} in /proc/{pid}/status"))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_field(pid, "VmRSS:")
}

fn threads(pid: u32) -> anyhow::Result<u64> {
    status_field(pid, "Threads:")
}
