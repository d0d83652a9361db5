//! The configuration readers (`config/`): `config_toml`, the whole file,
//! and `config_values`, the readers of single values that the TOML, the
//! admin API and the HAProxy `cookie` line share.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
};

use crate::config::{
    AdminState, Config, ConfigError,
    cookie::{CookieConfig, CookieMode},
    fqdn_problem, parse_duration, parse_server_address, parse_size, server_name_problem,
};

/// Input: a configuration file (invalid UTF-8 replaced).
///
/// Asserts: an error names the file and a line of it; an accepted
/// configuration's frontends point at its backends.
pub fn config_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.toml");
    let lines = text.matches('\n').count() + 1;
    match Config::parse(path, &text) {
        Ok(cfg) => {
            for f in &cfg.frontends {
                assert!(f.backend < cfg.backends.len(), "{f:?}");
            }
        }
        Err(e) => {
            let line = match &e {
                ConfigError::Parse { path: p, line, .. }
                | ConfigError::Invalid { path: p, line, .. } => {
                    assert_eq!(p, path);
                    *line
                }
                other => panic!("parsing text gave {other}"),
            };
            assert!((1..=lines).contains(&line), "{e}: not a line of {lines}");
            assert!(
                e.to_string().starts_with(&format!("fuzz.toml:{line}:")),
                "{e}"
            );
        }
    }
}

/// `c` written back as a `cookie` line.
fn cookie_line(c: &CookieConfig) -> String {
    let mut words = vec![c.name.clone()];
    match c.mode {
        CookieMode::Insert => words.push("insert".into()),
        CookieMode::Rewrite => words.push("rewrite".into()),
        CookieMode::Prefix => words.push("prefix".into()),
        CookieMode::Passive => {}
    }
    let flags = [
        (c.indirect, "indirect"),
        (c.nocache, "nocache"),
        (c.postonly, "postonly"),
        (c.preserve, "preserve"),
        (c.httponly, "httponly"),
        (c.secure, "secure"),
        (c.dynamic, "dynamic"),
    ];
    words.extend(flags.iter().filter(|f| f.0).map(|f| f.1.to_owned()));
    for d in &c.domains {
        words.extend(["domain".into(), d.clone()]);
    }
    for a in &c.attrs {
        words.extend(["attr".into(), a.clone()]);
    }
    for (word, time) in [("maxidle", c.maxidle), ("maxlife", c.maxlife)] {
        if let Some(t) = time {
            words.extend([word.into(), format!("{}s", t.as_secs())]);
        }
    }
    words.join(" ")
}

/// Input: a selector byte, then the text one reader gets (invalid UTF-8
/// replaced): 0 a `cookie` line, 1 a duration, 2 a size, 3 a server
/// address, 4 a DNS name, 5 `backend/server` names, 6 a server state.
///
/// Asserts: what each accepts, written back in its canonical form, reads
/// as the same value; a `cookie` line's values obey the limits its parser
/// states.
pub fn config_values(data: &[u8]) {
    let [selector, text @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    match selector % 7 {
        0 => {
            let Ok((c, _warnings)) = CookieConfig::parse_with_warnings(&text) else {
                return;
            };
            assert!(!c.name.is_empty() && !c.name.bytes().any(|b| b.is_ascii_control()));
            for t in [c.maxidle, c.maxlife].into_iter().flatten() {
                assert!((1..1 << 31).contains(&t.as_secs()), "{t:?}");
            }
            assert!(!c.attrs.iter().any(|a| a.contains(';')));
            let line = cookie_line(&c);
            assert_eq!(CookieConfig::parse(&line), Ok(c), "{line:?}");
        }
        1 => {
            if let Ok(d) = parse_duration(&text) {
                let ms = d.as_millis();
                assert_eq!(d.as_nanos(), ms * 1_000_000);
                assert_eq!(parse_duration(&format!("{ms}ms")), Ok(d));
                assert_eq!(parse_duration(&ms.to_string()), Ok(d));
            }
        }
        2 => {
            if let Ok(n) = parse_size(&text) {
                assert_eq!(parse_size(&n.to_string()), Ok(n));
            }
        }
        3 => {
            if let Some((ip, port)) = parse_server_address(&text) {
                let back = match port {
                    None => ip.to_string(),
                    Some(p) => SocketAddr::new(ip, p).to_string(),
                };
                assert_eq!(parse_server_address(&back), Some((ip, port)), "{back}");
                assert_ne!(port, Some(0));
                assert_eq!(text.parse::<IpAddr>().is_ok(), port.is_none());
            }
        }
        4 => {
            if fqdn_problem(&text).is_none() {
                let name_byte = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
                assert!(text.bytes().all(name_byte) && (1..=254).contains(&text.len()));
                assert!(text.trim_end_matches('.').parse::<IpAddr>().is_err());
            }
        }
        5 => {
            let (backend, server) = text.split_once('/').unwrap_or(("b", &text));
            if server_name_problem(backend, server).is_none() {
                assert!(!server.is_empty() && !server.contains(['/', ' ']));
            }
        }
        _ => {
            if let Some(state) = AdminState::parse(&text) {
                assert_eq!(AdminState::parse(state.as_str()), Some(state));
            }
        }
    }
}
