//! SIGHUP: the configuration file read again (its host names looked up
//! off the runtime's threads) and the TLS frontends' new certificates
//! prepared, before the controller applies anything.

use std::{collections::BTreeMap, path::Path};

use super::{DaemonError, Tls};
use crate::{
    config::{Config, Mode},
    http::tls::{Prepared, TlsError},
};

/// The file at `path` read and validated again, with the haproxy.cfg
/// settings `running` was given; a server's `init_addr` `last` is the
/// address it has in `running`. The system resolver may block: it runs on
/// a blocking thread, not the runtime's.
pub(super) async fn read_again(path: &Path, running: Config) -> Result<Config, String> {
    let path = path.to_owned();
    match tokio::task::spawn_blocking(move || Config::reload(&path, &running)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("reading the file again: {e}")),
    }
}

/// The certificates of `new`'s TLS frontends, loaded and checked, to be
/// committed once the reload is accepted. A frontend may not start or stop
/// terminating TLS by a reload (its clients would be cut off mid-protocol).
pub(super) fn reload_tls(
    running: &Tls,
    served: &BTreeMap<String, std::net::SocketAddr>,
    new: &Config,
) -> Result<Vec<(String, Prepared)>, DaemonError> {
    let mut out = Vec::new();
    // A frontend new to the reload (or with a new bind) gets its own.
    let kept = new
        .frontends
        .iter()
        .filter(|f| f.mode == Mode::Http && served.get(&f.name) == Some(&f.vip));
    for f in kept {
        match (running.get(&f.name), &f.tls) {
            (Some(t), Some(s)) => out.push((f.name.clone(), t.prepare(s)?)),
            (None, None) => {}
            (had, _) => {
                return Err(TlsError::Setup {
                    frontend: f.name.clone(),
                    reason: format!(
                        "a reload cannot {} TLS on a running frontend (its clients would be cut \
                         off mid-protocol): give it a new name or bind, or restart",
                        if had.is_some() { "remove" } else { "add" }
                    ),
                }
                .into());
            }
        }
    }
    Ok(out)
}
