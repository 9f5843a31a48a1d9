//! Progress for long work the CLI waits on: starting a node (a first start compiles every
//! component, which takes seconds for a big one) and uploading a deploy. On a terminal a
//! line on stderr counts the seconds in place; otherwise one line before and one after, so
//! logs and pipes stay clean.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use spark_manifest::{ComponentRef, Manifest};

/// A byte count in MiB with one decimal.
pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The total size of the component files a manifest names (artifacts already in the store
/// are not counted).
fn component_bytes(manifest: &Manifest) -> u64 {
    manifest
        .modules
        .iter()
        .filter_map(|m| match &m.component {
            ComponentRef::File(path) => std::fs::metadata(path).ok().map(|md| md.len()),
            ComponentRef::Artifact(_) => None,
        })
        .sum()
}

/// Shown while a node starts; [`Starting::done`] prints how long it took. Dropped early
/// (the start failed), it stops its ticker and prints nothing more.
pub(super) struct Starting {
    started: Instant,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Starting {
    /// Announces the start of a node serving `manifest`.
    pub(super) fn begin(manifest: &Manifest) -> Starting {
        eprintln!(
            "Loading {} module(s), {} of components (a first start compiles them; the AOT \
             cache makes the next start fast)",
            manifest.modules.len(),
            mib(component_bytes(manifest))
        );
        let started = Instant::now();
        let ticker = std::io::stderr().is_terminal().then(|| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    eprint!("\r  loading... {}s", started.elapsed().as_secs());
                    let _ = std::io::stderr().flush();
                }
            })
        });
        Starting { started, ticker }
    }

    /// The node is up: say how long loading took.
    pub(super) fn done(mut self) {
        let had_ticker = self.stop();
        eprintln!(
            "{}Loaded in {:.1} s",
            if had_ticker { "\r" } else { "" },
            self.started.elapsed().as_secs_f64()
        );
    }

    fn stop(&mut self) -> bool {
        match self.ticker.take() {
            Some(ticker) => {
                ticker.abort();
                true
            }
            None => false,
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if self.stop() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_mebibytes() {
        assert_eq!(mib(0), "0.0 MiB");
        assert_eq!(mib(13 * 1024 * 1024 + 300 * 1024), "13.3 MiB");
    }
}
