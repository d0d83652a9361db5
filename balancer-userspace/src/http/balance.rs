//! Choosing a server for a request without a valid persistence cookie:
//! HAProxy's `balance roundrobin | leastconn | source`, over the servers
//! that may take new users (up, weight > 0).
//!
//! - `roundrobin`: smooth weighted round robin (each pick adds every
//!   server's weight to its running score, takes the highest, subtracts the
//!   total): over any window of `sum(weights)` picks each server gets
//!   exactly its weight, interleaved rather than in runs.
//! - `leastconn`: fewest requests in flight relative to weight; ties go
//!   round robin so idle servers share the first requests.
//! - `source`: weighted rendezvous hashing of the client address: a client
//!   keeps its server while the set does not change, and when a server
//!   leaves only its clients move (the same property as the data plane's
//!   Maglev tables, without building a table per change).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

/// A server that may be picked: its backend id and weight (> 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: u32,
    pub weight: u32,
}

/// Smooth weighted round robin state of one backend, keyed by server id
/// so that it survives changes of the server set.
#[derive(Debug, Default)]
pub struct SmoothWrr {
    current: HashMap<u32, i64>,
}

impl SmoothWrr {
    pub fn pick(&mut self, candidates: &[Candidate]) -> Option<u32> {
        let total: i64 = candidates.iter().map(|c| i64::from(c.weight)).sum();
        if total == 0 {
            return None;
        }
        // Forget servers that left, so a returning one starts fresh.
        self.current
            .retain(|id, _| candidates.iter().any(|c| c.id == *id));
        let mut best: Option<(u32, i64)> = None;
        for c in candidates {
            let cur = self.current.entry(c.id).or_insert(0);
            *cur += i64::from(c.weight);
            if best.is_none_or(|(_, b)| *cur > b) {
                best = Some((c.id, *cur));
            }
        }
        let (id, _) = best?;
        if let Some(cur) = self.current.get_mut(&id) {
            *cur -= total;
        }
        Some(id)
    }
}

/// Requests in flight per server id (for `leastconn` and for metrics).
#[derive(Debug, Default)]
pub struct InFlight {
    counts: Mutex<HashMap<u32, Arc<AtomicUsize>>>,
}

/// Decrements its server's in-flight count when dropped.
#[derive(Debug)]
pub struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl InFlight {
    fn counter(&self, id: u32) -> Arc<AtomicUsize> {
        let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(id).or_default().clone()
    }

    pub fn get(&self, id: u32) -> usize {
        self.counter(id).load(Ordering::Relaxed)
    }

    /// Count one request on `id` until the guard is dropped.
    pub fn start(&self, id: u32) -> InFlightGuard {
        let c = self.counter(id);
        c.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(c)
    }
}

/// `leastconn`: the lowest `in_flight / weight` (compared exactly as
/// `a.in_flight * b.weight < b.in_flight * a.weight`); among equals, the
/// first at or after `rotate` (a counter the caller advances), so ties are
/// spread.
pub fn least_conn(
    candidates: &[Candidate],
    in_flight: impl Fn(u32) -> usize,
    rotate: usize,
) -> Option<u32> {
    if candidates.is_empty() {
        return None;
    }
    let n = candidates.len();
    let mut best: Option<(Candidate, usize)> = None;
    for k in 0..n {
        let c = candidates[(rotate + k) % n];
        let f = in_flight(c.id);
        let better = match best {
            None => true,
            Some((b, bf)) => {
                (f as u128) * u128::from(b.weight) < (bf as u128) * u128::from(c.weight)
            }
        };
        if better {
            best = Some((c, f));
        }
    }
    best.map(|(c, _)| c.id)
}

/// `source`: the candidate with the highest weighted rendezvous score for
/// `client` (score = -weight / ln(u), u uniform in (0, 1) from a hash of
/// client and server id).
pub fn source(candidates: &[Candidate], client: IpAddr) -> Option<u32> {
    let addr: [u8; 16] = match client {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    candidates
        .iter()
        .map(|c| {
            let mut buf = [0u8; 20];
            buf[..16].copy_from_slice(&addr);
            buf[16..].copy_from_slice(&c.id.to_be_bytes());
            let h = xxhash_rust::xxh64::xxh64(&buf, 0x5eed);
            // 53 random bits into (0, 1).
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            (c.id, -f64::from(c.weight) / u.ln())
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(id, _)| id)
}

/// What chose a request's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// The persistence cookie.
    Cookie,
    /// The client's stick entry (`stick match`).
    Stick,
    /// The balancing algorithm.
    Balance,
}

impl Chosen {
    /// Persistent: the request goes to its user's server, not anywhere
    /// (so it waits in that server's queue, and goes elsewhere after a
    /// failed connection only with `option redispatch`).
    pub fn persistent(self) -> bool {
        self != Chosen::Balance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(w: &[u32]) -> Vec<Candidate> {
        w.iter()
            .enumerate()
            .map(|(i, &weight)| Candidate {
                id: i as u32 + 10,
                weight,
            })
            .collect()
    }

    #[test]
    fn smooth_wrr_gives_each_its_weight_interleaved() {
        let c = cands(&[5, 1, 1]);
        let mut rr = SmoothWrr::default();
        let picks: Vec<u32> = (0..7).map(|_| rr.pick(&c).unwrap()).collect();
        // nginx's classic example: a a b a c a a (never b or c twice in a row).
        assert_eq!(picks, [10, 10, 11, 10, 12, 10, 10]);
        let mut n = HashMap::new();
        for _ in 0..7000 {
            *n.entry(rr.pick(&c).unwrap()).or_insert(0) += 1;
        }
        assert_eq!((n[&10], n[&11], n[&12]), (5000, 1000, 1000));
        assert_eq!(rr.pick(&[]), None);
        assert_eq!(rr.pick(&cands(&[0, 0])), None);
    }

    #[test]
    fn least_conn_prefers_the_least_loaded_per_weight() {
        let c = cands(&[1, 2, 1]);
        let load = |id: u32| match id {
            10 => 3,
            11 => 4, // 4 / 2 = 2 per weight: the least
            _ => 3,
        };
        assert_eq!(least_conn(&c, load, 0), Some(11));
        // Ties rotate.
        let picks: Vec<u32> = (0..3)
            .map(|r| {
                least_conn(
                    &c[..1].iter().chain(&c[2..]).copied().collect::<Vec<_>>(),
                    |_| 0,
                    r,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(picks, [10, 12, 10]);
        let f = InFlight::default();
        let g = f.start(10);
        assert_eq!(f.get(10), 1);
        drop(g);
        assert_eq!(f.get(10), 0);
    }

    #[test]
    fn source_is_stable_and_moves_only_the_lost_servers_clients() {
        let all = cands(&[1, 1, 1, 1]);
        let without = &all[..3];
        let clients: Vec<IpAddr> = (0..4000u32)
            .map(|i| IpAddr::from([198, 18, (i >> 8) as u8, i as u8]))
            .collect();
        let mut per = HashMap::new();
        let mut moved = 0;
        for c in &clients {
            let a = source(&all, *c).unwrap();
            assert_eq!(source(&all, *c), Some(a), "stable");
            *per.entry(a).or_insert(0) += 1;
            let b = source(without, *c).unwrap();
            if a != 13 {
                assert_eq!(a, b, "{c} moved although its server stayed");
            } else {
                moved += 1;
            }
        }
        // Even spread within 10%.
        for (_, n) in per {
            assert!((900..=1100).contains(&n), "{n}");
        }
        assert!(moved > 0);
        // Weight 3 vs 1: about 3/4 of the clients.
        let w = cands(&[3, 1]);
        let heavy = clients
            .iter()
            .filter(|c| source(&w, **c) == Some(10))
            .count();
        assert!((2800..=3200).contains(&heavy), "{heavy}");
    }
}
