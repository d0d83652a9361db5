//! Peer links under attack. One balancer (`alpha-node`) in its lab
//! namespace replicates an L4 stick table with one configured peer,
//! `beta-node`, played by the test from the client namespace: a peer that
//! knows the secret but sends forged, replayed, reordered, reflected,
//! unauthenticated or oversized frames; one that does not know the secret
//! and probes names; one that stops reading. The daemon must close the
//! link, count it, change no stick entry, and tell an unauthenticated side
//! nothing of its names.

mod peer_client;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::PathBuf,
    time::{Duration, Instant},
};

use balancer::peers::{
    link::WRITE_TIMEOUT,
    listen::{MAX_HANDSHAKES, MAX_HANDSHAKES_PER_SOURCE},
    seal::TAG_LEN,
    wire::{self, MAX_BATCH, Msg, TableUpdates, WireEntry},
};
use balancer_tests::{
    lab::{BALANCER_CLIENT_SIDE_V4, Lab, LabSpec},
    proc::{Proc, wait_for},
    require_root,
};
use peer_client::{Link, PEER_PORT};
use serde_json::Value;

const SECTION: &str = "ring-section";
const LOCAL: &str = "alpha-node";
const REMOTE: &str = "beta-node";
const SECRET: &str = "integrity-lab-secret-0123456789";

/// The daemon (declared first: stopped before the lab is torn down).
struct Daemon {
    proc: Proc,
    sock: PathBuf,
    lab: Lab,
}

impl Daemon {
    fn start(stick_size: &str) -> Daemon {
        require_root();
        let lab = Lab::new(LabSpec {
            clients: 1,
            backends: 2,
        })
        .expect("lab");
        let sock = lab.dir.join("a.sock");
        let config = lab.dir.join("a.toml");
        std::fs::write(
            &config,
            format!(
                "[dataplane]\ninterfaces = [\"eth0\"]\npin_dir = \"{}\"\n\n[admin]\nsocket = \"{}\"\n\n\
                 [[frontend]]\nname = \"web\"\nbind = \"198.18.2.100:80\"\ndefault_backend = \"web\"\n\n\
                 [[backend]]\nname = \"web\"\n\
                 stick_table = {{ type = \"ip\", size = \"{stick_size}\", expire = \"30m\", peers = \"{SECTION}\" }}\n\
                 [[backend.server]]\nname = \"s0\"\naddress = \"{}\"\n\
                 [[backend.server]]\nname = \"s1\"\naddress = \"{}\"\n\n\
                 [peers.{SECTION}]\nlocal = \"{LOCAL}\"\nsecret = \"{SECRET}\"\nscan_interval = \"100ms\"\n\
                 [peers.{SECTION}.peer]\n{LOCAL} = \"{BALANCER_CLIENT_SIDE_V4}:{PEER_PORT}\"\n\
                 {REMOTE} = \"{}:{PEER_PORT}\"\n",
                lab.pin_dir.display(),
                sock.display(),
                lab.backends[0].ipv4,
                lab.backends[1].ipv4,
                lab.clients[0].ipv4,
            ),
        )
        .unwrap();
        let proc = lab.start_balancer(&config).expect("balancer");
        Daemon { proc, sock, lab }
    }

    fn status(&self) -> Value {
        peer_client::cli_json(&self.sock, &["peers", "status"])
    }

    /// The daemon's view of its one peer.
    fn beta(&self) -> Value {
        self.status()["peers"][0].clone()
    }

    fn counter(&self, name: &str) -> u64 {
        let st = self.status();
        st[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name} in {st}"))
    }

    /// client -> ("backend/server", server id).
    fn table(&self) -> BTreeMap<String, (String, u64)> {
        peer_client::table(&self.sock)
    }

    fn server_of(&self, client: Ipv4Addr) -> Option<String> {
        self.table().remove(&client.to_string()).map(|(s, _)| s)
    }

    fn peer_addr(&self) -> SocketAddr {
        (BALANCER_CLIENT_SIDE_V4, PEER_PORT).into()
    }

    /// A connection to the daemon's peer port from the client namespace.
    fn connect(&self, rcvbuf: Option<usize>) -> TcpStream {
        peer_client::connect(&self.lab.clients[0].ns, self.peer_addr(), rcvbuf)
    }

    /// A link as `beta-node`, with the secret.
    fn dial(&self, rcvbuf: Option<usize>) -> Link {
        peer_client::dial(self.connect(rcvbuf), SECTION, REMOTE, LOCAL, SECRET)
            .unwrap_or_else(|m| panic!("the daemon refused the test peer: {m:?}"))
    }

    /// Whether the daemon closed `link` within 2 s (well before a silent
    /// link times out).
    fn closes(&self, link: &mut Link) -> bool {
        link.closed_within(Duration::from_secs(2))
    }
}

/// Entries (client, index into [s0, s1]) for the frontend `web`, seen now.
fn updates(seq: u64, entries: &[(Ipv4Addr, u16)]) -> Msg {
    Msg::Updates {
        seq,
        resync: false,
        held_us: 0,
        tables: vec![TableUpdates {
            frontend: "web".into(),
            backend: "web".into(),
            servers: vec!["s0".into(), "s1".into()],
            entries: entries
                .iter()
                .map(|&(c, server)| WireEntry {
                    client: c.into(),
                    server,
                    age_us: 0,
                })
                .collect(),
        }],
    }
}

fn client(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 9, i)
}

/// `n` clients from 198.19.0.0 on, all on s0.
fn many(from: u32, n: usize) -> Vec<(Ipv4Addr, u16)> {
    let base = u32::from(Ipv4Addr::new(198, 19, 0, 0)) + from;
    (0..n as u32)
        .map(|i| (Ipv4Addr::from(base + i), 0))
        .collect()
}

#[test]
fn peer_frames_forged_replayed_reordered_reflected_or_oversized_close_the_link_and_change_nothing()
{
    let d = Daemon::start("100k");
    // The test peer's sealed frames are applied (and acknowledged once
    // written): the rejections below are not for a broken test peer.
    let mut p = d.dial(None);
    let first = p.frame(&updates(1, &[(client(1), 1)]));
    p.send_raw(&first);
    assert_eq!(p.recv(), Some(Msg::Ack { seq: 1 }));
    p.send(&updates(2, &[(client(1), 0)]));
    assert_eq!(p.recv(), Some(Msg::Ack { seq: 2 }));
    assert_eq!(d.server_of(client(1)).as_deref(), Some("web/s0"));

    // Replayed: the first frame again would move client 1 back to s1.
    p.send_raw(&first);
    let closed = d.closes(&mut p);
    assert_eq!(
        d.server_of(client(1)).as_deref(),
        Some("web/s0"),
        "a replayed frame changed a stick entry"
    );
    assert!(closed, "the daemon kept the link after a replayed frame");

    // Tampered: the last byte before the tag (the entry's age) changed.
    let mut p = d.dial(None);
    let mut f = p.frame(&updates(1, &[(client(2), 1)]));
    let last = f.len() - TAG_LEN - 1;
    f[last] ^= 1;
    p.send_raw(&f);
    let closed = d.closes(&mut p);
    assert_eq!(d.server_of(client(2)), None, "a tampered frame was applied");
    assert!(closed, "the daemon kept the link after a tampered frame");

    // A frame with no MAC at all, as an on-path attacker would inject it.
    let mut p = d.dial(None);
    p.send_raw(&wire::encode(&updates(1, &[(client(3), 1)])).unwrap());
    let closed = d.closes(&mut p);
    assert_eq!(
        d.server_of(client(3)),
        None,
        "a frame without MAC was applied"
    );
    assert!(closed, "the daemon kept the link after a frame without MAC");

    // Reordered: the second frame first.
    let mut p = d.dial(None);
    let one = p.frame(&updates(1, &[(client(4), 1)]));
    let two = p.frame(&updates(2, &[(client(5), 1)]));
    p.send_raw(&two);
    p.send_raw(&one);
    let closed = d.closes(&mut p);
    let t = d.table();
    assert!(
        !t.contains_key(&client(4).to_string()) && !t.contains_key(&client(5).to_string()),
        "reordered frames were applied: {t:?}"
    );
    assert!(closed, "the daemon kept the link after reordered frames");

    // Reflected: the daemon's own heartbeat, sent back to it.
    let mut p = d.dial(None);
    p.send(&Msg::Heartbeat);
    let echo = peer_client::read_raw(&mut p.s).expect("the daemon's heartbeat");
    p.send_raw(&echo);
    assert!(
        d.closes(&mut p),
        "the daemon kept the link after its own frame came back"
    );

    let auth_failures = d.counter("auth_failures");
    assert!(auth_failures >= 5, "auth failures counted: {auth_failures}");
    d.proc
        .expect_logged("failed authentication", Duration::from_secs(5));

    // A sealed batch one entry over the bound.
    let bad_before = d.counter("bad_frames");
    let mut p = d.dial(None);
    p.send(&updates(1, &many(0, MAX_BATCH + 1)));
    let closed = d.closes(&mut p);
    let t = d.table();
    assert_eq!(t.len(), 1, "entries of an oversized batch were applied");
    assert!(closed, "the daemon kept the link after an oversized batch");
    // A frame length over the bound, after authentication.
    let mut p = d.dial(None);
    p.send_raw(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    assert!(
        d.closes(&mut p),
        "a 4 GiB frame length did not close the link"
    );
    assert!(d.counter("bad_frames") >= bad_before + 2);
    d.proc.expect_logged("more than", Duration::from_secs(5));

    // The daemon still takes an honest peer.
    let mut p = d.dial(None);
    p.send(&updates(1, &[(client(6), 1)]));
    assert_eq!(p.recv(), Some(Msg::Ack { seq: 1 }));
    assert_eq!(d.server_of(client(6)).as_deref(), Some("web/s1"));
}

#[test]
fn peer_refusals_name_nothing_and_handshakes_and_links_per_peer_are_bounded() {
    let d = Daemon::start("10k");
    let wrong_secret = "not-the-secret-of-this-section";
    let tries = [
        ("wrong section", "other-section", REMOTE, LOCAL, SECRET),
        ("unknown peer", SECTION, "mallory-node", LOCAL, SECRET),
        ("wrong listener", SECTION, REMOTE, "gamma-node", SECRET),
        ("wrong secret", SECTION, REMOTE, LOCAL, wrong_secret),
    ];
    let mut reasons = Vec::new();
    for (what, section, from, to, secret) in tries {
        match peer_client::dial(d.connect(None), section, from, to, secret) {
            Err(Some(Msg::Refused { reason })) => {
                for name in [SECTION, LOCAL, REMOTE] {
                    assert!(
                        !reason.contains(name),
                        "{what}: the refusal names {name:?}: {reason:?}"
                    );
                }
                reasons.push(reason);
            }
            Err(other) => panic!("{what}: the daemon answered {other:?}"),
            Ok(_) => panic!("{what}: the daemon accepted"),
        }
    }
    assert!(
        reasons.iter().all(|r| *r == reasons[0]),
        "refusals differ, so they tell what was wrong: {reasons:?}"
    );
    // The reasons are in the daemon's own log and status.
    for line in [
        "peers section \"other-section\"",
        "unknown peer name \"mallory-node\"",
        "asked for peer \"gamma-node\"",
        "failed authentication (bad HMAC",
    ] {
        d.proc.expect_logged(line, Duration::from_secs(5));
    }
    assert!(d.counter("refused_handshakes") >= 4);
    // An old peer is told why, without names either.
    let mut s = d.connect(None);
    peer_client::write_plain(
        &mut s,
        &Msg::Hello {
            version: wire::VERSION - 1,
            section: SECTION.into(),
            from: REMOTE.into(),
            to: LOCAL.into(),
            nonce: [1; 32],
        },
    );
    match peer_client::read_plain(&mut s) {
        Some(Msg::Refused { reason }) => {
            assert!(reason.contains("protocol version"), "{reason}");
            assert!(
                !reason.contains(LOCAL) && !reason.contains(SECTION),
                "{reason}"
            );
        }
        other => panic!("old version: the daemon answered {other:?}"),
    }

    // Unauthenticated connections at once: the bounds are held open with
    // hellos (each answered with a challenge); one more is closed at once.
    // Per source first: the client's own address takes its share...
    let hello = peer_client::hello(SECTION, REMOTE, LOCAL, [3; 32]);
    let ns = d.lab.clients[0].ns.clone();
    let hold = |s: &mut TcpStream, what: &str| {
        peer_client::write_plain(s, &hello);
        match peer_client::read_plain(s) {
            Some(Msg::Challenge { .. }) => {}
            other => panic!("pending handshake {what}: {other:?}"),
        }
    };
    let closed_at_once = |mut s: TcpStream, what: &str| {
        peer_client::write_plain(&mut s, &hello);
        let t0 = Instant::now();
        let answer = peer_client::read_plain(&mut s);
        assert!(
            answer.is_none() && t0.elapsed() < Duration::from_secs(1),
            "{what}: {answer:?} after {:?}",
            t0.elapsed()
        );
    };
    let mut pending: Vec<TcpStream> = (0..MAX_HANDSHAKES_PER_SOURCE)
        .map(|i| {
            let mut s = d.connect(None);
            hold(&mut s, &i.to_string());
            s
        })
        .collect();
    closed_at_once(
        d.connect(None),
        &format!("one more than {MAX_HANDSHAKES_PER_SOURCE} from one address"),
    );
    // ... then more addresses of the client's fill the global bound.
    let sources = MAX_HANDSHAKES / MAX_HANDSHAKES_PER_SOURCE;
    let extra: Vec<std::net::IpAddr> = (0..sources)
        .map(|i| std::net::Ipv4Addr::new(198, 18, 0, 200 + i as u8).into())
        .collect();
    for a in &extra {
        balancer_tests::lab::ip(&ns, &["addr", "add", &format!("{a}/24"), "dev", "eth0"])
            .expect("a second client address");
    }
    for a in &extra[..sources - 1] {
        for i in 0..MAX_HANDSHAKES_PER_SOURCE {
            let mut s = peer_client::connect_from(&ns, *a, d.peer_addr());
            hold(&mut s, &format!("{a} {i}"));
            pending.push(s);
        }
    }
    assert_eq!(pending.len(), MAX_HANDSHAKES);
    closed_at_once(
        peer_client::connect_from(&ns, extra[sources - 1], d.peer_addr()),
        &format!(
            "handshake {} over the bound of {MAX_HANDSHAKES}",
            MAX_HANDSHAKES + 1
        ),
    );
    drop(pending);
    // Their slots come back: an honest peer gets in again.
    assert!(
        wait_for(Duration::from_secs(5), || peer_client::dial(
            d.connect(None),
            SECTION,
            REMOTE,
            LOCAL,
            SECRET
        )
        .is_ok()),
        "no handshake after the pending ones closed"
    );

    // One inbound link per peer: a newer one replaces the older.
    let mut older = d.dial(None);
    let mut newer = d.dial(None);
    assert!(
        d.closes(&mut older),
        "the daemon kept two links from {REMOTE}"
    );
    newer.send(&Msg::Heartbeat);
    assert_eq!(newer.recv(), Some(Msg::Heartbeat));
    assert!(
        wait_for(Duration::from_secs(5), || d.beta()["inbound"] == 1),
        "{}",
        d.beta()
    );
    d.proc
        .expect_logged("replaces the previous one", Duration::from_secs(5));
}

#[test]
fn a_peer_that_stops_reading_is_dropped_within_the_write_timeout() {
    let d = Daemon::start("200k");
    // Inbound: heartbeats (each answered) without reading the answers,
    // until the daemon stops reading too: its answers filled our small
    // window and its send buffer, and it is stuck writing.
    let mut p = d.dial(Some(4096));
    assert!(wait_for(Duration::from_secs(5), || d.beta()["inbound"] == 1));
    p.s.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut chunk = Vec::new();
    let t0 = Instant::now();
    let blocked = loop {
        chunk.clear();
        for _ in 0..1000 {
            chunk.extend(p.frame(&Msg::Heartbeat));
        }
        if std::io::Write::write_all(&mut p.s, &chunk).is_err() {
            break Instant::now();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the daemon kept reading"
        );
    };
    let dropped = wait_for(WRITE_TIMEOUT + Duration::from_secs(3), || {
        d.beta()["inbound"] == 0
    });
    assert!(
        dropped,
        "the daemon still holds the link {:?} after it stopped reading: {}",
        blocked.elapsed(),
        d.beta()
    );
    d.proc
        .expect_logged("timed out writing", Duration::from_secs(1));
    println!(
        "inbound link dropped {:?} after the test peer's writes blocked",
        blocked.elapsed()
    );
    drop(p);

    // Outbound: the daemon dials beta-node (the test) and resyncs its
    // table; beta-node answers the handshake, then reads nothing. The
    // table is filled first by an honest link (8 batches of 8192).
    let mut p = d.dial(None);
    for b in 0..8u64 {
        p.send(&updates(
            b + 1,
            &many((b as usize * MAX_BATCH) as u32, MAX_BATCH),
        ));
        assert_eq!(p.recv(), Some(Msg::Ack { seq: b + 1 }));
    }
    let at: SocketAddr = (d.lab.clients[0].ipv4, PEER_PORT).into();
    let l = peer_client::listen(&d.lab.clients[0].ns, at, Some(4096));
    // A dial-in makes the daemon redial its own link at once.
    drop(p);
    let _p = d.dial(None);
    let s = peer_client::accept(&l, Duration::from_secs(10)).expect("the daemon's dial");
    drop(l);
    let _stalled = peer_client::answer(s, SECTION, REMOTE, SECRET);
    let answered = Instant::now();
    let down = wait_for(WRITE_TIMEOUT + Duration::from_secs(3), || {
        d.beta()["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out writing"))
    });
    assert!(
        down,
        "the daemon's link to a peer that stopped reading is still {} {:?} after the handshake: {}",
        d.beta()["outbound"],
        answered.elapsed(),
        d.beta()
    );
    assert_ne!(d.beta()["outbound"], "up");
    println!(
        "outbound link dropped {:?} after the handshake",
        answered.elapsed()
    );
}
