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
            return Err(err(
                "locked: another `balancer run` (or `balancer detach`) is using this pin_dir"
                    .into(),
            ));
        }
        Ok(PinLock { _dir: f })
    }
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
    let c = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes())
        .map_err(|_| err("contains a NUL byte".into()))?;
    // SAFETY: statfs fills the zeroed struct; c is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(err(format!(
            "{}: {}",
            probe.display(),
            std::io::Error::last_os_error()
        )));
    }
    if st.f_type as i64 != BPF_FS_MAGIC {
        return Err(err(format!(
            "{} is not on a bpffs (mount one with `mount -t bpf bpf {}` or run `cargo xtask setup`)",
            probe.display(),
            probe.display()
        )));
    }
    Ok(())
}
