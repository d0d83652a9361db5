//! "Did you mean" for a section keyword the reader does not take: the
//! keywords it takes anywhere (global, defaults, proxies, peers,
//! resolvers), as HAProxy itself answers a slip ("unknown keyword 'maxcon'
//! in 'global' section; did you mean 'maxconn' maybe ?").

/// Every first word of a line the reader takes in some section (a unit
/// test checks each against the reader's source).
const KEYWORDS: &[&str] = &[
    // global
    "maxconn",
    "localpeer",
    "server-state-file",
    "server-state-base",
    "log",
    "log-tag",
    "ssl-default-bind-ciphers",
    "ssl-default-bind-ciphersuites",
    "ssl-default-bind-options",
    "tune.ssl.default-dh-param",
    // defaults and proxies
    "mode",
    "balance",
    "cookie",
    "dynamic-cookie-key",
    "default_backend",
    "load-server-state-from-file",
    "timeout",
    "option",
    "default-server",
    "http-check",
    "bind",
    "server",
    "server-template",
    "stick-table",
    "stick",
    "redirect",
    "tcp-request",
    "use_backend",
    // peers
    "peer",
    "table",
    // resolvers
    "nameserver",
    "accepted_payload_size",
    "resolve_retries",
    "hold",
];

/// `reason` for `keyword`, with the keywords near it when it is one the
/// reader does not take ("not supported in ...") and a slip is likely.
pub(super) fn near(keyword: &str, reason: String) -> String {
    if !reason.starts_with("not supported in") {
        return reason;
    }
    let names = KEYWORDS
        .iter()
        .copied()
        .chain(super::SKIPPED_GLOBAL.iter().copied())
        .chain(super::SKIPPED_PROXY.iter().copied())
        .filter(|k| *k != keyword);
    let hint = crate::util::suggest(keyword, names);
    if hint.starts_with(" (did you mean ") {
        format!("{reason}{hint}")
    } else {
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_keyword_is_one_the_reader_takes() {
        let src = [
            include_str!("sections.rs"),
            include_str!("bind.rs"),
            include_str!("servers.rs"),
        ]
        .concat();
        for k in KEYWORDS {
            assert!(
                src.contains(&format!("\"{k}\"")),
                "{k} is not in the reader"
            );
        }
    }

    #[test]
    fn a_slip_gets_the_keyword_meant() {
        let r = near("maxcon", "not supported in global".into());
        assert_eq!(r, "not supported in global (did you mean maxconn?)");
        let r = near("defualt_backend", "not supported in a frontend".into());
        assert!(r.ends_with("(did you mean default_backend?)"), "{r}");
        // Nothing near, or another error: as it was.
        assert_eq!(
            near("nbproc", "not supported in global".into()),
            "not supported in global"
        );
        assert_eq!(near("maxcon", "takes one value".into()), "takes one value");
    }
}
