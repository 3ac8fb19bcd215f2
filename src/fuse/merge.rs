//! Merging the function.yaml files of a group into one spec, by Nuclio's own rules.
//!
//! The rules (DESIGN.md "Deployed functions", reference/nuclio.md §2 "Fusion merge rules"):
//! one `spec.runtime` for all tasks; `spec.env` merged by name; `spec.build.commands`
//! concatenated in order without duplicates (pre-copy commands before `@nuclio.postCopy`, the
//! post-copy ones after it); one HTTP trigger whose `numWorkers` is the largest (its attributes
//! merged key by key, `maxRequestBodySize` the largest); the other triggers unioned; every
//! `spec.resources` quantity, `eventTimeout` and `readinessTimeoutSeconds` the largest; labels,
//! annotations, `envFrom`, `build.directives` and volumes unioned. Every other field is merged
//! generically: mappings key by key, anything else must be equal in every task that sets it.
//! A disagreement is a [`FuseError::Conflict`] naming both tasks and the field; nothing of a
//! task's spec is silently dropped. `spec.handler` and `spec.description` are replaced by the
//! caller (each task's own function.yaml still ships, verbatim, under `fusionizer_tasks/`).
//!
//! This module holds the walk and the generic rule; the per-field rules are in [`super::rules`].
//! Every merge works on all tasks' values of one field at once (`&[Item]`, tasks sorted by
//! name), so a conflict can always name the first task that set the value and the one that
//! disagrees. Output order is deterministic: keys in order of first appearance over the sorted
//! tasks, except maps keyed by arbitrary names (labels, annotations, triggers), which are sorted.

use serde_yaml::{Mapping, Value};

use super::rules;
use super::FuseError;

/// One task's value for the field being merged.
#[derive(Clone, Copy)]
pub(super) struct Item<'a> {
    pub task: &'a str,
    pub value: &'a Value,
}

/// The merged spec parts the caller assembles into the final function.yaml.
pub(super) struct Merged {
    /// `metadata` keys other than `name`, `labels` and `annotations`, merged generically.
    pub metadata_extra: Mapping,
    /// Union of the tasks' `metadata.labels`, sorted.
    pub labels: Mapping,
    /// Union of the tasks' `metadata.annotations`, sorted.
    pub annotations: Mapping,
    /// `spec.runtime`, the one the tasks agree on.
    pub runtime: Value,
    /// Every other `spec` key except `handler` and `description`, merged.
    pub spec_rest: Mapping,
    /// The merged HTTP trigger's `numWorkers` (1 when no task sets one).
    pub num_workers: usize,
    /// `spec.build.commands` as merged.
    pub build_commands: Vec<String>,
}

/// Merges the tasks' whole function.yaml documents (`docs`, sorted by task name).
pub(super) fn merge(docs: &[Item<'_>], problems: &mut Vec<FuseError>) -> Merged {
    let metadata = field_items(docs, "metadata", problems, "metadata");
    let spec = field_items(docs, "spec", problems, "spec");

    let labels = rules::string_map(
        &field_items(&metadata, "labels", problems, "metadata.labels"),
        "metadata.labels",
        problems,
    );
    let annotations = rules::string_map(
        &field_items(&metadata, "annotations", problems, "metadata.annotations"),
        "metadata.annotations",
        problems,
    );
    let metadata_extra = merge_keys(
        &metadata,
        "metadata",
        &["name", "labels", "annotations"],
        problems,
        |key, items, problems| generic(&format!("metadata.{key}"), items, problems),
    );

    let runtime = rules::runtime(
        &field_items(&spec, "runtime", problems, "spec.runtime"),
        problems,
    );
    let mut num_workers = 1;
    let mut build_commands = Vec::new();
    let spec_rest = merge_keys(
        &spec,
        "spec",
        &["runtime", "handler", "description"],
        problems,
        |key, items, problems| match key {
            "env" => rules::env(items, problems),
            "envFrom" => rules::union_list("spec.envFrom", items, problems),
            "build" => {
                let (value, commands) = rules::build(items, problems);
                build_commands = commands;
                value
            }
            "triggers" => {
                let (value, workers) = rules::triggers(items, problems);
                num_workers = workers;
                value
            }
            "resources" => rules::resources(items, problems),
            "eventTimeout" => rules::largest("spec.eventTimeout", items, problems, |v| {
                v.as_str().and_then(rules::go_duration_seconds)
            }),
            "readinessTimeoutSeconds" => rules::largest(
                "spec.readinessTimeoutSeconds",
                items,
                problems,
                Value::as_f64,
            ),
            "volumes" => rules::volumes(items, problems),
            other => generic(&format!("spec.{other}"), items, problems),
        },
    );

    Merged {
        metadata_extra,
        labels,
        annotations,
        runtime,
        spec_rest,
        num_workers,
        build_commands,
    }
}

/// Each task's value of `key` inside `items` (which must be mappings), skipping absent or null.
pub(super) fn field_items<'a>(
    items: &[Item<'a>],
    key: &str,
    problems: &mut Vec<FuseError>,
    path: &str,
) -> Vec<Item<'a>> {
    let mut out = Vec::new();
    for item in items {
        match item.value {
            Value::Mapping(map) => {
                if let Some(value) = map.get(key).filter(|v| !v.is_null()) {
                    out.push(Item {
                        task: item.task,
                        value,
                    });
                }
            }
            Value::Null => {}
            _ => problems.push(FuseError::Invalid {
                task: item.task.to_string(),
                message: match path.rsplit_once('.') {
                    Some((parent, _)) => format!("`{parent}` must be a mapping"),
                    None => "function.yaml must hold a mapping".to_string(),
                },
            }),
        }
    }
    out
}

/// Merges mappings key by key (keys in order of first appearance), skipping `skip`, with
/// `merge_one(key, items_with_that_key, problems)` deciding each key's value.
pub(super) fn merge_keys<'a, F>(
    items: &[Item<'a>],
    path: &str,
    skip: &[&str],
    problems: &mut Vec<FuseError>,
    mut merge_one: F,
) -> Mapping
where
    F: FnMut(&str, &[Item<'a>], &mut Vec<FuseError>) -> Value,
{
    let mut keys: Vec<&'a Value> = Vec::new();
    for item in items {
        match item.value {
            Value::Mapping(map) => {
                for key in map.keys() {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
            other => problems.push(FuseError::Invalid {
                task: item.task.to_string(),
                message: format!("`{path}` must be a mapping, not {}", describe(other)),
            }),
        }
    }
    let mut out = Mapping::new();
    for key in keys {
        let name = key_text(key);
        if skip.contains(&name.as_str()) {
            continue;
        }
        // An explicit `null` says nothing; it counts as absent (and stays `null` if all are).
        let with_key: Vec<Item<'a>> = items
            .iter()
            .filter_map(|item| {
                item.value
                    .as_mapping()
                    .and_then(|m| m.get(key))
                    .filter(|value| !value.is_null())
                    .map(|value| Item {
                        task: item.task,
                        value,
                    })
            })
            .collect();
        let value = if with_key.is_empty() {
            Value::Null
        } else {
            merge_one(&name, &with_key, problems)
        };
        out.insert(key.clone(), value);
    }
    out
}

/// The default rule: mappings merge key by key; any other value must be equal wherever set.
pub(super) fn generic(path: &str, items: &[Item<'_>], problems: &mut Vec<FuseError>) -> Value {
    let Some(first) = items.first() else {
        return Value::Null;
    };
    if items.iter().all(|i| i.value.is_mapping()) && items.len() > 1 {
        let map = merge_keys(items, path, &[], problems, |key, items, problems| {
            generic(&format!("{path}.{key}"), items, problems)
        });
        return Value::Mapping(map);
    }
    equal(path, items, problems);
    first.value.clone()
}

/// Every value must equal the first; each one that does not is a conflict.
pub(super) fn equal(path: &str, items: &[Item<'_>], problems: &mut Vec<FuseError>) {
    let Some(first) = items.first() else {
        return;
    };
    for other in &items[1..] {
        if other.value != first.value {
            problems.push(conflict(path, first, other));
        }
    }
}

pub(super) fn conflict(path: &str, first: &Item<'_>, other: &Item<'_>) -> FuseError {
    FuseError::Conflict {
        field: path.to_string(),
        first: first.task.to_string(),
        first_value: render(first.value),
        second: other.task.to_string(),
        second_value: render(other.value),
    }
}

pub(super) fn invalid(item: &Item<'_>, message: &str) -> FuseError {
    FuseError::Invalid {
        task: item.task.to_string(),
        message: message.to_string(),
    }
}

pub(super) fn sorted(map: Mapping) -> Mapping {
    let mut entries: Vec<(Value, Value)> = map.into_iter().collect();
    entries.sort_by_key(|(k, _)| key_text(k));
    entries.into_iter().collect()
}

/// A mapping key as text (keys in function.yaml are strings; others are shown as YAML).
pub(super) fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => render(other),
    }
}

/// A value as a conflict message shows it: a scalar as written, anything else as compact JSON,
/// cut at 80 characters.
pub(super) fn render(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => serde_json::to_string(other).unwrap_or_else(|_| format!("{other:?}")),
    };
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

pub(super) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}
