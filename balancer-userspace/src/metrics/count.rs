//! The stick table's entries, counted off the scrape's path.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use log::warn;

use crate::dataplane::StickStore;

/// The last stick-table count: entries and when (Unix seconds); both 0
/// before the first count.
#[derive(Debug, Default)]
pub struct TableCount {
    pub(super) entries: AtomicU64,
    pub(super) at: AtomicU64,
}

/// Count the stick table every `every`, off the async runtime and
/// without the controller's lock.
pub async fn count_loop(store: StickStore, every: Duration, out: Arc<TableCount>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let store = Arc::new(store);
    loop {
        tick.tick().await;
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.count()).await {
            Ok(Ok(n)) => {
                out.entries.store(n, Ordering::Relaxed);
                out.at.store(unix_now(), Ordering::Relaxed);
            }
            Ok(Err(e)) => warn!("counting the stick table: {e}"),
            Err(e) => warn!("counting the stick table: {e}"),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
