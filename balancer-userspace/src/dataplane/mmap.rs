//! Array maps written through a memory mapping instead of a syscall per element.

use std::{
    os::fd::{AsRawFd as _, BorrowedFd},
    sync::atomic::{AtomicU32, Ordering},
};

/// A BPF array map of u32 mapped into this process (BPF_F_MMAPABLE), for
/// writes without a syscall per element. Unmapped on drop. The kernel
/// stores array elements at 8-byte strides (`round_up(value_size, 8)`), so
/// element `i` is the (little-endian, low) u32 at byte `8 * i`.
pub(super) struct MapMmap {
    ptr: std::ptr::NonNull<AtomicU32>,
    len: usize,
    bytes: usize,
}

/// Bytes between two array elements of a 4-byte value.
pub(super) const ARRAY_STRIDE: usize = 8;

// SAFETY: the mapping is owned by this value and only reached through it;
// the elements are atomics.
unsafe impl Send for MapMmap {}

impl MapMmap {
    pub(super) fn new(fd: BorrowedFd<'_>, len: usize) -> Result<Self, aya::sys::SyscallError> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = (len * ARRAY_STRIDE).div_ceil(page) * page;
        // SAFETY: a shared read-write mapping of a BPF_F_MMAPABLE array
        // (the kernel checks the flag and the size).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(aya::sys::SyscallError {
                call: "mmap",
                io_error: std::io::Error::last_os_error(),
            });
        }
        let ptr = std::ptr::NonNull::new(p.cast::<AtomicU32>()).ok_or_else(|| {
            aya::sys::SyscallError {
                call: "mmap",
                io_error: std::io::Error::other("null mapping"),
            }
        })?;
        Ok(MapMmap { ptr, len, bytes })
    }

    /// Store `v` into element `i` (< len).
    pub(super) fn store(&mut self, i: usize, v: u32) {
        assert!(i < self.len, "element {i} of {}", self.len);
        // SAFETY: element i's u32 is at byte 8 * i < bytes, 4-aligned (the
        // mapping is page-aligned); AtomicU32 has u32's layout.
        let slot = unsafe { &*self.ptr.as_ptr().add(i * ARRAY_STRIDE / 4) };
        // Little-endian: the value's u32 is the element's first 4 bytes.
        slot.store(v, Ordering::Relaxed);
    }
}

impl Drop for MapMmap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}
