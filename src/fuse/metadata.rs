//! The labels and annotations of a function.yaml, read in one place (build output, the local
//! platform's records and the test platform all need them), and the live-state annotations
//! serve writes into an artifact before it deploys it ([`stamp`]).

use std::collections::BTreeMap;

use serde_norway::Value;

use crate::contract::{LABEL_MANAGED_BY, LABEL_PROJECT, LIVE_STATE_ANNOTATIONS, MANAGED_BY};
use crate::fuse::Artifact;

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

/// The live-state annotations ([`LIVE_STATE_ANNOTATIONS`]) among `annotations`.
pub fn live_state(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations
        .iter()
        .filter(|(k, _)| LIVE_STATE_ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Replaces the live-state annotations of `artifact`'s function.yaml (both
/// [`Artifact::function_yaml`] and the file) with `stamps`, keeping everything else, the
/// comment lines at its top included. The digest is left as it is: it is computed before any
/// stamp, so a function's content and its live state are compared apart (`plan::compute`).
pub fn stamp(artifact: &mut Artifact, stamps: &BTreeMap<String, String>) {
    let Ok(mut doc) = serde_norway::from_str::<Value>(&artifact.function_yaml) else {
        return;
    };
    let Some(metadata) = doc.get_mut("metadata").and_then(Value::as_mapping_mut) else {
        return;
    };
    let mut annotations: BTreeMap<String, Value> = metadata
        .get("annotations")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((scalar(k)?, v.clone())))
                .filter(|(k, _)| !LIVE_STATE_ANNOTATIONS.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in stamps {
        annotations.insert(k.clone(), Value::String(v.clone()));
    }
    metadata.insert(
        "annotations".into(),
        Value::Mapping(
            annotations
                .into_iter()
                .map(|(k, v)| (Value::String(k), v))
                .collect(),
        ),
    );
    let header: String = artifact
        .function_yaml
        .lines()
        .take_while(|line| line.starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    let body =
        serde_norway::to_string(&doc).expect("a YAML value built from YAML always serialises");
    artifact.function_yaml = format!("{header}{body}");
    artifact.files.insert(
        crate::contract::FUNCTION_FILE.to_string(),
        artifact.function_yaml.clone().into_bytes(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_replace_the_live_state_annotations_and_keep_the_rest() {
        let yaml = "# Generated.\nmetadata:\n  name: shop-a\n  annotations:\n    \
                    fusionizer.io/digest: sha256:00\n    fusionizer.io/phase: '1'\nspec: {}\n";
        let mut artifact = Artifact {
            name: "shop-a".to_string(),
            tasks: vec!["a".to_string()],
            digest: "sha256:00".to_string(),
            task_digests: BTreeMap::new(),
            function_yaml: yaml.to_string(),
            num_workers: 1,
            build_commands: Vec::new(),
            build_rewrites: Vec::new(),
            files: BTreeMap::new(),
        };
        let digest = artifact.digest.clone();
        let stamps: BTreeMap<String, String> = [(
            crate::contract::ANNOTATION_UPLOADED.to_string(),
            "a".to_string(),
        )]
        .into();
        stamp(&mut artifact, &stamps);
        assert!(artifact
            .function_yaml
            .starts_with("# Generated.\nmetadata:"));
        let metadata = Metadata::from_yaml(&artifact.function_yaml).unwrap();
        assert_eq!(live_state(&metadata.annotations), stamps);
        assert_eq!(
            metadata.annotations.get(crate::contract::ANNOTATION_DIGEST),
            Some(&digest)
        );
        assert_eq!(
            artifact.files[crate::contract::FUNCTION_FILE],
            artifact.function_yaml.as_bytes()
        );
        stamp(&mut artifact, &BTreeMap::new());
        let metadata = Metadata::from_yaml(&artifact.function_yaml).unwrap();
        assert!(live_state(&metadata.annotations).is_empty());
        assert_eq!(artifact.digest, digest);
    }
}
