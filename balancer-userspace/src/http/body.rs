//! The bodies the proxy sends: [`ProxyBody`], one enum for every body it
//! sends to a client or a server, and [`Counted`], a server's response on
//! its way to the client, which tells the connection's watchdog when it
//! waits on the client and ends the request's in-flight counts with it.

use bytes::Bytes;
use hyper::body::Incoming;

use super::{
    balance::InFlightGuard,
    conn::RequestGuard,
    log::Record,
    queue::Admitted,
    upstream::{ExchangeError, UpBody},
};

/// What a request holds at its server until its response has ended: its
/// in-flight count (for `leastconn`) and its place under the server's
/// `maxconn`.
#[derive(Default)]
// Held for their drops, never read.
#[allow(dead_code)]
pub struct Hold {
    pub in_flight: Option<InFlightGuard>,
    pub admitted: Option<Admitted>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the proxy sends, to a client or to a server: one enum rather
/// than a boxed trait object, so a proxied request allocates no body boxes.
// `Response` is the common case: boxing it would cost an allocation per
// request to make the rare local answers smaller.
#[allow(clippy::large_enum_variant)]
pub enum ProxyBody {
    /// A complete body the proxy made itself (error pages, or nothing),
    /// and the request it answers, in flight until the body is dropped.
    Full(
        Option<Bytes>,
        // Held for their drops (the record's writes the log line).
        #[allow(dead_code)] Option<RequestGuard>,
        #[allow(dead_code)] Option<Box<Record>>,
    ),
    /// A client's request body, streamed to the server.
    Request(Incoming),
    /// A server's response body, streamed to the client.
    Response(Counted),
}

impl ProxyBody {
    pub(super) fn full(b: impl Into<Bytes>) -> ProxyBody {
        let b = b.into();
        ProxyBody::Full((!b.is_empty()).then_some(b), None, None)
    }

    /// This response body keeps its request in flight until it ends.
    pub(super) fn in_flight(self, g: RequestGuard) -> ProxyBody {
        match self {
            ProxyBody::Full(b, _, r) => ProxyBody::Full(b, Some(g), r),
            ProxyBody::Response(mut c) => {
                c.req = Some(g);
                ProxyBody::Response(c)
            }
            r @ ProxyBody::Request(_) => r,
        }
    }

    /// This response body carries its request's log record, written when
    /// the body ends.
    pub(super) fn logged(self, rec: Option<Box<Record>>) -> ProxyBody {
        match self {
            ProxyBody::Full(b, g, _) => ProxyBody::Full(b, g, rec),
            ProxyBody::Response(mut c) => {
                c.rec = rec;
                ProxyBody::Response(c)
            }
            r @ ProxyBody::Request(_) => r,
        }
    }
}

impl hyper::body::Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        match self.get_mut() {
            ProxyBody::Full(b, ..) => {
                Poll::Ready(b.take().map(|b| Ok(hyper::body::Frame::data(b))))
            }
            ProxyBody::Request(b) => std::pin::Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BoxError::from))),
            ProxyBody::Response(b) => std::pin::Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b, ..) => b.is_none(),
            ProxyBody::Request(b) => b.is_end_stream(),
            ProxyBody::Response(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            ProxyBody::Full(b, ..) => {
                hyper::body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            ProxyBody::Request(b) => b.size_hint(),
            ProxyBody::Response(b) => b.size_hint(),
        }
    }
}

/// A server's response body on its way to the client. When its last byte
/// has been yielded it releases the request's in-flight count (for
/// `leastconn`), rather than when hyper gets round to dropping it.
pub struct Counted {
    inner: UpBody,
    guard: Hold,
    /// The request on its client connection (see [`ConnState`]).
    req: Option<RequestGuard>,
    /// Data was yielded and not yet asked for again: the body waits on
    /// the client (the connection's watchdog counts it).
    yielded: bool,
    /// The request's log record: bytes added as they go; written at the
    /// end (see [`super::log`]).
    rec: Option<Box<Record>>,
}

impl Counted {
    pub(super) fn new(inner: UpBody, guard: Hold) -> Counted {
        Counted {
            inner,
            guard,
            req: None,
            yielded: false,
            rec: None,
        }
    }

    fn set_yielded(&mut self, y: bool) {
        if self.yielded != y {
            self.yielded = y;
            if let Some(r) = &self.req {
                r.set_waiting(y);
            }
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.set_yielded(false);
        if let Some(r) = self.rec.as_mut().filter(|r| r.term == *b"--") {
            // Dropped before its end: the client went away (or hyper gave
            // up on its connection).
            r.term = *b"CD";
        }
    }
}

impl Counted {
    /// Its last byte was yielded (or its server failed): the request is
    /// done; its log line is written.
    fn end(&mut self) {
        self.guard = Hold::default();
        self.req = None;
        if let Some(mut rec) = self.rec.take() {
            // HAProxy's end of a chunked message.
            rec.bytes += u64::from(rec.chunked);
            drop(rec);
        }
    }
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        self.set_yielded(false);
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let (Some(rec), Poll::Ready(Some(Ok(f)))) = (self.rec.as_mut(), &r)
            && let Some(d) = f.data_ref()
        {
            rec.bytes += d.len() as u64;
        }
        match &r {
            Poll::Ready(Some(Err(e))) => {
                if let Some(rec) = self.rec.as_mut() {
                    let timeout = matches!(e, ExchangeError::ServerTimeout(_));
                    rec.term = if timeout { *b"sD" } else { *b"SD" };
                }
                self.end();
            }
            Poll::Ready(None) => self.end(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.end(),
            Poll::Ready(Some(Ok(_))) => self.set_yielded(true),
            Poll::Pending => {}
        }
        r.map(|f| f.map(|f| f.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

pub(super) fn empty() -> ProxyBody {
    ProxyBody::Full(None, None, None)
}
