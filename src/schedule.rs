//! Which tasks share a function when: the grouping in force at an offset or for the N-th phase.
//!
//! Tasks named in no group of the phase run alone; with no phase at or before the offset, every
//! task runs alone. Only tasks that are present (declared with code, or uploaded) are grouped.

#![warn(missing_docs)]

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::Config;
use crate::error::Error;

/// How a command picks a grouping (`--at DURATION` or `--phase N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The grouping in force at this offset from serve start (`--at`, default `0s`).
    At(Duration),
    /// The N-th `[[phase]]` in file order, counting from 1 (`--phase`).
    Phase(usize),
}

impl Default for Selection {
    fn default() -> Self {
        Selection::At(Duration::ZERO)
    }
}

/// A grouping: which tasks share a function, each group one function.
///
/// Always normalised: every constructor sorts each group and then the groups (so by their first
/// task), and nothing can unsort it, so two groupings of the same groups are equal and render
/// alike. Normalising only sorts: an empty group or a name given twice is kept as given, for
/// the readers of a grouping from outside (a phase, an optimizer's answer) reject those before
/// they build one. Serialised as the plain array of arrays of task names; deserialising sorts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Grouping(Vec<Vec<String>>);

impl Grouping {
    /// `groups`, normalised.
    pub fn new<G, T>(groups: impl IntoIterator<Item = G>) -> Self
    where
        G: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let mut groups: Vec<Vec<String>> = groups
            .into_iter()
            .map(|group| {
                let mut group: Vec<String> = group.into_iter().map(Into::into).collect();
                group.sort();
                group
            })
            .collect();
        groups.sort();
        Grouping(groups)
    }

    /// The groups, in order.
    pub fn groups(&self) -> &[Vec<String>] {
        &self.0
    }

    /// The groups, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Vec<String>> {
        self.0.iter()
    }

    /// How many groups (functions).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no group at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every task, group by group.
    pub fn tasks(&self) -> impl Iterator<Item = &String> {
        self.0.iter().flatten()
    }

    /// The (first) group holding `task`.
    pub fn group_of(&self, task: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|group| group.iter().any(|t| t == task))
            .map(Vec::as_slice)
    }

    /// Whether `a` and `b` run in one function (a task is together with itself when grouped).
    pub fn together(&self, a: &str, b: &str) -> bool {
        self.group_of(a)
            .is_some_and(|group| group.iter().any(|t| t == b))
    }

    /// The groups, owned.
    pub fn into_groups(self) -> Vec<Vec<String>> {
        self.0
    }
}

impl FromIterator<Vec<String>> for Grouping {
    fn from_iter<I: IntoIterator<Item = Vec<String>>>(groups: I) -> Self {
        Grouping::new(groups)
    }
}

impl<'g> IntoIterator for &'g Grouping {
    type Item = &'g Vec<String>;
    type IntoIter = std::slice::Iter<'g, Vec<String>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Grouping {
    type Item = Vec<String>;
    type IntoIter = std::vec::IntoIter<Vec<String>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'de> serde::Deserialize<'de> for Grouping {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Vec<String>>::deserialize(deserializer).map(Grouping::new)
    }
}

/// The index (0-based) of the phase in force at `offset`, if any: the last phase whose `after`
/// is at or before `offset` (phases are validated to be in strictly increasing `after` order).
pub fn phase_at(config: &Config, offset: Duration) -> Option<usize> {
    config
        .phases
        .iter()
        .rposition(|phase| phase.after <= offset)
}

/// The grouping for `selection` over the `present` tasks. Errors (usage, exit 64) for a phase
/// number out of range.
///
/// Groups of the phase shrink to their present members (and vanish when none is present); every
/// present task named in no group runs alone. Each group is sorted, and groups are sorted by
/// their first task.
pub fn grouping(
    config: &Config,
    selection: Selection,
    present: &BTreeSet<String>,
) -> Result<Grouping, Error> {
    let phase = match selection {
        Selection::At(offset) => phase_at(config, offset),
        Selection::Phase(number) => {
            let count = config.phases.len();
            if number == 0 || number > count {
                let hint = match count {
                    0 => "`fusion.toml` declares no `[[phase]]`; omit `--phase`".to_string(),
                    1 => "`fusion.toml` declares 1 phase: use `--phase 1`".to_string(),
                    n => format!(
                        "`fusion.toml` declares {n} phases: use `--phase 1` to `--phase {n}`"
                    ),
                };
                return Err(
                    Error::usage(format!("phase `{number}` does not exist")).with_hint(hint)
                );
            }
            Some(number - 1)
        }
    };
    let groups = phase.map_or(&[][..], |index| config.phases[index].groups.as_slice());
    Ok(over_present(groups, present))
}

/// `groups` laid over the `present` tasks, by the rules of a phase: each group shrinks to its
/// present members (a task already placed by an earlier group stays there) and vanishes when
/// none is present; every present task named in no group runs alone. Sorted like [`grouping`].
///
/// serve uses it for a grouping an optimizer chose, so that a task uploaded or removed since
/// then is placed the way a phase would place it.
pub fn over_present(groups: &[Vec<String>], present: &BTreeSet<String>) -> Grouping {
    let mut grouped = BTreeSet::new();
    let mut out: Vec<Vec<String>> = Vec::new();
    for group in groups {
        let members: Vec<String> = group
            .iter()
            .filter(|task| present.contains(*task) && !grouped.contains(*task))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        grouped.extend(members.iter().cloned());
        if !members.is_empty() {
            out.push(members);
        }
    }
    out.extend(
        present
            .iter()
            .filter(|task| !grouped.contains(*task))
            .map(|task| vec![task.clone()]),
    );
    Grouping::new(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::config::{
        NuctlConfig, Phase, PlatformKind, ProjectConfig, ServeConfig, TaskDecl, TaskSource,
    };
    use crate::error::ExitCode;

    fn config(phases: &[(u64, &[&[&str]])]) -> Config {
        let tasks = ["a", "b", "c", "d"]
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    TaskDecl {
                        name: name.to_string(),
                        source: TaskSource::Upload,
                    },
                )
            })
            .collect::<BTreeMap<_, _>>();
        Config {
            file: PathBuf::from("/p/fusion.toml"),
            root: PathBuf::from("/p"),
            state_dir: PathBuf::from("/p/.fusionizer"),
            overlay: None,
            project: ProjectConfig {
                name: "p".to_string(),
                platform: PlatformKind::Local,
            },
            tasks,
            phases: phases
                .iter()
                .map(|(after, groups)| Phase {
                    after: Duration::from_secs(*after),
                    groups: groups
                        .iter()
                        .map(|g| g.iter().map(ToString::to_string).collect())
                        .collect(),
                })
                .collect(),
            serve: ServeConfig::default(),
            nuctl: NuctlConfig::default(),
            optimizer: crate::config::OptimizerConfig::default(),
            overrides: Vec::new(),
        }
    }

    fn present(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(ToString::to_string).collect()
    }

    fn groups(g: &[&[&str]]) -> Grouping {
        Grouping::new(g.iter().map(|g| g.iter().copied()))
    }

    fn at(secs: u64) -> Selection {
        Selection::At(Duration::from_secs(secs))
    }

    #[test]
    fn a_grouping_is_sorted_however_it_is_built() {
        let raw = vec![vec!["d", "c"], vec!["b", "a"]];
        let built = Grouping::new(raw.clone());
        assert_eq!(built.groups(), [vec!["a", "b"], vec!["c", "d"]]);
        let collected: Grouping = raw
            .iter()
            .map(|g| g.iter().map(ToString::to_string).collect())
            .collect();
        assert_eq!(collected, built);
        let read: Grouping = serde_json::from_str(r#"[["d","c"],["b","a"]]"#).unwrap();
        assert_eq!(read, built);
        assert_eq!(
            serde_json::to_string(&built).unwrap(),
            r#"[["a","b"],["c","d"]]"#
        );
        assert_eq!(built.len(), 2);
        assert_eq!(
            built.tasks().map(String::as_str).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert!(Grouping::default().is_empty());
    }

    #[test]
    fn normalising_keeps_empty_groups_and_repeated_names() {
        let g = Grouping::new([vec!["b", "a", "b"], vec![]]);
        assert_eq!(g.groups(), [vec![], vec!["a", "b", "b"]]);
    }

    #[test]
    fn group_of_and_together_answer_by_membership() {
        let g = groups(&[&["c", "a"], &["b"]]);
        assert_eq!(
            g.group_of("c"),
            Some(&["a".to_string(), "c".to_string()][..])
        );
        assert_eq!(g.group_of("b"), Some(&["b".to_string()][..]));
        assert_eq!(g.group_of("zed"), None);
        assert!(g.together("a", "c"));
        assert!(g.together("c", "a"));
        assert!(g.together("b", "b"));
        assert!(!g.together("a", "b"));
        assert!(!g.together("zed", "zed"));
    }

    #[test]
    fn phase_at_picks_the_last_phase_not_after_the_offset() {
        let c = config(&[(10, &[]), (40, &[]), (90, &[])]);
        assert_eq!(phase_at(&c, Duration::ZERO), None);
        assert_eq!(phase_at(&c, Duration::from_secs(9)), None);
        assert_eq!(phase_at(&c, Duration::from_secs(10)), Some(0));
        assert_eq!(phase_at(&c, Duration::from_secs(39)), Some(0));
        assert_eq!(phase_at(&c, Duration::from_secs(40)), Some(1));
        assert_eq!(phase_at(&c, Duration::from_secs(3600)), Some(2));
        assert_eq!(phase_at(&config(&[]), Duration::from_secs(5)), None);
    }

    #[test]
    fn without_phases_every_task_runs_alone() {
        let c = config(&[]);
        let g = grouping(&c, Selection::default(), &present(&["b", "a"])).unwrap();
        assert_eq!(g, groups(&[&["a"], &["b"]]));
    }

    #[test]
    fn before_the_first_phase_every_task_runs_alone() {
        let c = config(&[(30, &[&["a", "b"]])]);
        assert_eq!(
            grouping(&c, at(0), &present(&["a", "b"])).unwrap(),
            groups(&[&["a"], &["b"]])
        );
        assert_eq!(
            grouping(&c, at(30), &present(&["a", "b"])).unwrap(),
            groups(&[&["a", "b"]])
        );
    }

    #[test]
    fn tasks_named_in_no_group_run_alone_and_output_is_sorted() {
        let c = config(&[(0, &[&["d", "b"]])]);
        let g = grouping(&c, at(0), &present(&["a", "b", "c", "d"])).unwrap();
        assert_eq!(g, groups(&[&["a"], &["b", "d"], &["c"]]));
    }

    #[test]
    fn groups_shrink_to_present_tasks_and_empty_ones_vanish() {
        let c = config(&[(0, &[&["a", "b", "c"], &["d"]])]);
        let g = grouping(&c, at(0), &present(&["a", "c"])).unwrap();
        assert_eq!(g, groups(&[&["a", "c"]]));
        let g = grouping(&c, at(0), &present(&[])).unwrap();
        assert!(g.is_empty());
    }

    #[test]
    fn present_tasks_not_declared_run_alone() {
        let c = config(&[(0, &[&["a", "b"]])]);
        let g = grouping(&c, at(0), &present(&["a", "b", "zed"])).unwrap();
        assert_eq!(g, groups(&[&["a", "b"], &["zed"]]));
    }

    #[test]
    fn an_explicit_grouping_is_laid_over_the_present_tasks_like_a_phase() {
        let chosen: Vec<Vec<String>> = [&["c", "a"][..], &["b", "gone"], &["a", "d"]]
            .iter()
            .map(|g| g.iter().map(ToString::to_string).collect())
            .collect();
        assert_eq!(
            over_present(&chosen, &present(&["a", "b", "c", "d", "new"])),
            groups(&[&["a", "c"], &["b"], &["d"], &["new"]])
        );
        assert!(over_present(&chosen, &present(&[])).is_empty());
    }

    #[test]
    fn phase_selection_counts_from_one_in_file_order() {
        let c = config(&[(0, &[&["a"], &["b"]]), (40, &[&["a", "b"]])]);
        let p = present(&["a", "b"]);
        assert_eq!(
            grouping(&c, Selection::Phase(1), &p).unwrap(),
            groups(&[&["a"], &["b"]])
        );
        assert_eq!(
            grouping(&c, Selection::Phase(2), &p).unwrap(),
            groups(&[&["a", "b"]])
        );
    }

    #[test]
    fn phase_out_of_range_is_a_usage_error_saying_how_many_exist() {
        let c = config(&[(0, &[]), (40, &[])]);
        for n in [0, 3] {
            let err = grouping(&c, Selection::Phase(n), &present(&["a"])).unwrap_err();
            assert_eq!(err.code, ExitCode::Usage);
            assert_eq!(
                err.render("error:"),
                format!(
                    "error: phase `{n}` does not exist\nhint: `fusion.toml` declares 2 phases: use `--phase 1` to `--phase 2`"
                )
            );
        }
        let err = grouping(&config(&[]), Selection::Phase(1), &present(&[])).unwrap_err();
        assert_eq!(
            err.render("error:"),
            "error: phase `1` does not exist\nhint: `fusion.toml` declares no `[[phase]]`; omit `--phase`"
        );
        let err = grouping(&config(&[(0, &[])]), Selection::Phase(2), &present(&[])).unwrap_err();
        assert_eq!(
            err.hint.as_deref(),
            Some("`fusion.toml` declares 1 phase: use `--phase 1`")
        );
    }
}
