//! HAProxy conformance of `stick on src` on an HTTP backend.
//!
//! Each scenario is one haproxy.cfg text, run by HAProxy 2.6 and by
//! `balancer run` (the same file but for the frontend's port: no second,
//! hand-kept TOML copy), in front of the same backends; the same steps
//! then go to both: requests from clients bound to 127.0.9.N (a new connection
//! each), run-time changes made through each one's own admin interface
//! (HAProxy's stats socket, the `balancer` CLI: weights, server states,
//! `set table`), waits. For every request the two must pick the same
//! server (and, with `cookie`, both set a cookie or neither); at each
//! `Table` step their tables must hold the same entries (client, server)
//! with expiry times within a second of each other (HAProxy's `exp`,
//! balancer's `expire - idle_ms`). A difference fails the test, both
//! sides shown.
//!
//! New users' servers are made deterministic with weights: one server has
//! weight 1 and the others 0 (they only take persistent requests), and the
//! steps move the weight to send new users elsewhere.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use balancer_tests::{
    haproxy::{Haproxy, http_config},
    http::{Backend, Client, Svc},
    proc::wait_for,
    require_root,
};
const SERVERS: [&str; 3] = ["s0", "s1", "s2"];

#[derive(Clone, Debug)]
enum Step {
    /// A request from 127.0.9.N, with this `Cookie` header if any.
    Req(u8, Option<&'static str>),
    /// Weights of s0, s1, s2.
    Weights([u32; 3]),
    /// A server's state: "maint", "drain" or "ready".
    State(&'static str, &'static str),
    /// Client 127.0.9.N's entry set to a server (HAProxy's `set table`).
    Set(u8, &'static str),
    Sleep(u64),
    /// Compare the tables.
    Table,
    /// The backend stops answering (connections refused), for both.
    Kill(&'static str),
    /// Until both have marked the server down by its health checks.
    WaitDown(&'static str),
}
use Step::*;

struct Scenario {
    tag: &'static str,
    /// HAProxy's backend lines (besides `balance`, the servers, and the
    /// `stick-table` line, which is written from `expire`).
    haproxy: &'static str,
    /// The table's `expire`, in seconds.
    expire_s: u64,
    /// Initial weights of s0, s1, s2.
    weights: [u32; 3],
    /// Health checks every 100 ms, down after one failure.
    checks: bool,
}

/// Client `n`: 127.0.9.N, or for N >= 128 127.0.10.(N - 128) (another /24).
fn client(n: u8) -> IpAddr {
    match n.checked_sub(128) {
        Some(m) => IpAddr::V4(Ipv4Addr::new(127, 0, 10, m)),
        None => IpAddr::V4(Ipv4Addr::new(127, 0, 9, n)),
    }
}

/// The scenario's haproxy.cfg, for a frontend on `front` and a stats
/// socket at `sock`: HAProxy runs it, and balancer runs the same text
/// (on another port; it skips `stats socket` and `nbthread` with a
/// warning).
fn cfg_text(s: &Scenario, backends: &[Backend], front: SocketAddr, sock: &Path) -> String {
    let mut backend = format!(
        "    balance roundrobin\n    stick-table type ip size 1k expire {}s\n{}",
        s.expire_s, s.haproxy
    );
    let check = if s.checks {
        " check inter 100ms fall 1 rise 1"
    } else {
        ""
    };
    // A server's cookie value only where the backend has a cookie
    // (elsewhere HAProxy ignores it, and balancer refuses it).
    let cookie = s.haproxy.contains("cookie ");
    for (b, w) in backends.iter().zip(s.weights) {
        let value = if cookie {
            format!(" cookie {}", b.name)
        } else {
            String::new()
        };
        let _ = writeln!(
            backend,
            "    server {} {} weight {w}{value}{check}",
            b.name, b.addr
        );
    }
    http_config(front, sock, &backend)
}

/// client -> (server, ms to expiry), from HAProxy's `show table app`.
fn haproxy_table(ha: &Haproxy) -> BTreeMap<String, (String, i64)> {
    let out = ha.admin("show table app");
    out.lines()
        .filter(|l| l.contains(" key="))
        .map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .unwrap_or_else(|| panic!("no {name} in {l:?}"))
                    .to_owned()
            };
            let id: usize = field("server_id=").parse().unwrap();
            let server = SERVERS
                .get(id.wrapping_sub(1))
                .map_or(format!("id {id}"), |s| (*s).to_owned());
            (field("key="), (server, field("exp=").parse().unwrap()))
        })
        .collect()
}

/// client -> (server, ms to expiry), from `balancer table show`.
fn balancer_table(svc: &Svc, expire_s: u64) -> BTreeMap<String, (String, i64)> {
    let out = svc.cli(&["table", "show", "--json"]);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("table show: {e}: {out}"));
    rows.iter()
        .map(|r| {
            let server = r["server"].as_str().unwrap();
            let idle = r["idle_ms"].as_i64().unwrap();
            (
                r["client"].as_str().unwrap().to_owned(),
                (
                    server.trim_start_matches("app/").to_owned(),
                    expire_s as i64 * 1000 - idle,
                ),
            )
        })
        .collect()
}

/// Who answered, and whether a persistence cookie was set.
fn request(front: SocketAddr, n: u8, cookie: Option<&str>) -> (String, bool) {
    let mut c = Client::from(front, client(n));
    if let Some(v) = cookie {
        c.extra_cookie = Some(v.to_owned());
    }
    let a = c
        .get("/")
        .unwrap_or_else(|e| panic!("request from {}: {e}", client(n)));
    let set = a.header("set-cookie").is_some();
    // The proxies' own error pages differ in wording: their status counts.
    let body = if a.status == 200 {
        a.body.as_str()
    } else {
        "-"
    };
    (format!("{} {body}", a.status), set)
}

fn conform(s: Scenario, steps: &[Step]) {
    require_root();
    let backends: Vec<Backend> = SERVERS
        .iter()
        .map(|n| Backend::start(n, 0).expect("backend"))
        .collect();
    let ha = Haproxy::start(&format!("hs-{}", s.tag), |front, sock| {
        cfg_text(&s, &backends, front, sock)
    });
    let lb = Svc::launch_cfg(&format!("hs-{}", s.tag), |front| {
        cfg_text(&s, &backends, front, Path::new("/dev/null"))
    });
    let mut log = String::new();
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(log, "step {i}: {step:?}");
        match step {
            Req(n, cookie) => {
                let h = request(ha.front, *n, *cookie);
                let b = request(lb.front, *n, *cookie);
                let _ = writeln!(log, "  haproxy {h:?} balancer {b:?}");
                assert_eq!(
                    b, h,
                    "{}: step {i} {step:?}: balancer vs haproxy\n{log}",
                    s.tag
                );
            }
            Weights(w) => {
                for (name, w) in SERVERS.iter().zip(w) {
                    let a = ha.admin(&format!("set weight app/{name} {w}"));
                    assert!(a.trim().is_empty(), "haproxy: {a}");
                    lb.cli(&["backend", "weight", &format!("app/{name}"), &w.to_string()]);
                }
            }
            State(name, state) => {
                let a = ha.admin(&format!("set server app/{name} state {state}"));
                assert!(a.trim().is_empty(), "haproxy: {a}");
                let st = if *state == "ready" { "up" } else { state };
                lb.cli(&["backend", "state", &format!("app/{name}"), st]);
            }
            Set(n, server) => {
                // HAProxy 2.6 routes by an entry's `server_key` (the
                // server's name) before its `server_id`, and `set table`
                // writes only the id: the entry is made anew.
                let id = SERVERS.iter().position(|s| s == server).unwrap() + 1;
                for cmd in [
                    format!("clear table app key {}", client(*n)),
                    format!("set table app key {} data.server_id {id}", client(*n)),
                ] {
                    let a = ha.admin(&cmd);
                    assert!(a.trim().is_empty(), "haproxy: {cmd}: {a}");
                }
                lb.cli(&["table", "set", "fe", &client(*n).to_string(), server]);
            }
            Sleep(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            Kill(name) => {
                let b = backends.iter().find(|b| b.name == *name).unwrap();
                b.kill();
            }
            WaitDown(name) => {
                let line = format!("Server app/{name} is DOWN");
                assert!(
                    wait_for(Duration::from_secs(10), || ha.proc.output().contains(&line)),
                    "haproxy never marked {name} down: {}",
                    ha.proc.output()
                );
                let down = || {
                    let out = lb.cli(&["backend", "list", "--json"]);
                    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                    v.as_array()
                        .unwrap()
                        .iter()
                        .any(|s| s["server"] == *name && s["state"] == "down")
                };
                assert!(
                    wait_for(Duration::from_secs(10), down),
                    "balancer never marked {name} down"
                );
            }
            Table => {
                let h = haproxy_table(&ha);
                let b = balancer_table(&lb, s.expire_s);
                let _ = writeln!(log, "  haproxy {h:?}\n  balancer {b:?}");
                let strip = |t: &BTreeMap<String, (String, i64)>| {
                    t.iter()
                        .map(|(k, (s, _))| (k.clone(), s.clone()))
                        .collect::<BTreeMap<_, _>>()
                };
                assert_eq!(
                    strip(&b),
                    strip(&h),
                    "{}: step {i}: tables differ\n{log}",
                    s.tag
                );
                for (k, (_, exp)) in &h {
                    let mine = b[k].1;
                    assert!(
                        (mine - exp).abs() <= 1000,
                        "{}: step {i}: {k} expires in {mine} ms here, {exp} ms in haproxy\n{log}",
                        s.tag
                    );
                }
            }
        }
    }
    drop(backends);
}

fn scenario(tag: &'static str, haproxy: &'static str) -> Scenario {
    Scenario {
        tag,
        haproxy,
        expire_s: 30,
        weights: [1, 0, 0],
        checks: false,
    }
}

#[test]
fn stick_on_src() {
    conform(
        scenario("on", "    stick on src\n"),
        &[
            Req(2, None),
            Req(3, None),
            Table,
            Weights([0, 1, 0]),
            Req(2, None),
            Req(3, None),
            Req(4, None),
            Table,
            // Maintenance: its clients go to the weighted server and their
            // entries are overwritten; back in service, s0 gets none back.
            State("s0", "maint"),
            Req(2, None),
            Table,
            State("s0", "ready"),
            Req(2, None),
            Req(3, None),
            Table,
            // Draining keeps a server's users.
            State("s1", "drain"),
            Weights([0, 0, 1]),
            Req(4, None),
            Req(5, None),
            Table,
            Set(5, "s0"),
            Req(5, None),
            Table,
        ],
    );
}

#[test]
fn stick_match_alone_stores_nothing() {
    conform(
        scenario("match", "    stick match src\n"),
        &[
            Req(2, None),
            Table,
            Set(2, "s2"),
            Req(2, None),
            Req(3, None),
            Table,
            State("s2", "maint"),
            Req(2, None),
            Table,
        ],
    );
}

#[test]
fn stick_store_request_alone_overwrites() {
    conform(
        scenario("store", "    stick store-request src\n"),
        &[Req(2, None), Table, Weights([0, 1, 0]), Req(2, None), Table],
    );
}

#[test]
fn stick_match_and_store_request_as_two_rules() {
    conform(
        scenario("two", "    stick match src\n    stick store-request src\n"),
        &[
            Req(2, None),
            Weights([0, 0, 1]),
            Req(2, None),
            Req(3, None),
            State("s0", "maint"),
            Req(2, None),
            Table,
        ],
    );
}

#[test]
fn stick_on_src_with_a_cookie() {
    conform(
        scenario(
            "cookie",
            "    cookie SERVER insert indirect nocache\n    stick on src\n",
        ),
        &[
            Req(2, None),
            Table,
            // The cookie is looked at first: it wins over the entry, and
            // the entry follows it.
            Req(2, Some("SERVER=s1")),
            Table,
            Req(2, None),
            // A cookie naming no server leaves the entry in charge.
            Req(3, Some("SERVER=nope")),
            Req(3, None),
            Table,
        ],
    );
}

#[test]
fn entries_expire() {
    let mut s = scenario("expire", "    stick on src\n");
    s.expire_s = 2;
    conform(
        s,
        &[
            Req(2, None),
            Table,
            Weights([0, 1, 0]),
            Sleep(1000),
            Req(2, None),
            Table,
            Sleep(3000),
            Table,
            Req(2, None),
            Table,
        ],
    );
}

#[test]
fn option_persist_follows_an_entry_to_a_server_in_maintenance() {
    conform(
        scenario("persist", "    option persist\n    stick on src\n"),
        &[
            Req(2, None),
            Weights([0, 1, 0]),
            State("s0", "maint"),
            Req(2, None),
            Table,
        ],
    );
}

#[test]
fn a_key_mask_is_haproxys_ipmask() {
    let s = scenario("mask", "    stick on src,ipmask(24)\n");
    conform(
        s,
        &[
            Req(2, None),
            Weights([0, 1, 0]),
            // Same /24: same entry, same server; another /24: a new one.
            Req(3, None),
            Req(130, None),
            Req(131, None),
            Table,
            State("s0", "maint"),
            Req(77, None),
            Table,
        ],
    );
}

#[test]
fn a_dead_server_without_redispatch_answers_503_and_keeps_its_entry() {
    conform(
        scenario("dead", "    stick on src\n"),
        &[
            Req(2, None),
            Weights([0, 1, 0]),
            Kill("s0"),
            // Both notice the idle connections to s0 closing first (a
            // reused one failing is another case).
            Sleep(300),
            Req(2, None),
            Table,
            Req(3, None),
            Table,
        ],
    );
}

#[test]
fn a_dead_server_with_redispatch_moves_its_client_and_the_entry() {
    conform(
        scenario("redispatch", "    option redispatch\n    stick on src\n"),
        &[
            Req(2, None),
            Weights([0, 1, 0]),
            Kill("s0"),
            // Both notice the idle connections to s0 closing first (a
            // reused one failing is another case).
            Sleep(300),
            Req(2, None),
            Table,
            Req(2, None),
            Table,
        ],
    );
}

#[test]
fn a_server_down_by_its_checks_loses_its_clients() {
    let mut s = scenario("checks", "    stick on src\n");
    s.checks = true;
    conform(
        s,
        &[
            Req(2, None),
            Req(3, None),
            Weights([0, 1, 0]),
            Kill("s0"),
            WaitDown("s0"),
            Req(2, None),
            Table,
            Req(3, None),
            Table,
        ],
    );
}

#[test]
fn option_persist_to_a_dead_server_answers_503_and_refreshes_the_entry() {
    conform(
        scenario("persist-dead", "    option persist\n    stick on src\n"),
        &[
            Req(2, None),
            Weights([0, 1, 0]),
            State("s0", "maint"),
            Kill("s0"),
            Sleep(1500),
            Req(2, None),
            // Touched by the match although nothing answered.
            Table,
        ],
    );
}

#[test]
fn option_persist_and_redispatch_move_a_dead_servers_client() {
    conform(
        scenario(
            "persist-redispatch",
            "    option persist\n    option redispatch\n    stick on src\n",
        ),
        &[
            Req(2, None),
            Weights([0, 1, 0]),
            State("s0", "maint"),
            Kill("s0"),
            Sleep(300),
            Req(2, None),
            Table,
        ],
    );
}
