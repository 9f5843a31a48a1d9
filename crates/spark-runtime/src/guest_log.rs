//! Guest stdout/stderr become structured log lines tagged with the module id.
//!
//! Output is split into lines; each line is capped, and each invocation may log a bounded
//! number of bytes across all its streams (`limits.log`: stdout and stderr together, however
//! many times the guest asks for them), so a guest printing in a loop cannot flood the node's
//! log or its memory. What is dropped is counted and reported once when the stream ends.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept; the rest of a longer line is cut.
const MAX_LINE: usize = 4096;

/// What one invocation may still log, shared by all its output streams.
#[derive(Debug)]
pub(crate) struct LogBudget {
    left: AtomicU64,
}

impl LogBudget {
    pub(crate) fn new(bytes: u64) -> Arc<LogBudget> {
        Arc::new(LogBudget {
            left: AtomicU64::new(bytes),
        })
    }

    /// Takes `bytes` if that many are left.
    fn take(&self, bytes: u64) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }
}

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
    budget: Arc<LogBudget>,
}

impl GuestLog {
    pub(crate) fn new(module: Arc<str>, stream: Stream, budget: Arc<LogBudget>) -> GuestLog {
        GuestLog {
            module,
            stream,
            budget,
        }
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
            dropped: 0,
        })
    }
}

struct LineWriter {
    log: GuestLog,
    line: Vec<u8>,
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
        if !self.log.budget.take(line.len() as u64 + 1) {
            self.dropped += line.len() + 1;
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_budget_covers_every_stream_of_an_invocation() {
        let budget = LogBudget::new(100);
        let out = GuestLog::new(Arc::from("m"), Stream::Stdout, budget.clone());
        let err = GuestLog::new(Arc::from("m"), Stream::Stderr, budget.clone());
        let mut writers: Vec<LineWriter> = (0..4)
            .map(|i| LineWriter {
                log: if i % 2 == 0 { out.clone() } else { err.clone() },
                line: Vec::new(),
                dropped: 0,
            })
            .collect();
        for writer in &mut writers {
            writer.accept(&[b'x'; 39]);
            writer.accept(b"\n");
        }
        // Two 40-byte lines fit in 100 bytes; the other two streams' lines are dropped.
        let dropped: usize = writers.iter().map(|w| w.dropped).sum();
        assert_eq!(dropped, 80);
        assert!(!budget.take(21) && budget.take(20));
    }
}
