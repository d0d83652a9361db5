//! How the daemon shares its descriptor limit.

use super::DaemonError;
use crate::config::{Config, Mode};

/// How the descriptor limit is shared. Descriptors for everything but the
/// HTTP proxy are set aside first: those open at start (maps, programs,
/// listeners), the admin API's and metrics' connections, one per health
/// check, DNS's sockets, the peer links and handshakes, and one waiting connection per
/// HTTP worker (see `http::proxy::serve`), plus a margin. The rest makes
/// `maxconn` client connections and as many server connections: two
/// descriptors each. A configured `[global] maxconn` that does not fit is
/// an error at start rather than `accept` failing later.
pub struct Budget {
    pub limit: u64,
    pub reserved: u64,
    pub maxconn: u32,
    configured: bool,
}

/// Descriptors kept beyond those counted (logs, netlink, signals, the
/// runtime's own).
const FD_MARGIN: u64 = 32;
/// `maxconn` when unset, at most (HAProxy computes its default the same
/// way, from the descriptor limit).
const MAX_DEFAULT_MAXCONN: u64 = 1 << 20;

impl Budget {
    pub(super) fn new(config: &Config, workers: usize) -> Result<Budget, DaemonError> {
        let limit = crate::util::raise_nofile()
            .map_err(|e| DaemonError::Descriptors(format!("reading the descriptor limit: {e}")))?;
        let open = crate::util::open_fds().unwrap_or(64);
        let control =
            crate::util::CONTROL_MAX_CONNS as u64 * (1 + u64::from(config.metrics_bind.is_some()));
        let checks: u64 = config
            .backends
            .iter()
            .map(|b| b.servers.len() as u64 + b.template.as_ref().map_or(0, |t| u64::from(t.count)))
            .sum();
        let dns: u64 = config
            .resolvers
            .iter()
            .map(|r| 2 * r.nameservers.len() as u64)
            .sum();
        let peers = config.peers.as_ref().map_or(0, |p| {
            2 * p.remotes.len() as u64 + crate::peers::listen::MAX_HANDSHAKES as u64
        });
        let http_fronts = config
            .frontends
            .iter()
            .filter(|f| f.mode == Mode::Http)
            .count();
        let waiting = (workers * http_fronts) as u64;
        let reserved = open + control + checks + dns + peers + waiting + FD_MARGIN;
        let fits = limit.saturating_sub(reserved) / 2;
        let maxconn = match config.maxconn {
            Some(m) if u64::from(m) > fits => {
                return Err(DaemonError::Descriptors(format!(
                    "global.maxconn {m} needs {} descriptors ({reserved} set aside, 2 per \
                     connection) and the limit is {limit}: lower maxconn or raise the limit \
                     (ulimit -n, systemd LimitNOFILE=)",
                    reserved + 2 * u64::from(m)
                )));
            }
            Some(m) => m,
            None if fits == 0 && http_fronts > 0 => {
                return Err(DaemonError::Descriptors(format!(
                    "the descriptor limit {limit} leaves nothing for HTTP connections \
                     ({reserved} set aside): raise it (ulimit -n, systemd LimitNOFILE=)"
                )));
            }
            None => fits.clamp(1, MAX_DEFAULT_MAXCONN) as u32,
        };
        Ok(Budget {
            limit,
            reserved,
            maxconn,
            configured: config.maxconn.is_some(),
        })
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "descriptors: limit {}, {} set aside; HTTP maxconn {} ({})",
            self.limit,
            self.reserved,
            self.maxconn,
            if self.configured {
                "configured"
            } else {
                "what the limit allows"
            }
        )
    }
}
