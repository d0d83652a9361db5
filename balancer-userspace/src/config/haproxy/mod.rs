//! HAProxy's configuration language, for what balancer implements: a
//! haproxy.cfg is tokenized as HAProxy 2.6 does (`lex`), its conditional
//! blocks and messages (`.if`, `.warning`, ...) applied as HAProxy 2.6.12
//! does (`cond`), read into its sections (`sections`: every keyword understood, skipped with a warning
//! from a short documented list, or refused with its line and why), and
//! written as balancer's TOML (`emit`), each TOML line remembering the
//! .cfg line it came from. The TOML then goes through the one validator,
//! whose errors are given the .cfg's file and line. `balancer convert`
//! prints that TOML.
//!
//! A host name in a `server` line is looked up when the file is read, as
//! HAProxy does at start (its `init-addr` methods, default `last,libc`):
//! the TOML holds the address found.
//!
//! What HAProxy has no words for (the XDP interfaces and mode, the pin
//! directory, the admin socket, the peers' shared secret, the local peer's
//! name) comes from [`Options`], set on the command line.

mod bind;
mod cond;
mod emit;
mod keywords;
pub mod lex;
mod log;
mod lookup;
mod params;
mod sections;
mod servers;

use std::path::Path;

pub use sections::{SKIPPED_GLOBAL, SKIPPED_PROXY};

/// What balancer reads of a haproxy.cfg: (section, keyword, what it does
/// here). The README's "Migrating from HAProxy" table is checked against
/// it by a test, and each is checked to be accepted by the reader.
pub const KEYWORDS: &[(&str, &str, &str)] = &[
    (
        "anywhere",
        ".if COND / .elif COND / .else / .endif, .diag|.notice|.warning|.alert MSG",
        "read as HAProxy 2.6.12 does (above); messages are warnings, `.alert` an error",
    ),
    (
        "global",
        "maxconn",
        "`[global] maxconn` (HTTP client connections)",
    ),
    (
        "global",
        "server-state-file FILE, server-state-base DIR",
        "`[global] server_state_file` (runtime server changes; a file in HAProxy's format is read once)",
    ),
    (
        "defaults, backend, listen",
        "load-server-state-from-file global",
        "required on every backend with server-state-file (one file for all)",
    ),
    ("global", "localpeer", "this instance's name in `peers`"),
    (
        "global",
        "log PATH|unix@PATH|stdout [format rfc3164|raw] FACILITY [info|debug], log-tag",
        "the access logs' target (`[log]`)",
    ),
    (
        "defaults, frontend, listen",
        "log global|PATH FACILITY, no log, option httplog|dontlognull",
        "the frontend's `log` (`option tcplog` is refused: mode tcp runs on XDP)",
    ),
    (
        "defaults, frontend, backend, listen",
        "mode http|tcp",
        "`mode = \"http\"` (the proxy), or `\"l4\"` (XDP; needs --interface)",
    ),
    (
        "defaults, frontend, listen",
        "timeout client|http-request|http-keep-alive|client-fin",
        "the frontend's `timeout_*`",
    ),
    (
        "defaults, backend, listen",
        "timeout connect|server|tunnel|server-fin|queue|check",
        "the backend's `timeout_*`, `check_timeout`",
    ),
    (
        "defaults, frontend, listen",
        "maxconn",
        "the frontend's `maxconn`",
    ),
    ("defaults, frontend", "default_backend", "`default_backend`"),
    (
        "frontend, listen",
        "bind ADDRESS:PORT",
        "`bind` (one frontend per bind)",
    ),
    (
        "frontend, listen",
        "bind ... ssl crt FILE|DIR [crt ...] [alpn h2,http/1.1] [ssl-min-ver V] [ssl-max-ver V] [ciphers L] [ciphersuites L] [no-tlsv12|no-tlsv13]",
        "`[frontend.tls]` (no `alpn`: HTTP/1.1 only, as HAProxy 2.6; relative `crt` paths: from the .cfg's directory, or `crt-base`)",
    ),
    (
        "frontend, listen",
        "redirect scheme https [code N] [if !{ ssl_fc }]",
        "`redirect = { scheme = \"https\", code = N }` on the cleartext binds' frontends",
    ),
    (
        "frontend, listen",
        "tcp-request connection expect-proxy layer4 if { src NETWORK ... }",
        "`accept_proxy = true`, `accept_proxy_from` (PROXY v1/v2 headers from those sources only; `bind ... accept-proxy` is refused: it would trust any client's header)",
    ),
    (
        "global",
        "crt-base, ssl-default-bind-ciphers, ssl-default-bind-ciphersuites, ssl-default-bind-options ssl-min-ver|ssl-max-ver|no-sslv3..no-tlsv13",
        "the TLS binds' defaults (cipher names rustls lacks are dropped with a warning)",
    ),
    (
        "defaults, backend, listen",
        "balance roundrobin|leastconn|source",
        "`balance` (mode tcp: source only, Maglev)",
    ),
    (
        "defaults, backend, listen",
        "cookie NAME ...",
        "`cookie`, every option",
    ),
    (
        "defaults, backend, listen",
        "dynamic-cookie-key",
        "`dynamic_cookie_key`",
    ),
    (
        "defaults, backend, listen",
        "option persist|redispatch",
        "`options`",
    ),
    (
        "defaults, backend, listen",
        "option forwardfor",
        "`X-Forwarded-For` gets the client's address (without it, as HAProxy, none: `x_forwarded_for = false`)",
    ),
    (
        "defaults, backend, listen",
        "option httpchk [[METHOD] URI [HTTP/1.0]]",
        "`check_type = \"http\"`, `check_method` (HAProxy's default: OPTIONS), `check_path`",
    ),
    (
        "backend, listen",
        "server NAME ADDRESS[:PORT] ...",
        "`[[backend.server]]` (a host name is looked up when the file is read: init-addr last, libc or an IP address): check, inter, rise, fall, cookie, weight, disabled, maxconn, maxqueue, port; enabled, no-check (cancel a default-server's disabled, check); ssl, verify, ca-file, sni str(NAME), verifyhost (the backend's `ssl`: the same on every server); send-proxy, send-proxy-v2 (the backend's `send_proxy`: the same on every server)",
    ),
    (
        "backend, listen",
        "server-template PREFIX COUNT FQDN[:PORT] ...",
        "`server_template`: check, resolvers, init-addr, weight, resolve-prefer (`resolve_prefer`; unset: ipv6 in mode http, as HAProxy); no-check",
    ),
    (
        "defaults, backend, listen",
        "default-server PARAMETERS",
        "the parameters of `server` and `server-template` for the lines after it (a defaults section's first, later lines replacing earlier ones), written where they act",
    ),
    (
        "backend, listen",
        "http-check send [meth METHOD] [uri URI] [ver HTTP/1.0]",
        "`check_method`, `check_path` (with `option httpchk`)",
    ),
    (
        "backend, listen",
        "http-check expect status CODES",
        "`check_status` (with `option httpchk`)",
    ),
    (
        "backend, listen",
        "stick-table type ip|ipv6 size N expire T [peers P]",
        "`stick_table` (sizes are HAProxy's powers of two)",
    ),
    (
        "backend, listen",
        "stick on|match|store-request src[,ipmask(V4[,V6])]",
        "`stick`, `key_mask_v4`/`key_mask_v6`",
    ),
    (
        "peers",
        "peer NAME ADDRESS:PORT / bind / server NAME [ADDRESS:PORT]",
        "`[peers.NAME]` (the secret: --peers-secret-file)",
    ),
    ("resolvers", "nameserver NAME ADDRESS:PORT", "`nameservers`"),
    (
        "resolvers",
        "accepted_payload_size, resolve_retries",
        "`accepted_payload_size`, `retries`",
    ),
    (
        "resolvers",
        "timeout resolve|retry, hold nx|obsolete",
        "`refresh`, `timeout`, `hold_nx`, `hold_obsolete`",
    ),
];

/// What `.if feature(NAME)` finds true: the HAProxy build options
/// (`haproxy -vv`'s "Feature list") balancer implements. None yet: every
/// `feature(NAME)` is false (an empty name aside, as in HAProxy). A name
/// goes here only once balancer does what configurations guarded by it
/// expect (e.g. `OPENSSL` once `bind ... ssl` is read).
pub const FEATURES: &[&str] = &[];

/// balancer's own settings for a haproxy.cfg (command-line options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// XDP interfaces (`mode tcp` frontends need at least one).
    pub interfaces: Vec<String>,
    pub xdp_mode: Option<String>,
    /// How `mode tcp` backends forward (`forward`: dsr-l2 or ipip).
    pub forward: Option<String>,
    pub pin_dir: Option<String>,
    pub admin_socket: Option<String>,
    /// This instance's name in `peers` (default: `localpeer` in global,
    /// else the host name, as HAProxy).
    pub local_peer: Option<String>,
    /// The peers' shared secret (HAProxy's peers have none).
    pub peers_secret: Option<String>,
}

/// A keyword skipped, or a `.warning`-like message, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub text: String,
}

/// A line balancer cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {keyword}: {reason}")]
pub struct CfgError {
    pub line: usize,
    pub keyword: String,
    pub reason: String,
}

/// A haproxy.cfg as TOML.
#[derive(Debug)]
pub struct Converted {
    pub toml: String,
    /// For each TOML line (0-based), the .cfg line it came from (0: none).
    pub sources: Vec<usize>,
    pub warnings: Vec<Warning>,
    /// Servers whose address was a host name: (backend, server, name).
    pub hosts: Vec<(String, String, String)>,
}

impl Converted {
    /// The .cfg line of TOML line `line` (1-based), if it came from one.
    pub fn source(&self, line: usize) -> usize {
        line.checked_sub(1)
            .and_then(|i| self.sources.get(i))
            .copied()
            .unwrap_or(0)
    }
}

/// Whether `text` (the file at `path`) is a haproxy.cfg rather than TOML:
/// its name ends in `.cfg`, or its first word opens a HAProxy section.
pub fn is_haproxy(path: &Path, text: &str) -> bool {
    if path.extension().is_some_and(|e| e == "cfg") {
        return true;
    }
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    first.is_some_and(|l| {
        let w = l.split_whitespace().next().unwrap_or("");
        matches!(
            w,
            "global" | "defaults" | "frontend" | "backend" | "listen" | "peers" | "resolvers"
        )
    })
}

pub use super::hosts::{Lookup, Resolve, libc_resolve};

/// Convert a haproxy.cfg's text; `env` looks up environment variables,
/// host names of `server` lines go to the system resolver.
pub fn convert(
    text: &str,
    opts: &Options,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Converted, CfgError> {
    convert_with(text, opts, env, &libc_resolve)
}

/// [`convert`] with the host names of `server` lines looked up by
/// `resolve`.
pub fn convert_with(
    text: &str,
    opts: &Options,
    env: &dyn Fn(&str) -> Option<String>,
    resolve: Resolve<'_>,
) -> Result<Converted, CfgError> {
    let lookup = Lookup {
        resolve,
        last: None,
    };
    convert_looking_up(text, opts, env, &lookup)
}

/// [`convert`] with the host names of `server` lines looked up by
/// `lookup` (`init-addr last` from its running configuration).
pub fn convert_looking_up(
    text: &str,
    opts: &Options,
    env: &dyn Fn(&str) -> Option<String>,
    lookup: &Lookup<'_>,
) -> Result<Converted, CfgError> {
    let lines = lex::lex(text, env).map_err(|e| CfgError {
        line: e.line,
        keyword: "syntax".into(),
        reason: e.message,
    })?;
    let (lines, mut warnings) = cond::select(lines, env)?;
    let cfg = sections::parse(&lines)?;
    let out = emit::emit(&cfg, opts, lookup)?;
    warnings.extend(cfg.warnings);
    warnings.extend(out.warnings);
    warnings.sort_by_key(|w| w.line);
    Ok(Converted {
        toml: out.text,
        sources: out.sources,
        warnings,
        hosts: out.hosts,
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
