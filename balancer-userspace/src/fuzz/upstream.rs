//! The proxy's HTTP/1.1 client codec (`http/upstream/codec.rs`):
//! `upstream_head`, the response head parser and the body framing it
//! decides (a chunked body is decoded too), and `upstream_chunked`, the
//! chunked decoder alone, checked against the chunked encoder of the
//! request side.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Version};
use hyper::body::Frame;

use crate::http::upstream::codec::{
    Chunk, Framing, Head, MAX_HEAD, Parsed, ReqFraming, Step, decode_chunk, encode_frame,
    parse_head,
};

/// What a socket delivers: `step` bytes at a time (0: everything at once).
struct Feed<'a> {
    rest: &'a [u8],
    step: usize,
}

impl Feed<'_> {
    /// Append the next piece to `buf`; false when nothing is left.
    fn deliver(&mut self, buf: &mut BytesMut) -> bool {
        if self.rest.is_empty() {
            return false;
        }
        let n = match self.step {
            0 => self.rest.len(),
            s => s.min(self.rest.len()),
        };
        buf.extend_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        true
    }

    /// What is buffered and what was never delivered: the bytes after the
    /// part that was parsed.
    fn after(&self, buf: &BytesMut) -> Vec<u8> {
        [&buf[..], self.rest].concat()
    }
}

/// A [`Head`], comparable.
#[derive(Debug, PartialEq)]
struct HeadView {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    reusable: bool,
}

impl From<Head> for HeadView {
    fn from(h: Head) -> Self {
        HeadView {
            status: h.status,
            version: h.version,
            headers: h.headers,
            framing: h.framing,
            reusable: h.reusable,
        }
    }
}

/// How reading a response head ended: the final head and every byte after
/// it, or why there is none.
#[derive(Debug, PartialEq)]
enum HeadEnd {
    Final(HeadView, Vec<u8>),
    Incomplete,
    Failed(String),
}

/// Read a response head from `bytes` as `Pool::send` does (interim
/// responses skipped); also how many interim responses went by.
fn read_head(method: &Method, bytes: &[u8], step: usize) -> (usize, HeadEnd) {
    let mut feed = Feed { rest: bytes, step };
    let mut buf = BytesMut::new();
    let mut interim = 0;
    loop {
        if !buf.is_empty() {
            match parse_head(&mut buf, method) {
                Ok(Parsed::Final(head)) => {
                    return (interim, HeadEnd::Final(head.into(), feed.after(&buf)));
                }
                Ok(Parsed::Interim) => {
                    interim += 1;
                    continue;
                }
                Ok(Parsed::Partial) if buf.len() > MAX_HEAD => {
                    return (interim, HeadEnd::Failed("head too large".into()));
                }
                Ok(Parsed::Partial) => {}
                Err(e) => return (interim, HeadEnd::Failed(e.to_string())),
            }
        }
        if !feed.deliver(&mut buf) {
            return (interim, HeadEnd::Incomplete);
        }
    }
}

/// The head as the server could have sent it (another reason phrase).
fn serialise(h: &HeadView) -> Vec<u8> {
    let minor = u8::from(h.version == Version::HTTP_11);
    let mut out = format!("HTTP/1.{minor} {} Fuzz\r\n", h.status.as_u16()).into_bytes();
    for (name, value) in &h.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn method(selector: u8) -> Method {
    match selector % 6 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::POST,
        3 => Method::CONNECT,
        4 => Method::PUT,
        _ => Method::OPTIONS,
    }
}

/// Input: a method selector byte, a step byte (how the bytes arrive: that
/// many at a time, 0 all at once), then what the server sent.
///
/// Asserts: the outcome does not depend on how the bytes arrive; what
/// follows an accepted head is the input's tail; an accepted head, written
/// out again, parses to the same status, version, fields and framing; a
/// chunked body after it passes [`upstream_chunked`]'s checks.
pub fn upstream_head(data: &[u8]) {
    let [selector, step, bytes @ ..] = data else {
        return;
    };
    let method = method(*selector);
    let whole = read_head(&method, bytes, 0);
    let pieces = read_head(&method, bytes, usize::from(*step));
    assert_eq!(whole, pieces, "step {step}");
    let HeadEnd::Final(head, rest) = whole.1 else {
        return;
    };
    assert!(bytes.ends_with(&rest), "the body is not the input's tail");

    let again = [serialise(&head), rest.clone()].concat();
    match read_head(&method, &again, 0) {
        (0, HeadEnd::Final(h, r)) => {
            assert_eq!(r, rest);
            assert_eq!(
                (&h.status, h.version, &h.headers, h.framing),
                (&head.status, head.version, &head.headers, head.framing),
                "written out again: {:?}",
                String::from_utf8_lossy(&again)
            );
            // With both content-length and chunked, the length is dropped
            // and the connection not reused: written out without it, the
            // head may be reusable.
            if !matches!(head.framing, Framing::Chunked(_)) {
                assert_eq!(h.reusable, head.reusable);
            }
        }
        other => panic!(
            "written out again, {:?} reads as {other:?}",
            String::from_utf8_lossy(&again)
        ),
    }
    if head.framing == Framing::Chunked(Chunk::Size) {
        check_chunked(&rest, usize::from(*step));
    }
}

/// How a chunked body's decoding ended.
#[derive(Debug, PartialEq)]
enum BodyEnd {
    /// The last chunk and the trailer section were read: the trailers, and
    /// the bytes after the body.
    Done(Option<HeaderMap>, Vec<u8>),
    /// More bytes needed.
    More,
    Failed(String),
}

/// Decode a chunked body as `UpBody` does: a step while bytes are
/// buffered, else the next piece. The data, and how it ended.
fn read_chunked(bytes: &[u8], step: usize) -> (Vec<u8>, BodyEnd) {
    let mut feed = Feed { rest: bytes, step };
    let mut buf = BytesMut::new();
    let mut state = Chunk::Size;
    let mut data = Vec::new();
    loop {
        if buf.is_empty() && !feed.deliver(&mut buf) {
            return (data, BodyEnd::More);
        }
        match decode_chunk(state, &mut buf) {
            Ok(Step::More) => {
                if !feed.deliver(&mut buf) {
                    return (data, BodyEnd::More);
                }
            }
            Ok(Step::Next(next)) => state = next,
            Ok(Step::Data(next, piece)) => {
                assert!(!piece.is_empty(), "an empty data step");
                data.extend_from_slice(&piece);
                state = next;
            }
            Ok(Step::End(trailers)) => return (data, BodyEnd::Done(trailers, feed.after(&buf))),
            Err(e) => return (data, BodyEnd::Failed(e.to_string())),
        }
    }
}

/// The chunked encoding of `data` in pieces of `step` bytes, then
/// `trailers`, as the request side writes a body of unknown length.
fn write_chunked(data: &[u8], step: usize, trailers: Option<HeaderMap>) -> Vec<u8> {
    let mut framing = ReqFraming::Chunked(false);
    let mut out = Vec::new();
    for piece in data.chunks(step.max(1)) {
        let frame = Frame::data(Bytes::copy_from_slice(piece));
        encode_frame(frame, &mut framing, &mut out).expect("chunked takes any data");
    }
    let end = Frame::trailers(trailers.unwrap_or_default());
    encode_frame(end, &mut framing, &mut out).expect("trailers end a chunked body");
    out
}

/// The checks of [`upstream_chunked`] on one body.
fn check_chunked(bytes: &[u8], step: usize) {
    let (data, end) = read_chunked(bytes, 0);
    let pieces = read_chunked(bytes, step);
    assert_eq!((&data, &end), (&pieces.0, &pieces.1), "step {step}");
    assert!(data.len() <= bytes.len(), "more data than input");
    let BodyEnd::Done(trailers, rest) = end else {
        return;
    };
    assert!(
        bytes.ends_with(&rest),
        "what follows is not the input's tail"
    );
    assert!(data.len() + rest.len() < bytes.len(), "no framing was read");
    let encoded = write_chunked(&data, step, trailers.clone());
    assert_eq!(
        read_chunked(&encoded, 0),
        (data, BodyEnd::Done(trailers, Vec::new())),
        "re-encoded as {:?}",
        String::from_utf8_lossy(&encoded)
    );
}

/// Input: a step byte (as for [`upstream_head`]), then a chunked body.
///
/// Asserts: the outcome does not depend on how the bytes arrive; the data
/// is never longer than the input; a complete body leaves the input's tail
/// after it; its data and trailers, chunked again by the request side's
/// encoder, decode to the same.
pub fn upstream_chunked(data: &[u8]) {
    let [step, bytes @ ..] = data else {
        return;
    };
    check_chunked(bytes, usize::from(*step));
}
