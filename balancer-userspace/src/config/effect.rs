//! Keys that are valid on their own but would have no effect in the
//! configuration they stand in: refused (the project's rule: nothing in a
//! config is silently ignored), each with its line, why it would do
//! nothing, and what would give it an effect. These checks need the whole
//! file (dataplane, frontends, backends), so they run once everything else
//! is valid; those that one backend or section decides alone are in
//! `backend.rs`, `resolvers.rs` and `peers.rs`.

use super::{
    Backend, ConfigError, Dataplane, Forward, Frontend, Mode, Resolvers, Validator,
    dataplane::DataplaneKeys,
};

/// The keys of the top-level tables that have a default, as the file gave
/// them: set or not.
pub(super) struct GlobalKeys {
    pub dataplane: DataplaneKeys,
    pub maxconn: bool,
    pub table_count_interval: bool,
}

impl Validator<'_> {
    pub(super) fn settle_globals(
        &self,
        keys: &GlobalKeys,
        dataplane: &Dataplane,
        frontends: &[Frontend],
        backends: &[Backend],
        resolvers: &[Resolvers],
    ) -> Result<(), ConfigError> {
        let l4 = frontends.iter().any(|f| f.mode == Mode::L4);
        let http = frontends.iter().any(|f| f.mode == Mode::Http);
        let http_stick = backends
            .iter()
            .any(|b| b.http.as_ref().is_some_and(|h| h.stick.any()));
        if keys.dataplane.xdp_mode && dataplane.interfaces.is_empty() {
            return Err(self.err(
                "dataplane.xdp_mode",
                "interfaces = []: the XDP program is attached nowhere, so it would have no \
                 effect (list an interface, or leave xdp_mode out)",
            ));
        }
        if keys.dataplane.insert_cap && !l4 {
            return Err(self.err(
                "dataplane.insert_cap",
                "it caps new stick entries of the XDP path, which serves only mode = \"l4\" \
                 frontends; without one it would have no effect",
            ));
        }
        if keys.dataplane.stick_refresh && !l4 && !http_stick {
            return Err(self.err(
                "dataplane.stick_refresh",
                "it paces the last-seen writes of stick tables: those of mode = \"l4\" \
                 frontends and of http backends with stick rules; with neither it would have \
                 no effect",
            ));
        }
        for (v4, key, family) in [
            (true, "dataplane.tunnel_source_v4", "IPv4"),
            (false, "dataplane.tunnel_source_v6", "IPv6"),
        ] {
            let set = match v4 {
                true => dataplane.tunnel_source_v4.is_some(),
                false => dataplane.tunnel_source_v6.is_some(),
            };
            let used = frontends.iter().any(|f| {
                f.mode == Mode::L4
                    && f.vip.is_ipv4() == v4
                    && backends[f.backend].forward == Forward::Ipip
            });
            if set && !used {
                return Err(self.err(
                    key,
                    format!(
                        "it is the outer source of IP-in-IP packets to servers, and no \
                         mode = \"l4\" frontend of an {family} VIP uses a forward = \"ipip\" \
                         backend: it would have no effect"
                    ),
                ));
            }
        }
        if keys.maxconn && !http {
            return Err(self.err(
                "global.maxconn",
                "only client connections of mode = \"http\" frontends are counted; without \
                 one it would have no effect",
            ));
        }
        if keys.table_count_interval && !l4 && !http_stick {
            return Err(self.err(
                "metrics.table_count_interval",
                "there is no stick table to count (they belong to mode = \"l4\" frontends and \
                 to http backends with stick rules): it would have no effect",
            ));
        }
        for (i, r) in resolvers.iter().enumerate() {
            let used = backends
                .iter()
                .any(|b| b.template.as_ref().is_some_and(|t| t.resolvers == i));
            if !used {
                return Err(self.err(
                    format!("resolvers.{}", r.name),
                    format!(
                        "no server_template names it (resolvers = {:?}): it would have no effect",
                        r.name
                    ),
                ));
            }
        }
        Ok(())
    }
}
