//! Runtime server changes that outlive a reload and, with a state file, a
//! restart (HAProxy's `server-state-file`).
//!
//! What the admin API changes (`backend state|weight|add|remove`) is kept
//! per server, `BACKEND/SERVER`, and applied again after each reload and
//! at start:
//! - an administrative state (`maint`, `drain`, `down`, `up`);
//! - a weight, with the configured weight it replaced: applied only while
//!   the configuration still says that one (as HAProxy applies a saved
//!   weight only while the server's configured weight is the saved one),
//!   so editing the weight in the file wins;
//! - a server added at run time, while the configuration has no server of
//!   that name;
//! - a server removed at run time, while the configuration's server has
//!   the address it had.
//!
//! A change that no longer applies (its backend or server left the
//! configuration, the configuration took it over) is forgotten. With
//! `[global] server_state_file`, the changes are written to that file
//! (JSON, atomically: a new file renamed over the old, and synced) after
//! each one, and read at start.

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
};

use log::{info, warn};
use serde::{Deserialize, Serialize};

use super::Controller;
use crate::config::{AdminState, CheckTiming, Config, Server};

/// The state file's format version.
const VERSION: u32 = 1;
/// A larger state file is not read (it is not one of ours).
const MAX_BYTES: u64 = 16 << 20;

/// Runtime changes by server (`BACKEND/SERVER`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeState {
    version: u32,
    servers: BTreeMap<String, Change>,
}

/// What the admin API changed of one server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// `up`, `drain`, `down` or `maint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    admin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<Weight>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    added: Option<Added>,
    /// Removed; the address it had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    removed: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Weight {
    value: u32,
    /// The configured weight it replaced (`None`: an added server's).
    configured: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Added {
    address: IpAddr,
    port: Option<u16>,
    cookie: Option<String>,
    weight: u32,
    check: bool,
}

impl RuntimeState {
    /// The changes in `path`; none when it does not exist yet. A file that
    /// cannot be read or parsed is set aside (renamed `*.bad`) with a
    /// warning: the configuration applies, and the next change starts a
    /// new file.
    pub fn load(path: &Path) -> RuntimeState {
        match read(path) {
            Ok(Some(s)) => {
                info!(
                    "server state: {} server(s) changed at run time, from {}",
                    s.servers.len(),
                    path.display()
                );
                s
            }
            Ok(None) => RuntimeState::default(),
            Err(e) => {
                let bad = bad_path(path);
                let kept = std::fs::rename(path, &bad).map_or_else(
                    |r| format!("(not set aside: {r})"),
                    |()| format!("(set aside as {})", bad.display()),
                );
                warn!(
                    "server state {}: {e}; the configuration applies {kept}",
                    path.display()
                );
                RuntimeState::default()
            }
        }
    }

    /// Write the changes to `path` atomically: a temporary file beside it,
    /// synced, renamed over it, and the directory synced.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut out = self.clone();
        out.version = VERSION;
        let text = serde_json::to_vec_pretty(&out).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn entry(&mut self, full: &str) -> &mut Change {
        self.servers.entry(full.to_owned()).or_default()
    }
}

fn read(path: &Path) -> Result<Option<RuntimeState>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if !meta.is_file() || meta.len() > MAX_BYTES {
        return Err(format!("not a regular file of at most {MAX_BYTES} bytes"));
    }
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    if text.starts_with(b"1\n#") {
        let state = from_haproxy(&String::from_utf8_lossy(&text))?;
        info!(
            "server state: {} read in HAProxy's format ({} server(s) with changes); balancer \
             writes its own there from the next change",
            path.display(),
            state.servers.len()
        );
        return Ok(Some(state));
    }
    let state: RuntimeState = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    if state.version != VERSION {
        return Err(format!(
            "format version {}, this balancer reads {VERSION}",
            state.version
        ));
    }
    Ok(Some(state))
}

/// HAProxy's `show servers state` output (format 1), as a migrating
/// operator's `server-state-file` holds it: each server's forced
/// maintenance or drain (`srv_admin_state` bits 0x01, 0x08) and its weight
/// set at run time (`srv_uweight`, kept while the configured weight is
/// `srv_iweight`, as HAProxy applies it).
fn from_haproxy(text: &str) -> Result<RuntimeState, String> {
    const FORCED_MAINT: u32 = 0x01;
    const FORCED_DRAIN: u32 = 0x08;
    let mut lines = text.lines().skip(1);
    let header = lines.next().unwrap_or_default();
    let names: Vec<&str> = header.trim_start_matches('#').split_whitespace().collect();
    let col = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| format!("HAProxy state file without {name}"))
    };
    let (be, srv, admin, uw, iw) = (
        col("be_name")?,
        col("srv_name")?,
        col("srv_admin_state")?,
        col("srv_uweight")?,
        col("srv_iweight")?,
    );
    let mut out = RuntimeState::default();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let field = |i: usize| {
            f.get(i)
                .copied()
                .ok_or_else(|| format!("HAProxy state file line {}: too few fields", n + 3))
        };
        let number = |i: usize| {
            field(i)?.parse::<u32>().map_err(|_| {
                format!(
                    "HAProxy state file line {}: field {} is not a number",
                    n + 3,
                    i + 1
                )
            })
        };
        let bits = number(admin)?;
        let (uweight, iweight) = (number(uw)?, number(iw)?);
        let mut c = Change::default();
        if bits & FORCED_MAINT != 0 {
            c.admin = Some(AdminState::Maint.as_str().to_owned());
        } else if bits & FORCED_DRAIN != 0 {
            c.admin = Some(AdminState::Drain.as_str().to_owned());
        }
        if uweight != iweight {
            c.weight = Some(Weight {
                value: uweight,
                configured: Some(iweight),
            });
        }
        if c != Change::default() {
            out.servers
                .insert(format!("{}/{}", field(be)?, field(srv)?), c);
        }
    }
    Ok(out)
}

fn bad_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".bad");
    path.with_file_name(name)
}

impl RuntimeState {
    /// Apply the changes to `config`'s servers (at start and before each
    /// reload is applied, so that servers keep their ids by name and
    /// their checks), forgetting those that no longer apply. Whether any
    /// was forgotten.
    pub fn overlay(&mut self, config: &mut Config) -> bool {
        let before = self.servers.len();
        let changes = std::mem::take(&mut self.servers);
        for (full, change) in changes {
            if let Some(kept) = overlay_one(config, &full, change) {
                self.servers.insert(full, kept);
            }
        }
        self.servers.len() != before
    }
}

/// Apply one server's change to `config`; what of it still applies.
fn overlay_one(config: &mut Config, full: &str, mut c: Change) -> Option<Change> {
    let (backend, name) = full.split_once('/')?;
    let Some(b) = config.backends.iter_mut().find(|b| b.name == backend) else {
        info!("server state: {full}: its backend is gone, and its runtime changes");
        return None;
    };
    let at = b.servers.iter().position(|s| s.name == name);
    if let Some(address) = c.removed {
        match at {
            Some(i) if b.servers[i].address == address => {
                b.servers.remove(i);
                return Some(c);
            }
            _ => {
                info!("server state: {full}: the configuration changed it; its removal is dropped");
                return None;
            }
        }
    }
    let admin = c.admin.as_deref().and_then(AdminState::parse);
    let server = match (&c.added, at) {
        (Some(_), Some(_)) => {
            info!("server state: {full}: now in the configuration, which applies");
            return None;
        }
        (None, None) => {
            info!("server state: {full}: no longer in the configuration; its changes are dropped");
            return None;
        }
        (None, Some(i)) => &mut b.servers[i],
        (Some(a), None) => {
            b.servers.push(Server {
                name: name.to_owned(),
                address: a.address,
                port: a.port,
                host: None,
                cookie: a.cookie.clone(),
                weight: a.weight,
                state: admin.unwrap_or(AdminState::Up),
                check: a.check.then(CheckTiming::default),
                maxconn: 0,
                maxqueue: 0,
            });
            b.servers.last_mut()?
        }
    };
    if let Some(state) = admin {
        server.state = state;
    }
    if let Some(w) = &c.weight {
        if w.configured.is_none() || w.configured == Some(server.weight) {
            server.weight = w.value;
        } else {
            info!(
                "server state: {full}: its weight was edited in the configuration, which applies"
            );
            c.weight = None;
        }
    }
    Some(c)
}

impl Controller {
    /// Record that `full` (`BACKEND/SERVER`) was set to `state` at run
    /// time.
    pub(super) fn note_admin(&mut self, full: &str, state: AdminState) {
        self.runtime.entry(full).admin = Some(state.as_str().to_owned());
        self.save_runtime();
    }

    /// Record a weight set at run time, with the configured one it
    /// replaces (that of the first change, which the configuration still
    /// says; none for a server added at run time).
    pub(super) fn note_weight(&mut self, full: &str, value: u32) {
        let file = self.file_weight(full);
        let c = self.runtime.entry(full);
        let configured = match (&c.added, &c.weight) {
            (Some(_), _) => None,
            (None, Some(w)) => w.configured,
            (None, None) => file,
        };
        c.weight = Some(Weight { value, configured });
        self.save_runtime();
    }

    /// Record server `i`, just added at run time.
    pub(super) fn note_added(&mut self, i: usize) {
        let s = &self.servers[i];
        let full = format!("{}/{}", s.backend, s.name);
        let change = Change {
            added: Some(Added {
                address: s.address,
                port: s.port,
                cookie: s.cookie.clone(),
                weight: s.weight,
                check: s.check.is_some(),
            }),
            admin: Some(s.admin.as_str().to_owned()),
            ..Change::default()
        };
        self.runtime.servers.insert(full, change);
        self.save_runtime();
    }

    /// Record `full`, removed at run time with `address`. A server added
    /// at run time and removed again leaves nothing to apply.
    pub(super) fn note_removed(&mut self, full: &str, address: IpAddr) {
        let added = self
            .runtime
            .servers
            .get(full)
            .is_some_and(|c| c.added.is_some());
        if added {
            self.runtime.servers.remove(full);
        } else {
            *self.runtime.entry(full) = Change {
                removed: Some(address),
                ..Change::default()
            };
        }
        self.save_runtime();
    }

    /// The weight the configuration gives `full`, if it has it.
    fn file_weight(&self, full: &str) -> Option<u32> {
        let (b, s) = full.split_once('/')?;
        let backend = self.config.backends.iter().find(|x| x.name == b)?;
        Some(backend.servers.iter().find(|x| x.name == s)?.weight)
    }

    /// Write the changes to the state file, if there is one.
    pub(super) fn save_runtime(&self) {
        let Some(path) = &self.config.server_state_file else {
            return;
        };
        if let Err(e) = self.runtime.save(path) {
            warn!(
                "server state: writing {}: {e} (the change is applied, not kept for a restart)",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("blb-state-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn haproxys_state_file_gives_its_forced_states_and_weights() {
        // As `show servers state` prints it (HAProxy 2.6, trimmed columns
        // after srv_iweight).
        let text = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state \
                    srv_uweight srv_iweight srv_time_since_last_change\n\
                    3 app 1 s1 127.0.0.1 0 1 1 1 5\n\
                    3 app 2 s2 127.0.0.2 2 8 1 1 5\n\
                    3 app 3 s3 127.0.0.3 2 0 7 1 5\n\
                    3 app 4 s4 127.0.0.4 2 0 1 1 5\n";
        let s = from_haproxy(text).unwrap();
        assert_eq!(s.servers.len(), 3, "{s:?}");
        assert_eq!(s.servers["app/s1"].admin.as_deref(), Some("maint"));
        assert_eq!(s.servers["app/s2"].admin.as_deref(), Some("drain"));
        assert_eq!(
            s.servers["app/s3"].weight,
            Some(Weight {
                value: 7,
                configured: Some(1)
            })
        );
        assert!(from_haproxy("1\n# be_name srv_name\nx y\n").is_err());
        assert!(
            from_haproxy(
                "1\n# be_name srv_name srv_admin_state srv_uweight srv_iweight\napp s1 x 1 1\n"
            )
            .is_err()
        );
    }

    #[test]
    fn saved_changes_read_back_and_a_bad_file_is_set_aside() {
        let d = dir("roundtrip");
        let path = d.join("state.json");
        assert_eq!(RuntimeState::load(&path), RuntimeState::default());
        let mut s = RuntimeState::default();
        s.entry("app/s1").admin = Some("maint".into());
        s.entry("app/s2").weight = Some(Weight {
            value: 5,
            configured: Some(1),
        });
        s.save(&path).unwrap();
        let back = RuntimeState::load(&path);
        assert_eq!(back.servers, s.servers);
        assert!(!d.join("state.tmp").exists());
        std::fs::write(&path, b"{ not json").unwrap();
        assert_eq!(RuntimeState::load(&path), RuntimeState::default());
        assert!(d.join("state.json.bad").exists());
        assert!(!path.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
