//! The HTTP path end to end on loopback: `balancer run` with an http
//! frontend (no XDP interface), three real backends, and 1,000 clients
//! with cookie jars (see `balancer_tests::http`). Which server answered is
//! the backend's own body; what the backend received is its own record.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use balancer_tests::{
    http::{Client, Svc},
    proc::wait_for,
};

const CLIENTS: usize = 1000;
const REQUESTS: usize = 10;
const THREADS: usize = 20;

/// Each client makes `REQUESTS` requests; returns, per client, the servers
/// that answered, in order, and the first answer's headers.
fn run_clients(front: SocketAddr, clients: &mut [Client]) -> Vec<Vec<String>> {
    let chunk = clients.len().div_ceil(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .chunks_mut(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter_mut()
                        .map(|c| {
                            (0..REQUESTS)
                                .map(|_| match c.get("/") {
                                    Ok(a) if a.status == 200 => a.body,
                                    Ok(a) => format!("HTTP {}", a.status),
                                    Err(e) => format!("ERR {e}"),
                                })
                                .collect::<Vec<_>>()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let _ = front;
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    })
}

#[test]
fn insert_indirect_nocache_keeps_1000_users_on_their_servers() {
    // A validator makes the answers cacheable (RFC 7234 3, as HAProxy
    // judges it), so `nocache` must mark the ones that set the cookie.
    let svc = Svc::start_with(
        "http-insert",
        "balance = \"roundrobin\"\ncookie = \"SERVER insert indirect nocache\"\n",
        "",
        3,
        "Last-Modified: Sat, 28 Nov 2026 10:00:00 GMT\r\n",
    );
    // The first answer of one client, in full.
    let mut one = Client::new(svc.front);
    one.extra_cookie = Some("app=1; theme=dark".into());
    let a = one.get("/").unwrap();
    assert_eq!(a.status, 200);
    let set = a.all("set-cookie");
    assert_eq!(
        set,
        [format!("SERVER={}; path=/", a.body)],
        "{:?}",
        a.headers
    );
    assert_eq!(
        a.header("cache-control")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("private"),
        "{:?}",
        a.headers
    );
    let b = one.get("/").unwrap();
    assert_eq!(b.body, a.body, "second request left its server");
    assert!(
        b.all("set-cookie").is_empty(),
        "cookie set again: {:?}",
        b.headers
    );
    assert!(b.header("cache-control").is_none(), "{:?}", b.headers);

    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| {
            let mut c = Client::new(svc.front);
            c.extra_cookie = Some("app=1; theme=dark".into());
            c
        })
        .collect();
    let answers = run_clients(svc.front, &mut clients);
    let mut first = BTreeMap::new();
    for (i, a) in answers.iter().enumerate() {
        assert!(
            a.iter().all(|s| s == &a[0]),
            "client {i} changed server: {a:?}"
        );
        assert!(a[0].starts_with('s'), "client {i}: {a:?}");
        assert_eq!(
            clients[i].jar.get("SERVER"),
            Some(&a[0]),
            "client {i}'s cookie"
        );
        *first.entry(a[0].clone()).or_insert(0usize) += 1;
    }
    let even = CLIENTS as f64 / 3.0;
    for (s, n) in &first {
        assert!(
            (*n as f64 - even).abs() <= 0.1 * even,
            "{s} got {n} of {CLIENTS} first requests: {first:?}"
        );
    }
    // indirect: the backends never see SERVER, and the other cookies
    // arrive byte for byte.
    for b in &svc.backends {
        let reqs = b.requests();
        assert!(!reqs.is_empty());
        for r in reqs {
            let c = r.header("cookie").unwrap_or_default();
            assert!(!c.contains("SERVER"), "{}: saw {c:?}", b.name);
            assert_eq!(c, "app=1; theme=dark", "{}", b.name);
            assert!(
                r.header("x-forwarded-for") == Some("127.0.0.1"),
                "{:?}",
                r.headers
            );
        }
    }
    println!("first requests per server: {first:?}");
}

#[test]
fn a_dead_server_loses_only_its_users_who_get_a_new_cookie() {
    let svc = Svc::start(
        "http-fail",
        "cookie = \"SERVER insert indirect nocache\"\noptions = [\"redispatch\"]\n",
        "check = true\ninter = \"200ms\"\nrise = 2\nfall = 2\n",
        3,
    );
    let mut clients: Vec<Client> = (0..300).map(|_| Client::new(svc.front)).collect();
    let before = run_clients(svc.front, &mut clients);
    let home: Vec<String> = before.iter().map(|a| a[0].clone()).collect();
    svc.backends[1].kill();
    let down = wait_for(Duration::from_secs(10), || {
        svc.cli(&["backend", "list", "--json"]).contains("\"down\"")
    });
    assert!(
        down,
        "s1 never marked down: {}",
        svc.cli(&["backend", "list"])
    );
    let after = run_clients(svc.front, &mut clients);
    for (i, a) in after.iter().enumerate() {
        assert!(
            a.iter().all(|s| s.starts_with('s')),
            "client {i} got an error after s1 was marked down: {a:?}"
        );
        assert!(a.iter().all(|s| s == &a[0]), "client {i} wandered: {a:?}");
        if home[i] == "s1" {
            assert_ne!(a[0], "s1");
            assert_eq!(
                clients[i].jar.get("SERVER"),
                Some(&a[0]),
                "new cookie for {i}"
            );
        } else {
            assert_eq!(a[0], home[i], "client {i} moved although its server lives");
        }
    }
}

#[test]
fn option_forwarded_adds_an_rfc7239_element() {
    let svc = Svc::start("http-fwd", "options = [\"forwarded\"]\n", "", 1);
    let mut c = Client::new(svc.front);
    assert_eq!(c.get("/").unwrap().status, 200);
    let r = svc.backends[0].requests();
    let seen = r.last().unwrap();
    assert_eq!(
        seen.header("forwarded"),
        Some("for=127.0.0.1;proto=http;host=\"lab\""),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
}
