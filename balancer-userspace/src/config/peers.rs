//! `[peers.<section>]`: who this instance is, who its peers are, and the
//! shared secret that authenticates them.
//!
//! ```toml
//! [peers.lb]
//! local = "a"                        # this instance: one of the names below
//! secret = "at least 16 bytes ..."   # shared by every peer of the section
//! scan_interval = "100ms"            # how often the stick table is scanned for changes
//! refresh = "10s"                    # a refreshed last-seen time is sent at most this often per entry;
//!                                    # the whole table is also rescanned every refresh / 2 (1 s to 30 s)
//! [peers.lb.peer]
//! a = "198.18.0.1:7100"              # NAME = ADDRESS:PORT; `local`'s is where it listens
//! b = "198.18.0.2:7100"
//! ```
//! A backend's stick table opts in with `stick_table = { ..., peers = "lb" }`.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use serde::Deserialize;

use super::{Backend, parse_duration};

/// Shortest accepted secret, in bytes.
pub const MIN_SECRET: usize = 16;
/// Longest peer name (it travels in the handshake).
pub const MAX_PEER_NAME: usize = 64;
/// Most peers in a section (the local one included).
pub const MAX_PEERS: usize = 32;
const DEFAULT_SCAN: Duration = Duration::from_millis(100);
const DEFAULT_REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeers {
    local: String,
    secret: String,
    scan_interval: Option<String>,
    refresh: Option<String>,
    #[serde(default)]
    peer: BTreeMap<String, String>,
}

/// A validated peers section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeersConfig {
    /// The section's name (`[peers.<name>]`).
    pub section: String,
    /// This instance's name in the section.
    pub local: String,
    /// Where this instance listens (its own entry in the list).
    pub bind: SocketAddr,
    pub secret: String,
    /// The other peers, by name.
    pub remotes: BTreeMap<String, SocketAddr>,
    pub scan_interval: Duration,
    pub refresh: Duration,
}

impl PeersConfig {
    /// Whether frontend traffic of `backend` is replicated by this section.
    pub fn replicates(&self, backend: &Backend) -> bool {
        backend.peers.as_deref() == Some(self.section.as_str())
    }
}

/// Check the `[peers.*]` sections and the backends' `stick_table.peers`;
/// errors are `(key, reason)`.
pub fn validate(
    raw: BTreeMap<String, RawPeers>,
    backends: &[Backend],
) -> Result<Option<PeersConfig>, (String, String)> {
    if raw.len() > 1 {
        return Err(("peers".into(), "at most one peers section".into()));
    }
    let section = match raw.into_iter().next() {
        None => None,
        Some((name, p)) => Some(section(name, p)?),
    };
    for (i, b) in backends.iter().enumerate() {
        let Some(want) = &b.peers else { continue };
        let key = format!("backend[{i}].stick_table.peers");
        match &section {
            Some(s) if &s.section == want => {}
            _ => return Err((key, format!("no [peers.{want}] section"))),
        }
    }
    // Every backend is used by a frontend here (settle_modes refuses the
    // others), and an http backend's table exists only with stick rules.
    if let Some(s) = &section
        && !backends.iter().any(|b| s.replicates(b))
    {
        return Err((
            format!("peers.{}", s.section),
            format!(
                "no stick table names it (stick_table = {{ ..., peers = {:?} }}): it would \
                 replicate nothing",
                s.section
            ),
        ));
    }
    Ok(section)
}

fn section(name: String, p: RawPeers) -> Result<PeersConfig, (String, String)> {
    let key = |k: &str| format!("peers.{name}.{k}");
    if name.is_empty() || name.len() > MAX_PEER_NAME {
        return Err((
            format!("peers.{name}"),
            "section name: 1 to 64 bytes".into(),
        ));
    }
    if p.secret.len() < MIN_SECRET {
        return Err((key("secret"), format!("at least {MIN_SECRET} bytes")));
    }
    if p.peer.len() > MAX_PEERS {
        return Err((key("peer"), format!("at most {MAX_PEERS} peers")));
    }
    let mut remotes = BTreeMap::new();
    let mut bind = None;
    for (n, addr) in &p.peer {
        if n.is_empty() || n.len() > MAX_PEER_NAME || n.contains(['/', ' ']) {
            return Err((
                key(&format!("peer.{n}")),
                "name: 1 to 64 bytes, no '/' or space".into(),
            ));
        }
        let a: SocketAddr = addr.parse().map_err(|_| {
            (
                key(&format!("peer.{n}")),
                format!("{addr:?}: want ADDRESS:PORT"),
            )
        })?;
        let problem = if a.port() == 0 {
            Some("port 0: give the port the peer listens on")
        } else if a.ip().is_unspecified() {
            Some("a wildcard address: give the address the other peers reach this one at")
        } else if a.ip().is_multicast() {
            Some("a multicast address: give a unicast one")
        } else {
            None
        };
        if let Some(p) = problem {
            return Err((key(&format!("peer.{n}")), format!("{a}: {p}")));
        }
        if *n == p.local {
            bind = Some(a);
        } else {
            remotes.insert(n.clone(), a);
        }
    }
    let bind = bind.ok_or_else(|| {
        (
            key("local"),
            format!("{:?} is not one of the section's peers", p.local),
        )
    })?;
    if remotes.is_empty() {
        return Err((
            key("peer"),
            format!(
                "only the local peer {:?}: there is no one to replicate with (and the pinned \
                 table already outlives a restart or reload), so it would have no effect; \
                 list the other instances",
                p.local
            ),
        ));
    }
    let dur = |k: &str, v: &Option<String>, d: Duration, min: Duration| match v {
        None => Ok(d),
        Some(t) => {
            let t = parse_duration(t).map_err(|r| (key(k), r))?;
            if t < min {
                return Err((key(k), format!("at least {}ms", min.as_millis())));
            }
            Ok(t)
        }
    };
    Ok(PeersConfig {
        scan_interval: dur(
            "scan_interval",
            &p.scan_interval,
            DEFAULT_SCAN,
            Duration::from_millis(10),
        )?,
        refresh: dur(
            "refresh",
            &p.refresh,
            DEFAULT_REFRESH,
            Duration::from_millis(100),
        )?,
        section: name,
        local: p.local,
        bind,
        secret: p.secret,
        remotes,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    const BASE: &str = r#"
[dataplane]
interfaces = ["eth0"]

[[frontend]]
name = "web"
bind = "198.18.2.100:80"
default_backend = "web"

[[backend]]
name = "web"
stick_table = { size = "10k", peers = "lb" }
[[backend.server]]
name = "s0"
address = "198.18.1.10"
"#;

    fn parse(peers: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("t.toml"), &format!("{BASE}\n{peers}"))
    }

    fn err(peers: &str) -> String {
        parse(peers).expect_err("want an error").to_string()
    }

    const GOOD: &str = r#"
[peers.lb]
local = "a"
secret = "0123456789abcdef"
[peers.lb.peer]
a = "198.18.0.1:7100"
b = "198.18.0.2:7100"
"#;

    #[test]
    fn a_valid_section() {
        let c = parse(GOOD).unwrap();
        let p = c.peers.unwrap();
        assert_eq!(p.local, "a");
        assert_eq!(p.bind, "198.18.0.1:7100".parse().unwrap());
        assert_eq!(p.remotes.len(), 1);
        assert_eq!(p.remotes["b"], "198.18.0.2:7100".parse().unwrap());
        assert!(p.replicates(&c.backends[0]));
    }

    #[test]
    fn errors_name_their_key() {
        let e = err(&GOOD.replace("local = \"a\"", "local = \"z\""));
        assert!(e.contains("peers.lb.local") && e.contains("\"z\""), "{e}");
        let e = err(&GOOD.replace("0123456789abcdef", "short"));
        assert!(
            e.contains("peers.lb.secret") && e.contains("16 bytes"),
            "{e}"
        );
        let e = err(&GOOD.replace("198.18.0.2:7100", "198.18.0.2"));
        assert!(e.contains("peers.lb.peer.b"), "{e}");
        let e = err(&GOOD
            .replace("[peers.lb]", "[peers.other]")
            .replace("peers.lb.peer", "peers.other.peer"));
        assert!(
            e.contains("stick_table.peers") && e.contains("[peers.lb]"),
            "{e}"
        );
        let e = err(&GOOD.replace("local = \"a\"", "local = \"a\"\nscan_interval = \"1ms\""));
        assert!(
            e.contains("peers.lb.scan_interval") && e.contains("at least"),
            "{e}"
        );
        let e = err(&GOOD.replace("local = \"a\"", "local = \"a\"\nbogus = 1"));
        assert!(e.contains("bogus"), "{e}");
        // Without any section, a table naming one is an error too.
        let e = err("");
        assert!(e.contains("stick_table.peers"), "{e}");
    }
}
