//! Heap bytes in use, counted by this binary's allocator while a section
//! asks for it (the `table` section's listing figures).
//!
//! RSS growth cannot see memory a process takes back from its own free
//! lists: after the section's earlier phases had freed theirs, a 100,000
//! entry listing showed no RSS growth at all. Counting the allocator's bytes
//! measures what the listing holds, whatever the process held before.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
};

static ON: AtomicBool = AtomicBool::new(false);
static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting while [`start`] is in effect (a relaxed
/// load otherwise, so the HTTP origins this binary also serves pay
/// nothing measurable).
pub struct Counting;

fn grew(by: usize) {
    let now = IN_USE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

fn shrank(by: usize) {
    // Blocks allocated before counting started may be freed after: never
    // below zero.
    let _ = IN_USE.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(by)));
}

// SAFETY: every call is passed on to `System` unchanged; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() && ON.load(Relaxed) {
            grew(l.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() && ON.load(Relaxed) {
            grew(l.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(p, l) };
        if ON.load(Relaxed) {
            shrank(l.size());
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() && ON.load(Relaxed) {
            if new >= l.size() {
                grew(new - l.size());
            } else {
                shrank(l.size() - new);
            }
        }
        q
    }
}

/// Count from now on, from zero.
pub fn start() {
    IN_USE.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    ON.store(true, Relaxed);
}

/// The most bytes in use at once since [`start`].
pub fn peak() -> usize {
    PEAK.load(Relaxed)
}

pub fn stop() {
    ON.store(false, Relaxed);
}
