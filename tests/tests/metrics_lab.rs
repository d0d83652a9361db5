//! The Prometheus endpoint (`[metrics] bind`) against real traffic: the
//! counters it reports are the data plane's (checked against what the
//! clients did and what the backends' logs show), server state and health
//! checks are reflected, the stick-table count catches up, and anything
//! but `GET /metrics` gets a 4xx.

mod service;

use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

use balancer_tests::{http::parse_metrics, proc::wait_for};
use service::{ServiceSpec, service};

const CLIENTS: usize = 30;
const METRICS: &str = "127.0.0.1:9100";

/// `name{labels}` -> value, from the text format.
fn scrape(svc: &service::Service) -> BTreeMap<String, f64> {
    let out = svc
        .lab
        .balancer
        .run("curl", &["-sf", &format!("http://{METRICS}/metrics")])
        .expect("GET /metrics");
    parse_metrics(&out)
}

fn status_of(svc: &service::Service, args: &[&str]) -> String {
    let mut a = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}"];
    a.extend_from_slice(args);
    svc.lab.balancer.run("curl", &a).unwrap()
}

#[test]
fn metrics_report_the_data_plane_and_server_states() {
    let mut svc = service(&ServiceSpec {
        forward: "dsr-l2",
        dataplane: &format!("\n[metrics]\nbind = \"{METRICS}\"\ntable_count_interval = \"1s\"\n"),
        stick_size: "10k",
        ipv6_stick_size: None,
        sources: CLIENTS,
        backend_extra: "",
        server_extra: "check = true\ninter = \"500ms\"\n",
        haproxy_cfg: false,
    });
    let clients: Vec<Ipv4Addr> = svc.sources.clone();
    let before = scrape(&svc);
    let r = svc.round("traffic", &clients, 3);

    let m = scrape(&svc);
    let get = |m: &BTreeMap<String, f64>, k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("{k} missing from /metrics: {:?}", m.keys()))
    };
    let delta = |k: &str| get(&m, k) - before.get(k).copied().unwrap_or(0.0);
    // Each client's first SYN stored an entry (the probe's client already
    // had one); the other connections' packets all hit.
    let new = delta(r#"balancer_frontend_stick_misses_total{frontend="web",kind="new_entry"}"#);
    assert_eq!(new as usize, CLIENTS - 1, "new entries");
    let packets = delta(r#"balancer_frontend_packets_total{frontend="web"}"#);
    let hits = delta(r#"balancer_frontend_stick_hits_total{frontend="web"}"#);
    assert_eq!(
        hits + new,
        packets,
        "every VIP packet hits or makes an entry"
    );
    // 3 connections per client, each at least SYN, ACK, request, FIN, ACK.
    assert!(packets >= (CLIENTS * 3 * 5) as f64, "{packets} packets");
    // Per-server packets add up to the frontend's, and each server got
    // traffic exactly when its log shows clients.
    let mut sum = 0.0;
    for j in 0..3 {
        let p = delta(&format!(
            r#"balancer_server_packets_total{{backend="web",server="s{j}"}}"#
        ));
        let served = clients
            .iter()
            .filter(|c| service::Service::home(&r, c) == j)
            .count();
        assert_eq!(p > 0.0, served > 0, "s{j}: {p} packets, {served} clients");
        sum += p;
    }
    assert_eq!(sum, packets, "per-server packets add up to the frontend's");
    assert_eq!(
        get(&m, r#"balancer_server_up{backend="web",server="s1"}"#),
        1.0
    );
    let latency = get(
        &m,
        r#"balancer_server_check_duration_seconds{backend="web",server="s0"}"#,
    );
    assert!(latency > 0.0 && latency < 0.5, "check latency {latency} s");
    // size "10k": 10 x 1,024, as HAProxy counts it.
    assert_eq!(get(&m, "balancer_stick_table_capacity"), 10_240.0);

    // The table count catches up (counted every second).
    assert!(
        wait_for(Duration::from_secs(5), || {
            scrape(&svc).get("balancer_stick_table_entries") == Some(&(CLIENTS as f64))
        }),
        "stick-table entries never reached {CLIENTS}: {:?}",
        scrape(&svc).get("balancer_stick_table_entries")
    );

    // State changes show.
    svc.lab.cli(&["backend", "state", "s1", "maint"]).unwrap();
    let m = scrape(&svc);
    assert_eq!(
        get(&m, r#"balancer_server_up{backend="web",server="s1"}"#),
        0.0
    );
    assert_eq!(
        get(
            &m,
            r#"balancer_server_state{backend="web",server="s1",state="maint"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            r#"balancer_server_state{backend="web",server="s1",state="up"}"#
        ),
        0.0
    );

    // Only GET /metrics.
    let url = format!("http://{METRICS}/metrics");
    assert_eq!(status_of(&svc, &["-X", "POST", &url]), "405");
    assert_eq!(status_of(&svc, &[&format!("http://{METRICS}/nope")]), "404");
}
