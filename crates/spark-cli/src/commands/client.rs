//! Talking to a node's admin API: address, bearer token, JSON in and out. Every refusal the
//! node sends comes back as an error carrying the node's own sentence.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How to reach a node's admin API.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct AdminArgs {
    /// The node's admin address.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:9090",
        env = "SPARK_ADMIN"
    )]
    pub admin: SocketAddr,
    /// The admin token (default: read from <data-dir>/admin.token).
    #[arg(long, global = true, env = "SPARK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The node's data directory, to read its admin token from (default: `.spark` here, where
    /// `spark up spark.toml` keeps it when run in the manifest's folder).
    #[arg(long, global = true, env = "SPARK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The data directory `spark up` uses for a manifest in the current folder.
const LOCAL_DATA_DIR: &str = ".spark";

impl AdminArgs {
    pub(super) fn client(&self) -> anyhow::Result<AdminClient> {
        let local = spark_store::DataDir::new(LOCAL_DATA_DIR);
        let token = match (&self.token, &self.data_dir) {
            (Some(token), _) => token.clone(),
            (None, Some(dir)) => read_token(&spark_store::DataDir::new(dir))?,
            (None, None) if local.admin_token_path().is_file() => read_token(&local)?,
            (None, None) => anyhow::bail!(
                "give the admin token: --token, SPARK_TOKEN, or --data-dir of the node \
                 (no {LOCAL_DATA_DIR}/admin.token in this folder)"
            ),
        };
        Ok(AdminClient {
            base: format!("http://{}", self.admin),
            token,
        })
    }

    /// The flags another admin command needs to reach the same node as this one, for hints
    /// printed to be run as they are (the token itself is never printed).
    pub(super) fn repeated(&self) -> String {
        let mut flags = String::new();
        if std::env::var_os("SPARK_ADMIN").is_none() && self.admin.to_string() != "127.0.0.1:9090" {
            flags.push_str(&format!(" --admin {}", self.admin));
        }
        if let Some(dir) = &self.data_dir
            && std::env::var_os("SPARK_DATA_DIR").is_none()
        {
            flags.push_str(&format!(" --data-dir {}", dir.display()));
        }
        flags
    }
}

fn read_token(dir: &spark_store::DataDir) -> anyhow::Result<String> {
    let path = dir.admin_token_path();
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading the admin token from {}", path.display()))?
        .trim()
        .to_owned())
}

pub(super) struct AdminClient {
    base: String,
    token: String,
}

impl AdminClient {
    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Bytes> {
        self.send("GET", path, Bytes::new(), None).await
    }

    pub(super) async fn post_json(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<Bytes> {
        let body = serde_json::to_vec(body).context("encoding the request")?;
        self.send("POST", path, Bytes::from(body), Some("application/json"))
            .await
    }

    pub(super) async fn post_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Bytes> {
        self.send(
            "POST",
            path,
            Bytes::from(body),
            Some("application/octet-stream"),
        )
        .await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> anyhow::Result<Bytes> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let url = format!("{}{path}", self.base);
        let mut request = http::Request::builder().method(method).uri(&url).header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", self.token),
        );
        if let Some(content_type) = content_type {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Full::new(body))
            .context("building the request")?;
        let response = client
            .request(request)
            .await
            .with_context(|| format!("cannot reach the node at {url}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        anyhow::ensure!(
            status.is_success(),
            "the node refused ({status}): {}",
            String::from_utf8_lossy(&body).trim_end()
        );
        Ok(body)
    }
}
