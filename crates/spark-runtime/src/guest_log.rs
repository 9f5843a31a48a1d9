//! Guest stdout/stderr become structured log lines tagged with the module id.
//!
//! Output is split into lines; each line is capped, and each invocation may log a bounded
//! number of bytes, so a guest printing in a loop cannot flood the node's log or its memory.
//! What is dropped is counted and reported once when the stream ends.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept; the rest of a longer line is cut.
const MAX_LINE: usize = 4096;
/// Bytes one invocation may log per stream.
const MAX_BYTES_PER_INVOCATION: usize = 256 << 10;

/// Which guest stream this is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A `wasi:cli` output stream that logs lines through `tracing`.
#[derive(Clone)]
pub(crate) struct GuestLog {
    module: Arc<str>,
    stream: Stream,
}

impl GuestLog {
    pub(crate) fn new(module: Arc<str>, stream: Stream) -> GuestLog {
        GuestLog { module, stream }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.clone(),
            line: Vec::new(),
            logged: 0,
            dropped: 0,
        })
    }
}

struct LineWriter {
    log: GuestLog,
    line: Vec<u8>,
    logged: usize,
    dropped: usize,
}

impl LineWriter {
    fn accept(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                self.emit();
            } else if self.line.len() < MAX_LINE {
                self.line.push(byte);
            }
        }
    }

    fn emit(&mut self) {
        let line = std::mem::take(&mut self.line);
        if self.logged + line.len() > MAX_BYTES_PER_INVOCATION {
            self.dropped += line.len() + 1;
            return;
        }
        self.logged += line.len() + 1;
        let text = String::from_utf8_lossy(&line);
        match self.log.stream {
            Stream::Stdout => {
                tracing::info!(target: "guest", module = %self.log.module, stream = self.log.stream.name(), "{text}")
            }
            Stream::Stderr => {
                tracing::warn!(target: "guest", module = %self.log.module, stream = self.log.stream.name(), "{text}")
            }
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
        if self.dropped > 0 {
            tracing::warn!(target: "guest", module = %self.log.module, stream = self.log.stream.name(), dropped_bytes = self.dropped, "guest output over the per-invocation log limit was dropped");
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
