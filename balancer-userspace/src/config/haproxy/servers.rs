//! The servers of a backend as TOML: `server` lines (with the parameters
//! of the `default-server` lines above them, written where they act),
//! the `server-template`, and the HTTP check (`option httpchk`,
//! `http-check`).

use std::fmt::Write as _;

use super::{
    CfgError, Lookup,
    emit::{Emitter, err, number_or_string, quote},
    lookup::{host_port, look_up},
    sections::{Proxy, Server},
};

/// `option httpchk` and the `http-check` lines as the backend's check.
pub(super) fn http_check(p: &Proxy, e: &mut Emitter) -> Result<(), CfgError> {
    if let Some(h) = &p.s.httpchk {
        // `http-check send` replaces what it gives of `option httpchk`'s
        // request (checked with a listener: `option httpchk POST /p` and
        // `http-check send meth GET` send `GET /p`).
        // A backend's own http-check lines replace the rules it would take
        // from its defaults section, the request of that section's `option
        // httpchk` included (HAProxy, on a listener: no request at all
        // without an own `send`, else `send`'s with OPTIONS and / where
        // it names none).
        let send = p.check_send.as_ref();
        let own_rules = send.is_some() || p.check_expect.is_some();
        let base = if h.line < p.line && own_rules {
            let Some(s) = send else {
                let line = p.check_expect.as_ref().map_or(p.line, |x| x.line);
                return Err(err(
                    line,
                    "http-check",
                    "HAProxy sends no request here: a backend's own http-check rules replace \
                     those of its defaults section, the request of its `option httpchk` \
                     included (add `http-check send`, or `option httpchk`, to this backend)",
                ));
            };
            (("OPTIONS".to_owned(), s.line), ("/".to_owned(), s.line))
        } else {
            ((h.v.0.clone(), h.line), (h.v.1.clone(), h.line))
        };
        let pick = |given: Option<&String>, base: (String, usize)| match (send, given) {
            (Some(s), Some(v)) => (v.clone(), s.line),
            _ => base,
        };
        let method = pick(send.and_then(|s| s.v.0.as_ref()), base.0);
        let uri = pick(send.and_then(|s| s.v.1.as_ref()), base.1);
        e.string(h.line, "check_type", "http");
        e.string(uri.1, "check_path", &uri.0);
        if method.0 != "GET" {
            e.string(method.1, "check_method", &method.0);
        }
        if let Some(x) = &p.check_expect {
            e.string(x.line, "check_status", &x.v);
        }
    } else if let Some(line) = p
        .check_send
        .as_ref()
        .map(|x| x.line)
        .or(p.check_expect.as_ref().map(|x| x.line))
    {
        return Err(err(
            line,
            "http-check",
            "the backend has no `option httpchk`, without which HAProxy ignores http-check \
             rules (with a warning): it would have no effect",
        ));
    }
    Ok(())
}

/// The backend's `server-template`, with its `default-server` parameters.
pub(super) fn template(p: &Proxy, http: bool, e: &mut Emitter) -> Result<(), CfgError> {
    if let Some(t) = p.templates.first() {
        if p.templates.len() > 1 {
            return Err(err(
                p.templates[1].line,
                "server-template",
                "one per backend",
            ));
        }
        // A table of its own, so that each key names its own line (a
        // parameter from `default-server` has that line's).
        e.line(t.line, "[backend.server_template]");
        e.string(t.line, "prefix", &t.prefix);
        e.number(t.line, "count", &t.count);
        e.string(t.line, "fqdn", &t.fqdn);
        if let Some(port) = &t.port {
            e.number(t.line, "port", port);
        }
        // HAProxy prefers IPv6 unless told; an L4 backend takes its VIP's
        // family whatever the file says (an explicit one is refused).
        let prefer = t
            .resolve_prefer
            .clone()
            .or_else(|| http.then(|| "ipv6".to_owned()));
        for (k, key, v) in [
            ("resolvers", "resolvers", &t.resolvers),
            ("init-addr", "init_addr", &t.init_addr),
            ("resolve-prefer", "resolve_prefer", &prefer),
        ] {
            if let Some(v) = v {
                e.string(t.at(k), key, v);
            }
        }
        if let Some(w) = &t.weight {
            e.number(t.at("weight"), "weight", w);
        }
        if t.check {
            e.line(t.at("check"), "check = true");
        }
        for (k, line) in &t.from {
            e.used.insert((*line, k.clone()));
        }
    }
    Ok(())
}

/// Refuse a parameter of the proxy's own `default-server` lines that no
/// server after it took.
pub(super) fn unused_defaults(p: &Proxy, e: &Emitter) -> Result<(), CfgError> {
    // The proxy's own `default-server` lines must act on a server after
    // them (those of a `defaults` section are for every proxy, and act
    // where they can).
    if let Some(d) = p
        .own_defaults
        .iter()
        .find(|d| !e.used.contains(&(d.line, d.name.clone())))
    {
        return Err(err(
            d.line,
            &format!("default-server {}", d.name),
            "no server or server-template after this line takes it where it acts (HAProxy \
             gives a default-server's parameters to the servers that follow it, not to those \
             above; `inter`, `rise`, `fall` and `port` act on checked servers, `maxqueue` with \
             `maxconn`, `cookie` with the backend's cookie): it would have no effect",
        ));
    }
    Ok(())
}

/// Whether server parameter `k` acts on `s` in backend `p`: a parameter
/// of `default-server` is given to every server after it, and written only
/// where it acts (HAProxy ignores it elsewhere too); the server's own
/// parameters are all written, for the validator to judge.
fn acts(p: &Proxy, s: &Server, k: &str) -> bool {
    if !s.from.contains_key(k) {
        return true;
    }
    match k {
        "init-addr" | "resolvers" => host_port(s.address.as_deref().unwrap_or("")).is_some(),
        "inter" | "rise" | "fall" | "port" => s.check,
        "maxqueue" => s.maxconn.is_some(),
        "cookie" => p.s.cookie.is_some(),
        _ => true,
    }
}

pub(super) fn server(
    p: &Proxy,
    s: &Server,
    http: bool,
    e: &mut Emitter,
    lookup: &Lookup<'_>,
) -> Result<(), CfgError> {
    let Some(addr) = &s.address else {
        return Err(err(
            s.line,
            "server",
            format!(
                "server {} has no address (HAProxy's guide leaves them out of its examples: \
                 add IP:PORT after the name)",
                s.name
            ),
        ));
    };
    let name = host_port(addr);
    for k in ["init-addr", "resolvers"] {
        let own = !s.from.contains_key(k);
        let set = if k == "init-addr" {
            s.init_addr.is_some()
        } else {
            s.resolvers.is_some()
        };
        if !set || (!own && !acts(p, s, k)) {
            continue;
        }
        if k == "resolvers" {
            return Err(err(
                s.at(k),
                "server resolvers",
                "resolving a server's name again at run time is not supported (its name is \
                 looked up once, when the file is read; server-template follows DNS)",
            ));
        }
        if name.is_none() {
            return Err(err(
                s.at(k),
                "server init-addr",
                format!(
                    "server {}'s address is an IP address: it would have no effect",
                    s.name
                ),
            ));
        }
        e.used.insert((s.at(k), k.to_owned()));
    }
    let mut out = String::new();
    let _ = write!(out, "[[backend.server]]\nname = {}", quote(&s.name));
    e.line(s.line, out);
    let addr = &match name {
        Some((host, port)) => {
            let found = look_up(&p.name, s, host, port, lookup)?;
            e.hosts
                .push((p.name.clone(), s.name.clone(), host.to_owned()));
            e.line(
                s.line,
                format!("# {addr}: looked up when the file was read"),
            );
            found
        }
        None => addr.clone(),
    };
    let address = if http {
        addr.clone()
    } else {
        // The XDP path keeps the VIP's port.
        match addr.parse::<std::net::SocketAddr>() {
            Ok(sa) => sa.ip().to_string(),
            Err(_) => addr.clone(),
        }
    };
    e.string(s.line, "address", &address);
    let mut used = |k: &str| {
        let on = acts(p, s, k);
        if on && let Some(line) = s.from.get(k) {
            e.used.insert((*line, k.to_owned()));
        }
        on
    };
    let flags = [
        ("disabled", s.disabled, "state = \"maint\""),
        ("check", s.check, "check = true"),
    ];
    let strings = [("cookie", &s.cookie), ("inter", &s.inter)];
    let numbers = [
        ("weight", &s.weight),
        ("rise", &s.rise),
        ("fall", &s.fall),
        ("maxconn", &s.maxconn),
        ("maxqueue", &s.maxqueue),
    ];
    let mut lines = Vec::new();
    for (k, v) in strings {
        if let Some(v) = v.as_ref().filter(|_| used(k)) {
            lines.push((s.at(k), format!("{k} = {}", quote(v))));
        }
    }
    for (k, v) in numbers {
        if let Some(v) = v.as_ref().filter(|_| used(k)) {
            lines.push((s.at(k), format!("{k} = {}", number_or_string(v))));
        }
    }
    for (k, on, text) in flags {
        if on && used(k) {
            lines.push((s.at(k), text.to_owned()));
        }
    }
    if s.check_port.is_some() {
        // Written once per backend (check_port); counted here.
        used("port");
    }
    for (line, text) in lines {
        e.line(line, text);
    }
    Ok(())
}

/// A server's (verify, ca-file, name checked and sent).
type SslWords = (Option<String>, Option<String>, Option<String>);

/// The TLS words of a server line.
const SSL_WORDS: [&str; 5] = ["ssl", "verify", "ca-file", "sni", "verifyhost"];

/// The servers' `ssl verify ... ca-file ... sni str(NAME)` as the
/// backend's `ssl` (balancer's TLS to servers is one setting per backend:
/// every server must say the same).
pub(super) fn server_ssl(p: &Proxy, http: bool, e: &mut Emitter) -> Result<(), CfgError> {
    // A server's own TLS word without `ssl` would do nothing (those from
    // default-server are for servers with `ssl`).
    for s in p.servers.iter().filter(|s| !s.ssl) {
        for (k, set) in [
            ("verify", s.verify.is_some()),
            ("ca-file", s.ca_file.is_some()),
            ("sni", s.sni.is_some()),
            ("verifyhost", s.verifyhost.is_some()),
        ] {
            if set && !s.from.contains_key(k) {
                return Err(err(
                    s.line,
                    &format!("server {k}"),
                    "without `ssl` on this server: it would have no effect",
                ));
            }
        }
    }
    let Some(first) = p.servers.iter().find(|s| s.ssl) else {
        return Ok(());
    };
    if !http {
        return Err(err(
            first.at("ssl"),
            "server ssl",
            "in a mode tcp backend: the XDP path forwards packets and makes no connection",
        ));
    }
    if let Some(plain) = p.servers.iter().find(|s| !s.ssl) {
        return Err(err(
            plain.line,
            "server",
            format!(
                "server {} has no `ssl` while {} has: TLS to servers is one setting per \
                 backend here",
                plain.name, first.name
            ),
        ));
    }
    let settings = |s: &Server| -> Result<SslWords, CfgError> {
        let sni = match &s.sni {
            None => None,
            Some(v) => Some(
                v.strip_prefix("str(")
                    .and_then(|r| r.strip_suffix(')'))
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        err(
                            s.at("sni"),
                            "server sni",
                            format!("{v:?}: only `sni str(NAME)` is supported (a fixed name)"),
                        )
                    })?,
            ),
        };
        let name = match (sni, &s.verifyhost) {
            (Some(a), Some(b)) if &a != b => {
                return Err(err(
                    s.at("verifyhost"),
                    "server verifyhost",
                    "differs from `sni`: balancer checks the certificate for the name it sends",
                ));
            }
            (a, b) => a.or_else(|| b.clone()),
        };
        Ok((s.verify.clone(), s.ca_file.clone(), name))
    };
    let want = settings(first)?;
    for s in &p.servers {
        if settings(s)? != want {
            return Err(err(
                s.line,
                "server ssl",
                format!(
                    "server {}'s verify, ca-file or sni differ from {}'s: TLS to servers is one \
                     setting per backend here",
                    s.name, first.name
                ),
            ));
        }
        for k in SSL_WORDS {
            if let Some(line) = s.from.get(k) {
                e.used.insert((*line, k.to_owned()));
            }
        }
    }
    let (verify, ca_file, name) = want;
    let mut fields = Vec::new();
    if let Some(v) = &verify {
        fields.push(format!("verify = {}", quote(v)));
    }
    if let Some(f) = &ca_file {
        fields.push(format!("ca_file = {}", quote(f)));
    }
    if let Some(n) = &name {
        fields.push(format!("sni = {}", quote(n)));
    }
    let line = first.at(if verify.is_some() { "verify" } else { "ssl" });
    e.line(line, format!("ssl = {{ {} }}", fields.join(", ")));
    Ok(())
}

/// The servers' `send-proxy` / `send-proxy-v2` as the backend's
/// `send_proxy` (one setting per backend here: every server must say the
/// same).
pub(super) fn send_proxy(p: &Proxy, http: bool, e: &mut Emitter) -> Result<(), CfgError> {
    let Some(first) = p.servers.iter().find(|s| s.send_proxy.is_some()) else {
        return Ok(());
    };
    let word = |s: &Server| match s.send_proxy.as_deref() {
        Some("v2") => "send-proxy-v2",
        _ => "send-proxy",
    };
    if !http {
        return Err(err(
            first.at(word(first)),
            &format!("server {}", word(first)),
            "in a mode tcp backend: the XDP path forwards packets and makes no connection",
        ));
    }
    if let Some(other) = p.servers.iter().find(|s| s.send_proxy != first.send_proxy) {
        return Err(err(
            other.line,
            "server",
            format!(
                "server {} differs from {} in send-proxy / send-proxy-v2: the PROXY header \
                 sent to servers is one setting per backend here",
                other.name, first.name
            ),
        ));
    }
    for s in &p.servers {
        if let Some(line) = s.from.get(word(s)) {
            e.used.insert((*line, word(s).to_owned()));
        }
    }
    let v = first.send_proxy.as_deref().unwrap_or("v1");
    e.string(first.at(word(first)), "send_proxy", v);
    Ok(())
}
