//! The labels and annotations of a function.yaml, read in one place (build output, the local
//! platform's records and the test platform all need them).

use std::collections::BTreeMap;

use serde_norway::Value;

use crate::contract::{LABEL_MANAGED_BY, LABEL_PROJECT, MANAGED_BY};

/// `metadata.labels` and `metadata.annotations` as strings (scalar values converted; anything
/// else skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

impl Metadata {
    /// Reads a parsed function.yaml document.
    pub fn from_value(doc: &Value) -> Self {
        let metadata = doc.get("metadata");
        let map = |key: &str| -> BTreeMap<String, String> {
            metadata
                .and_then(|m| m.get(key))
                .and_then(Value::as_mapping)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((scalar(k)?, scalar(v)?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Metadata {
            labels: map("labels"),
            annotations: map("annotations"),
        }
    }

    /// Parses function.yaml text; `None` when it is not YAML.
    pub fn from_yaml(text: &str) -> Option<Self> {
        serde_norway::from_str::<Value>(text)
            .ok()
            .map(|doc| Self::from_value(&doc))
    }

    /// Both ownership labels name `project`.
    pub fn is_owned_by(&self, project: &str) -> bool {
        self.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project)
            && self.labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
    }
}

/// A YAML scalar as a string (`true`, `3`, `text`); `None` for mappings, lists and null.
pub fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
