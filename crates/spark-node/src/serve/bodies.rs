//! The bodies a connection carries, with the front-door limits that apply to them.
//!
//! [`RequestBody`]: what the client sends, failing when it delivers nothing for
//! `request_body_timeout` or more than the module's `limits.request_body` bytes (the guest
//! reading it sees an error; a declared `Content-Length` over the limit never reaches a guest,
//! see `front`). [`Outgoing`]: any response body, watched for stalls (a frame handed over and
//! the next one not asked for within `send_timeout`) and carrying the request's guard, so the
//! request stays in flight on its connection until its body is done.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use spark_runtime::RequestBodyError;

use super::connection::RequestGuard;

/// A request body with a read timeout and a size limit.
pub(crate) struct RequestBody {
    inner: Incoming,
    timeout: Duration,
    /// Armed while a read waits for the client.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    limit: u64,
    received: u64,
    failed: bool,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, timeout: Duration) -> RequestBody {
        RequestBody {
            inner,
            timeout,
            sleep: None,
            limit: u64::MAX,
            received: 0,
            failed: false,
        }
    }

    /// At most `limit` bytes may arrive.
    pub(crate) fn limit(mut self, limit: u64) -> RequestBody {
        self.limit = limit;
        self
    }

    /// The length the client declared, if any.
    pub(crate) fn declared_length(&self) -> Option<u64> {
        self.inner.size_hint().exact()
    }

    fn fail(
        &mut self,
        error: RequestBodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        self.failed = true;
        self.sleep = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.sleep = None;
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received > this.limit {
                        return this.fail(RequestBodyError::TooLarge(this.limit));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(RequestBodyError::Client(e)),
            Poll::Ready(None) => {
                this.sleep = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(sleep.as_mut().poll(cx));
                this.fail(RequestBodyError::Timeout(timeout))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How far a response body got: hyper drops a body whose declared length (its
/// `Content-Length`, or an exact size hint) it has sent without asking for its end, so "sent
/// everything it declared" counts as finished too.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Progress {
    declared: Option<u64>,
    sent: u64,
}

impl Progress {
    pub(crate) fn of<B: Body>(response: &http::Response<B>) -> Progress {
        Progress::declared(response.headers(), response.body())
    }

    /// From a response's headers and body.
    pub(crate) fn declared(headers: &http::HeaderMap, body: &impl Body) -> Progress {
        let header = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        Progress {
            declared: header.or(body.size_hint().exact()),
            sent: 0,
        }
    }

    pub(crate) fn sent<D: bytes::Buf>(&mut self, frame: &Frame<D>) {
        if let Some(data) = frame.data_ref() {
            self.sent += data.remaining() as u64;
        }
    }

    /// Whether the body is complete, given whether it says it is at its end.
    pub(crate) fn finished(&self, at_end: bool) -> bool {
        at_end || self.declared.is_some_and(|n| self.sent >= n)
    }
}

pin_project_lite::pin_project! {
    /// A response body on its way to a client: keeps its request in flight on the
    /// connection until it ends, and marks the connection stalled while a handed-over frame
    /// waits for the client to ask for the next.
    pub struct Outgoing<B> {
        #[pin]
        inner: B,
        guard: Option<RequestGuard>,
        watch: Arc<AtomicU64>,
        progress: Progress,
    }
}

impl<B: Body> Outgoing<B> {
    /// The response with its body watched; `guard` keeps the request in flight until then.
    pub(crate) fn wrap(
        response: http::Response<B>,
        guard: RequestGuard,
    ) -> http::Response<Outgoing<B>> {
        let progress = Progress::of(&response);
        response.map(|body| Outgoing::new(body, guard, progress))
    }

    fn new(inner: B, mut guard: RequestGuard, progress: Progress) -> Outgoing<B> {
        let watch = guard.connection().watch_body();
        if progress.finished(inner.is_end_stream()) {
            guard.complete();
        }
        Outgoing {
            inner,
            guard: Some(guard),
            watch,
            progress,
        }
    }
}

impl<B: Body> Body for Outgoing<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        this.watch.store(0, Ordering::Release);
        let polled = this.inner.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            this.progress.sent(frame);
        }
        match &polled {
            Poll::Ready(Some(Ok(_))) if this.progress.finished(this.inner.is_end_stream()) => {
                // The last frame: hyper need not ask again.
                if let Some(mut guard) = this.guard.take() {
                    guard.complete();
                }
            }
            Poll::Ready(Some(Ok(_))) => {
                if let Some(guard) = this.guard.as_ref() {
                    guard.connection().stall_started(this.watch);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                // Ended, or failed on our side: either way not abandoned by the client.
                if let Some(mut guard) = this.guard.take() {
                    guard.complete();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
