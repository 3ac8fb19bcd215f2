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

/// A grouping: sorted groups of sorted task names; every present task in exactly one group.
pub type Grouping = Vec<Vec<String>>;

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
    let mut out: Grouping = Vec::new();
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
    out.sort();
    out
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
        g.iter()
            .map(|g| g.iter().map(ToString::to_string).collect())
            .collect()
    }

    fn at(secs: u64) -> Selection {
        Selection::At(Duration::from_secs(secs))
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
        let chosen = groups(&[&["c", "a"], &["b", "gone"], &["a", "d"]]);
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
