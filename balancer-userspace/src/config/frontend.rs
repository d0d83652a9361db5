//! `[[frontend]]`: a service that clients reach, at a VIP handled by the
//! XDP program (`mode = "l4"`) or a listening address of the HTTP proxy
//! (`mode = "http"`).

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use super::{Backend, ConfigError, Validator, parse_duration};

pub const DEFAULT_TIMEOUT_CLIENT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;

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
    max_header_bytes: Option<usize>,
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
    /// HTTP: how long a client connection may stay idle or take to send
    /// its request headers.
    pub timeout_client: Duration,
    /// HTTP: largest request head (request line and headers).
    pub max_header_bytes: usize,
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
        f: RawFrontend,
        backends: &[Backend],
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
        if vip.port() == 0
            || vip.ip().is_multicast()
            || (mode == Mode::L4 && vip.ip().is_unspecified())
        {
            return Err(self.err(
                format!("{key}.bind"),
                format!("{vip}: needs a unicast address and a port"),
            ));
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
        let (mut timeout_client, mut max_header_bytes) =
            (DEFAULT_TIMEOUT_CLIENT, DEFAULT_MAX_HEADER_BYTES);
        if mode == Mode::Http {
            if proto != Proto::Tcp {
                return Err(self.err(format!("{key}.proto"), "http frontends are tcp"));
            }
            if let Some(t) = &f.timeout_client {
                timeout_client =
                    parse_duration(t).map_err(|r| self.err(format!("{key}.timeout_client"), r))?;
                if timeout_client < Duration::from_millis(100) {
                    return Err(self.err(format!("{key}.timeout_client"), "at least 100ms"));
                }
            }
            if let Some(n) = f.max_header_bytes {
                if !(1024..=1 << 20).contains(&n) {
                    return Err(self.err(
                        format!("{key}.max_header_bytes"),
                        format!("{n}: want 1024 to 1048576"),
                    ));
                }
                max_header_bytes = n;
            }
        }
        let fe = Frontend {
            name: f.name,
            vip,
            proto,
            backend,
            mode,
            timeout_client,
            max_header_bytes,
        };
        if mode == Mode::Http {
            return Ok(fe);
        }
        for (k, set) in [
            ("timeout_client", f.timeout_client.is_some()),
            ("max_header_bytes", f.max_header_bytes.is_some()),
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
