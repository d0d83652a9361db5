//! Shared by the data-plane test files: the real program and the reference
//! model driven side by side with the same map contents.
#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeMap;

use balancer::{
    dataplane::{Dataplane, LoadOptions},
    testrun::test_run,
};
use balancer_common::{
    hash::{MAGLEV_M, NO_BACKEND},
    layout::*,
    maglev::{MaglevBackend, build},
    maps::*,
    model::{Model, Verdict},
    stats::Class,
};
use balancer_tests::require_root;

/// Test-run frames arrive on the loopback device of the test's namespace.
pub const LO_IFINDEX: u32 = 1;

/// Pin this thread to one CPU: per-CPU counters and the flood guard's
/// per-CPU window must all be the ones the model mirrors.
pub fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0,
            "sched_setaffinity"
        );
    }
}

/// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns.
pub use balancer::util::monotonic_ns;

pub struct Pair {
    pub dp: Dataplane,
    pub model: Model,
    /// Per VIP id: the backends in its pool, (id, name).
    pools: BTreeMap<u32, Vec<(u32, String)>>,
}

pub fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut o = [0u8; 16];
    o[..4].copy_from_slice(&a);
    o
}

pub fn v6(a: std::net::Ipv6Addr) -> [u8; 16] {
    a.octets()
}

impl Pair {
    pub fn new() -> Pair {
        require_root();
        pin_to_cpu0();
        let dp = Dataplane::load_with(LoadOptions {
            stick_size: 1 << 16,
            max_vips: 8,
            max_backends: 64,
        })
        .unwrap_or_else(|e| panic!("loading the XDP program: {e}"));
        let mut p = Pair {
            dp,
            model: Model::default(),
            pools: BTreeMap::new(),
        };
        p.set_config(GlobalConfig {
            stick_refresh_ns: 10_000_000_000,
            insert_cap: 0,
            tun_src_v4: [198, 18, 1, 1],
            tun_src_v6: v6("2001:db8:0:1::1".parse().unwrap()),
        });
        p
    }

    pub fn set_config(&mut self, cfg: GlobalConfig) {
        self.dp.set_config(&cfg).unwrap();
        self.model.config = cfg;
    }

    pub fn add_vip(&mut self, key: VipKey, info: VipInfo) {
        self.dp.set_vip(&key, &info).unwrap();
        self.model.vips.insert(key, info);
    }

    pub fn remove_vip(&mut self, key: VipKey) {
        self.dp.remove_vip(&key).unwrap();
        self.model.vips.remove(&key);
    }

    pub fn set_backend(&mut self, id: u32, b: Backend) {
        self.dp.set_backend(id, &b).unwrap();
        if b.state == STATE_EMPTY {
            self.model.backends.remove(&id);
        } else {
            self.model.backends.insert(id, b);
        }
    }

    pub fn set_state(&mut self, id: u32, state: u8) {
        let mut b = self.dp.backend(id).unwrap();
        b.state = state;
        self.set_backend(id, b);
        self.rebuild_all();
    }

    /// Give a VIP its pool and build its Maglev table from the pool's up
    /// backends (as the control plane will).
    pub fn set_pool(&mut self, vip_id: u32, pool: &[(u32, &str)]) {
        self.pools.insert(
            vip_id,
            pool.iter().map(|(i, n)| (*i, n.to_string())).collect(),
        );
        self.rebuild(vip_id);
    }

    pub fn rebuild_all(&mut self) {
        let ids: Vec<u32> = self.pools.keys().copied().collect();
        for id in ids {
            self.rebuild(id);
        }
    }

    fn rebuild(&mut self, vip_id: u32) {
        let pool = &self.pools[&vip_id];
        let members: Vec<MaglevBackend<'_>> = pool
            .iter()
            .filter(|(id, _)| {
                self.model
                    .backends
                    .get(id)
                    .is_some_and(|b| b.state == STATE_UP)
            })
            .map(|(id, name)| MaglevBackend {
                id: *id,
                key: name.as_bytes(),
                weight: self.model.backends[id].weight.max(1),
            })
            .collect();
        let table = build(&members, MAGLEV_M).expect("maglev build");
        let previous = self.model.maglev.get(&vip_id).cloned();
        self.dp
            .set_maglev(vip_id, &table, previous.as_deref())
            .unwrap();
        self.model.maglev.insert(vip_id, table);
    }

    /// Put the same stick entry in both.
    pub fn set_stick(&mut self, key: StickKey, value: StickValue) {
        self.dp.stick_set(&key, &value).unwrap();
        self.model.stick.insert(key, value);
    }

    /// Run one frame through both; assert they agree on the verdict and
    /// (unless dropped) the output bytes. Returns the program's verdict.
    pub fn run(&mut self, what: &str, frame: &[u8]) -> Verdict {
        let now = monotonic_ns();
        let r = test_run(self.dp.program_fd().unwrap(), frame, 1)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let want = self.model.process(frame, now, LO_IFINDEX);
        assert_eq!(
            r.action, want.action,
            "{what}: action (program vs model) for {frame:02x?}"
        );
        if r.action != XDP_DROP {
            assert_eq!(r.data, want.data, "{what}: output bytes (program vs model)");
        }
        Verdict {
            action: r.action,
            data: r.data,
        }
    }

    /// Stick table, counters: program == model (timestamps aside: the two
    /// clocks are read microseconds apart).
    pub fn assert_state_matches(&self, what: &str) {
        let mut prog: Vec<(StickKey, u32)> = self
            .dp
            .stick_entries(None)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.backend))
            .collect();
        prog.sort();
        let model: Vec<(StickKey, u32)> = self
            .model
            .stick
            .iter()
            .map(|(k, v)| (*k, v.backend))
            .collect();
        assert_eq!(prog.len(), model.len(), "{what}: stick entry count");
        assert_eq!(prog, model, "{what}: stick table");
        let classes = self.dp.stats().unwrap();
        for c in Class::ALL {
            assert_eq!(
                classes.get(c),
                self.model.classes[c.index() as usize],
                "{what}: class {c:?}"
            );
        }
        for (&vip_id, want) in &self.model.vip_stats {
            assert_eq!(
                &self.dp.vip_stats(vip_id).unwrap(),
                want,
                "{what}: VIP {vip_id} counters"
            );
        }
        for (&id, want) in &self.model.backend_stats {
            assert_eq!(
                &self.dp.backend_stats(id).unwrap(),
                want,
                "{what}: backend {id} counters"
            );
        }
    }

    pub fn vip_stats(&self, vip_id: u32) -> VipStats {
        self.dp.vip_stats(vip_id).unwrap()
    }

    pub fn stick(&self, vip_id: u32, client: [u8; 16]) -> Option<StickValue> {
        self.dp
            .stick_get(&StickKey {
                vip_id,
                addr: client,
            })
            .unwrap()
    }
}

pub fn backend(family: u8, addr: [u8; 16], mac_last: u8, state: u8) -> Backend {
    Backend {
        addr,
        family,
        state,
        _pad: [0; 2],
        weight: 1,
        ifindex: LO_IFINDEX,
        mtu: 1500,
        dst_mac: [0x02, 0xb1, 0, 3, 0, mac_last],
        src_mac: [0x02, 0xb1, 0, 1, 0, 0],
    }
}

pub fn vip_key(family: u8, addr: [u8; 16], port: u16, proto: u8) -> VipKey {
    VipKey {
        addr,
        port,
        proto,
        family,
    }
}

pub fn vip_info(id: u32, mode: u8, expire_ns: u64) -> VipInfo {
    VipInfo {
        id,
        mode,
        key_prefix: 0,
        _pad: [0; 2],
        expire_ns,
    }
}

/// Which backend a forwarded frame went to, by destination MAC (dsr) or
/// outer destination (ipip), among `backends`; panics on anything else:
/// a forwarded frame must only ever reach a configured backend.
pub fn destination(v: &Verdict, backends: &BTreeMap<u32, Backend>, mode: u8, l2_len: usize) -> u32 {
    assert!(
        v.action == XDP_TX || v.action == XDP_REDIRECT,
        "not forwarded: {}",
        v.action
    );
    let mac: [u8; 6] = v.data[..6].try_into().unwrap();
    let by_mac: Vec<u32> = backends
        .iter()
        .filter(|(_, b)| b.dst_mac == mac)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(
        by_mac.len(),
        1,
        "forwarded to MAC {mac:02x?}, not exactly one configured backend"
    );
    let id = by_mac[0];
    if mode == MODE_IPIP {
        let b = &backends[&id];
        let outer = &v.data[l2_len..];
        let dst: &[u8] = if b.family == FAMILY_V4 {
            &outer[16..20]
        } else {
            &outer[24..40]
        };
        let want: &[u8] = if b.family == FAMILY_V4 {
            &b.addr[..4]
        } else {
            &b.addr
        };
        assert_eq!(dst, want, "outer destination is not backend {id}'s address");
    }
    id
}

pub const NO: u32 = NO_BACKEND;
