//! The parameters of a backend's `server`, `server-template`,
//! `stick-table` and `stick` lines.

use super::{
    CfgError,
    lex::Line,
    sections::{Server, StickRule, StickTable, Template, err},
};

pub(super) fn server(l: &Line) -> Result<Server, CfgError> {
    let w = &l.words;
    let Some(name) = w.get(1) else {
        return Err(err(l, "server", "needs a name"));
    };
    let mut s = Server {
        line: l.number,
        name: name.clone(),
        ..Default::default()
    };
    let mut rest = &w[2..];
    // The address is the first word that is not a known parameter: the
    // guide's examples leave it out, and that must be said, not guessed.
    if let Some(a) = rest.first().filter(|a| !is_server_param(a)) {
        s.address = Some(a.clone());
        rest = &rest[1..];
    }
    walk(l, "server", rest, |p, value| {
        match p {
            "check" => s.check = true,
            "disabled" => s.disabled = true,
            "inter" => s.inter = Some(value()?),
            "rise" => s.rise = Some(value()?),
            "fall" => s.fall = Some(value()?),
            "cookie" => s.cookie = Some(value()?),
            "weight" => s.weight = Some(value()?),
            "maxconn" => s.maxconn = Some(value()?),
            "maxqueue" => s.maxqueue = Some(value()?),
            "port" => s.check_port = Some(value()?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(s)
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
            | "disabled"
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
            | "resolvers"
            | "init-addr"
    )
}

pub(super) fn template(l: &Line) -> Result<Template, CfgError> {
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
    walk(l, "server-template", rest, |p, value| {
        match p {
            "check" => t.check = true,
            "resolvers" => t.resolvers = Some(value()?),
            "init-addr" => t.init_addr = Some(value()?),
            "weight" => t.weight = Some(value()?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(t)
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
