//! A minimal HTTP/1.1 client for tests (no connection reuse surprises: one request, one
//! connection, unless the caller keeps a client).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends a request and reads the whole body; errors are returned as text (connection reset,
/// truncated body, ...), so tests can assert on them.
pub async fn request(method: &str, url: &str, body: &[u8]) -> Result<Reply, String> {
    request_with(method, url, &[], body).await
}

/// As [`request`], with extra request headers.
pub async fn request_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| e.to_string())?;
    let send = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?
            .to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(60), send)
        .await
        .map_err(|_| "no answer within 60s".to_owned())?
}

pub async fn get(url: &str) -> Result<Reply, String> {
    request("GET", url, b"").await
}

pub async fn post(url: &str, body: &[u8]) -> Result<Reply, String> {
    request("POST", url, body).await
}
