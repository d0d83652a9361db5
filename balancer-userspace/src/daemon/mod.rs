//! `balancer run`: load, program, attach, pin, serve the admin API, follow
//! next-hop changes.
//!
//! State outlives the process. The stick table, the counters and the id
//! maps are pinned under `pin_dir`, and each interface's XDP link is pinned
//! there too (`link-<ifname>`). On SIGINT/SIGTERM, or if the daemon is
//! killed, XDP stays attached and keeps forwarding with the last tables; the
//! next `balancer run` with the same `pin_dir` reuses the pinned maps and
//! swaps its program into the pinned links atomically (no packet sees an
//! interface without XDP). `balancer run --reset` discards the pinned state
//! first; `balancer detach` removes it (and with it XDP). A start that fails
//! before running undoes what it created and leaves adopted state alone.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use aya_log::EbpfLogger;
use log::{info, warn};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::Mutex,
};

mod budget;
pub mod doctor;
mod frontends;
mod pins;
mod reload;
pub mod takeover;
mod upgrade;

pub use budget::Budget;
use doctor::not_permitted;
pub use pins::PinLock;
use pins::check_pin_dir;

use crate::{
    admin::{self, AdminError},
    config::{Config, Mode},
    control::{ControlError, Controller},
    dataplane::{Dataplane, DataplaneError, LoadOptions, StickStore},
    health,
    http::tls::{Terminator, TlsError},
    netlink,
};

/// On shutdown, how long HTTP requests in flight may take to finish.
const HTTP_GRACE: Duration = Duration::from_secs(10);
/// Next-hop changes arrive in bursts: wait this long for the burst to end.
const RESOLVE_DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("pin_dir {path}: {reason}")]
    PinDir { path: String, reason: String },
    /// The kernel refused a BPF map or the program for want of privilege.
    #[error(
        "{0}: {1}: the XDP data plane needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (CAP_SYS_ADMIN \
         before Linux 5.8): run `balancer run` as root, or as the installed balancer.service, or \
         grant them with `setcap cap_bpf,cap_net_admin,cap_perfmon,cap_sys_resource+ep` on the \
         binary; a configuration with only HTTP frontends (no interfaces, no pin_dir) needs none"
    )]
    NotPermitted(Box<DataplaneError>, String),
    #[error("{0}")]
    Takeover(String),
    #[error("metrics.bind {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Descriptors(String),
    #[error("http frontend {frontend:?}: cannot listen on {addr}: {source}")]
    HttpBind {
        frontend: String,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
    #[error("signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Peers(#[from] crate::peers::PeersError),
    #[error(transparent)]
    Tls(#[from] crate::http::tls::TlsError),
    #[error(transparent)]
    AccessLog(#[from] crate::http::log::SinkError),
}

/// Run until SIGINT or SIGTERM. On any error before that, everything already
/// attached or pinned is undone before returning (the data plane's Drop).
///
/// With `takeover`, the daemon running on the same admin socket hands over
/// its HTTP listening sockets and lets go first (see [`takeover`]).
pub async fn run(
    config_path: PathBuf,
    config: Config,
    reset: bool,
    takeover: bool,
) -> Result<(), DaemonError> {
    match crate::util::raise_nofile() {
        Ok(n) => info!("descriptor limit {n}"),
        Err(e) => warn!("reading the descriptor limit: {e}"),
    }
    let taken = if takeover {
        let socket = config.admin_socket.clone();
        let blocking = |e: tokio::task::JoinError| DaemonError::Takeover(e.to_string());
        let mut t = tokio::task::spawn_blocking(move || takeover::request(&socket))
            .await
            .map_err(blocking)?
            .map_err(|e| DaemonError::Takeover(e.to_string()))?;
        info!(
            "takeover: {} listening socket(s) received from the running daemon",
            t.listeners.len()
        );
        // What can fail is tried while it still serves (dropping `t`
        // tells it to go on).
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        frontends::prepare_takeover(&config, &mut t, workers)?;
        info!("takeover: ready; asking it to let go");
        // It stops accepting (what arrives waits in the sockets' backlog,
        // now ours too) and frees the pin directory, the admin socket and
        // its other listeners.
        let taken = tokio::task::spawn_blocking(move || t.release().map(|()| t))
            .await
            .map_err(blocking)?
            .map_err(|e| DaemonError::Takeover(e.to_string()))?;
        info!("takeover: the old daemon let go; starting");
        Some(taken)
    } else {
        None
    };
    if !config.needs_kernel() {
        // HTTP only: no program, no pins, no lock on a pin directory.
        if reset {
            info!("--reset: nothing is pinned (no XDP interface, no pin_dir)");
        }
        let opts = LoadOptions::for_config(&config);
        let dp = match &taken {
            Some(t) => Dataplane::in_memory_from(opts, &t.state)?,
            None => Dataplane::in_memory(opts),
        };
        let running = start(dp, config, taken).await?;
        return running.serve(None, config_path).await;
    }
    let pin_dir = config.dataplane.pin_dir.clone();
    check_pin_dir(&pin_dir)?;
    // A start that fails leaves no directory of its own behind.
    let created = !pin_dir.exists();
    let lock = PinLock::take(&pin_dir)?;
    let undo = |e: DaemonError| {
        if created {
            let _ = Dataplane::remove_pins(&pin_dir);
            // Only when empty: whatever else is in it is not ours.
            let _ = std::fs::remove_dir(&pin_dir);
        }
        e
    };
    if reset {
        let removed = Dataplane::remove_pins(&pin_dir)?;
        info!(
            "--reset: removed {} pinned object(s) under {}",
            removed.len(),
            pin_dir.display()
        );
    }
    let (dp, adopted) = Dataplane::load_pinned(LoadOptions::for_config(&config), &pin_dir)
        .map_err(|e| undo(not_permitted(e)))?;
    let fresh = adopted.maps.is_empty();
    if !fresh {
        info!(
            "adopted pinned state under {}: {} ({} stick entries)",
            pin_dir.display(),
            adopted.maps.join(", "),
            dp.stick_count(None).unwrap_or(0)
        );
    }
    if let Some(n) = adopted.stick_size_kept {
        warn!(
            "the pinned stick table has {n} entries, not the configured size: kept (resizing \
             would empty it); `balancer run --reset` applies the configured size"
        );
    }
    match start(dp, config, taken).await {
        Ok(running) => running.serve(Some(lock), config_path).await,
        Err(e) => {
            // Undo what this start created; state adopted from an earlier
            // daemon stays as it was (its program is still attached).
            if fresh {
                let _ = Dataplane::remove_pins(&pin_dir);
                let _ = std::fs::remove_dir(&pin_dir);
            }
            Err(undo(e))
        }
    }
}

/// Programmed and attached, not serving yet.
struct Running {
    controller: Controller,
    listener: tokio::net::UnixListener,
    /// The HTTP frontends' listening sockets, to serve once running.
    http: Vec<(frontends::Listeners, crate::config::Frontend)>,
    frontends: frontends::Frontends,
    /// The TLS frontends' terminators, by frontend name.
    tls: Tls,
    metrics: Option<tokio::net::TcpListener>,
    logger: Option<AsyncFd<EbpfLogger<&'static dyn log::Log>>>,
    interfaces: Vec<String>,
    /// `None`: no kernel data plane.
    pin_dir: Option<std::path::PathBuf>,
    admin_socket: std::path::PathBuf,
    /// `[peers]`: the section and its bound listener.
    peers: Option<(crate::config::PeersConfig, tokio::net::TcpListener)>,
}

async fn start(
    mut dp: Dataplane,
    config: Config,
    mut taken: Option<takeover::Taken>,
) -> Result<Running, DaemonError> {
    let pin_dir = dp.is_kernel().then(|| config.dataplane.pin_dir.clone());
    // aya-log: records from the program reach this process's logger.
    let logger = match dp.ebpf_mut().map(EbpfLogger::init) {
        // SAFETY: the logger owns its ring buffer fd and keeps it open and
        // unchanged for as long as it lives, which is as long as the AsyncFd.
        Ok(Ok(l)) => {
            unsafe { AsyncFd::register_with_interest(l, tokio::io::Interest::READABLE) }.ok()
        }
        Ok(Err(e)) => {
            warn!("no log channel from the XDP program: {e}");
            None
        }
        Err(_) => None,
    };
    let interfaces = config.dataplane.interfaces.clone();
    let mode = config.dataplane.xdp_mode;
    let admin_socket = config.admin_socket.clone();
    let listener = admin::bind(&admin_socket)?;
    let metrics = match config.metrics_bind {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Metrics { addr, source })?,
        ),
        None => None,
    };
    let peers = match &config.peers {
        Some(p) => Some((p.clone(), crate::peers::bind(p).await?)),
        None => None,
    };
    // HTTP frontends: their listening sockets now, so a taken port fails
    // the start before anything is attached.
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let tls = load_tls(&config)?;
    let http = config
        .frontends
        .iter()
        .filter(|f| f.mode == Mode::Http)
        .map(|f| {
            Ok((
                frontends::bind(f, &config, workers, taken.as_mut())?,
                f.clone(),
            ))
        })
        .collect::<Result<Vec<_>, DaemonError>>()?;
    // Maps first, then attach: the first packet already sees the services.
    let mut controller = Controller::new(dp, config).await?;
    controller.init_discovery().await?;
    if let Some(pin_dir) = &pin_dir {
        for name in &interfaces {
            controller.dp.attach_pinned(name, mode, pin_dir)?;
        }
        doctor::warn_veth_peers(&interfaces).await;
    }
    // What is left of the descriptor limit is the HTTP proxy's.
    let budget = Budget::new(&controller.config, workers)?;
    if !http.is_empty() {
        info!("{budget}");
    }
    let mut frontends = frontends::Frontends::new(workers, budget.maxconn);
    // Access-log targets: opened now, so one that cannot work fails the start.
    for (_, f) in &http {
        frontends.open_log_target(f)?;
    }
    Ok(Running {
        controller,
        listener,
        metrics,
        http,
        frontends,
        tls,
        logger,
        interfaces,
        pin_dir,
        admin_socket,
        peers,
    })
}

/// The TLS frontends' terminators, by frontend name.
type Tls = BTreeMap<String, Arc<Terminator>>;

/// Load every TLS frontend's certificates (also what `check-config`
/// checks of them).
pub fn load_tls(config: &Config) -> Result<Tls, TlsError> {
    let mut out = BTreeMap::new();
    for f in &config.frontends {
        if let Some(t) = &f.tls {
            out.insert(f.name.clone(), Arc::new(Terminator::new(&f.name, t)?));
        }
    }
    Ok(out)
}

impl Running {
    async fn serve(self, lock: Option<PinLock>, config_path: PathBuf) -> Result<(), DaemonError> {
        let Running {
            controller,
            listener,
            metrics,
            http,
            mut frontends,
            mut tls,
            mut logger,
            interfaces,
            pin_dir,
            admin_socket,
            peers,
        } = self;
        // Health checks: one task per checked server, results to the main
        // loop tagged with the configuration generation they belong to.
        let (check_tx, mut check_rx) = tokio::sync::mpsc::channel(64);
        let mut generation = 0u64;
        let mut check_tasks = spawn_checks(&controller, &check_tx, generation);
        let controller_count_interval = controller.config.table_count_interval;
        let checks_changed = controller.checks_changed.clone();
        let shared = Arc::new(Mutex::new(controller));
        // DNS discovery: one task per template, answers to the main loop
        // tagged like the checks' results.
        let (dns_tx, mut dns_rx) = tokio::sync::mpsc::channel(64);
        let mut dns_tasks = spawn_discovery(&*shared.lock().await, &dns_tx, generation);
        // Stick-table replication; stopped when dropped.
        let mut peers = match peers {
            Some((cfg, l)) => {
                let store = shared.lock().await.dp.stick_store()?;
                let source = match (&pin_dir, store) {
                    (Some(dir), _) => Some(crate::peers::Source::Pinned(dir)),
                    (None, StickStore::Memory(m)) => Some(crate::peers::Source::Memory(m)),
                    // Kernel maps always come with their pin directory.
                    (None, StickStore::Map(_)) => None,
                };
                match source {
                    Some(source) => {
                        Some(crate::peers::start(cfg, l, source, shared.clone()).await?)
                    }
                    None => None,
                }
            }
            None => None,
        };
        let peers_status = peers.as_ref().map(|p| {
            let ctx = p.ctx.clone();
            Arc::new(move || ctx.status()) as admin::PeersStatus
        });
        // A new daemon taking over talks to this loop (see `takeover`).
        let (takeover_tx, mut takeover_rx) = tokio::sync::mpsc::channel(4);
        let raw = admin::RawCommand {
            hello: takeover::HELLO,
            run: Arc::new(move |conn| takeover::serve_connection(conn, &takeover_tx)),
        };
        let mut admin_task = tokio::spawn(admin::serve(
            listener,
            shared.clone(),
            peers_status,
            Some(raw),
        ));
        let mut released = None;
        {
            let c = shared.lock().await;
            for (l, f) in http {
                let t = tls.get(&f.name).cloned();
                frontends.start(&c, &f, l, t)?;
            }
        }
        // The HTTP stick tables' writes to the pinned map.
        let mut stick_flush = {
            let c = shared.lock().await;
            crate::control::stick::flush_store(&c).map(|store| {
                crate::util::AbortOnDrop(tokio::spawn(crate::control::stick::flush(
                    store,
                    c.http.subscribe(),
                )))
            })
        };
        let mut metric_tasks = Vec::new();
        if let Some(l) = metrics {
            let count = Arc::new(crate::metrics::TableCount::default());
            if let Ok(a) = l.local_addr() {
                info!("metrics on http://{a}/metrics");
            }
            let every = controller_count_interval;
            match shared.lock().await.dp.stick_store() {
                Ok(store) => metric_tasks.push(tokio::spawn(crate::metrics::count_loop(
                    store,
                    every,
                    count.clone(),
                ))),
                Err(e) => warn!("metrics: no count of the stick table: {e}"),
            }
            metric_tasks.push(tokio::spawn(crate::metrics::serve(
                l,
                shared.clone(),
                count,
                pin_dir.clone(),
            )));
        }
        let mut changes = match netlink::watch_changes().await {
            Ok(w) => Some(w),
            Err(e) => {
                warn!("not following route/neighbour changes: {e}");
                None
            }
        };
        match &pin_dir {
            Some(dir) if interfaces.is_empty() => info!(
                "running: HTTP only, stick tables in the map pinned under {}, admin API on {}",
                dir.display(),
                admin_socket.display()
            ),
            Some(dir) => info!(
                "running: XDP on {}, maps pinned under {}, admin API on {}",
                interfaces.join(", "),
                dir.display(),
                admin_socket.display()
            ),
            None => info!(
                "running: HTTP only (no XDP program, nothing pinned), admin API on {}",
                admin_socket.display()
            ),
        }

        let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
        let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
        let mut usr1 = signal(SignalKind::user_defined1()).map_err(DaemonError::Signal)?;
        let mut usr2 = signal(SignalKind::user_defined2()).map_err(DaemonError::Signal)?;
        upgrade::ready();
        loop {
            tokio::select! {
                _ = usr2.recv() => upgrade::start_successor(),
                _ = usr1.recv() => {
                    info!("SIGUSR1: reopening the access logs");
                    frontends.reopen_logs();
                }
                _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
                _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
                Some(msg) = takeover_rx.recv() => match msg {
                    takeover::TakeoverMsg::Sockets(reply) => {
                        info!("takeover: a new daemon asks for the listening sockets");
                        let _ = reply.send(frontends.sockets());
                    }
                    takeover::TakeoverMsg::Release(done) => {
                        info!("takeover: the new daemon has the sockets; letting go");
                        released = Some(done);
                        break;
                    }
                },
                _ = sighup.recv() => {
                    info!("SIGHUP: reloading {}", config_path.display());
                    let running = shared.lock().await.config.clone();
                    let new = match reload::read_again(&config_path, running).await {
                        Ok(c) => c,
                        Err(e) => {
                            warn!("reload refused, the running configuration stays: {e}");
                            continue;
                        }
                    };
                    // New certificates are loaded and checked, and new
                    // frontends' sockets bound, before anything changes; a
                    // failure refuses the reload.
                    frontends.reap();
                    let running = frontends.running();
                    let prepared = reload::reload_tls(&tls, &running, &new).and_then(|certs| {
                        let new_fronts = frontends::added(&new, &running)
                            .into_iter()
                            .map(|f| {
                                let l = frontends::bind(f, &new, frontends.workers(), None)?;
                                frontends.open_log_target(f)?;
                                Ok((l, f.clone(), frontends::new_tls(f)?))
                            })
                            .collect::<Result<Vec<_>, DaemonError>>()?;
                        Ok((certs, new_fronts))
                    });
                    let (certs, new_fronts) = match prepared {
                        Ok(p) => p,
                        Err(e) => {
                            warn!("reload refused, the running configuration stays: {e}");
                            continue;
                        }
                    };
                    let gone = frontends::removed(&new, &running);
                    let mut c = shared.lock().await;
                    match c.reload(new).await {
                        Ok(sum) => {
                            for (name, p) in certs {
                                if let Some(t) = tls.get(&name) {
                                    t.commit_counted(p, &c.http_stats.frontend(&name).tls);
                                }
                            }
                            for name in &gone {
                                frontends.stop(name);
                                tls.remove(name);
                            }
                            for (l, f, t) in new_fronts {
                                if let Some(t) = &t {
                                    tls.insert(f.name.clone(), t.clone());
                                }
                                // Its log target opened above.
                                if let Err(e) = frontends.start(&c, &f, l, t) {
                                    warn!("http frontend {}: not started: {e}", f.name);
                                }
                            }
                            for t in dns_tasks.drain(..) {
                                t.abort();
                            }
                            if let Err(e) = c.init_discovery().await {
                                warn!("after the reload: {e}");
                            }
                            for t in check_tasks.drain(..) {
                                t.abort();
                            }
                            generation += 1;
                            dns_tasks = spawn_discovery(&c, &dns_tx, generation);
                            check_tasks = spawn_checks(&c, &check_tx, generation);
                            info!(
                                "reloaded: {} server(s) kept, {} added, {} removed",
                                sum.kept, sum.added, sum.removed
                            );
                        }
                        Err(e) => warn!("reload failed: {e}"),
                    }
                }
                _ = checks_changed.notified() => {
                    // A server added or removed through the admin API.
                    let c = shared.lock().await;
                    for t in check_tasks.drain(..) {
                        t.abort();
                    }
                    generation += 1;
                    check_tasks = spawn_checks(&c, &check_tx, generation);
                }
                Some((g, backend, outcome)) = dns_rx.recv() => {
                    if g != generation {
                        continue;
                    }
                    let mut c = shared.lock().await;
                    if let Err(e) = c.apply_dns(&backend, outcome, std::time::Instant::now()).await {
                        warn!("backend {backend}: applying DNS records: {e}");
                    }
                }
                Some((g, i, result)) = check_rx.recv() => {
                    if g != generation {
                        continue;
                    }
                    if let Err(e) = shared.lock().await.check_result(i, result) {
                        warn!("applying a health check result: {e}");
                    }
                }
                change = async {
                    match changes.as_mut() {
                        Some(w) => w.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match change {
                        Some(_) => {
                            // Let the burst settle, then re-resolve once.
                            tokio::time::sleep(RESOLVE_DEBOUNCE).await;
                            if let Some(w) = changes.as_mut() {
                                while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, w.next()).await {}
                            }
                            if let Err(e) = shared.lock().await.refresh().await {
                                warn!("re-resolving next hops: {e}");
                            }
                        }
                        None => {
                            warn!("route/neighbour change subscription ended");
                            changes = None;
                        }
                    }
                }
                ready = async {
                    match logger.as_mut() {
                        Some(l) => l.readable_mut().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match ready {
                        Ok(mut guard) => {
                            guard.get_inner_mut().flush();
                            guard.clear_ready();
                        }
                        Err(e) => {
                            warn!("log channel from the XDP program failed: {e}");
                            logger = None;
                        }
                    }
                }
            }
        }
        // HTTP: stop accepting.
        frontends.stop_accepting();
        // Taken over: let go of what the new daemon binds or locks next,
        // then tell it, then let the requests in flight finish.
        let handed_over = released.is_some();
        if let Some(done) = released {
            drop(stick_flush.take());
            shared.lock().await.flush_stick_tables();
            admin_task.abort();
            let _ = (&mut admin_task).await;
            for t in metric_tasks.drain(..) {
                t.abort();
                let _ = t.await;
            }
            if let Some(p) = peers.take() {
                p.stop().await;
            }
            drop(lock);
            let state = match shared.lock().await.dp.snapshot() {
                Ok(s) => s,
                Err(e) => {
                    warn!("takeover: the stick table stays behind: {e}");
                    Vec::new()
                }
            };
            let _ = done.send(state);
            info!("takeover: let go; finishing the requests in flight");
        }
        // Let requests in flight finish.
        frontends.stop_all().await;
        // What the proxy stored last reaches the pinned map (a restart
        // takes it from there).
        drop(stick_flush);
        if !handed_over {
            shared.lock().await.flush_stick_tables();
        }
        admin_task.abort();
        for t in metric_tasks {
            t.abort();
        }
        for t in check_tasks.into_iter().chain(dns_tasks) {
            t.abort();
        }
        drop(peers);
        // After a takeover the socket file is the new daemon's.
        if !handed_over {
            let _ = std::fs::remove_file(&admin_socket);
        }
        if let Some(l) = logger.as_mut() {
            l.get_mut().flush();
        }
        if pin_dir.is_some() && !interfaces.is_empty() {
            info!(
                "stopped: XDP stays attached on {} and keeps forwarding with the last tables; \
                 `balancer run` takes it over, `balancer detach` removes it",
                interfaces.join(", ")
            );
        } else {
            info!("stopped");
        }
        Ok(())
    }
}

/// One DNS discovery task per backend with a `server_template`, sending
/// `(generation, backend, outcome)` every `refresh`.
fn spawn_discovery(
    c: &Controller,
    tx: &tokio::sync::mpsc::Sender<crate::discovery::DnsResult>,
    generation: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    c.config
        .backends
        .iter()
        .enumerate()
        .filter_map(|(bi, b)| {
            let t = b.template.clone()?;
            let resolvers = c.config.resolvers[t.resolvers].clone();
            Some(tokio::spawn(crate::discovery::run(
                tx.clone(),
                generation,
                b.name.clone(),
                t,
                resolvers,
                crate::discovery::families(&c.config, bi),
            )))
        })
        .collect()
}

type CheckResult = (u64, usize, Result<Duration, String>);

/// One task per checked server of `c`, sending `(generation, server index,
/// result)` every `inter`.
fn spawn_checks(
    c: &Controller,
    tx: &tokio::sync::mpsc::Sender<CheckResult>,
    generation: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    c.checks()
        .into_iter()
        .map(|(i, kind, addr, timing, tls, hello)| {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(timing.inter);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // Checks this host could not make (out of descriptors):
                // logged when they start and end, and they change nothing.
                let mut unknown = false;
                loop {
                    tick.tick().await;
                    let r = match health::check(&kind, addr, timing.timeout, tls.as_ref(), hello)
                        .await
                    {
                        health::Outcome::Passed(t) => Ok(t),
                        health::Outcome::Failed(e) => Err(e),
                        health::Outcome::Unknown(e) => {
                            if !std::mem::replace(&mut unknown, true) {
                                warn!("check of {addr} not made: {e}; the server keeps its state");
                            }
                            continue;
                        }
                    };
                    if std::mem::take(&mut unknown) {
                        info!("checks of {addr} made again");
                    }
                    if tx.send((generation, i, r)).await.is_err() {
                        break;
                    }
                }
            })
        })
        .collect()
}
