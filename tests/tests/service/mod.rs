//! A sticky L4 service in a namespace lab, shared by the lab tests: one
//! client host with many source addresses, the balancer, three backends
//! running HTTP servers and holding the VIPs. Which backend served whom is
//! read from the backends' own access logs, not from the balancer.
#![allow(dead_code)] // each test file uses a different part

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use balancer_tests::{
    lab::{BALANCER_BACKEND_SIDE_V4, BALANCER_BACKEND_SIDE_V6, Lab, LabSpec},
    proc::{Proc, wait_for},
    require_root,
};

pub const VIP: &str = "198.18.2.100";
pub const VIP6: &str = "2001:db8:0:2::100";
pub const PORT: u16 = 80;

pub struct Service {
    pub lab: Lab,
    pub http: Vec<Proc>,
    pub decap: Vec<Proc>,
    pub daemon: Proc,
    /// Bytes of each backend's log already read (reset it when a server's
    /// log file is replaced).
    pub seen: Vec<usize>,
    pub sources: Vec<Ipv4Addr>,
}

pub struct ServiceSpec<'a> {
    /// `dsr-l2` or `ipip`.
    pub forward: &'a str,
    /// Extra `[dataplane]` lines.
    pub dataplane: &'a str,
    /// `stick_table.size` of the IPv4 service.
    pub stick_size: &'a str,
    /// Also an IPv6 service `web6` on VIP6 (same hosts), with this table size.
    pub ipv6_stick_size: Option<&'a str>,
    /// Client source addresses to create.
    pub sources: usize,
    /// Extra lines in each `[[backend]]` and each `[[backend.server]]`.
    pub backend_extra: &'a str,
    pub server_extra: &'a str,
    /// Run the IPv4 service from a haproxy.cfg (`mode tcp`, `balance
    /// source`, `stick on src`; the XDP settings on the command line)
    /// instead of TOML (`forward` must be dsr-l2, the only mode a .cfg
    /// gives; the extra lines are ignored).
    pub haproxy_cfg: bool,
}

pub fn service(spec: &ServiceSpec<'_>) -> Service {
    require_root();
    let lab = Lab::new(LabSpec {
        clients: 1,
        backends: 3,
    })
    .expect("lab");
    let mut vips: Vec<IpAddr> = vec![VIP.parse().unwrap()];
    if spec.ipv6_stick_size.is_some() {
        vips.push(VIP6.parse().unwrap());
    }
    lab.hold_vips_on_backends(&vips).expect("VIPs on backends");
    let mut decap = Vec::new();
    if spec.forward == "ipip" {
        // This kernel has no ipip device: backends strip the outer header
        // with balancer's own decap XDP program, from the balancer only
        // (its tunnel source: the route's preferred source towards the
        // backends, its backend-side address).
        let (src4, src6) = (
            BALANCER_BACKEND_SIDE_V4.to_string(),
            BALANCER_BACKEND_SIDE_V6.to_string(),
        );
        for (j, s) in lab.backends.iter().enumerate() {
            let bin = balancer_tests::balancer_bin();
            let mut p = lab
                .spawn(
                    s,
                    &format!("decap-s{j}"),
                    bin.to_str().unwrap(),
                    &[
                        "decap",
                        "--interface",
                        "eth0",
                        "--tunnel-source",
                        &src4,
                        "--tunnel-source",
                        &src6,
                    ],
                )
                .expect("decap");
            assert!(
                wait_for(Duration::from_secs(10), || {
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
    let servers = |v6: bool| -> String {
        lab.backends
            .iter()
            .enumerate()
            .map(|(j, s)| {
                let a = if v6 {
                    s.ipv6.to_string()
                } else {
                    s.ipv4.to_string()
                };
                format!(
                    "[[backend.server]]\nname = \"s{j}\"\naddress = \"{a}\"\n{}",
                    spec.server_extra
                )
            })
            .collect()
    };
    let forward = spec.forward;
    let mut services = format!(
        "[[frontend]]\nname = \"web\"\nbind = \"{VIP}:{PORT}\"\ndefault_backend = \"web\"\n\n\
         [[backend]]\nname = \"web\"\nforward = \"{forward}\"\n{}\
         stick_table = {{ type = \"ip\", size = \"{}\", expire = \"30m\" }}\n{}",
        spec.backend_extra,
        spec.stick_size,
        servers(false)
    );
    if let Some(size) = spec.ipv6_stick_size {
        services += &format!(
            "\n[[frontend]]\nname = \"web6\"\nbind = \"[{VIP6}]:{PORT}\"\ndefault_backend = \"web6\"\n\n\
             [[backend]]\nname = \"web6\"\nforward = \"{forward}\"\n\
             stick_table = {{ type = \"ipv6\", size = \"{size}\", expire = \"30m\" }}\n{}",
            servers(true)
        );
    }
    let daemon = if spec.haproxy_cfg {
        assert_eq!(forward, "dsr-l2", "a haproxy.cfg gives dsr-l2 only");
        let servers: String = lab
            .backends
            .iter()
            .enumerate()
            .map(|(j, s)| format!("    server s{j} {}:{PORT}\n", s.ipv4))
            .collect();
        let text = format!(
            "frontend web\n    mode tcp\n    bind {VIP}:{PORT}\n    default_backend web\n\n\
             backend web\n    mode tcp\n    balance source\n    \
             stick-table type ip size {} expire 30m\n    stick on src\n{servers}",
            spec.stick_size
        );
        let path = lab.dir.join("haproxy.cfg");
        std::fs::write(&path, text).unwrap();
        let pins = lab.pin_dir.display().to_string();
        let sock = lab.admin_socket().display().to_string();
        lab.start_balancer_with(
            &path,
            &[
                "--interface",
                "eth0",
                "--pin-dir",
                &pins,
                "--admin-socket",
                &sock,
            ],
        )
        .expect("balancer run on a haproxy.cfg")
    } else {
        let config = lab
            .write_service_config("balancer.toml", spec.dataplane, &services)
            .unwrap();
        lab.start_balancer(&config).expect("balancer run")
    };
    let sources = lab
        .add_client_sources(0, spec.sources)
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
            std::thread::sleep(Duration::from_secs(300));
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
        decap,
        daemon,
        seen,
        sources,
    }
}

impl Service {
    /// `per` connections from each of `sources`; returns, per source, the
    /// backends whose access logs show it during this round (and checks
    /// every answer names the same backend).
    pub fn round(
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

    pub fn home(map: &BTreeMap<Ipv4Addr, BTreeSet<usize>>, src: &Ipv4Addr) -> usize {
        *map[src].iter().next().unwrap()
    }

    /// `balancer stats --json` (through the admin API).
    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.lab.cli(&["stats", "--json"]).expect("stats"))
            .expect("stats JSON")
    }
}
