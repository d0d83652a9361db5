//! A backend's `stick_table` (HAProxy's `stick-table`), its key mask, and
//! the `stick` rules of an HTTP backend (HAProxy's `stick on|match|
//! store-request src`). An L4 backend always sticks on the client address
//! (the XDP path); an HTTP backend sticks only by its rules.

use std::time::Duration;

use serde::Deserialize;

use super::{
    ConfigError, DEFAULT_EXPIRE, DEFAULT_STICK_SIZE, MAX_STICK_SIZE, Validator, parse_duration,
    parse_size,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStickTable {
    #[serde(rename = "type")]
    ty: Option<String>,
    size: Option<String>,
    expire: Option<String>,
    /// Name of the `[peers.<section>]` this table is replicated with.
    peers: Option<String>,
    /// Prefix length an IPv4 client address is cut to before it is a key.
    key_mask_v4: Option<u8>,
    /// Prefix length an IPv6 client address is cut to before it is a key.
    key_mask_v6: Option<u8>,
}

/// `stick`: one rule, or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawStick {
    One(String),
    Many(Vec<String>),
}

/// An HTTP backend's stick rules on the client's source address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StickRules {
    /// `stick match src` (or `stick on src`): a request whose client has
    /// an entry goes to its server, if that one may take it.
    pub matches: bool,
    /// `stick store-request src` (or `stick on src`): the server that
    /// answers a request is stored as its client's entry.
    pub stores: bool,
}

impl StickRules {
    pub fn any(self) -> bool {
        self.matches || self.stores
    }
}

/// The client-address prefix a stick key keeps: clients of one network
/// share an entry (IPVS's `-M netmask`, HAProxy's `src,ipmask(v4,v6)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMask {
    /// 1-32; 32: the whole address.
    pub v4: u8,
    /// 1-128; 128: the whole address.
    pub v6: u8,
}

impl KeyMask {
    /// `VipInfo::key_prefix` for clients of one family: the bits kept of
    /// the 16-byte key form (an IPv4 address is its first 4 bytes); 0 for
    /// the whole address.
    pub fn prefix_for(self, v4: bool) -> u8 {
        match v4 {
            true if self.v4 < 32 => self.v4,
            false if self.v6 < 128 => self.v6,
            _ => 0,
        }
    }
}

impl Default for KeyMask {
    fn default() -> Self {
        KeyMask { v4: 32, v6: 128 }
    }
}

/// A backend's stick table as validated; which keys the file set is kept
/// for the errors `settle_modes` gives once the backend's use is known.
#[derive(Debug, Clone)]
pub(super) struct StickTableSpec {
    pub size: u64,
    pub expire: Duration,
    pub peers: Option<String>,
    /// `type`: `Some(true)` ipv6, `Some(false)` ip, `None` unset.
    pub ipv6: Option<bool>,
    pub mask: KeyMask,
    pub mask_v4_set: bool,
    pub mask_v6_set: bool,
    /// Whether the file gave a `stick_table` at all.
    pub set: bool,
}

impl Default for StickTableSpec {
    fn default() -> Self {
        StickTableSpec {
            size: DEFAULT_STICK_SIZE,
            expire: DEFAULT_EXPIRE,
            peers: None,
            ipv6: None,
            mask: KeyMask::default(),
            mask_v4_set: false,
            mask_v6_set: false,
            set: false,
        }
    }
}

impl Validator<'_> {
    pub(super) fn stick_table(
        &self,
        key: &str,
        raw: Option<RawStickTable>,
    ) -> Result<StickTableSpec, ConfigError> {
        let mut spec = StickTableSpec::default();
        let Some(t) = raw else {
            return Ok(spec);
        };
        let k = |what: &str| format!("{key}.stick_table.{what}");
        spec.set = true;
        spec.peers = t.peers;
        spec.ipv6 = match t.ty.as_deref() {
            None => None,
            Some("ip") => Some(false),
            Some("ipv6") => Some(true),
            Some(ty) => {
                return Err(self.err(k("type"), format!("{ty:?}: want \"ip\" or \"ipv6\"")));
            }
        };
        if let Some(s) = t.size {
            spec.size = parse_size(&s).map_err(|r| self.err(k("size"), r))?;
            if spec.size == 0 || spec.size > MAX_STICK_SIZE {
                return Err(self.err(
                    k("size"),
                    format!("{s:?} is out of range (1 to {MAX_STICK_SIZE})"),
                ));
            }
        }
        if let Some(e) = t.expire {
            spec.expire = parse_duration(&e).map_err(|r| self.err(k("expire"), r))?;
        }
        if let Some(m) = t.key_mask_v4 {
            if !(1..=32).contains(&m) {
                return Err(self.err(k("key_mask_v4"), format!("{m}: want 1 to 32")));
            }
            (spec.mask.v4, spec.mask_v4_set) = (m, true);
        }
        if let Some(m) = t.key_mask_v6 {
            if !(1..=128).contains(&m) {
                return Err(self.err(k("key_mask_v6"), format!("{m}: want 1 to 128")));
            }
            (spec.mask.v6, spec.mask_v6_set) = (m, true);
        }
        Ok(spec)
    }

    /// `stick`: HAProxy's rule words after `stick`, `on src`, `match src`
    /// or `store-request src`, each at most once.
    pub(super) fn stick_rules(
        &self,
        key: &str,
        raw: Option<&RawStick>,
    ) -> Result<StickRules, ConfigError> {
        let (rules, indexed) = match raw {
            None => return Ok(StickRules::default()),
            Some(RawStick::One(r)) => (std::slice::from_ref(r), false),
            Some(RawStick::Many(v)) => (v.as_slice(), true),
        };
        let mut out = StickRules::default();
        for (i, rule) in rules.iter().enumerate() {
            let k = if indexed {
                format!("{key}.stick[{i}]")
            } else {
                format!("{key}.stick")
            };
            let words: Vec<&str> = rule.split_whitespace().collect();
            let (matches, stores) = match words.first().copied() {
                Some("on") => (true, true),
                Some("match") => (true, false),
                Some("store-request") => (false, true),
                Some("store-response") => {
                    return Err(self.err(
                        k,
                        "`store-response` is not supported: the key is the client's address, \
                         known at request time (use \"store-request src\" or \"on src\")",
                    ));
                }
                _ => {
                    return Err(self.err(
                        k,
                        format!(
                            "{rule:?}: want \"on src\", \"match src\" or \"store-request src\""
                        ),
                    ));
                }
            };
            match words.get(1..) {
                Some(["src"]) => {}
                Some([]) | None => {
                    return Err(self.err(k, format!("{rule:?}: the key is missing (want `src`)")));
                }
                Some([fetch]) => {
                    return Err(self.err(
                        k,
                        format!(
                            "{fetch:?}: only `src` is supported as a stick key (a network of \
                             clients: stick_table.key_mask_v4 / key_mask_v6)"
                        ),
                    ));
                }
                Some(["src", w, ..]) if matches!(*w, "if" | "unless") => {
                    return Err(self.err(k, "conditions (`if`/`unless`) are not supported"));
                }
                Some(["src", "table", ..]) => {
                    return Err(
                        self.err(k, "`table`: a rule uses its backend's own stick_table here")
                    );
                }
                Some(_) => {
                    return Err(self.err(
                        k,
                        format!(
                            "{rule:?}: want \"on src\", \"match src\" or \"store-request src\""
                        ),
                    ));
                }
            }
            if (matches && out.matches) || (stores && out.stores) {
                return Err(self.err(
                    k,
                    format!("{rule:?} repeats an earlier rule: it would have no effect"),
                ));
            }
            out.matches |= matches;
            out.stores |= stores;
        }
        if !out.any() {
            return Err(self.err(format!("{key}.stick"), "an empty list has no effect"));
        }
        Ok(out)
    }
}
