//! Benchmark scenarios behind `spark bench`: each runs its baseline and Spark in the same run
//! and prints the ratio, because absolute times on a shared machine move from run to run while
//! ratios measured side by side hold. Each writes its full result as JSON under
//! `target/spark-bench/` and ends its output with one `<scenario>: key=value ...` line
//! (see ../shared/BENCHMARKS.md).

pub mod admin;
pub mod attacks;
pub mod canary;
pub mod coldstart;
pub mod density;
pub mod dial;
pub mod fleet;
pub mod hostile;
pub mod loadgen;
pub mod nn;
pub mod node;
pub mod openloop;
pub mod optimizing;
pub mod replay;
pub mod serve;
pub mod surge;

use std::path::{Path, PathBuf};

/// Why a benchmark could not run. `Display` says what failed and `source()` is the cause
/// (`spark bench` prints the chain).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file or socket operation failed (temporary directory, result JSON, port probe,
    /// component read).
    #[error("I/O")]
    Io(#[from] std::io::Error),
    /// A process (`spark up`, `wasmtime serve`, `nats-server`) could not be started.
    #[error("cannot start {what}")]
    Spawn {
        /// The program, as the message names it (`spark up`, a path).
        what: String,
        /// Why spawning it failed.
        #[source]
        source: std::io::Error,
    },
    /// Something waited for did not happen within its time limit; names what was awaited (an
    /// address, `three heartbeats`, a rollout marker).
    #[error("server at {0} never became ready")]
    NotReady(String),
    /// A step of the scenario failed: the error that made it fail, or what went wrong in
    /// words (`BenchError::runtime("answered 500")`).
    #[error("runtime")]
    Runtime(#[source] spark_error::BoxError),
    /// A required input is absent (a guest not built, a trace slice with no calls); the message
    /// says which.
    #[error("{0}")]
    Missing(String),
}

impl BenchError {
    /// A scenario step failed: `cause` is the error, or a message.
    pub fn runtime(cause: impl Into<spark_error::BoxError>) -> BenchError {
        BenchError::Runtime(cause.into())
    }
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Writes `value` as pretty JSON to `dir/name`.
pub fn write_json(
    dir: &Path,
    name: &str,
    value: &impl serde::Serialize,
) -> Result<PathBuf, BenchError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The built guest `name`: from `SPARK_GUESTS_DIR`, else `guests/target/wasm32-wasip2/release`
/// under the current directory.
pub fn guest(name: &str) -> Result<PathBuf, BenchError> {
    let dir = std::env::var_os("SPARK_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("guests/target/wasm32-wasip2/release"));
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    let alt = dir.join(format!("{name}.wasm"));
    [path, alt].into_iter().find(|p| p.exists()).ok_or_else(|| {
        BenchError::Missing(format!(
            "guest {name}.wasm not found in {} (run `make guests`)",
            dir.display()
        ))
    })
}

/// `target/spark-bench` (or under `CARGO_TARGET_DIR`).
pub fn default_out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("spark-bench")
}

/// The `q` quantile of `values` (nearest rank, rounded), 0 when there are none.
pub(crate) fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
