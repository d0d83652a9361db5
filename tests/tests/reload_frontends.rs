//! A SIGHUP reload adds and removes HTTP frontends: an added one serves at
//! once; a removed one stops accepting while its request in flight still
//! gets its answer; the frontends that stay keep their connections. Such
//! a reload used to be refused ("http frontends (name, bind)" needed a
//! restart).

use std::{net::SocketAddr, time::Duration};

use balancer_tests::http::{Backend, Client, Svc, free_port};

#[test]
fn a_reload_adds_and_removes_http_frontends() {
    let slow = Backend::start_fn("s0", 0, |seen| {
        if seen.path == "/slow" {
            std::thread::sleep(Duration::from_millis(1500));
        }
        (200, String::new())
    })
    .unwrap();
    let svc = Svc::start_on("reload-fronts", "", &[("s0", slow.addr, "")]);
    let config = svc.dir.join("balancer.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let second = format!(
        "\n[[frontend]]\nname = \"api\"\nmode = \"http\"\nbind = \"{api}\"\n\
         default_backend = \"app\"\n"
    );
    // A keep-alive client of `web`, before and through the reloads.
    let mut kept = Client::new(svc.front);
    assert_eq!(kept.get("/").unwrap().status, 200);

    // Add `api`.
    std::fs::write(&config, format!("{original}{second}")).unwrap();
    svc.daemon.signal(libc::SIGHUP).unwrap();
    svc.daemon
        .expect_logged("reloaded:", Duration::from_secs(10));
    assert_eq!(Client::new(api).get("/").unwrap().body, "s0");
    assert_eq!(kept.get("/").unwrap().status, 200, "web's connection stays");

    // Remove `web` while a request of it is in flight.
    let web = svc.front;
    let in_flight = std::thread::spawn(move || Client::new(web).get("/slow"));
    std::thread::sleep(Duration::from_millis(300));
    let only_api = original.split("[[frontend]]").next().unwrap().to_owned()
        + &second
        + "\n[[backend]]"
        + original.split("[[backend]]").nth(1).unwrap();
    std::fs::write(&config, &only_api).unwrap();
    svc.daemon.signal(libc::SIGHUP).unwrap();
    svc.daemon
        .expect_logged("http frontend web on", Duration::from_secs(10));
    svc.daemon
        .expect_logged("stopped accepting", Duration::from_secs(10));
    let answer = in_flight.join().unwrap().expect("the request in flight");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        std::net::TcpStream::connect_timeout(&web, Duration::from_secs(1)).is_err(),
        "web still accepts"
    );
    assert_eq!(Client::new(api).get("/").unwrap().body, "s0", "api serves");
    let status = svc.cli(&["status"]);
    assert!(
        status.contains("frontend api") && !status.contains("frontend web"),
        "{status}"
    );
}
