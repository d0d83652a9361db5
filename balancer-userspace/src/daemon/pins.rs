//! The pin directory: on a bpffs, and locked by the daemon using it.

use std::path::Path;

use super::DaemonError;

/// bpffs's `f_type` (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// An exclusive lock on the pin directory, held while a daemon (or
/// `balancer detach`) works on the state in it.
pub struct PinLock {
    _dir: std::fs::File,
}

impl PinLock {
    /// Create `dir` if needed and lock it, or say who holds it.
    pub fn take(dir: &Path) -> Result<Self, DaemonError> {
        let err = |reason: String| DaemonError::PinDir {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        let f = std::fs::File::open(dir).map_err(|e| err(e.to_string()))?;
        // SAFETY: flock on an fd we own.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            let who = lock_holder(&f).map_or(String::new(), |(_, h)| format!(" ({h})"));
            return Err(err(format!(
                "locked: another `balancer run` (or `balancer detach`) is using this \
                 pin_dir{who}: stop it first, or give this one another pin_dir"
            )));
        }
        Ok(PinLock { _dir: f })
    }
}

/// Who holds the lock on the directory open as `f`: its pid and `process
/// PID: COMMAND LINE`, read from /proc/locks (flock(2) does not say).
pub(super) fn lock_holder(f: &std::fs::File) -> Option<(u32, String)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = f.metadata().ok()?;
    // /proc/locks names the file as MAJOR:MINOR:INODE, in hex for the
    // device numbers.
    let (major, minor) = (libc::major(m.dev()), libc::minor(m.dev()));
    let file = format!("{major:02x}:{minor:02x}:{}", m.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF"
        (w.get(1) == Some(&"FLOCK") && w.get(5) == Some(&file.as_str()))
            .then(|| w.get(4)?.parse::<u32>().ok())?
    })?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd: Vec<String> = cmd
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some((pid, format!("process {pid}: {}", cmd.join(" "))))
}

/// The pin directory must be on a bpffs, or the pin fails later with a
/// less helpful error. Its parent must exist; the directory itself may not.
pub(super) fn check_pin_dir(dir: &Path) -> Result<(), DaemonError> {
    let err = |reason: String| DaemonError::PinDir {
        path: dir.display().to_string(),
        reason,
    };
    let probe = if dir.exists() {
        dir
    } else {
        dir.parent()
            .ok_or_else(|| err("has no parent directory".into()))?
    };
    let on_bpffs = is_bpffs(probe).map_err(|e| err(format!("{}: {e}", probe.display())))?;
    if !on_bpffs {
        // Under `ip netns exec NS`, which remounts /sys without the bpffs.
        let hidden = netns().0.filter(|_| hidden_bpffs());
        return Err(err(match hidden {
            Some(ns) => format!(
                "{} is not on a bpffs: `ip netns exec {ns}` remounted /sys without it: enter \
                 only the network namespace instead (`nsenter --net=/run/netns/{ns} balancer \
                 run ...`)",
                probe.display()
            ),
            None => format!(
                "{} is not on a bpffs: mount one (`mount -t bpf bpf {}`); under `ip netns exec`, \
                 which remounts /sys without it, enter only the network namespace instead \
                 (`nsenter --net=/run/netns/NAME balancer run ...`)",
                probe.display(),
                probe.display()
            ),
        }));
    }
    Ok(())
}

/// The inode of a namespace link under /proc.
fn ns_inode(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// This process's network namespace: its name under /run/netns, and
/// whether it is not the initial one (PID 1's; `None` when PID 1's cannot
/// be read, as without privilege).
pub(super) fn netns() -> (Option<String>, Option<bool>) {
    let own = ns_inode("/proc/self/ns/net");
    let not_initial = match (own, ns_inode("/proc/1/ns/net")) {
        (Some(a), Some(b)) => Some(a != b),
        _ => None,
    };
    let name = std::fs::read_dir("/run/netns").ok().and_then(|d| {
        d.flatten()
            .find(|e| own.is_some() && ns_inode(&e.path().to_string_lossy()) == own)
            .map(|e| e.file_name().to_string_lossy().into_owned())
    });
    (name, not_initial)
}

/// Whether no bpffs is mounted in this mount namespace at all (as after
/// `ip netns exec`, which remounts /sys).
pub(super) fn hidden_bpffs() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        !m.lines()
            .any(|l| l.split(" - ").nth(1).is_some_and(|t| t.starts_with("bpf ")))
    })
}

/// Whether `path` is on a bpffs (statfs(2)).
pub(super) fn is_bpffs(path: &Path) -> std::io::Result<bool> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("contains a NUL byte"))?;
    // SAFETY: statfs fills the zeroed struct; c is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pin_dir_off_the_bpffs_says_how_to_get_one() {
        let dir = std::env::temp_dir().join(format!("blb-{}-not-bpffs", std::process::id()));
        let e = super::check_pin_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("mount -t bpf bpf"), "{e}");
        assert!(e.contains("nsenter --net="), "{e}");
        assert!(!e.contains("cargo xtask"), "{e}");
    }
}
