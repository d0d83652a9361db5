//! HTTP/1.1 as the proxy speaks it to its servers, bytes only (the
//! connections and the pool are `mod.rs`'s): the request head and its body
//! framing written (`content-length` or chunked, RFC 9112 6 and 7.1), a
//! response head parsed and its body's framing decided (RFC 9112 6.3), a
//! chunked response body decoded step by step.

use std::io::Write as _;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use hyper::body::{Body, Frame};

use super::ExchangeError;

/// Largest response head (status line and fields) taken from a server.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most fields in a response head (hyper's default too).
pub const MAX_HEADERS: usize = 100;
/// Largest chunk-size line or trailer section of a chunked body.
const MAX_CHUNK_META: usize = 16 * 1024;
/// How a request's body is framed on the wire.
pub(crate) enum ReqFraming {
    /// No body.
    None,
    /// `content-length`: this many bytes still to send.
    Length(u64),
    /// Chunked; `true` once the last chunk is written.
    Chunked(bool),
}

/// Write the request head into `out` (cleared first), choosing the body's
/// framing from what the body knows of its size: none when it has ended,
/// `content-length` when its size is known, else chunked.
pub(crate) fn encode_request(
    parts: &http::request::Parts,
    body: &impl Body,
    out: &mut Vec<u8>,
) -> ReqFraming {
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        // The framing is this hop's (below), whatever the client said.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        write_field(out, name, value);
    }
    let framing = if body.is_end_stream() {
        // Servers may insist on a length (411) for these methods.
        if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        ReqFraming::None
    } else if let Some(n) = body.size_hint().exact() {
        let _ = write!(out, "content-length: {n}\r\n");
        ReqFraming::Length(n)
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        ReqFraming::Chunked(false)
    };
    out.extend_from_slice(b"\r\n");
    framing
}

/// `name: value` and CRLF.
fn write_field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Append one body frame to `out` as `framing` wants it. Data beyond a
/// declared length is an error (the client's body and its length disagree).
pub(crate) fn encode_frame(
    frame: Frame<Bytes>,
    framing: &mut ReqFraming,
    out: &mut Vec<u8>,
) -> Result<(), ExchangeError> {
    match frame.into_data() {
        Ok(data) => match framing {
            ReqFraming::None => {
                if !data.is_empty() {
                    return Err(ExchangeError::Malformed("request body beyond its length"));
                }
            }
            ReqFraming::Length(rem) => {
                let n = data.len() as u64;
                if n > *rem {
                    return Err(ExchangeError::Malformed("request body beyond its length"));
                }
                *rem -= n;
                out.extend_from_slice(&data);
            }
            ReqFraming::Chunked(_) => {
                if !data.is_empty() {
                    let _ = write!(out, "{:x}\r\n", data.len());
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\r\n");
                }
            }
        },
        Err(frame) => {
            if let (Ok(trailers), ReqFraming::Chunked(done)) = (frame.into_trailers(), framing)
                && !*done
            {
                out.extend_from_slice(b"0\r\n");
                for (name, value) in &trailers {
                    write_field(out, name, value);
                }
                out.extend_from_slice(b"\r\n");
                *done = true;
            }
        }
    }
    Ok(())
}

/// A response head, parsed.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) version: http::Version,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    /// The connection may take another request after this response.
    pub(crate) reusable: bool,
}

/// What [`parse_head`] found.
pub(crate) enum Parsed {
    /// Not a complete head yet.
    Partial,
    /// An interim (1xx, not 101) response, now removed from the buffer.
    Interim,
    /// A final response head, now removed from the buffer (what follows is
    /// its body).
    Final(Head),
}

/// Parse a response head at the start of `buf`.
pub(crate) fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Parsed, ExchangeError> {
    // Where each field's name and value lie in `buf`.
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let (len, code, minor, n) = {
        let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let status = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, buf, &mut fields)
            .map_err(|e| match e {
                httparse::Error::TooManyHeaders => {
                    ExchangeError::Malformed("too many header fields")
                }
                _ => ExchangeError::Malformed("bad response head"),
            })?;
        let httparse::Status::Complete(len) = status else {
            return Ok(Parsed::Partial);
        };
        let base = buf.as_ptr() as usize;
        for (span, h) in spans.iter_mut().zip(res.headers.iter()) {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            *span = (
                name as u32,
                (name + h.name.len()) as u32,
                value as u32,
                (value + h.value.len()) as u32,
            );
        }
        (
            len,
            res.code.unwrap_or(0),
            res.version.unwrap_or(1),
            res.headers.len(),
        )
    };
    if len > MAX_HEAD {
        return Err(ExchangeError::Malformed("response head too large"));
    }
    let head = buf.split_to(len).freeze();
    if (100..200).contains(&code) && code != 101 {
        return Ok(Parsed::Interim);
    }
    let status = StatusCode::from_u16(code).map_err(|_| ExchangeError::Malformed("bad status"))?;
    // Room for the fields the proxy may add (Set-Cookie, Cache-Control):
    // a full map would be rehashed for one more.
    let mut headers = HeaderMap::with_capacity(n + 2);
    let mut keep_alive = minor == 1;
    let mut close = false;
    // What the framing fields say, gathered in the same pass.
    let mut length: Result<Option<u64>, ()> = Ok(None);
    let mut chunked: Option<bool> = None;
    for &(n0, n1, v0, v1) in &spans[..n] {
        let name = HeaderName::from_bytes(&head[n0 as usize..n1 as usize])
            .map_err(|_| ExchangeError::Malformed("bad header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(v0 as usize..v1 as usize))
            .map_err(|_| ExchangeError::Malformed("bad header value"))?;
        if name == header::CONTENT_LENGTH {
            length = length.and_then(|l| content_length(l, value.as_bytes()));
        } else if name == header::TRANSFER_ENCODING {
            // The last coding of the last field is the one that frames.
            let last = value.as_bytes().rsplit(|&b| b == b',').next();
            chunked = Some(last.is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked")));
        } else if name == header::CONNECTION {
            for t in value.as_bytes().split(|&b| b == b',') {
                let t = t.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
        headers.append(name, value);
    }
    let reusable = keep_alive && !close;
    let version = if minor == 1 {
        http::Version::HTTP_11
    } else {
        http::Version::HTTP_10
    };
    let (framing, reusable) = if code == 101 {
        (Framing::Upgrade, false)
    } else if code == 204 || code == 304 || *method == Method::HEAD {
        (Framing::Length(0), reusable)
    } else if *method == Method::CONNECT && (200..300).contains(&code) {
        (Framing::Close, false)
    } else if let Some(chunked) = chunked {
        if minor == 0 {
            return Err(ExchangeError::Malformed("transfer-encoding in HTTP/1.0"));
        }
        // RFC 9112 6.1: with both, the length is not to be trusted, nor the
        // connection to be reused.
        let both = headers.remove(header::CONTENT_LENGTH).is_some();
        if chunked {
            (Framing::Chunked(Chunk::Size), reusable && !both)
        } else {
            (Framing::Close, false)
        }
    } else {
        match length {
            Ok(Some(n)) => (Framing::Length(n), reusable),
            Ok(None) => (Framing::Close, false),
            Err(()) => return Err(ExchangeError::Malformed("invalid content-length")),
        }
    };
    Ok(Parsed::Final(Head {
        status,
        version,
        headers,
        framing,
        reusable,
    }))
}

/// `so_far` (from earlier `content-length` fields) and the lengths listed
/// in `value`, if all are valid and equal (RFC 9110 8.6).
fn content_length(so_far: Option<u64>, value: &[u8]) -> Result<Option<u64>, ()> {
    let mut found = so_far;
    for t in value.split(|&b| b == b',') {
        let t = t.trim_ascii();
        if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n = t.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(());
        }
        found = Some(n);
    }
    Ok(found)
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// After this many more bytes.
    Length(u64),
    /// Chunked, at this point of its decoding.
    Chunked(Chunk),
    /// When the server closes the connection.
    Close,
    /// 101: the connection is the caller's, for the upgraded protocol.
    Upgrade,
    /// It has ended.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// What one step of chunked decoding found.
pub(crate) enum Step {
    /// Too few bytes to go on.
    More,
    /// Framing consumed; go on in this state.
    Next(Chunk),
    /// Data, then this state.
    Data(Chunk, Bytes),
    /// The body has ended, with these trailer fields if any.
    End(Option<HeaderMap>),
}

/// One step of chunked decoding (RFC 9112 7.1) on `buf`.
pub(crate) fn decode_chunk(state: Chunk, buf: &mut BytesMut) -> Result<Step, ExchangeError> {
    match state {
        // The limits hold however the bytes arrive: for a whole line as
        // for a partial one.
        Chunk::Size => match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete((used, _))) if used > MAX_CHUNK_META => {
                Err(ExchangeError::Malformed("chunk size line too long"))
            }
            Ok(httparse::Status::Complete((used, size))) => {
                buf.advance(used);
                Ok(Step::Next(if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                }))
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_META => {
                Err(ExchangeError::Malformed("chunk size line too long"))
            }
            Ok(httparse::Status::Partial) => Ok(Step::More),
            Err(_) => Err(ExchangeError::Malformed("bad chunk size")),
        },
        Chunk::Data(rem) => {
            let n = rem.min(buf.len() as u64);
            let data = buf.split_to(n as usize).freeze();
            let next = if rem == n {
                Chunk::DataEnd
            } else {
                Chunk::Data(rem - n)
            };
            Ok(Step::Data(next, data))
        }
        Chunk::DataEnd => {
            if buf.starts_with(b"\r\n") {
                buf.advance(2);
                Ok(Step::Next(Chunk::Size))
            } else if buf.len() < 2 && buf[..] == b"\r"[..buf.len()] {
                Ok(Step::More)
            } else {
                Err(ExchangeError::Malformed("chunk data longer than its size"))
            }
        }
        Chunk::Trailers => {
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(buf, &mut fields) {
                Ok(httparse::Status::Complete((used, _))) if used > MAX_CHUNK_META => {
                    Err(ExchangeError::Malformed("trailer section too large"))
                }
                Ok(httparse::Status::Complete((used, fields))) => {
                    let mut trailers = HeaderMap::new();
                    for f in fields {
                        let name = HeaderName::from_bytes(f.name.as_bytes());
                        let value = HeaderValue::from_bytes(f.value);
                        if let (Ok(n), Ok(v)) = (name, value) {
                            trailers.append(n, v);
                        }
                    }
                    buf.advance(used);
                    Ok(Step::End((!trailers.is_empty()).then_some(trailers)))
                }
                Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_META => {
                    Err(ExchangeError::Malformed("trailer section too large"))
                }
                Ok(httparse::Status::Partial) => Ok(Step::More),
                Err(_) => Err(ExchangeError::Malformed("bad trailer section")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: reproducible inputs without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
            of[self.below(of.len())]
        }
    }

    /// How a chunked body's decoding ended.
    #[derive(Debug, PartialEq, Eq)]
    enum End {
        /// With these trailer fields, these bytes left after the body.
        Done(Vec<(String, String)>, Vec<u8>),
        /// Waiting for more bytes.
        More,
        Failed(String),
    }

    /// Decode a chunked body arriving in `pieces`, as [`UpBody`](super::super::UpBody) does:
    /// steps while the buffer is not empty, then the next piece. The data
    /// given out, and how it ended.
    fn decode(pieces: &[&[u8]]) -> (Vec<u8>, End) {
        let (mut buf, mut state, mut data) = (BytesMut::new(), Chunk::Size, Vec::new());
        let mut pieces = pieces.iter();
        loop {
            if buf.is_empty() {
                match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => return (data, End::More),
                }
                continue;
            }
            match decode_chunk(state, &mut buf) {
                Ok(Step::More) => match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => return (data, End::More),
                },
                Ok(Step::Next(next)) => state = next,
                Ok(Step::Data(next, d)) => {
                    data.extend_from_slice(&d);
                    state = next;
                }
                Ok(Step::End(trailers)) => {
                    let fields = trailers
                        .iter()
                        .flatten()
                        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                        .collect();
                    let mut rest = buf.to_vec();
                    for p in pieces {
                        rest.extend_from_slice(p);
                    }
                    return (data, End::Done(fields, rest));
                }
                Err(e) => return (data, End::Failed(e.to_string())),
            }
        }
    }

    /// `bytes` cut at random places (sometimes into single bytes).
    fn split<'a>(rng: &mut Rng, bytes: &'a [u8]) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        let mut at = 0;
        let most = if rng.below(4) == 0 {
            1
        } else {
            1 + rng.below(24)
        };
        while at < bytes.len() {
            let n = (1 + rng.below(most)).min(bytes.len() - at);
            pieces.push(&bytes[at..at + n]);
            at += n;
        }
        pieces
    }

    /// A random chunked body: its bytes, its data and its trailer fields.
    fn chunked(rng: &mut Rng) -> (Vec<u8>, Vec<u8>, Vec<(String, String)>) {
        let (mut wire, mut data) = (Vec::new(), Vec::new());
        for _ in 0..rng.below(6) {
            let n = 1 + rng.below(40);
            let chunk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let size = if rng.below(2) == 0 {
                format!("{n:x}")
            } else {
                format!("{n:X}")
            };
            let ext = rng.pick(&["", ";a=b", "; name=\"q;\\\"\"", ";x"]);
            write!(wire, "{size}{ext}\r\n").unwrap();
            wire.extend_from_slice(&chunk);
            wire.extend_from_slice(b"\r\n");
            data.extend_from_slice(&chunk);
        }
        wire.extend_from_slice(rng.pick(&["0\r\n", "000\r\n", "0;last\r\n"]).as_bytes());
        let mut trailers = Vec::new();
        for i in 0..rng.below(3) {
            let (name, value) = (format!("x-t{i}"), format!("v{}", rng.below(1000)));
            write!(wire, "{name}: {value}\r\n").unwrap();
            trailers.push((name, value));
        }
        wire.extend_from_slice(b"\r\n");
        (wire, data, trailers)
    }

    #[test]
    fn chunked_bodies_decode_the_same_however_their_bytes_arrive() {
        let mut rng = Rng(0x5eed_00c4);
        for _ in 0..2000 {
            let (mut wire, data, trailers) = chunked(&mut rng);
            // The next response, already read with this one's end.
            let next = rng.pick(&["", "HTTP/1.1 200 OK\r\n", "X"]).as_bytes();
            wire.extend_from_slice(next);
            let whole = decode(&[&wire]);
            assert_eq!(
                whole,
                (data, End::Done(trailers, next.to_vec())),
                "{wire:?}"
            );
            assert_eq!(decode(&split(&mut rng, &wire)), whole, "{wire:?}");
            // Cut short: waits for more, having given out only real data.
            let cut = rng.below(wire.len() - next.len());
            let (some, end) = decode(&[&wire[..cut]]);
            assert_eq!(end, End::More, "{:?}", &wire[..cut]);
            assert!(whole.0.starts_with(&some));
        }
    }

    #[test]
    fn damaged_chunked_bodies_fail_or_decode_the_same_however_they_arrive() {
        let mut rng = Rng(0x0bad_00c4);
        let mut failed = 0;
        for _ in 0..5000 {
            let (mut wire, _, _) = chunked(&mut rng);
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(wire.len() + 1);
                match rng.below(3) {
                    0 if at < wire.len() => wire[at] = rng.next() as u8,
                    1 if at < wire.len() => {
                        wire.remove(at);
                    }
                    _ => wire.insert(at, b"\r\n;0 Zg\t:"[rng.below(9)]),
                }
            }
            let whole = decode(&[&wire]);
            let pieces = decode(&split(&mut rng, &wire));
            assert_eq!(pieces, whole, "{wire:?}");
            failed += usize::from(matches!(whole.1, End::Failed(_)));
        }
        // The damage is found, not only survived.
        assert!(failed > 1000, "{failed} of 5000 damaged bodies failed");
    }

    #[test]
    fn oversized_chunk_lines_and_trailers_fail() {
        let long = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_META));
        assert!(matches!(decode(&[long.as_bytes()]).1, End::Failed(_)));
        let trailers = format!("0\r\nx-a: {}\r\n\r\n", "b".repeat(MAX_CHUNK_META));
        assert!(matches!(decode(&[trailers.as_bytes()]).1, End::Failed(_)));
        let many = format!("0\r\n{}\r\n", "x-a: b\r\n".repeat(MAX_HEADERS + 1));
        assert!(matches!(decode(&[many.as_bytes()]).1, End::Failed(_)));
        let fine = format!("0\r\n{}\r\n", "x-a: b\r\n".repeat(MAX_HEADERS));
        assert!(matches!(decode(&[fine.as_bytes()]).1, End::Done(..)));
        // A size that does not fit in 64 bits.
        let huge = b"1ffffffffffffffff\r\n";
        assert!(matches!(decode(&[huge]).1, End::Failed(_)));
    }

    /// What a parsed head says, comparably.
    #[derive(Debug, PartialEq, Eq)]
    struct Seen {
        status: u16,
        fields: Vec<(String, Vec<u8>)>,
        framing: Framing,
        reusable: bool,
    }

    fn parse(head: &str, method: &Method) -> Result<Option<Seen>, String> {
        let mut buf = BytesMut::from(head.as_bytes());
        loop {
            return match parse_head(&mut buf, method) {
                Ok(Parsed::Partial) => Ok(None),
                Ok(Parsed::Interim) => continue,
                Ok(Parsed::Final(h)) => Ok(Some(Seen {
                    status: h.status.as_u16(),
                    fields: h
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                        .collect(),
                    framing: h.framing,
                    reusable: h.reusable,
                })),
                Err(e) => Err(e.to_string()),
            };
        }
    }

    /// How the body of `head` (answering `method`) is framed, and whether
    /// the connection may be reused after it; or the error.
    fn framing(head: &str, method: &Method) -> Result<(Framing, bool), String> {
        let seen = parse(head, method)?.expect("a complete head");
        Ok((seen.framing, seen.reusable))
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        use Framing::*;
        let get = &Method::GET;
        let ok = |fields: &str| format!("HTTP/1.1 200 OK\r\n{fields}\r\n");
        type Case<'a> = (&'a str, &'a Method, Result<(Framing, bool), ()>);
        let cases: &[Case] = &[
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                get,
                Ok((Length(5), true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
                get,
                Ok((Length(5), true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                get,
                Ok((Length(5), true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                get,
                Err(()),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
                get,
                Err(()),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                get,
                Err(()),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
                get,
                Err(()),
            ),
            ("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", get, Err(())),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                get,
                Err(()),
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", get, Ok((Close, false))),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                get,
                Ok((Chunked(Chunk::Size), true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
                get,
                Ok((Chunked(Chunk::Size), true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                get,
                Ok((Close, false)),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                get,
                Ok((Chunked(Chunk::Size), false)),
            ),
            (
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                get,
                Err(()),
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n",
                get,
                Ok((Length(5), false)),
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 5\r\n\r\n",
                get,
                Ok((Length(5), true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 5\r\n\r\n",
                get,
                Ok((Length(5), false)),
            ),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                get,
                Ok((Length(0), true)),
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                get,
                Ok((Length(0), true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                &Method::HEAD,
                Ok((Length(0), true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                &Method::CONNECT,
                Ok((Close, false)),
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                get,
                Ok((Upgrade, false)),
            ),
            (
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n",
                get,
                Ok((Length(1), true)),
            ),
            (
                "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 OK\r\n\r\n",
                get,
                Ok((Length(0), true)),
            ),
            ("HTTP/1.1 2000 OK\r\n\r\n", get, Err(())),
            ("HTTP/2 200 OK\r\n\r\n", get, Err(())),
            ("HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n", get, Err(())),
            ("ICY 200 OK\r\n\r\n", get, Err(())),
        ];
        for (head, method, want) in cases {
            let got = framing(head, method);
            assert_eq!(got.map_err(|_| ()), *want, "{head:?} {method}");
        }
        // Too many fields, and a head too large.
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        assert_eq!(
            framing(&ok(&many), get),
            Err("malformed response from the server: too many header fields".into())
        );
        let big = format!("x-big: {}\r\n", "v".repeat(MAX_HEAD));
        assert!(framing(&ok(&big), get).is_err());
    }

    #[test]
    fn response_heads_parse_whole_and_wait_when_cut() {
        let mut rng = Rng(0x5eed_4ead);
        let names = [
            "Set-Cookie",
            "content-type",
            "X-A",
            "Cache-Control",
            "Vary",
            "ETag",
        ];
        let values = [
            "a=1; Path=/",
            "text/plain",
            "",
            "x\ty",
            "\u{e9}t\u{e9}",
            "private",
        ];
        for _ in 0..500 {
            let status = rng.pick(&["200 OK", "404 Not Found", "302 Found", "500 Oops", "299 "]);
            let mut head = format!("HTTP/1.1 {status}\r\n");
            let mut fields = Vec::new();
            for _ in 0..rng.below(12) {
                let (n, v) = (rng.pick(&names), rng.pick(&values));
                head.push_str(&format!("{n}:{}{v}\r\n", rng.pick(&["", " ", "  "])));
                fields.push((n.to_ascii_lowercase(), v.as_bytes().to_vec()));
            }
            head.push_str("Content-Length: 3\r\n\r\n");
            fields.push(("content-length".into(), b"3".to_vec()));
            let whole = parse(&head, &Method::GET).unwrap().unwrap();
            assert_eq!(whole.status, status[..3].parse::<u16>().unwrap());
            assert_eq!(whole.fields.len(), fields.len());
            for f in &fields {
                assert!(whole.fields.contains(f), "{f:?} in {head:?}");
            }
            assert_eq!((whole.framing, whole.reusable), (Framing::Length(3), true));
            // The body's first bytes after it stay in the buffer.
            let mut buf = BytesMut::from(format!("{head}abc").as_bytes());
            assert!(matches!(
                parse_head(&mut buf, &Method::GET),
                Ok(Parsed::Final(_))
            ));
            assert_eq!(&buf[..], b"abc");
            for cut in 1..head.len() {
                if head.is_char_boundary(cut) {
                    assert_eq!(
                        parse(&head[..cut], &Method::GET),
                        Ok(None),
                        "{:?}",
                        &head[..cut]
                    );
                }
            }
        }
    }

    #[test]
    fn damaged_response_heads_are_errors_or_heads_never_panics() {
        let mut rng = Rng(0x0bad_4ead);
        for _ in 0..5000 {
            let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nSet-Cookie: a=1\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(head.len());
                match rng.below(3) {
                    0 => head[at] = rng.next() as u8,
                    1 => {
                        head.remove(at);
                    }
                    _ => head.insert(at, b"\r\n:, \x00\x7f\xff0"[rng.below(9)]),
                }
            }
            let mut buf = BytesMut::from(&head[..]);
            let len = buf.len();
            if let Ok(Parsed::Final(_) | Parsed::Interim) = parse_head(&mut buf, &Method::GET) {
                assert!(buf.len() < len);
            }
        }
    }
}
