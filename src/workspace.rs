//! The pipeline every command shares, from fusion.toml to a plan:
//!
//! ```text
//! load config → pick the grouping → fuse it over the present tasks → open the platform
//!             → observe what is live → plan::compute
//! ```
//!
//! `validate`, `build`, `plan`, `apply`, `destroy`, `status` and `serve` all go through here, so
//! each step is written once. A destroy skips the fuse step: its desired set is empty. Paths are absolute from [`crate::config::load`] on. Nothing here prints.
//!
//! `plan`, `apply` and `status` without `--at`/`--phase` observe first and pick the grouping the
//! live functions record ([`resolve`]): serve writes who chose it on every function it deploys
//! (`platform::owner`), so a command in another process computes the grouping serve would. A
//! function holding a task uploaded to serve belongs to serve: it is kept, never planned.

#![warn(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::config::{TaskSpec, Workspace};
use crate::error::{Error, Result};
use crate::fuse::{self, Artifact};
use crate::plan::{self, Plan};
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
    /// Prepared for `destroy` ([`prepare_destroy`]): the desired set is empty, so the plan
    /// deletes every owned function.
    pub destroy: bool,
    /// Who chose the grouping, when the live state had a say ([`resolve`]).
    pub grouping: Option<plan::GroupingSource>,
    /// Live functions that belong to serve (they hold uploaded tasks): never planned.
    pub kept: Vec<plan::Kept>,
    /// The grouping was read from the live state (no `--at`/`--phase`): a saved plan re-reads
    /// it when applied.
    pub follows_live: bool,
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

/// Fuses the grouping `selection` picks and opens the configured platform (exit 69 when it is
/// unavailable).
pub fn prepare(workspace: Workspace, selection: Selection) -> Result<Prepared> {
    let artifacts = fuse_selection(&workspace, selection)?;
    let platform = open_platform(&workspace, None)?;
    Ok(Prepared {
        workspace,
        selection,
        artifacts,
        platform,
        destroy: false,
        grouping: None,
        kept: Vec::new(),
        follows_live: false,
    })
}

/// Opens the configured platform for `plan`, `apply` or `status` (exit 69 when it is
/// unavailable; with `deploy`, first [`check_deploy_settings`]). Nothing is fused yet: that
/// waits for [`resolve`], which looks at what is live first.
pub fn open_for(workspace: Workspace, deploy: bool) -> Result<Prepared> {
    if deploy {
        check_deploy_settings(&workspace)?;
    }
    let platform = open_platform(&workspace, None)?;
    Ok(Prepared {
        workspace,
        selection: Selection::default(),
        artifacts: Vec::new(),
        platform,
        destroy: false,
        grouping: None,
        kept: Vec::new(),
        follows_live: false,
    })
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
            prepared.follows_live = true;
            schedule::grouping(config, picked, &present)?
        }
        (None, None) => schedule::grouping(config, selection, &present)?,
    };
    if matches!(owner, Some(GroupingOwner::Optimizer { .. })) && given.is_none() {
        prepared.follows_live = true;
    }
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

/// [`prepare`] for a command that may deploy (`plan`, `apply`): first refuses, with exit 78,
/// settings that cannot deploy ([`check_deploy_settings`]).
pub fn prepare_to_deploy(workspace: Workspace, selection: Selection) -> Result<Prepared> {
    check_deploy_settings(&workspace)?;
    prepare(workspace, selection)
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

/// Opens the configured platform for `destroy` (exit 69 when it is unavailable): nothing is
/// fused, and the desired set is empty whatever the grouping says.
pub fn prepare_destroy(workspace: Workspace) -> Result<Prepared> {
    let platform = open_platform(&workspace, None)?;
    Ok(Prepared {
        workspace,
        selection: Selection::default(),
        artifacts: Vec::new(),
        platform,
        destroy: true,
        grouping: None,
        kept: Vec::new(),
        follows_live: false,
    })
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
    Ok(if prepared.destroy {
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

/// Observes what `prepared` needs and computes its plan.
fn observe_and_plan(
    prepared: Prepared,
    rt: &tokio::runtime::Runtime,
) -> Result<(Prepared, Observed, Plan)> {
    report::emit(Event::Spin {
        id: "refresh".to_string(),
        verb: "Refreshing".to_string(),
        subject: format!("live functions ({} platform)", prepared.platform.kind()),
    });
    let observed = rt.block_on(observe(
        prepared.platform.as_ref(),
        prepared.project(),
        &prepared.artifacts,
    ));
    report::emit(Event::Clear {
        id: "refresh".to_string(),
    });
    let observed = observed?;
    let plan = compute_plan(&prepared, &observed)?;
    Ok((prepared, observed, plan))
}

/// Opens the platform, observes, picks the grouping ([`resolve`]: `given`, or what the live
/// state records) and computes the plan.
pub fn make_plan(
    workspace: Workspace,
    rt: &tokio::runtime::Runtime,
    given: Option<Selection>,
) -> Result<(Prepared, Observed, Plan)> {
    let mut prepared = open_for(workspace, true)?;
    let kind = prepared.platform.kind();
    let observed = refreshing(kind, || rt.block_on(resolve(&mut prepared, given)))?;
    let plan = compute_plan(&prepared, &observed)?;
    Ok((prepared, observed, plan))
}

/// Runs `look` behind the `Refreshing live functions` spinner.
pub fn refreshing<T>(platform_kind: &str, look: impl FnOnce() -> Result<T>) -> Result<T> {
    report::emit(Event::Spin {
        id: "refresh".to_string(),
        verb: "Refreshing".to_string(),
        subject: format!("live functions ({platform_kind} platform)"),
    });
    let result = look();
    report::emit(Event::Clear {
        id: "refresh".to_string(),
    });
    result
}

/// Opens the platform, observes and computes the destroy plan: a delete for every function
/// this project owns (both ownership labels), whatever the grouping; nothing is fused.
pub fn make_destroy_plan(
    workspace: Workspace,
    rt: &tokio::runtime::Runtime,
) -> Result<(Prepared, Observed, Plan)> {
    observe_and_plan(prepare_destroy(workspace)?, rt)
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
