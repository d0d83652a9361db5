//! The `balancer` command: the daemon and the operator's CLI.

use std::{io::Write as _, path::PathBuf, process::ExitCode};

mod cfg_args;
mod cli;
use cli::{BackendCmd, Cli, Command, Json, PeersCmd, TableCmd};
mod print;
use print::{print_peers, print_servers, print_stats};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context as _;
use balancer::{
    admin::client::{request, request_bytes},
    api,
    config::{Config, DEFAULT_PIN_DIR},
    daemon,
    dataplane::{AuxProgram, Dataplane},
};
use balancer_common::maps::{
    DECAP_COUNTER_NAMES, DECAP_REFUSED_V4, DECAP_REFUSED_V6, MAX_TUNNEL_SOURCES, PASS_PROGRAM,
};
use clap::Parser as _;
use hyper::Method;
use serde_json::{Value, json};

/// One server as the daemon describes it, as `backend list` prints it.
fn print_server(v: Value) -> anyhow::Result<()> {
    print_servers(&[typed(v)?]);
    Ok(())
}

/// The daemon's answer `v`: as JSON with `--json`, else as `text` prints it.
fn print_answer(
    out: Json,
    v: Value,
    text: impl FnOnce(Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if out.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        Ok(())
    } else {
        text(v)
    }
}

/// An error and its causes on one line, joined by ": ", each cause said
/// once: one whose text the line already holds (an error that prints its
/// source, and also names it as its source) is left out.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let pairs: Vec<(&str, Option<&str>)> = pairs.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    balancer::admin::request::query_string(&pairs)
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let socket = cli.command.socket(cli.socket)?;
    let api = |method: Method, path: String, body: Option<Value>| -> anyhow::Result<Value> {
        Ok(runtime()?.block_on(request(&socket, method, &path, body))?)
    };
    match cli.command {
        Command::Run {
            config,
            cfg,
            reset,
            takeover,
        } => {
            let loaded = Config::load_with(&config, &cfg.options()?)?;
            for w in &loaded.warnings {
                log::warn!("{w}");
            }
            // The daemon serves HTTP on every core; the CLI needs one thread.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("balancer")
                .build()
                .context("starting the async runtime")?;
            rt.block_on(daemon::run(config, loaded, reset, takeover))?;
        }
        Command::Detach {
            config,
            pin_dir,
            json,
        } => {
            let pin_dir = match config {
                Some(path) => Config::load(&path)?.dataplane.pin_dir,
                None => pin_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR)),
            };
            let mut removed = Vec::new();
            if pin_dir.exists() {
                let lock = daemon::PinLock::take(&pin_dir)?;
                removed = Dataplane::remove_pins(&pin_dir)?;
                drop(lock);
                // remove_pins leaves the directory when it holds anything else.
                let _ = std::fs::remove_dir(&pin_dir);
            }
            if json {
                let v = json!({"pin_dir": pin_dir, "removed": removed});
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for p in &removed {
                println!("removed {}", p.display());
            }
            if removed.is_empty() {
                println!("nothing pinned under {}", pin_dir.display());
            }
        }
        Command::Decap {
            interface,
            tunnel_sources,
            xdp_mode,
        } => {
            let mode = match xdp_mode.as_str() {
                "native" => balancer::config::XdpMode::Native,
                "generic" => balancer::config::XdpMode::Generic,
                _ => balancer::config::XdpMode::Auto,
            };
            decap(&interface, mode, &tunnel_sources)?;
        }
        Command::Gen {
            interface,
            dst,
            dst_mac,
            src_mac,
            src,
            src_count,
            proto,
            count,
            duration,
            rate,
            payload,
        } => {
            use balancer::trafficgen::{self, GenKind, GenSpec};
            let dst_mac = trafficgen::parse_mac(&dst_mac)
                .with_context(|| format!("--dst-mac {dst_mac:?}: want aa:bb:cc:dd:ee:ff"))?;
            let src_mac = match src_mac {
                Some(m) => trafficgen::parse_mac(&m)
                    .with_context(|| format!("--src-mac {m:?}: want aa:bb:cc:dd:ee:ff"))?,
                None => trafficgen::interface_mac(&interface)?,
            };
            if duration.is_some_and(|d| !(d > 0.0 && d < 86_400.0)) {
                anyhow::bail!("--duration must be between 0 and 86400 seconds");
            }
            let spec = GenSpec {
                interface,
                src_mac,
                dst_mac,
                src_base: src,
                src_count,
                dst,
                kind: match proto.as_str() {
                    "tcp-ack" => GenKind::TcpAck,
                    "udp" => GenKind::Udp,
                    _ => GenKind::TcpSyn,
                },
                count,
                duration: duration.map(std::time::Duration::from_secs_f64),
                rate,
                payload,
            };
            let r = trafficgen::run(&spec)?;
            println!(
                "{}",
                json!({"sent": r.sent, "seconds": r.seconds, "pps": r.pps, "frame_bytes": r.frame_len})
            );
        }
        Command::XdpPass { interface } => {
            let _pass =
                AuxProgram::attach(PASS_PROGRAM, &interface, balancer::config::XdpMode::Native)?;
            wait_for_signal()?;
        }
        Command::CheckConfig { config, cfg, json } => cfg_args::check_config(&config, &cfg, json)?,
        Command::Doctor {
            config,
            cfg,
            dsr_backend,
            ipip,
            json,
        } => {
            use balancer::daemon::doctor;
            let findings = match (config, dsr_backend) {
                (Some(path), _) => {
                    let c = Config::load_with(&path, &cfg.options()?)?;
                    runtime()?.block_on(doctor::diagnose(&path, &c))
                }
                (None, Some(vip)) => doctor::diagnose_backend(vip, ipip),
                (None, None) => anyhow::bail!("give --config FILE or --dsr-backend VIP"),
            };
            let failed = doctor::print(&findings, json);
            if failed > 0 {
                anyhow::bail!("{failed} of {} checks failed", findings.len());
            }
        }
        Command::Convert { config, cfg } => {
            print!(
                "{}",
                balancer::config::convert_file(&config, &cfg.options()?)?
            );
        }
        Command::Stats {
            pin_dir: None,
            config: None,
            json,
            ..
        } => {
            let v = api(Method::GET, "/v1/stats".into(), None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_stats(&typed(v)?);
            }
        }
        Command::Stats {
            pin_dir,
            config,
            json,
            ..
        } => {
            let pin_dir = match config {
                Some(path) => Config::load(&path)?.dataplane.pin_dir,
                None => pin_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR)),
            };
            let stats = Dataplane::pinned_stats(&pin_dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats.to_json())?);
            } else {
                print!("{}", stats.table());
            }
        }
        Command::Backend {
            cmd: BackendCmd::List { json },
            ..
        } => {
            let v = api(Method::GET, "/v1/backends".into(), None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_servers(&typed::<Vec<_>>(v)?);
            }
        }
        Command::Backend {
            cmd: BackendCmd::State { name, state, out },
            ..
        } => {
            let v = api(
                Method::PUT,
                "/v1/backends/state".into(),
                Some(json!({"server": name, "state": state})),
            )?;
            print_answer(out, v, print_server)?;
        }
        Command::Backend {
            cmd: BackendCmd::Weight { name, weight, out },
            ..
        } => {
            let v = api(
                Method::PUT,
                "/v1/backends/weight".into(),
                Some(json!({"server": name, "weight": weight})),
            )?;
            print_answer(out, v, print_server)?;
        }
        Command::Backend {
            cmd:
                BackendCmd::Add {
                    backend,
                    server,
                    address,
                    weight,
                    state,
                    check,
                    cookie,
                    out,
                },
            ..
        } => {
            let v = api(
                Method::POST,
                "/v1/backends".into(),
                Some(
                    json!({"backend": backend, "server": server, "address": address,
                            "cookie": cookie, "weight": weight, "state": state, "check": check}),
                ),
            )?;
            print_answer(out, v, print_server)?;
        }
        Command::Backend {
            cmd: BackendCmd::Remove { name, out },
            ..
        } => {
            let v = api(
                Method::DELETE,
                format!("/v1/backends{}", query(&[("server", &Some(name))])),
                None,
            )?;
            print_answer(out, v, |v| {
                println!("removed:");
                print_server(v)
            })?;
        }
        Command::Table {
            cmd:
                TableCmd::Show {
                    frontend,
                    client,
                    json,
                },
            ..
        } => {
            let path = format!(
                "/v1/table{}",
                query(&[("frontend", &frontend), ("client", &client)])
            );
            let bytes = runtime()?.block_on(request_bytes(&socket, Method::GET, &path, None))?;
            // Typed rows borrowing the answer's names, not a `Value` tree: a
            // million entries would take about 1 GB as one.
            let mut rows: Vec<api::TableEntry> =
                serde_json::from_slice(&bytes).context("table show: answer is not a table")?;
            // By table, then client (the daemon lists them in hash order).
            rows.sort_by(|a, b| {
                (&a.frontend, &a.backend, a.client).cmp(&(&b.frontend, &b.backend, b.client))
            });
            if json {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
            } else {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                writeln!(
                    out,
                    "{:<16} {:<40} {:<24} {:>10} {:>10}",
                    "table", "client", "server", "idle", "expires in"
                )?;
                for r in &rows {
                    // An L4 frontend's table, or an HTTP backend's.
                    let table = match (&r.frontend, &r.backend) {
                        (Some(f), _) => f.to_string(),
                        (None, Some(b)) => format!("backend/{b}"),
                        (None, None) => "?".into(),
                    };
                    writeln!(
                        out,
                        "{:<16} {:<40} {:<24} {:>10} {:>10}",
                        table,
                        r.client,
                        r.server.as_deref().unwrap_or("(removed)"),
                        print::human_ms(r.idle_ms),
                        r.expires_in_ms.map_or("?".into(), print::human_ms)
                    )?;
                }
                out.flush()?;
            }
        }
        Command::Table {
            cmd: TableCmd::Count { frontend, json },
            ..
        } => {
            let v = api(
                Method::GET,
                format!("/v1/table/count{}", query(&[("frontend", &frontend)])),
                None,
            )?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&v)?),
                false => println!("{}", typed::<api::TableCount>(v)?.entries),
            }
        }
        Command::Table {
            cmd:
                TableCmd::Set {
                    frontend,
                    client,
                    server,
                    out,
                },
            ..
        } => {
            let body = json!({"frontend": frontend, "client": client, "server": server});
            let bytes = runtime()?.block_on(request_bytes(
                &socket,
                Method::PUT,
                "/v1/table",
                Some(body),
            ))?;
            if out.json {
                let v: Value =
                    serde_json::from_slice(&bytes).context("table set: answer is not JSON")?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let e: api::TableEntry =
                serde_json::from_slice(&bytes).context("table set: answer is not an entry")?;
            // The frontend as given (an HTTP frontend's table is its backend's).
            println!(
                "{frontend} {} -> {}",
                e.client,
                e.server.as_deref().unwrap_or("?")
            );
        }
        Command::Table {
            cmd:
                TableCmd::Clear {
                    frontend,
                    client,
                    all,
                    out,
                },
            ..
        } => {
            let all = all.then(|| "1".to_owned());
            let v = api(
                Method::DELETE,
                format!(
                    "/v1/table{}",
                    query(&[("frontend", &frontend), ("client", &client), ("all", &all)])
                ),
                None,
            )?;
            print_answer(out, v, |v| {
                println!("removed {}", typed::<api::Removed>(v)?.removed);
                Ok(())
            })?;
        }
        Command::Peers {
            cmd: PeersCmd::Status { json },
            ..
        } => {
            let v = api(Method::GET, "/v1/peers".into(), None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_peers(&typed(v)?);
            }
        }
        Command::Status { json, .. } => {
            let v = api(Method::GET, "/v1/status".into(), None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let s: api::Status = typed(v)?;
                match s.interfaces.is_empty() {
                    true => println!("interfaces: none (no XDP program)"),
                    false => println!("interfaces: {}", s.interfaces.join(", ")),
                }
                for f in &s.frontends {
                    println!(
                        "frontend {} {} {} -> backend {} ({})",
                        f.name, f.proto, f.bind, f.backend, f.forward
                    );
                }
                println!("servers: {}", s.servers);
                println!(
                    "stick table: {} of {} entries",
                    s.stick_entries, s.stick_capacity
                );
            }
        }
    }
    Ok(())
}

/// An answer of the admin API as its type.
fn typed<T: serde::de::DeserializeOwned>(v: Value) -> anyhow::Result<T> {
    serde_json::from_value(v).context("the daemon's answer is not of the expected shape")
}

/// `balancer decap`: attach, report refused IP-in-IP while it goes on
/// (at most every 10 s), and every counter at the end.
fn decap(
    interface: &str,
    mode: balancer::config::XdpMode,
    sources: &[std::net::IpAddr],
) -> anyhow::Result<()> {
    let mut sources = sources.to_vec();
    sources.sort();
    sources.dedup();
    if sources.len() > MAX_TUNNEL_SOURCES as usize {
        anyhow::bail!("at most {MAX_TUNNEL_SOURCES} --tunnel-source addresses");
    }
    if let Some(a) = sources
        .iter()
        .find(|a| a.is_unspecified() || a.is_multicast())
    {
        anyhow::bail!("--tunnel-source {a}: not a unicast address");
    }
    let prog = AuxProgram::attach_decap(interface, mode, &sources)?;
    let list: Vec<String> = sources.iter().map(ToString::to_string).collect();
    log::info!(
        "decap on {interface}: IP-in-IP accepted from {} only",
        list.join(", ")
    );
    let refused = |c: &[u64]| c[DECAP_REFUSED_V4 as usize] + c[DECAP_REFUSED_V6 as usize];
    runtime()?.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        let mut reported = 0;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = tick.tick() => {
                    let n = refused(&prog.counts()?);
                    if n > reported {
                        log::warn!(
                            "decap on {interface}: {n} IP-in-IP packets from unlisted sources dropped so far"
                        );
                        reported = n;
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    let counts = prog.counts()?;
    let line: Vec<String> = DECAP_COUNTER_NAMES
        .iter()
        .zip(counts)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    log::info!("decap on {interface}: {}", line.join(", "));
    Ok(())
}

fn wait_for_signal() -> anyhow::Result<()> {
    runtime()?.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    #[test]
    fn each_cause_once() {
        let io = std::io::Error::from_raw_os_error(98);
        let e = anyhow::Error::new(io)
            .context("cannot listen on 198.18.0.1:80: Address already in use (os error 98)")
            .context("http frontend web");
        assert_eq!(
            super::one_line(&e),
            "http frontend web: cannot listen on 198.18.0.1:80: Address already in use (os error \
             98)"
        );
        let e = anyhow::anyhow!("root cause").context("outer");
        assert_eq!(super::one_line(&e), "outer: root cause");
    }

    #[test]
    fn every_flag_and_argument_has_help() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if id != "help" && id != "version" && a.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for s in c.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(
            &<super::Cli as clap::CommandFactory>::command(),
            "balancer",
            &mut missing,
        );
        assert!(missing.is_empty(), "no help: {missing:#?}");
    }

    #[test]
    fn table_clear_says_which() {
        let parse = |args: &[&str]| super::Cli::try_parse_from(args.iter().copied());
        let e = parse(&["balancer", "table", "clear"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--all"), "{e}");
        assert!(parse(&["balancer", "table", "clear", "--all"]).is_ok());
        assert!(parse(&["balancer", "table", "clear", "--frontend", "web"]).is_ok());
        assert!(parse(&["balancer", "table", "clear", "--all", "--client", "::1"]).is_err());
    }
}
