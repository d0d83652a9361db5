//! Upgrades under systemd: the running daemon starts its successor, which
//! takes over (`takeover.rs`), and hands the service's main PID to it.
//!
//! - **Readiness**: with `Type=notify`, systemd gives the daemon a
//!   notification socket (`$NOTIFY_SOCKET`); the daemon says `READY=1`
//!   (with its PID) once it serves.
//! - **SIGUSR2** (as HAProxy's master process takes it): the daemon starts
//!   the binary now installed at its path, with its own arguments and
//!   `--takeover`. The new process is its child, so it runs in the
//!   service's cgroup with the same user, capabilities and environment.
//!   If it fails before taking over, the running daemon logs why and goes
//!   on; only one upgrade runs at a time.
//! - **Main PID**: when the successor asks it to let go, the running
//!   daemon (the service's main process, which systemd listens to with the
//!   default `NotifyAccess=main`) sends `MAINPID=<successor>` before it
//!   answers, so systemd follows the successor and does not take the old
//!   daemon's exit, once its requests in flight are done, for the
//!   service's.
//!
//! Without `$NOTIFY_SOCKET` (not under systemd) the messages are not sent,
//! and SIGUSR2 works the same.

use std::{
    ffi::OsString,
    os::{fd::AsRawFd, unix::net::UnixDatagram},
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use log::{info, warn};

/// An upgrade's successor is running and has not taken over yet.
static UPGRADING: AtomicBool = AtomicBool::new(false);

/// Send `state` (`KEY=VALUE` lines) to systemd's notification socket, if
/// the daemon has one. Failures are logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|s| {
        use std::os::unix::ffi::OsStrExt as _;
        let bytes = path.as_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket (systemd's own is a path).
            Some(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                s.send_to_addr(state.as_bytes(), &addr)
            }
            None => s.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        warn!("systemd notification {state:?}: {e}");
    }
}

/// `READY=1`, with the daemon's PID.
pub fn ready() {
    notify(&format!("READY=1\nMAINPID={}\n", std::process::id()));
}

/// The PID of the process at the other end of a unix socket.
pub fn peer_pid(conn: &impl AsRawFd) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket, and a buffer of the size given.
    let r = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

/// The successor `pid` takes over: systemd is to follow it.
pub fn hand_over(pid: Option<u32>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    match pid {
        Some(pid) => {
            info!("takeover: process {pid} is the service's main process from now");
            notify(&format!("MAINPID={pid}\n"));
        }
        None => warn!("takeover: the new daemon's PID is unknown; systemd is not told"),
    }
}

/// The binary at the path this one was started from (after a package
/// upgrade: the new one), and the arguments for it.
fn successor() -> Result<(PathBuf, Vec<OsString>), String> {
    let mut args = std::env::args_os();
    let argv0 = args.next().map(PathBuf::from);
    let exe = match argv0 {
        Some(p) if p.is_absolute() => p,
        _ => {
            // `/proc/self/exe` says "PATH (deleted)" once the file was
            // replaced: the path is what is wanted.
            let p = std::env::current_exe().map_err(|e| format!("this binary's path: {e}"))?;
            let s = p.to_string_lossy();
            PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s).to_owned())
        }
    };
    let mut rest: Vec<OsString> = args.collect();
    if !rest.iter().any(|a| a == "--takeover") {
        rest.push("--takeover".into());
    }
    Ok((exe, rest))
}

/// SIGUSR2: start the successor (see the module doc).
pub fn start_successor() {
    if UPGRADING.swap(true, Ordering::SeqCst) {
        warn!("SIGUSR2: an upgrade is under way already; ignored");
        return;
    }
    let started = successor().and_then(|(exe, args)| {
        let child = Command::new(&exe)
            .args(&args)
            .spawn()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        Ok((exe, child))
    });
    let (exe, mut child) = match started {
        Ok(c) => c,
        Err(e) => {
            UPGRADING.store(false, Ordering::SeqCst);
            warn!("SIGUSR2: the new daemon did not start: {e}; this one goes on");
            return;
        }
    };
    let pid = child.id();
    info!(
        "SIGUSR2: started {} (process {pid}) to take over",
        exe.display()
    );
    // Its end matters only if it comes first (this daemon goes on).
    std::thread::spawn(move || {
        match child.wait() {
            Ok(s) if s.success() => info!("upgrade: process {pid} ended"),
            Ok(s) => warn!("upgrade: process {pid} failed ({s}); this daemon goes on"),
            Err(e) => warn!("upgrade: process {pid}: {e}"),
        }
        UPGRADING.store(false, Ordering::SeqCst);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_takes_over_once() {
        let (_, args) = successor().unwrap();
        assert_eq!(args.iter().filter(|a| *a == "--takeover").count(), 1);
    }

    #[test]
    fn a_peer_pid_is_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(peer_pid(&a), Some(std::process::id()));
    }
}
