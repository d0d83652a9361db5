//! The host model of the XDP program (`balancer-common`: `packet::parse`,
//! `classify`, `model::Model`): `packet_model`. The compiled program is
//! held to this model by `tests/tests/xdp_differential.rs`; this target
//! holds the model to the rules its documentation states.

use std::cell::RefCell;

use balancer_common::{
    classify::classify,
    hash::MAGLEV_M,
    layout::{
        ETH_ALEN, ETH_HLEN, IPPROTO_IPIP, IPPROTO_IPV6, IPV4_MIN_HLEN, IPV6_HLEN, VLAN_HLEN,
        XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX, ipv4_header_checksum,
    },
    maps::{
        Backend, FAMILY_V4, FAMILY_V6, MODE_DSR_L2, MODE_IPIP, STATE_DOWN, STATE_DRAIN,
        STATE_MAINT, STATE_UP, StickKey, VipInfo,
    },
    model::Model,
    packet::{FlowKind, parse},
    stats::Class,
};

const INGRESS: u32 = 2;
const EGRESS: u32 = 3;
const NOW_NS: u64 = 5_000_000_000;

thread_local! {
    /// A model whose one VIP (id 1) spreads clients over backends 1 and 2:
    /// the Maglev table (256 KiB) is built once; everything else is reset
    /// for each input.
    static MODEL: RefCell<Model> = RefCell::new(Model {
        maglev: [(1, (0..MAGLEV_M).map(|i| 1 + i % 2).collect())].into(),
        ..Model::default()
    });
}

fn backend(id: u8, family: u8, state: u8, mtu: u32, ifindex: u32) -> Backend {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&[198, 18, 9, id]);
    Backend {
        addr,
        family,
        state,
        weight: 1,
        ifindex,
        mtu,
        dst_mac: [2, 0, 0, 0, 9, id],
        src_mac: [2, 0, 0, 0, 8, 1],
        ..Backend::default()
    }
}

/// The parser's own rules: one class, consistent with the flow it found.
fn check_parse(frame: &[u8]) {
    let p = parse(frame);
    assert_eq!(classify(frame), p.class);
    assert!(p.l2_len == ETH_HLEN || p.l2_len == ETH_HLEN + VLAN_HLEN);
    let Some(flow) = p.flow else {
        return;
    };
    let (v4, v6) = (
        [Class::Ipv4Tcp, Class::Ipv4Udp, Class::Ipv4Other],
        [Class::Ipv6Tcp, Class::Ipv6Udp, Class::Ipv6Other],
    );
    match flow.vip.family {
        FAMILY_V4 => assert!(v4.contains(&p.class), "{p:?}"),
        FAMILY_V6 => assert!(v6.contains(&p.class), "{p:?}"),
        f => panic!("family {f}"),
    }
    let other = matches!(p.class, Class::Ipv4Other | Class::Ipv6Other);
    assert_eq!(flow.kind != FlowKind::Normal, other, "{p:?}");
    assert!(!flow.opening || flow.kind == FlowKind::Normal);
}

/// Input: a control byte (bit 0: `ipip`, else `dsr-l2`; bit 1: entries
/// never expire; bits 2-3: the backends' state; bit 4: an insert cap of
/// one; bit 5: backends of the other family; bit 6: egress through the
/// devmap, bit 7: through an interface in neither; an MTU byte), then an
/// Ethernet frame. The frame's flow, if it has one, is the VIP.
///
/// Asserts: the parser's rules (one class, the class of the flow); passed
/// and dropped frames leave untouched; a forwarded frame has the backend's
/// MACs and the original packet, after a well-formed outer header in
/// `ipip` mode (right length, valid checksum) that the parser reads back;
/// the same frame again gets the same verdict (stickiness); counters add up.
pub fn packet_model(data: &[u8]) {
    let [ctl, mtu, frame @ ..] = data else {
        return;
    };
    check_parse(frame);
    let p = parse(frame);
    let ipip = ctl & 1 != 0;
    let state = [STATE_UP, STATE_DRAIN, STATE_DOWN, STATE_MAINT][usize::from(ctl >> 2 & 3)];
    MODEL.with_borrow_mut(|m| {
        let maglev = std::mem::take(&mut m.maglev);
        *m = Model {
            maglev,
            ..Model::default()
        };
        m.config.insert_cap = u32::from(ctl & 16 != 0);
        m.config.tun_src_v4 = [198, 18, 8, 1];
        m.config.stick_refresh_ns = 1_000_000_000;
        m.egress.insert(EGRESS);
        let family = p.flow.map_or(FAMILY_V4, |f| f.vip.family);
        let family = match ctl & 32 {
            0 => family,
            _ if family == FAMILY_V4 => FAMILY_V6,
            _ => FAMILY_V4,
        };
        let ifindex = match ctl >> 6 {
            0 => INGRESS,
            1 => EGRESS,
            _ => 99,
        };
        let mtu = 40 + 8 * u32::from(*mtu);
        for id in [1, 2] {
            let b = backend(id, family, state, mtu, ifindex);
            m.backends.insert(u32::from(id), b);
        }
        if let Some(flow) = p.flow {
            let info = VipInfo {
                id: 1,
                mode: if ipip { MODE_IPIP } else { MODE_DSR_L2 },
                expire_ns: if ctl & 2 != 0 { 0 } else { 30_000_000_000 },
                ..VipInfo::default()
            };
            m.vips.insert(flow.vip, info);
        }

        let first = m.process(frame, NOW_NS, INGRESS);
        let total: u64 = m.classes.iter().map(|c| c.packets).sum();
        assert_eq!(total, 1);
        assert_eq!(m.classes[p.class.index() as usize].packets, 1);
        match first.action {
            XDP_PASS | XDP_DROP => assert_eq!(first.data, frame, "edited, then not sent"),
            XDP_TX | XDP_REDIRECT => check_forwarded(m, frame, &first.data, ipip),
            other => panic!("verdict {other}"),
        }
        if p.flow.is_none() || p.class == Class::Malformed {
            assert_eq!(first.action, XDP_PASS);
        }
        if let Some(flow) = p.flow {
            let key = StickKey {
                vip_id: 1,
                addr: flow.client,
            };
            if let Some(entry) = m.stick.get(&key) {
                let b = &m.backends[&entry.backend];
                assert!(first.action != XDP_PASS);
                if first.action != XDP_DROP {
                    assert_eq!(
                        first.data[..ETH_ALEN],
                        b.dst_mac,
                        "not to the stick entry's"
                    );
                }
            }
        }
        let second = m.process(frame, NOW_NS + 1_000_000, INGRESS);
        assert_eq!(second, first, "the same frame, another verdict");
    });
}

/// A frame the model forwards: MACs, and the packet as it was (after an
/// outer header in `ipip` mode).
fn check_forwarded(m: &Model, frame: &[u8], out: &[u8], ipip: bool) {
    let l2 = parse(frame).l2_len;
    let b = m
        .backends
        .values()
        .find(|b| out[..ETH_ALEN] == b.dst_mac)
        .expect("sent to a backend's MAC");
    assert_eq!(out[ETH_ALEN..2 * ETH_ALEN], b.src_mac);
    assert_eq!(out[2 * ETH_ALEN..l2], frame[2 * ETH_ALEN..l2]);
    let inner = &frame[l2..];
    if !ipip {
        assert_eq!(out.len(), frame.len());
        assert_eq!(&out[l2..], inner);
        return;
    }
    let outer_len = if b.family == FAMILY_V4 {
        IPV4_MIN_HLEN
    } else {
        IPV6_HLEN
    };
    assert_eq!(out.len(), frame.len() + outer_len);
    assert!(inner.len() + outer_len <= b.mtu as usize, "over the MTU");
    assert_eq!(&out[l2 + outer_len..], inner);
    let outer = &out[l2..l2 + outer_len];
    if b.family == FAMILY_V4 {
        let hdr: &[u8; IPV4_MIN_HLEN] = outer.try_into().expect("20 bytes");
        assert_eq!(ipv4_header_checksum(hdr), 0, "bad checksum");
        assert_eq!(outer[9], IPPROTO_IPIP);
        assert_eq!(
            usize::from(u16::from_be_bytes([outer[2], outer[3]])),
            inner.len() + 20
        );
        assert_eq!(parse(out).class, Class::Ipv4Other);
    } else {
        assert_eq!(outer[6], IPPROTO_IPV6);
        assert_eq!(
            usize::from(u16::from_be_bytes([outer[4], outer[5]])),
            inner.len()
        );
        assert_eq!(parse(out).class, Class::Ipv6Other);
    }
}
