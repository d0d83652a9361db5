//! haproxy.cfg, tokenized (`lex`), into sections and the settings balancer
//! implements. Every keyword is either understood, on the short list of
//! keywords harmless to skip (a warning with its line), or an error naming
//! its line and why. Defaults sections are applied as HAProxy 2.6 does:
//! a proxy takes the last `defaults` section above it, or the named one of
//! `from NAME`.

use std::collections::BTreeMap;

use super::{
    CfgError, Warning,
    lex::Line,
    params::{HttpCheck, default_server, http_check, server, stick_rule, stick_table, template},
};

/// A value and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    pub v: T,
    pub line: usize,
}

pub(super) fn at<T>(v: T, line: usize) -> At<T> {
    At { v, line }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Frontend,
    Backend,
    Listen,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Frontend => "frontend",
            Kind::Backend => "backend",
            Kind::Listen => "listen",
        }
    }
    pub fn front(self) -> bool {
        self != Kind::Backend
    }
    pub fn back(self) -> bool {
        self != Kind::Frontend
    }
}

/// What a `defaults` section and a proxy share.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub mode: Option<At<String>>,
    pub balance: Option<At<String>>,
    /// `cookie`'s arguments, joined by spaces (balancer takes them verbatim).
    pub cookie: Option<At<String>>,
    pub dynamic_cookie_key: Option<At<String>>,
    /// `option persist|redispatch|forwardfor`.
    pub options: BTreeMap<String, usize>,
    /// `option httpchk [[METHOD] URI]`: the method (default OPTIONS) and
    /// the URI (default `/`).
    pub httpchk: Option<At<(String, String)>>,
    /// `timeout NAME VALUE`, by name.
    pub timeouts: BTreeMap<String, At<String>>,
    pub maxconn: Option<At<String>>,
    pub default_backend: Option<At<String>>,
    /// `load-server-state-from-file global` (the only form balancer takes).
    pub load_state: Option<At<String>>,
    /// The `default-server` parameters in effect, one per name (a later
    /// line's replaces an earlier one's), each with its line.
    pub default_server: Vec<DefParam>,
    /// `log`, `option httplog|tcplog|dontlognull`.
    pub log: super::log::LogOptions,
}

/// One parameter of a `default-server` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefParam {
    pub name: String,
    /// `None` for a flag (`check`, `disabled`).
    pub value: Option<String>,
    pub line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Server {
    pub line: usize,
    pub name: String,
    pub address: Option<String>,
    pub check: bool,
    pub inter: Option<String>,
    pub rise: Option<String>,
    pub fall: Option<String>,
    pub cookie: Option<String>,
    pub weight: Option<String>,
    pub disabled: bool,
    pub maxconn: Option<String>,
    pub maxqueue: Option<String>,
    /// `port`: the checked port.
    pub check_port: Option<String>,
    /// `init-addr`: how a host name gets its address at start.
    pub init_addr: Option<String>,
    /// `resolvers`: HAProxy resolves a host name again at run time.
    pub resolvers: Option<String>,
    /// `ssl`, and its `verify`, `ca-file`, `sni`, `verifyhost`.
    pub ssl: bool,
    pub verify: Option<String>,
    pub ca_file: Option<String>,
    pub sni: Option<String>,
    pub verifyhost: Option<String>,
    /// `send-proxy` ("v1") or `send-proxy-v2` ("v2").
    pub send_proxy: Option<String>,
    /// The parameters taken from `default-server` lines, with the line of
    /// each (the others come from the server's own line).
    pub from: BTreeMap<String, usize>,
}

impl Server {
    /// The line parameter `p` came from.
    pub fn at(&self, p: &str) -> usize {
        self.from.get(p).copied().unwrap_or(self.line)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Template {
    pub line: usize,
    pub prefix: String,
    pub count: String,
    pub fqdn: String,
    pub port: Option<String>,
    pub resolvers: Option<String>,
    pub init_addr: Option<String>,
    pub check: bool,
    pub weight: Option<String>,
    /// `resolve-prefer ipv4|ipv6`.
    pub resolve_prefer: Option<String>,
    /// As [`Server::from`].
    pub from: BTreeMap<String, usize>,
}

impl Template {
    /// The line parameter `p` came from.
    pub fn at(&self, p: &str) -> usize {
        self.from.get(p).copied().unwrap_or(self.line)
    }
}

#[derive(Debug, Clone, Default)]
pub struct StickTable {
    pub ty: String,
    pub size: Option<String>,
    pub expire: Option<String>,
    pub peers: Option<String>,
}

/// `stick on|match|store-request src[,ipmask(V4[,V6])]`.
#[derive(Debug, Clone)]
pub struct StickRule {
    /// "on", "match" or "store-request".
    pub what: String,
    pub mask: Option<(u8, Option<u8>)>,
}

#[derive(Debug, Clone)]
pub struct Proxy {
    pub kind: Kind,
    pub name: String,
    pub line: usize,
    pub s: Settings,
    pub binds: Vec<super::bind::Bind>,
    /// `redirect scheme https [code N] [if !{ ssl_fc }]`: (code, only on
    /// cleartext binds).
    pub redirect: Option<At<(u16, bool)>>,
    /// `tcp-request connection expect-proxy layer4 if { src ... }`.
    pub expect_proxy: Option<At<Vec<String>>>,
    pub servers: Vec<Server>,
    pub templates: Vec<Template>,
    pub stick_table: Option<At<StickTable>>,
    pub stick: Vec<At<StickRule>>,
    /// Every parameter of the proxy's own `default-server` lines (also
    /// those a later line replaced): each must act on a server after it.
    pub own_defaults: Vec<DefParam>,
    /// `http-check send [meth M] [uri URI]`: the method and URI given.
    pub check_send: Option<At<(Option<String>, Option<String>)>>,
    /// `http-check expect status CODES`: the codes.
    pub check_expect: Option<At<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct Peers {
    pub name: String,
    pub line: usize,
    /// (name, address or none for the local `server` line, line).
    pub peers: Vec<(String, Option<String>, usize)>,
    pub bind: Option<At<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct Resolvers {
    pub name: String,
    pub line: usize,
    pub nameservers: Vec<At<String>>,
    pub accepted_payload_size: Option<At<String>>,
    pub resolve_retries: Option<At<String>>,
    pub timeout_resolve: Option<At<String>>,
    pub timeout_retry: Option<At<String>>,
    pub hold_nx: Option<At<String>>,
    pub hold_obsolete: Option<At<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct Global {
    pub maxconn: Option<At<String>>,
    pub localpeer: Option<At<String>>,
    /// `server-state-file`, `server-state-base`.
    pub server_state_file: Option<At<String>>,
    pub server_state_base: Option<At<String>>,
    /// `crt-base`, `ssl-default-bind-*`.
    pub ssl: super::bind::SslDefaults,
    /// `log TARGET FACILITY` and `log-tag`.
    pub log: Option<At<super::log::LogLine>>,
    pub log_tag: Option<At<String>>,
}

#[derive(Debug, Default)]
pub struct Cfg {
    pub global: Global,
    pub proxies: Vec<Proxy>,
    pub peers: Vec<Peers>,
    pub resolvers: Vec<Resolvers>,
    pub warnings: Vec<Warning>,
}

/// Keywords skipped with a warning: they concern the process (logging,
/// privileges, HAProxy's own runtime API), not what is served.
pub const SKIPPED_GLOBAL: &[&str] = &[
    "daemon",
    "user",
    "group",
    "uid",
    "gid",
    "chroot",
    "pidfile",
    "stats",
    "nbthread",
    "master-worker",
    "ca-base",
    "crt-base",
];

/// Proxy keywords skipped with a warning.
pub const SKIPPED_PROXY: &[&str] = &["retries"];

pub(super) fn err(line: &Line, keyword: impl Into<String>, reason: impl Into<String>) -> CfgError {
    let keyword = keyword.into();
    let reason = super::keywords::near(&keyword, reason.into());
    CfgError {
        line: line.number,
        keyword,
        reason,
    }
}

/// The value of a one-argument keyword (`maxconn 100`).
fn one(l: &Line) -> Result<String, CfgError> {
    match l.words.as_slice() {
        [_, v] => Ok(v.clone()),
        [k] => Err(err(l, k, "missing its value")),
        [k, ..] => Err(err(l, k, "takes one value")),
        [] => Err(err(l, "", "empty line")),
    }
}

pub fn parse(lines: &[Line]) -> Result<Cfg, CfgError> {
    let mut cfg = Cfg::default();
    // Defaults: the last one seen, and the named ones.
    let mut last_defaults = Settings::default();
    let mut named: BTreeMap<String, Settings> = BTreeMap::new();
    let mut i = 0;
    while i < lines.len() {
        let head = &lines[i];
        let end = (i + 1..lines.len())
            .find(|&j| is_section(&lines[j].words[0]))
            .unwrap_or(lines.len());
        let body = &lines[i + 1..end];
        let w = &head.words;
        match w[0].as_str() {
            "global" => {
                if w.len() > 1 {
                    return Err(err(head, "global", "takes no name"));
                }
                global(&mut cfg, body)?;
            }
            "defaults" => {
                let mut s = Settings::default();
                let name = match w.len() {
                    1 => None,
                    2 => Some(w[1].clone()),
                    _ => return Err(err(head, "defaults", "takes at most a name")),
                };
                for l in body {
                    settings(&mut s, l, None, &mut cfg.warnings)?;
                }
                if let Some(n) = name {
                    named.insert(n, s.clone());
                }
                last_defaults = s;
            }
            k @ ("frontend" | "backend" | "listen") => {
                let kind = match k {
                    "frontend" => Kind::Frontend,
                    "backend" => Kind::Backend,
                    _ => Kind::Listen,
                };
                let (name, from) = match w.as_slice() {
                    [_, n] => (n.clone(), None),
                    [_, n, f, d] if f == "from" => (n.clone(), Some(d.clone())),
                    [_] => return Err(err(head, k, "needs a name")),
                    _ => return Err(err(head, k, "want `NAME` or `NAME from DEFAULTS`")),
                };
                if name.contains('/') || name.contains(' ') {
                    return Err(err(head, k, format!("{name:?}: no '/' or space in a name")));
                }
                let base = match &from {
                    None => last_defaults.clone(),
                    Some(d) => named.get(d).cloned().ok_or_else(|| {
                        err(head, k, format!("no defaults section named {d:?} above"))
                    })?,
                };
                let mut p = Proxy {
                    kind,
                    name,
                    line: head.number,
                    s: base,
                    binds: Vec::new(),
                    redirect: None,
                    expect_proxy: None,
                    servers: Vec::new(),
                    templates: Vec::new(),
                    stick_table: None,
                    stick: Vec::new(),
                    own_defaults: Vec::new(),
                    check_send: None,
                    check_expect: None,
                };
                for l in body {
                    proxy_line(&mut p, l, &mut cfg.warnings)?;
                }
                cfg.proxies.push(p);
            }
            "peers" => {
                let [_, name] = w.as_slice() else {
                    return Err(err(head, "peers", "needs a name"));
                };
                cfg.peers.push(peers(name, head.number, body)?);
            }
            "resolvers" => {
                let [_, name] = w.as_slice() else {
                    return Err(err(head, "resolvers", "needs a name"));
                };
                cfg.resolvers
                    .push(resolvers(name, head.number, body, &mut cfg.warnings)?);
            }
            other => {
                return Err(err(
                    head,
                    other,
                    if i == 0 {
                        "not a section keyword (global, defaults, frontend, backend, listen, \
                         peers, resolvers), and no section is open"
                    } else {
                        "section not supported"
                    },
                ));
            }
        }
        i = end;
    }
    Ok(cfg)
}

/// A line opening a section (of any kind HAProxy has, so that an
/// unsupported one is reported as such rather than as a keyword).
fn is_section(word: &str) -> bool {
    matches!(
        word,
        "global"
            | "defaults"
            | "frontend"
            | "backend"
            | "listen"
            | "peers"
            | "resolvers"
            | "userlist"
            | "cache"
            | "program"
            | "http-errors"
            | "ring"
            | "mailers"
            | "fcgi-app"
            | "namespace_list"
    )
}

fn global(cfg: &mut Cfg, body: &[Line]) -> Result<(), CfgError> {
    for l in body {
        let k = l.words[0].as_str();
        match k {
            "maxconn" => cfg.global.maxconn = Some(at(one(l)?, l.number)),
            "localpeer" => cfg.global.localpeer = Some(at(one(l)?, l.number)),
            "server-state-file" => cfg.global.server_state_file = Some(at(one(l)?, l.number)),
            "server-state-base" => cfg.global.server_state_base = Some(at(one(l)?, l.number)),
            "log" if cfg.global.log.is_some() => {
                return Err(err(l, k, "balancer sends access logs to one global target"));
            }
            "log" => cfg.global.log = Some(at(super::log::log_line(l)?, l.number)),
            "log-tag" => cfg.global.log_tag = Some(at(one(l)?, l.number)),
            _ if super::bind::global_ssl(&mut cfg.global.ssl, l, &mut cfg.warnings)? => {}
            k if SKIPPED_GLOBAL.contains(&k) => cfg.warnings.push(Warning {
                line: l.number,
                text: format!(
                    "global `{k}`: skipped (concerns HAProxy's process, not what is served)"
                ),
            }),
            _ => return Err(err(l, k, "not supported in global")),
        }
    }
    Ok(())
}

/// A keyword `defaults` and proxies share; `kind` is `None` in defaults.
/// Returns whether the line was one.
fn settings(
    s: &mut Settings,
    l: &Line,
    kind: Option<Kind>,
    warnings: &mut Vec<Warning>,
) -> Result<bool, CfgError> {
    let w = &l.words;
    let k = w[0].as_str();
    let where_ = kind.map_or("defaults", Kind::name);
    let need = |ok: bool, what: &str| -> Result<(), CfgError> {
        if ok {
            Ok(())
        } else {
            Err(err(
                l,
                k,
                format!("not in a {where_} section: {what}, which a {where_} does not have"),
            ))
        }
    };
    let front = kind.is_none_or(Kind::front);
    let back = kind.is_none_or(Kind::back);
    match k {
        "mode" => {
            let v = one(l)?;
            if v != "http" && v != "tcp" {
                return Err(err(l, k, format!("{v:?}: want http or tcp")));
            }
            s.mode = Some(at(v, l.number));
        }
        "balance" => {
            need(back, "it balances a backend's servers")?;
            let [_, v] = w.as_slice() else {
                return Err(err(
                    l,
                    k,
                    "want one algorithm (roundrobin, leastconn, source)",
                ));
            };
            s.balance = Some(at(v.clone(), l.number));
        }
        "cookie" => {
            need(back, "a backend's persistence cookie")?;
            if w.len() < 2 {
                return Err(err(l, k, "needs a cookie name"));
            }
            s.cookie = Some(at(w[1..].join(" "), l.number));
        }
        "dynamic-cookie-key" => {
            need(back, "a backend's cookie key")?;
            s.dynamic_cookie_key = Some(at(one(l)?, l.number));
        }
        "maxconn" => {
            need(front, "client connections of a frontend")?;
            s.maxconn = Some(at(one(l)?, l.number));
        }
        "default_backend" => {
            need(front, "a frontend's backend")?;
            s.default_backend = Some(at(one(l)?, l.number));
        }
        "load-server-state-from-file" => {
            need(back, "servers")?;
            let v = one(l)?;
            if v != "global" {
                return Err(err(
                    l,
                    k,
                    format!(
                        "{v:?}: balancer keeps one state file for every backend (`global`, \
                         with the global server-state-file)"
                    ),
                ));
            }
            s.load_state = Some(at(v, l.number));
        }
        "timeout" => {
            let [_, name, v] = w.as_slice() else {
                return Err(err(l, k, "want `timeout NAME VALUE`"));
            };
            let (is_front, is_back) = match name.as_str() {
                "client" | "http-request" | "http-keep-alive" | "client-fin" => (true, false),
                "connect" | "server" | "tunnel" | "server-fin" | "queue" | "check" => (false, true),
                other => {
                    return Err(err(l, format!("timeout {other}"), "not supported"));
                }
            };
            if (is_front && !front) || (is_back && !back) {
                return Err(err(
                    l,
                    format!("timeout {name}"),
                    format!(
                        "a {where_} has no use for it (HAProxy ignores it there with a warning)"
                    ),
                ));
            }
            s.timeouts.insert(name.clone(), at(v.clone(), l.number));
        }
        "option" => {
            let Some(o) = w.get(1) else {
                return Err(err(l, k, "needs an option name"));
            };
            let key = format!("option {o}");
            match o.as_str() {
                "persist" | "redispatch" | "forwardfor" => {
                    need(back, "it concerns a backend")?;
                    if w.len() > 2 {
                        return Err(err(l, key, "takes no arguments here"));
                    }
                    s.options.insert(o.clone(), l.number);
                }
                "httpchk" => {
                    need(back, "it checks a backend's servers")?;
                    // HAProxy's default request is `OPTIONS / HTTP/1.0`.
                    let options = || "OPTIONS".to_owned();
                    let (method, uri) = match &w[2..] {
                        [] => (options(), "/".to_owned()),
                        [uri] => (options(), uri.clone()),
                        [m, uri] => (m.clone(), uri.clone()),
                        [m, uri, v] if v == "HTTP/1.0" => (m.clone(), uri.clone()),
                        _ => {
                            return Err(err(
                                l,
                                key,
                                "want `option httpchk [[METHOD] URI [HTTP/1.0]]`: balancer's \
                                 checks are HTTP/1.0 requests with a Host header and no body",
                            ));
                        }
                    };
                    s.httpchk = Some(at((method, uri), l.number));
                }
                "httplog" | "tcplog" | "dontlognull" => {
                    need(front, "a frontend logs its requests")?;
                    if w.len() > 2 {
                        return Err(err(l, key, "takes no arguments here (no clf)"));
                    }
                    let o = &mut s.log;
                    *match key.as_str() {
                        "option httplog" => &mut o.httplog,
                        "option tcplog" => &mut o.tcplog,
                        _ => &mut o.dontlognull,
                    } = Some(l.number);
                }
                _ => return Err(err(l, key, "not supported")),
            }
        }
        "default-server" => {
            need(back, "it gives parameters to a backend's servers")?;
            for d in default_server(l)? {
                s.default_server.retain(|x| x.name != d.name);
                s.default_server.push(d);
            }
        }
        "http-check" if kind.is_none() => {
            return Err(err(
                l,
                k,
                "not supported in a defaults section (HAProxy gives a proxy the defaults' \
                 check rules only when it has none of its own): write it in each backend",
            ));
        }
        "log" | "no" if k == "log" || w.get(1).is_some_and(|x| x == "log") => {
            if kind == Some(Kind::Backend) {
                warnings.push(Warning {
                    line: l.number,
                    text: "`log` in a backend: skipped (requests are logged by their frontend)"
                        .into(),
                });
            } else {
                s.log.log = Some(at(super::log::log_use(l)?, l.number));
            }
        }
        "retries" => warnings.push(Warning {
            line: l.number,
            text: "`retries`: skipped (balancer sends a request whose server refused the \
                   connection once more, to another server, when it may go elsewhere: not \
                   idempotent or persistent without `option redispatch`, it is answered 503)"
                .into(),
        }),
        _ => return Ok(false),
    }
    Ok(true)
}

fn proxy_line(p: &mut Proxy, l: &Line, warnings: &mut Vec<Warning>) -> Result<(), CfgError> {
    if settings(&mut p.s, l, Some(p.kind), warnings)? {
        if l.words[0] == "default-server" {
            let own = p.s.default_server.iter().filter(|d| d.line == l.number);
            p.own_defaults.extend(own.cloned());
        }
        return Ok(());
    }
    let w = &l.words;
    let k = w[0].as_str();
    let kind = p.kind;
    let not_here = |what: &str| err(l, k, format!("not in a {}: {what}", kind.name()));
    match k {
        "bind" => {
            if !kind.front() {
                return Err(not_here("a backend listens nowhere"));
            }
            p.binds.push(super::bind::bind(l)?);
        }
        "server" => {
            if !kind.back() {
                return Err(not_here("servers belong to a backend"));
            }
            p.servers.push(server(l, &p.s.default_server)?);
        }
        "server-template" => {
            if !kind.back() {
                return Err(not_here("servers belong to a backend"));
            }
            p.templates.push(template(l, &p.s.default_server)?);
        }
        "stick-table" => {
            if !kind.back() {
                return Err(not_here("a stick table belongs to a backend"));
            }
            p.stick_table = Some(at(stick_table(l)?, l.number));
        }
        "stick" => {
            if !kind.back() {
                return Err(not_here(
                    "stick rules belong to a backend (HAProxy ignores them in a frontend)",
                ));
            }
            p.stick.push(at(stick_rule(l)?, l.number));
        }
        "redirect" => {
            if !kind.front() {
                return Err(not_here("a backend receives no request to redirect"));
            }
            p.redirect = Some(at(super::bind::redirect(l)?, l.number));
        }
        "tcp-request" => {
            if !kind.front() {
                return Err(not_here("only a frontend takes PROXY headers from clients"));
            }
            p.expect_proxy = Some(at(super::bind::expect_proxy(l)?, l.number));
        }
        "http-check" => {
            if !kind.back() {
                return Err(not_here("checks belong to a backend"));
            }
            let (send, expect) = (&mut p.check_send, &mut p.check_expect);
            let (slot, what) = match http_check(l)? {
                HttpCheck::Send(meth, uri) => (
                    send.replace(at((meth, uri), l.number)).map(|x| x.line),
                    "send",
                ),
                HttpCheck::Expect(codes) => (
                    expect.replace(at(codes, l.number)).map(|x| x.line),
                    "expect",
                ),
            };
            if let Some(first) = slot {
                return Err(err(
                    l,
                    format!("http-check {what}"),
                    format!(
                        "a second one (line {first}): balancer's checks are one request and \
                         one expected status list"
                    ),
                ));
            }
        }
        "use_backend" => {
            return Err(err(
                l,
                k,
                "not supported: a frontend has one backend here (default_backend)",
            ));
        }
        _ => return Err(err(l, k, format!("not supported in a {}", kind.name()))),
    }
    Ok(())
}

fn peers(name: &str, line: usize, body: &[Line]) -> Result<Peers, CfgError> {
    let mut p = Peers {
        name: name.to_owned(),
        line,
        ..Default::default()
    };
    for l in body {
        let w = &l.words;
        match w[0].as_str() {
            "peer" => {
                let [_, n, addr] = w.as_slice() else {
                    return Err(err(l, "peer", "want `peer NAME ADDRESS:PORT`"));
                };
                p.peers.push((n.clone(), Some(addr.clone()), l.number));
            }
            "server" => match w.as_slice() {
                [_, n] => p.peers.push((n.clone(), None, l.number)),
                [_, n, addr] => p.peers.push((n.clone(), Some(addr.clone()), l.number)),
                _ => {
                    return Err(err(
                        l,
                        "server",
                        "want `server NAME [ADDRESS:PORT]` in peers",
                    ));
                }
            },
            "bind" => p.bind = Some(at(one(l)?, l.number)),
            "table" => {
                return Err(err(
                    l,
                    "table",
                    "tables declared in peers are not supported: declare the stick-table in \
                     its backend with `peers NAME`",
                ));
            }
            k => return Err(err(l, k, "not supported in peers")),
        }
    }
    Ok(p)
}

fn resolvers(
    name: &str,
    line: usize,
    body: &[Line],
    warnings: &mut Vec<Warning>,
) -> Result<Resolvers, CfgError> {
    let mut r = Resolvers {
        name: name.to_owned(),
        line,
        ..Default::default()
    };
    for l in body {
        let w = &l.words;
        let k = w[0].as_str();
        match (k, w.as_slice()) {
            ("nameserver", [_, _, addr]) => r.nameservers.push(at(addr.clone(), l.number)),
            ("nameserver", _) => return Err(err(l, k, "want `nameserver NAME ADDRESS:PORT`")),
            ("accepted_payload_size", _) => {
                r.accepted_payload_size = Some(at(one(l)?, l.number));
            }
            ("resolve_retries", _) => r.resolve_retries = Some(at(one(l)?, l.number)),
            ("timeout", [_, t, v]) if t == "resolve" => {
                r.timeout_resolve = Some(at(v.clone(), l.number));
            }
            ("timeout", [_, t, v]) if t == "retry" => {
                r.timeout_retry = Some(at(v.clone(), l.number));
            }
            ("hold", [_, t, v]) if t == "nx" => r.hold_nx = Some(at(v.clone(), l.number)),
            ("hold", [_, t, v]) if t == "obsolete" => {
                r.hold_obsolete = Some(at(v.clone(), l.number));
            }
            ("hold", [_, t, _])
                if matches!(t.as_str(), "valid" | "other" | "refused" | "timeout") =>
            {
                warnings.push(Warning {
                    line: l.number,
                    text: format!(
                        "resolvers `hold {t}`: skipped (balancer keeps the last known servers \
                         through any failed resolution, and re-resolves every `timeout resolve`)"
                    ),
                });
            }
            _ => return Err(err(l, k, "not supported in resolvers")),
        }
    }
    Ok(r)
}
