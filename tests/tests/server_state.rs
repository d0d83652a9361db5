//! Runtime server changes (`backend state|weight|add|remove`) survive a
//! reload and, with `[global] server_state_file`, a restart (HAProxy's
//! `server-state-file`); an edit of the same setting in the configuration
//! file wins over the runtime one. They used to be lost on both.

use std::time::Duration;

use balancer_tests::http::{Backend, Client, Svc};
use serde_json::Value;

/// `backend list --json`, by server name: (admin state, weight).
fn servers(svc: &Svc) -> Vec<(String, String, u64)> {
    let v: Value = serde_json::from_str(&svc.cli(&["backend", "list", "--json"])).unwrap();
    let mut out: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["server"].as_str().unwrap().to_owned(),
                s["admin_state"].as_str().unwrap().to_owned(),
                s["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn expect(svc: &Svc, want: &[(&str, &str, u64)], when: &str) {
    let want: Vec<(String, String, u64)> = want
        .iter()
        .map(|(n, a, w)| (n.to_string(), a.to_string(), *w))
        .collect();
    assert_eq!(servers(svc), want, "{when}: {}", svc.daemon.output());
}

/// Which servers 30 new clients reach.
fn reached(svc: &Svc) -> Vec<String> {
    let mut seen: Vec<String> = (0..30)
        .map(|_| Client::new(svc.front).get("/").unwrap().body)
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

#[test]
fn runtime_server_changes_survive_a_reload_and_a_restart() {
    let (s0, s1, s2, s3) = (
        Backend::start("s0", 0).unwrap(),
        Backend::start("s1", 0).unwrap(),
        Backend::start("s2", 0).unwrap(),
        Backend::start("s3", 0).unwrap(),
    );
    let servers_toml = [&s0, &s1, &s3]
        .iter()
        .map(|b| {
            format!(
                "[[backend.server]]\nname = \"{}\"\naddress = \"{}\"\n",
                b.name, b.addr
            )
        })
        .collect::<String>();
    // The state file's directory is the test's (Svc::launch made it).
    let dir = std::env::temp_dir().join(format!("blb-{}-server-state", std::process::id()));
    let state = dir.join("server-state.json");
    let mut svc = Svc::launch(
        "server-state",
        "",
        "",
        &format!(
            "{servers_toml}\n[global]\nserver_state_file = \"{}\"\n",
            state.display()
        ),
    );
    assert_eq!(svc.dir, dir);
    expect(
        &svc,
        &[("s0", "up", 1), ("s1", "up", 1), ("s3", "up", 1)],
        "at start",
    );
    svc.cli(&["backend", "state", "s1", "maint"]);
    svc.cli(&["backend", "weight", "s0", "3"]);
    svc.cli(&["backend", "add", "app", "s2", &s2.addr.to_string()]);
    svc.cli(&["backend", "remove", "s3"]);
    let changed = [("s0", "up", 3), ("s1", "maint", 1), ("s2", "up", 1)];
    expect(&svc, &changed, "after the changes");
    let text = std::fs::read_to_string(&state).expect("the state file");
    assert!(
        text.contains("\"app/s1\"") && text.contains("maint"),
        "{text}"
    );

    // A reload of the same file keeps them.
    svc.daemon.signal(libc::SIGHUP).unwrap();
    svc.daemon
        .expect_logged("reloaded:", Duration::from_secs(10));
    expect(&svc, &changed, "after a reload");
    assert_eq!(reached(&svc), ["s0", "s2"], "s1 in maint, s3 removed");

    // A restart (the same pins, a new process) reads them from the file.
    let config = svc.dir.join("balancer.toml");
    svc.daemon.stop().unwrap();
    svc.start_again(&config);
    expect(&svc, &changed, "after a restart");
    assert_eq!(reached(&svc), ["s0", "s2"], "s1 in maint, s3 removed");

    // An edit of the weight in the file wins over the runtime one; the
    // other changes stay.
    let text = std::fs::read_to_string(&config).unwrap();
    let edited = text.replacen(
        &format!("name = \"s0\"\naddress = \"{}\"\n", s0.addr),
        &format!("name = \"s0\"\naddress = \"{}\"\nweight = 5\n", s0.addr),
        1,
    );
    assert_ne!(edited, text);
    std::fs::write(&config, edited).unwrap();
    svc.daemon.signal(libc::SIGHUP).unwrap();
    svc.daemon
        .expect_logged("reloaded:", Duration::from_secs(10));
    expect(
        &svc,
        &[("s0", "up", 5), ("s1", "maint", 1), ("s2", "up", 1)],
        "after editing s0's weight",
    );
    // Setting the state back to `up` at run time is kept as well.
    svc.cli(&["backend", "state", "s1", "up"]);
    svc.daemon.stop().unwrap();
    svc.start_again(&config);
    expect(
        &svc,
        &[("s0", "up", 5), ("s1", "up", 1), ("s2", "up", 1)],
        "after s1 up and a restart",
    );
}
