//! Peer links over TCP: what both sides share, and the dialing side.
//!
//! Each instance dials every other peer of its section and pushes its
//! updates over that connection; it receives the others' updates on the
//! connections they dial to it ([`super::listen`]). A dialed link:
//! handshake (the dialer says who it is and whom it wants, both sides send
//! a nonce, both prove the secret with an HMAC over names and nonces, and
//! both derive the link's two frame keys), then a full resync (every live
//! entry, with its age), `ResyncDone`, then incremental batches; from the
//! handshake on every frame is sealed ([`super::seal`]). Batches are
//! acknowledged; at most [`WINDOW`] are in flight. An idle link carries
//! heartbeats; a link silent for [`DEAD_AFTER`], or where a frame cannot
//! be written within [`WRITE_TIMEOUT`] (the peer stopped reading), is
//! closed and dialed again with exponential backoff (100 ms to 2 s). When a
//! peer dials in, this side's link to it is redialed at once if it was
//! waiting, so a restarted peer relearns the table without waiting for a
//! backoff.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use log::{debug, info, warn};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt as _},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::mpsc,
    time::timeout,
};

use super::{
    Ctx, OutState,
    auth::{self, Role, SessionKeys, Transcript},
    engine::Batch,
    seal::{Opener, Sealer},
    wire::{self, MAX_HANDSHAKE_FRAME, Msg, VERSION, WireError},
};
use crate::util::{AbortOnDrop, monotonic_ns};

/// Dialing a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole handshake, either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A link that has heard nothing for this long is dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(4);
/// Writing one frame: a peer that stops reading (its window stays shut)
/// loses the link after this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(4);
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
    /// This side refused (the reason stays in this side's log).
    #[error("refused: {0}")]
    Refused(String),
    #[error("protocol version {0}, this peer speaks {VERSION}")]
    Version(u32),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("replaced by a newer link from the same peer")]
    Replaced,
    #[error("the replication engine stopped")]
    EngineGone,
    #[error("dropped by the replication engine (queue full); resync on reconnect")]
    TooSlow,
}

/// The sending half of an authenticated link: every frame sealed and
/// written within [`WRITE_TIMEOUT`].
pub(super) struct Tx<W> {
    w: W,
    seal: Sealer,
}

impl<W: AsyncWrite + Unpin> Tx<W> {
    pub(super) fn new(w: W, seal: Sealer) -> Self {
        Tx { w, seal }
    }

    pub(super) async fn send(&mut self, msg: &Msg) -> Result<(), LinkError> {
        let frame = self.seal.seal(msg)?;
        timeout(WRITE_TIMEOUT, self.w.write_all(&frame))
            .await
            .map_err(|_| LinkError::Timeout("writing a frame (the peer does not read)"))?
            .map_err(WireError::from)?;
        Ok(())
    }
}

/// The receiving half of an authenticated link: frames of at most `max`
/// bytes, checked before they are decoded.
pub(super) struct Rx<R> {
    r: R,
    open: Opener,
    max: usize,
}

impl<R: AsyncRead + Unpin> Rx<R> {
    pub(super) fn new(r: R, open: Opener, max: usize) -> Self {
        Rx { r, open, max }
    }

    /// Not cancel-safe (see [`wire::read_frame`]).
    pub(super) async fn recv(&mut self) -> Result<Msg, WireError> {
        let frame = wire::read_frame(&mut self.r, self.max).await?;
        self.open.open(&frame)
    }
}

/// Keep dialing `peer` at `addr`; push this instance's entries to it.
pub async fn dial_loop(ctx: Arc<Ctx>, peer: String, addr: SocketAddr) {
    let kick = ctx.kick(&peer);
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    loop {
        ctx.set_out(&peer, OutState::Connecting);
        let mut progress = Progress::None;
        let r = session(&ctx, &peer, addr, &mut progress).await;
        if progress == Progress::Up {
            backoff = MIN_BACKOFF;
            failing = false;
        }
        let e = match r {
            Ok(()) => continue,
            Err(e) => e,
        };
        // One line per outage at warn level, and every failure of an
        // authenticated link; retries at debug.
        if !failing || progress != Progress::None {
            warn!("peers: link to {peer} ({addr}): {e}; redialing with backoff");
        } else {
            debug!("peers: link to {peer} ({addr}): {e}");
        }
        ctx.record(&e, || format!("link to {peer} ({addr}): {e}"));
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

/// How far a dialed session got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    None,
    Authenticated,
    Up,
}

async fn session(
    ctx: &Ctx,
    peer: &str,
    addr: SocketAddr,
    progress: &mut Progress,
) -> Result<(), LinkError> {
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| LinkError::Timeout("connecting"))?
        .map_err(WireError::from)?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    ctx.set_out(peer, OutState::Handshake);
    let keys = timeout(
        HANDSHAKE_TIMEOUT,
        dial_handshake(ctx, peer, &mut rd, &mut wr),
    )
    .await
    .map_err(|_| LinkError::Timeout("in the handshake"))??;
    *progress = Progress::Authenticated;
    let (seal, open) = keys.split(Role::Dialer);
    ctx.set_out(peer, OutState::Resync);
    let sub = ctx
        .engine
        .subscribe(peer)
        .await
        .ok_or(LinkError::EngineGone)?;
    // Acks and heartbeats (small frames), read by a task of their own
    // (reads are not cancel-safe).
    let mut rx = Rx::new(rd, open, MAX_HANDSHAKE_FRAME);
    let (in_tx, mut in_rx) = mpsc::channel::<Result<Msg, WireError>>(64);
    let reader = tokio::spawn(async move {
        loop {
            let m = rx.recv().await;
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
        tx: Tx::new(wr, seal),
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
    link.tx.send(&Msg::ResyncDone { seq }).await?;
    ctx.peer(peer, |p| {
        p.status.resyncs_sent += 1;
        p.status.last_error = None;
    });
    info!("peers: link to {peer} ({addr}) up: full resync of {total} entries sent");
    ctx.set_out(peer, OutState::Up);
    *progress = Progress::Up;
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

/// The dialing side of an established link.
struct Sender<'a> {
    ctx: &'a Ctx,
    peer: &'a str,
    tx: Tx<OwnedWriteHalf>,
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
        self.tx.send(&msg).await?;
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
            self.tx.send(&Msg::Heartbeat).await?;
            self.last_tx = Instant::now();
        }
        Ok(())
    }
}

/// The dialing side of the handshake; the link's keys.
async fn dial_handshake(
    ctx: &Ctx,
    peer: &str,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
) -> Result<SessionKeys, LinkError> {
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
        Msg::Welcome { mac } if auth::verify(secret, Role::Listener, &t, &mac) => {
            Ok(auth::session_keys(secret, &t))
        }
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

pub(super) fn kind(m: &Msg) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::{seal::FrameKey, wire::TableUpdates};

    /// A peer that reads nothing: the write gives up after WRITE_TIMEOUT.
    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_reads_times_out() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let mut tx = Tx::new(ours, Sealer::new(FrameKey::new(&[5; 32])));
        let big = Msg::Updates {
            seq: 1,
            resync: true,
            held_us: 0,
            tables: vec![TableUpdates {
                frontend: "web".into(),
                backend: "web".into(),
                servers: vec!["s".repeat(4096)],
                entries: Vec::new(),
            }],
        };
        let t0 = tokio::time::Instant::now();
        match tx.send(&big).await {
            Err(LinkError::Timeout(what)) => assert!(what.starts_with("writing"), "{what}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(t0.elapsed(), WRITE_TIMEOUT);
    }
}
