//! A `spark up` child process for the scenarios that drive a whole node: its manifest in a
//! temporary directory, its addresses, its admin token, and its admin API. Killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::dial::{BenchTls, Dialer};
use crate::{BenchError, free_port, loadgen};

/// A running node.
pub struct SparkNode {
    child: Child,
    /// The node's front (HTTP) listener.
    pub addr: SocketAddr,
    /// The node's admin API listener.
    pub admin: SocketAddr,
    /// The admin API bearer token.
    pub token: String,
    dir: tempfile::TempDir,
    spark: PathBuf,
    /// Where the log goes (`SPARK_BENCH_NODE_LOG`): the out dir and the log's name.
    log: (PathBuf, String),
}

impl Drop for SparkNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start one.
pub struct NodeLaunch<'a> {
    /// The `spark` executable.
    pub spark: &'a Path,
    /// The manifest, given the front and admin addresses chosen for the node.
    pub manifest: &'a dyn Fn(SocketAddr, SocketAddr) -> String,
    /// A path that answers once the node serves.
    pub ready_path: &'a str,
    /// `SPARK_BENCH_NODE_LOG=<filter>` keeps the node's log as `<out_dir>/<log_name>.log`.
    pub out_dir: &'a Path,
    /// Name of that log file, without `.log`.
    pub log_name: &'a str,
    /// The certificate the manifest gives the node's listener, if it serves TLS (readiness
    /// is checked over TLS then).
    pub tls: Option<Arc<BenchTls>>,
}

/// `spark up <manifest>`, its log in `<out_dir>/<log_name>.log` with `SPARK_BENCH_NODE_LOG`.
fn spawn(spark: &Path, manifest: &Path, log: Option<(&Path, &str)>) -> Result<Child, BenchError> {
    let (filter, stderr) = match (std::env::var("SPARK_BENCH_NODE_LOG"), log) {
        (Ok(filter), Some((out_dir, name))) => {
            std::fs::create_dir_all(out_dir)?;
            let log = std::fs::File::create(out_dir.join(format!("{name}.log")))?;
            (filter, Stdio::from(log))
        }
        _ => ("error".to_owned(), Stdio::null()),
    };
    Command::new(spark)
        .arg("up")
        .arg(manifest)
        .env("RUST_LOG", filter)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|source| BenchError::Spawn {
            what: "spark up".into(),
            source,
        })
}

impl SparkNode {
    /// Writes the manifest into a new temporary directory, runs `spark up` on it with free ports,
    /// and waits (up to 120 s) until `ready_path` answers with a success.
    pub async fn start(launch: NodeLaunch<'_>) -> Result<SparkNode, BenchError> {
        Self::start_within(launch, Duration::from_secs(120)).await
    }

    /// As [`SparkNode::start`], waiting up to `ready_within` (a first start compiling
    /// thousands of components takes minutes).
    pub async fn start_within(
        launch: NodeLaunch<'_>,
        ready_within: Duration,
    ) -> Result<SparkNode, BenchError> {
        let dir = tempfile::tempdir()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let path = dir.path().join("spark.toml");
        std::fs::write(&path, (launch.manifest)(addr, admin))?;
        let mut child = spawn(launch.spark, &path, Some((launch.out_dir, launch.log_name)))?;
        let dialer = launch.tls.clone().map_or_else(Dialer::plain, Dialer::tls);
        if !loadgen::wait_ready_over(&dialer, addr, launch.ready_path, ready_within).await {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::NotReady(addr.to_string()));
        }
        let token = crate::admin::token(dir.path())?;
        Ok(SparkNode {
            child,
            addr,
            admin,
            token,
            dir,
            spark: launch.spark.to_owned(),
            log: (launch.out_dir.to_owned(), launch.log_name.to_owned()),
        })
    }

    /// Stops the node and starts it again on the same manifest and data (same addresses,
    /// same token); returns when the new process was started, without waiting for it to serve
    /// (the caller times that). Its log, if kept, is `<log_name>-restart.log`.
    pub fn restart(&mut self) -> Result<std::time::Instant, BenchError> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let started = std::time::Instant::now();
        let name = format!("{}-restart", self.log.1);
        let log = Some((self.log.0.as_path(), name.as_str()));
        self.child = spawn(&self.spark, &self.dir.path().join("spark.toml"), log)?;
        Ok(started)
    }

    /// The node's process id (to read its memory and open files from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the node process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The directory holding the manifest and the node's data (`.spark`).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// One admin API call; the status and body.
    pub async fn admin_call(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), BenchError> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.admin))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(BenchError::runtime)?;
        let response = client.request(request).await.map_err(BenchError::runtime)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(BenchError::runtime)?
            .to_bytes();
        Ok((status, body))
    }

    /// An admin API GET answered with JSON.
    pub async fn admin_json(&self, path: &str) -> Result<serde_json::Value, BenchError> {
        let (status, body) = self.admin_call("GET", path, Vec::new()).await?;
        if status != 200 {
            return Err(BenchError::runtime(format!(
                "GET {path}: {status} {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|e| BenchError::runtime(spark_error::context(format!("GET {path}"), e)))
    }
}
