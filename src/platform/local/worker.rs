//! One worker process of a pool: starting it, waiting for it to be ready, reading its frames,
//! and supervising it (restart with backoff after a crash, `Q` then kill when the pool stops).
//!
//! A worker is started by binding a fresh Unix socket in the pool's private directory, spawning
//! `python -u -m fusionizer_dispatcher.worker --socket … --handler _fusionizer_entry:handler
//! --worker-id N --function NAME --watchdog-stdin` in the artifact directory (in a process group
//! of its own, its stdin a pipe only this process holds: see [`crate::proc::Cmd::watchdog`]),
//! accepting its one connection and reading frames until `S` (ready) or `F` (a task could not be
//! imported or its `init_context` failed: one line, the traceback only at info level). Its own stdout and stderr (what could not be framed, such as an interpreter crash)
//! are logged line by line, tagged with the function (`output`), and the last lines explain a
//! failed start.
//!
//! Whenever a worker's life ends (`Q` and its termination callbacks, a crash, a kill after a
//! request timed out, a failed start), what its tasks started goes with it: once the worker is
//! gone, its process group gets SIGTERM and, after [`GROUP_GRACE`], SIGKILL.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixListener;
use tokio::process::Child;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

use super::framed;
use super::output::{pump, Tail};
use super::protocol::{self, FrameError, KIND_INIT_FAILED, KIND_LOG, KIND_READY, KIND_RESPONSE};
use super::shared::{Answer, Conn, ConnState, PoolSpec, Shared};
use crate::contract;
use crate::platform::{InvokeError, PlatformError};
use crate::proc::{Cmd, ProcessGroup};

/// How long a worker may take to connect to its socket after it was spawned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long every task's `init_context` may take in one worker.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a worker gets to exit after `Q` before it is killed.
const QUIT_GRACE: Duration = Duration::from_secs(2);
/// How long what a worker started gets between SIGTERM and SIGKILL once the worker is gone.
const GROUP_GRACE: Duration = Duration::from_secs(2);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A worker that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// A started worker, as its supervisor holds it.
struct Running {
    child: Child,
    /// The worker's process group: what its tasks started.
    group: ProcessGroup,
    conn: Arc<Conn>,
    /// The reader task; ends with the reason the connection ended.
    reader: JoinHandle<String>,
    /// The stdout/stderr pumps.
    pumps: Vec<JoinHandle<()>>,
    /// The write end of the worker's watchdog pipe (its stdin), held for the worker's life.
    _watchdog: Option<tokio::process::ChildStdin>,
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
pub(super) async fn supervise(
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
            () = worker.conn.kill.notified() => End::Killed,
            _ = stop.changed() => End::Stop,
        };
        shared.live.fetch_sub(1, Ordering::AcqRel);
        shared.pids.lock().expect("pids poisoned")[index] = None;
        if let End::Stop = end {
            quit(&shared, worker).await;
            return;
        }
        let what = bury(&shared, worker, end, pid).await;
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

/// After a worker's life ended other than by a stop: fails the request it was serving, makes
/// sure the process and its group are gone, and says what happened.
async fn bury(shared: &Shared, mut worker: Running, end: End, pid: u32) -> String {
    let index = worker.conn.index;
    if let End::Exited(_) = end {
        // An answer written just before the exit is still delivered.
        let _ = tokio::time::timeout(QUIT_GRACE, &mut worker.reader).await;
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
    worker.group.end(GROUP_GRACE).await;
    let what = match end {
        End::Killed => {
            format!("worker {index} (pid {pid}) was killed after a request timed out")
        }
        // A protocol error: the worker was killed for it.
        End::Closed(reason) if reason != CLOSED => {
            format!("worker {index} (pid {pid}) was killed: {reason}")
        }
        _ => format!("worker {index} (pid {pid}) {}", describe_status(status)),
    };
    if let Some(pending) = pending {
        let _ = pending.send(Err(shared.crashed(what.clone())));
    }
    what
}

/// Waits `backoff`; `false` when the pool is stopping instead.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(backoff) => true,
        _ = stop.changed() => false,
    }
}

/// Stops a running worker: `Q`, then a grace period, then kill; then its process group.
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
    // Its termination callbacks have run: now what its tasks started goes too.
    worker.group.end(GROUP_GRACE).await;
    // Answers already written before the exit are still delivered.
    let _ = tokio::time::timeout(QUIT_GRACE, &mut worker.reader).await;
    worker.reader.abort();
    if let Some(pending) = worker.conn.close() {
        let _ = pending.send(Err(shared.crashed(format!(
            "worker {} was stopped before it answered",
            worker.conn.index
        ))));
    }
    settle(&mut worker.pumps).await;
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

/// A worker process spawned, with its output pumps and the tail of its output for errors.
struct Spawned {
    child: tokio::process::Child,
    group: ProcessGroup,
    pumps: Vec<JoinHandle<()>>,
    tail: Tail,
    function: String,
    index: usize,
    /// The write end of the worker's watchdog pipe: out of `child`, whose `wait` would close it.
    watchdog: Option<tokio::process::ChildStdin>,
}

impl Spawned {
    /// A deploy error; with `with_tail`, the worker's last output lines as its detail.
    fn fail(&self, message: String, with_tail: bool) -> PlatformError {
        let output = self
            .tail
            .lock()
            .expect("tail poisoned")
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        PlatformError::Deploy {
            function: self.function.clone(),
            message,
            detail: (with_tail && !output.is_empty()).then(|| framed("worker output:", &output)),
        }
    }

    /// Kills the process, waits for it, ends its group and lets the pumps drain; then
    /// [`Spawned::fail`].
    async fn abort(&mut self, message: String, with_tail: bool) -> PlatformError {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.group.end(GROUP_GRACE).await;
        settle(&mut self.pumps).await;
        self.fail(message, with_tail)
    }
}

/// Starts worker `index`: spawn, accept its connection, wait for `S` (ready), then hand its
/// connection to a reader task.
async fn start_worker(shared: &Arc<Shared>, index: usize) -> Result<Running, PlatformError> {
    let n = shared.next_socket.fetch_add(1, Ordering::Relaxed);
    let path = shared.socket_dir.join(format!("w{index}-{n}.sock"));
    let listener = UnixListener::bind(&path)
        .map_err(|e| PlatformError::io(format!("cannot listen on `{}`", path.display()), e))?;
    let mut spawned = spawn(&shared.spec, &path, index)?;
    let accepted = tokio::select! {
        accepted = listener.accept() => accepted.map_err(|e| format!("worker {index} could not connect: {e}")),
        status = spawned.child.wait() => Err(format!(
            "worker {index} {} before it connected",
            describe_status(status.ok())
        )),
        () = tokio::time::sleep(CONNECT_TIMEOUT) => Err(format!(
            "worker {index} did not connect within {CONNECT_TIMEOUT:?}"
        )),
    };
    drop(listener);
    let _ = std::fs::remove_file(&path);
    let stream = match accepted {
        Ok((stream, _)) => stream,
        Err(message) => return Err(spawned.abort(message, true).await),
    };
    let (read, write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let ready = await_ready(&mut spawned, &mut reader, shared.spec.max_response).await?;
    tracing::debug!(
        function = spawned.function.as_str(),
        worker = index,
        pid = ready.pid,
        tasks = ?ready.tasks,
        "worker ready"
    );
    let conn = Arc::new(Conn {
        index,
        pid: spawned.child.id().unwrap_or(ready.pid),
        writer: tokio::sync::Mutex::new(write),
        state: Mutex::new(ConnState::default()),
        kill: Notify::new(),
    });
    let reader = tokio::spawn(read_loop(shared.clone(), conn.clone(), reader));
    Ok(Running {
        child: spawned.child,
        group: spawned.group,
        conn,
        reader,
        pumps: spawned.pumps,
        _watchdog: spawned.watchdog,
    })
}

/// Spawns the worker process for `spec` on socket `path`, with pumps for its output.
fn spawn(spec: &PoolSpec, path: &Path, index: usize) -> Result<Spawned, PlatformError> {
    let function = spec.function.clone();
    let mut cmd = Cmd::new(&spec.python)
        .args([
            "-u",
            "-m",
            contract::WORKER_MODULE,
            contract::WORKER_ARG_SOCKET,
        ])
        .arg(path)
        .arg(contract::WORKER_ARG_HANDLER)
        .arg(format!(
            "{}:{}",
            contract::ENTRY_MODULE,
            contract::ENTRY_HANDLER
        ))
        .arg(contract::WORKER_ARG_WORKER_ID)
        .arg(index.to_string())
        .arg(contract::WORKER_ARG_FUNCTION)
        .arg(&spec.function)
        .arg(contract::WORKER_ARG_MAX_RESPONSE)
        .arg(spec.max_response.to_string())
        // Tied to this process: if it dies (even `kill -9`), the worker and what its tasks
        // started go too, wherever they are (`init_context` included).
        .arg(contract::WORKER_ARG_WATCHDOG)
        .watchdog()
        .cwd(&spec.artifact_dir);
    for (key, value) in &spec.env {
        cmd = cmd.env(key, value);
    }
    let mut child = cmd.spawn().map_err(|e| PlatformError::Deploy {
        function: function.clone(),
        message: format!("could not start worker {index}"),
        detail: Some(e.to_string()),
    })?;
    let group = ProcessGroup::of(&child);
    // `Child::wait` closes stdin: the watchdog pipe is kept apart, for as long as the worker.
    let watchdog = child.stdin.take();
    let tail: Tail = Arc::new(Mutex::new(VecDeque::new()));
    let mut pumps = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(
            stdout,
            function.clone(),
            index,
            false,
            tail.clone(),
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(
            stderr,
            function.clone(),
            index,
            true,
            tail.clone(),
        )));
    }
    Ok(Spawned {
        child,
        group,
        pumps,
        tail,
        function,
        index,
        watchdog,
    })
}

/// Reads frames until `S` (ready), within [`READY_TIMEOUT`]; log frames are passed on, `F` and
/// anything else end the start with an error.
async fn await_ready(
    spawned: &mut Spawned,
    reader: &mut BufReader<OwnedReadHalf>,
    max_response: u64,
) -> Result<protocol::Ready, PlatformError> {
    let index = spawned.index;
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let frame = tokio::select! {
            frame = protocol::read_frame(reader, max_response) => frame,
            () = tokio::time::sleep_until(deadline) => {
                let _ = spawned.child.start_kill();
                return Err(spawned.fail(format!(
                    "worker {index} did not finish `init_context` within {READY_TIMEOUT:?}"
                ), true));
            }
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                let reason = match e {
                    FrameError::Closed | FrameError::Io(_) => {
                        let status = tokio::time::timeout(QUIT_GRACE, spawned.child.wait()).await;
                        describe_status(status.ok().and_then(Result::ok))
                    }
                    invalid @ (FrameError::Invalid(_) | FrameError::TooLarge { .. }) => {
                        invalid.to_string()
                    }
                };
                let _ = spawned.child.start_kill();
                settle(&mut spawned.pumps).await;
                return Err(
                    spawned.fail(format!("worker {index} {reason} before it was ready"), true)
                );
            }
        };
        match frame.kind {
            KIND_READY => {
                return protocol::decode_json::<protocol::Ready>("ready", &frame.payload).map_err(
                    |e| {
                        let _ = spawned.child.start_kill();
                        spawned.fail(e.to_string(), false)
                    },
                )
            }
            KIND_INIT_FAILED => {
                let _ = spawned.child.start_kill();
                return Err(init_failed(&spawned.function, index, &frame.payload));
            }
            KIND_LOG => log_frame(&spawned.function, &frame.payload),
            other => {
                let _ = spawned.child.start_kill();
                return Err(spawned.fail(
                    format!(
                        "worker {index} sent frame `{}` before it was ready",
                        char::from(other).escape_default()
                    ),
                    false,
                ));
            }
        }
    }
}

/// The deploy error for an `F` frame: one line naming the task and what failed (a task that
/// cannot be imported, or its `init_context` raising), e.g. ``task `b`: cannot import handler
/// `main:handler`: main.py:4:28: SyntaxError: expected ':'``. The traceback is logged at info
/// level (shown with `-v`), not carried in the error.
fn init_failed(function: &str, index: usize, payload: &[u8]) -> PlatformError {
    let failed: protocol::InitFailed = protocol::decode_json("init failure", payload)
        .unwrap_or_else(|e| protocol::InitFailed {
            task: None,
            error: e.to_string(),
            summary: None,
        });
    // An older worker sends no summary: the traceback's last line is the exception.
    let summary = failed
        .summary
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            failed
                .error
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "no reason given".to_string());
    let message = match &failed.task {
        Some(task) => format!("task `{task}`: {summary}"),
        None => format!("worker {index} failed to start: {summary}"),
    };
    tracing::info!(
        function,
        worker = index,
        "{message}\n{}",
        framed("traceback:", &failed.error)
    );
    PlatformError::Deploy {
        function: function.to_string(),
        message,
        detail: None,
    }
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

/// Why [`read_loop`] ended when the worker closed its connection cleanly.
const CLOSED: &str = "closed its connection";

/// Reads a ready worker's frames until its connection ends; returns why it ended ([`CLOSED`],
/// or the protocol error).
async fn read_loop(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    mut reader: BufReader<OwnedReadHalf>,
) -> String {
    loop {
        let frame = match protocol::read_frame(&mut reader, shared.spec.max_response).await {
            Ok(frame) => frame,
            Err(FrameError::Closed) => return CLOSED.to_string(),
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
                let pending = conn
                    .state
                    .lock()
                    .expect("conn state poisoned")
                    .pending
                    .take();
                match pending {
                    Some(answer) => {
                        let _ = answer.send(answer_of(&shared, response));
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

/// What a request gets for its `R` frame: the answer, or [`InvokeError::TooLarge`] when the
/// worker left out an answer over its limit (and stays ready for the next request).
fn answer_of(shared: &Shared, response: protocol::WorkerResponse) -> Answer {
    match response.meta.too_large {
        Some(size) => Err(InvokeError::TooLarge {
            function: shared.function().to_string(),
            task: response.meta.task.unwrap_or_else(|| "-".to_string()),
            size,
            limit: shared.spec.max_response,
        }),
        None => Ok(response.into_response()),
    }
}
