//! Keys valid on their own that would have no effect where they stand are
//! refused, naming the key and its line (and saying why); the same keys
//! where they do act are accepted.

use std::path::Path;

use super::{Config, ConfigError};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("t.toml"), text)
}

/// 1-based line of the first `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"));
    text[..at].matches('\n').count() + 1
}

/// `text` is refused at the line of `at` with `key`, for a reason
/// containing `why`.
#[track_caller]
fn refused(text: &str, key: &str, at: &str, why: &str) {
    let e = parse(text).expect_err(text).to_string();
    let line = line_of(text, at);
    assert!(
        e.starts_with(&format!("t.toml:{line}: {key}: ")),
        "want line {line} and key {key}: {e}\n{text}"
    );
    assert!(e.contains(why), "want {why:?} in: {e}");
}

#[track_caller]
fn accepted(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// One l4 frontend `f` (IPv4) on backend `b` with one server `s`.
fn l4(dataplane: &str, backend: &str, server: &str, tail: &str) -> String {
    format!(
        "[dataplane]\ninterfaces = [\"eth0\"]\n{dataplane}\n\
         [[frontend]]\nname = \"f\"\nbind = \"198.18.2.100:80\"\ndefault_backend = \"b\"\n\n\
         [[backend]]\nname = \"b\"\n{backend}\n\
         [[backend.server]]\nname = \"s\"\naddress = \"198.18.1.10\"\n{server}\n{tail}"
    )
}

/// One http frontend `f` on backend `b` with one server `s`.
fn http(dataplane: &str, backend: &str, server: &str, tail: &str) -> String {
    format!(
        "[dataplane]\ninterfaces = []\n{dataplane}\n\
         [[frontend]]\nname = \"f\"\nmode = \"http\"\nbind = \"127.0.0.1:8080\"\ndefault_backend = \"b\"\n\n\
         [[backend]]\nname = \"b\"\n{backend}\n\
         [[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:9000\"\n{server}\n{tail}"
    )
}

const HTTP_STICK: &str = "stick_table = { size = \"1k\" }\nstick = \"on src\"";

#[test]
fn dataplane_keys_without_their_traffic_are_refused() {
    // D1: xdp_mode with nothing to attach to.
    let t = http("xdp_mode = \"native\"", "", "", "");
    refused(&t, "dataplane.xdp_mode", "xdp_mode", "no effect");
    accepted(&l4("xdp_mode = \"native\"", "", "", ""));
    // D2: the flood guard and the refresh pace need a table they act on.
    let t = http("insert_cap = 0", "", "", "");
    refused(&t, "dataplane.insert_cap", "insert_cap", "no effect");
    let t = http("insert_cap = 0", HTTP_STICK, "", "");
    refused(&t, "dataplane.insert_cap", "insert_cap", "l4");
    let t = http("stick_refresh = \"2s\"", "", "", "");
    refused(&t, "dataplane.stick_refresh", "stick_refresh", "no effect");
    accepted(&http("stick_refresh = \"2s\"", HTTP_STICK, "", ""));
    accepted(&l4("insert_cap = 0\nstick_refresh = \"2s\"", "", "", ""));
}

#[test]
fn tunnel_sources_need_an_ipip_service_of_their_family() {
    // D3.
    let v4 = "tunnel_source_v4 = \"198.18.1.1\"";
    let v6 = "tunnel_source_v6 = \"2001:db8::1\"";
    let t = l4(v4, "forward = \"dsr-l2\"", "", "");
    refused(&t, "dataplane.tunnel_source_v4", "tunnel_source_v4", "ipip");
    let t = l4(v4, "", "", "");
    refused(
        &t,
        "dataplane.tunnel_source_v4",
        "tunnel_source_v4",
        "no effect",
    );
    accepted(&l4(v4, "forward = \"ipip\"", "", ""));
    // An IPv4 ipip service gives the IPv6 source nothing to do.
    let t = l4(&format!("{v4}\n{v6}"), "forward = \"ipip\"", "", "");
    refused(&t, "dataplane.tunnel_source_v6", "tunnel_source_v6", "IPv6");
    let t = http(v6, "", "", "");
    refused(
        &t,
        "dataplane.tunnel_source_v6",
        "tunnel_source_v6",
        "no effect",
    );
}

#[test]
fn global_maxconn_needs_an_http_frontend() {
    // G1.
    let t = l4("", "", "", "[global]\nmaxconn = 1000\n");
    refused(&t, "global.maxconn", "maxconn", "no effect");
    let c = accepted(&http("", "", "", "[global]\nmaxconn = 1000\n"));
    assert_eq!(c.maxconn, Some(1000));
}

#[test]
fn table_count_interval_needs_a_stick_table() {
    // M2.
    let metrics = "[metrics]\nbind = \"127.0.0.1:9100\"\ntable_count_interval = \"5s\"\n";
    let t = http("", "", "", metrics);
    refused(
        &t,
        "metrics.table_count_interval",
        "table_count_interval",
        "no effect",
    );
    accepted(&http("", HTTP_STICK, "", metrics));
    accepted(&l4("", "", "", metrics));
    // Metrics alone are fine without a table.
    accepted(&http("", "", "", "[metrics]\nbind = \"127.0.0.1:9100\"\n"));
}

#[test]
fn forward_on_an_http_backend_is_refused() {
    // B1.
    let t = http("", "forward = \"dsr-l2\"", "", "");
    refused(&t, "backend[0].forward", "forward", "no effect");
}

#[test]
fn check_keys_that_cannot_act_are_refused() {
    // B5: check_timeout without a checked server (or template).
    let t = l4("", "check_timeout = \"1s\"", "", "");
    refused(
        &t,
        "backend[0].check_timeout",
        "check_timeout",
        "check = true",
    );
    let t = l4("", "check_timeout = \"1s\"", "check = false", "");
    refused(&t, "backend[0].check_timeout", "check_timeout", "no effect");
    let c = accepted(&l4("", "check_timeout = \"1s\"", "check = true", ""));
    let timing = c.backends[0].servers[0].check.unwrap();
    assert_eq!(timing.timeout, std::time::Duration::from_secs(1));
    // ... but the check kind and port stay accepted: `backend add --check`
    // uses them for servers added at run time.
    accepted(&l4(
        "",
        "check_type = \"http\"\ncheck_path = \"/health\"\ncheck_port = 8080",
        "",
        "",
    ));
    // B6: check_path with a tcp check.
    let t = l4("", "check_path = \"/health\"", "check = true", "");
    refused(&t, "backend[0].check_path", "check_path", "no effect");
    let t = l4(
        "",
        "check_type = \"tcp\"\ncheck_path = \"/health\"",
        "check = true",
        "",
    );
    refused(
        &t,
        "backend[0].check_path",
        "check_path",
        "check_type = \"http\"",
    );
    // ... and check_status, check_method.
    let t = l4("", "check_status = \"200\"", "check = true", "");
    refused(&t, "backend[0].check_status", "check_status", "no effect");
    let t = l4("", "check_method = \"HEAD\"", "check = true", "");
    refused(&t, "backend[0].check_method", "check_method", "no effect");
    let t = l4(
        "",
        "check_type = \"http\"\ncheck_method = \"GET /\"",
        "check = true",
        "",
    );
    refused(&t, "backend[0].check_method", "check_method", "HTTP method");
    let c = accepted(&l4(
        "",
        "check_type = \"http\"\ncheck_status = \"200-204,301\"",
        "check = true",
        "",
    ));
    assert!(matches!(
        &c.backends[0].check_kind,
        crate::config::CheckKind::Http { method, status, .. }
            if status == &[(200, 204), (301, 301)] && method == "GET"
    ));
    let t = l4(
        "",
        "check_type = \"http\"\ncheck_status = \"204-200\"",
        "check = true",
        "",
    );
    refused(&t, "backend[0].check_status", "check_status", "ends before");
    // S1: timing of a server that is not checked.
    for (k, v) in [("inter", "\"1s\""), ("rise", "3"), ("fall", "2")] {
        let (key, at) = (format!("backend[0].server[0].{k}"), format!("{k} = "));
        let t = l4("", "", &format!("{k} = {v}"), "");
        refused(&t, &key, &at, "check = true");
        let t = l4("", "", &format!("check = false\n{k} = {v}"), "");
        refused(&t, &key, &at, "no effect");
        accepted(&l4("", "", &format!("check = true\n{k} = {v}"), ""));
    }
    // A value error still comes first, with its own reason.
    let t = l4("", "", "rise = 0", "");
    refused(&t, "backend[0].server[0].rise", "rise = ", "want 1 to 100");
}

#[test]
fn http_backend_keys_without_what_they_act_on_are_refused() {
    // B8: a key for dynamic values without `dynamic`.
    let t = http(
        "",
        "cookie = \"S insert\"\ndynamic_cookie_key = \"k\"",
        "",
        "",
    );
    refused(
        &t,
        "backend[0].dynamic_cookie_key",
        "dynamic_cookie_key",
        "no effect",
    );
    let t = http("", "dynamic_cookie_key = \"k\"", "", "");
    refused(
        &t,
        "backend[0].dynamic_cookie_key",
        "dynamic_cookie_key",
        "dynamic",
    );
    accepted(&http(
        "",
        "cookie = \"S insert dynamic\"\ndynamic_cookie_key = \"k\"",
        "",
        "",
    ));
    // B9 / B10: persist and redispatch without persistence, at their entry.
    for o in ["persist", "redispatch"] {
        let t = http("", &format!("options = [\"forwarded\", \"{o}\"]"), "", "");
        refused(&t, "backend[0].options[1]", "options", "no effect");
        // A stick table that only stores is no persistence either.
        let t = http(
            "",
            &format!(
                "stick_table = {{ size = \"1k\" }}\nstick = \"store-request src\"\noptions = [\"{o}\"]"
            ),
            "",
            "",
        );
        refused(&t, "backend[0].options[0]", "options", "no effect");
        accepted(&http(
            "",
            &format!("cookie = \"S insert\"\noptions = [\"{o}\"]"),
            "",
            "",
        ));
        accepted(&http(
            "",
            &format!("{HTTP_STICK}\noptions = [\"{o}\"]"),
            "",
            "",
        ));
    }
    // B11: a queue timeout without a server that queues.
    let t = http("", "timeout_queue = \"1s\"", "", "");
    refused(&t, "backend[0].timeout_queue", "timeout_queue", "maxconn");
    accepted(&http("", "timeout_queue = \"1s\"", "maxconn = 10", ""));
    // S2: a server's cookie value without the backend's cookie.
    let t = http("", "", "cookie = \"s1\"", "");
    refused(
        &t,
        "backend[0].server[0].cookie",
        "cookie = \"s1\"",
        "no effect",
    );
    let t = http("", "balance = \"source\"", "cookie = \"s1\"", "");
    refused(
        &t,
        "backend[0].server[0].cookie",
        "cookie = \"s1\"",
        "no effect",
    );
    accepted(&http("", "cookie = \"S insert\"", "cookie = \"s1\"", ""));
}

#[test]
fn a_backend_no_frontend_uses_is_refused() {
    // B15, at its name.
    let unused = "\n[[backend]]\nname = \"spare\"\n[[backend.server]]\nname = \"x\"\naddress = \"198.18.1.20\"\n";
    let t = l4("", "", "", unused);
    refused(
        &t,
        "backend[1].name",
        "name = \"spare\"",
        "no frontend has default_backend",
    );
    // An HTTP key on it is still named first (it is refused on l4 too).
    let t = l4(
        "",
        "",
        "",
        "\n[[backend]]\nname = \"spare\"\ncookie = \"S insert\"\n",
    );
    refused(&t, "backend[1].cookie", "cookie = \"S insert\"", "http");
    // T4: a checked template there would have no port to check; refused
    // with the backend.
    let t = l4(
        "",
        "",
        "",
        "\n[resolvers.r]\nnameservers = [\"127.0.0.1:53\"]\n\
         [[backend]]\nname = \"spare\"\n\
         server_template = { prefix = \"t\", count = 2, fqdn = \"a.example\", resolvers = \"r\", check = true }\n",
    );
    refused(
        &t,
        "backend[1].name",
        "name = \"spare\"",
        "would have an effect",
    );
}

#[test]
fn libc_on_an_srv_name_is_refused() {
    // T3: only an explicit list; the default stays.
    let resolvers = "[resolvers.r]\nnameservers = [\"127.0.0.1:53\"]\n";
    let template = |init: &str| {
        format!(
            "server_template = {{ prefix = \"t\", count = 2, fqdn = \"_http._tcp.a.example\", \
             resolvers = \"r\"{init} }}"
        )
    };
    for init in ["libc", "libc,none", "last,libc"] {
        let t = http(
            "",
            &template(&format!(", init_addr = \"{init}\"")),
            "",
            resolvers,
        );
        refused(
            &t,
            "backend[0].server_template.init_addr",
            "server_template",
            "SRV",
        );
    }
    accepted(&http(
        "",
        &template(", init_addr = \"last,none\""),
        "",
        resolvers,
    ));
    accepted(&http("", &template(""), "", resolvers));
    // A plain name may use libc.
    accepted(&http(
        "",
        "server_template = { prefix = \"t\", count = 2, fqdn = \"a.example\", resolvers = \"r\", init_addr = \"libc,none\" }",
        "",
        resolvers,
    ));
}

#[test]
fn a_resolvers_section_no_template_names_is_refused() {
    // R1, at the section's header.
    let t = http(
        "",
        "",
        "",
        "[resolvers.spare]\nnameservers = [\"127.0.0.1:53\"]\n",
    );
    refused(&t, "resolvers.spare", "[resolvers.spare]", "no effect");
}

const PEERS: &str = "[peers.lb]\nlocal = \"a\"\nsecret = \"0123456789abcdef\"\n\
                     [peers.lb.peer]\na = \"198.18.0.1:7100\"\nb = \"198.18.0.2:7100\"\n";

#[test]
fn a_peers_section_that_replicates_nothing_is_refused() {
    // P1: no stick table names it.
    let t = l4("", "", "", PEERS);
    refused(&t, "peers.lb", "[peers.lb]", "replicate nothing");
    let t = http("", HTTP_STICK, "", PEERS);
    refused(&t, "peers.lb", "[peers.lb]", "stick_table");
    accepted(&l4("", "stick_table = { peers = \"lb\" }", "", PEERS));
    // HTTP stick tables are replicated too.
    accepted(&http(
        "",
        "stick_table = { size = \"1k\", peers = \"lb\" }\nstick = \"on src\"",
        "",
        PEERS,
    ));
    // P2: the local peer alone.
    let lone = PEERS.replace("b = \"198.18.0.2:7100\"\n", "");
    let t = l4("", "stick_table = { peers = \"lb\" }", "", &lone);
    refused(&t, "peers.lb.peer", "[peers.lb.peer]", "no effect");
}

/// An http backend with `cookie = "<args>"` and a server cookie value.
fn cookie(args: &str) -> String {
    http("", &format!("cookie = \"{args}\""), "cookie = \"s1\"", "")
}

#[test]
fn cookie_options_that_would_do_nothing_are_refused() {
    let refused_cookie = |args: &str, why: &str| {
        refused(&cookie(args), "backend[0].cookie", "cookie = \"S", why);
    };
    // C1: insert-only options in other modes.
    refused_cookie("S rewrite nocache", "`nocache` acts only");
    refused_cookie("S nocache httponly", "`nocache`, `httponly` act only");
    refused_cookie("S prefix secure", "`prefix` mode");
    refused_cookie("S indirect domain .a.example", "`domain`");
    refused_cookie("S rewrite attr SameSite=Lax", "`attr`");
    refused_cookie("S postonly", "passive mode");
    accepted(&cookie(
        "S insert indirect nocache postonly httponly secure domain .a.example attr SameSite=Lax",
    ));
    // C2: dates in prefix mode; they are checked in the other modes.
    refused_cookie("S prefix maxidle 30m", "`maxidle` checks the dates");
    refused_cookie("S prefix maxidle 30m maxlife 2h", "prefix");
    accepted(&cookie("S rewrite maxidle 30m"));
    accepted(&cookie("S maxlife 2h"));
    // C3: what HAProxy only warns about.
    refused_cookie("S insert maxidle 30mn", "after the timer value '30mn'");
    refused_cookie("S insert domain localhost", "no embedded dot");
    // C4: repeats, and a 0 that is the default.
    refused_cookie("S insert insert", "`insert` is given twice");
    refused_cookie(
        "S insert indirect nocache indirect",
        "`indirect` is given twice",
    );
    refused_cookie(
        "S insert maxidle 10 maxidle 20",
        "only the last value counts",
    );
    refused_cookie(
        "S insert domain .a.example domain .a.example",
        "`domain .a.example` is given twice",
    );
    refused_cookie("S insert maxlife 0", "0 means no limit");
    // Several domains (and attributes) each add their own.
    let c = accepted(&cookie(
        "S insert domain .a.example domain .b.example attr A=1 attr B=2",
    ));
    let cc = c.backends[0]
        .http
        .as_ref()
        .unwrap()
        .cookie
        .as_ref()
        .unwrap();
    assert_eq!(cc.domains, [".a.example", ".b.example"]);
    assert_eq!(cc.attrs, ["A=1", "B=2"]);
}
