//! Per-server connection limits and their queues, as HAProxy's server
//! `maxconn`, `maxqueue` and the backend's `timeout queue`.
//!
//! A server with `maxconn` takes at most that many requests at once (all
//! worker threads together); a request holds its place ([`Admitted`])
//! until its response has ended. A request that has to go to one server
//! (its persistence cookie names it) and finds it full waits in that
//! server's queue, up to `timeout_queue`; when the queue already holds
//! `maxqueue` requests it is balanced elsewhere instead (persistence is
//! broken, as HAProxy does). A request free to go anywhere takes a server
//! with room; when all are full it waits, up to `timeout_queue`, for any
//! server of the backend to have room. A request that waited too long is
//! answered 503.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering::Relaxed},
    },
};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// One server's limit (shared by every worker thread).
#[derive(Debug)]
pub struct ServerLimit {
    pub maxconn: u32,
    /// 0: no limit.
    pub maxqueue: u32,
    slots: Arc<Semaphore>,
    queued: AtomicU32,
    /// Its backend's waiters for any server with room.
    backend: Arc<Notify>,
}

/// A server's limit as the proxy's server view carries it: equal when it
/// is the same limit.
#[derive(Debug, Clone)]
pub struct Limit(pub Arc<ServerLimit>);

impl PartialEq for Limit {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Limit {}

/// A request's place at its server, held until its response has ended.
pub struct Admitted {
    permit: Option<OwnedSemaphorePermit>,
    backend: Arc<Notify>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        // The place first, then the wake-up: a waiter on another thread
        // must find it free.
        drop(self.permit.take());
        self.backend.notify_waiters();
    }
}

/// Why a request could not be admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    /// The server's queue holds `maxqueue` requests: go elsewhere.
    QueueFull,
    /// Waited `timeout_queue` in vain.
    Timeout,
}

impl ServerLimit {
    /// Whether a request could start at once.
    pub fn has_room(&self) -> bool {
        self.slots.available_permits() > 0
    }

    /// A place at once, if there is room.
    pub fn try_admit(&self) -> Option<Admitted> {
        let p = self.slots.clone().try_acquire_owned().ok()?;
        Some(Admitted {
            permit: Some(p),
            backend: self.backend.clone(),
        })
    }

    /// A place, waiting in this server's queue up to `timeout`.
    pub async fn admit(&self, timeout: std::time::Duration) -> Result<Admitted, Full> {
        if let Some(a) = self.try_admit() {
            return Ok(a);
        }
        if self.maxqueue > 0 && self.queued.load(Relaxed) >= self.maxqueue {
            return Err(Full::QueueFull);
        }
        self.queued.fetch_add(1, Relaxed);
        let r = tokio::time::timeout(timeout, self.slots.clone().acquire_owned()).await;
        self.queued.fetch_sub(1, Relaxed);
        match r {
            Ok(Ok(p)) => Ok(Admitted {
                permit: Some(p),
                backend: self.backend.clone(),
            }),
            _ => Err(Full::Timeout),
        }
    }

    /// Its backend's waiters for any server with room.
    pub fn backend_waiters(&self) -> &Notify {
        &self.backend
    }

    /// Requests waiting in this server's queue now.
    pub fn queued(&self) -> u32 {
        self.queued.load(Relaxed)
    }

    /// Requests at this server now.
    pub fn current(&self) -> u32 {
        self.maxconn
            .saturating_sub(self.slots.available_permits() as u32)
    }
}

/// Wait, up to `timeout`, until `pick` finds a server with room in a
/// backend whose servers are all full; `backend` is its waiters' [`Notify`]
/// (see [`Limits::backend`]). `pick` is tried first, then at each release.
pub async fn any_with_room<T>(
    backend: &Notify,
    timeout: std::time::Duration,
    mut pick: impl FnMut() -> Option<T>,
) -> Option<T> {
    let wait = async {
        loop {
            let released = backend.notified();
            let mut released = std::pin::pin!(released);
            // Registered before looking: a release in between is not lost.
            released.as_mut().enable();
            if let Some(t) = pick() {
                return t;
            }
            released.await;
        }
    };
    tokio::time::timeout(timeout, wait).await.ok()
}

/// Every server's limit, by controller id, and every backend's waiters,
/// by name; a server's limit is the same object for as long as its
/// `maxconn` and `maxqueue` stay the same (reloads and DNS changes
/// included), so requests in flight keep counting against it.
#[derive(Debug, Default)]
pub struct Limits {
    servers: Mutex<HashMap<u32, Arc<ServerLimit>>>,
    backends: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Limits {
    /// Server `id`'s requests now, and those waiting in its queue, if it
    /// has a `maxconn`.
    pub fn gauges(&self, id: u32) -> Option<(u32, u32)> {
        let s = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        s.get(&id).map(|l| (l.current(), l.queued()))
    }

    /// The waiters of backend `name`.
    pub fn backend(&self, name: &str) -> Arc<Notify> {
        let mut b = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        b.entry(name.to_owned()).or_default().clone()
    }

    /// The limit of server `id` of `backend`: `None` without `maxconn`.
    pub fn server(&self, id: u32, backend: &str, maxconn: u32, maxqueue: u32) -> Option<Limit> {
        let notify = self.backend(backend);
        let mut s = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        if maxconn == 0 {
            // No limit (any more): none to report either.
            s.remove(&id);
            return None;
        }
        let l = s
            .entry(id)
            .or_insert_with(|| new_limit(maxconn, maxqueue, &notify));
        if l.maxconn != maxconn || l.maxqueue != maxqueue || !Arc::ptr_eq(&l.backend, &notify) {
            *l = new_limit(maxconn, maxqueue, &notify);
        }
        Some(Limit(l.clone()))
    }
}

fn new_limit(maxconn: u32, maxqueue: u32, backend: &Arc<Notify>) -> Arc<ServerLimit> {
    Arc::new(ServerLimit {
        maxconn,
        maxqueue,
        slots: Arc::new(Semaphore::new(maxconn as usize)),
        queued: AtomicU32::new(0),
        backend: backend.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_server_queues_then_admits_in_turn() {
        let limits = Limits::default();
        let l = limits.server(1, "app", 1, 1).unwrap();
        let first = l.0.try_admit().expect("room for one");
        assert!(l.0.try_admit().is_none());
        // One may wait; the next finds the queue full.
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.0.admit(Duration::from_secs(5)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(l.0.queued(), 1);
        assert_eq!(
            l.0.admit(Duration::from_secs(5)).await.err(),
            Some(Full::QueueFull)
        );
        drop(first);
        assert!(waiter.await.unwrap());
        // Waiting in vain ends in a timeout.
        let held = l.0.try_admit().unwrap();
        assert_eq!(
            l.0.admit(Duration::from_millis(50)).await.err(),
            Some(Full::Timeout)
        );
        drop(held);
        assert_eq!(l.0.current(), 0);
    }

    #[tokio::test]
    async fn a_release_anywhere_wakes_the_backend_queue() {
        let limits = Limits::default();
        let a = limits.server(1, "app", 1, 0).unwrap();
        let b = limits.server(2, "app", 1, 0).unwrap();
        let (ha, hb) = (a.0.try_admit().unwrap(), b.0.try_admit().unwrap());
        let notify = limits.backend("app");
        let (a2, b2) = (a.clone(), b.clone());
        let waiter = tokio::spawn(async move {
            any_with_room(&notify, Duration::from_secs(5), || {
                a2.0.try_admit().or_else(|| b2.0.try_admit())
            })
            .await
            .is_some()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(hb);
        assert!(waiter.await.unwrap());
        drop(ha);
        // The same limit while maxconn and maxqueue stay; a new one after.
        assert_eq!(limits.server(1, "app", 1, 0), Some(a.clone()));
        assert_ne!(limits.server(1, "app", 2, 0), Some(a));
        assert_eq!(limits.server(3, "app", 0, 0), None);
    }
}
