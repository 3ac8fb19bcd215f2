//! The accept loop: HTTP/1.1 connections, each bounded in time, and a bound on how many are open.
//!
//! Every connection is always under one deadline (docs/security.md, "Connections"):
//!
//! - **idle** (`[serve] idle-timeout`, 60 s): no request in progress and no byte of the next one,
//!   as on a keep-alive connection between requests or one that never sends anything;
//! - **headers** (`header-read-timeout`, 10 s): from the first byte of a request to the end of its
//!   headers (a client that trickles them in, as slowloris does);
//! - **a blocked answer** (`idle-timeout` again): a response that the client does not read.
//!
//! The request body is bounded by `body-read-timeout` where the handlers read it
//! (`serve::http`), and the whole invocation by `request-timeout`. When a deadline passes the
//! connection is closed.
//!
//! At most `max-connections` are open at once, lowered at start so that file descriptors stay in
//! reserve for the workers and the platform ([`connection_limit`]). At the limit serve stops
//! accepting (new clients wait in the kernel's backlog until a connection ends or times out) and
//! says so in the log, once a minute at most, naming the setting.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::guard::Connection;

/// File descriptors kept for everything but client connections, at least: the workers' sockets
/// and pipes, the platform's connections, the state files.
const MIN_RESERVE: u64 = 64;
/// How often, at most, the log says again that the connection limit is being hit.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(60);

/// The bounds on connections (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) header_read: Duration,
    pub(super) idle: Duration,
    pub(super) max_connections: usize,
}

/// How many connections serve keeps open at most: `configured`, lowered so that a quarter of
/// the process's file descriptor limit (`ulimit -n`), and at least [`MIN_RESERVE`], stay free
/// for the rest of serve. The second value says why it was lowered, for the log.
pub(super) fn connection_limit(configured: usize) -> (usize, Option<String>) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let Some(nofile) = limit.current else {
        return (configured, None);
    };
    let reserve = (nofile / 4).max(MIN_RESERVE);
    let available = usize::try_from(nofile.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .max(1);
    if available >= configured {
        return (configured, None);
    }
    (
        available,
        Some(format!(
            "`[serve] max-connections` lowered from {configured} to {available}: the open file \
             limit is {nofile} (`ulimit -n`) and {reserve} are kept for the workers and the \
             platform; raise the limit to accept more connections"
        )),
    )
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting and waits for the
/// open connections to finish their requests (the caller bounds that wait: dropping this
/// future closes them all).
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let mut warned: Option<Instant> = None;
    let mut waited = 0u64;
    tokio::pin!(shutdown);
    loop {
        let permit = if let Ok(permit) = slots.clone().try_acquire_owned() {
            permit
        } else {
            waited += 1;
            if warned.is_none_or(|at| at.elapsed() >= LIMIT_LOG_EVERY) {
                warned = Some(Instant::now());
                tracing::warn!(
                    "{} client connections are open, the limit (`[serve] max-connections`, \
                     lowered to fit `ulimit -n`); new connections wait until one ends or times \
                     out ({waited} time(s) so far)",
                    limits.max_connections
                );
            }
            tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("never closed"),
                () = &mut shutdown => break,
                Some(_) = connections.join_next() => continue,
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_error(&err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            Some(_) = connections.join_next() => continue,
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let connection = Connection { peer, local };
        let (app, stopping) = (app.clone(), stopping.clone());
        connections.spawn(async move {
            let _permit = permit;
            serve_connection(stream, connection, app, limits, stopping).await;
        });
    }
    drop(listener);
    // Each open connection finishes the request it is on, then closes.
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

/// A failed `accept`: out of file descriptors (the limit above keeps a reserve, but other parts
/// of serve use them too) is logged and waited out; a connection the client reset before it was
/// accepted is nothing.
async fn accept_error(err: &std::io::Error) {
    if matches!(err.raw_os_error(), Some(code) if code == libc_emfile() || code == libc_enfile()) {
        tracing::warn!("cannot accept a connection: {err}; retrying in 100ms");
        tokio::time::sleep(Duration::from_millis(100)).await;
    } else {
        tracing::debug!("accept failed: {err}");
    }
}

fn libc_emfile() -> i32 {
    rustix::io::Errno::MFILE.raw_os_error()
}

fn libc_enfile() -> i32 {
    rustix::io::Errno::NFILE.raw_os_error()
}

/// One connection: HTTP/1.1 with keep-alive, under the deadlines of the module docs, until it
/// ends, a deadline passes (it is closed), or `stopping` turns true (it finishes the request it
/// is on, then closes).
async fn serve_connection(
    stream: TcpStream,
    connection: Connection,
    app: Router,
    limits: Limits,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let tracker = Tracker::new();
    let io = TokioIo::new(TrackedIo {
        stream,
        tracker: tracker.clone(),
    });
    let requests = tracker.clone();
    let service = hyper_util::service::TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(connection);
        requests.request_started();
        let tracker = requests.clone();
        let answer = service.call(request);
        async move {
            let response = answer.await?;
            Ok::<_, std::convert::Infallible>(response.map(|inner| TrackedBody {
                inner,
                done: Some(tracker),
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    let expired = tracker.expired(limits);
    tokio::pin!(expired);
    let mut shutting_down = *stopping.borrow();
    if shutting_down {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(peer = %connection.peer, "connection ended: {err}");
                }
                return;
            }
            why = &mut expired => {
                tracing::debug!(peer = %connection.peer, "closing the connection: {why}");
                return;
            }
            changed = stopping.changed(), if !shutting_down => {
                if changed.is_err() || *stopping.borrow() {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What a connection is doing, for its deadline.
#[derive(Debug)]
struct Activity {
    /// Requests being handled (their answers not yet fully written).
    requests: usize,
    /// When the first byte of the next request arrived, while no request is being handled.
    head_started: Option<Instant>,
    /// When the connection last became idle (opened, or its last answer written).
    idle_since: Instant,
    /// Since when a write has been waiting for the client to read.
    write_blocked_since: Option<Instant>,
}

/// An [`Activity`] shared by the connection's I/O, its requests and its watchdog.
#[derive(Debug)]
struct Tracker {
    activity: Mutex<Activity>,
    changed: Notify,
}

impl Tracker {
    fn new() -> Arc<Self> {
        Arc::new(Tracker {
            activity: Mutex::new(Activity {
                requests: 0,
                head_started: None,
                idle_since: Instant::now(),
                write_blocked_since: None,
            }),
            changed: Notify::new(),
        })
    }

    fn update(&self, change: impl FnOnce(&mut Activity) -> bool) {
        let changed = change(&mut self.activity.lock().expect("activity poisoned"));
        if changed {
            self.changed.notify_one();
        }
    }

    fn bytes_read(&self) {
        self.update(|a| {
            if a.requests == 0 && a.head_started.is_none() {
                a.head_started = Some(Instant::now());
                true
            } else {
                false
            }
        });
    }

    fn write_blocked(&self, blocked: bool) {
        self.update(|a| match (blocked, a.write_blocked_since) {
            (true, None) => {
                a.write_blocked_since = Some(Instant::now());
                true
            }
            (false, Some(_)) => {
                a.write_blocked_since = None;
                true
            }
            _ => false,
        });
    }

    fn request_started(&self) {
        self.update(|a| {
            a.requests += 1;
            a.head_started = None;
            true
        });
    }

    fn request_finished(&self) {
        self.update(|a| {
            a.requests = a.requests.saturating_sub(1);
            if a.requests == 0 {
                a.idle_since = Instant::now();
                a.head_started = None;
            }
            true
        });
    }

    /// When the connection is to be closed, as things stand; `None` while a request is handled
    /// and its answer is not blocked (the handlers bound that themselves).
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        let a = self.activity.lock().expect("activity poisoned");
        if let Some(since) = a.write_blocked_since {
            return Some((since + limits.idle, "the client did not read its answer"));
        }
        if a.requests > 0 {
            return None;
        }
        Some(match a.head_started {
            Some(at) => (
                at + limits.header_read,
                "the request headers did not arrive",
            ),
            None => (a.idle_since + limits.idle, "idle"),
        })
    }

    /// Resolves when the deadline passes (see [`Tracker::deadline`]), with the reason.
    async fn expired(&self, limits: Limits) -> &'static str {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.deadline(&limits) {
                Some((at, why)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {
                            if self.deadline(&limits).is_some_and(|(now_at, _)| now_at <= Instant::now()) {
                                return why;
                            }
                        }
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// The stream, telling its [`Tracker`] what it reads and when a write waits.
struct TrackedIo {
    stream: TcpStream,
    tracker: Arc<Tracker>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.tracker.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.tracker.write_blocked(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.tracker.write_blocked(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that tells the [`Tracker`] when the answer is written (or dropped).
struct TrackedBody {
    inner: Body,
    done: Option<Arc<Tracker>>,
}

impl TrackedBody {
    fn finish(&mut self) {
        if let Some(tracker) = self.done.take() {
            tracker.request_finished();
        }
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
