//! A SIGHUP reload that changes a setting the running daemon took at start
//! (an HTTP frontend's `timeout_client`, `max_header_bytes` or `maxconn`, the
//! `[peers]` section and so its secret) is refused, naming the key, and the
//! running configuration stays; it used to log "reloaded" and keep the old
//! value (an old, leaked peers secret kept working).

use std::time::Duration;

use balancer_tests::http::{Svc, free_port};

/// The section (local `a` on `port`, and `b` on `other`, where nothing
/// listens: a section with the local peer alone would replicate nothing,
/// and is refused).
fn peers(port: u16, other: u16, secret: &str) -> String {
    format!(
        "[peers.lb]\nlocal = \"a\"\nsecret = \"{secret}\"\n\n[peers.lb.peer]\na = \"127.0.0.1:{port}\"\n\
         b = \"127.0.0.1:{other}\"\n"
    )
}

#[test]
fn a_reload_changing_settings_taken_at_start_is_refused_naming_them() {
    let (port, other) = (free_port().unwrap(), free_port().unwrap());
    let old_secret = "the first secret, 32 bytes long.";
    // The backend's stick table is what the section replicates (a section
    // no table names is refused).
    let svc = Svc::launch(
        "reload-settings",
        "timeout_client = \"30s\"\nmax_header_bytes = 65536\n",
        "stick_table = { size = \"1k\", peers = \"lb\" }\nstick = \"on src\"\n",
        &format!(
            "[[backend.server]]\nname = \"s0\"\naddress = \"127.0.0.1:9\"\n\n{}",
            peers(port, other, old_secret)
        ),
    );
    let config = svc.dir.join("balancer.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let cases = [
        (
            original.replace("timeout_client = \"30s\"", "timeout_client = \"31s\""),
            "frontend web timeout_client",
        ),
        (
            original.replace("max_header_bytes = 65536", "max_header_bytes = 32768"),
            "frontend web max_header_bytes",
        ),
        (
            original.replace(
                "max_header_bytes = 65536",
                "max_header_bytes = 65536\nmaxconn = 100",
            ),
            "frontend web maxconn",
        ),
        (
            original.replace(old_secret, "a new secret after the old leaked"),
            "peers (the [peers] section)",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        assert_ne!(text, &original, "case {i}: the config did not change");
        std::fs::write(&config, text).unwrap();
        svc.daemon.signal(libc::SIGHUP).unwrap();
        svc.daemon.expect_logged(
            // A changed timeout_client also changes the timeouts that
            // default to it, named after it.
            &format!("reload failed: changing {key}"),
            Duration::from_secs(10),
        );
    }
    assert!(
        !svc.daemon.output().contains("reloaded:"),
        "a reload went through: {}",
        svc.daemon.output()
    );
    // The running configuration still answers.
    std::fs::write(&config, &original).unwrap();
    let status = svc.cli(&["status"]);
    assert!(status.contains("frontend web"), "{status}");
}
