//! The listening side of the peer links: the peer port.
//!
//! Bounds, before and after authentication:
//! - at most [`MAX_HANDSHAKES`] connections are in their handshake at once
//!   (each for at most [`HANDSHAKE_TIMEOUT`]), at most
//!   [`MAX_HANDSHAKES_PER_SOURCE`] of them from one address (one host
//!   cannot take every slot); more are closed at once, counted as refused
//!   and logged at most once a second;
//! - a side that has not proved the secret learns nothing: every hello of
//!   the right protocol version gets a challenge, whatever names it
//!   carries, and every failed check (section, names, HMAC) gets the same
//!   [`REFUSAL`]; the reason goes to this side's log and status only;
//! - one inbound link per configured peer: a newer authenticated link from
//!   the same peer replaces the older one (a restarted peer's link need
//!   not wait for its dead predecessor to time out, and a peer cannot hold
//!   more than one);
//! - frames of at most [`MAX_FRAME`] bytes, sealed ([`super::seal`]), read
//!   within [`DEAD_AFTER`] of each other, answers written within
//!   [`super::link::WRITE_TIMEOUT`].

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use log::{debug, info, warn};
use tokio::{
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    time::timeout,
};

use super::{
    Ctx,
    auth::{self, Role, SessionKeys, Transcript},
    link::{DEAD_AFTER, HANDSHAKE_TIMEOUT, LinkError, Rx, Tx, kind},
    wire::{self, MAX_FRAME, MAX_HANDSHAKE_FRAME, Msg, VERSION, WireError},
};

/// Connections on the peer port that have not authenticated yet, at once
/// (more than a section's peers, [`crate::config::peers::MAX_PEERS`], all
/// dialing together).
pub const MAX_HANDSHAKES: usize = 64;
/// Of those, from one source address at once (a peer dials each of our
/// sections' links once; a restarted one may overlap its old attempt).
pub const MAX_HANDSHAKES_PER_SOURCE: usize = 8;
/// What a side that failed the handshake is told, whatever the reason.
pub const REFUSAL: &str = "handshake refused (the reason is in the refusing peer's log)";
/// Failed handshakes: anyone can cause one per connection, so they are
/// logged at most once a second (each is still counted in `peers status`).
static FAILED: crate::util::Throttled = crate::util::Throttled::new(module_path!());
/// At most one log line per this long about connections over
/// [`MAX_HANDSHAKES`].
const OVER_LOG_EVERY: Duration = Duration::from_secs(1);

/// Accept peers' links until the task is dropped.
pub async fn listen(ctx: Arc<Ctx>, listener: TcpListener) {
    let pending = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let sources = Arc::new(Sources::default());
    let mut over = Over::default();
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!("peers: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            drop(stream);
            over.closed(
                &ctx,
                from,
                format!("{MAX_HANDSHAKES} connections already in their handshake"),
            );
            continue;
        };
        let Some(source) = sources.take(from.ip()) else {
            drop(stream);
            let why = format!(
                "{MAX_HANDSHAKES_PER_SOURCE} connections from {} already in their handshake",
                from.ip()
            );
            over.closed(&ctx, from, why);
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            inbound(ctx, stream, from, (permit, source)).await;
        });
    }
}

/// Handshakes in progress by source address.
#[derive(Default)]
struct Sources(Mutex<HashMap<IpAddr, usize>>);

/// A handshake's place among its source's (see [`Sources::take`]).
struct SourceSlot(Arc<Sources>, IpAddr);

impl Sources {
    /// A place for one more handshake from `ip`, unless it has
    /// [`MAX_HANDSHAKES_PER_SOURCE`] already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= MAX_HANDSHAKES_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(SourceSlot(self.clone(), ip))
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut m = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Connections closed for being over [`MAX_HANDSHAKES`] or
/// [`MAX_HANDSHAKES_PER_SOURCE`]; logged at most once per
/// [`OVER_LOG_EVERY`].
#[derive(Default)]
struct Over {
    unlogged: u64,
    logged: Option<Instant>,
}

impl Over {
    fn closed(&mut self, ctx: &Ctx, from: SocketAddr, why: String) {
        ctx.refused(format!("from {from}: {why}"));
        self.unlogged += 1;
        if self.logged.is_none_or(|t| t.elapsed() >= OVER_LOG_EVERY) {
            warn!(
                "peers: closed {} connection(s) (the last from {from}): {why}",
                self.unlogged
            );
            self.unlogged = 0;
            self.logged = Some(Instant::now());
        }
    }
}

/// An inbound connection through its handshake (holding `permit`, its
/// places under both handshake caps, until then), then its link.
async fn inbound(
    ctx: Arc<Ctx>,
    stream: TcpStream,
    from: SocketAddr,
    permit: (OwnedSemaphorePermit, SourceSlot),
) {
    let (mut rd, mut wr) = stream.into_split();
    let hs = timeout(HANDSHAKE_TIMEOUT, listen_handshake(&ctx, &mut rd, &mut wr)).await;
    drop(permit);
    let (peer, keys) = match hs {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            match &e {
                LinkError::Refused(_) | LinkError::Version(_) => {
                    FAILED.warn(|| format!("peers: refused connection from {from}: {e}"));
                }
                LinkError::Wire(WireError::TooLarge { .. } | WireError::Decode(_))
                | LinkError::Protocol(_) => FAILED.warn(|| {
                    format!("peers: connection from {from} closed: bad frame in the handshake: {e}")
                }),
                _ => info!("peers: connection from {from} ended in the handshake: {e}"),
            }
            ctx.record(&e, || format!("from {from}: {e}"));
            return;
        }
        Err(_) => {
            FAILED.warn(|| {
                format!(
                    "peers: connection from {from} closed: no handshake within {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                )
            });
            ctx.bad_frame(format!("from {from}: handshake timeout"));
            return;
        }
    };
    info!("peers: {peer} ({from}) connected and authenticated");
    let replaced = take_slot(&ctx, &peer);
    ctx.peer(&peer, |p| {
        p.status.inbound += 1;
        p.touch();
    });
    // If our own link to it is waiting to redial, redial now.
    if let Some(k) = ctx.kicks.get(&peer) {
        k.notify_one();
    }
    let (seal, open) = keys.split(Role::Listener);
    let mut rx = Rx::new(rd, open, MAX_FRAME);
    let mut tx = Tx::new(wr, seal);
    let r = tokio::select! {
        r = receive(&ctx, &peer, &mut rx, &mut tx) => r,
        _ = replaced.notified() => Err(LinkError::Replaced),
    };
    leave_slot(&ctx, &peer, &replaced);
    ctx.peer(&peer, |p| {
        p.status.inbound = p.status.inbound.saturating_sub(1)
    });
    let Err(e) = r else { return };
    ctx.record(&e, || format!("from {peer} ({from}): {e}"));
    if matches!(e, LinkError::Replaced | LinkError::Wire(WireError::Closed)) {
        info!("peers: link from {peer} ({from}) ended: {e}");
    } else {
        warn!("peers: link from {peer} ({from}) closed: {e}");
    }
}

/// Make this link `peer`'s inbound link, telling the one it replaces to
/// end; the returned notify tells this one.
fn take_slot(ctx: &Ctx, peer: &str) -> Arc<Notify> {
    let mine = Arc::new(Notify::new());
    let old = ctx
        .inbound
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(peer.to_owned(), mine.clone());
    if let Some(old) = old {
        info!("peers: {peer}: its new link replaces the previous one");
        // Stored as a permit if the old link is not waiting right now.
        old.notify_one();
    }
    mine
}

/// Free `peer`'s slot if it is still this link's.
fn leave_slot(ctx: &Ctx, peer: &str, mine: &Arc<Notify>) {
    let mut slots = ctx.inbound.lock().unwrap_or_else(|e| e.into_inner());
    if slots.get(peer).is_some_and(|s| Arc::ptr_eq(s, mine)) {
        slots.remove(peer);
    }
}

async fn receive(
    ctx: &Ctx,
    peer: &str,
    rx: &mut Rx<OwnedReadHalf>,
    tx: &mut Tx<OwnedWriteHalf>,
) -> Result<(), LinkError> {
    let mut resync_entries = 0u64;
    loop {
        let m = timeout(DEAD_AFTER, rx.recv())
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
                tx.send(&Msg::Ack { seq }).await?;
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
                tx.send(&Msg::Heartbeat).await?;
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

/// The listening side of the handshake: the authenticated peer's name
/// and the link's keys. A refusal is sent from here (within the
/// handshake's timeout): [`REFUSAL`] for every failed check, or the
/// protocol versions to a peer of another version.
async fn listen_handshake(
    ctx: &Ctx,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
) -> Result<(String, SessionKeys), LinkError> {
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
        // Names nothing: an older peer learns why, and an upgrade fixes it.
        let e = LinkError::Version(version);
        let reason = e.to_string();
        let _ = wire::write_msg(wr, &Msg::Refused { reason }).await;
        return Err(e);
    }
    let mine = auth::nonce().map_err(WireError::from)?;
    wire::write_msg(wr, &Msg::Challenge { nonce: mine }).await?;
    let mac = match wire::read_msg(rd, MAX_HANDSHAKE_FRAME).await? {
        Msg::Auth { mac } => mac,
        other => {
            return Err(LinkError::Protocol(format!(
                "{} instead of an auth",
                kind(&other)
            )));
        }
    };
    // Checked only now, all with one answer: before its proof, the other
    // side must not learn which of our names it got right.
    let t = Transcript {
        section: &section,
        dialer: &from,
        listener: &to,
        dialer_nonce: &theirs,
        listener_nonce: &mine,
    };
    let secret = cfg.secret.as_bytes();
    let why = if section != cfg.section {
        Some(format!(
            "peers section {section:?}, this peer serves {:?}",
            cfg.section
        ))
    } else if to != cfg.local {
        Some(format!("asked for peer {to:?}, this is {:?}", cfg.local))
    } else if !cfg.remotes.contains_key(&from) {
        Some(format!("unknown peer name {from:?}"))
    } else if !auth::verify(secret, Role::Dialer, &t, &mac) {
        Some(format!(
            "peer {from:?} failed authentication (bad HMAC: wrong secret?)"
        ))
    } else {
        None
    };
    if let Some(why) = why {
        let refusal = Msg::Refused {
            reason: REFUSAL.into(),
        };
        let _ = wire::write_msg(wr, &refusal).await;
        return Err(LinkError::Refused(why));
    }
    wire::write_msg(
        wr,
        &Msg::Welcome {
            mac: auth::sign(secret, Role::Listener, &t),
        },
    )
    .await?;
    let keys = auth::session_keys(secret, &t);
    Ok((from, keys))
}
