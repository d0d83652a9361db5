//! The handshake's challenge-response: HMAC-SHA256 keyed by the section's
//! shared secret over the section, both peer names and both nonces, with
//! a role label so the dialer's answer cannot be replayed as the listener's.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::wire::{Mac, Nonce};

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

fn hmac(secret: &[u8], role: Role, t: &Transcript<'_>) -> Hmac<Sha256> {
    // Any key length is valid for HMAC.
    let mut m = <Hmac<Sha256>>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(match role {
        Role::Dialer => b"balancer-peers/1 dialer\0",
        Role::Listener => b"balancer-peers/1 listener",
    });
    for field in [t.section, t.dialer, t.listener] {
        // Length-prefixed: ("ab","c") and ("a","bc") sign differently.
        m.update(&(field.len() as u32).to_be_bytes());
        m.update(field.as_bytes());
    }
    m.update(t.dialer_nonce);
    m.update(t.listener_nonce);
    m
}

pub fn sign(secret: &[u8], role: Role, t: &Transcript<'_>) -> Mac {
    hmac(secret, role, t).finalize().into_bytes().into()
}

/// Constant-time check of a MAC received from the other side.
pub fn verify(secret: &[u8], role: Role, t: &Transcript<'_>, mac: &Mac) -> bool {
    hmac(secret, role, t).verify_slice(mac).is_ok()
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

    #[test]
    fn macs_bind_secret_role_names_and_nonces() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let t = Transcript {
            section: "lb",
            dialer: "a",
            listener: "b",
            dialer_nonce: &a,
            listener_nonce: &b,
        };
        let mac = sign(b"0123456789abcdef", Role::Dialer, &t);
        assert!(verify(b"0123456789abcdef", Role::Dialer, &t, &mac));
        assert!(!verify(b"0123456789abcdeX", Role::Dialer, &t, &mac));
        assert!(!verify(b"0123456789abcdef", Role::Listener, &t, &mac));
        let swapped = Transcript {
            dialer_nonce: &b,
            listener_nonce: &a,
            ..t
        };
        assert!(!verify(b"0123456789abcdef", Role::Dialer, &swapped, &mac));
        let renamed = Transcript {
            dialer: "c",
            ..swapped
        };
        assert!(!verify(b"0123456789abcdef", Role::Dialer, &renamed, &mac));
    }
}
