//! The HTTP proxy's counters on `GET /metrics`: every request a client
//! makes is counted once by its frontend with the answer's status class,
//! its cookie's outcome, and on the server that took it (or failed it:
//! refused connection, connection cut before a response, no response in
//! time), each figure checked exactly against what the test did.

use std::{
    io::Read as _,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use balancer_tests::http::{Backend, Client, Svc, free_port, scrape};

/// A server that accepts connections and never answers.
struct Silent {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn start(cut: bool) -> Silent {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let st = stop.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut c) = c else { continue };
                if cut {
                    // Read the request, then close: no response byte.
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = c.read(&mut [0; 4096]);
                } else {
                    held.lock().unwrap().push(c);
                }
            }
        });
        Silent { addr, stop }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn get(svc: &Svc, path: &str, cookie: Option<&str>) -> u16 {
    let mut c = Client::new(svc.front);
    c.extra_cookie = cookie.map(str::to_owned);
    c.get(path).expect("an answer").status
}

#[test]
fn http_counters_count_every_request_once_where_it_went() {
    let respond = |seen: &balancer_tests::http::Seen| {
        let status = if seen.path == "/missing" { 404 } else { 200 };
        (status, String::new())
    };
    let s0 = Backend::start_fn("s0", 0, respond).unwrap();
    let s1 = Backend::start_fn("s1", 0, respond).unwrap();
    // Nothing listens there.
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let stall = Silent::start(false);
    let cut = Silent::start(true);
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    // s2 (dead) is balanced to; s3 and s4 only take users whose cookie
    // names them.
    let servers = [
        ("s0", s0.addr, 1),
        ("s1", s1.addr, 1),
        ("s2", dead, 1),
        ("s3", stall.addr, 0),
        ("s4", cut.addr, 0),
    ];
    let mut tail: String = servers
        .iter()
        .map(|(n, a, w)| {
            format!("[[backend.server]]\nname = \"{n}\"\naddress = \"{a}\"\ncookie = \"{n}\"\nweight = {w}\n")
        })
        .collect();
    tail.push_str(&format!("\n[metrics]\nbind = \"{metrics}\"\n"));
    let svc = Svc::launch(
        "http-metrics",
        "",
        "balance = \"roundrobin\"\ncookie = \"SERVER insert indirect nocache\"\n\
         timeout_server = \"300ms\"\ntimeout_connect = \"500ms\"\n",
        &tail,
    );
    let before = scrape(metrics);
    assert_eq!(
        before.get("balancer_http_requests_total{frontend=\"web\"}"),
        Some(&0.0),
        "{before:?}"
    );

    // Three users without a cookie: balanced over s0, s1 and s2; the one
    // sent to s2 is refused and goes to another server.
    for _ in 0..3 {
        assert_eq!(get(&svc, "/", None), 200);
    }
    // Three users of s0 and one of s1, by cookie; one 404.
    for _ in 0..3 {
        assert_eq!(get(&svc, "/", Some("SERVER=s0")), 200);
    }
    assert_eq!(get(&svc, "/missing", Some("SERVER=s1")), 404);
    // A cookie naming no server: balanced again (s0 or s1: s2 is next
    // after them in turn, and refuses, so possibly redispatched again).
    assert_eq!(get(&svc, "/", Some("SERVER=nobody")), 200);
    // A user of the dead server: persistent, so not redispatched: 503.
    assert_eq!(get(&svc, "/", Some("SERVER=s2")), 503);
    // The silent server: 504; the one that cuts the connection: 502.
    assert_eq!(get(&svc, "/", Some("SERVER=s3")), 504);
    assert_eq!(get(&svc, "/", Some("SERVER=s4")), 502);

    let m = scrape(metrics);
    let v = |k: &str| -> u64 {
        *m.get(k)
            .unwrap_or_else(|| panic!("{k} missing from /metrics: {:#?}", m.keys())) as u64
    };
    let fe = |name: &str, extra: &str| {
        v(&format!(
            "balancer_http_{name}_total{{frontend=\"web\"{extra}}}"
        ))
    };
    let sv = |name: &str, server: &str, extra: &str| {
        v(&format!(
            "balancer_http_server_{name}_total{{backend=\"app\",server=\"{server}\"{extra}}}"
        ))
    };
    let code = |c: &str| format!(",code=\"{c}\"");
    let kind = |k: &str| format!(",kind=\"{k}\"");

    assert_eq!(fe("requests", ""), 11);
    assert_eq!(fe("responses", &code("2xx")), 7);
    assert_eq!(fe("responses", &code("4xx")), 1);
    assert_eq!(fe("responses", &code("5xx")), 3);
    assert_eq!(
        fe("responses", &code("1xx")) + fe("responses", &code("3xx")),
        0
    );
    assert_eq!(fe("persistence", ",cookie=\"absent\""), 3);
    assert_eq!(fe("persistence", ",cookie=\"used\""), 7);
    assert_eq!(fe("persistence", ",cookie=\"unusable\""), 1);
    assert_eq!(fe("no_server", ""), 0);

    // Every refusal by s2 of a balanced request was redispatched; the
    // persistent one was not.
    let refused = sv("errors", "s2", &kind("connect"));
    assert!(refused >= 2, "s2 refused {refused}");
    assert_eq!(fe("redispatched", ""), refused - 1);
    assert_eq!(sv("requests", "s2", ""), 0);
    // What s0 and s1 were sent is what they saw, and what they answered.
    let (seen0, seen1) = (s0.requests().len() as u64, s1.requests().len() as u64);
    assert_eq!(sv("requests", "s0", ""), seen0);
    assert_eq!(sv("requests", "s1", ""), seen1);
    assert_eq!(
        seen0 + seen1,
        8,
        "3 balanced, 3 + 1 by cookie, 1 rebalanced"
    );
    assert!(seen0 >= 3 && seen1 >= 1, "s0 {seen0}, s1 {seen1}");
    assert_eq!(sv("responses", "s1", &code("4xx")), 1);
    assert_eq!(sv("responses", "s0", &code("2xx")), seen0);
    assert_eq!(sv("responses", "s1", &code("2xx")), seen1 - 1);
    // The silent server and the one that cuts.
    assert_eq!(sv("requests", "s3", ""), 1);
    assert_eq!(sv("errors", "s3", &kind("timeout")), 1);
    assert_eq!(sv("requests", "s4", ""), 1);
    assert_eq!(sv("errors", "s4", &kind("response")), 1);
    for s in ["s3", "s4"] {
        let answered: u64 = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"]
            .iter()
            .map(|c| sv("responses", s, &code(c)))
            .sum();
        assert_eq!(answered, 0, "{s} answered nothing");
    }
    for s in ["s0", "s1"] {
        for k in ["connect", "response", "timeout"] {
            assert_eq!(sv("errors", s, &kind(k)), 0, "{s} {k}");
        }
    }

    // The CLI reports the same figures.
    let v: serde_json::Value = serde_json::from_str(&svc.cli(&["stats", "--json"])).unwrap();
    let web = &v["http"]["frontends"]["web"];
    assert_eq!(web["requests"], 11, "{v}");
    assert_eq!(web["responses_5xx"], 3, "{v}");
    assert_eq!(web["cookie_unusable"], 1, "{v}");
    assert_eq!(v["http"]["servers"]["app/s3"]["timeouts"], 1, "{v}");
    assert_eq!(v["http"]["servers"]["app/s4"]["response_errors"], 1, "{v}");
    assert_eq!(v["http"]["servers"]["app/s0"]["requests"], seen0, "{v}");
    let table = svc.cli(&["stats"]);
    let row = |name: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{table}"));
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    };
    // requests 2xx 3xx 4xx 5xx connect-err response-err timeouts, then
    // current and queued (a server without maxconn: none)
    assert_eq!(
        row("app/s3"),
        ["1", "0", "0", "0", "0", "0", "0", "1", "-", "-"],
        "{table}"
    );
    assert_eq!(row("app/s2")[5], refused.to_string(), "{table}");
    let requests: Vec<&str> = table
        .lines()
        .filter(|l| l.trim_start().starts_with("requests "))
        .flat_map(str::split_whitespace)
        .collect();
    assert_eq!(requests, ["requests", "11"], "{table}");
    // Requests first, then responses by class.
    let web: Vec<&str> = table
        .lines()
        .skip_while(|l| *l != "frontend web")
        .skip(1)
        .take(3)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        web,
        ["requests", "responses_1xx", "responses_2xx"],
        "{table}"
    );
}
