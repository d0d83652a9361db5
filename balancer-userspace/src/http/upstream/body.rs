//! A server's response body as the proxy streams it to the client.

use super::*;

/// A server's response body, read from its connection as the client side
/// asks for it; at its end the connection goes back to the pool (if it
/// may take another request), and a body dropped before its end closes the
/// connection.
pub struct UpBody {
    pub(super) conn: Option<Conn>,
    pub(super) pool: Arc<Pool>,
    pub(super) framing: Framing,
    pub(super) reusable: bool,
    /// `timeout server`: how long the body may wait for the server's next
    /// bytes, and that wait when one runs.
    pub(super) wait: Duration,
    pub(super) deadline: Option<Deadline>,
}

impl UpBody {
    /// For a 101 response: the connection, to splice with the client's.
    pub fn into_upgraded(mut self) -> Option<(ServerIo, Bytes, OwnedSemaphorePermit)> {
        if self.framing != Framing::Upgrade {
            return None;
        }
        self.conn.take().map(Conn::into_upgraded)
    }

    pub(super) fn finish(&mut self) {
        self.framing = Framing::Done;
        // Bytes beyond the response's end: the server is not speaking
        // HTTP/1.1 as framed, so the connection is not used again.
        if let Some(c) = self.conn.take()
            && self.reusable
            && c.rbuf.is_empty()
        {
            self.pool.put(c);
        }
    }

    fn fail(&mut self, e: ExchangeError) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        self.framing = Framing::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = ExchangeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing {
                Framing::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Upgrade | Framing::Done => return Poll::Ready(None),
                Framing::Length(rem) if !conn.rbuf.is_empty() => {
                    let n = rem.min(conn.rbuf.len() as u64);
                    let data = conn.rbuf.split_to(n as usize).freeze();
                    this.framing = Framing::Length(rem - n);
                    if rem == n {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Close if !conn.rbuf.is_empty() => {
                    let data = conn.rbuf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(state) if !conn.rbuf.is_empty() => {
                    match decode_chunk(state, &mut conn.rbuf) {
                        Ok(Step::More) => {}
                        Ok(Step::Next(next)) => {
                            this.framing = Framing::Chunked(next);
                            continue;
                        }
                        Ok(Step::Data(next, data)) => {
                            this.framing = Framing::Chunked(next);
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        Ok(Step::End(trailers)) => {
                            this.finish();
                            return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                        }
                        Err(e) => return this.fail(e),
                    }
                }
                _ => {}
            }
            let conn = this.conn.as_mut().expect("checked above");
            match conn.poll_fill(cx) {
                Poll::Ready(Ok(0)) if this.framing == Framing::Close => {
                    this.framing = Framing::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return this.fail(ExchangeError::Closed),
                Poll::Ready(Ok(_)) => this.deadline = None,
                Poll::Ready(Err(e)) => return this.fail(e.into()),
                Poll::Pending => {
                    let wait = this.wait;
                    let d = this.deadline.get_or_insert_with(|| Deadline::after(wait));
                    if Pin::new(d).poll(cx).is_ready() {
                        return this.fail(ExchangeError::ServerTimeout(wait));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(
            self.framing,
            Framing::Length(0) | Framing::Done | Framing::Upgrade
        )
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done | Framing::Upgrade => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
