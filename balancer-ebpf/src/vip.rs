//! VIP lookup: `balancer_common::vip_index::lookup` over the VIP_INDEX
//! array (each read inlined by the JIT, no hash-map call).

use balancer_common::{
    maps::{VIP_INDEX_PROBES, VIP_INDEX_SLOTS, VipInfo},
    vip_index::{home_slot_words, key_words, probe_slot, same_words},
};

use crate::maps::{VIP_INDEX, VIP_SEL};

/// Not inlined: as a BPF-to-BPF call the key words are complete in memory when it
/// runs. Inlined, LLVM hoisted the key's loads onto paths where the parser
/// had not written it, and the verifier refused the uninitialised reads.
#[inline(never)]
pub fn lookup(want: &[u32; 5]) -> Option<VipInfo> {
    let sel = VIP_SEL.get(0)?;
    let generation = sel.generation & 1;
    let seed = if generation == 0 {
        sel.seeds[0]
    } else {
        sel.seeds[1]
    };
    let base = generation * VIP_INDEX_SLOTS;
    let home = home_slot_words(want, seed);
    let mut p = 0;
    while p < VIP_INDEX_PROBES {
        let s = VIP_INDEX.get(base + probe_slot(home, p))?;
        if s.used == 0 {
            return None;
        }
        if same_words(&key_words(&s.key), want) {
            return Some(s.info);
        }
        p += 1;
    }
    None
}
