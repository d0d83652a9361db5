//! `cargo xtask demo`: the "see it work" command. Builds a namespace lab
//! (clients, the balancer, backends running real HTTP servers), attaches
//! the XDP program, sends traffic through it and shows what the data plane
//! saw. Later stages show stickiness and failover here.

use std::{
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

const PORT: u16 = 8080;
const REQUESTS_PER_CLIENT: usize = 4;

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
        clients: 2,
        backends: 2,
    })?;
    println!("\n== lab {} ==", lab.id);
    println!(
        "  balancer  {:<14} {}",
        lab.balancer.ipv4, lab.balancer.ipv6
    );
    for c in &lab.clients {
        println!("  client    {:<14} {}", c.ipv4, c.ipv6);
    }
    for s in &lab.backends {
        println!(
            "  backend   {:<14} {}   (python3 http.server :{PORT})",
            s.ipv4, s.ipv6
        );
    }
    let result = show(&lab);
    lab.teardown().context("tearing the lab down")?;
    result?;

    // Nothing left behind.
    let leftover = balancer_tests::lab::stale_namespaces()?;
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
    if !ours.is_empty() || !leftover.is_empty() || bpffs_before != bpffs_after {
        bail!("the demo left something behind");
    }
    println!(
        "\ndemo finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn show(lab: &Lab) -> anyhow::Result<()> {
    let _http = lab.start_http_backends(PORT)?;
    let config = lab.write_config("balancer.toml", "")?;
    println!("\n== balancer run --config {} ==", config.display());
    print!("{}", std::fs::read_to_string(&config)?);
    let mut daemon = lab.start_balancer(&config)?;
    let attached = lab
        .xdp_attached(&lab.balancer)?
        .unwrap_or_else(|| "nothing attached!".into());
    println!("  {}: {attached}", lab.balancer.ifname);
    let before = stats_json(lab)?;

    println!(
        "\n== traffic: {REQUESTS_PER_CLIENT} HTTP requests per client, through the balancer =="
    );
    for c in &lab.clients {
        for i in 0..REQUESTS_PER_CLIENT {
            let s = &lab.backends[i % lab.backends.len()];
            let url = if i % 2 == 0 {
                format!("http://{}:{PORT}/", s.ipv4)
            } else {
                format!("http://[{}]:{PORT}/", s.ipv6)
            };
            let body = c
                .run("curl", &["-sf", "--max-time", "5", &url])
                .with_context(|| format!("curl {url} from {}", c.ipv4))?;
            println!("  {:<14} GET {url:<34} -> {}", c.ipv4, body.trim());
        }
    }

    println!("\n== one truncated IPv4 frame (14-byte Ethernet + 6 bytes of IP) to the balancer ==");
    let frame = truncated_ipv4(lab.balancer.mac, lab.clients[0].mac);
    lab.send_raw_frame_to(&lab.balancer, &frame)?;
    let logged = wait_for(Duration::from_secs(5), || {
        daemon.output().contains("malformed packet passed")
    });
    println!("  passed to the stack, counted as malformed, logged by the program: {logged}");

    let after = stats_json(lab)?;
    println!("\n== what the XDP program counted (balancer stats), during the traffic ==");
    println!("  {:<12} {:>10} {:>12}", "class", "packets", "bytes");
    let classes = after["classes"].as_object().context("stats JSON")?;
    for (name, c) in classes {
        let b = &before["classes"][name];
        let delta = |k: &str| {
            c[k].as_u64()
                .unwrap_or(0)
                .saturating_sub(b[k].as_u64().unwrap_or(0))
        };
        let (p, by) = (delta("packets"), delta("bytes"));
        if p > 0 {
            println!("  {name:<12} {p:>10} {by:>12}");
        }
    }
    println!("\n== balancer stats (CLI, totals since start) ==");
    print!(
        "{}",
        output(
            Command::new(balancer_tests::balancer_bin())
                .arg("stats")
                .arg("--pin-dir")
                .arg(&lab.pin_dir)
        )?
    );

    let status = daemon.stop()?;
    println!("\n== balancer stopped ({status}); its log ==");
    for line in daemon.output().lines() {
        println!("  {line}");
    }
    let after_stop = lab.xdp_attached(&lab.balancer)?;
    println!(
        "  {} after stop: {}",
        lab.balancer.ifname,
        after_stop.as_deref().unwrap_or("no XDP program")
    );
    if !status.success() || after_stop.is_some() {
        bail!("the balancer did not stop cleanly");
    }
    Ok(())
}

fn stats_json(lab: &Lab) -> anyhow::Result<serde_json::Value> {
    Ok(lab.balancer_stats()?)
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
