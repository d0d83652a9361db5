//! What to say beside a TOML error that names the problem but not the fix.

/// serde's "unknown field `X`, expected one of `a`, `b`, ..." (or
/// "expected `a` or `b`", "expected `a`") for a key that is a slip of the
/// pen: the same message with "did you mean `b`?" instead of the whole
/// list. `None` when no key is near (the list is the best help then).
pub(super) fn unknown_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, expected) = rest.split_once("`, expected ")?;
    let names: Vec<&str> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|n| !n.is_empty())
        .collect();
    let near = crate::util::suggest(key, names);
    near.starts_with(" (did you mean ")
        .then(|| format!("unknown key `{key}`{near}"))
}

#[cfg(test)]
mod tests {
    use super::unknown_key;

    #[test]
    fn a_slip_names_the_key_meant() {
        assert_eq!(
            unknown_key(
                "unknown field `defualt_backend`, expected one of `name`, `bind`, \
                 `default_backend`, `maxconn`"
            )
            .as_deref(),
            Some("unknown key `defualt_backend` (did you mean default_backend?)")
        );
        assert_eq!(
            unknown_key("unknown field `adress`, expected `address` or `name`").as_deref(),
            Some("unknown key `adress` (did you mean address?)")
        );
        // Nothing near: the list stays.
        assert_eq!(
            unknown_key("unknown field `colour`, expected one of `name`, `bind`"),
            None
        );
        assert_eq!(unknown_key("invalid type: integer"), None);
    }
}
