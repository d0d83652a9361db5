//! `cargo xtask bench --only xdp-pps`: packets per second through a veth
//! lab (see [`lab`]) with the XDP program attached in native mode, against
//! peers measured in the same lab, with the same traffic, in the same run:
//!
//! - the bare XDP_TX floor program (parse, swap MACs, XDP_TX);
//! - nftables DNAT on `jhash ip saddr mod N` (kube-proxy's nftables style)
//!   with kernel forwarding and conntrack;
//! - Linux IPVS with persistence, where the kernel has it (reported as a
//!   skipped peer otherwise);
//! - HAProxy in TCP mode with `stick on src`: a proxy, so measured in
//!   connections/s under a TCP client load (wrk, one connection per
//!   request), next to the balancer's L4 path under the same load.
//!
//! Traffic: `balancer gen` (BPF_PROG_TEST_RUN live frames) sends TCP SYNs
//! to the VIP from 65,536 sources; trafgen (netsniff-ng), the outside
//! reference generator, loads the balancer and nftables once more. Figures
//! are what the
//! receivers counted: packets that arrived at the backends (for the bare
//! program, back at the generator's interface) per second of sending.
//! Each trial says whether the subject or the load side set its rate.

mod lab;
mod peers;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use lab::{GEN_IF, GEN_MAC, LB_IF, LB_MAC, PORT, PpsLab, SOURCES, SRC_BASE, VIP, mac_string};

const BACKENDS: usize = 4;
pub const HELPER: &str = "balancer-bench-xdp";
/// wrk's connections for the TCP load.
const TCP_CONNECTIONS: u32 = 32;
/// Warming the stick table: paced passes over every source.
const WARM_PASSES: usize = 6;
const WARM_RATE: u64 = 100_000;

/// Which CPU the load generator and the subject run on.
#[derive(Clone, Copy)]
struct Cpus {
    generator: Option<usize>,
    subject: Option<usize>,
}

struct Settings {
    trials: usize,
    secs: f64,
}

/// One measurement of one peer.
#[derive(Clone)]
struct Trial {
    /// Frames the generator handed to the kernel.
    sent: u64,
    seconds: f64,
    /// Frames that arrived at the subject's interface.
    offered: u64,
    /// Frames that arrived at each receiver.
    received: Vec<u64>,
}

impl Trial {
    fn delivered_pps(&self) -> f64 {
        self.received.iter().sum::<u64>() as f64 / self.seconds
    }
    fn offered_pps(&self) -> f64 {
        self.offered as f64 / self.seconds
    }
    fn sent_pps(&self) -> f64 {
        self.sent as f64 / self.seconds
    }
    /// Where the trial's rate was set: the subject when it took in
    /// clearly less than was sent to it (its ring overflowed), else the
    /// load side (generator and receivers).
    fn limited_by(&self) -> &'static str {
        if (self.offered as f64) < 0.95 * self.sent as f64 {
            "subject"
        } else {
            "load side (generator/receivers)"
        }
    }

    fn json(&self) -> Value {
        json!({"sent": self.sent, "seconds": self.seconds, "arrived_at_subject": self.offered,
               "received": self.received, "delivered_pps": self.delivered_pps(),
               "offered_pps": self.offered_pps(), "sent_pps": self.sent_pps(),
               "limited_by": self.limited_by()})
    }
}

/// Median trial by delivered pps.
fn median(trials: &[Trial]) -> Trial {
    let mut t = trials.to_vec();
    t.sort_by(|a, b| a.delivered_pps().total_cmp(&b.delivered_pps()));
    t[t.len() / 2].clone()
}

/// `helper`: the `balancer-bench-xdp` binary (built by `bench::run`).
pub fn run(daemon: &Path, helper: &Path, quick: bool) -> anyhow::Result<Value> {
    let commands_ok = ["nft", "trafgen", "haproxy", "wrk", "taskset", "ethtool"]
        .iter()
        .all(|c| crate::util::on_path(c).is_some() || Path::new("/usr/sbin").join(c).exists());
    if !commands_ok {
        bail!("xdp-pps needs nft, trafgen, haproxy, wrk, taskset, ethtool (cargo xtask setup)");
    }
    balancer_tests::lab::sweep()?;
    let mut lab = PpsLab::new(BACKENDS)?;
    let result = measure(&lab, daemon, helper, quick);
    let down = lab.teardown();
    let v = result?;
    down.context("tearing the xdp-pps lab down")?;
    Ok(v)
}

fn measure(lab: &PpsLab, daemon: &Path, helper: &Path, quick: bool) -> anyhow::Result<Value> {
    let set = if quick {
        Settings {
            trials: 1,
            secs: 3.0,
        }
    } else {
        Settings {
            trials: 3,
            secs: 5.0,
        }
    };
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpus = if ncpu >= 2 {
        Cpus {
            generator: Some(1),
            subject: Some(0),
        }
    } else {
        Cpus {
            generator: None,
            subject: None,
        }
    };
    let mut commands: Vec<String> = Vec::new();
    let gen_cmd = gen_args(daemon, cpus, None, None);
    commands.push(format!("(gen ns) {}", shell_words(&gen_cmd)));
    commands.push(format!(
        "(gen ns) {} (warming the stick table, repeated until it holds 99% of the sources)",
        shell_words(&gen_args(
            daemon,
            cpus,
            None,
            Some((u64::from(SOURCES), WARM_RATE))
        ))
    ));

    lab.sinks(true)?;
    // 1. The bare XDP_TX floor: frames come back to the generator's side.
    let bare_prog = peers::attach_bare(lab, helper)?;
    // veth kicks its peer's NAPI after XDP_TX only when the peer runs XDP.
    let pass = peers::xdp_pass(lab, daemon, &lab.gen_ns, GEN_IF)?;
    commands.push(format!(
        "(lb ns) {} --interface {LB_IF} --program bare",
        helper.display()
    ));
    pin(lab, cpus, true)?;
    let bare = trials(lab, daemon, cpus, &set, &[(lab.gen_ns.as_str(), GEN_IF)])?;
    drop(bare_prog);
    drop(pass);
    report_peer("bare XDP_TX floor", &bare);

    // 2. The balancer: warm the stick table with every source, then measure.
    let backends: Vec<(&str, &str)> = lab
        .backends
        .iter()
        .map(|b| (b.ns.as_str(), lab::BACKEND_IF))
        .collect();
    let d = peers::start_daemon(lab, daemon)?;
    commands.push(format!(
        "(lb ns) {} run --config balancer.toml --reset (xdp_mode native, dsr-l2, stick table \
         type ip size 1m, insert_cap 0)",
        daemon.display()
    ));
    pin(lab, cpus, true)?;
    // Paced passes over the whole range until (nearly) every source has
    // its entry: a pass can lose frames when the machine is busy.
    let (mut warm, mut entries) = (0, 0);
    for _ in 0..WARM_PASSES {
        warm += run_gen(
            lab,
            daemon,
            cpus,
            None,
            Some((u64::from(SOURCES), WARM_RATE)),
        )?
        .0;
        std::thread::sleep(Duration::from_millis(300));
        entries = table_count(lab, daemon)?;
        if entries >= u64::from(SOURCES) * 99 / 100 {
            break;
        }
    }
    println!("xdp-pps: stick table warmed by {warm} paced SYNs: {entries} entries");
    if entries < u64::from(SOURCES) * 9 / 10 {
        bail!("the stick table holds {entries} entries after {warm} SYNs from {SOURCES} sources");
    }
    let bal = trials(lab, daemon, cpus, &set, &backends)?;
    report_peer("balancer (XDP, stick table)", &bal);

    // 2b. trafgen against the balancer: the outside reference generator.
    let tg_conf = lab.dir.join("syn.trafgen");
    let tg_cpu = cpus.generator.unwrap_or(0);
    std::fs::write(&tg_conf, peers::trafgen_config(&GEN_MAC, tg_cpu))?;
    let tg_forks = tg_cpu + 1;
    let tg_args = trafgen_args(&tg_conf, tg_forks);
    commands.push(format!(
        "(gen ns) timeout -s INT {} {} (packets only on CPU {tg_cpu}: cpu({tg_cpu}) in the config)",
        set.secs,
        tg_args.join(" ")
    ));
    // trafgen's packet ring fails (EAGAIN) when skbs wait in the veth ring
    // for a NAPI thread on another CPU: the ring holds its socket's whole
    // send buffer. For this run the lb's NAPI runs in softirq, on the
    // sending CPU.
    lab::set_threaded(&lab.lb_ns, LB_IF, false)?;
    let tg = (0..set.trials)
        .map(|_| trial(lab, &backends, || trafgen(lab, &tg_args, set.secs)))
        .collect::<anyhow::Result<Vec<_>>>();
    lab::set_threaded(&lab.lb_ns, LB_IF, true)?;
    let tg_all = tg?;
    report_peer("balancer under trafgen", &tg_all);
    let tg = median(&tg_all);
    let entries_after = table_count(lab, daemon)?;
    peers::stop_daemon(lab, daemon, d)?;

    // 3. nftables DNAT with conntrack, under balancer gen (the lb's veth
    // runs an XDP_PASS program: a veth takes live frames only with NAPI),
    // then under trafgen (no XDP: its skbs take veth's ordinary path).
    lab::nft(lab, &lab.lb_ns, &peers::nft_dnat_rules(lab))?;
    commands.push(format!(
        "(lb ns) nft -f - <<< '{}'",
        peers::nft_dnat_rules(lab).replace('\n', " ")
    ));
    let lb_pass = peers::xdp_pass(lab, daemon, &lab.lb_ns, LB_IF)?;
    commands.push(format!(
        "(lb ns) {} xdp-pass --interface {LB_IF}",
        daemon.display()
    ));
    pin(lab, cpus, true)?;
    let nft = trials(lab, daemon, cpus, &set, &backends)?;
    report_peer("nftables DNAT (jhash saddr)", &nft);
    drop(lb_pass);
    pin(lab, cpus, false)?;
    let nft_tg = (0..set.trials)
        .map(|_| trial(lab, &backends, || trafgen(lab, &tg_args, set.secs)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    report_peer("nftables DNAT under trafgen", &nft_tg);
    let conntrack = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .ok()
        .map(|s| s.trim().to_owned());
    let ct_count = lab
        .cmd(&lab.lb_ns, "cat")
        .arg("/proc/sys/net/netfilter/nf_conntrack_count")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    lab::nft(lab, &lab.lb_ns, "delete table ip blb_dnat\n")?;

    // 4. IPVS: only where the kernel has it.
    let mut skipped = Vec::new();
    if !Path::new("/proc/net/ip_vs").exists() {
        let reason = "this kernel has no IPVS (no /proc/net/ip_vs; built without CONFIG_IP_VS and \
                      module loading is off)";
        println!("xdp-pps: SKIPPED peer IPVS with persistence: {reason}");
        skipped.push(json!({"name": "Linux IPVS with persistence", "reason": reason}));
    } else {
        let reason = "IPVS is present but this section does not drive it yet";
        println!("xdp-pps: SKIPPED peer IPVS with persistence: {reason}");
        skipped.push(json!({"name": "Linux IPVS with persistence", "reason": reason}));
    }

    // 5. Connections/s under a TCP client load: HAProxy (a proxy) and the
    // balancer's L4 path, same backends, same client.
    lab.sinks(false)?;
    let tcp = tcp_phase(lab, daemon, cpus, &set, &mut commands)?;

    // The section.
    let versions = json!({
        "nft": peers::first_line("nft", &["-v"])?,
        "trafgen": peers::first_line("trafgen", &["-v"])?,
        "haproxy": peers::haproxy_version()?,
        "wrk": peers::first_line("wrk", &["-v"])?,
        "kernel": peers::first_line("uname", &["-r"])?,
    });
    let (b, f, n, bt, nt) = (
        median(&bal).delivered_pps(),
        median(&bare).delivered_pps(),
        median(&nft).delivered_pps(),
        tg.delivered_pps(),
        median(&nft_tg).delivered_pps(),
    );
    let ratio = |a: f64, p: f64| if p > 0.0 { a / p } else { f64::NAN };
    let target =
        |ok: bool, text: &str| json!({"text": text, "result": if ok { "meets" } else { "misses" }});
    let spread = |t: &Trial| {
        let total: u64 = t.received.iter().sum();
        let max = t.received.iter().copied().max().unwrap_or(0);
        if total == 0 {
            0.0
        } else {
            max as f64 / total as f64
        }
    };
    let g = median(&bal);
    let mut figures = vec![
        json!({"id": "pps-stick", "what": "balancer XDP (native, stick table, 65,536 sources, table warm): packets/s delivered to the backends vs the bare XDP_TX floor program",
               "unit": "packets/s", "value": b, "peer": {"name": "bare XDP_TX floor", "value": f},
               "ratio": ratio(b, f), "target": target(ratio(b, f) >= 0.9, ">= 0.9x bare"), "measured": true}),
        json!({"id": "pps-vs-nft", "what": "balancer XDP packets/s delivered vs nftables DNAT (jhash ip saddr mod 4, conntrack, kernel forwarding), both under balancer gen",
               "unit": "packets/s", "value": b, "peer": {"name": "nftables DNAT jhash saddr", "value": n},
               "ratio": ratio(b, n), "target": target(ratio(b, n) >= 3.0, ">= 3x nftables DNAT"), "measured": true}),
        json!({"id": "pps-vs-nft-trafgen", "what": "the same comparison under trafgen (the outside generator); see trials.*.limited_by: when trafgen is the limit for both, the ratio says only that",
               "unit": "packets/s", "value": bt, "peer": {"name": "nftables DNAT under trafgen", "value": nt},
               "ratio": ratio(bt, nt), "target": null, "measured": true}),
        json!({"id": "pps-bare", "what": "bare XDP_TX floor program: packets/s back at the generator's interface",
               "unit": "packets/s", "value": f, "peer": null, "ratio": null, "target": null, "measured": true}),
        json!({"id": "pps-nft", "what": "nftables DNAT peer under balancer gen: packets/s delivered to the backends",
               "unit": "packets/s", "value": n, "peer": null, "ratio": null, "target": null, "measured": true}),
        json!({"id": "backend-max-share", "what": "balancer: largest share of the delivered packets one of the 4 backends got (0.25 = even)",
               "unit": "share", "value": spread(&g), "peer": {"name": "nftables DNAT jhash saddr", "value": spread(&median(&nft))},
               "ratio": ratio(spread(&g), spread(&median(&nft))), "target": null, "measured": true}),
        json!({"id": "gen-pps", "what": "generator send rate: balancer gen (live frames) vs trafgen (AF_PACKET), both into the balancer",
               "unit": "packets/s", "value": g.sent_pps(), "peer": {"name": "trafgen", "value": tg.sent_pps()},
               "ratio": ratio(g.sent_pps(), tg.sent_pps()), "target": null, "measured": true}),
    ];
    figures.extend(tcp.figures.iter().cloned());
    println!();
    println!(
        "{:<44} {:>14} {:>14} {:>8}  target",
        "xdp-pps figure", "value", "peer", "ratio"
    );
    for fig in &figures {
        println!(
            "{:<44} {:>14.0} {:>14} {:>8}  {}",
            fig["id"].as_str().unwrap_or_default(),
            fig["value"].as_f64().unwrap_or(f64::NAN)
                * if fig["unit"] == "share" { 1000.0 } else { 1.0 },
            fig["peer"]["value"]
                .as_f64()
                .map_or("-".to_owned(), |v| format!(
                    "{:.0}",
                    v * if fig["unit"] == "share" { 1000.0 } else { 1.0 }
                )),
            fig["ratio"]
                .as_f64()
                .map_or("-".to_owned(), |r| format!("{r:.2}x")),
            fig["target"]["text"]
                .as_str()
                .map_or(String::new(), |t| format!(
                    "{t}: {}",
                    fig["target"]["result"].as_str().unwrap_or_default()
                ))
        );
    }
    println!("(shares printed in per mille)");
    let cpus_json = json!({
        "generator": cpus.generator.map(|c| vec![c]),
        "subject": cpus.subject.map(|c| vec![c]),
        "shared": cpus.generator.is_none(),
        "note": if cpus.generator.is_some() {
            "balancer gen, trafgen, wrk and the receivers (their veth NAPI threads, the HTTP \
             responders) on CPU 1; the subject on CPU 0: the lb interface's NAPI thread \
             (threaded NAPI, where XDP and the kernel's forwarding run) and HAProxy. NAPI \
             threads run SCHED_FIFO 50, the packet generators SCHED_FIFO 10 (so the machine's \
             other work does not set the figures; RT throttling leaves it 5%); wrk, HAProxy and \
             the responders run at normal priority. The machine is shared with other \
             engineers' builds, so figures are noisy"
        } else {
            "one CPU: generator and subject share it"
        },
    });
    Ok(json!({"sections": [{
        "name": "xdp-pps",
        "about": "packets/s through a veth lab, XDP native, 65,536 sources, vs the bare XDP_TX floor, nftables DNAT, (IPVS), and HAProxy stick on src in connections/s",
        "how": format!(
            "namespaces gen -> lb -> {BACKENDS} backends over veths (no bridge), static neighbours, \
             receivers count rx packets on their veth and drop at the netdev ingress hook. \
             Load: balancer gen (BPF_PROG_TEST_RUN live frames) TCP SYN 60-byte frames to \
             {VIP}:{PORT} from {SOURCES} sources {SRC_BASE}/16 at full speed for {} s, \
             {} trial(s) per peer (median). The bare program's frames come back to the \
             generator's interface, which runs an XDP_PASS program (veth only wakes an XDP_TX \
             peer that runs XDP). Balancer: stick table warmed first by paced passes of {} SYNs \
             over every source (see stick_entries), so the measured traffic is stick hits. \
             nftables: the lb's veth runs an XDP_PASS program (a veth takes live frames only \
             with NAPI; GRO, the other way to get it, is off: veth GRO lost most of these \
             SYNs here). trafgen (same SYNs, 54-byte frames, 65,536 random sources in \
             198.19.0.0/16, {} s per trial) loads the balancer and nftables once more. The SYNs repeat per source, so after the first \
             of each nftables does a conntrack lookup plus DNAT per packet (conntrack max {}). \
             In the trafgen runs the lb's NAPI runs in softirq on the sending CPU (with threaded \
             NAPI trafgen's TX_RING fails with EAGAIN: the veth ring holds its socket's send \
             buffer), so trafgen and the subject share CPU {}. Connections/s: wrk \
             -c{TCP_CONNECTIONS} with 'Connection: close' (a new TCP connection per request) \
             from one client address to HAProxy (TCP mode, stick on src, a proxy: it \
             terminates both connections) and to the balancer (L4, DSR: replies bypass it), \
             backends are HAProxy 'http-request return' responders",
            set.secs, set.trials, SOURCES, set.secs,
            conntrack.clone().unwrap_or_else(|| "?".into()), tg_cpu
        ),
        "commands": commands,
        "versions": versions,
        "cpus": cpus_json,
        "figures": figures,
        "skipped_peers": skipped,
        "trials": {
            "bare": bare.iter().map(Trial::json).collect::<Vec<_>>(),
            "balancer": bal.iter().map(Trial::json).collect::<Vec<_>>(),
            "nftables": nft.iter().map(Trial::json).collect::<Vec<_>>(),
            "nftables_trafgen": nft_tg.iter().map(Trial::json).collect::<Vec<_>>(),
            "balancer_trafgen": tg_all.iter().map(Trial::json).collect::<Vec<_>>(),
        },
        "stick_entries": {"after_warmup": entries, "after_runs": entries_after},
        "conntrack": {"max": conntrack, "entries_after_nft_runs": ct_count,
                      "note": "nftables DNAT needs conntrack: every packet pays a conntrack lookup (and a new flow an insert)"},
        "tcp": tcp.detail,
        "gen_mac": mac_string(&GEN_MAC),
        "lb_mac": mac_string(&LB_MAC),
    }]}))
}

/// Pin the subject's receive thread and the receivers' threads.
/// `subject_napi`: the lb's interface runs XDP (so has NAPI) and its
/// receive path goes to a thread of its own.
fn pin(lab: &PpsLab, cpus: Cpus, subject_napi: bool) -> anyhow::Result<()> {
    let (Some(subject), Some(load)) = (cpus.subject, cpus.generator) else {
        return Ok(());
    };
    if subject_napi {
        lab::set_threaded(&lab.lb_ns, LB_IF, true)?;
        if lab.pin_napi(LB_IF, subject)? == 0 {
            bail!("no NAPI thread found for {LB_IF}: cannot pin the subject");
        }
    }
    lab.pin_napi(GEN_IF, load)?;
    lab.pin_napi(lab::BACKEND_IF, load)?;
    Ok(())
}

fn gen_args(
    daemon: &Path,
    cpus: Cpus,
    secs: Option<f64>,
    paced: Option<(u64, u64)>,
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    a.extend(["chrt".into(), "-f".into(), lab::GEN_PRIORITY.into()]);
    if let Some(c) = cpus.generator {
        a.extend(["taskset".into(), "-c".into(), c.to_string()]);
    }
    a.push(daemon.display().to_string());
    a.extend(
        [
            "gen",
            "--interface",
            GEN_IF,
            "--dst",
            &format!("{VIP}:{PORT}"),
            "--dst-mac",
            &mac_string(&LB_MAC),
            "--src",
            &SRC_BASE.to_string(),
            "--src-count",
            &SOURCES.to_string(),
            "--proto",
            "tcp-syn",
        ]
        .map(str::to_owned),
    );
    match (secs, paced) {
        (_, Some((count, rate))) => a.extend([
            "--count".into(),
            count.to_string(),
            "--rate".into(),
            rate.to_string(),
        ]),
        (Some(s), None) => a.extend(["--duration".into(), s.to_string()]),
        (None, None) => a.extend(["--duration".into(), "SECONDS".into()]),
    }
    a
}

/// Run `balancer gen` in the generator namespace: (sent, seconds).
fn run_gen(
    lab: &PpsLab,
    daemon: &Path,
    cpus: Cpus,
    secs: Option<f64>,
    paced: Option<(u64, u64)>,
) -> anyhow::Result<(u64, f64)> {
    let args = gen_args(daemon, cpus, secs, paced);
    let out = lab
        .cmd(&lab.gen_ns, &args[0])
        .args(&args[1..])
        .output()
        .context("running balancer gen")?;
    if !out.status.success() {
        bail!(
            "balancer gen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value =
        serde_json::from_str(text.trim()).with_context(|| format!("gen report {text:?}"))?;
    Ok((
        v["sent"].as_u64().context("gen: sent")?,
        v["seconds"].as_f64().context("gen: seconds")?,
    ))
}

/// trafgen's arguments; the configuration puts the packets on `forks - 1`'s CPU.
fn trafgen_args(conf: &Path, forks: usize) -> Vec<String> {
    vec![
        "chrt".into(),
        "-f".into(),
        lab::GEN_PRIORITY.into(),
        "trafgen".into(),
        "--dev".into(),
        GEN_IF.into(),
        "--conf".into(),
        conf.display().to_string(),
        "--cpus".into(),
        forks.to_string(),
        // Through the qdisc: a full veth ring pushes back instead of
        // failing the packet socket's ring flush.
        "--qdisc-path".into(),
        "--no-sock-mem".into(),
        "--notouch-irq".into(),
        "--no-cpu-stats".into(),
    ]
}

/// trafgen for `secs`, stopped by SIGINT: (sent, wall seconds).
fn trafgen(lab: &PpsLab, args: &[String], secs: f64) -> anyhow::Result<(u64, f64)> {
    let start = Instant::now();
    let out = lab
        .cmd(&lab.gen_ns, "timeout")
        .args(["-s", "INT", &format!("{secs}")])
        .args(args)
        .output()
        .context("running trafgen")?;
    let seconds = start.elapsed().as_secs_f64();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let sent = text
        .lines()
        .find(|l| l.contains("packets outgoing"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .with_context(|| format!("trafgen: no packet count in its output: {text}"))?;
    if sent == 0 {
        bail!("trafgen sent nothing: {text}");
    }
    Ok((sent, seconds))
}

fn trials(
    lab: &PpsLab,
    daemon: &Path,
    cpus: Cpus,
    set: &Settings,
    receivers: &[(&str, &str)],
) -> anyhow::Result<Vec<Trial>> {
    (0..set.trials)
        .map(|_| {
            trial(lab, receivers, || {
                run_gen(lab, daemon, cpus, Some(set.secs), None)
            })
        })
        .collect()
}

/// Counters before and after one load run.
fn trial(
    lab: &PpsLab,
    receivers: &[(&str, &str)],
    load: impl FnOnce() -> anyhow::Result<(u64, f64)>,
) -> anyhow::Result<Trial> {
    let count = || -> anyhow::Result<Vec<u64>> {
        receivers
            .iter()
            .map(|(ns, i)| lab.rx_packets(ns, i))
            .collect()
    };
    let (r0, o0) = (count()?, lab.rx_packets(&lab.lb_ns, LB_IF)?);
    let (sent, seconds) = load()?;
    // Let the rings drain.
    std::thread::sleep(Duration::from_millis(200));
    let (r1, o1) = (count()?, lab.rx_packets(&lab.lb_ns, LB_IF)?);
    let received: Vec<u64> = r1
        .iter()
        .zip(&r0)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    if received.iter().sum::<u64>() == 0 {
        bail!("nothing arrived at the receivers ({sent} frames sent)");
    }
    Ok(Trial {
        sent,
        seconds,
        offered: o1.saturating_sub(o0),
        received,
    })
}

fn report_peer(name: &str, trials: &[Trial]) {
    for t in trials {
        println!(
            "xdp-pps: {name}: sent {:.0} pps, arrived at the subject {:.0} pps, delivered {:.0} pps {:?}, limited by the {}",
            t.sent_pps(),
            t.offered_pps(),
            t.delivered_pps(),
            t.received,
            t.limited_by()
        );
    }
}

fn table_count(lab: &PpsLab, daemon: &Path) -> anyhow::Result<u64> {
    let out = Command::new(daemon)
        .arg("--socket")
        .arg(lab.dir.join("admin.sock"))
        .args(["table", "count"])
        .output()?;
    if !out.status.success() {
        bail!(
            "balancer table count: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

struct Tcp {
    figures: Vec<Value>,
    detail: Value,
}

/// HAProxy (TCP, stick on src) and the balancer's L4 path under the same
/// wrk load; backends are HAProxy responders.
fn tcp_phase(
    lab: &PpsLab,
    daemon: &Path,
    cpus: Cpus,
    set: &Settings,
    commands: &mut Vec<String>,
) -> anyhow::Result<Tcp> {
    let mut responders = Vec::new();
    for (j, b) in lab.backends.iter().enumerate() {
        responders.push(peers::start_haproxy(
            lab,
            &b.ns,
            &format!("responder-s{j}"),
            &peers::responder_config(j),
            cpus.generator,
        )?);
    }
    let url = format!("http://{VIP}:{PORT}/");
    let wrk_args = |secs: f64| -> Vec<String> {
        let mut a = Vec::new();
        if let Some(c) = cpus.generator {
            a.extend(["taskset".into(), "-c".into(), c.to_string()]);
        }
        a.extend([
            "wrk".into(),
            "-t1".into(),
            format!("-c{TCP_CONNECTIONS}"),
            format!("-d{}s", secs.round() as u64),
            "-H".into(),
            "Connection: close".into(),
            url.clone(),
        ]);
        a
    };
    commands.push(format!("(gen ns) {}", shell_words(&wrk_args(set.secs))));

    // HAProxy on the VIP, local to the lb.
    lab.vip_on_lb(true)?;
    let mut hap = peers::start_haproxy(
        lab,
        &lab.lb_ns,
        "haproxy",
        &peers::haproxy_config(lab),
        cpus.subject,
    )?;
    commands.push(format!(
        "(lb ns) taskset -c 0 haproxy -db -f haproxy.cfg <<< '{}'",
        peers::haproxy_config(lab).replace('\n', "; ")
    ));
    pin(lab, cpus, false)?;
    let mut hap_runs = Vec::new();
    for _ in 0..set.trials {
        hap_runs.push(wrk(lab, &wrk_args(set.secs))?);
    }
    let _ = hap.stop();
    lab.vip_on_lb(false)?;
    let hap_cps = median_f(hap_runs.iter().map(|r| r.0));
    println!("xdp-pps: HAProxy stick on src (proxy), wrk connections/s: {hap_runs:?}");

    // The balancer, DSR: backends hold the VIP.
    lab.vip_on_backends(true)?;
    let d = peers::start_daemon(lab, daemon)?;
    pin(lab, cpus, true)?;
    let mut bal_runs = Vec::new();
    for _ in 0..set.trials {
        bal_runs.push(wrk(lab, &wrk_args(set.secs))?);
    }
    peers::stop_daemon(lab, daemon, d)?;
    lab.vip_on_backends(false)?;
    println!("xdp-pps: balancer L4 (DSR), wrk connections/s: {bal_runs:?}");
    let bal_cps = median_f(bal_runs.iter().map(|r| r.0));
    drop(responders);
    let ratio = if hap_cps > 0.0 {
        bal_cps / hap_cps
    } else {
        f64::NAN
    };
    Ok(Tcp {
        figures: vec![
            json!({"id": "cps-haproxy", "what": "HAProxy 2.6 TCP mode, stick on src (a proxy: it terminates the client's and opens its own connection): connections/s under wrk with one connection per request",
                   "unit": "connections/s", "value": hap_cps, "peer": null, "ratio": null, "target": null, "measured": true}),
            json!({"id": "cps-balancer", "what": "balancer L4 (XDP, dsr-l2, stick table) connections/s under the same wrk load, vs HAProxy stick on src",
                   "unit": "connections/s", "value": bal_cps, "peer": {"name": "HAProxy TCP stick on src", "value": hap_cps},
                   "ratio": ratio, "target": null, "measured": true}),
        ],
        detail: json!({
            "haproxy_runs": hap_runs.iter().map(|r| json!({"connections_per_s": r.0, "errors": r.1})).collect::<Vec<_>>(),
            "balancer_runs": bal_runs.iter().map(|r| json!({"connections_per_s": r.0, "errors": r.1})).collect::<Vec<_>>(),
        "note": "one client address: stick on src sends every connection to one backend in both. \
                     wrk and the responders share CPU 1 at normal priority, so the client side is as \
                     likely as the subject to be the limit. HAProxy runs on CPU 0; the kernel's \
                     receive for it runs in softirq on the sending CPU (no XDP on the lb's veth, so \
                     no NAPI thread); the balancer's XDP runs in the lb veth's NAPI thread on CPU 0",
        }),
    })
}

/// Arguments joined for the report, quoted where they hold a space.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

use crate::report::median as median_f;

/// One wrk run: (requests/s = connections/s, errors).
fn wrk(lab: &PpsLab, args: &[String]) -> anyhow::Result<(f64, u64)> {
    let out = lab
        .cmd(&lab.gen_ns, &args[0])
        .args(&args[1..])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("wrk: no Requests/sec in {text}"))?;
    let errors: u64 = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .flat_map(|l| {
            l.split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
        })
        .sum();
    let requests: u64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    if requests == 0 || rps <= 0.0 {
        bail!("wrk completed no request: {text}");
    }
    Ok((rps, errors))
}
