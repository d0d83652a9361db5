//! How the CLI prints the admin API's answers as tables.

use balancer::api;

pub(crate) fn print_peers(v: &api::PeersStatus) {
    println!(
        "peers {}: local {} on {}; refused handshakes {}, bad frames {}, auth failures {}",
        v.section, v.local, v.bind, v.refused_handshakes, v.bad_frames, v.auth_failures
    );
    println!(
        "{:<12} {:<22} {:<10} {:>3} {:>12} {:>10} {:>10} {:>10} {:>9}  last error",
        "peer",
        "address",
        "outbound",
        "in",
        "last contact",
        "sent",
        "received",
        "written",
        "lag ms"
    );
    for p in &v.peers {
        let contact = match p.last_contact_ms_ago {
            Some(ms) => format!("{:.1}s ago", ms as f64 / 1000.0),
            None => "never".into(),
        };
        println!(
            "{:<12} {:<22} {:<10} {:>3} {:>12} {:>10} {:>10} {:>10} {:>9.1}  {}",
            p.name,
            p.address,
            p.outbound.as_str(),
            p.inbound,
            contact,
            p.entries_sent,
            p.entries_received,
            p.learned.written,
            p.lag_ms,
            p.last_error.as_deref().unwrap_or("-")
        );
    }
    let e = &v.engine;
    println!(
        "engine: {} scans (last {} entries in {} us, max {} us), {} tracked, {} changes found",
        e.scans,
        e.last_scan_entries,
        e.last_scan_us,
        e.max_scan_us,
        e.tracked_entries,
        e.changes_found
    );
}

pub(crate) fn print_stats(v: &api::Stats) {
    // The XDP program's packet classes, where it has a frontend (HTTP
    // frontends' packets never pass it).
    let l4 = v
        .frontends
        .keys()
        .any(|n| !v.http.frontends.contains_key(n));
    if l4 {
        println!("{:<12} {:>14} {:>16}", "class", "packets", "bytes");
        for (name, c) in &v.classes {
            println!("{name:<12} {:>14} {:>16}", c.packets, c.bytes);
        }
    }
    for (i, (name, f)) in v.frontends.iter().enumerate() {
        if l4 || i > 0 {
            println!();
        }
        println!("frontend {name}");
        // An HTTP frontend's packet counters are all zero: its request
        // counters instead, requests and responses first.
        if let Some(h) = v.http.frontends.get(name) {
            for (k, n) in h.rows() {
                println!("  {k:<16} {n:>14}");
            }
            for l in h.tls_lines(std::time::SystemTime::now()) {
                println!("  {l}");
            }
            continue;
        }
        for (k, n) in f {
            println!("  {k:<16} {n:>14}");
        }
    }
    if !v.http.servers.is_empty() {
        let titles = [
            "requests",
            "2xx",
            "3xx",
            "4xx",
            "5xx",
            "connect err",
            "response err",
            "timeouts",
            "current",
            "queued",
        ];
        print!("\n{:<24}", "http server");
        for title in titles {
            print!(" {title:>12}");
        }
        println!();
        for (name, s) in &v.http.servers {
            let r = &s.responses;
            let cols = [
                s.requests,
                r.responses_2xx,
                r.responses_3xx,
                r.responses_4xx,
                r.responses_5xx,
                s.connect_errors,
                s.response_errors,
                s.timeouts,
            ];
            print!("{name:<24}");
            for n in cols {
                print!(" {n:>12}");
            }
            // Gauges of servers with `maxconn`.
            for g in [s.current, s.queued] {
                match g {
                    Some(n) => print!(" {n:>12}"),
                    None => print!(" {:>12}", "-"),
                }
            }
            println!();
        }
    }
}

pub(crate) fn print_servers(v: &[api::ServerView]) {
    println!(
        "{:<4} {:<24} {:<28} {:<6} {:<6} {:>6} {:>12}  next hop",
        "id", "server", "address", "state", "admin", "weight", "packets"
    );
    for s in v {
        let name = format!("{}/{}", s.backend, s.server);
        // An HTTP server (IP:PORT): reached by the proxy's connections, so
        // no packet count and no next hop of the XDP path.
        let http = s.address.parse::<std::net::SocketAddr>().is_ok();
        let packets = match http {
            true => "-".to_owned(),
            false => s.packets.to_string(),
        };
        let mut hop = match (&s.next_hop, http) {
            (Some(h), _) => h.clone(),
            (None, true) => "(http)".to_owned(),
            (None, false) => format!("UNRESOLVED: {}", s.error.as_deref().unwrap_or("?")),
        };
        if let Some(c) = &s.check {
            hop = format!("{hop}; check {c}");
        }
        if let Some(d) = &s.dns {
            hop = match (&d.record, d.ttl) {
                (Some(r), Some(ttl)) => format!("{hop}; dns {}: {r} ttl {ttl}s", d.fqdn),
                _ => format!("{hop}; dns {}: empty slot", d.fqdn),
            };
        }
        println!(
            "{:<4} {:<24} {:<28} {:<6} {:<6} {:>6} {:>12}  {hop}",
            s.id, name, s.address, s.state, s.admin_state, s.weight, packets
        );
    }
}

/// A time in ms as a person reads it: `850ms`, `12.4s`, `29m05s`, `3h02m`.
pub(crate) fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_as_people_read_them() {
        let h = super::human_ms;
        assert_eq!(
            [h(850), h(12_400), h(1_745_000), h(10_920_000)],
            ["850ms", "12.4s", "29m05s", "3h02m"]
        );
    }
}
