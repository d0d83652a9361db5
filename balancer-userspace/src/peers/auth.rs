//! The handshake's challenge-response and the link's keys: HMAC-SHA256
//! keyed by the section's shared secret over a label, the section, both
//! peer names and both nonces.
//!
//! Four labels keep the four uses apart: the dialer's proof, the
//! listener's proof (so neither answer can be replayed as the other), and
//! one frame key per direction ([`session_keys`]: a frame sent back to
//! its sender does not verify). The nonces are fresh per connection, so
//! every link has its own keys.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::{
    seal::{FrameKey, Opener, Sealer},
    wire::{Mac, Nonce},
};

/// Who computes the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Dialer,
    Listener,
}

/// What both sides sign: the same fields in the same order.
pub struct Transcript<'a> {
    pub section: &'a str,
    pub dialer: &'a str,
    pub listener: &'a str,
    pub dialer_nonce: &'a Nonce,
    pub listener_nonce: &'a Nonce,
}

fn hmac(secret: &[u8], label: &str, t: &Transcript<'_>) -> Hmac<Sha256> {
    // Any key length is valid for HMAC.
    let mut m = <Hmac<Sha256>>::new_from_slice(secret).expect("HMAC takes any key length");
    for field in [label, t.section, t.dialer, t.listener] {
        // Length-prefixed: ("ab","c") and ("a","bc") sign differently.
        m.update(&(field.len() as u32).to_be_bytes());
        m.update(field.as_bytes());
    }
    m.update(t.dialer_nonce);
    m.update(t.listener_nonce);
    m
}

fn proof_label(role: Role) -> &'static str {
    match role {
        Role::Dialer => "balancer-peers/2 dialer proof",
        Role::Listener => "balancer-peers/2 listener proof",
    }
}

pub fn sign(secret: &[u8], role: Role, t: &Transcript<'_>) -> Mac {
    hmac(secret, proof_label(role), t)
        .finalize()
        .into_bytes()
        .into()
}

/// Constant-time check of a MAC received from the other side.
pub fn verify(secret: &[u8], role: Role, t: &Transcript<'_>, mac: &Mac) -> bool {
    hmac(secret, proof_label(role), t).verify_slice(mac).is_ok()
}

/// A link's two frame keys, one per direction.
#[derive(Debug, Clone)]
pub struct SessionKeys {
    /// Seals what the dialer sends.
    pub dialer: FrameKey,
    /// Seals what the listener sends.
    pub listener: FrameKey,
}

impl SessionKeys {
    /// `role`'s sealer (for what it sends) and opener (for what it gets).
    pub fn split(self, role: Role) -> (Sealer, Opener) {
        match role {
            Role::Dialer => (Sealer::new(self.dialer), Opener::new(self.listener)),
            Role::Listener => (Sealer::new(self.listener), Opener::new(self.dialer)),
        }
    }
}

/// The keys of the link whose handshake was `t` (both sides derive them
/// once both proofs checked out).
pub fn session_keys(secret: &[u8], t: &Transcript<'_>) -> SessionKeys {
    let key = |label| FrameKey::new(&hmac(secret, label, t).finalize().into_bytes().into());
    SessionKeys {
        dialer: key("balancer-peers/2 dialer frames"),
        listener: key("balancer-peers/2 listener frames"),
    }
}

/// A fresh random nonce.
pub fn nonce() -> std::io::Result<Nonce> {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::wire::Msg;

    const SECRET: &[u8] = b"0123456789abcdef";

    fn transcript<'a>(a: &'a Nonce, b: &'a Nonce) -> Transcript<'a> {
        Transcript {
            section: "lb",
            dialer: "a",
            listener: "b",
            dialer_nonce: a,
            listener_nonce: b,
        }
    }

    #[test]
    fn macs_bind_secret_role_names_and_nonces() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let t = transcript(&a, &b);
        let mac = sign(SECRET, Role::Dialer, &t);
        assert!(verify(SECRET, Role::Dialer, &t, &mac));
        assert!(!verify(b"0123456789abcdeX", Role::Dialer, &t, &mac));
        assert!(!verify(SECRET, Role::Listener, &t, &mac));
        let swapped = Transcript {
            dialer_nonce: &b,
            listener_nonce: &a,
            ..t
        };
        assert!(!verify(SECRET, Role::Dialer, &swapped, &mac));
        let renamed = Transcript {
            dialer: "c",
            ..swapped
        };
        assert!(!verify(SECRET, Role::Dialer, &renamed, &mac));
    }

    /// Both ends derive the same keys; a frame opens only at the other
    /// end of its own direction, and only on its own link.
    #[test]
    fn each_direction_and_each_link_has_its_key() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let t = transcript(&a, &b);
        let (mut d_seal, mut d_open) = session_keys(SECRET, &t).split(Role::Dialer);
        let (mut l_seal, mut l_open) = session_keys(SECRET, &t).split(Role::Listener);
        let hb = Msg::Heartbeat;
        let f = d_seal.seal(&hb).unwrap();
        assert_eq!(l_open.open(&f[4..]).unwrap(), hb);
        let g = l_seal.seal(&hb).unwrap();
        assert_eq!(d_open.open(&g[4..]).unwrap(), hb);
        // Reflected: the dialer's second frame, sent back to the dialer.
        let f = d_seal.seal(&hb).unwrap();
        assert!(d_open.open(&f[4..]).is_err());
        // Another link (a new listener nonce): other keys.
        let c = [3u8; 32];
        let (mut other_seal, _) = session_keys(SECRET, &transcript(&a, &c)).split(Role::Dialer);
        let (_, mut l_open) = session_keys(SECRET, &t).split(Role::Listener);
        assert!(l_open.open(&other_seal.seal(&hb).unwrap()[4..]).is_err());
        // The keys are not the proofs (which travel in clear).
        let keys = session_keys(SECRET, &t);
        let (mut s, _) = keys.split(Role::Dialer);
        let proof = FrameKey::new(&sign(SECRET, Role::Dialer, &t));
        let mut o = Opener::new(proof);
        assert!(o.open(&s.seal(&hb).unwrap()[4..]).is_err());
    }
}
