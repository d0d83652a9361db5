//! `[[backend]]`: a pool of servers, its stick table, how packets reach
//! the servers (L4) or how the proxy balances and persists users (HTTP).

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use serde::Deserialize;

use super::{
    AdminState, CheckKind, CheckTiming, ConfigError, Frontend, MAX_WEIGHT, Mode, Resolvers, Server,
    ServerTemplate, Validator, default_check_timeout, parse_duration, resolvers,
    server_name_problem,
    stick::{KeyMask, RawStick, RawStickTable, StickRules, StickTableSpec},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) name: String,
    forward: Option<String>,
    stick_table: Option<RawStickTable>,
    /// HTTP backends: HAProxy's `stick` rules on `src`.
    stick: Option<RawStick>,
    check_type: Option<String>,
    check_path: Option<String>,
    check_method: Option<String>,
    check_status: Option<String>,
    check_port: Option<u16>,
    check_timeout: Option<String>,
    // HTTP backends only.
    balance: Option<String>,
    cookie: Option<String>,
    dynamic_cookie_key: Option<String>,
    #[serde(default)]
    options: Vec<String>,
    timeout_connect: Option<String>,
    timeout_server: Option<String>,
    timeout_tunnel: Option<String>,
    timeout_server_fin: Option<String>,
    timeout_queue: Option<String>,
    /// HTTP backends: append the client's address to `X-Forwarded-For`
    /// (default true; a haproxy.cfg without `option forwardfor` sets false).
    x_forwarded_for: Option<bool>,
    /// HTTP backends: TLS to the servers.
    ssl: Option<super::tls::RawServerSsl>,
    /// HTTP backends: the PROXY header each new server connection opens
    /// with (`"v1"` or `"v2"`).
    send_proxy: Option<String>,
    #[serde(default)]
    server: Vec<RawServer>,
    /// Its servers' `init_addr` (host names).
    init_addr: Option<String>,
    server_template: Option<resolvers::RawTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) name: String,
    address: String,
    /// How a host name in `address` gets its address (HAProxy's `init-addr`).
    init_addr: Option<String>,
    /// HTTP backends: the value of the persistence cookie naming this server.
    cookie: Option<String>,
    weight: Option<u32>,
    state: Option<String>,
    check: Option<bool>,
    inter: Option<String>,
    rise: Option<u32>,
    fall: Option<u32>,
    // HTTP servers only.
    maxconn: Option<u32>,
    maxqueue: Option<u32>,
}

/// How an HTTP backend picks a server for a user without a valid cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Fewest requests in flight, weighted.
    LeastConn,
    /// Consistent hash of the client address (weighted rendezvous hashing
    /// over the up servers, `http/balance.rs`).
    Source,
}

impl Balance {
    pub const fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "roundrobin",
            Balance::LeastConn => "leastconn",
            Balance::Source => "source",
        }
    }
}

/// Settings of a backend served by the HTTP proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBackend {
    pub balance: Balance,
    pub cookie: Option<super::cookie::CookieConfig>,
    /// `dynamic` cookies: the secret their values are derived from.
    pub dynamic_cookie_key: Option<String>,
    /// `option persist`: a cookie naming a down server still goes there.
    pub persist: bool,
    /// `option redispatch`: a persistent request whose server cannot be
    /// reached is sent to another one (and gets a new cookie).
    pub redispatch: bool,
    /// `option forwarded`: also add an RFC 7239 `Forwarded` element
    /// (`X-Forwarded-For` is always extended).
    pub forwarded: bool,
    pub timeout_connect: Duration,
    /// `timeout server`: the server sends nothing while the proxy waits for
    /// its response head or body, or takes none of a request, this long.
    pub timeout_server: Duration,
    /// `timeout tunnel`: an upgraded connection (WebSocket) with no byte
    /// either way this long is closed; unset, the larger of the frontend's
    /// `timeout_client` and this `timeout_server`.
    pub timeout_tunnel: Option<Duration>,
    /// `timeout server-fin`: a tunnel whose server has closed its side
    /// waits this long for the client's side to end.
    pub timeout_server_fin: Duration,
    /// `timeout queue`: how long a request may wait for a server with
    /// `maxconn` to have room (default: `timeout_connect`, as HAProxy).
    pub timeout_queue: Duration,
    /// `stick on|match|store-request src` (none: no stick table is used).
    pub stick: StickRules,
    /// `ssl`: TLS to the servers (HAProxy's `server ... ssl verify ...`).
    pub ssl: Option<super::ServerSsl>,
    /// `option forwardfor`: `X-Forwarded-For` gets the client's address.
    pub x_forwarded_for: bool,
    /// `send-proxy` (v1) or `send-proxy-v2` on its servers: each server
    /// connection opens with a PROXY header and serves one client
    /// connection only.
    pub send_proxy: Option<super::SendProxy>,
}

impl HttpBackend {
    /// A server's cookie value: its own, else with a `dynamic` cookie the
    /// value derived from `dynamic_cookie_key`, address and port.
    pub fn server_cookie(&self, own: Option<String>, addr: IpAddr, port: u16) -> Option<String> {
        own.or_else(|| match (&self.cookie, &self.dynamic_cookie_key) {
            (Some(c), Some(k)) if c.dynamic => {
                Some(super::cookie::dynamic_value(k.as_bytes(), addr, port))
            }
            _ => None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    DsrL2,
    Ipip,
}

impl Forward {
    pub const fn as_str(self) -> &'static str {
        match self {
            Forward::DsrL2 => "dsr-l2",
            Forward::Ipip => "ipip",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub forward: Forward,
    /// Entries this backend's clients may take in the shared stick table.
    pub stick_size: u64,
    /// An entry unused for this long counts as a miss (HAProxy `expire`).
    pub expire: Duration,
    /// `stick_table.peers`: the peers section replicating this table.
    pub peers: Option<String>,
    /// `stick_table.type = "ipv6"` (an HTTP backend's table: IPv4 clients
    /// are stored as IPv4-mapped addresses); else IPv4 clients only. An L4
    /// table holds the addresses of its VIP's family.
    pub stick_ipv6: bool,
    /// The prefix of the client address its stick key keeps.
    pub key_mask: KeyMask,
    /// How servers with `check = true` are checked.
    pub check_kind: CheckKind,
    /// Port checked; default: the first frontend's port using this backend.
    pub check_port: Option<u16>,
    pub servers: Vec<Server>,
    /// Servers discovered through DNS (`server_template`), besides `servers`.
    pub template: Option<ServerTemplate>,
    /// HTTP settings (`balance`, `cookie`, ...): present when an `http`
    /// frontend uses this backend.
    pub http: Option<HttpBackend>,
    /// The first HTTP-only key set in the file (for the error when the
    /// backend turns out to be L4).
    http_key: Option<&'static str>,
    /// The `stick_table` as the file gave it, for the errors given once
    /// the frontends say how the backend is used.
    table: StickTableSpec,
    /// Keys with a default that the file set, for the same errors.
    given: Given,
}

/// Keys of a backend whose value is replaced by a default when absent, as
/// the file gave them: each has an effect only in some contexts.
#[derive(Debug, Clone, Default)]
struct Given {
    forward: bool,
    /// Where `options` lists "persist" and "redispatch".
    persist: Option<usize>,
    redispatch: Option<usize>,
    timeout_queue: bool,
}

pub const DEFAULT_TIMEOUT_CONNECT: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT_SERVER: Duration = Duration::from_secs(30);

impl Validator<'_> {
    /// The HTTP settings of a backend; `None` when no HTTP key is set.
    fn http_backend(&self, key: &str, b: &RawBackend) -> Result<Option<HttpBackend>, ConfigError> {
        if http_key(b).is_none() {
            return Ok(None);
        }
        let balance = match b.balance.as_deref().unwrap_or("roundrobin") {
            "roundrobin" => Balance::RoundRobin,
            "leastconn" => Balance::LeastConn,
            "source" => Balance::Source,
            other => {
                return Err(self.err(
                    format!("{key}.balance"),
                    format!("{other:?}: want \"roundrobin\", \"leastconn\" or \"source\""),
                ));
            }
        };
        let cookie = match &b.cookie {
            None => None,
            Some(c) => Some(
                super::cookie::CookieConfig::parse_strict(c)
                    .map_err(|r| self.err(format!("{key}.cookie"), r))?,
            ),
        };
        if cookie.as_ref().is_some_and(|c| c.dynamic) && b.dynamic_cookie_key.is_none() {
            return Err(self.err(
                format!("{key}.cookie"),
                "`dynamic` needs dynamic_cookie_key in the same backend",
            ));
        }
        let (mut persist, mut redispatch, mut forwarded) = (false, false, false);
        for (i, o) in b.options.iter().enumerate() {
            match o.as_str() {
                "persist" => persist = true,
                "redispatch" => redispatch = true,
                "forwarded" => forwarded = true,
                other => {
                    return Err(self.err(
                        format!("{key}.options[{i}]"),
                        format!("{other:?}: want \"persist\", \"redispatch\" or \"forwarded\""),
                    ));
                }
            }
        }
        let time =
            |k: &str, v: &Option<String>, default: Duration| -> Result<Duration, ConfigError> {
                match v {
                    None => Ok(default),
                    Some(t) => {
                        let d = parse_duration(t).map_err(|r| self.err(format!("{key}.{k}"), r))?;
                        if d < Duration::from_millis(10) {
                            return Err(self.err(format!("{key}.{k}"), "at least 10ms"));
                        }
                        Ok(d)
                    }
                }
            };
        let timeout_server = time("timeout_server", &b.timeout_server, DEFAULT_TIMEOUT_SERVER)?;
        let timeout_connect = time(
            "timeout_connect",
            &b.timeout_connect,
            DEFAULT_TIMEOUT_CONNECT,
        )?;
        Ok(Some(HttpBackend {
            balance,
            cookie,
            dynamic_cookie_key: b.dynamic_cookie_key.clone(),
            persist,
            redispatch,
            forwarded,
            timeout_connect,
            timeout_server,
            timeout_tunnel: match &b.timeout_tunnel {
                None => None,
                t => Some(time("timeout_tunnel", t, DEFAULT_TIMEOUT_SERVER)?),
            },
            timeout_server_fin: time("timeout_server_fin", &b.timeout_server_fin, timeout_server)?,
            timeout_queue: time("timeout_queue", &b.timeout_queue, timeout_connect)?,
            stick: self.stick_rules(key, b.stick.as_ref())?,
            x_forwarded_for: b.x_forwarded_for.unwrap_or(true),
            ssl: match &b.ssl {
                None => None,
                Some(r) => Some(self.server_ssl(key, r)?),
            },
            send_proxy: match &b.send_proxy {
                None => None,
                Some(v) => Some(
                    super::SendProxy::parse(v)
                        .map_err(|r| self.err(format!("{key}.send_proxy"), r))?,
                ),
            },
        }))
    }

    pub(super) fn backend(
        &self,
        key: &str,
        b: RawBackend,
        resolvers: &[Resolvers],
    ) -> Result<Backend, ConfigError> {
        let http = self.http_backend(key, &b)?;
        let http_key = http_key(&b);
        let given = Given {
            forward: b.forward.is_some(),
            persist: b.options.iter().position(|o| o == "persist"),
            redispatch: b.options.iter().position(|o| o == "redispatch"),
            timeout_queue: b.timeout_queue.is_some(),
        };
        let forward = match b.forward.as_deref().unwrap_or("dsr-l2") {
            "dsr-l2" => Forward::DsrL2,
            "ipip" => Forward::Ipip,
            other => {
                return Err(self.err(
                    format!("{key}.forward"),
                    format!("{other:?}: want \"dsr-l2\" or \"ipip\""),
                ));
            }
        };
        let table = self.stick_table(key, b.stick_table)?;
        let check_timeout = match &b.check_timeout {
            None => None,
            Some(t) => {
                let t =
                    parse_duration(t).map_err(|r| self.err(format!("{key}.check_timeout"), r))?;
                if t < Duration::from_millis(10) || t > Duration::from_secs(60) {
                    return Err(self.err(format!("{key}.check_timeout"), "want 10ms to 60s"));
                }
                Some(t)
            }
        };
        let mut servers = Vec::new();
        let mut names = BTreeSet::new();
        for (j, s) in b.server.into_iter().enumerate() {
            let skey = format!("{key}.server[{j}]");
            if !names.insert(s.name.clone()) {
                return Err(self.err(
                    format!("{skey}.name"),
                    format!("duplicate server name {:?} in backend {:?}", s.name, b.name),
                ));
            }
            if let Some(why) = server_name_problem(&b.name, &s.name) {
                return Err(self.err(format!("{skey}.name"), why));
            }
            let (address, port, host) = self.server_address(
                &skey,
                (&b.name, &s.name),
                &s.address,
                s.init_addr.as_deref(),
                b.init_addr.as_deref(),
            )?;
            if address.is_unspecified() || address.is_multicast() {
                return Err(self.err(
                    format!("{skey}.address"),
                    format!("{address} is not a unicast server address"),
                ));
            }
            let weight = s.weight.unwrap_or(1);
            if weight > MAX_WEIGHT {
                return Err(self.err(
                    format!("{skey}.weight"),
                    format!("{weight}: at most {MAX_WEIGHT}"),
                ));
            }
            let state = match s.state.as_deref() {
                None => AdminState::Up,
                Some(st) => AdminState::parse(st).ok_or_else(|| {
                    self.err(
                        format!("{skey}.state"),
                        format!("{st:?}: want up, drain, down or maint"),
                    )
                })?,
            };
            let inter = match &s.inter {
                Some(i) => parse_duration(i).map_err(|r| self.err(format!("{skey}.inter"), r))?,
                None => CheckTiming::default().inter,
            };
            if inter < Duration::from_millis(100) {
                return Err(self.err(format!("{skey}.inter"), "at least 100ms"));
            }
            let d = CheckTiming::default();
            let (rise, fall) = (s.rise.unwrap_or(d.rise), s.fall.unwrap_or(d.fall));
            for (k, v) in [("rise", rise), ("fall", fall)] {
                if !(1..=100).contains(&v) {
                    return Err(self.err(format!("{skey}.{k}"), format!("{v}: want 1 to 100")));
                }
            }
            if !s.check.unwrap_or(false) {
                for (k, set) in [
                    ("inter", s.inter.is_some()),
                    ("rise", s.rise.is_some()),
                    ("fall", s.fall.is_some()),
                ] {
                    if set {
                        return Err(self.err(
                            format!("{skey}.{k}"),
                            "health-check timing, and this server is not checked: it would \
                             have no effect (add check = true, or leave it out)",
                        ));
                    }
                }
            }
            let check = s.check.unwrap_or(false).then_some(CheckTiming {
                inter,
                rise,
                fall,
                timeout: check_timeout.unwrap_or_else(|| default_check_timeout(inter)),
            });
            if s.maxconn.is_none() && s.maxqueue.is_some() {
                return Err(self.err(
                    format!("{skey}.maxqueue"),
                    "needs maxconn (without it nothing is queued)",
                ));
            }
            servers.push(Server {
                name: s.name,
                address,
                port,
                host,
                cookie: s.cookie,
                weight,
                state,
                check,
                maxconn: s.maxconn.unwrap_or(0),
                maxqueue: s.maxqueue.unwrap_or(0),
            });
        }
        if b.init_addr.is_some() && servers.iter().all(|s| s.host.is_none()) {
            return Err(self.err(
                format!("{key}.init_addr"),
                "no server of this backend has a host name: it would have no effect \
                 (server_template has its own)",
            ));
        }
        let check_kind = CheckKind::from_keys(
            b.check_type.as_deref(),
            b.check_path,
            b.check_method,
            b.check_status.as_deref(),
        )
        .map_err(|(k, why)| self.err(format!("{key}.{k}"), why))?;
        if b.check_port == Some(0) {
            return Err(self.err(format!("{key}.check_port"), "0 is not a port"));
        }
        let template = match b.server_template {
            None => None,
            Some(t) => Some(self.template(key, &b.name, t, resolvers, &names, check_timeout)?),
        };
        // check_type, check_path, check_method, check_status and check_port
        // are accepted without a checked server: `balancer backend add ...
        // --check` checks the servers it adds at run time with them.
        // check_timeout is not (those servers get the default timing), so
        // it needs one here.
        let checked = servers.iter().any(|s| s.check.is_some())
            || template.as_ref().is_some_and(|t| t.check.is_some());
        if check_timeout.is_some() && !checked {
            return Err(self.err(
                format!("{key}.check_timeout"),
                "no server of this backend (nor its server_template) has check = true: it \
                 would have no effect (servers added with `backend add --check` use the \
                 default timing)",
            ));
        }
        Ok(Backend {
            name: b.name,
            forward,
            stick_size: table.size,
            expire: table.expire,
            peers: table.peers.clone(),
            stick_ipv6: table.ipv6.unwrap_or(false),
            key_mask: table.mask,
            check_kind,
            check_port: b.check_port,
            servers,
            template,
            http,
            http_key,
            table,
            given,
        })
    }

    /// Now that the frontends say how each backend is used: HTTP keys only
    /// on HTTP backends, ports and cookies only on HTTP servers, loopback
    /// only behind the proxy, no backend that no frontend uses, no key that
    /// would have no effect with the backend's other settings; dynamic
    /// cookie values and default ports filled in.
    pub(super) fn settle_modes(
        &self,
        interfaces_empty: bool,
        frontends: &[Frontend],
        backends: &mut [Backend],
    ) -> Result<(), ConfigError> {
        let http_only = !frontends.is_empty() && frontends.iter().all(|f| f.mode == Mode::Http);
        if interfaces_empty && !http_only {
            return Err(self.err(
                "dataplane.interfaces",
                "at least one interface is needed (only a config whose frontends are all http may have none)",
            ));
        }
        for (bi, b) in backends.iter_mut().enumerate() {
            let key = format!("backend[{bi}]");
            let users: Vec<&Frontend> = frontends.iter().filter(|f| f.backend == bi).collect();
            let http = users.iter().filter(|f| f.mode == Mode::Http).count();
            if http > 0 && http < users.len() {
                return Err(self.err(
                    format!("{key}.name"),
                    format!("{:?} is used by both l4 and http frontends", b.name),
                ));
            }
            if http > 0 {
                self.settle_http_keys(&key, b)?;
                let settings = b.http.get_or_insert(HttpBackend {
                    balance: Balance::RoundRobin,
                    cookie: None,
                    dynamic_cookie_key: None,
                    persist: false,
                    redispatch: false,
                    forwarded: false,
                    timeout_connect: DEFAULT_TIMEOUT_CONNECT,
                    timeout_server: DEFAULT_TIMEOUT_SERVER,
                    timeout_tunnel: None,
                    timeout_server_fin: DEFAULT_TIMEOUT_SERVER,
                    timeout_queue: DEFAULT_TIMEOUT_CONNECT,
                    stick: StickRules::default(),
                    ssl: None,
                    x_forwarded_for: true,
                    send_proxy: None,
                });
                let default_port = users[0].vip.port();
                for s in &mut b.servers {
                    let port = *s.port.get_or_insert(default_port);
                    s.cookie = settings.server_cookie(s.cookie.take(), s.address, port);
                }
                if let Some(t) = b.template.as_mut().filter(|t| !t.srv) {
                    t.port.get_or_insert(default_port);
                }
                let rules = settings.stick;
                self.settle_http_table(&key, b, &users, rules)?;
                continue;
            }
            if let Some(k) = b.http_key {
                return Err(self.err(
                    format!("{key}.{k}"),
                    "only for backends of mode = \"http\" frontends",
                ));
            }
            if users.is_empty() {
                // Also the only case where a checked server or template
                // has no port to check (no check_port, no frontend's).
                return Err(self.err(
                    format!("{key}.name"),
                    format!(
                        "no frontend has default_backend = {:?}: nothing this backend sets \
                         would have an effect (use it in a frontend, or remove it)",
                        b.name
                    ),
                ));
            }
            self.settle_l4_table(&key, b, &users)?;
            if b.template.as_ref().is_some_and(|t| t.port.is_some()) {
                return Err(self.err(
                    format!("{key}.server_template.port"),
                    "an L4 server takes no port (the VIP's port is kept)",
                ));
            }
            if b.template
                .as_ref()
                .is_some_and(|t| t.resolve_prefer.is_some())
            {
                return Err(self.err(
                    format!("{key}.server_template.resolve_prefer"),
                    "an L4 backend's slots take only addresses of its VIP's family: it would \
                     have no effect",
                ));
            }
            for (j, s) in b.servers.iter().enumerate() {
                let skey = format!("{key}.server[{j}]");
                if s.port.is_some() {
                    return Err(self.err(
                        format!("{skey}.address"),
                        "an L4 server takes no port (the VIP's port is kept)",
                    ));
                }
                if s.cookie.is_some() {
                    return Err(self.err(format!("{skey}.cookie"), "only for HTTP servers"));
                }
                for (k, set) in [("maxconn", s.maxconn > 0), ("maxqueue", s.maxqueue > 0)] {
                    if set {
                        return Err(self.err(format!("{skey}.{k}"), "only for HTTP servers"));
                    }
                }
                if s.address.is_loopback() {
                    return Err(self.err(
                        format!("{skey}.address"),
                        format!("{} is not a unicast server address", s.address),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Validator<'_> {
    /// The keys of a backend of http frontends that would have no effect
    /// with its other settings. Runs before the server cookies are filled in.
    fn settle_http_keys(&self, key: &str, b: &Backend) -> Result<(), ConfigError> {
        if b.given.forward {
            return Err(self.err(
                format!("{key}.forward"),
                "only for backends of mode = \"l4\" frontends: the HTTP proxy opens its own \
                 connections to the servers, so it would have no effect",
            ));
        }
        // `None`: no HTTP key in the file (no cookie, options, stick, ...).
        let h = b.http.as_ref();
        let cookie = h.and_then(|h| h.cookie.as_ref());
        if cookie.is_none()
            && let Some(j) = b.servers.iter().position(|s| s.cookie.is_some())
        {
            return Err(self.err(
                format!("{key}.server[{j}].cookie"),
                "the backend has no cookie, so nothing reads or sets this value: it would \
                 have no effect (set the backend's cookie, e.g. \"SERVER insert indirect \
                 nocache\")",
            ));
        }
        if h.is_some_and(|h| h.dynamic_cookie_key.is_some()) && !cookie.is_some_and(|c| c.dynamic) {
            return Err(self.err(
                format!("{key}.dynamic_cookie_key"),
                "only server cookie values of a `dynamic` cookie are derived from it \
                 (cookie = \"NAME ... dynamic\"): it would have no effect",
            ));
        }
        let persistence = cookie.is_some() || h.is_some_and(|h| h.stick.matches);
        for (name, at) in [
            ("persist", b.given.persist),
            ("redispatch", b.given.redispatch),
        ] {
            if let Some(i) = at.filter(|_| !persistence) {
                return Err(self.err(
                    format!("{key}.options[{i}]"),
                    format!(
                        "{name:?} acts on persistent requests (a cookie, or stick = \"on src\" \
                         / \"match src\"), and this backend has neither: it would have no effect"
                    ),
                ));
            }
        }
        if b.given.timeout_queue && b.servers.iter().all(|s| s.maxconn == 0) {
            return Err(self.err(
                format!("{key}.timeout_queue"),
                "requests queue only for a server at its maxconn, and no server of this \
                 backend has one: it would have no effect (give a server maxconn)",
            ));
        }
        Ok(())
    }

    /// An HTTP backend's table: used by its `stick` rules only, so each
    /// needs the other; its type defaults to the frontends' family; a mask
    /// of a family it never stores is refused.
    fn settle_http_table(
        &self,
        key: &str,
        b: &mut Backend,
        users: &[&Frontend],
        rules: StickRules,
    ) -> Result<(), ConfigError> {
        let t = &b.table;
        if rules.any() && !t.set {
            return Err(self.err(
                format!("{key}.stick"),
                "needs a stick_table in the same backend (the rules store into and match \
                 against their backend's table, as HAProxy's do)",
            ));
        }
        if !t.set {
            return Ok(());
        }
        if !rules.any() {
            return Err(self.err(
                format!("{key}.stick_table"),
                "on a backend of mode = \"http\" frontends a table is filled and read only \
                 by stick rules (stick = \"on src\"); without one it would have no effect",
            ));
        }
        let v6_bind = users.iter().any(|f| f.vip.is_ipv6());
        let ipv6 = t.ipv6.unwrap_or(v6_bind);
        if t.mask_v6_set && !ipv6 {
            return Err(self.err(
                format!("{key}.stick_table.key_mask_v6"),
                "a table of type \"ip\" holds IPv4 clients only: an IPv6 mask has no effect",
            ));
        }
        if t.mask_v6_set && !v6_bind {
            return Err(self.err(
                format!("{key}.stick_table.key_mask_v6"),
                "no frontend of this backend listens on IPv6: an IPv6 mask has no effect",
            ));
        }
        // Only a wildcard IPv6 bind (`[::]`) also takes IPv4 clients.
        let v4_clients = users
            .iter()
            .any(|f| f.vip.is_ipv4() || f.vip.ip().is_unspecified());
        if t.mask_v4_set && !v4_clients {
            return Err(self.err(
                format!("{key}.stick_table.key_mask_v4"),
                "no frontend of this backend takes IPv4 clients: an IPv4 mask has no effect",
            ));
        }
        b.stick_ipv6 = ipv6;
        Ok(())
    }

    /// An L4 backend's table holds its VIPs' family: a `type` or a mask of
    /// the other family would have no effect.
    fn settle_l4_table(
        &self,
        key: &str,
        b: &mut Backend,
        users: &[&Frontend],
    ) -> Result<(), ConfigError> {
        let t = &b.table;
        let v4 = users.iter().any(|f| f.vip.is_ipv4());
        let v6 = users.iter().any(|f| f.vip.is_ipv6());
        match t.ipv6 {
            Some(true) if v4 => {
                return Err(self.err(
                    format!("{key}.stick_table.type"),
                    "\"ipv6\", but an IPv4 frontend uses this backend: the XDP path keys a \
                     VIP's table by its own family (leave type out, or \"ip\")",
                ));
            }
            Some(false) if v6 => {
                return Err(self.err(
                    format!("{key}.stick_table.type"),
                    "\"ip\", but an IPv6 frontend uses this backend: the XDP path keys a \
                     VIP's table by its own family (leave type out, or \"ipv6\")",
                ));
            }
            _ => {}
        }
        if t.mask_v4_set && !v4 {
            return Err(self.err(
                format!("{key}.stick_table.key_mask_v4"),
                "no IPv4 frontend uses this backend: an IPv4 mask has no effect",
            ));
        }
        if t.mask_v6_set && !v6 {
            return Err(self.err(
                format!("{key}.stick_table.key_mask_v6"),
                "no IPv6 frontend uses this backend: an IPv6 mask has no effect",
            ));
        }
        b.stick_ipv6 = v6;
        Ok(())
    }
}

/// The first HTTP-only key set in a raw backend.
fn http_key(b: &RawBackend) -> Option<&'static str> {
    [
        ("balance", b.balance.is_some()),
        ("cookie", b.cookie.is_some()),
        ("dynamic_cookie_key", b.dynamic_cookie_key.is_some()),
        ("options", !b.options.is_empty()),
        ("timeout_connect", b.timeout_connect.is_some()),
        ("timeout_server", b.timeout_server.is_some()),
        ("timeout_tunnel", b.timeout_tunnel.is_some()),
        ("timeout_server_fin", b.timeout_server_fin.is_some()),
        ("timeout_queue", b.timeout_queue.is_some()),
        ("stick", b.stick.is_some()),
        ("ssl", b.ssl.is_some()),
        ("x_forwarded_for", b.x_forwarded_for.is_some()),
        ("send_proxy", b.send_proxy.is_some()),
    ]
    .into_iter()
    .find(|(_, set)| *set)
    .map(|(k, _)| k)
}
