//! VIP lookup, stick table, Maglev pick, flood guard: the decision of
//! `balancer_common::model` (whose doc comment is the specification).

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use balancer_common::{
    hash::{MAGLEV_M, NO_BACKEND, client_hash_words, maglev_slot, mask_words, words_addr},
    layout::XDP_DROP,
    maps::{Backend, STATE_EMPTY, StickKey, StickValue, VipInfo, VipStats, keeps_clients},
};

use crate::{
    maps::{BACKENDS, CONFIG, INSERT_WINDOW, MAGLEV, STICK},
    parse::{Flow, KIND_ICMP_ERROR, KIND_NORMAL},
};

const WINDOW_NS: u64 = 1_000_000_000;

/// The chosen backend: a reference into the BACKENDS map (no copy).
pub struct Choice {
    pub backend: &'static Backend,
    pub backend_id: u32,
}

/// A backend slot that exists and is not empty.
#[inline(always)]
fn backend(id: u32) -> Option<&'static Backend> {
    let b = BACKENDS.get(id)?;
    if b.state == STATE_EMPTY {
        None
    } else {
        Some(b)
    }
}

#[inline(always)]
fn maglev_pick(vip: &VipInfo, hash: u32) -> u32 {
    let index = vip
        .id
        .wrapping_mul(MAGLEV_M)
        .wrapping_add(maglev_slot(hash));
    match MAGLEV.get(index) {
        Some(b) => *b,
        None => NO_BACKEND,
    }
}

/// Pick the backend for `flow` on `vip`, updating the stick table and the
/// VIP's counters. `Err(XDP_DROP)` when there is no usable backend.
#[inline(always)]
pub fn select(vip: &VipInfo, flow: &Flow, stats: &mut VipStats) -> Result<Choice, u32> {
    // CLOCK_MONOTONIC_COARSE (the last tick's time, 1-4 ms resolution):
    // enough for expiry and refresh, and it does not read the clocksource,
    // which costs ~70 ns a packet in a VM (measured with `cargo xtask bench`).
    // SAFETY: no preconditions (kernel 5.11+).
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // Clients of one network share an entry and, on a miss, their Maglev
    // slot (so balancers without each other's entries agree too).
    let client = mask_words(&flow.client, vip.key_prefix);
    let key = StickKey {
        vip_id: vip.id,
        addr: words_addr(&client),
    };
    let refresh_ns = match CONFIG.get(0) {
        Some(c) => c.stick_refresh_ns,
        None => 0,
    };
    let mut expired = false;
    if let Some(entry) = STICK.get_ptr_mut(key) {
        // SAFETY: a valid map value pointer; racing writers on other CPUs
        // can only make us read a slightly older or newer entry.
        let e = unsafe { *entry };
        let age = now.saturating_sub(e.last_seen_ns);
        if vip.expire_ns == 0 || age <= vip.expire_ns {
            if let Some(b) = backend(e.backend)
                && keeps_clients(b.state)
            {
                stats.stick_hits += 1;
                if age > refresh_ns {
                    // SAFETY: as above; a plain store of the timestamp.
                    unsafe { (*entry).last_seen_ns = now };
                }
                return Ok(Choice {
                    backend: b,
                    backend_id: e.backend,
                });
            }
            if flow.kind == KIND_ICMP_ERROR {
                // About a flow of a server that is gone: nobody to tell.
                stats.icmp_no_flow += 1;
                return Err(XDP_DROP);
            }
            // Down, in maintenance or removed: redispatch and overwrite.
            let pick = maglev_pick(vip, client_hash_words(&client));
            let Some(b) = backend(pick) else {
                stats.no_backend += 1;
                return Err(XDP_DROP);
            };
            stats.redispatches += 1;
            // SAFETY: as above.
            unsafe {
                (*entry).backend = pick;
                (*entry).last_seen_ns = now;
            }
            return Ok(Choice {
                backend: b,
                backend_id: pick,
            });
        }
        expired = true;
    }
    if expired {
        stats.expired += 1;
    }
    if flow.kind == KIND_ICMP_ERROR {
        // An error about a client the table does not know: spoofed, or
        // about a flow long gone. Maglev must not pick it a backend.
        stats.icmp_no_flow += 1;
        return Err(XDP_DROP);
    }
    let pick = maglev_pick(vip, client_hash_words(&client));
    let Some(b) = backend(pick) else {
        stats.no_backend += 1;
        return Err(XDP_DROP);
    };
    if flow.kind == KIND_NORMAL {
        if !flow.opening {
            stats.non_syn_misses += 1;
        } else if may_insert(now) {
            let value = StickValue {
                backend: pick,
                _pad: 0,
                last_seen_ns: now,
            };
            // A failed insert (e.g. -ENOMEM) still forwards by Maglev.
            if STICK.insert(key, value, 0).is_ok() {
                stats.new_sticks += 1;
            }
        } else {
            stats.insert_capped += 1;
        }
    }
    Ok(Choice {
        backend: b,
        backend_id: pick,
    })
}

/// Flood guard: at most `insert_cap` new entries per CPU per second.
#[inline(always)]
fn may_insert(now: u64) -> bool {
    let cap = match CONFIG.get(0) {
        Some(c) => u64::from(c.insert_cap),
        None => 0,
    };
    let Some(w) = INSERT_WINDOW.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: this CPU's own slot.
    unsafe {
        if now.saturating_sub((*w).start_ns) >= WINDOW_NS {
            (*w).start_ns = now;
            (*w).inserts = 0;
        }
        if cap != 0 && (*w).inserts >= cap {
            return false;
        }
        (*w).inserts += 1;
    }
    true
}
