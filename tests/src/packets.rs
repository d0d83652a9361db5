//! Frames for BPF_PROG_TEST_RUN tests, built with etherparse (which computes
//! lengths and checksums), plus the addresses they use (lab ranges only).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder, VlanId};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0xb1, 0, 2, 0, 0];
pub const BALANCER_MAC: [u8; 6] = [0x02, 0xb1, 0, 1, 0, 0];
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub const SERVICE_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
pub const SERVICE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x10);

/// Transport of a test frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    TcpSyn,
    TcpAck,
    Udp,
}

/// One frame description.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub vlan: Option<u16>,
    pub l4: L4,
    pub sport: u16,
    pub dport: u16,
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn new(l4: L4) -> Self {
        Frame {
            vlan: None,
            l4,
            sport: 40000,
            dport: 80,
            payload: b"",
        }
    }

    pub fn vlan(mut self, id: u16) -> Self {
        self.vlan = Some(id);
        self
    }

    pub fn payload(mut self, p: &'a [u8]) -> Self {
        self.payload = p;
        self
    }

    pub fn ports(mut self, sport: u16, dport: u16) -> Self {
        self.sport = sport;
        self.dport = dport;
        self
    }

    pub fn ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(CLIENT_MAC, BALANCER_MAC);
        match self.vlan {
            Some(id) => self.finish(
                eth.single_vlan(vlan(id))
                    .ipv4(src.octets(), dst.octets(), 64),
            ),
            None => self.finish(eth.ipv4(src.octets(), dst.octets(), 64)),
        }
    }

    pub fn ipv6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(CLIENT_MAC, BALANCER_MAC);
        match self.vlan {
            Some(id) => self.finish(
                eth.single_vlan(vlan(id))
                    .ipv6(src.octets(), dst.octets(), 64),
            ),
            None => self.finish(eth.ipv6(src.octets(), dst.octets(), 64)),
        }
    }

    fn finish(&self, ip: etherparse::PacketBuilderStep<etherparse::IpHeaders>) -> Vec<u8> {
        let mut out = Vec::new();
        let res = match self.l4 {
            L4::TcpSyn => ip
                .tcp(self.sport, self.dport, 1, 65535)
                .syn()
                .write(&mut out, self.payload),
            L4::TcpAck => ip
                .tcp(self.sport, self.dport, 2, 65535)
                .ack(1)
                .write(&mut out, self.payload),
            L4::Udp => ip.udp(self.sport, self.dport).write(&mut out, self.payload),
        };
        res.expect("building a test frame");
        out
    }
}

/// An Ethernet frame whose IPv4 header is cut after 6 bytes: what the data
/// plane must pass, count as malformed and log (rate-limited).
pub fn truncated_ipv4(dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(20);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0]);
    f
}

/// `frame` (Ethernet, maybe one VLAN tag, then IPv4 or IPv6) as an
/// IP-in-IP packet from `outer_src` to `outer_dst`, as `forward = "ipip"`
/// sends it: the link header (tag kept) with the outer family's EtherType,
/// an outer header (protocol 4 for IPv4 inside, 41 for IPv6), the packet.
/// The outer family is `outer_src`'s, so 6-in-4 and 4-in-6 come out too.
pub fn encapsulate(outer_src: IpAddr, outer_dst: IpAddr, frame: &[u8]) -> Vec<u8> {
    let tpid = u16::from_be_bytes([frame[12], frame[13]]);
    let l2 = if tpid == 0x8100 || tpid == 0x88a8 {
        18
    } else {
        14
    };
    let inner = &frame[l2..];
    let proto = if u16::from_be_bytes([frame[l2 - 2], frame[l2 - 1]]) == 0x0800 {
        IpNumber::IPV4
    } else {
        IpNumber::IPV6
    };
    let mut out = frame[..l2].to_vec();
    let (ty, res): (u16, std::io::Result<()>) = match (outer_src, outer_dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ipv4Header::new(inner.len() as u16, 64, proto, s.octets(), d.octets())
                .expect("an outer IPv4 header");
            h.dont_fragment = false;
            (0x0800, h.write(&mut out))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let h = Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: inner.len() as u16,
                next_header: proto,
                hop_limit: 64,
                source: s.octets(),
                destination: d.octets(),
            };
            (0x86dd, h.write(&mut out))
        }
        _ => panic!("outer addresses of two families: {outer_src}, {outer_dst}"),
    };
    res.expect("writing the outer header");
    out[l2 - 2..l2].copy_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(inner);
    out
}

fn vlan(id: u16) -> VlanId {
    VlanId::try_new(id).expect("VLAN id below 4095")
}

/// A small deterministic PRNG (xorshift64*) for reproducible fuzz cases.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
