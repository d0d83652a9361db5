use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("t.toml"), text)
}

const BASE: &str = "[dataplane]\ninterfaces = [\"eth0\"]\n";

fn key_of(e: &ConfigError) -> &str {
    match e {
        ConfigError::Invalid { key, .. } => key,
        _ => "",
    }
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.dataplane.interfaces, ["eth0"]);
    assert_eq!(c.dataplane.xdp_mode, XdpMode::Auto);
    assert_eq!(c.dataplane.pin_dir, Path::new(DEFAULT_PIN_DIR));
    assert_eq!(c.dataplane.insert_cap, DEFAULT_INSERT_CAP);
    assert_eq!(c.dataplane.stick_refresh, Duration::from_secs(1));
    assert_eq!(c.admin_socket, Path::new(DEFAULT_ADMIN_SOCKET));
    assert!(c.frontends.is_empty() && c.backends.is_empty());
}

#[test]
fn the_flood_guard_is_on_unless_switched_off() {
    assert_ne!(parse(BASE).unwrap().dataplane.insert_cap, 0);
    // insert_cap needs an l4 frontend (see no_effect_tests).
    let l4 = "[[frontend]]\nname = \"f\"\nbind = \"198.18.2.100:80\"\ndefault_backend = \"b\"\n\
              [[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.1.10\"\n";
    let off = parse(&format!("{BASE}insert_cap = 0\n{l4}")).unwrap();
    assert_eq!(off.dataplane.insert_cap, 0, "0 = no cap, when written");
}

#[test]
fn l4_service() {
    let c = parse(&format!(
        "{BASE}
[[frontend]]
name = \"web\"
bind = \"198.18.2.100:80\"
default_backend = \"web\"

[[backend]]
name = \"web\"
forward = \"ipip\"
stick_table = {{ type = \"ip\", size = \"100k\", expire = \"10m\" }}
[[backend.server]]
name = \"s1\"
address = \"198.18.1.10\"
weight = 3
[[backend.server]]
name = \"s2\"
address = \"198.18.1.11\"
state = \"drain\"
"
    ))
    .unwrap();
    let f = &c.frontends[0];
    assert_eq!(
        (f.vip.to_string().as_str(), f.proto, f.backend),
        ("198.18.2.100:80", Proto::Tcp, 0)
    );
    let b = &c.backends[0];
    assert_eq!(
        (b.forward, b.stick_size, b.expire),
        // (100k: 100 x 1,024, as HAProxy counts it.)
        (Forward::Ipip, 102_400, Duration::from_secs(600))
    );
    assert_eq!(b.servers[0].weight, 3);
    assert_eq!(b.servers[1].state, AdminState::Drain);
}

#[test]
fn errors_name_the_place_and_the_reason() {
    let e = parse(&format!("{BASE}xdp_mode = \"fast\"\n")).unwrap_err();
    assert!(e.to_string().starts_with("t.toml:3:"), "{e}");
    let e = parse(&format!("{BASE}colour = 1\n")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("t.toml:3:1: unknown field `colour`"),
        "{e}"
    );
    // A slip of the pen: the key meant, not the list of all.
    let e = parse(&format!("{BASE}xdp_mdoe = \"native\"\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:3:1: unknown key `xdp_mdoe` (did you mean xdp_mode?)"
    );
    let e = parse("[dataplane]\ninterfaces = [\"eth0\", \"eth0\"]\n").unwrap_err();
    assert_eq!(key_of(&e), "dataplane.interfaces", "{e}");
    let e = parse("[dataplane]\ninterfaces = []\n").unwrap_err();
    assert_eq!(key_of(&e), "dataplane.interfaces", "{e}");
    let e = parse("[dataplane]\ninterfaces = [\"a-very-long-interface-name\"]\n").unwrap_err();
    assert_eq!(key_of(&e), "dataplane.interfaces", "{e}");
    let e = parse(&format!("{BASE}pin_dir = \"rel\"\n")).unwrap_err();
    assert_eq!(key_of(&e), "dataplane.pin_dir", "{e}");
    let e = parse("").unwrap_err();
    assert!(e.to_string().contains("dataplane"), "{e}");

    let svc = |frontend: &str, backend: &str| {
        parse(&format!(
            "{BASE}[[frontend]]\nname = \"f\"\n{frontend}\n[[backend]]\nname = \"b\"\n{backend}\n"
        ))
        .unwrap_err()
    };
    let ok_server = "[[backend.server]]\nname = \"s\"\naddress = \"198.18.1.10\"";
    let cases: &[(&str, &str, &str)] = &[
        (
            "bind = \"198.18.2.1\"\ndefault_backend = \"b\"",
            ok_server,
            "frontend[0].bind",
        ),
        (
            "bind = \"198.18.2.1:0\"\ndefault_backend = \"b\"",
            ok_server,
            "frontend[0].bind",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"nope\"",
            ok_server,
            "frontend[0].default_backend",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"\nmode = \"tcp\"",
            ok_server,
            "frontend[0].mode",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"\nproto = \"sctp\"",
            ok_server,
            "frontend[0].proto",
        ),
        (
            "bind = \"[2001:db8::1]:80\"\ndefault_backend = \"b\"",
            ok_server,
            "frontend[0].default_backend",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "forward = \"nat\"",
            "backend[0].forward",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "stick_table = { size = \"1q\" }",
            "backend[0].stick_table.size",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "stick_table = { size = \"17m\" }",
            "backend[0].stick_table.size",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "stick_table = { expire = \"3 weeks\" }",
            "backend[0].stick_table.expire",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "stick_table = { type = \"string\" }",
            "backend[0].stick_table.type",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "[[backend.server]]\nname = \"s\"\naddress = \"nowhere\"",
            "backend[0].server[0].address",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "[[backend.server]]\nname = \"s\"\naddress = \"198.18.1.1\"\nweight = 1000",
            "backend[0].server[0].weight",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "[[backend.server]]\nname = \"s\"\naddress = \"198.18.1.1\"\nstate = \"sleepy\"",
            "backend[0].server[0].state",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "[[backend.server]]\nname = \"s\"\naddress = \"198.18.1.1\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.1.2\"",
            "backend[0].server[1].name",
        ),
    ];
    let more: &[(&str, &str, &str)] = &[
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "check_type = \"icmp\"",
            "backend[0].check_type",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "check_type = \"http\"\ncheck_path = \"no-slash\"",
            "backend[0].check_path",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "check_port = 0",
            "backend[0].check_port",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "check_timeout = \"1ms\"",
            "backend[0].check_timeout",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "[[backend.server]]\nname = \"s\"\naddress = \"198.18.1.1\"\ncheck = true\ninter = \"10ms\"",
            "backend[0].server[0].inter",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "[[backend.server]]\nname = \"s\"\naddress = \"198.18.1.1\"\nrise = 0",
            "backend[0].server[0].rise",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "[[backend.server]]\nname = \"s\"\naddress = \"198.18.1.1\"\nfall = 1000",
            "backend[0].server[0].fall",
        ),
        (
            "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
            "[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1\"",
            "backend[0].server[0].address",
        ),
    ];
    for (frontend, backend, key) in cases.iter().chain(more) {
        let e = svc(frontend, backend);
        assert_eq!(key_of(&e), *key, "{frontend} / {backend}: {e}");
        // ... and the line: the offending value's, or its table's.
        let ConfigError::Invalid { line, .. } = e else {
            unreachable!()
        };
        assert!(line >= 3, "{frontend} / {backend}: no line in {e}");
    }
    // A server without an address is a parse error at its line.
    let e = svc(
        "bind = \"198.18.2.1:80\"\ndefault_backend = \"b\"",
        "[[backend.server]]\nname = \"s\"",
    );
    assert!(e.to_string().contains("missing field `address`"), "{e}");
}

#[test]
fn every_example_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1, "no examples in {}", dir.display());
}

/// (config text after BASE, key, line of the error).
const LOCATED: &[(&str, &str, usize)] = &[
    ("[metrics]\nbind = \"localhost\"\n", "metrics.bind", 4),
    (
        "[metrics]\nbind = \"127.0.0.1:9100\"\ntable_count_interval = \"10ms\"\n",
        "metrics.table_count_interval",
        5,
    ),
    (
        "[[frontend]]\nname = \"f\"\nbind = \"198.18.2.1:80\"\ndefault_backend = \"b\"\n\
         [[frontend]]\nname = \"g\"\nbind = \"198.18.2.1:80\"\ndefault_backend = \"b\"\n\
         [[backend]]\nname = \"b\"\n",
        "frontend[1].bind",
        9,
    ),
    (
        "[[backend]]\nname = \"b\"\n[[backend]]\nname = \"b\"\n",
        "backend[1].name",
        6,
    ),
    (
        "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.1.1\"\n\
         [[backend.server]]\nname = \"s\"\naddress = \"198.18.1.2\"\n",
        "backend[0].server[1].name",
        9,
    ),
];

#[test]
fn validation_errors_name_line_and_key() {
    for (text, key, line) in LOCATED {
        let e = parse(&format!("{BASE}{text}")).unwrap_err();
        assert_eq!(key_of(&e), *key, "{text}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("t.toml:{line}: {key}: ")),
            "{text}: want line {line}: {e}"
        );
    }
    // Names longer than the id map holds.
    let long = "x".repeat(97);
    let e = parse(&format!(
        "{BASE}[[frontend]]\nname = \"{long}\"\nbind = \"198.18.2.1:80\"\ndefault_backend = \"b\"\n\
         [[backend]]\nname = \"b\"\n"
    ))
    .unwrap_err();
    assert_eq!(key_of(&e), "frontend[0].name", "{e}");
    let e = parse(&format!(
        "{BASE}[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"{}\"\naddress = \"198.18.1.1\"\n",
        "y".repeat(95)
    ))
    .unwrap_err();
    assert_eq!(key_of(&e), "backend[0].server[0].name", "{e}");
    // HTTP-only settings on this L4 build: unknown keys, at their line.
    let e = parse(&format!(
        "{BASE}[[backend]]\nname = \"b\"\ncookie = \"SERVER insert indirect nocache\"\n"
    ))
    .unwrap_err();
    assert!(
        e.to_string().starts_with("t.toml:5:") && e.to_string().contains("cookie"),
        "{e}"
    );
}

#[test]
fn files_that_are_not_configs_are_refused_clearly() {
    let dir = std::env::temp_dir().join(format!("blb-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let check = |name: &str, bytes: Option<&[u8]>, want: &str| {
        let p = dir.join(name);
        if let Some(b) = bytes {
            std::fs::write(&p, b).unwrap();
        }
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains(want), "{name}: {e}");
        assert!(
            e.contains(name),
            "{name}: error does not name the file: {e}"
        );
    };
    // A directory.
    std::fs::create_dir_all(dir.join("adir")).unwrap();
    check("adir", None, "not a regular file");
    // Binary.
    let bin: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    check("binary.toml", Some(&bin), "valid UTF-8");
    // Huge.
    let huge = vec![b'#'; MAX_CONFIG_BYTES as usize + 1];
    check("huge.toml", Some(&huge), "more than");
    // Half-written: cut in the middle of a table.
    let full =
        format!("{BASE}[[backend]]\nname = \"b\"\nstick_table = {{ size = \"1m\", expire = ");
    check("half.toml", Some(full.as_bytes()), "half.toml:5:");
    // Missing.
    check("missing.toml", None, "cannot read config");
    std::fs::remove_dir_all(&dir).unwrap();
}

const RESOLVERS: &str = "[resolvers.mydns]\nnameservers = [\"127.0.0.1:5353\"]\n";

#[test]
fn server_template_and_resolvers() {
    let c = parse(&format!(
        "{BASE}{RESOLVERS}refresh = \"500ms\"\n\
         [[frontend]]\nname = \"f\"\nmode = \"http\"\nbind = \"127.0.0.1:8080\"\ndefault_backend = \"b\"\n\
         [[backend]]\nname = \"b\"\n\
         server_template = {{ prefix = \"web\", count = 3, fqdn = \"svc.example.local.\", resolvers = \"mydns\", init_addr = \"libc,none\" }}\n"
    ))
    .unwrap();
    let r = &c.resolvers[0];
    assert_eq!(r.nameservers, ["127.0.0.1:5353".parse().unwrap()]);
    assert_eq!(
        (r.refresh, r.timeout, r.retries, r.accepted_payload_size),
        (Duration::from_millis(500), Duration::from_secs(1), 3, 512)
    );
    let t = c.backends[0].template.as_ref().unwrap();
    assert_eq!(t.slot_names().collect::<Vec<_>>(), ["web1", "web2", "web3"]);
    assert_eq!(t.fqdn, "svc.example.local");
    // HTTP: the frontend's port by default.
    assert_eq!(t.port, Some(8080));
    assert_eq!(t.init_addr, [InitAddr::Libc, InitAddr::None]);
    assert!(!t.srv);
    // SRV names give their own ports.
    let c = parse(&format!(
        "{BASE}{RESOLVERS}[[frontend]]\nname = \"f\"\nmode = \"http\"\nbind = \"127.0.0.1:8080\"\n\
         default_backend = \"b\"\n[[backend]]\nname = \"b\"\n\
         server_template = {{ prefix = \"s\", count = 2, fqdn = \"_http._tcp.svc.example.local\", resolvers = \"mydns\" }}\n"
    ))
    .unwrap();
    let t = c.backends[0].template.as_ref().unwrap();
    assert!(t.srv && t.port.is_none());
    assert_eq!(
        t.init_addr,
        [InitAddr::Last, InitAddr::Libc, InitAddr::None]
    );
}

#[test]
fn a_stick_table_on_an_http_backend_is_refused_not_ignored() {
    let e = parse(&format!(
        "{BASE}[[frontend]]\nname = \"f\"\nmode = \"http\"\nbind = \"127.0.0.1:8080\"\n\
         default_backend = \"b\"\n[[backend]]\nname = \"b\"\n\
         stick_table = {{ size = \"1m\" }}\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("backend[0].stick_table") && e.contains("no effect"),
        "{e}"
    );
    let line = BASE.lines().count() + 8;
    assert!(e.contains(&format!(":{line}")), "line {line}: {e}");
}

/// An http frontend on `bind` and its backend `b` with `backend` keys.
fn http_stick(bind: &str, backend: &str) -> String {
    format!(
        "{BASE}[[frontend]]\nname = \"f\"\nmode = \"http\"\nbind = \"{bind}\"\n\
         default_backend = \"b\"\n[[backend]]\nname = \"b\"\n{backend}\n\
         [[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:9000\"\n"
    )
}

#[test]
fn http_stick_rules_are_parsed() {
    let table = "stick_table = { type = \"ip\", size = \"1k\", expire = \"2s\" }";
    for (rules, matches, stores) in [
        ("stick = \"on src\"", true, true),
        ("stick = \"match src\"", true, false),
        ("stick = \"store-request  src\"", false, true),
        ("stick = [\"match src\", \"store-request src\"]", true, true),
    ] {
        let c = parse(&http_stick("127.0.0.1:8080", &format!("{table}\n{rules}"))).unwrap();
        let b = &c.backends[0];
        let s = b.http.as_ref().unwrap().stick;
        assert_eq!((s.matches, s.stores), (matches, stores), "{rules}");
        assert_eq!(b.expire, std::time::Duration::from_secs(2));
        assert!(!b.stick_ipv6);
    }
    // The table's type follows the bind's family unless given.
    let c = parse(&http_stick(
        "[::1]:8080",
        "stick_table = { key_mask_v6 = 64 }\nstick = \"on src\"",
    ))
    .unwrap();
    assert!(c.backends[0].stick_ipv6);
    assert_eq!(c.backends[0].key_mask.v6, 64);
}

#[test]
fn http_stick_rules_that_would_do_nothing_or_something_else_are_refused() {
    let table = "stick_table = { size = \"1k\" }";
    let cases: &[(&str, &str, &str)] = &[
        (
            "stick = \"on src\"",
            "backend[0].stick",
            "needs a stick_table",
        ),
        (
            &format!("{table}\nstick = \"on hdr(x)\""),
            "backend[0].stick",
            "only `src`",
        ),
        (
            &format!("{table}\nstick = \"on src if TRUE\""),
            "backend[0].stick",
            "conditions",
        ),
        (
            &format!("{table}\nstick = \"on src table t\""),
            "backend[0].stick",
            "own stick_table",
        ),
        (
            &format!("{table}\nstick = \"store-response src\""),
            "backend[0].stick",
            "store-response",
        ),
        (
            &format!("{table}\nstick = [\"on src\", \"match src\"]"),
            "backend[0].stick[1]",
            "no effect",
        ),
        (
            &format!("{table}\nstick = []"),
            "backend[0].stick",
            "no effect",
        ),
        (
            "stick_table = { type = \"ip\", key_mask_v6 = 64 }\nstick = \"on src\"",
            "backend[0].stick_table.key_mask_v6",
            "no effect",
        ),
        (
            "stick_table = { key_mask_v4 = 33 }\nstick = \"on src\"",
            "backend[0].stick_table.key_mask_v4",
            "1 to 32",
        ),
    ];
    for (keys, key, why) in cases {
        let e = parse(&http_stick("127.0.0.1:8080", keys))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(" {key}: ")) && e.contains(why),
            "{keys}: {e}"
        );
    }
    // On an IPv6-only bind, an IPv4 mask has no effect.
    let e = parse(&http_stick(
        "[2001:db8::1]:8080",
        "stick_table = { type = \"ipv6\", key_mask_v4 = 24 }\nstick = \"on src\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("key_mask_v4") && e.contains("no effect"), "{e}");
    // `stick` is an http key: refused on an l4 backend.
    let e = parse(&format!(
        "{BASE}[[frontend]]\nname = \"f\"\nbind = \"198.18.2.100:80\"\ndefault_backend = \"b\"\n\
         [[backend]]\nname = \"b\"\nstick = \"on src\"\n\
         [[backend.server]]\nname = \"s\"\naddress = \"198.18.1.10\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("backend[0].stick:"), "{e}");
}

#[test]
fn l4_stick_table_keys_of_the_other_family_are_refused() {
    let l4 = |bind: &str, table: &str| {
        format!(
            "{BASE}[[frontend]]\nname = \"f\"\nbind = \"{bind}\"\ndefault_backend = \"b\"\n\
             [[backend]]\nname = \"b\"\nstick_table = {{ {table} }}\n\
             [[backend.server]]\nname = \"s\"\naddress = \"198.18.1.10\"\n"
        )
    };
    let c = parse(&l4("198.18.2.100:80", "key_mask_v4 = 24")).unwrap();
    assert_eq!(c.backends[0].key_mask.prefix_for(true), 24);
    for (table, key) in [
        ("key_mask_v6 = 64", "key_mask_v6"),
        ("type = \"ipv6\"", "type"),
    ] {
        let e = parse(&l4("198.18.2.100:80", table))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("backend[0].stick_table.{key}:")), "{e}");
    }
}

#[test]
fn template_errors_name_line_and_key() {
    let front = "[[frontend]]\nname = \"f\"\nmode = \"http\"\nbind = \"127.0.0.1:8080\"\ndefault_backend = \"b\"\n";
    // (template fields, key); the template is on line 12.
    let cases: &[(&str, &str)] = &[
        (
            "prefix = \"w\", count = 0, fqdn = \"a.b\", resolvers = \"mydns\"",
            "count",
        ),
        (
            "prefix = \"w\", count = 1025, fqdn = \"a.b\", resolvers = \"mydns\"",
            "count",
        ),
        (
            "prefix = \"w\", count = 2, fqdn = \"a.b\", resolvers = \"other\"",
            "resolvers",
        ),
        (
            "prefix = \"w\", count = 2, fqdn = \"198.18.1.1\", resolvers = \"mydns\"",
            "fqdn",
        ),
        (
            "prefix = \"w\", count = 2, fqdn = \"not a name\", resolvers = \"mydns\"",
            "fqdn",
        ),
        (
            "prefix = \"w\", count = 2, fqdn = \"a.b\", resolvers = \"mydns\", init_addr = \"dns\"",
            "init_addr",
        ),
        (
            "prefix = \"w/\", count = 2, fqdn = \"a.b\", resolvers = \"mydns\"",
            "prefix",
        ),
        (
            "prefix = \"s\", count = 2, fqdn = \"a.b\", resolvers = \"mydns\"",
            "prefix",
        ),
        (
            "prefix = \"w\", count = 2, fqdn = \"_x._tcp.a.b\", port = 80, resolvers = \"mydns\"",
            "port",
        ),
        (
            "prefix = \"w\", count = 2, fqdn = \"a.b\", resolvers = \"mydns\", weight = 300",
            "weight",
        ),
        (
            "prefix = \"w\", count = 2, fqdn = \"a.b\", resolvers = \"mydns\", resolve_prefer = \"ipv5\"",
            "resolve_prefer",
        ),
    ];
    for (fields, k) in cases {
        let text = format!(
            "{BASE}{RESOLVERS}{front}[[backend]]\nname = \"b\"\nserver_template = {{ {fields} }}\n\
             [[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:81\"\n"
        );
        let e = parse(&text).unwrap_err();
        let key = format!("backend[0].server_template.{k}");
        assert_eq!(key_of(&e), key, "{fields}: {e}");
        assert!(
            e.to_string().starts_with(&format!("t.toml:12: {key}: ")),
            "{fields}: want line 12: {e}"
        );
    }
    // The template's slots count towards the servers limit.
    let text = format!(
        "{BASE}{RESOLVERS}{front}[[backend]]\nname = \"b\"\n\
         server_template = {{ prefix = \"w\", count = 1024, fqdn = \"a.b\", resolvers = \"mydns\" }}\n\
         [[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:81\"\n"
    );
    assert!(
        parse(&text)
            .unwrap_err()
            .to_string()
            .contains("at most 1024 servers")
    );
    // Resolvers sections.
    for (section, key, line) in [
        (
            "[resolvers.r]\nnameservers = []\n",
            "resolvers.r.nameservers",
            4,
        ),
        (
            "[resolvers.r]\nnameservers = [\"dns.example\"]\n",
            "resolvers.r.nameservers[0]",
            4,
        ),
        (
            "[resolvers.r]\nnameservers = [\"127.0.0.1:53\"]\nretries = 0\n",
            "resolvers.r.retries",
            5,
        ),
        (
            "[resolvers.r]\nnameservers = [\"127.0.0.1:53\"]\nrefresh = \"1ms\"\n",
            "resolvers.r.refresh",
            5,
        ),
        (
            "[resolvers.r]\nnameservers = [\"127.0.0.1:53\"]\naccepted_payload_size = 100\n",
            "resolvers.r.accepted_payload_size",
            5,
        ),
    ] {
        let e = parse(&format!("{BASE}{section}")).unwrap_err();
        assert_eq!(key_of(&e), key, "{section}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("t.toml:{line}: {key}: ")),
            "{section}: {e}"
        );
    }
    // An L4 template takes no port.
    let e = parse(&format!(
        "{BASE}{RESOLVERS}[[frontend]]\nname = \"f\"\nbind = \"198.18.2.1:80\"\ndefault_backend = \"b\"\n\
         [[backend]]\nname = \"b\"\n\
         server_template = {{ prefix = \"w\", count = 2, fqdn = \"a.b\", port = 80, resolvers = \"mydns\" }}\n"
    ))
    .unwrap_err();
    assert_eq!(key_of(&e), "backend[0].server_template.port", "{e}");
    // Nor a preferred family: its VIP's decides.
    let e = parse(&format!(
        "{BASE}{RESOLVERS}[[frontend]]\nname = \"f\"\nbind = \"198.18.2.1:80\"\ndefault_backend = \"b\"\n\
         [[backend]]\nname = \"b\"\n\
         server_template = {{ prefix = \"w\", count = 2, fqdn = \"a.b\", resolvers = \"mydns\", resolve_prefer = \"ipv4\" }}\n"
    ))
    .unwrap_err();
    assert_eq!(
        key_of(&e),
        "backend[0].server_template.resolve_prefer",
        "{e}"
    );
}

/// An http frontend with `frontend` keys in front of one server.
fn http_front(frontend: &str) -> String {
    format!(
        "{BASE}[[frontend]]\nname = \"f\"\nmode = \"http\"\nbind = \"127.0.0.1:8443\"\n\
         default_backend = \"b\"\n{frontend}\n[[backend]]\nname = \"b\"\n\
         [[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:9000\"\n"
    )
}

#[test]
fn tls_settings_are_parsed_with_haproxy_names_and_defaults() {
    let c = parse(&http_front("tls = { crt = \"certs/\" }")).unwrap();
    let t = c.frontends[0].tls.as_ref().unwrap();
    // Relative to the configuration file's directory.
    assert_eq!(t.crt, vec![Path::new("certs/").to_path_buf()]);
    assert_eq!(t.alpn, ["h2", "http/1.1"]);
    assert_eq!(
        (t.min_version, t.max_version),
        (TlsVersion::Tls12, TlsVersion::Tls13)
    );
    assert_eq!(
        (t.tls12_suites.as_ref(), t.tls13_suites.as_ref()),
        (None, None)
    );
    assert!(!c.frontends[0].forwarded_proto);
    let c = parse(&http_front(
        "forwarded_proto = true\n[frontend.tls]\ncrt = [\"/a.pem\", \"b.pem\"]\nalpn = [\"http/1.1\"]\n\
         ssl_min_ver = \"TLSv1.2\"\nssl_max_ver = \"TLSv1.2\"\n\
         ciphers = \"ECDHE-ECDSA-AES128-GCM-SHA256:TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\"",
    ))
    .unwrap();
    let t = c.frontends[0].tls.as_ref().unwrap();
    assert_eq!(t.crt.len(), 2);
    assert_eq!(t.crt[0], Path::new("/a.pem"));
    assert_eq!(t.alpn, ["http/1.1"]);
    assert_eq!(t.max_version, TlsVersion::Tls12);
    assert_eq!(
        t.tls12_suites.as_deref(),
        Some(
            &[
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
            ][..]
        )
    );
    assert!(c.frontends[0].forwarded_proto);
}

#[test]
fn tls_settings_that_cannot_work_are_refused() {
    for (tls, key, reason) in [
        ("tls = {}", "frontend[0].tls.crt", "required"),
        ("tls = { crt = [] }", "frontend[0].tls.crt", "empty"),
        ("tls = { crt = \"\" }", "frontend[0].tls.crt", "empty path"),
        (
            "tls = { crt = \"a\", alpn = [\"spdy/3\"] }",
            "frontend[0].tls.alpn",
            "want h2",
        ),
        (
            "tls = { crt = \"a\", alpn = [] }",
            "frontend[0].tls.alpn",
            "empty",
        ),
        (
            "tls = { crt = \"a\", alpn = [\"h2\", \"h2\"] }",
            "frontend[0].tls.alpn",
            "twice",
        ),
        (
            "tls = { crt = \"a\", ssl_min_ver = \"TLSv1.0\" }",
            "frontend[0].tls.ssl_min_ver",
            "RFC 8996",
        ),
        (
            "tls = { crt = \"a\", ssl_min_ver = \"1.2\" }",
            "frontend[0].tls.ssl_min_ver",
            "want TLSv1.2",
        ),
        (
            "tls = { crt = \"a\", ssl_min_ver = \"TLSv1.3\", ssl_max_ver = \"TLSv1.2\" }",
            "frontend[0].tls.ssl_min_ver",
            "above",
        ),
        (
            "tls = { crt = \"a\", ciphers = \"RC4-MD5\" }",
            "frontend[0].tls.ciphers",
            "not a suite",
        ),
        (
            "tls = { crt = \"a\", ciphers = \"HIGH:!aNULL\" }",
            "frontend[0].tls.ciphers",
            "one by one",
        ),
        (
            "tls = { crt = \"a\", ssl_min_ver = \"TLSv1.3\", ciphers = \"ECDHE-RSA-AES128-GCM-SHA256\" }",
            "frontend[0].tls.ciphers",
            "never be used",
        ),
        (
            "tls = { crt = \"a\", ssl_max_ver = \"TLSv1.2\", ciphersuites = \"TLS_AES_128_GCM_SHA256\" }",
            "frontend[0].tls.ciphersuites",
            "never be used",
        ),
        (
            "tls = { crt = \"a\", ciphersuites = \"\" }",
            "frontend[0].tls.ciphersuites",
            "empty list",
        ),
        (
            "tls = { crt = \"a\", verify = \"none\" }",
            "",
            "unknown field",
        ),
    ] {
        let e = parse(&http_front(tls)).unwrap_err();
        if !key.is_empty() {
            assert_eq!(key_of(&e), key, "{tls}: {e}");
        }
        assert!(e.to_string().contains(reason), "{tls}: {e}");
    }
    // Not on the XDP path.
    let l4 = format!(
        "{BASE}[[frontend]]\nname = \"f\"\nbind = \"198.18.0.1:443\"\ndefault_backend = \"b\"\n\
         tls = {{ crt = \"a\" }}\n[[backend]]\nname = \"b\"\n\
         [[backend.server]]\nname = \"s\"\naddress = \"198.18.1.1:443\"\n"
    );
    let e = parse(&l4).unwrap_err();
    assert_eq!(key_of(&e), "frontend[0].tls", "{e}");
    let e = parse(&l4.replace("tls = { crt = \"a\" }", "forwarded_proto = true")).unwrap_err();
    assert_eq!(key_of(&e), "frontend[0].forwarded_proto", "{e}");
}

#[test]
fn backend_ssl_to_servers() {
    let backend = |ssl: &str| {
        format!(
            "{BASE}[[frontend]]\nname = \"f\"\nmode = \"http\"\nbind = \"127.0.0.1:8080\"\n\
             default_backend = \"b\"\n[[backend]]\nname = \"b\"\n{ssl}\n\
             [[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:9443\"\n"
        )
    };
    let c = parse(&backend(
        "ssl = { ca_file = \"ca.pem\", sni = \"app.test\" }",
    ))
    .unwrap();
    let s = c.backends[0].http.as_ref().unwrap().ssl.as_ref().unwrap();
    assert!(s.verify);
    assert_eq!(s.ca_file.as_deref(), Some(Path::new("ca.pem")));
    assert_eq!(s.sni.as_deref(), Some("app.test"));
    let c = parse(&backend("ssl = { verify = \"none\" }")).unwrap();
    assert!(
        !c.backends[0]
            .http
            .as_ref()
            .unwrap()
            .ssl
            .as_ref()
            .unwrap()
            .verify
    );
    for (ssl, key, reason) in [
        ("ssl = {}", "backend[0].ssl.ca_file", "needs the CA"),
        (
            "ssl = { verify = \"none\", ca_file = \"a\" }",
            "backend[0].ssl.ca_file",
            "no effect",
        ),
        (
            "ssl = { verify = \"maybe\" }",
            "backend[0].ssl.verify",
            "want",
        ),
        (
            "ssl = { verify = \"none\", sni = \"a b\" }",
            "backend[0].ssl.sni",
            "DNS name",
        ),
    ] {
        let e = parse(&backend(ssl)).unwrap_err();
        assert_eq!(key_of(&e), key, "{ssl}: {e}");
        assert!(e.to_string().contains(reason), "{ssl}: {e}");
    }
    // Not on an L4 backend.
    let l4 = format!(
        "{BASE}[[frontend]]\nname = \"f\"\nbind = \"198.18.0.1:443\"\ndefault_backend = \"b\"\n\
         [[backend]]\nname = \"b\"\nssl = {{ verify = \"none\" }}\n\
         [[backend.server]]\nname = \"s\"\naddress = \"198.18.1.1\"\n"
    );
    assert!(parse(&l4).is_err());
}

#[test]
fn redirect_to_https() {
    let c = parse(&http_front("redirect = { scheme = \"https\", code = 301 }")).unwrap();
    assert_eq!(c.frontends[0].redirect_https, Some(301));
    let c = parse(&http_front("redirect = { scheme = \"https\" }")).unwrap();
    assert_eq!(c.frontends[0].redirect_https, Some(302));
    for (redirect, key, reason) in [
        (
            "redirect = { scheme = \"http\" }",
            "frontend[0].redirect.scheme",
            "only",
        ),
        (
            "redirect = { scheme = \"https\", code = 200 }",
            "frontend[0].redirect.code",
            "want 301",
        ),
        (
            "redirect = { scheme = \"https\" }\ntls = { crt = \"a.pem\" }",
            "frontend[0].redirect",
            "already use https",
        ),
    ] {
        let e = parse(&http_front(redirect)).unwrap_err();
        assert_eq!(key_of(&e), key, "{redirect}: {e}");
        assert!(e.to_string().contains(reason), "{redirect}: {e}");
    }
}

/// `n` HTTP frontends, each with its own backend and `backend_extra`.
fn http_services(n: usize, backend_extra: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[frontend]]\nname = \"f{i}\"\nmode = \"http\"\nbind = \"127.0.0.1:{}\"\n\
                 default_backend = \"b{i}\"\n[[backend]]\nname = \"b{i}\"\n{backend_extra}\
                 [[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:8080\"\n",
                20000 + i
            )
        })
        .collect()
}

#[test]
fn http_backends_reserve_stick_entries_only_with_stick_rules() {
    // 17 HTTP backends without stick rules: no table, nothing reserved
    // (each counted its default 1m before, so 17 went over the 16m cap).
    let plain = parse(&http_services(17, "")).unwrap();
    assert_eq!(stick_size_total(&plain.frontends, &plain.backends), 0);
    assert!(!plain.needs_kernel(), "no [dataplane] section, HTTP only");
    // With stick rules, each reserves its size: over the kernel table's
    // cap only where the kernel holds them (pin_dir set).
    let rules = "stick_table = { type = \"ip\", size = \"1m\" }\nstick = \"on src\"\n";
    let sticky = parse(&http_services(17, rules)).unwrap();
    assert_eq!(
        stick_size_total(&sticky.frontends, &sticky.backends),
        17 * sticky.backends[0].stick_size
    );
    assert!(!sticky.needs_kernel());
    let pinned = format!(
        "[dataplane]\npin_dir = \"/sys/fs/bpf/t\"\n{}",
        http_services(17, rules)
    );
    let e = parse(&pinned).unwrap_err();
    assert!(e.to_string().contains("kernel table"), "{e}");
    let one = parse(&format!(
        "[dataplane]\npin_dir = \"/sys/fs/bpf/t\"\n{}",
        http_services(1, rules)
    ))
    .unwrap();
    assert!(
        one.needs_kernel(),
        "pin_dir keeps the tables in a pinned map"
    );
    assert!(parse(BASE).unwrap().needs_kernel(), "an XDP interface");
    // [peers] replicates the tables in memory: no kernel, no cap.
    let replicated = format!(
        "[peers.lb]\nlocal = \"a\"\nsecret = \"sixteen bytes or more\"\n\
         [peers.lb.peer]\na = \"127.0.0.1:1\"\nb = \"127.0.0.1:2\"\n{}",
        http_services(
            17,
            "stick_table = { type = \"ip\", size = \"1m\", peers = \"lb\" }\nstick = \"on src\"\n"
        )
    );
    let c = parse(&replicated).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.needs_kernel());
}

/// `accept_proxy` with `accept_proxy_from`, and `send_proxy`: accepted on
/// HTTP frontends and backends; refused, at their line, without the
/// sources, with bad networks or versions, or on the XDP path.
#[test]
fn proxy_protocol_keys() {
    let http = |fe: &str, be: &str, mode: &str| {
        format!(
            "{BASE}[[frontend]]\nname = \"f\"\nmode = \"{mode}\"\nbind = \"198.18.2.100:80\"\n\
             default_backend = \"b\"\n{fe}[[backend]]\nname = \"b\"\n{be}\
             [[backend.server]]\nname = \"s\"\naddress = \"198.18.1.10:80\"\n"
        )
    };
    let c = parse(&http(
        "accept_proxy = true\naccept_proxy_from = [\"127.0.0.0/8\", \"2001:db8::/32\"]\n",
        "send_proxy = \"v2\"\n",
        "http",
    ))
    .unwrap();
    let a = c.frontends[0].http.accept_proxy.as_ref().unwrap();
    assert!(a.allows("127.0.0.2".parse().unwrap()) && a.allows("2001:db8::1".parse().unwrap()));
    assert!(!a.allows("198.18.0.1".parse().unwrap()));
    let sp = c.backends[0].http.as_ref().unwrap().send_proxy;
    assert_eq!(sp, Some(SendProxy::V2));
    // Line 8 is the frontend's first extra line; without one, the
    // backend's is line 10.
    for (fe, be, mode, key, line) in [
        (
            "accept_proxy = true\n",
            "",
            "http",
            "frontend[0].accept_proxy",
            8,
        ),
        (
            "accept_proxy_from = [\"127.0.0.1\"]\n",
            "",
            "http",
            "frontend[0].accept_proxy_from",
            8,
        ),
        (
            "accept_proxy = true\naccept_proxy_from = [\"198.19.0.0/15\"]\n",
            "",
            "http",
            "frontend[0].accept_proxy_from",
            9,
        ),
        (
            "accept_proxy = true\naccept_proxy_from = [\"x\"]\n",
            "",
            "http",
            "frontend[0].accept_proxy_from",
            9,
        ),
        (
            "accept_proxy = true\naccept_proxy_from = [\"127.0.0.1\"]\n",
            "",
            "l4",
            "frontend[0].accept_proxy",
            8,
        ),
        (
            "",
            "send_proxy = \"v3\"\n",
            "http",
            "backend[0].send_proxy",
            10,
        ),
        (
            "",
            "send_proxy = \"v1\"\n",
            "l4",
            "backend[0].send_proxy",
            10,
        ),
    ] {
        let e = parse(&http(fe, be, mode)).unwrap_err();
        assert_eq!(key_of(&e), key, "{fe}{be}: {e}");
        assert!(
            e.to_string().starts_with(&format!("t.toml:{line}:")),
            "{fe}{be}: want line {line}: {e}"
        );
    }
}

#[test]
fn a_bare_number_where_a_string_is_wanted_says_what_to_write() {
    let base = "[[frontend]]\nname = \"web\"\nbind = \"198.18.2.100:80\"\ndefault_backend = \"app\"\n\n\
                [[backend]]\nname = \"app\"\n";
    for (extra, want) in [
        (
            "[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1\"\ninter = 2\n",
            "inter is a duration: a string with its unit, e.g. \"2s\"",
        ),
        (
            "stick_table = { size = 1000 }\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1\"\n",
            "size is a string: \"1000\"",
        ),
    ] {
        let text = format!("{base}{extra}");
        let e = Config::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
        assert!(e.contains("expected a string"), "{e}");
    }
}

#[test]
fn an_l4_wildcard_bind_says_the_wildcard_is_the_problem() {
    let text = "[[frontend]]\nname = \"web\"\nbind = \"0.0.0.0:80\"\ndefault_backend = \"app\"\n\n\
                [[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1\"\n";
    let e = Config::parse(Path::new("t.toml"), text)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.toml:3: frontend[0].bind: 0.0.0.0:80: a wildcard address"),
        "{e}"
    );
    assert!(!e.contains("and a port"), "{e}");
}
