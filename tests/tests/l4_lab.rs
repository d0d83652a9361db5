//! Source-IP affinity end to end, in a namespace lab with real TCP: one
//! client host with hundreds of source addresses, the balancer, three
//! backends running HTTP servers and holding the VIP. Which backend served
//! whom is read from the backends' own access logs, not from the balancer.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use balancer_tests::{
    lab::{Lab, LabSpec},
    proc::Proc,
    require_root,
};

const VIP: &str = "198.18.2.100";
const PORT: u16 = 80;
const CLIENTS: usize = 240;
const NEW_CLIENTS: usize = 60;

struct Service {
    lab: Lab,
    http: Vec<Proc>,
    _decap: Vec<Proc>,
    daemon: Proc,
    /// Bytes of each backend's log already read.
    seen: Vec<usize>,
    sources: Vec<Ipv4Addr>,
}

fn service(forward: &str) -> Service {
    require_root();
    let lab = Lab::new(LabSpec {
        clients: 1,
        backends: 3,
    })
    .expect("lab");
    let vip: IpAddr = VIP.parse().unwrap();
    lab.hold_vips_on_backends(&[vip]).expect("VIP on backends");
    let mut decap = Vec::new();
    if forward == "ipip" {
        // This kernel has no ipip device: backends strip the outer header
        // with balancer's own decap XDP program.
        for (j, s) in lab.backends.iter().enumerate() {
            let bin = balancer_tests::balancer_bin();
            let mut p = lab
                .spawn(
                    s,
                    &format!("decap-s{j}"),
                    bin.to_str().unwrap(),
                    &["decap", "--interface", "eth0"],
                )
                .expect("decap");
            assert!(
                balancer_tests::proc::wait_for(std::time::Duration::from_secs(10), || {
                    p.output().contains("attached XDP") || p.try_wait().ok().flatten().is_some()
                }),
                "decap did not start"
            );
            assert!(
                p.try_wait().unwrap().is_none(),
                "decap exited: {}",
                p.output()
            );
            decap.push(p);
        }
    }
    let http = lab.start_http_backends(PORT).expect("HTTP backends");
    let servers: String = lab
        .backends
        .iter()
        .enumerate()
        .map(|(j, s)| {
            format!(
                "[[backend.server]]\nname = \"s{j}\"\naddress = \"{}\"\n",
                s.ipv4
            )
        })
        .collect();
    let config = lab
        .write_service_config(
            "balancer.toml",
            "",
            &format!(
                "[[frontend]]\nname = \"web\"\nbind = \"{VIP}:{PORT}\"\ndefault_backend = \"web\"\n\n\
                 [[backend]]\nname = \"web\"\nforward = \"{forward}\"\n\
                 stick_table = {{ type = \"ip\", size = \"100k\", expire = \"30m\" }}\n{servers}"
            ),
        )
        .unwrap();
    let daemon = lab.start_balancer(&config).expect("balancer run");
    let sources = lab
        .add_client_sources(0, CLIENTS + NEW_CLIENTS)
        .expect("client sources");
    // One request first, so a broken path fails in seconds, with context.
    let probe = lab.clients[0].run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "3",
            "--interface",
            &sources[0].to_string(),
            &format!("http://{VIP}:{PORT}/"),
        ],
    );
    if let Err(e) = probe {
        if std::env::var_os("BALANCER_LAB_HOLD").is_some() {
            eprintln!("HOLDING lab {} for 300 s", lab.id);
            std::thread::sleep(std::time::Duration::from_secs(300));
        }
        let xdp = lab
            .balancer
            .run("ethtool", &["-S", "eth0"])
            .unwrap_or_default();
        panic!(
            "{forward}: first request through the VIP failed: {e}\nbalancer: {}\n{xdp}",
            daemon.output()
        );
    }
    let seen = vec![0; lab.backends.len()];
    Service {
        lab,
        http,
        _decap: decap,
        daemon,
        seen,
        sources,
    }
}

impl Service {
    /// `per` connections from each of `sources`; returns, per source, the
    /// backends whose access logs show it during this round (and checks
    /// every answer names the same backend).
    fn round(
        &mut self,
        what: &str,
        sources: &[Ipv4Addr],
        per: usize,
    ) -> BTreeMap<Ipv4Addr, BTreeSet<usize>> {
        let out = self
            .lab
            .dir
            .join(format!("round-{}.json", what.replace(' ', "-")));
        let list: Vec<String> = sources.iter().map(Ipv4Addr::to_string).collect();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/http_clients.py");
        self.lab.clients[0]
            .run(
                "python3",
                &[
                    script,
                    VIP,
                    &PORT.to_string(),
                    &per.to_string(),
                    out.to_str().unwrap(),
                    &list.join(","),
                ],
            )
            .unwrap_or_else(|e| panic!("{what}: client run failed: {e}"));
        let answers: BTreeMap<String, Vec<String>> =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        // The backends' own view.
        let mut by_source: BTreeMap<Ipv4Addr, BTreeSet<usize>> = BTreeMap::new();
        for (j, p) in self.http.iter().enumerate() {
            let log = p.output();
            for line in log[self.seen[j]..].lines() {
                // http.server listens on [::], so IPv4 peers show as ::ffff:a.b.c.d.
                let peer = line.split_whitespace().next().unwrap_or_default();
                if let Ok(src) = peer.trim_start_matches("::ffff:").parse::<Ipv4Addr>() {
                    by_source.entry(src).or_default().insert(j);
                }
            }
            self.seen[j] = log.len();
        }
        for src in sources {
            let got = &answers[&src.to_string()];
            assert!(
                got.iter().all(|b| !b.starts_with("ERR")),
                "{what}: client {src} got errors: {got:?} (balancer log: {})",
                self.daemon.output()
            );
            let served = by_source.get(src).cloned().unwrap_or_default();
            assert_eq!(
                served.len(),
                1,
                "{what}: client {src} reached backends {served:?}, want exactly one"
            );
            let j = *served.iter().next().unwrap();
            assert!(
                got.iter().all(|b| *b == format!("backend s{j}")),
                "{what}: client {src} answers {got:?} but the logs say s{j}"
            );
        }
        by_source
    }

    fn home(map: &BTreeMap<Ipv4Addr, BTreeSet<usize>>, src: &Ipv4Addr) -> usize {
        *map[src].iter().next().unwrap()
    }
}

fn affinity_survives_failure_recovery_and_drain(forward: &str) {
    let mut svc = service(forward);
    let old: Vec<Ipv4Addr> = svc.sources[..CLIENTS].to_vec();
    let new: Vec<Ipv4Addr> = svc.sources[CLIENTS..].to_vec();

    // 1. Every client sticks to one backend; the load is spread evenly.
    let r1 = svc.round("first", &old, 3);
    let mut load = [0usize; 3];
    for src in &old {
        load[Service::home(&r1, src)] += 1;
    }
    let even = CLIENTS as f64 / 3.0;
    for (j, n) in load.iter().enumerate() {
        assert!(
            (*n as f64 - even).abs() <= 0.25 * even,
            "backend s{j} got {n} of {CLIENTS} clients, outside +-25% of {even:.0}: {load:?}"
        );
    }
    println!("{forward}: first round spread {load:?}");
    let count = svc.lab.cli(&["table", "count"]).unwrap();
    assert_eq!(count.trim(), CLIENTS.to_string(), "stick entries");

    // 2. s1 down: exactly its clients move; everyone else stays.
    svc.lab.cli(&["backend", "state", "s1", "down"]).unwrap();
    let r2 = svc.round("s1 down", &old, 2);
    let mut moved = 0;
    for src in &old {
        let (before, now) = (Service::home(&r1, src), Service::home(&r2, src));
        if before == 1 {
            assert_ne!(now, 1, "client {src} still on the down backend");
            moved += 1;
        } else {
            assert_eq!(now, before, "client {src} moved although s{before} is up");
        }
    }
    assert_eq!(moved, load[1]);

    // 3. s1 back: nobody moves back.
    svc.lab.cli(&["backend", "state", "s1", "up"]).unwrap();
    let r3 = svc.round("s1 up again", &old, 2);
    for src in &old {
        assert_eq!(
            Service::home(&r3, src),
            Service::home(&r2, src),
            "client {src} moved on recovery"
        );
    }

    // 4. s0 draining: its clients stay, new clients avoid it.
    svc.lab.cli(&["backend", "state", "s0", "drain"]).unwrap();
    let r4 = svc.round("s0 drains, old clients", &old, 2);
    for src in &old {
        assert_eq!(
            Service::home(&r4, src),
            Service::home(&r3, src),
            "client {src} moved while s0 drains"
        );
    }
    let r5 = svc.round("s0 drains, new clients", &new, 2);
    for src in &new {
        assert_ne!(
            Service::home(&r5, src),
            0,
            "new client {src} sent to the draining s0"
        );
    }
    let listing = svc.lab.cli(&["backend", "list"]).unwrap();
    assert!(listing.contains("drain"), "{listing}");

    let status = svc.daemon.stop().unwrap();
    assert!(status.success(), "{}", svc.daemon.output());
}

#[test]
fn dsr_l2_keeps_clients_on_their_backend_through_failure_recovery_and_drain() {
    affinity_survives_failure_recovery_and_drain("dsr-l2");
}

#[test]
fn ipip_keeps_clients_on_their_backend_through_failure_recovery_and_drain() {
    affinity_survives_failure_recovery_and_drain("ipip");
}
