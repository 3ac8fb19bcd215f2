//! `[[phase]]`: offsets in strictly increasing order, and groups that name declared tasks, each
//! task at most once per phase.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::{Checker, TaskList, Value, GROUPS_SHAPE_HINT};
use crate::config::{Phase, TaskDecl};

const PHASE_KEYS: &[&str] = &["after", "groups"];

impl Checker<'_> {
    // Long by design: one linear pass over `[[phase]]`, each key checked where it is read.
    pub(super) fn phases(
        &mut self,
        root: &DeTable<'_>,
        tasks: &BTreeMap<String, TaskDecl>,
    ) -> Vec<Phase> {
        let mut phases = Vec::new();
        let Some(value) = root.get("phase") else {
            return phases;
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                value.span(),
                format!(
                    "`phase` must be an array of tables, found {}",
                    value.get_ref().type_str()
                ),
                Some("write each phase as a `[[phase]]` table".to_string()),
            );
            return phases;
        };
        // The last valid `after`, with its text, for the ordering check.
        let mut previous: Option<(usize, Duration, String)> = None;
        for (index, item) in items.iter().enumerate() {
            let number = index + 1;
            let DeValue::Table(table) = item.get_ref() else {
                self.error(
                    item.span(),
                    format!(
                        "phase {number} must be a table, found {}",
                        item.get_ref().type_str()
                    ),
                    Some("write each phase as a `[[phase]]` table".to_string()),
                );
                continue;
            };
            self.check_keys(table, PHASE_KEYS, Some(&format!("phase {number}")));
            let after = match table.get("after") {
                None => {
                    self.error(
                        item.span(),
                        format!("phase {number} is missing `after`"),
                        Some("add `after = \"0s\"` (the offset from `serve` start)".to_string()),
                    );
                    None
                }
                Some(after) => {
                    let start = self.diagnostics.len();
                    let parsed = self.duration(after, "after").map(|d| (d, after));
                    for diagnostic in &mut self.diagnostics[start..] {
                        diagnostic.message = format!("phase {number}: {}", diagnostic.message);
                    }
                    parsed
                }
            };
            if let Some((duration, after)) = after {
                let text = after.get_ref().as_str().unwrap_or_default().to_string();
                if let Some((prev_number, prev, prev_text)) = &previous {
                    if duration <= *prev {
                        self.error(
                            after.span(),
                            format!(
                                "phase {number} starts at `{text}`, not after phase {prev_number} at `{prev_text}`"
                            ),
                            Some(
                                "list `[[phase]]` tables in strictly increasing `after` order"
                                    .to_string(),
                            ),
                        );
                    }
                }
                if previous
                    .as_ref()
                    .is_none_or(|(_, prev, _)| duration > *prev)
                {
                    previous = Some((number, duration, text));
                }
            }
            let groups = match table.get("groups") {
                None => {
                    self.error(
                        item.span(),
                        format!("phase {number} is missing `groups`"),
                        Some("list the groups, e.g. `groups = [[\"taska\", \"taskb\"]]`; `groups = []` runs every task alone".to_string()),
                    );
                    Vec::new()
                }
                Some(groups) => self.groups(number, groups, tasks),
            };
            phases.push(Phase {
                after: after.map_or(Duration::ZERO, |(d, _)| d),
                groups,
            });
        }
        phases
    }

    /// A phase's groups: each the set of its declared tasks, a task named in no earlier group.
    fn groups(
        &mut self,
        number: usize,
        value: &Value<'_>,
        tasks: &BTreeMap<String, TaskDecl>,
    ) -> Vec<Vec<String>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                value.span(),
                format!(
                    "phase {number}: `groups` must be an array of arrays of task names, found {}",
                    value.get_ref().type_str()
                ),
                Some(GROUPS_SHAPE_HINT.to_string()),
            );
            return Vec::new();
        };
        // The tasks of the earlier groups.
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut groups = Vec::new();
        for group in items {
            let list = TaskList::Group {
                phase: number,
                earlier: &seen,
            };
            let Some((names, _)) = self.task_names(group, list, tasks) else {
                continue;
            };
            seen.extend(names.iter().cloned());
            if !names.is_empty() {
                groups.push(names.into_iter().collect());
            }
        }
        groups
    }
}
