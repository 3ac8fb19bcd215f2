//! What a pool and its worker supervisors share: the pool's spec, each connected worker
//! ([`Conn`]) and the idle list and counters ([`Shared`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{oneshot, watch, Notify, Semaphore};

use crate::platform::{InvokeError, InvokeResponse};

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
    /// The largest answer (meta and body, bytes) a worker sends: `[serve] max-response-size`.
    pub max_response: u64,
    /// A fresh private directory for the pool's sockets, removed when the pool stops.
    pub socket_dir: PathBuf,
}

pub(super) type Answer = Result<InvokeResponse, InvokeError>;

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
    pub(super) idle: Mutex<Vec<Arc<Conn>>>,
    /// One permit per idle worker; closed when the pool stops.
    pub(super) permits: Semaphore,
    /// Workers connected and ready.
    pub(super) live: AtomicUsize,
    /// Requests in flight, which [`super::pool::Pool::stop`] drains.
    pub(super) in_flight: Arc<crate::inflight::InFlight>,
    pub(super) next_event: AtomicU64,
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

    /// The error of a request its worker could not answer (it died or was stopped), `reason`
    /// saying what happened.
    pub(super) fn crashed(&self, reason: String) -> InvokeError {
        InvokeError::Crashed {
            function: self.spec.function.clone(),
            reason,
        }
    }
}
