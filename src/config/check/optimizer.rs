//! `[optimizer]` (who regroups while serve runs, with what damping) and `[[override]]`
//! (per-function settings, today the memory limit), defaults filled in.

use std::collections::{BTreeMap, BTreeSet};

use toml::de::{DeTable, DeValue};

use super::{Checker, TaskList, Value};
use crate::config::{OptimizerConfig, OptimizerKind, Override, TaskDecl};

const OPTIMIZER_KEYS: &[&str] = &[
    "kind",
    "interval",
    "min-calls",
    "min-gain",
    "stable-intervals",
    "cooldown",
    "command",
    "timeout",
];
const OVERRIDE_KEYS: &[&str] = &["tasks", "resources"];
const RESOURCES_KEYS: &[&str] = &["limits"];
const LIMITS_KEYS: &[&str] = &["memory"];

/// Whether `text` is a Kubernetes memory quantity fusionizer writes and Nuclio accepts: a whole
/// or decimal number with an optional binary (`Ki`…`Ei`) or decimal (`k`, `M`…`E`) suffix.
pub(crate) fn is_memory_quantity(text: &str) -> bool {
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    let number_ok = !number.is_empty()
        && number.matches('.').count() <= 1
        && !number.starts_with('.')
        && !number.ends_with('.');
    number_ok
        && matches!(
            suffix,
            "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "k" | "M" | "G" | "T" | "P" | "E"
        )
}

impl Checker<'_> {
    fn positive_integer(&mut self, value: &Value<'_>, what: &str) -> Option<u64> {
        let parsed = match value.get_ref() {
            DeValue::Integer(int) => u64::from_str_radix(int.as_str(), int.radix()).ok(),
            _ => {
                self.type_error(value, what, "a whole number");
                return None;
            }
        };
        match parsed.filter(|n| *n > 0) {
            Some(n) => Some(n),
            None => {
                self.error(
                    value.span(),
                    format!("`{what}` must be a whole number of at least 1"),
                    None,
                );
                None
            }
        }
    }

    // Long by design: one linear pass over `[optimizer]`, each key checked where it is read.
    pub(super) fn optimizer(&mut self, root: &DeTable<'_>) -> OptimizerConfig {
        let mut optimizer = OptimizerConfig::default();
        let Some(whole) = root.get("optimizer") else {
            return optimizer;
        };
        let Some(table) = self.table(root, "optimizer") else {
            return optimizer;
        };
        self.check_keys(table, OPTIMIZER_KEYS, Some("`[optimizer]`"));
        if let Some(value) = table.get("kind") {
            if let Some(text) = self.string(value, "optimizer.kind") {
                match text {
                    "static" => optimizer.kind = OptimizerKind::Static,
                    "feedback" => optimizer.kind = OptimizerKind::Feedback,
                    "command" => optimizer.kind = OptimizerKind::Command,
                    other => self.error(
                        value.span(),
                        format!("unknown optimizer kind `{other}`"),
                        Some("`optimizer.kind` is `static`, `feedback` or `command`".to_string()),
                    ),
                }
            }
        }
        if let Some(d) = self.positive_duration(table, "optimizer", "interval", None) {
            optimizer.interval = d;
        }
        if let Some(d) = self.positive_duration(table, "optimizer", "timeout", None) {
            optimizer.timeout = d;
        }
        if let Some(value) = table.get("cooldown") {
            if let Some(d) = self.duration(value, "optimizer.cooldown") {
                optimizer.cooldown = d;
            }
        }
        if let Some(value) = table.get("min-calls") {
            if let Some(n) = self.positive_integer(value, "optimizer.min-calls") {
                optimizer.min_calls = n;
            }
        }
        if let Some(value) = table.get("stable-intervals") {
            if let Some(n) = self.positive_integer(value, "optimizer.stable-intervals") {
                optimizer.stable_intervals = u32::try_from(n).unwrap_or(u32::MAX);
            }
        }
        if let Some(value) = table.get("min-gain") {
            let gain = match value.get_ref() {
                DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
                DeValue::Integer(i) => i.as_str().parse::<f64>().ok(),
                _ => {
                    self.type_error(value, "optimizer.min-gain", "a number from 0 to 1");
                    None
                }
            };
            match gain {
                Some(g) if (0.0..=1.0).contains(&g) => optimizer.min_gain = g,
                Some(g) => self.error(
                    value.span(),
                    format!("`optimizer.min-gain` is {g}, outside 0 to 1"),
                    Some(
                        "the gain is the share of synchronous calls that become in-process, \
                         e.g. `min-gain = 0.05`"
                            .to_string(),
                    ),
                ),
                None => {}
            }
        }
        if let Some(value) = table.get("command") {
            let program_hint = || {
                "write the program and its arguments, e.g. `command = [\"python3\", \
                 \"optimizer.py\"]`"
                    .to_string()
            };
            match value.get_ref() {
                DeValue::Array(items) if !items.is_empty() => {
                    let mut command = Vec::new();
                    for item in items {
                        match item.get_ref() {
                            DeValue::String(s) if !s.is_empty() => command.push(s.to_string()),
                            _ => self.error(
                                item.span(),
                                "every `optimizer.command` entry must be a non-empty string"
                                    .to_string(),
                                Some(program_hint()),
                            ),
                        }
                    }
                    optimizer.command = command;
                }
                _ => self.error(
                    value.span(),
                    "`optimizer.command` must be a non-empty array of strings".to_string(),
                    Some(program_hint()),
                ),
            }
        }
        match (optimizer.kind, table.get("command")) {
            (OptimizerKind::Command, None) => self.error(
                whole.span(),
                "`optimizer.kind = \"command\"` needs `command`".to_string(),
                Some(
                    "add `command = [\"python3\", \"optimizer.py\"]` (see examples/optimizers)"
                        .to_string(),
                ),
            ),
            (OptimizerKind::Static | OptimizerKind::Feedback, Some(value)) => self.error(
                value.span(),
                "`optimizer.command` is only read with `kind = \"command\"`".to_string(),
                Some("set `kind = \"command\"`, or remove `command`".to_string()),
            ),
            _ => {}
        }
        optimizer
    }

    // Long by design: one linear pass over `[[override]]`, each key checked where it is read.
    pub(super) fn overrides(
        &mut self,
        root: &DeTable<'_>,
        tasks: &BTreeMap<String, TaskDecl>,
    ) -> Vec<Override> {
        let mut overrides = Vec::new();
        let Some(value) = root.get("override") else {
            return overrides;
        };
        let table_hint = || {
            "write `[[override]]` with `tasks = [\"taska\", \"taskb\"]` and \
             `resources.limits.memory = \"256Mi\"`"
                .to_string()
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                value.span(),
                format!(
                    "`override` must be an array of tables, found {}",
                    value.get_ref().type_str()
                ),
                Some(table_hint()),
            );
            return overrides;
        };
        let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
        for (index, item) in items.iter().enumerate() {
            let number = index + 1;
            let DeValue::Table(table) = item.get_ref() else {
                self.error(
                    item.span(),
                    format!("override {number} must be a table"),
                    Some(table_hint()),
                );
                continue;
            };
            let context = format!("override {number}");
            self.check_keys(table, OVERRIDE_KEYS, Some(&context));
            let names = match table.get("tasks") {
                None => {
                    self.error(
                        item.span(),
                        format!("override {number} is missing `tasks`"),
                        Some(table_hint()),
                    );
                    continue;
                }
                Some(list) => self
                    .task_names(list, TaskList::Override(number), tasks)
                    .and_then(|(names, ok)| ok.then(|| names.into_iter().collect::<Vec<_>>())),
            };
            let Some(names) = names else { continue };
            let mut memory_limit = None;
            if let Some(resources) = table.get("resources") {
                let DeValue::Table(resources_table) = resources.get_ref() else {
                    self.type_error(resources, &format!("{context}.resources"), "a table");
                    continue;
                };
                self.check_keys(
                    resources_table,
                    RESOURCES_KEYS,
                    Some(&format!("{context}.resources")),
                );
                if let Some(limits) = resources_table.get("limits") {
                    let DeValue::Table(limits_table) = limits.get_ref() else {
                        self.type_error(limits, &format!("{context}.resources.limits"), "a table");
                        continue;
                    };
                    self.check_keys(
                        limits_table,
                        LIMITS_KEYS,
                        Some(&format!("{context}.resources.limits")),
                    );
                    if let Some(memory) = limits_table.get("memory") {
                        let what = format!("{context}.resources.limits.memory");
                        if let Some(text) = self.string(memory, &what) {
                            if is_memory_quantity(text) {
                                memory_limit = Some(text.to_string());
                            } else {
                                self.error(
                                    memory.span(),
                                    format!("invalid `{what}` `{text}`"),
                                    Some(
                                        "use a Kubernetes quantity, e.g. `\"256Mi\"` or `\"1Gi\"`"
                                            .to_string(),
                                    ),
                                );
                            }
                        }
                    }
                }
            }
            if !seen.insert(names.clone()) {
                self.error(
                    item.span(),
                    format!(
                        "override {number}: another `[[override]]` is for the same tasks `{}`",
                        names.join(", ")
                    ),
                    Some("merge the two tables into one".to_string()),
                );
                continue;
            }
            overrides.push(Override {
                tasks: names,
                memory_limit,
            });
        }
        overrides
    }
}
