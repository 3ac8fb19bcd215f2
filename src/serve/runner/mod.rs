//! The schedule runner: moves the live state from phase to phase without dropping a request.
//!
//! A regroup fuses the selected phase over the tasks present (declared with code, plus
//! uploads), deploys new or changed functions and waits until they are ready, then swaps the
//! route table in one step, drains the functions that lost their routes (bounded) and only then
//! deletes them. A task whose new home failed keeps its old one; a failed regroup leaves the
//! routes as they were and is retried.
//!
//! The grouping comes from the phase in force, or, once an optimizer chose one
//! ([`Runner::choose`], `serve::optimizer`), from that explicit grouping laid over the present
//! tasks; either way it goes through the same regroup.
//!
//! Every function a regroup deploys carries the live-state annotations (`platform::owner`): who
//! chose the grouping (the schedule and its origin, a held phase, or an optimizer) and which of
//! its tasks were uploaded, so that `plan`, `apply` and `status` elsewhere agree with serve.
//!
//! At each resync ([`Runner::resync`]) serve compares the live functions with what it deployed:
//! every difference (another terminal's `apply` or `destroy`) is reported once as a `Drift` line
//! (an event, so `--log-format json` carries it too), and with `[serve] self-heal` (the default)
//! the caller repairs it with a regroup. While a present task has no function, `/-/health`
//! answers 503 `degraded: …`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

pub mod error;
mod grouping;

use self::error::RunnerError;
pub use self::grouping::Chosen;
use super::http::{AppState, Control};
use super::repeats::Repeats;
use super::routes::{FunctionRoute, RouteTable};
use super::state::{Failure, Move, Transition};
use super::uploads::{UploadError, UploadStore};
use crate::apply::{ApplyHooks, ApplyObserver, ApplyReport, ChangeResult, Outcome};
use crate::config::{TaskSource, TaskSpec, Workspace};
use crate::error::Error;
use crate::fuse::Artifact;
use crate::plan::{Action, Change, Desired, Plan};
use crate::platform::owner::GroupingOwner;
use crate::platform::{FunctionState, LiveFunction, Platform};
use crate::schedule::Selection;
use crate::ui::report::{self, Event, Tone};
use crate::workspace::{
    self, fuse_grouping_over, fuse_selection_over, Execution, Locking, Operation, Prepared,
};

/// How many functions a regroup deploys at once.
const PARALLELISM: usize = 4;

/// The runner's mutable view of the project.
pub struct Runner {
    workspace: Mutex<Workspace>,
    platform: Arc<dyn Platform>,
    uploads: UploadStore,
    /// The phase currently in force (what regroups and reloads apply) …
    selection: Mutex<Selection>,
    /// … unless an optimizer chose a grouping, which then applies instead.
    chosen: Mutex<Option<Chosen>>,
    /// Who owns the grouping while no optimizer chose one: serve's schedule (and its origin) or
    /// the phase it holds; recorded on every function it deploys.
    owner: Mutex<GroupingOwner>,
    /// The drift lines reported at the last resync, so each is said once while it lasts.
    reported: Mutex<BTreeSet<String>>,
    /// A hash of the live functions at the last resync that found no drift (cleared by every
    /// regroup): while they stay the same, a resync neither fuses nor compares again.
    in_sync_with: Mutex<Option<u64>>,
    /// One regroup at a time.
    regroup_lock: tokio::sync::Mutex<()>,
    /// Set when the last regroup failed, so the ticker retries it.
    pub failed: std::sync::atomic::AtomicBool,
    /// The routes and metrics this runner switches and counts (shared with the HTTP handlers).
    state: Arc<AppState>,
    drain_timeout: Duration,
    max_upload: u64,
    max_unpacked: u64,
    /// How regroups show their progress: a failure that repeats is said once, then counted.
    repeats: Repeats,
}

/// What one regroup did.
#[derive(Debug, Default)]
pub struct RegroupReport {
    pub deployed: Vec<String>,
    pub failed: Vec<(String, String)>,
    pub deleted: Vec<String>,
    /// Task → (old function, new function) for every task that moved.
    pub moved: BTreeMap<String, (Option<String>, String)>,
    pub elapsed: Duration,
}

impl Runner {
    pub fn new(
        workspace: Workspace,
        platform: Arc<dyn Platform>,
        selection: Selection,
        state: Arc<AppState>,
    ) -> Self {
        let serve = &workspace.config.serve;
        let uploads = UploadStore::new(
            &workspace.config.state_dir(),
            workspace.config.project.platform,
        );
        // An upload or removal a previous serve did not finish was never acknowledged: undo it.
        uploads.recover();
        Runner {
            uploads,
            drain_timeout: serve.drain_timeout,
            max_upload: serve.max_upload_bytes,
            max_unpacked: serve.max_unpacked_bytes,
            workspace: Mutex::new(workspace),
            platform,
            selection: Mutex::new(selection),
            chosen: Mutex::new(None),
            owner: Mutex::new(GroupingOwner::Phase(0)),
            reported: Mutex::new(BTreeSet::new()),
            in_sync_with: Mutex::new(None),
            regroup_lock: tokio::sync::Mutex::new(()),
            failed: std::sync::atomic::AtomicBool::new(false),
            state,
            repeats: Repeats::default(),
        }
    }

    pub fn platform(&self) -> &Arc<dyn Platform> {
        &self.platform
    }

    pub fn selection(&self) -> Selection {
        *self
            .selection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_selection(&self, selection: Selection) {
        *self
            .selection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = selection;
    }

    pub fn workspace(&self) -> Workspace {
        self.workspace
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads from the current configuration without cloning the whole workspace.
    fn with_config<T>(&self, read: impl FnOnce(&crate::config::Config) -> T) -> T {
        read(
            &self
                .workspace
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .config,
        )
    }

    /// Replaces the configuration (after `--watch` saw a change).
    pub fn set_workspace(&self, workspace: Workspace) {
        *self
            .workspace
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = workspace;
    }

    /// Every task with code: declared path tasks and uploads.
    fn present_specs(&self, workspace: &Workspace) -> BTreeMap<String, TaskSpec> {
        self.present(workspace).0
    }

    /// Every task with code, and which of them are uploads.
    fn present(&self, workspace: &Workspace) -> (BTreeMap<String, TaskSpec>, BTreeSet<String>) {
        let mut specs = workspace.specs.clone();
        let mut uploaded = BTreeSet::new();
        for (name, spec) in self.uploads.load_all() {
            let declared_path = matches!(
                workspace.config.tasks.get(&name).map(|t| &t.source),
                Some(TaskSource::Path { .. })
            );
            if !declared_path {
                uploaded.insert(name.clone());
                specs.insert(name, spec);
            }
        }
        (specs, uploaded)
    }

    /// Records who owns the grouping while no optimizer chose one (set once at start).
    pub fn set_owner(&self, owner: GroupingOwner) {
        *self
            .owner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = owner;
    }

    /// Who owns the grouping the next regroup applies, as the functions record it.
    pub fn grouping_owner(&self) -> GroupingOwner {
        match self.chosen() {
            Some(chosen) => GroupingOwner::Optimizer {
                source: chosen.source.word().to_string(),
                chosen_at: Some(chosen.at),
            },
            None => self
                .owner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    /// The artifacts of the current phase (or the chosen grouping) over the present tasks,
    /// stamped with the live-state annotations: the grouping's owner, and the uploaded tasks.
    fn desired(&self) -> Result<Vec<Artifact>, Error> {
        let workspace = self.workspace();
        let (specs, uploaded) = self.present(&workspace);
        let mut artifacts = match self.chosen() {
            Some(chosen) => {
                let present = specs.keys().cloned().collect();
                let grouping = crate::schedule::over_present(chosen.grouping.groups(), &present);
                fuse_grouping_over(&workspace, &specs, &grouping)
            }
            None => fuse_selection_over(&workspace, &specs, self.selection()),
        }?;
        let owner = self.grouping_owner().annotations();
        for artifact in &mut artifacts {
            let held: Vec<String> = artifact
                .tasks
                .iter()
                .filter(|t| uploaded.contains(*t))
                .cloned()
                .collect();
            let mut stamps = owner.clone();
            stamps.extend(crate::platform::owner::uploaded_annotation(&held));
            crate::fuse::metadata::stamp(artifact, &stamps);
        }
        Ok(artifacts)
    }

    /// Keeps `/-/health`'s `degraded` note true: the present tasks the current route table has
    /// no function for.
    fn note_degraded(&self) {
        let workspace = self.workspace();
        let routed = self.state.routes.current();
        let missing: Vec<String> = self
            .present_specs(&workspace)
            .into_keys()
            .filter(|t| !routed.by_task.contains_key(t))
            .collect();
        let note = (!missing.is_empty()).then(|| {
            let tasks = missing
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let healing = if workspace.config.serve.self_heal {
                "self-heal is repairing it"
            } else {
                "self-heal is off (`[serve] self-heal = false`): run `fusionizer apply` or \
                 restart serve"
            };
            format!("no function serves task(s) {tasks}; {healing}")
        });
        *self
            .state
            .degraded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = note;
    }

    /// Applies the current phase: deploy, switch routes, drain, delete.
    pub async fn regroup(&self, why: &str) -> Result<RegroupReport, Error> {
        let _guard = self.regroup_lock.lock().await;
        let started = Instant::now();
        let result = match self.apply_lock(why) {
            Ok(_apply_lock) => self.regroup_locked(why, started).await,
            Err(err) => Err(err),
        };
        self.record(why, started, &result);
        result
    }

    /// The same advisory lock as `fusionizer apply`, held for one regroup (or one upload with its
    /// rollback) only: a CLI apply and serve never change the platform at once (whichever comes
    /// second waits: the CLI exits 75 naming serve; serve retries its regroup a few seconds
    /// later, and an upload answers 503).
    fn apply_lock(&self, why: &str) -> Result<crate::lock::ApplyLock, Error> {
        workspace::lock_platform(
            &self.with_config(crate::config::Config::state_dir),
            self.platform.as_ref(),
            Locking {
                owner: &format!("fusionizer serve ({why})"),
                timeout: Duration::ZERO,
            },
        )
    }

    /// Counts, flags (for the retry) and logs the outcome of one regroup.
    fn record(&self, why: &str, started: Instant, result: &Result<RegroupReport, Error>) {
        let ok = matches!(result, Ok(report) if report.failed.is_empty());
        self.failed.store(!ok, Ordering::SeqCst);
        let origin = self.origin();
        self.state
            .metrics
            .transition(ok, origin.source.word(), started.elapsed());
        match result {
            Ok(report) => log_report(why, report),
            Err(err) => tracing::error!("{why}: regroup failed, routes unchanged: {err}"),
        }
        if ok {
            self.note_live_grouping(&origin);
        }
        self.note_degraded();
        // What serve wants may have changed with this regroup: the next resync compares again.
        *self
            .in_sync_with
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        let phase = origin.phase.map(|n| n - 1);
        let transition = transition_of(why, started, ok, phase, result);
        self.state.board.transition(phase, transition);
    }

    /// Changes the stored uploads and deploys the change as one unit: under the regroup lock
    /// (so no other upload, removal or regroup runs in between) and the apply lock, the change
    /// is made, the current phase applied, and on failure the change undone and applied again.
    /// A rollback therefore restores exactly what was live before this request, and what a
    /// success acknowledges stays until a later change replaces it.
    async fn change_uploads(&self, task: &str, change: UploadChange) -> Changed {
        let why = match &change {
            UploadChange::Put(_) => format!("upload of `{task}`"),
            UploadChange::Remove => format!("removal of `{task}`"),
        };
        let _guard = self.regroup_lock.lock().await;
        let started = Instant::now();
        let _apply_lock = match self.apply_lock(&why) {
            Ok(lock) => lock,
            Err(err) => {
                // Nothing was changed: the stored code is what it was.
                let result: Result<RegroupReport, Error> = Err(err);
                self.record(&why, started, &result);
                let Err(err) = result else {
                    unreachable!("made an error above")
                };
                return Changed::Busy(err);
            }
        };
        let replaced = match change {
            UploadChange::Put(staged) => self.uploads.commit(task, *staged),
            UploadChange::Remove if !self.uploads.contains(task) => return Changed::NotFound,
            UploadChange::Remove => self.uploads.take_aside(task),
        };
        let replaced = match replaced {
            Ok(replaced) => replaced,
            Err(e) => return Changed::Store(e),
        };
        let result = self.regroup_locked(&why, started).await;
        self.record(&why, started, &result);
        let reason = match result {
            Ok(report) if report.failed.is_empty() => {
                if let Err(e) = replaced.keep() {
                    tracing::warn!("removing the previous code of `{task}` failed: {e}");
                }
                return Changed::Done;
            }
            Ok(report) => report
                .failed
                .iter()
                .map(|(f, e)| format!("`{f}`: {e}"))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(err) => err.to_string(),
        };
        if let Err(e) = self.uploads.restore(replaced) {
            tracing::error!("restoring the previous code of `{task}` failed: {e}");
        }
        let rollback = format!("rollback of the {why}");
        let started = Instant::now();
        let result = self.regroup_locked(&rollback, started).await;
        self.record(&rollback, started, &result);
        Changed::RolledBack(reason)
    }

    /// One regroup is one run of the pipeline's top over what serve wants ([`workspace::run`]:
    /// observe, plan, the apply engine), under the apply lock its caller holds, with the route
    /// switch and the drain in the engine's hook between deploys and deletes.
    async fn regroup_locked(&self, why: &str, started: Instant) -> Result<RegroupReport, Error> {
        let artifacts = self.desired()?;
        let project = self.with_config(|c| c.project.name.clone());
        let hooks = SwitchRoutes {
            why,
            runner: self,
            // The route table is built over them once the new functions are ready.
            artifacts: artifacts.clone(),
            project: &project,
            started,
            moved: Mutex::new(BTreeMap::new()),
            switched_after: Mutex::new(None),
        };
        let mut prepared = Prepared::new(
            self.workspace(),
            self.platform.clone(),
            Desired::Fused,
            artifacts,
        );
        let observer = Regrouping {
            why,
            repeats: &self.repeats,
        };
        let outcome = workspace::run(
            &mut prepared,
            Operation {
                lock: None,
                saved: None,
                observer: &observer,
                execution: Some(Execution {
                    parallelism: PARALLELISM,
                    hooks: &hooks,
                    // The route switch runs after every regroup, changes or not.
                    without_changes: true,
                    confirm: &|_| Ok(()),
                }),
            },
        )
        .await?;
        let mut report = RegroupReport {
            moved: hooks
                .moved
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            elapsed: hooks
                .switched_after
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .unwrap_or_else(|| started.elapsed()),
            ..RegroupReport::default()
        };
        for result in outcome.report.iter().flat_map(|applied| &applied.results) {
            let name = result.change.function.clone();
            match (&result.outcome, result.change.action) {
                (Outcome::Applied, Action::Delete) => report.deleted.push(name),
                (Outcome::Applied, _) => report.deployed.push(name),
                (Outcome::Failed(why), _) => report.failed.push((name, why.clone())),
                (Outcome::NotAttempted(why), _) => {
                    tracing::warn!(function = %name, "not attempted: {why}");
                }
            }
        }
        Ok(report)
    }

    /// Builds a route table over the live functions, reusing existing routes (and their
    /// in-flight counters) for functions that did not change.
    async fn build_table(&self, artifacts: &[Artifact], live: &[LiveFunction]) -> RouteTable {
        let current = self.state.routes.current();
        let current_functions = current.functions();
        let mut table = RouteTable {
            origin: self.origin(),
            ..RouteTable::default()
        };
        let ready: Vec<&LiveFunction> = live
            .iter()
            .filter(|f| f.state == FunctionState::Ready)
            .collect();
        // Desired functions first, then any other live function for tasks still unrouted.
        let mut order: Vec<&LiveFunction> = ready
            .iter()
            .copied()
            .filter(|f| artifacts.iter().any(|a| is_same(a, f)))
            .collect();
        order.extend(
            ready
                .iter()
                .copied()
                .filter(|f| !artifacts.iter().any(|a| is_same(a, f))),
        );
        // Only tasks that are present get routes: a task whose code was removed must answer
        // 404 even while its old function is still live (about to be deleted).
        let present: BTreeSet<&str> = artifacts
            .iter()
            .flat_map(|a| a.tasks.iter().map(String::as_str))
            .collect();
        for function in order {
            let tasks = function.tasks();
            if tasks
                .iter()
                .all(|t| table.by_task.contains_key(t) || !present.contains(t.as_str()))
            {
                continue;
            }
            let digest = function.digest().unwrap_or_default().to_string();
            let route = match current_functions.get(&function.name) {
                Some(r) if r.digest == digest => r.clone(),
                _ => match self.platform.invoker(&function.name).await {
                    Ok(invoker) => Arc::new(FunctionRoute::new(
                        function.name.clone(),
                        tasks.clone(),
                        digest,
                        function.state.word().to_string(),
                        invoker,
                    )),
                    Err(err) => {
                        tracing::warn!(function = %function.name, "no route: {err}");
                        continue;
                    }
                },
            };
            for task in tasks {
                if present.contains(task.as_str()) {
                    table.by_task.entry(task).or_insert_with(|| route.clone());
                }
            }
        }
        table
    }

    /// Re-reads the platform (another `apply` or `destroy` may have changed it), rebuilds the
    /// routes if the live set changed, and reports drift: each difference between the live
    /// functions and what serve wants, once while it lasts. Returns whether there is drift that
    /// `[serve] self-heal` should repair (the caller regroups). Skipped while a regroup runs.
    pub async fn resync(&self) -> bool {
        let Ok(_guard) = self.regroup_lock.try_lock() else {
            return false;
        };
        if let Err(err) = self.platform.refresh().await {
            tracing::debug!("refresh failed: {err}");
            return false;
        }
        let project = self.with_config(|c| c.project.name.clone());
        let Ok(live) = self.platform.list(&project).await else {
            return false;
        };
        let seen = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            format!("{live:?}").hash(&mut hasher);
            hasher.finish()
        };
        if *self
            .in_sync_with
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            == Some(seen)
        {
            return false;
        }
        let artifacts = match self.desired() {
            Ok(artifacts) => artifacts,
            Err(err) => {
                tracing::debug!("not comparing with the live functions: {err}");
                return false;
            }
        };
        self.reroute(&artifacts, &live).await;
        self.note_degraded();
        let Ok(plan) = crate::plan::compute(&project, &artifacts, &live, &[]) else {
            return false;
        };
        let lines: BTreeSet<String> = plan.changes.iter().map(drift_line).collect();
        if lines.is_empty() {
            *self
                .in_sync_with
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(seen);
        }
        let self_heal = self.with_config(|c| c.serve.self_heal);
        let new: Vec<String> = {
            let mut reported = self
                .reported
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let new = lines.difference(&reported).cloned().collect();
            reported.clone_from(&lines);
            new
        };
        for line in &new {
            report::emit(Event::Status {
                verb: "Drift".to_string(),
                subject: line.clone(),
                tone: Tone::Warn,
            });
        }
        if !new.is_empty() {
            report::emit(Event::Status {
                verb: if self_heal { "Healing" } else { "Not healing" }.to_string(),
                subject: if self_heal {
                    "the live functions changed outside serve; redeploying what serve wants \
                     (`[serve] self-heal`)"
                        .to_string()
                } else {
                    "self-heal is off (`[serve] self-heal = false`); serve routes to what is \
                     live and leaves the drift"
                        .to_string()
                },
                tone: Tone::Warn,
            });
        }
        self_heal && plan.has_changes()
    }

    /// Rebuilds the routes when the live set changed: a routed function is gone or redeployed,
    /// or a ready function serves a task without a route.
    async fn reroute(&self, artifacts: &[Artifact], live: &[LiveFunction]) {
        let app = &self.state;
        let current = app.routes.current();
        let live_ready: BTreeMap<String, String> = live
            .iter()
            .filter(|f| f.state == FunctionState::Ready)
            .map(|f| (f.name.clone(), f.digest().unwrap_or_default().to_string()))
            .collect();
        let routed: BTreeMap<String, String> = current
            .functions()
            .into_iter()
            .map(|(n, f)| (n, f.digest.clone()))
            .collect();
        let unrouted_task = live_ready.keys().any(|name| {
            live.iter()
                .find(|f| &f.name == name)
                .is_some_and(|f| f.tasks().iter().any(|t| !current.by_task.contains_key(t)))
        });
        let stale = routed.iter().any(|(n, d)| live_ready.get(n) != Some(d));
        if !stale && !unrouted_task {
            return;
        }
        let table = self.build_table(artifacts, live).await;
        tracing::info!("live functions changed outside serve; routes rebuilt");
        app.routes.swap(table);
    }
}

/// One line of drift: what differs between a live function and what serve wants.
fn drift_line(change: &crate::plan::Change) -> String {
    let what = match change.action {
        Action::Create => "is missing",
        Action::Update => "differs",
        Action::Replace => "is broken",
        Action::Delete => "is live but not wanted",
    };
    format!(
        "function `{}` (tasks {}) {what}: {}",
        change.function,
        change.tasks.join(", "),
        change.reason
    )
}

/// How a regroup shows its progress: no spinner; `Planned 1 to add … (phase 2)` unless every
/// change only retries a function that is failing already; each change as [`Repeats`] shows it.
struct Regrouping<'a> {
    /// Why this regroup runs (`phase 2`), for the plan line.
    why: &'a str,
    repeats: &'a Repeats,
}

impl ApplyObserver for Regrouping<'_> {
    fn started(&self, change: &Change) {
        self.repeats.started(change);
    }

    fn step(&self, change: &Change, message: &str) {
        self.repeats.step(change, message);
    }

    fn finished(&self, result: &ChangeResult) {
        self.repeats.finished(result);
    }
}

impl workspace::Observer for Regrouping<'_> {
    fn planned(&self, plan: &Plan) {
        if plan.has_changes() && self.repeats.show_plan(plan.changes.iter()) {
            report::emit(Event::Status {
                verb: "Planned".to_string(),
                subject: format!(
                    "{} ({})",
                    crate::plan::render::counts(&plan.summary),
                    self.why
                ),
                tone: Tone::Info,
            });
        }
    }
}

/// The apply engine's hook for serve: once every new function is ready, switch the routes in
/// one swap, then drain the functions that lost their routes before the engine deletes them.
struct SwitchRoutes<'a> {
    /// Why this regroup runs (`phase 2`), for the progress line.
    why: &'a str,
    runner: &'a Runner,
    artifacts: Vec<Artifact>,
    project: &'a str,
    started: Instant,
    moved: Mutex<BTreeMap<String, (Option<String>, String)>>,
    switched_after: Mutex<Option<Duration>>,
}

#[async_trait]
impl ApplyHooks for SwitchRoutes<'_> {
    async fn before_deletes(&self, _so_far: &ApplyReport) -> Result<(), String> {
        let runner = self.runner;
        runner.platform.refresh().await.map_err(|e| e.to_string())?;
        let live = runner
            .platform
            .list(self.project)
            .await
            .map_err(|e| e.to_string())?;
        let table = runner.build_table(&self.artifacts, &live).await;
        let app = &runner.state;
        let old = app.routes.swap(table);
        *self
            .switched_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(self.started.elapsed());
        let new = app.routes.current();
        {
            let mut moved = self
                .moved
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (task, f) in &new.by_task {
                let before = old.by_task.get(task).map(|o| o.name.clone());
                if before.as_deref() != Some(f.name.as_str()) {
                    moved.insert(task.clone(), (before, f.name.clone()));
                }
            }
            if !moved.is_empty() {
                report::emit(switched_event(self.why, &moved, self.started.elapsed()));
            }
        }
        let still_routed = new.functions();
        for (name, route) in old.functions() {
            if still_routed.contains_key(&name) {
                continue;
            }
            let inflight = route.inflight();
            let id = format!("drain:{name}");
            if inflight > 0 {
                report::emit(Event::Begin {
                    id: id.clone(),
                    verb: "Draining".to_string(),
                    subject: format!("{name} ({inflight} in flight)"),
                });
            }
            let started = Instant::now();
            let drained = route.drain(runner.drain_timeout).await;
            if inflight > 0 && drained {
                report::emit(Event::End {
                    id,
                    verb: "Drained".to_string(),
                    subject: name.clone(),
                    elapsed: Some(started.elapsed()),
                    tone: Tone::Good,
                    detail: Vec::new(),
                });
            } else if !drained {
                report::emit(Event::End {
                    id,
                    verb: "Cut off".to_string(),
                    subject: format!(
                        "{name}: the drain timed out with {} request(s) in flight",
                        route.inflight()
                    ),
                    elapsed: None,
                    tone: Tone::Warn,
                    detail: Vec::new(),
                });
                tracing::warn!(
                    function = %name,
                    "drain timed out with {} request(s) in flight",
                    route.inflight()
                );
            }
        }
        Ok(())
    }
}

fn is_same(artifact: &Artifact, live: &LiveFunction) -> bool {
    artifact.name == live.name && live.digest() == Some(artifact.digest.as_str())
}

/// One regroup as `/-/state` lists it.
fn transition_of(
    why: &str,
    started: Instant,
    ok: bool,
    phase: Option<usize>,
    result: &Result<RegroupReport, Error>,
) -> Transition {
    let mut transition = Transition::finished(why, started, ok);
    transition.phase = phase.map(|i| i + 1);
    match result {
        Ok(report) => {
            transition = transition.switched_after(report.elapsed);
            transition.moved = report
                .moved
                .iter()
                .map(|(task, (from, to))| Move {
                    task: task.clone(),
                    from: from.clone(),
                    to: to.clone(),
                })
                .collect();
            transition.deployed.clone_from(&report.deployed);
            transition.deleted.clone_from(&report.deleted);
            transition.failed = report
                .failed
                .iter()
                .map(|(function, error)| Failure {
                    function: function.clone(),
                    error: error.clone(),
                })
                .collect();
        }
        Err(err) => transition.error = Some(err.to_string()),
    }
    transition
}

fn log_report(why: &str, report: &RegroupReport) {
    for (task, (from, to)) in &report.moved {
        match from {
            Some(from) => tracing::info!("{why}: `{task}` moved from `{from}` to `{to}`"),
            None => tracing::info!("{why}: `{task}` now served by `{to}`"),
        }
    }
    tracing::info!(
        "{why}: routes switched in {:.2?}; {} deployed, {} deleted, {} failed",
        report.elapsed,
        report.deployed.len(),
        report.deleted.len(),
        report.failed.len()
    );
}

/// The route switch as a progress line: `Switched 2 routes in 128ms (phase 2)`, then each task
/// that moved from one function to another (`taska: quickstart-taska → quickstart-taska-taskb`).
fn switched_event(
    why: &str,
    moved: &BTreeMap<String, (Option<String>, String)>,
    elapsed: Duration,
) -> Event {
    let n = moved.len();
    Event::End {
        id: format!("switch:{why}"),
        verb: "Switched".to_string(),
        subject: format!(
            "{n} route{} in {} ({why})",
            crate::ui::plural(n),
            report::duration(elapsed)
        ),
        elapsed: None,
        tone: Tone::Good,
        detail: moved
            .iter()
            .filter_map(|(task, (from, to))| {
                from.as_ref().map(|from| format!("{task}: {from} → {to}"))
            })
            .collect(),
    }
}

impl Runner {
    /// The path a task is declared with in fusion.toml, when its code is not an upload.
    fn declared_path(&self, task: &str) -> Option<String> {
        self.with_config(|c| match c.tasks.get(task).map(|t| &t.source) {
            Some(TaskSource::Path { written, .. }) => Some(written.clone()),
            _ => None,
        })
    }
}

/// A change to the stored uploads ([`Runner::change_uploads`]).
enum UploadChange {
    /// Put this validated upload in place of the task's code.
    Put(Box<super::uploads::Staged>),
    /// Take the task out.
    Remove,
}

/// What [`Runner::change_uploads`] came to.
enum Changed {
    /// Deployed; the change is final.
    Done,
    /// Another apply holds the platform's lock; nothing was changed.
    Busy(Error),
    /// Removal of a task that is not (or no longer) stored.
    NotFound,
    /// The stored uploads could not be changed; nothing was deployed.
    Store(UploadError),
    /// The deploy failed (why); the previous code is back and deployed again.
    RolledBack(String),
}

#[async_trait]
impl Control for Runner {
    async fn upload(&self, task: &str, zip: Bytes) -> Result<String, RunnerError> {
        if let Some(written) = self.declared_path(task) {
            return Err(RunnerError::Declared(format!(
                "task `{task}` is declared in fusion.toml with path `{written}`; change its code there, or declare it as `{{ upload = true }}`"
            )));
        }
        // Unpacking may take a while for a large archive: keep it off the proxy's threads. It
        // writes only a fresh staging directory, so it needs no lock.
        let (uploads, name, limits) = (
            self.uploads.clone(),
            task.to_string(),
            (self.max_upload, self.max_unpacked),
        );
        let staged =
            tokio::task::spawn_blocking(move || uploads.stage(&name, &zip, limits.0, limits.1))
                .await
                .map_err(|e| RunnerError::Internal(e.to_string()))??;
        match self
            .change_uploads(task, UploadChange::Put(Box::new(staged)))
            .await
        {
            Changed::Done => Ok(format!("Successfully deployed Task '{task}'")),
            Changed::Busy(err) => Err(RunnerError::Busy(err.to_string())),
            Changed::Store(e) => Err(e.into()),
            Changed::NotFound => unreachable!("only a removal finds nothing"),
            Changed::RolledBack(reason) => Err(RunnerError::DeployFailed {
                task: task.to_string(),
                reason,
            }),
        }
    }

    async fn remove(&self, task: &str) -> Result<String, RunnerError> {
        if let Some(written) = self.declared_path(task) {
            return Err(RunnerError::Declared(format!(
                "task `{task}` is declared in fusion.toml with path `{written}`; remove it from fusion.toml instead"
            )));
        }
        match self.change_uploads(task, UploadChange::Remove).await {
            Changed::Done => Ok(format!("Successfully deleted Task '{task}'")),
            Changed::Busy(err) => Err(RunnerError::Busy(err.to_string())),
            Changed::NotFound => Err(RunnerError::NotFound(task.to_string())),
            Changed::Store(e) => Err(e.into()),
            Changed::RolledBack(reason) => {
                tracing::error!("removing task `{task}` failed: {reason}");
                Err(RunnerError::RemovalFailed(task.to_string()))
            }
        }
    }

    fn is_known(&self, task: &str) -> bool {
        crate::contract::is_task_name(task)
            && (self.with_config(|c| c.tasks.contains_key(task)) || self.uploads.contains(task))
    }
}
