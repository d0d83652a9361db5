//! Placing a name's addresses in a template's slots, stably: the rule that
//! keeps sticky users on their server across re-resolutions.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use super::Target;

/// What a filled slot holds, for placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub addr: IpAddr,
    /// SRV port (else `None`).
    pub port: Option<u16>,
    pub last_seen: Instant,
}

/// What becomes of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Its address is still in the answer (at this index of `targets`).
    Kept(usize),
    /// Its address left the answer less than `hold_obsolete` ago: unchanged.
    Held,
    /// Its address left the answer (or it was empty and stays empty).
    Empty,
    /// It takes a new address: `targets[i]`.
    Filled(usize),
}

/// Place `targets` in `slots`: a slot whose (address, port) is in
/// `targets` keeps it, whatever the order of the answer; one whose address
/// is gone is held for `hold_obsolete` after it was last seen, then freed;
/// each new address takes the lowest free slot, in the answer's order.
/// Returns the placement of every slot and how many addresses found no slot.
pub fn place(
    slots: &[Option<Slot>],
    targets: &[Target],
    now: Instant,
    hold_obsolete: Duration,
) -> (Vec<Placement>, usize) {
    let key = |t: &Target| (t.addr, t.port);
    let mut placed = vec![false; targets.len()];
    let mut out: Vec<Placement> = slots
        .iter()
        .map(|s| {
            let Some(s) = s else {
                return Placement::Empty;
            };
            let found = targets
                .iter()
                .enumerate()
                .position(|(i, t)| !placed[i] && key(t) == (s.addr, s.port));
            match found {
                Some(i) => {
                    placed[i] = true;
                    Placement::Kept(i)
                }
                None if now.saturating_duration_since(s.last_seen) < hold_obsolete => {
                    Placement::Held
                }
                None => Placement::Empty,
            }
        })
        .collect();
    // An address listed twice (e.g. two SRV records naming one target and
    // port) counts once.
    for i in 0..targets.len() {
        if targets[..i].iter().any(|t| key(t) == key(&targets[i])) {
            placed[i] = true;
        }
    }
    // Slots held for hold_obsolete still own their address.
    let held: Vec<(IpAddr, Option<u16>)> = slots
        .iter()
        .zip(&out)
        .filter(|(_, p)| **p == Placement::Held)
        .filter_map(|(s, _)| s.map(|s| (s.addr, s.port)))
        .collect();
    let mut unplaced = 0;
    for (i, t) in targets.iter().enumerate() {
        if placed[i] || held.contains(&key(t)) {
            continue;
        }
        match out.iter().position(|p| *p == Placement::Empty) {
            Some(free) => out[free] = Placement::Filled(i),
            None => unplaced += 1,
        }
    }
    (out, unplaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(a: &str) -> Target {
        Target {
            addr: a.parse().unwrap(),
            port: None,
            record: format!("A {a}"),
            ttl: 30,
        }
    }

    /// Apply a placement: the new slot contents.
    fn apply(slots: &[Option<Slot>], targets: &[Target], now: Instant) -> Vec<Option<Slot>> {
        let (p, _) = place(slots, targets, now, Duration::ZERO);
        p.iter()
            .zip(slots)
            .map(|(p, s)| match p {
                Placement::Kept(i) | Placement::Filled(i) => Some(Slot {
                    addr: targets[*i].addr,
                    port: targets[*i].port,
                    last_seen: now,
                }),
                Placement::Held => *s,
                Placement::Empty => None,
            })
            .collect()
    }

    fn addrs(slots: &[Option<Slot>]) -> Vec<Option<String>> {
        slots
            .iter()
            .map(|s| s.map(|s| s.addr.to_string()))
            .collect()
    }

    #[test]
    fn slots_are_stable_across_order_additions_and_removals() {
        let now = Instant::now();
        let empty = vec![None; 4];
        let s = apply(&empty, &[t("127.0.0.2"), t("127.0.0.3"), t("::1")], now);
        let some = |v: &[&str]| -> Vec<Option<String>> {
            v.iter()
                .map(|a| (!a.is_empty()).then(|| a.to_string()))
                .collect()
        };
        assert_eq!(addrs(&s), some(&["127.0.0.2", "127.0.0.3", "::1", ""]));
        // Reordered: nobody moves.
        let s = apply(&s, &[t("::1"), t("127.0.0.3"), t("127.0.0.2")], now);
        assert_eq!(addrs(&s), some(&["127.0.0.2", "127.0.0.3", "::1", ""]));
        // One leaves: its slot empties, the others stay.
        let s = apply(&s, &[t("::1"), t("127.0.0.2")], now);
        assert_eq!(addrs(&s), some(&["127.0.0.2", "", "::1", ""]));
        // A new one takes the lowest free slot.
        let s = apply(&s, &[t("127.0.0.9"), t("::1"), t("127.0.0.2")], now);
        assert_eq!(addrs(&s), some(&["127.0.0.2", "127.0.0.9", "::1", ""]));
        // More addresses than slots: the extra ones wait.
        let many: Vec<Target> = (2..9).map(|i| t(&format!("127.0.0.{i}"))).collect();
        let (p, unplaced) = place(&s, &many, now, Duration::ZERO);
        assert_eq!(unplaced, 3, "{p:?}");
        // Duplicates count once.
        let (p, unplaced) = place(
            &empty,
            &[t("127.0.0.2"), t("127.0.0.2")],
            now,
            Duration::ZERO,
        );
        assert_eq!(unplaced, 0);
        assert_eq!(p.iter().filter(|p| **p != Placement::Empty).count(), 1);
    }

    #[test]
    fn a_gone_address_is_held_for_hold_obsolete() {
        let t0 = Instant::now();
        let slots = vec![
            Some(Slot {
                addr: "127.0.0.2".parse().unwrap(),
                port: None,
                last_seen: t0,
            }),
            None,
        ];
        let hold = Duration::from_secs(10);
        let (p, _) = place(&slots, &[t("127.0.0.3")], t0 + Duration::from_secs(5), hold);
        assert_eq!(p, [Placement::Held, Placement::Filled(0)]);
        let (p, _) = place(&slots, &[], t0 + Duration::from_secs(11), hold);
        assert_eq!(p, [Placement::Empty, Placement::Empty]);
        // SRV: the same address on another port is another server (which
        // takes the slot the old one freed, the lowest free).
        let mut srv = t("127.0.0.2");
        srv.port = Some(8080);
        let (p, _) = place(&slots, &[srv], t0, Duration::ZERO);
        assert_eq!(p, [Placement::Filled(0), Placement::Empty]);
    }
}
