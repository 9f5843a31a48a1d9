//! How the benchmarks' clients reach a node: plain TCP, or TLS to a node presenting a
//! certificate made for the run ([`BenchTls`]: self-signed for [`SERVER_NAME`], written where
//! the node's manifest points, trusted by the clients alone).
//!
//! [`Dialer`] opens one connection either way (the attacks use it, so each attack runs over
//! TLS as it does over TCP, handshake and all), and [`TlsConnect`] is the same for hyper's
//! pooled client (the open-loop critical client).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use crate::BenchError;

/// The name the run's certificate is for, and the one clients ask for (SNI).
pub const SERVER_NAME: &str = "spark.test";

/// A certificate for the node under test and the clients that trust it.
pub struct BenchTls {
    /// The certificate chain (PEM) the node presents.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    http1: TlsConnector,
    http2: TlsConnector,
}

impl std::fmt::Debug for BenchTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchTls")
            .field("cert", &self.cert)
            .finish()
    }
}

impl BenchTls {
    /// A new self-signed certificate (ECDSA P-256, rcgen's default) for [`SERVER_NAME`],
    /// written into `dir` as `bench-tls.pem` and `bench-tls.key`.
    pub fn issue(dir: &Path) -> Result<BenchTls, BenchError> {
        let issued = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .map_err(BenchError::runtime)?;
        std::fs::create_dir_all(dir)?;
        let (cert, key) = (dir.join("bench-tls.pem"), dir.join("bench-tls.key"));
        std::fs::write(&cert, issued.cert.pem())?;
        std::fs::write(&key, issued.signing_key.serialize_pem())?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(issued.cert.der().clone())
            .map_err(BenchError::runtime)?;
        let connector = |alpn: &[u8]| -> Result<TlsConnector, BenchError> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(BenchError::runtime)?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(TlsConnector::from(Arc::new(config)))
        };
        Ok(BenchTls {
            http1: connector(b"http/1.1")?,
            http2: connector(b"h2")?,
            cert,
            key,
        })
    }

    /// The manifest's `[[node.tls]]` entry for this certificate.
    pub fn manifest_entry(&self) -> String {
        format!(
            "[[node.tls]]\ncert = \"{}\"\nkey = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }
}

/// A connection a benchmark client holds: TCP, or TLS over TCP.
pub type Stream = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

/// Which HTTP a TLS client offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `http/1.1`.
    Http1,
    /// `h2`.
    Http2,
}

/// Opens the benchmarks' connections: plain, or TLS with the run's certificate.
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    tls: Option<Arc<BenchTls>>,
}

impl Dialer {
    /// Plain TCP.
    pub fn plain() -> Dialer {
        Dialer { tls: None }
    }

    /// TLS, trusting `tls`'s certificate.
    pub fn tls(tls: Arc<BenchTls>) -> Dialer {
        Dialer { tls: Some(tls) }
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `https` or `http`, for URIs.
    pub fn scheme(&self) -> &'static str {
        if self.is_tls() { "https" } else { "http" }
    }

    /// A connection from `from` (a loopback source address) to `to`, TLS handshake done.
    pub async fn dial(
        &self,
        from: Option<IpAddr>,
        to: SocketAddr,
        alpn: Alpn,
    ) -> io::Result<Stream> {
        let socket = TcpSocket::new_v4()?;
        if let Some(from) = from {
            socket.bind(SocketAddr::new(from, 0))?;
        }
        self.dial_socket(socket, to, alpn).await
    }

    /// As [`Dialer::dial`], on a socket the caller set up (bound, buffers sized).
    pub async fn dial_socket(
        &self,
        socket: TcpSocket,
        to: SocketAddr,
        alpn: Alpn,
    ) -> io::Result<Stream> {
        let tcp = socket.connect(to).await?;
        match &self.tls {
            None => Ok(Either::Left(tcp)),
            Some(tls) => {
                let connector = match alpn {
                    Alpn::Http1 => &tls.http1,
                    Alpn::Http2 => &tls.http2,
                };
                let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
                Ok(Either::Right(connector.connect(name, tcp).await?))
            }
        }
    }
}

/// A TLS connection for hyper's pooled client.
pub struct TlsConnection(tokio_rustls::client::TlsStream<TcpStream>);

impl Connection for TlsConnection {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// hyper's connector for TLS to the node (HTTP/1.1 by ALPN), whatever host the URI names.
#[derive(Clone)]
pub struct TlsConnect(pub Arc<BenchTls>);

impl tower_service::Service<http::Uri> for TlsConnect {
    type Response = TokioIo<TlsConnection>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.0.clone();
        Box::pin(async move {
            let to = authority(&uri)?;
            let tcp = TcpStream::connect(to).await?;
            let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
            let stream = tls.http1.connect(name, tcp).await?;
            Ok(TokioIo::new(TlsConnection(stream)))
        })
    }
}

/// The socket address a benchmark URI names (always an IP and a port).
fn authority(uri: &http::Uri) -> io::Result<SocketAddr> {
    uri.authority()
        .and_then(|a| a.as_str().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no address in {uri}")))
}
