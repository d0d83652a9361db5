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
            .contains("haproxy.cfg:2: global `log`: skipped (no frontend has `log global`"),
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
    // The TOML's pin directory (from --pin-dir above), not the run's own.
    let _ = std::fs::remove_dir_all(&pins);
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

/// The guide's second configuration (dynamic cookies for servers from DNS:
/// `server-template` + `resolvers`, the test's own DNS server), as written
/// or converted (`converted`): each address served and the cookie it gets;
/// every cookie of `replay` must lead to its server.
fn dynamic_cookie_run(
    tag: &str,
    converted: bool,
    dns: &balancer_tests::dns::DnsServer,
    port: u16,
    replay: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    use balancer_tests::http::Svc;
    const NAME: &str = "myservice.example.local";
    let cfg = |front: SocketAddr| {
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
    };
    let svc = if converted {
        Svc::launch_converted_with(tag, cfg, |_| {})
    } else {
        Svc::launch_cfg(tag, cfg)
    };
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
    for (addr, cookie) in replay {
        let mut c = Client::new(svc.front);
        c.jar.insert("SERVER_USED".into(), cookie.clone());
        assert_eq!(&c.get("/").unwrap().body, addr, "cookie {cookie}");
    }
    seen
}

/// The guide's second configuration runs from haproxy.cfg, and its
/// converted TOML serves the same: the same servers with the same cookies,
/// and each cookie given by one leads to the same server in the other.
#[test]
fn the_guides_dynamic_cookie_configuration_runs_as_written_and_converted() {
    use balancer_tests::dns::DnsServer;
    let dns = DnsServer::start().expect("DNS server");
    dns.set_addresses("myservice.example.local", &["127.0.0.2", "127.0.0.3"], 5);
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
    let none = std::collections::BTreeMap::new();
    let cfg = dynamic_cookie_run("cfg-dynamic", false, &dns, port, &none);
    let toml = dynamic_cookie_run("cfg-dynamic-toml", true, &dns, port, &cfg);
    assert_eq!(cfg, toml, "haproxy.cfg vs its TOML");
    drop(servers);
}

/// The guide's third configuration (`stick match src` + `stick
/// store-request src` on a table shared by `peers`), two instances, as
/// written or converted: the server each client lands on through lb1,
/// checked to be the one it finds through lb2.
fn stick_peers_run(tag: &str, converted: bool, backends: &[Backend]) -> Vec<String> {
    use balancer_tests::http::Svc;
    let (pa, pb) = (free_port().unwrap(), free_port().unwrap());
    let secret = std::env::temp_dir().join(format!("blb-{}-{tag}-secret", std::process::id()));
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
        let tag = format!("{tag}-{local}");
        let secret = secret.clone();
        let local = local.to_owned();
        let args = move |cmd: &mut Command| {
            cmd.arg("--local-peer")
                .arg(&local)
                .arg("--peers-secret-file")
                .arg(&secret);
        };
        if converted {
            Svc::launch_converted_with(&tag, cfg, args)
        } else {
            Svc::launch_cfg_with(&tag, cfg, args)
        }
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
    home
}

/// The guide's third configuration runs from haproxy.cfg on two peers, and
/// its converted TOML does the same: the same client addresses, in the same
/// order, land on the same servers (a fresh table each time), and lb2 finds
/// them all.
#[test]
fn the_guides_stick_table_configuration_runs_on_two_peers_as_written_and_converted() {
    let backends: Vec<Backend> = (1..=2)
        .map(|j| Backend::start(&format!("web{j}"), 0).unwrap())
        .collect();
    let cfg = stick_peers_run("cfg-peers", false, &backends);
    let toml = stick_peers_run("cfg-peers-toml", true, &backends);
    assert_eq!(cfg, toml, "haproxy.cfg vs its TOML");
    assert!(cfg.iter().any(|h| h == "web1") && cfg.iter().any(|h| h == "web2"));
    drop(backends);
}

/// `default-server` lines as HAProxy applies them (a server takes those
/// above it, the defaults section's first): web1 has the defaults' weight
/// 0 and takes no new user, web2 comes after a line giving weight 1, web3
/// after `default-server disabled` is in maintenance. Every user lands on
/// web2.
#[test]
fn default_server_lines_weigh_the_servers_after_them() {
    use balancer_tests::http::Svc;
    let b: Vec<Backend> = (1..=3)
        .map(|j| Backend::start(&format!("web{j}"), 0).unwrap())
        .collect();
    let svc = Svc::launch_cfg("cfg-defsrv", |front| {
        format!(
            "defaults\n    mode http\n    default-server weight 0\n\n\
             frontend www\n    bind {front}\n    default_backend servers\n\n\
             backend servers\n    server web1 {}\n    default-server weight 1\n    \
             server web2 {}\n    default-server disabled\n    server web3 {}\n",
            b[0].addr, b[1].addr, b[2].addr
        )
    });
    for _ in 0..6 {
        assert_eq!(Client::new(svc.front).get("/").unwrap().body, "web2");
    }
    let list: serde_json::Value =
        serde_json::from_str(&svc.cli(&["backend", "list", "--json"])).unwrap();
    let rows: Vec<(String, String, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["server"].as_str().unwrap_or_default().to_owned(),
                s["admin_state"].as_str().unwrap_or_default().to_owned(),
                s["weight"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("web1".into(), "up".into(), 0),
            ("web2".into(), "up".into(), 1),
            ("web3".into(), "maint".into(), 1)
        ],
        "{list}"
    );
    drop(b);
}

/// Messages of a file's check: (line, text) of each `.warning`, and
/// whether the file was accepted. HAProxy prints `parsing [FILE:LINE]:
/// 'TEXT'.`; balancer `warning: FILE:LINE: `.warning`: TEXT`.
fn checked(cmd: &mut Command, haproxy: bool) -> (bool, Vec<(usize, String)>) {
    let out = cmd
        .env("A", "x")
        .env("E", "")
        .env_remove("ZZ")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut warnings = Vec::new();
    for l in text.lines() {
        let (line, msg) = if haproxy {
            let Some((_, rest)) = l.split_once(".cfg:") else {
                continue;
            };
            let Some((n, m)) = rest.split_once("]: '") else {
                continue;
            };
            (n, m.trim_end_matches("'.").to_owned())
        } else {
            let Some((_, rest)) = l.split_once(".cfg:") else {
                continue;
            };
            let Some((n, m)) = rest.split_once(": `.warning`: ") else {
                continue;
            };
            (n, m.to_owned())
        };
        if let Ok(n) = line.parse() {
            warnings.push((n, msg));
        }
    }
    (out.status.success(), warnings)
}

/// Conditional blocks against HAProxy 2.6 itself: for each head, `haproxy
/// -c` and `balancer check-config` accept or refuse the file alike, with
/// the same `.warning` messages on the same lines.
#[test]
fn conditional_blocks_read_as_haproxy_reads_them() {
    const CONDITIONS: &[&str] = &[
        "1",
        "0",
        "",
        "2",
        "-1",
        "00",
        "+1",
        "0x1",
        "010",
        "-0",
        "99999999999999999999",
        "defined(A)",
        "defined(ZZ)",
        "defined(E)",
        "defined()",
        "streq(a,a)",
        "strneq(a,b)",
        "strneq(a,a)",
        "streq(\"$A\",x)",
        "streq(a, a)",
        "streq(\"a b\",\"a b\")",
        "streq(,)",
        "version_atleast(2.6.12)",
        "version_atleast(2.6.13)",
        "version_before(2.7)",
        "version_atleast(2.6)",
        "version_atleast(2.6.12-1)",
        "version_before(2.6.12)",
        "version_atleast(2.6.12.1)",
        "version_atleast(2.6.12-dev3)",
        "version_before(2.6.13-dev1)",
        "version_atleast(2)",
        "version_atleast(3)",
        "version_before(abc)",
        "version_atleast(abc)",
        "version_atleast()",
        "version_atleast(2.6.x)",
        "version_atleast(2.6.12-0)",
        "version_before(2.6.12-rc1)",
        "version_atleast(2.6.12-rc9)",
        "version_atleast(2.6.11.9)",
        "version_atleast(2.06.12)",
        "version_atleast(2.6.12-pre1)",
        "version_before(2.6.12-1)",
        "version_atleast(2.6.12-foo)",
        "version_before(2.6.12-dev9)",
        "feature(NOPE)",
        "feature()",
        "!defined(ZZ)",
        "defined(A) && defined(ZZ)",
        "defined(A) || defined(ZZ)",
        "(1 || 0) && !0",
        "! 1",
        "!!1",
        "1||0&&0",
        "(0)",
        "( 1 )",
        "!(0)",
        "(((1)))",
        "defined(A)&&!defined(ZZ)",
        "defined(A)&&1",
        "1 0",
        "1x",
        "1.5",
        "foo",
        "foo(1)",
        "defined(A,B)",
        "streq(a)",
        "streq(a),b)",
        "streq(a,a",
        "(1",
        "1 &&",
        "&& 1",
        "1 ||",
        "1 || foo",
        "0 && foo",
        "09",
        "0x",
        "-",
        "+",
        "!",
        "()",
        "defined(A)x",
        "Defined(A)",
        "version_atleast(2.6.12, 1)",
    ];
    let mut heads: Vec<String> = CONDITIONS
        .iter()
        .map(|c| format!(".if {c}\n.warning TRUE\n.endif\n"))
        .collect();
    heads.extend(
        [
            ".if 0\n.if foo\n.endif\n.elif 1\n.warning e1\n.elif 1\n.warning e2\n.else\n\
             .warning el\n.endif\n",
            ".if 1\n.warning i1\n.elif foo\n.else\n.warning no\n.endif\n",
            ".if 0\n.elif 0\n.else\n.warning el\n.endif\n",
            ".if 1\n.if 0\n.warning no\n.else\n.warning yes\n.endif\n.endif\n",
            ".else\n",
            ".endif\n",
            ".elif 1\n",
            ".if 1\n",
            ".if 1\n.else\n.else\n.endif\n",
            ".if 1\n.else\n.elif 1\n.endif\n",
            ".if 1\n.endif extra\n",
            ".if 0\n.elif foo\n.endif\n",
            ".foo\n",
            ".warning a b\n",
            ".warning \"a b\"\n",
            ".alert \"stop here\"\n",
            ".if 0\n.alert no\n.endif\n",
            ".if 0\n  bind \"unterminated\n.endif\n",
        ]
        .map(String::from),
    );
    let dir = std::env::temp_dir().join(format!("blb-{}-cfg-cond", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (p1, p2) = (free_port().unwrap(), free_port().unwrap());
    let base = format!(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    \
         timeout server 1s\nfrontend www\n    bind 127.0.0.1:{p1}\n    default_backend b\n\
         backend b\n    server s 127.0.0.1:{p2}\n"
    );
    let file = dir.join("c.cfg");
    let mut differ = Vec::new();
    for head in &heads {
        std::fs::write(&file, format!("{head}{base}")).unwrap();
        let ha = checked(
            Command::new(balancer_tests::haproxy::HAPROXY)
                .arg("-c")
                .arg("-f")
                .arg(&file),
            true,
        );
        let ours = checked(
            Command::new(balancer_tests::balancer_bin())
                .arg("check-config")
                .arg(&file),
            false,
        );
        // A refused file's messages before the error do not matter.
        let norm = |(ok, w): (bool, Vec<(usize, String)>)| (ok, if ok { w } else { Vec::new() });
        if norm(ha.clone()) != norm(ours.clone()) {
            differ.push(format!("{head:?}: haproxy {ha:?}, balancer {ours:?}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// `http-check send uri` + `expect status` as balancer's check: web1
/// answers /health with 204, web2 with 503, and only 503 is expected, so
/// web1 goes down and every user lands on web2 (with the default, 2xx or
/// 3xx, it would be the other way round).
#[test]
fn http_check_lines_decide_which_servers_are_up() {
    use balancer_tests::http::Svc;
    let health = |code: u16| {
        move |s: &balancer_tests::http::Seen| {
            if s.path == "/health" {
                (code, String::new())
            } else {
                (200, String::new())
            }
        }
    };
    let b1 = Backend::start_fn("web1", 0, health(204)).unwrap();
    let b2 = Backend::start_fn("web2", 0, health(503)).unwrap();
    let svc = Svc::launch_cfg("cfg-httpchk", |front| {
        format!(
            "defaults\n    mode http\n\n\
             frontend www\n    bind {front}\n    default_backend servers\n\n\
             backend servers\n    option httpchk\n    \
             http-check send meth GET uri /health\n    http-check expect status 503\n    \
             default-server check inter 100ms fall 1 rise 1\n    \
             server web1 {}\n    server web2 {}\n",
            b1.addr, b2.addr
        )
    });
    let state = |name: &str| svc.server_state(name);
    assert!(
        wait_for(Duration::from_secs(10), || state("web1") == "down"),
        "web1 is {}: {}",
        state("web1"),
        svc.daemon.output()
    );
    assert_eq!(state("web2"), "up");
    for _ in 0..6 {
        assert_eq!(Client::new(svc.front).get("/").unwrap().body, "web2");
    }
    assert!(
        b1.requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/health")
    );
    drop((b1, b2));
}

/// A host name in a `server` line is looked up when the file is read, as
/// HAProxy does at start (`init-addr last,libc`): `localhost` serves, at
/// the first address the system resolver gives for it.
#[test]
fn server_host_names_are_looked_up_at_load() {
    use balancer_tests::http::Svc;
    use std::net::ToSocketAddrs as _;
    let ip = ("localhost", 0)
        .to_socket_addrs()
        .unwrap()
        .next()
        .expect("localhost has an address")
        .ip();
    let port = free_port().unwrap();
    let web =
        Backend::start_at("web1", SocketAddr::new(ip, port), |_| (200, String::new())).unwrap();
    let svc = Svc::launch_cfg("cfg-hostname", |front| {
        format!(
            "defaults\n    mode http\n\n\
             frontend www\n    bind {front}\n    default_backend servers\n\n\
             backend servers\n    server web1 localhost:{port}\n"
        )
    });
    assert_eq!(Client::new(svc.front).get("/").unwrap().body, "web1");
    assert!(
        svc.cli(&["backend", "list"])
            .contains(&SocketAddr::new(ip, port).to_string())
    );
    drop(web);
}

/// `default-server` against HAProxy 2.6 itself: the same file (a defaults
/// section's lines, a backend's lines before and after servers, `enabled`
/// and `no-check` cancelling them, `from` a named defaults section) gives
/// every server the same weight, maintenance state and checks in HAProxy's
/// `show servers state` and in `balancer backend list`.
#[test]
fn default_server_lines_give_what_haproxy_gives() {
    use balancer_tests::{haproxy::Haproxy, http::Svc};
    let b: Vec<Backend> = (1..=2)
        .map(|j| Backend::start(&format!("s{j}"), 0).unwrap())
        .collect();
    let (a1, a2) = (b[0].addr, b[1].addr);
    let body = move |front: SocketAddr, sock: &str| {
        format!(
            "global\n    nbthread 1\n{sock}\n\
             defaults web\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    \
             timeout server 5s\n    default-server weight 3 inter 1s\n\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    \
             timeout server 5s\n    default-server weight 9\n\n\
             frontend www from web\n    bind {front}\n    default_backend app\n\n\
             backend app from web\n    server a {a1}\n    \
             default-server weight 5 disabled check\n    server b {a2}\n    \
             server c {a1} enabled weight 7\n    server d {a2} no-check\n    \
             default-server weight 0\n    server e {a1} enabled\n"
        )
    };
    let ha = Haproxy::start("ha-defsrv", |front, sock| {
        body(
            front,
            &format!("    stats socket {} level admin\n", sock.display()),
        )
    });
    let svc = Svc::launch_cfg("cfg-defsrv-ha", |front| body(front, ""));
    // HAProxy: name, weight, in maintenance, checked.
    let theirs: Vec<(String, u64, bool, bool)> = ha
        .admin("show servers state app")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && l.contains(' '))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let admin: u32 = f.get(6)?.parse().ok()?;
            let check: u32 = f.get(13)?.parse().ok()?;
            Some((
                f.get(3)?.to_string(),
                f.get(7)?.parse().ok()?,
                admin & 0x21 != 0,
                check & 0x4 != 0,
            ))
        })
        .collect();
    let list: serde_json::Value =
        serde_json::from_str(&svc.cli(&["backend", "list", "--json"])).unwrap();
    let ours: Vec<(String, u64, bool, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["server"].as_str().unwrap_or_default().to_owned(),
                s["weight"].as_u64().unwrap_or(999),
                s["admin_state"] == "maint",
                !s["check"].is_null(),
            )
        })
        .collect();
    assert_eq!(theirs.len(), 5, "{}", ha.admin("show servers state app"));
    assert_eq!(ours, theirs, "balancer vs HAProxy\n{list}");
    drop(b);
}
