//! Private server connections (`send_proxy`): opened with one client's
//! PROXY header, they serve that client connection only.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use super::Conn;

/// One client connection's own server connections, with `send_proxy`
/// (HAProxy's private connections): each opens with the client's PROXY
/// header and serves that client's requests only. Its idle ones wait
/// here, not in the pool, and close when the client connection ends (its
/// last holder drops this).
#[derive(Default)]
pub struct Private {
    idle: Mutex<Vec<Conn>>,
}

impl std::fmt::Debug for Private {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.idle.lock().map_or(0, |l| l.len());
        write!(f, "Private({n} idle)")
    }
}

impl Private {
    /// Back to its client's own (`conn` is private), if that connection
    /// is still open; else closed.
    pub(super) fn put_back(conn: Conn) {
        let owner = conn.private.as_ref().and_then(|t| t.owner.upgrade());
        if let Some(owner) = owner {
            let mut idle = owner.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.push(conn);
        }
    }

    /// An idle connection of this client's to `addr`, still open.
    pub(super) fn take(&self, addr: SocketAddr, tls: bool) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(i) = idle
            .iter()
            .position(|c| c.addr == addr && c.tls.is_some() == tls)
        {
            let mut c = idle.swap_remove(i);
            if c.is_usable() {
                return Some(c);
            }
        }
        None
    }
}

/// What a private connection needs to find its way back, and to be made
/// again: its client's [`Private`] and the header.
pub(super) struct PrivateTag {
    pub(super) owner: std::sync::Weak<Private>,
    pub(super) hello: Vec<u8>,
}

/// A private connection's PROXY header and its client's [`Private`].
#[derive(Clone, Copy)]
pub struct Hello<'a> {
    pub header: &'a [u8],
    pub owner: &'a Arc<Private>,
}
