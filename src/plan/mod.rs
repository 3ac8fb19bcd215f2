//! Plan: the diff between the fused artifacts of a grouping and the live functions owned by the
//! project — what `apply` would create, update, replace or delete, and why.
//!
//! [`compute`] is pure: it takes the desired [`Artifact`]s and the live functions (owned ones, and
//! unowned ones that share a desired name) and returns a [`Plan`], or an error when a desired name
//! is taken by a function fusionizer does not own (never overwritten). Only functions carrying
//! the ownership labels are ever planned for change. [`render`] turns a plan into text, JSON or
//! markdown; [`saved`] writes and checks plan files; [`command`] is `fusionizer plan`.

#![warn(missing_docs)]

mod desired;
pub mod diff;
pub mod render;
pub mod saved;

pub use desired::Desired;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, ExitCode};
use crate::fuse::Artifact;
use crate::platform::LiveFunction;

use self::diff::{changed_paths, is_digest_annotation, masked_diff, normalise};

/// The version of the plan JSON schema (`docs/plan-schema.json`) this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What a change does to one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Deploy a function that does not exist yet.
    Create,
    /// Redeploy an existing function with a different digest (same task set).
    Update,
    /// Delete a broken function (error, unhealthy, stuck provisioning), then deploy it again.
    Replace,
    /// Delete an owned function that is no longer desired.
    Delete,
}

impl Action {
    /// The Terraform-style symbol: `+`, `~`, `-/+`, `-`.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }

    /// The word used in JSON and progress lines.
    pub fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
        }
    }

    /// Whether the change deploys an artifact (everything but a delete).
    pub fn deploys(self) -> bool {
        !matches!(self, Action::Delete)
    }
}

/// One planned change to one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What the change does.
    pub action: Action,
    /// The name of the function it applies to.
    pub function: String,
    /// The function's tasks, sorted: the desired set, or the live set for a delete.
    pub tasks: Vec<String>,
    /// Why, in one line.
    pub reason: String,
    /// The live digest (`None` for a create, or when the live function carries none).
    pub old_digest: Option<String>,
    /// The desired digest (`None` for a delete).
    pub new_digest: Option<String>,
    /// The live state word (`ready`, `error`, …) for changes to an existing function.
    pub live_state: Option<String>,
    /// Update: the tasks whose own files changed.
    pub changed_tasks: Vec<String>,
    /// Update: the merged function.yaml fields that changed (`spec.env`, …).
    pub changed_fields: Vec<String>,
    /// Update: unified diff of the merged function.yaml, secret-looking env values masked.
    pub diff: Option<String>,
    /// The tasks' post-copy build commands as fusion rewrote them to follow their files
    /// (`fuse::build_paths`); absent when none was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_rewrites: Vec<BuildRewrite>,
}

/// One build command as written in a task and as the fused function runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRewrite {
    /// The task.
    pub task: String,
    /// The command in its function.yaml.
    pub from: String,
    /// The command in the fused function.
    pub to: String,
}

fn build_rewrites(artifact: &Artifact) -> Vec<BuildRewrite> {
    artifact
        .build_rewrites
        .iter()
        .map(|r| BuildRewrite {
            task: r.task.clone(),
            from: r.from.clone(),
            to: r.to.clone(),
        })
        .collect()
}

/// Counts in Terraform's terms: a replacement is one add and one destroy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Functions deployed anew: creates plus replaces.
    pub add: usize,
    /// Functions updated in place.
    pub change: usize,
    /// Functions removed: deletes plus replaces.
    pub destroy: usize,
}

/// Digests of what a plan was computed from, so a saved plan can tell when it went stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Over the desired functions: names, task sets and digests.
    pub inputs: String,
    /// Over the live owned functions: names, digests and states.
    pub live: String,
}

/// A computed plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The plan JSON schema version; [`FORMAT_VERSION`] for a plan this build computed.
    pub format_version: u32,
    /// The project the plan is for.
    pub project: String,
    /// Deploying changes (create, update, replace) by function name, then deletes by name.
    pub changes: Vec<Change>,
    /// Desired functions that are live with the desired digest, sorted.
    pub unchanged: Vec<String>,
    /// The changes counted in Terraform's terms.
    pub summary: Summary,
    /// What the plan was computed from, to detect a stale saved plan.
    pub fingerprint: Fingerprint,
    /// Who chose the grouping, when the live state did (serve's schedule, phase or optimizer)
    /// or the live state records one that `--at`/`--phase` overrode; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grouping: Option<GroupingSource>,
    /// Live functions the plan leaves alone because they belong to serve (they hold tasks
    /// uploaded to it); `destroy` still deletes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<Kept>,
}

/// Who chose the grouping a plan (or status) was computed for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupingSource {
    /// `schedule`, `phase`, `feedback` or `command` (serve recorded it on the live functions);
    /// `flags` when `--at`/`--phase` overrode what the live functions record.
    pub owner: String,
    /// In words: `phase 2 of serve's schedule, counting from 2026-…`.
    pub description: String,
}

/// A live function that belongs to serve: plan never changes or deletes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// The function's name.
    pub function: String,
    /// All its tasks, sorted.
    pub tasks: Vec<String>,
    /// The ones uploaded to serve, sorted.
    pub uploaded: Vec<String>,
}

impl Plan {
    /// Whether there is anything to apply (at least one change).
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }
}

impl Summary {
    fn of(changes: &[Change]) -> Summary {
        let n = |a: Action| changes.iter().filter(|c| c.action == a).count();
        Summary {
            add: n(Action::Create) + n(Action::Replace),
            change: n(Action::Update),
            destroy: n(Action::Delete) + n(Action::Replace),
        }
    }
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Desired names taken by functions this project does not own.
    #[error("{} already exist{} on the platform but {} not owned by project `{project}`", names_list(.names), if .names.len() == 1 { "s" } else { "" }, if .names.len() == 1 { "is" } else { "are" })]
    Unowned {
        /// The project the plan is for.
        project: String,
        /// The taken function names, sorted.
        names: Vec<String>,
        /// `name: owner description`, one per function.
        owners: Vec<String>,
    },
    /// Two desired artifacts share a name (a fuse bug or a hash collision).
    #[error("two desired functions are both named `{0}`")]
    DuplicateName(String),
}

fn names_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!(
        "function{} {}",
        if names.len() == 1 { "" } else { "s" },
        quoted.join(", ")
    )
}

impl From<PlanError> for Error {
    fn from(err: PlanError) -> Self {
        match &err {
            PlanError::Unowned { owners, .. } => {
                let mut e = Error::new(ExitCode::Failure, err.to_string()).with_hint(
                    "fusionizer never overwrites a function it does not own: delete or rename \
                     it on the platform, or rename the project",
                );
                e.causes.clone_from(owners);
                e
            }
            PlanError::DuplicateName(_) => Error::new(ExitCode::Failure, err.to_string()),
        }
    }
}

/// Computes the plan for `project`: `desired` artifacts against `live_owned` (functions listed
/// by the ownership label selector; any without both ownership labels are ignored) and
/// `same_named_unowned` (unowned functions found under a desired name: each is an error).
pub fn compute(
    project: &str,
    desired: &[Artifact],
    live_owned: &[LiveFunction],
    same_named_unowned: &[LiveFunction],
) -> Result<Plan, PlanError> {
    let owned: BTreeMap<&str, &LiveFunction> = live_owned
        .iter()
        .filter(|f| f.is_owned_by(project))
        .map(|f| (f.name.as_str(), f))
        .collect();
    let mut wanted: BTreeMap<&str, &Artifact> = BTreeMap::new();
    for artifact in desired {
        if wanted.insert(artifact.name.as_str(), artifact).is_some() {
            return Err(PlanError::DuplicateName(artifact.name.clone()));
        }
    }

    refuse_unowned(project, &wanted, &owned, same_named_unowned)?;

    // Where each task lives now and where it is going, for the reasons.
    let mut live_home: BTreeMap<String, &str> = BTreeMap::new();
    for f in owned.values() {
        for task in f.tasks() {
            live_home.insert(task, f.name.as_str());
        }
    }
    let mut desired_home: BTreeMap<&str, &str> = BTreeMap::new();
    for a in wanted.values() {
        for task in &a.tasks {
            desired_home.insert(task.as_str(), a.name.as_str());
        }
    }

    let mut changes = Vec::new();
    let mut unchanged = Vec::new();
    for (name, artifact) in &wanted {
        let Some(live) = owned.get(name) else {
            changes.push(Change::create(
                artifact,
                create_reason(artifact, &live_home),
            ));
            continue;
        };
        let same_digest = live.digest() == Some(artifact.digest.as_str());
        if let Some(why) = live.state.needs_replacement() {
            let reason = if same_digest {
                why
            } else {
                format!("{why}; the desired version also differs")
            };
            changes.push(Change::replace(artifact, live, reason));
        } else if same_digest {
            match restamp(artifact, live) {
                Some(reason) => changes.push(Change::of(Action::Update, artifact, live, reason)),
                None => unchanged.push(name.to_string()),
            }
        } else {
            changes.push(update(artifact, live));
        }
    }
    for (name, live) in &owned {
        if wanted.contains_key(name) {
            continue;
        }
        changes.push(Change::delete(live, delete_reason(live, &desired_home)));
    }
    // In the order apply runs them: everything that deploys, then the deletes; by name within.
    changes.sort_by(|a, b| {
        (!a.action.deploys(), &a.function).cmp(&(!b.action.deploys(), &b.function))
    });

    Ok(Plan {
        format_version: FORMAT_VERSION,
        project: project.to_string(),
        summary: Summary::of(&changes),
        changes,
        unchanged,
        fingerprint: Fingerprint {
            inputs: inputs_fingerprint(desired),
            live: live_fingerprint(owned.values().copied()),
        },
        grouping: None,
        kept: Vec::new(),
    })
}

/// Why a function with the desired content must still be redeployed: the desired artifact
/// carries live-state annotations (serve's, [`crate::contract::LIVE_STATE_ANNOTATIONS`]) that
/// differ from the live ones. `None` when it carries none (a command given `--at`/`--phase`
/// leaves them as they are) or they agree.
fn restamp(artifact: &Artifact, live: &LiveFunction) -> Option<String> {
    let desired = crate::fuse::metadata::live_state(
        &crate::fuse::Metadata::from_yaml(&artifact.function_yaml)
            .unwrap_or_default()
            .annotations,
    );
    if desired.is_empty() {
        return None;
    }
    let current = crate::fuse::metadata::live_state(&live.annotations);
    if desired == current {
        return None;
    }
    let changed: Vec<String> = desired
        .keys()
        .chain(current.keys())
        .filter(|k| desired.get(*k) != current.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Some(format!(
        "live-state annotations changed: {} (same content)",
        ticks(&changed)
    ))
}

/// A desired name taken by a function this project does not own is an error naming its owner:
/// fusionizer never overwrites it.
fn refuse_unowned(
    project: &str,
    wanted: &BTreeMap<&str, &Artifact>,
    owned: &BTreeMap<&str, &LiveFunction>,
    same_named_unowned: &[LiveFunction],
) -> Result<(), PlanError> {
    let mut conflicts: BTreeMap<&str, &LiveFunction> = BTreeMap::new();
    for f in same_named_unowned {
        if wanted.contains_key(f.name.as_str()) && !owned.contains_key(f.name.as_str()) {
            conflicts.insert(f.name.as_str(), f);
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(PlanError::Unowned {
        project: project.to_string(),
        names: conflicts.keys().map(ToString::to_string).collect(),
        owners: conflicts.values().map(|f| describe_owner(f)).collect(),
    })
}

/// The plan of `fusionizer destroy` (`plan --destroy`): [`compute`] against an empty desired
/// set, so every function in `live_owned` that carries both ownership labels of `project`
/// becomes a delete, and nothing else is listed.
pub fn destroy(project: &str, live_owned: &[LiveFunction]) -> Result<Plan, PlanError> {
    let mut plan = compute(project, &[], live_owned, &[])?;
    for change in &mut plan.changes {
        change.reason = format!("destroying every function of project `{project}`");
    }
    Ok(plan)
}

fn describe_owner(f: &LiveFunction) -> String {
    match f.labels.get(crate::contract::LABEL_PROJECT) {
        Some(other) => format!("`{}` belongs to project `{other}`", f.name),
        None => format!("`{}` has no fusionizer ownership labels", f.name),
    }
}

fn ticks(items: &[String]) -> String {
    items
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn create_reason(artifact: &Artifact, live_home: &BTreeMap<String, &str>) -> String {
    // Group the moving tasks by the function they come from.
    let mut from: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut new = Vec::new();
    for task in &artifact.tasks {
        match live_home.get(task) {
            Some(home) => from.entry(home).or_default().push(task.clone()),
            None => new.push(task.clone()),
        }
    }
    if from.is_empty() {
        return "not deployed yet".to_string();
    }
    let mut parts: Vec<String> = from
        .iter()
        .map(|(home, tasks)| format!("{} from `{home}`", ticks(tasks)))
        .collect();
    if !new.is_empty() {
        parts.push(format!("{} not deployed yet", ticks(&new)));
    }
    format!("regrouped: {}", parts.join("; "))
}

fn delete_reason(live: &LiveFunction, desired_home: &BTreeMap<&str, &str>) -> String {
    let mut to: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut gone = Vec::new();
    for task in live.tasks() {
        match desired_home.get(task.as_str()) {
            Some(home) => to.entry(home).or_default().push(task),
            None => gone.push(task),
        }
    }
    let mut parts: Vec<String> = to
        .iter()
        .map(|(home, tasks)| format!("{} now in `{home}`", ticks(tasks)))
        .collect();
    if !gone.is_empty() {
        parts.push(format!("{} no longer present", ticks(&gone)));
    }
    if parts.is_empty() {
        "not in the selected grouping".to_string()
    } else {
        format!("not in the selected grouping: {}", parts.join("; "))
    }
}

fn update(artifact: &Artifact, live: &LiveFunction) -> Change {
    let live_tasks = live.tasks();
    let live_digests = live.task_digests();
    let changed_tasks: Vec<String> = if live_digests.is_empty() {
        Vec::new()
    } else {
        artifact
            .tasks
            .iter()
            .filter(|t| live_digests.get(*t) != artifact.task_digests.get(*t))
            .cloned()
            .collect()
    };
    let parse = |y: &str| {
        serde_norway::from_str::<serde_norway::Value>(y)
            .ok()
            .map(|d| normalise(&d))
    };
    let live_doc = live.config_yaml.as_deref().and_then(parse);
    let desired_doc = parse(&artifact.function_yaml);
    let (changed_fields, diff) = match (&live_doc, &desired_doc) {
        (Some(old), Some(new)) => {
            let mut fields = Vec::new();
            changed_paths(old, new, "", &mut fields);
            fields.retain(|f| !is_digest_annotation(f));
            (fields, Some(masked_diff(&artifact.name, old, new)))
        }
        _ => (Vec::new(), None),
    };

    let mut parts = Vec::new();
    if live_tasks != artifact.tasks {
        parts.push(format!(
            "task set changed from {} to {}",
            ticks(&live_tasks),
            ticks(&artifact.tasks)
        ));
    }
    if !changed_tasks.is_empty() {
        parts.push(format!(
            "files of {} changed",
            if changed_tasks.len() == 1 {
                format!("task {}", ticks(&changed_tasks))
            } else {
                format!("tasks {}", ticks(&changed_tasks))
            }
        ));
    }
    if !changed_fields.is_empty() {
        parts.push(format!(
            "merged function.yaml changed: {}",
            ticks(&changed_fields)
        ));
    }
    if parts.is_empty() {
        parts.push(if live.config_yaml.is_none() && live_digests.is_empty() {
            "digest differs (the platform keeps no details of the live version)".to_string()
        } else {
            "generated files changed (fusionizer's dispatcher or entry module)".to_string()
        });
    }
    Change {
        changed_tasks,
        changed_fields,
        diff,
        ..Change::of(Action::Update, artifact, live, parts.join("; "))
    }
}

impl Change {
    /// A change to the existing function `live` towards `artifact`, with no details yet.
    fn of(action: Action, artifact: &Artifact, live: &LiveFunction, reason: String) -> Self {
        Change {
            action,
            function: artifact.name.clone(),
            tasks: artifact.tasks.clone(),
            reason,
            old_digest: live.digest().map(str::to_string),
            new_digest: Some(artifact.digest.clone()),
            live_state: Some(live.state.word().to_string()),
            changed_tasks: Vec::new(),
            changed_fields: Vec::new(),
            diff: None,
            build_rewrites: build_rewrites(artifact),
        }
    }

    fn create(artifact: &Artifact, reason: String) -> Self {
        Change {
            action: Action::Create,
            function: artifact.name.clone(),
            tasks: artifact.tasks.clone(),
            reason,
            old_digest: None,
            new_digest: Some(artifact.digest.clone()),
            live_state: None,
            changed_tasks: Vec::new(),
            changed_fields: Vec::new(),
            diff: None,
            build_rewrites: build_rewrites(artifact),
        }
    }

    fn replace(artifact: &Artifact, live: &LiveFunction, reason: String) -> Self {
        Change::of(Action::Replace, artifact, live, reason)
    }

    fn delete(live: &LiveFunction, reason: String) -> Self {
        Change {
            action: Action::Delete,
            function: live.name.clone(),
            tasks: live.tasks(),
            reason,
            old_digest: live.digest().map(str::to_string),
            new_digest: None,
            live_state: Some(live.state.word().to_string()),
            changed_tasks: Vec::new(),
            changed_fields: Vec::new(),
            diff: None,
            build_rewrites: Vec::new(),
        }
    }
}

fn sha256_lines(lines: impl IntoIterator<Item = String>) -> String {
    let mut lines: Vec<String> = lines.into_iter().collect();
    lines.sort();
    let mut hasher = Sha256::new();
    for line in lines {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// The fingerprint of the inputs: each desired function's name, tasks and digest.
pub fn inputs_fingerprint(desired: &[Artifact]) -> String {
    sha256_lines(
        desired
            .iter()
            .map(|a| format!("{} {} {}", a.name, a.tasks.join(","), a.digest)),
    )
}

/// The fingerprint of the live owned set: each function's name, digest and state.
pub fn live_fingerprint<'a>(live: impl IntoIterator<Item = &'a LiveFunction>) -> String {
    sha256_lines(live.into_iter().map(|f| {
        format!(
            "{} {} {}",
            f.name,
            f.digest().unwrap_or("-"),
            f.state.word()
        )
    }))
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;
