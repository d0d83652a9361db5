//! Host names in the TOML's server addresses, looked up when the file is
//! loaded (HAProxy's `init-addr`): a server named `localhost:PORT` is
//! proxied to, and `check-config` refuses a name that does not resolve
//! with its file:line. No query leaves the machine: `localhost` is in
//! /etc/hosts, and the name that does not resolve (under `.invalid`) is
//! looked up inside a network namespace with only `lo` up, where the
//! system's nameserver cannot be reached.

use std::{
    net::{SocketAddr, ToSocketAddrs as _},
    process::Command,
    time::Duration,
};

use balancer_tests::{
    balancer_bin,
    http::{Backend, Client, Svc, free_port},
    lab::{add_ns, new_id, ns_command, remove_ns},
};

#[test]
fn an_http_server_named_localhost_is_proxied_to() {
    balancer_tests::require_root();
    // The origin listens where `localhost` resolves first (/etc/hosts):
    // the address balancer keeps. It keeps the port the kernel gave it
    // (a probed free_port() was once taken before the origin bound it).
    let ip = ("localhost", 0)
        .to_socket_addrs()
        .expect("localhost resolves")
        .next()
        .expect("an address")
        .ip();
    let origin = Backend::start_at("origin", SocketAddr::new(ip, 0), |_| (200, String::new()))
        .expect("origin");
    let first = origin.addr;
    let port = first.port();
    let svc = Svc::launch_in_memory(
        "hosts",
        "",
        "",
        &format!("[[backend.server]]\nname = \"s0\"\naddress = \"localhost:{port}\"\n"),
    );
    let answer = Client::new(svc.front).get("/").expect("an answer");
    assert_eq!((answer.status, answer.body.as_str()), (200, "origin"));
    assert_eq!(origin.requests().len(), 1);
    // check-config says what the name gave.
    let out = Command::new(balancer_bin())
        .arg("check-config")
        .arg(svc.dir.join("balancer.toml"))
        .output()
        .expect("check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "server app/s0: localhost:{port} resolved to {first}"
        )),
        "{stdout}"
    );
    // A reload looks the file up again and keeps the server ("last").
    svc.daemon.signal(libc::SIGHUP).expect("SIGHUP");
    svc.daemon
        .expect_logged("reloaded: 1 server(s) kept", Duration::from_secs(10));
    let answer = Client::new(svc.front).get("/").expect("an answer");
    assert_eq!((answer.status, answer.body.as_str()), (200, "origin"));
}

/// A namespace of this test's, removed when dropped (even on failure).
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = remove_ns(&self.0);
    }
}

#[test]
fn check_config_refuses_a_name_that_does_not_resolve() {
    balancer_tests::require_root();
    let ns = Ns(new_id());
    add_ns(&ns.0, &mut Vec::new()).expect("a namespace");
    let dir = std::env::temp_dir().join(format!("{}-hosts", ns.0));
    std::fs::create_dir_all(&dir).expect("test dir");
    let file = dir.join("balancer.toml");
    let front = SocketAddr::from(([127, 0, 0, 1], free_port().expect("a port")));
    std::fs::write(
        &file,
        format!(
            "[[frontend]]\nname = \"web\"\nmode = \"http\"\nbind = \"{front}\"\n\
             default_backend = \"app\"\n\n[[backend]]\nname = \"app\"\n\n\
             [[backend.server]]\nname = \"s0\"\naddress = \"nope.invalid:8080\"\n"
        ),
    )
    .expect("config");
    let out = ns_command(&ns.0, balancer_bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("check-config");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let want = format!(
        "{}:12: backend[0].server[0].address: could not resolve \"nope.invalid\" (init_addr \
         last,libc; the system resolver: ",
        file.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
    assert!(stderr.contains("as HAProxy refuses to start"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}
