//! Reading what `nuctl get function -o json` prints into [`LiveFunction`]s and endpoints.
//!
//! The JSON is Nuclio's `functionconfig.ConfigWithStatus` (`metadata`, `spec`, `status`). From it
//! come the ownership labels and annotations, the state, a function.yaml-shaped rendering of the
//! live config for plan diffs, and the address the proxy sends invocations to
//! (`status.externalInvocationUrls` / `internalInvocationUrls` / `httpPort`).
//!
//! Citations (`pkg/...`) are files of nuclio 1.14.1 (github.com/nuclio/nuclio, tag `1.14.1`).

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

    /// Whether both ownership labels say `project` owns it ([`LiveFunction::is_owned_by`]).
    pub fn is_owned_by(&self, project: &str) -> bool {
        LiveFunction {
            name: self.metadata.name.clone(),
            labels: self.metadata.labels.clone().unwrap_or_default(),
            annotations: BTreeMap::new(),
            state: FunctionState::Other(String::new()),
            config_yaml: None,
        }
        .is_owned_by(project)
    }

    /// The normalised view plan and status use, knowing nothing about the deploy (see
    /// [`NuclioFunction::to_live_as`]).
    pub fn to_live(&self) -> LiveFunction {
        self.to_live_as(&AsDeployed::default())
    }

    /// The normalised view plan and status use; `deployed` tells Nuclio's enrichment apart from
    /// what fusionizer wrote (see [`NuclioFunction::config_yaml_as`]).
    pub fn to_live_as(&self, deployed: &AsDeployed) -> LiveFunction {
        LiveFunction {
            name: self.metadata.name.clone(),
            labels: self.metadata.labels.clone().unwrap_or_default(),
            annotations: self.metadata.annotations.clone().unwrap_or_default(),
            state: self.state(),
            config_yaml: Some(self.config_yaml_as(deployed)),
        }
    }

    /// [`NuclioFunction::config_yaml_as`] knowing nothing about the deploy.
    pub fn config_yaml(&self) -> String {
        self.config_yaml_as(&AsDeployed::default())
    }

    /// The live config as the function.yaml fusionizer deployed would hold it, for explaining a
    /// plan (the digest alone decides whether a function changed): `metadata` (name, labels,
    /// annotations without Nuclio's own `nuclio.io/*` entries) and `spec` without what nuctl and
    /// Nuclio fill in when they enrich it (`strip_enrichment`), empty values dropped, keys
    /// sorted. `metadata.namespace`, `metadata.resourceVersion` and `status` are never part of
    /// it.
    ///
    /// An enriched field stays when `deployed.written` (the function.yaml fusionizer wrote for
    /// the live deploy) sets it, so a default written out explicitly is not mistaken for
    /// Nuclio's; bare `python`, which Nuclio stores as `python:3.9`, reads as `python` again when
    /// that is what was written. Without `written`, a field that holds Nuclio's default is
    /// taken for Nuclio's, and the HTTP trigger keeps its `name` (fusionizer always writes it,
    /// src/fuse/rules.rs `triggers`).
    pub fn config_yaml_as(&self, deployed: &AsDeployed) -> String {
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
        strip_enrichment(&mut spec, deployed);
        let mut doc = serde_json::Map::new();
        doc.insert("metadata".into(), Value::Object(metadata));
        doc.insert("spec".into(), Value::Object(spec));
        let doc = normalise(Value::Object(doc)).unwrap_or(Value::Null);
        serde_norway::to_string(&doc).unwrap_or_default()
    }

    /// Where to send invocations: `host:port[/path]` without a scheme, picked by `preference`
    /// (see [`pick_address`]); `docker` says the nuctl platform is Nuclio's Docker platform.
    pub fn address(&self, preference: UrlPreference, docker: bool) -> Result<String, String> {
        pick_address(&self.status, preference, docker)
    }
}

/// What fusionizer knows about the deploy that is live and Nuclio's JSON does not say.
#[derive(Debug, Clone, Default)]
pub struct AsDeployed {
    /// The function.yaml fusionizer wrote for that deploy (its `fusionizer.io/digest` equals the
    /// live one), as JSON; `None` when it is not known (another machine, a cleaned state dir).
    pub written: Option<Value>,
    /// `nuctl deploy --readiness-timeout` in seconds, when `[nuctl] readiness-timeout` is set:
    /// nuctl writes it into `spec.readinessTimeoutSeconds` (pkg/nuctl/command/deploy.go
    /// `enrichConfigWithIntArgs`).
    pub readiness_timeout: Option<u64>,
}

/// Nuclio's `DefaultTargetCPU` (pkg/platform/abstract/platform.go), which nuctl writes into
/// every deploy (pkg/nuctl/command/deploy.go `populateDeploymentDefaults`).
const DEFAULT_TARGET_CPU: u64 = 75;
/// `DefaultFunctionReadinessTimeoutSeconds` (pkg/platformconfig/types.go), written by nuctl
/// through `GetFunctionReadinessTimeoutOrDefault` (pkg/platformconfig/platformconfig.go).
const DEFAULT_READINESS_TIMEOUT: u64 = 120;
/// The resource requests `enrichContainerResources` (pkg/platformconfig/platformconfig.go) fills
/// in when the function sets none and the platform configuration has no defaults.
const DEFAULT_REQUESTS: &[(&str, &str)] = &[("cpu", "25m"), ("memory", "1Mi")];
/// The HTTP trigger `enrichDefaultHTTPTrigger` adds when a function has none
/// (pkg/platform/abstract/platform.go; `GetDefaultHTTPTrigger` in pkg/functionconfig/types.go).
const DEFAULT_HTTP_TRIGGER: &str = crate::contract::DEFAULT_HTTP_TRIGGER;

/// Which fields the function.yaml fusionizer wrote sets, when that is known.
struct Written<'a>(Option<&'a Value>);

impl Written<'_> {
    /// Whether the written spec sets `path` (below `spec`); `None` when nothing is known.
    fn holds(&self, path: &[&str]) -> Option<bool> {
        self.0
            .map(|spec| lookup(spec, path).is_some_and(|v| normalise(v.clone()).is_some()))
    }

    /// Whether a live value at `path` that Nuclio would have filled in is Nuclio's: the written
    /// spec does not set it, or (nothing known) unless `keep_if_unknown`.
    fn left_to_nuclio(&self, path: &[&str], keep_if_unknown: bool) -> bool {
        !self.holds(path).unwrap_or(keep_if_unknown)
    }
}

fn lookup<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

/// Removes `spec[path]` when `is_default` holds for it and the written spec leaves it to Nuclio
/// (when nothing is known, it is removed unless `keep_if_unknown`).
fn drop_default(
    spec: &mut serde_json::Map<String, Value>,
    written: &Written<'_>,
    path: &[&str],
    keep_if_unknown: bool,
    is_default: impl Fn(&Value) -> bool,
) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut map = spec;
    for key in parents {
        match map.get_mut(*key) {
            Some(Value::Object(inner)) => map = inner,
            _ => return,
        }
    }
    if map.get(*last).is_some_and(is_default) && written.left_to_nuclio(path, keep_if_unknown) {
        map.remove(*last);
    }
}

/// Takes out of a live `spec` what nuctl and Nuclio 1.14.1 add to a deployed function.yaml, so a
/// plan after a deploy shows no field that fusionizer did not write. Each rule names where
/// Nuclio does it.
fn strip_enrichment(spec: &mut serde_json::Map<String, Value>, deployed: &AsDeployed) {
    let written = Written(deployed.written.as_ref().and_then(|w| w.get("spec")));
    let any = |_: &Value| true;

    // Set at deploy time, never from a function.yaml fusionizer writes: the image and its hash,
    // the run registry (pkg/platform/abstract/platform.go `HandleDeployFunction`,
    // pkg/platform/kube/client/deployer.go, which also sets `alias`), the version the kube
    // controller writes back (pkg/platform/kube/functionres/lazy.go), and what the builder
    // records (pkg/processor/build/builder.go `Build`: `codeEntryType` inferred as `image`,
    // `timestamp`; nuctl's `--path`, `--file`, `--registry` in pkg/nuctl/command/deploy.go).
    for key in ["image", "imageHash", "runRegistry", "alias", "version"] {
        drop_default(spec, &written, &[key], false, any);
    }
    for key in [
        "timestamp",
        "codeEntryType",
        "path",
        "registry",
        "functionConfigPath",
        "image",
        "noBaseImagesPull",
        "offline",
    ] {
        drop_default(spec, &written, &["build", key], false, any);
    }

    // pkg/platform/abstract/platform.go `EnrichFunctionConfig`: `python` is an alias of
    // `python:3.9`, stored resolved.
    if spec.get("runtime").and_then(Value::as_str) == Some("python:3.9")
        && written
            .0
            .and_then(|w| w.get("runtime"))
            .and_then(Value::as_str)
            == Some("python")
    {
        spec.insert("runtime".into(), Value::String("python".into()));
    }

    // pkg/nuctl/command/deploy.go `populateDeploymentDefaults` (and `--readiness-timeout`).
    drop_default(spec, &written, &["targetCPU"], false, |v| {
        v.as_u64() == Some(DEFAULT_TARGET_CPU)
    });
    let readiness = deployed.readiness_timeout;
    drop_default(spec, &written, &["readinessTimeoutSeconds"], false, |v| {
        v.as_u64() == Some(DEFAULT_READINESS_TIMEOUT)
            || (v.as_u64().is_some() && v.as_u64() == readiness)
    });

    // pkg/platform/abstract/platform.go `EnrichFunctionConfig`: the default-HTTP-trigger flag
    // from the platform configuration (false unless configured), an empty security context,
    // and the resource requests of pkg/platformconfig/platformconfig.go
    // `enrichContainerResources`.
    drop_default(spec, &written, &["disableDefaultHTTPTrigger"], false, |v| {
        v == &Value::Bool(false)
    });
    drop_default(spec, &written, &["securityContext"], false, |v| {
        normalise(v.clone()).is_none()
    });
    for (resource, default) in DEFAULT_REQUESTS {
        drop_default(
            spec,
            &written,
            &["resources", "requests", resource],
            false,
            |v| v.as_str() == Some(default),
        );
    }

    // pkg/platform/abstract/platform.go `enrichMinMaxReplicas`: one of min/max replicas given
    // means both, equal. Only undone when the written spec is known to set just the other.
    for (given, filled) in [
        ("minReplicas", "maxReplicas"),
        ("maxReplicas", "minReplicas"),
    ] {
        if written.holds(&[given]) == Some(true) && written.holds(&[filled]) == Some(false) {
            let given_value = spec.get(given).cloned();
            drop_default(spec, &written, &[filled], false, |v| {
                Some(v) == given_value.as_ref()
            });
        }
    }

    strip_trigger_enrichment(spec, &written);
}

/// The trigger part of [`strip_enrichment`].
fn strip_trigger_enrichment(spec: &mut serde_json::Map<String, Value>, written: &Written<'_>) {
    let Some(Value::Object(triggers)) = spec.get("triggers") else {
        return;
    };
    let keys: Vec<String> = triggers.keys().cloned().collect();
    for key in keys {
        let path = |field: &'static str| -> Vec<&str> {
            if field.is_empty() {
                vec!["triggers", key.as_str()]
            } else {
                vec!["triggers", key.as_str(), field]
            }
        };
        let kind = spec
            .get("triggers")
            .and_then(|t| t.get(&key))
            .and_then(|t| t.get("kind"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();

        // `enrichDefaultHTTPTrigger` (pkg/platform/abstract/platform.go) adds `default-http`
        // (`GetDefaultHTTPTrigger`, pkg/functionconfig/types.go) to a function without an HTTP
        // trigger; the kube platform then gives it a service type (below).
        if key == DEFAULT_HTTP_TRIGGER {
            drop_default(spec, written, &path(""), false, is_generated_default_http);
        }

        // pkg/platform/abstract/platform.go `enrichTriggers`: `name` inherits the key, HTTP and
        // v3ioStream triggers get at least one worker. fusionizer always names its HTTP
        // trigger (src/fuse/rules.rs `triggers`), so without the written spec that name stays.
        let name_is_key = |v: &Value| v.as_str() == Some(key.as_str());
        drop_default(spec, written, &path("name"), kind == "http", name_is_key);
        if kind == "http" || kind == "v3ioStream" {
            drop_default(spec, written, &path("numWorkers"), false, |v| {
                v.as_u64() == Some(1)
            });
        }

        // pkg/platform/kube/platform.go `enrichTriggerWithServiceType`: every HTTP trigger gets
        // the platform's default service type (ClusterIP, pkg/platformconfig/types.go), or what
        // `--http-trigger-service-type` / `NUCTL_DEFAULT_SERVICE_TYPE` say
        // (pkg/nuctl/command/deploy.go `populateHTTPServiceType`).
        if kind == "http" {
            let service_type = ["triggers", key.as_str(), "attributes", "serviceType"];
            drop_default(spec, written, &service_type, false, |_| true);
        }

        // pkg/platform/abstract/platform.go `enrichExplicitAckParams`: stream triggers get
        // `explicitAckMode: disable` and `workerTerminationTimeout: 10s`
        // (pkg/functionconfig/types.go).
        if ["kafka", "kafka-cluster", "v3ioStream"].contains(&kind.as_str()) {
            drop_default(spec, written, &path("explicitAckMode"), false, |v| {
                v.as_str() == Some("disable")
            });
            drop_default(
                spec,
                written,
                &path("workerTerminationTimeout"),
                false,
                |v| v.as_str() == Some("10s"),
            );
        }
    }
}

/// Whether `trigger` is exactly what `enrichDefaultHTTPTrigger` and the kube service-type
/// enrichment make: kind `http`, name `default-http`, one worker, at most a `serviceType`
/// attribute, nothing else set.
fn is_generated_default_http(trigger: &Value) -> bool {
    let Some(Value::Object(fields)) = normalise(trigger.clone()) else {
        return false;
    };
    fields.iter().all(|(field, value)| match field.as_str() {
        "kind" => value.as_str() == Some("http"),
        "name" => value.as_str() == Some(DEFAULT_HTTP_TRIGGER),
        "numWorkers" => value.as_u64() == Some(1),
        "attributes" => value
            .as_object()
            .is_some_and(|a| a.keys().all(|k| k == "serviceType")),
        _ => false,
    })
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
/// `External` takes the first of `externalInvocationUrls` that has a host; `Internal` takes
/// `internalInvocationUrls`. The URLs have no scheme. The preferred kind is never silently
/// swapped for the other: on Kubernetes the default service type is `ClusterIP`
/// (pkg/platformconfig/types.go, `DefaultServiceType`), whose status has internal URLs only, and
/// a cluster-internal name does not resolve from outside.
///
/// An address on `0.0.0.0` (what Nuclio's Docker platform reports when it knows no external IP,
/// pkg/platform/local/platform.go `populateFunctionInvocationStatus`) means this host.
///
/// A node port without a host means "port N of a node": a `NodePort` service on Kubernetes gets
/// the external URL `<ip>:<nodePort>` for each of the controller's external IP addresses, and
/// with none configured (the default Helm chart) that is `:<nodePort>`
/// (pkg/platform/kube/controller/nucliofunction.go `populateFunctionInvocationStatus`,
/// pkg/platform/kube/controller/controller.go `GetExternalIPAddresses` splitting an empty
/// `NUCLIO_CONTROLLER_EXTERNAL_IP_ADDRESSES`); a `LoadBalancer` service has a node port in
/// `httpPort` and no external URL at all. Only on Nuclio's Docker platform (`docker`, i.e.
/// `[nuctl] platform = "local"`) is the node this machine, so the port is used on 127.0.0.1.
/// On a cluster serve cannot know which node address it can reach (a guess would send traffic
/// somewhere else), so that is an error saying what to configure: the controller's external
/// addresses, or `invocation-url = "internal"` when serve runs inside the cluster.
pub fn pick_address(
    status: &Status,
    preference: UrlPreference,
    docker: bool,
) -> Result<String, String> {
    let first = |urls: &Option<Vec<String>>| {
        urls.iter()
            .flatten()
            .map(|url| normalise_address(url))
            .find(|url| !url.is_empty() && !url.starts_with(':'))
    };
    match preference {
        UrlPreference::External => {
            if let Some(url) = first(&status.external_invocation_urls) {
                return Ok(url);
            }
            let node_port = status
                .external_invocation_urls
                .iter()
                .flatten()
                .find_map(|url| {
                    normalise_address(url)
                        .strip_prefix(':')?
                        .parse::<u16>()
                        .ok()
                })
                .or(status.http_port)
                .filter(|&p| p != 0);
            match node_port {
                Some(port) if docker => Ok(format!("127.0.0.1:{port}")),
                Some(port) => Err(format!(
                    "nuctl reports only node port {port} for it, with no host: the Nuclio \
                     controller knows no external IP address of the cluster's nodes, and serve \
                     cannot guess one; when serve runs outside the cluster give the controller \
                     the nodes' addresses (Helm value `dashboard.externalIPAddresses`, i.e. \
                     `NUCLIO_CONTROLLER_EXTERNAL_IP_ADDRESSES`) and deploy the function again, \
                     when it runs inside set `[nuctl] invocation-url = \"internal\"`"
                )),
                None => {
                    let hint = if first(&status.internal_invocation_urls).is_some() {
                        " (it has only internal URLs: its service is ClusterIP)"
                    } else {
                        ""
                    };
                    Err(format!(
                        "nuctl reports no external invocation URL for it{hint}; when serve runs \
                         outside the cluster set `[nuctl] http-trigger-service-type = \
                         \"NodePort\"`, when it runs inside set `[nuctl] invocation-url = \
                         \"internal\"`"
                    ))
                }
            }
        }
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

    /// `tests/it/fixtures/nuctl_get_1.14.1.json`: one function as the fake nuctl prints `get
    /// function NAME -o json` on kube, enriched fields included, each field reviewed against the
    /// 1.14.1 source (no real nuctl printed it: see the fixture's README).
    const FIXTURE: &str = include_str!("../../../tests/it/fixtures/nuctl_get_1.14.1.json");

    /// `tests/it/fixtures/nuctl_get_1.14.1.function.yaml`: the function.yaml that was deployed to
    /// produce [`FIXTURE`] (`tests/fake_nuctl/test_fake_nuctl.py` checks that the fake still prints
    /// the fixture after deploying it): what fusionizer writes for a one-task group.
    const FIXTURE_FUNCTION_YAML: &str =
        include_str!("../../../tests/it/fixtures/nuctl_get_1.14.1.function.yaml");

    fn fixture() -> NuclioFunction {
        NuclioFunction::from_value(serde_json::from_str(FIXTURE).unwrap()).unwrap()
    }

    fn yaml_value(text: &str) -> Value {
        serde_norway::from_str(text).unwrap()
    }

    /// A function.yaml as `config_yaml` renders it: `metadata` with name, labels and
    /// annotations, `spec`, empty values dropped, keys sorted.
    fn rendered(function_yaml: &str) -> String {
        let doc = yaml_value(function_yaml);
        let doc = json!({
            "metadata": {
                "name": doc["metadata"]["name"],
                "labels": doc["metadata"]["labels"],
                "annotations": doc["metadata"]["annotations"],
            },
            "spec": doc["spec"],
        });
        serde_norway::to_string(&normalise(doc).unwrap()).unwrap()
    }

    #[test]
    fn config_yaml_keeps_only_what_a_function_yaml_holds() {
        // Everything Nuclio 1.14.1 added on deploy is gone: image, imageHash, runRegistry,
        // targetCPU, readinessTimeoutSeconds, resources.requests, securityContext,
        // disableDefaultHTTPTrigger, the trigger's class and serviceType, version, alias,
        // build.codeEntryType/timestamp/registry/functionConfigPath, platform, eventTimeout,
        // namespace, resourceVersion, nuclio.io/project-name and status.
        let yaml = fixture().config_yaml();
        assert_eq!(
            yaml,
            "metadata:\n  annotations:\n    fusionizer.io/digest: \
             sha256:5f0c6e1f4b8f0c1d9e2a7b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70\n    \
             fusionizer.io/tasks: orders\n  labels:\n    fusionizer.io/managed-by: fusionizer\n    \
             fusionizer.io/project: shop\n  name: shop-orders\nspec:\n  build:\n    commands:\n    \
             - pip install requests\n  description: fusionizer group of tasks orders (project \
             shop)\n  env:\n  - name: FUSIONIZER_PROJECT\n    value: shop\n  handler: \
             _fusionizer_entry:handler\n  runtime: python:3.11\n  triggers:\n    http:\n      \
             kind: http\n      name: http\n      numWorkers: 2\n"
        );
    }

    #[test]
    fn the_real_1_14_1_output_reads_as_the_function_yaml_that_was_deployed() {
        let want = rendered(FIXTURE_FUNCTION_YAML);
        // Knowing nothing about the deploy (another machine, no .fusionizer/build) ...
        assert_eq!(fixture().config_yaml(), want);
        // ... and knowing the function.yaml fusionizer wrote.
        let deployed = AsDeployed {
            written: Some(yaml_value(FIXTURE_FUNCTION_YAML)),
            readiness_timeout: None,
        };
        assert_eq!(fixture().config_yaml_as(&deployed), want);
    }

    #[test]
    fn defaults_written_out_explicitly_stay_and_python_reads_as_written() {
        // The same deploy, from a function.yaml that spells out some of Nuclio's defaults and
        // says bare `python` (Nuclio stores `python:3.9`).
        let written = FIXTURE_FUNCTION_YAML
            .replace("\"python:3.11\"", "python")
            .replace("  triggers:\n", "  targetCPU: 75\n  triggers:\n")
            .replace("      numWorkers: 2\n", "      numWorkers: 1\n");
        let mut live: Value = serde_json::from_str(FIXTURE).unwrap();
        live["spec"]["runtime"] = json!("python:3.9");
        live["spec"]["triggers"]["http"]["numWorkers"] = json!(1);
        let live = NuclioFunction::from_value(live).unwrap();
        let deployed = AsDeployed {
            written: Some(yaml_value(&written)),
            readiness_timeout: None,
        };
        assert_eq!(live.config_yaml_as(&deployed), rendered(&written));
        // Without the written file, Nuclio's defaults are taken for Nuclio's.
        let guessed = live.config_yaml();
        assert!(guessed.contains("runtime: python:3.9"), "{guessed}");
        assert!(!guessed.contains("targetCPU"), "{guessed}");
        assert!(!guessed.contains("numWorkers"), "{guessed}");
    }

    #[test]
    fn the_generated_default_http_trigger_and_other_defaults_are_nuclios() {
        // A function deployed without triggers, on kube with `--http-trigger-service-type
        // NodePort` and `--readiness-timeout 300`, as the fake nuctl prints it.
        let live = function(json!({"state": "ready"}));
        let mut value = json!({
            "metadata": {"name": live.metadata.name, "labels": live.metadata.labels},
            "spec": {
                "runtime": "python:3.11",
                "handler": "_fusionizer_entry:handler",
                "resources": {"requests": {"cpu": "25m", "memory": "1Mi"}, "limits": {"cpu": "2"}},
                "targetCPU": 75,
                "readinessTimeoutSeconds": 300,
                "disableDefaultHTTPTrigger": false,
                "triggers": {
                    "default-http": {"class": "", "kind": "http", "name": "default-http",
                                     "numWorkers": 1, "attributes": {"serviceType": "NodePort"}},
                    "stream": {"class": "", "kind": "kafka-cluster", "name": "stream",
                               "explicitAckMode": "disable", "workerTerminationTimeout": "10s",
                               "attributes": {"topics": ["t"]}}
                },
                "version": -1,
                "alias": "latest"
            }
        });
        let f = NuclioFunction::from_value(value.clone()).unwrap();
        let deployed = AsDeployed {
            written: None,
            readiness_timeout: Some(300),
        };
        assert_eq!(
            f.config_yaml_as(&deployed),
            "metadata:\n  labels:\n    fusionizer.io/managed-by: fusionizer\n    \
             fusionizer.io/project: shop\n  name: shop-a-b\nspec:\n  handler: \
             _fusionizer_entry:handler\n  resources:\n    limits:\n      cpu: '2'\n  runtime: \
             python:3.11\n  triggers:\n    stream:\n      attributes:\n        topics:\n        \
             - t\n      kind: kafka-cluster\n"
        );
        // A readiness timeout that is neither Nuclio's default nor the configured one is shown,
        // and so is a `default-http` trigger that is not the generated one.
        value["spec"]["readinessTimeoutSeconds"] = json!(60);
        value["spec"]["triggers"]["default-http"]["numWorkers"] = json!(4);
        let yaml = NuclioFunction::from_value(value)
            .unwrap()
            .config_yaml_as(&deployed);
        assert!(yaml.contains("readinessTimeoutSeconds: 60"), "{yaml}");
        assert!(
            yaml.contains(
                "default-http:\n      kind: http\n      name: default-http\n      numWorkers: 4"
            ),
            "{yaml}"
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
        for docker in [true, false] {
            assert_eq!(
                pick_address(&status, UrlPreference::External, docker).as_deref(),
                Ok("127.0.0.1:32768")
            );
            assert_eq!(
                pick_address(&status, UrlPreference::Internal, docker).as_deref(),
                Ok("127.0.0.9:8080")
            );
        }
    }

    #[test]
    fn a_cluster_ip_service_has_no_external_url_and_the_error_names_the_settings() {
        // What Nuclio 1.14.1 reports on Kubernetes with the default ClusterIP service type.
        let cluster_ip = Status {
            internal_invocation_urls: Some(vec!["nuclio-f.ns.svc.cluster.local:8080".into()]),
            external_invocation_urls: Some(vec![]),
            ..Status::default()
        };
        let why = pick_address(&cluster_ip, UrlPreference::External, false).unwrap_err();
        assert!(why.contains("ClusterIP"), "{why}");
        assert!(
            why.contains("http-trigger-service-type = \"NodePort\""),
            "{why}"
        );
        assert!(why.contains("invocation-url = \"internal\""), "{why}");
        assert_eq!(
            pick_address(&cluster_ip, UrlPreference::Internal, false).as_deref(),
            Ok("nuclio-f.ns.svc.cluster.local:8080")
        );
        let only_internal = Status {
            http_port: Some(31000),
            ..Status::default()
        };
        let why = pick_address(&only_internal, UrlPreference::Internal, true).unwrap_err();
        assert!(why.contains("invocation-url = \"external\""), "{why}");
        let schemed = Status {
            external_invocation_urls: Some(vec!["http://fn.invalid:80/".into()]),
            ..Status::default()
        };
        assert_eq!(
            pick_address(&schemed, UrlPreference::External, false).as_deref(),
            Ok("fn.invalid:80")
        );
    }

    #[test]
    fn a_node_port_without_a_host_is_this_machine_only_on_docker() {
        // What Nuclio 1.14.1 reports for a NodePort function when the controller has no
        // external IP addresses (the default Helm chart): `:<nodePort>`.
        let node_port = Status {
            http_port: Some(30001),
            internal_invocation_urls: Some(vec!["nuclio-f.ns.svc.cluster.local:8080".into()]),
            external_invocation_urls: Some(vec![":30001".into()]),
            ..Status::default()
        };
        let why = pick_address(&node_port, UrlPreference::External, false).unwrap_err();
        assert!(why.contains("node port 30001"), "{why}");
        assert!(
            why.contains("NUCLIO_CONTROLLER_EXTERNAL_IP_ADDRESSES"),
            "{why}"
        );
        assert!(why.contains("invocation-url = \"internal\""), "{why}");
        assert_eq!(
            pick_address(&node_port, UrlPreference::External, true).as_deref(),
            Ok("127.0.0.1:30001")
        );
        // A LoadBalancer service: a node port in httpPort, no external URL.
        let load_balancer = Status {
            http_port: Some(30002),
            external_invocation_urls: Some(vec![]),
            ..Status::default()
        };
        let why = pick_address(&load_balancer, UrlPreference::External, false).unwrap_err();
        assert!(why.contains("node port 30002"), "{why}");
        assert_eq!(
            pick_address(&load_balancer, UrlPreference::External, true).as_deref(),
            Ok("127.0.0.1:30002")
        );
        // An ingress URL after the host-less one is used.
        let with_ingress = Status {
            external_invocation_urls: Some(vec![":30001".into(), "f.example.invalid/".into()]),
            ..node_port
        };
        assert_eq!(
            pick_address(&with_ingress, UrlPreference::External, false).as_deref(),
            Ok("f.example.invalid")
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
