//! The pipeline every command shares, from fusion.toml to a plan carried out:
//!
//! ```text
//! load config → open the platform → lock → observe what is live → pick the grouping → fuse it
//!             over the present tasks → plan::compute → freshness check → confirm → execute
//! ```
//!
//! `validate`, `build`, `plan`, `apply`, `destroy`, `status` and `serve` all go through here, so
//! each step is written once; the top of the chain, from the lock on, is one entry point, [`run`]
//! (`plan` stops after the plan, `apply`, `destroy` and serve's regroups execute it). What is
//! desired ([`Desired`]) decides how it observes: a destroy skips the fuse step (its desired set
//! is empty), serve's runner brings the artifacts it fused. Progress is reported through an
//! [`Observer`]; the commands pass the terminal's ([`Progress`]), serve's runner its own. Paths
//! are absolute from [`crate::config::load`] on. Nothing here prints.
//!
//! `plan`, `apply` and `status` without `--at`/`--phase` observe first and pick the grouping the
//! live functions record ([`resolve`]): serve writes who chose it on every function it deploys
//! (`platform::owner`), so a command in another process computes the grouping serve would. A
//! function holding a task uploaded to serve belongs to serve: it is kept, never planned.

#![warn(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::apply::progress::Progress;
use crate::apply::{execute, ApplyHooks, ApplyObserver, ApplyOptions, ApplyReport, NoObserver};
use crate::config::{TaskSpec, Workspace};
use crate::error::{Error, Result};
use crate::fuse::{self, Artifact};
use crate::lock::{self, ApplyLock};
use crate::plan::saved::SavedPlan;
use crate::plan::{self, Desired, Plan};
use crate::platform::{self, HostOptions, LiveFunction, Platform, PlatformError};
use crate::schedule::{self, Selection};
use crate::ui::report::{self, Event};

/// The workspace, the fused artifacts of the selected grouping and the platform.
pub struct Prepared {
    /// fusion.toml and the task specs, loaded and valid.
    pub workspace: Workspace,
    /// Which grouping was fused (the default for a destroy).
    pub selection: Selection,
    /// One artifact per function of that grouping (none for a destroy).
    pub artifacts: Vec<Artifact>,
    /// The configured platform, open.
    pub platform: Arc<dyn Platform>,
    /// What is desired. [`resolve`] settles [`Desired::FollowLive`]: it stays when the live
    /// state recorded the grouping (a saved plan then re-reads it when applied), and becomes the
    /// [`Desired::Grouping`] picked when nothing live recorded one.
    pub desired: Desired,
    /// Who chose the grouping, when the live state had a say ([`resolve`]).
    pub grouping: Option<plan::GroupingSource>,
    /// Live functions that belong to serve (they hold uploaded tasks): never planned.
    pub kept: Vec<plan::Kept>,
}

impl Prepared {
    /// The project's name.
    pub fn project(&self) -> &str {
        &self.workspace.config.project.name
    }
}

/// Fuses the grouping `selection` picks over the tasks in `specs` (the tasks that have code:
/// declared path tasks, plus uploads in `serve`).
pub fn fuse_selection_over(
    workspace: &Workspace,
    specs: &BTreeMap<String, TaskSpec>,
    selection: Selection,
) -> Result<Vec<Artifact>> {
    Ok(fuse_problems_over(workspace, specs, selection)??)
}

/// Fuses an explicit `grouping` (serve's optimizers choose one) over the tasks in `specs`; the
/// grouping must already cover exactly those tasks ([`schedule::over_present`]). A group that
/// cannot be fused is an error naming the tasks and the field, as for a phase.
pub fn fuse_grouping_over(
    workspace: &Workspace,
    specs: &BTreeMap<String, TaskSpec>,
    grouping: &schedule::Grouping,
) -> Result<Vec<Artifact>> {
    Ok(fuse::fuse_grouping_with(
        &workspace.config.project.name,
        specs,
        grouping,
        &fuse::baked_env(&workspace.config),
        &workspace.config.overrides,
    )?)
}

/// The fused artifacts of the grouping `selection` picks over the declared path tasks.
pub fn fuse_selection(workspace: &Workspace, selection: Selection) -> Result<Vec<Artifact>> {
    fuse_selection_over(workspace, &workspace.specs, selection)
}

/// Opens the configured platform for `status` (exit 69 when it is unavailable; with `deploy`,
/// first [`check_deploy_settings`]), following what is live. Nothing is fused yet: that waits
/// for [`resolve`], which looks at what is live first.
pub fn open_for(workspace: Workspace, deploy: bool) -> Result<Prepared> {
    if deploy {
        check_deploy_settings(&workspace)?;
    }
    let platform = open_platform(&workspace, None)?;
    Ok(Prepared::new(
        workspace,
        platform,
        Desired::FollowLive,
        Vec::new(),
    ))
}

/// Opens the configured platform to plan or carry out `desired` (exit 69 when it is
/// unavailable). Unless nothing is desired (a destroy), first refuses settings that cannot
/// deploy ([`check_deploy_settings`]). Nothing is fused yet: [`run`] does that once it has
/// looked at what is live.
pub fn open(workspace: Workspace, desired: Desired) -> Result<Prepared> {
    if !desired.is_nothing() {
        check_deploy_settings(&workspace)?;
    }
    let platform = open_platform(&workspace, None)?;
    Ok(Prepared::new(workspace, platform, desired, Vec::new()))
}

impl Prepared {
    /// `desired` on `platform`, with `artifacts` when the caller fused them
    /// ([`Desired::Fused`]); the grouping is settled by [`run`].
    pub fn new(
        workspace: Workspace,
        platform: Arc<dyn Platform>,
        desired: Desired,
        artifacts: Vec<Artifact>,
    ) -> Prepared {
        Prepared {
            workspace,
            selection: Selection::default(),
            artifacts,
            platform,
            desired,
            grouping: None,
            kept: Vec::new(),
        }
    }
}

/// Observes the platform, then picks and fuses the grouping of `prepared`:
///
/// - `given` (`--at`/`--phase`) wins;
/// - else the owner the live functions record ([`platform::owner::live_owner`]): serve's
///   schedule (the phase in force now, counted from the recorded origin), the phase serve
///   holds, or the grouping serve's optimizer chose (the live functions' task sets, laid over
///   the present tasks), so that fusion.toml edits to task code still deploy but the grouping
///   is not undone;
/// - else the grouping at `0s`, as before anything was live.
///
/// Functions holding tasks uploaded to serve (`fusionizer.io/uploaded`) are kept out of the
/// plan, with their tasks: serve deploys them. The artifacts carry the live-state annotations
/// they were chosen by, so that an apply keeps what serve recorded.
pub async fn resolve(prepared: &mut Prepared, given: Option<Selection>) -> Result<Observed> {
    use crate::platform::owner::{live_owner, uploaded_tasks, GroupingOwner};
    let project = prepared.project().to_string();
    let listed: Vec<LiveFunction> = prepared
        .platform
        .list(&project)
        .await?
        .into_iter()
        .filter(|f| f.is_owned_by(&project))
        .collect();
    let (kept, owned): (Vec<LiveFunction>, Vec<LiveFunction>) = listed
        .into_iter()
        .partition(|f| !uploaded_tasks(f).is_empty());
    let held: BTreeSet<String> = kept.iter().flat_map(LiveFunction::tasks).collect();
    let workspace = &prepared.workspace;
    let specs: BTreeMap<String, TaskSpec> = workspace
        .specs
        .iter()
        .filter(|(name, _)| !held.contains(*name))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let present: BTreeSet<String> = specs.keys().cloned().collect();
    let config = &workspace.config;
    let owner = live_owner(&owned).or_else(|| live_owner(&kept));
    let mut stamps = BTreeMap::new();
    let mut source = None;
    let mut selection = given.unwrap_or_default();
    let grouping = match (given, &owner) {
        (Some(given), owner) => {
            source = owner.as_ref().map(|o| plan::GroupingSource {
                owner: "flags".to_string(),
                description: format!(
                    "{} (given), overriding {}",
                    describe_selection(config, given),
                    o.describe()
                ),
            });
            schedule::grouping(config, given, &present)?
        }
        (None, Some(owner @ GroupingOwner::Optimizer { source: who, .. })) => {
            let live_groups: Vec<Vec<String>> = owned.iter().map(LiveFunction::tasks).collect();
            source = Some(plan::GroupingSource {
                owner: who.clone(),
                description: format!(
                    "chosen by {}; `--at`/`--phase` go back to fusion.toml's",
                    owner.describe()
                ),
            });
            stamps = owner.annotations();
            schedule::over_present(&live_groups, &present)
        }
        (None, Some(owner)) => {
            let (picked, what) = match owner {
                GroupingOwner::Schedule { origin } => {
                    let offset = GroupingOwner::offset_at(origin, std::time::SystemTime::now())
                        .unwrap_or_default();
                    let picked = match schedule::phase_at(config, offset) {
                        Some(i) => Selection::Phase(i + 1),
                        None => Selection::At(std::time::Duration::ZERO),
                    };
                    (picked, "schedule")
                }
                GroupingOwner::Phase(n) if *n >= 1 && *n <= config.phases.len() => {
                    (Selection::Phase(*n), "phase")
                }
                _ => (Selection::At(std::time::Duration::ZERO), "phase"),
            };
            selection = picked;
            source = Some(plan::GroupingSource {
                owner: what.to_string(),
                description: format!(
                    "{}, as {}",
                    describe_selection(config, picked),
                    owner.describe()
                ),
            });
            stamps = owner.annotations();
            schedule::grouping(config, picked, &present)?
        }
        (None, None) => schedule::grouping(config, selection, &present)?,
    };
    // The live state chose the grouping (no `--at`/`--phase`): a saved plan reads it again.
    prepared.desired = match (given, owner) {
        (None, Some(_)) => Desired::FollowLive,
        _ => Desired::Grouping(selection),
    };
    let mut artifacts = fuse_grouping_over(workspace, &specs, &grouping)?;
    for artifact in &mut artifacts {
        fuse::metadata::stamp(artifact, &stamps);
    }
    prepared.selection = selection;
    prepared.grouping = source;
    prepared.kept = kept
        .iter()
        .map(|f| plan::Kept {
            function: f.name.clone(),
            tasks: f.tasks(),
            uploaded: uploaded_tasks(f),
        })
        .collect();
    prepared.artifacts = artifacts;
    let known: Vec<LiveFunction> = owned.iter().chain(&kept).cloned().collect();
    let unowned = find_unowned(prepared.platform.as_ref(), &known, &prepared.artifacts).await?;
    Ok(Observed {
        owned,
        unowned,
        kept,
    })
}

/// `phase 2`, or `the initial grouping (every task alone)`, for the selection `selection` picks.
pub fn describe_selection(config: &crate::config::Config, selection: Selection) -> String {
    let phase = match selection {
        Selection::Phase(n) => Some(n),
        Selection::At(offset) => schedule::phase_at(config, offset).map(|i| i + 1),
    };
    match phase {
        Some(n) => format!("phase {n}"),
        None => "the initial grouping (every task alone)".to_string(),
    }
}

/// Looks up every desired name that is not among `known` so that a same-named function this
/// project does not own is found (a few lookups at a time).
async fn find_unowned(
    platform: &dyn Platform,
    known: &[LiveFunction],
    desired: &[Artifact],
) -> Result<Vec<LiveFunction>, PlatformError> {
    let known: BTreeSet<&str> = known.iter().map(|f| f.name.as_str()).collect();
    let mut unowned = lookup_missing(platform, &known, desired).await?;
    unowned.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(unowned)
}

/// How many functions [`lookup_missing`] looks up at once (each is a `nuctl get` on Nuclio).
const LOOKUPS_AT_ONCE: usize = 4;

/// The live functions named like a `desired` artifact but not among `known`, looked up
/// [`LOOKUPS_AT_ONCE`] at a time.
async fn lookup_missing(
    platform: &dyn Platform,
    known: &BTreeSet<&str>,
    desired: &[Artifact],
) -> Result<Vec<LiveFunction>, PlatformError> {
    let missing: Vec<&str> = desired
        .iter()
        .map(|a| a.name.as_str())
        .filter(|n| !known.contains(*n))
        .collect();
    let mut found = Vec::new();
    for batch in missing.chunks(LOOKUPS_AT_ONCE) {
        // Plain `join_all` over eagerly built futures keeps this future provably `Send` for
        // serve, which runs it on spawned tasks.
        for function in
            futures_util::future::join_all(batch.iter().map(|name| platform.get(name))).await
        {
            found.extend(function?);
        }
    }
    Ok(found)
}

/// Refuses (exit 78) platform settings under which a deploy cannot work, before anything runs:
/// on the `nuctl` platform with Kubernetes, a registry must be set
/// ([`platform::nuctl::registry_problem`]).
pub fn check_deploy_settings(workspace: &Workspace) -> Result<()> {
    let config = &workspace.config;
    if config.project.platform != crate::config::PlatformKind::Nuctl {
        return Ok(());
    }
    let env = std::env::var_os(platform::nuctl::REGISTRY_ENV);
    match platform::nuctl::registry_problem(&config.nuctl, env.as_deref()) {
        None => Ok(()),
        Some((message, hint)) => Err(Error::new(
            crate::error::ExitCode::Config,
            format!("{}: {message}", config.file.display()),
        )
        .with_hint(hint)),
    }
}

/// Opens the platform fusion.toml names; `host` carries serve's settings for the local platform.
pub fn open_platform(
    workspace: &Workspace,
    host: Option<HostOptions>,
) -> Result<Arc<dyn Platform>> {
    Ok(platform::open(&workspace.config, host)?)
}

/// What is live: the owned functions, and unowned ones under a desired name.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Functions this project owns (both ownership labels match).
    pub owned: Vec<LiveFunction>,
    /// Functions under a desired name that this project does not own.
    pub unowned: Vec<LiveFunction>,
    /// Owned functions that belong to serve (they hold uploaded tasks), left out of `owned` by
    /// [`resolve`]; empty from [`observe`].
    pub kept: Vec<LiveFunction>,
}

/// Lists the owned functions, then looks up every desired name that is not among them so a
/// same-named unowned function is found (a few lookups at a time).
pub async fn observe(
    platform: &dyn Platform,
    project: &str,
    desired: &[Artifact],
) -> Result<Observed, PlatformError> {
    let (mut owned, mut unowned): (Vec<LiveFunction>, Vec<LiveFunction>) = platform
        .list(project)
        .await?
        .into_iter()
        .partition(|f| f.is_owned_by(project));
    let known: BTreeSet<String> = owned
        .iter()
        .chain(unowned.iter())
        .map(|f| f.name.clone())
        .collect();
    let known: BTreeSet<&str> = known.iter().map(String::as_str).collect();
    for f in lookup_missing(platform, &known, desired).await? {
        if f.is_owned_by(project) {
            owned.push(f);
        } else {
            unowned.push(f);
        }
    }
    owned.sort_by(|a, b| a.name.cmp(&b.name));
    unowned.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Observed {
        owned,
        unowned,
        kept: Vec::new(),
    })
}

/// A tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| Error::failure("cannot start the async runtime").caused_by(e.to_string()))?;
    // nuctl runs in a process group of its own (so that a deadline ends what it started): a
    // Ctrl-C must still reach it.
    rt.block_on(async { crate::proc::end_groups_on_signal() });
    Ok(rt)
}

/// The plan for what was `prepared` against what was `observed`: [`plan::compute`], or for a
/// destroy [`plan::destroy`] (every owned function deleted, nothing else listed).
pub fn compute_plan(prepared: &Prepared, observed: &Observed) -> Result<Plan> {
    Ok(if prepared.desired.is_nothing() {
        plan::destroy(prepared.project(), &observed.owned)?
    } else {
        let mut plan = plan::compute(
            prepared.project(),
            &prepared.artifacts,
            &observed.owned,
            &observed.unowned,
        )?;
        plan.grouping.clone_from(&prepared.grouping);
        plan.kept.clone_from(&prepared.kept);
        plan
    })
}

/// How [`run`] reports its progress: the refresh and the plan here, each change through
/// [`ApplyObserver`]. The commands pass [`Progress`] (a spinner on a terminal); serve's runner
/// its own (no spinner; a plan line unless it only retries what is failing).
pub trait Observer: ApplyObserver {
    /// Observing the live functions on a platform of `platform_kind` begins.
    fn refreshing(&self, _platform_kind: &str) {}
    /// Observing ended (or failed).
    fn refreshed(&self) {}
    /// The plan to carry out is known (fresh, or the saved one found still fresh).
    fn planned(&self, _plan: &Plan) {}
}

/// The id of the refresh spinner.
const REFRESH: &str = "refresh";

/// The terminal's observer: `Refreshing live functions (local platform)` behind a spinner while
/// the platform is observed, then every change as a long step.
impl Observer for Progress {
    fn refreshing(&self, platform_kind: &str) {
        report::emit(Event::Spin {
            id: REFRESH.to_string(),
            verb: "Refreshing".to_string(),
            subject: format!("live functions ({platform_kind} platform)"),
        });
    }

    fn refreshed(&self) {
        report::emit(Event::Clear {
            id: REFRESH.to_string(),
        });
    }
}

/// Reports nothing.
impl Observer for NoObserver {}

/// Who takes the apply lock, and how long they wait for it.
#[derive(Debug, Clone, Copy)]
pub struct Locking<'a> {
    /// What the lock file names as its holder (`fusionizer apply plan.json`).
    pub owner: &'a str,
    /// How long to wait while another process holds it (zero: not at all).
    pub timeout: Duration,
}

/// Carrying out the plan, once it is known and has changes.
pub struct Execution<'a> {
    /// How many changes run at once.
    pub parallelism: usize,
    /// The engine's hooks (serve switches routes between deploys and deletes).
    pub hooks: &'a dyn ApplyHooks,
    /// Run the engine, and so its hooks, also when the plan has no changes: serve's route
    /// switch builds the routes over what is live after every regroup. The commands say `false`.
    pub without_changes: bool,
    /// Called with the plan before anything changes; an `Err` stops the run there (a refusal,
    /// a cancelled prompt).
    pub confirm: &'a (dyn Fn(&Plan) -> Result<()> + Sync),
}

/// One run of the top of the pipeline ([`run`]).
pub struct Operation<'a> {
    /// Take the apply lock first; `None` for a plan that only reads, or a caller that holds the
    /// lock itself (serve's runner, across an upload and its rollback: [`take_lock`]).
    pub lock: Option<Locking<'a>>,
    /// A saved plan (and the file it was read from) to carry out instead of the fresh one, if
    /// nothing moved since it was made (else exit 75 saying what moved).
    pub saved: Option<(&'a SavedPlan, &'a Path)>,
    /// Where progress goes.
    pub observer: &'a dyn Observer,
    /// Execute the plan; `None` stops once it is computed (`fusionizer plan`).
    pub execution: Option<Execution<'a>>,
}

/// What [`run`] saw, planned and did.
pub struct Outcome {
    /// What was live.
    pub observed: Observed,
    /// The plan carried out (or only computed).
    pub plan: Plan,
    /// What executing it did; `None` when it was not executed (no execution asked for, or no
    /// changes and [`Execution::without_changes`] not set).
    pub report: Option<ApplyReport>,
}

/// The top of the pipeline, for `plan`, `apply`, `destroy` and serve's regroups: lock → observe
/// (and pick and fuse the grouping) → compute the plan → check a saved plan is still fresh →
/// confirm → execute. Lock and execution are optional ([`Operation`]); the lock is held until
/// the end.
pub async fn run(prepared: &mut Prepared, operation: Operation<'_>) -> Result<Outcome> {
    let Operation {
        lock,
        saved,
        observer,
        execution,
    } = operation;
    let _lock = match lock {
        Some(locking) => Some(take_lock(prepared, locking)?),
        None => None,
    };
    observer.refreshing(prepared.platform.kind());
    let observed = look(prepared).await;
    observer.refreshed();
    let observed = observed?;
    // Also refuses to touch same-named functions this project does not own.
    let mut plan = compute_plan(prepared, &observed)?;
    if let Some((saved, written)) = saved {
        saved.check_fresh(
            written,
            &prepared.platform.identity(),
            prepared.project(),
            &prepared.artifacts,
            &observed.owned,
        )?;
        plan = saved.plan.clone();
    }
    observer.planned(&plan);
    let report = match execution {
        Some(execution) if plan.has_changes() || execution.without_changes => {
            (execution.confirm)(&plan)?;
            let options = ApplyOptions {
                parallelism: execution.parallelism,
                observer,
                hooks: execution.hooks,
            };
            // Boxed as `dyn Future + Send` so the compiler checks `Send` here, where the
            // lifetimes are concrete (the engine's stream combinators otherwise trip its
            // inference): serve runs this on spawned tasks.
            let executing: std::pin::Pin<
                Box<dyn std::future::Future<Output = ApplyReport> + Send + '_>,
            > = Box::pin(execute(
                prepared.platform.as_ref(),
                &plan,
                &prepared.artifacts,
                &options,
            ));
            Some(executing.await)
        }
        _ => None,
    };
    Ok(Outcome {
        observed,
        plan,
        report,
    })
}

/// Observes what `prepared` desires: every owned function for a destroy, the desired names of
/// artifacts the caller fused, or the live state that picks the grouping ([`resolve`]).
async fn look(prepared: &mut Prepared) -> Result<Observed> {
    match prepared.desired {
        Desired::Nothing => Ok(observe(prepared.platform.as_ref(), prepared.project(), &[]).await?),
        Desired::Fused => Ok(observe(
            prepared.platform.as_ref(),
            prepared.project(),
            &prepared.artifacts,
        )
        .await?),
        Desired::FollowLive => resolve(prepared, None).await,
        Desired::Grouping(selection) => resolve(prepared, Some(selection)).await,
    }
}

/// Takes the apply lock of `prepared`'s platform for `locking.owner`, waiting up to its timeout
/// (exit 75 naming the holder when it is not free).
pub fn take_lock(prepared: &Prepared, locking: Locking<'_>) -> Result<ApplyLock> {
    lock_platform(
        &prepared.workspace.config.state_dir(),
        prepared.platform.as_ref(),
        locking,
    )
}

/// [`take_lock`] for a caller that holds its platform and state directory apart (serve's runner).
pub fn lock_platform(
    state_dir: &Path,
    platform: &dyn Platform,
    locking: Locking<'_>,
) -> Result<ApplyLock> {
    let lock_file = lock::lock_path(state_dir, &platform.identity());
    if !locking.timeout.is_zero() {
        tracing::debug!(
            "waiting up to {:?} for `{}`",
            locking.timeout,
            lock_file.display()
        );
    }
    Ok(lock::acquire(&lock_file, locking.owner, locking.timeout)?)
}

/// The grouping `selection` picks, fused over the declared path tasks, with its problems kept
/// structured: the outer `Err` only when the grouping itself cannot be chosen.
pub fn fuse_problems(
    workspace: &Workspace,
    selection: Selection,
) -> Result<Result<Vec<Artifact>, fuse::FuseFailure>> {
    fuse_problems_over(workspace, &workspace.specs, selection)
}

fn fuse_problems_over(
    workspace: &Workspace,
    specs: &BTreeMap<String, TaskSpec>,
    selection: Selection,
) -> Result<Result<Vec<Artifact>, fuse::FuseFailure>> {
    let present: BTreeSet<String> = specs.keys().cloned().collect();
    let grouping = schedule::grouping(&workspace.config, selection, &present)?;
    Ok(fuse::fuse_grouping_with(
        &workspace.config.project.name,
        specs,
        &grouping,
        &fuse::baked_env(&workspace.config),
        &workspace.config.overrides,
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::apply::ChangeResult;
    use crate::apply::NoHooks;
    use crate::plan::testing::Fake;
    use crate::plan::Change;
    use crate::platform::memory::MemoryPlatform;

    /// Every call of the observer and of the confirmation, in order.
    #[derive(Default)]
    struct Recording(Mutex<Vec<String>>);

    impl Recording {
        fn push(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }

        fn seen(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl ApplyObserver for Recording {
        fn started(&self, change: &Change) {
            self.push(format!("started {}", change.function));
        }

        fn finished(&self, result: &ChangeResult) {
            self.push(format!("finished {}", result.change.function));
        }
    }

    impl Observer for Recording {
        fn refreshing(&self, platform_kind: &str) {
            self.push(format!("refreshing {platform_kind}"));
        }

        fn refreshed(&self) {
            self.push("refreshed".to_string());
        }

        fn planned(&self, plan: &Plan) {
            self.push(format!("planned {}", plan.changes.len()));
        }
    }

    /// A project `shop` with no tasks in `root`, loaded from its fusion.toml.
    fn workspace(root: &Path) -> Workspace {
        let file = root.join("fusion.toml");
        std::fs::write(&file, "[project]\nname = \"shop\"\n").unwrap();
        crate::config::load(&file).unwrap()
    }

    /// A memory platform and what [`run`] reports on it, for a project in a temporary directory.
    struct Bench {
        root: tempfile::TempDir,
        platform: Arc<MemoryPlatform>,
        observer: Recording,
    }

    impl Bench {
        fn new() -> Bench {
            Bench {
                root: tempfile::tempdir().unwrap(),
                platform: Arc::new(MemoryPlatform::new("t")),
                observer: Recording::default(),
            }
        }

        /// Whether another writer could take the apply lock now.
        fn lock_is_free(&self) -> bool {
            let state_dir = self.root.path().join(crate::contract::STATE_DIR);
            let other = Locking {
                owner: "another apply",
                timeout: Duration::ZERO,
            };
            lock_platform(&state_dir, self.platform.as_ref(), other).is_ok()
        }

        /// Runs `desired` with `artifacts` under the lock, confirming with `confirm`.
        fn run(
            &self,
            desired: Desired,
            artifacts: Vec<Artifact>,
            confirm: &(dyn Fn(&Plan) -> Result<()> + Sync),
        ) -> Result<Outcome> {
            self.run_even_without_changes(desired, artifacts, confirm, false)
        }

        /// [`Bench::run`], with [`Execution::without_changes`].
        fn run_even_without_changes(
            &self,
            desired: Desired,
            artifacts: Vec<Artifact>,
            confirm: &(dyn Fn(&Plan) -> Result<()> + Sync),
            without_changes: bool,
        ) -> Result<Outcome> {
            let workspace = workspace(self.root.path());
            let platform = self.platform.clone();
            let mut prepared = Prepared::new(workspace, platform, desired, artifacts);
            let execution = Execution {
                parallelism: 1,
                hooks: &NoHooks,
                without_changes,
                confirm,
            };
            let operation = Operation {
                lock: Some(Locking {
                    owner: "fusionizer apply",
                    timeout: Duration::ZERO,
                }),
                saved: None,
                observer: &self.observer,
                execution: Some(execution),
            };
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(run(&mut prepared, operation))
        }
    }

    #[test]
    fn run_refreshes_plans_confirms_then_executes_under_the_lock() {
        let bench = Bench::new();
        let fake = Fake::new("shop", &["a"]);
        let confirm = |plan: &Plan| -> Result<()> {
            // The lock is held while the plan is confirmed: another writer is refused.
            assert!(!bench.lock_is_free());
            bench
                .observer
                .push(format!("confirm {}", plan.changes.len()));
            Ok(())
        };
        let outcome = bench.run(Desired::Fused, vec![fake.build()], &confirm);
        let name = fake.name();
        assert_eq!(
            bench.observer.seen(),
            [
                "refreshing memory".to_string(),
                "refreshed".to_string(),
                "planned 1".to_string(),
                "confirm 1".to_string(),
                format!("started {name}"),
                format!("finished {name}"),
            ]
        );
        assert!(outcome.unwrap().report.unwrap().is_success());
        assert!(bench.platform.function(&name).is_some());

        // Nothing left to change: nothing is confirmed or executed.
        let outcome = bench.run(Desired::Fused, vec![fake.build()], &confirm);
        assert!(outcome.unwrap().report.is_none());
        let seen = bench.observer.seen();
        assert_eq!(seen, ["refreshing memory", "refreshed", "planned 0"]);
        // The lock is free again once the run ended.
        assert!(bench.lock_is_free());

        // serve's runner executes even so: its route switch is an engine hook.
        let ok = |_: &Plan| Ok(());
        let outcome = bench.run_even_without_changes(Desired::Fused, vec![fake.build()], &ok, true);
        assert!(outcome.unwrap().report.is_some());
    }

    #[test]
    fn a_refused_confirmation_changes_nothing_and_nothing_desired_deletes_every_owned_function() {
        let bench = Bench::new();
        let fake = Fake::new("shop", &["a"]);
        let refuse = |_: &Plan| -> Result<()> { Err(Error::failure("apply cancelled")) };
        let refused = bench.run(Desired::Fused, vec![fake.build()], &refuse);
        assert_eq!(refused.err().unwrap().to_string(), "apply cancelled");
        assert!(bench.platform.functions().is_empty());
        let seen = bench.observer.seen();
        assert_eq!(seen, ["refreshing memory", "refreshed", "planned 1"]);

        bench.platform.insert(fake.live());
        let destroyed = bench
            .run(Desired::Nothing, Vec::new(), &|_| Ok(()))
            .unwrap();
        assert_eq!(destroyed.plan.changes.len(), 1);
        assert_eq!(destroyed.plan.changes[0].action, plan::Action::Delete);
        assert!(bench.platform.functions().is_empty());
    }
}
