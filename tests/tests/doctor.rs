//! `balancer doctor` (issue 21): one line per check that applies, the
//! command to run for anything not ok, exit status 1 on a FAIL; and the
//! veth finding logged by `balancer run` at start.

use std::{process::Command, time::Duration};

use balancer_tests::{
    lab::{Lab, LabSpec, Node},
    proc::{Proc, wait_for},
};

/// A finished command's success, stdout and stderr.
fn finish(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("running balancer");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `balancer doctor ARGS` inside `node`'s network namespace.
fn doctor_in(node: &Node, args: &[&str]) -> (bool, String, String) {
    finish(
        node.command(balancer_tests::balancer_bin())
            .arg("doctor")
            .args(args),
    )
}

/// The lines of `out` whose check is `check`.
fn lines<'a>(out: &'a str, check: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.get(6..).is_some_and(|r| r.starts_with(check)))
        .collect()
}

#[test]
fn an_http_only_configuration_needs_no_bpffs_and_no_capabilities() {
    let port = balancer_tests::http::free_port().expect("a free port");
    let dir = std::env::temp_dir().join(format!("blb-{}-doctor-http", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("http.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nsocket = \"{}\"\n\n[[frontend]]\nname = \"www\"\nmode = \"http\"\n\
             bind = \"127.0.0.1:{port}\"\ndefault_backend = \"app\"\n\n[[backend]]\n\
             name = \"app\"\n[[backend.server]]\nname = \"s0\"\naddress = \"127.0.0.1:{port}\"\n",
            dir.join("admin.sock").display()
        ),
    )
    .unwrap();
    let (ok, out, err) = finish(
        Command::new(balancer_tests::balancer_bin())
            .args(["doctor", "--config"])
            .arg(&config),
    );
    let json = finish(
        Command::new(balancer_tests::balancer_bin())
            .args(["doctor", "--json", "--config"])
            .arg(&config),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "{out}{err}");
    let caps = lines(&out, "capabilities");
    assert_eq!(caps.len(), 1, "{out}");
    assert!(
        caps[0].starts_with("ok") && caps[0].contains("HTTP only"),
        "{out}"
    );
    for check in ["bpffs", "interface", "pin_dir lock", "veth peer"] {
        assert!(lines(&out, check).is_empty(), "{check}: {out}");
    }
    assert!(!out.contains("FAIL") && !out.contains("warn"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&json.1).expect("a JSON array");
    let all = v.as_array().expect("an array");
    assert!(json.0 && !all.is_empty(), "{}", json.1);
    for f in all {
        assert_eq!(f["status"], "ok", "{f}");
        for key in ["check", "subject", "detail"] {
            assert!(f[key].is_string(), "{key}: {f}");
        }
        assert!(f["fix"].is_null(), "{f}");
    }
}

/// As nobody, an XDP configuration: a FAIL naming the capabilities and
/// the setcap command, exit status 1, nothing created.
#[test]
fn without_privilege_an_xdp_configuration_fails_naming_the_capabilities() {
    balancer_tests::require_root();
    let (dir, pin_dir, config) =
        balancer_tests::xdp_config_for_nobody(&format!("blb-{}-doctor-noperm", std::process::id()));
    let (ok, out, err) = finish(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(balancer_tests::balancer_bin())
            .args(["doctor", "--config"])
            .arg(&config),
    );
    let left = pin_dir.exists();
    let _ = std::fs::remove_dir(&pin_dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "{out}{err}");
    let caps = lines(&out, "capabilities");
    assert_eq!(caps.len(), 1, "{out}");
    let line = caps[0];
    assert!(line.starts_with("FAIL"), "{out}");
    for cap in ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"] {
        assert!(line.contains(cap), "{cap}: {out}");
    }
    assert!(
        line.contains("setcap cap_bpf,cap_net_admin,cap_perfmon"),
        "{out}"
    );
    assert!(line.contains("uid 65534"), "{out}");
    assert!(err.contains("checks failed"), "{err}");
    assert!(!left, "{} created", pin_dir.display());
}

/// The balancer's interface is a veth whose peer (in the bridge namespace)
/// runs no XDP program and has GRO off: doctor warns with the xdp-pass
/// command and `run` logs the same; with GRO on, or `balancer xdp-pass`
/// on the peer, neither does.
#[test]
fn a_veth_peer_without_xdp_is_warned_about_with_the_command() {
    balancer_tests::require_root();
    let lab = Lab::new(LabSpec {
        clients: 0,
        backends: 1,
    })
    .expect("lab");
    let services = lab.one_l4_service();
    let config = lab.write_service_config("l4.toml", "", &services).unwrap();
    let config_arg = config.to_str().unwrap();
    let expected = format!(
        "frames sent back with XDP_TX vanish on v-lb, its peer in namespace {}, which runs no \
         XDP program and has GRO off",
        lab.bridge_ns
    );
    let expected = expected.as_str();
    let command = format!(
        "run `balancer xdp-pass --interface v-lb` in its namespace (`ip netns exec {} balancer \
         xdp-pass --interface v-lb`)",
        lab.bridge_ns
    );

    // The lab turns GRO on on the peer, which takes XDP_TX frames too.
    let (ok, out, err) = doctor_in(&lab.balancer, &["--config", config_arg]);
    assert!(ok, "{out}{err}");
    let veth = lines(&out, "veth peer");
    assert!(veth.len() == 1 && veth[0].starts_with("ok"), "{out}");
    assert!(
        veth[0].contains("its peer v-lb") && veth[0].contains("has GRO on"),
        "{out}"
    );
    balancer_tests::lab::output(
        balancer_tests::lab::ns_command(&lab.bridge_ns, "ethtool")
            .args(["-K", "v-lb", "gro", "off"]),
    )
    .expect("GRO off on the peer");

    let (ok, out, err) = doctor_in(&lab.balancer, &["--config", config_arg]);
    assert!(ok, "{out}{err}");
    let veth = lines(&out, "veth peer");
    assert_eq!(veth.len(), 1, "{out}");
    assert!(veth[0].starts_with("warn"), "{out}");
    assert!(veth[0].contains(expected), "{out}");
    assert!(veth[0].contains(&command), "{out}");
    for check in ["capabilities", "bpffs", "interface", "pin_dir lock"] {
        let l = lines(&out, check);
        assert!(
            !l.is_empty() && l.iter().all(|l| l.starts_with("ok")),
            "{check}: {out}"
        );
    }
    assert!(
        out.contains(&format!("network: {} (/run/netns/", lab.balancer.ns)),
        "{out}"
    );

    // Under `ip netns exec`, /sys is remounted without the bpffs.
    let (ok, out, err) = finish(
        Command::new("ip")
            .args(["netns", "exec", &lab.balancer.ns])
            .arg(balancer_tests::balancer_bin())
            .args(["doctor", "--config", config_arg]),
    );
    assert!(!ok, "{out}{err}");
    let bpffs = lines(&out, "bpffs");
    assert!(bpffs.len() == 1 && bpffs[0].starts_with("FAIL"), "{out}");
    assert!(
        bpffs[0].contains(&format!(
            "`ip netns exec {0}` remounted /sys without it: enter only the network namespace \
             instead: `nsenter --net=/run/netns/{0} balancer run --config {config_arg}`",
            lab.balancer.ns
        )),
        "{out}"
    );
    // `balancer run` there says the same, naming the namespace.
    let (ok, _, err) = finish(
        Command::new("ip")
            .args(["netns", "exec", &lab.balancer.ns])
            .arg(balancer_tests::balancer_bin())
            .args(["run", "--config", config_arg]),
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!(
            "`ip netns exec {0}` remounted /sys without it: enter only the network namespace \
             instead (`nsenter --net=/run/netns/{0} balancer run ...`)",
            lab.balancer.ns
        )),
        "{err}"
    );

    // `balancer run` without xdp-pass on the peer: the same words, logged.
    let mut cmd = lab.balancer.command(balancer_tests::balancer_bin());
    cmd.args(["run", "--config", config_arg])
        .env("RUST_LOG", "info");
    let mut daemon = Proc::spawn("balancer-no-pass", cmd, &lab.dir).expect("balancer run");
    let ready = wait_for(Duration::from_secs(20), || {
        daemon.output().contains("running: XDP on") || daemon.try_wait().ok().flatten().is_some()
    });
    // While it runs, the pin_dir is this configuration's daemon's, and
    // another configuration's start on it would be refused.
    let (_, running, _) = doctor_in(&lab.balancer, &["--config", config_arg]);
    let other = lab.dir.join("other.toml");
    std::fs::copy(&config, &other).unwrap();
    let (_, blocked, _) = doctor_in(&lab.balancer, &["--config", other.to_str().unwrap()]);
    let pid = daemon.pid();
    let _ = daemon.stop();
    let log = daemon.output();
    assert!(ready && log.contains("running: XDP on"), "{log}");
    let warned: Vec<&str> = log.lines().filter(|l| l.contains(expected)).collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("WARN") && warned[0].contains(&command),
        "{log}"
    );
    let lock = lines(&blocked, "pin_dir lock");
    assert!(
        lock.len() == 1
            && lock[0].starts_with("warn")
            && lock[0].contains("held by another daemon (process ")
            && lock[0].contains(&format!("`kill -TERM {pid}`")),
        "{blocked}"
    );
    let lock = lines(&running, "pin_dir lock");
    assert!(
        lock.len() == 1
            && lock[0].starts_with("ok")
            && lock[0].contains("held by the daemon of this configuration"),
        "{running}"
    );

    // xdp-pass on the peer: no warning from either.
    lab.accept_xdp_frames_from(&lab.balancer).expect("xdp-pass");
    let (ok, out, err) = doctor_in(&lab.balancer, &["--config", config_arg]);
    assert!(ok, "{out}{err}");
    let veth = lines(&out, "veth peer");
    assert!(veth.len() == 1 && veth[0].starts_with("ok"), "{out}");
    assert!(
        veth[0].contains("its peer v-lb") && !out.contains("vanish"),
        "{out}"
    );
    // The program the stopped daemon left attached is this pin_dir's.
    let iface = lines(&out, "interface");
    assert!(
        iface[0].contains("runs this pin_dir's XDP program"),
        "{out}"
    );
    let mut daemon = lab.start_balancer(&config).expect("balancer run");
    let _ = daemon.stop();
    assert!(!daemon.output().contains("vanish"), "{}", daemon.output());
}

/// `--dsr-backend VIP` in a backend's namespace: each missing piece a
/// FAIL with its command; none once the VIP and the sysctls are there.
#[test]
fn a_dsr_backend_is_checked_where_it_runs() {
    balancer_tests::require_root();
    let lab = Lab::new(LabSpec {
        clients: 0,
        backends: 1,
    })
    .expect("lab");
    let s0 = &lab.backends[0];
    let (ok, out, err) = doctor_in(s0, &["--dsr-backend", "198.18.2.100"]);
    assert!(!ok, "{out}{err}");
    for fix in [
        "ip addr add 198.18.2.100/32 dev lo",
        "sysctl -w net.ipv4.conf.all.arp_ignore=1",
        "sysctl -w net.ipv4.conf.all.arp_announce=2",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("FAIL") && l.ends_with(fix)),
            "{fix}: {out}"
        );
    }
    // IPv6: no ARP to check.
    let (ok, out, _) = doctor_in(s0, &["--dsr-backend", "2001:db8:0:2::100"]);
    assert!(!ok && out.lines().count() == 1, "{out}");
    assert!(
        out.contains("ip addr add 2001:db8:0:2::100/128 dev lo"),
        "{out}"
    );

    lab.hold_vips_on_backends(&["198.18.2.100".parse().unwrap()])
        .expect("VIPs on the backends");
    let (ok, out, err) = doctor_in(s0, &["--dsr-backend", "198.18.2.100"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().all(|l| l.starts_with("ok")), "{out}");
    assert!(out.contains("198.18.2.100/32 is on lo"), "{out}");

    // ipip: a tunnel device that is up, and no strict rp_filter on it.
    let (ok, out, _) = doctor_in(s0, &["--dsr-backend", "198.18.2.100", "--ipip"]);
    assert!(!ok && out.contains("no ipip device is up"), "{out}");
    if s0
        .run("ip", &["link", "add", "tun-dsr", "type", "ipip"])
        .is_err()
    {
        eprintln!("no ipip devices in this kernel: the rest of the ipip case is skipped");
        return;
    }
    s0.run("ip", &["link", "set", "tun-dsr", "up"]).unwrap();
    balancer_tests::lab::sysctl(&s0.ns, "net/ipv4/conf/tun-dsr/rp_filter", "1").unwrap();
    let (ok, out, _) = doctor_in(s0, &["--dsr-backend", "198.18.2.100", "--ipip"]);
    assert!(!ok, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("FAIL")
            && l.contains("strict reverse-path filtering on tun-dsr")
            && l.ends_with("net.ipv4.conf.tun-dsr.rp_filter=2")),
        "{out}"
    );
    balancer_tests::lab::sysctl(&s0.ns, "net/ipv4/conf/tun-dsr/rp_filter", "2").unwrap();
    let (ok, out, err) = doctor_in(s0, &["--dsr-backend", "198.18.2.100", "--ipip"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("tunnel device tun-dsr is up"), "{out}");
}
