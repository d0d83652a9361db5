//! An HTTP-only configuration needs nothing of the kernel's: the example
//! `examples/http-cookie-insert.toml` (its addresses and ports moved onto
//! loopback) runs as a user this test creates, with no capability, in a
//! mount namespace where no bpffs is mounted. It serves, keeps its users
//! on their servers by cookie and answers its admin API and metrics.
//!
//! Needs root to create the user and the namespace (the daemon itself
//! runs without it).

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use balancer_tests::{
    http::{Backend, Client, free_port, scrape},
    lab::output,
    proc::{Proc, wait_for},
};

/// A system user for the test, removed when dropped.
struct User(String);

impl User {
    fn create(name: &str) -> User {
        let _ = Command::new("userdel").arg(name).output();
        output(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ]))
        .expect("useradd");
        User(name.to_owned())
    }

    fn uid(&self) -> u32 {
        output(Command::new("id").args(["-u", &self.0]))
            .expect("id -u")
            .trim()
            .parse()
            .expect("a uid")
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}

/// A directory the test user owns, removed when dropped.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `text` with each `(from, to)` replaced; every `from` must be there (an
/// example that changed fails here, not later in a confusing way).
fn substitute(mut text: String, pairs: &[(&str, String)]) -> String {
    for (from, to) in pairs {
        assert!(text.contains(from), "the example has no {from:?}");
        text = text.replace(from, to);
    }
    text
}

/// The line of /proc/PID/status that starts with `key`.
fn status_line(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn http_only_example_runs_as_a_user_without_capabilities_or_bpffs() {
    balancer_tests::require_root();
    let user = User::create(&format!("blbu{}", std::process::id()));
    let dir = Dir(std::env::temp_dir().join(format!("blb-{}-nonroot", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    std::os::unix::fs::chown(&dir.0, Some(user.uid()), None).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();

    let web1 = Backend::start("web1", 0).unwrap();
    let web2 = Backend::start("web2", 0).unwrap();
    let front = format!("127.0.0.1:{}", free_port().unwrap());
    let metrics = format!("127.0.0.1:{}", free_port().unwrap());
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/http-cookie-insert.toml");
    let config = substitute(
        std::fs::read_to_string(&example).unwrap(),
        &[
            (
                "/run/balancer/admin.sock",
                dir.0.join("admin.sock").display().to_string(),
            ),
            ("127.0.0.1:9100", metrics.clone()),
            ("0.0.0.0:80", front.clone()),
            ("198.18.1.11:8080", web1.addr.to_string()),
            ("198.18.1.12:8080", web2.addr.to_string()),
        ],
    );
    let file = dir.0.join("balancer.toml");
    std::fs::write(&file, config).unwrap();

    // A mount namespace of its own without the bpffs, then the user's
    // ids with every capability dropped (the bounding set too).
    let script = format!(
        "umount /sys/fs/bpf 2>/dev/null; grep -q ' bpf ' /proc/self/mounts && exit 97; \
         exec setpriv --reuid={u} --regid={u} --clear-groups --inh-caps=-all --bounding-set=-all \
         {bin} run --config {file}",
        u = user.0,
        bin = balancer_tests::balancer_bin().display(),
        file = file.display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("RUST_LOG", "info");
    let mut daemon = Proc::spawn("balancer", cmd, &dir.0).unwrap();
    let up = wait_for(Duration::from_secs(20), || {
        daemon.output().contains("running:") || daemon.try_wait().ok().flatten().is_some()
    });
    assert!(
        up && daemon.try_wait().ok().flatten().is_none(),
        "the daemon did not start: {}",
        daemon.output()
    );
    let log = daemon.output();
    assert!(log.contains("running: HTTP only"), "{log}");

    // It is the user's process, with no capability, and sees no bpffs.
    let pid = daemon.pid();
    let uid = user.uid().to_string();
    let uids = status_line(pid, "Uid:");
    assert!(uids.split_whitespace().skip(1).all(|u| u == uid), "{uids}");
    let eff = status_line(pid, "CapEff:");
    assert!(eff.ends_with("0000000000000000"), "{eff}");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mounts")).unwrap();
    assert!(!mounts.contains(" bpf "), "{mounts}");

    // It serves, and keeps a user on the server its cookie names.
    let front = front.parse().unwrap();
    let mut c = Client::new(front);
    let first = c.get("/").unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    let cookie = first.header("set-cookie").unwrap_or_default().to_owned();
    assert!(cookie.starts_with("SERVER=web"), "{cookie}");
    for _ in 0..10 {
        let a = c.get("/").unwrap();
        assert_eq!(a.body, first.body, "the user moved");
    }
    // Its admin API (the socket is the user's) and its metrics answer.
    let list = output(
        Command::new(balancer_tests::balancer_bin())
            .arg("--socket")
            .arg(dir.0.join("admin.sock"))
            .args(["backend", "list", "--json"]),
    )
    .unwrap();
    assert!(list.contains("web1") && list.contains("web2"), "{list}");
    let m = scrape(metrics.parse().unwrap());
    let served: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("balancer_http_requests_total"))
        .map(|(_, v)| v)
        .sum();
    assert!(served >= 11.0, "{m:?}");
    daemon.stop().unwrap();
}
