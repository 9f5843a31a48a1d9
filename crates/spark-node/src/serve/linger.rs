//! Lingering close: a connection hyper has finished with is closed only once the client has
//! stopped sending, within a bound.
//!
//! The node answers some requests before it has read their bodies: a body declared over the
//! module's limit is refused on its head (413), and a guest may answer without reading. hyper
//! then ends the HTTP/1 connection; closing the socket with the rest of the body still arriving
//! makes the kernel reset the connection, and a client that uploads the whole body before it
//! reads the answer (a plain script, many embedded HTTP stacks) sees a broken pipe or a reset
//! instead of the 413. So each connection keeps a second handle on its socket ([`Lingering`]);
//! when hyper is done, the node stops writing (FIN), reads and drops what the client still
//! sends, and closes at the client's end of stream, at [`LINGER_TIME`] or after
//! [`LINGER_BYTES`], whichever comes first (Apache and nginx do the same, with 2 s and 30 s).
//!
//! The decision worth knowing: lingering is part of the connection, not after it. The
//! connection keeps its permit (so the caps on connections, in all and per client, count a
//! lingering one), its task stays charged to the listener's memory account, and node shutdown
//! ends it at once. A client that uses the linger to hold a slot holds it for [`LINGER_TIME`]
//! at most, less than the header timeout would give it on a new connection.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Longest a finished connection waits for its client to stop sending.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(3);
/// Most a finished connection reads (and drops) before it closes anyway.
pub(crate) const LINGER_BYTES: usize = 16 << 20;
/// Read buffer while lingering (what is read is dropped).
const SCRATCH: usize = 8 << 10;

/// A second handle on a connection's socket, taken before hyper owns the first, so the socket
/// stays open after hyper drops its stream.
pub(crate) struct Lingering {
    socket: socket2::Socket,
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

impl Lingering {
    /// A handle on `stream`'s socket; `None` if the descriptor cannot be duplicated (the
    /// connection then closes as hyper leaves it).
    pub(crate) fn new(stream: &TcpStream) -> Option<Lingering> {
        match socket2::SockRef::from(stream).try_clone() {
            Ok(socket) => Some(Lingering { socket }),
            Err(error) => {
                tracing::debug!(%error, "no second handle on a connection; it will not linger");
                None
            }
        }
    }

    /// Stops writing, then reads and drops what the client still sends until it closes, the
    /// bounds run out or `shutdown` fires; the socket closes when this returns.
    pub(crate) async fn close(self, shutdown: &CancellationToken) -> Lingered {
        let _ = self.socket.shutdown(std::net::Shutdown::Write);
        let stream = std::net::TcpStream::from(self.socket);
        if stream.set_nonblocking(true).is_err() {
            return Lingered::ClientDone;
        }
        let Ok(mut stream) = TcpStream::from_std(stream) else {
            return Lingered::ClientDone;
        };
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
