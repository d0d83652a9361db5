//! Reference model of the XDP parser: the same decision, written for a byte
//! slice on the host. Tests run the compiled program and this function on
//! the same packets and require the same class.
//!
//! The rules are those of [`crate::packet`].

use crate::stats::Class;

/// Classify one Ethernet frame (the class part of [`crate::packet::parse`]).
pub fn classify(pkt: &[u8]) -> Class {
    crate::packet::parse(pkt).class
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::layout::*;
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
