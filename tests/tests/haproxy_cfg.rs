//! `balancer run --config haproxy.cfg`: the guide's configurations as
//! HAProxy reads them (server and listening addresses added), served by
//! balancer; `balancer convert` prints TOML that passes `check-config` and
//! runs the same; a file balancer cannot run is refused with its line.

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use balancer_tests::{
    http::{Backend, Client, free_port},
    lab::{BPFFS, output},
    proc::{Proc, wait_for},
    require_root,
};

/// A daemon on a haproxy.cfg (or its converted TOML), with its own pins
/// and socket.
struct Run {
    dir: std::path::PathBuf,
    pins: std::path::PathBuf,
    daemon: Proc,
}

impl Run {
    fn start(tag: &str, file: &str, text: &str, cfg_args: bool) -> Run {
        require_root();
        let id = format!("blb-{}-{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        let pins = Path::new(BPFFS).join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join(file);
        std::fs::write(&config, text).unwrap();
        let mut cmd = Command::new(balancer_tests::balancer_bin());
        cmd.args(["run", "--config"]).arg(&config);
        if cfg_args {
            cmd.arg("--pin-dir")
                .arg(&pins)
                .arg("--admin-socket")
                .arg(dir.join("admin.sock"));
        }
        cmd.env("RUST_LOG", "info");
        let mut daemon = Proc::spawn("balancer", cmd, &dir).expect("balancer run");
        let ok = wait_for(Duration::from_secs(20), || {
            daemon.output().contains("running:") || daemon.try_wait().ok().flatten().is_some()
        });
        assert!(
            ok && daemon.try_wait().unwrap().is_none(),
            "balancer did not start on {file}: {}",
            daemon.output()
        );
        Run { dir, pins, daemon }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.daemon.stop();
        let _ = std::fs::remove_dir_all(&self.pins);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn balancer(args: &[&str]) -> std::io::Result<String> {
    output(Command::new(balancer_tests::balancer_bin()).args(args))
}

/// The guide's first configuration: `cookie SERVER_USED insert indirect
/// nocache`, two servers with their cookies.
fn cookie_cfg(front: SocketAddr, s1: SocketAddr, s2: SocketAddr) -> String {
    format!(
        "global\n    log stdout format raw local0\n\n\
         defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\n\
         frontend www\n    bind {front}\n    default_backend servers\n\n\
         backend servers\n    cookie SERVER_USED insert indirect nocache\n    \
         server web1 {s1} check  cookie web1\n    server web2 {s2} check  cookie web2\n"
    )
}

/// Users with cookie jars stay on their server; first requests alternate.
fn check_cookie_service(front: SocketAddr) {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let mut c = Client::new(front);
        let first = c.get("/").unwrap();
        assert_eq!(first.status, 200);
        let set = first.header("set-cookie").unwrap_or_default().to_owned();
        assert!(set.starts_with("SERVER_USED="), "{set}");
        for _ in 0..3 {
            let a = c.get("/").unwrap();
            assert_eq!(a.body, first.body, "a user moved");
        }
        seen.insert(first.body);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn the_guides_cookie_configuration_runs_as_written_and_converted() {
    let b1 = Backend::start("web1", 0).unwrap();
    let b2 = Backend::start("web2", 0).unwrap();
    let front: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let text = cookie_cfg(front, b1.addr, b2.addr);
    let run = Run::start("cfg-cookie", "haproxy.cfg", &text, true);
    assert!(
        run.daemon
            .output()
            .contains("haproxy.cfg:2: global `log`: skipped"),
        "{}",
        run.daemon.output()
    );
    check_cookie_service(front);
    drop(run);

    // `balancer convert`: TOML that passes check-config and serves the same.
    let dir = std::env::temp_dir().join(format!("blb-{}-cfg-convert", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, &text).unwrap();
    let pins = Path::new(BPFFS).join(format!("blb-{}-cfg-convert", std::process::id()));
    let toml = balancer(&[
        "convert",
        cfg.to_str().unwrap(),
        "--pin-dir",
        pins.to_str().unwrap(),
        "--admin-socket",
        dir.join("admin.sock").to_str().unwrap(),
    ])
    .unwrap();
    assert!(toml.contains("# backend servers (line 14)"), "{toml}");
    let toml_file = dir.join("converted.toml");
    std::fs::write(&toml_file, &toml).unwrap();
    let ok = balancer(&["check-config", toml_file.to_str().unwrap()]).unwrap();
    assert!(ok.contains(": ok"), "{ok}");
    let run = Run::start("cfg-converted", "converted.toml", &toml, false);
    check_cookie_service(front);
    drop(run);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_balancer_cannot_run_is_refused_with_its_line() {
    let dir = std::env::temp_dir().join(format!("blb-{}-cfg-bad", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("haproxy.cfg");
    // The guide prints its servers without addresses.
    std::fs::write(
        &cfg,
        "defaults\n    mode http\nfrontend www\n    bind :80\n    default_backend servers\n\
         backend servers\n    cookie SERVER_USED insert indirect nocache\n    \
         server web1 check cookie web1\n",
    )
    .unwrap();
    let e = balancer(&["check-config", cfg.to_str().unwrap()]).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("haproxy.cfg:8: server:") && text.contains("no address"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
