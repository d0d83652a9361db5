use std::path::Path;

use super::{Options, convert};
use crate::config::{Config, ConfigError, Mode};

fn no_env(_: &str) -> Option<String> {
    None
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
        ("  option httpchk POST /\n", 8, "option httpchk"),
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
    let text = format!("global\n  log stdout format raw local0\n  daemon\n{COOKIE}");
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
global
    maxconn 1000
    localpeer a
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
frontend www
    bind 127.0.0.1:8080
    default_backend app
backend app
    cookie SRV insert indirect nocache dynamic
    dynamic-cookie-key k
    option redispatch
    option httpchk GET /health
    stick-table type ip size 1k expire 30m peers p
    stick on src,ipmask(24)
    server s1 127.0.0.1:9001 check inter 2s rise 2 fall 3 weight 2 maxconn 10 maxqueue 5 port 9001
    server s2 127.0.0.1:9002 check disabled port 9001 cookie s2
listen dyn
    bind 127.0.0.1:8081
    cookie SRV insert dynamic
    dynamic-cookie-key k
    server-template web 3 app.example.local:80 check resolvers dns init-addr none weight 1
frontend vip
    mode tcp
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
        ("  option httpchk POST /x\n", 8, "option httpchk"),
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
        ("  server s2 127.0.0.1:8081 ssl\n", 8, "server ssl"),
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
        let _ = load(&text, &opts);
    }
}
