//! haproxy.cfg's access-log keywords: `log` (global, and `log global`,
//! `log TARGET FACILITY`, `no log` in defaults and proxies), `log-tag`,
//! `option httplog`, `option tcplog`, `option dontlognull`; and a
//! frontend's `log = { ... }` in the TOML they become.
//!
//! Targets: a path (a local syslog socket, as `/dev/log`; `unix@PATH`
//! too) and `stdout`. HAProxy's network targets (UDP, TCP, rings) and
//! `stderr` are refused, as are `len`, `sample` and a maximum level that
//! would filter out access logs (HAProxy sends them at `info`).

use super::{
    CfgError, Warning,
    emit::{Emitter, err, quote},
    lex::Line,
    sections::{At, Cfg, Proxy},
};
use crate::config::FACILITIES;

/// A `log TARGET [format F] FACILITY [LEVEL [MINLEVEL]]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// TOML's spelling: `stdout` or `unix:PATH`.
    pub target: String,
    pub facility: String,
    /// `format rfc3164` (`Some(true)`) or `raw` (`Some(false)`).
    pub header: Option<bool>,
}

/// What a proxy's `log` lines say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogUse {
    /// `log global`.
    Global,
    /// `log TARGET FACILITY`.
    Own(LogLine),
    /// `no log`.
    Off,
}

/// Parse `log ...` (global, or a proxy's own target).
pub fn log_line(l: &Line) -> Result<LogLine, CfgError> {
    let e = |r: &str| err(l.number, "log", r);
    let mut w = l.words[1..].iter().map(String::as_str).peekable();
    let target = match w.next() {
        None => return Err(e("needs a target and a facility")),
        Some("stdout") => "stdout".to_owned(),
        Some(t) if t.starts_with('/') => format!("unix:{t}"),
        Some(t) if t.starts_with("unix@/") => format!("unix:{}", &t[5..]),
        Some(t) => {
            return Err(e(&format!(
                "{t:?}: balancer logs to a local syslog socket (a path such as /dev/log) or \
                 stdout; network and ring targets are not supported"
            )));
        }
    };
    let mut header = None;
    let mut facility = None;
    while let Some(word) = w.next() {
        match word {
            "format" => match w.next() {
                Some("rfc3164") => header = Some(true),
                Some("raw") => header = Some(false),
                other => {
                    return Err(e(&format!(
                        "format {}: balancer writes rfc3164 or raw",
                        other.unwrap_or("(missing)")
                    )));
                }
            },
            "len" | "sample" => return Err(e(&format!("`{word}`: not supported"))),
            f if facility.is_none() => {
                if !FACILITIES.contains(&f) {
                    return Err(e(&format!("{f:?}: not a syslog facility")));
                }
                facility = Some(f.to_owned());
            }
            // Levels: access logs are sent at info.
            "info" | "debug" => {}
            other => {
                return Err(e(&format!(
                    "level {other}: would keep out every access log (sent at info); only info \
                     or debug"
                )));
            }
        }
    }
    let Some(facility) = facility else {
        return Err(e("needs a facility (e.g. local0)"));
    };
    Ok(LogLine {
        target,
        facility,
        header,
    })
}

/// A proxy's `log` line (`global`, a target, or with `no`, off).
pub fn log_use(l: &Line) -> Result<LogUse, CfgError> {
    match l.words.as_slice() {
        [no, log] if no == "no" && log == "log" => Ok(LogUse::Off),
        [_, g] if g == "global" => Ok(LogUse::Global),
        [no, ..] if no == "no" => Err(err(l.number, "no log", "takes no arguments")),
        _ => log_line(l).map(LogUse::Own),
    }
}

/// `option httplog|tcplog|dontlognull` as the proxy's settings keep them.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub log: Option<At<LogUse>>,
    pub httplog: Option<usize>,
    pub tcplog: Option<usize>,
    pub dontlognull: Option<usize>,
}

/// Frontend `p`'s access log as TOML (`http`: its mode is http).
pub(super) fn emit(cfg: &Cfg, p: &Proxy, http: bool, e: &mut Emitter) -> Result<(), CfgError> {
    let o = &p.s.log;
    let (line, target) = match &o.log {
        Some(At {
            v: LogUse::Global,
            line,
        }) => match &cfg.global.log {
            Some(g) => (*line, &g.v),
            None => {
                return Err(err(
                    *line,
                    "log global",
                    "no `log` line in the global section",
                ));
            }
        },
        Some(At {
            v: LogUse::Own(t),
            line,
        }) => (*line, t),
        _ => {
            if let (Some(l), true) = (o.tcplog, http) {
                return Err(err(l, "option tcplog", tcplog_on_http()));
            }
            return Ok(());
        }
    };
    if !http {
        let l = o.tcplog.unwrap_or(line);
        return Err(err(
            l,
            if o.tcplog.is_some() {
                "option tcplog"
            } else {
                "log"
            },
            "a mode tcp frontend runs on XDP, which keeps no per-connection log (write `no log` \
             in it)",
        ));
    }
    if let Some(l) = o.tcplog {
        return Err(err(l, "option tcplog", tcplog_on_http()));
    }
    let Some(h) = o.httplog else {
        return Err(err(
            line,
            "log",
            "without `option httplog`: balancer writes HAProxy's httplog format (or json in \
             TOML), not its default log format",
        ));
    };
    let mut fields = vec![
        format!("format = {}", quote("httplog")),
        format!("target = {}", quote(&target.target)),
        format!("facility = {}", quote(&target.facility)),
        // HAProxy's default is rfc3164, whatever the target.
        format!(
            "header = {}",
            quote(if target.header.unwrap_or(true) {
                "rfc3164"
            } else {
                "raw"
            })
        ),
    ];
    if let Some(t) = &cfg.global.log_tag {
        fields.push(format!("tag = {}", quote(&t.v)));
    }
    if o.dontlognull.is_some() {
        fields.push("dontlognull = true".into());
    }
    e.line(h.max(line), format!("log = {{ {} }}", fields.join(", ")));
    Ok(())
}

/// A global `log` (or `log-tag`) that no frontend uses (`log global`):
/// said, not silently ignored.
pub(super) fn unused_global(cfg: &Cfg, e: &mut Emitter) {
    let used = cfg.proxies.iter().any(|p| {
        p.kind.front()
            && matches!(
                &p.s.log.log,
                Some(At {
                    v: LogUse::Global,
                    ..
                })
            )
    });
    let lines = [
        cfg.global.log.as_ref().map(|l| (l.line, "log")),
        cfg.global.log_tag.as_ref().map(|l| (l.line, "log-tag")),
    ];
    for (line, k) in lines.into_iter().flatten().filter(|_| !used) {
        e.warnings.push(Warning {
            line,
            text: format!(
                "global `{k}`: skipped (no frontend has `log global`: balancer logs requests, by \
                 their frontend, and its own messages to stderr)"
            ),
        });
    }
}

fn tcplog_on_http() -> &'static str {
    "on an http frontend: balancer logs its requests with `option httplog` (tcplog is for mode \
     tcp, which runs on XDP and keeps no per-connection log)"
}
