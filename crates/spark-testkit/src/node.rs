//! A node started in-process from manifest text, on free ports, with its own store.
//!
//! A node runs on the system clock, or on a [`ManualClock`] ([`TestNode::start_manual`]): then
//! its control loop, warmth controller and rollouts act only when the test moves time
//! ([`TestNode::advance`]), and `advance` returns once they have acted, so a test asserts what
//! they decided without sleeping or polling. Requests, latencies and CPU stay real.

use std::path::PathBuf;
use std::time::Duration;

use spark_manifest::Manifest;
use spark_node::{Clock, ManualClock, NodeError, NodeOptions, RunningNode};
use spark_runtime::PoolingMode;

/// A running node and the temporary directory holding its manifest and store.
pub struct TestNode {
    /// The node itself (its addresses, its shutdown).
    pub node: RunningNode,
    /// Holds `spark.toml` and the node's data directory (`data/`); deleted on drop.
    pub dir: tempfile::TempDir,
    manual: Option<ManualClock>,
    _gate: Gate,
}

/// Tests in one binary run in parallel; those that measure CPU shares need the machine to
/// themselves. Every node holds the gate shared; [`TestNode::start_exclusive`] holds it alone.
enum Gate {
    Shared(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>),
    Exclusive(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>),
}

fn gate() -> std::sync::Arc<tokio::sync::RwLock<()>> {
    static GATE: std::sync::OnceLock<std::sync::Arc<tokio::sync::RwLock<()>>> =
        std::sync::OnceLock::new();
    GATE.get_or_init(Default::default).clone()
}

impl TestNode {
    /// Starts a node from manifest text. `{guest:NAME}` is replaced by the path of that guest,
    /// and unless the text has a `[node]` table, the node listens on free ports.
    pub async fn start(manifest: &str) -> Result<TestNode, NodeError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        Self::start_in(manifest, dir, PoolingMode::Auto).await
    }

    /// As [`TestNode::start`], on a manual clock: the control side has run its first ticks
    /// when this returns, and runs more only through [`TestNode::advance`].
    pub async fn start_manual(manifest: &str) -> Result<TestNode, NodeError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        Self::start_in_manual(manifest, dir).await
    }

    /// As [`TestNode::start_manual`], reusing a directory from an earlier node.
    pub async fn start_in_manual(
        manifest: &str,
        dir: tempfile::TempDir,
    ) -> Result<TestNode, NodeError> {
        Self::manual_in(manifest, dir, Duration::ZERO).await
    }

    async fn manual_in(
        manifest: &str,
        dir: tempfile::TempDir,
        optimize_delay: Duration,
    ) -> Result<TestNode, NodeError> {
        let gate = Gate::Shared(gate().read_owned().await);
        let clock = ManualClock::new();
        let node = Self::start_gated(
            manifest,
            dir,
            PoolingMode::Auto,
            gate,
            Some(clock),
            optimize_delay,
        )
        .await?;
        node.settle().await;
        Ok(node)
    }

    /// As [`TestNode::start_manual`], with the background optimizer waiting `optimize_delay`
    /// before compiling (see [`TestNode::start_in_tiered`]).
    pub async fn start_manual_tiered(
        manifest: &str,
        optimize_delay: Duration,
    ) -> Result<TestNode, NodeError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        Self::manual_in(manifest, dir, optimize_delay).await
    }

    /// As [`TestNode::start`], reusing a directory (and so the AOT cache) from an earlier node.
    pub async fn start_in(
        manifest: &str,
        dir: tempfile::TempDir,
        pooling: PoolingMode,
    ) -> Result<TestNode, NodeError> {
        let gate = Gate::Shared(gate().read_owned().await);
        Self::start_gated(manifest, dir, pooling, gate, None, Duration::ZERO).await
    }

    /// As [`TestNode::start_in`], with the background optimizer waiting `optimize_delay`
    /// before compiling a module first served from baseline code (tiering tests watch the
    /// baseline tier meanwhile).
    pub async fn start_in_tiered(
        manifest: &str,
        dir: tempfile::TempDir,
        optimize_delay: Duration,
    ) -> Result<TestNode, NodeError> {
        let gate = Gate::Shared(gate().read_owned().await);
        Self::start_gated(manifest, dir, PoolingMode::Auto, gate, None, optimize_delay).await
    }

    /// As [`TestNode::start`], with no other test's node running meanwhile (for tests that
    /// measure CPU time).
    pub async fn start_exclusive(manifest: &str) -> Result<TestNode, NodeError> {
        let gate = Gate::Exclusive(gate().write_owned().await);
        let dir = tempfile::tempdir().expect("temporary directory");
        Self::start_gated(manifest, dir, PoolingMode::Auto, gate, None, Duration::ZERO).await
    }

    async fn start_gated(
        manifest: &str,
        dir: tempfile::TempDir,
        pooling: PoolingMode,
        gate: Gate,
        manual: Option<ManualClock>,
        optimize_delay: Duration,
    ) -> Result<TestNode, NodeError> {
        init_logging();
        let manifest = Self::manifest(manifest, &dir);
        let options = NodeOptions {
            data_dir: dir.path().join("data"),
            pooling,
            aot_cache: true,
            optimize_delay,
            manifest,
            clock: manual
                .as_ref()
                .map_or_else(Clock::system, ManualClock::clock),
        };
        let node = RunningNode::start(options).await?;
        Ok(TestNode {
            node,
            dir,
            manual,
            _gate: gate,
        })
    }

    /// The node's manual clock.
    ///
    /// # Panics
    /// If the node runs on the system clock.
    pub fn clock(&self) -> &ManualClock {
        self.manual
            .as_ref()
            .expect("a node started with TestNode::start_manual")
    }

    /// Moves the node's manual clock forward by `by`; returns once every tick due within it
    /// has run (see [`ManualClock::advance`]).
    pub async fn advance(&self, by: Duration) {
        self.clock().advance(by).await;
    }

    /// Advances the clock `step` at a time until `check` holds, or `within` has passed;
    /// whether it held. The node's time, not the test's: no sleeping, and as deterministic as
    /// what `check` looks at.
    pub async fn advance_until(
        &self,
        step: Duration,
        within: Duration,
        mut check: impl FnMut() -> bool,
    ) -> bool {
        let mut waited = Duration::ZERO;
        while !check() {
            if waited >= within {
                return false;
            }
            self.advance(step).await;
            waited += step;
        }
        true
    }

    /// Waits until the control side has finished the ticks due now (see
    /// [`ManualClock::settle`]).
    pub async fn settle(&self) {
        self.clock().settle().await;
    }

    /// Parses manifest text the way [`TestNode::start`] does, without starting anything.
    pub fn manifest(text: &str, dir: &tempfile::TempDir) -> Manifest {
        let text = expand(text);
        let path = dir.path().join("spark.toml");
        std::fs::write(&path, &text).expect("writing the manifest");
        Manifest::load(&path)
            .unwrap_or_else(|e| panic!("test manifest is invalid:\n{}", spark_error::chain(&e)))
    }

    /// URL of `path` on the node's HTTP listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.http_addr)
    }

    /// URL of `path` on the node's admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.admin_addr)
    }

    /// The admin API's bearer token (created by the node in its data directory).
    pub fn token(&self) -> String {
        std::fs::read_to_string(spark_store::DataDir::new(self.data_dir()).admin_token_path())
            .expect("the node wrote its admin token")
    }

    /// An authenticated admin API call.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<crate::Reply, crate::ClientError> {
        let auth = format!("Bearer {}", self.token());
        crate::request_with(
            method,
            &self.admin_url(path),
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    /// The node's data directory: store, AOT cache, admin token.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Shuts the node down and hands back its directory (to restart on the same store).
    pub async fn stop(self) -> tempfile::TempDir {
        let TestNode {
            node, dir, _gate, ..
        } = self;
        node.shutdown().await;
        dir
    }
}

/// Replaces `{guest:NAME}` with guest paths and adds free-port listeners when no `[node]`
/// table is given.
pub(crate) fn expand(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{guest:") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unclosed {guest:...}") + start;
        let name = &rest[start + "{guest:".len()..end];
        out.push_str(&crate::guest(name).display().to_string());
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    if !out.contains("[node]") {
        out = out.replacen(
            "version = 1",
            "version = 1\n[node]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n",
            1,
        );
    }
    out
}

/// Node logs go to the test's captured output (shown for failing tests, or with
/// `--nocapture`); `RUST_LOG` filters them (default `warn`).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
