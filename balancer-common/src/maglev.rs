//! Weighted Maglev lookup tables (Eisenbud et al., "Maglev: A Fast and
//! Reliable Software Network Load Balancer", NSDI 2016, section 3.4).
//!
//! A table has `m` slots (`m` prime); the data plane sends a new client to
//! `table[client_hash % m]`. Each backend has a preference list over the
//! slots, the permutation `offset, offset + skip, offset + 2 skip, ... (mod m)`
//! derived from its key, and backends take turns claiming their next
//! preferred slot that is still empty until the table is full. Because the
//! preferences depend only on each backend's own key, removing a backend
//! hands its slots to others while most other slots keep their owner, and
//! every balancer instance with the same configuration builds the same
//! table.
//!
//! Weights (the paper's "relative frequency of turns"): backends take turns
//! in rounds; in every round each backend adds its weight to a credit and
//! claims one slot if its credit reaches the largest weight, which it then
//! pays back. The heaviest backend claims once per round and a backend of
//! weight `w` claims `w / max_weight` times per round on average, so shares
//! are proportional to weights up to a slot or two. With equal weights this
//! is exactly the paper's round robin.
//!
//! Cost: every claim walks one backend's permutation past filled slots,
//! and a backend never walks the same position twice, so a build is at most
//! `m` rounds of `N` credit updates plus at most `N * m` probes; in practice
//! (equal-ish weights) about `m ln m` probes. No `N * m` permutation table
//! is stored: positions are computed on the fly.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::hash::NO_BACKEND;

/// One backend as the table builder sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevBackend<'a> {
    /// What the table's slots hold (an index into the `BACKENDS` map). Must
    /// not be [`NO_BACKEND`].
    pub id: u32,
    /// Stable identity that determines the backend's permutation, e.g. the
    /// server's name. Every balancer instance must use the same key for the
    /// same server, and a server must keep its key across restarts, or the
    /// table differs between instances and over time.
    pub key: &'a [u8],
    /// Relative share of slots; 0 excludes the backend (same table as if it
    /// were not in the list).
    pub weight: u32,
}

/// Why a table cannot be built. Ids rather than keys are reported so that
/// the error does not borrow the caller's input; callers map ids to names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaglevError {
    /// `m` is not a prime: only for prime `m` does every `skip` in `1..m`
    /// walk all slots, and a walk that misses slots could leave the table
    /// unfilled.
    TableSizeNotPrime { m: u32 },
    /// The id is [`NO_BACKEND`], which means "empty" in the table.
    ReservedId,
    /// Two entries have this id: their slots would be indistinguishable, so
    /// the configuration is ambiguous.
    DuplicateId { id: u32 },
    /// Two entries (with these ids) share a key, so they would share a
    /// permutation and the result would depend on which one is "first".
    DuplicateKey { first_id: u32, second_id: u32 },
}

impl fmt::Display for MaglevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MaglevError::TableSizeNotPrime { m } => {
                write!(f, "Maglev table size {m} is not a prime")
            }
            MaglevError::ReservedId => {
                write!(f, "backend id {NO_BACKEND} is reserved for empty slots")
            }
            MaglevError::DuplicateId { id } => write!(f, "backend id {id} appears twice"),
            MaglevError::DuplicateKey {
                first_id,
                second_id,
            } => write!(f, "backends {first_id} and {second_id} have the same key"),
        }
    }
}

impl core::error::Error for MaglevError {}

/// Builds the lookup table: `m` slots, each the id of a backend with weight
/// greater than 0, or all [`NO_BACKEND`] when there is none.
///
/// The result depends only on the set of backends, not on their order in
/// `backends`. Every entry is validated, including those of weight 0:
/// duplicate ids, duplicate keys and the id [`NO_BACKEND`] are errors, as is
/// an `m` that is not prime. `m` is normally [`crate::hash::MAGLEV_M`]; the
/// table takes `4 * m` bytes.
pub fn build(backends: &[MaglevBackend<'_>], m: u32) -> Result<Vec<u32>, MaglevError> {
    build_counting(backends, m).map(|(table, _)| table)
}

/// [`build`], also returning the work done (credit updates plus slot
/// probes), so tests can bound the cost independently of the machine.
fn build_counting(backends: &[MaglevBackend<'_>], m: u32) -> Result<(Vec<u32>, u64), MaglevError> {
    if !is_prime(m) {
        return Err(MaglevError::TableSizeNotPrime { m });
    }
    // Sorting by key (then id, though keys are unique once validated) is
    // what makes the result independent of the caller's order: turns are
    // taken in this order.
    let mut sorted: Vec<&MaglevBackend<'_>> = backends.iter().collect();
    sorted.sort_unstable_by(|a, b| a.key.cmp(b.key).then(a.id.cmp(&b.id)));
    validate(&sorted)?;

    let mut table = vec![NO_BACKEND; m as usize];
    let mut walkers: Vec<Walker> = sorted
        .iter()
        .filter(|b| b.weight > 0)
        .map(|b| Walker::new(b, m))
        .collect();
    let Some(max_weight) = walkers.iter().map(|w| w.weight).max() else {
        return Ok((table, 0));
    };

    let mut work = 0u64;
    let mut filled = 0u32;
    // Each round the heaviest backend claims a slot, so this ends after at
    // most `m` rounds.
    'fill: loop {
        for w in walkers.iter_mut() {
            work += 1;
            // credit < max_weight before the addition, so at most one claim
            // per round; u64 because two u32 weights can overflow u32.
            w.credit += w.weight;
            if w.credit < max_weight {
                continue;
            }
            w.credit -= max_weight;
            work += w.claim(&mut table, m);
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    Ok((table, work))
}

/// Rejects what would make the table ambiguous. `sorted` is ordered by key,
/// so equal keys are adjacent.
fn validate(sorted: &[&MaglevBackend<'_>]) -> Result<(), MaglevError> {
    if sorted.iter().any(|b| b.id == NO_BACKEND) {
        return Err(MaglevError::ReservedId);
    }
    if let Some(pair) = sorted.windows(2).find(|p| p[0].key == p[1].key) {
        return Err(MaglevError::DuplicateKey {
            first_id: pair[0].id,
            second_id: pair[1].id,
        });
    }
    let mut ids: Vec<u32> = sorted.iter().map(|b| b.id).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|p| p[0] == p[1]) {
        return Err(MaglevError::DuplicateId { id: pair[0] });
    }
    Ok(())
}

/// A backend's progress through its preference list.
struct Walker {
    id: u32,
    weight: u64,
    credit: u64,
    /// The next position of the permutation to try.
    next: u32,
    skip: u32,
}

impl Walker {
    fn new(b: &MaglevBackend<'_>, m: u32) -> Walker {
        // Two independently seeded hashes, so that offset and skip are
        // unrelated (the paper uses two different hash functions).
        let offset = key_hash(OFFSET_SEED, b.key) % u64::from(m);
        let skip = key_hash(SKIP_SEED, b.key) % u64::from(m - 1) + 1;
        Walker {
            id: b.id,
            weight: u64::from(b.weight),
            credit: 0,
            // Both are below m, which is a u32.
            next: offset as u32,
            skip: skip as u32,
        }
    }

    /// Takes the first empty slot at or after `next` in this backend's
    /// permutation and returns how many slots it looked at. The caller only
    /// calls this while a slot is empty; since the positions already passed
    /// are all filled (slots never empty again) and the permutation covers
    /// every slot (m prime), an empty one lies ahead.
    fn claim(&mut self, table: &mut [u32], m: u32) -> u64 {
        let mut probes = 0;
        loop {
            let pos = self.next;
            // pos + skip can exceed u32 for m near u32::MAX, so step as
            // "subtract the complement" instead of adding then reducing.
            self.next = if pos >= m - self.skip {
                pos - (m - self.skip)
            } else {
                pos + self.skip
            };
            probes += 1;
            let slot = &mut table[pos as usize];
            if *slot == NO_BACKEND {
                *slot = self.id;
                return probes;
            }
        }
    }
}

/// Seeds of the two key hashes ("offset" and "skip" in ASCII). Pinned, like
/// the hash itself: changing them reshuffles every table.
const OFFSET_SEED: u64 = 0x6f66_6673_6574;
const SKIP_SEED: u64 = 0x736b_6970;

/// A seeded 64-bit hash of a byte string: FNV-1a over the seed's bytes then
/// the key's, then the murmur3 64-bit finaliser, because FNV-1a alone mixes
/// its last bytes poorly into the low bits, and keys like "web1", "web2"
/// differ only in their last byte while `% m` keeps the low bits.
/// Byte-wise and explicitly little-endian, so every platform agrees.
fn key_hash(seed: u64, key: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    for &byte in seed.to_le_bytes().iter().chain(key) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Trial division: `m` is a table size, checked once per build, and for any
/// u32 at most 2^16 divisions (256 for 65537).
fn is_prime(m: u32) -> bool {
    if m < 2 {
        return false;
    }
    let m = u64::from(m);
    let mut d = 2u64;
    while d * d <= m {
        if m % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;
    use std::println;
    use std::string::{String, ToString};
    use std::vec::Vec;

    use super::*;
    use crate::hash::MAGLEV_M;

    /// Owned backend descriptions; `MaglevBackend` borrows the names.
    fn named(weights: &[u32]) -> Vec<(u32, String, u32)> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (i as u32, format!("server-{i}"), w))
            .collect()
    }

    fn view(owned: &[(u32, String, u32)]) -> Vec<MaglevBackend<'_>> {
        owned
            .iter()
            .map(|(id, key, weight)| MaglevBackend {
                id: *id,
                key: key.as_bytes(),
                weight: *weight,
            })
            .collect()
    }

    fn table(owned: &[(u32, String, u32)], m: u32) -> Vec<u32> {
        build(&view(owned), m).expect("valid backends")
    }

    fn shares(table: &[u32], ids: usize) -> Vec<usize> {
        let mut counts = vec![0usize; ids];
        for &id in table {
            counts[id as usize] += 1;
        }
        counts
    }

    /// Deterministic shuffle (xorshift), so the test needs no RNG crate.
    fn shuffle<T>(items: &mut [T], mut state: u64) {
        for i in (1..items.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            items.swap(i, (state % (i as u64 + 1)) as usize);
        }
    }

    #[test]
    fn every_slot_filled() {
        for (weights, m) in [
            (&[1u32][..], 251),
            (&[1, 1, 1][..], 1009),
            (&[0, 5, 0, 1][..], 1009),
            (&[1, 1000][..], 251),
            (&[u32::MAX, u32::MAX, 1][..], 1009),
            // More backends than slots: some get none, but none is empty.
            (&[1; 12][..], 7),
            (&[1, 1][..], 2),
        ] {
            let t = table(&named(weights), m);
            assert_eq!(t.len(), m as usize);
            assert!(
                t.iter().all(|&id| id != NO_BACKEND),
                "weights {weights:?}, m {m}: empty slot left"
            );
            for &id in &t {
                assert!(
                    weights[id as usize] > 0,
                    "slot given to weight-0 backend {id}"
                );
            }
        }
    }

    #[test]
    fn no_usable_backend_gives_empty_table() {
        let t = build(&[], 251).unwrap();
        assert_eq!(t.len(), 251);
        assert!(t.iter().all(|&id| id == NO_BACKEND));
        let t = table(&named(&[0, 0, 0]), MAGLEV_M);
        assert_eq!(t.len(), MAGLEV_M as usize);
        assert!(t.iter().all(|&id| id == NO_BACKEND));
    }

    #[test]
    fn equal_weights_share_evenly() {
        for n in [3usize, 7, 10] {
            let t = table(&named(&vec![1; n]), MAGLEV_M);
            let counts = shares(&t, n);
            let even = f64::from(MAGLEV_M) / n as f64;
            let worst = counts
                .iter()
                .map(|&c| (c as f64 - even).abs() / even)
                .fold(0.0, f64::max);
            println!(
                "N={n}: shares {counts:?}, worst deviation {:.4}% of m/N",
                worst * 100.0
            );
            assert!(worst <= 0.015, "N={n}: shares {counts:?}");
        }
    }

    #[test]
    fn weights_give_proportional_shares() {
        for weights in [&[1u32, 2, 3][..], &[10, 20, 30][..], &[5, 1, 1, 3][..]] {
            let t = table(&named(weights), MAGLEV_M);
            let counts = shares(&t, weights.len());
            let total: u32 = weights.iter().sum();
            let mut worst = 0.0f64;
            for (i, &c) in counts.iter().enumerate() {
                let want = f64::from(MAGLEV_M) * f64::from(weights[i]) / f64::from(total);
                let dev = (c as f64 - want).abs() / want;
                worst = worst.max(dev);
                assert!(
                    dev <= 0.02,
                    "weights {weights:?}: shares {counts:?}, backend {i} off by {:.2}%",
                    dev * 100.0
                );
            }
            println!(
                "weights {weights:?}: shares {counts:?}, worst deviation {:.4}% of proportional",
                worst * 100.0
            );
        }
    }

    #[test]
    fn order_does_not_matter() {
        let owned: Vec<_> = named(&[1, 2, 3, 1, 1, 0, 4, 1, 2, 1]);
        let mut backends = view(&owned);
        let reference = build(&backends, 1009).unwrap();
        backends.reverse();
        assert_eq!(build(&backends, 1009).unwrap(), reference, "reversed");
        for seed in 1..=5u64 {
            shuffle(&mut backends, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert_eq!(build(&backends, 1009).unwrap(), reference, "shuffle {seed}");
        }
    }

    /// Returns (slots that changed owner among those `gone` did not own) /
    /// (slots `gone` did not own), after checking that `gone`'s slots all
    /// went to someone else.
    fn moved_fraction(before: &[u32], after: &[u32], gone: u32) -> f64 {
        let mut others = 0usize;
        let mut moved = 0usize;
        for (slot, (&b, &a)) in before.iter().zip(after).enumerate() {
            assert_ne!(a, gone, "slot {slot} still owned by removed backend {gone}");
            assert_ne!(a, NO_BACKEND, "slot {slot} left empty");
            if b != gone {
                others += 1;
                moved += usize::from(a != b);
            }
        }
        moved as f64 / others as f64
    }

    #[test]
    fn removal_moves_few_other_slots_and_adding_back_restores() {
        let full = named(&[1; 10]);
        let before = table(&full, MAGLEV_M);
        let mut worst = 0.0f64;
        let mut sum = 0.0;
        for gone in 0..10u32 {
            let rest: Vec<_> = full.iter().filter(|b| b.0 != gone).cloned().collect();
            let after = table(&rest, MAGLEV_M);
            let frac = moved_fraction(&before, &after, gone);
            worst = worst.max(frac);
            sum += frac;
            assert!(
                frac < 0.10,
                "removing {gone} moved {:.2}% of the other slots",
                frac * 100.0
            );
            // Adding it back, anywhere in the list, gives the original table.
            let mut back = rest.clone();
            back.insert(
                (gone as usize * 7) % (back.len() + 1),
                full[gone as usize].clone(),
            );
            assert_eq!(table(&back, MAGLEV_M), before, "adding {gone} back");
        }
        println!(
            "remove 1 of 10 (m={MAGLEV_M}): other slots that changed owner: mean {:.2}%, worst {:.2}%",
            sum / 10.0 * 100.0,
            worst * 100.0
        );
    }

    #[test]
    fn weighted_removal_moves_few_other_slots() {
        let full = named(&[3, 1, 2, 5, 1, 1, 4, 2, 1, 3]);
        let before = table(&full, MAGLEV_M);
        let mut worst = 0.0f64;
        for gone in 0..10u32 {
            let rest: Vec<_> = full.iter().filter(|b| b.0 != gone).cloned().collect();
            let frac = moved_fraction(&before, &table(&rest, MAGLEV_M), gone);
            worst = worst.max(frac);
        }
        println!(
            "weighted, remove 1 of 10: worst fraction of other slots moved {:.2}%",
            worst * 100.0
        );
        // Removing the heaviest backend changes the pace of every turn; the
        // disruption stays of the same order as with equal weights.
        assert!(worst < 0.10, "worst {:.2}%", worst * 100.0);
    }

    #[test]
    fn weight_zero_is_removal() {
        let full = named(&[1; 10]);
        for gone in [0u32, 4, 9] {
            let zeroed: Vec<_> = full
                .iter()
                .map(|(id, key, w)| (*id, key.clone(), if *id == gone { 0 } else { *w }))
                .collect();
            let removed: Vec<_> = full.iter().filter(|b| b.0 != gone).cloned().collect();
            assert_eq!(
                table(&zeroed, MAGLEV_M),
                table(&removed, MAGLEV_M),
                "backend {gone}"
            );
        }
    }

    #[test]
    fn invalid_input_is_rejected() {
        let b = |id, key: &'static str, weight| MaglevBackend {
            id,
            key: key.as_bytes(),
            weight,
        };
        assert_eq!(
            build(&[b(1, "a", 1), b(1, "b", 1)], 251),
            Err(MaglevError::DuplicateId { id: 1 })
        );
        // Weight 0 does not excuse a duplicate: the configuration is still
        // ambiguous.
        assert_eq!(
            build(&[b(1, "a", 1), b(2, "b", 1), b(2, "c", 0)], 251),
            Err(MaglevError::DuplicateId { id: 2 })
        );
        assert_eq!(
            build(&[b(1, "web", 1), b(2, "web", 3)], 251),
            Err(MaglevError::DuplicateKey {
                first_id: 1,
                second_id: 2
            })
        );
        // Reported the same whatever the input order.
        assert_eq!(
            build(&[b(2, "web", 3), b(1, "web", 1)], 251),
            Err(MaglevError::DuplicateKey {
                first_id: 1,
                second_id: 2
            })
        );
        assert_eq!(
            build(&[b(NO_BACKEND, "a", 1)], 251),
            Err(MaglevError::ReservedId)
        );
        for m in [0, 1, 4, 250, 65536] {
            assert_eq!(
                build(&[b(1, "a", 1)], m),
                Err(MaglevError::TableSizeNotPrime { m })
            );
        }
        // Errors read as sentences for the operator.
        assert_eq!(
            MaglevError::DuplicateKey {
                first_id: 1,
                second_id: 2
            }
            .to_string(),
            "backends 1 and 2 have the same key"
        );
    }

    #[test]
    fn primality() {
        let small: Vec<u32> = (0..60).filter(|&n| is_prime(n)).collect();
        assert_eq!(
            small,
            [
                2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59
            ]
        );
        assert!(is_prime(MAGLEV_M));
        assert!(is_prime(4_294_967_291)); // largest u32 prime
        assert!(!is_prime(u32::MAX));
    }

    #[test]
    fn pinned_table() {
        // Pinned: balancer instances behind one ECMP group (possibly running
        // different versions during an upgrade) must build identical tables
        // from identical configurations, or a client's new connections land
        // on different backends depending on the instance. The values were
        // also reproduced by an independent model of this module written
        // from the paper (explicit permutation lists). If this fails,
        // the key hash, the seeds or the turn order changed: that must be a
        // deliberate, announced change.
        assert_eq!(key_hash(OFFSET_SEED, b"web1"), 0xbb47_37d9_cc1e_1296);
        assert_eq!(key_hash(SKIP_SEED, b"web1"), 0x5040_19ca_fd34_e4fb);
        let owned = vec![
            (7, String::from("web1"), 1),
            (3, String::from("web2"), 2),
            (5, String::from("web3"), 1),
        ];
        let t = table(&owned, 13);
        assert_eq!(t, [3, 5, 3, 3, 5, 7, 7, 3, 3, 5, 7, 3, 3]);
        // And a digest of a full-size table.
        let full = table(&named(&[1, 2, 3, 1, 1]), MAGLEV_M);
        let digest = full.iter().fold(0u64, |h, &id| {
            (h ^ u64::from(id)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        assert_eq!(digest, 0x6cce_ad8c_4ea7_0cd6);
    }

    #[test]
    fn cost_is_near_m_log_m() {
        // Machine-independent guard against a quadratic regression: count
        // the work instead of timing it. m ln m is about 727k for 65537.
        let owned = named(&[1; 100]);
        let (_, work) = build_counting(&view(&owned), MAGLEV_M).unwrap();
        println!("m={MAGLEV_M}, 100 equal backends: {work} steps");
        assert!(work < 2_000_000, "{work} steps");
        // Skewed weights: up to m rounds of N credit updates.
        let mut weights = vec![1; 100];
        weights[0] = 1000;
        let owned = named(&weights);
        let (_, work) = build_counting(&view(&owned), MAGLEV_M).unwrap();
        println!("m={MAGLEV_M}, 100 backends, one with weight 1000: {work} steps");
        assert!(work < 100 * u64::from(MAGLEV_M) + 2_000_000, "{work} steps");
    }

    #[test]
    fn build_time_full_size() {
        // Figures for the record; `cargo test --release` gives the real
        // number. Only a gross regression fails (the step count above is the
        // precise guard).
        let owned = named(&[1; 100]);
        let backends = view(&owned);
        let start = std::time::Instant::now();
        let t = build(&backends, MAGLEV_M).unwrap();
        let equal = start.elapsed();
        let mut weights: Vec<u32> = (1..=100).collect();
        weights[0] = 1000;
        let owned = named(&weights);
        let start = std::time::Instant::now();
        build(&view(&owned), MAGLEV_M).unwrap();
        let skewed = start.elapsed();
        println!(
            "build m={MAGLEV_M}, 100 backends: equal weights {equal:?}, weights 1..100 and 1000 {skewed:?}"
        );
        assert_eq!(t.len(), MAGLEV_M as usize);
        assert!(equal.as_secs() < 5 && skewed.as_secs() < 5);
    }
}
