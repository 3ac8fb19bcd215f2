//! Reading what `nuctl get function -o json` prints into [`LiveFunction`]s and endpoints.
//!
//! The JSON is Nuclio's `functionconfig.ConfigWithStatus` (`metadata`, `spec`, `status`). From it
//! come the ownership labels and annotations, the state, a function.yaml-shaped rendering of the
//! live config for plan diffs, and the address the proxy sends invocations to
//! (`status.externalInvocationUrls` / `internalInvocationUrls` / `httpPort`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::config::UrlPreference;
use crate::platform::{FunctionState, LiveFunction};

/// One function as `get -o json` prints it (only the fields fusionizer reads are typed).
#[derive(Debug, Clone, Deserialize)]
pub struct NuclioFunction {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: serde_json::Map<String, Value>,
    #[serde(default)]
    pub status: Status,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Metadata {
    pub name: String,
    pub namespace: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Status {
    pub state: Option<String>,
    pub message: Option<String>,
    pub http_port: Option<u16>,
    pub internal_invocation_urls: Option<Vec<String>>,
    pub external_invocation_urls: Option<Vec<String>>,
}

impl NuclioFunction {
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }

    pub fn state(&self) -> FunctionState {
        FunctionState::from_nuclio(
            self.status.state.as_deref().unwrap_or_default(),
            self.status.message.as_deref().unwrap_or_default(),
        )
    }

    /// The normalised view plan and status use.
    pub fn to_live(&self) -> LiveFunction {
        LiveFunction {
            name: self.metadata.name.clone(),
            labels: self.metadata.labels.clone().unwrap_or_default(),
            annotations: self.metadata.annotations.clone().unwrap_or_default(),
            state: self.state(),
            config_yaml: Some(self.config_yaml()),
        }
    }

    /// The live config as a function.yaml would hold it: `metadata` (name, labels, annotations
    /// without Nuclio's own `nuclio.io/*` entries) and `spec` without what nuctl and Nuclio fill
    /// in at deploy time (build timestamp and path, registries, image), empty values dropped,
    /// keys sorted.
    pub fn config_yaml(&self) -> String {
        let own = |map: &Option<BTreeMap<String, String>>| -> serde_json::Map<String, Value> {
            map.iter()
                .flatten()
                .filter(|(k, _)| !k.starts_with("nuclio.io/"))
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect()
        };
        let mut metadata = serde_json::Map::new();
        metadata.insert("name".into(), Value::String(self.metadata.name.clone()));
        metadata.insert("labels".into(), Value::Object(own(&self.metadata.labels)));
        metadata.insert(
            "annotations".into(),
            Value::Object(own(&self.metadata.annotations)),
        );

        let mut spec = self.spec.clone();
        for key in ["image", "imageHash", "runRegistry"] {
            spec.remove(key);
        }
        if let Some(Value::Object(build)) = spec.get_mut("build") {
            for key in [
                "timestamp",
                "path",
                "registry",
                "functionConfigPath",
                "image",
                "noBaseImagesPull",
                "offline",
            ] {
                build.remove(key);
            }
        }
        let mut doc = serde_json::Map::new();
        doc.insert("metadata".into(), Value::Object(metadata));
        doc.insert("spec".into(), Value::Object(spec));
        let doc = normalise(Value::Object(doc)).unwrap_or(Value::Null);
        serde_norway::to_string(&doc).unwrap_or_default()
    }

    /// Where to send invocations: `host:port[/path]` without a scheme, picked by `preference`
    /// (see [`pick_address`]).
    pub fn address(&self, preference: UrlPreference) -> Result<String, String> {
        pick_address(&self.status, preference)
    }
}

/// Sorts keys and drops nulls, empty strings, empty maps and empty lists, recursively.
fn normalise(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Object(map) => {
            let sorted: BTreeMap<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| normalise(v).map(|v| (k, v)))
                .collect();
            (!sorted.is_empty()).then(|| Value::Object(sorted.into_iter().collect()))
        }
        Value::Array(items) => {
            let items: Vec<Value> = items.into_iter().filter_map(normalise).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        other => Some(other),
    }
}

/// Picks the invocation address from a function's status, or says why there is none.
///
/// `External` takes `externalInvocationUrls`, else `httpPort` on this host (Nuclio's Docker
/// platform); `Internal` takes `internalInvocationUrls`. The preferred kind is never silently
/// swapped for the other: on Kubernetes the default service type is `ClusterIP`
/// (pkg/platformconfig/types.go, `DefaultServiceType`), whose status has internal URLs only, and
/// a cluster-internal name does not resolve from outside. The URLs have no scheme. An address
/// on `0.0.0.0` (what Nuclio's Docker platform reports when it knows no external IP) means this
/// host.
pub fn pick_address(status: &Status, preference: UrlPreference) -> Result<String, String> {
    let first = |urls: &Option<Vec<String>>| {
        urls.iter()
            .flatten()
            .map(|url| normalise_address(url))
            .find(|url| !url.is_empty())
    };
    match preference {
        UrlPreference::External => first(&status.external_invocation_urls)
            .or_else(|| {
                status
                    .http_port
                    .filter(|&p| p != 0)
                    .map(|p| format!("127.0.0.1:{p}"))
            })
            .ok_or_else(|| {
                let hint = if first(&status.internal_invocation_urls).is_some() {
                    " (it has only internal URLs: its service is ClusterIP)"
                } else {
                    ""
                };
                format!(
                    "nuctl reports no external invocation URL for it{hint}; when serve runs \
                     outside the cluster set `[nuctl] http-trigger-service-type = \"NodePort\"`, \
                     when it runs inside set `[nuctl] invocation-url = \"internal\"`"
                )
            }),
        UrlPreference::Internal => first(&status.internal_invocation_urls).ok_or_else(|| {
            "nuctl reports no internal invocation URL for it; when serve runs outside the \
             cluster set `[nuctl] invocation-url = \"external\"`"
                .to_string()
        }),
    }
}

fn normalise_address(url: &str) -> String {
    let url = url.trim();
    let url = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url)
        .trim_end_matches('/');
    match url.strip_prefix("0.0.0.0:") {
        Some(rest) => format!("127.0.0.1:{rest}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn function(status: Value) -> NuclioFunction {
        NuclioFunction::from_value(json!({
            "metadata": {
                "name": "shop-a-b",
                "namespace": "nuclio",
                "labels": {
                    "fusionizer.io/project": "shop",
                    "fusionizer.io/managed-by": "fusionizer",
                    "nuclio.io/project-name": "default"
                },
                "annotations": {"fusionizer.io/tasks": "a,b"}
            },
            "spec": {
                "runtime": "python:3.11",
                "handler": "_fusionizer_entry:handler",
                "image": "localhost:5000/nuclio/processor-shop-a-b:latest",
                "eventTimeout": "",
                "securityContext": {},
                "build": {"path": "/tmp/x", "timestamp": 1_700_000_000, "commands": ["pip install requests"]},
                "triggers": {"http": {"kind": "http", "numWorkers": 2, "class": "", "attributes": {}}}
            },
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn live_function_carries_labels_annotations_and_state() {
        let f = function(json!({"state": "error", "message": "build failed"}));
        let live = f.to_live();
        assert_eq!(live.name, "shop-a-b");
        assert!(live.is_owned_by("shop"));
        assert_eq!(live.tasks(), vec!["a", "b"]);
        assert_eq!(live.state, FunctionState::Error("build failed".into()));
        let building = function(json!({"state": "building"}));
        assert!(building.state().needs_replacement().is_some());
    }

    #[test]
    fn config_yaml_keeps_only_what_a_function_yaml_holds() {
        let yaml = function(json!({"state": "ready"})).config_yaml();
        assert_eq!(
            yaml,
            "metadata:\n  annotations:\n    fusionizer.io/tasks: a,b\n  labels:\n    \
             fusionizer.io/managed-by: fusionizer\n    fusionizer.io/project: shop\n  \
             name: shop-a-b\nspec:\n  build:\n    commands:\n    - pip install requests\n  \
             handler: _fusionizer_entry:handler\n  runtime: python:3.11\n  triggers:\n    \
             http:\n      kind: http\n      numWorkers: 2\n"
        );
    }

    #[test]
    fn address_follows_the_preference() {
        let status = Status {
            http_port: Some(32768),
            external_invocation_urls: Some(vec!["0.0.0.0:32768".into()]),
            internal_invocation_urls: Some(vec!["127.0.0.9:8080".into()]),
            ..Status::default()
        };
        assert_eq!(
            pick_address(&status, UrlPreference::External).as_deref(),
            Ok("127.0.0.1:32768")
        );
        assert_eq!(
            pick_address(&status, UrlPreference::Internal).as_deref(),
            Ok("127.0.0.9:8080")
        );
    }

    #[test]
    fn a_cluster_ip_service_has_no_external_url_and_the_error_names_the_settings() {
        // What Nuclio 1.14.1 reports on Kubernetes with the default ClusterIP service type.
        let cluster_ip = Status {
            internal_invocation_urls: Some(vec!["nuclio-f.ns.svc.cluster.local:8080".into()]),
            external_invocation_urls: Some(vec![]),
            ..Status::default()
        };
        let why = pick_address(&cluster_ip, UrlPreference::External).unwrap_err();
        assert!(why.contains("ClusterIP"), "{why}");
        assert!(
            why.contains("http-trigger-service-type = \"NodePort\""),
            "{why}"
        );
        assert!(why.contains("invocation-url = \"internal\""), "{why}");
        assert_eq!(
            pick_address(&cluster_ip, UrlPreference::Internal).as_deref(),
            Ok("nuclio-f.ns.svc.cluster.local:8080")
        );
        let only_port = Status {
            http_port: Some(31000),
            ..Status::default()
        };
        assert_eq!(
            pick_address(&only_port, UrlPreference::External).as_deref(),
            Ok("127.0.0.1:31000")
        );
        let why = pick_address(&only_port, UrlPreference::Internal).unwrap_err();
        assert!(why.contains("invocation-url = \"external\""), "{why}");
        let schemed = Status {
            external_invocation_urls: Some(vec!["http://fn.invalid:80/".into()]),
            ..Status::default()
        };
        assert_eq!(
            pick_address(&schemed, UrlPreference::External).as_deref(),
            Ok("fn.invalid:80")
        );
    }

    #[test]
    fn null_labels_and_missing_status_are_tolerated() {
        let f =
            NuclioFunction::from_value(json!({"metadata": {"name": "x", "labels": null}})).unwrap();
        let live = f.to_live();
        assert!(live.labels.is_empty());
        assert_eq!(live.state, FunctionState::Other(String::new()));
    }
}
