//! Packet classes counted by the data plane, one per packet.

use bytemuck::{Pod, Zeroable};

/// A counter slot: packets and bytes (the frame length as XDP sees it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
// SAFETY: `Counter` is `#[repr(C)]` plain data without padding (bytemuck checks it).
unsafe impl aya::Pod for Counter {}

/// What the parser made of a packet. Every packet falls in exactly one class,
/// so the sum over classes is the number of packets the program saw.
///
/// Stored as `u32` indices into the stats map; this enum only names them on
/// the host side and in the reference model.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    Ipv4Tcp = 0,
    Ipv4Udp = 1,
    /// IPv4 with another protocol (ICMP, ...) or a non-first fragment, whose
    /// transport header is in the first fragment.
    Ipv4Other = 2,
    Ipv6Tcp = 3,
    Ipv6Udp = 4,
    /// IPv6 whose next header is neither TCP nor UDP.
    Ipv6Other = 5,
    /// A well-formed Ethernet frame that carries neither IPv4 nor IPv6 (ARP, LLDP, ...).
    NonIp = 6,
    /// Truncated or inconsistent headers. Passed to the stack untouched and counted.
    Malformed = 7,
}

pub const CLASS_COUNT: usize = 8;

impl Class {
    pub const ALL: [Class; CLASS_COUNT] = [
        Class::Ipv4Tcp,
        Class::Ipv4Udp,
        Class::Ipv4Other,
        Class::Ipv6Tcp,
        Class::Ipv6Udp,
        Class::Ipv6Other,
        Class::NonIp,
        Class::Malformed,
    ];

    /// Stable name used by the CLI, the JSON output and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Class::Ipv4Tcp => "ipv4_tcp",
            Class::Ipv4Udp => "ipv4_udp",
            Class::Ipv4Other => "ipv4_other",
            Class::Ipv6Tcp => "ipv6_tcp",
            Class::Ipv6Udp => "ipv6_udp",
            Class::Ipv6Other => "ipv6_other",
            Class::NonIp => "non_ip",
            Class::Malformed => "malformed",
        }
    }

    pub const fn index(self) -> u32 {
        self as u32
    }
}
