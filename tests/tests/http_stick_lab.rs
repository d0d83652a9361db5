//! The stick key by network on the HTTP path, IPv6, in a namespace lab
//! (loopback has one IPv6 address only): `key_mask_v6 = 64` puts the
//! clients of one /64 on one server where round robin would spread them,
//! and a client of another /64 gets an entry of its own.
//!
//! Clients c0 and c1 are 2001:db8::10 and ::11 (one /64); c2 also holds
//! 2001:db8:5::12 (another /64, routed back to it by the balancer). The
//! proxy runs in the balancer's namespace on [2001:db8::1]:8080, the
//! servers are the backends' HTTP servers.

use balancer_tests::{
    lab::{Lab, LabSpec, Node},
    require_root,
};

const PORT: u16 = 8000;

/// The body of one request from `from` (an address of `node`).
fn get(node: &Node, from: &str) -> String {
    node.run(
        "curl",
        &[
            "-sf",
            "--max-time",
            "5",
            "--interface",
            from,
            "http://[2001:db8::1]:8080/",
        ],
    )
    .unwrap_or_else(|e| panic!("curl from {from}: {e}"))
    .trim()
    .to_owned()
}

#[test]
fn clients_of_one_ipv6_network_share_a_server_and_an_entry() {
    require_root();
    let mut lab = Lab::new(LabSpec {
        clients: 3,
        backends: 3,
    })
    .expect("lab");
    let _servers = lab.start_http_backends(PORT).expect("http servers");
    let c2 = lab.clients[2].clone();
    c2.run(
        "ip",
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:5::12/64",
            "dev",
            "eth0",
            "nodad",
        ],
    )
    .unwrap();
    lab.route(&lab.balancer.clone(), "2001:db8:5::/64", c2.ipv6)
        .unwrap();
    let servers: String = lab
        .backends
        .iter()
        .enumerate()
        .map(|(j, b)| {
            format!(
                "[[backend.server]]\nname = \"s{j}\"\naddress = \"[{}]:{PORT}\"\n",
                b.ipv6
            )
        })
        .collect();
    let config = lab
        .write_service_config(
            "balancer.toml",
            "",
            &format!(
                "[[frontend]]\nname = \"www\"\nmode = \"http\"\nbind = \"[2001:db8::1]:8080\"\n\
                 default_backend = \"app\"\n\n[[backend]]\nname = \"app\"\n\
                 stick_table = {{ type = \"ipv6\", size = \"1k\", key_mask_v6 = 64 }}\n\
                 stick = \"on src\"\n{servers}"
            ),
        )
        .unwrap();
    let _daemon = lab.start_balancer(&config).expect("balancer");

    let (c0, c1) = (lab.clients[0].clone(), lab.clients[1].clone());
    let first = get(&c0, &c0.ipv6.to_string());
    // Round robin alone would give the next two requests other servers.
    assert_eq!(get(&c1, &c1.ipv6.to_string()), first, "c1, same /64");
    assert_eq!(get(&c2, &c2.ipv6.to_string()), first, "c2, same /64");
    let other = get(&c2, "2001:db8:5::12");
    assert_ne!(other, first, "another /64 is a new client, balanced");
    assert_eq!(get(&c0, &c0.ipv6.to_string()), first);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&lab.cli(&["table", "show", "--json"]).unwrap()).unwrap();
    let mut keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["client"].as_str().unwrap().to_owned(),
                r["server"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    keys.sort();
    let name = |body: &str| format!("app/{}", body.trim_start_matches("backend "));
    assert_eq!(
        keys,
        [
            ("2001:db8:5::".to_owned(), name(&other)),
            ("2001:db8::".to_owned(), name(&first)),
        ],
        "{rows:?}"
    );
    lab.teardown().unwrap();
}
