//! The response body a guest streams out, with its size limit enforced on the way.
//!
//! Guests stream with backpressure (one chunk buffered at a time), so a huge body never sits
//! in host memory; what the limit stops is a guest tying up a connection and bandwidth. When
//! the limit is passed the stream ends with an error, which makes the HTTP server abort the
//! response (the client sees a truncated body, not a "complete" one).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::stats::ModuleStats;

/// Error of a response body stream.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("response body exceeds the module's limit of {0} bytes")]
    TooLarge(u64),
    #[error("the guest failed while streaming the body: {0}")]
    Guest(String),
}

/// A guest's response body, limited to `limit` bytes.
pub struct ResponseBody {
    inner: HyperOutgoingBody,
    limit: u64,
    sent: u64,
    stats: Arc<ModuleStats>,
}

impl ResponseBody {
    pub(crate) fn new(
        inner: HyperOutgoingBody,
        limit: u64,
        stats: Arc<ModuleStats>,
    ) -> ResponseBody {
        ResponseBody {
            inner,
            limit,
            sent: 0,
            stats,
        }
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
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Guest(format!("{e}"))))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
