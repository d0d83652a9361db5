//! Access-log settings: the TOML forms and the haproxy.cfg forms, accepted
//! and refused (each refusal naming its line and why).

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, LogFormat, LogTarget, haproxy::Options};

fn toml(frontend_log: &str, global: &str) -> Result<Config, ConfigError> {
    let text = format!(
        "[dataplane]\ninterfaces = []\n{global}\n[[frontend]]\nname = \"f\"\nmode = \"http\"\n\
         bind = \"127.0.0.1:8080\"\ndefault_backend = \"b\"\n{frontend_log}\n[[backend]]\n\
         name = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:9000\"\n"
    );
    Config::parse(Path::new("t.toml"), &text)
}

fn cfg(global: &str, defaults: &str, frontend: &str) -> Result<Config, ConfigError> {
    let text = format!(
        "global\n{global}\ndefaults\n    mode http\n{defaults}\nfrontend fe\n    bind 127.0.0.1:8080\n\
         {frontend}\n    default_backend app\n\nbackend app\n    server s 127.0.0.1:9000\n"
    );
    Config::parse_haproxy(Path::new("haproxy.cfg"), &text, &Options::default())
}

fn refused(r: Result<Config, ConfigError>) -> String {
    r.expect_err("refused").to_string()
}

#[test]
fn toml_forms() {
    let c = toml("log = { format = \"httplog\", target = \"stdout\" }", "").unwrap();
    let l = c.frontends[0].log.as_ref().unwrap();
    assert_eq!(
        (l.format, &l.target, l.facility, l.syslog_header),
        (LogFormat::HttpLog, &LogTarget::Stdout, 16, false)
    );
    // Unset keys from [log]; a unix target gets the syslog header.
    let global = "[log]\ntarget = \"unix:/dev/log\"\nfacility = \"local3\"\ntag = \"lb\"\n";
    let c = toml("log = { format = \"json\" }", global).unwrap();
    let l = c.frontends[0].log.as_ref().unwrap();
    assert_eq!(l.format, LogFormat::Json);
    assert_eq!(l.target, LogTarget::Unix(PathBuf::from("/dev/log")));
    assert_eq!(
        (l.facility, l.tag.as_str(), l.syslog_header),
        (19, "lb", true)
    );
    let c = toml("log = { target = \"/var/log/b.log\" }", "").unwrap();
    let l = c.frontends[0].log.as_ref().unwrap();
    assert_eq!(l.target, LogTarget::File(PathBuf::from("/var/log/b.log")));
    // [log] alone logs nothing (as HAProxy's global `log` without `log global`).
    assert!(toml("", global).unwrap().frontends[0].log.is_none());
}

#[test]
fn toml_refusals_name_line_and_reason() {
    for (log, want) in [
        (
            "log = { format = \"tcplog\", target = \"stdout\" }",
            "t.toml:9: frontend[0].log.format: tcplog",
        ),
        (
            "log = { format = \"clf\", target = \"stdout\" }",
            "want \"httplog\" or \"json\"",
        ),
        (
            "log = { format = \"httplog\" }",
            "frontend[0].log.target: missing",
        ),
        ("log = { target = \"relative.log\" }", "absolute file path"),
        (
            "log = { target = \"stdout\", facility = \"local9\" }",
            "want one of kern",
        ),
        (
            "log = { target = \"stdout\", header = \"rfc5424\" }",
            "\"rfc3164\" or \"raw\"",
        ),
        (
            "log = { target = \"stdout\", level = \"info\" }",
            "unknown field",
        ),
    ] {
        let e = refused(toml(log, ""));
        assert!(e.contains(want), "{log}: {e}");
    }
}

#[test]
fn toml_log_on_an_l4_frontend_is_refused() {
    let text = "[dataplane]\ninterfaces = [\"eth0\"]\n[[frontend]]\nname = \"f\"\n\
                bind = \"198.18.2.100:80\"\ndefault_backend = \"b\"\nlog = { target = \"stdout\" }\n\
                [[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.1.10\"\n";
    let e = refused(Config::parse(Path::new("t.toml"), text));
    assert!(
        e.contains("t.toml:7: frontend[0].log: only for mode = \"http\""),
        "{e}"
    );
    assert!(e.contains("per-connection log"), "{e}");
}

#[test]
fn cfg_forms() {
    let c = cfg(
        "    log /dev/log local0",
        "    log global\n    option httplog",
        "",
    )
    .unwrap();
    let l = c.frontends[0].log.as_ref().unwrap();
    assert_eq!(l.target, LogTarget::Unix(PathBuf::from("/dev/log")));
    assert_eq!(
        (l.format, l.facility, l.syslog_header),
        (LogFormat::HttpLog, 16, true)
    );
    let c = cfg(
        "    log stdout format raw local1 info\n    log-tag lb",
        "    log global\n    option httplog\n    option dontlognull",
        "",
    )
    .unwrap();
    let l = c.frontends[0].log.as_ref().unwrap();
    assert_eq!((&l.target, l.facility), (&LogTarget::Stdout, 17));
    assert_eq!(
        (l.syslog_header, l.tag.as_str(), l.dontlognull),
        (false, "lb", true)
    );
    // `no log` in the frontend; `unix@` targets; a frontend's own target.
    let c = cfg(
        "    log unix@/dev/log local0",
        "    log global\n    option httplog",
        "    no log",
    );
    assert!(c.unwrap().frontends[0].log.is_none());
    let c = cfg("", "    option httplog", "    log /run/l.sock local2").unwrap();
    assert_eq!(c.frontends[0].log.as_ref().unwrap().facility, 18);
    // `option httplog` without any `log`: nothing to log, nothing refused.
    assert!(
        cfg("", "    option httplog", "").unwrap().frontends[0]
            .log
            .is_none()
    );
}

#[test]
fn cfg_refusals_name_line_and_reason() {
    let g = "    log /dev/log local0";
    for (global, defaults, frontend, want) in [
        (
            g,
            "    log global\n    option tcplog",
            "",
            "haproxy.cfg:6: option tcplog: on an http frontend",
        ),
        (
            "",
            "    option tcplog",
            "",
            "haproxy.cfg:5: option tcplog: on an http frontend",
        ),
        (
            g,
            "    log global",
            "",
            "haproxy.cfg:5: log: without `option httplog`",
        ),
        (
            "",
            "    log global\n    option httplog",
            "",
            "haproxy.cfg:5: log global: no `log` line in the global",
        ),
        (
            "    log 127.0.0.1:514 local0",
            "",
            "",
            "haproxy.cfg:2: log: \"127.0.0.1:514\"",
        ),
        ("    log /dev/log local0 notice", "", "", "level notice"),
        (
            "    log /dev/log len 512 local0",
            "",
            "",
            "`len`: not supported",
        ),
        ("    log /dev/log", "", "", "needs a facility"),
        (
            "    log /dev/log local0\n    log /dev/log local1",
            "",
            "",
            "haproxy.cfg:3: log: balancer sends access logs to one",
        ),
        (
            "    log-send-hostname",
            "",
            "",
            "haproxy.cfg:2: log-send-hostname: not supported",
        ),
        (
            g,
            "    log global\n    option httplog clf",
            "",
            "haproxy.cfg:6: option httplog: takes no arguments",
        ),
    ] {
        let e = refused(cfg(global, defaults, frontend));
        assert!(e.contains(want), "{global:?} {defaults:?}: {e}");
    }
}

#[test]
fn cfg_log_on_a_mode_tcp_frontend_is_refused() {
    let text = "global\n    log /dev/log local0\ndefaults\n    log global\n    option tcplog\n\
                frontend vip\n    mode tcp\n    bind 198.18.2.100:80\n    default_backend pool\n\
                backend pool\n    mode tcp\n    balance source\n    stick-table type ip size 1m\n    \
                stick on src\n    server s1 198.18.1.10:80\n";
    let opts = Options {
        interfaces: vec!["eth0".into()],
        ..Default::default()
    };
    let e = refused(Config::parse_haproxy(Path::new("haproxy.cfg"), text, &opts));
    assert!(
        e.contains("haproxy.cfg:5: option tcplog: a mode tcp frontend runs on XDP"),
        "{e}"
    );
    // `no log` in it: accepted.
    let ok = text.replace(
        "    mode tcp\n    bind",
        "    mode tcp\n    no log\n    bind",
    );
    let ok = ok.replace("    option tcplog\n", "");
    assert!(Config::parse_haproxy(Path::new("haproxy.cfg"), &ok, &opts).is_ok());
}
