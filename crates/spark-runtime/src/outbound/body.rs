//! A response body from the network, as the guest reads it: the guest's between-bytes
//! timeout, and the end of the response, which frees the invocation's in-flight place and
//! hands the connection back for reuse.
//!
//! The decision worth knowing: only a body read to its end gives its connection back. One
//! dropped early, failed or timed out drops the connection (HTTP/1.1 cannot reuse it with a
//! response half read), and frees the place all the same, so a guest's places are bounded by
//! the bodies it really holds.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use wasmtime_wasi_http::Error as HttpError;

/// "Never" for timers (about 30 years, as Tokio's own far future).
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Gives the connection back to its pool; dropped uncalled, the connection closes.
pub(crate) type Reuse = Box<dyn FnOnce() + Send>;

pub(crate) struct NetworkBody {
    incoming: Option<Incoming>,
    between_bytes: Duration,
    timer: Pin<Box<Sleep>>,
    /// Whether the timer runs (from the first `Pending` after a frame).
    waiting: bool,
    reuse: Option<Reuse>,
    place: Option<OwnedSemaphorePermit>,
}

impl NetworkBody {
    pub(crate) fn new(
        incoming: Incoming,
        between_bytes: Duration,
        reuse: Reuse,
        place: OwnedSemaphorePermit,
    ) -> NetworkBody {
        let mut body = NetworkBody {
            incoming: None,
            between_bytes,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            waiting: false,
            reuse: Some(reuse),
            place: Some(place),
        };
        if incoming.is_end_stream() {
            body.finish(true);
        }
        body.incoming = Some(incoming);
        body
    }

    /// The response is over: the connection goes back (`reusable`) or is closed, and the
    /// place is freed.
    fn finish(&mut self, reusable: bool) {
        let reuse = self.reuse.take();
        if reusable && let Some(reuse) = reuse {
            reuse();
        }
        self.place = None;
    }
}

impl Body for NetworkBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        let Some(incoming) = this.incoming.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut *incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                if incoming.is_end_stream() {
                    this.finish(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(false);
                let e = if e.is_timeout() {
                    HttpError::HttpResponseTimeout
                } else {
                    HttpError::from(e)
                };
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(true);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let now = tokio::time::Instant::now();
                    let deadline = now.checked_add(this.between_bytes).unwrap_or(now + FAR);
                    this.timer.as_mut().reset(deadline);
                }
                ready!(this.timer.as_mut().poll(cx));
                this.finish(false);
                this.incoming = None;
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
