//! A small authoritative DNS server for the discovery tests, on 127.0.0.1
//! (a free UDP port, and TCP on the same port for truncated answers), its
//! records changed by the test while it runs. Messages are decoded and
//! encoded by hickory-proto; the server only looks names up in its table.
//! Names it does not hold answer NXDOMAIN; a held name without records of
//! the asked type answers NOERROR with no answer (NODATA).

use std::{
    collections::BTreeMap,
    io::{self, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, SRV},
    },
};

use crate::proc::wait_for;

/// name (lower case, no trailing dot) -> its records, in answer order.
type Zone = BTreeMap<String, Vec<Record>>;

/// The server; stopped (sockets closed) by [`DnsServer::stop`] or on drop.
pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Queries answered so far.
    pub queries: Arc<AtomicUsize>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn name(n: &str) -> Name {
    Name::from_ascii(format!("{}.", n.trim_end_matches('.'))).expect("a DNS name")
}

/// A UDP and a TCP socket on one free port of 127.0.0.1.
fn bind_pair() -> io::Result<(UdpSocket, TcpListener)> {
    (0..20)
        .find_map(|_| {
            let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
            let tcp = TcpListener::bind(udp.local_addr().ok()?).ok()?;
            Some((udp, tcp))
        })
        .ok_or_else(|| io::Error::other("no free port for the DNS server"))
}

impl DnsServer {
    /// On the loopback of the test's own network namespace.
    pub fn start() -> io::Result<DnsServer> {
        Self::serve(bind_pair()?)
    }

    /// On the loopback of the lab namespace `ns` (where a daemon under
    /// test runs): the sockets are made by a thread that entered it.
    pub fn start_in(ns: &str) -> io::Result<DnsServer> {
        let path = std::path::Path::new("/run/netns").join(ns);
        let f = std::fs::File::open(&path)?;
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd as _;
            // SAFETY: setns(2) on this thread only, with an fd we own.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            bind_pair()
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
        .and_then(Self::serve)
    }

    fn serve((udp, tcp): (UdpSocket, TcpListener)) -> io::Result<DnsServer> {
        let addr = udp.local_addr()?;
        udp.set_read_timeout(Some(Duration::from_millis(50)))?;
        tcp.set_nonblocking(true)?;
        let zone = Arc::new(Mutex::new(Zone::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (z, s, q) = (zone.clone(), stop.clone(), queries.clone());
        let udp_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(answer) = respond(&z, &buf[..n]) {
                    q.fetch_add(1, Ordering::Relaxed);
                    let _ = udp.send_to(&answer, from);
                }
            }
        });
        let (z, s, q) = (zone.clone(), stop.clone(), queries.clone());
        let tcp_thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                // Length-prefixed messages (RFC 1035 4.2.2).
                loop {
                    let mut len = [0u8; 2];
                    if c.read_exact(&mut len).is_err() {
                        break;
                    }
                    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
                    if c.read_exact(&mut msg).is_err() {
                        break;
                    }
                    let Some(answer) = respond(&z, &msg) else {
                        break;
                    };
                    q.fetch_add(1, Ordering::Relaxed);
                    let mut out = (answer.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&answer);
                    if c.write_all(&out).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(DnsServer {
            addr,
            zone,
            stop,
            threads: vec![udp_thread, tcp_thread],
            queries,
        })
    }

    /// Replace `n`'s records by A/AAAA records for `addrs`, in this order.
    pub fn set_addresses(&self, n: &str, addrs: &[&str], ttl: u32) {
        let records = addrs
            .iter()
            .map(|a| {
                let data = match a.parse::<IpAddr>().expect("an IP address") {
                    IpAddr::V4(v4) => RData::A(A(v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                };
                Record::from_rdata(name(n), ttl, data)
            })
            .collect();
        self.zone.lock().unwrap().insert(key(n), records);
    }

    /// Replace `n`'s records by SRV records (priority, weight, port, target).
    pub fn set_srv(&self, n: &str, srv: &[(u16, u16, u16, &str)], ttl: u32) {
        let records = srv
            .iter()
            .map(|&(p, w, port, target)| {
                Record::from_rdata(name(n), ttl, RData::SRV(SRV::new(p, w, port, name(target))))
            })
            .collect();
        self.zone.lock().unwrap().insert(key(n), records);
    }

    /// Remove `n`: it answers NXDOMAIN.
    pub fn remove(&self, n: &str) {
        self.zone.lock().unwrap().remove(&key(n));
    }

    /// How many queries it has answered so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }

    /// Wait up to 20 s until `more` queries have been answered since the
    /// count was `since` (a value of [`DnsServer::queries`]).
    pub fn expect_queries(&self, since: usize, more: usize) {
        assert!(
            wait_for(Duration::from_secs(20), || {
                self.queries.load(Ordering::Relaxed) >= since + more
            }),
            "{} queries answered, expected {} within 20 s",
            self.queries.load(Ordering::Relaxed) - since,
            more
        );
    }

    /// Stop answering and close the sockets (queries then meet a closed port).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The answer to one query message, encoded; `None` for what is not a query.
fn respond(zone: &Mutex<Zone>, query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    if q.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.add_queries(q.queries.iter().cloned());
    let zone = zone.lock().unwrap_or_else(|e| e.into_inner());
    match q.queries.first() {
        None => m.metadata.response_code = ResponseCode::FormErr,
        Some(question) => match zone.get(&key(&question.name().to_ascii())) {
            None => m.metadata.response_code = ResponseCode::NXDomain,
            Some(records) => {
                for r in records
                    .iter()
                    .filter(|r| r.record_type() == question.query_type())
                {
                    m.add_answer(r.clone());
                }
                // SRV: the targets' addresses as additional records.
                if question.query_type() == RecordType::SRV {
                    for r in records.iter() {
                        if let RData::SRV(srv) = &r.data
                            && let Some(t) = zone.get(&key(&srv.target.to_ascii()))
                        {
                            m.add_additionals(t.iter().cloned());
                        }
                    }
                }
            }
        },
    }
    m.to_vec().ok()
}
