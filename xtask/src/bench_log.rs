//! Part of the http-cookie section: the cost of access logs. balancer with
//! `log` (httplog lines to a file) against balancer without, the same
//! settings otherwise, in the same run: pairs of wrk trials, the two in
//! turn. Target: requests/s with logging >= 0.9x without.

use std::path::Path;

use serde_json::{Value, json};

use crate::bench_http::{
    CONNECTIONS, Load, PairSpec, Persistence, Proxies, Rig, WrkTarget, pairs_of, summarize,
};
use crate::report::{Figure, Target};

/// What logging costs requests/s and latency.
const TARGET: f64 = 0.9;

/// Start a second balancer (and its HAProxy, idle) logging to a file,
/// measure it against `plain`'s balancer in `trials` pairs of `secs` s;
/// its figure and the details for the section's JSON.
pub(crate) fn measure(
    rig: &mut Rig,
    bin: &Path,
    plain: &Proxies,
    trials: usize,
    secs: u32,
) -> anyhow::Result<(Vec<Figure>, Value)> {
    let file = rig.dir.join("access.log");
    let logged = rig.start_proxies(
        bin,
        &PairSpec {
            tag: "-log",
            persistence: Persistence::Cookie,
            tls: None,
            log: Some(&file),
        },
    )?;
    let targets: [WrkTarget; 2] = [
        ("balancer-log", logged.bal_port, logged.bal.pid()),
        ("balancer", plain.bal_port, plain.bal.pid()),
    ];
    let load = Load {
        conns: CONNECTIONS,
        ..Load::KEEP_ALIVE
    };
    rig.record_wrk(&targets, load, &[secs]);
    let results = rig.trials(&targets, load, trials, secs)?;
    let (cfg, _) = logged.stop("access log")?;
    // The lines written (a line per request unless the buffer was full).
    let lines = std::fs::read(&file).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
    let _ = std::fs::remove_file(&file);
    let summary = summarize(["balancer-log", "balancer"], &results);
    let pairs = pairs_of(&results);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let rps = pairs["requests_per_s_median"].as_f64().unwrap_or(f64::NAN);
    let p99 = pairs["p99_median"].as_f64().unwrap_or(f64::NAN);
    let without = "balancer without log";
    let figures = vec![
        Figure::new(
            "log-requests-per-s",
            format!(
                "balancer requests/s with an access log (httplog to a file) against itself \
                 without, median of the {trials} per-pair ratios {rps:.2}x"
            ),
            "req/s",
            f(&summary[0], "requests_per_s"),
        )
        .peer(without, f(&summary[1], "requests_per_s"))
        .target(Target::ratio_at_least(rps, TARGET, without)),
        Figure::new(
            "log-p99",
            format!(
                "balancer latency p99 with an access log against itself without, median of the \
                 {trials} per-pair ratios {p99:.2}x"
            ),
            "us",
            f(&summary[0], "p99_us"),
        )
        .peer(without, f(&summary[1], "p99_us")),
    ];
    println!(
        "  access log to a file, {trials} pair(s): requests/s {rps:.2}x balancer without log \
         (target >= {TARGET}: {}), p99 {p99:.2}x; {lines} lines written",
        if rps >= TARGET { "meets" } else { "misses" }
    );
    Ok((
        figures,
        json!({"proxies": summary, "pairs": pairs, "lines_written": lines, "balancer_config": cfg}),
    ))
}
