//! Restarts that drop no connection (`balancer run --takeover`, as
//! HAProxy's `expose-fd listeners`): the new daemon asks the running one,
//! over the admin socket, for its HTTP listening sockets, and gets them
//! as file descriptors (`SCM_RIGHTS`); then it asks it to let go. The old
//! daemon stops accepting (what arrives meanwhile waits in the sockets'
//! backlog, which the new one now holds), writes its stick entries to the
//! map, closes its admin socket, metrics and peers listeners, drops its
//! lock on the pin directory, answers, and then lets its requests in
//! flight finish before it exits.
//!
//! On the admin socket, a connection whose first bytes are
//! `TAKEOVER 1\n` speaks this, not HTTP:
//! - the old daemon sends one message: a 4-byte length (big-endian), then
//!   that many bytes of JSON, the listeners' addresses in the order of
//!   the descriptors that come with it (at most [`MAX_FDS`]);
//! - the new one sends `RELEASE\n` when it is ready to go on; the old
//!   answers `RELEASED\n` once it has let go, then an 8-byte length and
//!   that many bytes: its maps when they live in its memory (ids and stick
//!   entries, see `Dataplane::snapshot`), nothing when they are pinned.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::SocketAddr,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::net::UnixStream,
    },
    path::Path,
    time::Duration,
};

/// What a takeover connection opens with.
pub const HELLO: &[u8] = b"TAKEOVER 1\n";
const RELEASE: &str = "RELEASE\n";
const RELEASED: &str = "RELEASED\n";
/// Descriptors in the one message (the kernel's `SCM_MAX_FD` is 253).
pub const MAX_FDS: usize = 200;
/// How long either side waits for the other.
const WAIT: Duration = Duration::from_secs(20);
/// Largest map snapshot taken.
const MAX_STATE: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    #[error("no balancer answers on {0} (nothing to take over; start without --takeover)")]
    NotRunning(String),
    #[error("taking over from the daemon on {path}: {reason}")]
    Failed { path: String, reason: String },
}

/// Listening sockets received from the running daemon, and the
/// connection to tell it to let go.
pub struct Taken {
    pub listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    /// The old daemon's in-memory maps (empty: none, or pinned ones).
    pub state: Vec<u8>,
    conn: BufReader<UnixStream>,
    path: String,
}

/// Ask the daemon on `admin_socket` for its listening sockets.
pub fn request(admin_socket: &Path) -> Result<Taken, TakeoverError> {
    let path = admin_socket.display().to_string();
    let failed = |reason: String| TakeoverError::Failed {
        path: path.clone(),
        reason,
    };
    let mut conn =
        UnixStream::connect(admin_socket).map_err(|_| TakeoverError::NotRunning(path.clone()))?;
    conn.set_read_timeout(Some(WAIT))
        .and_then(|()| conn.set_write_timeout(Some(WAIT)))
        .and_then(|()| conn.write_all(HELLO))
        .map_err(|e| failed(e.to_string()))?;
    let (text, fds) = receive(&conn).map_err(|e| failed(e.to_string()))?;
    let addrs: Vec<SocketAddr> =
        serde_json::from_slice(&text).map_err(|e| failed(format!("its list: {e}")))?;
    if addrs.len() != fds.len() {
        return Err(failed(format!(
            "{} addresses for {} descriptors",
            addrs.len(),
            fds.len()
        )));
    }
    let listeners = addrs
        .into_iter()
        .zip(fds)
        .map(|(a, fd)| (a, std::net::TcpListener::from(fd)))
        .collect();
    Ok(Taken {
        listeners,
        state: Vec::new(),
        conn: BufReader::new(conn),
        path,
    })
}

impl Taken {
    /// Tell the old daemon to let go, and wait until it has.
    pub fn release(&mut self) -> Result<(), TakeoverError> {
        let failed = |reason: String| TakeoverError::Failed {
            path: self.path.clone(),
            reason,
        };
        self.conn
            .get_mut()
            .write_all(RELEASE.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
        let mut line = String::new();
        self.conn
            .read_line(&mut line)
            .map_err(|e| failed(e.to_string()))?;
        if line != RELEASED {
            return Err(failed(format!("it answered {line:?}")));
        }
        let mut len = [0u8; 8];
        self.conn
            .read_exact(&mut len)
            .map_err(|e| failed(e.to_string()))?;
        let len = u64::from_be_bytes(len);
        if len > MAX_STATE {
            return Err(failed(format!(
                "{len} bytes of state, more than {MAX_STATE}"
            )));
        }
        let mut state = vec![0u8; len as usize];
        self.conn
            .read_exact(&mut state)
            .map_err(|e| failed(e.to_string()))?;
        self.state = state;
        Ok(())
    }

    /// The sockets for `addr` (removed from what is left).
    pub fn take(&mut self, addr: SocketAddr) -> Vec<std::net::TcpListener> {
        let (mine, rest) = std::mem::take(&mut self.listeners)
            .into_iter()
            .partition(|(a, _)| *a == addr);
        self.listeners = rest;
        mine.into_iter().map(|(_, l)| l).collect()
    }
}

/// The old daemon's side, on a connection that opened with [`HELLO`]
/// (already read): send `listeners`, wait for `RELEASE`, call `release`
/// (which returns the maps' state once the daemon has let go), answer.
pub fn serve(
    conn: UnixStream,
    listeners: Vec<(SocketAddr, OwnedFd)>,
    release: impl FnOnce() -> Vec<u8>,
) -> std::io::Result<()> {
    if listeners.len() > MAX_FDS {
        return Err(std::io::Error::other(format!(
            "{} listening sockets, more than {MAX_FDS} in one takeover",
            listeners.len()
        )));
    }
    conn.set_read_timeout(Some(WAIT))?;
    conn.set_write_timeout(Some(WAIT))?;
    let addrs: Vec<SocketAddr> = listeners.iter().map(|(a, _)| *a).collect();
    let text = serde_json::to_vec(&addrs).map_err(std::io::Error::other)?;
    let fds: Vec<i32> = listeners.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    send(&conn, &text, &fds)?;
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line != RELEASE {
        return Err(std::io::Error::other(format!(
            "expected RELEASE, got {line:?}"
        )));
    }
    let state = release();
    let w = r.get_mut();
    w.write_all(RELEASED.as_bytes())?;
    w.write_all(&(state.len() as u64).to_be_bytes())?;
    w.write_all(&state)
}

/// One `sendmsg`: the length, `text`, and `fds` as `SCM_RIGHTS`.
fn send(conn: &UnixStream, text: &[u8], fds: &[i32]) -> std::io::Result<()> {
    let len = u32::try_from(text.len())
        .map_err(std::io::Error::other)?
        .to_be_bytes();
    let mut data = len.to_vec();
    data.extend_from_slice(text);
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut cbuf = vec![0u8; space.max(1)];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the
    // sendmsg call, and the control buffer is CMSG_SPACE(fds) bytes.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
        libc::sendmsg(conn.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The descriptors went with the first byte; the rest, if the kernel
    // took less, by plain writes.
    (&*conn).write_all(&data[sent as usize..])
}

/// The message [`send`] sends: its text and descriptors.
fn receive(conn: &UnixStream) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut head = [0u8; 4];
    let fd_bytes = MAX_FDS * std::mem::size_of::<i32>();
    // SAFETY: as in `send`.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: head.as_mut_ptr().cast(),
        iov_len: head.len(),
    };
    let mut fds = Vec::new();
    // SAFETY: as in `send`; the kernel writes at most msg_controllen bytes
    // of control data, and each descriptor it passes is new and ours.
    let got = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let got = libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if got >= 0 {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                        / std::mem::size_of::<i32>();
                    let p = libc::CMSG_DATA(c).cast::<i32>();
                    for i in 0..n {
                        fds.push(OwnedFd::from_raw_fd(p.add(i).read_unaligned()));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            if msg.msg_flags & libc::MSG_CTRUNC != 0 {
                return Err(std::io::Error::other("more descriptors than expected"));
            }
        }
        got
    };
    if got < 0 {
        return Err(std::io::Error::last_os_error());
    }
    (&*conn).read_exact(&mut head[got as usize..])?;
    let len = u32::from_be_bytes(head) as usize;
    if len > 1 << 20 {
        return Err(std::io::Error::other("a list longer than 1 MiB"));
    }
    let mut text = vec![0u8; len];
    (&*conn).read_exact(&mut text)?;
    Ok((text, fds))
}

/// What a takeover connection asks of the main loop.
pub(super) enum TakeoverMsg {
    /// Copies of the HTTP listening sockets.
    Sockets(tokio::sync::oneshot::Sender<Vec<(std::net::SocketAddr, std::os::fd::OwnedFd)>>),
    /// Let go (answered once done, with the in-memory maps' state).
    Release(tokio::sync::oneshot::Sender<Vec<u8>>),
}

/// A takeover connection (on a blocking thread): the sockets from the main
/// loop to the new daemon, then its `RELEASE` to the main loop.
pub(super) fn serve_connection(
    conn: std::os::unix::net::UnixStream,
    tx: &tokio::sync::mpsc::Sender<TakeoverMsg>,
) {
    let successor = super::upgrade::peer_pid(&conn);
    let (reply, sockets) = tokio::sync::oneshot::channel();
    if tx.blocking_send(TakeoverMsg::Sockets(reply)).is_err() {
        return;
    }
    let Ok(sockets) = sockets.blocking_recv() else {
        return;
    };
    let served = serve(conn, sockets, || {
        let (done, wait) = tokio::sync::oneshot::channel();
        if tx.blocking_send(TakeoverMsg::Release(done)).is_err() {
            return Vec::new();
        }
        let state = wait.blocking_recv().unwrap_or_default();
        // Before the answer: systemd follows the successor before this
        // daemon can end.
        super::upgrade::hand_over(successor);
        state
    });
    if let Err(e) = served {
        log::warn!("takeover: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_cross_a_unix_socket_and_still_accept() {
        let (a, b) = UnixStream::pair().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let dup = OwnedFd::from(l.try_clone().unwrap());
        let server = std::thread::spawn(move || {
            let mut hello = [0u8; HELLO.len()];
            (&a).read_exact(&mut hello).unwrap();
            assert_eq!(&hello, HELLO);
            serve(a, vec![(addr, dup)], || b"state".to_vec()).unwrap();
        });
        (&b).write_all(HELLO).unwrap();
        let (text, fds) = receive(&b).unwrap();
        let addrs: Vec<SocketAddr> = serde_json::from_slice(&text).unwrap();
        assert_eq!(addrs, [addr]);
        drop(l);
        let got = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        let _c = std::net::TcpStream::connect(addr).unwrap();
        got.accept().expect("the passed socket accepts");
        let mut taken = Taken {
            listeners: Vec::new(),
            state: Vec::new(),
            conn: BufReader::new(b),
            path: "pair".into(),
        };
        assert!(taken.take(addr).is_empty());
        taken.release().unwrap();
        assert_eq!(taken.state, b"state");
        server.join().unwrap();
    }
}
