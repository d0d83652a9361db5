//! The HTTP frontends the daemon serves, started at start and added or
//! stopped by a reload: each has its listening sockets, its worker
//! threads and a stop signal of its own. A stopped frontend stops
//! accepting at once and lets its requests in flight finish (at most
//! [`super::HTTP_GRACE`]).

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use log::info;
use tokio::sync::{Semaphore, watch};

use super::{DaemonError, HTTP_GRACE};
use crate::{
    config::{Config, Frontend, Mode},
    control::Controller,
    http::{
        conn::Slots,
        proxy::FrontendSpec,
        tls::{Terminator, TlsError},
        upstream::ServerSlots,
    },
};

/// Listening sockets of one frontend, one per worker.
pub(super) type Listeners = Vec<std::net::TcpListener>;

/// One running frontend.
struct Served {
    addr: SocketAddr,
    /// Copies of its listening sockets, for a daemon taking over.
    sockets: Vec<std::net::TcpListener>,
    stop: watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// The HTTP frontends and what they share.
pub(super) struct Frontends {
    served: BTreeMap<String, Served>,
    /// Workers of stopped frontends, finishing their requests.
    stopping: Vec<std::thread::JoinHandle<()>>,
    /// Worker threads (listening sockets) per frontend.
    workers: usize,
    /// The global `maxconn` and the server connections, shared by all.
    global: Arc<Semaphore>,
    servers: Arc<ServerSlots>,
    maxconn: u32,
    /// The access logs' targets, shared by the frontends that name them.
    sinks: crate::http::log::Sinks,
}

/// Bind `f`'s listening sockets (one per worker), or take those a
/// takeover brought for its address.
pub(super) fn bind(
    f: &Frontend,
    config: &Config,
    workers: usize,
    taken: Option<&mut super::takeover::Taken>,
) -> Result<Listeners, DaemonError> {
    if let Some(t) = taken {
        let got = t.take(f.vip);
        if !got.is_empty() {
            info!(
                "http frontend {}: {} listening socket(s) on {} taken over",
                f.name,
                got.len(),
                f.vip
            );
            return Ok(got);
        }
    }
    // Unset maxconn: as deep as the kernel allows.
    let backlog = f.http.maxconn.or(config.maxconn).unwrap_or(u32::MAX);
    crate::http::listen::bind_workers(f.vip, workers, backlog).map_err(|source| {
        DaemonError::HttpBind {
            frontend: f.name.clone(),
            addr: f.vip,
            source,
        }
    })
}

/// A takeover, before the running daemon lets go: what the new one can do
/// without that daemon's resources (its admin socket, metrics and peers
/// ports, pin directory), so that a failure leaves it serving: every HTTP
/// frontend's listening sockets (those it handed over; the others bound
/// now and kept in `t`, where the start takes them from), certificates
/// and access-log targets.
pub(super) fn prepare_takeover(
    config: &Config,
    t: &mut super::takeover::Taken,
    workers: usize,
) -> Result<(), DaemonError> {
    super::load_tls(config)?;
    for f in config.frontends.iter().filter(|f| f.mode == Mode::Http) {
        if let Some(l) = &f.log {
            crate::http::log::sink::check(&l.target)?;
        }
        if !t.listeners.iter().any(|(a, _)| *a == f.vip) {
            let bound = bind(f, config, workers, None)?;
            t.listeners.extend(bound.into_iter().map(|l| (f.vip, l)));
        }
    }
    Ok(())
}

/// The HTTP frontends of `config` whose (name, bind) `running` lacks.
pub(super) fn added<'a>(
    config: &'a Config,
    running: &BTreeMap<String, SocketAddr>,
) -> Vec<&'a Frontend> {
    config
        .frontends
        .iter()
        .filter(|f| f.mode == Mode::Http && running.get(&f.name) != Some(&f.vip))
        .collect()
}

/// The frontends of `running` whose (name, bind) `config` lacks.
pub(super) fn removed(config: &Config, running: &BTreeMap<String, SocketAddr>) -> Vec<String> {
    running
        .iter()
        .filter(|(n, a)| {
            !config
                .frontends
                .iter()
                .any(|f| f.mode == Mode::Http && &f.name == *n && f.vip == **a)
        })
        .map(|(n, _)| n.clone())
        .collect()
}

impl Frontends {
    pub(super) fn new(workers: usize, maxconn: u32) -> Frontends {
        Frontends {
            served: BTreeMap::new(),
            stopping: Vec::new(),
            workers,
            global: Arc::new(Semaphore::new(maxconn as usize)),
            servers: Arc::new(ServerSlots::new(maxconn as usize)),
            maxconn,
            sinks: Default::default(),
        }
    }

    /// Open `f`'s access-log target (if not open yet): one that cannot work
    /// fails the start, or refuses a reload that adds `f`.
    pub(super) fn open_log_target(&mut self, f: &Frontend) -> Result<(), DaemonError> {
        if let Some(settings) = &f.log {
            self.sinks.get(&settings.target)?;
        }
        Ok(())
    }

    /// Reopen every access-log file (SIGUSR1, after a rotation).
    pub(super) fn reopen_logs(&self) {
        self.sinks.reopen();
    }

    pub(super) fn workers(&self) -> usize {
        self.workers
    }

    /// What runs: (name, bind) of each frontend.
    pub(super) fn running(&self) -> BTreeMap<String, SocketAddr> {
        self.served
            .iter()
            .map(|(n, s)| (n.clone(), s.addr))
            .collect()
    }

    /// Start serving `f` on `listeners`, with the controller's view and
    /// counters.
    pub(super) fn start(
        &mut self,
        c: &Controller,
        f: &Frontend,
        listeners: Listeners,
        tls: Option<Arc<Terminator>>,
    ) -> Result<(), DaemonError> {
        let cap = f.http.maxconn.unwrap_or(self.maxconn) as usize;
        let stats = c.http_stats.frontend(&f.name);
        stats
            .tls
            .enabled
            .store(tls.is_some(), std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = &tls {
            *stats
                .tls
                .certificates
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = t.certificates();
        }
        let slots = Slots {
            frontend: Arc::new(Semaphore::new(cap)),
            global: self.global.clone(),
            servers: self.servers.clone(),
        };
        let backend = c.config.backends[f.backend].name.clone();
        let caps = (self.maxconn as usize, cap);
        let log = crate::http::log::open(f, &backend, &mut self.sinks, caps, &slots)?;
        let spec = FrontendSpec {
            name: f.name.clone(),
            backend,
            http: f.http.clone(),
            slots,
            stats,
            tls,
            forwarded_proto: f.forwarded_proto,
            redirect_https: f.redirect_https,
            log,
        };
        info!(
            "http frontend {} on {} ({} worker threads)",
            f.name,
            f.vip,
            listeners.len()
        );
        let sockets = listeners
            .iter()
            .filter_map(|l| l.try_clone().ok())
            .collect();
        let (stop, stop_rx) = watch::channel(false);
        let workers = crate::http::listen::spawn_workers(
            listeners,
            &spec,
            &c.http.subscribe(),
            &stop_rx,
            HTTP_GRACE,
        );
        self.served.insert(
            f.name.clone(),
            Served {
                addr: f.vip,
                sockets,
                stop,
                workers,
            },
        );
        Ok(())
    }

    /// Stop serving `name`: no new connection; its requests in flight
    /// finish.
    pub(super) fn stop(&mut self, name: &str) {
        if let Some(s) = self.served.remove(name) {
            info!(
                "http frontend {name} on {}: stopped accepting; its requests in flight finish",
                s.addr
            );
            let _ = s.stop.send(true);
            self.stopping.extend(s.workers);
        }
    }

    /// Copies of every frontend's listening sockets, with their addresses
    /// (for [`super::takeover`]).
    pub(super) fn sockets(&self) -> Vec<(SocketAddr, std::os::fd::OwnedFd)> {
        self.served
            .values()
            .flat_map(|s| {
                s.sockets
                    .iter()
                    .filter_map(|l| Some((s.addr, l.try_clone().ok()?.into())))
            })
            .collect()
    }

    /// Stop accepting on every frontend; their requests in flight go on
    /// (see [`Frontends::stop_all`]).
    pub(super) fn stop_accepting(&mut self) {
        let names: Vec<String> = self.served.keys().cloned().collect();
        for n in names {
            self.stop(&n);
        }
    }

    /// Stop every frontend and wait for their workers (and those of the
    /// frontends stopped before) to end.
    pub(super) async fn stop_all(mut self) {
        self.stop_accepting();
        let workers = std::mem::take(&mut self.stopping);
        let _ = tokio::task::spawn_blocking(move || {
            for t in workers {
                let _ = t.join();
            }
        })
        .await;
        // The last lines written; a blocked target is left after 1 s.
        self.sinks.stop(std::time::Duration::from_secs(1));
    }

    /// Forget the workers of stopped frontends that have ended.
    pub(super) fn reap(&mut self) {
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.stopping)
            .into_iter()
            .partition(std::thread::JoinHandle::is_finished);
        for t in done {
            let _ = t.join();
        }
        self.stopping = running;
    }
}

/// The terminator of a frontend new to a reload (`None` without TLS).
pub(super) fn new_tls(f: &Frontend) -> Result<Option<Arc<Terminator>>, TlsError> {
    f.tls
        .as_ref()
        .map(|t| Terminator::new(&f.name, t).map(Arc::new))
        .transpose()
}
