//! Hashing of client addresses, shared by the XDP program (which picks a
//! Maglev slot for a new client) and userspace (which predicts, tests and
//! explains that choice).
//!
//! The function is MurmurHash3_x86_32 (seed 0) of the 16 address bytes, so any
//! reference implementation of that hash reproduces it: handy for tools that
//! want to say which backend a client lands on without the balancer.
//!
//! Both sides must compute the same value bit for bit, and so must every
//! balancer instance behind one ECMP group, whatever its version: changing
//! anything here moves every client that has no stick entry. The tests pin
//! known outputs for that reason.
//!
//! Written for the eBPF verifier: no loops (the four words are mixed by
//! straight-line code), no indexing that could panic, no division but `%` by
//! a constant, everything `#[inline(always)]` so no BPF-to-BPF call is needed.

/// Slots in one VIP's Maglev lookup table. Prime, as Maglev needs: every
/// `skip` in `1..M` is then coprime with `M`, so each backend's preference
/// walk visits every slot. 65537 slots keep the share error of up to 100
/// backends far below one percent (the paper advises M much larger than the
/// number of backends).
pub const MAGLEV_M: u32 = 65537;

/// Slot value meaning "no usable backend" (every backend is down or has
/// weight 0). Backend ids therefore never take this value.
pub const NO_BACKEND: u32 = u32::MAX;

// MurmurHash3_x86_32 constants (Austin Appleby's public-domain design).
const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;
/// Changing the seed reassigns every client, see the module comment.
const SEED: u32 = 0;

/// Mixes one 32-bit block into the running state (the murmur3 body step).
#[inline(always)]
const fn mix_word(h: u32, word: u32) -> u32 {
    let k = word.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// The murmur3 finaliser: every input bit affects every output bit with
/// probability close to 1/2, which the low-bit-sensitive `% MAGLEV_M`
/// needs, since client addresses differ mostly in their last bytes.
#[inline(always)]
const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// An address's 16 bytes as four little-endian words: how the XDP program
/// holds addresses (four registers rather than sixteen bytes). The words
/// are read little-endian explicitly so that the host (whatever its byte
/// order) and `bpfel` agree.
#[inline(always)]
pub const fn addr_words(addr: &[u8; 16]) -> [u32; 4] {
    // Destructuring instead of slicing: nothing here can fail a bounds
    // check, so the verifier sees straight-line arithmetic only.
    let [
        a0,
        a1,
        a2,
        a3,
        a4,
        a5,
        a6,
        a7,
        a8,
        a9,
        a10,
        a11,
        a12,
        a13,
        a14,
        a15,
    ] = *addr;
    [
        u32::from_le_bytes([a0, a1, a2, a3]),
        u32::from_le_bytes([a4, a5, a6, a7]),
        u32::from_le_bytes([a8, a9, a10, a11]),
        u32::from_le_bytes([a12, a13, a14, a15]),
    ]
}

/// The inverse of [`addr_words`].
#[inline(always)]
pub const fn words_addr(w: &[u32; 4]) -> [u8; 16] {
    let [a0, a1, a2, a3] = w[0].to_le_bytes();
    let [a4, a5, a6, a7] = w[1].to_le_bytes();
    let [a8, a9, a10, a11] = w[2].to_le_bytes();
    let [a12, a13, a14, a15] = w[3].to_le_bytes();
    [
        a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15,
    ]
}

/// The mask keeping the first `keep` (0-32) bits of a word loaded
/// little-endian from network-order bytes, as [`addr_words`] loads them.
#[inline(always)]
pub const fn prefix_mask_word(keep: u32) -> u32 {
    if keep == 0 {
        0
    } else if keep >= 32 {
        u32::MAX
    } else {
        (u32::MAX << (32 - keep)).swap_bytes()
    }
}

/// `w` ([`addr_words`]) cut to its first `prefix` bits of 128 (an IPv4
/// address is the first word); 0 = the whole address. The stick key of a
/// client by network (`VipInfo::key_prefix`).
#[inline(always)]
pub const fn mask_words(w: &[u32; 4], prefix: u8) -> [u32; 4] {
    if prefix == 0 {
        return *w;
    }
    let p = prefix as u32;
    [
        w[0] & prefix_mask_word(if p > 32 { 32 } else { p }),
        w[1] & prefix_mask_word(clamp_word(p, 32)),
        w[2] & prefix_mask_word(clamp_word(p, 64)),
        w[3] & prefix_mask_word(clamp_word(p, 96)),
    ]
}

/// Bits of a prefix of `p` bits that fall in the word starting at bit `start`.
#[inline(always)]
const fn clamp_word(p: u32, start: u32) -> u32 {
    if p <= start {
        0
    } else if p - start > 32 {
        32
    } else {
        p - start
    }
}

/// [`mask_words`] on the 16-byte form.
pub const fn mask_addr(addr: &[u8; 16], prefix: u8) -> [u8; 16] {
    words_addr(&mask_words(&addr_words(addr), prefix))
}

/// Hash of a client address: 16 bytes, an IPv4 address being its 4 bytes
/// followed by 12 zero bytes.
///
/// On IPv4 addresses the function is a bijection (each step is
/// invertible), so two IPv4 clients never collide.
#[inline(always)]
pub const fn client_hash(addr: &[u8; 16]) -> u32 {
    client_hash_words(&addr_words(addr))
}

/// [`client_hash`] of an address held as [`addr_words`].
#[inline(always)]
pub const fn client_hash_words(w: &[u32; 4]) -> u32 {
    let mut h = SEED;
    h = mix_word(h, w[0]);
    h = mix_word(h, w[1]);
    h = mix_word(h, w[2]);
    h = mix_word(h, w[3]);
    // murmur3 folds in the input length; it is always 16 here, but keeping
    // the step makes the function equal to the reference hash.
    fmix32(h ^ 16)
}

/// The Maglev table slot for a client hash: an index in `0..MAGLEV_M`.
#[inline(always)]
pub const fn maglev_slot(hash: u32) -> u32 {
    hash % MAGLEV_M
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::collections::HashSet;
    use std::println;

    #[test]
    fn masks_keep_the_prefix_in_network_order() {
        let v4 = [198, 18, 7, 201, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let m = |a: &[u8; 16], p| mask_addr(a, p);
        assert_eq!(m(&v4, 0), v4);
        assert_eq!(m(&v4, 32), v4);
        assert_eq!(m(&v4, 24)[..4], [198, 18, 7, 0]);
        assert_eq!(m(&v4, 20)[..4], [198, 18, 0, 0]);
        assert_eq!(m(&v4, 23)[..4], [198, 18, 6, 0]);
        assert_eq!(m(&v4, 1)[..4], [128, 0, 0, 0]);
        let v6: [u8; 16] = [
            0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0x10, 0x11,
        ];
        let mut want = v6;
        want[8..].fill(0);
        assert_eq!(m(&v6, 64), want);
        assert_eq!(m(&v6, 128), v6);
        want[6..].fill(0);
        assert_eq!(m(&v6, 48), want);
        let mut want = v6;
        want[15] = 0x10;
        assert_eq!(m(&v6, 127), want);
        // IPv4-mapped: /24 of the IPv4 part is a 120-bit prefix.
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 7, 201];
        assert_eq!(m(&mapped, 120)[12..], [198, 18, 7, 0]);
    }

    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&[a, b, c, d]);
        out
    }

    fn v6(groups: [u16; 8]) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (chunk, g) in out.chunks_exact_mut(2).zip(groups) {
            chunk.copy_from_slice(&g.to_be_bytes());
        }
        out
    }

    /// Counts `maglev_slot(hash) % buckets` over `addrs` and checks each
    /// bucket is within `tolerance` (a fraction) of an even share.
    fn assert_even(
        what: &str,
        addrs: impl Iterator<Item = [u8; 16]>,
        buckets: usize,
        tolerance: f64,
    ) {
        let mut counts = std::vec![0u64; buckets];
        let mut total = 0u64;
        for a in addrs {
            counts[maglev_slot(client_hash(&a)) as usize % buckets] += 1;
            total += 1;
        }
        let even = total as f64 / buckets as f64;
        let worst = counts
            .iter()
            .map(|&c| (c as f64 - even).abs() / even)
            .fold(0.0, f64::max);
        println!(
            "{what}: {total} addresses in {buckets} buckets {counts:?}, worst deviation {:.2}%",
            worst * 100.0
        );
        assert!(
            worst <= tolerance,
            "{what}: bucket counts {counts:?} deviate {:.2}% from even (limit {:.2}%)",
            worst * 100.0,
            tolerance * 100.0
        );
    }

    #[test]
    fn pinned_outputs() {
        // Pinned: the eBPF program and userspace must agree, and several
        // balancer instances (possibly of different versions during an
        // upgrade) must pick the same backend for a new client. If this test
        // fails, the hash changed: that reassigns every unstuck client, so
        // it must be a deliberate, announced change, not an accident.
        // The values equal MurmurHash3_x86_32(addr bytes, seed 0) as computed
        // by an independent reference implementation.
        let cases: [([u8; 16], u32); 4] = [
            ([0; 16], 0x8134_cdf8),
            (v4(198, 18, 0, 10), 0xdd04_88d5),
            (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10]), 0xe378_e8e4),
            (v6([0x2001, 0xdb8, 0, 1, 0, 0, 0, 1]), 0xa203_1b03),
        ];
        for (addr, want) in cases {
            let got = client_hash(&addr);
            assert_eq!(
                got, want,
                "client_hash({addr:02x?}) = {got:#010x}, pinned {want:#010x}"
            );
        }
        assert_eq!(maglev_slot(0xdd04_88d5), 0xdd04_88d5 % 65537);
    }

    #[test]
    fn slot_is_in_table() {
        for h in [0, 1, MAGLEV_M - 1, MAGLEV_M, MAGLEV_M + 1, u32::MAX] {
            assert!(maglev_slot(h) < MAGLEV_M, "slot of {h:#x}");
        }
        assert_eq!(maglev_slot(MAGLEV_M), 0);
        assert_eq!(maglev_slot(u32::MAX), u32::MAX % MAGLEV_M);
    }

    #[test]
    fn distinct_inputs_distinct_hashes() {
        // All of 198.18.0.0/16: no collision at all (the function is a
        // bijection on IPv4 addresses).
        let mut seen = HashSet::new();
        for i in 0..=u16::MAX {
            let [c, d] = i.to_be_bytes();
            assert!(
                seen.insert(client_hash(&v4(198, 18, c, d))),
                "collision at 198.18.{c}.{d}"
            );
        }
        // IPv6 addresses differing in each of the four words in turn. 4x1024
        // samples in a 32-bit space: a collision would be a 1-in-500 fluke
        // for an ideal hash, and the inputs are fixed, so this is stable.
        let mut seen = HashSet::new();
        for word in 0..4 {
            for i in 0..1024u16 {
                let mut g = [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1];
                g[word * 2 + 1] ^= i.wrapping_mul(0x9e37) | 1;
                let a = v6(g);
                assert!(seen.insert(client_hash(&a)), "collision at {g:x?}");
            }
        }
    }

    #[test]
    fn single_bit_flips_avalanche() {
        // Addresses of nearby clients differ in a few bits; each input bit
        // must flip about half of the output bits or nearby clients would
        // crowd onto nearby slots.
        let bases = [
            v4(198, 18, 0, 10),
            v4(198, 19, 255, 1),
            v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10]),
            v6([
                0x2001, 0xdb8, 0x1234, 0x5678, 0x9abc, 0xdef0, 0x1111, 0x2222,
            ]),
        ];
        let mut flipped = 0u64;
        let mut trials = 0u64;
        for base in bases {
            let h0 = client_hash(&base);
            for bit in 0..128 {
                let mut a = base;
                a[bit / 8] ^= 1 << (bit % 8);
                let d = (h0 ^ client_hash(&a)).count_ones();
                assert!(
                    d > 0,
                    "flipping bit {bit} of {base:02x?} left the hash unchanged"
                );
                flipped += u64::from(d);
                trials += 1;
            }
        }
        let mean = flipped as f64 / trials as f64;
        println!("mean output bits flipped per input bit: {mean:.2} of 32");
        assert!((14.5..=17.5).contains(&mean), "mean flipped bits {mean}");
    }

    #[test]
    fn ipv4_spread_evenly() {
        let addrs = (0..=u16::MAX).map(|i| {
            let [c, d] = i.to_be_bytes();
            v4(198, 18, c, d)
        });
        assert_even("198.18.0.0/16", addrs, 3, 0.03);
    }

    #[test]
    fn ipv6_spread_evenly() {
        // Hosts of one /64 that differ in the last group, as SLAAC privacy
        // addresses or a client pool would ...
        let hosts = (0..=u16::MAX).map(|i| v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, i]));
        assert_even("2001:db8::/112 hosts", hosts, 3, 0.03);
        // ... and one host in each of many /64s (one address per customer
        // prefix), where only the upper half of the address varies.
        let nets = (0..=u16::MAX).map(|i| v6([0x2001, 0xdb8, 0, i, 0, 0, 0, 1]));
        assert_even("2001:db8:0:X::1", nets, 3, 0.03);
        // And more buckets, closer to a real backend count.
        let hosts = (0..=u16::MAX).map(|i| v6([0x2001, 0xdb8, i, 0, 0, 0, 0, 1]));
        assert_even("2001:db8:X::1 in 10 buckets", hosts, 10, 0.05);
    }
}
