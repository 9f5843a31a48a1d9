//! Lingering close: a connection hyper has finished with is closed only once the client has
//! stopped sending, within a bound.
//!
//! The node answers some requests before it has read their bodies: a body declared over the
//! module's limit is refused on its head (413), and a guest may answer without reading. hyper
//! then ends the HTTP/1 connection; closing the socket with the rest of the body still arriving
//! makes the kernel reset the connection, and a client that uploads the whole body before it
//! reads the answer (a plain script, many embedded HTTP stacks) sees a broken pipe or a reset
//! instead of the 413. So hyper is handed the socket inside a [`Returning`], which, when hyper
//! drops it, gives the socket back to the connection's task instead of closing it
//! ([`Returned`]); if hyper ended the connection, the task stops writing (FIN), reads and drops
//! what the client still sends, and closes at the client's end of stream, at [`LINGER_TIME`] or
//! after [`LINGER_BYTES`], whichever comes first (Apache and nginx do the same, with 2 s and
//! 30 s).
//!
//! The decision worth knowing: lingering is part of the connection, not after it, and costs no
//! second descriptor. The connection keeps its permit (so the caps on connections, in all and
//! per client, count a lingering one), its task stays charged to the listener's memory
//! account, and node shutdown ends it at once. A client that uses the linger to hold a slot
//! holds it for [`LINGER_TIME`] at most, less than the header timeout would give it on a new
//! connection.
//!
//! A connection closed for idleness lingers too, although nothing of it is unread when the
//! node decides: the client may send its next request (or open an HTTP/2 stream past the
//! GOAWAY) just as the node closes, and closing at once would answer that with a reset, which
//! can also discard the GOAWAY the client had not read; lingering gives it a clean end of
//! stream its HTTP stack retries on. A client that reacts to the FIN ends the linger at once.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Longest a finished connection waits for its client to stop sending.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(3);
/// Most a finished connection reads (and drops) before it closes anyway.
pub(crate) const LINGER_BYTES: usize = 16 << 20;
/// Read buffer while lingering (what is read is dropped).
const SCRATCH: usize = 8 << 10;

type Slot = Arc<Mutex<Option<TcpStream>>>;

/// A client socket as hyper (or the TLS layer) holds it: dropped, it goes back to its
/// connection's [`Returned`] instead of closing.
pub(crate) struct Returning {
    stream: Option<TcpStream>,
    slot: Slot,
}

/// Where a connection's socket comes back once hyper has dropped it.
pub(crate) struct Returned {
    slot: Slot,
}

/// How a linger ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lingered {
    /// The client closed (or reset) its side: nothing was cut.
    ClientDone,
    /// [`LINGER_TIME`] or [`LINGER_BYTES`] ran out with the client still sending.
    Cut,
    /// The node is shutting down.
    Shutdown,
}

/// `stream` for hyper, and the handle it comes back to.
pub(crate) fn returning(stream: TcpStream) -> (Returning, Returned) {
    let slot = Slot::default();
    (
        Returning {
            stream: Some(stream),
            slot: slot.clone(),
        },
        Returned { slot },
    )
}

impl Returning {
    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(
            self.stream
                .as_mut()
                .expect("the socket is taken only when dropped"),
        )
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            *self.slot.lock().expect("socket slot lock") = Some(stream);
        }
    }
}

impl AsyncRead for Returning {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for Returning {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

impl Returned {
    /// Lingers on the socket hyper gave back (if it did): stops writing, then reads and drops
    /// what the client still sends until it closes, the bounds run out or `shutdown` fires;
    /// the socket closes when this returns.
    pub(crate) async fn linger(self, shutdown: &CancellationToken) -> Lingered {
        let Some(mut stream) = self.slot.lock().expect("socket slot lock").take() else {
            return Lingered::ClientDone;
        };
        let _ = socket2::SockRef::from(&stream).shutdown(std::net::Shutdown::Write);
        let drain = async {
            let mut scratch = vec![0u8; SCRATCH];
            let mut read = 0;
            while read < LINGER_BYTES {
                match stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => return Lingered::ClientDone,
                    Ok(n) => read += n,
                }
            }
            Lingered::Cut
        };
        tokio::select! {
            lingered = tokio::time::timeout(LINGER_TIME, drain) => lingered.unwrap_or(Lingered::Cut),
            () = shutdown.cancelled() => Lingered::Shutdown,
        }
    }
}
