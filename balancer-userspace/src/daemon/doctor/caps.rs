//! Privilege: the capabilities the XDP data plane and low ports need,
//! read from this process's effective set, and the start's own reading of
//! a kernel refusal (EPERM/EACCES) as missing privilege.

use super::{Finding, Status};
use crate::{
    config::{Config, Mode},
    daemon::DaemonError,
    dataplane::DataplaneError,
};

const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_ADMIN: u32 = 12;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// This process's effective capabilities (`CapEff` of /proc/self/status).
pub fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// The running kernel's (major, minor) version, from uname(2).
pub fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: uname fills the zeroed struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    // SAFETY: the kernel NUL-terminates the release.
    let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) };
    parse_release(&release.to_string_lossy())
}

fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The capabilities the XDP data plane needs on a kernel of `version`
/// (CAP_BPF and CAP_PERFMON exist from 5.8; before, CAP_SYS_ADMIN), and
/// locked memory before 5.11 unless RLIMIT_MEMLOCK is unlimited.
fn needed(version: (u32, u32), memlock_unlimited: bool) -> Vec<(u32, &'static str)> {
    let mut caps = if version >= (5, 8) {
        vec![
            (CAP_BPF, "CAP_BPF"),
            (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
            (CAP_PERFMON, "CAP_PERFMON"),
        ]
    } else {
        vec![
            (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
            (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        ]
    };
    if version < (5, 11) && !memlock_unlimited {
        caps.push((CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"));
    }
    caps
}

fn memlock_unlimited() -> bool {
    // SAFETY: getrlimit fills the zeroed struct.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) == 0 && r.rlim_cur == libc::RLIM_INFINITY
    }
}

fn has(eff: u64, cap: u32) -> bool {
    eff & (1u64 << cap) != 0
}

fn binary() -> String {
    std::env::current_exe().map_or_else(
        |_| "/usr/local/bin/balancer".to_owned(),
        |p| p.display().to_string(),
    )
}

/// The capability findings for `config`: the XDP data plane's set when it
/// has one (else one line saying none is needed), and CAP_NET_BIND_SERVICE
/// for HTTP ports below the kernel's unprivileged start.
pub fn findings(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(eff) = effective() else {
        out.push(Finding::new(
            "capabilities",
            "this process",
            Status::Warn,
            "cannot read CapEff from /proc/self/status: privilege not checked",
            Some("mount /proc (`mount -t proc proc /proc`)".into()),
        ));
        return out;
    };
    let uid = unsafe { libc::geteuid() };
    if config.needs_kernel() {
        let version = kernel_version().unwrap_or((5, 8));
        let mut missing: Vec<&str> = needed(version, memlock_unlimited())
            .into_iter()
            .filter(|(cap, _)| !has(eff, *cap))
            .map(|(_, name)| name)
            .collect();
        // Either of the two lifts the memlock limit.
        if has(eff, CAP_IPC_LOCK) {
            missing.retain(|n| *n != "CAP_SYS_RESOURCE");
        }
        if missing.is_empty() {
            out.push(Finding::ok(
                "capabilities",
                "XDP data plane",
                format!(
                    "uid {uid} has what it needs on Linux {}.{}",
                    version.0, version.1
                ),
            ));
        } else {
            let set = if version >= (5, 8) {
                "cap_bpf,cap_net_admin,cap_perfmon,cap_sys_resource"
            } else {
                "cap_sys_admin,cap_net_admin,cap_sys_resource"
            };
            out.push(Finding::new(
                "capabilities",
                "XDP data plane",
                Status::Fail,
                format!(
                    "uid {uid} lacks {} (Linux {}.{}): the XDP data plane needs CAP_BPF, \
                     CAP_NET_ADMIN and CAP_PERFMON (CAP_SYS_ADMIN before Linux 5.8)",
                    missing.join(", "),
                    version.0,
                    version.1
                ),
                Some(format!(
                    "run it as root or as the installed balancer.service, or `setcap {set}+ep {}`",
                    binary()
                )),
            ));
        }
    } else {
        out.push(Finding::ok(
            "capabilities",
            "HTTP only",
            "no interfaces, no pin_dir: no XDP program, no bpffs, no BPF capabilities needed",
        ));
    }
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(1024);
    for f in config.frontends.iter().filter(|f| f.mode == Mode::Http) {
        let port = f.vip.port();
        if port >= start {
            continue;
        }
        let subject = format!("frontend {} ({})", f.name, f.vip);
        if has(eff, CAP_NET_BIND_SERVICE) {
            out.push(Finding::ok(
                "capabilities",
                subject,
                format!("may bind port {port} (CAP_NET_BIND_SERVICE)"),
            ));
        } else {
            out.push(Finding::new(
                "capabilities",
                subject,
                Status::Fail,
                format!("uid {uid} lacks CAP_NET_BIND_SERVICE: ports below {start} need it"),
                Some(format!(
                    "run it as the installed balancer-http.service, or `setcap \
                     cap_net_bind_service+ep {}`",
                    binary()
                )),
            ));
        }
    }
    out
}

/// `e`, said as the missing privilege it is when the kernel refused with
/// EPERM or EACCES somewhere in its chain.
pub(in crate::daemon) fn not_permitted(e: DataplaneError) -> DaemonError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES))
        {
            let why = io.to_string();
            return DaemonError::NotPermitted(Box::new(e), why);
        }
        cause = c.source();
    }
    DaemonError::Dataplane(e)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_effective_set_and_the_release() {
        let status = "Name:\tbalancer\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(super::parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(super::parse_cap_eff("Name: x\n"), None);
        assert_eq!(super::parse_release("6.8.0-45-generic"), Some((6, 8)));
        assert_eq!(super::parse_release("5.4.17"), Some((5, 4)));
        assert_eq!(super::parse_release("garbage"), None);
    }

    #[test]
    fn before_5_8_it_is_cap_sys_admin() {
        let names = |v, unlimited| -> Vec<&str> {
            super::needed(v, unlimited)
                .into_iter()
                .map(|(_, n)| n)
                .collect()
        };
        assert_eq!(
            names((6, 1), false),
            ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]
        );
        assert_eq!(
            names((5, 4), false),
            ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_RESOURCE"]
        );
        assert_eq!(names((5, 4), true), ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]);
    }
}
