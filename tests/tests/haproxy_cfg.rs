//! `balancer run --config haproxy.cfg`: the guide's configurations as
//! HAProxy reads them (server and listening addresses added), served by
//! balancer; `balancer convert` prints TOML that passes `check-config` and
//! runs the same; a file balancer cannot run is refused with its line.

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use balancer_tests::{
    http::{Backend, Client, free_port},
    lab::{BPFFS, output},
    proc::{Proc, wait_for},
    require_root,
};

/// A daemon on a haproxy.cfg (or its converted TOML), with its own pins
/// and socket.
struct Run {
    dir: std::path::PathBuf,
    pins: std::path::PathBuf,
    daemon: Proc,
}

impl Run {
    fn start(tag: &str, file: &str, text: &str, cfg_args: bool) -> Run {
        require_root();
        let id = format!("blb-{}-{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        let pins = Path::new(BPFFS).join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join(file);
        std::fs::write(&config, text).unwrap();
        let mut cmd = Command::new(balancer_tests::balancer_bin());
        cmd.args(["run", "--config"]).arg(&config);
        if cfg_args {
            cmd.arg("--pin-dir")
                .arg(&pins)
                .arg("--admin-socket")
                .arg(dir.join("admin.sock"));
        }
        cmd.env("RUST_LOG", "info");
        let mut daemon = Proc::spawn("balancer", cmd, &dir).expect("balancer run");
        let ok = wait_for(Duration::from_secs(20), || {
            daemon.output().contains("running:") || daemon.try_wait().ok().flatten().is_some()
        });
        assert!(
            ok && daemon.try_wait().unwrap().is_none(),
            "balancer did not start on {file}: {}",
            daemon.output()
        );
        Run { dir, pins, daemon }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.daemon.stop();
        let _ = std::fs::remove_dir_all(&self.pins);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn balancer(args: &[&str]) -> std::io::Result<String> {
    output(Command::new(balancer_tests::balancer_bin()).args(args))
}

/// The guide's first configuration: `cookie SERVER_USED insert indirect
/// nocache`, two servers with their cookies.
fn cookie_cfg(front: SocketAddr, s1: SocketAddr, s2: SocketAddr) -> String {
    format!(
        "global\n    log stdout format raw local0\n\n\
         defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\n\
         frontend www\n    bind {front}\n    default_backend servers\n\n\
         backend servers\n    cookie SERVER_USED insert indirect nocache\n    \
         server web1 {s1} check  cookie web1\n    server web2 {s2} check  cookie web2\n"
    )
}

/// Users with cookie jars stay on their server; first requests alternate.
fn check_cookie_service(front: SocketAddr) {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let mut c = Client::new(front);
        let first = c.get("/").unwrap();
        assert_eq!(first.status, 200);
        let set = first.header("set-cookie").unwrap_or_default().to_owned();
        assert!(set.starts_with("SERVER_USED="), "{set}");
        for _ in 0..3 {
            let a = c.get("/").unwrap();
            assert_eq!(a.body, first.body, "a user moved");
        }
        seen.insert(first.body);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn the_guides_cookie_configuration_runs_as_written_and_converted() {
    let b1 = Backend::start("web1", 0).unwrap();
    let b2 = Backend::start("web2", 0).unwrap();
    let front: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let text = cookie_cfg(front, b1.addr, b2.addr);
    let run = Run::start("cfg-cookie", "haproxy.cfg", &text, true);
    assert!(
        run.daemon
            .output()
            .contains("haproxy.cfg:2: global `log`: skipped"),
        "{}",
        run.daemon.output()
    );
    check_cookie_service(front);
    drop(run);

    // `balancer convert`: TOML that passes check-config and serves the same.
    let dir = std::env::temp_dir().join(format!("blb-{}-cfg-convert", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, &text).unwrap();
    let pins = Path::new(BPFFS).join(format!("blb-{}-cfg-convert", std::process::id()));
    let toml = balancer(&[
        "convert",
        cfg.to_str().unwrap(),
        "--pin-dir",
        pins.to_str().unwrap(),
        "--admin-socket",
        dir.join("admin.sock").to_str().unwrap(),
    ])
    .unwrap();
    assert!(toml.contains("# backend servers (line 14)"), "{toml}");
    let toml_file = dir.join("converted.toml");
    std::fs::write(&toml_file, &toml).unwrap();
    let ok = balancer(&["check-config", toml_file.to_str().unwrap()]).unwrap();
    assert!(ok.contains(": ok"), "{ok}");
    let run = Run::start("cfg-converted", "converted.toml", &toml, false);
    check_cookie_service(front);
    drop(run);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_balancer_cannot_run_is_refused_with_its_line() {
    let dir = std::env::temp_dir().join(format!("blb-{}-cfg-bad", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("haproxy.cfg");
    // The guide prints its servers without addresses.
    std::fs::write(
        &cfg,
        "defaults\n    mode http\nfrontend www\n    bind :80\n    default_backend servers\n\
         backend servers\n    cookie SERVER_USED insert indirect nocache\n    \
         server web1 check cookie web1\n",
    )
    .unwrap();
    let e = balancer(&["check-config", cfg.to_str().unwrap()]).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("haproxy.cfg:8: server:") && text.contains("no address"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The guide's second configuration: dynamic cookies for servers from DNS
/// (`server-template` + `resolvers`, the test's own DNS server).
#[test]
fn the_guides_dynamic_cookie_configuration_runs() {
    use balancer_tests::{dns::DnsServer, http::Svc};
    const NAME: &str = "myservice.example.local";
    let dns = DnsServer::start().expect("DNS server");
    dns.set_addresses(NAME, &["127.0.0.2", "127.0.0.3"], 5);
    let port = free_port().unwrap();
    let servers: Vec<Backend> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|a| {
            Backend::start_at(a, SocketAddr::new(a.parse().unwrap(), port), |_| {
                (200, String::new())
            })
            .unwrap()
        })
        .collect();
    let svc = Svc::launch_cfg("cfg-dynamic", |front| {
        format!(
            "resolvers mydns\n  nameserver dns1 {}\n  accepted_payload_size 8192\n  \
             timeout resolve 200ms\n\n\
             defaults\n  mode http\n\n\
             frontend www\n  bind {front}\n  default_backend servers\n\n\
             backend servers\n   cookie SERVER_USED insert indirect nocache dynamic\n   \
             dynamic-cookie-key mysecretphrase\n   \
             server-template web 5 {NAME}:{port} check resolvers mydns init-addr none\n",
            dns.addr
        )
    });
    // Both addresses serve, each with the cookie HAProxy would derive.
    let mut seen = std::collections::BTreeMap::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            let mut c = Client::new(svc.front);
            if let Ok(a) = c.get("/")
                && a.status == 200
            {
                let v = c.jar.get("SERVER_USED").cloned().unwrap_or_default();
                seen.insert(a.body, v);
            }
            seen.len() == 2
        }),
        "{seen:?}: {}",
        svc.daemon.output()
    );
    for (addr, cookie) in &seen {
        let want =
            balancer::http::cookie::dynamic_value(b"mysecretphrase", addr.parse().unwrap(), port);
        assert_eq!(cookie, &want, "{addr}");
    }
    drop(servers);
}

/// The guide's third configuration: `stick match src` + `stick
/// store-request src` on a table shared by `peers`, two instances.
#[test]
fn the_guides_stick_table_configuration_runs_on_two_peers() {
    use balancer_tests::http::Svc;
    let backends: Vec<Backend> = (1..=2)
        .map(|j| Backend::start(&format!("web{j}"), 0).unwrap())
        .collect();
    let (pa, pb) = (free_port().unwrap(), free_port().unwrap());
    let secret = std::env::temp_dir().join(format!("blb-{}-cfg-secret", std::process::id()));
    std::fs::write(&secret, "a shared secret of the lab\n").unwrap();
    let cfg = |front: SocketAddr| {
        format!(
            "peers mypeers\n    peer lb1 127.0.0.1:{pa}\n    peer lb2 127.0.0.1:{pb}\n\n\
             defaults\n    mode http\n\n\
             frontend www\n    bind {front}\n    default_backend servers\n\n\
             backend servers\n    balance roundrobin\n    \
             stick-table type ip size 1m expire 30m peers mypeers\n    \
             stick match src\n    stick store-request src\n    \
             server web1 {} check\n    server web2 {} check\n",
            backends[0].addr, backends[1].addr
        )
    };
    let start = |local: &str| {
        let secret = secret.clone();
        let local = local.to_owned();
        Svc::launch_cfg_with(&format!("cfg-peers-{local}"), cfg, move |cmd| {
            cmd.arg("--local-peer")
                .arg(&local)
                .arg("--peers-secret-file")
                .arg(&secret);
        })
    };
    let a = start("lb1");
    let b = start("lb2");
    let clients: Vec<std::net::IpAddr> = (0..8)
        .map(|j| std::net::IpAddr::from([127, 0, 11, 10 + j]))
        .collect();
    let served = |svc: &Svc, ip| Client::from(svc.front, ip).get("/").unwrap().body;
    let home: Vec<String> = clients.iter().map(|&ip| served(&a, ip)).collect();
    for (&ip, h) in clients.iter().zip(&home) {
        assert_eq!(&served(&a, ip), h, "{ip} moved on lb1");
    }
    // Through lb2, in reverse order: each client finds its server there.
    let count = |svc: &Svc| {
        let out = svc.cli(&["table", "count", "--frontend", "www"]);
        out.trim().parse::<usize>().unwrap_or(0)
    };
    assert!(
        wait_for(Duration::from_secs(10), || count(&b) == 8),
        "lb2 has {} entries",
        count(&b)
    );
    for (&ip, h) in clients.iter().zip(&home).rev() {
        assert_eq!(&served(&b, ip), h, "{ip} through lb2");
    }
    let _ = std::fs::remove_file(&secret);
    drop(backends);
}
