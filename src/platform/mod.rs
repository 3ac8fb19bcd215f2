//! The platform abstraction: where fused functions live.
//!
//! One trait, implemented by [`local`] (embedded, Python worker processes on this machine) and
//! [`nuctl`] (real Nuclio through the `nuctl` command line); the unit tests add an in-memory one. Plan, apply and serve only ever
//! talk to [`Platform`]; nothing above this module knows which one it has.

pub mod local;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod nuctl;
pub mod owner;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::contract::{
    ANNOTATION_DIGEST, ANNOTATION_TASKS, ANNOTATION_TASK_DIGESTS, LABEL_MANAGED_BY, LABEL_PROJECT,
    MANAGED_BY,
};
use crate::fuse::Artifact;

/// The live state of a function, normalised over both platforms (Nuclio's `status.state`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "message")]
pub enum FunctionState {
    Ready,
    /// Still being built or configured (`building`, `waitingFor*`, `configuringResources`).
    Provisioning(String),
    Error(String),
    Unhealthy(String),
    /// Anything else Nuclio reports (`scaledToZero`, `imported`, …), kept verbatim.
    Other(String),
}

impl FunctionState {
    /// Parses Nuclio's `status.state` (and `status.message`).
    pub fn from_nuclio(state: &str, message: &str) -> Self {
        match state {
            "ready" => FunctionState::Ready,
            "error" => FunctionState::Error(message.to_string()),
            "unhealthy" => FunctionState::Unhealthy(message.to_string()),
            "waitingForBuild"
            | "building"
            | "waitingForResourceConfiguration"
            | "waitingForScaleResourceFromZero"
            | "waitingForScaleResourceToZero"
            | "configuringResources" => FunctionState::Provisioning(state.to_string()),
            other => FunctionState::Other(other.to_string()),
        }
    }

    /// The short word users see in tables (`ready`, `error`, `building`…).
    pub fn word(&self) -> &str {
        match self {
            FunctionState::Ready => "ready",
            FunctionState::Provisioning(s) | FunctionState::Other(s) => s,
            FunctionState::Error(_) => "error",
            FunctionState::Unhealthy(_) => "unhealthy",
        }
    }

    /// `Some(reason)` when the function must be replaced rather than left alone or updated.
    pub fn needs_replacement(&self) -> Option<String> {
        match self {
            FunctionState::Error(m) => Some(format!("live state is `error`{}", suffix(m))),
            FunctionState::Unhealthy(m) => Some(format!("live state is `unhealthy`{}", suffix(m))),
            FunctionState::Provisioning(s) => Some(format!("stuck provisioning (`{s}`)")),
            _ => None,
        }
    }
}

fn suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// A function as the platform reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LiveFunction {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: FunctionState,
    /// The deployed function.yaml as the platform can give it back (for plan diffs), if any.
    pub config_yaml: Option<String>,
}

impl LiveFunction {
    /// Owned by the project named `project` (both ownership labels present and matching).
    pub fn is_owned_by(&self, project: &str) -> bool {
        self.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project)
            && self.labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
    }

    /// Tasks from the `fusionizer.io/tasks` annotation, sorted.
    pub fn tasks(&self) -> Vec<String> {
        self.task_list(ANNOTATION_TASKS)
    }

    /// The task names an annotation lists, joined by `,`, sorted (none when it is absent).
    pub fn task_list(&self, annotation: &str) -> Vec<String> {
        let mut tasks: Vec<String> = self
            .annotations
            .get(annotation)
            .map(|t| {
                t.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        tasks.sort();
        tasks
    }

    pub fn digest(&self) -> Option<&str> {
        self.annotations.get(ANNOTATION_DIGEST).map(String::as_str)
    }

    /// Per-task digests from the `fusionizer.io/task-digests` annotation.
    pub fn task_digests(&self) -> BTreeMap<String, String> {
        self.annotations
            .get(ANNOTATION_TASK_DIGESTS)
            .map(|v| {
                v.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Errors a platform reports. Each says what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The platform cannot be reached at all (no `nuctl`, no cluster): exit 69.
    #[error("{message}")]
    Unavailable {
        message: String,
        hint: Option<String>,
    },
    /// Building or deploying `function` failed; `detail` is the framed output.
    #[error("deploying `{function}` failed: {message}")]
    Deploy {
        function: String,
        message: String,
        detail: Option<String>,
    },
    #[error("{0}")]
    Other(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl PlatformError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        PlatformError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<PlatformError> for crate::error::Error {
    fn from(err: PlatformError) -> Self {
        use crate::error::{Error, ExitCode};
        match err {
            PlatformError::Unavailable { message, hint } => {
                let mut e = Error::new(ExitCode::Unavailable, message);
                e.hint = hint;
                e
            }
            PlatformError::Deploy {
                function,
                message,
                detail,
            } => {
                let mut e = Error::failure(format!("deploying `{function}` failed: {message}"));
                if let Some(detail) = detail {
                    e.causes.push(detail);
                }
                e
            }
            other => Error::from_std(ExitCode::Failure, &other),
        }
    }
}

/// A request to a task, as the proxy forwards it.
#[derive(Debug, Clone, Default)]
pub struct InvokeRequest {
    /// The task this request is for (sent as header `Task-Name`).
    pub task: String,
    pub method: String,
    /// The path below the task, starting with `/` (Nuclio's `event.path`).
    pub path: String,
    /// The raw query string without `?` (empty when none).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// A task's answer.
#[derive(Debug, Clone, Default)]
pub struct InvokeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Why an invocation got no answer from the task itself. The proxy maps these to responses.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No worker/endpoint can take it (not deployed, not ready, down): 503 with `Retry-After`.
    #[error("function `{function}` is unavailable: {reason}")]
    Unavailable { function: String, reason: String },
    /// The worker died while serving this request: 502.
    #[error("function `{function}` crashed while handling the request: {reason}")]
    Crashed { function: String, reason: String },
    /// The function did not answer in time: 504.
    #[error("function `{function}` did not answer within {0:?}", .timeout)]
    Timeout { function: String, timeout: Duration },
    /// The function answered more than `[serve] max-response-size`: 502. The function itself is
    /// fine and keeps serving.
    #[error(
        "task `{task}` answered {size} bytes, over the limit of {limit} bytes \
         (`[serve] max-response-size`)"
    )]
    TooLarge {
        function: String,
        task: String,
        size: u64,
        limit: u64,
    },
    /// The endpoint refused the connection (nuctl: refresh the URL cache and retry once).
    #[error("could not connect to `{function}`: {reason}")]
    Connect { function: String, reason: String },
}

/// Something that can run requests against one deployed function.
#[async_trait]
pub trait Invoker: Send + Sync {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, InvokeError>;
}

/// Progress callbacks from a deploy, for indicatif bars and CI log lines.
pub trait DeployProgress: Send + Sync {
    fn step(&self, function: &str, message: &str);
}

/// Ignores progress.
pub struct NoProgress;

impl DeployProgress for NoProgress {
    fn step(&self, _function: &str, _message: &str) {}
}

/// Where fused functions are deployed. Implementations must be safe to share between tasks.
#[async_trait]
pub trait Platform: Send + Sync {
    /// `local` or `nuctl`.
    fn kind(&self) -> &'static str;

    /// A stable identity of the target (for the apply lock and saved-plan fingerprints), e.g.
    /// `local:<state dir>` or `nuctl:kube/<namespace>`.
    fn identity(&self) -> String;

    /// Every function `project` owns ([`LiveFunction::is_owned_by`]: both ownership labels), in
    /// name order. Implementations filter on the labels themselves, since a platform may ignore
    /// label selectors; functions of other owners are never returned. Same-named functions of
    /// other owners are found with [`Platform::get`].
    async fn list(&self, project: &str) -> Result<Vec<LiveFunction>, PlatformError>;

    /// A single function by name, owned or not; `None` when it does not exist.
    async fn get(&self, name: &str) -> Result<Option<LiveFunction>, PlatformError>;

    /// Builds and deploys `artifact` (create or update), returning once it is ready. On failure
    /// the previously deployed version (if any) must keep running.
    async fn deploy(
        &self,
        artifact: &Artifact,
        progress: &dyn DeployProgress,
    ) -> Result<(), PlatformError>;

    /// Deletes a function; deleting a missing function succeeds. `force` skips the
    /// provisioning-state check (nuctl `--force`).
    async fn delete(&self, name: &str, force: bool) -> Result<(), PlatformError>;

    /// Something that sends requests to `name`. Cheap to call repeatedly; implementations cache.
    async fn invoker(&self, name: &str) -> Result<Arc<dyn Invoker>, PlatformError>;

    /// Picks up changes made outside this process (local: reconcile running worker pools with
    /// the state directory another `apply` wrote; nuctl: refresh cached invocation URLs).
    async fn refresh(&self) -> Result<(), PlatformError> {
        Ok(())
    }

    /// How often a long-running `serve` should call [`Platform::refresh`] and re-list to pick
    /// up changes made elsewhere. Cheap on the local platform; a `nuctl` call per look on
    /// Nuclio, so much less often there.
    fn resync_interval(&self) -> Duration {
        Duration::from_millis(500)
    }

    /// Stops everything this process runs for the platform (local: worker processes).
    async fn shutdown(&self) {}

    /// How many worker processes this process restarted after a crash or timeout (local only;
    /// Nuclio restarts its own). For serve's metrics.
    fn worker_restarts(&self) -> u64 {
        0
    }

    /// Running totals of the events this process's own triggers fired, by function, trigger,
    /// kind and result (local only: its cron triggers; Nuclio fires and counts its own). For
    /// serve's metrics.
    fn trigger_events(&self) -> Vec<TriggerEvents> {
        Vec::new()
    }

    /// Where `function` (as [`Platform::list`] last saw it) is invoked directly, for `status`:
    /// `Some(Ok(url))`, or `Some(Err(why))` when the platform reports none it can use. `None`:
    /// functions of this platform have no URL of their own (the local platform's are reached
    /// through `fusionizer serve`).
    fn url(&self, _function: &str) -> Option<Result<String, String>> {
        None
    }

    /// The worker processes this process runs for `function`, by worker index, for serve's
    /// dashboard; `None` when it runs none itself (Nuclio runs its own, or `function` is not
    /// running here).
    fn workers(&self, _function: &str) -> Option<Vec<WorkerInfo>> {
        None
    }
}

/// One worker process of a function ([`Platform::workers`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkerInfo {
    /// The worker's index in its function (0-based, below `numWorkers`).
    pub index: usize,
    /// Its process id while it runs.
    pub pid: Option<u32>,
    pub state: WorkerState,
}

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Running and waiting for an event.
    Idle,
    /// Running an event.
    Busy,
    /// Not running: being started, or restarted after a crash or timeout.
    Starting,
}

/// How many events one trigger of one function fired with one result, since the platform was
/// opened ([`Platform::trigger_events`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TriggerEvents {
    pub function: String,
    /// The trigger's name (`event.trigger.name`).
    pub trigger: String,
    /// The trigger's kind (`cron`).
    pub kind: String,
    /// `ok` (answered below 400), `error` (answered 400 or above: the task raised, or no task
    /// took the event) or `failed` (no answer: the worker crashed or timed out, or none ran).
    pub result: String,
    pub total: u64,
}

/// How `serve` hosts functions: given to a platform opened for serving.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The proxy's base URL (`http://127.0.0.1:8000`), handed to workers for remote task calls.
    pub proxy_url: String,
    /// How long one invocation may take before it is a 504.
    pub request_timeout: Duration,
}

/// Opens the platform `config` names. `host` is `Some` in `serve`: the local platform then keeps
/// worker processes running in this process; without it, deploys are built, probed for
/// readiness and recorded, and `serve` (when running) picks them up.
pub fn open(
    config: &crate::config::Config,
    host: Option<HostOptions>,
) -> Result<Arc<dyn Platform>, PlatformError> {
    match config.project.platform {
        crate::config::PlatformKind::Local => {
            Ok(Arc::new(local::LocalPlatform::new(config, host)?))
        }
        crate::config::PlatformKind::Nuctl => {
            Ok(Arc::new(nuctl::NuctlPlatform::new(config, host)?))
        }
    }
}
