//! `balancer run`: load, attach, pin, log, and undo it all on SIGINT/SIGTERM.

use std::path::Path;

use aya_log::EbpfLogger;
use log::{info, warn};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    config::Config,
    dataplane::{Dataplane, DataplaneError},
};

/// bpffs's `f_type` (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("pin_dir {path}: {reason}")]
    PinDir { path: String, reason: String },
    #[error("signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// Run until SIGINT or SIGTERM. On any error before that, everything already
/// attached or pinned is undone before returning.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let pin_dir = &config.dataplane.pin_dir;
    check_pin_dir(pin_dir)?;
    let mut dp = Dataplane::load()?;
    // aya-log: records from the program reach this process's logger.
    let logger = match EbpfLogger::init(dp.ebpf_mut()) {
        // SAFETY: the logger owns its ring buffer fd and keeps it open and
        // unchanged for as long as it lives, which is as long as the AsyncFd.
        Ok(l) => unsafe { AsyncFd::register_with_interest(l, tokio::io::Interest::READABLE) }.ok(),
        Err(e) => {
            warn!("no log channel from the XDP program: {e}");
            None
        }
    };
    for name in &config.dataplane.interfaces {
        dp.attach(name, config.dataplane.xdp_mode)?;
    }
    dp.pin_maps(pin_dir)?;
    info!(
        "running: XDP on {}, maps pinned under {}",
        config.dataplane.interfaces.join(", "),
        pin_dir.display()
    );

    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut logger = logger;
    loop {
        tokio::select! {
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            ready = async {
                match logger.as_mut() {
                    Some(l) => l.readable_mut().await,
                    None => std::future::pending().await,
                }
            } => {
                match ready {
                    Ok(mut guard) => {
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                    Err(e) => {
                        warn!("log channel from the XDP program failed: {e}");
                        logger = None;
                    }
                }
            }
        }
    }
    if let Some(l) = logger.as_mut() {
        l.get_mut().flush();
    }
    dp.detach_all();
    dp.unpin_maps();
    info!("stopped: XDP detached, pins removed");
    Ok(())
}

/// The pin directory must be on a bpffs, or the pin fails later with a
/// less helpful error. Its parent must exist; the directory itself may not.
fn check_pin_dir(dir: &Path) -> Result<(), DaemonError> {
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
    if dir.join(balancer_common::maps::STATS_MAP).exists() {
        return Err(err(
            "already holds pinned maps: another balancer is running with this pin_dir, \
             or a killed one left them (remove the directory to start clean)"
                .into(),
        ));
    }
    Ok(())
}
