//! Merging the function.yaml files of a group into one spec, by Nuclio's own rules.
//!
//! The rules (`docs/architecture.md`, "Fusing"):
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
//! This module holds the walk; the generic rule and the helpers both use are in [`super::item`],
//! the per-field rules in [`super::rules`].
//! Every merge works on all tasks' values of one field at once (`&[Item]`, tasks sorted by
//! name), so a conflict can always name the first task that set the value and the one that
//! disagrees. Output order is deterministic: keys in order of first appearance over the sorted
//! tasks, except maps keyed by arbitrary names (labels, annotations, triggers), which are sorted.

use serde_norway::{Mapping, Value};

use super::item::{field_items, generic, merge_keys, Item};
use super::rules;
use super::FuseError;

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
    /// Each non-HTTP trigger's name → the task it routes to.
    pub trigger_tasks: std::collections::BTreeMap<String, String>,
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
    let mut trigger_tasks = std::collections::BTreeMap::new();
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
                let (value, workers, routes) = rules::triggers(items, problems);
                num_workers = workers;
                trigger_tasks = routes;
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
        trigger_tasks,
        build_commands,
    }
}
