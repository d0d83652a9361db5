//! What the in-process sections share: the frames they feed the program
//! through BPF_PROG_TEST_RUN, backends on the loopback device, the kernel's
//! memory accounting of the stick table, process memory, and the printed
//! table of a section's figures.

use super::*;

/// Ethernet frame length of the IPv4 frames (padded after the IP packet).
pub const FRAME_V4: usize = 64;
/// Test runs arrive on the loopback device of this network namespace;
/// backends on it make the program answer XDP_TX.
pub const LO_IFINDEX: u32 = 1;
pub const CLIENT_MAC: [u8; 6] = [0x02, 0xb1, 0, 2, 0, 0];
pub const BALANCER_MAC: [u8; 6] = [0x02, 0xb1, 0, 1, 0, 0];
/// A backend's MAC is this prefix and the byte given to [`backend`]: the
/// frame the program sends out names the backend it chose.
pub const BACKEND_MAC_PREFIX: [u8; 5] = [0x02, 0xb1, 0, 3, 0];

/// The daemon's defaults (config/mod.rs): refresh a hit's timestamp at
/// most once a second, expire after 30 min, no insert cap.
pub const STICK_REFRESH_NS: u64 = 1_000_000_000;
pub const EXPIRE_NS: u64 = 30 * 60 * 1_000_000_000;

/// The global settings with the daemon's defaults (tunnel sources from
/// the lab ranges).
pub fn set_defaults(dp: &mut Dataplane) -> anyhow::Result<()> {
    dp.set_config(&GlobalConfig {
        stick_refresh_ns: STICK_REFRESH_NS,
        insert_cap: 0,
        tun_src_v4: [198, 18, 1, 1],
        tun_src_v6: "2001:db8:0:1::1".parse::<Ipv6Addr>()?.octets(),
    })?;
    Ok(())
}

/// A TCP VIP on port 80 with the daemon's default expiry.
pub fn set_vip(
    dp: &mut Dataplane,
    family: u8,
    addr: [u8; 16],
    id: u32,
    mode: u8,
) -> anyhow::Result<()> {
    dp.set_vip(
        &VipKey {
            addr,
            port: 80,
            proto: IPPROTO_TCP,
            family,
        },
        &VipInfo {
            id,
            mode,
            key_prefix: 0,
            _pad: [0; 2],
            expire_ns: EXPIRE_NS,
        },
    )?;
    Ok(())
}

/// An `up` backend of weight 1 on the loopback device (forwarding answers
/// XDP_TX), MAC `BACKEND_MAC_PREFIX:mac_last`.
pub fn backend(family: u8, addr: [u8; 16], mac_last: u8) -> Backend {
    let mut dst_mac = [0u8; 6];
    dst_mac[..5].copy_from_slice(&BACKEND_MAC_PREFIX);
    dst_mac[5] = mac_last;
    Backend {
        addr,
        family,
        state: STATE_UP,
        _pad: [0; 2],
        weight: 1,
        ifindex: LO_IFINDEX,
        mtu: 1500,
        dst_mac,
        src_mac: BALANCER_MAC,
    }
}

/// An IPv4 address as the maps hold it (first 4 bytes).
pub fn v4(a: Ipv4Addr) -> [u8; 16] {
    let mut o = [0u8; 16];
    o[..4].copy_from_slice(&a.octets());
    o
}

/// A TCP SYN without options, padded to `FRAME_V4` bytes after the IP
/// packet (Ethernet padding: the IP total length still says 40).
pub fn syn_v4(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_V4);
    PacketBuilder::ethernet2(CLIENT_MAC, BALANCER_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(40000, 80, 1, 65535)
        .syn()
        .write(&mut out, &[])
        .expect("a SYN fits in a Vec");
    out.resize(FRAME_V4, 0);
    out
}

/// The smallest IPv6 TCP SYN: 14 + 40 + 20 = 74 bytes.
pub fn syn_v6(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, BALANCER_MAC)
        .ipv6(src.octets(), dst.octets(), 64)
        .tcp(40000, 80, 1, 65535)
        .syn()
        .write(&mut out, &[])
        .expect("a SYN fits in a Vec");
    out
}

pub fn expect(r: &TestRun, action: u32, what: &str) -> anyhow::Result<()> {
    ensure!(
        r.action == action,
        "{what}: the program returned action {} where {action} was expected; \
         the benchmark would measure the wrong path",
        r.action
    );
    Ok(())
}

/// The kernel's own accounting for the stick table: `memlock:` in the
/// map fd's fdinfo.
pub fn stick_memory(dp: &Dataplane) -> anyhow::Result<Value> {
    let fd = dp.stick_map_fd()?;
    let path = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let info = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> Option<u64> {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    let memlock = field("memlock:").with_context(|| format!("no memlock: line in {path}"))?;
    let max_entries = field("max_entries:").unwrap_or(u64::from(dp.options().stick_size));
    Ok(json!({
        "map": STICK_MAP,
        "map_type": field("map_type:"),
        "max_entries": max_entries,
        "key_bytes": std::mem::size_of::<StickKey>(),
        "value_bytes": std::mem::size_of::<StickValue>(),
        "memlock_bytes": memlock,
        "bytes_per_entry": round3(memlock as f64 / max_entries as f64),
        "source": "memlock: in /proc/self/fdinfo/<STICK map fd> (the kernel's \
                   accounting; an LRU hash preallocates every entry)",
    }))
}

/// Many stick entries in one syscall (aya 0.14 has no batch calls): with
/// `values`, write them; without, delete `keys` (every one must be present).
pub fn stick_batch(
    fd: BorrowedFd<'_>,
    keys: &[StickKey],
    values: Option<&[StickValue]>,
) -> anyhow::Result<()> {
    match values {
        Some(v) => balancer::stick_batch::update(fd, keys, v).context("BPF_MAP_UPDATE_BATCH"),
        None => balancer::stick_batch::delete(fd, keys).context("BPF_MAP_DELETE_BATCH"),
    }
}

/// A `kB` field of /proc/self/status (`VmRSS`, `VmHWM`, ...), in bytes.
pub fn proc_status_bytes(field: &str) -> anyhow::Result<u64> {
    kb_field("/proc/self/status", field)
}

/// A `kB` field of /proc/meminfo (`Slab`, `VmallocUsed`, ...), in bytes.
pub fn meminfo_bytes(field: &str) -> anyhow::Result<u64> {
    kb_field("/proc/meminfo", field)
}

fn kb_field(path: &str, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == field).then(|| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())?
        })
        .map(|kb| kb * 1024)
        .with_context(|| format!("no {field} in {path}"))
}

/// Print a section's figures as a table: what, value, peer, ratio, target.
pub fn print_figures(section: &str, figures: &[Value]) {
    println!(
        "{section}: {:<58} {:>14} {:>14} {:>8}  {:<56} target",
        "figure", "value", "peer", "ratio", "peer is"
    );
    for f in figures {
        let num = |v: &Value| v.as_f64().map_or("-".to_owned(), short);
        let peer = &f["peer"];
        let target = match (f["target"]["text"].as_str(), f["target"]["result"].as_str()) {
            (Some(t), Some(r)) => format!("{t}: {r}"),
            _ => "-".to_owned(),
        };
        let modelled = if f["measured"] == json!(false) {
            " (model)"
        } else {
            ""
        };
        println!(
            "{section}: {:<58} {:>14} {:>14} {:>8}  {:<56} {target}",
            format!(
                "{}{modelled} [{}]",
                f["id"].as_str().unwrap_or("?"),
                f["unit"].as_str().unwrap_or("")
            ),
            num(&f["value"]),
            num(&peer["value"]),
            f["ratio"]
                .as_f64()
                .map_or("-".to_owned(), |r| format!("{r:.3}x")),
            peer["name"].as_str().unwrap_or("-"),
        );
    }
    println!("{section}: what each figure is:");
    for f in figures {
        println!(
            "{section}:   {}: {}",
            f["id"].as_str().unwrap_or("?"),
            f["what"].as_str().unwrap_or("")
        );
    }
}

/// A number for the table: 4 significant digits, thousands separated
/// when large.
fn short(v: f64) -> String {
    if v >= 10_000.0 {
        count(v.round() as u64)
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}
