//! Streaming through the HTTP proxy: a 1 GiB upload and a 1 GiB download
//! pass with the proxy's resident memory growing by less than 64 MiB (it
//! never holds a whole body), and a WebSocket echo works through it.

use std::{
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use balancer_tests::{
    http::Svc,
    stream::{StreamBackend, download, rss_kib, upload},
};

const GIB: u64 = 1 << 30;
const MAX_GROWTH_KIB: u64 = 64 * 1024;

#[test]
fn gigabyte_bodies_stream_in_bounded_memory_and_websockets_pass() {
    let be = StreamBackend::start().unwrap();
    let p = Svc::start_on("http-stream", "", &[("s0", be.addr, "")]);
    let pid = p.daemon.pid();
    // Warm the connection pool so the baseline includes it.
    assert_eq!(download(p.front, 1 << 20).unwrap(), 1 << 20);
    let base = rss_kib(pid).unwrap();
    let peak = Arc::new(AtomicU64::new(base));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = rss_kib(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t = Instant::now();
    assert_eq!(
        upload(p.front, GIB).unwrap(),
        GIB,
        "upload: bytes the backend got"
    );
    let up = t.elapsed();
    let t = Instant::now();
    assert_eq!(
        download(p.front, GIB).unwrap(),
        GIB,
        "download: bytes received"
    );
    let down = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let growth = peak.load(Ordering::Relaxed).saturating_sub(base);
    println!(
        "1 GiB up in {:.1} s, down in {:.1} s; proxy RSS {base} KiB, peak growth {growth} KiB",
        up.as_secs_f64(),
        down.as_secs_f64()
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "proxy RSS grew by {growth} KiB (limit {MAX_GROWTH_KIB})"
    );

    // WebSocket through the proxy.
    let stream = TcpStream::connect(p.front).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut ws, resp) =
        tungstenite::client(format!("ws://{}/ws", p.front), stream).expect("WebSocket handshake");
    assert_eq!(resp.status(), 101);
    ws.send(tungstenite::Message::text("hello through the proxy"))
        .unwrap();
    let m = ws.read().unwrap();
    assert_eq!(m.into_text().unwrap().as_str(), "hello through the proxy");
    let blob: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    ws.send(tungstenite::Message::binary(blob.clone())).unwrap();
    let m = ws.read().unwrap();
    assert_eq!(m.into_data().as_ref(), blob.as_slice());
    ws.close(None).unwrap();
}
