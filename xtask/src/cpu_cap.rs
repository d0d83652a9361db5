//! A CPU cap on a process for a benchmark case: a cgroup of its own under
//! the cgroup v1 `cpu` controller with a CFS quota, the process (all its
//! threads) moved in; when dropped, moved back to the root cgroup and the
//! cgroup removed.
//!
//! Why: where the load generator cannot outrun the proxy (a TLS client's
//! half of a full handshake costs more than the server's), an uncapped
//! trial measures the generator. Capping both proxies at the same share
//! of one CPU makes each proxy the bottleneck of its own trials, so
//! handshakes/s compare what each does with the same CPU.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The `cpu` controller's root (cgroup v1).
const ROOT: &str = "/sys/fs/cgroup/cpu";
/// The CFS period (µs): short, so the cap throttles in small slices.
const PERIOD_US: u32 = 10_000;

pub struct CpuCap {
    dir: PathBuf,
}

impl CpuCap {
    /// Whether caps can be set here (why not, if not).
    pub fn available() -> Result<(), String> {
        let quota = Path::new(ROOT).join("cpu.cfs_quota_us");
        match quota.exists() {
            true => Ok(()),
            false => Err(format!(
                "no cgroup v1 cpu controller ({} is missing)",
                quota.display()
            )),
        }
    }

    /// Cap process `pid` at `percent` of one CPU, in cgroup `name`.
    pub fn new(name: &str, pid: u32, percent: u32) -> anyhow::Result<CpuCap> {
        if !(1..=100).contains(&percent) {
            bail!("a cap of {percent}% of a CPU");
        }
        let dir = Path::new(ROOT).join(name);
        if dir.exists() {
            // A run that died before it cleaned up.
            remove(&dir)?;
        }
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cap = CpuCap { dir };
        let write = |file: &str, v: String| {
            let p = cap.dir.join(file);
            std::fs::write(&p, v).with_context(|| format!("writing {}", p.display()))
        };
        write("cpu.cfs_period_us", PERIOD_US.to_string())?;
        write("cpu.cfs_quota_us", (PERIOD_US / 100 * percent).to_string())?;
        write("cgroup.procs", pid.to_string())?;
        Ok(cap)
    }
}

/// Move `dir`'s processes back to the root, then remove it.
fn remove(dir: &Path) -> anyhow::Result<()> {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines() {
        let _ = std::fs::write(Path::new(ROOT).join("cgroup.procs"), pid);
    }
    std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        if let Err(e) = remove(&self.dir) {
            eprintln!("bench: {e:#}");
        }
    }
}
