//! Small responses in one write: before a response's head goes to hyper, what its body has
//! ready within a moment is gathered with it.
//!
//! A guest's response head reaches the connection's task before its body: the guest sets its
//! response, then writes the body, on its own executor's thread. Handed over at once, hyper
//! finds the body not ready, flushes the head alone, then the body, then (a body of unknown
//! length) its end: two or three writes, and as many wake-ups of the client, for a response of
//! a few bytes (2.25 `writev` a request where `wasmtime serve` makes 1.3 `sendto`; see
//! ARCHITECTURE.md, "Performance notes"). [`gather`] waits for the body until it ends, holds
//! [`GATHER_BYTES`], or [`GATHER_WAIT`] has passed since the head arrived, whichever comes
//! first; a body that ended goes out with its length known, so hyper writes it whole, without
//! chunked framing.
//!
//! The price: a streaming response's head waits up to `GATHER_WAIT` for its first bytes, and
//! a connection's task holds up to `GATHER_BYTES` of a response before the client reads it
//! (charged to the connection, as all its task allocates). A client that leaves meanwhile
//! drops the response as it would have dropped it in hyper.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http::Response;
use http_body::{Body, Frame, SizeHint};

/// A response's body is gathered until it holds this much.
pub(crate) const GATHER_BYTES: usize = 64 * 1024;

/// A response's head waits at most this long for its body.
pub(crate) const GATHER_WAIT: Duration = Duration::from_millis(1);

/// Gathers what the response's body has ready within [`GATHER_WAIT`] (see the module's doc).
pub(crate) async fn gather<B: Body + Unpin>(response: Response<B>) -> Response<Gathered<B>> {
    let (parts, body) = response.into_parts();
    let mut body = Gathered {
        ready: VecDeque::new(),
        ended: body.is_end_stream(),
        inner: body,
        bytes: 0,
    };
    if !body.ended {
        let _ = tokio::time::timeout(GATHER_WAIT, std::future::poll_fn(|cx| body.gather(cx))).await;
    }
    Response::from_parts(parts, body)
}

/// A response body with the frames gathered before its head was sent, then the rest.
pub(crate) struct Gathered<B: Body> {
    ready: VecDeque<Result<Frame<B::Data>, B::Error>>,
    inner: B,
    /// The inner body has nothing more (ended or failed).
    ended: bool,
    /// Data bytes in `ready`.
    bytes: usize,
}

// Nothing in it is ever pinned: the frames are only moved in and out of the queue.
impl<B: Body + Unpin> Unpin for Gathered<B> {}

impl<B: Body + Unpin> Gathered<B> {
    /// Takes frames while the body has them ready, up to [`GATHER_BYTES`]; `Ready` when there
    /// is no more to gather.
    fn gather(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.ended && self.bytes < GATHER_BYTES {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.ended = true,
                Poll::Ready(Some(Ok(frame))) => {
                    let data = frame.is_data();
                    if let Some(bytes) = frame.data_ref() {
                        self.bytes += bytes.remaining();
                    }
                    self.ready.push_back(Ok(frame));
                    // Trailers are the last frame.
                    self.ended = !data || self.inner.is_end_stream();
                }
                Poll::Ready(Some(Err(error))) => {
                    self.ready.push_back(Err(error));
                    self.ended = true;
                }
            }
        }
        Poll::Ready(())
    }
}

impl<B: Body + Unpin> Body for Gathered<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        if let Some(frame) = this.ready.pop_front() {
            if let Ok(frame) = &frame
                && let Some(bytes) = frame.data_ref()
            {
                this.bytes -= bytes.remaining();
            }
            return Poll::Ready(Some(frame));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        // While frames wait, not at the end: hyper sends no body at all for one that says it
        // is.
        self.ready.is_empty() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let ready = self.bytes as u64;
        if self.ended {
            return SizeHint::with_exact(ready);
        }
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + ready);
        }
        hint.set_lower(inner.lower() + ready);
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;

    type Sent = Result<Frame<Bytes>, Infallible>;
    type Frames = futures::channel::mpsc::UnboundedSender<Sent>;
    type Streamed = StreamBody<futures::channel::mpsc::UnboundedReceiver<Sent>>;

    /// A response whose body's frames are sent through the channel.
    fn channel() -> (Frames, Response<Streamed>) {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        (tx, Response::new(StreamBody::new(rx)))
    }

    #[tokio::test]
    async fn a_body_ready_with_its_head_is_gathered_whole_with_its_length() {
        let (tx, response) = channel();
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"hello "))))
            .unwrap();
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"world"))))
            .unwrap();
        drop(tx);
        let body = gather(response).await.into_body();
        assert_eq!(body.size_hint().exact(), Some(11));
        assert!(!body.is_end_stream());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello world");
    }

    #[tokio::test]
    async fn a_body_later_than_the_wait_goes_on_streaming_in_order() {
        let (tx, response) = channel();
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"first "))))
            .unwrap();
        let started = std::time::Instant::now();
        let mut body = gather(response).await.into_body();
        assert!(started.elapsed() >= GATHER_WAIT);
        assert_eq!(body.size_hint().exact(), None);
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"second"))))
                .unwrap();
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-done", "yes".parse().unwrap());
            tx.unbounded_send(Ok(Frame::trailers(trailers))).unwrap();
        });
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "first ");
        let rest = body.collect().await.unwrap();
        assert_eq!(rest.trailers().unwrap()["x-done"], "yes");
        assert_eq!(rest.to_bytes(), "second");
        later.await.unwrap();
    }

    #[tokio::test]
    async fn gathering_stops_at_its_size_and_keeps_the_rest_for_later() {
        let (tx, response) = channel();
        let chunk = Bytes::from(vec![7u8; 16 * 1024]);
        for _ in 0..8 {
            tx.unbounded_send(Ok(Frame::data(chunk.clone()))).unwrap();
        }
        drop(tx);
        let body = gather(response).await.into_body();
        assert_eq!(body.bytes, GATHER_BYTES);
        assert_eq!(body.size_hint().exact(), None);
        assert_eq!(
            body.collect().await.unwrap().to_bytes().len(),
            8 * 16 * 1024
        );
    }

    #[tokio::test]
    async fn an_empty_body_stays_empty() {
        let response = Response::new(http_body_util::Empty::<Bytes>::new());
        let body = gather(response).await.into_body();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
