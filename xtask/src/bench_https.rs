//! `cargo xtask bench --only https`: TLS termination against HAProxy 2.6
//! (OpenSSL), side by side in one run, set up as the `http-cookie` section
//! ([`crate::bench_http`]) sets up its proxies, with TLS on the frontend:
//! the same origin servers, CPU placement (wrk and the origins on one CPU,
//! the proxy under test on the other, through `taskset`), `cookie SERVER
//! insert indirect nocache` with every request carrying `SERVER=s0`,
//! alternating (ABBA) trials with per-pair ratios, latency percentiles from
//! wrk's Lua `done` hook and CPU per request from /proc utime+stime. Both
//! proxies serve the same certificate files (made by `openssl`, signed by a
//! test CA: `balancer_tests::tls::Pki`) and offer ALPN h2,http/1.1 (wrk
//! offers no ALPN: it speaks HTTP/1.1). HAProxy: `bind 127.0.0.1:PORT ssl
//! crt FILE alpn h2,http/1.1`, one thread per CPU it is bound to, its
//! session cache at its default size; balancer: `tls = { crt = [FILE],
//! alpn = ["h2", "http/1.1"] }` and `[metrics]` (its TLS counters).
//!
//! Cases, each with HAProxy's figure as its peer:
//! - full handshakes/s: wrk with `Connection: close`, so each request opens
//!   a connection, with an ECDSA P-256 certificate
//!   (`handshakes-per-s-ecdsa`), then an RSA 2048 one
//!   (`handshakes-per-s-rsa`); targets >= 1.2x HAProxy. wrk resumes its
//!   last session on every reconnection (it reuses the connection's `SSL`
//!   object through `SSL_clear`, which keeps the session: a TLS 1.3
//!   ticket), so for these it runs with `LD_PRELOAD` of a small library
//!   (`bench_http/no_resume.c`, compiled with `cc` into the scratch
//!   directory) that drops the session after each `SSL_clear`; the section
//!   reads balancer's `balancer_tls_handshakes_total` before and after each
//!   case, and more than 1% resumed fails it;
//! - resumed handshakes/s, wrk as it is (`handshakes-per-s-ecdsa-resumed`,
//!   no target; a returning client's cost);
//! - keep-alive requests over TLS (32 connections, the ECDSA pair):
//!   `tls-requests-per-s` (>= 1x), `tls-latency-p99` (<= 1x),
//!   `tls-cpu-per-100k-requests` (<= 1x);
//! - the ECDSA full handshakes again with balancer built with ring (`cargo
//!   build --release --no-default-features --features ring`, into
//!   `<target>/bench-ring`): `handshakes-per-s-ecdsa-ring`, no target, and
//!   `handshakes-per-s-ring-vs-aws-lc-rs`; they show what the default
//!   provider, aws-lc-rs, is worth. Not with `--dev-build` (the report lists
//!   it as not measured).
//!
//! The TLS version and ALPN protocol wrk got are balancer's counters
//! (`balancer_tls_versions_total`, `balancer_tls_alpn_total`); what each
//! proxy negotiates with a client offering h2 is probed once with `openssl
//! s_client` and reported too. Handshake cases run 6 pairs of 2 s trials,
//! the keep-alive case 8 (`--quick`: one pair of 1 s each).
//!
//! A peer that cannot be started, more than 1% of requests failing, or an
//! origin refusing a request fails the section.

use std::{collections::BTreeMap, path::Path, process::Command};

use anyhow::{Context as _, bail};
use balancer_tests::{
    http::scrape,
    tls::{Key, Pki},
};
use serde_json::{Value, json};

use crate::{
    bench_http::{
        CONNECTIONS, Load, LoadFigures, PairSpec, Persistence, Proxies, Rig, Trial, busy_figures,
        load_figures, pair_figure, pairs_of, summarize, with_rig,
    },
    cpu_cap::CpuCap,
    report::{Figure, Target, tool_version},
};

/// Full handshakes/s balancer must reach, as a multiple of HAProxy's.
const HANDSHAKE_TARGET: f64 = 1.2;
/// The share of its CPU (%) each proxy gets in the capped handshake cases
/// (see [`crate::cpu_cap`]): below what either uses uncapped, so that each
/// is the bottleneck of its own trials, not wrk.
const CAP_PERCENT: u32 = 25;
/// A resumed share of the handshake trials above this fails the section:
/// its figures would not be of full handshakes.
const MAX_RESUMED_SHARE: f64 = 0.01;

pub fn run(
    bin: &Path,
    ring: Option<&Path>,
    bench_bin: &Path,
    quick: bool,
) -> anyhow::Result<Value> {
    with_rig("bench-https", bench_bin, |rig| {
        measure(bin, ring, quick, rig)
    })
}

/// One pair of TLS proxies measured under full handshakes.
struct Handshakes {
    /// The figures' id suffix: `ecdsa`, `rsa`, `ecdsa-ring`.
    id: &'static str,
    /// What it is, for figures and the report.
    what: &'static str,
    results: Vec<Vec<Trial>>,
    /// The handshakes balancer counted in these trials (and its counters).
    balancer_tls: Value,
    balancer_config: String,
    haproxy_config: String,
}

/// `trials` pairs of `load` (a new connection per request) against `pair`,
/// the handshakes balancer counted checked against the load.
fn handshakes(
    rig: &Rig,
    pair: &Proxies,
    load: Load,
    trials: usize,
    secs: u32,
    id: &'static str,
    what: &'static str,
) -> anyhow::Result<Handshakes> {
    println!("  TLS handshakes, {what}, wrk -c{CONNECTIONS} 'Connection: close':");
    let before = TlsCounters::read(pair)?;
    let results = rig.trials(&pair.targets(), load, trials, secs)?;
    let after = TlsCounters::read(pair)?;
    Ok(Handshakes {
        id,
        what,
        results,
        balancer_tls: check_handshakes(&before, &after, load.fresh_sessions, what)?,
        balancer_config: pair.bal_cfg.clone(),
        haproxy_config: pair.hap_cfg.clone(),
    })
}

fn measure(bin: &Path, ring: Option<&Path>, quick: bool, rig: &mut Rig) -> anyhow::Result<Value> {
    rig.versions["openssl"] = json!(tool_version("openssl", &["version"])?);
    let pki = Pki::new(&rig.dir.join("pki")).context("making the test CA (openssl)")?;
    let ecdsa = pki.server("ecdsa.pem", &["localhost"], Key::EcdsaP256, 30)?;
    let rsa = pki.server("rsa.pem", &["localhost"], Key::Rsa2048, 30)?;
    // Short trials, many pairs (see http-cookie), fewer for each
    // handshake case than for the keep-alive one: the whole section stays
    // within about three minutes.
    let secs = if quick { 1 } else { 2 };
    let (trials, ka_trials) = if quick { (1, 1) } else { (6, 8) };
    rig.fresh_sessions()?;
    let full = Load {
        tls: true,
        close: true,
        fresh_sessions: true,
        ..Load::KEEP_ALIVE
    };
    let resumed = Load {
        fresh_sessions: false,
        ..full
    };
    let keep_alive = Load {
        tls: true,
        ..Load::KEEP_ALIVE
    };

    // ECDSA: full handshakes, resumed ones, then keep-alive requests, on
    // one pair.
    let pair = rig.start_proxies(bin, &spec("-ecdsa", &ecdsa))?;
    let workers = pair.workers()?;
    let negotiated = json!({
        "balancer": probe(pair.bal_port)?,
        "haproxy": probe(pair.hap_port)?,
    });
    let targets = pair.targets();
    for load in [full, resumed, keep_alive] {
        rig.record_wrk(&targets, load, &[1, secs]);
    }
    let capping = CpuCap::available();
    let mut cases = Vec::new();
    for (load, id, what) in [
        (full, "ecdsa", "ECDSA P-256 certificate"),
        (
            resumed,
            "ecdsa-resumed",
            "ECDSA P-256 certificate, wrk resuming its session (TLS 1.3 ticket)",
        ),
    ] {
        cases.push(handshakes(rig, &pair, load, trials, secs, id, what)?);
    }
    if capping.is_ok() {
        let _caps = cap(rig, &pair, "ecdsa")?;
        cases.push(handshakes(
            rig,
            &pair,
            full,
            trials,
            secs,
            "ecdsa-capped",
            "ECDSA P-256 certificate, each proxy capped at 25% of its CPU",
        )?);
    }
    println!("  keep-alive requests over TLS, wrk -c{CONNECTIONS}:");
    let ka = rig.trials(&targets, keep_alive, ka_trials, secs)?;
    let (bal_cfg, hap_cfg) = pair.stop("ECDSA")?;

    // RSA 2048, and ECDSA with balancer built with ring: full handshakes,
    // capped.
    let mut runs = vec![(
        bin,
        "-rsa",
        &rsa,
        "rsa-capped",
        "RSA 2048 certificate, each proxy capped at 25% of its CPU",
    )];
    if let Some(ring) = ring {
        runs.push((
            ring,
            "-ring",
            &ecdsa,
            "ecdsa-ring-capped",
            "ECDSA P-256 certificate, balancer built with ring, each proxy capped at 25% of its \
             CPU",
        ));
    }
    if capping.is_err() {
        runs.clear();
    }
    for (bin, tag, pem, id, what) in runs {
        let pair = rig.start_proxies(bin, &spec(tag, pem))?;
        rig.record_wrk(&pair.targets(), full, &[secs]);
        let caps = cap(rig, &pair, tag)?;
        cases.push(handshakes(rig, &pair, full, trials, secs, id, what)?);
        drop(caps);
        pair.stop(what)?;
    }
    let origin_requests = rig.finish()?;

    let peer = rig.peer();
    let names = ["balancer", "haproxy"];
    let mut figures = Vec::new();
    let mut by_case = serde_json::Map::new();
    let mut lines = Vec::new();
    for c in &cases {
        let summary = summarize(names, &c.results);
        let pairs = pairs_of(&c.results);
        let kind = if c.id.ends_with("resumed") {
            "resumed"
        } else {
            "full"
        };
        // The targets are for full handshakes with the default build, each
        // proxy capped (uncapped, wrk is the bottleneck: see the busy
        // figures); the ring build and resumed handshakes are there to
        // compare.
        let targeted = matches!(c.id, "ecdsa-capped" | "rsa-capped");
        let rate = pair_figure(
            &summary,
            &peer,
            format!("handshakes-per-s-{}", c.id),
            format!(
                "balancer {kind} TLS handshakes/s, a new connection per request, {}",
                c.what
            ),
            "handshakes/s",
            "requests_per_s",
            1.0,
        );
        let ratio = rate.ratio().unwrap_or(f64::NAN);
        figures.push(if targeted {
            rate.target(Target::ratio_at_least(ratio, HANDSHAKE_TARGET, &peer))
        } else {
            rate
        });
        let pair_median = pairs["requests_per_s_median"].as_f64().unwrap_or(f64::NAN);
        figures.extend([
            pair_figure(
                &summary,
                &peer,
                format!("cpu-per-1k-handshakes-{}", c.id),
                format!(
                    "balancer CPU time (user+system) per 1,000 {kind} handshakes (and their \
                     requests), {}",
                    c.what
                ),
                "s",
                "cpu_s_per_100k",
                0.01,
            ),
            Figure::new(
                format!("handshakes-per-s-{}-pairs", c.id),
                format!(
                    "balancer/HAProxy {kind} handshakes/s, {}, median of the {trials} per-pair \
                     ratios (balancer ahead in {} of them)",
                    c.what, pairs["requests_per_s_pairs_at_least_1"]
                ),
                "x",
                pair_median,
            ),
        ]);
        // Whether the proxy, and not wrk, limited the rate.
        if matches!(c.id, "ecdsa" | "ecdsa-capped") {
            figures.extend(busy_figures(
                &summary,
                &peer,
                &format!("handshakes-{}-", c.id),
                &format!(" of full handshakes, {}", c.what),
            ));
        }
        lines.push(format!(
            "  {kind} handshakes, {}: {ratio:.2}x HAProxy{} (pairs: median {pair_median:.2}x); \
             balancer counted {} full and {} resumed",
            c.what,
            if targeted {
                format!(
                    " (target >= {HANDSHAKE_TARGET}: {})",
                    verdict(ratio >= HANDSHAKE_TARGET)
                )
            } else {
                String::new()
            },
            c.balancer_tls["full"],
            c.balancer_tls["resumed"],
        ));
        by_case.insert(
            c.id.replace('-', "_"),
            json!({
                "what": c.what,
                "proxies": summary,
                "pairs": pairs,
                "balancer_tls": c.balancer_tls,
                "balancer_config": c.balancer_config,
                "haproxy_config": c.haproxy_config,
            }),
        );
    }

    // The two providers side by side: each case's balancer median, in
    // trials of their own (HAProxy's ratios above are the like-for-like
    // comparison).
    let rate = |id: &str| {
        figures
            .iter()
            .find(|f| f.id == format!("handshakes-per-s-{id}"))
            .map(|f| f.value)
    };
    if let (Some(ring), Some(aws)) = (rate("ecdsa-ring-capped"), rate("ecdsa-capped")) {
        figures.push(
            Figure::new(
                "handshakes-per-s-ring-vs-aws-lc-rs",
                "balancer built with ring: full handshakes/s, ECDSA P-256 certificate, capped at \
                 25% of its CPU (peer: the default build, aws-lc-rs, capped alike; medians of \
                 their own trials)",
                "handshakes/s",
                ring,
            )
            .peer("balancer with aws-lc-rs", aws),
        );
    }

    let summary = summarize(names, &ka);
    let pairs = pairs_of(&ka);
    let LoadFigures {
        figures: ka_figures,
        rps_ratio,
        p99_ratio,
        cpu_ratio,
    } = load_figures(
        &summary,
        &pairs,
        &peer,
        "tls-",
        ", keep-alive over TLS (ECDSA P-256 certificate)",
        1.0,
    );
    figures.extend(ka_figures);

    println!(
        "https: medians of {trials} pair(s) of {secs} s trials per handshake case, \
         {ka_trials} keep-alive, wrk -c{CONNECTIONS}, cookie SERVER=s0 on every request:"
    );
    for l in &lines {
        println!("{l}");
    }
    println!(
        "  keep-alive over TLS: requests/s {rps_ratio:.2}x (target >= 1: {}), p99 \
         {p99_ratio:.2}x (target <= 1: {}), CPU per request {cpu_ratio:.2}x (target <= 1: {}); \
         pairs: requests/s median {:.2}x",
        verdict(rps_ratio >= 1.0),
        verdict(p99_ratio <= 1.0),
        verdict(cpu_ratio <= 1.0),
        pairs["requests_per_s_median"].as_f64().unwrap_or(f64::NAN),
    );
    println!("  negotiated with openssl s_client -alpn h2,http/1.1: {negotiated}");

    let mut skipped: Vec<Value> = Vec::new();
    if ring.is_none() {
        skipped.push(json!({
            "name": "balancer built with ring (handshakes-per-s-ecdsa-ring-capped)",
            "reason": "not built for --dev-build runs",
        }));
    }
    if let Err(why) = &capping {
        skipped.push(json!({
            "name": "full handshakes with each proxy capped (handshakes-per-s-*-capped)",
            "reason": why,
        }));
    }
    Ok(json!({
        "sections": [{
            "name": "https",
            "how": format!("the http-cookie section's setup with TLS on both proxies' frontend \
                            (the same PEM files, made by openssl: an ECDSA P-256 and an RSA 2048 \
                            certificate; ALPN h2,http/1.1 offered; wrk offers no ALPN and \
                            speaks HTTP/1.1), 'Cookie: SERVER=s0' on every request, wrk -t1 \
                            -c{CONNECTIONS}; handshakes: 'Connection: close' on every request, \
                            so each opens a connection. wrk resumes its last TLS session on \
                            each reconnection (SSL_clear keeps it); for full handshakes it runs \
                            with LD_PRELOAD=no_resume.so, which drops the session after each \
                            SSL_clear (xtask/src/bench_http/no_resume.c), and balancer's \
                            handshake counters must show at most 1% resumed; full handshakes \
                            with the ECDSA certificate, uncapped (wrk's CPU is the limit: the \
                            busy figures) and with each proxy capped at {CAP_PERCENT}% of its \
                            CPU (a cgroup of its own, CFS quota {CAP_PERCENT}% of a 10 ms \
                            period: each proxy is then the bottleneck of its own trials; \
                            figures ending -capped, the targeted ones), resumed ones (wrk as it \
                            is, figures ending -resumed), full ones with the RSA certificate \
                            and with the ECDSA one and balancer built with ring (cargo \
                            --no-default-features --features ring; figures ending -ring), both \
                            capped, {trials} pair(s) each; then keep-alive requests over TLS on the \
                            ECDSA pair (figures tls-*, {ka_trials} pairs); each case: one 1 s \
                            warm-up per proxy, then pairs of {secs} s trials, the proxies in \
                            turn (ABBA...); figures: each proxy's medians; 'pairs': each \
                            trial's ratio to the other proxy's trial of its pair; CPU from \
                            /proc/PID/stat utime+stime of the proxy process, CPU busy shares \
                            from /proc/stat; the TLS version and ALPN protocol wrk got: \
                            balancer's counters ('handshakes'), what a client offering h2 gets: \
                            openssl s_client ('negotiated')"),
            "commands": rig.commands,
            "versions": rig.versions,
            "cpus": rig.cpus(workers).json(),
            "figures": figures.iter().map(Figure::json).collect::<Vec<_>>(),
            "skipped_peers": skipped,
            "handshakes": by_case,
            "keep_alive": {"connections": CONNECTIONS, "proxies": summary, "pairs": pairs},
            "negotiated": negotiated,
            "workers": {"balancer_http_workers": workers.0, "haproxy_threads": workers.1},
            "origin_requests": origin_requests,
            "balancer_config": bal_cfg,
            "haproxy_config": hap_cfg,
        }]
    }))
}

/// Each proxy of `pair` capped at [`CAP_PERCENT`] of its CPU until the
/// caps are dropped.
fn cap(rig: &mut Rig, pair: &Proxies, tag: &str) -> anyhow::Result<[CpuCap; 2]> {
    let name = |who: &str| format!("blb-bench-{}-{who}{tag}", std::process::id());
    rig.commands.push(format!(
        "(both proxies) mkdir /sys/fs/cgroup/cpu/NAME; echo 10000 > cpu.cfs_period_us; echo {} \
         > cpu.cfs_quota_us; echo PID > cgroup.procs",
        100 * CAP_PERCENT
    ));
    Ok([
        CpuCap::new(&name("balancer"), pair.bal.pid(), CAP_PERCENT)?,
        CpuCap::new(&name("haproxy"), pair.hap.pid(), CAP_PERCENT)?,
    ])
}

/// Both proxies with the cookie and TLS with the certificate in `pem`.
fn spec<'a>(tag: &'a str, pem: &'a Path) -> PairSpec<'a> {
    PairSpec {
        tag,
        persistence: Persistence::Cookie,
        tls: Some(pem),
        log: None,
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "meets" } else { "misses" }
}

/// balancer's TLS counters (`balancer_tls_*` of its `/metrics`).
struct TlsCounters {
    full: u64,
    resumed: u64,
    /// Every counter: handshakes, versions, ALPN protocols.
    all: Value,
}

impl TlsCounters {
    fn read(pair: &Proxies) -> anyhow::Result<TlsCounters> {
        let addr = pair.metrics.context("balancer serves no /metrics")?;
        let m = scrape(addr);
        let count = |family: &str, label: &str| -> u64 {
            let prefix = format!("balancer_tls_{family}_total{{");
            m.iter()
                .filter(|(k, _)| k.starts_with(&prefix) && k.contains(&format!("=\"{label}\"")))
                .map(|(_, v)| *v as u64)
                .sum()
        };
        let by = |family: &str, labels: &[&str]| -> BTreeMap<String, u64> {
            labels
                .iter()
                .map(|l| ((*l).to_owned(), count(family, l)))
                .collect()
        };
        Ok(TlsCounters {
            full: count("handshakes", "full"),
            resumed: count("handshakes", "resumed"),
            all: json!({
                "handshakes": by("handshakes", &["full", "resumed"]),
                "versions": by("versions", &["TLSv1.2", "TLSv1.3"]),
                "alpn": by("alpn", &["h2", "http/1.1", "none"]),
            }),
        })
    }
}

/// The handshakes balancer counted between `before` and `after` (its
/// trials of a case and their warm-up), checked against what the case
/// measures: with `fresh_sessions`, more than [`MAX_RESUMED_SHARE`] of
/// them resumed fails the section (the figures would not be of full
/// handshakes); without, most of them must be resumed.
fn check_handshakes(
    before: &TlsCounters,
    after: &TlsCounters,
    fresh_sessions: bool,
    what: &str,
) -> anyhow::Result<Value> {
    let full = after.full - before.full;
    let resumed = after.resumed - before.resumed;
    let total = (full + resumed) as f64;
    let ok = if fresh_sessions {
        full > 0 && resumed as f64 <= MAX_RESUMED_SHARE * total
    } else {
        resumed > full
    };
    if !ok {
        bail!(
            "{what}: balancer counted {full} full and {resumed} resumed TLS handshakes in these \
             trials: not what they measure"
        );
    }
    Ok(json!({"full": full, "resumed": resumed, "counters_after": after.all}))
}

/// What a client offering ALPN h2,http/1.1 negotiates with the proxy on
/// `port` (`openssl s_client`): version, cipher suite, key exchange group,
/// signature, ALPN protocol.
fn probe(port: u16) -> anyhow::Result<Value> {
    let out = Command::new("openssl")
        .args(["s_client", "-alpn", "h2,http/1.1", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .output()
        .context("running openssl s_client")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    };
    // "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384"
    let (version, cipher) = text
        .lines()
        .find_map(|l| l.strip_prefix("New, ")?.split_once(", Cipher is "))
        .with_context(|| format!("openssl s_client to 127.0.0.1:{port}: no handshake: {text}"))?;
    Ok(json!({
        "version": version,
        "ciphersuite": cipher.trim(),
        "group": field("Server Temp Key"),
        "signature": field("Peer signature type"),
        "alpn": field("ALPN protocol"),
    }))
}
