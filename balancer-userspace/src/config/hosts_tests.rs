//! Host names in server addresses, looked up by an injected resolver
//! (never the system's: no query leaves the machine).

use std::net::IpAddr;

use super::*;

/// `app.lab` and `v6.lab` resolve; every other name fails as getaddrinfo
/// says it.
fn lab_dns(host: &str) -> Result<Vec<IpAddr>, String> {
    match host {
        "app.lab" => Ok(vec![
            "198.18.0.10".parse().unwrap(),
            "198.18.0.11".parse().unwrap(),
        ]),
        "v6.lab" => Ok(vec![
            "2001:db8::10".parse().unwrap(),
            "198.18.0.12".parse().unwrap(),
        ]),
        _ => Err("Name or service not known".into()),
    }
}

fn with(text: &str, last: Option<&Config>) -> Result<Config, ConfigError> {
    let lookup = Lookup {
        resolve: &lab_dns,
        last,
    };
    Config::parse_with(Path::new("t.toml"), text, &lookup)
}

/// An HTTP frontend and one server with `server` lines (`address = ...`).
fn http(server: &str) -> String {
    format!(
        "[[frontend]]\nname = \"www\"\nmode = \"http\"\nbind = \"198.18.2.1:80\"\n\
         default_backend = \"app\"\n\n[[backend]]\nname = \"app\"\n\n\
         [[backend.server]]\nname = \"web1\"\n{server}"
    )
}

fn server(c: &Config) -> &Server {
    &c.backends[0].servers[0]
}

fn invalid(e: &ConfigError) -> (usize, &str, &str) {
    match e {
        ConfigError::Invalid {
            line, key, reason, ..
        } => (*line, key, reason),
        _ => panic!("not an Invalid: {e}"),
    }
}

#[test]
fn a_host_name_is_resolved_its_port_kept_the_first_address_taken() {
    let c = with(&http("address = \"app.lab:8080\"\n"), None).unwrap();
    let s = server(&c);
    assert_eq!(s.address, "198.18.0.10".parse::<IpAddr>().unwrap());
    assert_eq!(s.port, Some(8080));
    assert_eq!(s.host.as_deref(), Some("app.lab"));
    // IPv6 first: taken, and written bracketed with its port.
    let c = with(&http("address = \"v6.lab:8443\"\n"), None).unwrap();
    let s = server(&c);
    assert_eq!(
        std::net::SocketAddr::new(s.address, s.port.unwrap()).to_string(),
        "[2001:db8::10]:8443"
    );
    // An IP address is no name.
    let c = with(&http("address = \"198.18.0.5:80\"\n"), None).unwrap();
    assert_eq!(server(&c).host, None);
    // An L4 server: a name without a port.
    let l4 = "[dataplane]\ninterfaces = [\"eth0\"]\n[[frontend]]\nname = \"f\"\n\
              bind = \"198.18.2.100:80\"\ndefault_backend = \"b\"\n[[backend]]\nname = \"b\"\n\
              [[backend.server]]\nname = \"s\"\naddress = \"app.lab\"\n";
    let c = with(l4, None).unwrap();
    assert_eq!(
        (server(&c).address, server(&c).port),
        ("198.18.0.10".parse().unwrap(), None)
    );
}

#[test]
fn parse_looks_nothing_up() {
    // The pure parse (fuzz targets) refuses names: no resolver is called.
    let e =
        Config::parse(Path::new("t.toml"), &http("address = \"localhost:8080\"\n")).unwrap_err();
    let (line, key, reason) = invalid(&e);
    assert_eq!((line, key), (12, "backend[0].server[0].address"), "{e}");
    assert!(reason.contains("Config::parse looks no name up"), "{e}");
}

#[test]
fn init_addr_methods_in_order() {
    let text = |init: &str| {
        http(&format!(
            "address = \"nope.lab:80\"\ninit_addr = \"{init}\"\n"
        ))
    };
    // libc fails: the IP address after it.
    let c = with(&text("libc,198.18.0.9"), None).unwrap();
    assert_eq!(server(&c).address, "198.18.0.9".parse::<IpAddr>().unwrap());
    assert_eq!(server(&c).port, Some(80));
    // An address before libc: libc is not asked.
    let c = with(
        &http("address = \"app.lab:80\"\ninit_addr = \"198.18.0.8,libc\"\n"),
        None,
    )
    .unwrap();
    assert_eq!(server(&c).address, "198.18.0.8".parse::<IpAddr>().unwrap());
    // none: refused, with the key and what to do.
    let e = with(&text("libc,none"), None).unwrap_err();
    let (line, key, reason) = invalid(&e);
    assert_eq!((line, key), (13, "backend[0].server[0].init_addr"), "{e}");
    assert!(
        reason.contains("not supported") && reason.contains("server_template"),
        "{e}"
    );
    // A method that is none: file:line, and the near one.
    let e = with(&text("lib,198.18.0.9"), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:13: backend[0].server[0].init_addr: \"lib\": want last, libc, none or an IP \
         address (did you mean libc?), comma-separated (e.g. \"last,libc,198.18.0.9\")"
    );
    // The backend's init_addr for its servers; the server's own first.
    let backend = |server_init: &str| {
        http(&format!("address = \"nope.lab:80\"\n{server_init}")).replace(
            "name = \"app\"\n",
            "name = \"app\"\ninit_addr = \"libc,198.18.0.7\"\n",
        )
    };
    let c = with(&backend(""), None).unwrap();
    assert_eq!(server(&c).address, "198.18.0.7".parse::<IpAddr>().unwrap());
    let c = with(&backend("init_addr = \"198.18.0.6\"\n"), None).unwrap();
    assert_eq!(server(&c).address, "198.18.0.6".parse::<IpAddr>().unwrap());
    // On an IP address, or on a backend without names: no effect, refused.
    let e = with(
        &http("address = \"198.18.0.5:80\"\ninit_addr = \"libc\"\n"),
        None,
    )
    .unwrap_err();
    assert_eq!(invalid(&e).1, "backend[0].server[0].init_addr", "{e}");
    let e = with(
        &http("address = \"198.18.0.5:80\"\n")
            .replace("name = \"app\"\n", "name = \"app\"\ninit_addr = \"libc\"\n"),
        None,
    )
    .unwrap_err();
    assert_eq!(invalid(&e).1, "backend[0].init_addr", "{e}");
}

#[test]
fn last_is_the_running_address_on_a_reload() {
    let running = with(&http("address = \"app.lab:80\"\n"), None).unwrap();
    let mut moved = running.clone();
    moved.backends[0].servers[0].address = "198.18.0.99".parse().unwrap();
    // Default "last,libc": the running address, the resolver not asked.
    let c = with(&http("address = \"app.lab:80\"\n"), Some(&moved)).unwrap();
    assert_eq!(server(&c).address, "198.18.0.99".parse::<IpAddr>().unwrap());
    // "libc" first: looked up again.
    let c = with(
        &http("address = \"app.lab:80\"\ninit_addr = \"libc,last\"\n"),
        Some(&moved),
    )
    .unwrap();
    assert_eq!(server(&c).address, "198.18.0.10".parse::<IpAddr>().unwrap());
    // A name that no longer resolves keeps its address on a reload...
    let gone = http("address = \"app.lab:80\"\n").replace("app.lab", "nope.lab");
    let mut was = moved.clone();
    was.backends[0].servers[0].host = Some("nope.lab".into());
    let c = with(&gone, Some(&was)).unwrap();
    assert_eq!(server(&c).address, "198.18.0.99".parse::<IpAddr>().unwrap());
    // ... but not when the server had another name (or none) before.
    assert!(with(&gone, Some(&moved)).is_err());
}

#[test]
fn a_name_that_does_not_resolve_is_refused_with_the_resolvers_reason() {
    let e = with(&http("address = \"nope.lab:8080\"\n"), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:12: backend[0].server[0].address: could not resolve \"nope.lab\" (init_addr \
         last,libc; the system resolver: Name or service not known), as HAProxy refuses to \
         start: fix the name, or add an IP address to init_addr (e.g. \"libc,198.18.0.9\"); a \
         name is looked up once per start or reload (server_template follows DNS)"
    );
    // Not a name at all, or a bad port.
    for bad in ["app.lab:0", "app.lab:99999", "app lab", "-:80"] {
        let e = with(&http(&format!("address = \"{bad}\"\n")), None).unwrap_err();
        assert_eq!(invalid(&e).1, "backend[0].server[0].address", "{bad}: {e}");
    }
}

#[test]
fn the_haproxy_reader_takes_last_on_a_reload_too() {
    let cfg = "defaults\n    mode http\nfrontend www\n    bind 198.18.2.1:80\n    \
               default_backend app\nbackend app\n    server web1 app.lab:8080\n";
    fn load(text: &str, last: Option<&Config>) -> Result<Config, ConfigError> {
        let lookup = Lookup {
            resolve: &lab_dns,
            last,
        };
        let opts = haproxy::Options::default();
        Config::parse_haproxy_looking_up(Path::new("haproxy.cfg"), text, &opts, &lookup)
    }
    let c = load(cfg, None).unwrap();
    let s = server(&c);
    assert_eq!(
        (s.address, s.port, s.host.as_deref()),
        ("198.18.0.10".parse().unwrap(), Some(8080), Some("app.lab"))
    );
    let mut moved = c.clone();
    moved.backends[0].servers[0].address = "198.18.0.99".parse().unwrap();
    let c = load(cfg, Some(&moved)).unwrap();
    assert_eq!(server(&c).address, "198.18.0.99".parse::<IpAddr>().unwrap());
    // A name that does not resolve: refused at a start, with its line...
    let gone = cfg.replace("app.lab", "nope.lab");
    let e = load(&gone, None).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("haproxy.cfg:7: server: could not resolve address 'nope.lab'"),
        "{e}"
    );
    // ... kept on a reload, when the running server had that name.
    moved.backends[0].servers[0].host = Some("nope.lab".into());
    let c = load(&gone, Some(&moved)).unwrap();
    assert_eq!(server(&c).address, "198.18.0.99".parse::<IpAddr>().unwrap());
}
