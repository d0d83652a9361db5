//! Header layouts and protocol numbers, shared by the XDP parser and the
//! reference model so that both read the same offsets.

pub const ETH_HLEN: usize = 14;
pub const ETH_ALEN: usize = 6;
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
/// ICMP/ICMPv6 header before the quoted packet of an error message.
pub const ICMP_HLEN: usize = 8;
/// Bytes of the quoted transport header an ICMP error must carry for us to
/// use it: the two ports (RFC 792 guarantees 8).
pub const ICMP_QUOTED_L4: usize = 4;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// An IP-in-IP protocol number (IPv4 protocol / IPv6 next header): IPv4
/// or IPv6 inside, what the kernel's ipip, sit and ip6tnl devices take.
#[inline(always)]
pub const fn is_tunnel_proto(proto: u8) -> bool {
    proto == IPPROTO_IPIP || proto == IPPROTO_IPV6
}

/// IPv6 extension headers walked before giving up (the packet is then
/// passed untouched and counted as `ipv6_other`).
pub const IPV6_MAX_EXT: usize = 4;

/// IPv4 flags/fragment-offset field: the offset bits (in 8-byte units).
pub const IPV4_FRAG_OFFSET_MASK: u16 = 0x1fff;
/// IPv4 flags/fragment-offset field: the more-fragments flag.
pub const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
/// IPv6 fragment header: offset bits of the offset/flags field.
pub const IPV6_FRAG_OFFSET_MASK: u16 = 0xfff8;

pub const TCP_FLAG_SYN: u8 = 0x02;
pub const TCP_FLAG_ACK: u8 = 0x10;
/// Offset of the flags byte in the TCP header.
pub const TCP_FLAGS_OFF: usize = 13;

pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
pub const ICMPV6_TIME_EXCEED: u8 = 3;

/// Outer TTL / hop limit of encapsulated packets.
pub const ENCAP_TTL: u8 = 64;

/// XDP verdicts (`enum xdp_action`).
pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// Internet checksum of a 20-byte IPv4 header whose checksum field is zero.
/// A fixed-size loop, so the verifier accepts it in the XDP program.
#[inline(always)]
pub fn ipv4_header_checksum(hdr: &[u8; IPV4_MIN_HLEN]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < IPV4_MIN_HLEN {
        sum += u32::from(u16::from_be_bytes([hdr[i], hdr[i + 1]]));
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The outer IPv4 header of an IPIP packet (checksum filled in).
#[inline(always)]
pub fn ipip4_header(src: [u8; 4], dst: [u8; 4], inner_len: u16) -> [u8; IPV4_MIN_HLEN] {
    let total = inner_len.wrapping_add(IPV4_MIN_HLEN as u16).to_be_bytes();
    let mut h = [
        0x45,
        0,
        total[0],
        total[1],
        0,
        0,
        0,
        0,
        ENCAP_TTL,
        IPPROTO_IPIP,
        0,
        0,
        src[0],
        src[1],
        src[2],
        src[3],
        dst[0],
        dst[1],
        dst[2],
        dst[3],
    ];
    let c = ipv4_header_checksum(&h).to_be_bytes();
    h[10] = c[0];
    h[11] = c[1];
    h
}

/// The outer IPv6 header of an IP6IP6 packet. The flow label carries the
/// client hash so that ECMP on the way to the backend spreads clients.
#[inline(always)]
pub fn ip6ip6_header(
    src: &[u8; 16],
    dst: &[u8; 16],
    inner_len: u16,
    flow_hash: u32,
) -> [u8; IPV6_HLEN] {
    let mut h = [0u8; IPV6_HLEN];
    h[0] = 0x60 | ((flow_hash >> 16) & 0x0f) as u8;
    h[1] = (flow_hash >> 8) as u8;
    h[2] = flow_hash as u8;
    let len = inner_len.to_be_bytes();
    h[4] = len[0];
    h[5] = len[1];
    h[6] = IPPROTO_IPV6;
    h[7] = ENCAP_TTL;
    let mut i = 0;
    while i < 16 {
        h[8 + i] = src[i];
        h[24 + i] = dst[i];
        i += 1;
    }
    h
}
