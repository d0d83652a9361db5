//! HAProxy 2.6's `cookie` backend keyword: its parser, the model it
//! becomes ([`CookieConfig`]), and the value a `dynamic` cookie takes for a
//! server ([`dynamic_value`]). What the proxy does with it, request and
//! response, is `http/cookie/`.
//!
//! Sources (HAProxy's, re-implemented, not copied): `src/cfgparse-listen.c`,
//! the `"cookie"` keyword: option names, which options need which mode,
//! `domain` / `attr` accumulation, error texts; `src/tools.c`
//! `parse_time_err()` and `invalid_domainchar()`; `src/server.c`
//! `srv_set_dyncookie()`: dynamic cookies. Arguments are split on ASCII white
//! space; HAProxy's quoting and backslash escapes are not interpreted.

use std::{net::IpAddr, time::Duration};

/// Largest timer HAProxy accepts (`parse_time_err()` reports `>= 2^31` as an
/// overflow).
pub(crate) const MAX_TIMER: u64 = 0x7fff_ffff;

/// The persistence mode: how the cookie gets to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieMode {
    /// `insert`: the balancer adds its own `Set-Cookie` to responses.
    Insert,
    /// `rewrite`: the server emits the cookie, the balancer replaces its value
    /// with the server's cookie value.
    Rewrite,
    /// `prefix`: the server's own cookie `<name>` gets `VALUE~` prepended in
    /// responses, and stripped again from requests.
    Prefix,
    /// No mode keyword: the cookie is only read (someone else sets it).
    Passive,
}

/// The arguments of HAProxy's `cookie` backend keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// The cookie's name, compared case-sensitively.
    pub name: String,
    pub mode: CookieMode,
    /// `indirect`: in `insert` mode, the cookie is removed from requests before
    /// they reach the server; in every mode, a server's own `Set-Cookie
    /// <name>` is removed from responses to clients that already have a valid
    /// cookie.
    pub indirect: bool,
    /// `nocache`: an inserted cookie makes a cacheable response private.
    pub nocache: bool,
    /// `postonly`: insert only in responses to POST requests.
    pub postonly: bool,
    /// `preserve`: if the server sets `<name>` itself, leave it alone and do
    /// not insert.
    pub preserve: bool,
    /// `httponly`: add `; HttpOnly` to inserted cookies.
    pub httponly: bool,
    /// `secure`: add `; Secure` to inserted cookies.
    pub secure: bool,
    /// `domain <d>` (repeatable): one `; domain=<d>` each, in order.
    pub domains: Vec<String>,
    /// `attr <a>` (repeatable): one `; <a>` each, in order, last.
    pub attrs: Vec<String>,
    /// `maxidle <time>`: ignore a cookie not seen for longer than this.
    /// `None` when absent or zero (HAProxy treats 0 as "not set").
    pub maxidle: Option<Duration>,
    /// `maxlife <time>`: ignore a cookie first set longer ago than this.
    pub maxlife: Option<Duration>,
    /// `dynamic`: servers without an explicit cookie value get
    /// [`dynamic_value`] (needs the backend's `dynamic-cookie-key`).
    pub dynamic: bool,
}

/// The option list HAProxy prints when it meets an unknown word (completed
/// with the options its own message forgets).
const SUPPORTED_OPTIONS: &str = "'rewrite', 'insert', 'prefix', 'indirect', 'nocache', 'postonly', \
     'preserve', 'httponly', 'secure', 'domain', 'maxidle', 'maxlife', 'dynamic' and 'attr'";

impl CookieConfig {
    /// Parse the arguments of HAProxy's `cookie` backend keyword, e.g.
    /// `"SERVERID insert indirect nocache httponly secure domain .example.com
    /// attr SameSite=Lax maxidle 30m maxlife 8h dynamic"`.
    ///
    /// Errors are a short human-readable reason. The rules are HAProxy's
    /// (`cfgparse-listen.c`, keyword `"cookie"`): options are case-sensitive
    /// and may come in any order and be repeated; `rewrite`, `insert` and
    /// `prefix` exclude each other; `rewrite` excludes `indirect`;
    /// `preserve` needs `insert` or `indirect`; `domain` accepts only
    /// `[A-Za-z0-9_.-]`; `attr` refuses control characters and `;`; times
    /// take HAProxy's units (`us`, `ms`, `s`, `m`, `h`, `d`, default seconds),
    /// are rounded up to whole seconds, must stay below 2^31 s, and a
    /// non-zero value that rounds to 0 is an error. As in HAProxy, every
    /// option is accepted in every mode: `nocache`, `postonly`, `httponly`,
    /// `secure`, `domain` and `attr` then do nothing outside `insert` mode,
    /// and `maxidle` / `maxlife` still check the dates a request cookie may
    /// carry (in any mode but `prefix`) although only `insert` writes them.
    /// The configuration file refuses what would do nothing:
    /// [`CookieConfig::parse_strict`].
    ///
    /// Where HAProxy only warns (a domain without an embedded dot, text after
    /// a time unit such as `30mn`), the value is accepted; use
    /// [`CookieConfig::parse_with_warnings`] to get those warnings.
    ///
    /// One addition to HAProxy's rules: a cookie name containing control
    /// characters is refused, because it could never be sent in a header.
    pub fn parse(args: &str) -> Result<CookieConfig, String> {
        Self::parse_with_warnings(args).map(|(config, _warnings)| config)
    }

    /// The configuration file's reading (`backend.cookie`): [`CookieConfig::parse`],
    /// and refused besides, because some word would have no effect (where
    /// HAProxy accepts it silently or with a warning):
    /// - what HAProxy only warns about: text after a time unit (`30mn`: the
    ///   `n` is ignored), a domain without an embedded dot;
    /// - an option given twice: a flag, `maxidle` / `maxlife` (the last value
    ///   counts), the same `domain` or `attr` value;
    /// - `maxidle 0` / `maxlife 0` (0 is no limit, the default);
    /// - `nocache`, `postonly`, `httponly`, `secure`, `domain` and `attr`
    ///   without `insert` (they act on an inserted cookie only);
    /// - `maxidle` / `maxlife` in `prefix` mode, which reads no dates.
    pub fn parse_strict(args: &str) -> Result<CookieConfig, String> {
        let (c, warnings) = Self::parse_with_warnings(args)?;
        if let Some(w) = warnings.first() {
            return Err(format!(
                "{w} (HAProxy only warns about this; here it is an error)"
            ));
        }
        // The parse succeeded: every option that takes a value has one.
        let mut words = args.split_ascii_whitespace().skip(1);
        let mut seen: Vec<(&str, Option<&str>)> = Vec::new();
        while let Some(word) = words.next() {
            let value = matches!(word, "domain" | "attr" | "maxidle" | "maxlife")
                .then(|| words.next().unwrap_or_default());
            let repeated = match (word, value) {
                ("domain" | "attr", v) => seen.contains(&(word, v)),
                _ => seen.iter().any(|(w, _)| *w == word),
            };
            if repeated {
                let what = match value {
                    Some(v) if matches!(word, "domain" | "attr") => format!("`{word} {v}`"),
                    _ => format!("`{word}`"),
                };
                return Err(format!(
                    "{what} is given twice: one would have no effect{}",
                    if matches!(word, "maxidle" | "maxlife") {
                        " (only the last value counts)"
                    } else {
                        ""
                    }
                ));
            }
            seen.push((word, value));
        }
        for (word, time) in [("maxidle", c.maxidle), ("maxlife", c.maxlife)] {
            if let (Some((_, Some(v))), None) = (seen.iter().find(|(w, _)| *w == word), time) {
                return Err(format!(
                    "`{word} {v}`: 0 means no limit, the default, so it would have no effect"
                ));
            }
        }
        let mode = match c.mode {
            CookieMode::Insert => return Ok(c),
            CookieMode::Rewrite => "`rewrite` mode",
            CookieMode::Prefix => "`prefix` mode",
            CookieMode::Passive => "passive mode (no `insert`, `rewrite` or `prefix`)",
        };
        let insert_only: Vec<String> = [
            ("nocache", c.nocache),
            ("postonly", c.postonly),
            ("httponly", c.httponly),
            ("secure", c.secure),
            ("domain", !c.domains.is_empty()),
            ("attr", !c.attrs.is_empty()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(w, _)| format!("`{w}`"))
        .collect();
        // (verb ending, pronoun) for one word or several.
        let agree = |n: usize| if n == 1 { ("s", "it") } else { ("", "they") };
        if !insert_only.is_empty() {
            let (s, it) = agree(insert_only.len());
            return Err(format!(
                "{} act{s} only on a cookie the balancer inserts (`insert`): in {mode} {it} \
                 would have no effect",
                insert_only.join(", ")
            ));
        }
        if c.mode == CookieMode::Prefix {
            let dated: Vec<&str> = [("`maxidle`", c.maxidle), ("`maxlife`", c.maxlife)]
                .into_iter()
                .filter(|(_, t)| t.is_some())
                .map(|(w, _)| w)
                .collect();
            if !dated.is_empty() {
                let (s, it) = agree(dated.len());
                return Err(format!(
                    "{} check{s} the dates a cookie carries, and `prefix` mode reads none: {it} \
                     would have no effect",
                    dated.join(", ")
                ));
            }
        }
        Ok(c)
    }

    /// [`CookieConfig::parse`], also returning the warnings HAProxy would
    /// print for a configuration it accepts.
    pub fn parse_with_warnings(args: &str) -> Result<(CookieConfig, Vec<String>), String> {
        let mut words = args.split_ascii_whitespace();
        let name = words
            .next()
            .ok_or_else(|| "'cookie' expects <cookie_name> as argument".to_owned())?;
        if let Some(c) = name.bytes().find(|&b| b.is_ascii_control()) {
            return Err(format!(
                "character '%x{c:02X}' is not permitted in cookie name"
            ));
        }

        let mut warnings = Vec::new();
        let (mut rewrite, mut insert, mut prefix) = (false, false, false);
        let mut config = CookieConfig {
            name: name.to_owned(),
            mode: CookieMode::Passive,
            indirect: false,
            nocache: false,
            postonly: false,
            preserve: false,
            httponly: false,
            secure: false,
            domains: Vec::new(),
            attrs: Vec::new(),
            maxidle: None,
            maxlife: None,
            dynamic: false,
        };

        while let Some(word) = words.next() {
            match word {
                "rewrite" => rewrite = true,
                "insert" => insert = true,
                "prefix" => prefix = true,
                "indirect" => config.indirect = true,
                "nocache" => config.nocache = true,
                "postonly" => config.postonly = true,
                "preserve" => config.preserve = true,
                "httponly" => config.httponly = true,
                "secure" => config.secure = true,
                "dynamic" => config.dynamic = true,
                "domain" => {
                    let domain = words
                        .next()
                        .ok_or_else(|| "'domain' expects <domain> as argument".to_owned())?;
                    // tools.c invalid_domainchar(): [A-Za-z0-9_.-] only.
                    if let Some(c) = domain
                        .chars()
                        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
                    {
                        return Err(format!(
                            "character '{}' is not permitted in domain name '{domain}'",
                            c.escape_default()
                        ));
                    }
                    if !domain.contains('.') {
                        // RFC 6265 5.2.3; HAProxy only warns.
                        warnings.push(format!(
                            "domain '{domain}' contains no embedded dot, this configuration may \
                             not work properly (see RFC6265#5.2.3)"
                        ));
                    }
                    config.domains.push(domain.to_owned());
                }
                "maxidle" | "maxlife" => {
                    let what = if word == "maxidle" {
                        "idletime"
                    } else {
                        "lifetime"
                    };
                    let value = words.next().ok_or_else(|| {
                        format!("'{word}' expects <{what}> in seconds as argument")
                    })?;
                    let secs = parse_time_secs(value, word, &mut warnings)?;
                    // HAProxy stores 0 as "disabled".
                    let duration = (secs != 0).then(|| Duration::from_secs(u64::from(secs)));
                    if word == "maxidle" {
                        config.maxidle = duration;
                    } else {
                        config.maxlife = duration;
                    }
                }
                "attr" => {
                    let attr = words
                        .next()
                        .ok_or_else(|| "'attr' expects <value> as argument".to_owned())?;
                    if let Some(c) = attr.bytes().find(|&b| b.is_ascii_control() || b == b';') {
                        return Err(format!(
                            "character '%x{c:02X}' is not permitted in attribute value"
                        ));
                    }
                    config.attrs.push(attr.to_owned());
                }
                other => {
                    return Err(format!(
                        "'cookie' supports {SUPPORTED_OPTIONS} options (got '{other}')"
                    ));
                }
            }
        }

        // The three checks HAProxy runs once the line is read, in its order.
        if rewrite && config.indirect {
            return Err("cookie 'rewrite' and 'indirect' modes are incompatible".to_owned());
        }
        if usize::from(rewrite) + usize::from(insert) + usize::from(prefix) > 1 {
            return Err(
                "cookie 'rewrite', 'insert' and 'prefix' modes are incompatible".to_owned(),
            );
        }
        if config.preserve && !insert && !config.indirect {
            return Err("cookie 'preserve' requires at least 'insert' or 'indirect'".to_owned());
        }
        config.mode = if insert {
            CookieMode::Insert
        } else if rewrite {
            CookieMode::Rewrite
        } else if prefix {
            CookieMode::Prefix
        } else {
            CookieMode::Passive
        };
        Ok((config, warnings))
    }
}

/// HAProxy's `parse_time_err(text, &ret, TIME_UNIT_S)`: digits, then an
/// optional unit among `us`, `ms`, `s`, `m`, `h`, `d` (no unit: seconds). The
/// result is rounded up to whole seconds. Text after a valid unit only earns a
/// warning in HAProxy 2.6 ("will be reported as an error in next versions"),
/// so it does here too. Unlike HAProxy, whose 64-bit accumulator silently
/// wraps on absurdly long digit strings, such strings are reported as an
/// overflow.
fn parse_time_secs(text: &str, keyword: &str, warnings: &mut Vec<String>) -> Result<u32, String> {
    let overflow = || {
        format!(
            "timer overflow in argument <{text}> to <{keyword}>, maximum value is 2147483647 s \
             (~68 years)"
        )
    };
    let unexpected = |at: usize| {
        let c = text[at..].chars().next().unwrap_or(' ');
        format!(
            "unexpected character '{}' in argument to <{keyword}>",
            c.escape_default()
        )
    };
    let bytes = text.as_bytes();
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(unexpected(0));
    }
    let mut value: u64 = 0;
    for &b in &bytes[..digits] {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    // (multiplier, divisor, length of the unit)
    let (mult, div, unit_len): (u64, u64, usize) = match &bytes[digits..] {
        [] => (1, 1, 0),
        [b's', ..] => (1, 1, 1),
        [b'u', b's', ..] => (1, 1_000_000, 2),
        [b'm', b's', ..] => (1, 1_000, 2),
        [b'm', ..] => (60, 1, 1),
        [b'h', ..] => (3_600, 1, 1),
        [b'd', ..] => (86_400, 1, 1),
        _ => return Err(unexpected(digits)),
    };
    if digits + unit_len < bytes.len() {
        let c = text[digits + unit_len..].chars().next().unwrap_or(' ');
        warnings.push(format!(
            "unexpected character '{}' after the timer value '{text}', only \
             (us=microseconds,ms=milliseconds,s=seconds,m=minutes,h=hours,d=days) are supported",
            c.escape_default()
        ));
    }
    let result = value
        .checked_mul(mult)
        .and_then(|v| v.checked_add(div - 1))
        .ok_or_else(overflow)?
        / div;
    if result > MAX_TIMER {
        return Err(overflow());
    }
    if result == 0 && value != 0 {
        return Err(format!(
            "timer underflow in argument <{text}> to <{keyword}>, minimum non-null value is 1 s"
        ));
    }
    u32::try_from(result).map_err(|_| overflow())
}

/// HAProxy's dynamic cookie (`srv_set_dyncookie()` in `src/server.c`): the
/// 16 lowercase hex digits (`"%016llx"`) of XXH64, seed 0, over the key's
/// bytes, then the server address in network order (4 bytes for IPv4, 16 for
/// IPv6), then the port as a 4-byte big-endian integer (HAProxy stores the
/// port in an `int` and hashes `htonl(port)` so that every load balancer
/// agrees whatever its endianness).
///
/// HAProxy keeps the key as a C string, so a key containing a NUL byte is
/// hashed only up to it; this function does the same. It never fails:
/// HAProxy only skips servers whose address is not IPv4 or IPv6, which an
/// [`IpAddr`] cannot be.
pub fn dynamic_value(key: &[u8], addr: IpAddr, port: u16) -> String {
    let key = key.split(|&b| b == 0).next().unwrap_or_default();
    let mut buf = Vec::with_capacity(key.len() + 16 + 4);
    buf.extend_from_slice(key);
    match addr {
        IpAddr::V4(v4) => buf.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => buf.extend_from_slice(&v6.octets()),
    }
    buf.extend_from_slice(&u32::from(port).to_be_bytes());
    format!("{:016x}", xxhash_rust::xxh64::xxh64(&buf, 0))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn cfg(args: &str) -> CookieConfig {
        CookieConfig::parse(args).expect("valid config")
    }

    fn parse_err(args: &str) -> String {
        CookieConfig::parse(args).expect_err("invalid config")
    }

    #[test]
    fn parse_full_example() {
        let (config, warnings) = CookieConfig::parse_with_warnings(
            "SERVERID insert indirect nocache httponly secure domain .example.com \
             attr SameSite=Lax maxidle 30m maxlife 8h dynamic",
        )
        .expect("valid");
        assert_eq!(
            config,
            CookieConfig {
                name: "SERVERID".into(),
                mode: CookieMode::Insert,
                indirect: true,
                nocache: true,
                postonly: false,
                preserve: false,
                httponly: true,
                secure: true,
                domains: vec![".example.com".into()],
                attrs: vec!["SameSite=Lax".into()],
                maxidle: Some(Duration::from_secs(1800)),
                maxlife: Some(Duration::from_secs(8 * 3600)),
                dynamic: true,
            }
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn parse_modes_and_flags() {
        assert_eq!(cfg("S").mode, CookieMode::Passive);
        assert_eq!(cfg("S insert").mode, CookieMode::Insert);
        assert_eq!(cfg("S rewrite").mode, CookieMode::Rewrite);
        assert_eq!(cfg("S prefix").mode, CookieMode::Prefix);
        // Order-free, repeatable, white space of any kind.
        let c = cfg("  S\tpostonly insert\n insert preserve  ");
        assert_eq!(
            (c.mode, c.postonly, c.preserve),
            (CookieMode::Insert, true, true)
        );
        // Combinations HAProxy accepts.
        let c = cfg("S indirect");
        assert_eq!((c.mode, c.indirect), (CookieMode::Passive, true));
        assert!(cfg("S indirect preserve").preserve);
        assert!(cfg("S prefix indirect").indirect);
        // Insert-only options are accepted (and inert) in other modes, as
        // in HAProxy; a config file's `cookie` refuses them (parse_strict).
        let c = cfg("S rewrite nocache maxidle 10 httponly");
        assert_eq!(c.maxidle, Some(Duration::from_secs(10)));
        assert!(c.nocache && c.httponly);
        assert_eq!(cfg("S").name, "S");
        assert_eq!(cfg("Ünïcödé insert").name, "Ünïcödé");
    }

    #[test]
    fn parse_accumulates_domains_and_attrs_and_overrides_times() {
        let c = cfg(
            "S insert domain .a.com attr A=1 domain .b.com attr Partitioned maxidle 10 maxidle 20",
        );
        assert_eq!(c.domains, vec![".a.com", ".b.com"]);
        assert_eq!(c.attrs, vec!["A=1", "Partitioned"]);
        assert_eq!(c.maxidle, Some(Duration::from_secs(20)));
    }

    #[test]
    fn parse_time_units_like_haproxy() {
        let idle = |t: &str| {
            cfg(&format!("S insert maxidle {t}"))
                .maxidle
                .map(|d| d.as_secs())
        };
        assert_eq!(idle("30"), Some(30));
        assert_eq!(idle("30s"), Some(30));
        assert_eq!(idle("30m"), Some(1800));
        assert_eq!(idle("2h"), Some(7200));
        assert_eq!(idle("1d"), Some(86_400));
        // Rounded up to whole seconds.
        assert_eq!(idle("1500ms"), Some(2));
        assert_eq!(idle("500ms"), Some(1));
        assert_eq!(idle("1us"), Some(1));
        assert_eq!(idle("2000000us"), Some(2));
        // 0 means "not set".
        assert_eq!(idle("0"), None);
        assert_eq!(idle("0m"), None);
        // The largest accepted value.
        assert_eq!(idle("24855d"), Some(24_855 * 86_400));
        assert_eq!(idle("2147483647"), Some(2_147_483_647));
        let life = cfg("S insert maxlife 8h").maxlife;
        assert_eq!(life, Some(Duration::from_secs(28_800)));
    }

    #[test]
    fn parse_warnings_where_haproxy_only_warns() {
        let (c, w) = CookieConfig::parse_with_warnings("S insert maxidle 30mn").expect("accepted");
        assert_eq!(c.maxidle, Some(Duration::from_secs(1800)));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("unexpected character 'n' after the timer value '30mn'"),
            "{w:?}"
        );

        let (c, w) =
            CookieConfig::parse_with_warnings("S insert domain localhost").expect("accepted");
        assert_eq!(c.domains, vec!["localhost"]);
        assert!(w[0].contains("no embedded dot"), "{w:?}");
    }

    #[test]
    fn parse_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "expects <cookie_name>"),
            ("  \t ", "expects <cookie_name>"),
            ("S\u{1} insert", "'%x01' is not permitted in cookie name"),
            ("S bogus", "(got 'bogus')"),
            ("S Insert", "(got 'Insert')"),
            ("S insert domain", "'domain' expects <domain>"),
            (
                "S insert domain exa/mple.com",
                "character '/' is not permitted in domain name 'exa/mple.com'",
            ),
            ("S insert domain é.com", "is not permitted in domain name"),
            ("S maxidle", "'maxidle' expects <idletime>"),
            ("S maxlife", "'maxlife' expects <lifetime>"),
            (
                "S maxidle abc",
                "unexpected character 'a' in argument to <maxidle>",
            ),
            ("S maxidle -5", "unexpected character '-'"),
            ("S maxidle 10x", "unexpected character 'x'"),
            ("S maxidle 10u", "unexpected character 'u'"),
            (
                "S maxlife 2147483648",
                "timer overflow in argument <2147483648> to <maxlife>",
            ),
            ("S maxlife 24856d", "timer overflow"),
            ("S maxidle 99999999999999999999999", "timer overflow"),
            ("S attr", "'attr' expects <value>"),
            ("S attr a;b", "'%x3B' is not permitted in attribute value"),
            ("S attr a\u{7f}b", "'%x7F' is not permitted"),
            (
                "S rewrite indirect",
                "'rewrite' and 'indirect' modes are incompatible",
            ),
            (
                "S insert prefix",
                "'rewrite', 'insert' and 'prefix' modes are incompatible",
            ),
            ("S rewrite insert", "modes are incompatible"),
            ("S prefix rewrite", "modes are incompatible"),
            (
                "S preserve",
                "'preserve' requires at least 'insert' or 'indirect'",
            ),
            ("S rewrite preserve", "'preserve' requires"),
            ("S prefix preserve", "'preserve' requires"),
        ];
        for (args, expected) in cases {
            let err = parse_err(args);
            assert!(
                err.contains(expected),
                "{args:?}: {err:?} lacks {expected:?}"
            );
        }
    }

    // ----- dynamic cookies -------------------------------------------------

    /// XXH64 written from its specification (Yann Collet's xxHash spec,
    /// "XXH64 algorithm description"), independent of the crate under use.
    fn reference_xxh64(input: &[u8], seed: u64) -> u64 {
        const P1: u64 = 0x9E37_79B1_85EB_CA87;
        const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
        const P3: u64 = 0x1656_67B1_9E37_79F9;
        const P4: u64 = 0x85EB_CA77_C2B2_AE63;
        const P5: u64 = 0x27D4_EB2F_1656_67C5;
        fn round(acc: u64, lane: u64) -> u64 {
            acc.wrapping_add(lane.wrapping_mul(P2))
                .rotate_left(31)
                .wrapping_mul(P1)
        }
        fn merge(acc: u64, v: u64) -> u64 {
            (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
        }
        let u64_at = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let u32_at = |b: &[u8]| u64::from(u32::from_le_bytes(b[..4].try_into().expect("4 bytes")));

        let mut rest = input;
        let mut h = if input.len() >= 32 {
            let mut v = [
                seed.wrapping_add(P1).wrapping_add(P2),
                seed.wrapping_add(P2),
                seed,
                seed.wrapping_sub(P1),
            ];
            while rest.len() >= 32 {
                for (i, acc) in v.iter_mut().enumerate() {
                    *acc = round(*acc, u64_at(&rest[i * 8..]));
                }
                rest = &rest[32..];
            }
            let mut h = v[0]
                .rotate_left(1)
                .wrapping_add(v[1].rotate_left(7))
                .wrapping_add(v[2].rotate_left(12))
                .wrapping_add(v[3].rotate_left(18));
            for lane in v {
                h = merge(h, lane);
            }
            h
        } else {
            seed.wrapping_add(P5)
        };
        h = h.wrapping_add(input.len() as u64);
        while rest.len() >= 8 {
            h ^= round(0, u64_at(rest));
            h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
            rest = &rest[8..];
        }
        if rest.len() >= 4 {
            h ^= u32_at(rest).wrapping_mul(P1);
            h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
            rest = &rest[4..];
        }
        for &byte in rest {
            h ^= u64::from(byte).wrapping_mul(P5);
            h = h.rotate_left(11).wrapping_mul(P1);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^= h >> 32;
        h
    }

    #[test]
    fn reference_xxh64_matches_the_spec_and_the_crate() {
        // The specification's published value for the empty input, seed 0.
        assert_eq!(reference_xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        let data: Vec<u8> = (0..100u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..=data.len() {
            assert_eq!(
                reference_xxh64(&data[..len], 0),
                xxhash_rust::xxh64::xxh64(&data[..len], 0),
                "len {len}"
            );
        }
    }

    #[test]
    fn dynamic_cookie_ipv4() {
        // Inputs: key "secret", server 192.0.2.10 port 8080. Hashed bytes:
        // "secret" ++ [192, 0, 2, 10] ++ [0, 0, 0x1f, 0x90] (8080 as a
        // big-endian 32-bit integer).
        let mut bytes = b"secret".to_vec();
        bytes.extend_from_slice(&[192, 0, 2, 10, 0, 0, 0x1f, 0x90]);
        let expected = format!("{:016x}", reference_xxh64(&bytes, 0));
        let value = dynamic_value(b"secret", IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 8080);
        assert_eq!(value, expected);
        assert_eq!(value.len(), 16);
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        // Every input matters.
        assert_ne!(
            value,
            dynamic_value(b"secret", IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 8081)
        );
        assert_ne!(
            value,
            dynamic_value(b"secret", IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)), 8080)
        );
        assert_ne!(
            value,
            dynamic_value(b"Secret", IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 8080)
        );
        // HAProxy's key is a C string: it ends at the first NUL.
        assert_eq!(
            value,
            dynamic_value(
                b"secret\0ignored",
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
                8080
            )
        );
    }

    #[test]
    fn dynamic_cookie_ipv6() {
        // Inputs: key "k3y", server 2001:db8::1 port 443. Hashed bytes:
        // "k3y" ++ 20 01 0d b8 00*11 01 ++ [0, 0, 0x01, 0xbb].
        let mut bytes = b"k3y".to_vec();
        bytes.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        bytes.extend_from_slice(&[0; 11]);
        bytes.push(1);
        bytes.extend_from_slice(&[0, 0, 0x01, 0xbb]);
        assert_eq!(bytes.len(), 3 + 16 + 4);
        let addr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert_eq!(
            dynamic_value(b"k3y", addr, 443),
            format!("{:016x}", reference_xxh64(&bytes, 0))
        );
        // An IPv4-mapped IPv6 address hashes its 16 bytes, not 4.
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 10).to_ipv6_mapped());
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        assert_ne!(
            dynamic_value(b"k3y", mapped, 443),
            dynamic_value(b"k3y", v4, 443)
        );
        // An empty key is allowed.
        let mut bytes = Ipv6Addr::LOCALHOST.octets().to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 80]);
        assert_eq!(
            dynamic_value(b"", IpAddr::V6(Ipv6Addr::LOCALHOST), 80),
            format!("{:016x}", reference_xxh64(&bytes, 0))
        );
    }
}
