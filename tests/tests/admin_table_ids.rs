//! The admin API's stick-table commands find a frontend by its VIP id, not
//! by its position in the configuration. Ids are kept by name in the
//! pinned id map, so once a frontend before another is removed (here by a
//! restart that adopts the pinned state) the two differ: `table show` must
//! still name the entry's table and decode its address in that
//! frontend's family, `table set` must still check the frontend's own
//! backend and family (it used to index the configuration with the id and
//! panic the admin task), and `table clear --client` must look in every
//! frontend.

use balancer_tests::http::{Svc, free_port};

/// Both backends stick on the client address: their tables take ids
/// from the same map as the frontends.
const STICK: &str = "stick_table = { size = \"1k\" }\nstick = \"on src\"\n";

/// The second frontend (`web6`, on ::1) with its backend `other`.
fn web6(port: u16) -> String {
    format!(
        "[[backend]]\nname = \"other\"\n{STICK}\n[[backend.server]]\nname = \"o0\"\naddress = \"[::1]:9\"\n\n\
         [[frontend]]\nname = \"web6\"\nmode = \"http\"\nbind = \"[::1]:{port}\"\ndefault_backend = \"other\"\n"
    )
}

fn table_rows(svc: &Svc) -> Vec<serde_json::Value> {
    let out = svc.cli(&["table", "show", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("table show --json: {e}: {out}"))
}

#[test]
fn table_commands_find_frontends_by_id_after_one_before_them_is_removed() {
    let port6 = free_port().unwrap();
    // `web` (VIP id 0, backend `app`) and `web6` (VIP id 1, backend `other`).
    let mut svc = Svc::launch(
        "table-ids",
        "",
        STICK,
        &format!(
            "[[backend.server]]\nname = \"s0\"\naddress = \"127.0.0.1:9\"\n\n{}",
            web6(port6)
        ),
    );
    svc.cli(&["table", "set", "web6", "2001:db8::7", "other/o0"]);
    svc.cli(&["table", "set", "web", "198.18.0.9", "app/s0"]);
    assert_eq!(table_rows(&svc).len(), 2);

    // Restart without `web`: `web6` keeps VIP id 1 and is now the first
    // (and only) frontend of the configuration; `web`'s entry goes with it.
    let config = svc.dir.join("balancer.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let head = &text[..text.find("[[frontend]]").expect("config layout")];
    std::fs::write(&config, format!("{head}{}", web6(port6))).unwrap();
    svc.daemon.stop().expect("stopping the daemon");
    svc.start_again(&config);

    let rows = table_rows(&svc);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["backend"], "other", "{rows:?}");
    assert_eq!(rows[0]["client"], "2001:db8::7", "{rows:?}");
    assert_eq!(rows[0]["server"], "other/o0", "{rows:?}");

    // `table set` on web6 checks web6's family and backend.
    let set = svc.cli(&["table", "set", "web6", "2001:db8::8", "other/o0"]);
    assert_eq!(set.trim(), "web6 2001:db8::8 -> other/o0");
    assert_eq!(table_rows(&svc).len(), 2);

    // `table clear --client` finds the entry under web6's id.
    let cleared = svc.cli(&["table", "clear", "--client", "2001:db8::7"]);
    assert_eq!(cleared.trim(), "removed 1");
    let rows = table_rows(&svc);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["client"], "2001:db8::8", "{rows:?}");
}
