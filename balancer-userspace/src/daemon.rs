//! `balancer run`: load, program, attach, pin, serve the admin API, follow
//! next-hop changes; undo it all on SIGINT/SIGTERM.

use std::{path::Path, sync::Arc, time::Duration};

use aya_log::EbpfLogger;
use log::{info, warn};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::Mutex,
};

use crate::{
    admin::{self, AdminError},
    config::Config,
    control::{ControlError, Controller},
    dataplane::{Dataplane, DataplaneError, LoadOptions},
    health, netlink,
};

/// bpffs's `f_type` (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe4a11;
/// Next-hop changes arrive in bursts: wait this long for the burst to end.
const RESOLVE_DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("pin_dir {path}: {reason}")]
    PinDir { path: String, reason: String },
    #[error("signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// Stick-table size: the sum of the backends' `stick_table.size` (HAProxy
/// keeps one table per backend; here they share one LRU map).
pub fn load_options(config: &Config) -> LoadOptions {
    let mut opts = LoadOptions::default();
    if !config.backends.is_empty() {
        let total: u64 = config.backends.iter().map(|b| b.stick_size).sum();
        opts.stick_size = total.clamp(1024, crate::config::MAX_STICK_SIZE) as u32;
    }
    opts
}

/// Run until SIGINT or SIGTERM. On any error before that, everything already
/// attached or pinned is undone before returning (the data plane's Drop).
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let pin_dir = config.dataplane.pin_dir.clone();
    check_pin_dir(&pin_dir)?;
    let mut dp = Dataplane::load_with(load_options(&config))?;
    // aya-log: records from the program reach this process's logger.
    let mut logger = match EbpfLogger::init(dp.ebpf_mut()) {
        // SAFETY: the logger owns its ring buffer fd and keeps it open and
        // unchanged for as long as it lives, which is as long as the AsyncFd.
        Ok(l) => unsafe { AsyncFd::register_with_interest(l, tokio::io::Interest::READABLE) }.ok(),
        Err(e) => {
            warn!("no log channel from the XDP program: {e}");
            None
        }
    };
    let interfaces = config.dataplane.interfaces.clone();
    let mode = config.dataplane.xdp_mode;
    let admin_socket = config.admin_socket.clone();
    // Maps first, then attach: the first packet already sees the services.
    let mut controller = Controller::new(dp, config).await?;
    for name in &interfaces {
        controller.dp.attach(name, mode)?;
    }
    controller.dp.pin_maps(&pin_dir)?;
    let listener = admin::bind(&admin_socket)?;
    // Health checks: one task per checked server, results to the main loop.
    let (check_tx, mut check_rx) = tokio::sync::mpsc::channel(64);
    let check_tasks: Vec<_> = controller
        .checks()
        .into_iter()
        .map(|(i, kind, addr, timing)| {
            let tx = check_tx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(timing.inter);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let r =
                        health::check(&kind, addr, timing.inter.min(Duration::from_secs(5))).await;
                    if tx.send((i, r)).await.is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    let shared = Arc::new(Mutex::new(controller));
    let admin_task = tokio::spawn(admin::serve(listener, shared.clone()));
    let mut changes = match netlink::watch_changes().await {
        Ok(w) => Some(w),
        Err(e) => {
            warn!("not following route/neighbour changes: {e}");
            None
        }
    };
    info!(
        "running: XDP on {}, maps pinned under {}, admin API on {}",
        interfaces.join(", "),
        pin_dir.display(),
        admin_socket.display()
    );

    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    loop {
        tokio::select! {
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            Some((i, result)) = check_rx.recv() => {
                if let Err(e) = shared.lock().await.check_result(i, result) {
                    warn!("applying a health check result: {e}");
                }
            }
            change = async {
                match changes.as_mut() {
                    Some(w) => w.next().await,
                    None => std::future::pending().await,
                }
            } => {
                match change {
                    Some(_) => {
                        // Let the burst settle, then re-resolve once.
                        tokio::time::sleep(RESOLVE_DEBOUNCE).await;
                        if let Some(w) = changes.as_mut() {
                            while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, w.next()).await {}
                        }
                        if let Err(e) = shared.lock().await.refresh().await {
                            warn!("re-resolving next hops: {e}");
                        }
                    }
                    None => {
                        warn!("route/neighbour change subscription ended");
                        changes = None;
                    }
                }
            }
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
    admin_task.abort();
    for t in check_tasks {
        t.abort();
    }
    let _ = std::fs::remove_file(&admin_socket);
    if let Some(l) = logger.as_mut() {
        l.get_mut().flush();
    }
    let mut c = shared.lock().await;
    c.dp.detach_all();
    c.dp.unpin_maps();
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
