//! Where access-log lines go: a bounded buffer that requests append to
//! (never waiting: a line that does not fit is dropped and counted by the
//! caller), drained by one writer thread per target into stdout, a file
//! (appended, reopened on request: SIGUSR1 after a rotation) or a local
//! syslog socket (one datagram a line). A sink that blocks (a FIFO nobody
//! reads, a syslog socket whose queue is full) blocks only its writer.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Duration,
};

use crate::config::LogTarget;

/// Bytes of lines a sink holds before it drops new ones (about 1300
/// httplog lines).
pub const QUEUE_BYTES: usize = 256 * 1024;
/// How often an idle writer looks for lines: requests never wake it (no
/// system call on their path); a line waits at most this long.
const POLL: Duration = Duration::from_millis(10);

static WRITE_ERRORS: crate::util::Throttled = crate::util::Throttled::new(module_path!());

/// Why a target cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("access log {target}: {source}")]
pub struct SinkError {
    pub target: String,
    #[source]
    pub source: io::Error,
}

/// An open target.
enum Out {
    Stdout,
    File(File, PathBuf),
    Unix(UnixDatagram, PathBuf),
}

impl Out {
    fn open(target: &LogTarget) -> io::Result<Out> {
        Ok(match target {
            LogTarget::Stdout => Out::Stdout,
            LogTarget::File(p) => Out::File(open_append(p)?, p.clone()),
            LogTarget::Unix(p) => Out::Unix(connect(p)?, p.clone()),
        })
    }

    /// Write `lines` (each ending in '\n').
    fn write(&mut self, lines: &[u8]) -> io::Result<()> {
        match self {
            Out::Stdout => {
                let mut o = io::stdout().lock();
                o.write_all(lines)?;
                o.flush()
            }
            Out::File(f, _) => f.write_all(lines),
            Out::Unix(s, p) => {
                for line in lines.split_inclusive(|&b| b == b'\n') {
                    if let Err(e) = s.send(line) {
                        // The syslog daemon restarted: its socket is new.
                        *s = connect(p).map_err(|_| e)?;
                        s.send(line)?;
                    }
                }
                Ok(())
            }
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        match self {
            Out::File(f, p) => *f = open_append(p)?,
            Out::Unix(s, p) => *s = connect(p)?,
            Out::Stdout => {}
        }
        Ok(())
    }
}

/// How a target is named in messages.
fn target_name(target: &LogTarget) -> String {
    match target {
        LogTarget::Stdout => "stdout".to_owned(),
        LogTarget::File(p) => p.display().to_string(),
        LogTarget::Unix(p) => format!("unix:{}", p.display()),
    }
}

/// Whether `target` can be opened as [`Sink::start`] opens it (nothing
/// started, nothing kept open).
pub fn check(target: &LogTarget) -> Result<(), SinkError> {
    Out::open(target).map(drop).map_err(|source| SinkError {
        target: target_name(target),
        source,
    })
}

fn open_append(p: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(p)
}

fn connect(p: &Path) -> io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.connect(p)?;
    Ok(s)
}

/// One target's buffer and writer.
pub struct Sink {
    pending: Mutex<Vec<u8>>,
    reopen: AtomicBool,
    stop: AtomicBool,
    name: String,
}

impl Sink {
    /// Open `target` and start its writer thread.
    pub fn start(target: &LogTarget) -> Result<Arc<Sink>, SinkError> {
        let name = target_name(target);
        let err = |source| SinkError {
            target: name.clone(),
            source,
        };
        let out = Out::open(target).map_err(err)?;
        let sink = Arc::new(Sink {
            pending: Mutex::new(Vec::with_capacity(QUEUE_BYTES)),
            reopen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            name: name.clone(),
        });
        let s = sink.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || s.run(out))
            .map_err(err)?;
        Ok(sink)
    }

    /// Append `line` (ending in '\n') if it fits; whether it did.
    pub fn push(&self, line: &[u8]) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() + line.len() > QUEUE_BYTES {
            return false;
        }
        p.extend_from_slice(line);
        true
    }

    /// The writer reopens its target before its next write.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// The writer's loop: take what is pending, write it, until stopped
    /// (then what is pending is written first).
    fn run(&self, mut out: Out) {
        let mut batch = Vec::with_capacity(QUEUE_BYTES);
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            if self.reopen.swap(false, Ordering::Relaxed)
                && let Err(e) = out.reopen()
            {
                WRITE_ERRORS.warn(|| format!("access log {}: reopening: {e}", self.name));
            }
            {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::swap(&mut *p, &mut batch);
            }
            if batch.is_empty() {
                if stopping {
                    return;
                }
                std::thread::sleep(POLL);
                continue;
            }
            if let Err(e) = out.write(&batch) {
                WRITE_ERRORS.warn(|| format!("access log {}: {e}", self.name));
            }
            // Lines come in a few at a time: written at once, each batch
            // would cost a write and a wake-up of this thread, which takes
            // the CPU from the proxy's workers (on a pinned daemon, the
            // same CPU) thousands of times a second. After a batch under
            // half the buffer, the writer waits for more; a larger one
            // means lines come at more than half the buffer per wait
            // (12.8 MB/s, some 60,000 lines a second): no wait.
            let small = batch.len() < QUEUE_BYTES / 2;
            batch.clear();
            if small && !stopping {
                std::thread::sleep(POLL);
            }
        }
    }
}

/// The daemon's open targets, one sink each (frontends logging to the
/// same target share it).
#[derive(Default)]
pub struct Sinks(Vec<(LogTarget, Arc<Sink>)>);

impl Sinks {
    /// The sink of `target`, opened (and its writer started) on first use.
    pub fn get(&mut self, target: &LogTarget) -> Result<Arc<Sink>, SinkError> {
        if let Some((_, s)) = self.0.iter().find(|(t, _)| t == target) {
            return Ok(s.clone());
        }
        let s = Sink::start(target)?;
        self.0.push((target.clone(), s.clone()));
        Ok(s)
    }

    /// Every sink reopens its target (SIGUSR1, after a log rotation).
    pub fn reopen(&self) {
        for (_, s) in &self.0 {
            s.reopen();
        }
    }

    /// Stop the writers once what is pending is written; waits at most
    /// `grace` (a blocked target keeps its writer).
    pub fn stop(&self, grace: Duration) {
        let (tx, rx) = mpsc::channel();
        for (_, s) in &self.0 {
            s.stop.store(true, Ordering::Relaxed);
            let (s, tx) = (s.clone(), tx.clone());
            // Done when its buffer is empty (the writer took the last batch).
            std::thread::spawn(move || {
                while !s
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty()
                {
                    std::thread::sleep(POLL);
                }
                std::thread::sleep(POLL * 2);
                let _ = tx.send(());
            });
        }
        drop(tx);
        let deadline = std::time::Instant::now() + grace;
        for _ in &self.0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if rx.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_drops_instead_of_waiting() {
        let s = Sink {
            pending: Mutex::new(Vec::new()),
            reopen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            name: "test".into(),
        };
        let line = [b'x'; 1000];
        let fits = (0..QUEUE_BYTES / 1000 + 10)
            .filter(|_| s.push(&line))
            .count();
        assert_eq!(fits, QUEUE_BYTES / 1000);
    }

    #[test]
    fn file_lines_are_appended_and_reopened() {
        let dir = std::env::temp_dir().join(format!("blb-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let mut sinks = Sinks::default();
        let s = sinks.get(&LogTarget::File(path.clone())).unwrap();
        assert!(s.push(b"one\n"));
        let wait = |p: &Path, want: &str| {
            for _ in 0..200 {
                if std::fs::read_to_string(p).unwrap_or_default() == want {
                    return;
                }
                std::thread::sleep(POLL);
            }
            panic!("{} never held {want:?}", p.display());
        };
        wait(&path, "one\n");
        std::fs::rename(&path, dir.join("a.log.1")).unwrap();
        sinks.reopen();
        std::thread::sleep(POLL * 3);
        assert!(s.push(b"two\n"));
        wait(&path, "two\n");
        sinks.stop(Duration::from_secs(1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
