//! The operator's CLI against a running daemon, checked through traffic
//! (the backends' own logs), not through the API's answers: remove a
//! server, add it back, set its weight, drain it. Bad requests get clear
//! errors, the admin socket refuses other users, and garbage or malformed
//! JSON on it gets a 4xx without hurting the daemon.

mod service;

use std::{net::Ipv4Addr, process::Command};

use service::{Service, ServiceSpec, service};

const OLD: usize = 90;
const NEW: usize = 30;

/// Run the CLI expecting failure; its stderr.
fn cli_err(svc: &Service, args: &[&str]) -> String {
    let out = Command::new(balancer_tests::balancer_bin())
        .arg("--socket")
        .arg(svc.lab.admin_socket())
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn on(
    r: &std::collections::BTreeMap<Ipv4Addr, std::collections::BTreeSet<usize>>,
    j: usize,
) -> usize {
    r.keys().filter(|c| Service::home(r, c) == j).count()
}

#[test]
fn add_remove_weight_and_drain_steer_real_traffic() {
    let mut svc = service(&ServiceSpec {
        forward: "dsr-l2",
        dataplane: "",
        stick_size: "10k",
        ipv6_stick_size: None,
        sources: OLD + 3 * NEW,
        backend_extra: "",
        server_extra: "",
        haproxy_cfg: false,
    });
    let src = svc.sources.clone();
    let old = &src[..OLD];
    let (new1, rest) = src[OLD..].split_at(NEW);
    let (new2, new3) = rest.split_at(NEW);
    let r1 = svc.round("start", old, 1);
    let on_s2 = on(&r1, 2);
    assert!(on_s2 > 0);

    // remove: s2's clients move, the others stay; its entries are gone.
    let out = svc.lab.cli(&["backend", "remove", "s2"]).unwrap();
    assert!(out.contains("removed") && out.contains("web/s2"), "{out}");
    // No entry names it any more (a trailing packet of a finished
    // connection may already have re-stored one of its clients elsewhere,
    // so the count is not asserted).
    let table = svc.lab.cli(&["table", "show", "--json"]).unwrap();
    assert!(!table.contains("web/s2"), "{table}");
    let r2 = svc.round("s2 removed", old, 1);
    for c in old {
        let (was, now) = (Service::home(&r1, c), Service::home(&r2, c));
        if was == 2 {
            assert_ne!(now, 2, "{c} still on the removed server");
        } else {
            assert_eq!(now, was, "{c} moved although s{was} stayed");
        }
    }
    let list = svc.lab.cli(&["backend", "list"]).unwrap();
    assert!(!list.contains("web/s2"), "{list}");

    // add: nobody moves; new clients reach it.
    let s2 = svc.lab.backends[2].ipv4.to_string();
    let out = svc.lab.cli(&["backend", "add", "web", "s2", &s2]).unwrap();
    assert!(out.contains("web/s2") && out.contains(" up "), "{out}");
    let r3 = svc.round("s2 added, old clients", old, 1);
    for c in old {
        assert_eq!(Service::home(&r3, c), Service::home(&r2, c), "{c} moved");
    }
    let r4 = svc.round("s2 added, new clients", new1, 1);
    assert!(on(&r4, 2) > 0, "no new client reached the added server");

    // weight 0: no new clients; its clients stay.
    svc.lab.cli(&["backend", "weight", "s2", "0"]).unwrap();
    let r5 = svc.round("s2 weight 0, new clients", new2, 1);
    assert_eq!(on(&r5, 2), 0, "new clients on a weight-0 server");
    let r6 = svc.round("s2 weight 0, its clients", new1, 1);
    for c in new1 {
        assert_eq!(Service::home(&r6, c), Service::home(&r4, c), "{c} moved");
    }

    // drain (weight back to 1): its clients stay, new ones avoid it.
    svc.lab.cli(&["backend", "weight", "s2", "1"]).unwrap();
    svc.lab.cli(&["backend", "state", "s2", "drain"]).unwrap();
    let r7 = svc.round("s2 drains, its clients", new1, 1);
    for c in new1 {
        assert_eq!(Service::home(&r7, c), Service::home(&r4, c), "{c} moved");
    }
    let r8 = svc.round("s2 drains, new clients", new3, 1);
    assert_eq!(on(&r8, 2), 0, "new clients on a draining server");

    // Clear errors, exit status 1.
    let e = cli_err(&svc, &["backend", "add", "web", "s2", &s2]);
    assert!(e.contains("already has a server named \"s2\""), "{e}");
    let e = cli_err(&svc, &["backend", "add", "nope", "x", &s2]);
    assert!(e.contains("no backend named \"nope\""), "{e}");
    let e = cli_err(&svc, &["backend", "add", "web", "x6", "2001:db8:0:1::99"]);
    assert!(e.contains("same family"), "{e}");
    let e = cli_err(&svc, &["backend", "remove", "nope"]);
    assert!(e.contains("no server named \"nope\""), "{e}");

    // The admin socket: other users are refused by its mode (0600).
    let sock = svc.lab.admin_socket();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(balancer_tests::balancer_bin())
        .arg("--socket")
        .arg(&sock)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.to_lowercase().contains("permission denied"), "{e}");

    // Malformed JSON, wrong types, garbage: 4xx, and the daemon lives on.
    let curl = |args: &[&str]| -> String {
        let mut a = vec![
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ];
        a.push(sock.to_str().unwrap());
        a.extend_from_slice(args);
        balancer_tests::lab::output(Command::new("curl").args(&a)).unwrap()
    };
    let put =
        |path: &str, body: &str| curl(&["-X", "PUT", "--data", body, &format!("http://lb{path}")]);
    assert_eq!(put("/v1/backends/state", "{not json"), "400");
    assert_eq!(
        put("/v1/backends/weight", r#"{"server":"s0","weight":"x"}"#),
        "400"
    );
    assert_eq!(put("/v1/table", r#"{"frontend":"web"}"#), "400");
    assert_eq!(
        curl(&["-X", "POST", "--data", "[1,2]", "http://lb/v1/backends"]),
        "400"
    );
    assert_eq!(curl(&["http://lb/v1/nope"]), "404");
    let garbage = Command::new("python3")
        .args([
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); \
             s.sendall(bytes(range(256))*64); s.shutdown(socket.SHUT_WR); \
             print(s.recv(100))",
            sock.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&garbage.stdout);
    assert!(answer.contains("400") || answer.trim() == "b''", "{answer}");
    let status = svc.lab.cli(&["status"]).unwrap();
    assert!(status.contains("web"), "daemon after garbage: {status}");
    assert!(svc.daemon.try_wait().unwrap().is_none(), "daemon died");
}
