//! Latency at a fixed load, for the `http-cookie` section: the two proxies
//! of one configuration under one open-loop load (`balancer-bench
//! --open-loop`, see its open_loop.rs) at the same moments: the
//! generator's connections alternate between them, so each gets half the
//! rate, and whatever the host does to the machine during a trial it does
//! to both.
//!
//! wrk's latency is taken at saturation in a closed loop: with 32
//! connections always waiting, each request's latency is the time the
//! proxy takes to serve the 31 ahead of it, so p99 there measures how
//! evenly the proxy spreads its one CPU over its connections at full
//! speed, and moves from run to run with the machine (0.73x to 1.49x
//! HAProxy's in this section's history for the same code). A user's wait
//! at a given load is measured by sending at a fixed rate whatever the
//! proxy does and timing each request from when it was due (the method of
//! wrk2 and of Gil Tene's "How NOT to measure latency"). The rate is a
//! share of the slower proxy's closed-loop requests/s measured just before
//! in the same run, so both proxies get the same load and it is one each
//! can take.
//!
//! This machine is a virtual one. Two things of the host's reach every
//! latency figure here, whichever proxy runs: waking an idle vCPU (the
//! guest's `haltpoll` idle state exits to the hypervisor: about 70 us
//! added to each request at these loads, measured), and the host taking
//! a vCPU away for milliseconds at a time (steal), which at 1% of a 3 s
//! trial decides its p99. So, during these trials:
//! - `/dev/cpu_dma_latency` is held at 0 (the guest polls instead of
//!   halting; what cyclictest and latency benchmarks do), so the wake-up
//!   cost is not in the figures; a machine without it runs them without
//!   and the report says so;
//! - both proxies are measured in the same trials (above): a stall of the
//!   host lands on the requests of both; measured one after the other in
//!   alternating trials (the first version of this file), the p99 ratio of
//!   one configuration went from 0.61x in one run to 2.77x in the next;
//! - each percentile is taken over all requests of a proxy's trials
//!   together (pooled), not as a median of per-trial p99s;
//! - each trial's steal (both CPUs, from /proc/stat) is in the report.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{
    bench_http::{Placement, Rig, WrkTarget, busy_share, cpu_jiffies, cpu_seconds, cpu_stat},
    report::{Figure, Target},
};

/// The open-loop loads, both proxies' requests together, as shares of the
/// slower proxy's closed-loop rate (each proxy gets half).
/// (At 80%, tried first, the proxies' CPUs were full: a request at a
/// fixed rate costs more CPU than one in a saturated closed loop, which
/// batches; its figures were queues of tens of milliseconds.)
pub(crate) const LOADS: [f64; 2] = [0.25, 0.5];
/// Connections the requests are spread over (as wrk's).
const CONNECTIONS: u32 = crate::bench_http::CONNECTIONS;
/// More failed requests than this share fails the section.
const MAX_ERROR_SHARE: f64 = 0.01;

pub(crate) struct OpenTrial {
    requests: u64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    /// Requests sent after they were due because their connection was
    /// still waiting for an answer.
    late: u64,
    send_lag_p99_us: u64,
    errors: u64,
    cpu_s_per_100k: f64,
    subject_busy: f64,
    /// Steal time of the generator's and the subject's CPUs together
    /// during the trial, in ms (/proc/stat, 10 ms steps).
    steal_ms: u64,
}

/// One load: its share and rate, each proxy's trials and all their
/// latencies (us) together.
pub(crate) struct OpenLoad {
    share: f64,
    rate: u64,
    results: [Vec<OpenTrial>; 2],
    pooled: [Vec<u32>; 2],
}

/// `/dev/cpu_dma_latency` held at 0 while this lives (see the module
/// doc); `None` where the machine has no such device or refuses it.
fn hold_poll_idle() -> Option<std::fs::File> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/cpu_dma_latency")
        .ok()?;
    f.write_all(&0i32.to_ne_bytes()).ok()?;
    Some(f)
}

/// Steal jiffies so far of the generator's and the subject's CPUs
/// together (/proc/stat).
fn steal(place: &Placement) -> anyhow::Result<u64> {
    let of = |cpu| cpu_stat(cpu).map(|f| f.get(7).copied().unwrap_or(0));
    let (g, s) = (place.generator, place.subject);
    Ok(of(g)? + if g == s { 0 } else { of(s)? })
}

/// The `p` quantile of sorted `v` (nearest rank).
fn quantile(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let k = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len());
    f64::from(v[k - 1])
}

/// `pairs` `secs`-second open-loop trials of both proxies at once at each
/// of [`LOADS`] times `base_rps`; `headers` go with every request.
pub(crate) fn measure(
    rig: &mut Rig,
    targets: &[WrkTarget; 2],
    base_rps: f64,
    headers: &[&str],
    pairs: usize,
    secs: u32,
    quick: bool,
) -> anyhow::Result<(Vec<OpenLoad>, bool)> {
    let poll_idle = hold_poll_idle();
    let mut loads = Vec::new();
    // (A smoke run takes the first load only.)
    for share in LOADS.into_iter().take(if quick { 1 } else { LOADS.len() }) {
        // Rounded to 100 requests/s: the same figure in the report and the
        // command line.
        let rate = ((base_rps * share / 100.0).round() as u64).max(1) * 100;
        let mut results = [Vec::new(), Vec::new()];
        let mut pooled: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
        for t in 0..pairs {
            let mut cmd = command(&rig.place, &rig.bench_bin, targets, rate, headers, secs);
            let lat_file = rig.dir.join(format!("open-{rate}-{t}.lat"));
            cmd.arg("--latencies").arg(&lat_file);
            if t == 0 {
                rig.commands.push(crate::report::command_line(&cmd));
            }
            let s = rig.place.subject;
            let steal0 = steal(&rig.place)?;
            let cpu0 = [cpu_seconds(targets[0].2)?, cpu_seconds(targets[1].2)?];
            let s0 = cpu_jiffies(s)?;
            let text =
                crate::util::stdout(&mut cmd).with_context(|| format!("open loop at {rate}/s"))?;
            let cpu = [
                cpu_seconds(targets[0].2)? - cpu0[0],
                cpu_seconds(targets[1].2)? - cpu0[1],
            ];
            let s1 = cpu_jiffies(s)?;
            let steal1 = steal(&rig.place)?;
            for (i, &(name, port, _)) in targets.iter().enumerate() {
                let line = text
                    .lines()
                    .find(|l| l.contains(&format!(" target=127.0.0.1:{port} ")))
                    .with_context(|| format!("{name}: no result line in {text:?}"))?;
                let mut trial = parse(line, cpu[i], busy_share(s0, s1))
                    .with_context(|| format!("{name}: open loop at {rate}/s"))?;
                trial.steal_ms = steal1.saturating_sub(steal0) * 10;
                let file = lat_file.with_extension(format!("{i}"));
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("{name}: open loop at {rate}/s: its latencies"))?;
                let _ = std::fs::remove_file(&file);
                pooled[i].extend(
                    bytes
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
                println!(
                    "  {name:<9} open loop {rate}/s trial {t:>2}: p50 {:>5} us  p99 {:>5} us  \
                     p99.9 {:>5} us  max {:>6} us  late {:>5}  send lag p99 {:>4} us  \
                     {:.3} CPU s/100k req  CPU busy {:.0}% (both)  steal {} ms  errors {}",
                    trial.p50_us,
                    trial.p99_us,
                    trial.p999_us,
                    trial.max_us,
                    trial.late,
                    trial.send_lag_p99_us,
                    trial.cpu_s_per_100k,
                    trial.subject_busy * 100.0,
                    trial.steal_ms,
                    trial.errors
                );
                if trial.requests == 0
                    || trial.errors as f64 > MAX_ERROR_SHARE * trial.requests as f64
                {
                    bail!(
                        "{name}: {} of {} requests failed at {rate}/s: no figure from it",
                        trial.errors,
                        trial.requests
                    );
                }
                results[i].push(trial);
            }
        }
        for p in &mut pooled {
            p.sort_unstable();
        }
        loads.push(OpenLoad {
            share,
            rate,
            results,
            pooled,
        });
    }
    Ok((loads, poll_idle.is_some()))
}

fn command(
    place: &Placement,
    bench_bin: &std::path::Path,
    targets: &[WrkTarget; 2],
    rate: u64,
    headers: &[&str],
    secs: u32,
) -> std::process::Command {
    let mut cmd = Placement::taskset(place.generator, bench_bin);
    for (_, port, _) in targets {
        cmd.args(["--open-loop", &format!("127.0.0.1:{port}")]);
    }
    cmd.args(["--rate", &rate.to_string()])
        .args(["--connections", &CONNECTIONS.to_string()])
        .args(["--secs", &secs.to_string()]);
    for h in headers {
        cmd.args(["--header", h]);
    }
    cmd
}

fn parse(text: &str, cpu_s: f64, subject_busy: f64) -> anyhow::Result<OpenTrial> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("OPEN-LOOP "))
        .with_context(|| format!("no result in {text:?}"))?;
    let field = |k: &str| -> anyhow::Result<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .with_context(|| format!("no {k} in {line:?}"))?
            .parse()
            .with_context(|| format!("{k} in {line:?}"))
    };
    let requests = field("requests")?;
    Ok(OpenTrial {
        requests,
        p50_us: field("p50_us")?,
        p99_us: field("p99_us")?,
        p999_us: field("p999_us")?,
        max_us: field("max_us")?,
        late: field("late")?,
        send_lag_p99_us: field("send_lag_p99_us")?,
        errors: field("errors")?,
        cpu_s_per_100k: cpu_s / requests.max(1) as f64 * 100_000.0,
        subject_busy,
        steal_ms: 0,
    })
}

use crate::report::median;

/// The figures of each load (ids `{prefix}open-{share%}-...`): each
/// proxy's median p50, p99 (with the target `<= 1x` HAProxy when
/// `p99_target`), p99.9, the median of the per-pair p99 ratios, and the
/// share of requests sent late; and the details for the report.
pub(crate) fn figures(
    loads: &[OpenLoad],
    peer: &str,
    prefix: &str,
    about: &str,
    p99_target: bool,
) -> (Vec<Figure>, Value, Vec<f64>) {
    let mut figures = Vec::new();
    let mut details = Vec::new();
    let mut p99_ratios = Vec::new();
    for l in loads {
        let pct = (l.share * 100.0).round() as u32;
        let id = |base: &str| format!("{prefix}open-{pct}-{base}");
        let load = format!("{about}, open loop at {} requests/s ({pct}%)", l.rate);
        let n = |i: usize| l.pooled[i].len();
        let pooled = |base: &str, what: &str, q: f64| {
            Figure::new(
                id(base),
                format!(
                    "balancer latency {what} from when each request was due{load}, over the \
                     {} requests of its {} trials together",
                    n(0),
                    l.results[0].len()
                ),
                "us",
                quantile(&l.pooled[0], q),
            )
            .peer(
                format!("{peer} ({} requests)", n(1)),
                quantile(&l.pooled[1], q),
            )
        };
        let p99 = pooled("latency-p99", "p99", 0.99);
        let ratio = p99.ratio().unwrap_or(f64::NAN);
        p99_ratios.push(ratio);
        let p99 = if p99_target {
            p99.target(Target::ratio_at_most(ratio, 1.0, peer))
        } else {
            p99
        };
        let pair_ratios: Vec<f64> = l.results[0]
            .iter()
            .zip(&l.results[1])
            .map(|(b, h)| b.p99_us as f64 / h.p99_us.max(1) as f64)
            .collect();
        let at_most_1 = pair_ratios.iter().filter(|&&r| r <= 1.0).count();
        figures.extend([
            pooled("latency-p50", "p50", 0.5),
            pooled("latency-p90", "p90", 0.9),
            p99,
            pooled("latency-p99-9", "p99.9", 0.999),
            Figure::new(
                id("latency-p99-pairs"),
                format!(
                    "balancer/HAProxy latency p99{load}, median of the {} per-trial ratios \
                     (both measured in each trial; balancer lower or equal in {at_most_1} of \
                     them)",
                    pair_ratios.len()
                ),
                "x",
                median(pair_ratios.clone()),
            ),
        ]);
        let trials = |i: usize| {
            l.results[i]
                .iter()
                .map(|t| {
                    json!({
                        "requests": t.requests, "p50_us": t.p50_us, "p99_us": t.p99_us,
                        "p999_us": t.p999_us, "max_us": t.max_us, "late": t.late,
                        "send_lag_p99_us": t.send_lag_p99_us, "errors": t.errors,
                        "steal_ms": t.steal_ms,
                        "cpu_s_per_100k": t.cpu_s_per_100k, "proxy_cpu_busy": t.subject_busy,
                    })
                })
                .collect::<Vec<_>>()
        };
        details.push(json!({
            "share_of_slower_closed_loop_rate": l.share,
            "rate": l.rate,
            "connections": CONNECTIONS,
            "p99_pairs": pair_ratios,
            "balancer": trials(0),
            "haproxy": trials(1),
        }));
    }
    (figures, Value::Array(details), p99_ratios)
}

/// One line per load for the section's summary.
pub(crate) fn summary(loads: &[OpenLoad], ratios: &[f64]) -> String {
    loads
        .iter()
        .zip(ratios)
        .map(|(l, r)| format!("{:.0}% ({}/s) p99 {r:.2}x", l.share * 100.0, l.rate))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_line_is_read_whole() {
        let t = parse(
            "OPEN-LOOP target=127.0.0.1:80 requests=3000 rate=1000 p50_us=80 p90_us=120 p99_us=300 p999_us=900 \
             max_us=1200 late=7 send_lag_p99_us=40 errors=0\n",
            0.03,
            0.5,
        )
        .unwrap();
        assert_eq!((t.requests, t.p99_us, t.late, t.errors), (3000, 300, 7, 0));
        assert!((t.cpu_s_per_100k - 1.0).abs() < 1e-9);
        assert!(parse("OPEN-LOOP requests=1 p50_us=1", 0.0, 0.0).is_err());
        assert!(parse("nothing", 0.0, 0.0).is_err());
    }
}
