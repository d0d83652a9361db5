//! Frames after the handshake: each carries an HMAC-SHA256 tag under the
//! session key of its direction ([`super::auth::session_keys`]).
//!
//! A sealed frame is a 4-byte big-endian length, the postcard-encoded
//! [`Msg`], then [`TAG_LEN`] bytes of tag; the length counts body and tag.
//! The tag covers the frame's sequence number in its direction (0 for the
//! first frame after the handshake, then 1, 2, ...; never sent: both sides
//! count), the length and the body. So a changed byte, a frame replayed,
//! reordered, dropped, or reflected back to its sender (the other
//! direction has the other key), and a frame from another link (other
//! nonces, other keys) all fail the check. The tag is checked before the
//! body is decoded.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::wire::{self, MAX_FRAME, Msg, WireError};

/// Bytes of tag at the end of every sealed frame.
pub const TAG_LEN: usize = 32;

/// One direction's key, ready to tag frames.
#[derive(Clone)]
pub struct FrameKey(Hmac<Sha256>);

impl FrameKey {
    pub fn new(key: &[u8; 32]) -> FrameKey {
        // Any key length is valid for HMAC.
        FrameKey(<Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key length"))
    }

    fn tag(&self, seq: u64, len: u32, body: &[u8]) -> Hmac<Sha256> {
        let mut m = self.0.clone();
        m.update(&seq.to_be_bytes());
        m.update(&len.to_be_bytes());
        m.update(body);
        m
    }
}

impl std::fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameKey(..)")
    }
}

/// Seals the frames one side sends.
#[derive(Debug)]
pub struct Sealer {
    key: FrameKey,
    next: u64,
}

impl Sealer {
    pub fn new(key: FrameKey) -> Sealer {
        Sealer { key, next: 0 }
    }

    /// The next frame, length prefix and tag included.
    pub fn seal(&mut self, msg: &Msg) -> Result<Vec<u8>, WireError> {
        let mut frame = wire::encode(msg)?;
        let len = frame.len() - 4 + TAG_LEN;
        if len > MAX_FRAME {
            return Err(WireError::TooLarge {
                len,
                max: MAX_FRAME,
            });
        }
        frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
        let tag = self.key.tag(self.next, len as u32, &frame[4..]).finalize();
        frame.extend_from_slice(&tag.into_bytes());
        self.next += 1;
        Ok(frame)
    }
}

/// Checks and decodes the frames one side receives.
#[derive(Debug)]
pub struct Opener {
    key: FrameKey,
    next: u64,
}

impl Opener {
    pub fn new(key: FrameKey) -> Opener {
        Opener { key, next: 0 }
    }

    /// One frame's contents (what follows its length): checked, then
    /// decoded. Any failure ends the link, so the count only moves on.
    pub fn open(&mut self, frame: &[u8]) -> Result<Msg, WireError> {
        let seq = self.next;
        let body_len = frame
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(WireError::BadMac { seq })?;
        let (body, tag) = frame.split_at(body_len);
        self.key
            .tag(seq, frame.len() as u32, body)
            .verify_slice(tag)
            .map_err(|_| WireError::BadMac { seq })?;
        self.next += 1;
        wire::decode(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Sealer, Opener, FrameKey) {
        let k = FrameKey::new(&[1; 32]);
        (
            Sealer::new(k.clone()),
            Opener::new(k),
            FrameKey::new(&[2; 32]),
        )
    }

    fn body(frame: &[u8]) -> &[u8] {
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        &frame[4..]
    }

    fn ack(seq: u64) -> Msg {
        Msg::Ack { seq }
    }

    #[test]
    fn frames_in_order_open() {
        let (mut s, mut o, _) = pair();
        for i in 0..3 {
            let f = s.seal(&ack(i)).unwrap();
            assert_eq!(o.open(body(&f)).unwrap(), ack(i));
        }
    }

    #[test]
    fn a_changed_byte_fails_anywhere() {
        let (mut s, _, _) = pair();
        let f = s.seal(&ack(300)).unwrap();
        for i in 4..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x40;
            let (_, mut o, _) = pair();
            assert!(
                matches!(o.open(body(&bad)), Err(WireError::BadMac { seq: 0 })),
                "byte {i}"
            );
        }
    }

    #[test]
    fn replayed_reordered_and_dropped_frames_fail() {
        let (mut s, mut o, _) = pair();
        let f0 = s.seal(&ack(0)).unwrap();
        let f1 = s.seal(&ack(1)).unwrap();
        let f2 = s.seal(&ack(2)).unwrap();
        assert!(o.open(body(&f0)).is_ok());
        // Replayed.
        assert!(matches!(
            o.open(body(&f0)),
            Err(WireError::BadMac { seq: 1 })
        ));
        // Reordered (f2 before f1), and f1 dropped: both are f2 at seq 1.
        let (_, mut o, _) = pair();
        assert!(o.open(body(&f0)).is_ok());
        assert!(o.open(body(&f2)).is_err());
        let (_, mut o, _) = pair();
        assert!(o.open(body(&f0)).is_ok());
        assert!(o.open(body(&f1)).is_ok());
        assert!(o.open(body(&f2)).is_ok());
    }

    #[test]
    fn a_reflected_frame_fails() {
        // Each side seals with its own direction's key and opens with the
        // other's: a frame sent back to its sender does not open.
        let (mut mine, _, theirs) = pair();
        let mut my_opener = Opener::new(theirs);
        let f = mine.seal(&Msg::Heartbeat).unwrap();
        assert!(matches!(
            my_opener.open(body(&f)),
            Err(WireError::BadMac { seq: 0 })
        ));
    }

    #[test]
    fn short_and_unsealed_frames_fail_before_decoding() {
        let (_, mut o, _) = pair();
        assert!(matches!(o.open(&[]), Err(WireError::BadMac { .. })));
        assert!(matches!(o.open(&[0; 31]), Err(WireError::BadMac { .. })));
        let plain = wire::encode(&Msg::Heartbeat).unwrap();
        assert!(matches!(
            o.open(body(&plain)),
            Err(WireError::BadMac { .. })
        ));
    }
}
