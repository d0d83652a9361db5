//! `balancer table show` of a large stick table through the real daemon and
//! CLI: 100,000 entries written straight into the pinned map
//! (BPF_MAP_UPDATE_BATCH), listed in full both ways (`--json`, table), with
//! the daemon's peak RSS barely moving (its answer is streamed a batch at a
//! time; as a `serde_json::Value` it took about 1 KB per entry, ~100 MB
//! here).

use std::{
    net::{Ipv4Addr, SocketAddr},
    os::fd::AsFd as _,
};

use balancer_common::maps::{STICK_MAP, StickKey, StickValue};
use balancer_tests::http::Svc;

const N: usize = 100_000;
/// Peak RSS growth allowed for the listing (entries: 40 bytes each).
const MAX_GROWTH_KIB: u64 = 32 * 1024;

fn hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM")
}

fn client(i: usize) -> Ipv4Addr {
    // 198.18.0.0/15 holds 131,072 addresses.
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i as u32)
}

#[test]
fn a_100k_entry_table_show_streams_in_bounded_daemon_memory() {
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    // A stick table of its own sizes the kernel's (an HTTP backend without
    // one reserves no entries).
    let svc = Svc::start_on(
        "table-listing",
        "stick_table = { size = \"128k\" }\nstick = \"on src\"\n",
        &[("s", nowhere, "")],
    );
    let map = balancer::stick_batch::obj_get(&svc.pin_dir.join(STICK_MAP)).expect("pinned STICK");
    let keys: Vec<StickKey> = (0..N)
        .map(|i| {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&client(i).octets());
            StickKey { vip_id: 0, addr }
        })
        .collect();
    let values = vec![
        StickValue {
            backend: 4242,
            _pad: 0,
            last_seen_ns: 0,
        };
        N
    ];
    balancer::stick_batch::update(map.as_fd(), &keys, &values).expect("batch insert");

    let pid = svc.daemon.pid();
    let before = hwm_kib(pid);
    let json = svc.cli(&["table", "show", "--json"]);
    let growth = hwm_kib(pid).saturating_sub(before);
    let v: serde_json::Value = serde_json::from_str(&json).expect("--json is one JSON array");
    let rows = v.as_array().expect("an array");
    assert_eq!(rows.len(), N, "every entry listed");
    let mut clients: Vec<&str> = rows.iter().map(|r| r["client"].as_str().unwrap()).collect();
    clients.sort_unstable();
    clients.dedup();
    assert_eq!(clients.len(), N, "each entry once");
    let r = &rows[0];
    assert_eq!(r["server_id"], 4242);
    assert_eq!(r["server"], serde_json::Value::Null, "an id no server has");
    assert!(r["idle_ms"].as_u64().is_some(), "{r}");
    println!("table show of {N} entries: daemon peak RSS +{growth} KiB");
    assert!(
        growth < MAX_GROWTH_KIB,
        "the daemon's peak RSS grew by {growth} KiB for the listing (limit {MAX_GROWTH_KIB})"
    );

    // The table view: a header and one line per entry.
    let text = svc.cli(&["table", "show"]);
    assert_eq!(text.lines().count(), N + 1);
    assert!(text.contains(&client(N - 1).to_string()));
}
