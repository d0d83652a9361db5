//! A counter map pinned by a balancer that counted fewer things (VIP_STATS
//! before issue 16 added two ICMP counters) is replaced on load, with its
//! counters starting from zero, instead of refusing the start: an upgrade
//! keeps the stick table. A pinned stick table of the wrong shape is still
//! refused.

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use balancer::dataplane::{Dataplane, DataplaneError, LoadOptions};
use balancer_common::maps::{STICK_MAP, VIP_STATS_MAP, VipStats};
use balancer_tests::{lab::new_id, require_root};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_LRU_HASH: u32 = 9;

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a bpf_attr prefix for `cmd`, valid for its size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Create a map of the given shape and pin it at `path`.
fn pin_map(path: &Path, map_type: u32, key: u32, value: u32, entries: u32) {
    // union bpf_attr, BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
    let mut create = [map_type, key, value, entries, 0, 0, 0, 0];
    let fd = bpf(BPF_MAP_CREATE, &mut create).expect("BPF_MAP_CREATE");
    // SAFETY: a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let name = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // BPF_OBJ_PIN: pathname (u64), bpf_fd (u32), file_flags (u32).
    let mut pin = [name.as_ptr() as u64, fd.as_raw_fd() as u64];
    bpf(BPF_OBJ_PIN, &mut pin).expect("BPF_OBJ_PIN");
}

/// A pin directory on bpffs, removed with whatever is in it on drop.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = Dataplane::remove_pins(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn opts() -> LoadOptions {
    LoadOptions {
        stick_size: 1024,
        max_vips: 8,
        max_backends: 64,
    }
}

#[test]
fn a_counter_map_of_an_older_layout_is_replaced_not_refused() {
    require_root();
    let dir = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/balancer-test-{}",
        new_id()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let old_value = (std::mem::size_of::<VipStats>() - 16) as u32;
    pin_map(
        &dir.0.join(VIP_STATS_MAP),
        BPF_MAP_TYPE_PERCPU_ARRAY,
        4,
        old_value,
        opts().max_vips,
    );
    let (dp, adopted) = Dataplane::load_pinned(opts(), &dir.0).expect("load over old counters");
    assert_eq!(adopted.counters_reset, [VIP_STATS_MAP]);
    assert!(!adopted.maps.contains(&VIP_STATS_MAP), "{adopted:?}");
    assert_eq!(dp.vip_stats(0).unwrap(), VipStats::default());
    drop(dp);

    // The next start adopts the new map as it is (its value size checked).
    let (_dp, adopted) = Dataplane::load_pinned(opts(), &dir.0).expect("second load");
    assert!(adopted.counters_reset.is_empty(), "{adopted:?}");
    assert!(adopted.maps.contains(&VIP_STATS_MAP), "{adopted:?}");
}

#[test]
fn a_stick_table_of_another_shape_is_still_refused() {
    require_root();
    let dir = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/balancer-test-{}",
        new_id()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    pin_map(&dir.0.join(STICK_MAP), BPF_MAP_TYPE_LRU_HASH, 20, 8, 1024);
    match Dataplane::load_pinned(opts(), &dir.0) {
        Err(DataplaneError::PinnedIncompatible { .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a stick table with 8-byte values was adopted"),
    }
    assert!(
        dir.0.join(STICK_MAP).exists(),
        "the stick table must be left alone"
    );
}
