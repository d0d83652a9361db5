//! Host-side packet parser: the reference for what the XDP parser extracts
//! from a frame. The XDP program implements the same rules with bounded,
//! verifier-checked reads; tests compare the two.
//!
//! Rules (every frame gets exactly one [`Class`]; only frames with a
//! [`Flow`] are looked up as VIP traffic, everything else is passed):
//! - shorter than an Ethernet header: `Malformed`;
//! - one 802.1Q/802.1ad tag is skipped; a tag cut short is `Malformed`; a
//!   second tag (QinQ) is not parsed further: `NonIp`;
//! - EtherType neither IPv4 nor IPv6: `NonIp`;
//! - IPv4: version 4, IHL >= 5, the whole header (options included)
//!   present, total length between the header length and the bytes present;
//!   else `Malformed`. A non-first fragment (offset != 0) is `Ipv4Other`
//!   with a `Fragment` flow keyed by (destination, port 0, protocol);
//! - IPv6: version 6, the 40-byte header present, payload length within the
//!   bytes present; else `Malformed`. Up to [`IPV6_MAX_EXT`] extension
//!   headers (hop-by-hop, routing, destination options, fragment, AH) are
//!   walked; one cut short or whose length runs past the frame is
//!   `Malformed`; more than that is `Ipv6Other`
//!   without a flow. A fragment header with offset != 0 makes a non-first
//!   fragment (`Ipv6Other`, `Fragment` flow);
//! - TCP: 20 bytes present, data offset >= 5 and the options present; UDP:
//!   8 bytes present; else `Malformed`. A flow keyed by (destination,
//!   destination port, protocol); it opens a session if UDP, or TCP with SYN
//!   and without ACK;
//! - ICMP destination-unreachable / time-exceeded and ICMPv6
//!   destination-unreachable / packet-too-big / time-exceeded that quote a
//!   same-family IP header plus 4 bytes of TCP/UDP: a flow keyed by the
//!   error's own destination (the VIP) and the quoted source port and
//!   protocol, whose client is the quoted destination. It is an `IcmpError`
//!   flow when the quoted source is that same destination, as in any error
//!   about a packet the VIP sent, else an `IcmpMismatch` flow (dropped if
//!   it is to a VIP: not about anything the VIP sent). Other ICMP, and
//!   errors quoting anything else or cut short, have no flow (class
//!   `Ipv4Other`/`Ipv6Other`).

use crate::{
    layout::*,
    maps::{FAMILY_V4, FAMILY_V6, VipKey},
    stats::Class,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowKind {
    /// A TCP/UDP packet to the VIP.
    Normal,
    /// A non-first fragment: no ports, matched by the VIP's port-0 entry.
    Fragment,
    /// An ICMP error about a packet the VIP sent to the client.
    IcmpError,
    /// An ICMP error to the VIP quoting a packet from another source: not
    /// about anything the VIP sent.
    IcmpMismatch,
}

/// What selects a backend for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub kind: FlowKind,
    pub vip: VipKey,
    /// The client's address (IPv4 in the first 4 bytes).
    pub client: [u8; 16],
    /// May create a stick entry: UDP, or TCP SYN without ACK.
    pub opening: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub class: Class,
    /// Length of the Ethernet header including a VLAN tag (14 or 18).
    pub l2_len: usize,
    pub flow: Option<Flow>,
}

fn be16(p: &[u8], off: usize) -> Option<u16> {
    let b = p.get(off..off + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn addr4(p: &[u8], off: usize) -> Option<[u8; 16]> {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(p.get(off..off + 4)?);
    Some(a)
}

fn addr6(p: &[u8], off: usize) -> Option<[u8; 16]> {
    let mut a = [0u8; 16];
    a.copy_from_slice(p.get(off..off + 16)?);
    Some(a)
}

/// Parse one Ethernet frame.
pub fn parse(pkt: &[u8]) -> Parsed {
    let mut out = Parsed {
        class: Class::Malformed,
        l2_len: ETH_HLEN,
        flow: None,
    };
    let Some(mut proto) = be16(pkt, ETH_TYPE_OFF) else {
        return out;
    };
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        let Some(inner) = be16(pkt, ETH_TYPE_OFF + VLAN_HLEN) else {
            return out;
        };
        proto = inner;
        out.l2_len += VLAN_HLEN;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            out.class = Class::NonIp;
            return out;
        }
    }
    let r = match proto {
        ETH_P_IPV4 => ipv4(pkt, out.l2_len),
        ETH_P_IPV6 => ipv6(pkt, out.l2_len),
        _ => Some((Class::NonIp, None)),
    };
    if let Some((class, flow)) = r {
        out.class = class;
        out.flow = flow;
    }
    out
}

type L3 = Option<(Class, Option<Flow>)>;

fn ipv4(pkt: &[u8], l3: usize) -> L3 {
    let hdr = pkt.get(l3..l3 + IPV4_MIN_HLEN)?;
    if hdr[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    if ihl < IPV4_MIN_HLEN || pkt.len() < l3 + ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    if total < ihl || pkt.len() < l3 + total {
        return None;
    }
    let src = addr4(pkt, l3 + 12)?;
    let dst = addr4(pkt, l3 + 16)?;
    let proto = hdr[9];
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]) & IPV4_FRAG_OFFSET_MASK;
    if frag != 0 {
        return Some((Class::Ipv4Other, Some(fragment(FAMILY_V4, dst, src, proto))));
    }
    let l4 = l3 + ihl;
    match proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let (class, f) = transport(pkt, l4, proto, FAMILY_V4, src, dst)?;
            Some((
                if class {
                    Class::Ipv4Tcp
                } else {
                    Class::Ipv4Udp
                },
                Some(f),
            ))
        }
        IPPROTO_ICMP => Some((Class::Ipv4Other, icmp4_error(pkt, l4, dst))),
        _ => Some((Class::Ipv4Other, None)),
    }
}

fn ipv6(pkt: &[u8], l3: usize) -> L3 {
    let hdr = pkt.get(l3..l3 + IPV6_HLEN)?;
    if hdr[0] >> 4 != 6 {
        return None;
    }
    let payload = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    if pkt.len() < l3 + IPV6_HLEN + payload {
        return None;
    }
    let src = addr6(pkt, l3 + 8)?;
    let dst = addr6(pkt, l3 + 24)?;
    let mut next = hdr[6];
    let mut off = l3 + IPV6_HLEN;
    for _ in 0..IPV6_MAX_EXT {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let h = pkt.get(off..off + 2)?;
                next = h[0];
                off += (usize::from(h[1]) + 1) * 8;
            }
            IPPROTO_AH => {
                let h = pkt.get(off..off + 2)?;
                next = h[0];
                off += (usize::from(h[1]) + 2) * 4;
            }
            IPPROTO_FRAGMENT => {
                let h = pkt.get(off..off + 8)?;
                next = h[0];
                off += 8;
                if u16::from_be_bytes([h[2], h[3]]) & IPV6_FRAG_OFFSET_MASK != 0 {
                    return Some((Class::Ipv6Other, Some(fragment(FAMILY_V6, dst, src, next))));
                }
            }
            _ => break,
        }
        // An extension header whose length runs past the frame.
        if off > pkt.len() {
            return None;
        }
    }
    match next {
        IPPROTO_TCP | IPPROTO_UDP => {
            let (is_tcp, f) = transport(pkt, off, next, FAMILY_V6, src, dst)?;
            Some((
                if is_tcp {
                    Class::Ipv6Tcp
                } else {
                    Class::Ipv6Udp
                },
                Some(f),
            ))
        }
        IPPROTO_ICMPV6 => Some((Class::Ipv6Other, icmp6_error(pkt, off, dst))),
        _ => Some((Class::Ipv6Other, None)),
    }
}

fn fragment(family: u8, dst: [u8; 16], src: [u8; 16], proto: u8) -> Flow {
    Flow {
        kind: FlowKind::Fragment,
        vip: VipKey {
            addr: dst,
            port: 0,
            proto,
            family,
        },
        client: src,
        opening: false,
    }
}

/// TCP/UDP header checks; (is_tcp, flow).
fn transport(
    pkt: &[u8],
    l4: usize,
    proto: u8,
    family: u8,
    src: [u8; 16],
    dst: [u8; 16],
) -> Option<(bool, Flow)> {
    let is_tcp = proto == IPPROTO_TCP;
    let opening = if is_tcp {
        let hdr = pkt.get(l4..l4 + TCP_MIN_HLEN)?;
        let doff = usize::from(hdr[12] >> 4) * 4;
        if doff < TCP_MIN_HLEN || pkt.len() < l4 + doff {
            return None;
        }
        let flags = hdr[TCP_FLAGS_OFF];
        flags & TCP_FLAG_SYN != 0 && flags & TCP_FLAG_ACK == 0
    } else {
        pkt.get(l4..l4 + UDP_HLEN)?;
        true
    };
    let dport = be16(pkt, l4 + 2)?;
    Some((
        is_tcp,
        Flow {
            kind: FlowKind::Normal,
            vip: VipKey {
                addr: dst,
                port: dport,
                proto,
                family,
            },
            client: src,
            opening,
        },
    ))
}

/// The flow an ICMPv4 error (to `outer_dst`) quotes, if usable.
fn icmp4_error(pkt: &[u8], l4: usize, outer_dst: [u8; 16]) -> Option<Flow> {
    let ty = *pkt.get(l4)?;
    if ty != ICMP_DEST_UNREACH && ty != ICMP_TIME_EXCEEDED {
        return None;
    }
    let inner = l4 + ICMP_HLEN;
    let hdr = pkt.get(inner..inner + IPV4_MIN_HLEN)?;
    if hdr[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    if ihl < IPV4_MIN_HLEN {
        return None;
    }
    quoted(
        pkt,
        inner + ihl,
        hdr[9],
        FAMILY_V4,
        addr4(pkt, inner + 12)?,
        addr4(pkt, inner + 16)?,
        outer_dst,
    )
}

/// The flow an ICMPv6 error quotes, if usable (no extension headers in the
/// quoted packet are walked).
fn icmp6_error(pkt: &[u8], l4: usize, outer_dst: [u8; 16]) -> Option<Flow> {
    let ty = *pkt.get(l4)?;
    if ty != ICMPV6_DEST_UNREACH && ty != ICMPV6_PKT_TOOBIG && ty != ICMPV6_TIME_EXCEED {
        return None;
    }
    let inner = l4 + ICMP_HLEN;
    let hdr = pkt.get(inner..inner + IPV6_HLEN)?;
    if hdr[0] >> 4 != 6 {
        return None;
    }
    quoted(
        pkt,
        inner + IPV6_HLEN,
        hdr[6],
        FAMILY_V6,
        addr6(pkt, inner + 8)?,
        addr6(pkt, inner + 24)?,
        outer_dst,
    )
}

/// The error went to `outer_dst` (the VIP) about a packet to the client;
/// that packet must have come from the same VIP.
fn quoted(
    pkt: &[u8],
    l4: usize,
    proto: u8,
    family: u8,
    quoted_src: [u8; 16],
    client: [u8; 16],
    outer_dst: [u8; 16],
) -> Option<Flow> {
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    pkt.get(l4..l4 + ICMP_QUOTED_L4)?;
    let sport = be16(pkt, l4)?;
    Some(Flow {
        kind: if quoted_src == outer_dst {
            FlowKind::IcmpError
        } else {
            FlowKind::IcmpMismatch
        },
        vip: VipKey {
            addr: outer_dst,
            port: sport,
            proto,
            family,
        },
        client,
        opening: false,
    })
}
