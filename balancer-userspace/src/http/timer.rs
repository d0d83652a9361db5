//! Per-request deadlines without a timer-wheel insertion and removal per
//! request.
//!
//! Every request has a deadline or two: the proxy's for the server's
//! answer (`timeout_server`) or the client's request body
//! (`timeout_client`), and its connection's watchdog's. Nearly all of them are cancelled long before they
//! expire. A tokio `Sleep` made and dropped per request registers in the
//! runtime's timer wheel and unregisters again each time; measured with
//! callgrind, that was about a tenth of the proxy's user-space
//! instructions per request.
//!
//! Here a cancelled deadline leaves its tokio `Sleep` registered and puts
//! it on its worker thread's spare list; the next deadline takes it and
//! keeps its registration. A recycled `Sleep` is registered for an earlier
//! instant than the new deadline (deadlines only move forward), so it fires
//! early at most once per timeout period, and is then re-armed for the real
//! deadline ([`Deadline`] checks the clock before reporting expiry). A
//! recycled sleep registered for a *later* instant is re-armed at once. A
//! spare that fires while on the list wakes the task that last used it,
//! which then finds nothing to do.

use std::{
    cell::RefCell,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::time::Sleep;

/// Spare sleeps kept per worker thread; more are dropped (unregistered).
/// A spare keeps the waker of the task that last used it (and so that
/// task's memory) until it is reused or fires.
const MAX_SPARE: usize = 1024;

thread_local! {
    static SPARE: RefCell<Vec<Pin<Box<Sleep>>>> = const { RefCell::new(Vec::new()) };
}

/// Drop this thread's spare sleeps (a worker does so before its runtime
/// goes).
pub fn clear_spares() {
    let _ = SPARE.try_with(|s| s.borrow_mut().clear());
}

/// A deadline on a recycled tokio `Sleep` (see the module doc). Takes a
/// sleep only when first polled.
pub struct Deadline {
    inner: Option<Pin<Box<Sleep>>>,
    at: tokio::time::Instant,
}

impl Deadline {
    pub fn at(at: tokio::time::Instant) -> Deadline {
        Deadline { inner: None, at }
    }

    pub fn after(d: Duration) -> Deadline {
        Deadline::at(tokio::time::Instant::now() + d)
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let at = this.at;
        let inner = this.inner.get_or_insert_with(|| {
            match SPARE.try_with(|s| s.borrow_mut().pop()).ok().flatten() {
                Some(mut s) => {
                    if s.deadline() > at {
                        s.as_mut().reset(at);
                    }
                    s
                }
                None => Box::pin(tokio::time::sleep_until(at)),
            }
        });
        loop {
            match inner.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if tokio::time::Instant::now() >= at => return Poll::Ready(()),
                // A recycled sleep that fired for its earlier deadline.
                Poll::Ready(()) => inner.as_mut().reset(at),
            }
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(s) = self.inner.take() {
            let _ = SPARE.try_with(|spare| {
                let mut spare = spare.borrow_mut();
                if spare.len() < MAX_SPARE {
                    spare.push(s);
                }
            });
        }
    }
}

impl hyper::rt::Sleep for Deadline {}

/// hyper's timer (header read timeouts, HTTP/2 keep-alive) on [`Deadline`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RecyclingTimer;

impl hyper::rt::Timer for RecyclingTimer {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline::after(d))
    }

    fn sleep_until(&self, at: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline::at(at.into()))
    }
}

/// `fut`, or `None` once `d` has passed.
pub async fn within<F: Future>(d: Duration, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut deadline = Deadline::after(d);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        Pin::new(&mut deadline).poll(cx).map(|()| None)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn recycled_sleeps_fire_at_their_own_deadlines() {
        let t0 = tokio::time::Instant::now();
        // A sleep registered for t0+50ms, cancelled, goes on the list.
        assert!(
            within(Duration::from_millis(50), std::future::ready(()))
                .await
                .is_some()
        );
        {
            let mut d = Deadline::after(Duration::from_millis(50));
            assert!(futures_poll_once(&mut d).is_pending());
        }
        // Taken again for a later deadline: not over at its old instant.
        let r = within(Duration::from_millis(200), std::future::pending::<()>()).await;
        assert!(r.is_none());
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_millis(260),
            "expired after {waited:?}"
        );
        // Taken for an earlier deadline than it was registered for.
        {
            let mut d = Deadline::after(Duration::from_secs(10));
            assert!(futures_poll_once(&mut d).is_pending());
        }
        let t1 = tokio::time::Instant::now();
        assert!(
            within(Duration::from_millis(20), std::future::pending::<()>())
                .await
                .is_none()
        );
        assert!(
            t1.elapsed() < Duration::from_millis(100),
            "{:?}",
            t1.elapsed()
        );
        // And a deadline that completes in time reports its value.
        let quick = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            7
        };
        assert_eq!(within(Duration::from_millis(100), quick).await, Some(7));
    }

    fn futures_poll_once(d: &mut Deadline) -> Poll<()> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(d).poll(&mut cx)
    }
}
