//! Network-namespace labs: the daemon attached to a real interface, real
//! TCP connections through it, and the ways `balancer run` must fail.

use std::{process::Command, time::Duration};

use balancer::stats::Stats;
use balancer_common::stats::Class;
use balancer_tests::{
    balancer_bin,
    lab::{Lab, LabSpec, output},
    packets::truncated_ipv4,
    proc::wait_for,
    require_root,
};

fn lab(clients: usize, backends: usize) -> Lab {
    require_root();
    Lab::new(LabSpec { clients, backends }).unwrap_or_else(|e| panic!("building the lab: {e}"))
}

fn stats(lab: &Lab) -> Stats {
    let v = lab.balancer_stats().expect("balancer stats --json");
    Stats::from_json(&v).unwrap_or_else(|| panic!("unexpected stats JSON: {v}"))
}

#[test]
fn real_tcp_connections_cross_the_xdp_interface_and_move_the_counters() {
    let lab = lab(1, 1);
    let _http = lab.start_http_backends(8080).expect("HTTP backends");
    let config = lab.write_config("balancer.toml", "").unwrap();
    let mut daemon = lab.start_balancer(&config).expect("balancer run");
    let attached = lab.xdp_attached(&lab.balancer).unwrap();
    assert!(attached.is_some(), "no XDP program on the balancer's eth0");
    assert!(
        daemon.output().contains("in native mode"),
        "{}",
        daemon.output()
    );

    let client = &lab.clients[0];
    let backend = &lab.backends[0];
    let before = stats(&lab);
    let body = client
        .run(
            "curl",
            &[
                "-sf",
                "--max-time",
                "5",
                &format!("http://{}:8080/", backend.ipv4),
            ],
        )
        .expect("HTTP over IPv4 through the balancer");
    assert_eq!(body, "backend s0\n");
    let mid = stats(&lab);
    let body = client
        .run(
            "curl",
            &[
                "-sf",
                "--max-time",
                "5",
                &format!("http://[{}]:8080/", backend.ipv6),
            ],
        )
        .expect("HTTP over IPv6 through the balancer");
    assert_eq!(body, "backend s0\n");
    let after = stats(&lab);

    // A TCP connection is at least SYN, SYN-ACK, ACK, request, response,
    // FINs: both directions cross the balancer's eth0 (it routes between
    // the client and the backend nets).
    let v4 = mid.since(&before);
    assert!(
        v4.get(Class::Ipv4Tcp).packets >= 6,
        "IPv4 TCP counter: {v4:?}"
    );
    assert!(
        v4.get(Class::Ipv4Tcp).bytes >= 6 * 54,
        "IPv4 TCP bytes: {v4:?}"
    );
    assert_eq!(
        v4.get(Class::Ipv6Tcp).packets,
        0,
        "no IPv6 TCP during the IPv4 request: {v4:?}"
    );
    let v6 = after.since(&mid);
    assert!(
        v6.get(Class::Ipv6Tcp).packets >= 6,
        "IPv6 TCP counter: {v6:?}"
    );
    // (The IPv4 connection's last FIN/ACK may still cross after curl has
    // returned, so IPv4 packets in this window are not an error.)

    // A malformed frame reaches the program: passed, counted, and the
    // program's aya-log line reaches the daemon's log.
    lab.send_raw_frame_to(
        &lab.balancer,
        &truncated_ipv4(lab.balancer.mac, lab.clients[0].mac),
    )
    .expect("raw frame");
    assert!(
        wait_for(Duration::from_secs(5), || stats(&lab)
            .get(Class::Malformed)
            .packets
            >= 1),
        "malformed frame not counted: {:?}",
        stats(&lab)
    );
    assert!(
        wait_for(Duration::from_secs(5), || daemon
            .output()
            .contains("malformed packet passed")),
        "aya-log line missing from the daemon log: {}",
        daemon.output()
    );

    let status = daemon.stop().unwrap();
    assert!(
        status.success(),
        "balancer exit on SIGTERM: {status}: {}",
        daemon.output()
    );
    // The data plane outlives the daemon (a restart takes it over).
    assert!(
        lab.xdp_attached(&lab.balancer).unwrap().is_some(),
        "SIGTERM must leave XDP attached"
    );
    assert!(lab.pin_dir.join("STICK").exists(), "stick table not pinned");
    // `balancer detach` removes it all.
    let out = lab.detach().expect("balancer detach");
    assert!(out.contains("link-eth0"), "{out}");
    assert_eq!(
        lab.xdp_attached(&lab.balancer).unwrap(),
        None,
        "XDP left attached after detach"
    );
    assert!(
        !lab.pin_dir.exists(),
        "pins left behind in {}",
        lab.pin_dir.display()
    );
    // Forwarding still works without the program.
    client
        .run(
            "curl",
            &[
                "-sf",
                "--max-time",
                "5",
                &format!("http://{}:8080/", backend.ipv4),
            ],
        )
        .expect("HTTP after detach");
}

/// Run `balancer run` to completion in the balancer namespace.
fn run_expecting_failure(lab: &Lab, config: &std::path::Path) -> String {
    let out = lab
        .balancer
        .command(balancer_bin())
        .arg("run")
        .arg("--config")
        .arg(config)
        .output()
        .expect("spawning balancer");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "want exactly one error line: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().last(),
        Some(errors[0]),
        "error must be last: {stderr}"
    );
    errors[0].to_owned()
}

#[test]
fn run_fails_with_one_line_and_leaves_nothing_attached() {
    let lab = lab(0, 0);
    let nothing_left = |what: &str| {
        assert_eq!(
            lab.xdp_attached(&lab.balancer).unwrap(),
            None,
            "{what}: XDP left on eth0"
        );
        assert!(
            !lab.pin_dir.exists(),
            "{what}: pins left in {}",
            lab.pin_dir.display()
        );
    };

    let missing = lab.dir.join("no-such.toml");
    let err = run_expecting_failure(&lab, &missing);
    assert!(
        err.contains("cannot read config") && err.contains("no-such.toml"),
        "{err}"
    );

    let cfg = lab.dir.join("unknown-if.toml");
    dataplane_config(&cfg, r#""nosuch0""#, "", &lab.pin_dir);
    let err = run_expecting_failure(&lab, &cfg);
    assert!(
        err.contains("interface \"nosuch0\" does not exist"),
        "{err}"
    );
    nothing_left("unknown interface");

    // eth0 attaches first, then the second interface fails: eth0 must be
    // detached again before the daemon exits.
    let cfg = lab.dir.join("partial.toml");
    dataplane_config(&cfg, r#""eth0", "nosuch1""#, "", &lab.pin_dir);
    let err = run_expecting_failure(&lab, &cfg);
    assert!(err.contains("nosuch1"), "{err}");
    nothing_left("second interface missing");

    // Loopback has no native (driver) XDP support.
    let cfg = lab.dir.join("native-lo.toml");
    dataplane_config(&cfg, r#""lo""#, "xdp_mode = \"native\"\n", &lab.pin_dir);
    let err = run_expecting_failure(&lab, &cfg);
    assert!(err.contains("\"lo\"") && err.contains("native"), "{err}");
    let lo = lab
        .balancer
        .run("ip", &["-d", "link", "show", "lo"])
        .unwrap();
    assert!(!lo.contains("xdp"), "XDP left on lo: {lo}");
    nothing_left("native on lo");

    // Not a bpffs.
    let cfg = lab.dir.join("not-bpffs.toml");
    dataplane_config(&cfg, r#""eth0""#, "", &lab.dir.join("pins"));
    let err = run_expecting_failure(&lab, &cfg);
    assert!(err.contains("not on a bpffs"), "{err}");
    nothing_left("pin_dir not on bpffs");
}

#[test]
fn a_second_daemon_cannot_take_an_interface_that_already_runs_xdp() {
    let lab = lab(0, 0);
    let config = lab.write_config("first.toml", "").unwrap();
    let mut first = lab.start_balancer(&config).expect("first balancer");
    let before = lab
        .xdp_attached(&lab.balancer)
        .unwrap()
        .expect("first attached");

    let second_pins = format!("{}-second", lab.pin_dir.display());
    let cfg = lab.dir.join("second.toml");
    dataplane_config(&cfg, r#""eth0""#, "", std::path::Path::new(&second_pins));
    let err = run_expecting_failure(&lab, &cfg);
    assert!(err.contains("\"eth0\""), "{err}");
    assert!(
        !std::path::Path::new(&second_pins).exists(),
        "second daemon left pins"
    );
    assert_eq!(
        lab.xdp_attached(&lab.balancer).unwrap().as_deref(),
        Some(before.as_str()),
        "the first daemon's program must stay attached"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "first daemon died: {}",
        first.output()
    );
    assert!(first.stop().unwrap().success(), "{}", first.output());
    assert_eq!(
        lab.xdp_attached(&lab.balancer).unwrap().as_deref(),
        Some(before.as_str()),
        "still attached after the first daemon stops"
    );
}

#[test]
fn stats_without_a_daemon_is_a_clear_error() {
    require_root();
    let out = output(Command::new(balancer_bin()).args([
        "stats",
        "--pin-dir",
        "/sys/fs/bpf/blb-no-such-daemon",
    ]))
    .unwrap_err()
    .to_string();
    assert!(
        out.contains("no pinned stats map") && out.contains("is `balancer run` running"),
        "{out}"
    );
}

#[test]
fn check_config_accepts_good_files_and_names_the_line_of_bad_ones() {
    let dir = std::env::temp_dir().join(format!("blb-{}-cfgtest", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[dataplane]\ninterfaces = [\"eth0\"]\n").unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"turbo\"\n",
    )
    .unwrap();
    let run = |f: &std::path::Path| {
        Command::new(balancer_bin())
            .arg("check-config")
            .arg(f)
            .output()
            .unwrap()
    };
    let ok = run(&good);
    let err = run(&bad);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(err.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("bad.toml:3:"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

/// Write a `[dataplane]`-only config: `interfaces` is the TOML list body,
/// `extra` more `[dataplane]` lines.
fn dataplane_config(
    path: &std::path::Path,
    interfaces: &str,
    extra: &str,
    pin_dir: &std::path::Path,
) {
    std::fs::write(
        path,
        format!(
            "[dataplane]\ninterfaces = [{interfaces}]\n{extra}pin_dir = \"{}\"\n",
            pin_dir.display()
        ),
    )
    .unwrap();
}
