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

use std::fs::File;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use super::protocol;
pub use super::shared::PoolSpec;
use super::shared::{Answer, Conn, Shared};
use super::worker::supervise;
use crate::platform::{
    InvokeError, InvokeRequest, InvokeResponse, PlatformError, WorkerInfo, WorkerState,
};

/// Why [`Pool::invoke`] did not answer.
#[derive(Debug)]
pub enum PoolError {
    /// The pool is stopping: the caller should retry on the function's current pool.
    Retired,
    Invoke(InvokeError),
}

/// A running set of workers for one version of one function.
pub struct Pool {
    shared: Arc<Shared>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
    /// Keeps the version's files from being collected while the pool runs.
    hold: Mutex<Option<File>>,
    /// Dropped first when the pool stops: what must end before it does (the cron triggers
    /// firing into it while it serves).
    guards: Mutex<Vec<Box<dyn Send>>>,
}

impl Pool {
    /// Starts every worker and returns once all of them are ready (every `init_context`
    /// finished). If any worker fails to start, the others are stopped and the first failure
    /// (by worker index) is returned.
    pub async fn start(
        spec: PoolSpec,
        restarts: Arc<AtomicU64>,
    ) -> Result<Arc<Pool>, PlatformError> {
        let socket_dir = spec.socket_dir.clone();
        let workers = spec.num_workers.max(1);
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            socket_dir,
            idle: Mutex::new(Vec::with_capacity(workers)),
            permits: Semaphore::new(0),
            live: AtomicUsize::new(0),
            in_flight: Arc::default(),
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
            guards: Mutex::new(Vec::new()),
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
                tracing::debug!(
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

    /// Keeps `guard` until the pool stops, and drops it before anything else stops.
    pub(super) fn keep_until_stopped(&self, guard: Box<dyn Send>) {
        self.guards.lock().expect("guards poisoned").push(guard);
    }

    /// Process ids of the workers currently running (by worker index).
    pub fn worker_pids(&self) -> Vec<Option<u32>> {
        self.shared.pids.lock().expect("pids poisoned").clone()
    }

    /// What each worker is doing, by worker index: a running worker is idle while it is in the
    /// idle list and busy otherwise; one without a process is starting.
    pub fn worker_states(&self) -> Vec<WorkerInfo> {
        let pids = self.worker_pids();
        let idle: Vec<usize> = self
            .shared
            .idle
            .lock()
            .expect("idle list poisoned")
            .iter()
            .map(|conn| conn.index)
            .collect();
        pids.into_iter()
            .enumerate()
            .map(|(index, pid)| WorkerInfo {
                index,
                pid,
                state: match pid {
                    None => WorkerState::Starting,
                    Some(_) if idle.contains(&index) => WorkerState::Idle,
                    Some(_) => WorkerState::Busy,
                },
            })
            .collect()
    }

    /// Runs one request on an idle worker, waiting for one up to the request timeout.
    pub async fn invoke(&self, request: &InvokeRequest) -> Result<InvokeResponse, PoolError> {
        self.run(|id| protocol::encode_event(request, id, unix_now()))
            .await
    }

    /// Runs one event of a trigger of the platform's own (cron) like [`Pool::invoke`].
    pub async fn fire(
        &self,
        event: &protocol::TriggerEvent<'_>,
    ) -> Result<InvokeResponse, PoolError> {
        self.run(|id| protocol::encode_trigger_event(event, id))
            .await
    }

    /// Runs the `E` frame `encode` builds for the next event id on an idle worker.
    async fn run(&self, encode: impl FnOnce(u64) -> Vec<u8>) -> Result<InvokeResponse, PoolError> {
        let shared = &self.shared;
        let timeout = shared.spec.request_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let id = shared.next_event.fetch_add(1, Ordering::Relaxed);
        let frame = encode(id);
        let _in_flight = shared.in_flight.enter();
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
                Ok(Err(_)) => {
                    Err(shared.crashed(format!("worker {} stopped before answering", conn.index)))
                }
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
                        Err(shared
                            .crashed(format!("worker {} stopped before answering", conn.index)))
                    })
                }
            };
            return answer.map_err(PoolError::Invoke);
        }
    }

    /// Stops the pool: no new requests (they get [`PoolError::Retired`]), requests in flight
    /// may finish for up to `drain`, then every worker gets `Q` and, after a grace period, is
    /// killed. Idempotent.
    pub async fn stop(&self, drain: Duration) {
        let shared = &self.shared;
        // No tick fires into a stopping pool (one already sent drains like any request).
        drop(std::mem::take(
            &mut *self.guards.lock().expect("guards poisoned"),
        ));
        shared.permits.close();
        shared
            .in_flight
            .wait_idle(tokio::time::Instant::now() + drain)
            .await;
        shared.stop.send_replace(true);
        let supervisors = std::mem::take(&mut *self.supervisors.lock().expect("poisoned"));
        for handle in supervisors {
            let _ = handle.await;
        }
        let _ = std::fs::remove_dir_all(&shared.socket_dir);
        self.hold.lock().expect("hold poisoned").take();
    }
}

impl Drop for Pool {
    /// A pool dropped without [`Pool::stop`] (its start or deploy was cancelled halfway, e.g. by
    /// a shutdown): its supervisors would keep their workers running, so they are told to stop
    /// them, and its socket directory goes.
    fn drop(&mut self) {
        if let Ok(guards) = self.guards.get_mut() {
            guards.clear();
        }
        let shared = &self.shared;
        shared.permits.close();
        shared.stop.send_replace(true);
        let _ = std::fs::remove_dir_all(&shared.socket_dir);
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
