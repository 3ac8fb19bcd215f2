//! The embedded `local` platform: fused functions run as Python worker processes on this machine.
//!
//! - [`state`]: the live state in `.fusionizer/local/` (what is deployed; read by `list`/`get`,
//!   so plan and apply work whether or not `serve` runs);
//! - [`venv`]: cached virtualenvs ("building" a function);
//! - [`pool`]: `numWorkers` worker processes per function, supervised and restarted, and the
//!   request path to them;
//! - `worker`: one worker process, its start, readiness and supervision, and the end of what
//!   it started;
//! - `output`: a worker's own stdout and stderr, logged line by line in bounded memory;
//! - `run`: this process's socket directories, and the cleanup after a predecessor that was
//!   killed (run whenever the platform is opened);
//! - [`protocol`]: the frames spoken over each worker's Unix socket;
//! - `cron`: the function's `cron` triggers, fired into its pool while a version serves, as
//!   Nuclio's processor fires them.
//!
//! Two modes. Opened without [`HostOptions`] (`fusionizer apply`), a deploy builds the
//! environment, starts the workers once to prove every `init_context` completes, stops them and
//! installs the version. Opened with them (`fusionizer serve`), a deploy keeps the new workers
//! running and switches requests to them, [`Platform::refresh`] picks up what another process
//! installed, and [`Platform::shutdown`] stops every worker. Only in `serve` do cron triggers
//! fire; a deploy in either mode refuses one it cannot parse.

mod cron;
mod output;
pub mod pool;
pub mod protocol;
mod run;
mod shared;
pub mod state;
pub mod venv;
mod worker;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use self::pool::{Pool, PoolError, PoolSpec};
use self::state::{FunctionRecord, StateDir, Version};
use self::venv::Environments;
use crate::config::Config;
use crate::fuse::Artifact;
use crate::platform::{
    DeployProgress, HostOptions, InvokeError, InvokeRequest, InvokeResponse, Invoker, LiveFunction,
    NoProgress, Platform, PlatformError, TriggerEvents, WorkerInfo,
};

/// How long `shutdown` lets in-flight requests finish before workers get `Q`.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(0);

/// The `local` platform of one project.
pub struct LocalPlatform {
    inner: Arc<Inner>,
}

struct Inner {
    state: StateDir,
    identity: String,
    envs: Environments,
    /// `serve` mode: deploys keep their workers running.
    hosted: bool,
    host: HostOptions,
    slots: Mutex<BTreeMap<String, Arc<Slot>>>,
    /// Pools being drained and stopped in the background after a replacement.
    retiring: tokio::sync::Mutex<Vec<(Arc<Pool>, tokio::task::JoinHandle<()>)>>,
    /// Versions `refresh` failed to start, so it does not retry them every tick.
    failed: Mutex<BTreeMap<String, String>>,
    restarts: Arc<AtomicU64>,
    /// Which running cron trigger fires each tick, and the events they fired.
    crons: Arc<cron::Registry>,
    /// Where this process's worker sockets live.
    run: run::RunDir,
    /// `[serve] max-response-size`, for every pool's workers.
    max_response: u64,
}

/// One function as this process runs it; also its [`Invoker`]. Requests always go to the
/// current pool, so an invoker handed out before a redeploy follows the new version.
struct Slot {
    name: String,
    current: RwLock<Option<Arc<Pool>>>,
    /// Serialises starting, replacing and stopping this function's pool.
    lifecycle: tokio::sync::Mutex<()>,
}

impl Slot {
    fn pool(&self) -> Option<Arc<Pool>> {
        self.current.read().expect("slot poisoned").clone()
    }

    fn replace(&self, pool: Option<Arc<Pool>>) -> Option<Arc<Pool>> {
        std::mem::replace(&mut *self.current.write().expect("slot poisoned"), pool)
    }
}

#[async_trait]
impl Invoker for Slot {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        // A pool that stops while we wait for it hands us on to its successor.
        for _ in 0..3 {
            let Some(pool) = self.pool() else { break };
            match pool.invoke(&request).await {
                Ok(response) => return Ok(response),
                Err(PoolError::Invoke(e)) => return Err(e),
                Err(PoolError::Retired) => {}
            }
        }
        Err(InvokeError::Unavailable {
            function: self.name.clone(),
            reason: "it is not running".to_string(),
        })
    }
}

/// `path` with symbolic links resolved in its longest part that exists (the rest, not yet
/// created, appended as it is), so one directory has one name whether it exists yet or not.
fn canonical(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(found) = std::fs::canonicalize(existing) {
            return missing.iter().rev().fold(found, |dir, part| dir.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

impl LocalPlatform {
    /// Opens the local platform of `config`'s project. `host` is `Some` in `serve`.
    pub fn new(config: &Config, host: Option<HostOptions>) -> Result<Self, PlatformError> {
        let state = StateDir::new(&config.state_dir());
        // Workers and socket directories a killed predecessor left behind go first.
        run::reap(state.root());
        let run = run::RunDir::new(state.root());
        // Two state directories of one project are two local platforms.
        let identity = format!("local:{}", canonical(state.root()).display());
        let hosted = host.is_some();
        let host = host.unwrap_or_else(|| HostOptions {
            // Always a URL on the local platform (`Config::proxy_url`).
            proxy_url: config.proxy_url(None).unwrap_or_default(),
            request_timeout: config.serve.request_timeout,
        });
        Ok(LocalPlatform {
            inner: Arc::new(Inner {
                state,
                identity,
                envs: Environments::from_env(),
                hosted,
                host,
                slots: Mutex::new(BTreeMap::new()),
                retiring: tokio::sync::Mutex::new(Vec::new()),
                failed: Mutex::new(BTreeMap::new()),
                restarts: Arc::new(AtomicU64::new(0)),
                crons: Arc::new(cron::Registry::default()),
                run,
                max_response: config.serve.max_response_bytes,
            }),
        })
    }

    /// How many times a worker died unexpectedly (crash, kill, request timeout) and was
    /// restarted, over every function this instance ran. For `serve`'s metrics.
    pub fn worker_restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::Relaxed)
    }

    /// The shared counter behind [`LocalPlatform::worker_restarts`].
    pub fn worker_restart_counter(&self) -> Arc<AtomicU64> {
        self.inner.restarts.clone()
    }

    /// Process ids of `name`'s running workers, by worker index (`None` while one restarts);
    /// empty when this process does not run `name`.
    pub fn worker_pids(&self, name: &str) -> Vec<Option<u32>> {
        self.inner
            .slot_if_any(name)
            .and_then(|slot| slot.pool())
            .map(|pool| pool.worker_pids())
            .unwrap_or_default()
    }
}

impl Inner {
    fn slot(&self, name: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("slots poisoned")
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Slot {
                    name: name.to_string(),
                    current: RwLock::new(None),
                    lifecycle: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    fn slot_if_any(&self, name: &str) -> Option<Arc<Slot>> {
        self.slots
            .lock()
            .expect("slots poisoned")
            .get(name)
            .cloned()
    }

    /// Starts a pool running `version` (whose files are at `artifact_dir`).
    async fn start_pool(
        &self,
        record: &FunctionRecord,
        version: &Version,
        progress: &dyn DeployProgress,
    ) -> Result<Arc<Pool>, PlatformError> {
        let artifact_dir = version.artifact_dir();
        let venv = self
            .envs
            .ensure(
                &record.name,
                &record.build_commands,
                &artifact_dir,
                progress,
            )
            .await?;
        let mut env: Vec<(OsString, OsString)> = record
            .env
            .iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        env.extend([
            (
                crate::contract::ENV_PROXY_URL.into(),
                self.host.proxy_url.clone().into(),
            ),
            (
                crate::contract::ENV_FUNCTION.into(),
                record.name.clone().into(),
            ),
            ("PYTHONPATH".into(), artifact_dir.clone().into()),
            ("VIRTUAL_ENV".into(), venv.dir.clone().into()),
            ("PATH".into(), venv.path_var()),
        ]);
        progress.step(
            &record.name,
            &format!(
                "starting {} worker{}",
                record.num_workers,
                if record.num_workers == 1 { "" } else { "s" }
            ),
        );
        Pool::start(
            PoolSpec {
                function: record.name.clone(),
                version_id: version.id.clone(),
                artifact_dir,
                python: venv.python(),
                env,
                num_workers: record.num_workers,
                request_timeout: self.host.request_timeout,
                max_response: self.max_response,
                socket_dir: self.run.pool_dir()?,
            },
            self.restarts.clone(),
        )
        .await
    }

    /// Drains and stops `pool` in the background (replacement or deletion in `serve`).
    async fn retire(self: &Arc<Self>, pool: Arc<Pool>) {
        let drain = self.host.request_timeout;
        let inner = self.clone();
        let stopping = pool.clone();
        let handle = tokio::spawn(async move {
            stopping.stop(drain).await;
            inner.state.collect();
        });
        let mut retiring = self.retiring.lock().await;
        retiring.retain(|(_, h)| !h.is_finished());
        retiring.push((pool, handle));
    }

    /// Brings the pool of `name` in line with the installed version; `true` when it changed.
    async fn reconcile(self: &Arc<Self>, name: &str, installed: Option<&Version>) -> bool {
        let slot = self.slot(name);
        let Ok(_guard) = slot.lifecycle.try_lock() else {
            return false; // a deploy or start of this function is in progress
        };
        let running = slot.pool().map(|p| p.version_id().to_string());
        match (installed, running) {
            (None, None) => false,
            (None, Some(_)) => {
                if let Some(old) = slot.replace(None) {
                    tracing::info!(
                        function = name,
                        "function was deleted; stopping its workers"
                    );
                    self.retire(old).await;
                }
                true
            }
            (Some(version), Some(id)) if version.id == id => false,
            (Some(version), running) => {
                if running.is_none() && !self.hosted {
                    return false;
                }
                if self.failed.lock().expect("failed poisoned").get(name) == Some(&version.id) {
                    return false;
                }
                match self.start_version(version).await {
                    Ok(pool) => {
                        self.failed.lock().expect("failed poisoned").remove(name);
                        tracing::info!(
                            function = name,
                            version = version.id.as_str(),
                            "now running the installed version"
                        );
                        if let Some(old) = slot.replace(Some(pool)) {
                            self.retire(old).await;
                        }
                        true
                    }
                    Err(e) => {
                        tracing::warn!(
                            function = name,
                            "cannot start the installed version `{}`: {e}",
                            version.id
                        );
                        self.failed
                            .lock()
                            .expect("failed poisoned")
                            .insert(name.to_string(), version.id.clone());
                        false
                    }
                }
            }
        }
    }

    /// Starts a pool for an installed version, holding its files for the pool's life; when
    /// serving, its cron triggers fire from now on.
    async fn start_version(&self, version: &Version) -> Result<Arc<Pool>, PlatformError> {
        let hold = version.hold()?;
        let record = version.read_record()?;
        let triggers = cron_triggers(&record.name, &record.function_yaml)?;
        let pool = self.start_pool(&record, version, &NoProgress).await?;
        pool.keep(hold);
        self.serve_crons(&pool, &record.name, triggers);
        Ok(pool)
    }

    /// When serving: fires `triggers` into `pool`, the version of `function` that starts
    /// serving, until the pool stops. Their claims supersede those of the version it replaces,
    /// so call this before the old version is retired.
    fn serve_crons(&self, pool: &Arc<Pool>, function: &str, triggers: Vec<cron::CronTrigger>) {
        if self.hosted && !triggers.is_empty() {
            let crons = cron::start(pool, function, triggers, &self.crons);
            pool.keep_until_stopped(Box::new(crons));
        }
    }
}

#[async_trait]
impl Platform for LocalPlatform {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn identity(&self) -> String {
        self.inner.identity.clone()
    }

    async fn list(&self, project: &str) -> Result<Vec<LiveFunction>, PlatformError> {
        let mut out = Vec::new();
        for version in self.inner.state.installed()?.values() {
            let live = version.read_record()?.live();
            if live.is_owned_by(project) {
                out.push(live);
            }
        }
        Ok(out)
    }

    async fn get(&self, name: &str) -> Result<Option<LiveFunction>, PlatformError> {
        Ok(self.inner.state.get(name)?.map(|record| record.live()))
    }

    async fn deploy(
        &self,
        artifact: &Artifact,
        progress: &dyn DeployProgress,
    ) -> Result<(), PlatformError> {
        let inner = &self.inner;
        let name = artifact.name.as_str();
        if !state::valid_name(name) {
            return Err(PlatformError::Deploy {
                function: name.to_string(),
                message: "the name is not a valid function name".to_string(),
                detail: None,
            });
        }
        let record = FunctionRecord::from_artifact(artifact)?;
        let triggers = cron_triggers(name, &record.function_yaml)?;
        progress.step(name, "staging the artifact");
        let staged = inner.state.stage(artifact)?;
        let pool = match inner.start_pool(&record, &staged.version, progress).await {
            Ok(pool) => pool,
            Err(e) => {
                let dir = staged.version.dir.clone();
                drop(staged);
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        progress.step(name, "workers ready; installing the version");
        let slot = inner.slot(name);
        let _guard = slot.lifecycle.lock().await;
        if let Err(e) = inner.state.install(&staged, &record) {
            pool.stop(Duration::ZERO).await;
            let dir = staged.version.dir.clone();
            drop(staged);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        inner.failed.lock().expect("failed poisoned").remove(name);
        // Keep the new workers when serving, or when this process already ran the function
        // (through `invoker`); otherwise they only proved readiness.
        if inner.hosted || slot.pool().is_some() {
            pool.keep(staged.hold);
            inner.serve_crons(&pool, name, triggers);
            if let Some(old) = slot.replace(Some(pool)) {
                inner.retire(old).await;
            }
        } else {
            pool.stop(Duration::ZERO).await;
            drop(staged);
        }
        inner.state.collect();
        Ok(())
    }

    async fn delete(&self, name: &str, _force: bool) -> Result<(), PlatformError> {
        let inner = &self.inner;
        let slot = inner.slot_if_any(name);
        let _guard = match &slot {
            Some(slot) => Some(slot.lifecycle.lock().await),
            None => None,
        };
        inner.state.remove(name)?;
        if let Some(pool) = slot.as_ref().and_then(|s| s.replace(None)) {
            pool.stop(inner.host.request_timeout).await;
        }
        inner.failed.lock().expect("failed poisoned").remove(name);
        inner.state.collect();
        Ok(())
    }

    async fn invoker(&self, name: &str) -> Result<Arc<dyn Invoker>, PlatformError> {
        let inner = &self.inner;
        let slot = inner.slot(name);
        if slot.pool().is_some() {
            return Ok(slot);
        }
        let _guard = slot.lifecycle.lock().await;
        if slot.pool().is_none() {
            let Some(version) = inner.state.current(name)? else {
                return Err(PlatformError::Other(format!(
                    "function `{name}` is not deployed; run `fusionizer apply` first"
                )));
            };
            let pool = inner.start_version(&version).await?;
            slot.replace(Some(pool));
        }
        drop(_guard);
        Ok(slot)
    }

    async fn refresh(&self) -> Result<(), PlatformError> {
        let inner = &self.inner;
        let installed = inner.state.installed()?;
        let mut names: Vec<String> = installed.keys().cloned().collect();
        for (name, slot) in inner.slots.lock().expect("slots poisoned").iter() {
            if slot.pool().is_some() && !installed.contains_key(name) {
                names.push(name.clone());
            }
        }
        let changes = futures_util::future::join_all(
            names
                .iter()
                .map(|name| inner.reconcile(name, installed.get(name))),
        )
        .await;
        if changes.into_iter().any(|changed| changed) {
            inner.state.collect();
        }
        Ok(())
    }

    fn worker_restarts(&self) -> u64 {
        LocalPlatform::worker_restarts(self)
    }

    fn trigger_events(&self) -> Vec<TriggerEvents> {
        self.inner.crons.fired()
    }

    fn workers(&self, function: &str) -> Option<Vec<WorkerInfo>> {
        let pool = self.inner.slot_if_any(function)?.pool()?;
        Some(pool.worker_states())
    }

    async fn shutdown(&self) {
        let inner = &self.inner;
        let slots: Vec<Arc<Slot>> = inner
            .slots
            .lock()
            .expect("slots poisoned")
            .values()
            .cloned()
            .collect();
        let pools: Vec<Arc<Pool>> = slots.iter().filter_map(|s| s.replace(None)).collect();
        futures_util::future::join_all(pools.iter().map(|p| p.stop(SHUTDOWN_DRAIN))).await;
        // Pools still draining after a replacement stop now too.
        let retiring = std::mem::take(&mut *inner.retiring.lock().await);
        futures_util::future::join_all(retiring.iter().map(|(p, _)| p.stop(SHUTDOWN_DRAIN))).await;
        for (_, handle) in retiring {
            let _ = handle.await;
        }
        drop(pools);
        inner.state.collect();
        inner.run.remove();
    }
}

/// The cron triggers of `function`'s function.yaml; one that cannot be parsed fails the deploy.
fn cron_triggers(function: &str, yaml: &str) -> Result<Vec<cron::CronTrigger>, PlatformError> {
    cron::triggers(yaml).map_err(|message| PlatformError::Deploy {
        function: function.to_string(),
        message,
        detail: None,
    })
}

/// `text` as an indented `|` frame under `title`, for error details.
fn framed(title: &str, text: &str) -> String {
    let mut out = String::from(title);
    for line in text.trim_end().lines() {
        out.push_str("\n    | ");
        out.push_str(line);
    }
    out
}

/// Where the environment cache lives (for messages and tests).
pub fn cache_dir() -> Result<PathBuf, PlatformError> {
    venv::cache_root()
}
