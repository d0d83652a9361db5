//! The VIP table: open addressing in an array map.
//!
//! A key's home slot is `vip_hash(key, seed) & (VIP_INDEX_SLOTS - 1)`; it
//! sits in the first free slot of the [`VIP_INDEX_PROBES`] slots from there
//! (wrapping). A lookup reads those slots in order and stops at the key or
//! at an empty slot. The builder tries seeds until every key fits its probe
//! window, so a lookup never reads more than [`VIP_INDEX_PROBES`] slots.
//!
//! Two generations live side by side in the map (`generation *
//! VIP_INDEX_SLOTS + slot`); [`crate::maps::VipSel`] says which one the
//! program reads, so userspace replaces the whole table without a reader
//! ever seeing it half-written.

use crate::maps::{VIP_INDEX_PROBES, VIP_INDEX_SLOTS, VipKey, VipSlot};

/// The key's port, protocol and family as one word (the fifth of [`key_words`]).
#[inline(always)]
pub const fn vip_last_word(port: u16, proto: u8, family: u8) -> u32 {
    (port as u32) << 16 | (proto as u32) << 8 | family as u32
}

/// The key as five 32-bit words: what the hash mixes and the lookup
/// compares. The address words are `crate::hash::addr_words`.
#[inline(always)]
pub const fn key_words(k: &VipKey) -> [u32; 5] {
    let [a0, a1, a2, a3] = crate::hash::addr_words(&k.addr);
    [a0, a1, a2, a3, vip_last_word(k.port, k.proto, k.family)]
}

/// Home slot of a key under `seed`, in `0..VIP_INDEX_SLOTS`.
#[inline(always)]
pub const fn home_slot(key: &VipKey, seed: u32) -> u32 {
    home_slot_words(&key_words(key), seed)
}

/// [`home_slot`] from the key's words. Multiply-rotate per word, then a
/// final avalanche: a handful of instructions in eBPF.
#[inline(always)]
pub const fn home_slot_words(w: &[u32; 5], seed: u32) -> u32 {
    let mut h = seed ^ 0x9e37_79b9;
    let mut i = 0;
    while i < 5 {
        h = (h ^ w[i]).wrapping_mul(0x85eb_ca6b).rotate_left(13);
        i += 1;
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 15;
    h & (VIP_INDEX_SLOTS - 1)
}

/// Compare key words without a `memcmp` call (which the BPF target emits
/// for array equality).
#[inline(always)]
pub const fn same_words(a: &[u32; 5], b: &[u32; 5]) -> bool {
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4]
}

/// The `probe`-th slot (0-based) of `key`'s window.
#[inline(always)]
pub const fn probe_slot(home: u32, probe: u32) -> u32 {
    (home + probe) & (VIP_INDEX_SLOTS - 1)
}

/// The lookup, over any slot reader (`slot(i)` for `i < VIP_INDEX_SLOTS`):
/// the host-side statement of what the program does.
pub fn lookup<'a>(
    key: &VipKey,
    seed: u32,
    mut slot: impl FnMut(u32) -> Option<&'a VipSlot>,
) -> Option<&'a VipSlot> {
    let home = home_slot(key, seed);
    let want = key_words(key);
    for p in 0..VIP_INDEX_PROBES {
        let s = slot(probe_slot(home, p))?;
        if s.used == 0 {
            return None;
        }
        if same_words(&key_words(&s.key), &want) {
            return Some(s);
        }
    }
    None
}

#[cfg(feature = "alloc")]
mod build {
    use alloc::vec::Vec;

    use super::{home_slot, probe_slot};
    use crate::maps::{VIP_INDEX_PROBES, VIP_INDEX_SLOTS, VipInfo, VipKey, VipSlot};

    /// Seeds tried before giving up. With at most 1/8 of the slots used, a
    /// seed fails only when some window of 4 slots gets 5 keys; the chance
    /// that 64 seeds in a row do is far below anything observable.
    pub const SEED_TRIES: u32 = 64;

    /// One generation of the table: `VIP_INDEX_SLOTS` slots and the seed
    /// they were placed with.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct VipTable {
        pub seed: u32,
        pub slots: Vec<VipSlot>,
    }

    /// Place `entries` (distinct keys). `None` when no seed of
    /// [`SEED_TRIES`] fits every key in its probe window, which for more
    /// than `VIP_INDEX_SLOTS` keys is certain.
    pub fn build(entries: &[(VipKey, VipInfo)]) -> Option<VipTable> {
        if entries.len() > VIP_INDEX_SLOTS as usize {
            return None;
        }
        'seeds: for seed in 0..SEED_TRIES {
            let mut slots = alloc::vec![VipSlot::default(); VIP_INDEX_SLOTS as usize];
            for (key, info) in entries {
                let home = home_slot(key, seed);
                let free = (0..VIP_INDEX_PROBES)
                    .map(|p| probe_slot(home, p) as usize)
                    .find(|&i| slots[i].used == 0);
                let Some(i) = free else {
                    continue 'seeds;
                };
                slots[i] = VipSlot {
                    key: *key,
                    used: 1,
                    info: *info,
                };
            }
            return Some(VipTable { seed, slots });
        }
        None
    }
}

#[cfg(feature = "alloc")]
pub use build::{SEED_TRIES, VipTable, build};

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{collections::BTreeMap, vec::Vec};

    use super::*;
    use crate::maps::{FAMILY_V4, FAMILY_V6, MAX_VIPS, VipInfo};

    fn key(i: u32, port: u16) -> VipKey {
        let mut addr = [0u8; 16];
        let family = if i.is_multiple_of(3) {
            FAMILY_V6
        } else {
            FAMILY_V4
        };
        if family == FAMILY_V4 {
            addr[..4].copy_from_slice(&[198, 18, 2, i as u8]);
        } else {
            addr[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 2]);
            addr[12..].copy_from_slice(&i.to_be_bytes());
        }
        VipKey {
            addr,
            port,
            proto: 6,
            family,
        }
    }

    fn info(id: u32) -> VipInfo {
        VipInfo {
            id,
            ..Default::default()
        }
    }

    #[test]
    fn every_key_is_found_and_nothing_else() {
        // The largest table the daemon builds: each VIP plus its
        // address-wide fragment entry.
        let mut entries = BTreeMap::new();
        for i in 0..MAX_VIPS {
            entries.insert(key(i, 80 + i as u16), info(i));
            entries.insert(key(i, 0), info(i));
        }
        let entries: Vec<_> = entries.into_iter().collect();
        let t = build(&entries).expect("fits");
        for (k, v) in &entries {
            let s = lookup(k, t.seed, |i| t.slots.get(i as usize)).expect("found");
            assert_eq!(s.info, *v);
            assert_eq!(s.key, *k);
        }
        assert_eq!(
            t.slots.iter().filter(|s| s.used != 0).count(),
            entries.len()
        );
        for i in 0..1000 {
            let k = key(i, 443);
            assert!(lookup(&k, t.seed, |j| t.slots.get(j as usize)).is_none());
        }
        // Same port, other protocol; same address, other family.
        let mut k = entries[0].0;
        k.proto = 17;
        assert!(lookup(&k, t.seed, |j| t.slots.get(j as usize)).is_none());
    }

    #[test]
    fn collisions_are_probed_within_the_window() {
        // Keys that all share one home slot under seed 0: up to
        // VIP_INDEX_PROBES of them fit with seed 0; one more forces
        // another seed, and all are still found.
        let target = home_slot(&key(1, 80), 0);
        let same: Vec<VipKey> = (0..200_000u32)
            .map(|i| key(1 + (i % 200), 1 + (i / 200) as u16))
            .filter(|k| home_slot(k, 0) == target)
            .take(VIP_INDEX_PROBES as usize + 1)
            .collect();
        assert_eq!(same.len(), VIP_INDEX_PROBES as usize + 1, "test keys");
        let fit: Vec<_> = same[..VIP_INDEX_PROBES as usize]
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, info(i as u32)))
            .collect();
        assert_eq!(build(&fit).unwrap().seed, 0);
        let over: Vec<_> = same
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, info(i as u32)))
            .collect();
        let t = build(&over).unwrap();
        assert_ne!(t.seed, 0);
        for (k, v) in &over {
            assert_eq!(
                lookup(k, t.seed, |i| t.slots.get(i as usize)).unwrap().info,
                *v
            );
        }
    }

    #[test]
    fn too_many_keys_is_refused() {
        let entries: Vec<_> = (0..=VIP_INDEX_SLOTS)
            .map(|i| (key(i, 80 + (i >> 8) as u16), info(0)))
            .collect();
        assert!(build(&entries).is_none());
    }
}
