//! Small things several layers use: the clocks of the data plane's
//! timestamps and of CPU accounting, error chains as one line, and how the
//! control endpoints (admin API, metrics) accept and serve connections.

/// CLOCK_MONOTONIC, the clock of the data plane's timestamps.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CPU time of the calling thread, in ns.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CLOCK_MONOTONIC_COARSE in ms: cheap (no system call, a few ns), a few
/// ms coarse; what connection timeouts are measured with.
pub fn coarse_ms() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE) / 1_000_000
}

/// A task that is aborted when this handle is dropped: a helper task that
/// must not outlive what spawned it.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Raise the soft descriptor limit to the hard one, as servers do at
/// start (the usual soft limit, 1024, is far below what a proxy holds).
/// Returns the soft limit in force afterwards.
pub fn raise_nofile() -> std::io::Result<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if r.rlim_cur < r.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: a valid pointer to an rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            r.rlim_cur = r.rlim_max;
        }
    }
    Ok(r.rlim_cur)
}

/// Descriptors this process has open now.
pub fn open_fds() -> std::io::Result<u64> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count() as u64)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        // Many errors already include their source's text in their own.
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}

/// Connections the control endpoints (admin API, metrics) serve at once;
/// more wait in the listen backlog, holding no descriptor of the daemon.
pub const CONTROL_MAX_CONNS: usize = 16;
/// How long a control endpoint's client may take to send a request head
/// (an idle keep-alive connection included); then it is closed.
pub const CONTROL_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// hyper's HTTP/1 server as the control endpoints use it: request heads
/// within [`CONTROL_HEADER_TIMEOUT`].
pub fn control_http1() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(CONTROL_HEADER_TIMEOUT);
    b
}

/// A listening socket of a control endpoint.
pub trait Listen {
    type Conn;
    fn accept_conn(&self) -> impl Future<Output = std::io::Result<Self::Conn>> + Send;
}

impl Listen for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;
    async fn accept_conn(&self) -> std::io::Result<Self::Conn> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listen for tokio::net::UnixListener {
    type Conn = tokio::net::UnixStream;
    async fn accept_conn(&self) -> std::io::Result<Self::Conn> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// A control endpoint's accept loop: at most [`CONTROL_MAX_CONNS`]
/// connections at once, and a failing `accept` (out of descriptors) retried
/// every 100 ms, logged when it starts and when it ends, instead of spun on.
pub struct ControlAccept {
    what: &'static str,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    failing: bool,
}

impl ControlAccept {
    pub fn new(what: &'static str) -> Self {
        ControlAccept {
            what,
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(CONTROL_MAX_CONNS)),
            failing: false,
        }
    }

    /// The next connection, and its slot (held until dropped).
    pub async fn next<L: Listen>(
        &mut self,
        listener: &L,
    ) -> (L::Conn, tokio::sync::OwnedSemaphorePermit) {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match listener.accept_conn().await {
                Ok(conn) => {
                    if std::mem::take(&mut self.failing) {
                        log::info!("{}: accepting again", self.what);
                    }
                    return (conn, slot);
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.failing, true) {
                        log::warn!("{}: accept: {e} (retrying every 100 ms)", self.what);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// A warning that a hostile client can cause many times a second (one per
/// connection): at most [`Throttled::PER_SECOND`] lines a second are
/// logged; the next logged line says how many were not.
pub struct Throttled {
    /// The log target: the module that logs (`module_path!()`), so that
    /// `RUST_LOG` filters these lines as that module's own.
    target: &'static str,
    state: std::sync::Mutex<(Option<std::time::Instant>, u32, u64)>,
}

impl Throttled {
    pub const PER_SECOND: u32 = 10;

    pub const fn new(target: &'static str) -> Self {
        Throttled {
            target,
            state: std::sync::Mutex::new((None, 0, 0)),
        }
    }

    /// Log `line()` as a warning, unless [`Self::PER_SECOND`] lines were
    /// logged in the current second (then it is only counted).
    pub fn warn(&self, line: impl FnOnce() -> String) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (start, logged, skipped) = &mut *st;
        if start.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
            *start = Some(std::time::Instant::now());
            *logged = 0;
        }
        if *logged >= Self::PER_SECOND {
            *skipped += 1;
            return;
        }
        *logged += 1;
        match std::mem::take(skipped) {
            0 => log::warn!(target: self.target, "{}", line()),
            n => log::warn!(target: self.target, "{} ({n} more like it not logged)", line()),
        }
    }
}

/// What to say after "no NAME": the names that exist within two edits of
/// it ("did you mean"), else all of them (at most 12).
pub fn suggest<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    if names.is_empty() {
        return " (there are none)".into();
    }
    // A bare name is compared with the part after BACKEND/.
    let close: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| {
            let short = n.rsplit('/').next().unwrap_or(n);
            edits(name, n) <= 2 || edits(name, short) <= 2
        })
        .collect();
    match close.as_slice() {
        [] if names.len() <= 12 => format!(" (there are: {})", names.join(", ")),
        [] => format!(
            " ({} names; `balancer backend list` shows them)",
            names.len()
        ),
        c => format!(" (did you mean {}?)", c.join(" or ")),
    }
}

/// Levenshtein distance (names are short).
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod suggest_tests {
    #[test]
    fn near_names_then_all() {
        let names = ["app/web1", "app/web2", "api/db"];
        assert_eq!(
            super::suggest("web9", names),
            " (did you mean app/web1 or app/web2?)"
        );
        assert_eq!(
            super::suggest("cache", names),
            " (there are: app/web1, app/web2, api/db)"
        );
        assert_eq!(super::suggest("x", []), " (there are none)");
    }
}
