//! `bind` lines and their TLS options (`ssl crt ... alpn ... ssl-min-ver
//! ...`), and the global `ssl-default-bind-*` / `crt-base` settings they
//! inherit, as HAProxy 2.6 reads them.

use super::{
    CfgError, Warning,
    lex::Line,
    sections::{At, at, err},
};

/// A `bind` line.
#[derive(Debug, Clone)]
pub struct Bind {
    pub addr: At<String>,
    pub tls: Option<BindTls>,
}

/// A `bind`'s TLS options (`ssl` given).
#[derive(Debug, Clone, Default)]
pub struct BindTls {
    pub line: usize,
    pub crt: Vec<String>,
    pub alpn: Option<String>,
    pub min: Option<String>,
    pub max: Option<String>,
    pub ciphers: Option<String>,
    pub ciphersuites: Option<String>,
}

/// `global` settings of TLS binds.
#[derive(Debug, Clone, Default)]
pub struct SslDefaults {
    pub crt_base: Option<At<String>>,
    pub ciphers: Option<At<String>>,
    pub ciphersuites: Option<At<String>>,
    pub min: Option<At<String>>,
    pub max: Option<At<String>>,
}

/// Versions HAProxy's `no-*` options leave out: (option, the version it
/// removes).
const NO_VERSION: &[(&str, &str)] = &[
    ("no-sslv3", "SSLv3"),
    ("no-tlsv10", "TLSv1.0"),
    ("no-tlsv11", "TLSv1.1"),
    ("no-tlsv12", "TLSv1.2"),
    ("no-tlsv13", "TLSv1.3"),
];

/// `no-tlsv12` raises the lowest version to 1.3, `no-tlsv13` lowers the
/// highest to 1.2; the older ones say what rustls does anyway (it never
/// speaks SSLv3, TLS 1.0 or 1.1).
fn no_version(opt: &str, min: &mut Option<String>, max: &mut Option<String>) -> bool {
    match NO_VERSION.iter().find(|(o, _)| *o == opt) {
        None => false,
        Some((_, "TLSv1.2")) => {
            *min = Some("TLSv1.3".into());
            true
        }
        Some((_, "TLSv1.3")) => {
            *max = Some("TLSv1.2".into());
            true
        }
        Some(_) => true,
    }
}

pub(super) fn bind(l: &Line) -> Result<Bind, CfgError> {
    let w = &l.words;
    let Some(addr) = w.get(1) else {
        return Err(err(l, "bind", "needs an address"));
    };
    let mut ssl = false;
    let mut t = BindTls {
        line: l.number,
        ..Default::default()
    };
    let mut i = 2;
    while i < w.len() {
        let opt = w[i].as_str();
        let mut value = || {
            i += 1;
            w.get(i)
                .cloned()
                .ok_or_else(|| err(l, format!("bind {opt}"), "missing its value"))
        };
        match opt {
            "ssl" => ssl = true,
            "crt" => t.crt.push(value()?),
            "alpn" => t.alpn = Some(value()?),
            "ssl-min-ver" => t.min = Some(value()?),
            "ssl-max-ver" => t.max = Some(value()?),
            "ciphers" => t.ciphers = Some(value()?),
            "ciphersuites" => t.ciphersuites = Some(value()?),
            o if no_version(o, &mut t.min, &mut t.max) => {}
            "accept-proxy" => {
                return Err(err(
                    l,
                    "bind accept-proxy",
                    "balancer takes PROXY headers only from the sources allowed to send them: \
                     instead, write `tcp-request connection expect-proxy layer4 if { src \
                     NETWORK ... }` in this frontend (the proxies in front of it; the others \
                     are served as direct clients, as HAProxy does)",
                ));
            }
            o => {
                return Err(err(
                    l,
                    format!("bind {o}"),
                    "bind option not supported (TLS: ssl, crt, alpn, ssl-min-ver, ssl-max-ver, \
                     ciphers, ciphersuites, no-tlsv12, no-tlsv13)",
                ));
            }
        }
        i += 1;
    }
    let tls_words = !t.crt.is_empty()
        || t.alpn.is_some()
        || t.min.is_some()
        || t.max.is_some()
        || t.ciphers.is_some()
        || t.ciphersuites.is_some();
    if !ssl && tls_words {
        return Err(err(
            l,
            "bind",
            "TLS options without `ssl`: they would do nothing (add `ssl`)",
        ));
    }
    if ssl && t.crt.is_empty() {
        return Err(err(
            l,
            "bind ssl",
            "needs `crt FILE|DIR` (the certificates and their keys)",
        ));
    }
    Ok(Bind {
        addr: at(addr.clone(), l.number),
        tls: ssl.then_some(t),
    })
}

/// A `global` line about TLS binds; `Ok(false)`: not one.
pub(super) fn global_ssl(
    d: &mut SslDefaults,
    l: &Line,
    warnings: &mut Vec<Warning>,
) -> Result<bool, CfgError> {
    let w = &l.words;
    let k = w[0].as_str();
    let one = || match w.as_slice() {
        [_, v] => Ok(at(v.clone(), l.number)),
        _ => Err(err(l, k, "takes one value")),
    };
    match k {
        "crt-base" => d.crt_base = Some(one()?),
        "ssl-default-bind-ciphers" => d.ciphers = Some(one()?),
        "ssl-default-bind-ciphersuites" => d.ciphersuites = Some(one()?),
        "ssl-default-bind-options" => {
            let (mut min, mut max) = (None, None);
            let mut j = 1;
            while j < w.len() {
                let o = w[j].as_str();
                match o {
                    "ssl-min-ver" | "ssl-max-ver" => {
                        j += 1;
                        let v = w
                            .get(j)
                            .cloned()
                            .ok_or_else(|| err(l, format!("{k} {o}"), "missing its value"))?;
                        if o == "ssl-min-ver" {
                            min = Some(v);
                        } else {
                            max = Some(v);
                        }
                    }
                    o if no_version(o, &mut min, &mut max) => {}
                    o => {
                        return Err(err(
                            l,
                            format!("{k} {o}"),
                            "not supported (ssl-min-ver, ssl-max-ver and no-sslv3 .. no-tlsv13 \
                             are)",
                        ));
                    }
                }
                j += 1;
            }
            d.min = min.map(|v| at(v, l.number));
            d.max = max.map(|v| at(v, l.number));
        }
        "tune.ssl.default-dh-param" => warnings.push(Warning {
            line: l.number,
            text: "global `tune.ssl.default-dh-param`: skipped (rustls offers no finite-field \
                   Diffie-Hellman suites; key exchange is ECDHE)"
                .into(),
        }),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Names of TLS 1.2 suites OpenSSL has and rustls does not (CBC, DHE,
/// RSA key exchange...): an exact OpenSSL suite name that is not one of
/// `known`. Aliases and operators (`HIGH`, `!aNULL`, `+`, `@STRENGTH`) are
/// not suite names.
fn is_other_suite(name: &str, known: &[&str]) -> bool {
    !known.contains(&name)
        && name.contains('-')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
}

/// An OpenSSL cipher list as balancer takes it: the suites rustls has,
/// in order; the exact suite names it lacks are dropped with a warning
/// (an operator's usual list names CBC and DHE suites for old clients);
/// anything else goes on, for the validator to refuse with its line.
pub(super) fn cipher_list(
    list: &str,
    line: usize,
    known: &[&str],
    warnings: &mut Vec<Warning>,
) -> String {
    let (kept, dropped): (Vec<&str>, Vec<&str>) = list
        .split(':')
        .filter(|n| !n.is_empty())
        .partition(|n| !is_other_suite(n, known));
    if !dropped.is_empty() && !kept.is_empty() {
        warnings.push(Warning {
            line,
            text: format!(
                "ciphers: {} not offered (rustls does not implement them)",
                dropped.join(", ")
            ),
        });
        return kept.join(":");
    }
    list.to_owned()
}

/// `redirect scheme https [code N] [if !{ ssl_fc } | unless { ssl_fc }]`:
/// (code, whether it is only for cleartext binds).
pub(super) fn redirect(l: &Line) -> Result<(u16, bool), CfgError> {
    let w: Vec<&str> = l.words.iter().map(String::as_str).collect();
    let (scheme, rest) = match w.as_slice() {
        [_, "scheme", s, rest @ ..] => (*s, rest),
        [_, kind, ..] => {
            return Err(err(
                l,
                format!("redirect {kind}"),
                "only `redirect scheme https` is implemented",
            ));
        }
        _ => return Err(err(l, "redirect", "want `redirect scheme https`")),
    };
    if scheme != "https" {
        return Err(err(
            l,
            "redirect scheme",
            format!("{scheme:?}: only https is implemented"),
        ));
    }
    let (code, cond) = match rest {
        ["code", c, cond @ ..] => {
            let code = c
                .parse::<u16>()
                .ok()
                .filter(|c| [301, 302, 303, 307, 308].contains(c))
                .ok_or_else(|| {
                    err(
                        l,
                        "redirect code",
                        format!("{c:?}: want 301, 302, 303, 307 or 308"),
                    )
                })?;
            (code, cond)
        }
        cond => (302, cond),
    };
    let cleartext_only = match cond {
        [] => false,
        ["if", "!{", "ssl_fc", "}"] | ["unless", "{", "ssl_fc", "}"] => true,
        other => {
            return Err(err(
                l,
                "redirect",
                format!(
                    "condition {:?}: only `if !{{ ssl_fc }}` (or `unless {{ ssl_fc }}`) is \
                     supported",
                    other.join(" ")
                ),
            ));
        }
    };
    Ok((code, cleartext_only))
}

/// `tcp-request connection expect-proxy layer4 if { src NETWORK ... }`: the
/// networks whose connections open with a PROXY header (the frontend's
/// `accept_proxy_from`). Other `tcp-request` rules, conditions and ACL
/// forms are refused.
pub(super) fn expect_proxy(l: &Line) -> Result<Vec<String>, CfgError> {
    let w: Vec<&str> = l.words.iter().map(String::as_str).collect();
    let form = "only `tcp-request connection expect-proxy layer4 if { src NETWORK ... }` is \
                supported";
    let nets = match w.as_slice() {
        [
            _,
            "connection",
            "expect-proxy",
            "layer4",
            "if",
            "{",
            "src",
            nets @ ..,
            "}",
        ] => nets,
        [_, "connection", "expect-proxy", ..] => {
            return Err(err(
                l,
                "tcp-request connection expect-proxy",
                format!(
                    "{form}: the sources must be listed (a header sets the client's address: \
                     from anyone else it is refused)"
                ),
            ));
        }
        [_, rest @ ..] => {
            return Err(err(l, format!("tcp-request {}", rest.join(" ")), form));
        }
        [] => return Err(err(l, "tcp-request", form)),
    };
    if nets.is_empty() || nets.iter().any(|n| n.starts_with('-')) {
        return Err(err(
            l,
            "tcp-request connection expect-proxy",
            "want the networks inline after `src` (no `-f FILE`, no other flag)",
        ));
    }
    for n in nets {
        crate::config::Net::parse(n)
            .map_err(|r| err(l, "tcp-request connection expect-proxy src", r))?;
    }
    Ok(nets.iter().map(|n| (*n).to_owned()).collect())
}
