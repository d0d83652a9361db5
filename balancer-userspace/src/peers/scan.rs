//! Reading the whole stick table in a few syscalls: `BPF_MAP_LOOKUP_BATCH`
//! (kernel 5.6+ for hash and LRU hash maps) copies up to `chunk` entries
//! per call, where aya 0.14's iterator costs two syscalls per entry.

use std::os::fd::RawFd;

use balancer_common::maps::{StickKey, StickValue};
use bytemuck::Zeroable as _;

/// `BPF_MAP_LOOKUP_BATCH` (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Buffers reused from one scan to the next.
pub struct Scanner {
    keys: Vec<StickKey>,
    values: Vec<StickValue>,
}

impl Scanner {
    pub fn new(chunk: usize) -> Self {
        Scanner {
            keys: vec![StickKey::zeroed(); chunk],
            values: vec![StickValue::zeroed(); chunk],
        }
    }

    /// Every entry of the stick table behind `fd`, passed to `each`.
    /// Entries changed during the scan may be seen or missed (a live table).
    pub fn scan(
        &mut self,
        fd: RawFd,
        mut each: impl FnMut(&StickKey, &StickValue),
    ) -> std::io::Result<usize> {
        // The kernel's cursor for hash maps is a bucket index (u32); 8
        // bytes leave room.
        let mut cursor = [0u64; 1];
        let mut next = [0u64; 1];
        let mut first = true;
        let mut total = 0;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first { 0 } else { cursor.as_ptr() as u64 },
                out_batch: next.as_mut_ptr() as u64,
                keys: self.keys.as_mut_ptr() as u64,
                values: self.values.as_mut_ptr() as u64,
                count: self.keys.len() as u32,
                map_fd: fd as u32,
                ..Default::default()
            };
            // SAFETY: the attr points at buffers of `count` keys and values
            // of the map's sizes (StickKey/StickValue are the map's types,
            // checked when the pinned map was adopted) and at 8-byte cursors.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    std::mem::size_of::<BatchAttr>(),
                )
            };
            let err = (r < 0).then(std::io::Error::last_os_error);
            let n = (attr.count as usize).min(self.keys.len());
            if err.is_none() || err.as_ref().and_then(|e| e.raw_os_error()) == Some(libc::ENOENT) {
                for i in 0..n {
                    each(&self.keys[i], &self.values[i]);
                }
                total += n;
            }
            match err {
                None => {}
                Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(total),
                Some(e) => return Err(e),
            }
            cursor = next;
            first = false;
        }
    }
}
