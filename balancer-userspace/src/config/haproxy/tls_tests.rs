//! `bind ... ssl` and the global TLS defaults, read from a haproxy.cfg.

use std::path::Path;

use super::{Options, convert};
use crate::config::{Config, TlsVersion};

fn no_env(_: &str) -> Option<String> {
    None
}

const HEAD: &str = "\
global
    crt-base /etc/haproxy/certs
    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
defaults
    mode http
frontend www
";

const TAIL: &str = "\
    default_backend app
backend app
    server s1 127.0.0.1:9001
";

fn cfg(global_options: &str, binds: &str) -> String {
    HEAD.replace("ssl-min-ver TLSv1.2 no-tls-tickets", global_options) + binds + TAIL
}

#[test]
fn ssl_binds_become_the_frontends_tls() {
    let text = cfg(
        "ssl-min-ver TLSv1.2 no-sslv3 no-tlsv10",
        "    bind :443 ssl crt site.pem crt /abs/other.pem alpn h2,http/1.1\n    bind :8443 ssl crt dir/ no-tlsv12\n",
    );
    let c = Config::parse_haproxy(Path::new("haproxy.cfg"), &text, &Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.frontends.len(), 2);
    let t = c.frontends[0].tls.as_ref().unwrap();
    assert_eq!(
        t.crt,
        [
            Path::new("/etc/haproxy/certs/site.pem"),
            Path::new("/abs/other.pem")
        ]
    );
    assert_eq!(t.alpn, ["h2", "http/1.1"]);
    assert_eq!(t.min_version, TlsVersion::Tls12);
    // The DHE suite is dropped (with a warning), the others kept in order.
    assert_eq!(
        t.tls12_suites.as_deref(),
        Some(
            &[
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
            ][..]
        )
    );
    assert!(
        c.warnings.iter().any(|w| w
            .to_string()
            .contains("DHE-RSA-AES128-GCM-SHA256 not offered")),
        "{:?}",
        c.warnings
    );
    // No `alpn`: HAProxy 2.6 offers none, so HTTP/1.1.
    let t2 = c.frontends[1].tls.as_ref().unwrap();
    assert_eq!(t2.alpn, ["http/1.1"]);
    assert_eq!(t2.min_version, TlsVersion::Tls13);
    // The TOML names the bind line for the TLS keys.
    let conv = convert(&text, &Options::default(), &no_env).unwrap();
    assert!(conv.toml.contains("[frontend.tls]"), "{}", conv.toml);
}

#[test]
fn tls_words_that_cannot_work_are_refused_with_their_line() {
    for (global_options, binds, line, want) in [
        (
            "ssl-min-ver TLSv1.2",
            "    bind :443 ssl\n",
            8,
            "needs `crt",
        ),
        (
            "ssl-min-ver TLSv1.2",
            "    bind :443 crt a.pem\n",
            8,
            "without `ssl`",
        ),
        (
            "ssl-min-ver TLSv1.2",
            "    bind :443 ssl crt a.pem verify required\n",
            8,
            "bind verify",
        ),
        (
            "ssl-min-ver TLSv1.2",
            "    bind :443 ssl crt\n",
            8,
            "missing its value",
        ),
        (
            "ssl-min-ver TLSv1.2",
            "    bind :443 ssl crt a.pem alpn spdy/3\n",
            8,
            "want h2",
        ),
        (
            "ssl-min-ver TLSv1.0",
            "    bind :443 ssl crt a.pem\n",
            4,
            "RFC 8996",
        ),
        (
            "no-tls-tickets",
            "    bind :443 ssl crt a.pem\n",
            4,
            "no-tls-tickets",
        ),
        (
            "ssl-min-ver TLSv1.2",
            "    bind :443\n",
            2,
            "no `bind` has `ssl`",
        ),
        (
            "ssl-min-ver TLSv1.2",
            "    bind :443 ssl crt a.pem ciphers HIGH:!aNULL\n",
            8,
            "one by one",
        ),
    ] {
        let text = cfg(global_options, binds);
        let e = Config::parse_haproxy(Path::new("haproxy.cfg"), &text, &Options::default())
            .expect_err(binds)
            .to_string();
        assert!(
            e.contains(&format!("haproxy.cfg:{line}")),
            "{binds}: want line {line}: {e}"
        );
        assert!(e.contains(want), "{binds}: {e}");
    }
    // mode tcp: the XDP path terminates nothing.
    let tcp = "defaults\n    mode tcp\nfrontend f\n    bind 198.18.0.1:443 ssl crt a.pem\n    \
               default_backend b\nbackend b\n    balance source\n    stick-table type ip size 1k\n    \
               stick on src\n    server s 198.18.1.1:443\n";
    let opts = Options {
        interfaces: vec!["eth0".into()],
        ..Default::default()
    };
    let e = Config::parse_haproxy(Path::new("haproxy.cfg"), tcp, &opts)
        .expect_err("tcp + ssl")
        .to_string();
    assert!(e.contains("haproxy.cfg:4") && e.contains("mode tcp"), "{e}");
}

#[test]
fn redirect_scheme_https_goes_to_the_cleartext_binds() {
    let text = cfg(
        "ssl-min-ver TLSv1.2",
        "    bind :80\n    bind :443 ssl crt a.pem\n    redirect scheme https code 301 if !{ ssl_fc }\n",
    );
    let c = Config::parse_haproxy(Path::new("haproxy.cfg"), &text, &Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.frontends[0].redirect_https, Some(301));
    assert!(c.frontends[0].tls.is_none());
    assert_eq!(c.frontends[1].redirect_https, None);
    assert!(c.frontends[1].tls.is_some());
    for (redirect, want) in [
        ("    redirect scheme https\n", "sent back to themselves"),
        ("    redirect scheme http\n", "only https"),
        ("    redirect location /x\n", "redirect location"),
        ("    redirect scheme https code 200\n", "want 301"),
        (
            "    redirect scheme https if { path /x }\n",
            "only `if !{ ssl_fc }`",
        ),
    ] {
        let text = cfg(
            "ssl-min-ver TLSv1.2",
            &format!("    bind :80\n    bind :443 ssl crt a.pem\n{redirect}"),
        );
        let e = Config::parse_haproxy(Path::new("haproxy.cfg"), &text, &Options::default())
            .expect_err(redirect)
            .to_string();
        assert!(e.contains("haproxy.cfg:10"), "{redirect}: {e}");
        assert!(e.contains(want), "{redirect}: {e}");
    }
}

const SERVERS: &str = "\
defaults
    mode http
frontend www
    bind :80
    default_backend app
backend app
";

#[test]
fn server_ssl_becomes_the_backends_ssl() {
    let text = format!(
        "{SERVERS}    default-server ssl verify required ca-file ca.pem sni str(app.internal)\n    \
         server s1 127.0.0.1:9443\n    server s2 127.0.0.1:9444\n"
    );
    let c = Config::parse_haproxy(Path::new("haproxy.cfg"), &text, &Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let s = c.backends[0].http.as_ref().unwrap().ssl.as_ref().unwrap();
    assert!(s.verify);
    assert_eq!(s.ca_file.as_deref(), Some(Path::new("ca.pem")));
    assert_eq!(s.sni.as_deref(), Some("app.internal"));
    // verify none, verifyhost as the name.
    let text = format!(
        "{SERVERS}    server s1 127.0.0.1:9443 ssl verify none\n    server s2 127.0.0.1:9444 ssl verify none\n"
    );
    let c = Config::parse_haproxy(Path::new("haproxy.cfg"), &text, &Options::default()).unwrap();
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
    for (servers, line, want) in [
        ("    server s1 127.0.0.1:9443 ssl\n", 7, "needs the CA"),
        (
            "    server s1 127.0.0.1:9443 verify none\n",
            7,
            "without `ssl`",
        ),
        (
            "    server s1 127.0.0.1:9443 ssl verify none sni req.hdr(host)\n",
            7,
            "only `sni str(NAME)`",
        ),
        (
            "    server s1 127.0.0.1:9443 ssl verify none\n    server s2 127.0.0.1:9444 ssl verify none sni str(x)\n",
            8,
            "differ",
        ),
        (
            "    server s1 127.0.0.1:9443 ssl ca-file a.pem sni str(a) verifyhost b\n",
            7,
            "differs from `sni`",
        ),
        (
            "    server s1 127.0.0.1:9443 ssl verify sometimes\n",
            7,
            "want",
        ),
    ] {
        let text = format!("{SERVERS}{servers}");
        let e = Config::parse_haproxy(Path::new("haproxy.cfg"), &text, &Options::default())
            .expect_err(servers)
            .to_string();
        assert!(
            e.contains(&format!("haproxy.cfg:{line}")),
            "{servers}: want line {line}: {e}"
        );
        assert!(e.contains(want), "{servers}: {e}");
    }
}
