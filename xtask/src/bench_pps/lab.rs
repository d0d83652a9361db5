//! The `xdp-pps` lab: a generator namespace, the system under test, and
//! one namespace per backend, joined by point-to-point veths (no bridge:
//! the receivers must cost as little as possible).
//!
//! ```text
//!   gen ns            lb ns (subject)              backend ns sJ
//!   bpg0 <--------> bpl0        bpbJ <---------------> bps0
//!   198.18.0.10     198.18.0.1  198.18.(16+J).1        198.18.(16+J).10
//! ```
//! The service (VIP) is 198.18.2.100:80; generated sources come from
//! 198.19.0.0/16. Neighbours are static (the sinks drop ARP). Every
//! receiving veth end but the subject's has GRO on, which gives it a NAPI instance: a veth only
//! takes XDP frames (live frames, XDP_TX, XDP_REDIRECT) when its peer has
//! one (for XDP_TX the peer must run an XDP program: veth only wakes such a
//! peer). NAPI runs in threads (`/sys/class/net/IF/threaded`) so the
//! subject's receive path can be pinned to its own CPU.
//!
//! Names: the tests' lab names (`balancer_tests::lab::new_id`,
//! `blb-<pid>-<seq>`): namespaces `<id>-<role>`, pins `/sys/fs/bpf/<id>`,
//! files `$TMPDIR/<id>`. Dropping the lab removes all of it (also on error);
//! `balancer_tests::lab::sweep` removes what a killed run left.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use balancer_tests::lab::{add_ns, ip, ns_command, output, remove_ns, sysctl};
use serde_json::Value;

pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 100);
pub const PORT: u16 = 80;
pub const GEN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub const LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// First generated source; `SOURCES` consecutive addresses follow.
pub const SRC_BASE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
pub const SOURCES: u32 = 65_536;

pub const GEN_IF: &str = "bpg0";
/// SCHED_FIFO priority of the NAPI threads; the generators run below it.
pub const NAPI_PRIORITY: &str = "50";
pub const GEN_PRIORITY: &str = "10";
pub const LB_IF: &str = "bpl0";
pub const BACKEND_IF: &str = "bps0";
pub const GEN_MAC: [u8; 6] = [0x02, 0xb1, 0xbb, 0, 0, 1];
pub const LB_MAC: [u8; 6] = [0x02, 0xb1, 0xbb, 1, 0, 1];

/// One backend: its namespace and the lb's interface towards it.
pub struct Backend {
    pub ns: String,
    pub lb_if: String,
    pub addr: Ipv4Addr,
    pub lb_addr: Ipv4Addr,
    pub mac: [u8; 6],
    pub lb_mac: [u8; 6],
}

pub struct PpsLab {
    pub id: String,
    pub dir: PathBuf,
    pub pin_dir: PathBuf,
    pub gen_ns: String,
    pub lb_ns: String,
    pub backends: Vec<Backend>,
    namespaces: Vec<String>,
}

impl PpsLab {
    pub fn new(backends: usize) -> anyhow::Result<PpsLab> {
        let id = balancer_tests::lab::new_id();
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut lab = PpsLab {
            pin_dir: Path::new("/sys/fs/bpf").join(&id),
            gen_ns: format!("{id}-gen"),
            lb_ns: format!("{id}-lb"),
            backends: (0..backends)
                .map(|j| Backend {
                    ns: format!("{id}-s{j}"),
                    lb_if: format!("bpb{j}"),
                    addr: Ipv4Addr::new(198, 18, 16 + j as u8, 10),
                    lb_addr: Ipv4Addr::new(198, 18, 16 + j as u8, 1),
                    mac: [0x02, 0xb1, 0xbb, 3, 0, j as u8],
                    lb_mac: [0x02, 0xb1, 0xbb, 2, 0, j as u8],
                })
                .collect(),
            id,
            dir,
            namespaces: Vec::new(),
        };
        lab.build()?; // on error, Drop removes what exists
        Ok(lab)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let (g, l) = (self.gen_ns.clone(), self.lb_ns.clone());
        self.add_ns(&g)?;
        self.add_ns(&l)?;
        ip(
            &g,
            &[
                "link", "add", GEN_IF, "type", "veth", "peer", "name", LB_IF, "netns", &l,
            ],
        )?;
        link_up(&g, GEN_IF, &GEN_MAC, &format!("{GEN_ADDR}/24"))?;
        link_up(&l, LB_IF, &LB_MAC, &format!("{LB_ADDR}/24"))?;
        ip(
            &g,
            &["route", "add", "198.18.0.0/15", "via", &LB_ADDR.to_string()],
        )?;
        ip(
            &l,
            &[
                "route",
                "add",
                "198.19.0.0/16",
                "via",
                &GEN_ADDR.to_string(),
            ],
        )?;
        neigh(&g, LB_ADDR, &LB_MAC, GEN_IF)?;
        neigh(&l, GEN_ADDR, &GEN_MAC, LB_IF)?;
        sysctl(&l, "net.ipv4.ip_forward", "1")?;
        for ns in [&g, &l] {
            sysctl(ns, "net.ipv4.conf.all.rp_filter", "0")?;
            sysctl(ns, "net.ipv4.ip_local_port_range", "1024 65535")?;
            sysctl(ns, "net.ipv4.tcp_tw_reuse", "1")?;
        }
        sysctl(&l, "net.ipv4.conf.all.send_redirects", "0")?;
        for j in 0..self.backends.len() {
            let (ns, lb_if, addr, lb_addr, mac, lb_mac) = {
                let b = &self.backends[j];
                (
                    b.ns.clone(),
                    b.lb_if.clone(),
                    b.addr,
                    b.lb_addr,
                    b.mac,
                    b.lb_mac,
                )
            };
            self.add_ns(&ns)?;
            ip(
                &l,
                &[
                    "link", "add", &lb_if, "type", "veth", "peer", "name", BACKEND_IF, "netns", &ns,
                ],
            )?;
            link_up(&l, &lb_if, &lb_mac, &format!("{lb_addr}/24"))?;
            link_up(&ns, BACKEND_IF, &mac, &format!("{addr}/24"))?;
            ip(
                &ns,
                &["route", "add", "default", "via", &lb_addr.to_string()],
            )?;
            neigh(&ns, lb_addr, &lb_mac, BACKEND_IF)?;
            neigh(&l, addr, &mac, &lb_if)?;
            sysctl(&ns, "net.ipv4.conf.all.rp_filter", "0")?;
            sysctl(&ns, &format!("net.ipv4.conf.{BACKEND_IF}.rp_filter"), "0")?;
            napi(&ns, BACKEND_IF)?;
        }
        napi(&g, GEN_IF)?;
        // The subject's interface gets its NAPI from the XDP program each
        // peer attaches: with GRO on, veth's GRO loses most live-frame
        // SYNs before IP (measured here), which would starve nftables.
        output(ns_command(&l, "ethtool").args(["-K", LB_IF, "gro", "off"]))?;
        Ok(())
    }

    fn add_ns(&mut self, ns: &str) -> anyhow::Result<()> {
        Ok(add_ns(ns, &mut self.namespaces)?)
    }

    /// A command run inside namespace `ns` (network namespace only).
    pub fn cmd(&self, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        ns_command(ns, program)
    }

    /// rx packets of `ifname` in `ns` (veth counts XDP frames and skbs).
    pub fn rx_packets(&self, ns: &str, ifname: &str) -> anyhow::Result<u64> {
        let out =
            output(Command::new("ip").args(["-n", ns, "-j", "-s", "link", "show", "dev", ifname]))?;
        let v: Value = serde_json::from_str(&out).context("ip -j -s link")?;
        v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .with_context(|| format!("rx packets of {ifname} in {ns}: {out}"))
    }

    /// Drop everything arriving on the receivers (backends and the
    /// generator's own interface) at the earliest hook after the interface
    /// counted it: the measured path ends there, the same for every peer.
    pub fn sinks(&self, on: bool) -> anyhow::Result<()> {
        let mut places: Vec<(&str, &str)> = vec![(&self.gen_ns, GEN_IF)];
        places.extend(self.backends.iter().map(|b| (b.ns.as_str(), BACKEND_IF)));
        for (ns, ifname) in places {
            let script = if on {
                format!(
                    "table netdev blb_sink {{\n chain in {{ type filter hook ingress device \
                     \"{ifname}\" priority 0; policy drop; }}\n}}\n"
                )
            } else {
                "delete table netdev blb_sink\n".to_owned()
            };
            nft(self, ns, &script)?;
        }
        Ok(())
    }

    /// Make the backends direct-server-return real servers for the VIP.
    pub fn vip_on_backends(&self, on: bool) -> anyhow::Result<()> {
        for b in &self.backends {
            let verb = if on { "add" } else { "del" };
            ip(&b.ns, &["addr", verb, &format!("{VIP}/32"), "dev", "lo"])?;
            for (k, v) in [("arp_ignore", "1"), ("arp_announce", "2")] {
                sysctl(
                    &b.ns,
                    &format!("net.ipv4.conf.all.{k}"),
                    if on { v } else { "0" },
                )?;
            }
        }
        Ok(())
    }

    /// The VIP as a local address of the lb (for a proxy listening on it).
    pub fn vip_on_lb(&self, on: bool) -> anyhow::Result<()> {
        let verb = if on { "add" } else { "del" };
        ip(
            &self.lb_ns,
            &["addr", verb, &format!("{VIP}/32"), "dev", "lo"],
        )?;
        Ok(())
    }

    /// Kernel threads polling the NAPI instances of `ifname`
    /// (`napi/IF-ID`); the interface names are unique to this lab.
    pub fn napi_threads(&self, ifname: &str) -> Vec<u32> {
        let want = format!("napi/{ifname}-");
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim_end().starts_with(&want))
            })
            .collect()
    }

    /// Pin the NAPI threads of `ifname` to `cpu` and make them real-time
    /// (SCHED_FIFO `NAPI_PRIORITY`): as softirq processing would, they run
    /// ahead of ordinary work, so the figures do not measure the machine's
    /// other load. How many were pinned.
    pub fn pin_napi(&self, ifname: &str, cpu: usize) -> anyhow::Result<usize> {
        let pids = self.napi_threads(ifname);
        for pid in &pids {
            let pid = pid.to_string();
            output(Command::new("taskset").args(["-pc", &cpu.to_string(), &pid]))?;
            output(Command::new("chrt").args(["-f", "-p", NAPI_PRIORITY, &pid]))?;
        }
        Ok(pids.len())
    }

    pub fn teardown(&mut self) -> anyhow::Result<()> {
        let mut first_err: Option<anyhow::Error> = None;
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = remove_ns(&ns) {
                first_err.get_or_insert(e.into());
            }
        }
        if self.pin_dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.pin_dir)
        {
            first_err.get_or_insert(e.into());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for PpsLab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("xdp-pps lab {}: teardown: {e:#}", self.id);
        }
    }
}

pub fn mac_string(mac: &[u8; 6]) -> String {
    balancer_tests::lab::mac_string(mac)
}

fn link_up(ns: &str, ifname: &str, mac: &[u8; 6], addr: &str) -> anyhow::Result<()> {
    ip(ns, &["link", "set", ifname, "address", &mac_string(mac)])?;
    ip(ns, &["addr", "add", addr, "dev", ifname])?;
    ip(ns, &["link", "set", ifname, "up"])?;
    // Checksums in software: XDP forwards raw frames, a partial checksum
    // from veth's offload would travel on as is.
    output(ns_command(ns, "ethtool").args(["-K", ifname, "tx", "off"]))?;
    Ok(())
}

fn neigh(ns: &str, addr: Ipv4Addr, mac: &[u8; 6], ifname: &str) -> anyhow::Result<()> {
    ip(
        ns,
        &[
            "neigh",
            "replace",
            &addr.to_string(),
            "lladdr",
            &mac_string(mac),
            "dev",
            ifname,
            "nud",
            "permanent",
        ],
    )?;
    Ok(())
}

/// NAPI of `ifname` in `ns` in a kernel thread (`on`) or in softirq.
pub fn set_threaded(ns: &str, ifname: &str, on: bool) -> anyhow::Result<()> {
    let path = format!("/sys/class/net/{ifname}/threaded");
    let v = if on { 1 } else { 0 };
    output(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "sh",
        "-c",
        &format!("echo {v} > {path}"),
    ]))
    .with_context(|| format!("threaded NAPI {v} on {ifname} in {ns}"))?;
    Ok(())
}

/// GRO on (a NAPI instance: the veth then takes XDP frames from its peer)
/// and NAPI in a kernel thread (pinnable). `ip netns exec` mounts the
/// namespace's own /sys for the write.
fn napi(ns: &str, ifname: &str) -> anyhow::Result<()> {
    output(ns_command(ns, "ethtool").args(["-K", ifname, "gro", "on"]))?;
    set_threaded(ns, ifname, true)
}

/// Load an nft script in `ns`.
pub fn nft(lab: &PpsLab, ns: &str, script: &str) -> anyhow::Result<()> {
    let file = lab.dir.join("rules.nft");
    std::fs::write(&file, script)?;
    let out = lab
        .cmd(ns, "nft")
        .arg("-f")
        .arg(&file)
        .output()
        .context("running nft")?;
    if !out.status.success() {
        bail!(
            "nft -f in {ns} failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
