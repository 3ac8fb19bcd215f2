//! What changed inside an updated function: the merged function.yaml fields that differ, and a
//! unified diff of the two documents with secret-looking env values masked (keys containing
//! `TOKEN`, `SECRET`, `PASSWORD` or `KEY`, any case). Masked output is all a plan ever holds.

use std::collections::BTreeMap;

use crate::contract::{ANNOTATION_DIGEST, ANNOTATION_TASK_DIGESTS};

/// Whether `path` is one of the digest annotations, which change with every content change and
/// are reported through `changed_tasks` instead.
pub(crate) fn is_digest_annotation(path: &str) -> bool {
    [ANNOTATION_DIGEST, ANNOTATION_TASK_DIGESTS]
        .iter()
        .chain(crate::contract::LIVE_STATE_ANNOTATIONS)
        .any(|a| {
            path == path_join(
                "metadata.annotations",
                &serde_norway::Value::String(a.to_string()),
            )
        })
}

fn path_join(prefix: &str, key: &serde_norway::Value) -> String {
    let key = match key {
        serde_norway::Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    };
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (prefix.is_empty(), plain) {
        (true, true) => key,
        (false, true) => format!("{prefix}.{key}"),
        (_, false) => format!("{prefix}[{key:?}]"),
    }
}

/// Dotted paths where `old` and `new` differ, descending through mappings only (a changed list
/// is reported as the list), in sorted order.
pub(crate) fn changed_paths(
    old: &serde_norway::Value,
    new: &serde_norway::Value,
    prefix: &str,
    out: &mut Vec<String>,
) {
    use serde_norway::Value;
    match (old, new) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            let mut keys: Vec<(String, &Value)> = a
                .keys()
                .chain(b.keys())
                .map(|k| (path_join(prefix, k), k))
                .collect();
            keys.sort_by(|x, y| x.0.cmp(&y.0));
            keys.dedup_by(|x, y| x.0 == y.0);
            for (path, key) in keys {
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => changed_paths(x, y, &path, out),
                    _ => out.push(path),
                }
            }
        }
        (a, b) if a == b => {}
        _ => out.push(if prefix.is_empty() {
            "(document)".to_string()
        } else {
            prefix.to_string()
        }),
    }
}

/// Whether an env var name looks secret: contains TOKEN, SECRET, PASSWORD or KEY (any case).
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "KEY"]
        .iter()
        .any(|word| upper.contains(word))
}

/// What a masked value is shown as.
pub const MASKED: &str = "(sensitive value)";
/// What a masked value is shown as in the new version when it differs from the old one.
pub const MASKED_CHANGED: &str = "(sensitive value, changed)";

/// Secret-looking env values anywhere in the document (`env: [{name, value}]` lists), by name.
fn secret_env_values(doc: &serde_norway::Value) -> BTreeMap<String, serde_norway::Value> {
    let mut out = BTreeMap::new();
    visit_env(&mut doc.clone(), &mut |name, value| {
        out.insert(name.to_string(), value.clone());
    });
    out
}

/// Calls `f(name, value)` for every secret-looking `env` entry, letting it rewrite the value.
fn visit_env(doc: &mut serde_norway::Value, f: &mut dyn FnMut(&str, &mut serde_norway::Value)) {
    use serde_norway::Value;
    match doc {
        Value::Mapping(map) => {
            for (key, value) in map.iter_mut() {
                if key.as_str() == Some("env") {
                    if let Value::Sequence(entries) = value {
                        for entry in entries.iter_mut() {
                            let name = entry
                                .get("name")
                                .and_then(Value::as_str)
                                .map(str::to_string);
                            if let (Some(name), Value::Mapping(m)) = (name, entry) {
                                if is_secret_name(&name) {
                                    if let Some(v) = m.get_mut("value") {
                                        f(&name, v);
                                    }
                                }
                            }
                        }
                        continue;
                    }
                }
                visit_env(value, f);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| visit_env(v, f)),
        _ => {}
    }
}

/// Masks secret-looking env values in `doc`; where `previous` holds a different value under the
/// same name, the mask says it changed.
pub fn mask_secrets(
    doc: &serde_norway::Value,
    previous: Option<&serde_norway::Value>,
) -> serde_norway::Value {
    let before = previous.map(secret_env_values).unwrap_or_default();
    let mut doc = doc.clone();
    visit_env(&mut doc, &mut |name, value| {
        let changed = previous.is_some() && before.get(name) != Some(&*value);
        *value = serde_norway::Value::String(if changed { MASKED_CHANGED } else { MASKED }.into());
    });
    doc
}

/// A unified diff (3 lines of context) of the live and desired merged function.yaml of
/// `function`, secret-looking env values masked. Empty when the documents render the same.
pub fn masked_diff(function: &str, old: &serde_norway::Value, new: &serde_norway::Value) -> String {
    let old_text = serde_norway::to_string(&mask_secrets(old, None)).unwrap_or_default();
    let new_text = serde_norway::to_string(&mask_secrets(new, Some(old))).unwrap_or_default();
    similar::TextDiff::from_lines(&old_text, &new_text)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{function}/function.yaml (live)"),
            &format!("{function}/function.yaml (planned)"),
        )
        .to_string()
}

/// The deployed part of a function.yaml in a canonical form, so a document as fuse wrote it and
/// one as a platform gives it back compare equal when they deploy the same: only `metadata` and
/// `spec`, empty values (null, `""`, `[]`, `{}`) dropped, mapping keys sorted.
pub fn normalise(doc: &serde_norway::Value) -> serde_norway::Value {
    use serde_norway::{Mapping, Value};
    fn canon(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::Sequence(items) => {
                let items: Vec<Value> = items.iter().filter_map(canon).collect();
                (!items.is_empty()).then_some(Value::Sequence(items))
            }
            Value::Mapping(map) => {
                let mut entries: Vec<(String, Value, Value)> = map
                    .iter()
                    .filter_map(|(k, v)| {
                        let sort_key = serde_norway::to_string(k).unwrap_or_default();
                        canon(v).map(|v| (sort_key, k.clone(), v))
                    })
                    .collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                let map: Mapping = entries.into_iter().map(|(_, k, v)| (k, v)).collect();
                (!map.is_empty()).then_some(Value::Mapping(map))
            }
            Value::Tagged(t) => canon(&t.value),
            other => Some(other.clone()),
        }
    }
    let mut out = Mapping::new();
    for key in ["metadata", "spec"] {
        if let Some(v) = doc.get(key).and_then(canon) {
            out.insert(Value::String(key.to_string()), v);
        }
    }
    Value::Mapping(out)
}
