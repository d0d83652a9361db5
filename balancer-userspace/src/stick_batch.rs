//! Many stick-table entries per syscall (kernel 5.6+ for hash and LRU hash
//! maps), where aya 0.14 has one syscall per entry (two per entry to
//! iterate): [`Scanner`] reads the whole table with `BPF_MAP_LOOKUP_BATCH`
//! (the peers engine, `table show`), [`update`] and [`delete`] write and
//! remove many entries at once (the benchmarks).

use std::os::fd::{AsRawFd as _, BorrowedFd, RawFd};

use balancer_common::maps::{StickKey, StickValue};
use bytemuck::Zeroable as _;

/// `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The bpf(2) system call with `attr` as its `union bpf_attr` (or a prefix
/// of it); the kernel's return value, or the error it set.
///
/// # Safety
/// `attr` must be a valid attribute for `cmd`: every pointer in it valid
/// for what `cmd` reads and writes through it until the call returns.
pub(crate) unsafe fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: the caller's contract above.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An fd for the BPF object (map, link, program) pinned at `path`
/// (BPF_OBJ_GET).
pub fn obj_get(path: &std::path::Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::{fd::FromRawFd as _, unix::ffi::OsStrExt as _};
    const BPF_OBJ_GET: libc::c_long = 7;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // union bpf_attr, BPF_OBJ_GET: pathname (u64), bpf_fd, file_flags.
    let mut get = [0u64; 2];
    get[0] = cpath.as_ptr() as u64;
    // SAFETY: `get` is a valid bpf_attr prefix for BPF_OBJ_GET, whose
    // pathname points at a NUL-terminated string that outlives the call.
    let fd = unsafe { sys_bpf(BPF_OBJ_GET, &mut get) }?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

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
            let err = unsafe { sys_bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) }.err();
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

/// Write `values[i]` under `keys[i]` for every i, in one syscall.
pub fn update(fd: BorrowedFd<'_>, keys: &[StickKey], values: &[StickValue]) -> std::io::Result<()> {
    if keys.len() != values.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "keys and values differ in count",
        ));
    }
    write_batch(fd, BPF_MAP_UPDATE_BATCH, keys, values.as_ptr() as u64)
}

/// Remove every one of `keys` (all must be present), in one syscall.
pub fn delete(fd: BorrowedFd<'_>, keys: &[StickKey]) -> std::io::Result<()> {
    write_batch(fd, BPF_MAP_DELETE_BATCH, keys, 0)
}

fn write_batch(
    fd: BorrowedFd<'_>,
    cmd: libc::c_long,
    keys: &[StickKey],
    values: u64,
) -> std::io::Result<()> {
    let count = u32::try_from(keys.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "too many keys"))?;
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values,
        count,
        map_fd: fd.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: keys (and values, when given) are valid for `count` elements
    // of the map's key and value types until the call returns.
    if let Err(e) = unsafe { sys_bpf(cmd, &mut attr) } {
        return Err(std::io::Error::new(
            e.kind(),
            format!("{e} ({} of {} done)", attr.count, keys.len()),
        ));
    }
    if attr.count as usize != keys.len() {
        return Err(std::io::Error::other(format!(
            "{} of {} done",
            attr.count,
            keys.len()
        )));
    }
    Ok(())
}
