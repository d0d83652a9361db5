//! Reference model of the backends' `decap` XDP program (`balancer decap`):
//! what it does to one frame, written plainly for the host. Tests run the
//! compiled program and this function on the same frames and require the
//! same verdict, output bytes and counter.
//!
//! Per frame:
//! - Ethernet with at most one 802.1Q/802.1ad tag; anything else (a second
//!   tag, another EtherType, a cut header): `XDP_PASS`, untouched;
//! - IPv4 (version 4, 20 bytes present) whose protocol is 4 (IPv4 in IPv4)
//!   or 41 (IPv6 in IPv4), in any fragment (every fragment carries the
//!   protocol): an IP-in-IP packet;
//! - IPv6 (version 6, 40 bytes present) whose upper-layer protocol, after
//!   at most [`IPV6_MAX_EXT`] extension headers (hop-by-hop, routing,
//!   destination options, fragment, AH), is 4 or 41: an IP-in-IP packet.
//!   A longer chain, or one cut short, cannot be told apart from one, and
//!   is handled like one;
//! - anything else: `XDP_PASS`, untouched;
//! - an IP-in-IP packet whose outer source is not in the list of tunnel
//!   sources (an empty list refuses all): `XDP_DROP`, counted
//!   (`DECAP_REFUSED_V4`/`_V6` by outer family). Dropped, not passed: the
//!   kernel's own ipip/sit/ip6tnl modules would decapsulate a passed packet
//!   from any source through their fallback devices (CVE-2020-10136);
//! - from a listed source: IPv4 without options, protocol 4, not a fragment
//!   (offset 0, no more-fragments flag): the 20-byte outer header is removed
//!   (`DECAP_IPIP`); IPv6 whose next header is 41 directly: the 40-byte
//!   outer header is removed (`DECAP_IP6IP6`). The link header (tag
//!   included) moves forward over it; the EtherType stays, since 4-in-4 and
//!   6-in-6 keep the family. Any other IP-in-IP packet from a listed source
//!   (options, fragments, extension headers, 6-in-4, 4-in-6): `XDP_PASS`,
//!   untouched, for the kernel's tunnel devices.

use alloc::{collections::BTreeSet, vec::Vec};

use crate::{
    layout::*,
    maps::{
        DECAP_IP6IP6, DECAP_IPIP, DECAP_REFUSED_V4, DECAP_REFUSED_V6, FAMILY_V4, FAMILY_V6,
        TunnelSource,
    },
};

/// The `decap` program's answer for one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecapVerdict {
    pub action: u32,
    /// The frame as the program leaves it.
    pub data: Vec<u8>,
    /// The `DECAP_STATS` slot counted, if any.
    pub counted: Option<u32>,
}

/// The upper-layer protocol of the IPv6 packet whose first next-header
/// value is `next` and whose extension headers start at `off`; `None` when
/// the chain is longer than `IPV6_MAX_EXT` or cut short.
fn upper_v6(pkt: &[u8], mut next: u8, mut off: usize) -> Option<u8> {
    for _ in 0..IPV6_MAX_EXT {
        let h = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT | IPPROTO_AH => {
                pkt.get(off..off + 2)?
            }
            _ => return Some(next),
        };
        off += match next {
            IPPROTO_FRAGMENT => 8,
            IPPROTO_AH => (usize::from(h[1]) + 2) * 4,
            _ => (usize::from(h[1]) + 1) * 8,
        };
        next = h[0];
    }
    match next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT | IPPROTO_AH => None,
        _ => Some(next),
    }
}

/// Run the `decap` program's rules on `frame`, accepting IP-in-IP from `sources`.
pub fn decap(frame: &[u8], sources: &BTreeSet<TunnelSource>) -> DecapVerdict {
    let pass = || DecapVerdict {
        action: XDP_PASS,
        data: frame.to_vec(),
        counted: None,
    };
    let be16 = |off: usize| {
        frame
            .get(off..off + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let Some(mut ty) = be16(ETH_TYPE_OFF) else {
        return pass();
    };
    let mut l2 = ETH_HLEN;
    if ty == ETH_P_8021Q || ty == ETH_P_8021AD {
        let Some(inner) = be16(ETH_TYPE_OFF + VLAN_HLEN) else {
            return pass();
        };
        ty = inner;
        l2 += VLAN_HLEN;
    }
    let source = |family: u8, a: &[u8]| {
        let mut addr = [0u8; 16];
        addr[..a.len()].copy_from_slice(a);
        TunnelSource {
            addr,
            family,
            _pad: [0; 3],
        }
    };
    // (outer family, listed, strippable outer header length)
    let (refused, listed, strip) = match ty {
        ETH_P_IPV4 => {
            let Some(h) = frame.get(l2..l2 + IPV4_MIN_HLEN) else {
                return pass();
            };
            if h[0] >> 4 != 4 || !is_tunnel_proto(h[9]) {
                return pass();
            }
            let frag = IPV4_FRAG_OFFSET_MASK | IPV4_MORE_FRAGMENTS;
            let unfragmented = u16::from_be_bytes([h[6], h[7]]) & frag == 0;
            let whole = h[0] == 0x45 && h[9] == IPPROTO_IPIP && unfragmented;
            (
                DECAP_REFUSED_V4,
                sources.contains(&source(FAMILY_V4, &h[12..16])),
                whole.then_some((IPV4_MIN_HLEN, DECAP_IPIP)),
            )
        }
        ETH_P_IPV6 => {
            let Some(h) = frame.get(l2..l2 + IPV6_HLEN) else {
                return pass();
            };
            if h[0] >> 4 != 6 {
                return pass();
            }
            if upper_v6(frame, h[6], l2 + IPV6_HLEN).is_some_and(|p| !is_tunnel_proto(p)) {
                return pass();
            }
            (
                DECAP_REFUSED_V6,
                sources.contains(&source(FAMILY_V6, &h[8..24])),
                (h[6] == IPPROTO_IPV6).then_some((IPV6_HLEN, DECAP_IP6IP6)),
            )
        }
        _ => return pass(),
    };
    if !listed {
        return DecapVerdict {
            action: XDP_DROP,
            data: frame.to_vec(),
            counted: Some(refused),
        };
    }
    let Some((outer, slot)) = strip else {
        return pass();
    };
    let mut data = frame[..l2].to_vec();
    data.extend_from_slice(&frame[l2 + outer..]);
    DecapVerdict {
        action: XDP_PASS,
        data,
        counted: Some(slot),
    }
}
