//! A running function: `numWorkers` Python worker processes and the request path to them.
//!
//! Each worker is owned by a supervisor task that listens on the worker's Unix socket, spawns
//! the process, accepts its one connection, waits for `S` (ready) or `F` (init failed), and then
//! watches it: when the connection closes or the process exits, the request it was serving (if
//! any) gets [`InvokeError::Crashed`], and the worker is started again after a backoff (100 ms
//! doubling to 5 s, reset once a worker stayed up for 10 s).
//!
//! The request path is lean: encode the event frame, take an idle worker (a fair semaphore
//! counts idle workers; requests queue on it, bounded by the request timeout), register a
//! one-shot for the answer, write the frame (one write), await the answer. A per-worker reader
//! task reads every frame the worker sends: `R` completes the pending request and puts the worker
//! back to idle, `L` becomes a `tracing` event. No process or connection is set up per request.
//! A request that times out kills its worker (which is then restarted): a worker that is stuck
//! in a handler cannot take the next event anyway.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixListener;
use tokio::process::Child;
use tokio::sync::{oneshot, watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use super::protocol::{self, FrameError, KIND_INIT_FAILED, KIND_LOG, KIND_READY, KIND_RESPONSE};
use crate::platform::{InvokeError, InvokeRequest, InvokeResponse, PlatformError};
use crate::proc::Cmd;

/// How long a worker may take to connect to its socket after it was spawned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long every task's `init_context` may take in one worker.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a worker gets to exit after `Q` before it is killed.
const QUIT_GRACE: Duration = Duration::from_secs(2);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A worker that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Lines of a worker's own stdout/stderr kept to explain a failed start.
const TAIL_LINES: usize = 40;

/// What a pool runs.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub function: String,
    /// The store entry id of the version it runs.
    pub version_id: String,
    pub artifact_dir: PathBuf,
    pub python: PathBuf,
    /// Environment of every worker (spec env, proxy URL, PYTHONPATH…).
    pub env: Vec<(OsString, OsString)>,
    pub num_workers: usize,
    pub request_timeout: Duration,
}

/// Why [`Pool::invoke`] did not answer.
#[derive(Debug)]
pub enum PoolError {
    /// The pool is stopping: the caller should retry on the function's current pool.
    Retired,
    Invoke(InvokeError),
}

pub(super) type Answer = Result<InvokeResponse, String>;

/// One connected, ready worker.
pub(super) struct Conn {
    pub(super) index: usize,
    pub(super) pid: u32,
    pub(super) writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pub(super) state: Mutex<ConnState>,
    /// Asks the supervisor to kill this worker (request timeout, broken write).
    pub(super) kill: Notify,
}

#[derive(Default)]
pub(super) struct ConnState {
    pub(super) dead: bool,
    pub(super) pending: Option<oneshot::Sender<Answer>>,
}

impl Conn {
    /// Registers the request about to be sent; `false` when the worker is gone.
    pub(super) fn begin(&self, answer: oneshot::Sender<Answer>) -> bool {
        let mut state = self.state.lock().expect("conn state poisoned");
        if state.dead {
            return false;
        }
        state.pending = Some(answer);
        true
    }

    /// Gives up on the pending request and has the worker killed. `false` when the answer was
    /// already delivered (then the worker is healthy and back in the pool).
    pub(super) fn abandon(&self) -> bool {
        let mut state = self.state.lock().expect("conn state poisoned");
        if state.pending.take().is_none() && !state.dead {
            return false;
        }
        state.dead = true;
        drop(state);
        self.kill.notify_one();
        true
    }

    /// Marks the worker gone, returning the request it was serving.
    pub(super) fn close(&self) -> Option<oneshot::Sender<Answer>> {
        let mut state = self.state.lock().expect("conn state poisoned");
        state.dead = true;
        state.pending.take()
    }
}

pub(super) struct Shared {
    pub(super) spec: PoolSpec,
    pub(super) socket_dir: PathBuf,
    idle: Mutex<Vec<Arc<Conn>>>,
    /// One permit per idle worker; closed when the pool stops.
    permits: Semaphore,
    /// Workers connected and ready.
    pub(super) live: AtomicUsize,
    in_flight: AtomicUsize,
    in_flight_done: Notify,
    next_event: AtomicU64,
    pub(super) next_socket: AtomicU64,
    pub(super) stop: watch::Sender<bool>,
    pub(super) restarts: Arc<AtomicU64>,
    pub(super) pids: Mutex<Vec<Option<u32>>>,
}

impl Shared {
    pub(super) fn release(&self, conn: Arc<Conn>) {
        self.idle.lock().expect("idle list poisoned").push(conn);
        self.permits.add_permits(1);
    }

    pub(super) fn function(&self) -> &str {
        &self.spec.function
    }
}

/// A running set of workers for one version of one function.
pub struct Pool {
    shared: Arc<Shared>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
    /// Keeps the version's files from being collected while the pool runs.
    hold: Mutex<Option<File>>,
}

impl Pool {
    /// Starts every worker and returns once all of them are ready (every `init_context`
    /// finished). If any worker fails to start, the others are stopped and the first failure
    /// (by worker index) is returned.
    pub async fn start(spec: PoolSpec, restarts: Arc<AtomicU64>) -> Result<Arc<Pool>, PlatformError> {
        let socket_dir = socket_dir()?;
        let workers = spec.num_workers.max(1);
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            socket_dir,
            idle: Mutex::new(Vec::with_capacity(workers)),
            permits: Semaphore::new(0),
            live: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            in_flight_done: Notify::new(),
            next_event: AtomicU64::new(1),
            next_socket: AtomicU64::new(0),
            stop,
            restarts,
            pids: Mutex::new(vec![None; workers]),
            spec,
        });
        let mut firsts = Vec::with_capacity(workers);
        let mut supervisors = Vec::with_capacity(workers);
        for index in 0..workers {
            let (tx, rx) = oneshot::channel();
            firsts.push(rx);
            supervisors.push(tokio::spawn(supervise(shared.clone(), index, tx)));
        }
        let pool = Arc::new(Pool {
            shared,
            supervisors: Mutex::new(supervisors),
            hold: Mutex::new(None),
        });
        let mut failure = None;
        for first in firsts {
            let result = first.await.unwrap_or_else(|_| {
                Err(PlatformError::Other(
                    "a worker supervisor ended unexpectedly".to_string(),
                ))
            });
            if let Err(e) = result {
                failure.get_or_insert(e);
            }
        }
        match failure {
            Some(e) => {
                pool.stop(Duration::ZERO).await;
                Err(e)
            }
            None => {
                tracing::info!(
                    function = pool.shared.function(),
                    workers,
                    "all workers are ready"
                );
                Ok(pool)
            }
        }
    }

    pub fn version_id(&self) -> &str {
        &self.shared.spec.version_id
    }

    /// Keeps `hold` (the version's in-use lock) for the pool's life.
    pub fn keep(&self, hold: File) {
        *self.hold.lock().expect("hold poisoned") = Some(hold);
    }

    /// Process ids of the workers currently running (by worker index).
    pub fn worker_pids(&self) -> Vec<Option<u32>> {
        self.shared.pids.lock().expect("pids poisoned").clone()
    }

    /// Runs one request on an idle worker, waiting for one up to the request timeout.
    pub async fn invoke(&self, request: &InvokeRequest) -> Result<InvokeResponse, PoolError> {
        let shared = &self.shared;
        let timeout = shared.spec.request_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let id = shared.next_event.fetch_add(1, Ordering::Relaxed);
        let frame = protocol::encode_event(request, id, unix_now());
        let _in_flight = InFlight::enter(shared);
        let function = || shared.spec.function.clone();
        loop {
            let permit = match tokio::time::timeout_at(deadline, shared.permits.acquire()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_closed)) => return Err(PoolError::Retired),
                Err(_elapsed) if shared.live.load(Ordering::Acquire) == 0 => {
                    return Err(PoolError::Invoke(InvokeError::Unavailable {
                        function: function(),
                        reason: "no worker is running (they are restarting after a crash)"
                            .to_string(),
                    }))
                }
                Err(_elapsed) => {
                    return Err(PoolError::Invoke(InvokeError::Timeout {
                        function: function(),
                        timeout,
                    }))
                }
            };
            permit.forget();
            let Some(conn) = shared.idle.lock().expect("idle list poisoned").pop() else {
                continue;
            };
            let (tx, mut rx) = oneshot::channel();
            if !conn.begin(tx) {
                // Died while idle; its supervisor restarts it. Take the next one.
                continue;
            }
            let mut armed = KillUnlessSent(Some(&conn));
            let written = conn.writer.lock().await.write_all(&frame).await;
            armed.0 = None;
            if let Err(e) = written {
                conn.abandon();
                return Err(PoolError::Invoke(InvokeError::Crashed {
                    function: function(),
                    reason: format!("could not send the request to worker {}: {e}", conn.index),
                }));
            }
            let answer: Answer = match tokio::time::timeout_at(deadline, &mut rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(format!("worker {} stopped before answering", conn.index)),
                Err(_elapsed) => {
                    if conn.abandon() {
                        tracing::warn!(
                            function = shared.function(),
                            worker = conn.index,
                            pid = conn.pid,
                            "request timed out after {timeout:?}; killing the worker"
                        );
                        return Err(PoolError::Invoke(InvokeError::Timeout {
                            function: function(),
                            timeout,
                        }));
                    }
                    // The answer arrived right at the deadline: use it.
                    rx.try_recv().unwrap_or_else(|_| {
                        Err(format!("worker {} stopped before answering", conn.index))
                    })
                }
            };
            return answer.map_err(|reason| {
                PoolError::Invoke(InvokeError::Crashed {
                    function: function(),
                    reason,
                })
            });
        }
    }

    /// Stops the pool: no new requests (they get [`PoolError::Retired`]), requests in flight
    /// may finish for up to `drain`, then every worker gets `Q` and, after a grace period, is
    /// killed. Idempotent.
    pub async fn stop(&self, drain: Duration) {
        let shared = &self.shared;
        shared.permits.close();
        let deadline = tokio::time::Instant::now() + drain;
        loop {
            let done = shared.in_flight_done.notified();
            if shared.in_flight.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                break;
            }
        }
        shared.stop.send_replace(true);
        let supervisors = std::mem::take(&mut *self.supervisors.lock().expect("poisoned"));
        for handle in supervisors {
            let _ = handle.await;
        }
        let _ = std::fs::remove_dir_all(&shared.socket_dir);
        self.hold.lock().expect("hold poisoned").take();
    }
}

/// Counts a request in flight for the drain in [`Pool::stop`].
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.in_flight_done.notify_waiters();
        }
    }
}

/// Kills the worker if the request future is dropped halfway through writing its frame (the
/// stream would be out of sync).
struct KillUnlessSent<'a>(Option<&'a Conn>);

impl Drop for KillUnlessSent<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.0 {
            conn.abandon();
        }
    }
}

/// A fresh private directory for a pool's sockets, short enough for `sun_path` (108 bytes).
fn socket_dir() -> Result<PathBuf, PlatformError> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() <= 60 {
        base
    } else {
        PathBuf::from("/tmp")
    };
    let dir = base.join(format!("fz-{}", super::state::nonce()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| PlatformError::io(format!("cannot create `{}`", dir.display()), e))?;
    Ok(dir)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A started worker, as its supervisor holds it.
struct Running {
    child: Child,
    conn: Arc<Conn>,
    /// The reader task; ends with the reason the connection ended.
    reader: JoinHandle<String>,
    /// The stdout/stderr pumps.
    pumps: Vec<JoinHandle<()>>,
}

/// How a running worker's life ended.
enum End {
    Closed(String),
    Exited(std::io::Result<ExitStatus>),
    Killed,
    Stop,
}

/// Owns worker `index` of a pool: starts it, reports the first start through `first`, restarts
/// it with backoff whenever it dies, and stops it when the pool stops.
async fn supervise(
    shared: Arc<Shared>,
    index: usize,
    first: oneshot::Sender<Result<(), PlatformError>>,
) {
    let mut first = Some(first);
    let mut stop = shared.stop.subscribe();
    let mut backoff = BACKOFF_START;
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        let started = tokio::select! {
            started = start_worker(&shared, index) => started,
            // Dropping the start kills the half-started process (kill_on_drop).
            _ = stop.changed() => return,
        };
        let mut worker = match started {
            Ok(worker) => worker,
            Err(e) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Err(e));
                    return;
                }
                tracing::warn!(
                    function = shared.function(),
                    worker = index,
                    "could not restart the worker, retrying in {backoff:?}: {}",
                    describe_error(&e)
                );
                if !pause(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let pid = worker.conn.pid;
        match first.take() {
            Some(first) => {
                let _ = first.send(Ok(()));
            }
            None => tracing::info!(
                function = shared.function(),
                worker = index,
                pid,
                "worker restarted"
            ),
        }
        shared.pids.lock().expect("pids poisoned")[index] = Some(pid);
        let up_since = Instant::now();
        shared.live.fetch_add(1, Ordering::AcqRel);
        shared.release(worker.conn.clone());
        let end = tokio::select! {
            reason = &mut worker.reader => End::Closed(reason.unwrap_or_else(|e| e.to_string())),
            status = worker.child.wait() => End::Exited(status),
            _ = worker.conn.kill.notified() => End::Killed,
            _ = stop.changed() => End::Stop,
        };
        shared.live.fetch_sub(1, Ordering::AcqRel);
        shared.pids.lock().expect("pids poisoned")[index] = None;
        if let End::Stop = end {
            quit(&shared, worker).await;
            return;
        }
        let pending = worker.conn.close();
        let _ = worker.child.start_kill();
        let status = match &end {
            End::Exited(status) => status.as_ref().ok().copied(),
            _ => tokio::time::timeout(QUIT_GRACE, worker.child.wait())
                .await
                .ok()
                .and_then(Result::ok),
        };
        worker.reader.abort();
        let what = match end {
            End::Killed => format!("worker {index} (pid {pid}) was killed after a request timed out"),
            End::Closed(reason) if status.is_none() => {
                format!("worker {index} (pid {pid}) {reason}")
            }
            _ => format!("worker {index} (pid {pid}) {}", describe_status(status)),
        };
        if let Some(pending) = pending {
            let _ = pending.send(Err(what.clone()));
        }
        shared.restarts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            function = shared.function(),
            worker = index,
            "{what}; restarting it in {backoff:?}"
        );
        if up_since.elapsed() >= STABLE_AFTER {
            backoff = BACKOFF_START;
        }
        if !pause(&mut stop, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Waits `backoff`; `false` when the pool is stopping instead.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(backoff) => true,
        _ = stop.changed() => false,
    }
}

/// Stops a running worker: `Q`, then a grace period, then kill.
async fn quit(shared: &Shared, mut worker: Running) {
    let quit = protocol::encode_simple(protocol::KIND_QUIT);
    let _ = worker.conn.writer.lock().await.write_all(&quit).await;
    if tokio::time::timeout(QUIT_GRACE, worker.child.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            function = shared.function(),
            worker = worker.conn.index,
            "worker did not exit after `Q`; killing it"
        );
        let _ = worker.child.start_kill();
        let _ = worker.child.wait().await;
    }
    // Answers already written before the exit are still delivered.
    let _ = tokio::time::timeout(QUIT_GRACE, &mut worker.reader).await;
    worker.reader.abort();
    if let Some(pending) = worker.conn.close() {
        let _ = pending.send(Err(format!(
            "worker {} was stopped before it answered",
            worker.conn.index
        )));
    }
    for pump in worker.pumps {
        pump.abort();
    }
}

fn describe_status(status: Option<ExitStatus>) -> String {
    match status {
        None => "closed its connection".to_string(),
        Some(status) => match (status.code(), status.signal()) {
            (_, Some(signal)) => format!("was killed by signal {signal}"),
            (Some(code), _) => format!("exited with status {code}"),
            (None, None) => "exited".to_string(),
        },
    }
}

fn describe_error(e: &PlatformError) -> String {
    match e {
        PlatformError::Deploy {
            message,
            detail: Some(detail),
            ..
        } => format!("{message}\n{detail}"),
        other => other.to_string(),
    }
}

/// `text` as an indented `|` frame under `title`.
pub(super) fn framed(title: &str, text: &str) -> String {
    let mut out = String::from(title);
    for line in text.trim_end().lines() {
        out.push_str("\n    | ");
        out.push_str(line);
    }
    out
}

/// Spawns worker `index` and waits until it is ready.
async fn start_worker(shared: &Arc<Shared>, index: usize) -> Result<Running, PlatformError> {
    let spec = &shared.spec;
    let function = spec.function.clone();
    let n = shared.next_socket.fetch_add(1, Ordering::Relaxed);
    let path = shared.socket_dir.join(format!("w{index}-{n}.sock"));
    let listener = UnixListener::bind(&path)
        .map_err(|e| PlatformError::io(format!("cannot listen on `{}`", path.display()), e))?;
    let mut cmd = Cmd::new(&spec.python)
        .args(["-u", "-m", "fusionizer_dispatcher.worker", "--socket"])
        .arg(&path)
        .arg("--handler")
        .arg(format!("{}:handler", crate::fuse::ENTRY_MODULE))
        .arg("--worker-id")
        .arg(index.to_string())
        .arg("--function")
        .arg(&spec.function)
        .cwd(&spec.artifact_dir);
    for (key, value) in &spec.env {
        cmd = cmd.env(key, value);
    }
    let mut child = cmd.spawn().map_err(|e| PlatformError::Deploy {
        function: function.clone(),
        message: format!("could not start worker {index}"),
        detail: Some(e.to_string()),
    })?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let mut pumps = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(stdout, function.clone(), index, false, tail.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(stderr, function.clone(), index, true, tail.clone())));
    }
    let fail = |message: String, with_tail: bool| {
        let output = tail
            .lock()
            .expect("tail poisoned")
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        PlatformError::Deploy {
            function: function.clone(),
            message,
            detail: (with_tail && !output.is_empty()).then(|| framed("worker output:", &output)),
        }
    };
    let accepted = tokio::select! {
        accepted = listener.accept() => accepted.map_err(|e| format!("worker {index} could not connect: {e}")),
        status = child.wait() => Err(format!(
            "worker {index} {} before it connected",
            describe_status(status.ok())
        )),
        _ = tokio::time::sleep(CONNECT_TIMEOUT) => Err(format!(
            "worker {index} did not connect within {CONNECT_TIMEOUT:?}"
        )),
    };
    drop(listener);
    let _ = std::fs::remove_file(&path);
    let stream = match accepted {
        Ok((stream, _)) => stream,
        Err(message) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            settle(&mut pumps).await;
            return Err(fail(message, true));
        }
    };
    let (read, write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let ready = loop {
        let frame = tokio::select! {
            frame = protocol::read_frame(&mut reader) => frame,
            _ = tokio::time::sleep_until(deadline) => {
                let _ = child.start_kill();
                return Err(fail(format!(
                    "worker {index} did not finish `init_context` within {READY_TIMEOUT:?}"
                ), true));
            }
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                let reason = match e {
                    FrameError::Closed | FrameError::Io(_) => {
                        let status = tokio::time::timeout(QUIT_GRACE, child.wait()).await;
                        describe_status(status.ok().and_then(Result::ok))
                    }
                    invalid => invalid.to_string(),
                };
                let _ = child.start_kill();
                settle(&mut pumps).await;
                return Err(fail(format!("worker {index} {reason} before it was ready"), true));
            }
        };
        match frame.kind {
            KIND_READY => break protocol::decode_json::<protocol::Ready>("ready", &frame.payload),
            KIND_INIT_FAILED => {
                let _ = child.start_kill();
                let failed: protocol::InitFailed =
                    protocol::decode_json("init failure", &frame.payload).unwrap_or_else(|e| {
                        protocol::InitFailed {
                            task: None,
                            error: e.to_string(),
                        }
                    });
                let message = match &failed.task {
                    Some(task) => format!("`init_context` of task `{task}` failed"),
                    None => format!("worker {index} failed to initialise"),
                };
                return Err(PlatformError::Deploy {
                    function,
                    message,
                    detail: Some(framed("traceback:", &failed.error)),
                });
            }
            KIND_LOG => log_frame(&function, &frame.payload),
            other => {
                let _ = child.start_kill();
                return Err(fail(
                    format!(
                        "worker {index} sent frame `{}` before it was ready",
                        char::from(other).escape_default()
                    ),
                    false,
                ));
            }
        }
    };
    let ready = match ready {
        Ok(ready) => ready,
        Err(e) => {
            let _ = child.start_kill();
            return Err(fail(e.to_string(), false));
        }
    };
    tracing::debug!(
        function = function.as_str(),
        worker = index,
        pid = ready.pid,
        tasks = ?ready.tasks,
        "worker ready"
    );
    let conn = Arc::new(Conn {
        index,
        pid: child.id().unwrap_or(ready.pid),
        writer: tokio::sync::Mutex::new(write),
        state: Mutex::new(ConnState::default()),
        kill: Notify::new(),
    });
    let reader = tokio::spawn(read_loop(shared.clone(), conn.clone(), reader));
    Ok(Running {
        child,
        conn,
        reader,
        pumps,
    })
}

/// Lets the output pumps drain what the dead process wrote (bounded).
async fn settle(pumps: &mut [JoinHandle<()>]) {
    for pump in pumps.iter_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(1), pump).await;
    }
}

fn log_frame(function: &str, payload: &[u8]) {
    match protocol::decode_json::<protocol::LogLine>("log", payload) {
        Ok(line) => protocol::emit_log(function, &line),
        Err(e) => tracing::warn!(function, "{e}"),
    }
}

/// Reads a ready worker's frames until its connection ends; returns why it ended.
async fn read_loop(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    mut reader: BufReader<OwnedReadHalf>,
) -> String {
    loop {
        let frame = match protocol::read_frame(&mut reader).await {
            Ok(frame) => frame,
            Err(FrameError::Closed) => return "closed its connection".to_string(),
            Err(e) => return e.to_string(),
        };
        match frame.kind {
            KIND_RESPONSE => {
                let response = match protocol::WorkerResponse::decode(&frame.payload) {
                    Ok(response) => response,
                    Err(e) => return e.to_string(),
                };
                tracing::trace!(
                    function = shared.function(),
                    task = response.meta.task.as_deref().unwrap_or("-"),
                    status = response.meta.status_code,
                    local_calls = response.meta.calls.local,
                    remote_calls = response.meta.calls.remote,
                    "response"
                );
                let pending = conn.state.lock().expect("conn state poisoned").pending.take();
                match pending {
                    Some(answer) => {
                        let _ = answer.send(Ok(response.into_response()));
                        shared.release(conn.clone());
                    }
                    None => {
                        if !conn.state.lock().expect("conn state poisoned").dead {
                            tracing::warn!(
                                function = shared.function(),
                                worker = conn.index,
                                "worker answered a request it was not given"
                            );
                        }
                    }
                }
            }
            KIND_LOG => log_frame(shared.function(), &frame.payload),
            other => tracing::warn!(
                function = shared.function(),
                worker = conn.index,
                "ignoring unexpected frame `{}`",
                char::from(other).escape_default()
            ),
        }
    }
}

/// Logs a worker's own stdout (info) or stderr (warn) line by line, keeping a short tail.
async fn pump<R: AsyncRead + Unpin>(
    stream: R,
    function: String,
    index: usize,
    stderr: bool,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        {
            let mut tail = tail.lock().expect("tail poisoned");
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_string());
        }
        let function = function.as_str();
        if stderr {
            tracing::warn!(function, worker = index, stream = "stderr", "{line}");
        } else {
            tracing::info!(function, worker = index, stream = "stdout", "{line}");
        }
    }
}
