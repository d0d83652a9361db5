//! SIGHUP reloads the configuration without losing stick entries: a server
//! removed from the config takes only its own clients away, everyone else
//! stays; adding it back moves nobody; an invalid new config is refused and
//! the running one keeps serving.

mod service;

use std::{net::Ipv4Addr, time::Duration};

use balancer_tests::proc::wait_for;
use service::{Service, ServiceSpec, service};

const CLIENTS: usize = 150;
const NEW_CLIENTS: usize = 45;

fn hup_and_wait(svc: &Service, needle: &str, nth: usize) {
    svc.daemon.signal(libc::SIGHUP).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || svc
            .daemon
            .output()
            .matches(needle)
            .count()
            >= nth),
        "no {needle:?} (#{nth}) in the daemon log: {}",
        svc.daemon.output()
    );
}

#[test]
fn sighup_changes_servers_and_unchanged_servers_keep_their_clients() {
    let mut svc = service(&ServiceSpec {
        forward: "dsr-l2",
        dataplane: "",
        stick_size: "100k",
        ipv6_stick_size: None,
        sources: CLIENTS + NEW_CLIENTS,
        backend_extra: "",
        server_extra: "",
        haproxy_cfg: false,
    });
    let old: Vec<Ipv4Addr> = svc.sources[..CLIENTS].to_vec();
    let new: Vec<Ipv4Addr> = svc.sources[CLIENTS..].to_vec();
    let config = svc.lab.dir.join("balancer.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let r1 = svc.round("start", &old, 2);

    // 1. A broken config is refused; nothing changes.
    std::fs::write(&config, format!("{original}\nno_such_key = 1\n")).unwrap();
    hup_and_wait(&svc, "reload refused", 1);
    assert!(svc.daemon.output().contains("no_such_key"));
    let r2 = svc.round("after a refused reload", &old, 1);
    for c in &old {
        assert_eq!(Service::home(&r2, c), Service::home(&r1, c), "{c} moved");
    }

    // 2. s2 leaves the config: its clients move, everyone else stays.
    let s2 = format!(
        "[[backend.server]]\nname = \"s2\"\naddress = \"{}\"\n",
        svc.lab.backends[2].ipv4
    );
    assert!(original.contains(&s2), "config layout: {original}");
    std::fs::write(&config, original.replace(&s2, "")).unwrap();
    hup_and_wait(&svc, "reloaded:", 1);
    assert!(
        svc.daemon
            .output()
            .contains("reloaded: 2 server(s) kept, 0 added, 1 removed"),
        "{}",
        svc.daemon.output()
    );
    let on_s2 = old.iter().filter(|c| Service::home(&r1, c) == 2).count();
    assert!(on_s2 > 0, "no client on s2 to begin with");
    assert_eq!(
        svc.lab.cli(&["table", "count"]).unwrap().trim(),
        (CLIENTS - on_s2).to_string(),
        "s2's stick entries are deleted with it"
    );
    let r3 = svc.round("s2 removed", &old, 2);
    for c in &old {
        let (was, now) = (Service::home(&r1, c), Service::home(&r3, c));
        if was == 2 {
            assert_ne!(now, 2, "{c} still reaches the removed server");
        } else {
            assert_eq!(now, was, "{c} moved although s{was} stayed");
        }
    }

    // 3. s2 comes back: nobody moves; new clients can land on it.
    std::fs::write(&config, &original).unwrap();
    hup_and_wait(&svc, "reloaded:", 2);
    assert!(
        svc.daemon
            .output()
            .contains("reloaded: 2 server(s) kept, 1 added, 0 removed"),
        "{}",
        svc.daemon.output()
    );
    let r4 = svc.round("s2 back", &old, 2);
    for c in &old {
        assert_eq!(Service::home(&r4, c), Service::home(&r3, c), "{c} moved");
    }
    let r5 = svc.round("new clients", &new, 1);
    let to_s2 = new.iter().filter(|c| Service::home(&r5, c) == 2).count();
    assert!(to_s2 > 0, "no new client reached s2 after it came back");
    println!(
        "s2 had {on_s2} of {CLIENTS} clients; after it came back {to_s2} of {NEW_CLIENTS} new ones"
    );
}
