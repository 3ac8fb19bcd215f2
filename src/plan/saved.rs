//! Saved plan files (`plan --out FILE`, `apply FILE`).
//!
//! A saved plan holds the plan, the grouping selection it was made for, the platform identity,
//! and what it was computed from: the desired functions (names, tasks, digests, per-task digests)
//! and the live owned functions (names, digests, states). `apply FILE` recomputes both from the
//! current config and platform and refuses (exit 75) when either moved, saying exactly what
//! moved. A plan file holds no env values: only digests and masked diffs.
//!
//! A destroy plan (`plan --destroy --out FILE`) records `"destroy": true`; its desired set is
//! empty, and its freshness check compares against an empty desired set whatever fusion.toml
//! says now (only the live owned functions can make it stale).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ExitCode};
use crate::fuse::Artifact;
use crate::plan::{self, Desired, Plan, FORMAT_VERSION};
use crate::platform::LiveFunction;
use crate::schedule::Selection;

/// The grouping selection, as stored: `{"at_ms": 0}` or `{"phase": 2}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedSelection {
    /// `--at`, in milliseconds.
    AtMs(u64),
    /// `--phase`, counting from 1.
    Phase(usize),
}

impl From<Selection> for SavedSelection {
    fn from(s: Selection) -> Self {
        match s {
            Selection::At(d) => SavedSelection::AtMs(d.as_millis() as u64),
            Selection::Phase(n) => SavedSelection::Phase(n),
        }
    }
}

impl From<SavedSelection> for Selection {
    fn from(s: SavedSelection) -> Self {
        match s {
            SavedSelection::AtMs(ms) => Selection::At(Duration::from_millis(ms)),
            SavedSelection::Phase(n) => Selection::Phase(n),
        }
    }
}

impl std::fmt::Display for SavedSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SavedSelection::AtMs(ms) => write!(
                f,
                "--at {}",
                humantime::format_duration(Duration::from_millis(*ms))
            ),
            SavedSelection::Phase(n) => write!(f, "--phase {n}"),
        }
    }
}

/// One desired function, as the plan saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputEntry {
    /// The function name.
    pub function: String,
    /// Its tasks, sorted.
    pub tasks: Vec<String>,
    /// The artifact digest, `sha256:<hex>`.
    pub digest: String,
    /// Task → `sha256:<hex>` over that task's own files.
    pub task_digests: BTreeMap<String, String>,
}

impl InputEntry {
    /// One entry per artifact, sorted by function name.
    pub fn of(artifacts: &[Artifact]) -> Vec<InputEntry> {
        let mut out: Vec<InputEntry> = artifacts
            .iter()
            .map(|a| InputEntry {
                function: a.name.clone(),
                tasks: a.tasks.clone(),
                digest: a.digest.clone(),
                task_digests: a.task_digests.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.function.cmp(&b.function));
        out
    }
}

/// One live owned function, as the plan saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveEntry {
    /// The function name.
    pub function: String,
    /// Its tasks from the `fusionizer.io/tasks` annotation, sorted.
    pub tasks: Vec<String>,
    /// Its `fusionizer.io/digest` annotation, if it carries one.
    pub digest: Option<String>,
    /// Its state word (`ready`, `error`, …).
    pub state: String,
}

impl LiveEntry {
    /// One entry per live function, sorted by function name.
    pub fn of(live: &[LiveFunction]) -> Vec<LiveEntry> {
        let mut out: Vec<LiveEntry> = live
            .iter()
            .map(|f| LiveEntry {
                function: f.name.clone(),
                tasks: f.tasks(),
                digest: f.digest().map(str::to_string),
                state: f.state.word().to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.function.cmp(&b.function));
        out
    }
}

/// A plan file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// The plan JSON schema version; a file with another version than [`FORMAT_VERSION`] is
    /// refused.
    pub format_version: u32,
    /// `fusionizer` version that wrote it (informational).
    pub fusionizer_version: String,
    /// The grouping selection the plan was made for.
    pub selection: SavedSelection,
    /// [`crate::platform::Platform::identity`] of the platform it was planned against.
    pub platform: String,
    /// A destroy plan (`plan --destroy`): planned against an empty desired set, checked against
    /// one. Absent (false) in ordinary plans. Read as [`Desired::Nothing`] ([`SavedPlan::desired`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    destroy: bool,
    /// The grouping was read from the live state (no `--at`/`--phase`): `apply FILE` reads it
    /// from the live state again, and the plan is stale when that picks other functions.
    /// Absent (false) when `--at`/`--phase` chose it. Read as [`Desired::FollowLive`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    follows_live: bool,
    /// The desired functions the plan was computed from, sorted by name.
    pub inputs: Vec<InputEntry>,
    /// The live owned functions the plan was computed from, sorted by name.
    pub live: Vec<LiveEntry>,
    /// The plan itself.
    pub plan: Plan,
}

impl SavedPlan {
    /// Builds a saved plan from what `plan` was computed from (`live_owned` as given to
    /// [`plan::compute`]).
    pub fn new(
        plan: Plan,
        selection: Selection,
        platform: String,
        desired: &[Artifact],
        live_owned: &[LiveFunction],
    ) -> SavedPlan {
        let owned: Vec<LiveFunction> = live_owned
            .iter()
            .filter(|f| f.is_owned_by(&plan.project))
            .cloned()
            .collect();
        SavedPlan {
            format_version: FORMAT_VERSION,
            fusionizer_version: env!("CARGO_PKG_VERSION").to_string(),
            selection: selection.into(),
            platform,
            destroy: false,
            follows_live: false,
            inputs: InputEntry::of(desired),
            live: LiveEntry::of(&owned),
            plan,
        }
    }

    /// The same plan, made for `desired` (as `plan` resolved it): a destroy plan
    /// ([`plan::destroy`], its desired set empty) or one following the live state. On disk these
    /// are the `destroy` and `follows_live` flags; a grouping given by `--at`/`--phase` is
    /// [`SavedPlan::selection`] alone.
    pub fn made_for(self, desired: Desired) -> SavedPlan {
        SavedPlan {
            destroy: desired == Desired::Nothing,
            follows_live: desired == Desired::FollowLive,
            ..self
        }
    }

    /// What the plan was made for: [`Desired::Nothing`] for a destroy plan,
    /// [`Desired::FollowLive`] when the live state chose the grouping, else the grouping of
    /// [`SavedPlan::selection`].
    pub fn desired(&self) -> Desired {
        if self.destroy {
            Desired::Nothing
        } else if self.follows_live {
            Desired::FollowLive
        } else {
            Desired::Grouping(self.selection.into())
        }
    }

    /// How to make this plan again, for hints: `fusionizer plan --phase 2`, `… --destroy`.
    fn plan_command(&self) -> String {
        match self.desired() {
            Desired::Nothing => "fusionizer plan --destroy".to_string(),
            Desired::FollowLive | Desired::Fused => "fusionizer plan".to_string(),
            Desired::Grouping(_) => format!("fusionizer plan {}", self.selection),
        }
    }

    /// Writes the plan file (pretty JSON).
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let mut text = serde_json::to_string_pretty(self).expect("a plan always serialises");
        text.push('\n');
        std::fs::write(path, text).map_err(|e| {
            Error::failure(format!("cannot write the plan to `{}`", path.display()))
                .caused_by(e.to_string())
        })
    }

    /// Reads and checks a plan file.
    pub fn read(path: &Path) -> Result<SavedPlan, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::failure(format!("cannot read the plan file `{}`", path.display()))
                .caused_by(e.to_string())
        })?;
        let not_a_plan = |cause: String| {
            Error::failure(format!(
                "`{}` is not a fusionizer plan file",
                path.display()
            ))
            .caused_by(cause)
            .with_hint("write one with `fusionizer plan --out FILE`")
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| not_a_plan(e.to_string()))?;
        match value.get("format_version").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(Error::failure(format!(
                    "plan file `{}` has format version {v}; this fusionizer reads version {FORMAT_VERSION}",
                    path.display()
                ))
                .with_hint("make the plan again with this fusionizer: `fusionizer plan --out FILE`"))
            }
            None => return Err(not_a_plan("no `format_version`".to_string())),
        }
        serde_json::from_value(value).map_err(|e| not_a_plan(e.to_string()))
    }

    /// What moved since the plan was made: one line per difference, empty when nothing did. A
    /// destroy plan ignores `desired`: it is always compared against an empty desired set.
    pub fn moved(
        &self,
        platform: &str,
        project: &str,
        desired: &[Artifact],
        live_owned: &[LiveFunction],
    ) -> Vec<String> {
        let desired = if self.desired().is_nothing() {
            &[]
        } else {
            desired
        };
        let mut out = Vec::new();
        if self.platform != platform {
            out.push(format!(
                "the plan was made for platform `{}`, not `{platform}`",
                self.platform
            ));
        }
        if self.plan.project != project {
            out.push(format!(
                "the plan was made for project `{}`, not `{project}`",
                self.plan.project
            ));
        }
        out.extend(inputs_moved(&self.inputs, &InputEntry::of(desired)));
        let owned: Vec<LiveFunction> = live_owned
            .iter()
            .filter(|f| f.is_owned_by(project))
            .cloned()
            .collect();
        out.extend(live_moved(&self.live, &LiveEntry::of(&owned)));
        if out.is_empty() {
            let fp_inputs = plan::inputs_fingerprint(desired);
            let fp_live = plan::live_fingerprint(owned.iter());
            if fp_inputs != self.plan.fingerprint.inputs || fp_live != self.plan.fingerprint.live {
                out.push(
                    "the plan's fingerprint does not match its recorded inputs (was the file edited?)"
                        .to_string(),
                );
            }
        }
        out
    }

    /// Fails with exit 75 when [`SavedPlan::moved`] finds anything.
    pub fn check_fresh(
        &self,
        path: &Path,
        platform: &str,
        project: &str,
        desired: &[Artifact],
        live_owned: &[LiveFunction],
    ) -> Result<(), Error> {
        let moved = self.moved(platform, project, desired, live_owned);
        if moved.is_empty() {
            return Ok(());
        }
        let mut err = Error::new(
            ExitCode::TempFail,
            format!(
                "the saved plan `{}` is stale: {} since it was made",
                path.display(),
                if moved.len() == 1 {
                    "one thing changed".to_string()
                } else {
                    format!("{} things changed", moved.len())
                }
            ),
        )
        .with_hint(format!(
            "review a fresh plan: `{} --out {}`",
            self.plan_command(),
            path.display()
        ));
        err.causes = moved;
        Err(err)
    }
}

fn by_name<T>(items: &[T], name: impl Fn(&T) -> &str) -> BTreeMap<&str, &T> {
    items.iter().map(|i| (name(i), i)).collect()
}

fn inputs_moved(before: &[InputEntry], now: &[InputEntry]) -> Vec<String> {
    let before = by_name(before, |e| &e.function);
    let now = by_name(now, |e| &e.function);
    let names: BTreeSet<&str> = before.keys().chain(now.keys()).copied().collect();
    let mut out = Vec::new();
    for name in names {
        match (before.get(name), now.get(name)) {
            (Some(_), None) => out.push(format!("inputs: `{name}` is no longer desired")),
            (None, Some(e)) => out.push(format!(
                "inputs: `{name}` (tasks {}) is now desired",
                e.tasks.join(", ")
            )),
            (Some(a), Some(b)) if a.digest != b.digest => {
                let tasks: Vec<String> = b
                    .tasks
                    .iter()
                    .filter(|t| a.task_digests.get(*t) != b.task_digests.get(*t))
                    .map(|t| format!("`{t}`"))
                    .collect();
                out.push(if tasks.is_empty() {
                    format!(
                        "inputs: `{name}` changed (its merged function.yaml or generated files)"
                    )
                } else {
                    format!(
                        "inputs: `{name}` changed (files of {} {})",
                        if tasks.len() == 1 { "task" } else { "tasks" },
                        tasks.join(", ")
                    )
                });
            }
            _ => {}
        }
    }
    out
}

fn live_moved(before: &[LiveEntry], now: &[LiveEntry]) -> Vec<String> {
    let before = by_name(before, |e| &e.function);
    let now = by_name(now, |e| &e.function);
    let names: BTreeSet<&str> = before.keys().chain(now.keys()).copied().collect();
    let short = |d: &Option<String>| d.clone().unwrap_or_else(|| "none".to_string());
    let mut out = Vec::new();
    for name in names {
        match (before.get(name), now.get(name)) {
            (Some(_), None) => out.push(format!("live: `{name}` was deleted from the platform")),
            (None, Some(e)) => out.push(format!(
                "live: `{name}` appeared on the platform (state `{}`)",
                e.state
            )),
            (Some(a), Some(b)) => {
                if a.digest != b.digest {
                    out.push(format!(
                        "live: `{name}` was redeployed ({} -> {})",
                        short(&a.digest),
                        short(&b.digest)
                    ));
                }
                if a.state != b.state {
                    out.push(format!(
                        "live: `{name}` went from state `{}` to `{}`",
                        a.state, b.state
                    ));
                }
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_plan_was_made_for_is_kept_on_disk_as_its_flags() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("plan.json");
        let empty = plan::compute("shop", &[], &[], &[]).unwrap();
        for (desired, flags) in [
            (Desired::Nothing, [true, false]),
            (Desired::FollowLive, [false, true]),
            (Desired::Grouping(Selection::Phase(2)), [false, false]),
        ] {
            let selection = match desired {
                Desired::Grouping(selection) => selection,
                _ => Selection::default(),
            };
            SavedPlan::new(empty.clone(), selection, "memory:t".into(), &[], &[])
                .made_for(desired)
                .write(&path)
                .unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            for (key, set) in ["destroy", "follows_live"].into_iter().zip(flags) {
                // Absent unless set, as plans were always written.
                assert_eq!(json.get(key).cloned(), set.then_some(true.into()), "{key}");
            }
            assert_eq!(SavedPlan::read(&path).unwrap().desired(), desired);
        }
    }
}
