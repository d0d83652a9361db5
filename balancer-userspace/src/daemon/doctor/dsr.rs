//! DSR backends (`forward = "dsr-l2"` or `"ipip"`): they answer clients
//! from the VIP, so each needs it on its loopback, must not answer ARP for
//! it, and with ipip must decapsulate. Checked in this network namespace
//! (`balancer doctor --dsr-backend VIP` on a backend, or a server that is
//! an address of the balancer's own namespace); otherwise said as what to
//! run on each backend.

use std::net::IpAddr;

use super::{Finding, Status};
use crate::config::{Config, Forward, Mode};

/// ARPHRD_TUNNEL (ipip) and ARPHRD_TUNNEL6 (ip6tnl), as /sys/class/net/IF/type.
const ARPHRD_TUNNEL: u32 = 768;
const ARPHRD_TUNNEL6: u32 = 769;

/// One address of an interface of this namespace.
struct IfAddr {
    ifname: String,
    addr: IpAddr,
    prefix: u32,
}

/// Every address of this namespace's interfaces (getifaddrs(3)).
fn addresses() -> Vec<IfAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates the list; freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut p = head;
    while !p.is_null() {
        // SAFETY: a node of the list getifaddrs returned.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        let (Some(addr), Some(mask)) = (sockaddr_ip(ifa.ifa_addr), sockaddr_ip(ifa.ifa_netmask))
        else {
            continue;
        };
        let prefix = match mask {
            IpAddr::V4(m) => u32::from(m).count_ones(),
            IpAddr::V6(m) => u128::from(m).count_ones(),
        };
        // SAFETY: ifa_name is a NUL-terminated string.
        let ifname = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        out.push(IfAddr {
            ifname,
            addr,
            prefix,
        });
    }
    // SAFETY: the list getifaddrs allocated.
    unsafe { libc::freeifaddrs(head) };
    out
}

fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: sa_family says which sockaddr it is.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let s = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::from(u32::from_be(s.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => {
                let s = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::from(s.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}

fn sysctl(path: &str) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The up tunnel devices of the kind that decapsulates `vip`'s family.
fn tunnels(vip: IpAddr) -> Vec<String> {
    let want = if vip.is_ipv4() {
        ARPHRD_TUNNEL
    } else {
        ARPHRD_TUNNEL6
    };
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let read =
        |d: &std::path::Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
    let mut out: Vec<String> = dir
        .flatten()
        .filter(|e| read(&e.path(), "type").trim().parse() == Ok(want))
        .filter(|e| {
            let flags = read(&e.path(), "flags");
            u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
                .is_ok_and(|f| f & libc::IFF_UP as u32 != 0)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// What a DSR backend in this namespace needs for `vip`: the VIP on `lo`
/// (or on the tunnel device, with ipip) as a host address, no ARP answers
/// or announcements for it (IPv4), and with ipip an up ipip/ip6tnl device
/// and no strict reverse-path filter on it.
pub fn backend(vip: IpAddr, ipip: bool, subject: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let full = if vip.is_ipv4() { 32 } else { 128 };
    let tunnels = if ipip { tunnels(vip) } else { Vec::new() };
    let held: Vec<IfAddr> = addresses().into_iter().filter(|a| a.addr == vip).collect();
    let on_host = |a: &&IfAddr| a.ifname == "lo" || tunnels.contains(&a.ifname);
    let add_lo = format!("ip addr add {vip}/{full} dev lo");
    out.push(match held.iter().find(on_host) {
        Some(a) if a.prefix == full => Finding::ok(
            "dsr backend",
            subject,
            format!("{vip}/{full} is on {}", a.ifname),
        ),
        Some(a) => Finding::new(
            "dsr backend",
            subject,
            Status::Warn,
            format!(
                "{vip}/{} is on {}: the whole prefix is local here, not just the VIP",
                a.prefix, a.ifname
            ),
            Some(format!(
                "ip addr del {vip}/{} dev {} && {add_lo}",
                a.prefix, a.ifname
            )),
        ),
        None => match held.first() {
            Some(a) => Finding::new(
                "dsr backend",
                subject,
                Status::Fail,
                format!(
                    "{vip} is on {}, not on lo: this host answers ARP/ND for it and takes the \
                     balancer's traffic",
                    a.ifname
                ),
                Some(format!(
                    "ip addr del {vip}/{} dev {} && {add_lo}",
                    a.prefix, a.ifname
                )),
            ),
            None => Finding::new(
                "dsr backend",
                subject,
                Status::Fail,
                format!("{vip} is not an address here: packets forwarded to it are dropped"),
                Some(add_lo),
            ),
        },
    });
    if vip.is_ipv4() {
        for (key, least) in [("arp_ignore", 1), ("arp_announce", 2)] {
            let name = format!("net.ipv4.conf.all.{key}");
            let value = sysctl(&format!("net/ipv4/conf/all/{key}"));
            out.push(match value {
                Some(v) if v >= least => {
                    Finding::ok("dsr backend", subject, format!("{name} = {v}"))
                }
                _ => Finding::new(
                    "dsr backend",
                    subject,
                    Status::Fail,
                    format!(
                        "{name} = {}: this host {} ARP for {vip} (it wants {least} or more)",
                        value.map_or("?".into(), |v| v.to_string()),
                        if key == "arp_ignore" {
                            "answers"
                        } else {
                            "announces its addresses in"
                        }
                    ),
                    Some(format!("sysctl -w {name}={least}")),
                ),
            });
        }
    }
    if !ipip {
        return out;
    }
    let Some(dev) = tunnels.first() else {
        let (kind, fix) = if vip.is_ipv4() {
            ("ipip", "modprobe ipip && ip link set tunl0 up")
        } else {
            ("ip6tnl", "modprobe ip6_tunnel && ip link set ip6tnl0 up")
        };
        out.push(Finding::new(
            "dsr backend",
            subject,
            Status::Fail,
            format!("no {kind} device is up: the encapsulated packets are not opened"),
            Some(format!(
                "{fix} (or `balancer decap --interface IF --tunnel-source BALANCER` on the \
                 receiving interface)"
            )),
        ));
        return out;
    };
    out.push(Finding::ok(
        "dsr backend",
        subject,
        format!("tunnel device {dev} is up"),
    ));
    if vip.is_ipv4() {
        // The kernel applies the larger of `all` and the device's value.
        let all = sysctl("net/ipv4/conf/all/rp_filter").unwrap_or(0);
        let on_dev = sysctl(&format!("net/ipv4/conf/{dev}/rp_filter")).unwrap_or(0);
        out.push(if all.max(on_dev) == 1 {
            Finding::new(
                "dsr backend",
                subject,
                Status::Fail,
                format!(
                    "strict reverse-path filtering on {dev} (all = {all}, {dev} = {on_dev}): the \
                     clients' packets arrive there, their route goes elsewhere, they are dropped"
                ),
                Some(format!(
                    "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.{dev}.rp_filter=2"
                )),
            )
        } else {
            Finding::ok(
                "dsr backend",
                subject,
                format!("rp_filter on {dev} is not strict (all = {all}, {dev} = {on_dev})"),
            )
        });
    }
    out
}

/// Whether `addr` is an address of an interface of this network namespace.
fn is_local(addr: IpAddr) -> bool {
    addresses().iter().any(|a| a.addr == addr)
}

/// The L4 frontends' DSR backends: checked here for a server that is an
/// address of this namespace, else one line per frontend with what to run
/// on each backend.
pub fn frontends(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for f in config.frontends.iter().filter(|f| f.mode == Mode::L4) {
        let Some(b) = config.backends.get(f.backend) else {
            continue;
        };
        let ipip = b.forward == Forward::Ipip;
        let vip = f.vip.ip();
        let (local, remote): (Vec<_>, Vec<_>) = b.servers.iter().partition(|s| is_local(s.address));
        for s in &local {
            let subject = format!(
                "frontend {}, server {} ({}, here)",
                f.name, s.name, s.address
            );
            out.extend(backend(vip, ipip, &subject));
        }
        if remote.is_empty() {
            continue;
        }
        let full = if vip.is_ipv4() { 32 } else { 128 };
        let mut fix = format!("on each backend: `balancer doctor --dsr-backend {vip}");
        fix.push_str(if ipip { " --ipip`" } else { "`" });
        fix.push_str(&format!(", or `ip addr add {vip}/{full} dev lo"));
        if vip.is_ipv4() {
            fix.push_str(
                " && sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2",
            );
        }
        if ipip {
            fix.push_str(if vip.is_ipv4() {
                " && modprobe ipip && ip link set tunl0 up && sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.tunl0.rp_filter=2"
            } else {
                " && modprobe ip6_tunnel && ip link set ip6tnl0 up"
            });
        }
        fix.push('`');
        out.push(Finding::new(
            "dsr backend",
            format!("frontend {} ({})", f.name, f.vip),
            Status::Warn,
            format!(
                "{} server(s) answer clients directly ({}): what they need cannot be seen from \
                 here",
                remote.len(),
                if ipip { "ipip" } else { "dsr-l2" }
            ),
            Some(fix),
        ));
    }
    out
}
