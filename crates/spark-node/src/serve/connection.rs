//! One client connection: what it holds, the stream wrapper that notices what the client
//! sends and when it stops taking what we send, and the verdict that closes it.
//!
//! A connection is closed when it never finishes a request head (`header_read_timeout`,
//! counted from accept, or from the first byte of a head begun on an idle connection), sits
//! idle (`idle_timeout`), stops taking a response (`send_timeout`: a write blocked that long,
//! or a response body not asked for its next frame that long, which is how an HTTP/2 window
//! held at zero shows), or abandons more requests than its reset budget allows (HTTP/2
//! `RST_STREAM` floods). Closing a connection drops every request future and response body
//! on it, and with them every slot, reservation and guest they hold.
//!
//! The decision worth knowing: [`verdict`] is pure (a snapshot of the connection and the time
//! in, a decision out), so the rules are tested without sockets or clocks; the watchdog in
//! `listener` only samples and acts.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use spark_manifest::ListenerLimits;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a connection was closed by the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No complete request head in time (slowloris, or a socket that never speaks).
    HeaderTimeout,
    /// No request for `idle_timeout`.
    Idle,
    /// The client stopped taking a response for `send_timeout`.
    SendStall,
    /// The client abandoned more requests than its budget allows.
    ResetBudget,
    /// The TLS handshake failed or did not finish in time.
    Handshake,
    /// Answered and finished, the client was still sending when its linger ran out
    /// (`serve::linger`).
    Linger,
}

impl CloseReason {
    pub const ALL: [CloseReason; 6] = [
        CloseReason::HeaderTimeout,
        CloseReason::Idle,
        CloseReason::SendStall,
        CloseReason::ResetBudget,
        CloseReason::Handshake,
        CloseReason::Linger,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::Idle => "idle",
            CloseReason::SendStall => "send_stall",
            CloseReason::ResetBudget => "reset_budget",
            CloseReason::Handshake => "tls_handshake",
            CloseReason::Linger => "linger_cut",
        }
    }
}

/// What the watchdog decides about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    Close(CloseReason),
}

/// A connection's state at one instant, as [`verdict`] sees it. Times are since accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Observed {
    pub now: Duration,
    /// Requests whose response is not finished yet.
    pub in_flight: u32,
    /// Requests started on the connection so far.
    pub requests: u64,
    /// When the connection last had no request in flight (accept, at first).
    pub idle_since: Duration,
    /// The first byte received since it went idle (a request head begun), if any.
    pub first_byte: Option<Duration>,
    /// Since when a write has been blocked on the client, if one is.
    pub write_blocked: Option<Duration>,
    /// The oldest response body that handed over a frame and has not been asked for the
    /// next one since.
    pub oldest_stall: Option<Duration>,
    /// HTTP/2 (control frames arrive on idle connections, so a begun head is timed by the
    /// idle timeout instead).
    pub h2: bool,
    /// The reset budget is spent.
    pub abusive: bool,
}

/// The rules, in one place.
pub(crate) fn verdict(o: &Observed, limits: &ListenerLimits) -> Verdict {
    let since = |t: Duration| o.now.saturating_sub(t);
    if o.abusive {
        return Verdict::Close(CloseReason::ResetBudget);
    }
    let stalled = [o.write_blocked, o.oldest_stall]
        .into_iter()
        .flatten()
        .any(|t| since(t) >= limits.send_timeout);
    if stalled {
        return Verdict::Close(CloseReason::SendStall);
    }
    if o.in_flight > 0 {
        return Verdict::Keep;
    }
    if o.requests == 0 && since(Duration::ZERO) >= limits.header_read_timeout {
        return Verdict::Close(CloseReason::HeaderTimeout);
    }
    let head_limit = if o.h2 {
        limits.idle_timeout
    } else {
        limits.header_read_timeout
    };
    if o.first_byte.is_some_and(|t| since(t) >= head_limit) {
        return Verdict::Close(CloseReason::HeaderTimeout);
    }
    if since(o.idle_since) >= limits.idle_timeout {
        return Verdict::Close(CloseReason::Idle);
    }
    Verdict::Keep
}

/// A shared view of one connection, updated by its stream, its requests and their bodies.
pub(crate) struct Connection {
    accepted: Instant,
    in_flight: AtomicU32,
    requests: AtomicU64,
    /// Stamps are nanoseconds since accept plus one; zero means "none".
    idle_since: AtomicU64,
    first_byte: AtomicU64,
    write_blocked: AtomicU64,
    h2: AtomicBool,
    sniffed: AtomicBool,
    stalls: Mutex<Vec<Weak<AtomicU64>>>,
    resets: Mutex<ResetBudget>,
    abusive: AtomicBool,
    /// The node cut it for how its client behaved (anything but idleness).
    cut: AtomicBool,
    /// Wakes the watchdog when the connection must go now.
    pub(crate) alarm: Notify,
}

impl Connection {
    /// A connection accepted at `accepted`.
    pub(crate) fn new(reset_budget: u32, accepted: Instant) -> Arc<Connection> {
        Arc::new(Connection {
            accepted,
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(1),
            first_byte: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            sniffed: AtomicBool::new(false),
            stalls: Mutex::new(Vec::new()),
            resets: Mutex::new(ResetBudget::new(reset_budget)),
            abusive: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            alarm: Notify::new(),
        })
    }

    fn stamp(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn read(stamp: &AtomicU64) -> Option<Duration> {
        match stamp.load(Ordering::Acquire) {
            0 => None,
            n => Some(Duration::from_nanos(n - 1)),
        }
    }

    /// The connection as the watchdog sees it now.
    pub(crate) fn observe(&self) -> Observed {
        let oldest_stall = {
            let mut stalls = self.stalls.lock().expect("stalls lock");
            stalls.retain(|w| w.strong_count() > 0);
            stalls
                .iter()
                .filter_map(Weak::upgrade)
                .filter_map(|s| Self::read(&s))
                .min()
        };
        Observed {
            now: self.accepted.elapsed(),
            in_flight: self.in_flight.load(Ordering::Acquire),
            requests: self.requests.load(Ordering::Acquire),
            idle_since: Self::read(&self.idle_since).unwrap_or_default(),
            first_byte: Self::read(&self.first_byte),
            write_blocked: Self::read(&self.write_blocked),
            oldest_stall,
            h2: self.h2.load(Ordering::Relaxed),
            abusive: self.abusive.load(Ordering::Acquire),
        }
    }

    /// When it was accepted.
    pub(crate) fn accepted(&self) -> Instant {
        self.accepted
    }

    /// Whether it was used as connections are meant to be: a request head arrived on it, and
    /// the node did not have to cut it for how its client behaved (its connection token goes
    /// back, `serve::connection_rate`).
    pub(crate) fn well_used(&self) -> bool {
        self.requests.load(Ordering::Acquire) > 0 && !self.cut.load(Ordering::Acquire)
    }

    /// The node closes it for how its client behaved: a stalled head, body or read, more
    /// abandoned requests than its budget, a linger cut short.
    pub(crate) fn cut(&self, reason: CloseReason) {
        if reason != CloseReason::Idle {
            self.cut.store(true, Ordering::Release);
        }
    }

    /// Marks the connection as HTTP/2 (from ALPN, or from the preface it sent).
    pub(crate) fn set_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }

    /// Bytes arrived; the first chunk tells HTTP/2 (its preface) from HTTP/1.
    fn received(&self, first_chunk: &[u8]) {
        if !self.sniffed.swap(true, Ordering::Relaxed) && first_chunk.starts_with(b"PRI * HTTP/2") {
            self.set_h2();
        }
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.first_byte.load(Ordering::Acquire) == 0
        {
            self.first_byte.store(self.stamp(), Ordering::Release);
        }
    }

    fn write_blocked(&self) {
        if self.write_blocked.load(Ordering::Relaxed) == 0 {
            self.write_blocked.store(self.stamp(), Ordering::Release);
        }
    }

    fn wrote(&self) {
        if self.write_blocked.load(Ordering::Relaxed) != 0 {
            self.write_blocked.store(0, Ordering::Release);
        }
    }

    /// A request's head arrived: it is in flight until the guard is dropped.
    pub(crate) fn request(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.first_byte.store(0, Ordering::Release);
        RequestGuard {
            conn: self.clone(),
            complete: false,
        }
    }

    /// Watches a response body for stalls: the stamp is set while it waits to be polled.
    pub(crate) fn watch_body(&self) -> Arc<AtomicU64> {
        let watch = Arc::new(AtomicU64::new(0));
        self.stalls
            .lock()
            .expect("stalls lock")
            .push(Arc::downgrade(&watch));
        watch
    }

    pub(crate) fn stall_started(&self, watch: &AtomicU64) {
        watch.store(self.stamp(), Ordering::Release);
    }

    fn abandoned(&self) {
        let spent = !self
            .resets
            .lock()
            .expect("reset budget lock")
            .take(self.accepted.elapsed());
        if spent && !self.abusive.swap(true, Ordering::AcqRel) {
            self.alarm.notify_one();
        }
    }
}

/// A request in flight on a connection. Dropped before [`RequestGuard::complete`], the
/// request counts as abandoned by the client (a reset stream or a close mid-request).
pub(crate) struct RequestGuard {
    conn: Arc<Connection>,
    complete: bool,
}

impl RequestGuard {
    pub(crate) fn complete(&mut self) {
        self.complete = true;
    }

    pub(crate) fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let conn = &self.conn;
        if conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            conn.first_byte.store(0, Ordering::Release);
            conn.idle_since.store(conn.stamp(), Ordering::Release);
        }
        if !self.complete {
            conn.abandoned();
        }
    }
}

/// Requests a connection may abandon: a bucket of `budget` refilled at `budget` per minute.
#[derive(Debug)]
struct ResetBudget {
    budget: f64,
    tokens: f64,
    last: Duration,
}

const RESET_REFILL: Duration = Duration::from_secs(60);

impl ResetBudget {
    fn new(budget: u32) -> ResetBudget {
        ResetBudget {
            budget: f64::from(budget),
            tokens: f64::from(budget),
            last: Duration::ZERO,
        }
    }

    /// Takes one abandonment at `now`; false once the budget is spent.
    fn take(&mut self, now: Duration) -> bool {
        let refill = now.saturating_sub(self.last).as_secs_f64() / RESET_REFILL.as_secs_f64();
        self.tokens = (self.tokens + refill * self.budget).min(self.budget);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pin_project_lite::pin_project! {
    /// A client stream that tells its [`Connection`] what arrives and when writes block.
    pub struct Watched<IO> {
        #[pin]
        io: IO,
        conn: Arc<Connection>,
    }
}

impl<IO> Watched<IO> {
    pub(crate) fn new(io: IO, conn: Arc<Connection>) -> Watched<IO> {
        Watched { io, conn }
    }
}

impl<IO: AsyncRead> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.received(&buf.filled()[before..]);
        }
        polled
    }
}

impl<IO: AsyncWrite> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.io.poll_write(cx, buf);
        note_write(this.conn, &polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.io.poll_write_vectored(cx, bufs);
        note_write(this.conn, &polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let polled = this.io.poll_flush(cx);
        match polled {
            Poll::Pending => this.conn.write_blocked(),
            Poll::Ready(_) => this.conn.wrote(),
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

fn note_write(conn: &Connection, polled: &Poll<io::Result<usize>>) {
    match polled {
        Poll::Pending => conn.write_blocked(),
        Poll::Ready(Ok(n)) if *n > 0 => conn.wrote(),
        Poll::Ready(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ListenerLimits {
        ListenerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(20),
            ..ListenerLimits::default()
        }
    }

    fn at(secs: u64) -> Observed {
        Observed {
            now: Duration::from_secs(secs),
            ..Observed::default()
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_socket_that_never_sends_a_head_is_closed_at_the_header_timeout() {
        assert_eq!(verdict(&at(9), &limits()), Verdict::Keep);
        assert_eq!(
            verdict(&at(10), &limits()),
            Verdict::Close(CloseReason::HeaderTimeout)
        );
        let trickling = Observed {
            first_byte: Some(S(1)),
            ..at(10)
        };
        assert_eq!(
            verdict(&trickling, &limits()),
            Verdict::Close(CloseReason::HeaderTimeout),
            "slowloris: bytes keep coming, the head never completes"
        );
    }

    #[test]
    fn a_head_begun_on_an_idle_keepalive_connection_has_the_header_timeout() {
        let served = Observed {
            requests: 3,
            idle_since: S(100),
            ..at(105)
        };
        assert_eq!(verdict(&served, &limits()), Verdict::Keep);
        let begun = Observed {
            first_byte: Some(S(104)),
            ..served
        };
        assert_eq!(
            verdict(
                &Observed {
                    now: S(113),
                    ..begun
                },
                &limits()
            ),
            Verdict::Keep
        );
        assert_eq!(
            verdict(
                &Observed {
                    now: S(114),
                    ..begun
                },
                &limits()
            ),
            Verdict::Close(CloseReason::HeaderTimeout)
        );
        let h2 = Observed { h2: true, ..begun };
        assert_eq!(
            verdict(&Observed { now: S(114), ..h2 }, &limits()),
            Verdict::Keep,
            "an idle HTTP/2 peer sends pings and window updates: only the idle timeout applies"
        );
    }

    #[test]
    fn idle_connections_close_and_busy_ones_do_not() {
        let idle = Observed {
            requests: 1,
            idle_since: S(5),
            ..at(64)
        };
        assert_eq!(verdict(&idle, &limits()), Verdict::Keep);
        assert_eq!(
            verdict(&Observed { now: S(65), ..idle }, &limits()),
            Verdict::Close(CloseReason::Idle)
        );
        let busy = Observed {
            in_flight: 1,
            now: S(600),
            ..idle
        };
        assert_eq!(
            verdict(&busy, &limits()),
            Verdict::Keep,
            "a long request is not idle"
        );
    }

    #[test]
    fn a_client_that_stops_reading_is_closed_at_the_send_timeout() {
        let blocked = Observed {
            in_flight: 1,
            requests: 1,
            write_blocked: Some(S(30)),
            ..at(49)
        };
        assert_eq!(verdict(&blocked, &limits()), Verdict::Keep);
        assert_eq!(
            verdict(
                &Observed {
                    now: S(50),
                    ..blocked
                },
                &limits()
            ),
            Verdict::Close(CloseReason::SendStall)
        );
        let window_closed = Observed {
            in_flight: 1,
            requests: 1,
            h2: true,
            oldest_stall: Some(S(30)),
            ..at(50)
        };
        assert_eq!(
            verdict(&window_closed, &limits()),
            Verdict::Close(CloseReason::SendStall)
        );
    }

    #[test]
    fn the_reset_budget_refills_over_a_minute() {
        let mut budget = ResetBudget::new(3);
        assert!((0..3).all(|_| budget.take(S(0))));
        assert!(!budget.take(S(1)), "spent");
        assert!(budget.take(S(21)), "a third of a minute gives one back");
        assert!(!budget.take(S(21)));
        let abusive = Observed {
            abusive: true,
            ..at(1)
        };
        assert_eq!(
            verdict(&abusive, &limits()),
            Verdict::Close(CloseReason::ResetBudget)
        );
    }

    #[tokio::test]
    async fn guards_keep_the_connection_busy_and_count_abandonment() {
        let conn = Connection::new(1, Instant::now());
        let mut done = conn.request();
        assert_eq!(conn.observe().in_flight, 1);
        done.complete();
        drop(done);
        let o = conn.observe();
        assert_eq!((o.in_flight, o.requests, o.abusive), (0, 1, false));
        drop(conn.request());
        assert!(
            !conn.observe().abusive,
            "one abandonment is within a budget of one"
        );
        drop(conn.request());
        assert!(conn.observe().abusive, "the second is not");
    }
}
