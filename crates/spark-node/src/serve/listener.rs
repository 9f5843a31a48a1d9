//! Listeners: accept, refuse what is over the caps, terminate TLS, serve each connection
//! (HTTP/1.1 or HTTP/2) under the front-door limits, and close it when its watchdog says so.
//! Both the public and the admin listener run here, each with its own caps.
//!
//! What a client can hold, and for how long: a connection (at most `max_connections` in all,
//! `max_connections_per_client` per address, `max_connection_rate_per_client` a second per
//! address of those that carry no request, after a burst of its cap; refused at accept beyond
//! any of them, and beyond the listener's share of memory), for at most
//! `header_read_timeout` without a complete request head, `idle_timeout` without a request,
//! `send_timeout` without taking its response;
//! requests within the module's admission and the node's capacity, each only as long as its
//! connection and its guest's limits allow. Overload is refused fast (a reset at accept, a 503
//! from admission), never by `accept()` failing: the connection cap sits well below the
//! file-descriptor limit, which the node raises to its hard maximum at start.
//!
//! The decision worth knowing: the memory a connection uses (hyper's buffers, HTTP/2 stream
//! state, request bodies in flight) is measured, not estimated: every poll of a connection
//! and of its HTTP/2 streams is charged to the listener's account by the accounting allocator
//! (`spark_runtime::host_memory`), and new connections are refused while it is over budget.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use spark_manifest::{H2_KEEPALIVE_TIMEOUT, ListenerLimits};
use spark_runtime::host_memory::{Charged, HostAccount};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use super::bodies::{Outgoing, RequestBody};
use super::connection::{CloseReason, Connection, Verdict, Watched, verdict};
use super::critical_home::{AbortOnDrop, CriticalHome, FirstHead, Rewind};
use super::front::NodeBody;
use super::gate::{Cap, Gate, Permit};
use super::linger::{Lingered, Returning, returning};
use super::tls::TlsTerminator;

/// What serves the requests of a listener.
/// The client's address, on every request a listener hands on (its extensions).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub SocketAddr);

pub(crate) type Handler =
    Arc<dyn Fn(Request<RequestBody>) -> BoxFuture<'static, Response<NodeBody>> + Send + Sync>;

/// A request head may use this much of hyper's HTTP/1 read buffer (the default is 400 KiB:
/// thousands of slow clients each filling it would be gigabytes).
const H1_MAX_BUF: usize = 64 << 10;
/// Largest HTTP/2 header list accepted (h2's default is 16 MiB).
const H2_MAX_HEADER_LIST: u32 = 64 << 10;
/// HTTP/2 flow-control windows: what a client may send before the node reads it.
const H2_STREAM_WINDOW: u32 = 256 << 10;
const H2_CONNECTION_WINDOW: u32 = 1 << 20;
/// Streams a client may reset before the node has even started serving them (h2's own
/// rapid-reset guard; its default). Resets after that count against `h2_reset_budget`.
const H2_PENDING_ACCEPT_RESETS: usize = 20;
/// Kernel send buffer of a client connection (Linux doubles it for bookkeeping): enough for
/// ~10 MB/s at 50 ms round trip, small enough that thousands of stalled readers hold little.
const SEND_BUFFER: usize = 256 << 10;
/// How long an idle connection told to close (HTTP/2 `GOAWAY`) gets to go quietly.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// Everything a listener needs besides its socket and handler.
#[derive(Clone)]
pub(crate) struct ListenerConfig {
    pub limits: ListenerLimits,
    pub tls: Option<Arc<TlsTerminator>>,
    /// Memory all connections together may use before new ones are refused.
    pub memory_budget: u64,
    /// How long open connections get after shutdown starts.
    pub grace: Duration,
    /// Where connections whose first request is for a critical module are served (`None`:
    /// every connection on the listener's runtime).
    pub critical_home: Option<CriticalHome>,
}

/// A listener's counters, read by `/metrics` and the hostile-clients benchmark.
#[derive(Debug)]
pub struct ListenerStats {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    pub refused_total_cap: AtomicU64,
    pub refused_client_cap: AtomicU64,
    pub refused_client_rate: AtomicU64,
    pub refused_memory: AtomicU64,
    /// Connections served apart, on the critical runtime (`serve::critical_home`).
    pub moved_critical: AtomicU64,
    /// Connections that opened with a critical request while every place apart was taken.
    pub apart_full: AtomicU64,
    /// Connections served apart now.
    pub apart: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    /// Memory used by the listener's connections (their buffers and stream state).
    pub memory: HostAccount,
}

impl Default for ListenerStats {
    /// No connection yet; their memory counted apart from guests' host memory.
    fn default() -> ListenerStats {
        ListenerStats {
            open: AtomicU64::default(),
            accepted: AtomicU64::default(),
            refused_total_cap: AtomicU64::default(),
            refused_client_cap: AtomicU64::default(),
            refused_client_rate: AtomicU64::default(),
            refused_memory: AtomicU64::default(),
            moved_critical: AtomicU64::default(),
            apart_full: AtomicU64::default(),
            apart: AtomicU64::default(),
            closed: Default::default(),
            memory: HostAccount::for_connections(),
        }
    }
}

impl ListenerStats {
    fn closed_for(&self, reason: CloseReason) {
        let index = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed");
        self.closed[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections the node closed, by reason.
    pub fn closed(&self) -> Vec<(CloseReason, u64)> {
        CloseReason::ALL
            .iter()
            .zip(&self.closed)
            .map(|(reason, n)| (*reason, n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Accepts connections until `shutdown`, then gives open ones `grace` to finish their
/// requests and closes the rest.
pub(crate) async fn serve(
    listener: TcpListener,
    handler: Handler,
    config: ListenerConfig,
    stats: Arc<ListenerStats>,
    shutdown: CancellationToken,
) {
    let gate = Arc::new(Gate::new(config.limits));
    let mut connections = JoinSet::new();
    let mut accept_errors = AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                accept_errors.note(&error).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let refusal = if stats.memory.bytes() as u64 > config.memory_budget {
            Some(&stats.refused_memory)
        } else {
            None
        };
        let permit = match refusal {
            Some(counter) => Err(counter),
            None => gate.admit(peer.ip()).map_err(|cap| match cap {
                Cap::Total => &stats.refused_total_cap,
                Cap::PerClient => &stats.refused_client_cap,
                Cap::ClientRate => &stats.refused_client_rate,
            }),
        };
        let permit = match permit {
            Ok(permit) => permit,
            Err(counter) => {
                counter.fetch_add(1, Ordering::Relaxed);
                refuse(stream);
                continue;
            }
        };
        let accepted = tokio::time::Instant::now();
        let task = Connected {
            stream,
            peer,
            accepted,
            conn: Connection::new(config.limits.h2_reset_budget, accepted),
            handler: handler.clone(),
            config: config.clone(),
            stats: stats.clone(),
            shutdown: shutdown.clone(),
        };
        connections.spawn(Charged::new(task.run(permit), stats.memory.clone()));
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(config.grace, drained).await.is_err() {
        tracing::warn!(grace = ?config.grace, "grace period over; closing remaining connections");
        connections.abort_all();
    }
}

/// Closes a refused connection with a reset, so neither side keeps it in `TIME_WAIT`.
fn refuse(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// One accepted connection, until it ends.
struct Connected {
    stream: TcpStream,
    peer: SocketAddr,
    /// When it was accepted: the request-head timeout counts from here.
    accepted: tokio::time::Instant,
    /// What its watchdog judges, and whether it carried a request.
    conn: Arc<Connection>,
    handler: Handler,
    config: ListenerConfig,
    stats: Arc<ListenerStats>,
    shutdown: CancellationToken,
}

impl Connected {
    /// Serves the connection, lingering included, holding its place under the caps (`permit`)
    /// and in the open-connections gauge until the socket closes.
    async fn run(self, mut permit: Permit) {
        let _open = GaugeGuard::new(self.stats.clone(), |s| &s.open);
        let conn = self.conn.clone();
        match (&self.config.critical_home, &self.config.tls) {
            (Some(home), None) => {
                let home = home.clone();
                self.serve_from(&home).await;
            }
            _ => self.serve().await,
        }
        permit.give_back = conn.well_used();
        drop(permit);
    }

    /// Serves the connection here, or on `home`'s runtime if its first request is for a
    /// critical module (`serve::critical_home`); this task waits for it either way, so the
    /// caps, the gauges and the shutdown drain see one connection.
    async fn serve_from(self, home: &CriticalHome) {
        let deadline = self.accepted + self.config.limits.header_read_timeout;
        match home.first_head(&self.stream, deadline).await {
            FirstHead::Other => self.serve().await,
            FirstHead::Silent => self.stats.closed_for(CloseReason::HeaderTimeout),
            FirstHead::Critical => {
                let Some(place) = place_apart(home, &self.stats) else {
                    return self.serve().await;
                };
                let Ok(socket) = self.stream.into_std() else {
                    return;
                };
                let stats = self.stats.clone();
                apart(home, &stats, place, async move {
                    // Registered with the critical runtime's I/O driver from here on.
                    let Ok(stream) = TcpStream::from_std(socket) else {
                        return;
                    };
                    Connected { stream, ..self }.serve().await;
                })
                .await;
            }
        }
    }

    async fn serve(self) {
        let _ = self.stream.set_nodelay(true);
        // A fixed send buffer: what a client that stops reading can make the kernel (and the
        // guest feeding it) buffer is bounded, instead of growing with autotuning to 4 MiB.
        let _ = socket2::SockRef::from(&self.stream).set_send_buffer_size(SEND_BUFFER);
        // hyper holds the socket; once it drops it, the socket comes back here to linger.
        let (socket, returned) = returning(self.stream);
        let ended = Self::serve_socket(
            socket,
            self.conn.clone(),
            self.peer,
            &self.handler,
            &self.config,
            &self.stats,
            &self.shutdown,
        )
        .await;
        let (time, bytes) = (
            self.config.limits.linger_time,
            self.config.limits.linger_bytes,
        );
        if ended == Ended::ByHyper
            && returned.linger(time, bytes, &self.shutdown).await == Lingered::Cut
        {
            tracing::debug!(peer = %self.peer, "connection closed: the client was still sending at the end of its linger");
            self.stats.closed_for(CloseReason::Linger);
            self.conn.cut(CloseReason::Linger);
        }
    }

    /// Terminates TLS if the listener has it (a TLS connection whose first request is for a
    /// critical module is served apart from here), then serves HTTP.
    async fn serve_socket(
        socket: Returning,
        conn: Arc<Connection>,
        peer: SocketAddr,
        handler: &Handler,
        config: &ListenerConfig,
        stats: &Arc<ListenerStats>,
        shutdown: &CancellationToken,
    ) -> Ended {
        let io = match &config.tls {
            None => Either::Left(socket),
            Some(tls) => match Self::open_tls(tls, socket, peer, &conn, config, stats).await {
                Opened::Here(stream) => Either::Right(stream),
                Opened::Closed => return Ended::ByNode,
                Opened::Apart(home, place, mut stream) => {
                    // The socket leaves from under the TLS session, whose state moves whole.
                    let Some(Ok(socket)) = stream
                        .get_mut()
                        .get_mut()
                        .0
                        .detach()
                        .map(TcpStream::into_std)
                    else {
                        return Ended::ByNode;
                    };
                    let (handler, config, moved_stats, shutdown) = (
                        handler.clone(),
                        config.clone(),
                        stats.clone(),
                        shutdown.clone(),
                    );
                    let served = apart(home, stats, place, async move {
                        let Ok(socket) = TcpStream::from_std(socket) else {
                            return Ended::ByNode;
                        };
                        stream.get_mut().get_mut().0.attach(socket);
                        let io = Either::Right(stream);
                        Self::serve_http(io, conn, peer, &handler, &config, &moved_stats, &shutdown)
                            .await
                    });
                    return served.await.unwrap_or(Ended::ByNode);
                }
            },
        };
        Self::serve_http(io, conn, peer, handler, config, stats, shutdown).await
    }

    /// The TLS handshake, within the header timeout, then (HTTP/1 with a critical home) a look
    /// at the first request head: where the connection is to be served.
    async fn open_tls<'h>(
        tls: &TlsTerminator,
        socket: Returning,
        peer: SocketAddr,
        conn: &Connection,
        config: &'h ListenerConfig,
        stats: &ListenerStats,
    ) -> Opened<'h> {
        let limits = config.limits;
        let handshake = tls.accept(socket);
        let (mut stream, h2) = match tokio::time::timeout(limits.header_read_timeout, handshake)
            .await
        {
            Ok(Ok(accepted)) => accepted,
            Ok(Err(error)) => {
                tracing::debug!(peer = %peer, error = %spark_error::chain(&error), "TLS handshake failed");
                stats.closed_for(CloseReason::Handshake);
                return Opened::Closed;
            }
            Err(_) => {
                stats.closed_for(CloseReason::Handshake);
                return Opened::Closed;
            }
        };
        if h2 {
            conn.set_h2();
        }
        let Some(home) = config.critical_home.as_ref().filter(|_| !h2) else {
            return Opened::Here(Rewind::new(Vec::new(), stream));
        };
        let deadline = conn.accepted() + limits.header_read_timeout;
        let (read, first) = home.read_first_head(&mut stream, deadline).await;
        let stream = Rewind::new(read, stream);
        match first {
            FirstHead::Silent => {
                stats.closed_for(CloseReason::HeaderTimeout);
                Opened::Closed
            }
            FirstHead::Critical => match place_apart(home, stats) {
                Some(place) => Opened::Apart(home, place, stream),
                None => Opened::Here(stream),
            },
            FirstHead::Other => Opened::Here(stream),
        }
    }

    /// Serves HTTP on the connection until hyper ends it or the node cuts it.
    async fn serve_http(
        io: Either<Returning, Rewind<TlsStream<Returning>>>,
        conn: Arc<Connection>,
        peer: SocketAddr,
        handler: &Handler,
        config: &ListenerConfig,
        stats: &ListenerStats,
        shutdown: &CancellationToken,
    ) -> Ended {
        let limits = config.limits;
        let io = TokioIo::new(Watched::new(io, conn.clone()));
        let service = {
            let (conn, handler) = (conn.clone(), handler.clone());
            let body_timeout = limits.request_body_timeout;
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let guard = conn.request();
                let mut request = request.map(|body| RequestBody::new(body, body_timeout));
                request.extensions_mut().insert(ClientAddr(peer));
                let response = handler(request);
                async move {
                    let response = super::gathered::gather(response.await).await;
                    Ok::<_, Infallible>(Outgoing::wrap(response, guard))
                }
            })
        };
        let builder = builder(&limits, stats.memory.clone());
        let mut connection = pin!(builder.serve_connection(io, service));
        let mut watchdog = tokio::time::interval(watch_period(&limits));
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing = false;
        let mut idle_deadline: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(peer = %peer, error = %spark_error::chain(&*error), "connection ended with an error");
                    }
                    return Ended::ByHyper;
                }
                () = shutdown.cancelled(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = conn.alarm.notified() => {
                    tracing::info!(peer = %peer, "connection closed: it abandoned more requests than its reset budget");
                    stats.closed_for(CloseReason::ResetBudget);
                    conn.cut(CloseReason::ResetBudget);
                    return Ended::ByNode;
                }
                _ = watchdog.tick() => {
                    if idle_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        return Ended::ByNode;
                    }
                    match verdict(&conn.observe(), &limits) {
                        Verdict::Keep => {}
                        Verdict::Close(CloseReason::Idle) => {
                            if !closing {
                                stats.closed_for(CloseReason::Idle);
                                closing = true;
                                connection.as_mut().graceful_shutdown();
                                idle_deadline = Some(tokio::time::Instant::now() + IDLE_GRACE);
                            }
                        }
                        Verdict::Close(reason) => {
                            tracing::debug!(peer = %peer, reason = reason.as_str(), "connection closed");
                            stats.closed_for(reason);
                            conn.cut(reason);
                            return Ended::ByNode;
                        }
                    }
                }
            }
        }
    }
}

/// Where a TLS connection is served once its handshake is done.
enum Opened<'h> {
    /// On this runtime.
    Here(Rewind<TlsStream<Returning>>),
    /// On the critical runtime, in a place apart.
    Apart(
        &'h CriticalHome,
        OwnedSemaphorePermit,
        Rewind<TlsStream<Returning>>,
    ),
    /// Nowhere: the handshake failed or the client said nothing in time.
    Closed,
}

/// A place apart for a connection whose first request is critical (`None`, counted: all taken).
fn place_apart(home: &CriticalHome, stats: &ListenerStats) -> Option<OwnedSemaphorePermit> {
    let place = home.place();
    if place.is_none() {
        stats.apart_full.fetch_add(1, Ordering::Relaxed);
    }
    place
}

/// Serves a connection on the critical runtime (`serve::critical_home`) holding its `place`:
/// counted, in the gauge of connections apart, charged to the listener's memory account, and
/// aborted if the accepting task is dropped (the listener aborts those after its grace).
async fn apart<T: Send + 'static>(
    home: &CriticalHome,
    stats: &Arc<ListenerStats>,
    place: OwnedSemaphorePermit,
    connection: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    stats.moved_critical.fetch_add(1, Ordering::Relaxed);
    let _apart = GaugeGuard::new(stats.clone(), |s| &s.apart);
    let task = home
        .runtime
        .spawn(Charged::new(connection, stats.memory.clone()));
    let _abort = AbortOnDrop(task.abort_handle());
    let served = task.await.ok();
    drop(place);
    served
}

/// One unit of a listener gauge (open connections, connections apart), held while it lasts.
struct GaugeGuard(Arc<ListenerStats>, fn(&ListenerStats) -> &AtomicU64);

impl GaugeGuard {
    fn new(stats: Arc<ListenerStats>, gauge: fn(&ListenerStats) -> &AtomicU64) -> GaugeGuard {
        gauge(&stats).fetch_add(1, Ordering::Relaxed);
        GaugeGuard(stats, gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::Relaxed);
    }
}

/// Who ended a connection's HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// hyper, having answered what it read (or seen the client go): the connection lingers.
    ByHyper,
    /// The node, at a limit or a failed handshake: closed at once.
    ByNode,
}

/// How often a connection's watchdog looks: often enough to act within a small part of the
/// shortest timeout, at most once a second.
fn watch_period(limits: &ListenerLimits) -> Duration {
    let shortest = limits
        .header_read_timeout
        .min(limits.idle_timeout)
        .min(limits.send_timeout);
    (shortest / 8).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// hyper's connection settings from the listener's limits. HTTP/1 header timeouts are the
/// watchdog's (hyper's own would also close idle keep-alive connections at the header
/// timeout); HTTP/2 gets hyper's stream, reset and keep-alive limits.
fn builder(limits: &ListenerLimits, account: HostAccount) -> auto::Builder<ChargedExecutor> {
    let mut builder = auto::Builder::new(ChargedExecutor(account));
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(H1_MAX_BUF);
    let keepalive =
        (!limits.h2_keepalive_interval.is_zero()).then_some(limits.h2_keepalive_interval);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(H2_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(limits.h2_reset_budget as usize)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .keep_alive_interval(keepalive)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
    builder
}

/// Spawns hyper's HTTP/2 stream tasks charged to the listener's memory account.
#[derive(Clone)]
struct ChargedExecutor(HostAccount);

impl<F> hyper::rt::Executor<F> for ChargedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(Charged::new(future, self.0.clone()));
    }
}

/// Accept errors are logged at most once a second; out of file descriptors (which the caps
/// are sized to prevent) the loop backs off instead of spinning.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<std::time::Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    async fn note(&mut self, error: &std::io::Error) {
        let now = std::time::Instant::now();
        if self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            tracing::warn!(error = %spark_error::chain(&error), suppressed = self.suppressed, "accept failed; retrying");
            self.last_logged = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        let exhausted = matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
        let pause = if exhausted { 100 } else { 5 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Raises the open-files soft limit to the hard limit and returns it: the connection caps
/// must fit under it with room for the node's own files.
pub(crate) fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current != Some(hard)
    {
        let raised = Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %spark_error::chain(&error), "cannot raise the open-files limit");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_looks_often_enough() {
        let limits = ListenerLimits {
            header_read_timeout: Duration::from_millis(400),
            ..ListenerLimits::default()
        };
        assert_eq!(watch_period(&limits), Duration::from_millis(50));
        assert_eq!(
            watch_period(&ListenerLimits::default()),
            Duration::from_secs(1)
        );
    }
}
