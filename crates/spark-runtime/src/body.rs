//! The response body a guest streams out, with its size limit enforced on the way, and the
//! guest task it comes from.
//!
//! Guests stream with backpressure (one chunk buffered at a time), so a huge body never sits
//! in host memory; what the limit stops is a guest tying up a connection and bandwidth. When
//! the limit is passed the stream ends with an error, which makes the HTTP server abort the
//! response (the client sees a truncated body, not a "complete" one).
//!
//! The decision worth knowing: the body owns the guest task. A body dropped before its end
//! (the client went away, the connection was closed for stalling) cancels the guest at its
//! next yield, so no guest runs for a client that is gone; a body read to its end lets the
//! guest finish whatever it does after the response, within its limits.
//!
//! A WASI 0.3 body owns its request's place on a shared instance instead
//! ([`crate::concurrent::LiveRequest`]): dropped early, the request is abandoned (the instance
//! stops if it served nobody else); it also carries the request's deadline, since the
//! instance may outlive it, and it reports a body cut short by its instance's end as an
//! error, not as a complete body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::concurrent::LiveRequest;
use crate::error::InvokeError;
use crate::stats::ModuleStats;

/// The task running one guest invocation. Dropped before [`GuestTask::detach`] or
/// [`GuestTask::join`], it cancels the guest (at its next epoch yield or host await).
pub(crate) struct GuestTask {
    handle: Option<tokio::task::JoinHandle<Result<(), InvokeError>>>,
}

impl GuestTask {
    pub(crate) fn new(handle: tokio::task::JoinHandle<Result<(), InvokeError>>) -> GuestTask {
        GuestTask {
            handle: Some(handle),
        }
    }

    /// Waits for the guest to end.
    pub(crate) async fn join(mut self) -> Result<(), InvokeError> {
        let handle = self.handle.take().expect("joined once");
        handle
            .await
            .unwrap_or_else(|join| Err(InvokeError::Trap(format!("guest task failed: {join}"))))
    }

    /// Lets the guest run to its own end (within its limits) without anyone waiting.
    pub(crate) fn detach(mut self) {
        self.handle.take();
    }
}

impl Drop for GuestTask {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// Why a request body could not be read to its end (what the front end's limits report;
/// the guest reading the body sees the matching `wasi:http` error code).
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// The client sent no body bytes for this long in the middle of the body.
    #[error("the client sent nothing for {0:?} while its request body was being read")]
    Timeout(std::time::Duration),
    /// The body passed the module's `limits.request_body` (the limit, in bytes).
    #[error("the request body exceeds the module's limit of {0} bytes")]
    TooLarge(u64),
    /// The connection failed or the client sent a malformed body.
    #[error("reading the request body failed")]
    Client(#[source] hyper::Error),
}

impl From<RequestBodyError> for wasmtime_wasi_http::Error {
    fn from(error: RequestBodyError) -> Self {
        match error {
            RequestBodyError::Timeout(_) => wasmtime_wasi_http::Error::ConnectionReadTimeout,
            RequestBodyError::TooLarge(limit) => {
                wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit))
            }
            RequestBodyError::Client(e) => wasmtime_wasi_http::Error::Hyper(e),
        }
    }
}

/// Error of a response body stream.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The guest streamed more than `limits.response_body` (the limit, in bytes); the response
    /// is aborted.
    #[error("response body exceeds the module's limit of {0} bytes")]
    TooLarge(u64),
    /// The stream from the guest failed before its end; the source says why.
    #[error("the guest failed while streaming the body")]
    Guest(#[source] spark_error::BoxError),
}

/// A guest's response body, limited to `limit` bytes.
pub struct ResponseBody {
    inner: HyperOutgoingBody,
    limit: u64,
    sent: u64,
    stats: Arc<ModuleStats>,
    /// Who produces the body; dropped before its end, the guest is cancelled.
    owner: Option<Owner>,
    /// A WASI 0.3 request's deadline (a WASI 0.2 guest task has its own).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// What a response body keeps going while it streams.
pub(crate) enum Owner {
    /// A WASI 0.2 guest's own task.
    Task(GuestTask),
    /// A WASI 0.3 request's place on its (possibly shared) instance.
    Request(LiveRequest),
}

impl ResponseBody {
    pub(crate) fn new(
        inner: HyperOutgoingBody,
        limit: u64,
        stats: Arc<ModuleStats>,
        owner: Owner,
    ) -> ResponseBody {
        let deadline = match &owner {
            Owner::Request(live) => Some(Box::pin(tokio::time::sleep_until(
                tokio::time::Instant::from_std(live.deadline),
            ))),
            Owner::Task(_) => None,
        };
        ResponseBody {
            inner,
            limit,
            sent: 0,
            stats,
            owner: Some(owner),
            deadline,
        }
    }

    /// The request failed while its body streamed: the error the body ends with.
    fn fail(&mut self, error: InvokeError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(Owner::Request(live)) = &mut self.owner {
            live.finish(Err(error.clone()));
        }
        self.owner = None;
        self.deadline = None;
        Poll::Ready(Some(Err(BodyError::Guest(Box::new(error)))))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            let timeout = match &this.owner {
                Some(Owner::Request(live)) => live.instance.budget.timeout,
                _ => std::time::Duration::ZERO,
            };
            tracing::warn!(
                ?timeout,
                "the guest did not finish its response body within the module's timeout"
            );
            return this.fail(InvokeError::Timeout(timeout));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                    if this.sent > this.limit {
                        this.stats.body_limit_hit();
                        tracing::warn!(
                            limit = this.limit,
                            "response body over the limit; aborting the response"
                        );
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.limit))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(Owner::Request(live)) = &this.owner
                    && let Some(failure) = live.instance.failure()
                {
                    return this.fail(failure);
                }
                Poll::Ready(Some(Err(BodyError::Guest(e.into()))))
            }
            Poll::Ready(None) => match this.owner.take() {
                Some(Owner::Task(task)) => {
                    task.detach();
                    Poll::Ready(None)
                }
                Some(Owner::Request(mut live)) => {
                    // A stream that ends because its instance was stopped is cut short.
                    if let Some(failure) = live.instance.failure() {
                        this.owner = Some(Owner::Request(live));
                        return this.fail(failure);
                    }
                    live.finish(Ok(()));
                    this.deadline = None;
                    Poll::Ready(None)
                }
                None => Poll::Ready(None),
            },
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // A WASI 0.3 request ends when its stream is read to `None` (how it learns it ended
        // well), so the server must not stop short of that.
        !matches!(self.owner, Some(Owner::Request(_))) && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
