//! The parameters of a backend's `server`, `server-template`,
//! `stick-table` and `stick` lines.

use crate::config::parse_status_list;

use super::{
    CfgError,
    lex::Line,
    sections::{DefParam, Server, StickRule, StickTable, Template, err},
};

pub(super) fn server(l: &Line, defaults: &[DefParam]) -> Result<Server, CfgError> {
    let w = &l.words;
    let Some(name) = w.get(1) else {
        return Err(err(l, "server", "needs a name"));
    };
    let mut s = Server {
        line: l.number,
        name: name.clone(),
        ..Default::default()
    };
    // The `default-server` lines above, as HAProxy: the server's own
    // parameters then replace them. `resolve-prefer` (of templates) does
    // nothing to a server here.
    for d in defaults {
        if set_server(&mut s, &d.name, d.value.clone()) {
            s.from.insert(d.name.clone(), d.line);
        }
    }
    let mut rest = &w[2..];
    // The address is the first word that is not a known parameter: the
    // guide's examples leave it out, and that must be said, not guessed.
    if let Some(a) = rest.first().filter(|a| !is_server_param(a)) {
        s.address = Some(a.clone());
        rest = &rest[1..];
    }
    walk(l, "server", rest, |p, value| {
        let v = match p {
            "no-check" | "enabled" => return cancel(l, &mut s, p).map(|()| true),
            "check" | "disabled" | "ssl" | "send-proxy" | "send-proxy-v2" => None,
            "inter" | "rise" | "fall" | "cookie" | "weight" | "maxconn" | "maxqueue" | "port"
            | "init-addr" | "resolvers" | "verify" | "ca-file" | "sni" | "verifyhost" => {
                Some(value()?)
            }
            _ => return Ok(false),
        };
        s.from.remove(p);
        Ok(set_server(&mut s, p, v))
    })?;
    Ok(s)
}

/// `no-check` / `enabled`: cancel the `check` / `disabled` a server took
/// from a `default-server` line (as HAProxy; without one it would do
/// nothing).
fn cancel(l: &Line, s: &mut Server, p: &str) -> Result<(), CfgError> {
    let k = if p == "no-check" { "check" } else { "disabled" };
    if s.from.remove(k).is_none() {
        return Err(err(
            l,
            format!("server {p}"),
            format!("no `{k}` from a default-server line to cancel: it would have no effect"),
        ));
    }
    if k == "check" {
        s.check = false;
    } else {
        s.disabled = false;
    }
    Ok(())
}

/// Set server parameter `p`; whether it is one balancer's servers take.
fn set_server(s: &mut Server, p: &str, v: Option<String>) -> bool {
    match (p, v) {
        ("check", _) => s.check = true,
        ("disabled", _) => s.disabled = true,
        ("inter", v) => s.inter = v,
        ("rise", v) => s.rise = v,
        ("fall", v) => s.fall = v,
        ("cookie", v) => s.cookie = v,
        ("weight", v) => s.weight = v,
        ("maxconn", v) => s.maxconn = v,
        ("maxqueue", v) => s.maxqueue = v,
        ("port", v) => s.check_port = v,
        ("init-addr", v) => s.init_addr = v,
        ("resolvers", v) => s.resolvers = v,
        ("ssl", _) => s.ssl = true,
        ("verify", v) => s.verify = v,
        ("ca-file", v) => s.ca_file = v,
        ("sni", v) => s.sni = v,
        ("verifyhost", v) => s.verifyhost = v,
        ("send-proxy", _) => s.send_proxy = Some("v1".into()),
        ("send-proxy-v2", _) => s.send_proxy = Some("v2".into()),
        _ => return false,
    }
    true
}

/// The parameters of a `default-server` line: those of `server` and those
/// of `server-template` (HAProxy takes both there).
pub(super) fn default_server(l: &Line) -> Result<Vec<DefParam>, CfgError> {
    let mut out = Vec::new();
    walk(l, "default-server", &l.words[1..], |p, value| {
        let v = match p {
            "check" | "disabled" | "ssl" | "send-proxy" | "send-proxy-v2" => None,
            "inter" | "rise" | "fall" | "cookie" | "weight" | "maxconn" | "maxqueue" | "port"
            | "resolvers" | "init-addr" | "verify" | "ca-file" | "sni" | "verifyhost" => {
                Some(value()?)
            }
            "resolve-prefer" => Some(family(l, "default-server", value()?)?),
            _ => return Ok(false),
        };
        out.retain(|d: &DefParam| d.name != p);
        out.push(DefParam {
            name: p.to_owned(),
            value: v,
            line: l.number,
        });
        Ok(true)
    })?;
    if out.is_empty() {
        return Err(err(
            l,
            "default-server",
            "no parameters: it would have no effect",
        ));
    }
    Ok(out)
}

/// `resolve-prefer`'s value.
fn family(l: &Line, what: &str, v: String) -> Result<String, CfgError> {
    if v == "ipv4" || v == "ipv6" {
        Ok(v)
    } else {
        Err(err(
            l,
            format!("{what} resolve-prefer"),
            format!("{v:?}: want ipv4 or ipv6"),
        ))
    }
}

/// A value-taking parameter's next word.
type Next<'a> = dyn FnMut() -> Result<String, CfgError> + 'a;

/// Walk `words` as `what`'s parameters: `f(name, next)` takes one (calling
/// `next` for its value) and says whether it knew it; an unknown one is an
/// error naming it.
fn walk(
    l: &Line,
    what: &str,
    words: &[String],
    mut f: impl FnMut(&str, &mut Next<'_>) -> Result<bool, CfgError>,
) -> Result<(), CfgError> {
    let mut i = 0;
    while i < words.len() {
        let p = words[i].clone();
        let known = {
            let mut next = || {
                i += 1;
                words
                    .get(i)
                    .cloned()
                    .ok_or_else(|| err(l, format!("{what} {p}"), "missing its value"))
            };
            f(&p, &mut next)?
        };
        if !known {
            return Err(err(
                l,
                format!("{what} {p}"),
                format!("{what} parameter not supported"),
            ));
        }
        i += 1;
    }
    Ok(())
}

fn is_server_param(w: &str) -> bool {
    matches!(
        w,
        "check"
            | "no-check"
            | "disabled"
            | "enabled"
            | "inter"
            | "rise"
            | "fall"
            | "cookie"
            | "weight"
            | "maxconn"
            | "maxqueue"
            | "port"
            | "backup"
            | "ssl"
            | "verify"
            | "ca-file"
            | "sni"
            | "verifyhost"
            | "resolvers"
            | "init-addr"
            | "send-proxy"
            | "send-proxy-v2"
    )
}

pub(super) fn template(l: &Line, defaults: &[DefParam]) -> Result<Template, CfgError> {
    let w = &l.words;
    let [_, prefix, count, target, rest @ ..] = w.as_slice() else {
        return Err(err(
            l,
            "server-template",
            "want `server-template PREFIX COUNT FQDN[:PORT] ...`",
        ));
    };
    let (fqdn, port) = match target.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => {
            (h.to_owned(), Some(p.to_owned()))
        }
        _ => (target.clone(), None),
    };
    let mut t = Template {
        line: l.number,
        prefix: prefix.clone(),
        count: count.clone(),
        fqdn,
        port,
        ..Default::default()
    };
    let mut others = Vec::new();
    for d in defaults {
        if set_template(&mut t, &d.name, d.value.clone()) {
            t.from.insert(d.name.clone(), d.line);
        } else {
            others.push(d);
        }
    }
    walk(l, "server-template", rest, |p, value| {
        let v = match p {
            "no-check" => {
                if t.from.remove("check").is_none() {
                    return Err(err(
                        l,
                        "server-template no-check",
                        "no `check` from a default-server line to cancel: it would have no effect",
                    ));
                }
                t.check = false;
                return Ok(true);
            }
            "check" => None,
            "resolve-prefer" => Some(family(l, "server-template", value()?)?),
            "resolvers" | "init-addr" | "weight" => Some(value()?),
            _ => return Ok(false),
        };
        t.from.remove(p);
        Ok(set_template(&mut t, p, v))
    })?;
    // A default-server parameter HAProxy would give the template's servers
    // and balancer's templates do not have.
    for d in others {
        let acts = match d.name.as_str() {
            "inter" | "rise" | "fall" | "port" => t.check,
            _ => true,
        };
        if acts {
            return Err(CfgError {
                line: d.line,
                keyword: format!("default-server {}", d.name),
                reason: format!(
                    "the server-template of line {} would take it, and balancer's templates \
                     have only check (with the default timing), weight, resolvers, init-addr \
                     and resolve-prefer",
                    t.line
                ),
            });
        }
    }
    Ok(t)
}

/// Set template parameter `p`; whether templates take it.
fn set_template(t: &mut Template, p: &str, v: Option<String>) -> bool {
    match (p, v) {
        ("check", _) => t.check = true,
        ("resolvers", v) => t.resolvers = v,
        ("init-addr", v) => t.init_addr = v,
        ("weight", v) => t.weight = v,
        ("resolve-prefer", v) => t.resolve_prefer = v,
        _ => return false,
    }
    true
}

pub(super) fn stick_table(l: &Line) -> Result<StickTable, CfgError> {
    let w = &l.words;
    let mut t = StickTable::default();
    let mut i = 1;
    while i < w.len() {
        let p = w[i].as_str();
        let v = w
            .get(i + 1)
            .cloned()
            .ok_or_else(|| err(l, format!("stick-table {p}"), "missing its value"));
        match p {
            "type" => t.ty = v?,
            "size" => t.size = Some(v?),
            "expire" => t.expire = Some(v?),
            "peers" => t.peers = Some(v?),
            other => {
                return Err(err(
                    l,
                    format!("stick-table {other}"),
                    "not supported (a table holds the server of each client; `store`, \
                     `nopurge`, `srvkey` and the other types are not implemented)",
                ));
            }
        }
        i += 2;
    }
    if t.ty.is_empty() {
        return Err(err(l, "stick-table", "needs `type ip` or `type ipv6`"));
    }
    if t.ty != "ip" && t.ty != "ipv6" {
        return Err(err(
            l,
            "stick-table type",
            format!("{:?}: only ip and ipv6 tables are implemented", t.ty),
        ));
    }
    Ok(t)
}

pub(super) fn stick_rule(l: &Line) -> Result<StickRule, CfgError> {
    let w = &l.words;
    let (what, expr) = match w.as_slice() {
        [_, what, expr] => (what.clone(), expr.clone()),
        [_, what, _, extra, ..] => {
            return Err(err(
                l,
                format!("stick {what}"),
                format!("{extra:?}: conditions and `table` are not supported"),
            ));
        }
        _ => return Err(err(l, "stick", "want `stick on|match|store-request src`")),
    };
    if !matches!(what.as_str(), "on" | "match" | "store-request") {
        return Err(err(
            l,
            format!("stick {what}"),
            "want on, match or store-request (store-response is not supported)",
        ));
    }
    let mask = match expr.split_once(',') {
        None if expr == "src" => None,
        Some(("src", conv)) => Some(ipmask(l, conv)?),
        _ => {
            return Err(err(
                l,
                format!("stick {what}"),
                format!("{expr:?}: only `src` (optionally `src,ipmask(V4[,V6])`) is supported"),
            ));
        }
    };
    Ok(StickRule { what, mask })
}

/// `ipmask(24)` or `ipmask(24,64)`.
fn ipmask(l: &Line, conv: &str) -> Result<(u8, Option<u8>), CfgError> {
    let bad = || {
        err(
            l,
            "stick",
            format!(
                "{conv:?}: the only converter supported is ipmask(V4[,V6]) with prefix lengths"
            ),
        )
    };
    let args = conv
        .strip_prefix("ipmask(")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(bad)?;
    let mut it = args.split(',');
    let v4 = it
        .next()
        .and_then(|a| a.trim().parse::<u8>().ok())
        .ok_or_else(bad)?;
    let v6 = match it.next() {
        None => None,
        Some(a) => Some(a.trim().parse::<u8>().map_err(|_| bad())?),
    };
    if it.next().is_some() {
        return Err(bad());
    }
    Ok((v4, v6))
}

/// An `http-check` line balancer's checks can do.
pub(super) enum HttpCheck {
    /// `send [meth M] [uri URI] [ver HTTP/1.0]`: the method and URI given.
    Send(Option<String>, Option<String>),
    /// `expect status CODES`.
    Expect(String),
}

/// What balancer's HTTP checks are, for the errors.
const CHECKS_ARE: &str = "balancer's HTTP checks send `METHOD URI HTTP/1.0` with a Host \
                          header and no body, and pass on a status of a list";

pub(super) fn http_check(l: &Line) -> Result<HttpCheck, CfgError> {
    let w = &l.words;
    match w.get(1).map(String::as_str) {
        Some("send") => {
            let (mut meth, mut uri) = (None, None);
            let mut rest = &w[2..];
            while let [p, v, tail @ ..] = rest {
                match (p.as_str(), v.as_str()) {
                    ("ver", "HTTP/1.0") => {}
                    ("meth", m) => meth = Some(m.to_owned()),
                    ("uri", u) => uri = Some(u.to_owned()),
                    ("ver", v) => {
                        return Err(err(
                            l,
                            "http-check send ver",
                            format!("{v:?}: {CHECKS_ARE}"),
                        ));
                    }
                    (p, _) => {
                        return Err(err(
                            l,
                            format!("http-check send {p}"),
                            format!("not supported: {CHECKS_ARE}"),
                        ));
                    }
                }
                rest = tail;
            }
            if let [p] = rest {
                return Err(err(l, format!("http-check send {p}"), "missing its value"));
            }
            Ok(HttpCheck::Send(meth, uri))
        }
        Some("expect") => match &w[2..] {
            [t, codes] if t == "status" => {
                parse_status_list(codes).map_err(|r| err(l, "http-check expect status", r))?;
                Ok(HttpCheck::Expect(codes.clone()))
            }
            [t, ..] if t == "rstatus" => Err(err(
                l,
                "http-check expect rstatus",
                "a regular expression is not supported: list the codes and ranges with \
                 `expect status` (e.g. 200-299,301)",
            )),
            [t, ..] => Err(err(
                l,
                format!("http-check expect {t}"),
                format!("only `expect status CODES` is supported: {CHECKS_ARE}"),
            )),
            [] => Err(err(l, "http-check expect", "missing what to expect")),
        },
        Some(other) => Err(err(
            l,
            format!("http-check {other}"),
            format!("not supported: {CHECKS_ARE}"),
        )),
        None => Err(err(l, "http-check", "missing its action (send, expect)")),
    }
}
