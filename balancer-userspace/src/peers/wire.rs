//! The peer protocol's messages and framing.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of a
//! postcard-encoded [`Msg`]. Every length is bounded before anything is
//! allocated: [`MAX_HANDSHAKE_FRAME`] until the peer has authenticated,
//! [`MAX_FRAME`] after. A frame that is too long or does not decode ends
//! the connection (the caller logs and counts it).
//!
//! Entries name their table by frontend name and their server by name, so
//! instances that gave ids in different orders agree; times travel as ages
//! (how long ago the entry was last seen), so the peers' clocks need not
//! agree.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Protocol version carried in [`Msg::Hello`].
pub const VERSION: u32 = 1;
/// Largest frame before authentication.
pub const MAX_HANDSHAKE_FRAME: usize = 1024;
/// Largest frame after authentication.
pub const MAX_FRAME: usize = 4 << 20;
/// Most entries in one [`Msg::Updates`] (about 30 bytes each on the wire).
pub const MAX_BATCH: usize = 8192;

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
    pub servers: Vec<String>,
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

/// Read one frame of at most `max` bytes. Not cancel-safe: run it in a
/// task of its own (or to completion).
pub async fn read_msg<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Msg, WireError> {
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
    decode(&body)
}

/// Decode a frame's body; trailing bytes are an error.
pub fn decode(body: &[u8]) -> Result<Msg, WireError> {
    match postcard::take_from_bytes::<Msg>(body) {
        Ok((m, [])) => Ok(m),
        Ok((_, rest)) => Err(WireError::Decode(format!(
            "{} trailing bytes after the message",
            rest.len()
        ))),
        Err(e) => Err(WireError::Decode(e.to_string())),
    }
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
