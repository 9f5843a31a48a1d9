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
//! what the client still sends, and closes at the client's end of stream, at `node.linger_time`
//! (3 s by default) or after `node.linger_bytes` (16 MiB), whichever comes first (Apache and
//! nginx do the same, with 2 s and up to 30 s); a `linger_time` of zero closes at once.
//!
//! The decision worth knowing: lingering is part of the connection, not after it, and costs no
//! second descriptor. The connection keeps its permit (so the caps on connections, in all and
//! per client, count a lingering one), its task stays charged to the listener's memory
//! account, and node shutdown ends it at once. A client that uses the linger to hold a slot
//! holds it for `linger_time` at most, less than the header timeout would give it on a new
//! connection (with the defaults).
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
    /// The linger's time or bytes ran out with the client still sending.
    Cut,
    /// The node is shutting down.
    Shutdown,
    /// Lingering is off (`node.linger_time = "0s"`): closed at once.
    Off,
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
                .expect("the socket is taken only when dropped or between runtimes"),
        )
    }

    /// Takes the socket out, to move it to another runtime under the layers above it (TLS);
    /// nothing may read or write through this until [`Returning::attach`].
    pub(crate) fn detach(&mut self) -> Option<TcpStream> {
        self.stream.take()
    }

    /// Puts a socket taken by [`Returning::detach`] back.
    pub(crate) fn attach(&mut self, stream: TcpStream) {
        self.stream = Some(stream);
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
    /// what the client still sends until it closes, `time` runs out, `bytes` have been read or
    /// `shutdown` fires; the socket closes when this returns. A `time` of zero closes at once.
    pub(crate) async fn linger(
        self,
        time: Duration,
        bytes: u64,
        shutdown: &CancellationToken,
    ) -> Lingered {
        let Some(mut stream) = self.slot.lock().expect("socket slot lock").take() else {
            return Lingered::ClientDone;
        };
        if time.is_zero() {
            return Lingered::Off;
        }
        let _ = socket2::SockRef::from(&stream).shutdown(std::net::Shutdown::Write);
        let drain = async {
            let mut scratch = vec![0u8; SCRATCH];
            let mut read = 0u64;
            while read < bytes {
                match stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => return Lingered::ClientDone,
                    Ok(n) => read += n as u64,
                }
            }
            Lingered::Cut
        };
        tokio::select! {
            lingered = tokio::time::timeout(time, drain) => lingered.unwrap_or(Lingered::Cut),
            () = shutdown.cancelled() => Lingered::Shutdown,
        }
    }
}
