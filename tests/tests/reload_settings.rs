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

/// The kernel's stick table holds the tables that use it: a reload may
/// change their sizes while they fit (a smaller table used to be refused:
/// any change of the sum was); one whose tables need more entries than
/// the table holds is refused, naming the sizes (it cannot grow in place).
#[test]
fn a_reload_may_resize_stick_tables_while_they_fit() {
    let svc = Svc::launch(
        "reload-sizes",
        "",
        "stick_table = { size = \"2k\" }\nstick = \"on src\"\n",
        "[[backend.server]]\nname = \"s0\"\naddress = \"127.0.0.1:9\"\n",
    );
    let config = svc.dir.join("balancer.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let smaller = original.replace("size = \"2k\"", "size = \"1k\"");
    assert_ne!(smaller, original);
    std::fs::write(&config, &smaller).unwrap();
    svc.daemon.signal(libc::SIGHUP).unwrap();
    svc.daemon
        .expect_logged("reloaded:", Duration::from_secs(10));
    let grown = original.replace("size = \"2k\"", "size = \"100k\"");
    std::fs::write(&config, &grown).unwrap();
    svc.daemon.signal(libc::SIGHUP).unwrap();
    svc.daemon.expect_logged(
        "reload failed: changing stick_table.size (the stick tables now add up to 102400 entries; \
         the kernel table holds 2048",
        Duration::from_secs(10),
    );
}
