//! The systems under test of `xdp-pps` and their configurations: the
//! balancer daemon, the bare XDP_TX floor, nftables DNAT on a source hash,
//! HAProxy `stick on src` (TCP mode), and the outside generator (trafgen).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use balancer_tests::proc::{Proc, wait_for};

use super::lab::{LB_IF, LB_MAC, PORT, PpsLab, VIP};

/// `balancer run` in the lb namespace, stick table on source address,
/// dsr-l2 to every backend (XDP_REDIRECT to the backend's veth).
pub fn start_daemon(lab: &PpsLab, bin: &Path) -> anyhow::Result<Proc> {
    let servers: String = lab
        .backends
        .iter()
        .enumerate()
        .map(|(j, b)| {
            format!(
                "[[backend.server]]\nname = \"s{j}\"\naddress = \"{}\"\n\n",
                b.addr
            )
        })
        .collect();
    let config = lab.dir.join("balancer.toml");
    // insert_cap = 0: the warm-up stores 65,536 sources at 100 kpps, faster
    // than the default flood guard lets in (the guard is not measured here).
    std::fs::write(
        &config,
        format!(
            "[dataplane]\ninterfaces = [\"{LB_IF}\"]\nxdp_mode = \"native\"\npin_dir = \"{}\"\n\
             insert_cap = 0\n\n\
             [admin]\nsocket = \"{}\"\n\n\
             [[frontend]]\nname = \"web\"\nbind = \"{VIP}:{PORT}\"\nproto = \"tcp\"\n\
             default_backend = \"web\"\n\n\
             [[backend]]\nname = \"web\"\nforward = \"dsr-l2\"\n\
             stick_table = {{ type = \"ip\", size = \"1m\", expire = \"30m\" }}\n\n{servers}",
            lab.pin_dir.display(),
            lab.dir.join("admin.sock").display()
        ),
    )?;
    let mut cmd = lab.cmd(&lab.lb_ns, bin);
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--reset")
        .env("RUST_LOG", "info");
    let mut p = Proc::spawn("balancer", cmd, &lab.dir)?;
    let mut exited = None;
    let ready = wait_for(Duration::from_secs(30), || {
        if let Ok(Some(st)) = p.try_wait() {
            exited = Some(st);
            return true;
        }
        p.output().contains("running: XDP on")
    });
    if let Some(st) = exited {
        bail!("balancer exited early ({st}): {}", p.output());
    }
    if !ready {
        bail!("balancer not ready in 30 s: {}", p.output());
    }
    Ok(p)
}

/// Stop the daemon and remove the XDP attachment it leaves on purpose.
pub fn stop_daemon(lab: &PpsLab, bin: &Path, mut p: Proc) -> anyhow::Result<()> {
    let st = p.stop()?;
    if !st.success() {
        bail!("balancer exited with {st}: {}", p.output());
    }
    let out = lab
        .cmd(&lab.lb_ns, bin)
        .arg("detach")
        .arg("--pin-dir")
        .arg(&lab.pin_dir)
        .output()?;
    if !out.status.success() {
        bail!("balancer detach: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// `balancer-bench-xdp --program bare` on the lb's interface.
pub fn attach_bare(lab: &PpsLab, helper: &Path) -> anyhow::Result<Proc> {
    let mut cmd = lab.cmd(&lab.lb_ns, helper);
    cmd.args(["--interface", LB_IF, "--program", "bare"]);
    let mut p = Proc::spawn("bare", cmd, &lab.dir)?;
    let ok = wait_for(Duration::from_secs(15), || {
        p.output().contains("attached") || p.try_wait().ok().flatten().is_some()
    });
    if !ok || p.try_wait()?.is_some() {
        bail!("bare XDP_TX program did not attach: {}", p.output());
    }
    Ok(p)
}

/// `balancer xdp-pass` on `ifname`: a veth takes frames sent by XDP_TX
/// (or live frames, without GRO) only when it runs XDP.
pub fn xdp_pass(lab: &PpsLab, daemon: &Path, ns: &str, ifname: &str) -> anyhow::Result<Proc> {
    let mut cmd = lab.cmd(ns, daemon);
    cmd.args(["xdp-pass", "--interface", ifname])
        .env("RUST_LOG", "info");
    let mut p = Proc::spawn(&format!("xdp-pass-{ifname}"), cmd, &lab.dir)?;
    let ok = wait_for(Duration::from_secs(15), || {
        p.output().contains("attached XDP") || p.try_wait().ok().flatten().is_some()
    });
    if !ok || p.try_wait()?.is_some() {
        bail!("xdp-pass on {ifname}: {}", p.output());
    }
    Ok(p)
}

/// kube-proxy's nftables style: DNAT on `jhash ip saddr mod N` to the
/// backends, then plain kernel forwarding (conntrack on: NAT needs it).
pub fn nft_dnat_rules(lab: &PpsLab) -> String {
    let map: Vec<String> = lab
        .backends
        .iter()
        .enumerate()
        .map(|(j, b)| format!("{j} : {}", b.addr))
        .collect();
    format!(
        "table ip blb_dnat {{\n chain prerouting {{\n  type nat hook prerouting priority dstnat; \
         policy accept;\n  ip daddr {VIP} tcp dport {PORT} dnat to jhash ip saddr mod {} map {{ {} }}\n \
         }}\n}}\n",
        lab.backends.len(),
        map.join(", ")
    )
}

/// A trafgen packet configuration: TCP SYNs to the VIP from 198.19.x.y, x
/// and y drawn at random per packet (65,536 possible sources), checksums by
/// trafgen. 54-byte frames: trafgen's TCP checksum covers padding as data.
pub fn trafgen_config(gen_mac: &[u8; 6], cpu: usize) -> String {
    let hex = |m: &[u8; 6]| {
        m.iter()
            .map(|b| format!("0x{b:02x}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let v = VIP.octets();
    format!(
        "cpu({cpu}): {{\n  {},\n  {},\n  0x08, 0x00,\n  0x45, 0x00, const16(40), const16(0), const16(0x4000), 64, 6, \
         csumip(14, 33),\n  198, 19, drnd(), drnd(),\n  {}, {}, {}, {},\n  const16(40000), \
         const16({PORT}), const32(1), const32(0), 0x50, 0x02, const16(64240), csumtcp(14, 34), \
         const16(0),\n}}\n",
        hex(&LB_MAC),
        hex(gen_mac),
        v[0],
        v[1],
        v[2],
        v[3]
    )
}

/// HAProxy in TCP mode with `stick on src` on the VIP, one thread.
pub fn haproxy_config(lab: &PpsLab) -> String {
    let servers: String = lab
        .backends
        .iter()
        .enumerate()
        .map(|(j, b)| format!("  server s{j} {}:{PORT}\n", b.addr))
        .collect();
    format!(
        "global\n  maxconn 8000\n  nbthread 1\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
         timeout client 30s\n  timeout server 30s\n\nfrontend fe\n  bind {VIP}:{PORT}\n  \
         default_backend be\n\nbackend be\n  stick-table type ip size 1m expire 30m\n  \
         stick on src\n{servers}"
    )
}

/// A tiny HTTP responder for backend `j` (HAProxy's `http-request return`),
/// listening on every address of its namespace (the VIP too, for DSR).
pub fn responder_config(j: usize) -> String {
    format!(
        "global\n  maxconn 8000\n  nbthread 1\n\ndefaults\n  mode http\n  timeout connect 5s\n  \
         timeout client 30s\n  timeout server 30s\n\nfrontend f\n  bind :{PORT}\n  \
         http-request return status 200 content-type text/plain string \"s{j}\"\n"
    )
}

/// Start HAProxy with `config` in `ns`, pinned to `cpu`; waits until it
/// listens.
pub fn start_haproxy(
    lab: &PpsLab,
    ns: &str,
    name: &str,
    config: &str,
    cpu: Option<usize>,
) -> anyhow::Result<Proc> {
    let file: PathBuf = lab.dir.join(format!("{name}.cfg"));
    std::fs::write(&file, config)?;
    let mut cmd = match cpu {
        Some(c) => {
            let mut cmd = lab.cmd(ns, "taskset");
            cmd.args(["-c", &c.to_string(), "haproxy"]);
            cmd
        }
        None => lab.cmd(ns, "haproxy"),
    };
    cmd.arg("-db").arg("-f").arg(&file);
    let mut p = Proc::spawn(name, cmd, &lab.dir)?;
    let listening = wait_for(Duration::from_secs(10), || {
        if p.try_wait().ok().flatten().is_some() {
            return true;
        }
        lab.cmd(ns, "ss")
            .args(["-Htln", &format!("sport = :{PORT}")])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty())
    });
    if !listening || p.try_wait()?.is_some() {
        bail!("{name} (haproxy) did not start: {}", p.output());
    }
    Ok(p)
}

/// `haproxy -v`, first line.
pub fn haproxy_version() -> anyhow::Result<String> {
    first_line("haproxy", &["-v"])
}

pub fn first_line(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("{program} (cargo xtask setup installs it)"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}
