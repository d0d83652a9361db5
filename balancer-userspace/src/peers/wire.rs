//! The peer protocol's messages and framing.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of a
//! postcard-encoded [`Msg`]; after the handshake the bytes end with a tag
//! ([`super::seal`]). Every length is bounded before anything is
//! allocated: [`MAX_HANDSHAKE_FRAME`] until the peer has authenticated,
//! [`MAX_FRAME`] after; so is every list while it is decoded
//! ([`MAX_TABLES`], [`MAX_SERVERS`], [`MAX_BATCH`]), and the entries of a
//! whole batch ([`MAX_BATCH`]). A frame that is too long, holds too much or
//! does not decode ends the connection (the caller logs and counts it).
//!
//! Entries name their table by frontend name and their server by name, so
//! instances that gave ids in different orders agree; times travel as ages
//! (how long ago the entry was last seen), so the peers' clocks need not
//! agree.

use std::{fmt, marker::PhantomData, net::IpAddr};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{Error as _, SeqAccess, Visitor},
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Protocol version carried in [`Msg::Hello`]. 2: frames after the
/// handshake are sealed; version 1 peers are refused with both versions
/// named.
pub const VERSION: u32 = 2;
/// Largest frame before authentication.
pub const MAX_HANDSHAKE_FRAME: usize = 1024;
/// Largest frame after authentication.
pub const MAX_FRAME: usize = 4 << 20;
/// Most entries in one [`Msg::Updates`] (about 10 to 30 bytes each on the
/// wire), all tables together.
pub const MAX_BATCH: usize = 8192;
/// Most tables in one [`Msg::Updates`] (a batch holds each replicated
/// frontend at most once).
pub const MAX_TABLES: usize = balancer_common::maps::MAX_VIPS as usize;
/// Most server names in one [`TableUpdates`] (a backend's servers).
pub const MAX_SERVERS: usize = balancer_common::maps::MAX_BACKENDS as usize;

pub type Nonce = [u8; 32];
pub type Mac = [u8; 32];

/// One stick entry on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    pub client: IpAddr,
    /// Index into [`TableUpdates::servers`].
    pub server: u16,
    /// Microseconds between the entry's last use and the moment the batch
    /// was made.
    pub age_us: u64,
}

/// Entries of one replicated table (a frontend's share of the stick table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableUpdates {
    pub frontend: String,
    /// The frontend's backend: a peer whose frontend uses another backend
    /// takes none of these entries.
    pub backend: String,
    /// Server names the entries refer to by index.
    #[serde(deserialize_with = "servers")]
    pub servers: Vec<String>,
    #[serde(deserialize_with = "entries")]
    pub entries: Vec<WireEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Dialer -> listener: who I am, whom I want, my nonce.
    Hello {
        version: u32,
        section: String,
        from: String,
        to: String,
        nonce: Nonce,
    },
    /// Listener -> dialer: the listener's nonce.
    Challenge { nonce: Nonce },
    /// Dialer -> listener: HMAC over both names and nonces (dialer role).
    Auth { mac: Mac },
    /// Listener -> dialer: the listener's HMAC (listener role): both sides
    /// have now proved they hold the secret.
    Welcome { mac: Mac },
    /// Either side: the handshake failed, and why.
    Refused { reason: String },
    /// Dialer -> listener: entries. `held_us`: how long the batch waited
    /// between being made and being sent (added to every age).
    Updates {
        seq: u64,
        resync: bool,
        held_us: u64,
        #[serde(deserialize_with = "tables")]
        tables: Vec<TableUpdates>,
    },
    /// Dialer -> listener: the full resync ended with batch `seq`.
    ResyncDone { seq: u64 },
    /// Listener -> dialer: batch `seq` (and all before it) applied.
    Ack { seq: u64 },
    /// Either side, when idle: still here.
    Heartbeat,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("batch of {entries} entries, more than the {max} allowed")]
    Batch { entries: usize, max: usize },
    #[error(
        "frame {seq} failed authentication (bad MAC: forged, changed, replayed, reordered or reflected)"
    )]
    BadMac { seq: u64 },
    #[error("connection closed")]
    Closed,
}

/// Encode one frame (length prefix included).
pub fn encode(msg: &Msg) -> Result<Vec<u8>, WireError> {
    let mut out = postcard::to_extend(msg, vec![0u8; 4])
        .map_err(|e| WireError::Decode(format!("encoding: {e}")))?;
    let len = out.len() - 4;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

pub async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &Msg) -> Result<(), WireError> {
    let frame = encode(msg)?;
    w.write_all(&frame).await?;
    Ok(())
}

/// Read one unsealed frame (the handshake's) of at most `max` bytes. Not
/// cancel-safe: run it in a task of its own (or to completion).
pub async fn read_msg<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Msg, WireError> {
    decode(&read_frame(r, max).await?)
}

/// Read one frame's contents (what follows the length) of at most `max`
/// bytes. Not cancel-safe.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Vec<u8>, WireError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(body)
}

/// Decode a frame's body; trailing bytes are an error, and so is a batch
/// over [`MAX_BATCH`] entries.
pub fn decode(body: &[u8]) -> Result<Msg, WireError> {
    let m = match postcard::take_from_bytes::<Msg>(body) {
        Ok((m, [])) => m,
        Ok((_, rest)) => {
            return Err(WireError::Decode(format!(
                "{} trailing bytes after the message",
                rest.len()
            )));
        }
        // What the bounded lists and unknown variants fail with.
        Err(postcard::Error::SerdeDeCustom) => {
            return Err(WireError::Decode(format!(
                "an unknown message, or a list over its bound ({MAX_TABLES} tables, \
                 {MAX_SERVERS} servers, {MAX_BATCH} entries)"
            )));
        }
        Err(e) => return Err(WireError::Decode(e.to_string())),
    };
    if let Msg::Updates { tables, .. } = &m {
        let entries = tables.iter().map(|t| t.entries.len()).sum();
        if entries > MAX_BATCH {
            return Err(WireError::Batch {
                entries,
                max: MAX_BATCH,
            });
        }
    }
    Ok(m)
}

/// A list of at most `max` items, refused before anything is allocated
/// for more.
fn bounded<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    max: usize,
) -> Result<Vec<T>, D::Error> {
    struct Bounded<T> {
        max: usize,
        item: PhantomData<T>,
    }
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {} items", self.max)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let hint = seq.size_hint().unwrap_or(0);
            if hint > self.max {
                return Err(A::Error::invalid_length(hint, &self));
            }
            let mut out = Vec::with_capacity(hint);
            while let Some(item) = seq.next_element()? {
                if out.len() == self.max {
                    return Err(A::Error::invalid_length(self.max + 1, &self));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded {
        max,
        item: PhantomData,
    })
}

fn tables<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<TableUpdates>, D::Error> {
    bounded(d, MAX_TABLES)
}

fn servers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    bounded(d, MAX_SERVERS)
}

fn entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<WireEntry>, D::Error> {
    bounded(d, MAX_BATCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Msg::Updates {
            seq: 7,
            resync: true,
            held_us: 12,
            tables: vec![TableUpdates {
                frontend: "web".into(),
                backend: "web".into(),
                servers: vec!["s0".into(), "s1".into()],
                entries: vec![WireEntry {
                    client: "198.18.8.1".parse().unwrap(),
                    server: 1,
                    age_us: 5_000_000,
                }],
            }],
        };
        let f = encode(&m).unwrap();
        assert_eq!(
            u32::from_be_bytes(f[..4].try_into().unwrap()) as usize,
            f.len() - 4
        );
        assert_eq!(decode(&f[4..]).unwrap(), m);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for body in [
            &b""[..],
            b"\xff\xff\xff\xff\xff",
            b"GET / HTTP/1.1\r\n\r\n",
            &[
                0x05, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ] {
            assert!(decode(body).is_err(), "{body:?}");
        }
    }

    fn updates(tables: Vec<TableUpdates>) -> Msg {
        Msg::Updates {
            seq: 1,
            resync: false,
            held_us: 0,
            tables,
        }
    }

    fn table(servers: usize, entries: usize) -> TableUpdates {
        TableUpdates {
            frontend: "web".into(),
            backend: "web".into(),
            servers: vec![String::new(); servers],
            entries: vec![
                WireEntry {
                    client: "198.18.8.1".parse().unwrap(),
                    server: 0,
                    age_us: 0,
                };
                entries
            ],
        }
    }

    #[test]
    fn lists_and_batches_are_bounded() {
        // At the bounds: fine.
        let ok = updates(vec![table(MAX_SERVERS, MAX_BATCH)]);
        assert_eq!(decode(&encode(&ok).unwrap()[4..]).unwrap(), ok);
        // One over, in one list or in the batch as a whole.
        for (what, m) in [
            ("entries", updates(vec![table(1, MAX_BATCH + 1)])),
            ("servers", updates(vec![table(MAX_SERVERS + 1, 0)])),
            ("tables", updates(vec![table(0, 0); MAX_TABLES + 1])),
        ] {
            match decode(&encode(&m).unwrap()[4..]) {
                Err(WireError::Decode(e)) => assert!(e.contains("bound"), "{what}: {e}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        let split = updates(vec![table(1, MAX_BATCH / 2 + 1), table(1, MAX_BATCH / 2)]);
        match decode(&encode(&split).unwrap()[4..]) {
            Err(WireError::Batch { entries, max }) => {
                assert_eq!((entries, max), (MAX_BATCH + 1, MAX_BATCH));
            }
            other => panic!("{other:?}"),
        }
    }

    /// A list length claiming billions of items fails before any
    /// allocation for them (postcard's length prefix is a varint).
    #[test]
    fn a_huge_list_length_allocates_nothing() {
        let mut body = encode(&updates(vec![table(0, 0)])).unwrap()[4..].to_vec();
        // Msg::Updates = variant 5, seq 1, resync 0, held 0, then the
        // tables' count: make it 2^32 - 1.
        assert_eq!(&body[..5], &[5, 1, 0, 0, 1]);
        body.splice(4..5, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(decode(&body), Err(WireError::Decode(_))));
    }

    /// Found by fuzzing (`fuzz/regressions/peers_frame/`): postcard reads
    /// over-long varints too, so a message has several encodings. Harmless:
    /// it is the same message, and `encode` writes the shortest.
    #[test]
    fn over_long_varints_decode_to_the_same_message() {
        let over_long = decode(&[5, 0xff, 0, 0, 4, 0]).unwrap();
        let short = decode(&[5, 127, 0, 4, 0]).unwrap();
        assert_eq!(over_long, short);
        assert_eq!(encode(&over_long).unwrap()[4..], [5, 127, 0, 4, 0]);
    }

    #[tokio::test]
    async fn length_is_bounded_before_reading() {
        let mut bytes: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        match read_msg(&mut bytes, MAX_FRAME).await {
            Err(WireError::TooLarge { len, .. }) => assert_eq!(len, 0x7fff_ffff),
            other => panic!("{other:?}"),
        }
    }
}
