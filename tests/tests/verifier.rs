//! Verifier acceptance: the daemon, configured with the largest stick table
//! the configuration allows (and the object's maximum VIPs and backends),
//! loads the program and attaches it in native mode on a veth, and in
//! generic mode.

use balancer::config::MAX_STICK_SIZE;
use balancer_tests::{
    lab::{Lab, LabSpec},
    require_root,
};

#[test]
fn largest_tables_load_and_attach_native_and_generic() {
    require_root();
    let lab = Lab::new(LabSpec {
        clients: 0,
        backends: 1,
    })
    .expect("lab");
    let backend = lab.backends[0].ipv4;
    for mode in ["native", "generic"] {
        let config = lab
            .write_service_config(
                &format!("{mode}.toml"),
                &format!("xdp_mode = \"{mode}\"\n"),
                &format!(
                    "[[frontend]]\nname = \"web\"\nbind = \"198.18.2.100:80\"\ndefault_backend = \"web\"\n\n\
                     [[backend]]\nname = \"web\"\nstick_table = {{ size = \"{MAX_STICK_SIZE}\" }}\n\
                     [[backend.server]]\nname = \"s0\"\naddress = \"{backend}\"\n"
                ),
            )
            .unwrap();
        let mut daemon = lab
            .start_balancer(&config)
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(
            daemon.output().contains(&format!("in {mode} mode")),
            "{mode}: {}",
            daemon.output()
        );
        let attached = lab.xdp_attached(&lab.balancer).unwrap().expect("attached");
        assert!(attached.contains("name balancer"), "{attached}");
        let status = lab.cli(&["status", "--json"]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(v["stick_capacity"].as_u64(), Some(MAX_STICK_SIZE), "{v}");
        assert!(daemon.stop().unwrap().success(), "{}", daemon.output());
        lab.detach().unwrap();
        assert_eq!(
            lab.xdp_attached(&lab.balancer).unwrap(),
            None,
            "{mode}: left attached"
        );
    }
}
