//! Connections that carry critical requests are served apart, on the critical guests' runtime.
//!
//! All connections start on the node's main runtime, whose worker threads take ready tasks in
//! order. A flood of other connections (thousands of slowloris clients dripping header bytes in
//! bursts, a storm of connects and resets) fills those queues, and a critical request's
//! connection waits its turn behind them: in B9 the critical module's p99 was 1.6-2.4x its calm
//! p99 under slowloris with the node at 7% of a core. So an HTTP/1 connection whose first
//! request head, complete in the first bytes the client sent, routes to a critical module moves
//! its socket to the critical runtime (its own threads and its own I/O driver) and is served
//! there until it closes, under the same limits, caps and accounting (1.1-1.4x in B9).
//!
//! Decision worth knowing: on a plaintext connection the head is *peeked*, not read, so hyper
//! reads it afterwards as if nothing happened. A TLS connection is looked at after its
//! handshake (on the main runtime): its first decrypted bytes are read once and put back in
//! front of the stream ([`Rewind`]); if they are a critical head, the socket is taken from under
//! the TLS session ([`super::linger::Returning::detach`]), moved, and put back on the other
//! side, so the session's state moves whole. Only a head complete in what has arrived counts:
//! a client that drips its head (slowloris) stays on the main runtime whatever route it names,
//! and a connection that sends nothing at all is closed at `header_read_timeout` counted from
//! accept, as the watchdog would. HTTP/2 (prior knowledge, or chosen by ALPN) stays on the main
//! runtime: one connection carries every module's streams. A client that opens with a critical
//! request and then sends others keeps its connection where it is: what its requests run on is
//! still decided per request. At most `node.max_connections_apart` connections are apart at
//! once; beyond that a connection is served on the main runtime, as any other (a flood of
//! connections opening with a critical request does not crowd the critical threads).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Most of a first request head looked at; a longer head is served on the main runtime.
const PEEK_BYTES: usize = 4096;
/// Most header lines parsed in a peeked head.
const PEEK_HEADERS: usize = 64;

/// Where a listener's critical connections go, and how it tells them.
#[derive(Clone)]
pub(crate) struct CriticalHome {
    /// The critical guests' runtime.
    pub(crate) runtime: tokio::runtime::Handle,
    /// Whether a request path routes to a critical module now.
    routes_to_critical: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    /// Places for connections served apart (`node.max_connections_apart`): once they are
    /// taken, a connection that opens with a critical request is served like any other, so a
    /// flood of them cannot move onto the critical threads.
    places: Arc<tokio::sync::Semaphore>,
}

impl CriticalHome {
    /// A home on `runtime` with `places` connections apart at most.
    pub(crate) fn new(
        runtime: tokio::runtime::Handle,
        routes_to_critical: Arc<dyn Fn(&str) -> bool + Send + Sync>,
        places: u32,
    ) -> CriticalHome {
        CriticalHome {
            runtime,
            routes_to_critical,
            places: Arc::new(tokio::sync::Semaphore::new(places as usize)),
        }
    }

    /// A place for one more connection apart, held until it closes (`None`: all taken).
    pub(crate) fn place(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.places.clone().try_acquire_owned().ok()
    }

    /// Peeks at the connection's first bytes, waiting for them until `deadline`. The buffer is
    /// taken once bytes are there (a silent connection holds none) and on the heap, where the
    /// connection's memory account sees it.
    pub(crate) async fn first_head(&self, stream: &TcpStream, deadline: Instant) -> FirstHead {
        let peeked = tokio::time::timeout_at(deadline, async {
            stream.readable().await?;
            let mut buf = vec![0u8; PEEK_BYTES];
            let n = stream.peek(&mut buf).await?;
            buf.truncate(n);
            Ok::<_, std::io::Error>(buf)
        });
        let buf = match peeked.await {
            Err(_) => return FirstHead::Silent,
            Ok(Err(_)) => return FirstHead::Other,
            Ok(Ok(buf)) if buf.is_empty() => return FirstHead::Other,
            Ok(Ok(buf)) => buf,
        };
        self.says(&buf)
    }

    /// Reads a TLS connection's first decrypted bytes (one read, waiting for them until
    /// `deadline`) and says whether they are a complete request head for a critical module.
    /// Decrypted bytes cannot be peeked, so they are returned, for [`Rewind`] to give to hyper.
    pub(crate) async fn read_first_head<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        deadline: Instant,
    ) -> (Vec<u8>, FirstHead) {
        let mut buf = vec![0u8; PEEK_BYTES];
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (Vec::new(), FirstHead::Silent),
            Ok(Err(_) | Ok(0)) => return (Vec::new(), FirstHead::Other),
            Ok(Ok(n)) => n,
        };
        buf.truncate(n);
        let first = self.says(&buf);
        (buf, first)
    }

    /// Whether `bytes` start with a complete request head for a critical module.
    fn says(&self, bytes: &[u8]) -> FirstHead {
        match request_path(bytes) {
            Some(path) if (self.routes_to_critical)(path) => FirstHead::Critical,
            _ => FirstHead::Other,
        }
    }
}

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstHead {
    /// A complete HTTP/1 request head for a critical module.
    Critical,
    /// Anything else: another route, a partial head, TLS, HTTP/2, the client gone.
    Other,
    /// Nothing at all before the deadline.
    Silent,
}

/// A stream with bytes already read from it put back in front: what hyper reads first.
pub(crate) struct Rewind<S> {
    read: Vec<u8>,
    at: usize,
    stream: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(read: Vec<u8>, stream: S) -> Rewind<S> {
        Rewind {
            read,
            at: 0,
            stream,
        }
    }

    /// The stream under the bytes put back.
    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.at);
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The path of a complete HTTP/1 request head at the start of `bytes` (`None`: incomplete,
/// malformed, or not origin-form).
fn request_path(bytes: &[u8]) -> Option<&str> {
    let mut headers = [httparse::EMPTY_HEADER; PEEK_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let target = request.path?;
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    path.starts_with('/').then_some(path)
}

/// Aborts a task when dropped: a connection moved to the critical runtime ends with the task
/// that accepted it (the listener aborts those after its shutdown grace).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_complete_origin_form_head_has_a_path() {
        let head = b"GET /shop/cart?item=3 HTTP/1.1\r\nHost: spark\r\n\r\n";
        assert_eq!(request_path(head), Some("/shop/cart"));
        assert_eq!(
            request_path(b"GET /shop/ HTTP/1.1\r\nHost: spark\r\n"),
            None
        );
        assert_eq!(request_path(b"GET /shop/ HTT"), None);
        assert_eq!(request_path(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), None);
        assert_eq!(
            request_path(b"GET http://spark/shop/ HTTP/1.1\r\nHost: spark\r\n\r\n"),
            None
        );
        assert_eq!(request_path(b"\x16\x03\x01\x02\x00\x01\x00"), None, "TLS");
        let mut many = b"GET /shop/ HTTP/1.1\r\n".to_vec();
        for i in 0..PEEK_HEADERS + 1 {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(request_path(&many), None, "too many headers to look at");
    }
}
