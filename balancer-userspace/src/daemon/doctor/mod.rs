//! `balancer doctor`: what is wrong with a deployment before it bites
//! (issue 21). Each check gives one [`Finding`]: ok, warn or FAIL, what it
//! looked at, and for anything not ok the command to run. Only the checks
//! that apply to the configuration run: an HTTP-only one needs no bpffs
//! and no BPF capabilities. `balancer run` logs the veth finding at start.

use std::{net::IpAddr, path::Path};

mod caps;
mod dsr;
mod link;

pub(super) use caps::not_permitted;
pub use link::warn_veth_peers;

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    /// As printed: `ok`, `warn`, `FAIL`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's verdict.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Which check: `capabilities`, `bpffs`, `interface`, ...
    pub check: &'static str,
    /// What it looked at: an interface, a frontend, the pin_dir.
    pub subject: String,
    pub status: Status,
    pub detail: String,
    /// The command to run (anything not ok has one).
    pub fix: Option<String>,
}

impl Finding {
    pub fn new(
        check: &'static str,
        subject: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Finding {
            check,
            subject: subject.into(),
            status,
            detail: detail.into(),
            fix,
        }
    }

    pub fn ok(check: &'static str, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(check, subject, Status::Ok, detail, None)
    }

    /// Subject, detail and fix as one sentence (the daemon's log line).
    pub fn sentence(&self) -> String {
        match &self.fix {
            Some(fix) => format!("{}: {}: {fix}", self.subject, self.detail),
            None => format!("{}: {}", self.subject, self.detail),
        }
    }

    /// The printed line: `STATUS  CHECK  SUBJECT: DETAIL[: FIX]`.
    pub fn line(&self) -> String {
        format!(
            "{:<4}  {:<12}  {}",
            self.status.as_str(),
            self.check,
            self.sentence()
        )
    }

    /// `{check, subject, status, detail, fix}`, in that order.
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(serde::Serialize)]
        struct Json<'a> {
            check: &'a str,
            subject: &'a str,
            status: String,
            detail: &'a str,
            fix: Option<&'a str>,
        }
        serde_json::to_value(Json {
            check: self.check,
            subject: &self.subject,
            status: self.status.as_str().to_ascii_lowercase(),
            detail: &self.detail,
            fix: self.fix.as_deref(),
        })
        .unwrap_or_default()
    }
}

/// Every check that applies to `config` (read from `path`), in the order
/// a start meets them.
pub async fn diagnose(path: &Path, config: &Config) -> Vec<Finding> {
    let mut out = vec![Finding::ok(
        "config",
        path.display().to_string(),
        format!(
            "valid ({} frontends, {} backends)",
            config.frontends.len(),
            config.backends.len()
        ),
    )];
    for w in &config.warnings {
        out.push(Finding::new(
            "config",
            path.display().to_string(),
            Status::Warn,
            w.to_string(),
            Some(format!("edit {}", path.display())),
        ));
    }
    out.extend(caps::findings(config));
    if config.needs_kernel() {
        let pin_dir = &config.dataplane.pin_dir;
        out.push(namespace());
        out.push(bpffs(pin_dir, path));
        out.push(pin_lock(pin_dir, path));
        match link::connect() {
            Ok(handle) => {
                for name in &config.dataplane.interfaces {
                    out.push(link::interface(&handle, name, pin_dir).await);
                    out.extend(link::veth_peer(&handle, name).await);
                }
            }
            Err(e) => out.push(Finding::new(
                "interface",
                "netlink",
                Status::Warn,
                format!("cannot open a netlink socket: {e}: interfaces not checked"),
                Some("`ip -d link` shows them".into()),
            )),
        }
    }
    out.extend(dsr::frontends(config));
    out
}

/// `balancer doctor --dsr-backend VIP`: this host as a DSR backend.
pub fn diagnose_backend(vip: IpAddr, ipip: bool) -> Vec<Finding> {
    dsr::backend(vip, ipip, &format!("VIP {vip}"))
}

fn namespace() -> Finding {
    let detail = match super::pins::netns() {
        (Some(n), _) => format!("{n} (/run/netns/{n})"),
        (None, Some(false)) => "the host's (PID 1's)".to_owned(),
        (None, Some(true)) => "not the host's, and not one of /run/netns (a container's?)".into(),
        (None, None) => "not one of /run/netns (PID 1's cannot be read to compare)".into(),
    };
    Finding::ok("namespace", "network", detail)
}

/// pin_dir (or its parent, before the first start) is on a bpffs; when it
/// is not, in a named network namespace with no bpffs mounted at all,
/// `ip netns exec` hid it (the daemon's own error says the same).
fn bpffs(pin_dir: &Path, config: &Path) -> Finding {
    let subject = format!("pin_dir {}", pin_dir.display());
    let probe = if pin_dir.exists() {
        pin_dir
    } else {
        pin_dir.parent().unwrap_or(pin_dir)
    };
    match super::pins::is_bpffs(probe) {
        Ok(true) => return Finding::ok("bpffs", subject, "on a bpffs"),
        Ok(false) => {}
        Err(e) => {
            return Finding::new(
                "bpffs",
                subject,
                Status::Fail,
                format!("{}: {e}", probe.display()),
                Some(
                    "name a pin_dir whose parent exists on a bpffs (`mount -t bpf bpf DIR` \
                     mounts one)"
                        .into(),
                ),
            );
        }
    }
    let (detail, fix) = match super::pins::netns() {
        (Some(ns), _) if super::pins::hidden_bpffs() => (
            format!(
                "{} is not on a bpffs: `ip netns exec {ns}` remounted /sys without it",
                probe.display()
            ),
            format!(
                "enter only the network namespace instead: `nsenter --net=/run/netns/{ns} \
                 balancer run --config {}`",
                config.display()
            ),
        ),
        _ => (
            format!("{} is not on a bpffs", probe.display()),
            format!("mount -t bpf bpf {}", probe.display()),
        ),
    };
    Finding::new("bpffs", subject, Status::Fail, detail, Some(fix))
}

/// Whether a daemon holds pin_dir's lock: one of this configuration is
/// fine (ok), another one would refuse this start (warn).
fn pin_lock(pin_dir: &Path, config: &Path) -> Finding {
    let subject = format!("pin_dir {}", pin_dir.display());
    let Ok(f) = std::fs::File::open(pin_dir) else {
        return Finding::ok(
            "pin_dir lock",
            subject,
            "not there yet: `balancer run` creates it",
        );
    };
    let Some((pid, holder)) = super::pins::lock_holder(&f) else {
        return Finding::ok("pin_dir lock", subject, "no daemon holds it");
    };
    if runs_config(pid, config) {
        return Finding::ok(
            "pin_dir lock",
            subject,
            format!("held by the daemon of this configuration ({holder})"),
        );
    }
    Finding::new(
        "pin_dir lock",
        subject,
        Status::Warn,
        format!("held by another daemon ({holder}): a `balancer run` with this pin_dir is refused"),
        Some(format!(
            "stop it first (`kill -TERM {pid}`), or give this configuration another pin_dir"
        )),
    )
}

/// Whether process `pid` was started with `--config` (or `-c`) naming
/// the file `config` names (relative paths from its working directory).
fn runs_config(pid: u32, config: &Path) -> bool {
    let Ok(ours) = config.canonicalize() else {
        return false;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let named = args.iter().enumerate().find_map(|(i, a)| match a.as_str() {
        "--config" | "-c" => args.get(i + 1).cloned(),
        _ => a.strip_prefix("--config=").map(str::to_owned),
    });
    let Some(named) = named else {
        return false;
    };
    let cwd = Path::new("/proc").join(pid.to_string()).join("cwd");
    cwd.join(named).canonicalize().is_ok_and(|p| p == ours)
}

/// Print the findings (one line each, or a JSON array); the number that
/// failed.
pub fn print(findings: &[Finding], json: bool) -> usize {
    use std::io::Write as _;
    // A closed stdout (`| head`) ends the printing, not the process.
    let mut out = std::io::stdout().lock();
    if json {
        let all: Vec<_> = findings.iter().map(Finding::to_json).collect();
        let text = serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into());
        let _ = writeln!(out, "{text}");
    } else {
        for f in findings {
            if writeln!(out, "{}", f.line()).is_err() {
                break;
            }
        }
    }
    findings.iter().filter(|f| f.status == Status::Fail).count()
}

#[cfg(test)]
mod tests {
    use super::{Finding, Status};

    #[test]
    fn a_line_says_status_check_subject_detail_and_fix() {
        let f = Finding::new(
            "veth peer",
            "interface eth0",
            Status::Warn,
            "frames vanish",
            Some("`balancer xdp-pass --interface v-lb`".into()),
        );
        assert_eq!(
            f.line(),
            "warn  veth peer     interface eth0: frames vanish: `balancer xdp-pass --interface v-lb`"
        );
        let j = f.to_json();
        assert_eq!(j["status"], "warn");
        assert_eq!(j["check"], "veth peer");
        assert_eq!(j["fix"], "`balancer xdp-pass --interface v-lb`");
        let ok = Finding::ok("bpffs", "pin_dir /sys/fs/bpf/x", "on a bpffs");
        assert_eq!(ok.to_json()["fix"], serde_json::Value::Null);
        assert!(ok.line().starts_with("ok    bpffs"));
        assert!(
            Finding::new("c", "s", Status::Fail, "d", None)
                .line()
                .starts_with("FAIL")
        );
    }

    #[test]
    fn a_dsr_backend_without_the_vip_fails_with_the_command() {
        // 198.18.3.77 is held by no interface of a test machine.
        let vip = "198.18.3.77".parse().unwrap();
        let f = super::diagnose_backend(vip, false);
        let first = &f[0];
        assert_eq!(first.status, Status::Fail);
        assert_eq!(
            first.fix.as_deref(),
            Some("ip addr add 198.18.3.77/32 dev lo")
        );
    }
}
