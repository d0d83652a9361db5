//! `GET /v1/table` (`balancer table show`): the stick table's entries as a
//! JSON array, written a batch at a time while the client reads it.
//!
//! The entries are read under the controller's lock (one batched walk of
//! the map, 40 bytes per entry); the answer is then written from them
//! without the lock, [`BATCH`] entries per body frame, each entry
//! serialized straight to bytes. Building the whole answer as a
//! `serde_json::Value` first, as this endpoint used to, held about 1 KB of
//! daemon memory per entry (1.09 GB for a million); now the daemon holds
//! the entries and one batch of text.

use std::{
    borrow::Cow,
    collections::HashMap,
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use balancer_common::maps::{FAMILY_V4, StickKey, StickValue, addr_of, family_addr};
use hyper::body::{Body, Bytes, Frame, SizeHint};

use crate::{api::TableEntry, control::Controller};

/// Entries per body frame.
pub const BATCH: usize = 4096;

/// What an entry's ids are called, taken from the controller once.
#[derive(Debug, Default)]
pub struct Names {
    /// Frontend name and VIP address family, by VIP id (not by position
    /// in the configuration: ids are kept by name across reloads).
    pub frontends: HashMap<u32, (String, u8)>,
    /// Each table's `expire` (ms), by VIP or HTTP table id.
    pub expire_ms: HashMap<u32, u64>,
    /// `backend/server`, by server id.
    pub servers: HashMap<u32, String>,
    /// HTTP stick tables: their backend's name and key family, by id.
    pub tables: HashMap<u32, (String, u8)>,
}

impl Names {
    pub fn of(c: &Controller) -> Names {
        let l4 = c.config.frontends.iter().zip(&c.frontend_ids);
        let http = c.http_tables().values();
        Names {
            expire_ms: l4
                .map(|(f, &id)| (id, c.config.backends[f.backend].expire.as_millis() as u64))
                .chain(http.map(|t| (t.id, t.expire_ns() / 1_000_000)))
                .collect(),
            frontends: c
                .config
                .frontends
                .iter()
                .zip(&c.frontend_ids)
                .map(|(f, &id)| (id, (f.name.clone(), family_addr(f.vip.ip()).0)))
                .collect(),
            servers: c
                .servers
                .iter()
                .map(|s| (s.id, format!("{}/{}", s.backend, s.name)))
                .collect(),
            tables: c
                .http_tables()
                .iter()
                .map(|(b, t)| (t.id, (b.clone(), t.form.family())))
                .collect(),
        }
    }

    /// `k`/`v` as the API shows them, idle time counted to `now_ns`.
    pub fn entry(&self, k: &StickKey, v: &StickValue, now_ns: u64) -> TableEntry<'_> {
        let f = self.frontends.get(&k.vip_id);
        let t = self.tables.get(&k.vip_id);
        let family = f.or(t).map_or(FAMILY_V4, |(_, fam)| *fam);
        TableEntry {
            frontend: f.map(|(name, _)| Cow::Borrowed(name.as_str())),
            backend: t.map(|(name, _)| Cow::Borrowed(name.as_str())),
            client: addr_of(family, &k.addr),
            server: self
                .servers
                .get(&v.backend)
                .map(|s| Cow::Borrowed(s.as_str())),
            server_id: v.backend,
            idle_ms: now_ns.saturating_sub(v.last_seen_ns) / 1_000_000,
            expires_in_ms: self
                .expire_ms
                .get(&k.vip_id)
                .map(|e| e.saturating_sub(now_ns.saturating_sub(v.last_seen_ns) / 1_000_000)),
        }
    }
}

/// The answer being written: a response body.
pub struct Listing {
    entries: Vec<(StickKey, StickValue)>,
    names: Names,
    now_ns: u64,
    /// Entries written so far; `None` once the closing bracket is out.
    written: Option<usize>,
}

impl Listing {
    pub fn new(entries: Vec<(StickKey, StickValue)>, names: Names, now_ns: u64) -> Listing {
        Listing {
            entries,
            names,
            now_ns,
            written: Some(0),
        }
    }

    /// The next piece of the array (the first opens it, the last closes
    /// it); `None` after the last.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        let done = self.written?;
        let end = (done + BATCH).min(self.entries.len());
        let mut out = Vec::with_capacity((end - done) * 128 + 2);
        if done == 0 {
            out.push(b'[');
        }
        for (i, (k, v)) in self.entries[done..end].iter().enumerate() {
            if done + i > 0 {
                out.push(b',');
            }
            // Writing to a Vec of plain fields cannot fail.
            let _ = serde_json::to_writer(&mut out, &self.names.entry(k, v, self.now_ns));
        }
        if end == self.entries.len() {
            out.push(b']');
            self.written = None;
        } else {
            self.written = Some(end);
        }
        Some(Bytes::from(out))
    }
}

impl Body for Listing {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().next_chunk().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.written.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dataplane::testing::{key, value};

    fn names() -> Names {
        Names {
            frontends: HashMap::from([(0, ("web".into(), FAMILY_V4))]),
            expire_ms: HashMap::from([(0, 30_000)]),
            servers: HashMap::from([(7, "pool/a".into())]),
            tables: HashMap::new(),
        }
    }

    #[test]
    fn batches_join_into_one_array_of_the_api_fields() {
        let n = BATCH * 2 + 3;
        let entries: Vec<_> = (0..n)
            .map(|i| (key(0, (i % 250) as u8), value(7, 1_000_000_000)))
            .collect();
        let mut l = Listing::new(entries, names(), 3_500_000_000);
        let mut chunks = Vec::new();
        while let Some(c) = l.next_chunk() {
            chunks.push(c);
        }
        assert_eq!(chunks.len(), 3);
        let all: Vec<u8> = chunks.concat();
        let v: serde_json::Value = serde_json::from_slice(&all).expect("one JSON array");
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), n);
        assert_eq!(
            a[1],
            serde_json::json!({"frontend": "web", "client": "198.18.0.1", "server": "pool/a",
                               "server_id": 7, "idle_ms": 2500, "expires_in_ms": 27500})
        );
    }

    #[test]
    fn empty_table_and_unknown_ids() {
        let mut l = Listing::new(Vec::new(), names(), 0);
        assert_eq!(l.next_chunk().as_deref(), Some(&b"[]"[..]));
        assert!(l.next_chunk().is_none() && l.is_end_stream());
        // A removed server and a VIP id without frontend: nulls, as before.
        let mut l = Listing::new(vec![(key(3, 9), value(99, 0))], names(), 0);
        let v: serde_json::Value = serde_json::from_slice(&l.next_chunk().unwrap()).unwrap();
        assert_eq!(v[0]["server"], serde_json::Value::Null);
        assert_eq!(v[0]["frontend"], serde_json::Value::Null);
        assert_eq!(v[0]["client"], "198.18.0.9");
    }
}
