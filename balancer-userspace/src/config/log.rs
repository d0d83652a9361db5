//! Access logs of HTTP frontends: a frontend's `log = { ... }` table, its
//! unset keys taken from the top-level `[log]` table (HAProxy's `log
//! global`). Raw -> validated here; the daemon opens the targets, the
//! proxy writes the lines (`http/log/`).
//!
//! ```toml
//! [log]                          # defaults for the frontends' `log`
//! target = "unix:/dev/log"       # "stdout", "unix:PATH" (syslog datagrams), or a file path
//! facility = "local0"
//!
//! [[frontend]]
//! log = { format = "httplog" }   # or "json"; any key of [log] may be given here too
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Validator};

/// `[log]`, and a frontend's `log` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    format: Option<String>,
    target: Option<String>,
    facility: Option<String>,
    tag: Option<String>,
    header: Option<String>,
    dontlognull: Option<bool>,
}

/// What a line looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// HAProxy's `option httplog` line.
    HttpLog,
    /// The same fields, one JSON object per line.
    Json,
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogTarget {
    Stdout,
    /// A file, appended to (reopened on SIGUSR1).
    File(PathBuf),
    /// A local syslog socket (unix datagrams), as `/dev/log`.
    Unix(PathBuf),
}

/// A frontend's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub target: LogTarget,
    /// Syslog facility number (`local0` = 16).
    pub facility: u8,
    /// Syslog tag (the program name in the header).
    pub tag: String,
    /// Each line starts with an RFC 3164 header (`<PRI>Mmm dd hh:mm:ss
    /// TAG[PID]: `); default for `unix:` targets only.
    pub syslog_header: bool,
    /// `option dontlognull`: connections that sent no request are not
    /// logged (the proxy logs requests only, so this changes nothing in
    /// what is written; kept so a config says it).
    pub dontlognull: bool,
}

/// Syslog facility names, by number (HAProxy's list).
pub const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
    "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// Tag of the syslog header unless `tag` says another.
pub const DEFAULT_TAG: &str = "balancer";

impl Validator<'_> {
    /// A frontend's `log` (its unset keys from `[log]`); `key` names it.
    pub(super) fn log(
        &self,
        key: &str,
        own: &RawLog,
        global: Option<&RawLog>,
    ) -> Result<LogSettings, ConfigError> {
        let g = global.cloned().unwrap_or_default();
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        let format = match pick(&own.format, &g.format).as_deref().unwrap_or("httplog") {
            "httplog" => LogFormat::HttpLog,
            "json" => LogFormat::Json,
            "tcplog" => {
                return Err(self.err(
                    format!("{key}.log.format"),
                    "tcplog: an http frontend logs requests (httplog or json); mode tcp runs on \
                     XDP, which keeps no per-connection log",
                ));
            }
            other => {
                return Err(self.err(
                    format!("{key}.log.format"),
                    format!("{other:?}: want \"httplog\" or \"json\""),
                ));
            }
        };
        let Some(t) = pick(&own.target, &g.target) else {
            return Err(self.err(
                format!("{key}.log.target"),
                "missing (here or in [log]): \"stdout\", \"unix:PATH\" or a file path",
            ));
        };
        let target = if t == "stdout" {
            LogTarget::Stdout
        } else if let Some(p) = t.strip_prefix("unix:") {
            LogTarget::Unix(PathBuf::from(p))
        } else if t.starts_with('/') {
            LogTarget::File(PathBuf::from(t))
        } else {
            return Err(self.err(
                format!("{key}.log.target"),
                format!("{t:?}: want \"stdout\", \"unix:/PATH\" or an absolute file path"),
            ));
        };
        let fac = pick(&own.facility, &g.facility).unwrap_or_else(|| "local0".into());
        let Some(facility) = FACILITIES.iter().position(|f| *f == fac) else {
            return Err(self.err(
                format!("{key}.log.facility"),
                format!("{fac:?}: want one of {}", FACILITIES.join(", ")),
            ));
        };
        let tag = pick(&own.tag, &g.tag).unwrap_or_else(|| DEFAULT_TAG.into());
        if tag.is_empty() || tag.len() > 32 || !tag.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(self.err(
                format!("{key}.log.tag"),
                format!("{tag:?}: 1 to 32 printable characters, no space"),
            ));
        }
        let syslog_header = match pick(&own.header, &g.header).as_deref() {
            None => matches!(target, LogTarget::Unix(_)),
            Some("rfc3164") => true,
            Some("raw") => false,
            Some(other) => {
                return Err(self.err(
                    format!("{key}.log.header"),
                    format!("{other:?}: want \"rfc3164\" or \"raw\""),
                ));
            }
        };
        Ok(LogSettings {
            format,
            target,
            facility: facility as u8,
            tag,
            syslog_header,
            dontlognull: own.dontlognull.or(g.dontlognull).unwrap_or(false),
        })
    }
}
