//! HAProxy 2.6 as the reference the conformance tests compare with:
//! `haproxy -db` on a config written per test, its admin socket, its
//! directory kept (config and log) when the test fails.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{
    http::free_port,
    proc::{Proc, wait_for},
};

pub const HAPROXY: &str = "/usr/sbin/haproxy";

/// The conformance suites' haproxy.cfg: one thread, an admin socket at
/// `sock`, mode http, no logging and no added headers, a connection that
/// fails retried once after `timeout connect` (200 ms), frontend `fe` on
/// `front` in front of backend `app` made of `backend` (its indented lines).
pub fn http_config(front: SocketAddr, sock: &Path, backend: &str) -> String {
    http_config_binds(front, "", sock, backend)
}

/// [`http_config`] with more `bind` lines in the frontend (`binds`: whole
/// indented lines, e.g. a TLS bind).
pub fn http_config_binds(front: SocketAddr, binds: &str, sock: &Path, backend: &str) -> String {
    format!(
        "global\n    nbthread 1\n    stats socket {} level admin\n\n\
         defaults\n    mode http\n    timeout connect 200ms\n    timeout client 10s\n    \
         timeout server 10s\n    retries 1\n\n\
         frontend fe\n    bind {front}\n{binds}    default_backend app\n\n\
         backend app\n{backend}",
        sock.display()
    )
}

pub struct Haproxy {
    pub dir: PathBuf,
    pub proc: Proc,
    /// Where its frontend listens (127.0.0.1, a free port).
    pub front: SocketAddr,
}

impl Haproxy {
    /// Start HAProxy on the config `config(front, admin socket)` returns,
    /// in a directory named after `tag`; returns once it accepts
    /// connections on `front`.
    pub fn start(tag: &str, config: impl FnOnce(SocketAddr, &Path) -> String) -> Haproxy {
        let dir = std::env::temp_dir().join(format!("blb-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let front: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
            .parse()
            .unwrap();
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config(front, &dir.join("haproxy.sock"))).unwrap();
        let mut cmd = Command::new(HAPROXY);
        cmd.arg("-db").arg("-f").arg(&file);
        let mut proc =
            Proc::spawn("haproxy", cmd, &dir).expect("haproxy (run `cargo xtask setup`)");
        let ok = wait_for(Duration::from_secs(10), || {
            TcpStream::connect(front).is_ok() || proc.try_wait().ok().flatten().is_some()
        });
        assert!(
            ok && proc.try_wait().unwrap().is_none(),
            "haproxy did not start: {}",
            proc.output()
        );
        Haproxy { dir, proc, front }
    }

    /// One command on its admin socket; the answer.
    pub fn admin(&self, command: &str) -> String {
        let mut sock = UnixStream::connect(self.dir.join("haproxy.sock")).expect("admin socket");
        sock.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        sock.read_to_string(&mut answer).unwrap();
        answer
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.proc.stop();
        if std::thread::panicking() {
            eprintln!("haproxy config and log kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
