//! `balancer gen`: a packet generator for operators and the labs. One
//! template frame (TCP SYN, TCP ACK or UDP) is sent out of an interface by
//! BPF_PROG_TEST_RUN in live-frames mode; the `trafficgen` XDP program gives
//! every copy the next source address of a range (in a scrambled order) and
//! fixes the checksums. Sends at full speed or at a given rate.

use std::{
    ffi::CString,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use aya::maps::Array;
use balancer_common::maps::{
    FAMILY_V4, FAMILY_V6, GEN_CONFIG_MAP, GEN_PROGRAM, GenConfig, family_addr,
};
use etherparse::PacketBuilder;

use crate::{
    dataplane::{AuxProgram, DataplaneError},
    testrun::{TestRunError, test_run_live},
};

/// The generator program's template map (defined in its module of the
/// eBPF object): byte 0 the length, then the template's first bytes.
const GEN_TEMPLATE_MAP: &str = "GEN_TEMPLATE";
const TEMPLATE_MAX: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenKind {
    TcpSyn,
    TcpAck,
    Udp,
}

#[derive(Debug, Clone)]
pub struct GenSpec {
    pub interface: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// First source address; `src_count` consecutive addresses are used.
    pub src_base: IpAddr,
    pub src_count: u32,
    pub dst: SocketAddr,
    pub kind: GenKind,
    /// Stop after this many frames (0: no limit).
    pub count: u64,
    /// Stop after this long (None: no limit).
    pub duration: Option<Duration>,
    /// Frames per second (None: as fast as possible).
    pub rate: Option<u64>,
    /// Payload bytes after the transport header.
    pub payload: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct GenReport {
    pub sent: u64,
    pub seconds: f64,
    pub pps: f64,
    pub frame_len: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    TestRun(#[from] TestRunError),
    #[error("interface {0:?} does not exist")]
    UnknownInterface(String),
    #[error("source {src} and destination {dst} are of different families")]
    Family { src: IpAddr, dst: IpAddr },
    #[error("give --count, --duration or both: an unbounded flood is refused")]
    Unbounded,
    #[error("building the template frame: {0}")]
    Frame(String),
    #[error("generator settings: {0}")]
    Map(String),
}

/// The template frame for `spec`.
pub fn template(spec: &GenSpec) -> Result<Vec<u8>, GenError> {
    let eth = PacketBuilder::ethernet2(spec.src_mac, spec.dst_mac);
    let ip = match (spec.src_base, spec.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        (s, d) => return Err(GenError::Family { src: s, dst: d }),
    };
    let payload = vec![0u8; spec.payload];
    let mut out = Vec::new();
    let (sport, dport) = (40000, spec.dst.port());
    let r = match spec.kind {
        GenKind::TcpSyn => ip
            .tcp(sport, dport, 1, 64240)
            .syn()
            .write(&mut out, &payload),
        GenKind::TcpAck => ip
            .tcp(sport, dport, 1, 64240)
            .ack(1)
            .write(&mut out, &payload),
        GenKind::Udp => ip.udp(sport, dport).write(&mut out, &payload),
    };
    r.map_err(|e| GenError::Frame(e.to_string()))?;
    // The Ethernet minimum; padding is not covered by any checksum.
    if out.len() < 60 {
        out.resize(60, 0);
    }
    Ok(out)
}

/// Send until the count or the duration is reached.
pub fn run(spec: &GenSpec) -> Result<GenReport, GenError> {
    if spec.count == 0 && spec.duration.is_none() {
        return Err(GenError::Unbounded);
    }
    let frame = template(spec)?;
    let cname = CString::new(spec.interface.as_str())
        .map_err(|_| GenError::UnknownInterface(spec.interface.clone()))?;
    // SAFETY: a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(GenError::UnknownInterface(spec.interface.clone()));
    }
    let mut prog = AuxProgram::load(GEN_PROGRAM)?;
    {
        let map = prog
            .ebpf_mut()
            .map_mut(GEN_CONFIG_MAP)
            .ok_or_else(|| GenError::Map(format!("{GEN_CONFIG_MAP} missing")))?;
        let mut a: Array<_, GenConfig> =
            Array::try_from(map).map_err(|e| GenError::Map(e.to_string()))?;
        let (family, base) = family_addr(spec.src_base);
        let cfg = GenConfig {
            src_base: base,
            src_count: spec.src_count.max(1),
            cpu_salt: std::process::id(),
            family: if family == FAMILY_V4 {
                FAMILY_V4
            } else {
                FAMILY_V6
            },
            _pad: [0; 3],
        };
        a.set(0, cfg, 0).map_err(|e| GenError::Map(e.to_string()))?;
    }
    {
        // The headers every run restores (live frames come back with what
        // the last receiver wrote into them).
        let map = prog
            .ebpf_mut()
            .map_mut(GEN_TEMPLATE_MAP)
            .ok_or_else(|| GenError::Map(format!("{GEN_TEMPLATE_MAP} missing")))?;
        let mut a: Array<_, [u8; TEMPLATE_MAX + 1]> =
            Array::try_from(map).map_err(|e| GenError::Map(e.to_string()))?;
        let n = frame.len().min(TEMPLATE_MAX);
        let mut t = [0u8; TEMPLATE_MAX + 1];
        t[0] = n as u8;
        t[1..=n].copy_from_slice(&frame[..n]);
        a.set(0, t, 0).map_err(|e| GenError::Map(e.to_string()))?;
    }
    let start = Instant::now();
    let mut sent = 0u64;
    // Chunks small enough to stop on time and to pace a rate.
    let chunk = match spec.rate {
        Some(r) => (r / 100).clamp(1, 1 << 16),
        None => 1 << 16,
    };
    loop {
        let elapsed = start.elapsed();
        if spec.duration.is_some_and(|d| elapsed >= d) || (spec.count != 0 && sent >= spec.count) {
            break;
        }
        let mut n = chunk;
        if spec.count != 0 {
            n = n.min(spec.count - sent);
        }
        if let Some(rate) = spec.rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        test_run_live(prog.program_fd()?, &frame, ifindex, n as u32)?;
        sent += n;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(GenReport {
        sent,
        seconds,
        pps: sent as f64 / seconds.max(1e-9),
        frame_len: frame.len(),
    })
}

/// MAC address of an interface of the caller's network namespace.
pub fn interface_mac(name: &str) -> Result<[u8; 6], GenError> {
    let unknown = || GenError::UnknownInterface(name.to_owned());
    if name.len() >= libc::IFNAMSIZ {
        return Err(unknown());
    }
    // SAFETY: a plain socket used only for the ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(unknown());
    }
    // SAFETY: zeroed ifreq with a NUL-terminated name of < IFNAMSIZ bytes.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr of a valid ifreq.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(unknown());
    }
    // SAFETY: the ioctl filled the hwaddr member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    Ok(mac)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for m in &mut mac {
        *m = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(
            parse_mac("02:b1:00:01:00:ff"),
            Some([2, 0xb1, 0, 1, 0, 0xff])
        );
        assert_eq!(parse_mac("02:b1:00:01:00"), None);
        assert_eq!(parse_mac("02:b1:00:01:00:ff:00"), None);
        assert_eq!(parse_mac("zz:b1:00:01:00:ff"), None);
    }

    #[test]
    fn templates_are_minimum_size_and_checked_family() {
        let spec = GenSpec {
            interface: "x".into(),
            src_mac: [2; 6],
            dst_mac: [4; 6],
            src_base: "198.18.64.0".parse().unwrap(),
            src_count: 10,
            dst: "198.18.2.100:80".parse().unwrap(),
            kind: GenKind::TcpSyn,
            count: 1,
            duration: None,
            rate: None,
            payload: 0,
        };
        assert_eq!(template(&spec).unwrap().len(), 60);
        let bad = GenSpec {
            dst: "[2001:db8:0:2::100]:80".parse().unwrap(),
            ..spec.clone()
        };
        assert!(matches!(template(&bad), Err(GenError::Family { .. })));
        let unbounded = GenSpec { count: 0, ..spec };
        assert!(matches!(run(&unbounded), Err(GenError::Unbounded)));
    }
}
