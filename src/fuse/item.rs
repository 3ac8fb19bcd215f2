//! One field of every task at once ([`Item`]), and the generic merge rule with its helpers,
//! shared by the walk ([`super::merge`]) and the per-field rules ([`super::rules`]).

use serde_norway::{Mapping, Value};

use super::FuseError;

/// One task's value for the field being merged.
#[derive(Clone, Copy)]
pub(super) struct Item<'a> {
    pub task: &'a str,
    pub value: &'a Value,
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
