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
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request got no complete response (connection reset, truncated body, ...): which
/// step failed, with hyper's error as the cause, so tests can assert on either.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The method, URL or a header is invalid.
    #[error("cannot build the request")]
    Build(#[source] http::Error),
    /// No response: the connection failed, closed or was reset.
    #[error("no response")]
    Send(#[source] hyper_util::client::legacy::Error),
    /// The response body broke off.
    #[error("body")]
    Body(#[source] hyper::Error),
    /// No complete response within 60 s.
    #[error("no answer within 60s")]
    Timeout,
}

/// Sends a request and reads the whole body.
pub async fn request(method: &str, url: &str, body: &[u8]) -> Result<Reply, ClientError> {
    request_with(method, url, &[], body).await
}

/// As [`request`], with extra request headers.
pub async fn request_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, ClientError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(ClientError::Build)?;
    let send = async {
        let response = client.request(request).await.map_err(ClientError::Send)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(ClientError::Body)?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(60), send)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// `GET url`, whole body read.
pub async fn get(url: &str) -> Result<Reply, ClientError> {
    request("GET", url, b"").await
}

/// `POST url` with `body`, whole body read.
pub async fn post(url: &str, body: &[u8]) -> Result<Reply, ClientError> {
    request("POST", url, body).await
}
