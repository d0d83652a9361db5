//! A test peer for the peers labs: speaks the daemon's peer protocol from
//! inside a lab namespace, correctly or wrongly on purpose. Blocking
//! sockets; every read has a timeout.
#![allow(dead_code)] // each test file uses a different part

use std::{
    collections::BTreeMap,
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use balancer::peers::{
    auth::{self, Role, Transcript},
    seal::{Opener, Sealer},
    wire::{self, Msg},
};

/// The peer port of the labs' balancers (in the lab's own namespaces,
/// where nothing else listens).
pub const PEER_PORT: u16 = 7100;

/// `balancer ARGS` against the admin socket `sock`.
pub fn cli(sock: &Path, args: &[&str]) -> String {
    balancer_tests::lab::output(
        std::process::Command::new(balancer_tests::balancer_bin())
            .arg("--socket")
            .arg(sock)
            .args(args),
    )
    .unwrap_or_else(|e| panic!("balancer {args:?}: {e}"))
}

/// `balancer ARGS --json`, parsed.
pub fn cli_json(sock: &Path, args: &[&str]) -> serde_json::Value {
    let out = cli(sock, &[args, &["--json"]].concat());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("balancer {args:?}: {e}: {out}"))
}

/// The stick table of the daemon at `sock`: client -> (server as
/// "backend/name", server id).
pub fn table(sock: &Path) -> BTreeMap<String, (String, u64)> {
    cli_json(sock, &["table", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["client"].as_str().unwrap().to_owned(),
                (
                    e["server"].as_str().unwrap_or("?").to_owned(),
                    e["server_id"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Run `f` on a thread inside network namespace `ns`. A socket made there
/// stays in that namespace when it is handed back.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        // SAFETY: setns(2) on this thread only, with a namespace fd we own.
        let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

fn socket(to: SocketAddr, rcvbuf: Option<usize>) -> socket2::Socket {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    if let Some(n) = rcvbuf {
        // Before connect or listen: the window scale is fixed at the SYN.
        s.set_recv_buffer_size(n).unwrap();
    }
    s
}

/// A TCP connection from namespace `ns` to `to`; `rcvbuf`: a small receive
/// buffer (a peer that will stop reading advertises a small window).
pub fn connect(ns: &str, to: SocketAddr, rcvbuf: Option<usize>) -> TcpStream {
    let s = in_netns(ns, move || {
        let s = socket(to, rcvbuf);
        s.connect(&to.into()).map(|()| s)
    })
    .unwrap_or_else(|e| panic!("connecting to {to}: {e}"));
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// As [`connect`], from source address `from` (one of the namespace's).
pub fn connect_from(ns: &str, from: std::net::IpAddr, to: SocketAddr) -> TcpStream {
    let s = in_netns(ns, move || {
        let s = socket(to, None);
        s.bind(&SocketAddr::new(from, 0).into())?;
        s.connect(&to.into()).map(|()| s)
    })
    .unwrap_or_else(|e| panic!("connecting to {to} from {from}: {e}"));
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// A listener in namespace `ns` at `at` (accepted connections inherit
/// `rcvbuf`).
pub fn listen(ns: &str, at: SocketAddr, rcvbuf: Option<usize>) -> TcpListener {
    let l = in_netns(ns, move || {
        let s = socket(at, rcvbuf);
        s.set_reuse_address(true)?;
        s.bind(&at.into())?;
        s.listen(8)?;
        Ok::<_, io::Error>(s)
    })
    .unwrap_or_else(|e| panic!("listening on {at}: {e}"));
    l.into()
}

/// Accept one connection within `within`.
pub fn accept(l: &TcpListener, within: Duration) -> Option<TcpStream> {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                return Some(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    None
}

/// One frame's bytes, length prefix included.
pub fn read_raw(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut frame = len.to_vec();
    frame.resize(4 + u32::from_be_bytes(len) as usize, 0);
    s.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

/// A frame of the handshake (no MAC).
pub fn read_plain(s: &mut TcpStream) -> Option<Msg> {
    wire::decode(&read_raw(s)?[4..]).ok()
}

pub fn write_plain(s: &mut TcpStream, m: &Msg) {
    s.write_all(&wire::encode(m).unwrap()).unwrap();
}

pub fn hello(section: &str, from: &str, to: &str, nonce: [u8; 32]) -> Msg {
    Msg::Hello {
        version: wire::VERSION,
        section: section.into(),
        from: from.into(),
        to: to.into(),
        nonce,
    }
}

/// An established link, either side: its frames sealed with the keys
/// both ends derived in the handshake.
pub struct Link {
    pub s: TcpStream,
    seal: Sealer,
    open: Opener,
}

/// Dial the handshake on `s` as `from`, asking for `to`. `Err`: what the
/// daemon answered instead of its welcome (`None`: it closed).
pub fn dial(
    mut s: TcpStream,
    section: &str,
    from: &str,
    to: &str,
    secret: &str,
) -> Result<Link, Option<Msg>> {
    let mine = [7u8; 32];
    write_plain(&mut s, &hello(section, from, to, mine));
    let theirs = match read_plain(&mut s) {
        Some(Msg::Challenge { nonce }) => nonce,
        other => return Err(other),
    };
    let t = Transcript {
        section,
        dialer: from,
        listener: to,
        dialer_nonce: &mine,
        listener_nonce: &theirs,
    };
    write_plain(
        &mut s,
        &Msg::Auth {
            mac: auth::sign(secret.as_bytes(), Role::Dialer, &t),
        },
    );
    match read_plain(&mut s) {
        Some(Msg::Welcome { mac }) => {
            assert!(
                auth::verify(secret.as_bytes(), Role::Listener, &t, &mac),
                "the daemon's welcome does not prove the secret"
            );
            let (seal, open) = auth::session_keys(secret.as_bytes(), &t).split(Role::Dialer);
            Ok(Link { s, seal, open })
        }
        other => Err(other),
    }
}

/// Answer the handshake of a daemon that dialed us (we are `local`).
pub fn answer(mut s: TcpStream, section: &str, local: &str, secret: &str) -> Link {
    let (from, theirs) = match read_plain(&mut s) {
        Some(Msg::Hello { from, nonce, .. }) => (from, nonce),
        other => panic!("the daemon dialed with {other:?}"),
    };
    let mine = [9u8; 32];
    write_plain(&mut s, &Msg::Challenge { nonce: mine });
    let t = Transcript {
        section,
        dialer: &from,
        listener: local,
        dialer_nonce: &theirs,
        listener_nonce: &mine,
    };
    match read_plain(&mut s) {
        Some(Msg::Auth { mac }) => assert!(auth::verify(secret.as_bytes(), Role::Dialer, &t, &mac)),
        other => panic!("the daemon sent {other:?} instead of its proof"),
    }
    write_plain(
        &mut s,
        &Msg::Welcome {
            mac: auth::sign(secret.as_bytes(), Role::Listener, &t),
        },
    );
    let (seal, open) = auth::session_keys(secret.as_bytes(), &t).split(Role::Listener);
    Link { s, seal, open }
}

impl Link {
    /// The next frame this side sends, sealed (its sequence number taken).
    pub fn frame(&mut self, m: &Msg) -> Vec<u8> {
        self.seal.seal(m).unwrap()
    }

    pub fn send(&mut self, m: &Msg) {
        let f = self.frame(m);
        self.send_raw(&f);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// The next frame from the daemon, checked and decoded.
    pub fn recv(&mut self) -> Option<Msg> {
        let frame = read_raw(&mut self.s)?;
        Some(
            self.open
                .open(&frame[4..])
                .expect("a frame from the daemon that does not open"),
        )
    }

    /// Whether the daemon closes the connection within `within` (what it
    /// sends meanwhile is read and dropped).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}
