//! `cargo xtask demo`: the "see it work" command. Builds a namespace lab
//! (a client host with a dozen source addresses, the balancer, three
//! backends running real HTTP servers and holding the VIP), starts
//! `balancer run` with a sticky L4 service, and shows: every client sticking
//! to one backend, a backend going down (only its clients move), coming
//! back (nobody moves back), the stick table and the counters.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use balancer_tests::{
    lab::{Lab, LabSpec, output},
    packets::truncated_ipv4,
    proc::wait_for,
};

use crate::util::{build_balancer, is_root};

const VIP: &str = "198.18.2.100";
const PORT: u16 = 80;
const SOURCES: usize = 12;
const REQUESTS: usize = 3;

pub fn run() -> anyhow::Result<()> {
    if !is_root() {
        bail!("the demo creates network namespaces and attaches XDP: run as root");
    }
    let started = Instant::now();
    crate::setup::run()?;
    let bin = build_balancer(false)?;
    // SAFETY: single-threaded at this point; the lab reads it to find the binary.
    unsafe { std::env::set_var("BALANCER_BIN", &bin) };
    balancer_tests::lab::sweep()?;
    let bpffs_before = list_dir(Path::new(balancer_tests::lab::BPFFS));

    let mut lab = Lab::new(LabSpec {
        clients: 1,
        backends: 3,
    })?;
    let result = show(&lab);
    lab.teardown().context("tearing the lab down")?;
    result?;

    let ours: Vec<_> = output(Command::new("ip").args(["netns", "list"]))?
        .lines()
        .filter(|l| l.starts_with(&lab.id))
        .map(str::to_owned)
        .collect();
    let bpffs_after = list_dir(Path::new(balancer_tests::lab::BPFFS));
    println!("\n== cleanup ==");
    println!(
        "  lab namespaces left: {}",
        if ours.is_empty() {
            "none".into()
        } else {
            ours.join(" ")
        }
    );
    println!(
        "  {} before: [{}], after: [{}]",
        balancer_tests::lab::BPFFS,
        bpffs_before.join(" "),
        bpffs_after.join(" ")
    );
    if !ours.is_empty() || bpffs_before != bpffs_after {
        bail!("the demo left something behind");
    }
    println!(
        "\ndemo finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn show(lab: &Lab) -> anyhow::Result<()> {
    println!("\n== lab {} ==", lab.id);
    println!(
        "  client host   {} with {SOURCES} extra sources in 198.18.8.0/22",
        lab.clients[0].ipv4
    );
    println!(
        "  balancer      {} / {} (XDP on eth0)",
        lab.balancer.ipv4,
        balancer_tests::lab::BALANCER_BACKEND_SIDE_V4
    );
    for (j, s) in lab.backends.iter().enumerate() {
        println!(
            "  backend s{j}    {}  (python3 http.server :{PORT}, VIP {VIP} on lo)",
            s.ipv4
        );
    }
    lab.hold_vips_on_backends(&[VIP.parse()?])?;
    let _http = lab.start_http_backends(PORT)?;
    let servers: String = lab
        .backends
        .iter()
        .enumerate()
        .map(|(j, s)| {
            format!(
                "[[backend.server]]\nname = \"s{j}\"\naddress = \"{}\"\n",
                s.ipv4
            )
        })
        .collect();
    let config = lab.write_service_config(
        "balancer.toml",
        "",
        &format!(
            "[[frontend]]\nname = \"web\"\nbind = \"{VIP}:{PORT}\"\ndefault_backend = \"web\"\n\n\
             [[backend]]\nname = \"web\"\nforward = \"dsr-l2\"\n\
             stick_table = {{ type = \"ip\", size = \"1m\", expire = \"30m\" }}\n{servers}"
        ),
    )?;
    println!("\n== balancer run --config {} ==", config.display());
    for line in std::fs::read_to_string(&config)?.lines() {
        println!("  {line}");
    }
    let mut daemon = lab.start_balancer(&config)?;
    let sources = lab.add_client_sources(0, SOURCES)?;
    cli(lab, &["status"])?;
    cli(lab, &["backend", "list"])?;

    println!("\n== {REQUESTS} requests from each client source to http://{VIP}/ ==");
    let first = round(lab, &sources, None)?;
    println!("\n== balancer backend state s1 down ==");
    cli(lab, &["backend", "state", "s1", "down"])?;
    let second = round(lab, &sources, Some(&first))?;
    let moved = sources.iter().filter(|s| first[s] != second[s]).count();
    let on_s1 = sources.iter().filter(|s| first[s] == "backend s1").count();
    println!("  {moved} clients moved, all of them s1's ({on_s1}); everyone else stayed");
    println!("\n== balancer backend state s1 up ==");
    cli(lab, &["backend", "state", "s1", "up"])?;
    let third = round(lab, &sources, Some(&second))?;
    let back = sources.iter().filter(|s| second[s] != third[s]).count();
    println!("  {back} clients moved back (sticky: they stay where they are)");

    println!("\n== one truncated IPv4 frame to the balancer ==");
    let frame = truncated_ipv4(lab.balancer.mac, lab.clients[0].mac);
    lab.send_raw_frame_to(&lab.balancer, &frame)?;
    let logged = wait_for(Duration::from_secs(5), || {
        daemon.output().contains("malformed packet passed")
    });
    println!("  passed to the stack, counted as malformed, logged by the program: {logged}");

    cli(lab, &["table", "show"])?;
    cli(lab, &["stats"])?;
    let status = daemon.stop()?;
    println!("\n== balancer stopped ({status}); its log ==");
    for line in daemon.output().lines() {
        println!("  {line}");
    }
    let after_stop = lab.xdp_attached(&lab.balancer)?;
    println!(
        "  {} after stop: {} (the data plane outlives the daemon; a restart takes it over)",
        lab.balancer.ifname,
        after_stop.as_deref().unwrap_or("no XDP program")
    );
    println!("\n$ balancer detach --pin-dir {}", lab.pin_dir.display());
    let bin = balancer_tests::balancer_bin();
    let out = lab.balancer.run(
        bin.to_str().unwrap_or_default(),
        &[
            "detach",
            "--pin-dir",
            lab.pin_dir.to_str().unwrap_or_default(),
        ],
    )?;
    for line in out.lines() {
        println!("  {line}");
    }
    let after_detach = lab.xdp_attached(&lab.balancer)?;
    println!(
        "  {} after detach: {}",
        lab.balancer.ifname,
        after_detach.as_deref().unwrap_or("no XDP program")
    );
    if !status.success()
        || after_stop.is_none()
        || after_detach.is_some()
        || lab.pin_dir.exists()
        || moved != on_s1
        || back != 0
    {
        bail!("the demo did not behave as described above");
    }
    Ok(())
}

fn cli(lab: &Lab, args: &[&str]) -> anyhow::Result<()> {
    println!("\n$ balancer {}", args.join(" "));
    for line in lab.cli(args)?.lines() {
        println!("  {line}");
    }
    Ok(())
}

/// REQUESTS requests from each source; prints who answered; returns the
/// backend each source reached (all its answers must agree).
fn round(
    lab: &Lab,
    sources: &[std::net::Ipv4Addr],
    before: Option<&BTreeMap<std::net::Ipv4Addr, String>>,
) -> anyhow::Result<BTreeMap<std::net::Ipv4Addr, String>> {
    let mut out = BTreeMap::new();
    for src in sources {
        let mut answers = Vec::new();
        for _ in 0..REQUESTS {
            let body = lab.clients[0]
                .run(
                    "curl",
                    &[
                        "-sf",
                        "--max-time",
                        "3",
                        "--interface",
                        &src.to_string(),
                        &format!("http://{VIP}:{PORT}/"),
                    ],
                )
                .with_context(|| format!("GET from {src}"))?;
            answers.push(body.trim().to_owned());
        }
        let note = match before.map(|b| &b[src]) {
            Some(prev) if *prev != answers[0] => format!("   (moved from {prev})"),
            _ => String::new(),
        };
        println!("  {src:<14} -> {}{note}", answers.join(", "));
        if answers.iter().any(|a| *a != answers[0]) {
            bail!("{src} was answered by different backends: {answers:?}");
        }
        out.insert(*src, answers[0].clone());
    }
    Ok(out)
}

fn list_dir(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
