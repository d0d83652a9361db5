//! What a person reads when the CLI cannot do what was asked (issue 21):
//! one line, each cause once, and what to do.

use std::process::Command;

/// `balancer ARGS`: its exit status and stderr.
fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(balancer_tests::balancer_bin())
        .args(args)
        .output()
        .expect("running balancer");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn no_daemon_is_said_once_with_what_to_do() {
    let sock =
        std::env::temp_dir().join(format!("blb-{}-no-daemon/admin.sock", std::process::id()));
    let (ok, err) = run(&["--socket", sock.to_str().unwrap(), "status"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no socket there"), "{err}");
    assert!(err.contains("--socket names another"), "{err}");
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
}

#[test]
fn table_clear_wants_a_frontend_a_client_or_all() {
    // Refused before any daemon is asked.
    let (ok, err) = run(&["table", "clear"]);
    assert!(!ok);
    assert!(err.contains("--all"), "{err}");
    let (ok, err) = run(&["table", "clear", "--all", "--frontend", "web"]);
    assert!(!ok, "{err}");
}

/// An HTTP-only daemon is shown with HTTP fields: no packet classes, no
/// XDP forwarding mode, no next hop, no interface list to read as empty.
#[test]
fn an_http_frontend_is_shown_as_http() {
    use balancer_tests::http::{Backend, Svc, server_tables};
    let backends: Vec<Backend> = (0..2)
        .map(|i| Backend::start(&format!("s{i}"), 0).unwrap())
        .collect();
    let svc = Svc::launch("cli-http", "", "", &server_tables(&backends, false, ""));
    let status = svc.cli(&["status"]);
    assert!(
        status.contains("interfaces: none (no XDP program)"),
        "{status}"
    );
    assert!(status.contains("frontend web http "), "{status}");
    assert!(
        status.contains("(proxied)") && !status.contains("dsr"),
        "{status}"
    );
    let list = svc.cli(&["backend", "list"]);
    assert!(!list.contains("UNRESOLVED"), "{list}");
    for row in list.lines().filter(|l| l.contains("app/s")) {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[6], "-", "packets of an HTTP server: {row}");
    }
    // A name that is not there: the ones that are near it.
    let sock = svc.dir.join("admin.sock");
    let (ok, err) = run(&[
        "--socket",
        sock.to_str().unwrap(),
        "backend",
        "state",
        "s9",
        "maint",
    ]);
    assert!(!ok);
    assert!(
        err.contains("no server named \"s9\" (did you mean app/s0 or app/s1?)"),
        "{err}"
    );
    let count: serde_json::Value =
        serde_json::from_str(&svc.cli(&["table", "count", "--json"])).unwrap();
    assert_eq!(count["entries"], 0, "{count}");
    let stats = svc.cli(&["stats"]);
    assert!(!stats.contains("class"), "packet classes shown: {stats}");
    assert!(stats.starts_with("frontend web"), "{stats}");
    // Every command has --json, the ones that change something too: the
    // daemon's answer; and --socket after the command's name.
    let json = |args: &[&str]| -> serde_json::Value {
        let out = svc.cli(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };
    let s = json(&["backend", "weight", "app/s0", "7", "--json"]);
    assert_eq!(
        (s["server"].as_str(), s["weight"].as_u64()),
        (Some("s0"), Some(7)),
        "{s}"
    );
    let s = json(&["backend", "state", "app/s1", "drain", "--json"]);
    assert_eq!(s["state"], "drain", "{s}");
    // (`table set --json`: in http_stick.rs, whose backend has a table.)
    let r = json(&["table", "clear", "--all", "--json"]);
    assert_eq!(r["removed"], 0, "{r}");
    let out = lab_output(
        Command::new(balancer_tests::balancer_bin())
            .args(["table", "count", "--socket"])
            .arg(&sock),
    );
    assert!(out.contains('0'), "{out}");
}

fn lab_output(cmd: &mut Command) -> String {
    balancer_tests::lab::output(cmd).unwrap()
}

/// `--socket` is taken after the commands that ask the daemon (and still
/// before them), shown only in their help, and refused, not ignored, with
/// one that asks no daemon.
#[test]
fn socket_is_an_option_of_the_commands_that_use_it() {
    let sock = std::env::temp_dir().join(format!("blb-{}-socket-opt/a.sock", std::process::id()));
    let sock = sock.to_str().unwrap();
    for args in [
        vec!["status", "--socket", sock],
        vec!["table", "count", "--socket", sock],
        vec!["backend", "--socket", sock, "list"],
        vec!["--socket", sock, "peers", "status"],
    ] {
        let (ok, err) = run(&args);
        assert!(!ok && err.contains(sock), "{args:?}: {err}");
    }
    let (ok, err) = run(&["--socket", sock, "check-config", "x.toml"]);
    assert!(!ok);
    assert!(
        err.contains("--socket is for the commands that ask the running daemon"),
        "{err}"
    );
    assert!(err.contains("check-config"), "{err}");
    let (ok, err) = run(&["check-config", "x.toml", "--socket", sock]);
    assert!(
        !ok && err.contains("unexpected argument '--socket'"),
        "{err}"
    );
    let help = |args: &[&str]| {
        let out = Command::new(balancer_tests::balancer_bin())
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(!help(&["detach"]).contains("--socket"));
    assert!(!help(&["convert"]).contains("--socket"));
    assert!(help(&["status"]).contains("--socket"));
    assert!(help(&["table", "show"]).contains("--socket"));
}

/// `detach --json`: what it removed (nothing under a directory that is
/// not there).
#[test]
fn detach_says_what_it_removed_in_json() {
    let dir = std::env::temp_dir().join(format!("blb-{}-detach-json", std::process::id()));
    let out = Command::new(balancer_tests::balancer_bin())
        .args(["detach", "--json", "--pin-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pin_dir"], dir.to_str().unwrap(), "{v}");
    assert_eq!(v["removed"], serde_json::json!([]), "{v}");
}

/// `check-config --json`: the verdict as one object, the error too.
#[test]
fn check_config_says_its_verdict_in_json() {
    let dir = std::env::temp_dir().join(format!("blb-{}-check-json", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &good,
        "[[frontend]]\nname = \"web\"\nmode = \"http\"\nbind = \"127.0.0.1:8080\"\n\
         default_backend = \"app\"\n\n[[backend]]\nname = \"app\"\n\
         [[backend.server]]\nname = \"s0\"\naddress = \"127.0.0.1:9000\"\n",
    )
    .unwrap();
    std::fs::write(&bad, "[[frontend]]\nname = \"web\"\nmode = \"htp\"\n").unwrap();
    let json = |f: &std::path::Path| {
        let out = Command::new(balancer_tests::balancer_bin())
            .args(["check-config", "--json"])
            .arg(f)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.success(), v)
    };
    let ((good_ok, g), (bad_ok, v)) = (json(&good), json(&bad));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(good_ok, "{g}");
    assert_eq!(
        (
            g["ok"].as_bool(),
            g["frontends"].as_u64(),
            g["servers"].as_u64()
        ),
        (Some(true), Some(1), Some(1)),
        "{g}"
    );
    assert!(!bad_ok);
    assert_eq!(v["ok"], false, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("bad.toml:1") && e.contains("bind"), "{v}");
}

/// A failing health check that has not reached `fall` yet says so ("up,
/// 1 of 3 failures"), not just "up" with a refused connection beside it.
#[test]
fn a_check_on_its_way_down_counts_its_failures() {
    use balancer_tests::http::{Backend, Svc, free_port};
    let ok = Backend::start("s0", 0).unwrap();
    let dead = free_port().unwrap();
    let servers = format!(
        "[[backend.server]]\nname = \"s0\"\naddress = \"{}\"\n\n\
         [[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:{dead}\"\ncheck = true\n\
         inter = \"1s\"\nfall = 3\n",
        ok.addr
    );
    let svc = Svc::launch("cli-check", "", "", &servers);
    let mut list = String::new();
    let seen = balancer_tests::proc::wait_for(std::time::Duration::from_secs(10), || {
        list = svc.cli(&["backend", "list"]);
        // (Each lasts `inter`: a slow machine may see the second first.)
        list.contains("check up, 1 of 3 failures; last: ")
            || list.contains("check up, 2 of 3 failures; last: ")
    });
    assert!(seen, "{list}");
    let down = balancer_tests::proc::wait_for(std::time::Duration::from_secs(10), || {
        list = svc.cli(&["backend", "list"]);
        list.contains("check down; last: ")
    });
    assert!(down, "{list}");
}

/// `balancer run` of an XDP configuration without privilege (as nobody):
/// one line naming the capabilities and what to do, and no pin directory
/// left behind.
#[test]
fn a_start_without_privilege_names_the_capabilities_and_leaves_nothing() {
    balancer_tests::require_root();
    let (dir, pin_dir, config) =
        balancer_tests::xdp_config_for_nobody(&format!("blb-{}-noperm", std::process::id()));
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(balancer_tests::balancer_bin())
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let left = pin_dir.exists();
    let _ = std::fs::remove_dir(&pin_dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "{err}");
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.contains("Operation not permitted (os error 1)"),
        "{err}"
    );
    assert_eq!(line.matches("Operation not permitted").count(), 1, "{err}");
    assert!(
        line.contains("CAP_BPF") && line.contains("as root"),
        "{err}"
    );
    assert!(!left, "{} left behind: {err}", pin_dir.display());
}

/// A second `balancer run` on a pin_dir in use names the process that
/// holds it.
#[test]
fn a_pin_dir_in_use_names_its_holder() {
    use balancer_tests::http::{Backend, Svc, server_tables};
    let b = Backend::start("s0", 0).unwrap();
    let svc = Svc::launch("cli-lock", "", "", &server_tables(&[b], false, ""));
    let config = svc.dir.join("balancer.toml");
    let (ok, err) = run(&["run", "--config", config.to_str().unwrap()]);
    assert!(!ok, "{err}");
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.contains("locked: another `balancer run`")
            && line.contains(&format!("(process {}: ", svc.daemon.pid())),
        "{err}"
    );
}

/// A second daemon (its own pin_dir) on an interface the first one runs
/// XDP on: refused, naming the first one's pin_dir, not tried again in
/// generic mode, and nothing of its own left pinned.
#[test]
fn an_interface_in_use_names_the_balancer_on_it() {
    use balancer_tests::lab::{Lab, LabSpec};
    balancer_tests::require_root();
    let lab = Lab::new(LabSpec {
        clients: 0,
        backends: 1,
    })
    .expect("lab");
    let services = lab.one_l4_service();
    let first = lab
        .write_service_config("first.toml", "", &services)
        .unwrap();
    let _daemon = lab.start_balancer(&first).expect("the first daemon");
    let other_pins = lab.pin_dir.with_file_name(format!(
        "{}-second",
        lab.pin_dir.file_name().unwrap().to_string_lossy()
    ));
    let second = lab.dir.join("second.toml");
    let text = std::fs::read_to_string(&first)
        .unwrap()
        .replace(
            &lab.pin_dir.display().to_string(),
            &other_pins.display().to_string(),
        )
        .replace("admin.sock", "admin2.sock");
    std::fs::write(&second, text).unwrap();
    let e = lab
        .start_balancer(&second)
        .map(|_| ())
        .expect_err("a second daemon on the same interface")
        .to_string();
    let left = other_pins.exists();
    let _ = std::fs::remove_dir_all(&other_pins);
    assert!(
        e.contains(&format!(
            "interface \"eth0\" already runs an XDP program, another balancer's (its pin_dir {} holds link-eth0)",
            lab.pin_dir.display()
        )),
        "{e}"
    );
    assert!(!e.contains("falling back to generic"), "{e}");
    assert!(!left, "{} left behind", other_pins.display());
}
