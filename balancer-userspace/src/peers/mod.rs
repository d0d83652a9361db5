//! Peers: stick-table replication between balancer instances (HAProxy's
//! `peers` section).
//!
//! - [`engine`]: finds new, redispatched and refreshed entries by scanning
//!   the pinned stick table in batches, and writes entries learned from
//!   peers into it (newer wins).
//! - [`link`]: the authenticated TCP links and the dialing side (full
//!   resync, then batched, acknowledged updates; heartbeats; reconnection
//!   with backoff); [`listen`]: the peer port, its bounds, the receiving
//!   side.
//! - [`wire`], [`auth`], [`seal`]: framing, the HMAC handshake and the
//!   link's keys, the MAC on every frame after it; the table is read with
//!   [`crate::stick_batch::Scanner`] (batched lookups).
//!
//! `balancer peers status` reads [`Ctx::status`] through the admin API.

pub mod auth;
pub mod engine;
pub mod link;
pub mod listen;
pub mod seal;
pub mod wire;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use log::info;
use tokio::{net::TcpListener, sync::Notify, task::JoinHandle};

pub use self::engine::Source;
use self::{
    engine::{Engine, EngineError, EngineHandle, Names},
    link::LinkError,
    wire::WireError,
};
pub use crate::api::OutState;
use crate::{
    api::{Applied, PeerStatus, PeersStatus},
    config::PeersConfig,
    control::Shared,
};

/// One peer as the links update it.
#[derive(Debug, Clone)]
pub struct PeerRt {
    /// What `peers status` shows (but `last_contact_ms_ago`, computed when asked).
    pub status: PeerStatus,
    last_contact: Option<Instant>,
}

impl PeerRt {
    fn touch(&mut self) {
        self.last_contact = Some(Instant::now());
    }
}

#[derive(Debug, Default)]
struct Counters {
    refused: u64,
    last_refusal: Option<String>,
    bad_frames: u64,
    last_bad_frame: Option<String>,
    auth_failures: u64,
    last_auth_failure: Option<String>,
}

/// Shared by the links.
pub struct Ctx {
    pub config: PeersConfig,
    pub engine: EngineHandle,
    peers: Mutex<BTreeMap<String, PeerRt>>,
    counters: Mutex<Counters>,
    /// Per peer: wakes its dial loop out of a backoff.
    kicks: BTreeMap<String, Arc<Notify>>,
    /// Per peer: its inbound link, told to end when a newer one replaces
    /// it ([`listen`]).
    inbound: Mutex<BTreeMap<String, Arc<Notify>>>,
}

impl Ctx {
    fn peer(&self, name: &str, f: impl FnOnce(&mut PeerRt)) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = peers.get_mut(name) {
            f(p);
        }
    }

    /// Our link to `name` is up (resync sent, updates flowing).
    pub fn is_up(&self, name: &str) -> bool {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .is_some_and(|p| p.status.outbound == OutState::Up)
    }

    fn set_out(&self, name: &str, s: OutState) {
        self.peer(name, |p| {
            p.status.outbound = s;
            if s == OutState::Up {
                p.touch();
            }
        });
    }

    fn kick(&self, name: &str) -> Arc<Notify> {
        self.kicks.get(name).cloned().unwrap_or_default()
    }

    fn refused(&self, what: String) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.refused += 1;
        c.last_refusal = Some(what);
    }

    fn bad_frame(&self, what: String) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.bad_frames += 1;
        c.last_bad_frame = Some(what);
    }

    /// Count a link's end where the peer (or whoever is on the path)
    /// misbehaved: a refusal, a frame that failed authentication, a bad
    /// frame. `what` says where, for the status.
    fn record(&self, e: &LinkError, what: impl FnOnce() -> String) {
        let mut guard = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut *guard;
        let (n, last) = match e {
            LinkError::Refused(_) | LinkError::RefusedByPeer(_) | LinkError::Version(_) => {
                (&mut c.refused, &mut c.last_refusal)
            }
            LinkError::Wire(WireError::BadMac { .. }) => {
                (&mut c.auth_failures, &mut c.last_auth_failure)
            }
            LinkError::Wire(
                WireError::TooLarge { .. } | WireError::Decode(_) | WireError::Batch { .. },
            )
            | LinkError::Protocol(_) => (&mut c.bad_frames, &mut c.last_bad_frame),
            _ => return,
        };
        *n += 1;
        *last = Some(what());
    }

    /// The status as `GET /v1/peers` answers it.
    pub fn status(&self) -> PeersStatus {
        let peers = self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|p| PeerStatus {
                last_contact_ms_ago: p.last_contact.map(|t| t.elapsed().as_millis() as u64),
                ..p.status.clone()
            })
            .collect();
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let engine = self
            .engine
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        PeersStatus {
            section: self.config.section.clone(),
            local: self.config.local.clone(),
            bind: self.config.bind.to_string(),
            peers,
            refused_handshakes: c.refused,
            last_refusal: c.last_refusal.clone(),
            bad_frames: c.bad_frames,
            last_bad_frame: c.last_bad_frame.clone(),
            auth_failures: c.auth_failures,
            last_auth_failure: c.last_auth_failure.clone(),
            engine,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    #[error("peers: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("peers: {0}")]
    Engine(#[from] EngineError),
    #[error("peers: starting the engine thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Bind the peer port (before anything is attached, so a taken port fails
/// the start).
pub async fn bind(config: &PeersConfig) -> Result<TcpListener, PeersError> {
    TcpListener::bind(config.bind)
        .await
        .map_err(|source| PeersError::Bind {
            addr: config.bind,
            source,
        })
}

/// The running replication: tasks stopped when dropped.
pub struct Peers {
    tasks: Vec<JoinHandle<()>>,
    /// Their state, for `GET /v1/peers` ([`Ctx::status`]).
    pub ctx: Arc<Ctx>,
}

impl Peers {
    /// Stop the tasks and wait until they have ended (their sockets
    /// closed: a daemon taking over binds the same address next).
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// How often the engine's names (frontend and server ids) are refreshed
/// from the controller (they change on reload and runtime add/remove).
const NAMES_EVERY: Duration = Duration::from_secs(1);

/// Start the engine, the listener and one dial loop per remote peer, for
/// the daemon's controller (whose frontends and servers name the entries).
pub async fn start(
    config: PeersConfig,
    listener: TcpListener,
    source: Source<'_>,
    shared: Shared,
) -> Result<Peers, PeersError> {
    let names = Names::build(&*shared.lock().await, &config.section);
    let tables: Vec<&str> = names.tables.values().map(|t| t.frontend.as_str()).collect();
    info!(
        "peers {}: {} on {}, replicating {} with {}",
        config.section,
        config.local,
        config.bind,
        if tables.is_empty() {
            "no frontend".to_owned()
        } else {
            format!("frontend(s) {}", tables.join(", "))
        },
        config
            .remotes
            .iter()
            .map(|(n, a)| format!("{n} ({a})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let section = config.section.clone();
    let mut peers = start_with(config, listener, source, names)?;
    let engine = peers.ctx.engine.clone();
    peers.tasks.push(tokio::spawn(async move {
        let mut last = None;
        loop {
            tokio::time::sleep(NAMES_EVERY).await;
            let n = Names::build(&*shared.lock().await, &section);
            if last.as_ref() != Some(&n) {
                if last.is_some() {
                    info!("peers: frontends or servers changed: names refreshed");
                }
                engine.set_names(Arc::new(n.clone()));
                last = Some(n);
            }
        }
    }));
    Ok(peers)
}

/// [`start`] with fixed `names` and no controller (the benchmark runs two
/// instances in one process this way). The engine thread is named
/// `peers-<local>`.
pub fn start_with(
    config: PeersConfig,
    listener: TcpListener,
    source: Source<'_>,
    names: Names,
) -> Result<Peers, PeersError> {
    let engine = Engine::open(source, names, config.scan_interval, config.refresh)?
        .spawn(&format!("peers-{}", config.local))
        .map_err(PeersError::Thread)?;
    let peers = config
        .remotes
        .iter()
        .map(|(n, a)| {
            (
                n.clone(),
                PeerRt {
                    status: PeerStatus {
                        name: n.clone(),
                        address: a.to_string(),
                        outbound: OutState::Connecting,
                        inbound: 0,
                        last_contact_ms_ago: None,
                        entries_sent: 0,
                        entries_received: 0,
                        learned: Applied::default(),
                        resyncs_sent: 0,
                        resyncs_received: 0,
                        batches_unacked: 0,
                        lag_ms: 0.0,
                        last_error: None,
                    },
                    last_contact: None,
                },
            )
        })
        .collect();
    let kicks = config
        .remotes
        .keys()
        .map(|n| (n.clone(), Arc::new(Notify::new())))
        .collect();
    let ctx = Arc::new(Ctx {
        config: config.clone(),
        engine,
        peers: Mutex::new(peers),
        counters: Default::default(),
        kicks,
        inbound: Default::default(),
    });
    let mut tasks = vec![tokio::spawn(listen::listen(ctx.clone(), listener))];
    for (n, a) in &config.remotes {
        tasks.push(tokio::spawn(link::dial_loop(ctx.clone(), n.clone(), *a)));
    }
    Ok(Peers { tasks, ctx })
}
