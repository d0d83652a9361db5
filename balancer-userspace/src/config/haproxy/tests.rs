use std::path::Path;

use super::{Options, convert};
use crate::config::{Config, ConfigError, Mode};

fn no_env(_: &str) -> Option<String> {
    None
}

fn no_dns(host: &str) -> Result<Vec<std::net::IpAddr>, String> {
    Err(format!("{host}: no such name here"))
}

fn load(text: &str, opts: &Options) -> Result<Config, ConfigError> {
    Config::parse_haproxy(Path::new("haproxy.cfg"), text, opts)
}

fn error(text: &str, opts: &Options) -> String {
    load(text, opts).expect_err("refused").to_string()
}

/// The guide's first configuration, with server and listening addresses.
const COOKIE: &str = "\
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend www
    bind :80
    default_backend servers

backend servers
    cookie SERVER_USED insert indirect nocache
    server web1 192.168.0.10:80 check  cookie web1
    server web2 192.168.0.11:80 check  cookie web2
";

#[test]
fn the_guides_cookie_configuration_runs() {
    let c = load(COOKIE, &Options::default()).unwrap();
    assert_eq!(c.frontends.len(), 1);
    let f = &c.frontends[0];
    assert_eq!(f.mode, Mode::Http);
    assert_eq!(f.vip.to_string(), "0.0.0.0:80");
    let b = &c.backends[0];
    assert_eq!(b.name, "servers");
    let h = b.http.as_ref().unwrap();
    let ck = h.cookie.as_ref().unwrap();
    assert_eq!(ck.name, "SERVER_USED");
    assert_eq!(b.servers[1].cookie.as_deref(), Some("web2"));
    assert!(b.servers[0].check.is_some());
    assert!(c.dataplane.interfaces.is_empty());
}

#[test]
fn the_guides_dynamic_cookie_configuration_runs() {
    let text = "\
resolvers mydns
  nameserver dns1 192.168.50.30:53
  accepted_payload_size 8192

defaults
  mode http

frontend www
  bind :80
  default_backend servers

backend servers
   cookie SERVER_USED insert indirect nocache dynamic
   dynamic-cookie-key mysecretphrase
   server-template web 5 myservice.example.local:80 check resolvers mydns init-addr none
";
    let c = load(text, &Options::default()).unwrap();
    let t = c.backends[0].template.as_ref().unwrap();
    assert_eq!(t.count, 5);
    assert_eq!(c.resolvers[0].name, "mydns");
}

#[test]
fn the_guides_stick_table_configuration_runs() {
    let text = "\
peers mypeers
    peer lb1 192.168.0.1:10000
    peer lb2 192.168.0.2:10000

defaults
    mode http

frontend www
    bind :80
    default_backend servers

backend servers
    stick-table type ip size 1m expire 30m peers mypeers
    stick match src
    stick store-request src
    server web1 192.168.0.10:80 check
    server web2 192.168.0.11:80 check
";
    let opts = Options {
        local_peer: Some("lb1".into()),
        peers_secret: Some("a secret of 16 bytes or more".into()),
        ..Default::default()
    };
    let c = load(text, &opts).unwrap();
    let b = &c.backends[0];
    let s = b.http.as_ref().unwrap().stick;
    assert!(s.matches && s.stores);
    // HAProxy's 1m is 2^20 entries.
    assert_eq!(b.stick_size, 1 << 20);
    assert_eq!(b.peers.as_deref(), Some("mypeers"));
    assert_eq!(c.peers.as_ref().unwrap().local, "lb1");
    // Without the secret: said, with the peers line.
    let e = error(text, &Options::default());
    assert!(
        e.contains("haproxy.cfg:1: peers:") && e.contains("--peers-secret-file"),
        "{e}"
    );
}

#[test]
fn servers_without_addresses_are_named_with_their_line() {
    let e = error(
        "defaults\n  mode http\nfrontend www\n  bind :80\n  default_backend b\n\
         backend b\n  server web1 check cookie web1\n",
        &Options::default(),
    );
    assert!(
        e.contains("haproxy.cfg:7: server:") && e.contains("no address"),
        "{e}"
    );
}

#[test]
fn unknown_and_unsupported_keywords_name_their_line() {
    let base = "defaults\n  mode http\nfrontend www\n  bind :80\n  default_backend b\nbackend b\n  server s 127.0.0.1:8080\n";
    let cases: &[(&str, usize, &str)] = &[
        ("  http-request deny\n", 8, "http-request"),
        ("  server s2 127.0.0.1:8081 backup\n", 8, "server backup"),
        ("  stick on src if TRUE\n", 8, "stick on"),
        ("  stick-table type string size 1k\n", 8, "stick-table type"),
        ("  timeout client 5s\n", 8, "timeout client"),
        ("  option httpchk GET / HTTP/1.1\n", 8, "option httpchk"),
        ("  bind :81\n", 8, "bind"),
        ("userlist u\n  user a\n", 8, "userlist"),
    ];
    for (extra, line, key) in cases {
        let e = error(&format!("{base}{extra}"), &Options::default());
        assert!(
            e.contains(&format!("haproxy.cfg:{line}: {key}:")),
            "{extra:?}: {e}"
        );
    }
    // A frontend's missing backend, found by the converter.
    let e = error(
        "defaults\n  mode http\nfrontend www\n  bind :80\n  default_backend nope\n",
        &Options::default(),
    );
    assert!(e.contains("haproxy.cfg:5: default_backend:"), "{e}");
}

#[test]
fn errors_the_validator_finds_name_the_cfg_line() {
    // A weight balancer refuses (over 256): the TOML validator's error,
    // given the .cfg's line.
    let e = error(
        "defaults\n  mode http\nfrontend www\n  bind :80\n  default_backend b\n\
         backend b\n  server s 127.0.0.1:8080 weight 1000\n",
        &Options::default(),
    );
    assert!(e.contains("haproxy.cfg:7:") && e.contains("weight"), "{e}");
}

#[test]
fn skipped_keywords_warn_with_their_line() {
    let text = format!("global\n  user nobody\n  daemon\n{COOKIE}");
    let c = load(&text, &Options::default()).unwrap();
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(
        c.warnings[0].starts_with("haproxy.cfg:2: "),
        "{:?}",
        c.warnings
    );
}

#[test]
fn mode_tcp_needs_an_interface_and_a_stick_table() {
    let text = "\
frontend vip
    bind 198.18.2.100:80
    default_backend pool

backend pool
    balance source
    stick-table type ip size 1m expire 30m
    stick on src
    server s1 198.18.1.10:80
";
    let e = error(text, &Options::default());
    assert!(e.contains("interface"), "{e}");
    let opts = Options {
        interfaces: vec!["eth0".into()],
        ..Default::default()
    };
    let c = load(text, &opts).unwrap();
    assert_eq!(c.frontends[0].mode, Mode::L4);
    assert_eq!(c.backends[0].servers[0].address.to_string(), "198.18.1.10");
    let e = error(&text.replace("    stick on src\n", ""), &opts);
    assert!(e.contains("haproxy.cfg:7: stick-table:"), "{e}");
    assert_eq!(c.backends[0].forward, crate::config::Forward::DsrL2);
    // --forward: how the XDP path forwards (HAProxy has no word for it).
    let ipip = Options {
        forward: Some("ipip".into()),
        ..opts.clone()
    };
    let c = load(text, &ipip).unwrap();
    assert_eq!(c.backends[0].forward, crate::config::Forward::Ipip);
    let bad = Options {
        forward: Some("nat".into()),
        ..opts
    };
    assert!(
        error(text, &bad).contains("forward"),
        "{}",
        error(text, &bad)
    );
    // Nothing to forward on an HTTP-only file.
    let http = "defaults\n    mode http\nfrontend f\n    bind :80\n    default_backend b\n\
                backend b\n    server s 127.0.0.1:8080\n";
    let e = error(
        http,
        &Options {
            forward: Some("ipip".into()),
            ..Default::default()
        },
    );
    assert!(
        e.contains("--forward") && e.contains("no mode tcp backend"),
        "{e}"
    );
}

#[test]
fn named_defaults_and_from() {
    let text = "\
defaults web
    mode http
    timeout client 7s
defaults
    mode tcp
frontend www from web
    bind :80
    default_backend b
backend b from web
    server s 127.0.0.1:8080
";
    let c = load(text, &Options::default()).unwrap();
    assert_eq!(c.frontends[0].mode, Mode::Http);
    assert_eq!(
        c.frontends[0].http.timeout_client,
        std::time::Duration::from_secs(7)
    );
    let e = error(
        &text.replace("from web\n    bind", "from nope\n    bind"),
        &Options::default(),
    );
    assert!(e.contains("haproxy.cfg:6:") && e.contains("nope"), "{e}");
}

/// `default-server` as HAProxy 2.6.12 applies it (checked with `show
/// servers state` / `show stat` on this file): a server takes the lines
/// above it, the defaults section's first, later lines replacing earlier
/// ones; a line after a server does not reach it.
const DEFAULT_SERVER: &str = "\
defaults
    mode http
    default-server weight 7 inter 3s
frontend www
    bind :80
    default_backend b
backend b
    server a 127.0.0.1:9001
    default-server weight 9
    server b 127.0.0.1:9002 check
    default-server maxconn 5
    server c 127.0.0.1:9003 weight 3
";

#[test]
fn default_server_lines_apply_to_the_servers_after_them() {
    let c = load(DEFAULT_SERVER, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let s = &c.backends[0].servers;
    let weights: Vec<u32> = s.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [7, 9, 3]);
    let maxconn: Vec<u32> = s.iter().map(|s| s.maxconn).collect();
    assert_eq!(maxconn, [0, 0, 5]);
    // `inter` acts on the checked server; on the others HAProxy has no use
    // for it either, and it is not written.
    assert!(s[0].check.is_none() && s[2].check.is_none());
    assert_eq!(s[1].check.unwrap().inter, std::time::Duration::from_secs(3));
    // Each TOML line names the .cfg line its value came from.
    let conv = convert(DEFAULT_SERVER, &Options::default(), &no_env).unwrap();
    let sources: Vec<(usize, &str)> = conv
        .toml
        .lines()
        .enumerate()
        .map(|(i, l)| (conv.source(i + 1), l))
        .filter(|(_, l)| l.starts_with("weight =") || l.starts_with("inter ="))
        .collect();
    assert_eq!(
        sources,
        [
            (3, "weight = 7"),
            (3, "inter = \"3s\""),
            (9, "weight = 9"),
            (12, "weight = 3")
        ],
        "{}",
        conv.toml
    );
    // A defaults section's lines reach a proxy `from` it, as its other
    // settings.
    let named = "\
defaults web
    mode http
    default-server weight 4
defaults
    mode http
frontend www from web
    bind :80
    default_backend b
backend b from web
    server s 127.0.0.1:8080
";
    let c = load(named, &Options::default()).unwrap();
    assert_eq!(c.backends[0].servers[0].weight, 4);
    let c = load(&named.replace("b from web", "b"), &Options::default()).unwrap();
    assert_eq!(c.backends[0].servers[0].weight, 1);
}

/// `enabled` and `no-check` on a server line cancel a default-server's
/// `disabled` and `check` (HAProxy 2.6.12's `show servers state`: admin
/// state 0 and checks on for the first, maintenance without checks for
/// the second).
#[test]
fn server_lines_cancel_default_server_flags() {
    let text = "\
defaults
    mode http
frontend www
    bind :80
    default_backend b
backend b
    default-server disabled check
    server a 127.0.0.1:9001 enabled
    server b 127.0.0.1:9002 no-check
";
    let c = load(text, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let s = &c.backends[0].servers;
    use crate::config::AdminState;
    assert_eq!((s[0].state, s[0].check.is_some()), (AdminState::Up, true));
    assert_eq!(
        (s[1].state, s[1].check.is_some()),
        (AdminState::Maint, false)
    );
    // Nothing to cancel: refused.
    let e = error(
        &text.replace("disabled check", "check"),
        &Options::default(),
    );
    assert!(e.contains("haproxy.cfg:8: server enabled:"), "{e}");
    let e = error(
        &text.replace("disabled check", "disabled"),
        &Options::default(),
    );
    assert!(e.contains("haproxy.cfg:9: server no-check:"), "{e}");
}

/// Host names in `server` lines are looked up when the file is read, as
/// HAProxy does at start (`init-addr`, default `last,libc`): the TOML holds
/// the first address found; none is an error with the line, as HAProxy's
/// "could not resolve address".
#[test]
fn server_host_names_are_looked_up_at_load() {
    let dns = |host: &str| match host {
        "web1.lab" => Ok(vec!["198.18.0.10".parse().unwrap()]),
        "web6.lab" => Ok(vec![
            "2001:db8::10".parse().unwrap(),
            "198.18.0.11".parse().unwrap(),
        ]),
        _ => no_dns(host),
    };
    let text = "\
defaults
    mode http
frontend www
    bind :80
    default_backend b
backend b
    server a web1.lab:8080
    server b web6.lab:8080
    server c 127.0.0.1:8080
";
    let conv = |text: &str| super::convert_with(text, &Options::default(), &no_env, &dns);
    let c = conv(text).unwrap_or_else(|e| panic!("{e}"));
    let addresses: Vec<(usize, &str)> = c
        .toml
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("address = "))
        .map(|(i, l)| (c.source(i + 1), l))
        .collect();
    assert_eq!(
        addresses,
        [
            (7, "address = \"198.18.0.10:8080\""),
            (8, "address = \"[2001:db8::10]:8080\""),
            (9, "address = \"127.0.0.1:8080\"")
        ],
        "{}",
        c.toml
    );
    // Not found: refused with the line, as HAProxy refuses to start.
    let e = conv(&text.replace("web1.lab", "nope.lab")).unwrap_err();
    assert_eq!(e.line, 7, "{e}");
    assert!(
        e.to_string()
            .contains("could not resolve address 'nope.lab'"),
        "{e}"
    );
    // init-addr: the methods in order; an address as a last resort; none
    // (a server without an address) is not supported.
    let with = |init: &str| {
        conv(&text.replace(
            "web1.lab:8080\n",
            &format!("nope.lab:8080 init-addr {init}\n"),
        ))
    };
    let c = with("last,libc,198.18.0.99").unwrap();
    assert!(
        c.toml.contains("address = \"198.18.0.99:8080\""),
        "{}",
        c.toml
    );
    for (init, why) in [("libc,none", "not supported"), ("dns", "want last")] {
        let e = with(init).unwrap_err();
        assert_eq!((e.line, e.keyword.as_str()), (7, "server init-addr"), "{e}");
        assert!(e.reason.contains(why), "{e}");
    }
    // On an IP address it would do nothing; from a defaults section it is
    // dropped there, and acts on names.
    let e = conv(&text.replace("127.0.0.1:8080\n", "127.0.0.1:8080 init-addr libc\n")).unwrap_err();
    assert_eq!((e.line, e.keyword.as_str()), (9, "server init-addr"), "{e}");
    let c = conv(
        &text
            .replace(
                "    mode http\n",
                "    mode http\n    default-server init-addr libc,198.18.0.98\n",
            )
            .replace("web1.lab", "nope.lab"),
    )
    .unwrap();
    assert!(
        c.toml.contains("address = \"198.18.0.98:8080\""),
        "{}",
        c.toml
    );
    // Run-time resolution (`resolvers` on a server) is not done here.
    let e = conv(&text.replace("web1.lab:8080\n", "web1.lab:8080 resolvers dns\n")).unwrap_err();
    assert_eq!((e.line, e.keyword.as_str()), (7, "server resolvers"), "{e}");
    // The system resolver, through the validator: localhost is loopback.
    let c = load(
        &text
            .replace("web1.lab", "localhost")
            .replace("    server b web6.lab:8080\n", ""),
        &Options::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.backends[0].servers[0].address.is_loopback());
}

#[test]
fn server_templates_take_default_server_parameters() {
    let text = "\
resolvers dns
    nameserver ns1 127.0.0.1:53
defaults
    mode http
    default-server init-addr none resolvers dns
frontend www
    bind :80
    default_backend b
backend b
    default-server check weight 2 resolve-prefer ipv4
    server-template web 3 app.example.local:80
";
    let c = load(text, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let t = c.backends[0].template.as_ref().unwrap();
    assert!(t.check.is_some());
    assert_eq!(t.weight, 2);
    assert_eq!(t.init_addr, [crate::config::InitAddr::None]);
    assert_eq!(t.resolve_prefer, Some(crate::config::Family::V4));
    // Its own parameters replace them.
    let c = load(
        &text.replace("local:80\n", "local:80 init-addr last,none\n"),
        &Options::default(),
    )
    .unwrap();
    let t = c.backends[0].template.as_ref().unwrap();
    use crate::config::InitAddr;
    assert_eq!(t.init_addr, [InitAddr::Last, InitAddr::None]);
    // ... so the backend's own line giving one no server takes does
    // nothing: refused (the defaults section's lines are for every proxy).
    let e = error(
        &text.replace("local:80\n", "local:80 weight 5\n"),
        &Options::default(),
    );
    assert!(e.contains("haproxy.cfg:10: default-server weight:"), "{e}");
    // What a template cannot take, where it would act: refused on the
    // default-server's line.
    let e = error(
        &text.replace("check weight 2", "check inter 5s"),
        &Options::default(),
    );
    assert!(
        e.contains("haproxy.cfg:10: default-server inter:") && e.contains("line 11"),
        "{e}"
    );
    let e = error(
        &text.replace("check weight 2", "maxconn 10"),
        &Options::default(),
    );
    assert!(e.contains("haproxy.cfg:10: default-server maxconn:"), "{e}");
    // Unchecked: `inter` would do nothing in HAProxy either.
    let e = error(
        &text.replace("check weight 2", "inter 5s"),
        &Options::default(),
    );
    assert!(
        e.contains("haproxy.cfg:10: default-server inter:") && e.contains("no effect"),
        "{e}"
    );
}

#[test]
fn resolve_prefer_is_haproxys_ipv6_unless_told() {
    let text = "\
resolvers dns
    nameserver ns1 127.0.0.1:53
defaults
    mode http
frontend www
    bind :80
    default_backend b
backend b
    server-template web 3 app.example.local:80 resolvers dns init-addr none
";
    let prefer = |text: &str| {
        load(text, &Options::default()).unwrap().backends[0]
            .template
            .as_ref()
            .unwrap()
            .resolve_prefer
    };
    assert_eq!(prefer(text), Some(crate::config::Family::V6));
    let v4 = text.replace("none\n", "none resolve-prefer ipv4\n");
    assert_eq!(prefer(&v4), Some(crate::config::Family::V4));
    // mode tcp: the VIP's family decides; saying one would do nothing.
    let tcp = "\
resolvers dns
    nameserver ns1 127.0.0.1:53
frontend vip
    bind 198.18.2.100:80
    default_backend pool
backend pool
    stick-table type ip size 1k expire 30m
    stick on src
    server-template web 3 app.example.local resolvers dns init-addr none
";
    let opts = Options {
        interfaces: vec!["eth0".into()],
        ..Default::default()
    };
    let c = load(tcp, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.backends[0].template.as_ref().unwrap().resolve_prefer,
        None
    );
    let e = error(&tcp.replace("none\n", "none resolve-prefer ipv4\n"), &opts);
    assert!(
        e.contains("haproxy.cfg:9: backend[0].server_template.resolve_prefer"),
        "{e}"
    );
}

#[test]
fn http_check_lines_are_the_checks_request_and_statuses() {
    let text = "\
defaults
    mode http
frontend www
    bind :80
    default_backend b
backend b
    option httpchk GET /
    http-check send meth GET uri /health ver HTTP/1.0
    http-check expect status 200-299,503
    server s 127.0.0.1:8080 check
";
    let c = load(text, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.backends[0].check_kind,
        crate::config::CheckKind::Http {
            method: "GET".into(),
            path: "/health".into(),
            status: vec![(200, 299), (503, 503)],
        }
    );
    let conv = convert(text, &Options::default(), &no_env).unwrap();
    let line_of = |key: &str| {
        let i = conv.toml.lines().position(|l| l.starts_with(key)).unwrap();
        conv.source(i + 1)
    };
    assert_eq!(
        (
            line_of("check_type"),
            line_of("check_path"),
            line_of("check_status")
        ),
        (7, 8, 9)
    );
    // `option httpchk` alone is HAProxy's `OPTIONS / HTTP/1.0`; `http-check
    // send` replaces what it gives of it (HAProxy sends `GET /p` for the
    // third case, seen on a listener).
    let lines = &text[text.find("    option").unwrap()..text.find("    server").unwrap()];
    let kind = |own: &str| {
        load(&text.replace(lines, own), &Options::default())
            .unwrap()
            .backends[0]
            .check_kind
            .clone()
    };
    let http = |method: &str, path: &str| crate::config::CheckKind::Http {
        method: method.into(),
        path: path.into(),
        status: vec![crate::config::DEFAULT_CHECK_STATUS],
    };
    assert_eq!(kind("    option httpchk\n"), http("OPTIONS", "/"));
    assert_eq!(kind("    option httpchk /u\n"), http("OPTIONS", "/u"));
    assert_eq!(
        kind("    option httpchk POST /p\n    http-check send meth GET\n"),
        http("GET", "/p")
    );
    assert_eq!(
        kind("    option httpchk HEAD /o HTTP/1.0\n"),
        http("HEAD", "/o")
    );
    // With `option httpchk` from the defaults section, a backend's own
    // http-check lines replace its request (HAProxy on a listener:
    // `OPTIONS /h`, `PUT /`, and nothing sent without a `send`).
    let from_defaults = |own: &str| {
        let t = text
            .replace(
                "    mode http\n",
                "    mode http\n    option httpchk POST /d\n",
            )
            .replace(lines, own);
        load(&t, &Options::default()).map(|c| c.backends[0].check_kind.clone())
    };
    assert_eq!(
        from_defaults("    http-check send uri /h\n").unwrap(),
        http("OPTIONS", "/h")
    );
    assert_eq!(
        from_defaults("    http-check send meth PUT\n").unwrap(),
        http("PUT", "/")
    );
    assert_eq!(from_defaults("").unwrap(), http("POST", "/d"));
    let e = from_defaults("    http-check expect status 200\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("haproxy.cfg:8: http-check:") && e.contains("no request"),
        "{e}"
    );
    // Without them: `option httpchk`'s URI, 2xx and 3xx.
    let c = load(
        &text.replace("    http-check send meth GET uri /health ver HTTP/1.0\n    http-check expect status 200-299,503\n", ""),
        &Options::default(),
    )
    .unwrap();
    assert_eq!(
        c.backends[0].check_kind,
        crate::config::CheckKind::Http {
            method: "GET".into(),
            path: "/".into(),
            status: vec![crate::config::DEFAULT_CHECK_STATUS],
        }
    );
}

#[test]
fn the_toml_names_its_source_lines() {
    let c = convert(COOKIE, &Options::default(), &no_env).unwrap();
    assert!(c.toml.contains("# backend servers (line 11)"), "{}", c.toml);
    let cookie_line = c
        .toml
        .lines()
        .position(|l| l.starts_with("cookie = "))
        .unwrap();
    assert_eq!(c.source(cookie_line + 1), 12);
}

#[test]
fn the_readme_table_is_the_keyword_list() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme
        .find("| section | keyword | in balancer |")
        .expect("the table");
    let table: Vec<&str> = readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    let want: Vec<String> = super::KEYWORDS
        .iter()
        .map(|(s, k, here)| format!("| {s} | `{k}` | {here} |"))
        .collect();
    assert_eq!(table, want, "README's table drifted from KEYWORDS");
    for k in super::SKIPPED_GLOBAL {
        assert!(
            readme.contains(&format!("`{k}`")),
            "{k} is skipped but not documented"
        );
    }
}

/// Each keyword of the list in a file that uses it: accepted.
#[test]
fn every_listed_keyword_is_accepted() {
    let opts = Options {
        interfaces: vec!["eth0".into()],
        local_peer: Some("a".into()),
        peers_secret: Some("sixteen bytes at least".into()),
        ..Default::default()
    };
    let text = "\
.if version_atleast(2.6) && !feature(NOPE)
.notice \"read as HAProxy 2.6.12\"
.elif 1
.else
.endif
global
    maxconn 1000
    localpeer a
    log /dev/log format rfc3164 local0 info
    log-tag lb
peers p
    peer a 127.0.0.1:7000
    peer b 127.0.0.2:7000
resolvers dns
    nameserver ns1 127.0.0.1:53
    accepted_payload_size 1232
    resolve_retries 3
    timeout resolve 1s
    timeout retry 1s
    hold nx 30s
    hold obsolete 0s
defaults
    mode http
    timeout client 30s
    timeout http-request 10s
    timeout http-keep-alive 5s
    timeout client-fin 5s
    timeout connect 5s
    timeout server 30s
    timeout tunnel 1h
    timeout server-fin 5s
    timeout queue 5s
    timeout check 2s
    maxconn 500
    balance roundrobin
    option forwardfor
    default-server init-addr none
    log global
    option httplog
    option dontlognull
frontend www
    bind 127.0.0.1:8080
    tcp-request connection expect-proxy layer4 if { src 127.0.0.0/8 }
    default_backend app
backend app
    cookie SRV insert indirect nocache dynamic
    dynamic-cookie-key k
    option redispatch
    option httpchk GET /health
    http-check send meth GET uri /ready ver HTTP/1.0
    http-check expect status 200-299,301
    stick-table type ip size 1k expire 30m peers p
    stick on src,ipmask(24)
    server s1 127.0.0.1:9001 check inter 2s rise 2 fall 3 weight 2 maxconn 10 maxqueue 5 port 9001 send-proxy
    server s2 127.0.0.1:9002 check disabled port 9001 cookie s2 send-proxy
listen dyn
    bind 127.0.0.1:8081
    cookie SRV insert dynamic
    dynamic-cookie-key k
    default-server resolvers dns
    server-template web 3 app.example.local:80 check init-addr none weight 1 resolve-prefer ipv4
    default-server inter 3s
    server d1 127.0.0.1:9003 check
frontend vip
    mode tcp
    no log
    bind 198.18.2.100:80
    default_backend pool
backend pool
    mode tcp
    balance source
    stick-table type ip size 1k expire 30m
    stick match src
    stick store-request src
    server p1 198.18.1.10:80
";
    let c = load(text, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.frontends.len(), 3);
}

/// Lines balancer cannot run: each refused naming its line and keyword.
#[test]
fn bad_inputs_name_their_line() {
    // A valid file; each case appends lines after line 7 (so its first
    // line is 8) or replaces it whole (`=` prefix, lines counted from 1).
    let base = "defaults\n  mode http\nfrontend www\n  bind :80\n  default_backend b\nbackend b\n  server s 127.0.0.1:8080\n";
    let cases: &[(&str, usize, &str)] = &[
        ("  frobnicate 1\n", 8, "frobnicate"),
        ("  http-request deny\n", 8, "http-request"),
        ("  http-response set-header X y\n", 8, "http-response"),
        ("  acl a src 127.0.0.1\n", 8, "acl"),
        ("  use_backend b if TRUE\n", 8, "use_backend"),
        ("  option httpclose\n", 8, "option httpclose"),
        ("  option tcp-check\n", 8, "option tcp-check"),
        ("  option httpchk GET /x HTTP/1.1\n", 8, "option httpchk"),
        ("  option httpchk GET / x y\n", 8, "option httpchk"),
        ("  option persist extra\n", 8, "option persist"),
        ("  option\n", 8, "option"),
        ("  timeout tarpit 5s\n", 8, "timeout tarpit"),
        ("  timeout client 5s\n", 8, "timeout client"),
        ("  timeout server\n", 8, "timeout"),
        ("  balance uri\n", 8, "backend[0].balance"),
        ("  balance\n", 8, "balance"),
        ("  cookie\n", 8, "cookie"),
        ("  bind :81\n", 8, "bind"),
        ("  default_backend b\n", 8, "default_backend"),
        ("  maxconn 10\n", 8, "maxconn"),
        ("  server s2 127.0.0.1:8081 backup\n", 8, "server backup"),
        ("  server s2 127.0.0.1:8081 ssl\n", 7, "server"),
        ("  server s2 127.0.0.1:8081 inter\n", 8, "server inter"),
        ("  server s2 check\n", 8, "server"),
        ("  server\n", 8, "server"),
        ("  server s2 127.0.0.1:8081 port 9 \n", 8, "server port"),
        ("  server-template w\n", 8, "server-template"),
        (
            "  server-template w 2 a.b:80 backup\n",
            8,
            "server-template backup",
        ),
        ("  stick on src\n", 8, "stick"),
        (
            "  stick-table type ip size 1k\n  stick on src table t\n",
            9,
            "stick on",
        ),
        (
            "  stick-table type ip size 1k\n  stick on src if TRUE\n",
            9,
            "stick on",
        ),
        (
            "  stick-table type ip size 1k\n  stick store-response src\n",
            9,
            "stick store-response",
        ),
        (
            "  stick-table type ip size 1k\n  stick on hdr(x)\n",
            9,
            "stick on",
        ),
        (
            "  stick-table type ip size 1k\n  stick on src,lower\n",
            9,
            "stick",
        ),
        ("  stick-table type string size 1k\n", 8, "stick-table type"),
        (
            "  stick-table type ip size 1k nopurge\n",
            8,
            "stick-table nopurge",
        ),
        ("  stick-table size 1k\n", 8, "stick-table"),
        ("  stick-table type ip size lots\n", 8, "stick-table size"),
        (
            "  server s 127.0.0.1:8081\n",
            8,
            "backend[0].server[1].name",
        ),
        ("userlist u\n  user a\n", 8, "userlist"),
        ("cache c\n  total-max-size 4\n", 8, "cache"),
        ("peers p\n  table t type ip size 1k\n", 9, "table"),
        ("peers p\n  peer a\n", 9, "peer"),
        ("resolvers r\n  parse-resolv-conf\n", 9, "parse-resolv-conf"),
        ("resolvers r\n  nameserver ns\n", 9, "nameserver"),
        ("backend b2\n  server s 127.0.0.1:1\n", 8, "backend[1].name"),
        ("frontend f2\n  bind :82\n", 8, "frontend"),
        (
            "frontend f3\n  bind :83\n  default_backend nope\n",
            10,
            "default_backend",
        ),
        ("listen l from nope\n", 8, "listen"),
        ("backend b\n  server s 127.0.0.1:1\n", 8, "backend[1].name"),
        (".if defined(X)\n", 8, ".if"),
        (
            "  option httpchk\n  http-check send meth \"GET /\"\n",
            9,
            "backend[0].check_method",
        ),
        (
            "  option httpchk GET no-slash\n",
            8,
            "backend[0].check_path",
        ),
        (
            "  option httpchk\n  http-check send ver HTTP/1.1\n",
            9,
            "http-check send ver",
        ),
        (
            "  option httpchk\n  http-check send hdr Host x\n",
            9,
            "http-check send hdr",
        ),
        (
            "  option httpchk\n  http-check send uri\n",
            9,
            "http-check send uri",
        ),
        (
            "  option httpchk\n  http-check send uri /a\n  http-check send uri /b\n",
            10,
            "http-check send",
        ),
        (
            "  option httpchk\n  http-check expect rstatus ^2\n",
            9,
            "http-check expect rstatus",
        ),
        (
            "  option httpchk\n  http-check expect string ok\n",
            9,
            "http-check expect string",
        ),
        (
            "  option httpchk\n  http-check expect ! status 200\n",
            9,
            "http-check expect !",
        ),
        (
            "  option httpchk\n  http-check expect status abc\n",
            9,
            "http-check expect status",
        ),
        (
            "  option httpchk\n  http-check expect status 200\n  http-check expect status 204\n",
            10,
            "http-check expect",
        ),
        (
            "  option httpchk\n  http-check disable-on-404\n",
            9,
            "http-check disable-on-404",
        ),
        ("  http-check expect status 200\n", 8, "http-check"),
        ("  http-check\n", 8, "http-check"),
        (
            "=defaults\n  mode http\n  http-check expect status 200\n",
            3,
            "http-check",
        ),
        (
            "frontend f2\n  bind :82\n  http-check expect status 200\n",
            10,
            "http-check",
        ),
        ("  default-server backup\n", 8, "default-server backup"),
        (
            "  server-template w 2 a.b:80 no-check\n",
            8,
            "server-template no-check",
        ),
        ("  server s2 127.0.0.1:8081 enabled\n", 8, "server enabled"),
        ("  default-server\n", 8, "default-server"),
        ("  default-server inter\n", 8, "default-server inter"),
        (
            "  default-server resolve-prefer ipv5\n",
            8,
            "default-server resolve-prefer",
        ),
        ("  default-server weight 3\n", 8, "default-server weight"),
        (
            "  default-server weight 1000\n  server s2 127.0.0.1:8081\n",
            8,
            "backend[0].server[1].weight",
        ),
        (
            "  default-server maxqueue 3\n  server s2 127.0.0.1:8081\n",
            8,
            "default-server maxqueue",
        ),
        (
            "  default-server weight 2\n  server s2 127.0.0.1:8081 weight 3\n",
            8,
            "default-server weight",
        ),
        (
            "frontend f2\n  bind :82\n  default-server weight 2\n",
            10,
            "default-server",
        ),
        (
            "  server-template w 2 a.b:80 resolve-prefer ipv7\n",
            8,
            "server-template resolve-prefer",
        ),
        ("=stats enable\n", 1, "stats"),
        ("=global\n  nbproc 2\n", 2, "nbproc"),
        ("=global\n  maxconn\n", 2, "maxconn"),
        ("=defaults x y\n", 1, "defaults"),
        ("=frontend\n", 1, "frontend"),
        ("  cookie \"SERVER insert\n", 8, "syntax"),
        ("  cookie SERVER\\x4 insert\n", 8, "syntax"),
        ("  cookie \"${A[*]x}\"\n", 8, "syntax"),
    ];
    assert!(cases.len() >= 40);
    for (extra, line, key) in cases {
        let text = match extra.strip_prefix('=') {
            Some(whole) => whole.to_owned(),
            None => format!("{base}{extra}"),
        };
        let e = error(&text, &Options::default());
        assert!(
            e.contains(&format!("haproxy.cfg:{line}: {key}")),
            "{extra:?}: want line {line} and {key:?}: {e}"
        );
    }
}

/// Random files from HAProxy's words: converted or refused, never a panic
/// (the validator then sees only what the converter wrote).
#[test]
fn random_files_never_panic() {
    const WORDS: &[&str] = &[
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "peers",
        "resolvers",
        "mode",
        "http",
        "tcp",
        "bind",
        ":80",
        "127.0.0.1:8080",
        "[::1]:80",
        "default_backend",
        "b",
        "server",
        "s",
        "server-template",
        "w",
        "3",
        "a.b:80",
        "check",
        "inter",
        "rise",
        "fall",
        "cookie",
        "SERVER",
        "insert",
        "indirect",
        "nocache",
        "dynamic",
        "dynamic-cookie-key",
        "weight",
        "0",
        "1",
        "300",
        "-1",
        "disabled",
        "maxconn",
        "maxqueue",
        "port",
        "stick-table",
        "type",
        "ip",
        "ipv6",
        "size",
        "1m",
        "expire",
        "30m",
        "stick",
        "on",
        "match",
        "store-request",
        "src",
        "src,ipmask(24)",
        "src,ipmask(24,64)",
        "src,ipmask(",
        "table",
        "if",
        "option",
        "persist",
        "redispatch",
        "httpchk",
        "GET",
        "/",
        "timeout",
        "client",
        "server",
        "connect",
        "queue",
        "check",
        "5s",
        "balance",
        "roundrobin",
        "source",
        "peer",
        "nameserver",
        "hold",
        "nx",
        "valid",
        "from",
        "localpeer",
        "log",
        "retries",
        "\"\"",
        "'x y'",
        "#",
        "\\",
        "${X}",
        "resolve_retries",
        "accepted_payload_size",
        "default-server",
        "resolve-prefer",
        "ipv4",
        "init-addr",
        "none",
        "resolvers",
        "http-check",
        "send",
        "meth",
        "uri",
        "ver",
        "expect",
        "status",
        "200-399",
        "rstatus",
        ".if",
        ".elif",
        ".else",
        ".endif",
        ".warning",
        ".alert",
        "defined(A)",
        "streq(a,é)",
        "version_atleast(2.6é",
        "(",
        ")",
        "&&",
        "||",
        "!",
        "0x",
        "feature(",
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let opts = Options {
        interfaces: vec!["eth0".into()],
        peers_secret: Some("sixteen bytes at least".into()),
        local_peer: Some("a".into()),
        ..Default::default()
    };
    for i in 0..3000 {
        // Half start from a valid file, so that later sections are reached.
        let mut text = if i % 2 == 0 {
            "defaults\n  mode http\nfrontend f\n  bind :80\n  default_backend b\nbackend b\n"
                .to_owned()
        } else {
            String::new()
        };
        for _ in 0..next(12) {
            if next(3) > 0 {
                text.push_str("  ");
            }
            for _ in 0..1 + next(6) {
                text.push_str(WORDS[next(WORDS.len())]);
                text.push(' ');
            }
            text.push('\n');
        }
        // Host names are looked up by a resolver that knows none (no
        // system DNS in a unit test); the TOML goes to the validator.
        if let Ok(c) = super::convert_with(&text, &opts, &no_env, &no_dns) {
            let _ = Config::parse(Path::new("haproxy.cfg"), &c.toml);
        }
    }
}

/// `env` for the condition tests: A set, E set and empty.
fn cond_env(k: &str) -> Option<String> {
    match k {
        "A" => Some("x".into()),
        "E" => Some(String::new()),
        _ => None,
    }
}

/// Conditions and what HAProxy 2.6.12 made of them (`haproxy -c` on
/// `.if COND` / `.warning TRUE` / `.endif`, with A=x and E= set), but for
/// `feature(...)`: balancer implements none of HAProxy's build features.
const CONDITIONS: &[(&str, bool)] = &[
    ("1", true),
    ("0", false),
    ("", false),
    ("2", true),
    ("-1", true),
    ("00", false),
    ("+1", true),
    ("0x1", true),
    ("010", true),
    ("-0", false),
    ("99999999999999999999", true),
    ("defined(A)", true),
    ("defined(ZZ)", false),
    ("defined(E)", true),
    ("defined()", false),
    ("streq(a,a)", true),
    ("strneq(a,b)", true),
    ("strneq(a,a)", false),
    ("streq(\"$A\",x)", true),
    ("streq(a, a)", false),
    ("streq(\"a b\",\"a b\")", true),
    ("streq(,)", true),
    ("version_atleast(2.6.12)", true),
    ("version_atleast(2.6.13)", false),
    ("version_before(2.7)", true),
    ("version_atleast(2.6)", true),
    ("version_atleast(2.6.12-1)", false),
    ("version_before(2.6.12)", false),
    ("version_atleast(2.6.12.1)", false),
    ("version_atleast(2.6.12-dev3)", true),
    ("version_before(2.6.13-dev1)", true),
    ("version_atleast(2)", true),
    ("version_atleast(3)", false),
    ("version_before(abc)", false),
    ("version_atleast(abc)", true),
    ("version_atleast()", true),
    ("version_atleast(2.6.x)", true),
    ("version_atleast(2.6.12-0)", true),
    ("version_before(2.6.12-rc1)", false),
    ("version_atleast(2.6.12-rc9)", true),
    ("version_atleast(2.6.11.9)", true),
    ("version_atleast(2.06.12)", true),
    ("version_atleast(2.6.12-pre1)", true),
    ("version_before(2.6.12-1)", true),
    ("version_atleast(2.6.12-foo)", true),
    ("feature(NOPE)", false),
    ("feature(OPENSSL)", false),
    ("feature()", true),
    ("!defined(ZZ)", true),
    ("defined(A) && defined(ZZ)", false),
    ("defined(A) || defined(ZZ)", true),
    ("(1 || 0) && !0", true),
    ("! 1", false),
    ("!!1", true),
    ("1||0&&0", true),
    ("(0)", false),
    ("( 1 )", true),
    ("!(0)", true),
    ("(((1)))", true),
    ("defined(A)&&!defined(ZZ)", true),
    ("defined(A)&&1", true),
];

/// Conditions HAProxy 2.6.12 refuses (same experiment).
const BAD_CONDITIONS: &[&str] = &[
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
    "defined (A)",
    "version_atleast(2.6.12, 1)",
];

fn cond_file(cond: &str) -> String {
    format!(".if {cond}\n.warning TRUE\n.endif\n{COOKIE}")
}

#[test]
fn conditions_evaluate_as_haproxy_2_6_12() {
    for (cond, want) in CONDITIONS {
        let c = convert(&cond_file(cond), &Options::default(), &cond_env)
            .unwrap_or_else(|e| panic!("{cond:?}: {e}"));
        let taken = c
            .warnings
            .iter()
            .any(|w| w.line == 2 && w.text.contains("TRUE"));
        assert_eq!(taken, *want, "{cond:?}");
    }
    for cond in BAD_CONDITIONS {
        let e = convert(&cond_file(cond), &Options::default(), &cond_env)
            .expect_err(cond)
            .to_string();
        assert!(e.starts_with("line 1: .if: "), "{cond:?}: {e}");
    }
}

#[test]
fn conditional_blocks_nest_and_take_one_branch() {
    let text = format!(
        ".if 0\n.if foo\n.endif\n.elif 1\n.warning e1\n.elif 1\n.warning e2\n.else\n\
         .warning el\n.endif\n.if 1\n.warning i1\n.elif foo\n.else\n.alert no\n.endif\n\
         .if defined(ZZ)\nbackend more\n  frobnicate 1\n.else\n.notice n\n.diag d\n.endif\n{COOKIE}"
    );
    let c = load(&text, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.warnings,
        [
            "haproxy.cfg:5: `.warning`: e1",
            "haproxy.cfg:12: `.warning`: i1",
            "haproxy.cfg:21: `.notice`: n",
            "haproxy.cfg:22: `.diag`: d"
        ]
    );
    assert_eq!(c.backends.len(), 1);
    // Inside a block: its section's lines are read only when taken.
    let inner = COOKIE.replace(
        "    timeout server 30s\n",
        "    timeout server 30s\n.if defined(A)\n    timeout server 5s\n.endif\n",
    );
    let server_timeout = |env: &dyn Fn(&str) -> Option<String>| {
        let conv = convert(&inner, &Options::default(), env).unwrap();
        conv.toml.contains("timeout_server = \"5s\"")
    };
    assert!(server_timeout(&cond_env));
    assert!(!server_timeout(&no_env));
}

#[test]
fn bad_conditional_blocks_name_their_line() {
    let cases: &[(&str, usize, &str)] = &[
        (".else\n", 1, ".else"),
        (".endif\n", 1, ".endif"),
        (".elif 1\n", 1, ".elif"),
        (".if 1\n", 1, ".if"),
        (".if 0\n.if 1\n.endif\n", 1, ".if"),
        (".if 1\n.else\n.else\n.endif\n", 3, ".else"),
        (".if 1\n.else\n.elif 1\n.endif\n", 3, ".elif"),
        (".if 1\n.endif extra\n", 2, ".endif"),
        (".if 1\n.else extra\n.endif\n", 2, ".else"),
        (".if 0\n.elif foo\n.endif\n", 2, ".elif"),
        (".foo\n", 1, ".foo"),
        (".warning a b\n", 1, ".warning"),
        (".alert \"stop here\"\n", 1, ".alert"),
        // The lines of a block not taken are tokenized all the same.
        (".if 0\n  bind \"unterminated\n.endif\n", 2, "syntax"),
    ];
    for (head, line, key) in cases {
        let e = error(&format!("{head}{COOKIE}"), &Options::default());
        assert!(
            e.contains(&format!("haproxy.cfg:{line}: {key}:")),
            "{head:?}: want line {line} and {key:?}: {e}"
        );
    }
    let e = error(
        &format!(".alert \"stop here\"\n{COOKIE}"),
        &Options::default(),
    );
    assert!(e.ends_with("stop here"), "{e}");
    // Not taken: no alert.
    load(
        &format!(".if 0\n.alert no\n.endif\n{COOKIE}"),
        &Options::default(),
    )
    .unwrap();
}

/// Random conditions from the expression's pieces (multi-byte characters
/// among them): evaluated or refused, never a panic.
#[test]
fn random_conditions_never_panic() {
    const PIECES: &[&str] = &[
        "1",
        "0",
        "-",
        "+",
        "0x",
        "9",
        " ",
        "!",
        "(",
        ")",
        "&&",
        "||",
        "&",
        "|",
        ",",
        "defined(",
        "streq(",
        "strneq(",
        "feature(",
        "version_atleast(",
        "version_before(",
        "A",
        "é",
        "2.6",
        ".12",
        "-dev",
        "-rc",
        "-",
        "x",
        "\\\"",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for _ in 0..20_000 {
        let cond: String = (0..1 + next(8))
            .map(|_| PIECES[next(PIECES.len())])
            .collect();
        let _ = convert(&cond_file(&cond), &Options::default(), &cond_env);
    }
}

/// PROXY protocol: `tcp-request connection expect-proxy layer4 if { src
/// ... }` gives `accept_proxy_from`; `send-proxy`, `send-proxy-v2` (also
/// from default-server) the backend's `send_proxy`; the rest is refused
/// with its line.
#[test]
fn proxy_protocol_lines() {
    let text = "\
defaults
  mode http
frontend www
  bind 127.0.0.1:80
  tcp-request connection expect-proxy layer4 if { src 127.0.0.0/8 2001:db8::/32 198.18.0.1 }
  default_backend b
backend b
  default-server send-proxy-v2
  server s1 127.0.0.1:8080
  server s2 127.0.0.1:8081 send-proxy-v2
backend c
  server s1 127.0.0.1:8082 send-proxy
frontend other
  bind 127.0.0.1:81
  default_backend c
";
    let c = load(text, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let a = c.frontends[0]
        .http
        .accept_proxy
        .as_ref()
        .expect("accept_proxy");
    let nets: Vec<String> = a.from.iter().map(|n| n.to_string()).collect();
    assert_eq!(nets, ["127.0.0.0/8", "2001:db8::/32", "198.18.0.1/32"]);
    assert!(c.frontends[1].http.accept_proxy.is_none());
    let sp = |i: usize| c.backends[i].http.as_ref().unwrap().send_proxy;
    assert_eq!(sp(0), Some(crate::config::SendProxy::V2));
    assert_eq!(sp(1), Some(crate::config::SendProxy::V1));
    let back = "defaults\n  mode http\nfrontend www\n  bind :80\n  default_backend b\nbackend b\n  server s 127.0.0.1:8080\n";
    let front = "defaults\n  mode http\nbackend b\n  server s 127.0.0.1:8080\nfrontend www\n  default_backend b\n  bind :80\n";
    let tcp = "  tcp-request connection";
    for (base, extra, key) in [
        (front, " accept-proxy\n", "bind accept-proxy"),
        (
            front,
            "\n  tcp-request connection expect-proxy layer4\n",
            "tcp-request connection expect-proxy",
        ),
        (
            front,
            "\n  tcp-request connection expect-proxy layer4 if { src -f /x }\n",
            "tcp-request connection expect-proxy",
        ),
        (
            front,
            "\n  tcp-request connection expect-proxy layer4 if { src 198.19.0.0/15 }\n",
            "tcp-request connection expect-proxy src",
        ),
        (
            front,
            "\n  tcp-request connection reject\n",
            "tcp-request connection reject",
        ),
        (
            back,
            &format!("{tcp} expect-proxy layer4 if {{ src 127.0.0.1 }}\n"),
            "tcp-request",
        ),
        // s (line 7) lacks what s2 has.
        (
            back,
            "  server s2 127.0.0.1:8081 send-proxy\n",
            "server: server s differs",
        ),
        (
            back,
            "  server s2 127.0.0.1:8081 check-send-proxy\n",
            "server check-send-proxy",
        ),
        (
            back,
            "  server s2 127.0.0.1:8081 send-proxy-v2-ssl\n",
            "server send-proxy-v2-ssl",
        ),
    ] {
        // `front` ends with the bind (line 7): options or lines after it.
        let (text, line) = match base == front {
            true => (
                format!("{}{extra}", base.trim_end_matches('\n')),
                7 + usize::from(extra.starts_with('\n')),
            ),
            false => (
                format!("{base}{extra}"),
                8 - usize::from(key.contains("differs")),
            ),
        };
        let e = error(&text, &Options::default());
        assert!(
            e.contains(&format!("haproxy.cfg:{line}: {key}")),
            "{extra:?}: want line {line} and {key:?}: {e}"
        );
    }
}

#[test]
fn server_state_file_is_the_state_file_of_every_backend() {
    let text = |global: &str, defaults: &str| {
        format!(
            "global\n{global}defaults\n  mode http\n{defaults}frontend www\n  bind :80\n  \
             default_backend b\nbackend b\n  server s 127.0.0.1:8080\n"
        )
    };
    let load_global = "  load-server-state-from-file global\n";
    let c = load(
        &text(
            "  server-state-base /var/lib/balancer/\n  server-state-file state\n",
            load_global,
        ),
        &Options::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.server_state_file.as_deref(),
        Some(Path::new("/var/lib/balancer/state"))
    );
    for (global, defaults, want) in [
        // A backend that would not load it (HAProxy's default is none).
        (
            "  server-state-file /s\n",
            "",
            "haproxy.cfg:8: load-server-state-from-file: backend b",
        ),
        (
            "  server-state-file rel\n",
            load_global,
            "haproxy.cfg:2: server-state-file: a relative path",
        ),
        (
            "",
            load_global,
            "haproxy.cfg:4: load-server-state-from-file: no global server-state-file",
        ),
        (
            "  server-state-base /x\n",
            "",
            "haproxy.cfg:2: server-state-base: no server-state-file",
        ),
        (
            "  server-state-file /s\n",
            "  load-server-state-from-file local\n",
            "haproxy.cfg:5: load-server-state-from-file",
        ),
    ] {
        let e = error(&text(global, defaults), &Options::default());
        assert!(
            e.contains(want),
            "{global:?} {defaults:?}: want {want:?}: {e}"
        );
    }
}
