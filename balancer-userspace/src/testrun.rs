//! BPF_PROG_TEST_RUN: run a loaded XDP program on a crafted frame in the
//! kernel, without any interface, and get back the verdict, the frame as
//! the program left it and the kernel-measured duration.
//!
//! aya 0.14 has no public wrapper for it, so this is the raw `bpf(2)` call.

use std::os::fd::{AsRawFd as _, BorrowedFd};

/// BPF_PROG_TEST_RUN in `enum bpf_cmd`.
const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// Room for programs that grow the frame (encapsulation) plus headroom.
const OUT_SLACK: usize = 512;

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h). The
/// kernel accepts an attr shorter than its own and zero-extends it.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// What one test run returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The XDP action (`XDP_PASS` = 2, ...).
    pub action: u32,
    /// The frame after the program ran.
    pub data: Vec<u8>,
    /// Average nanoseconds per run as measured by the kernel.
    pub duration_ns: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TestRunError {
    #[error(
        "BPF_PROG_TEST_RUN refused a {len}-byte frame: the kernel needs at least 14 bytes (an Ethernet header)"
    )]
    TooShort { len: usize },
    #[error("BPF_PROG_TEST_RUN failed: {0}")]
    Syscall(#[source] std::io::Error),
}

/// Run `prog` once per `repeat` (>= 1) on `frame`.
pub fn test_run(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> Result<TestRun, TestRunError> {
    if frame.len() < 14 {
        return Err(TestRunError::TooShort { len: frame.len() });
    }
    let mut out = vec![0u8; frame.len() + OUT_SLACK];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: repeat.max(1),
        ..Default::default()
    };
    // SAFETY: attr points to valid, correctly sized buffers that outlive the call.
    unsafe { bpf_test_run(&mut attr)? };
    out.truncate(attr.data_size_out as usize);
    Ok(TestRun {
        action: attr.retval,
        data: out,
        duration_ns: attr.duration,
    })
}

/// BPF_F_TEST_XDP_LIVE_FRAMES: frames the program passes, transmits or
/// redirects really go out (the mechanism behind xdp-trafficgen).
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `struct xdp_md` as BPF_PROG_TEST_RUN takes it for its context.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Run `prog` `repeat` times in live-frames mode on `frame`, as if received
/// on `ifindex` (of the caller's network namespace): XDP_TX sends the frame
/// out of that interface. Returns the kernel's average ns per frame.
pub fn test_run_live(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
) -> Result<u32, TestRunError> {
    if frame.len() < 14 {
        return Err(TestRunError::TooShort { len: frame.len() });
    }
    let ctx = XdpMd {
        data_end: frame.len() as u32,
        ingress_ifindex: ifindex,
        ..Default::default()
    };
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat: repeat.max(1),
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: &ctx as *const XdpMd as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        ..Default::default()
    };
    // SAFETY: attr points to valid buffers that outlive the call.
    unsafe { bpf_test_run(&mut attr)? };
    Ok(attr.duration)
}

/// The `bpf(BPF_PROG_TEST_RUN)` call.
///
/// # Safety
/// Every pointer in `attr` must be valid for the sizes it states until the
/// call returns.
unsafe fn bpf_test_run(attr: &mut TestRunAttr) -> Result<(), TestRunError> {
    // SAFETY: upheld by the caller; the size is that of the struct passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(TestRunError::Syscall(std::io::Error::last_os_error()));
    }
    Ok(())
}
