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

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use aya_log::EbpfLogger;
use log::{info, warn};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::Mutex,
};

use crate::{
    admin::{self, AdminError},
    config::{Config, Mode},
    control::{ControlError, Controller},
    dataplane::{Dataplane, DataplaneError, LoadOptions},
    health,
    http::{
        conn::Slots,
        proxy::FrontendSpec,
        tls::{Prepared, Terminator, TlsError},
    },
    netlink,
};

/// bpffs's `f_type` (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe4a11;
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

/// An exclusive lock on the pin directory, held while a daemon (or
/// `balancer detach`) works on the state in it.
pub struct PinLock {
    _dir: std::fs::File,
}

impl PinLock {
    /// Create `dir` if needed and lock it, or say who holds it.
    pub fn take(dir: &Path) -> Result<Self, DaemonError> {
        let err = |reason: String| DaemonError::PinDir {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        let f = std::fs::File::open(dir).map_err(|e| err(e.to_string()))?;
        // SAFETY: flock on an fd we own.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            return Err(err(
                "locked: another `balancer run` (or `balancer detach`) is using this pin_dir"
                    .into(),
            ));
        }
        Ok(PinLock { _dir: f })
    }
}

/// Run until SIGINT or SIGTERM. On any error before that, everything already
/// attached or pinned is undone before returning (the data plane's Drop).
pub async fn run(config_path: PathBuf, config: Config, reset: bool) -> Result<(), DaemonError> {
    match crate::util::raise_nofile() {
        Ok(n) => info!("descriptor limit {n}"),
        Err(e) => warn!("reading the descriptor limit: {e}"),
    }
    let pin_dir = config.dataplane.pin_dir.clone();
    check_pin_dir(&pin_dir)?;
    let lock = PinLock::take(&pin_dir)?;
    if reset {
        let removed = Dataplane::remove_pins(&pin_dir)?;
        info!(
            "--reset: removed {} pinned object(s) under {}",
            removed.len(),
            pin_dir.display()
        );
    }
    let (dp, adopted) = Dataplane::load_pinned(LoadOptions::for_config(&config), &pin_dir)?;
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
    match start(dp, config).await {
        Ok(running) => running.serve(lock, config_path).await,
        Err(e) => {
            // Undo what this start created; state adopted from an earlier
            // daemon stays as it was (its program is still attached).
            if fresh {
                let _ = Dataplane::remove_pins(&pin_dir);
                // Only when empty: whatever else is in it is not ours.
                let _ = std::fs::remove_dir(&pin_dir);
            }
            Err(e)
        }
    }
}

/// Programmed and attached, not serving yet.
struct Running {
    controller: Controller,
    listener: tokio::net::UnixListener,
    http: Vec<(Vec<std::net::TcpListener>, FrontendSpec)>,
    /// The TLS frontends' terminators, by frontend name.
    tls: Tls,
    metrics: Option<tokio::net::TcpListener>,
    logger: Option<AsyncFd<EbpfLogger<&'static dyn log::Log>>>,
    /// The access logs' targets.
    sinks: Arc<crate::http::log::Sinks>,
    interfaces: Vec<String>,
    pin_dir: std::path::PathBuf,
    admin_socket: std::path::PathBuf,
    /// `[peers]`: the section and its bound listener.
    peers: Option<(crate::config::PeersConfig, tokio::net::TcpListener)>,
}

async fn start(mut dp: Dataplane, config: Config) -> Result<Running, DaemonError> {
    let pin_dir = config.dataplane.pin_dir.clone();
    // aya-log: records from the program reach this process's logger.
    let logger = match EbpfLogger::init(dp.ebpf_mut()) {
        // SAFETY: the logger owns its ring buffer fd and keeps it open and
        // unchanged for as long as it lives, which is as long as the AsyncFd.
        Ok(l) => unsafe { AsyncFd::register_with_interest(l, tokio::io::Interest::READABLE) }.ok(),
        Err(e) => {
            warn!("no log channel from the XDP program: {e}");
            None
        }
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
    let mut http = Vec::new();
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let tls = load_tls(&config)?;
    for f in config.frontends.iter().filter(|f| f.mode == Mode::Http) {
        // Unset maxconn: as deep as the kernel allows.
        let backlog = f.http.maxconn.or(config.maxconn).unwrap_or(u32::MAX);
        let l = crate::http::listen::bind_workers(f.vip, workers, backlog).map_err(|source| {
            DaemonError::HttpBind {
                frontend: f.name.clone(),
                addr: f.vip,
                source,
            }
        })?;
        http.push((l, f.clone()));
    }
    // Maps first, then attach: the first packet already sees the services.
    let mut controller = Controller::new(dp, config).await?;
    controller.init_discovery().await?;
    for name in &interfaces {
        controller.dp.attach_pinned(name, mode, &pin_dir)?;
    }
    // What is left of the descriptor limit is the HTTP proxy's.
    let budget = Budget::new(&controller.config, workers)?;
    if !http.is_empty() {
        info!("{budget}");
    }
    let global = Arc::new(tokio::sync::Semaphore::new(budget.maxconn as usize));
    let servers = Arc::new(crate::http::upstream::ServerSlots::new(
        budget.maxconn as usize,
    ));
    // Access-log targets: opened now, so one that cannot work fails the start.
    let mut sinks = crate::http::log::Sinks::default();
    let http = http
        .into_iter()
        .map(|(l, f)| {
            let cap = f.http.maxconn.unwrap_or(budget.maxconn) as usize;
            let caps = (budget.maxconn as usize, cap);
            let slots = Slots {
                frontend: Arc::new(tokio::sync::Semaphore::new(cap)),
                global: global.clone(),
                servers: servers.clone(),
            };
            let backend = controller.config.backends[f.backend].name.clone();
            let log = crate::http::log::open(&f, &backend, &mut sinks, caps, &slots)?;
            let spec = FrontendSpec {
                name: f.name.clone(),
                backend,
                http: f.http.clone(),
                slots,
                stats: Default::default(),
                tls: tls.get(&f.name).cloned(),
                forwarded_proto: f.forwarded_proto,
                redirect_https: f.redirect_https,
                log,
            };
            Ok((l, spec))
        })
        .collect::<Result<_, DaemonError>>()?;
    Ok(Running {
        controller,
        listener,
        metrics,
        http,
        tls,
        logger,
        sinks: Arc::new(sinks),
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

/// The certificates of `new`'s TLS frontends, loaded and checked, to be
/// committed once the reload is accepted. A frontend may not start or stop
/// terminating TLS by a reload (its clients would be cut off mid-protocol).
fn reload_tls(running: &Tls, new: &Config) -> Result<Vec<(String, Prepared)>, TlsError> {
    let mut out = Vec::new();
    for f in new.frontends.iter().filter(|f| f.mode == Mode::Http) {
        match (running.get(&f.name), &f.tls) {
            (Some(t), Some(s)) => out.push((f.name.clone(), t.prepare(s)?)),
            (None, None) => {}
            (had, _) => {
                return Err(TlsError::Setup {
                    frontend: f.name.clone(),
                    reason: format!(
                        "a reload cannot {} TLS on a frontend: restart the daemon for that",
                        if had.is_some() { "remove" } else { "add" }
                    ),
                });
            }
        }
    }
    Ok(out)
}

impl Running {
    async fn serve(self, _lock: PinLock, config_path: PathBuf) -> Result<(), DaemonError> {
        let Running {
            controller,
            listener,
            metrics,
            http,
            tls,
            mut logger,
            sinks,
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
        let peers = match peers {
            Some((cfg, l)) => Some(crate::peers::start(cfg, l, &pin_dir, shared.clone()).await?),
            None => None,
        };
        let peers_status = peers.as_ref().map(|p| {
            let ctx = p.ctx.clone();
            Arc::new(move || ctx.status()) as admin::PeersStatus
        });
        let admin_task = tokio::spawn(admin::serve(listener, shared.clone(), peers_status));
        let (stop_http, stop_rx) = tokio::sync::watch::channel(false);
        let mut http_tasks = Vec::new();
        for (l, mut spec) in http {
            if let Some(a) = l.first().and_then(|l| l.local_addr().ok()) {
                info!(
                    "http frontend {} on {a} ({} worker threads)",
                    spec.name,
                    l.len()
                );
            }
            let view = {
                let c = shared.lock().await;
                spec.stats = c.http_stats.frontend(&spec.name);
                spec.stats
                    .tls
                    .enabled
                    .store(spec.tls.is_some(), std::sync::atomic::Ordering::Relaxed);
                if let Some(t) = &spec.tls {
                    *spec
                        .stats
                        .tls
                        .certificates
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = t.certificates();
                }
                c.http.subscribe()
            };
            http_tasks.extend(crate::http::listen::spawn_workers(
                l, &spec, &view, &stop_rx, HTTP_GRACE,
            ));
        }
        // The HTTP stick tables' writes to the pinned map.
        let stick_flush = {
            let c = shared.lock().await;
            crate::control::stick::flush_fd(&c).map(|fd| {
                crate::util::AbortOnDrop(tokio::spawn(crate::control::stick::flush(
                    fd,
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
            metric_tasks.push(tokio::spawn(crate::metrics::count_loop(
                pin_dir.clone(),
                every,
                count.clone(),
            )));
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
        info!(
            "running: XDP on {}, maps pinned under {}, admin API on {}",
            interfaces.join(", "),
            pin_dir.display(),
            admin_socket.display()
        );

        let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
        let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
        let _reopen =
            crate::http::log::reopen_on_sigusr1(sinks.clone()).map_err(DaemonError::Signal)?;
        loop {
            tokio::select! {
                _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
                _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = sighup.recv() => {
                    info!("SIGHUP: reloading {}", config_path.display());
                    let opts = shared.lock().await.config.haproxy.clone().unwrap_or_default();
                    let new = match Config::load_with(&config_path, &opts) {
                        Ok(c) => c,
                        Err(e) => {
                            warn!("reload refused, the running configuration stays: {e}");
                            continue;
                        }
                    };
                    // New certificates are loaded and checked before
                    // anything changes; a bad one refuses the reload.
                    let certs = match reload_tls(&tls, &new) {
                        Ok(p) => p,
                        Err(e) => {
                            warn!("reload refused, the running configuration stays: {e}");
                            continue;
                        }
                    };
                    let mut c = shared.lock().await;
                    match c.reload(new).await {
                        Ok(sum) => {
                            for (name, p) in certs {
                                if let Some(t) = tls.get(&name) {
                                    t.commit_counted(p, &c.http_stats.frontend(&name).tls);
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
        // HTTP: stop accepting, let requests in flight finish.
        let _ = stop_http.send(true);
        let _ = tokio::task::spawn_blocking(move || {
            for t in http_tasks {
                let _ = t.join();
            }
        })
        .await;
        sinks.stop(Duration::from_secs(1));
        // What the proxy stored last reaches the pinned map (a restart
        // takes it from there).
        drop(stick_flush);
        shared.lock().await.flush_stick_tables();
        admin_task.abort();
        for t in metric_tasks {
            t.abort();
        }
        for t in check_tasks.into_iter().chain(dns_tasks) {
            t.abort();
        }
        let _ = std::fs::remove_file(&admin_socket);
        if let Some(l) = logger.as_mut() {
            l.get_mut().flush();
        }
        info!(
            "stopped: XDP stays attached on {} and keeps forwarding with the last tables; \
         `balancer run` takes it over, `balancer detach` removes it",
            interfaces.join(", ")
        );
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
        .map(|(i, kind, addr, timing, tls)| {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(timing.inter);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // Checks this host could not make (out of descriptors):
                // logged when they start and end, and they change nothing.
                let mut unknown = false;
                loop {
                    tick.tick().await;
                    let r = match health::check(&kind, addr, timing.timeout, tls.as_ref()).await {
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

/// The pin directory must be on a bpffs, or the pin fails later with a
/// less helpful error. Its parent must exist; the directory itself may not.
fn check_pin_dir(dir: &Path) -> Result<(), DaemonError> {
    let err = |reason: String| DaemonError::PinDir {
        path: dir.display().to_string(),
        reason,
    };
    let probe = if dir.exists() {
        dir
    } else {
        dir.parent()
            .ok_or_else(|| err("has no parent directory".into()))?
    };
    let c = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes())
        .map_err(|_| err("contains a NUL byte".into()))?;
    // SAFETY: statfs fills the zeroed struct; c is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(err(format!(
            "{}: {}",
            probe.display(),
            std::io::Error::last_os_error()
        )));
    }
    if st.f_type as i64 != BPF_FS_MAGIC {
        return Err(err(format!(
            "{} is not on a bpffs (mount one with `mount -t bpf bpf {}` or run `cargo xtask setup`)",
            probe.display(),
            probe.display()
        )));
    }
    Ok(())
}

/// How the descriptor limit is shared. Descriptors for everything but the
/// HTTP proxy are set aside first: those open at start (maps, programs,
/// listeners), the admin API's and metrics' connections, one per health
/// check, DNS's sockets, the peer links and handshakes, and one waiting connection per
/// HTTP worker (see `http::proxy::serve`), plus a margin. The rest makes
/// `maxconn` client connections and as many server connections: two
/// descriptors each. A configured `[global] maxconn` that does not fit is
/// an error at start rather than `accept` failing later.
pub struct Budget {
    pub limit: u64,
    pub reserved: u64,
    pub maxconn: u32,
    configured: bool,
}

/// Descriptors kept beyond those counted (logs, netlink, signals, the
/// runtime's own).
const FD_MARGIN: u64 = 32;
/// `maxconn` when unset, at most (HAProxy computes its default the same
/// way, from the descriptor limit).
const MAX_DEFAULT_MAXCONN: u64 = 1 << 20;

impl Budget {
    fn new(config: &Config, workers: usize) -> Result<Budget, DaemonError> {
        let limit = crate::util::raise_nofile()
            .map_err(|e| DaemonError::Descriptors(format!("reading the descriptor limit: {e}")))?;
        let open = crate::util::open_fds().unwrap_or(64);
        let control =
            crate::util::CONTROL_MAX_CONNS as u64 * (1 + u64::from(config.metrics_bind.is_some()));
        let checks: u64 = config
            .backends
            .iter()
            .map(|b| b.servers.len() as u64 + b.template.as_ref().map_or(0, |t| u64::from(t.count)))
            .sum();
        let dns: u64 = config
            .resolvers
            .iter()
            .map(|r| 2 * r.nameservers.len() as u64)
            .sum();
        let peers = config.peers.as_ref().map_or(0, |p| {
            2 * p.remotes.len() as u64 + crate::peers::listen::MAX_HANDSHAKES as u64
        });
        let http_fronts = config
            .frontends
            .iter()
            .filter(|f| f.mode == Mode::Http)
            .count();
        let waiting = (workers * http_fronts) as u64;
        let reserved = open + control + checks + dns + peers + waiting + FD_MARGIN;
        let fits = limit.saturating_sub(reserved) / 2;
        let maxconn = match config.maxconn {
            Some(m) if u64::from(m) > fits => {
                return Err(DaemonError::Descriptors(format!(
                    "global.maxconn {m} needs {} descriptors ({reserved} set aside, 2 per \
                     connection) and the limit is {limit}: lower maxconn or raise the limit \
                     (ulimit -n, systemd LimitNOFILE=)",
                    reserved + 2 * u64::from(m)
                )));
            }
            Some(m) => m,
            None if fits == 0 && http_fronts > 0 => {
                return Err(DaemonError::Descriptors(format!(
                    "the descriptor limit {limit} leaves nothing for HTTP connections \
                     ({reserved} set aside): raise it (ulimit -n, systemd LimitNOFILE=)"
                )));
            }
            None => fits.clamp(1, MAX_DEFAULT_MAXCONN) as u32,
        };
        Ok(Budget {
            limit,
            reserved,
            maxconn,
            configured: config.maxconn.is_some(),
        })
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "descriptors: limit {}, {} set aside; HTTP maxconn {} ({})",
            self.limit,
            self.reserved,
            self.maxconn,
            if self.configured {
                "configured"
            } else {
                "what the limit allows"
            }
        )
    }
}
