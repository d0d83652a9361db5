//! `[[frontend]]`: a service that clients reach, at a VIP handled by the
//! XDP program (`mode = "l4"`) or a listening address of the HTTP proxy
//! (`mode = "http"`).

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use super::{Backend, ConfigError, Validator, parse_duration};

pub const DEFAULT_TIMEOUT_CLIENT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// HTTP/2 streams a client may have open at once on one connection
/// (HAProxy's `tune.h2.max-concurrent-streams`).
pub const DEFAULT_H2_MAX_STREAMS: u32 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFrontend {
    pub(super) name: String,
    bind: String,
    mode: Option<String>,
    proto: Option<String>,
    default_backend: String,
    // HTTP frontends only.
    timeout_client: Option<String>,
    timeout_http_request: Option<String>,
    timeout_http_keep_alive: Option<String>,
    timeout_client_fin: Option<String>,
    max_header_bytes: Option<usize>,
    maxconn: Option<u32>,
    h2_max_concurrent_streams: Option<u32>,
    tls: Option<super::tls::RawTls>,
    forwarded_proto: Option<bool>,
    redirect: Option<RawRedirect>,
    accept_proxy: Option<bool>,
    accept_proxy_from: Option<Vec<String>>,
    log: Option<super::log::RawLog>,
}

/// `redirect = { scheme = "https", code = 301 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedirect {
    scheme: String,
    code: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// An L4 frontend: a virtual service (VIP) handled by the XDP program.
#[derive(Debug, Clone)]
pub struct Frontend {
    pub name: String,
    pub vip: SocketAddr,
    pub proto: Proto,
    /// Index into [`Config::backends`].
    pub backend: usize,
    pub mode: Mode,
    /// HTTP frontends: the proxy's client-side settings (defaults for L4).
    pub http: HttpFrontend,
    /// HTTP frontends: TLS termination (`bind ... ssl crt`).
    pub tls: Option<super::TlsSettings>,
    /// HTTP frontends: requests carry `X-Forwarded-Proto` (`https` or
    /// `http`) and `X-Forwarded-Port` (the port the client reached).
    pub forwarded_proto: bool,
    /// HTTP frontends: `redirect scheme https [code N]`: every request is
    /// answered with a redirect to https (this status), none is proxied.
    pub redirect_https: Option<u16>,
    /// HTTP frontends: the access log, if it has one.
    pub log: Option<super::LogSettings>,
}

/// The client side of an HTTP frontend, with HAProxy's names: its
/// timeouts, request head size, connection and stream caps. The proxy's
/// workers take these at start (a reload that changes one is refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFrontend {
    /// `timeout client`: the client takes no data (a response waits on
    /// it) or sends none of a request body, for this long.
    pub timeout_client: Duration,
    /// `timeout http-request`: a request head must be complete this long
    /// after its first byte (for a connection's first request, after the
    /// connection was accepted).
    pub timeout_http_request: Duration,
    /// `timeout http-keep-alive`: a connection may wait this long for its
    /// next request (HTTP/2: with no stream open).
    pub timeout_http_keep_alive: Duration,
    /// `timeout client-fin`: a tunnel whose client has closed its side
    /// waits this long for the server's side to end.
    pub timeout_client_fin: Duration,
    /// Largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// `maxconn`: client connections at once; `None`: the global limit.
    pub maxconn: Option<u32>,
    /// `tune.h2.max-concurrent-streams`.
    pub h2_max_concurrent_streams: u32,
    /// `accept_proxy`: the sources whose connections open with a PROXY
    /// header (see `proxy_protocol.rs`).
    pub accept_proxy: Option<super::AcceptProxy>,
}

impl Default for HttpFrontend {
    fn default() -> Self {
        HttpFrontend {
            timeout_client: DEFAULT_TIMEOUT_CLIENT,
            timeout_http_request: DEFAULT_TIMEOUT_CLIENT,
            timeout_http_keep_alive: DEFAULT_TIMEOUT_CLIENT,
            timeout_client_fin: DEFAULT_TIMEOUT_CLIENT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            maxconn: None,
            h2_max_concurrent_streams: DEFAULT_H2_MAX_STREAMS,
            accept_proxy: None,
        }
    }
}

impl HttpFrontend {
    /// The keys whose values differ between `self` and `other`.
    pub fn changed(&self, other: &HttpFrontend) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut cmp = |k, differs: bool| {
            if differs {
                out.push(k);
            }
        };
        cmp(
            "timeout_client",
            self.timeout_client != other.timeout_client,
        );
        cmp(
            "timeout_http_request",
            self.timeout_http_request != other.timeout_http_request,
        );
        cmp(
            "timeout_http_keep_alive",
            self.timeout_http_keep_alive != other.timeout_http_keep_alive,
        );
        cmp(
            "timeout_client_fin",
            self.timeout_client_fin != other.timeout_client_fin,
        );
        cmp(
            "max_header_bytes",
            self.max_header_bytes != other.max_header_bytes,
        );
        cmp("maxconn", self.maxconn != other.maxconn);
        cmp(
            "h2_max_concurrent_streams",
            self.h2_max_concurrent_streams != other.h2_max_concurrent_streams,
        );
        cmp("accept_proxy", self.accept_proxy != other.accept_proxy);
        out
    }
}

/// A frontend's mode: `l4` is served by the XDP data plane (`bind` is a
/// VIP), `http` by the reverse proxy (`bind` is a local listening address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    L4,
    Http,
}

impl Validator<'_> {
    pub(super) fn frontend(
        &self,
        key: &str,
        mut f: RawFrontend,
        backends: &[Backend],
        global_log: Option<&super::log::RawLog>,
    ) -> Result<Frontend, ConfigError> {
        let mode = match f.mode.as_deref().unwrap_or("l4") {
            "l4" => Mode::L4,
            "http" => Mode::Http,
            other => {
                return Err(self.err(
                    format!("{key}.mode"),
                    format!("{other:?}: want \"l4\" or \"http\""),
                ));
            }
        };
        let proto = match f.proto.as_deref().unwrap_or("tcp") {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => {
                return Err(self.err(
                    format!("{key}.proto"),
                    format!("{other:?}: want \"tcp\" or \"udp\""),
                ));
            }
        };
        let vip: SocketAddr = f.bind.parse().map_err(|_| {
            self.err(
                format!("{key}.bind"),
                format!("{:?}: want ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)", f.bind),
            )
        })?;
        let problem = if vip.port() == 0 {
            Some("port 0: give the port clients connect to")
        } else if vip.ip().is_multicast() {
            Some("a multicast address: give a unicast one")
        } else if mode == Mode::L4 && vip.ip().is_unspecified() {
            Some(
                "a wildcard address: an l4 frontend's VIP is the one address XDP matches packets \
                 to (mode = \"http\" frontends may listen on a wildcard)",
            )
        } else {
            None
        };
        if let Some(p) = problem {
            return Err(self.err(format!("{key}.bind"), format!("{vip}: {p}")));
        }
        let backend = backends
            .iter()
            .position(|b| b.name == f.default_backend)
            .ok_or_else(|| {
                self.err(
                    format!("{key}.default_backend"),
                    format!("no backend named {:?}", f.default_backend),
                )
            })?;
        let b = &backends[backend];
        let mut http = HttpFrontend::default();
        let mut tls = None;
        let mut redirect_https = None;
        let mut log = None;
        if mode == Mode::Http {
            if let Some(l) = &f.log {
                log = Some(self.log(key, l, global_log)?);
            }
            if proto != Proto::Tcp {
                return Err(self.err(format!("{key}.proto"), "http frontends are tcp"));
            }
            http = self.http_frontend(key, &f)?;
            if let Some(t) = f.tls.take() {
                tls = Some(self.tls(key, t)?);
            }
            if let Some(r) = &f.redirect {
                if r.scheme != "https" {
                    return Err(self.err(
                        format!("{key}.redirect.scheme"),
                        format!("{:?}: only \"https\" is implemented", r.scheme),
                    ));
                }
                let code = r.code.unwrap_or(302);
                if ![301, 302, 303, 307, 308].contains(&code) {
                    return Err(self.err(
                        format!("{key}.redirect.code"),
                        format!("{code}: want 301, 302, 303, 307 or 308"),
                    ));
                }
                if tls.is_some() {
                    return Err(self.err(
                        format!("{key}.redirect"),
                        "on a TLS frontend: its clients already use https (each would be sent \
                         back to where it is)",
                    ));
                }
                redirect_https = Some(code);
            }
        }
        let fe = Frontend {
            name: f.name,
            vip,
            proto,
            backend,
            mode,
            http,
            tls,
            forwarded_proto: f.forwarded_proto.unwrap_or(false),
            redirect_https,
            log,
        };
        if mode == Mode::Http {
            return Ok(fe);
        }
        if f.tls.is_some() {
            return Err(self.err(
                format!("{key}.tls"),
                "only for mode = \"http\" frontends (the XDP path forwards packets; it \
                 terminates no connection)",
            ));
        }
        if f.log.is_some() {
            return Err(self.err(
                format!("{key}.log"),
                "only for mode = \"http\" frontends: an l4 frontend runs on XDP, which keeps no \
                 per-connection log (tcplog)",
            ));
        }
        for (k, set) in [
            ("timeout_client", f.timeout_client.is_some()),
            ("timeout_http_request", f.timeout_http_request.is_some()),
            (
                "timeout_http_keep_alive",
                f.timeout_http_keep_alive.is_some(),
            ),
            ("timeout_client_fin", f.timeout_client_fin.is_some()),
            ("max_header_bytes", f.max_header_bytes.is_some()),
            ("maxconn", f.maxconn.is_some()),
            ("forwarded_proto", f.forwarded_proto.is_some()),
            ("redirect", f.redirect.is_some()),
            ("accept_proxy", f.accept_proxy.is_some()),
            ("accept_proxy_from", f.accept_proxy_from.is_some()),
            (
                "h2_max_concurrent_streams",
                f.h2_max_concurrent_streams.is_some(),
            ),
        ] {
            if set {
                return Err(self.err(format!("{key}.{k}"), "only for mode = \"http\" frontends"));
            }
        }
        for s in &b.servers {
            if s.address.is_ipv4() != vip.is_ipv4() {
                return Err(self.err(
                    format!("{key}.default_backend"),
                    format!(
                        "server {:?} ({}) is not of the VIP's address family; {} needs both the same",
                        s.name,
                        s.address,
                        b.forward.as_str()
                    ),
                ));
            }
        }
        Ok(fe)
    }
}

impl Validator<'_> {
    /// An HTTP frontend's client-side settings. Unset timeouts default as
    /// HAProxy's do: `http-request` to `client`, `http-keep-alive` to
    /// `http-request`, `client-fin` to `client`.
    fn http_frontend(&self, key: &str, f: &RawFrontend) -> Result<HttpFrontend, ConfigError> {
        let time = |k: &str, v: &Option<String>| -> Result<Option<Duration>, ConfigError> {
            let Some(t) = v else { return Ok(None) };
            let d = parse_duration(t).map_err(|r| self.err(format!("{key}.{k}"), r))?;
            if d < Duration::from_millis(100) {
                return Err(self.err(format!("{key}.{k}"), "at least 100ms"));
            }
            Ok(Some(d))
        };
        let client = time("timeout_client", &f.timeout_client)?.unwrap_or(DEFAULT_TIMEOUT_CLIENT);
        let request = time("timeout_http_request", &f.timeout_http_request)?.unwrap_or(client);
        let keep_alive =
            time("timeout_http_keep_alive", &f.timeout_http_keep_alive)?.unwrap_or(request);
        let client_fin = time("timeout_client_fin", &f.timeout_client_fin)?.unwrap_or(client);
        let mut http = HttpFrontend {
            timeout_client: client,
            timeout_http_request: request,
            timeout_http_keep_alive: keep_alive,
            timeout_client_fin: client_fin,
            ..HttpFrontend::default()
        };
        if let Some(n) = f.max_header_bytes {
            if !(1024..=1 << 20).contains(&n) {
                return Err(self.err(
                    format!("{key}.max_header_bytes"),
                    format!("{n}: want 1024 to 1048576"),
                ));
            }
            http.max_header_bytes = n;
        }
        if let Some(n) = f.maxconn {
            if n == 0 {
                return Err(self.err(format!("{key}.maxconn"), "at least 1"));
            }
            http.maxconn = Some(n);
        }
        if let Some(n) = f.h2_max_concurrent_streams {
            if !(1..=1024).contains(&n) {
                return Err(self.err(
                    format!("{key}.h2_max_concurrent_streams"),
                    format!("{n}: want 1 to 1024"),
                ));
            }
            http.h2_max_concurrent_streams = n;
        }
        http.accept_proxy =
            super::proxy_protocol::accept_proxy(f.accept_proxy, f.accept_proxy_from.as_deref())
                .map_err(|(k, r)| self.err(format!("{key}.{k}"), r))?;
        Ok(http)
    }
}
