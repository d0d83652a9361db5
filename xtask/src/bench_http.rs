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
    path::{Path, PathBuf},
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
pub(crate) const CONNECTIONS: u32 = 32;
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
/// wrk's TLS sessions made new on each connection: see
/// [`Rig::fresh_sessions`].
const NO_RESUME: &str = include_str!("bench_http/no_resume.c");
/// More failed requests than this share fails the section.
const MAX_ERROR_SHARE: f64 = 0.01;

pub(crate) struct Trial {
    pub(crate) requests: u64,
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
pub(crate) fn cpu_jiffies(cpu: usize) -> anyhow::Result<(u64, u64)> {
    let f = cpu_stat(cpu)?;
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Ok((busy, busy + at(3) + at(4)))
}

/// The first eight values of `cpu`'s line in /proc/stat (user, nice,
/// system, idle, iowait, irq, softirq, steal), in jiffies.
pub(crate) fn cpu_stat(cpu: usize) -> anyhow::Result<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let tag = format!("cpu{cpu} ");
    let line = stat
        .lines()
        .find(|l| l.starts_with(&tag))
        .with_context(|| format!("no {tag}line in /proc/stat"))?;
    Ok(line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect())
}

/// Busy share of `cpu` between two [`cpu_jiffies`] readings.
pub(crate) fn busy_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return f64::NAN;
    }
    after.0.saturating_sub(before.0) as f64 / total as f64
}

/// Where the load generator and the proxies run.
pub(crate) struct Placement {
    pub(crate) generator: usize,
    pub(crate) subject: usize,
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

    pub(crate) fn taskset(cpu: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("taskset");
        c.args(["-c", &cpu.to_string()]).arg(program);
        c
    }
}

pub fn run(bin: &Path, bench_bin: &Path, quick: bool) -> anyhow::Result<Value> {
    with_rig("bench-http", bench_bin, |rig| measure(bin, quick, rig))
}

/// Run `measure` with a [`Rig`] in a scratch directory, named for what it
/// starts (`blb-<pid>-<name>`), then stop the origins and remove the
/// directory and the pinned maps of every balancer it started
/// (`<bpffs>/<id>*`), whether it succeeded or not.
pub(crate) fn with_rig(
    name: &str,
    bench_bin: &Path,
    measure: impl FnOnce(&mut Rig) -> anyhow::Result<Value>,
) -> anyhow::Result<Value> {
    let id = format!("blb-{}-{name}", std::process::id());
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir)?;
    let result = Rig::start(bench_bin, &dir, &id).and_then(|mut rig| measure(&mut rig));
    let _ = std::fs::remove_dir_all(&dir);
    let bpffs = Path::new(balancer_tests::lab::BPFFS);
    for entry in std::fs::read_dir(bpffs).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&id) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    result
}

/// What an HTTP section sets up before its proxies: the outside tools'
/// versions (checked first: without the peer or the load generator
/// nothing runs), where everything runs, the origin servers (with the load
/// generator, away from the proxy under test), wrk's Lua report hook, and
/// the list of every command run.
pub(crate) struct Rig {
    pub(crate) versions: Value,
    pub(crate) place: Placement,
    pub(crate) commands: Vec<String>,
    /// The scratch directory: configurations, logs, certificates.
    pub(crate) dir: PathBuf,
    /// `balancer-bench`: the origins, and the open-loop load generator.
    pub(crate) bench_bin: PathBuf,
    origins: Origins,
    wrk: WrkSetup,
    id: String,
}

impl Rig {
    pub(crate) fn start(bench_bin: &Path, dir: &Path, id: &str) -> anyhow::Result<Rig> {
        let versions = json!({
            "haproxy": tool_version("haproxy", &["-v"])
                .context("HAProxy, the peer of this section, is not available")?,
            "wrk": tool_version("wrk", &["-v"])
                .context("wrk, the load generator, is not available")?,
            "taskset": tool_version("taskset", &["--version"])?,
        });
        let place = Placement::new()?;
        let mut ocmd = Placement::taskset(place.generator, bench_bin);
        ocmd.args(["--origin", "s0", "--origin", "s1"]);
        let commands = vec![command_line(&ocmd)];
        let origins = Origins::start(ocmd)?;
        let lua = dir.join("report.lua");
        std::fs::write(&lua, LUA)?;
        Ok(Rig {
            versions,
            place,
            commands,
            origins,
            wrk: WrkSetup {
                lua,
                no_resume: None,
            },
            dir: dir.to_owned(),
            bench_bin: bench_bin.to_owned(),
            id: id.to_owned(),
        })
    }

    /// The peer's name in figures: "HAProxy 2.6.x".
    pub(crate) fn peer(&self) -> String {
        self.versions["haproxy"]
            .as_str()
            .and_then(|v| v.split_whitespace().take(3).nth(2))
            .map_or_else(
                || "HAProxy".to_owned(),
                |v| format!("HAProxy {}", v.split('-').next().unwrap_or(v)),
            )
    }

    /// Record the wrk command lines of `load` against each of `targets`,
    /// `secs` long (and the 1 s warm-up's).
    pub(crate) fn record_wrk(&mut self, targets: &[WrkTarget; 2], load: Load, secs: &[u32]) {
        for (_, port, _) in targets {
            for &s in secs {
                let cmd = wrk_command(&self.place, &self.wrk, *port, load, s);
                let env: String = cmd
                    .get_envs()
                    .filter_map(|(k, v)| Some(format!("{}={} ", k.to_str()?, v?.to_string_lossy())))
                    .collect();
                let line = env + &command_line(&cmd);
                // (`--quick` warms up as long as it measures.)
                if self.commands.last() != Some(&line) {
                    self.commands.push(line);
                }
            }
        }
    }

    /// Let loads with `fresh_sessions` make wrk start a new TLS session on
    /// each connection: wrk reuses a connection's `SSL` object with
    /// `SSL_clear`, which keeps the session, so every reconnection resumes
    /// it (a TLS 1.3 ticket). The library `no_resume.c` (compiled here with
    /// `cc`, given to wrk through `LD_PRELOAD`) drops the session after
    /// each `SSL_clear`.
    pub(crate) fn fresh_sessions(&mut self) -> anyhow::Result<()> {
        let src = self.dir.join("no_resume.c");
        let lib = self.dir.join("no_resume.so");
        std::fs::write(&src, NO_RESUME)?;
        let mut cc = Command::new("cc");
        cc.args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&lib)
            .arg(&src)
            .arg("-ldl");
        self.commands.push(command_line(&cc));
        crate::util::status(&mut cc).context("compiling the no-resume library for wrk")?;
        self.wrk.no_resume = Some(lib);
        Ok(())
    }

    /// See [`run_trials`].
    pub(crate) fn trials(
        &self,
        targets: &[WrkTarget; 2],
        load: Load,
        trials: usize,
        secs: u32,
    ) -> anyhow::Result<Vec<Vec<Trial>>> {
        run_trials(&self.place, &self.wrk, targets, load, trials, secs)
    }

    /// Stop the origin servers: what each answered, by name. A request
    /// one of them refused fails the section.
    pub(crate) fn finish(&mut self) -> anyhow::Result<serde_json::Map<String, Value>> {
        let counts = self.origins.finish()?;
        let refused: u64 = counts.iter().map(|c| c.refused).sum();
        if refused > 0 {
            bail!("the origin servers refused {refused} request(s): no figure from this run");
        }
        Ok(counts
            .iter()
            .map(|c| (c.name.clone(), json!(c.answered)))
            .collect())
    }

    /// Where things ran, with the workers each proxy ran (see
    /// [`Proxies::workers`]).
    pub(crate) fn cpus(&self, (bal_workers, hap_threads): (u64, u64)) -> Cpus {
        let place = &self.place;
        let shared = place.generator == place.subject;
        Cpus {
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
                        "wrk and the two origin servers (balancer-bench --origin) on CPU {}, the \
                         proxy under test on CPU {} (taskset); other work on the machine is not \
                         excluded",
                        place.generator, place.subject
                    )
                }
            ),
        }
    }
}

/// A proxy wrk measures: its name, port and process id.
pub(crate) type WrkTarget = (&'static str, u16, u32);

fn measure(bin: &Path, quick: bool, rig: &mut Rig) -> anyhow::Result<Value> {
    let proxies = rig.start_proxies(
        bin,
        &PairSpec {
            tag: "",
            persistence: Persistence::Cookie,
            tls: None,
            log: None,
        },
    )?;
    let workers = proxies.workers()?;
    // Many short trials, the two proxies in turn (ABBA...): back-to-back
    // pairs on this kind of shared VM differ by up to 20% either way, from
    // the machine, so the medians need many of them.
    let secs = 3;
    let trials = if quick { 1 } else { 12 };
    let targets = proxies.targets();
    let load = |conns| Load {
        conns,
        ..Load::KEEP_ALIVE
    };
    for conns in [CONNECTIONS, MANY] {
        rig.record_wrk(&targets, load(conns), &[1, secs]);
    }
    let results = rig.trials(&targets, load(CONNECTIONS), trials, secs)?;
    let open_pairs = if quick { 1 } else { 8 };
    let open_secs = if quick { 1 } else { 3 };
    let (open, poll_idle) = crate::bench_open::measure(
        rig,
        &targets,
        slower_median_rps(&results),
        &["Cookie: SERVER=s0"],
        open_pairs,
        open_secs,
        quick,
    )?;
    // Fewer pairs with many connections: the ratio there is far from 1.
    let many_trials = if quick { 1 } else { 6 };
    let many = rig.trials(&targets, load(MANY), many_trials, secs)?;
    // Access logs: balancer with `log` against this one, without.
    let log_trials = if quick { 1 } else { 4 };
    let (log_figures, log_details) =
        crate::bench_log::measure(rig, bin, &proxies, log_trials, secs)?;
    let (bal_cfg, hap_cfg) = proxies.stop("cookie")?;
    // Stick on src: the same two proxies' configurations with HAProxy's
    // `stick on src` instead of the cookie, requests without a cookie.
    let stick = rig.start_proxies(
        bin,
        &PairSpec {
            tag: "-stick",
            persistence: Persistence::StickOnSrc,
            tls: None,
            log: None,
        },
    )?;
    let stick_targets = stick.targets();
    let stick_load = Load {
        cookie: false,
        ..Load::KEEP_ALIVE
    };
    rig.record_wrk(&stick_targets, stick_load, &[secs]);
    let stick_results = rig.trials(&stick_targets, stick_load, trials, secs)?;
    let (stick_open, _) = crate::bench_open::measure(
        rig,
        &stick_targets,
        slower_median_rps(&stick_results),
        &[],
        open_pairs,
        open_secs,
        quick,
    )?;
    let (stick_bal_cfg, stick_hap_cfg) = stick.stop("stick on src")?;
    let origin_requests = rig.finish()?;

    let names = [targets[0].0, targets[1].0];
    let summary = summarize(names, &results);
    let pairs = pairs_of(&results);
    let many_summary = summarize(names, &many);
    let many_pairs = pairs_of(&many);
    let stick_summary = summarize(names, &stick_results);
    let stick_pairs = pairs_of(&stick_results);
    let peer = rig.peer();
    let (b, h) = (&summary[0], &summary[1]);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let LoadFigures {
        mut figures,
        rps_ratio,
        p99_ratio,
        cpu_ratio,
    } = load_figures(&summary, &pairs, &peer, "", "", 1.2);
    // Many connections: the same figures, ids suffixed.
    let many_fig = headline(
        &many_summary,
        &peer,
        &|base| format!("{base}-{MANY}-connections"),
        &format!(", {MANY} connections"),
        None,
    );
    let (many_rps_ratio, many_p99_ratio) = (many_fig.rps_ratio, many_fig.p99_ratio);
    figures.extend(many_fig.figures);
    figures.push(pair_figure(
        &many_summary,
        &peer,
        format!("rss-{MANY}-connections"),
        format!("balancer resident memory after the run, {MANY} connections"),
        "bytes",
        "rss_kib",
        1024.0,
    ));
    // Stick on src: the same figures, ids prefixed.
    let stick_fig = headline(
        &stick_summary,
        &peer,
        &|base| format!("stick-{base}"),
        ", stick on src (no cookie)",
        None,
    );
    let (stick_rps_ratio, stick_p99_ratio) = (stick_fig.rps_ratio, stick_fig.p99_ratio);
    figures.extend(stick_fig.figures);
    let (open_figures, open_details, open_ratios) =
        crate::bench_open::figures(&open, &peer, "", "", false);
    figures.extend(open_figures);
    let (stick_open_figures, stick_open_details, stick_open_ratios) =
        crate::bench_open::figures(&stick_open, &peer, "stick-", ", stick on src", true);
    figures.extend(stick_open_figures);
    figures.extend(log_figures);
    figures.extend([Figure::new(
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
    )]);
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
    println!(
        "  open loop ({open_pairs} trial(s) of {open_secs} s, both proxies at once, at shares of the slower proxy's \
         requests/s above; latency from when each request was due): cookie {}; stick on src {} \
         (target <= 1)",
        crate::bench_open::summary(&open, &open_ratios),
        crate::bench_open::summary(&stick_open, &stick_open_ratios),
    );
    let cpus = rig.cpus(workers);
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
                            127.0.0.1, so each is a lookup and a refresh of one entry); after each \
                            configuration's wrk trials, {open_pairs} open-loop trial(s) of \
                            {open_secs} s with both proxies at once (balancer-bench --open-loop \
                            with both addresses, {CONNECTIONS} connections taken in turn, a fixed \
                            rate for both together: 25% and 50% of the slower proxy's median \
                            requests/s just measured, half each; latency from when each request \
                            was due, percentiles over all requests of a proxy's trials together; \
                            /dev/cpu_dma_latency held at 0 meanwhile (see open_loop_cpu_dma_latency_0); \
                            figures with ids containing open-25- and open-50-); figures: each proxy's medians; 'pairs': each \
                            trial's ratio to the other proxy's trial of its pair; same two loopback \
                            origin servers answering their name; CPU from /proc/PID/stat \
                            utime+stime of the proxy process; CPU busy shares from /proc/stat; \
                            RSS from /proc/PID/status after each trial"),
            "commands": rig.commands,
            "versions": rig.versions,
            "cpus": cpus.json(),
            "figures": figures.iter().map(Figure::json).collect::<Vec<_>>(),
            "proxies": summary,
            "pairs": pairs,
            "many_connections": {"connections": MANY, "proxies": many_summary, "pairs": many_pairs},
            "open_loop": open_details,
            "open_loop_cpu_dma_latency_0": poll_idle,
            "stick_on_src": {
                "connections": CONNECTIONS,
                "proxies": stick_summary,
                "pairs": stick_pairs,
                "open_loop": stick_open_details,
                "balancer_config": stick_bal_cfg,
                "haproxy_config": stick_hap_cfg,
            },
            "access_log": log_details,
            "workers": {"balancer_http_workers": workers.0, "haproxy_threads": workers.1},
            "origin_requests": origin_requests,
            "balancer_config": bal_cfg,
            "haproxy_config": hap_cfg,
        }]
    }))
}

/// How the two proxies keep a user on a server.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persistence {
    /// `cookie SERVER insert indirect nocache`.
    Cookie,
    /// `stick-table type ip size 1m expire 30m` + `stick on src`.
    StickOnSrc,
}

/// A pair of proxies to start with the same settings.
pub(crate) struct PairSpec<'a> {
    /// Tells this pair's files and pinned maps from the other pairs' of
    /// the section ("" for the first).
    pub(crate) tag: &'a str,
    pub(crate) persistence: Persistence,
    /// TLS on the frontend with this certificate (one PEM file: the
    /// certificate, then its key), ALPN h2,http/1.1 offered; balancer then
    /// also serves `/metrics` (its TLS counters: which handshakes were
    /// resumed, which version and ALPN protocol the client got).
    pub(crate) tls: Option<&'a Path>,
    /// balancer writes its access log (httplog) to this file.
    pub(crate) log: Option<&'a Path>,
}

/// balancer and HAProxy with the same settings, both on the subject's CPU.
pub(crate) struct Proxies {
    pub(crate) bal: Proc,
    pub(crate) hap: Proc,
    pub(crate) bal_port: u16,
    pub(crate) hap_port: u16,
    pub(crate) bal_cfg: String,
    pub(crate) hap_cfg: String,
    /// balancer's `/metrics` (TLS pairs only).
    pub(crate) metrics: Option<std::net::SocketAddr>,
}

impl Proxies {
    /// What wrk measures, balancer first.
    pub(crate) fn targets(&self) -> [WrkTarget; 2] {
        [
            ("balancer", self.bal_port, self.bal.pid()),
            ("haproxy", self.hap_port, self.hap.pid()),
        ]
    }

    /// balancer's HTTP workers (from its log) and HAProxy's threads.
    pub(crate) fn workers(&self) -> anyhow::Result<(u64, u64)> {
        // Logged right after the listeners are bound: it may lag a little.
        let logged = |p: &Proc| {
            p.output().lines().find_map(|l| {
                let (_, rest) = l.split_once(" worker threads)")?.0.rsplit_once('(')?;
                rest.trim().parse::<u64>().ok()
            })
        };
        wait_for(Duration::from_secs(10), || logged(&self.bal).is_some());
        let bal = logged(&self.bal).context("balancer did not log its HTTP worker count")?;
        Ok((bal, threads(self.hap.pid())?))
    }

    /// Stop both; fail if either exited during the run (`what`: which
    /// pair). Returns their configurations (balancer's, HAProxy's).
    pub(crate) fn stop(mut self, what: &str) -> anyhow::Result<(String, String)> {
        for (p, name) in [(&mut self.bal, "balancer"), (&mut self.hap, "haproxy")] {
            if let Some(st) = p.try_wait()? {
                bail!(
                    "{name} ({what}) exited during the run ({st}): {}",
                    p.output()
                );
            }
        }
        Ok((self.bal_cfg, self.hap_cfg))
    }
}

impl Rig {
    /// Start balancer (`bin`) and HAProxy as `spec` says, in front of the
    /// origins, each pinned to the subject's CPU; wait until both listen.
    pub(crate) fn start_proxies(&mut self, bin: &Path, spec: &PairSpec) -> anyhow::Result<Proxies> {
        let (bal_port, hap_port) = (free_port()?, free_port()?);
        let PairSpec {
            tag,
            persistence,
            tls,
            log,
        } = *spec;
        let (dir, place) = (&self.dir, &self.place);
        let backends = &self.origins.servers;

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
        let metrics = match tls {
            Some(_) => Some(std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?))),
            None => None,
        };
        let metrics_table =
            metrics.map_or_else(String::new, |m| format!("[metrics]\nbind = \"{m}\"\n\n"));
        let tls_key = tls.map_or_else(String::new, |pem| {
            format!(
                "tls = {{ crt = [\"{}\"], alpn = [\"h2\", \"http/1.1\"] }}\n",
                pem.display()
            )
        });
        let log_key = log.map_or_else(String::new, |f| {
            format!(
                "log = {{ format = \"httplog\", target = \"{}\" }}\n",
                f.display()
            )
        });
        let bal_cfg = format!(
            "[dataplane]\ninterfaces = []\npin_dir = \"{}\"\n\n[admin]\nsocket = \"{}\"\n\n\
             {metrics_table}[[frontend]]\nname = \"web\"\nmode = \"http\"\n\
             bind = \"127.0.0.1:{bal_port}\"\ndefault_backend = \"app\"\n{tls_key}{log_key}\n\
             [[backend]]\nname = \"app\"\nbalance = \"roundrobin\"\n{keys}{servers}",
            Path::new(balancer_tests::lab::BPFFS)
                .join(format!("{}{tag}", self.id))
                .display(),
            dir.join(format!("admin{tag}.sock")).display()
        );
        let cfg = dir.join(format!("balancer{tag}.toml"));
        std::fs::write(&cfg, &bal_cfg)?;
        let mut cmd = Placement::taskset(place.subject, bin);
        cmd.args(["run", "--config"])
            .arg(&cfg)
            // The daemon logs its HTTP worker count at info.
            .env("RUST_LOG", "warn,balancer::daemon=info");
        self.commands.push(format!(
            "RUST_LOG=warn,balancer::daemon=info {}",
            command_line(&cmd)
        ));
        let mut bal = Proc::spawn("balancer", cmd, dir)?;

        // HAProxy, equivalent: one process, one thread per CPU it is bound
        // to; `option forwardfor` because balancer always appends
        // X-Forwarded-For.
        let hservers: String = backends
            .iter()
            .map(|b| match persistence {
                Persistence::Cookie => {
                    format!("  server {} {} cookie {}\n", b.name, b.addr, b.name)
                }
                Persistence::StickOnSrc => format!("  server {} {}\n", b.name, b.addr),
            })
            .collect();
        let lines = match persistence {
            Persistence::Cookie => "  cookie SERVER insert indirect nocache\n",
            Persistence::StickOnSrc => "  stick-table type ip size 1m expire 30m\n  stick on src\n",
        };
        let ssl = tls.map_or_else(String::new, |pem| {
            format!(" ssl crt {} alpn h2,http/1.1", pem.display())
        });
        let hap_cfg = format!(
            "global\n  maxconn 4096\n\ndefaults\n  mode http\n  timeout connect 5s\n  \
             timeout client 30s\n  timeout server 30s\n\nfrontend web\n  \
             bind 127.0.0.1:{hap_port}{ssl}\n  default_backend app\n\nbackend app\n  \
             balance roundrobin\n{lines}  option forwardfor\n{hservers}"
        );
        let hcfg = dir.join(format!("haproxy{tag}.cfg"));
        std::fs::write(&hcfg, &hap_cfg)?;
        let mut hcmd = Placement::taskset(place.subject, "haproxy");
        hcmd.args(["-db", "-f"]).arg(&hcfg);
        self.commands.push(command_line(&hcmd));
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
            metrics,
        })
    }
}

/// The figures of one load's trials (see [`load_figures`]) and balancer's
/// ratios to HAProxy in its three targets.
pub(crate) struct LoadFigures {
    pub(crate) figures: Vec<Figure>,
    pub(crate) rps_ratio: f64,
    pub(crate) p99_ratio: f64,
    pub(crate) cpu_ratio: f64,
}

/// The figures of one load from each proxy's medians (`summary`) and the
/// per-pair ratios (`pairs`), ids prefixed with `prefix` ("tls-"), `about`
/// saying which load in their descriptions (", over TLS"): requests/s
/// (target >= 1x HAProxy), latency p50, p99 (target <= 1x), p99.9, CPU
/// per 100,000 requests (target <= `cpu_limit`x), RSS, the per-pair
/// medians of requests/s and p99, and how busy the proxy's and the load
/// generator's CPUs were.
pub(crate) fn load_figures(
    summary: &[Value],
    pairs: &Value,
    peer: &str,
    prefix: &str,
    about: &str,
    cpu_limit: f64,
) -> LoadFigures {
    let pair = |id: &str, what: &str, unit: &'static str, key: &str, scale: f64| {
        let what = format!("balancer {what}{about}");
        pair_figure(
            summary,
            peer,
            format!("{prefix}{id}"),
            what,
            unit,
            key,
            scale,
        )
    };
    let LoadFigures {
        mut figures,
        rps_ratio,
        p99_ratio,
        cpu_ratio,
    } = headline(
        summary,
        peer,
        &|base| format!("{prefix}{base}"),
        about,
        Some(cpu_limit),
    );
    let trials = pairs["requests_per_s"].as_array().map_or(0, Vec::len);
    let median = |key: &str| pairs[key].as_f64().unwrap_or(f64::NAN);
    figures.extend([
        pair("latency-p50", "latency p50", "us", "p50_us", 1.0),
        pair("latency-p99-9", "latency p99.9", "us", "p999_us", 1.0),
        pair(
            "rss",
            "resident memory after the run (includes the mmap'ed Maglev map, kernel memory)",
            "bytes",
            "rss_kib",
            1024.0,
        ),
        Figure::new(
            format!("{prefix}requests-per-s-pairs"),
            format!(
                "balancer/HAProxy requests/s{about}, median of the {trials} per-pair ratios \
                 (each pair back to back; balancer ahead in {} of them)",
                pairs["requests_per_s_pairs_at_least_1"]
            ),
            "x",
            median("requests_per_s_median"),
        ),
        Figure::new(
            format!("{prefix}latency-p99-pairs"),
            format!(
                "balancer/HAProxy latency p99{about}, median of the {trials} per-pair ratios \
                 (balancer lower or equal in {} of them)",
                pairs["p99_pairs_at_most_1"]
            ),
            "x",
            median("p99_median"),
        ),
    ]);
    figures.extend(busy_figures(summary, peer, prefix, about));
    LoadFigures {
        figures,
        rps_ratio,
        p99_ratio,
        cpu_ratio,
    }
}

/// balancer's requests/s (target >= 1x HAProxy), latency p99 (target <=
/// 1x) and CPU per 100,000 requests (target <= `cpu_limit`x, if any), from
/// each proxy's medians (`summary`); `id` makes a figure's id from its
/// base (`requests-per-s`), `about` says which load in the descriptions.
pub(crate) fn headline(
    summary: &[Value],
    peer: &str,
    id: &dyn Fn(&str) -> String,
    about: &str,
    cpu_limit: Option<f64>,
) -> LoadFigures {
    let pair = |base: &str, what: &str, unit: &'static str, key: &str| {
        let what = format!("balancer {what}{about}");
        pair_figure(summary, peer, id(base), what, unit, key, 1.0)
    };
    let rps = pair(
        "requests-per-s",
        "requests/s",
        "requests/s",
        "requests_per_s",
    );
    let p99 = pair("latency-p99", "latency p99", "us", "p99_us");
    let cpu = pair(
        "cpu-per-100k-requests",
        "CPU time (user+system) per 100,000 requests",
        "s",
        "cpu_s_per_100k",
    );
    let ratio = |f: &Figure| f.ratio().unwrap_or(f64::NAN);
    let (rps_ratio, p99_ratio, cpu_ratio) = (ratio(&rps), ratio(&p99), ratio(&cpu));
    let cpu = match cpu_limit {
        Some(limit) => cpu.target(Target::ratio_at_most(cpu_ratio, limit, peer)),
        None => cpu,
    };
    LoadFigures {
        figures: vec![
            rps.target(Target::ratio_at_least(rps_ratio, 1.0, peer)),
            p99.target(Target::ratio_at_most(p99_ratio, 1.0, peer)),
            cpu,
        ],
        rps_ratio,
        p99_ratio,
        cpu_ratio,
    }
}

/// How busy the proxy's and the load generator's CPUs were during
/// balancer's trials of one load (HAProxy's trials as the peer): whether
/// the proxy, and not wrk, limited the rate. Ids prefixed with `prefix`.
pub(crate) fn busy_figures(
    summary: &[Value],
    peer: &str,
    prefix: &str,
    about: &str,
) -> [Figure; 2] {
    let f = |id: &str, what: &str, key: &str| {
        let share = |v: &Value| v[key].as_f64().unwrap_or(f64::NAN) * 100.0;
        Figure::new(
            format!("{prefix}{id}"),
            format!("busy share of {what} during balancer's trials{about} (median)"),
            "%",
            share(&summary[0]),
        )
        .peer(format!("{peer}'s trials"), share(&summary[1]))
    };
    [
        f("proxy-cpu-busy", "the proxy's CPU", "proxy_cpu_busy"),
        f(
            "generator-cpu-busy",
            "the load generator's CPU (wrk, origins)",
            "generator_cpu_busy",
        ),
    ]
}

/// Balancer's median `key` (times `scale`) from `summary` (see
/// [`summarize`]), with HAProxy's as its peer.
pub(crate) fn pair_figure(
    summary: &[Value],
    peer: &str,
    id: impl Into<String>,
    what: String,
    unit: &'static str,
    key: &str,
    scale: f64,
) -> Figure {
    let f = |v: &Value| v[key].as_f64().unwrap_or(f64::NAN) * scale;
    Figure::new(id, what, unit, f(&summary[0])).peer(peer, f(&summary[1]))
}

/// Each proxy's medians over its trials, and its trials.
pub(crate) fn summarize(names: [&str; 2], results: &[Vec<Trial>]) -> Vec<Value> {
    let med = |v: &[Trial], f: fn(&Trial) -> f64| crate::report::median(v.iter().map(f));
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
pub(crate) fn pairs_of(results: &[Vec<Trial>]) -> Value {
    // Each trial's ratio to the other proxy's trial of the same pair, taken
    // back to back: drift of the machine slower than a pair cancels out.
    let pair_ratios = |f: fn(&Trial) -> f64| -> Vec<f64> {
        results[0]
            .iter()
            .zip(&results[1])
            .map(|(b, h)| f(b) / f(h))
            .collect()
    };
    let median = crate::report::median;
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
    setup: &WrkSetup,
    targets: &[WrkTarget; 2],
    load: Load,
    trials: usize,
    secs: u32,
) -> anyhow::Result<Vec<Vec<Trial>>> {
    let conns = load.conns;
    // Warm up each once (server connections, pools, caches).
    for (name, port, _) in targets {
        wrk(place, setup, *port, load, 1)
            .with_context(|| format!("{name}: warm-up, {conns} connections"))?;
    }
    let mut results: Vec<Vec<Trial>> = vec![Vec::new(), Vec::new()];
    for t in 0..trials {
        let order: [usize; 2] = if t % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (name, port, pid) = targets[i];
            let cpu0 = cpu_seconds(pid)?;
            let (g0, s0) = (cpu_jiffies(place.generator)?, cpu_jiffies(place.subject)?);
            let r = wrk(place, setup, port, load, secs)
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

/// The lower of the two proxies' median requests/s over `results`: the
/// rate the open-loop loads are shares of.
fn slower_median_rps(results: &[Vec<Trial>]) -> f64 {
    results
        .iter()
        .map(|r| crate::report::median(r.iter().map(|t| t.rps)))
        .fold(f64::INFINITY, f64::min)
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

/// The load: wrk's connections, whether every request carries the
/// persistence cookie (the cookie proxies) or none (stick on src), over
/// TLS or not, and whether each request opens a connection of its own.
#[derive(Clone, Copy)]
pub(crate) struct Load {
    pub(crate) conns: u32,
    pub(crate) cookie: bool,
    pub(crate) tls: bool,
    /// `Connection: close` on every request: wrk connects again after each
    /// response.
    pub(crate) close: bool,
    /// Over TLS, a new session on each connection (see
    /// [`Rig::fresh_sessions`]); else wrk resumes its last one.
    pub(crate) fresh_sessions: bool,
}

impl Load {
    /// Keep-alive plain HTTP with the cookie, [`CONNECTIONS`] connections.
    pub(crate) const KEEP_ALIVE: Load = Load {
        conns: CONNECTIONS,
        cookie: true,
        tls: false,
        close: false,
        fresh_sessions: false,
    };
}

/// What every wrk run uses: the Lua hook that reports, and the library
/// that makes wrk start a new TLS session on each connection.
struct WrkSetup {
    lua: PathBuf,
    /// See [`Rig::fresh_sessions`].
    no_resume: Option<PathBuf>,
}

fn wrk_command(place: &Placement, setup: &WrkSetup, port: u16, load: Load, secs: u32) -> Command {
    let mut cmd = Placement::taskset(place.generator, "wrk");
    if load.fresh_sessions
        && let Some(lib) = &setup.no_resume
    {
        cmd.env("LD_PRELOAD", lib);
    }
    cmd.args(["-t1", &format!("-c{}", load.conns), &format!("-d{secs}s")]);
    if load.cookie {
        cmd.args(["-H", "Cookie: SERVER=s0"]);
    }
    if load.close {
        cmd.args(["-H", "Connection: close"]);
    }
    let scheme = if load.tls { "https" } else { "http" };
    cmd.arg("-s")
        .arg(&setup.lua)
        .arg(format!("{scheme}://127.0.0.1:{port}/"));
    cmd
}

/// One wrk run, pinned to the generator's CPU.
fn wrk(
    place: &Placement,
    setup: &WrkSetup,
    port: u16,
    load: Load,
    secs: u32,
) -> anyhow::Result<WrkResult> {
    let text = crate::util::stdout(&mut wrk_command(place, setup, port, load, secs))
        .context("wrk (cargo xtask setup installs it)")?;
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

pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
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
