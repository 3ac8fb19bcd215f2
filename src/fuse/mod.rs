//! Fuse: turn one group of tasks into a self-contained, Nuclio-deployable artifact.
//!
//! The artifact holds the merged `function.yaml` (Nuclio's merge rules, `docs/architecture.md`), the generated
//! entry module (`spec.handler`), the dispatcher runtime and every task's files under its own
//! namespace. It is built in memory (relative path → bytes, sorted) so its digest is a pure
//! function of its bytes; [`Artifact::write`] puts it on disk.
//!
//! Layout of an artifact:
//! ```text
//! function.yaml                      merged spec, metadata.name, ownership labels/annotations
//! _fusionizer_entry.py               generated; spec.handler = "_fusionizer_entry:handler"
//! fusionizer_dispatcher/…            the runtime from dispatcher/fusionizer_dispatcher
//! fusionizer_tasks/<task>/…          each task's directory, verbatim
//! ```
//!
//! The digest (`fusionizer.io/digest`) is sha256 over every file of the artifact with the framing
//! in [`files`]; function.yaml enters it exactly as written, minus the `fusionizer.io/digest`
//! annotation itself (which is then inserted, in its sorted place). Per-task digests
//! (`fusionizer.io/task-digests`) use the same framing over each task's own directory, with paths
//! relative to it. The merge rules live in [`merge`].

#![warn(missing_docs)]

pub mod build_paths;
mod files;
mod item;
mod merge;
pub mod metadata;
pub mod nuclio_rules;
mod rules;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};
use sha2::{Digest as _, Sha256};

pub use self::metadata::Metadata;

use crate::config::{Config, Override, PlatformKind, TaskSpec, Workspace};
use crate::contract::{
    is_dns_label, ANNOTATION_DIGEST, ANNOTATION_TASKS, ANNOTATION_TASK_DIGESTS, ENTRY_HANDLER,
    ENTRY_MODULE, ENV_PROXY_URL, LABEL_MANAGED_BY, LABEL_PROJECT, MANAGED_BY, MAX_FUNCTION_NAME,
    TASKS_DIR,
};
use crate::error::{Error, ExitCode};
use crate::schedule::Grouping;

/// The dispatcher runtime files (relative path under `fusionizer_dispatcher/`, bytes), embedded
/// at build time from `dispatcher/fusionizer_dispatcher/`.
pub const DISPATCHER_FILES: &[(&str, &[u8])] =
    include!(concat!(env!("OUT_DIR"), "/dispatcher_files.rs"));

/// One fused function, ready to deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// `metadata.name` ([`function_name`]).
    pub name: String,
    /// Sorted task names.
    pub tasks: Vec<String>,
    /// `sha256:<hex>` over every file (path and bytes, sorted by path) except the digest itself.
    pub digest: String,
    /// Task → `sha256:<hex>` over that task's own files.
    pub task_digests: BTreeMap<String, String>,
    /// The merged function.yaml as deployed (also present in `files`).
    pub function_yaml: String,
    /// The merged spec's HTTP trigger `numWorkers` (default 1): the local platform's pool size.
    pub num_workers: usize,
    /// `spec.build.commands`, merged.
    pub build_commands: Vec<String>,
    /// The post-copy build commands rewritten to follow their task's files
    /// ([`build_paths`]), for `plan` to show.
    pub build_rewrites: Vec<build_paths::Rewrite>,
    /// Every file of the artifact, relative path (with `/`) → bytes.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Artifact {
    /// Writes the artifact into `dir` (created; existing content replaced).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        for (rel, bytes) in &self.files {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
        Ok(())
    }
}

/// The deployed function name for a task set: `<project>-<tasks sorted, joined by ->`, or, when
/// that is not a valid DNS-1123 label of at most 56 characters (Kubernetes needs
/// `nuclio-<name>` to fit 63; see [`MAX_FUNCTION_NAME`]), `<project>-<first task>-<hash>` where `<hash>`
/// is the first 8 hex digits of sha256 over the sorted task names joined by `,` (the bytes of the
/// `fusionizer.io/tasks` annotation). If even that is too long, `<project>-<first task>` is cut
/// to fit (and never ends in `-`). The same task set always maps to the same name.
pub fn function_name(project: &str, tasks: &[String]) -> String {
    let mut sorted: Vec<&str> = tasks.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let plain = std::iter::once(project)
        .chain(sorted.iter().copied())
        .collect::<Vec<_>>()
        .join("-");
    if is_dns_label(&plain, MAX_FUNCTION_NAME) {
        return plain;
    }
    let hash = hex::encode(Sha256::digest(sorted.join(",").as_bytes()));
    let mut head = format!("{project}-{}", sorted.first().copied().unwrap_or("group"));
    head.truncate(MAX_FUNCTION_NAME - 9);
    let head = head.trim_end_matches('-');
    format!("{head}-{}", &hash[..8])
}

/// Why a group cannot be fused. Every variant names the task(s) it is about.
#[derive(Debug, thiserror::Error)]
pub enum FuseError {
    /// Two tasks of one group set the same field differently.
    #[error(
        "tasks `{first}` and `{second}` conflict on `{field}`: `{first_value}` vs `{second_value}`"
    )]
    Conflict {
        /// The dotted path of the field in function.yaml, e.g. `spec.runtime`.
        field: String,
        /// The task whose value is taken as the reference (tasks are compared in name order).
        first: String,
        /// `first`'s value, rendered as text (cut to 80 chars).
        first_value: String,
        /// The task that disagrees with `first`.
        second: String,
        /// `second`'s value, rendered as text (cut to 80 chars).
        second_value: String,
    },
    /// A task sets a label or annotation that fusionizer owns.
    #[error("task `{task}` sets `{field}`, which fusionizer reserves for itself")]
    Reserved {
        /// The task that sets it.
        task: String,
        /// The dotted path of the label or annotation, e.g. `metadata.labels.<key>`.
        field: String,
    },
    /// A task's function.yaml has a shape fusion cannot merge.
    #[error("task `{task}`: {message}")]
    Invalid {
        /// The task at fault.
        task: String,
        /// What is wrong with it.
        message: String,
    },
    /// A task directory holds a symbolic link (links are never followed).
    #[error("task `{task}` contains a symbolic link `{path}`")]
    Symlink {
        /// The task whose directory holds the link.
        task: String,
        /// The link's path relative to the task directory, `/`-separated.
        path: String,
    },
    /// A task directory holds something that is neither a regular file nor a directory.
    #[error("task `{task}` contains `{path}`, which is neither a regular file nor a directory")]
    Special {
        /// The task whose directory holds it.
        task: String,
        /// Its path relative to the task directory, `/`-separated.
        path: String,
    },
    /// A task appears more than once in one group.
    #[error("task `{task}` is listed twice in one group")]
    Duplicate {
        /// The repeated task.
        task: String,
    },
    /// A group with no tasks.
    #[error("a group needs at least one task")]
    Empty,
    /// A grouped task has no loaded spec (e.g. an upload task not uploaded yet).
    #[error("task `{task}` has no code to fuse")]
    Missing {
        /// The task without code.
        task: String,
    },
    /// A post-copy build command names a path under `/opt/nuclio` that cannot follow the task's
    /// files to `fusionizer_tasks/<task>/` ([`build_paths`]).
    #[error("task `{task}`: the build command `{command}` names `{path}`: {reason}")]
    BuildPath {
        /// The task whose command it is.
        task: String,
        /// The command.
        command: String,
        /// The path it names.
        path: String,
        /// Why it cannot be rewritten.
        reason: &'static str,
    },
    /// The merged spec breaks a rule of Nuclio's own validation ([`nuclio_rules`]), so the deploy
    /// would fail.
    #[error("Nuclio would reject `{function}` ({rule}): {message}")]
    NuclioRejects {
        /// The fused function.
        function: String,
        /// The Nuclio validation function whose rule it breaks, e.g. `validateMinMaxReplicas`.
        rule: &'static str,
        /// The text Nuclio prints.
        message: String,
    },
    /// A file or directory of a task could not be read.
    #[error("task `{task}`: cannot read `{}`", path.display())]
    Io {
        /// The task being read.
        task: String,
        /// The path that could not be read (the task directory or a path under it).
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl FuseError {
    /// How to fix it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            FuseError::Conflict { .. } => Some(
                "the tasks of one group share one Nuclio function: make the values agree, or \
                 put the tasks in different groups in fusion.toml",
            ),
            FuseError::Reserved { .. } => Some(
                "remove it from the task's function.yaml: fusionizer sets the `fusionizer.io/` \
                 labels and annotations itself",
            ),
            FuseError::Symlink { .. } => Some(
                "task directories are deployed verbatim and links are not followed: replace the \
                 link with a copy of its target",
            ),
            FuseError::Special { .. } => Some("remove it from the task directory"),
            FuseError::BuildPath { .. } => Some(
                "fusion moves a task's files to `/opt/nuclio/fusionizer_tasks/<task>/` and \
                 rewrites post-copy paths to the task's own top-level files: name one of those \
                 (`/opt/nuclio/requirements.txt`), or a path outside `/opt/nuclio`",
            ),
            FuseError::Invalid { .. } => Some("fix the task's function.yaml"),
            FuseError::NuclioRejects { .. } => Some(
                "Nuclio 1.14 validates every function it deploys and refuses this merged spec: \
                 change the tasks' function.yaml files so that the merge passes, or put the \
                 tasks in different groups in fusion.toml",
            ),
            FuseError::Duplicate { .. }
            | FuseError::Empty
            | FuseError::Missing { .. }
            | FuseError::Io { .. } => None,
        }
    }

    /// Whether the problem is a file that could not be read (exit 1, not 78).
    pub fn is_io(&self) -> bool {
        matches!(self, FuseError::Io { .. })
    }
}

impl PartialEq for FuseError {
    /// The same problem: the same variant with the same fields (an I/O error by its kind).
    fn eq(&self, other: &Self) -> bool {
        use FuseError as E;
        match (self, other) {
            (
                E::Conflict {
                    field,
                    first,
                    first_value,
                    second,
                    second_value,
                },
                E::Conflict {
                    field: f2,
                    first: a2,
                    first_value: av2,
                    second: b2,
                    second_value: bv2,
                },
            ) => (field, first, first_value, second, second_value) == (f2, a2, av2, b2, bv2),
            (
                E::Reserved { task, field },
                E::Reserved {
                    task: t2,
                    field: f2,
                },
            ) => (task, field) == (t2, f2),
            (
                E::Invalid { task, message },
                E::Invalid {
                    task: t2,
                    message: m2,
                },
            ) => (task, message) == (t2, m2),
            (E::Symlink { task, path }, E::Symlink { task: t2, path: p2 })
            | (E::Special { task, path }, E::Special { task: t2, path: p2 }) => {
                (task, path) == (t2, p2)
            }
            (E::Duplicate { task }, E::Duplicate { task: t2 })
            | (E::Missing { task }, E::Missing { task: t2 }) => task == t2,
            (E::Empty, E::Empty) => true,
            (
                E::BuildPath {
                    task,
                    command,
                    path,
                    ..
                },
                E::BuildPath {
                    task: t2,
                    command: c2,
                    path: p2,
                    ..
                },
            ) => (task, command, path) == (t2, c2, p2),
            (
                E::NuclioRejects {
                    function,
                    rule,
                    message,
                },
                E::NuclioRejects {
                    function: f2,
                    rule: r2,
                    message: m2,
                },
            ) => (function, rule, message) == (f2, r2, m2),
            (
                E::Io { task, path, source },
                E::Io {
                    task: t2,
                    path: p2,
                    source: s2,
                },
            ) => (task, path, source.kind()) == (t2, p2, s2.kind()),
            _ => false,
        }
    }
}

/// `task`'s function.yaml with its post-copy build commands rewritten to where its files are in a
/// fused image, and the rewrites made ([`build_paths`]).
fn with_moved_build_paths(
    task: &TaskSpec,
) -> Result<(Value, Vec<build_paths::Rewrite>), FuseError> {
    let commands: Option<Vec<String>> = task
        .function
        .get("spec")
        .and_then(|s| s.get("build"))
        .and_then(|b| b.get("commands"))
        .and_then(Value::as_sequence)
        .and_then(|list| {
            list.iter()
                .map(|c| c.as_str().map(str::to_string))
                .collect()
        });
    let Some(commands) = commands else {
        // No commands, or not a list of strings (the merge reports that).
        return Ok((task.function.clone(), Vec::new()));
    };
    if !commands.iter().any(|c| c.contains(build_paths::NUCLIO_DIR)) {
        return Ok((task.function.clone(), Vec::new()));
    }
    let entries: BTreeSet<String> = std::fs::read_dir(&task.dir)
        .map_err(|source| FuseError::Io {
            task: task.name.clone(),
            path: task.dir.clone(),
            source,
        })?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let (rewritten, rewrites) =
        build_paths::rewrite(&task.name, &entries, &commands).map_err(|unsafe_path| {
            FuseError::BuildPath {
                task: task.name.clone(),
                command: unsafe_path.command,
                path: unsafe_path.path,
                reason: unsafe_path.reason,
            }
        })?;
    let mut function = task.function.clone();
    if let Some(build) = function
        .get_mut("spec")
        .and_then(|s| s.get_mut("build"))
        .and_then(Value::as_mapping_mut)
    {
        build.insert(
            Value::String("commands".to_string()),
            Value::Sequence(rewritten.into_iter().map(Value::String).collect()),
        );
    }
    Ok((function, rewrites))
}

/// Fuses one group. Merge conflicts are errors naming both tasks and the field; every problem of
/// the group is reported at once (exit 78; 1 when a file cannot be read).
pub fn fuse_group(project: &str, tasks: &[&TaskSpec]) -> Result<Artifact, Error> {
    fuse(project, tasks, &BTreeMap::new(), &[]).map_err(|problems| {
        let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
        problems_error(
            format!("cannot fuse `{}`", function_name(project, &names)),
            problems
                .into_iter()
                .map(|error| FuseProblem {
                    function: None,
                    error,
                })
                .collect(),
        )
    })
}

/// The tasks of one function: in name order, each name once, with their names, the function's
/// name, and the names given more than once.
struct Members<'a> {
    tasks: Vec<&'a TaskSpec>,
    names: Vec<String>,
    name: String,
    repeated: Vec<String>,
}

/// [`Members`] of `tasks` in `project`, or `None` when there are none.
fn members<'a>(project: &str, tasks: &[&'a TaskSpec]) -> Option<Members<'a>> {
    let mut tasks: Vec<&TaskSpec> = tasks.to_vec();
    tasks.sort_by(|a, b| a.name.cmp(&b.name));
    let mut repeated = Vec::new();
    tasks.dedup_by(|a, b| {
        let same = a.name == b.name;
        if same {
            repeated.push(a.name.clone());
        }
        same
    });
    if tasks.is_empty() {
        return None;
    }
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    let name = function_name(project, &names);
    Some(Members {
        tasks,
        names,
        name,
        repeated,
    })
}

/// Whether `tasks` could share one function, without reading their files: the same merge and
/// Nuclio validation [`fuse_group`] runs, over the loaded function.yaml documents only. Every
/// problem found (conflicting fields, reserved labels, what Nuclio would refuse); empty when the
/// group fuses. `fusionizer optimize` and the optimizers use it to keep groups that cannot be
/// deployed out of a proposal.
pub fn check_group(project: &str, tasks: &[&TaskSpec]) -> Vec<FuseError> {
    let Some(Members {
        tasks, names, name, ..
    }) = members(project, tasks)
    else {
        return vec![FuseError::Empty];
    };
    let docs: Vec<item::Item<'_>> = tasks
        .iter()
        .map(|t| item::Item {
            task: &t.name,
            value: &t.function,
        })
        .collect();
    let mut problems = Vec::new();
    let merged = merge::merge(&docs, &mut problems);
    if !problems.is_empty() {
        return problems;
    }
    let shape = Shape {
        name: &name,
        project,
        tasks: &names,
        task_digests: &BTreeMap::new(),
        merged: &merged,
        env: &BTreeMap::new(),
    };
    nuclio_rules::check(&shape.document(None))
        .into_iter()
        .map(|r| FuseError::NuclioRejects {
            function: name.clone(),
            rule: r.rule,
            message: r.message,
        })
        .collect()
}

/// Fuses every group of a grouping, reporting every conflict of every group at once (exit 78).
/// Artifacts come back in the grouping's order.
pub fn fuse_all(
    workspace: &Workspace,
    specs: &BTreeMap<String, TaskSpec>,
    grouping: &Grouping,
) -> Result<Vec<Artifact>, Error> {
    fuse_grouping_with(
        &workspace.config.project.name,
        specs,
        grouping,
        &baked_env(&workspace.config),
        &workspace.config.overrides,
    )
    .map_err(Error::from)
}

/// [`fuse_all`] with its problems kept structured (for `validate`, which merges the problems
/// of several groupings).
pub fn fuse_grouping(
    project: &str,
    specs: &BTreeMap<String, TaskSpec>,
    grouping: &Grouping,
    env: &BTreeMap<String, String>,
) -> Result<Vec<Artifact>, FuseFailure> {
    fuse_grouping_with(project, specs, grouping, env, &[])
}

/// [`fuse_grouping`] with fusion.toml's `[[override]]` tables: the function of a group whose
/// task set equals an override's `tasks` takes the override's settings
/// (`resources.limits.memory` replaces the merged `spec.resources.limits.memory`).
pub fn fuse_grouping_with(
    project: &str,
    specs: &BTreeMap<String, TaskSpec>,
    grouping: &Grouping,
    env: &BTreeMap<String, String>,
    overrides: &[Override],
) -> Result<Vec<Artifact>, FuseFailure> {
    let mut artifacts = Vec::new();
    let mut failure = FuseFailure::default();
    for group in grouping {
        let function = function_name(project, group);
        let mut tasks = Vec::new();
        let mut missing = Vec::new();
        for name in group {
            match specs.get(name) {
                Some(spec) => tasks.push(spec),
                None => missing.push(FuseError::Missing { task: name.clone() }),
            }
        }
        let result = if missing.is_empty() {
            fuse(project, &tasks, env, overrides)
        } else {
            Err(missing)
        };
        match result {
            Ok(artifact) => artifacts.push(artifact),
            Err(group_problems) => {
                failure.failed_groups += 1;
                failure
                    .problems
                    .extend(group_problems.into_iter().map(|error| FuseProblem {
                        function: Some(function.clone()),
                        error,
                    }));
            }
        }
    }
    if failure.problems.is_empty() {
        Ok(artifacts)
    } else {
        Err(failure)
    }
}

/// One problem of a fusion, with the function it is about when known.
#[derive(Debug, PartialEq)]
pub struct FuseProblem {
    /// The function whose group failed.
    pub function: Option<String>,
    /// What went wrong.
    pub error: FuseError,
}

impl std::fmt::Display for FuseProblem {
    /// `` `function`: problem: cause… `` (the function when known, then the source chain).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(function) = &self.function {
            write!(f, "`{function}`: ")?;
        }
        write!(f, "{}", Error::chain(&self.error))
    }
}

/// Every problem of a grouping that could not be fused.
#[derive(Debug, Default)]
pub struct FuseFailure {
    /// How many groups failed.
    pub failed_groups: usize,
    /// Every problem, in group order.
    pub problems: Vec<FuseProblem>,
}

impl From<FuseFailure> for Error {
    fn from(failure: FuseFailure) -> Self {
        let n = failure.failed_groups;
        problems_error(
            format!("cannot fuse {n} group{}", if n == 1 { "" } else { "s" }),
            failure.problems,
        )
    }
}

/// The hints of `problems`, each once, in order of first appearance.
pub fn hints(problems: &[&FuseProblem]) -> Option<String> {
    let mut hints: Vec<&'static str> = Vec::new();
    for problem in problems {
        if let Some(hint) = problem.error.hint() {
            if !hints.contains(&hint) {
                hints.push(hint);
            }
        }
    }
    (!hints.is_empty()).then(|| hints.join("\n      "))
}

/// One error listing every problem (each prefixed with its function when known) and their hints.
fn problems_error(message: String, problems: Vec<FuseProblem>) -> Error {
    let code = if problems.iter().any(|p| p.error.is_io()) {
        ExitCode::Failure
    } else {
        ExitCode::Config
    };
    let n = problems.len();
    let mut error = Error::new(
        code,
        format!("{message} ({n} problem{})", if n == 1 { "" } else { "s" }),
    );
    error.hint = hints(&problems.iter().collect::<Vec<_>>());
    error.details = problems.iter().map(ToString::to_string).collect();
    error
}

/// The environment fusionizer bakes into every function of `config`'s project: on the nuctl
/// platform, `FUSIONIZER_PROXY_URL` when a proxy is configured (`[nuctl] proxy-url`, else
/// `[serve] advertise` with the port of `[serve] listen`), so a task can call a task in another
/// function from inside the cluster. Part of the digest: changing the proxy is an update. The
/// local platform sets the variable on its workers at run time instead.
pub fn baked_env(config: &Config) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if config.project.platform != PlatformKind::Nuctl {
        return env;
    }
    if let Some(url) = config.proxy_url(None) {
        env.insert(ENV_PROXY_URL.to_string(), url);
    }
    env
}

/// The fusion itself: every problem of the group, or the artifact.
fn fuse(
    project: &str,
    tasks: &[&TaskSpec],
    env: &BTreeMap<String, String>,
    overrides: &[Override],
) -> Result<Artifact, Vec<FuseError>> {
    let mut problems = Vec::new();
    let Some(Members {
        tasks,
        names,
        name,
        repeated,
    }) = members(project, tasks)
    else {
        return Err(vec![FuseError::Empty]);
    };
    problems.extend(
        repeated
            .into_iter()
            .map(|task| FuseError::Duplicate { task }),
    );

    // Each task's build commands follow its files (`build_paths`).
    let mut build_rewrites = Vec::new();
    let functions: Vec<Value> = tasks
        .iter()
        .map(|t| match with_moved_build_paths(t) {
            Ok((function, rewrites)) => {
                build_rewrites.extend(rewrites);
                function
            }
            Err(problem) => {
                problems.push(problem);
                t.function.clone()
            }
        })
        .collect();
    let docs: Vec<item::Item<'_>> = tasks
        .iter()
        .zip(&functions)
        .map(|(t, function)| item::Item {
            task: &t.name,
            value: function,
        })
        .collect();
    let mut merged = merge::merge(&docs, &mut problems);
    if let Some(over) = overrides.iter().find(|o| o.tasks == names) {
        apply_override(&mut merged, over);
    }

    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut task_digests = BTreeMap::new();
    let mut handlers = BTreeMap::new();
    for task in &tasks {
        handlers.insert(
            task.name.clone(),
            format!("{}:{}", task.handler_module, task.handler_function),
        );
        match files::task_files(&task.name, &task.dir) {
            Ok(own) => {
                task_digests.insert(task.name.clone(), files::digest(&own));
                for (rel, bytes) in own {
                    files.insert(format!("{TASKS_DIR}/{}/{rel}", task.name), bytes);
                }
            }
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    for (rel, bytes) in DISPATCHER_FILES {
        files.insert(format!("fusionizer_dispatcher/{rel}"), bytes.to_vec());
    }
    files.insert(
        files::entry_file_name(),
        files::entry_module(&name, &handlers, &merged.trigger_tasks).into_bytes(),
    );
    let shape = Shape {
        name: &name,
        project,
        tasks: &names,
        task_digests: &task_digests,
        merged: &merged,
        env,
    };
    // What Nuclio's own validation would refuse, before anything is deployed.
    let rejections = nuclio_rules::check(&shape.document(None));
    if !rejections.is_empty() {
        return Err(rejections
            .into_iter()
            .map(|r| FuseError::NuclioRejects {
                function: name.clone(),
                rule: r.rule,
                message: r.message,
            })
            .collect());
    }
    files.insert("function.yaml".to_string(), shape.render(None).into_bytes());
    let digest = files::digest(&files);
    let function_yaml = shape.render(Some(&digest));
    files.insert(
        "function.yaml".to_string(),
        function_yaml.clone().into_bytes(),
    );

    Ok(Artifact {
        name,
        tasks: names,
        digest,
        task_digests,
        function_yaml,
        num_workers: merged.num_workers,
        build_commands: merged.build_commands,
        build_rewrites,
        files,
    })
}

/// Writes an override's settings into the merged spec: `resources.limits.memory` replaces
/// whatever the tasks merged to (the other resource quantities stay).
fn apply_override(merged: &mut merge::Merged, over: &Override) {
    let Some(memory) = &over.memory_limit else {
        return;
    };
    let resources = merged
        .spec_rest
        .entry("resources".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !resources.is_mapping() {
        *resources = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(resources) = resources else {
        return;
    };
    let limits = resources
        .entry("limits".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !limits.is_mapping() {
        *limits = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(limits) = limits {
        limits.insert("memory".into(), memory.as_str().into());
    }
}

/// Everything the generated function.yaml is made of.
struct Shape<'a> {
    name: &'a str,
    project: &'a str,
    tasks: &'a [String],
    task_digests: &'a BTreeMap<String, String>,
    merged: &'a merge::Merged,
    /// Variables fusionizer sets in `spec.env` ([`baked_env`]), replacing a task's own.
    env: &'a BTreeMap<String, String>,
}

impl Shape<'_> {
    /// The function.yaml text: a comment line, then [`Shape::document`].
    /// `digest` is `None` for the text that is hashed.
    fn render(&self, digest: Option<&str>) -> String {
        let body = serde_norway::to_string(&self.document(digest))
            .expect("a YAML value built from YAML values always serialises");
        format!(
            "# Generated by fusionizer from tasks {} of project {}.\n\
             # Do not edit: rebuild with `fusionizer build`.\n{body}",
            self.tasks.join(", "),
            self.project
        )
    }

    /// The function.yaml document: `apiVersion`, `kind`, `metadata` (name, the tasks' other
    /// metadata, labels and annotations sorted with fusionizer's own among them) and `spec`
    /// (description, runtime, handler, then the merged rest in first-appearance order).
    fn document(&self, digest: Option<&str>) -> Value {
        let merged = self.merged;
        let list = self.tasks.join(",");

        let mut labels = merged.labels.clone();
        labels.insert(LABEL_PROJECT.into(), self.project.into());
        labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
        let mut annotations = merged.annotations.clone();
        annotations.insert(ANNOTATION_TASKS.into(), list.as_str().into());
        let task_digests = self
            .task_digests
            .iter()
            .map(|(task, digest)| format!("{task}={digest}"))
            .collect::<Vec<_>>()
            .join(",");
        annotations.insert(ANNOTATION_TASK_DIGESTS.into(), task_digests.into());
        if let Some(digest) = digest {
            annotations.insert(ANNOTATION_DIGEST.into(), digest.into());
        }

        let mut metadata = Mapping::new();
        metadata.insert("name".into(), self.name.into());
        for (k, v) in &merged.metadata_extra {
            metadata.insert(k.clone(), v.clone());
        }
        metadata.insert("labels".into(), Value::Mapping(sort(labels)));
        metadata.insert("annotations".into(), Value::Mapping(sort(annotations)));

        let mut spec = Mapping::new();
        let described = self.tasks.join(", ");
        spec.insert(
            "description".into(),
            format!(
                "fusionizer group of tasks {described} (project {})",
                self.project
            )
            .into(),
        );
        spec.insert("runtime".into(), merged.runtime.clone());
        spec.insert(
            "handler".into(),
            format!("{ENTRY_MODULE}:{ENTRY_HANDLER}").into(),
        );
        for (k, v) in &merged.spec_rest {
            spec.insert(k.clone(), v.clone());
        }
        if !self.env.is_empty() {
            let mut env: Vec<Value> = match spec.remove("env") {
                Some(Value::Sequence(list)) => list
                    .into_iter()
                    .filter(|e| {
                        e.get("name")
                            .and_then(Value::as_str)
                            .is_none_or(|n| !self.env.contains_key(n))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for (name, value) in self.env {
                let mut entry = Mapping::new();
                entry.insert("name".into(), name.as_str().into());
                entry.insert("value".into(), value.as_str().into());
                env.push(Value::Mapping(entry));
            }
            spec.insert("env".into(), Value::Sequence(env));
        }

        let mut doc = Mapping::new();
        doc.insert("apiVersion".into(), "nuclio.io/v1beta1".into());
        doc.insert("kind".into(), "NuclioFunction".into());
        doc.insert("metadata".into(), Value::Mapping(metadata));
        doc.insert("spec".into(), Value::Mapping(spec));
        Value::Mapping(doc)
    }
}

fn sort(map: Mapping) -> Mapping {
    let mut entries: Vec<(Value, Value)> = map.into_iter().collect();
    entries.sort_by_key(|(k, _)| item::key_text(k));
    entries.into_iter().collect()
}
