//! Configuration: TOML file -> raw serde structs -> validated [`Config`].
//!
//! Defaults live here, in one place:
//! - `dataplane.xdp_mode` = `"auto"` (native, falling back to generic with a warning)
//! - `dataplane.pin_dir`  = `"/sys/fs/bpf/balancer"`

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/balancer";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
}

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic with a warning.
    #[default]
    Auto,
    /// Native only: fail if the driver cannot run XDP.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    dataplane: RawDataplane,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    interfaces: Vec<String>,
    #[serde(default)]
    xdp_mode: XdpMode,
    pin_dir: Option<PathBuf>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub dataplane: Dataplane,
}

#[derive(Debug, Clone)]
pub struct Dataplane {
    /// Interfaces the XDP program is attached to (at least one, no duplicates).
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    /// Directory on a bpffs where the daemon pins its maps.
    pub pin_dir: PathBuf,
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validate config text; `path` only names the source in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        let invalid = |key, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            reason,
        };
        let d = raw.dataplane;
        if d.interfaces.is_empty() {
            return Err(invalid(
                "dataplane.interfaces",
                "at least one interface is needed".into(),
            ));
        }
        for (i, name) in d.interfaces.iter().enumerate() {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
                return Err(invalid(
                    "dataplane.interfaces",
                    format!("{name:?} is not a valid interface name"),
                ));
            }
            if d.interfaces[..i].contains(name) {
                return Err(invalid(
                    "dataplane.interfaces",
                    format!("{name:?} is listed twice"),
                ));
            }
        }
        let pin_dir = d.pin_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR));
        if !pin_dir.is_absolute() {
            return Err(invalid(
                "dataplane.pin_dir",
                format!("{} is not an absolute path", pin_dir.display()),
            ));
        }
        Ok(Config {
            dataplane: Dataplane {
                interfaces: d.interfaces,
                xdp_mode: d.xdp_mode,
                pin_dir,
            },
        })
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("t.toml"), text)
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse("[dataplane]\ninterfaces = [\"eth0\"]\n").unwrap();
        assert_eq!(c.dataplane.interfaces, ["eth0"]);
        assert_eq!(c.dataplane.xdp_mode, XdpMode::Auto);
        assert_eq!(c.dataplane.pin_dir, Path::new(DEFAULT_PIN_DIR));
    }

    #[test]
    fn errors_name_the_place_and_the_reason() {
        let e = parse("[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"fast\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("t.toml:3:"), "{msg}");
        assert!(msg.contains("fast"), "{msg}");

        let e = parse("[dataplane]\ninterfaces = [\"eth0\"]\ncolour = 1\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.toml:3:1: unknown field `colour`"),
            "{e}"
        );

        let e = parse("[dataplane]\ninterfaces = [\"eth0\", \"eth0\"]\n").unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "dataplane.interfaces",
                    ..
                }
            ),
            "{e}"
        );

        let e = parse("[dataplane]\ninterfaces = []\n").unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "dataplane.interfaces",
                    ..
                }
            ),
            "{e}"
        );

        let e = parse("[dataplane]\ninterfaces = [\"a-very-long-interface-name\"]\n").unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "dataplane.interfaces",
                    ..
                }
            ),
            "{e}"
        );

        let e = parse("[dataplane]\ninterfaces = [\"eth0\"]\npin_dir = \"rel\"\n").unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "dataplane.pin_dir",
                    ..
                }
            ),
            "{e}"
        );

        let e = parse("").unwrap_err();
        assert!(e.to_string().contains("dataplane"), "{e}");
    }
}
