//! Header layouts and protocol numbers, shared by the XDP parser and the
//! reference model so that both read the same offsets.

pub const ETH_HLEN: usize = 14;
/// Offset of the EtherType in an untagged frame.
pub const ETH_TYPE_OFF: usize = 12;
pub const VLAN_HLEN: usize = 4;

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

pub const IPV4_MIN_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const TCP_MIN_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// IPv4 flags/fragment-offset field: the offset bits (in 8-byte units).
pub const IPV4_FRAG_OFFSET_MASK: u16 = 0x1fff;
