//! `[dataplane]`: the interfaces the XDP program is attached to, how, and
//! where its maps are pinned.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};

use serde::Deserialize;

use super::{ConfigError, DEFAULT_PIN_DIR, Validator, parse_duration};

/// `insert_cap` when the file has none: new stick entries per CPU per
/// second. Far above what clients that are new to a table arrive at (a
/// 1m-entry table with a 30m expire holds at most 583 new clients a second
/// without evicting), far below what a spoofed-source flood inserts
/// uncapped (over a million a second per CPU): it bounds how fast a flood can
/// push real clients' entries out. See README "Limits and timeouts".
pub const DEFAULT_INSERT_CAP: u32 = 10_000;

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataplane {
    /// Absent (or no `[dataplane]`): none, an HTTP-only configuration.
    #[serde(default)]
    pub(super) interfaces: Vec<String>,
    /// `None`: not in the file (the default applies; see [`DataplaneKeys`]).
    xdp_mode: Option<XdpMode>,
    pin_dir: Option<PathBuf>,
    insert_cap: Option<u32>,
    stick_refresh: Option<String>,
    tunnel_source_v4: Option<Ipv4Addr>,
    tunnel_source_v6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone)]
pub struct Dataplane {
    /// Interfaces the XDP program is attached to (at least one, no duplicates).
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    /// Directory on a bpffs where the daemon pins its maps.
    pub pin_dir: PathBuf,
    /// Whether the file set `pin_dir`: an HTTP-only configuration then
    /// keeps its stick tables in a pinned map (see [`super::Config::needs_kernel`]).
    pub pin_dir_set: bool,
    /// New stick entries per CPU per second (flood guard); 0 = no cap.
    /// Default [`DEFAULT_INSERT_CAP`].
    pub insert_cap: u32,
    pub stick_refresh: Duration,
    /// Outer source of IPIP packets; default: the route's preferred source
    /// towards the first IPv4 server.
    pub tunnel_source_v4: Option<Ipv4Addr>,
    pub tunnel_source_v6: Option<Ipv6Addr>,
}

impl Dataplane {
    /// An XDP interface, or `pin_dir` set: see [`super::Config::needs_kernel`].
    pub fn needs_kernel(&self) -> bool {
        !self.interfaces.is_empty() || self.pin_dir_set
    }
}

/// Which `[dataplane]` keys with a default the file set: each has an effect
/// only in some configurations (checked once the frontends are known).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DataplaneKeys {
    pub xdp_mode: bool,
    pub insert_cap: bool,
    pub stick_refresh: bool,
}

impl Validator<'_> {
    pub(super) fn dataplane(
        &self,
        d: RawDataplane,
    ) -> Result<(Dataplane, DataplaneKeys), ConfigError> {
        // An empty list is checked against the frontends in settle_modes.
        for (i, name) in d.interfaces.iter().enumerate() {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
                return Err(self.err(
                    "dataplane.interfaces",
                    format!("{name:?} is not a valid interface name"),
                ));
            }
            if d.interfaces[..i].contains(name) {
                return Err(self.err("dataplane.interfaces", format!("{name:?} is listed twice")));
            }
        }
        let pin_dir_set = d.pin_dir.is_some();
        let pin_dir = d.pin_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR));
        if !pin_dir.is_absolute() {
            return Err(self.err(
                "dataplane.pin_dir",
                format!("{} is not an absolute path", pin_dir.display()),
            ));
        }
        let keys = DataplaneKeys {
            xdp_mode: d.xdp_mode.is_some(),
            insert_cap: d.insert_cap.is_some(),
            stick_refresh: d.stick_refresh.is_some(),
        };
        let stick_refresh = match d.stick_refresh {
            Some(s) => parse_duration(&s).map_err(|r| self.err("dataplane.stick_refresh", r))?,
            None => Duration::from_secs(1),
        };
        let dataplane = Dataplane {
            interfaces: d.interfaces,
            xdp_mode: d.xdp_mode.unwrap_or_default(),
            pin_dir,
            pin_dir_set,
            insert_cap: d.insert_cap.unwrap_or(DEFAULT_INSERT_CAP),
            stick_refresh,
            tunnel_source_v4: d.tunnel_source_v4,
            tunnel_source_v6: d.tunnel_source_v6,
        };
        Ok((dataplane, keys))
    }
}
