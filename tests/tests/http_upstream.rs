//! The proxy's HTTP/1.1 client side (balancer-userspace/src/http/upstream/)
//! against a scripted origin that answers each path with exact bytes:
//! every response framing of RFC 9112 6.3 (chunked with extensions and
//! trailers, content-length, read-until-close, no body for HEAD and 204),
//! interim 1xx responses, malformed heads and lengths (502), a body cut
//! short (a clean close, no hang), request bodies of known and unknown
//! length, and which of those leave the server connection reusable.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};

use balancer_tests::{
    http::{Svc, read_head},
    stream::read_chunked,
};

/// One request as the origin read it.
#[derive(Debug, Clone)]
struct Got {
    conn: usize,
    head: String,
    body: Vec<u8>,
}

/// Answers by path with fixed bytes; records what it read.
struct Scripted {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
}

/// (raw response, close the connection after it)
fn answer(method: &str, path: &str, body: &[u8]) -> (Vec<u8>, bool) {
    let r: (&[u8], bool) = match path {
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n\
              5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-sum: 12\r\n\r\n",
            false,
        ),
        "/close" => (b"HTTP/1.1 200 OK\r\n\r\nuntil the server closes", true),
        "/interim" => (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        "/head" if method == "HEAD" => (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", false),
        "/204" => (b"HTTP/1.1 204 No Content\r\n\r\n", false),
        "/two-lengths" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            false,
        ),
        "/bad-status" => (b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", false),
        "/cut" => (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true),
        "/te-and-length" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n0\r\n\r\n",
            false,
        ),
        "/extra" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSURPLUS",
            false,
        ),
        "/conn-close" => (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbye.",
            true,
        ),
        // Read, never answered (the connection stays open).
        "/stall" => {
            std::thread::sleep(Duration::from_secs(5));
            return (Vec::new(), true);
        }
        "/echo" => {
            let mut r =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            r.extend_from_slice(body);
            return (r, false);
        }
        "/huge-head" => {
            let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..2000 {
                r.extend_from_slice(format!("x-filler-{i}: {}\r\n", "y".repeat(40)).as_bytes());
            }
            r.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            return (r, false);
        }
        _ => (
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
    };
    (r.0.to_vec(), r.1)
}

/// A message body after `head` (lower-cased): chunked or by
/// content-length; `None` when the head announces neither.
fn read_body(r: &mut impl BufRead, head: &str) -> std::io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    if head.contains("transfer-encoding: chunked") {
        read_chunked(r, &mut body)?;
    } else if let Some(n) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
    {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        return Ok(None);
    }
    Ok(Some(body))
}

impl Scripted {
    fn start() -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let g = got.clone();
        std::thread::spawn(move || {
            for (conn, s) in l.incoming().enumerate() {
                let Ok(s) = s else { return };
                let g = g.clone();
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut w = s.try_clone().unwrap();
                    let mut r = BufReader::new(s);
                    loop {
                        let Ok(Some(head)) = read_head(&mut r) else {
                            return;
                        };
                        let Ok(body) = read_body(&mut r, &head.to_ascii_lowercase()) else {
                            return;
                        };
                        let body = body.unwrap_or_default();
                        let mut words = head.split_whitespace();
                        let method = words.next().unwrap_or("").to_string();
                        let path = words.next().unwrap_or("").to_string();
                        let (bytes, close) = answer(&method, &path, &body);
                        g.lock().unwrap().push(Got { conn, head, body });
                        if w.write_all(&bytes).is_err() || close {
                            let _ = w.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                    }
                });
            }
        });
        Scripted { addr, got }
    }

    fn take(&self) -> Vec<Got> {
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

/// A response as the client read it: status, head, body (de-chunked).
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Read one response from `r`; the body as framed by the proxy. `None`
/// when the connection ended before a full response.
fn read_response(r: &mut BufReader<TcpStream>, head_request: bool) -> Option<Resp> {
    let head = read_head(r).ok()??;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head_request || status == 204 {
        Vec::new()
    } else {
        read_body(r, &head.to_ascii_lowercase()).ok()??
    };
    Some(Resp { status, head, body })
}

/// A keep-alive client connection to the proxy.
struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(to: SocketAddr) -> Conn {
        let s = TcpStream::connect(to).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    fn send(&mut self, raw: &[u8], head_request: bool) -> Option<Resp> {
        self.w.write_all(raw).ok()?;
        read_response(&mut self.r, head_request)
    }

    fn get(&mut self, path: &str) -> Option<Resp> {
        self.send(
            format!("GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n").as_bytes(),
            false,
        )
    }
}

#[test]
fn every_response_framing_and_which_ones_keep_the_connection() {
    let o = Scripted::start();
    let svc = Svc::start_on("http-upstream", "", &[("o", o.addr, "")]);
    let mut c = Conn::open(svc.front);

    // Chunked, with a chunk extension and a trailer, twice: the second
    // request reuses the server connection.
    for _ in 0..2 {
        let a = c.get("/chunked").expect("chunked answer");
        assert_eq!((a.status, a.body.as_slice()), (200, &b"hello, world"[..]));
    }
    let got = o.take();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].conn, got[1].conn,
        "chunked response: connection reused"
    );

    // Interim 1xx answers are skipped; the final one is forwarded.
    let a = c.get("/interim").expect("answer after 1xx");
    assert_eq!((a.status, a.body.as_slice()), (200, &b"ok"[..]));

    // HEAD: the length is the GET's, there is no body, the connection
    // stays usable; 204 likewise.
    let a = c
        .send(b"HEAD /head HTTP/1.1\r\nHost: lab\r\n\r\n", true)
        .expect("HEAD answer");
    assert_eq!(a.status, 200);
    assert!(
        a.head.to_ascii_lowercase().contains("content-length: 1000"),
        "{}",
        a.head
    );
    let a = c.get("/204").expect("204 answer");
    assert_eq!(a.status, 204);
    let got = o.take();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|g| g.conn == got[0].conn),
        "1xx, HEAD and 204 kept the connection: {:?}",
        got.iter().map(|g| g.conn).collect::<Vec<_>>()
    );

    // Read until the server closes: forwarded whole, connection not reused.
    let a = c.get("/close").expect("close-delimited answer");
    assert_eq!(
        (a.status, a.body.as_slice()),
        (200, &b"until the server closes"[..])
    );
    let a = c.get("/conn-close").expect("Connection: close answer");
    assert_eq!((a.status, a.body.as_slice()), (200, &b"bye."[..]));
    let a = c.get("/chunked").expect("answer after closes");
    assert_eq!(a.status, 200);
    let got = o.take();
    assert_eq!(got.len(), 3);
    assert!(
        got[0].conn != got[1].conn && got[1].conn != got[2].conn,
        "connections closed by the server are not reused: {:?}",
        got.iter().map(|g| g.conn).collect::<Vec<_>>()
    );

    // Both framings: chunked wins, and the connection is not reused.
    let a = c.get("/te-and-length").expect("TE and CL answer");
    assert_eq!((a.status, a.body.as_slice()), (200, &b"abc"[..]));
    let a = c.get("/chunked").unwrap();
    assert_eq!(a.status, 200);
    let got = o.take();
    assert_ne!(got[0].conn, got[1].conn, "TE+CL connection not reused");

    // Bytes beyond the announced length: not forwarded, and the connection
    // they came on is not used again.
    let a = c.get("/extra").expect("answer with surplus bytes");
    assert_eq!((a.status, a.body.as_slice()), (200, &b"ok"[..]));
    let a = c.get("/chunked").unwrap();
    assert_eq!(a.status, 200);
    let got = o.take();
    assert_ne!(
        got[0].conn, got[1].conn,
        "connection with surplus bytes not reused"
    );

    // Malformed: differing lengths, a bad status, a head over the limit.
    for path in ["/two-lengths", "/bad-status", "/huge-head"] {
        let mut c = Conn::open(svc.front);
        let a = c.get(path).unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(a.status, 502, "{path}");
    }
    o.take();

    // A body cut short by the server: the client's connection is closed
    // before the announced length (hyper may not have flushed the head
    // yet), rather than left waiting.
    let mut s = TcpStream::connect(svc.front).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /cut HTTP/1.1\r\nHost: lab\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("closed, not timed out");
    let text = String::from_utf8_lossy(&all);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        body.len() < 10 && (text.is_empty() || text.starts_with("HTTP/1.1 200")),
        "what came: {text:?}"
    );
}

#[test]
fn request_bodies_of_known_and_unknown_length() {
    let o = Scripted::start();
    let svc = Svc::start_on("http-upstream-bodies", "", &[("o", o.addr, "")]);
    let mut c = Conn::open(svc.front);

    // Content-Length from the client: content-length to the server.
    let a = c
        .send(
            b"POST /echo HTTP/1.1\r\nHost: lab\r\nContent-Length: 11\r\n\r\nhello there",
            false,
        )
        .unwrap();
    assert_eq!((a.status, a.body.as_slice()), (200, &b"hello there"[..]));
    // Chunked from the client (length unknown): chunked to the server.
    let a = c
        .send(
            b"POST /echo HTTP/1.1\r\nHost: lab\r\nTransfer-Encoding: chunked\r\n\r\n\
              4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n",
            false,
        )
        .unwrap();
    assert_eq!((a.status, a.body.as_slice()), (200, &b"wikipedia"[..]));
    // An empty POST carries content-length: 0.
    let a = c
        .send(
            b"POST /echo HTTP/1.1\r\nHost: lab\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap();
    assert_eq!((a.status, a.body.len()), (200, 0));

    let got = o.take();
    assert_eq!(got.len(), 3);
    let heads: Vec<String> = got.iter().map(|g| g.head.to_ascii_lowercase()).collect();
    assert!(heads[0].contains("content-length: 11\r\n"), "{}", heads[0]);
    assert!(!heads[0].contains("transfer-encoding"), "{}", heads[0]);
    assert!(
        heads[1].contains("transfer-encoding: chunked\r\n"),
        "{}",
        heads[1]
    );
    assert!(!heads[1].contains("content-length"), "{}", heads[1]);
    assert!(heads[2].contains("content-length: 0\r\n"), "{}", heads[2]);
    assert_eq!(got[1].body, b"wikipedia");
    assert!(
        got.iter().all(|g| g.conn == got[0].conn),
        "one server connection for the three"
    );
}

#[test]
fn a_server_that_does_not_answer_gets_504_in_time_every_time() {
    let o = Scripted::start();
    let svc = Svc::start_on(
        "http-upstream-504",
        "timeout_server = \"300ms\"\n",
        &[("o", o.addr, "")],
    );
    let mut c = Conn::open(svc.front);
    // On one client connection: answers and stalls in turn, so the
    // deadlines of answered requests are reused by the stalled ones.
    for round in 0..3 {
        let a = c.get("/chunked").expect("answer");
        assert_eq!(a.status, 200, "round {round}");
        let t = std::time::Instant::now();
        let a = c.get("/stall").expect("an answer, not a hang");
        let waited = t.elapsed();
        assert_eq!(a.status, 504, "round {round}");
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
            "round {round}: 504 after {waited:?} (timeout_server 300ms)"
        );
    }
}
