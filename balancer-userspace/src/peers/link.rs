//! Peer links over TCP.
//!
//! Each instance dials every other peer of its section and pushes its
//! updates over that connection; it receives the others' updates on the
//! connections they dial to it. A dialed link: handshake (the dialer says
//! who it is and whom it wants, both sides send a nonce, both prove the
//! secret with an HMAC over names and nonces), then a full resync (every
//! live entry, with its age), `ResyncDone`, then incremental batches.
//! Batches are acknowledged; at most [`WINDOW`] are in flight. An idle link
//! carries heartbeats; a link silent for [`DEAD_AFTER`] is closed and
//! dialed again with exponential backoff (100 ms to 2 s). When a peer dials
//! in, this side's link to it is redialed at once if it was waiting, so a
//! restarted peer relearns the table without waiting for a backoff.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use log::{debug, info, warn};
use tokio::{
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf},
    sync::mpsc,
    time::timeout,
};

use super::{
    Ctx, OutState,
    auth::{self, Role, Transcript},
    engine::Batch,
    wire::{self, MAX_FRAME, MAX_HANDSHAKE_FRAME, Msg, VERSION, WireError},
};
use crate::util::monotonic_ns;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A link that has heard nothing for this long is dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(4);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Unacknowledged batches in flight per link.
pub const WINDOW: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("refused by the peer: {0}")]
    RefusedByPeer(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the replication engine stopped")]
    EngineGone,
    #[error("dropped by the replication engine (queue full); resync on reconnect")]
    TooSlow,
}

/// Keep dialing `peer` at `addr`; push this instance's entries to it.
pub async fn dial_loop(ctx: Arc<Ctx>, peer: String, addr: SocketAddr) {
    let kick = ctx.kick(&peer);
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    loop {
        ctx.set_out(&peer, OutState::Connecting);
        let mut reached_up = false;
        let r = session(&ctx, &peer, addr, &mut reached_up).await;
        if reached_up {
            backoff = MIN_BACKOFF;
            failing = false;
        }
        let e = match r {
            Ok(()) => continue,
            Err(e) => e,
        };
        // One line per outage at warn level; retries at debug.
        if !failing || reached_up {
            warn!("peers: link to {peer} ({addr}): {e}; redialing with backoff");
        } else {
            debug!("peers: link to {peer} ({addr}): {e}");
        }
        if matches!(e, LinkError::RefusedByPeer(_) | LinkError::Refused(_)) {
            ctx.refused(format!("dialing {peer} ({addr}): {e}"));
        }
        failing = true;
        ctx.peer(&peer, |p| p.status.last_error = Some(e.to_string()));
        ctx.set_out(&peer, OutState::Backoff);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = kick.notified() => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn session(
    ctx: &Ctx,
    peer: &str,
    addr: SocketAddr,
    reached_up: &mut bool,
) -> Result<(), LinkError> {
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| LinkError::Timeout("connecting"))?
        .map_err(WireError::from)?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    ctx.set_out(peer, OutState::Handshake);
    timeout(
        HANDSHAKE_TIMEOUT,
        dial_handshake(ctx, peer, &mut rd, &mut wr),
    )
    .await
    .map_err(|_| LinkError::Timeout("in the handshake"))??;
    ctx.set_out(peer, OutState::Resync);
    let sub = ctx
        .engine
        .subscribe(peer)
        .await
        .ok_or(LinkError::EngineGone)?;
    // Acks and heartbeats, read by a task of their own (reads are not
    // cancel-safe).
    let (in_tx, mut in_rx) = mpsc::channel::<Result<Msg, WireError>>(64);
    let reader = tokio::spawn(async move {
        loop {
            let m = wire::read_msg(&mut rd, MAX_HANDSHAKE_FRAME).await;
            let end = m.is_err();
            if in_tx.send(m).await.is_err() || end {
                break;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    let mut link = Sender {
        ctx,
        peer,
        wr: &mut wr,
        seq: 0,
        unacked: VecDeque::new(),
        last_rx: Instant::now(),
        last_tx: Instant::now(),
    };
    let total: usize = sub.snapshot.iter().map(|b| b.entries).sum();
    for b in &sub.snapshot {
        link.send(b, &mut in_rx).await?;
    }
    let seq = link.seq;
    wire::write_msg(link.wr, &Msg::ResyncDone { seq }).await?;
    ctx.peer(peer, |p| {
        p.status.resyncs_sent += 1;
        p.status.last_error = None;
    });
    info!("peers: link to {peer} ({addr}) up: full resync of {total} entries sent");
    ctx.set_out(peer, OutState::Up);
    *reached_up = true;
    let mut updates = sub.updates;
    let mut tick = tokio::time::interval(HEARTBEAT / 2);
    loop {
        tokio::select! {
            b = updates.recv() => match b {
                Some(b) => link.send(&b, &mut in_rx).await?,
                None => return Err(LinkError::TooSlow),
            },
            m = in_rx.recv() => link.received(m)?,
            _ = tick.tick() => link.idle().await?,
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The dialing side of an established link.
struct Sender<'a> {
    ctx: &'a Ctx,
    peer: &'a str,
    wr: &'a mut tokio::net::tcp::OwnedWriteHalf,
    seq: u64,
    /// (seq, when the batch was made (monotonic ns), entries)
    unacked: VecDeque<(u64, u64, usize)>,
    last_rx: Instant,
    last_tx: Instant,
}

impl Sender<'_> {
    async fn send(
        &mut self,
        b: &Batch,
        in_rx: &mut mpsc::Receiver<Result<Msg, WireError>>,
    ) -> Result<(), LinkError> {
        while self.unacked.len() >= WINDOW {
            match timeout(DEAD_AFTER, in_rx.recv()).await {
                Ok(m) => self.received(m)?,
                Err(_) => return Err(LinkError::Timeout("waiting for acknowledgements")),
            }
        }
        self.seq += 1;
        let held_us = monotonic_ns().saturating_sub(b.made_ns) / 1000;
        let msg = Msg::Updates {
            seq: self.seq,
            resync: b.resync,
            held_us,
            tables: b.tables.clone(),
        };
        wire::write_msg(self.wr, &msg).await?;
        self.last_tx = Instant::now();
        self.unacked.push_back((self.seq, b.made_ns, b.entries));
        let n = b.entries as u64;
        let unacked = self.unacked.len() as u64;
        self.ctx.peer(self.peer, |p| {
            p.status.entries_sent += n;
            p.status.batches_unacked = unacked;
        });
        Ok(())
    }

    fn received(&mut self, m: Option<Result<Msg, WireError>>) -> Result<(), LinkError> {
        let m = m.ok_or(WireError::Closed)??;
        self.last_rx = Instant::now();
        match m {
            Msg::Ack { seq } => {
                let now = monotonic_ns();
                let mut lag = None;
                while let Some(&(s, made, _)) = self.unacked.front() {
                    if s > seq {
                        break;
                    }
                    lag = Some(now.saturating_sub(made));
                    self.unacked.pop_front();
                }
                let unacked = self.unacked.len() as u64;
                self.ctx.peer(self.peer, |p| {
                    p.touch();
                    p.status.batches_unacked = unacked;
                    if let Some(l) = lag {
                        p.status.lag_ms = l as f64 / 1e6;
                    }
                });
                Ok(())
            }
            Msg::Heartbeat => {
                self.ctx.peer(self.peer, |p| p.touch());
                Ok(())
            }
            other => Err(LinkError::Protocol(format!(
                "unexpected {} from the listener",
                kind(&other)
            ))),
        }
    }

    async fn idle(&mut self) -> Result<(), LinkError> {
        if self.last_rx.elapsed() > DEAD_AFTER {
            return Err(LinkError::Timeout("waiting for the peer (no heartbeat)"));
        }
        if self.last_tx.elapsed() >= HEARTBEAT {
            wire::write_msg(self.wr, &Msg::Heartbeat).await?;
            self.last_tx = Instant::now();
        }
        Ok(())
    }
}

async fn dial_handshake(
    ctx: &Ctx,
    peer: &str,
    rd: &mut OwnedReadHalf,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Result<(), LinkError> {
    let cfg = &ctx.config;
    let mine = auth::nonce().map_err(WireError::from)?;
    wire::write_msg(
        wr,
        &Msg::Hello {
            version: VERSION,
            section: cfg.section.clone(),
            from: cfg.local.clone(),
            to: peer.to_owned(),
            nonce: mine,
        },
    )
    .await?;
    let theirs = match wire::read_msg(rd, MAX_HANDSHAKE_FRAME).await? {
        Msg::Challenge { nonce } => nonce,
        Msg::Refused { reason } => return Err(LinkError::RefusedByPeer(reason)),
        other => {
            return Err(LinkError::Protocol(format!(
                "{} instead of a challenge",
                kind(&other)
            )));
        }
    };
    let t = Transcript {
        section: &cfg.section,
        dialer: &cfg.local,
        listener: peer,
        dialer_nonce: &mine,
        listener_nonce: &theirs,
    };
    let secret = cfg.secret.as_bytes();
    wire::write_msg(
        wr,
        &Msg::Auth {
            mac: auth::sign(secret, Role::Dialer, &t),
        },
    )
    .await?;
    match wire::read_msg(rd, MAX_HANDSHAKE_FRAME).await? {
        Msg::Welcome { mac } if auth::verify(secret, Role::Listener, &t, &mac) => Ok(()),
        Msg::Welcome { .. } => Err(LinkError::Refused(format!(
            "{peer} did not prove the shared secret (bad HMAC)"
        ))),
        Msg::Refused { reason } => Err(LinkError::RefusedByPeer(reason)),
        other => Err(LinkError::Protocol(format!(
            "{} instead of a welcome",
            kind(&other)
        ))),
    }
}

/// Accept peers' links until the task is dropped.
pub async fn listen(ctx: Arc<Ctx>, listener: TcpListener) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!("peers: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            inbound(ctx, stream, from).await;
        });
    }
}

async fn inbound(ctx: Arc<Ctx>, stream: TcpStream, from: SocketAddr) {
    let (mut rd, mut wr) = stream.into_split();
    let peer = match timeout(HANDSHAKE_TIMEOUT, listen_handshake(&ctx, &mut rd, &mut wr)).await {
        Ok(Ok(peer)) => peer,
        Ok(Err(e)) => {
            match &e {
                LinkError::Refused(reason) => {
                    let _ = wire::write_msg(
                        &mut wr,
                        &Msg::Refused {
                            reason: reason.clone(),
                        },
                    )
                    .await;
                    warn!("peers: refused connection from {from}: {reason}");
                    ctx.refused(format!("from {from}: {reason}"));
                }
                LinkError::Wire(WireError::TooLarge { .. } | WireError::Decode(_))
                | LinkError::Protocol(_) => {
                    warn!("peers: connection from {from} closed: bad frame in the handshake: {e}");
                    ctx.bad_frame(format!("from {from}: {e}"));
                }
                _ => info!("peers: connection from {from} ended in the handshake: {e}"),
            }
            return;
        }
        Err(_) => {
            warn!("peers: connection from {from} closed: no handshake within 3 s");
            ctx.bad_frame(format!("from {from}: handshake timeout"));
            return;
        }
    };
    info!("peers: {peer} ({from}) connected and authenticated");
    ctx.peer(&peer, |p| {
        p.status.inbound += 1;
        p.touch();
    });
    // If our own link to it is waiting to redial, redial now.
    if let Some(k) = ctx.kicks.get(&peer) {
        k.notify_one();
    }
    let r = receive(&ctx, &peer, &mut rd, &mut wr).await;
    ctx.peer(&peer, |p| {
        p.status.inbound = p.status.inbound.saturating_sub(1)
    });
    match r {
        Err(e @ LinkError::Wire(WireError::TooLarge { .. } | WireError::Decode(_)))
        | Err(e @ LinkError::Protocol(_)) => {
            warn!("peers: link from {peer} ({from}) closed: {e}");
            ctx.bad_frame(format!("from {peer} ({from}): {e}"));
        }
        Err(e) => info!("peers: link from {peer} ({from}) ended: {e}"),
        Ok(()) => {}
    }
}

async fn receive(
    ctx: &Ctx,
    peer: &str,
    rd: &mut OwnedReadHalf,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Result<(), LinkError> {
    let mut resync_entries = 0u64;
    loop {
        let m = timeout(DEAD_AFTER, wire::read_msg(rd, MAX_FRAME))
            .await
            .map_err(|_| LinkError::Timeout("waiting for the peer (no heartbeat)"))??;
        match m {
            Msg::Updates {
                seq,
                resync,
                held_us,
                tables,
            } => {
                let n: u64 = tables.iter().map(|t| t.entries.len() as u64).sum();
                if resync {
                    resync_entries += n;
                }
                let a = ctx
                    .engine
                    .apply(held_us, tables)
                    .await
                    .ok_or(LinkError::EngineGone)?;
                ctx.peer(peer, |p| {
                    p.touch();
                    p.status.entries_received += n;
                    p.status.learned.written += a.written;
                    p.status.learned.stale += a.stale;
                    p.status.learned.rejected += a.rejected;
                });
                if a.rejected > 0 {
                    debug!("peers: {} entries from {peer} rejected", a.rejected);
                }
                wire::write_msg(wr, &Msg::Ack { seq }).await?;
            }
            Msg::ResyncDone { .. } => {
                info!("peers: full resync from {peer}: {resync_entries} entries");
                ctx.peer(peer, |p| {
                    p.status.resyncs_received += 1;
                    p.touch();
                });
                resync_entries = 0;
            }
            Msg::Heartbeat => {
                ctx.peer(peer, |p| p.touch());
                wire::write_msg(wr, &Msg::Heartbeat).await?;
            }
            other => {
                return Err(LinkError::Protocol(format!(
                    "unexpected {} from the dialer",
                    kind(&other)
                )));
            }
        }
    }
}

/// The listening side of the handshake; the authenticated peer's name.
async fn listen_handshake(
    ctx: &Ctx,
    rd: &mut OwnedReadHalf,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Result<String, LinkError> {
    let cfg = &ctx.config;
    let (version, section, from, to, theirs) = match wire::read_msg(rd, MAX_HANDSHAKE_FRAME).await?
    {
        Msg::Hello {
            version,
            section,
            from,
            to,
            nonce,
        } => (version, section, from, to, nonce),
        other => {
            return Err(LinkError::Protocol(format!(
                "{} instead of a hello",
                kind(&other)
            )));
        }
    };
    if version != VERSION {
        return Err(LinkError::Refused(format!(
            "protocol version {version}, this peer speaks {VERSION}"
        )));
    }
    if section != cfg.section {
        return Err(LinkError::Refused(format!(
            "peers section {section:?}, this peer serves {:?}",
            cfg.section
        )));
    }
    if to != cfg.local {
        return Err(LinkError::Refused(format!(
            "asked for peer {to:?}, this is {:?}",
            cfg.local
        )));
    }
    if !cfg.remotes.contains_key(&from) {
        return Err(LinkError::Refused(format!("unknown peer name {from:?}")));
    }
    let mine = auth::nonce().map_err(WireError::from)?;
    wire::write_msg(wr, &Msg::Challenge { nonce: mine }).await?;
    let t = Transcript {
        section: &cfg.section,
        dialer: &from,
        listener: &cfg.local,
        dialer_nonce: &theirs,
        listener_nonce: &mine,
    };
    let secret = cfg.secret.as_bytes();
    match wire::read_msg(rd, MAX_HANDSHAKE_FRAME).await? {
        Msg::Auth { mac } if auth::verify(secret, Role::Dialer, &t, &mac) => {}
        Msg::Auth { .. } => {
            return Err(LinkError::Refused(format!(
                "peer {from:?} failed authentication (bad HMAC: wrong secret?)"
            )));
        }
        other => {
            return Err(LinkError::Protocol(format!(
                "{} instead of an auth",
                kind(&other)
            )));
        }
    }
    wire::write_msg(
        wr,
        &Msg::Welcome {
            mac: auth::sign(secret, Role::Listener, &t),
        },
    )
    .await?;
    Ok(from)
}

fn kind(m: &Msg) -> &'static str {
    match m {
        Msg::Hello { .. } => "hello",
        Msg::Challenge { .. } => "challenge",
        Msg::Auth { .. } => "auth",
        Msg::Welcome { .. } => "welcome",
        Msg::Refused { .. } => "refusal",
        Msg::Updates { .. } => "updates",
        Msg::ResyncDone { .. } => "resync-done",
        Msg::Ack { .. } => "ack",
        Msg::Heartbeat => "heartbeat",
    }
}
