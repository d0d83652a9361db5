//! Reference model of the XDP parser: the same decision, written for a byte
//! slice on the host. Tests run the compiled program and this function on
//! the same packets and require the same class.
//!
//! Rules (the program follows them exactly; every packet is passed):
//! - shorter than an Ethernet header: `Malformed`;
//! - one 802.1Q/802.1ad tag is skipped; a tag cut short is `Malformed`; a
//!   second tag (QinQ) is not parsed further and counts as `NonIp`;
//! - EtherType neither IPv4 nor IPv6: `NonIp`;
//! - IPv4: version 4, IHL >= 5, the whole header present, total length
//!   between the header length and the bytes present; otherwise `Malformed`.
//!   A non-first fragment is `Ipv4Other` (its transport header is elsewhere);
//! - IPv6: version 6, the 40-byte header present, payload length within the
//!   bytes present; otherwise `Malformed`. Extension headers are not walked
//!   yet: a next header other than TCP/UDP is `Ipv6Other`;
//! - TCP: 20 bytes present, data offset >= 5 and the options present; UDP:
//!   8 bytes present; otherwise `Malformed`.

use crate::layout::*;
use crate::stats::Class;

fn be16(p: &[u8], off: usize) -> Option<u16> {
    let b = p.get(off..off + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Classify one Ethernet frame.
pub fn classify(pkt: &[u8]) -> Class {
    classify_inner(pkt).unwrap_or(Class::Malformed)
}

fn classify_inner(pkt: &[u8]) -> Option<Class> {
    let mut proto = be16(pkt, ETH_TYPE_OFF)?;
    let mut l3 = ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = be16(pkt, ETH_TYPE_OFF + VLAN_HLEN)?;
        l3 += VLAN_HLEN;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            return Some(Class::NonIp);
        }
    }
    match proto {
        ETH_P_IPV4 => ipv4(pkt, l3),
        ETH_P_IPV6 => ipv6(pkt, l3),
        _ => Some(Class::NonIp),
    }
}

fn ipv4(pkt: &[u8], l3: usize) -> Option<Class> {
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
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]) & IPV4_FRAG_OFFSET_MASK;
    if frag != 0 {
        return Some(Class::Ipv4Other);
    }
    match hdr[9] {
        IPPROTO_TCP => tcp(pkt, l3 + ihl).then_some(Class::Ipv4Tcp),
        IPPROTO_UDP => udp(pkt, l3 + ihl).then_some(Class::Ipv4Udp),
        _ => Some(Class::Ipv4Other),
    }
}

fn ipv6(pkt: &[u8], l3: usize) -> Option<Class> {
    let hdr = pkt.get(l3..l3 + IPV6_HLEN)?;
    if hdr[0] >> 4 != 6 {
        return None;
    }
    let payload = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    if pkt.len() < l3 + IPV6_HLEN + payload {
        return None;
    }
    let l4 = l3 + IPV6_HLEN;
    match hdr[6] {
        IPPROTO_TCP => tcp(pkt, l4).then_some(Class::Ipv6Tcp),
        IPPROTO_UDP => udp(pkt, l4).then_some(Class::Ipv6Udp),
        _ => Some(Class::Ipv6Other),
    }
}

fn tcp(pkt: &[u8], l4: usize) -> bool {
    match pkt.get(l4..l4 + TCP_MIN_HLEN) {
        Some(hdr) => {
            let doff = usize::from(hdr[12] >> 4) * 4;
            doff >= TCP_MIN_HLEN && pkt.len() >= l4 + doff
        }
        None => false,
    }
}

fn udp(pkt: &[u8], l4: usize) -> bool {
    pkt.len() >= l4 + UDP_HLEN
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use etherparse::PacketBuilder;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const V4_A: [u8; 4] = [198, 18, 0, 10];
    const V4_B: [u8; 4] = [198, 18, 1, 10];
    const V6_A: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    const V6_B: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    fn v4_tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(V4_A, V4_B, 64)
            .tcp(40000, 80, 1, 1024)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn v4_udp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(V4_A, V4_B, 64)
            .udp(40000, 53);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn v6_udp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(V6_A, V6_B, 64)
            .udp(40000, 53);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn v6_tcp_vlan(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(etherparse::VlanId::try_new(7).unwrap())
            .ipv6(V6_A, V6_B, 64)
            .tcp(40000, 443, 1, 1024);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn well_formed_packets_get_their_protocol_class() {
        assert_eq!(classify(&v4_tcp(b"hello")), Class::Ipv4Tcp);
        assert_eq!(classify(&v4_udp(b"")), Class::Ipv4Udp);
        assert_eq!(classify(&v6_udp(b"x")), Class::Ipv6Udp);
        assert_eq!(classify(&v6_tcp_vlan(b"")), Class::Ipv6Tcp);
    }

    #[test]
    fn every_truncation_of_a_valid_packet_is_malformed() {
        // Cutting a packet anywhere inside its headers or its declared length
        // must never yield a protocol class (the frame length is all we trust).
        for pkt in [
            v4_tcp(b"payload"),
            v4_udp(b"p"),
            v6_udp(b"p"),
            v6_tcp_vlan(b"p"),
        ] {
            for cut in 0..pkt.len() {
                assert_eq!(
                    classify(&pkt[..cut]),
                    Class::Malformed,
                    "cut at {cut} of {pkt:02x?}"
                );
            }
        }
    }

    #[test]
    fn ethernet_padding_after_the_ip_packet_is_accepted() {
        let mut pkt = v4_udp(b"");
        pkt.resize(60, 0);
        assert_eq!(classify(&pkt), Class::Ipv4Udp);
    }

    #[test]
    fn inconsistent_ipv4_headers_are_malformed() {
        let good = v4_tcp(b"");
        let mut bad_version = good.clone();
        bad_version[ETH_HLEN] = 0x65;
        assert_eq!(classify(&bad_version), Class::Malformed);
        let mut short_ihl = good.clone();
        short_ihl[ETH_HLEN] = 0x44;
        assert_eq!(classify(&short_ihl), Class::Malformed);
        let mut total_below_header = good.clone();
        total_below_header[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(classify(&total_below_header), Class::Malformed);
        let mut bad_doff = good.clone();
        bad_doff[ETH_HLEN + IPV4_MIN_HLEN + 12] = 0x40;
        assert_eq!(classify(&bad_doff), Class::Malformed);
        let mut doff_past_end = good;
        doff_past_end[ETH_HLEN + IPV4_MIN_HLEN + 12] = 0xf0;
        assert_eq!(classify(&doff_past_end), Class::Malformed);
    }

    #[test]
    fn non_first_fragment_and_other_protocols() {
        let mut frag = v4_udp(b"abcdefgh");
        frag[ETH_HLEN + 6..ETH_HLEN + 8].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(classify(&frag), Class::Ipv4Other);
        let mut icmp = v4_udp(b"");
        icmp[ETH_HLEN + 9] = 1;
        assert_eq!(classify(&icmp), Class::Ipv4Other);
        let mut arp = v4_udp(b"");
        arp[ETH_TYPE_OFF..ETH_TYPE_OFF + 2].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(classify(&arp), Class::NonIp);
        let mut qinq = v6_tcp_vlan(b"");
        qinq[ETH_TYPE_OFF + VLAN_HLEN..ETH_TYPE_OFF + VLAN_HLEN + 2]
            .copy_from_slice(&ETH_P_8021Q.to_be_bytes());
        assert_eq!(classify(&qinq), Class::NonIp);
    }
}
