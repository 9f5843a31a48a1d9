//! One module's outbound HTTP client: resolve the host, judge every address, connect to
//! exactly the addresses that passed, and keep the connections alive for reuse.
//!
//! The decision worth knowing: resolution, the address check and the connect are one step
//! here, on the addresses this lookup returned, so a second lookup cannot answer differently
//! (DNS rebinding) and a pooled connection is reused only for the destination it was judged
//! for (and judged again when taken, in case the node's listeners changed since). Pools are
//! per module because the rule depends on the module's `allowed_outbound_hosts`: a
//! connection one module may open must never be handed to another. HTTP/1.1 only, as
//! Wasmtime's `default_send_request`, whose timeouts and error codes this keeps.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use spark_manifest::OutboundPolicy;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use super::address::{self, Refusal};
use super::body::NetworkBody;
use super::pool::{IDLE_TIMEOUT, IdleSet, PoolKey};

/// What Wasmtime's `default_send_request` waits when the guest sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a pooled connection may take to be ready for its next request (it normally is
/// at once: it was pooled when its last response ended).
const READY_WAIT: Duration = Duration::from_secs(1);

/// What the node's modules share for outbound HTTP: the node's own listeners (set once they
/// are bound) and the TLS client configuration (made on first use).
#[derive(Default)]
pub(crate) struct NodeOutbound {
    listeners: RwLock<Arc<[SocketAddr]>>,
    tls: OnceLock<Arc<rustls::ClientConfig>>,
}

impl NodeOutbound {
    pub(crate) fn set_listeners(&self, listeners: &[SocketAddr]) {
        *self.listeners.write().expect("listeners lock") = listeners.into();
    }

    fn listeners(&self) -> Arc<[SocketAddr]> {
        self.listeners.read().expect("listeners lock").clone()
    }

    /// TLS with the Mozilla roots (`webpki-roots`, as Wasmtime's default) and the `ring`
    /// provider.
    fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls
            .get_or_init(|| {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.into(),
                };
                Arc::new(tls_config(roots))
            })
            .clone()
    }

    /// As the node's, trusting only `roots` (tests with their own certificate authority).
    #[cfg(test)]
    pub(crate) fn trusting(roots: rustls::RootCertStore) -> NodeOutbound {
        let node = NodeOutbound::default();
        let _ = node.tls.set(Arc::new(tls_config(roots)));
        node
    }
}

fn tls_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Where a request goes, from its URI: scheme, host (lower case, no brackets) and port.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) key: PoolKey,
}

impl Target {
    pub(crate) fn of(uri: &http::Uri) -> Result<Target, HttpError> {
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or(HttpError::HttpRequestUriInvalid)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target {
            key: PoolKey { tls, host, port },
        })
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.key.tls { "https" } else { "http" }
    }

    pub(crate) fn host(&self) -> &str {
        &self.key.host
    }

    pub(crate) fn port(&self) -> u16 {
        self.key.port
    }
}

/// The guest's `request-options`, with Wasmtime's defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

impl From<Option<RequestOptions>> for Timeouts {
    fn from(options: Option<RequestOptions>) -> Timeouts {
        let options = options.unwrap_or_default();
        Timeouts {
            connect: options.connect_timeout.unwrap_or(DEFAULT_TIMEOUT),
            first_byte: options.first_byte_timeout.unwrap_or(DEFAULT_TIMEOUT),
            between_bytes: options.between_bytes_timeout.unwrap_or(DEFAULT_TIMEOUT),
        }
    }
}

/// Why a request was not sent or got no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// Every address the host resolved to is protected (see [`address`]).
    #[error("every address is protected: {}", list(refused))]
    Refused { refused: Vec<(SocketAddr, Refusal)> },
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl SendError {
    pub(crate) fn into_http(self) -> HttpError {
        match self {
            SendError::Refused { .. } => HttpError::DestinationIpProhibited,
            SendError::Http(e) => e,
        }
    }
}

/// `addr (why), ...` for logs.
pub(crate) fn list(refused: &[(SocketAddr, Refusal)]) -> String {
    refused
        .iter()
        .map(|(addr, why)| format!("{addr} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One module's client; cheap to clone.
#[derive(Clone)]
pub(crate) struct OutboundClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    module: Arc<str>,
    policy: Arc<OutboundPolicy>,
    node: Arc<NodeOutbound>,
    pool: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    idle: IdleSet<Conn>,
    /// Whether a task is closing expired idle connections.
    reaping: bool,
}

/// A connection ready for a request, and the address it was judged for.
struct Conn {
    sender: SendRequest<WasiBody>,
    peer: SocketAddr,
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

impl OutboundClient {
    pub(crate) fn new(
        module: Arc<str>,
        policy: Arc<OutboundPolicy>,
        node: Arc<NodeOutbound>,
    ) -> OutboundClient {
        OutboundClient {
            inner: Arc::new(ClientInner {
                module,
                policy,
                node,
                pool: Mutex::new(PoolState::default()),
            }),
        }
    }

    pub(crate) fn policy(&self) -> &OutboundPolicy {
        &self.inner.policy
    }

    /// Idle connections kept now.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.inner.pool.lock().expect("pool lock").idle.len()
    }

    /// Sends `request` (whose host already passed the name check) on a pooled connection or
    /// a new one to an address that passes [`address::judge`]. `place` (the invocation's
    /// in-flight slot) is held by the response body until it ends or is dropped.
    pub(crate) async fn send(
        &self,
        target: &Target,
        mut request: http::Request<WasiBody>,
        timeouts: Timeouts,
        place: OwnedSemaphorePermit,
    ) -> Result<http::Response<WasiBody>, SendError> {
        // Origin form on the wire: the scheme and authority are the connection's business.
        let path = request.uri().path_and_query().cloned();
        *request.uri_mut() =
            http::Uri::from(path.unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")));
        loop {
            let (mut conn, reused) = match self.checkout(target).await {
                Some(conn) => (conn, true),
                None => (self.connect(target, timeouts.connect).await?, false),
            };
            let sent =
                tokio::time::timeout(timeouts.first_byte, conn.sender.try_send_request(request))
                    .await
                    .map_err(|_| HttpError::ConnectionReadTimeout)?;
            match sent {
                Ok(response) => {
                    let (client, key) = (Arc::downgrade(&self.inner), target.key.clone());
                    let reuse = Box::new(move || {
                        if let Some(client) = client.upgrade() {
                            client.put(key, conn);
                        }
                    });
                    return Ok(response.map(|incoming| {
                        NetworkBody::new(incoming, timeouts.between_bytes, reuse, place)
                            .boxed_unsync()
                    }));
                }
                // A pooled connection the server closed before our request went out: the
                // request is intact, so it goes on a fresh connection.
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(HttpError::from(failed.into_error()).into()),
                },
            }
        }
    }

    /// A pooled connection to `target` that is still open, ready and allowed.
    async fn checkout(&self, target: &Target) -> Option<Conn> {
        loop {
            let mut conn = {
                let mut pool = self.inner.pool.lock().expect("pool lock");
                pool.idle.take(&target.key, Instant::now())?
            };
            if conn.sender.is_closed() || self.judge(target, conn.peer).is_err() {
                continue;
            }
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, conn.sender.ready()).await {
                return Some(conn);
            }
        }
    }

    async fn connect(&self, target: &Target, limit: Duration) -> Result<Conn, SendError> {
        tokio::time::timeout(limit, self.connect_now(target))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
    }

    async fn connect_now(&self, target: &Target) -> Result<Conn, SendError> {
        let resolved = resolve(target.host(), target.port()).await?;
        let (mut allowed, mut refused) = (Vec::new(), Vec::new());
        for addr in resolved {
            match self.judge(target, addr) {
                Ok(()) => allowed.push(addr),
                Err(why) => refused.push((addr, why)),
            }
        }
        if allowed.is_empty() {
            return Err(SendError::Refused { refused });
        }
        if !refused.is_empty() {
            tracing::warn!(
                module = %self.inner.module, host = target.host(), refused = %list(&refused),
                "outbound: some addresses of this host are protected; connecting only to the others"
            );
        }
        let tcp = TcpStream::connect(allowed.as_slice())
            .await
            .map_err(HttpError::Connect)?;
        let peer = tcp.peer_addr().map_err(HttpError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = if target.key.tls {
            Box::new(self.tls_handshake(target, tcp).await?)
        } else {
            Box::new(tcp)
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(HttpError::from)?;
        let module = self.inner.module.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%module, %peer, error = %e, "outbound connection ended with an error");
            }
        });
        sender.ready().await.map_err(HttpError::from)?;
        Ok(Conn { sender, peer })
    }

    async fn tls_handshake(
        &self,
        target: &Target,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HttpError> {
        use rustls::pki_types::ServerName;
        let name = match target.host().parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => {
                ServerName::try_from(target.host().to_owned()).map_err(|_| HttpError::DnsError {
                    rcode: Some("invalid dns name".into()),
                    info_code: None,
                })?
            }
        };
        tokio_rustls::TlsConnector::from(self.inner.node.tls())
            .connect(name, tcp)
            .await
            .map_err(HttpError::Tls)
    }

    fn judge(&self, target: &Target, addr: SocketAddr) -> Result<(), Refusal> {
        let listeners = self.inner.node.listeners();
        address::judge(
            target.scheme(),
            addr,
            &self.inner.policy,
            &listeners,
            is_local,
        )
    }
}

impl ClientInner {
    /// Keeps a connection whose response has ended, and makes sure expired ones get closed
    /// even if the module sends nothing more.
    fn put(self: &Arc<Self>, key: PoolKey, conn: Conn) {
        let mut pool = self.pool.lock().expect("pool lock");
        if conn.sender.is_closed() || pool.idle.put(key, conn, Instant::now()).is_err() {
            return;
        }
        if pool.reaping {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        pool.reaping = true;
        let client = Arc::downgrade(self);
        runtime.spawn(reap(client));
    }
}

/// Closes idle connections as they expire; ends when the pool is empty or gone.
async fn reap(client: Weak<ClientInner>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        let Some(client) = client.upgrade() else {
            return;
        };
        let mut pool = client.pool.lock().expect("pool lock");
        pool.idle.expire(Instant::now());
        if pool.idle.len() == 0 {
            pool.reaping = false;
            return;
        }
    }
}

/// The host's addresses: an IP literal as it is, a name from the system resolver.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, HttpError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let mut found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| HttpError::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        })?
        .collect();
    found.dedup();
    if found.is_empty() {
        return Err(HttpError::DestinationNotFound);
    }
    Ok(found)
}

/// Whether `ip` is assigned to this machine: only a local address can be bound.
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}
