//! The sections of a haproxy.cfg (`sections`) as balancer's TOML, each
//! line remembering the haproxy.cfg line it came from: the TOML validator
//! then checks it like any other file, and its errors name the .cfg line.

use super::{
    CfgError, Lookup, Options, Warning,
    sections::{Cfg, Kind, Proxy, StickRule},
    servers::{http_check, send_proxy, server, server_ssl, template, unused_defaults},
};

/// TOML text with, for each of its lines, the .cfg line it came from (0:
/// none).
#[derive(Debug, Default)]
pub struct Emitter {
    pub text: String,
    pub sources: Vec<usize>,
    pub warnings: Vec<Warning>,
    /// The `default-server` parameters written for some server: (line,
    /// name).
    pub used: std::collections::BTreeSet<(usize, String)>,
    /// Servers whose address was a host name: (backend, server, name).
    pub hosts: Vec<(String, String, String)>,
}

impl Emitter {
    pub(super) fn line(&mut self, source: usize, text: impl AsRef<str>) {
        for l in text.as_ref().split('\n') {
            self.text.push_str(l);
            self.text.push('\n');
            self.sources.push(source);
        }
    }

    /// `key = "value"` (a TOML string).
    pub(super) fn string(&mut self, source: usize, key: &str, value: &str) {
        self.line(source, format!("{key} = {}", quote(value)));
    }

    /// `key = value` where the value is a bare TOML number (validated by
    /// the caller's type: a non-number is quoted so the validator names it).
    pub(super) fn number(&mut self, source: usize, key: &str, value: &str) {
        if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) && value.len() < 19 {
            self.line(source, format!("{key} = {value}"));
        } else {
            self.string(source, key, value);
        }
    }
}

pub fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

pub(super) fn err(line: usize, keyword: &str, reason: impl Into<String>) -> CfgError {
    CfgError {
        line,
        keyword: keyword.to_owned(),
        reason: reason.into(),
    }
}

/// HAProxy's sizes are powers of two (`1m` = 1,048,576); balancer's TOML
/// reads a plain number of entries.
fn haproxy_size(line: usize, s: &str) -> Result<String, CfgError> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| err(line, "stick-table size", format!("{s:?} is not a size")))?;
    Ok(n.saturating_mul(mult).to_string())
}

pub fn emit(cfg: &Cfg, opts: &Options, lookup: &Lookup<'_>) -> Result<Emitter, CfgError> {
    let mut e = Emitter::default();
    let http_any = cfg
        .proxies
        .iter()
        .any(|p| p.kind.front() && mode(p) == "http");
    // [dataplane]: from the command line (HAProxy has no such settings).
    e.line(
        0,
        "# balancer's own settings (command line of `balancer run|convert`)",
    );
    e.line(0, "[dataplane]");
    let ifs: Vec<String> = opts.interfaces.iter().map(|i| quote(i)).collect();
    e.line(0, format!("interfaces = [{}]", ifs.join(", ")));
    if let Some(m) = &opts.xdp_mode {
        e.string(0, "xdp_mode", m);
    }
    if let Some(d) = &opts.pin_dir {
        e.string(0, "pin_dir", d);
    }
    if let Some(s) = &opts.admin_socket {
        e.line(0, "\n[admin]");
        e.string(0, "socket", s);
    }
    let tls_any = cfg
        .proxies
        .iter()
        .any(|p| p.binds.iter().any(|b| b.tls.is_some()));
    let d = &cfg.global.ssl;
    for (k, v) in [
        ("crt-base", &d.crt_base),
        ("ssl-default-bind-ciphers", &d.ciphers),
        ("ssl-default-bind-ciphersuites", &d.ciphersuites),
        ("ssl-default-bind-options", &d.min),
        ("ssl-default-bind-options", &d.max),
    ] {
        if let (Some(v), false) = (v, tls_any) {
            return Err(err(
                v.line,
                k,
                "no `bind` has `ssl`: this setting of TLS binds would do nothing",
            ));
        }
    }
    let state_file = server_state_file(cfg)?;
    if let Some((line, path)) = &state_file {
        e.line(*line, "\n[global]");
        e.string(*line, "server_state_file", path);
    }
    match &cfg.global.maxconn {
        Some(m) if http_any => {
            if state_file.is_none() {
                e.line(m.line, "\n[global]");
            }
            e.number(m.line, "maxconn", &m.v);
        }
        Some(m) => e.warnings.push(Warning {
            line: m.line,
            text: "global `maxconn`: skipped (it bounds the HTTP proxy's client connections, and \
                   no frontend is mode http)"
                .into(),
        }),
        None => {}
    }
    super::log::unused_global(cfg, &mut e);
    for r in &cfg.resolvers {
        e.line(
            r.line,
            format!("\n# resolvers {} (line {})", r.name, r.line),
        );
        e.line(r.line, format!("[resolvers.{}]", quote(&r.name)));
        let ns: Vec<String> = r.nameservers.iter().map(|n| quote(&n.v)).collect();
        let first = r.nameservers.first().map_or(r.line, |n| n.line);
        e.line(first, format!("nameservers = [{}]", ns.join(", ")));
        if let Some(v) = &r.accepted_payload_size {
            e.number(v.line, "accepted_payload_size", &v.v);
        }
        if let Some(v) = &r.resolve_retries {
            e.number(v.line, "retries", &v.v);
        }
        for (key, v) in [
            ("refresh", &r.timeout_resolve),
            ("timeout", &r.timeout_retry),
            ("hold_nx", &r.hold_nx),
            ("hold_obsolete", &r.hold_obsolete),
        ] {
            if let Some(v) = v {
                e.string(v.line, key, &v.v);
            }
        }
    }
    peers(cfg, opts, &mut e)?;
    for p in cfg.proxies.iter().filter(|p| p.kind.front()) {
        frontend(cfg, p, &mut e)?;
    }
    for p in cfg.proxies.iter().filter(|p| p.kind.back()) {
        // Used by a frontend (an unused backend is refused as such).
        let used = p.kind == Kind::Listen
            || cfg.proxies.iter().any(|f| {
                f.kind.front() && f.s.default_backend.as_ref().is_some_and(|b| b.v == p.name)
            });
        backend(p, &mut e, lookup, used, opts.forward.as_ref())?;
    }
    // --forward acts on mode tcp backends only.
    if opts.forward.is_some()
        && !cfg
            .proxies
            .iter()
            .any(|p| p.kind.back() && mode(p) != "http")
    {
        return Err(err(
            0,
            "--forward",
            "no mode tcp backend: the forwarding mode of the XDP path would have no effect",
        ));
    }
    Ok(e)
}

/// `server-state-file` (under `server-state-base`), which every backend
/// must load (`load-server-state-from-file global`, in it or its defaults):
/// balancer keeps one file for all of them. (line, absolute path).
fn server_state_file(cfg: &Cfg) -> Result<Option<(usize, String)>, CfgError> {
    let g = &cfg.global;
    let backs = || cfg.proxies.iter().filter(|p| p.kind.back());
    let Some(file) = &g.server_state_file else {
        if let Some(b) = &g.server_state_base {
            return Err(err(
                b.line,
                "server-state-base",
                "no server-state-file to place",
            ));
        }
        if let Some(l) = backs().find_map(|p| p.s.load_state.as_ref()) {
            return Err(err(
                l.line,
                "load-server-state-from-file",
                "no global server-state-file: nothing to load",
            ));
        }
        return Ok(None);
    };
    if let Some(p) = backs().find(|p| p.s.load_state.is_none()) {
        return Err(err(
            p.line,
            "load-server-state-from-file",
            format!(
                "backend {} does not load the server-state-file, and balancer keeps the runtime \
                 changes of every backend: add `load-server-state-from-file global` to it or its \
                 defaults",
                p.name
            ),
        ));
    }
    let path = match (&g.server_state_base, file.v.starts_with('/')) {
        (_, true) => file.v.clone(),
        (Some(b), false) => format!("{}/{}", b.v.trim_end_matches('/'), file.v),
        (None, false) => {
            return Err(err(
                file.line,
                "server-state-file",
                "a relative path needs server-state-base (or give an absolute path)",
            ));
        }
    };
    Ok(Some((file.line, path)))
}

fn mode(p: &Proxy) -> &str {
    // HAProxy's default mode is tcp.
    p.s.mode.as_ref().map_or("tcp", |m| m.v.as_str())
}

fn peers(cfg: &Cfg, opts: &Options, e: &mut Emitter) -> Result<(), CfgError> {
    for p in &cfg.peers {
        let local = opts
            .local_peer
            .clone()
            .or_else(|| cfg.global.localpeer.as_ref().map(|l| l.v.clone()))
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .unwrap_or_default();
        let Some(secret) = &opts.peers_secret else {
            return Err(err(
                p.line,
                "peers",
                "balancer authenticates its peer links with a shared secret, which HAProxy's \
                 peers do not have: give it with --peers-secret-file FILE",
            ));
        };
        e.line(p.line, format!("\n# peers {} (line {})", p.name, p.line));
        e.line(p.line, format!("[peers.{}]", quote(&p.name)));
        e.string(p.line, "local", &local);
        e.string(p.line, "secret", secret);
        e.line(p.line, format!("[peers.{}.peer]", quote(&p.name)));
        for (name, addr, line) in &p.peers {
            let addr = match (addr, &p.bind) {
                (Some(a), _) => a.clone(),
                (None, Some(b)) => b.v.clone(),
                (None, None) => {
                    return Err(err(
                        *line,
                        "server",
                        "the local peer's `server` line needs the section's `bind`",
                    ));
                }
            };
            e.string(*line, &quote(name), &addr);
        }
    }
    Ok(())
}

/// `bind` addresses as balancer takes them: `:80` and `*:80` are every
/// IPv4 address.
fn bind_addr(b: &str) -> String {
    match b.strip_prefix('*').unwrap_or(b) {
        s if s.starts_with(':') => format!("0.0.0.0{s}"),
        s => s.to_owned(),
    }
}

fn frontend(cfg: &Cfg, p: &Proxy, e: &mut Emitter) -> Result<(), CfgError> {
    let backend = match p.kind {
        Kind::Listen => p.name.clone(),
        _ => match &p.s.default_backend {
            Some(b) => {
                if !cfg.proxies.iter().any(|x| x.kind.back() && x.name == b.v) {
                    return Err(err(
                        b.line,
                        "default_backend",
                        format!("no backend named {:?}", b.v),
                    ));
                }
                b.v.clone()
            }
            None => {
                return Err(err(
                    p.line,
                    p.kind.name(),
                    format!("{} has no default_backend", p.name),
                ));
            }
        },
    };
    if p.binds.is_empty() {
        return Err(err(
            p.line,
            p.kind.name(),
            format!("{} has no bind", p.name),
        ));
    }
    let http = mode(p) == "http";
    for (i, b) in p.binds.iter().enumerate() {
        let name = if i == 0 {
            p.name.clone()
        } else {
            format!("{}:{}", p.name, i + 1)
        };
        e.line(
            p.line,
            format!("\n# {} {} (line {})", p.kind.name(), p.name, p.line),
        );
        e.line(p.line, "[[frontend]]");
        e.string(p.line, "name", &name);
        e.string(b.addr.line, "bind", &bind_addr(&b.addr.v));
        let mline = p.s.mode.as_ref().map_or(p.line, |m| m.line);
        e.string(mline, "mode", if http { "http" } else { "l4" });
        e.string(p.line, "default_backend", &backend);
        super::log::emit(cfg, p, http, e)?;
        if !http {
            if let Some(x) = &p.expect_proxy {
                return Err(err(
                    x.line,
                    "tcp-request connection expect-proxy",
                    "in a mode tcp frontend: the XDP path forwards packets and reads no header",
                ));
            }
            if let Some(r) = &p.redirect {
                return Err(err(
                    r.line,
                    "redirect",
                    "in a mode tcp frontend: the XDP path sees packets, not requests",
                ));
            }
            if let Some(t) = &b.tls {
                return Err(err(
                    t.line,
                    "bind ssl",
                    "TLS on a mode tcp frontend: the XDP path forwards packets and terminates \
                     no connection (use mode http)",
                ));
            }
            continue;
        }
        if let Some(m) = &p.s.maxconn {
            e.number(m.line, "maxconn", &m.v);
        }
        for (t, key) in [
            ("client", "timeout_client"),
            ("http-request", "timeout_http_request"),
            ("http-keep-alive", "timeout_http_keep_alive"),
            ("client-fin", "timeout_client_fin"),
        ] {
            if let Some(v) = p.s.timeouts.get(t) {
                e.string(v.line, key, &v.v);
            }
        }
        // HAProxy refuses a request head larger than its buffer less the
        // room it keeps for rewrites (tune.bufsize 16384 - tune.maxrewrite
        // 1024, its defaults, which this reader does not change).
        e.line(p.line, "max_header_bytes = 15360");
        match (&p.redirect, &b.tls) {
            (Some(r), None) => {
                e.line(
                    r.line,
                    format!("redirect = {{ scheme = \"https\", code = {} }}", r.v.0),
                );
            }
            (Some(r), Some(_)) if !r.v.1 => {
                return Err(err(
                    r.line,
                    "redirect",
                    "on a frontend with an ssl bind and no `if !{ ssl_fc }`: its https clients \
                     would be sent back to themselves",
                ));
            }
            _ => {}
        }
        if let Some(t) = &b.tls {
            tls(&cfg.global.ssl, t, e);
        }
        if let Some(x) = &p.expect_proxy {
            let nets: Vec<String> = x.v.iter().map(|n| quote(n)).collect();
            e.line(x.line, "accept_proxy = true");
            e.line(x.line, format!("accept_proxy_from = [{}]", nets.join(", ")));
        }
    }
    Ok(())
}

/// A bind's `ssl` options (and the global defaults it takes) as the
/// frontend's `[frontend.tls]`.
fn tls(d: &super::bind::SslDefaults, t: &super::bind::BindTls, e: &mut Emitter) {
    e.line(t.line, "[frontend.tls]");
    let crt: Vec<String> = t
        .crt
        .iter()
        .map(|c| match &d.crt_base {
            Some(base) if !c.starts_with('/') => {
                quote(&format!("{}/{c}", base.v.trim_end_matches('/')))
            }
            _ => quote(c),
        })
        .collect();
    e.line(t.line, format!("crt = [{}]", crt.join(", ")));
    // HAProxy 2.6 offers no ALPN unless told: HTTP/1.1.
    let alpn: Vec<String> = t
        .alpn
        .as_deref()
        .unwrap_or("http/1.1")
        .split(',')
        .map(quote)
        .collect();
    e.line(t.line, format!("alpn = [{}]", alpn.join(", ")));
    let inherited = |own: &Option<String>, global: &Option<super::sections::At<String>>| {
        own.as_ref()
            .map(|v| (t.line, v.clone()))
            .or_else(|| global.as_ref().map(|g| (g.line, g.v.clone())))
    };
    let min = inherited(&t.min, &d.min);
    let max = inherited(&t.max, &d.max);
    let only13 = min.as_ref().is_some_and(|(_, v)| v == "TLSv1.3");
    let only12 = max.as_ref().is_some_and(|(_, v)| v == "TLSv1.2");
    if let Some((line, v)) = min {
        e.string(line, "ssl_min_ver", &v);
    }
    if let Some((line, v)) = max {
        e.string(line, "ssl_max_ver", &v);
    }
    // A global list of the version this bind does not speak is a default
    // that does not apply to it; its own is refused by the validator.
    let known: Vec<&str> = crate::config::TLS12_SUITES
        .iter()
        .map(|(o, _)| *o)
        .collect();
    let own_or_global = |own: &Option<String>, global, skip: bool| match own {
        Some(_) => inherited(own, &None),
        None if skip => None,
        None => inherited(own, global),
    };
    if let Some((line, v)) = own_or_global(&t.ciphers, &d.ciphers, only13) {
        let list = super::bind::cipher_list(&v, line, &known, &mut e.warnings);
        e.string(line, "ciphers", &list);
    }
    if let Some((line, v)) = own_or_global(&t.ciphersuites, &d.ciphersuites, only12) {
        e.string(line, "ciphersuites", &v);
    }
}

fn backend(
    p: &Proxy,
    e: &mut Emitter,
    lookup: &Lookup<'_>,
    used: bool,
    forward: Option<&String>,
) -> Result<(), CfgError> {
    let http = mode(p) == "http";
    e.line(
        p.line,
        format!("\n# {} {} (line {})", p.kind.name(), p.name, p.line),
    );
    e.line(p.line, "[[backend]]");
    e.string(p.line, "name", &p.name);
    if let (false, Some(f)) = (http, forward) {
        e.string(0, "forward", f);
    }
    if let Some(b) = &p.s.balance {
        if http {
            e.string(b.line, "balance", &b.v);
        } else if b.v != "source" && b.line > p.line {
            return Err(err(
                b.line,
                "balance",
                format!(
                    "{:?}: a mode tcp backend runs on the XDP path, where new clients are \
                     spread by consistent hashing of their source address: use `balance source`",
                    b.v
                ),
            ));
        }
    }
    if let Some(c) = &p.s.cookie {
        e.string(c.line, "cookie", &c.v);
    }
    if let Some(k) = &p.s.dynamic_cookie_key {
        e.string(k.line, "dynamic_cookie_key", &k.v);
    }
    // A setting a `defaults` section gives every proxy is written only where
    // it acts (the validator refuses a key without effect, which is right
    // for a proxy's own lines, not for the defaults' blanket ones).
    let inherited = |line: usize| line < p.line;
    let persistent = p.s.cookie.is_some()
        || p.stick
            .iter()
            .any(|r| r.v.what == "on" || r.v.what == "match");
    let opts: Vec<(&str, usize)> = ["persist", "redispatch"]
        .iter()
        .filter_map(|o| p.s.options.get(*o).map(|l| (*o, *l)))
        .filter(|(_, l)| persistent || !inherited(*l))
        .collect();
    if !opts.is_empty() {
        let list: Vec<String> = opts.iter().map(|(o, _)| quote(o)).collect();
        e.line(opts[0].1, format!("options = [{}]", list.join(", ")));
    }
    // HAProxy adds `X-Forwarded-For` only with `option forwardfor`;
    // balancer's TOML adds it unless told not to.
    if http && used && !p.s.options.contains_key("forwardfor") {
        e.line(p.line, "x_forwarded_for = false");
    }
    for (t, key) in [
        ("connect", "timeout_connect"),
        ("server", "timeout_server"),
        ("tunnel", "timeout_tunnel"),
        ("server-fin", "timeout_server_fin"),
        ("queue", "timeout_queue"),
    ] {
        let queues = p.servers.iter().any(|s| s.maxconn.is_some());
        if let Some(v) =
            p.s.timeouts
                .get(t)
                .filter(|_| http)
                .filter(|v| t != "queue" || queues || !inherited(v.line))
        {
            e.string(v.line, key, &v.v);
        }
    }
    let checked = p.servers.iter().any(|s| s.check) || p.templates.iter().any(|t| t.check);
    http_check(p, e)?;
    if let Some(t) = p.s.timeouts.get("check").filter(|_| checked) {
        e.string(t.line, "check_timeout", &t.v);
    }
    // `port` (the checked port) is one per backend here: the checked
    // servers must agree on it, and it means nothing on an unchecked one.
    if let Some(s) = p
        .servers
        .iter()
        .find(|s| s.check_port.is_some() && !s.check && !s.from.contains_key("port"))
    {
        return Err(err(
            s.line,
            "server port",
            "the checked port of a server without `check`: it would have no effect",
        ));
    }
    let ports: Vec<(&String, usize)> = p
        .servers
        .iter()
        .filter(|s| s.check)
        .filter_map(|s| s.check_port.as_ref().map(|c| (c, s.at("port"))))
        .collect();
    if let Some((first, line)) = ports.first() {
        let checked = p.servers.iter().filter(|s| s.check).count();
        if ports.iter().any(|(c, _)| c != first) || ports.len() != checked {
            return Err(err(
                *line,
                "server port",
                "the checked port is one per backend here: give every checked server the same \
                 `port`",
            ));
        }
        e.number(*line, "check_port", first);
    }
    server_ssl(p, http, e)?;
    send_proxy(p, http, e)?;
    stick(p, http, e)?;
    template(p, http, e)?;
    for s in &p.servers {
        server(p, s, http, e, lookup)?;
    }
    unused_defaults(p, e)?;
    Ok(())
}

pub(super) fn number_or_string(v: &str) -> String {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) && v.len() < 19 {
        v.to_owned()
    } else {
        quote(v)
    }
}

fn stick(p: &Proxy, http: bool, e: &mut Emitter) -> Result<(), CfgError> {
    let Some(t) = &p.stick_table else {
        if let Some(r) = p.stick.first() {
            return Err(err(
                r.line,
                "stick",
                format!(
                    "backend {} has no stick-table (HAProxy: unable to find stick-table)",
                    p.name
                ),
            ));
        }
        if !http {
            return Err(err(
                p.line,
                p.kind.name(),
                "a mode tcp backend runs on the XDP path, which always sticks clients by source \
                 address: declare it (`stick-table type ip size 1m expire 30m` + `stick on src`)",
            ));
        }
        return Ok(());
    };
    let masks: Vec<&(u8, Option<u8>)> = p.stick.iter().filter_map(|r| r.v.mask.as_ref()).collect();
    if let Some(m) = masks.first()
        && (masks.iter().any(|x| x != m) || masks.len() != p.stick.len())
    {
        {
            return Err(err(
                p.stick[0].line,
                "stick",
                "every stick rule of a backend must use the same key (the same ipmask)",
            ));
        }
    }
    let mut fields = vec![format!("type = {}", quote(&t.v.ty))];
    if let Some(s) = &t.v.size {
        fields.push(format!("size = {}", quote(&haproxy_size(t.line, s)?)));
    }
    if let Some(x) = &t.v.expire {
        fields.push(format!("expire = {}", quote(x)));
    }
    if let Some(pe) = &t.v.peers {
        fields.push(format!("peers = {}", quote(pe)));
    }
    if let Some((v4, v6)) = masks.first() {
        if *v4 < 32 {
            fields.push(format!("key_mask_v4 = {v4}"));
        }
        if let Some(v6) = v6.filter(|v6| *v6 < 128) {
            fields.push(format!("key_mask_v6 = {v6}"));
        }
    }
    e.line(t.line, format!("stick_table = {{ {} }}", fields.join(", ")));
    if http {
        let rules: Vec<String> = p
            .stick
            .iter()
            .map(|r: &super::sections::At<StickRule>| quote(&format!("{} src", r.v.what)))
            .collect();
        if let Some(first) = p.stick.first() {
            e.line(first.line, format!("stick = [{}]", rules.join(", ")));
        }
    } else if !(p.stick.iter().any(|r| r.v.what == "on")
        || (p.stick.iter().any(|r| r.v.what == "match")
            && p.stick.iter().any(|r| r.v.what == "store-request")))
    {
        return Err(err(
            t.line,
            "stick-table",
            "a mode tcp backend runs on the XDP path, which matches and stores every client: \
             it needs `stick on src` (or match and store-request together)",
        ));
    }
    Ok(())
}
