//! What Nuclio 1.14.1 would refuse in a merged function.yaml, checked before anything is deployed.
//!
//! `nuctl deploy` enriches a function's config and then validates it
//! (`enrichAndValidateFunctionConfig` in `pkg/platform/kube/platform.go` and
//! `pkg/platform/local/platform.go`: `EnrichFunctionConfig`, then `ValidateFunctionConfigWithRetry`
//! without autofix). A merged spec that fails there fails at deploy time, possibly after other
//! groups were deployed, so [`check`] mirrors `ValidateFunctionConfig` of
//! `pkg/platform/abstract/platform.go` over the merged document, with Nuclio's own messages,
//! after the parts of `EnrichFunctionConfig` that change what it checks (min/max replicas, trigger
//! names and workers, batch defaults, volume names). Nuclio stops at the first failure, in an order
//! that depends on Go's map iteration; [`check`] reports every one, in document order.
//!
//! Left out: checks that need the platform's state or configuration (`validateProjectExists`,
//! `validatePriorityClassName`, the platform's `disableDefaultHTTPTrigger` default) and the
//! Kubernetes-only ones of `pkg/platform/kube/platform.go` (service type, cron triggers in `kube`
//! mode, init containers, sidecars, ingress host availability).

use serde_norway::Value;

/// One refusal: the Nuclio function that makes it and the text Nuclio prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The Nuclio validation function, e.g. `validateMinMaxReplicas`.
    pub rule: &'static str,
    /// Nuclio's message, word for word.
    pub message: String,
}

/// `trigger.NumWorkersLimit` (`pkg/processor/trigger/trigger.go`).
pub const NUM_WORKERS_LIMIT: i64 = 100_000;

/// Every reason Nuclio 1.14.1 would refuse `function` (a whole function.yaml document).
pub fn check(function: &Value) -> Vec<Rejection> {
    let spec = function.get("spec").unwrap_or(&Value::Null);
    let mut out = Vec::new();
    reserved_name(function, &mut out);
    docker_image_fields(spec, &mut out);
    let (min, max) = replicas(spec);
    triggers(function, spec, min, max, &mut out);
    min_max_replicas(min, max, &mut out);
    node_selector(spec, &mut out);
    volumes(spec, &mut out);
    scale_to_zero(spec, min, &mut out);
    auto_scale_metrics(spec, &mut out);
    out
}

fn reject(out: &mut Vec<Rejection>, rule: &'static str, message: impl Into<String>) {
    out.push(Rejection {
        rule,
        message: message.into(),
    });
}

fn text(value: Option<&Value>) -> &str {
    value.and_then(Value::as_str).unwrap_or("")
}

fn int(value: Option<&Value>) -> Option<i64> {
    value.and_then(Value::as_i64)
}

/// The triggers of `spec`, in document order, with their keys as text.
fn trigger_list(spec: &Value) -> Vec<(String, &Value)> {
    spec.get("triggers")
        .and_then(Value::as_mapping)
        .map(|map| {
            map.iter()
                .map(|(key, trigger)| {
                    let key = match key {
                        Value::String(s) => s.clone(),
                        other => serde_norway::to_string(other)
                            .map(|s| s.trim_end().to_string())
                            .unwrap_or_default(),
                    };
                    (key, trigger)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `ValidateFunctionConfig` (`pkg/platform/abstract/platform.go`): the names of
/// `ResolveReservedResourceNames`.
fn reserved_name(function: &Value, out: &mut Vec<Rejection>) {
    const RESERVED: &[&str] = &["dashboard", "controller", "dlx", "scaler"];
    let name = text(function.get("metadata").and_then(|m| m.get("name")));
    if RESERVED.contains(&name) {
        reject(
            out,
            "ValidateFunctionConfig",
            format!("Function name {name} is reserved and cannot be used."),
        );
    }
}

/// `validateDockerImageFields` (`pkg/platform/abstract/platform.go`): each image or registry
/// field, a trailing `/` removed, must parse as a Docker reference (`reference.Parse` of
/// `github.com/docker/distribution` v2.8.2, [`is_docker_reference`]).
fn docker_image_fields(spec: &Value, out: &mut Vec<Rejection>) {
    let build = spec.get("build");
    let fields = [
        ("Spec.Image", spec.get("image")),
        ("Spec.RunRegistry", spec.get("runRegistry")),
        ("Spec.Build.Image", build.and_then(|b| b.get("image"))),
        (
            "Spec.Build.OnbuildImage",
            build.and_then(|b| b.get("onbuildImage")),
        ),
        ("Spec.Build.Registry", build.and_then(|b| b.get("registry"))),
        (
            "Spec.Build.BaseImageRegistry",
            build.and_then(|b| b.get("baseImageRegistry")),
        ),
    ];
    for (name, value) in fields {
        let value = text(value);
        if !value.is_empty() && !is_docker_reference(value.strip_suffix('/').unwrap_or(value)) {
            reject(
                out,
                "validateDockerImageFields",
                format!("Invalid {name} passed"),
            );
        }
    }
}

/// `spec.minReplicas` and `spec.maxReplicas` after `enrichMinMaxReplicas`
/// (`pkg/platform/abstract/platform.go`): a missing one takes the other's value.
fn replicas(spec: &Value) -> (Option<i64>, Option<i64>) {
    let min = int(spec.get("minReplicas"));
    let max = int(spec.get("maxReplicas"));
    (min.or(max), max.or(min))
}

/// `validateMinMaxReplicas` (`pkg/platform/abstract/platform.go`), on the enriched values. Its
/// first case, "Max replicas must be set when min replicas is zero", cannot happen after
/// `enrichMinMaxReplicas` (a lone `minReplicas: 0` becomes `maxReplicas: 0` and fails the last
/// case), so it is not repeated here.
fn min_max_replicas(min: Option<i64>, max: Option<i64>, out: &mut Vec<Rejection>) {
    const RULE: &str = "validateMinMaxReplicas";
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            reject(
                out,
                RULE,
                "Min replicas must be less than or equal to max replicas",
            );
            return;
        }
    }
    if max == Some(0) {
        reject(out, RULE, "Max replicas must be greater than zero");
    }
}

/// `validateTriggers`, with `validateIngresses` and `validateBatchConfiguration`
/// (`pkg/platform/abstract/platform.go`), after `enrichTriggers` (a trigger without `name` takes
/// its key; `maxWorkers` stands in for a missing `numWorkers`) and `enrichBatchParams` (an
/// enabled batch gets size 10 and timeout `1s` when they are missing). Nuclio's order: the
/// ingresses of every trigger, then the batches, then each trigger's own checks.
fn triggers(
    function: &Value,
    spec: &Value,
    min: Option<i64>,
    max: Option<i64>,
    out: &mut Vec<Rejection>,
) {
    let triggers = trigger_list(spec);
    for (key, trigger) in &triggers {
        ingresses(key, trigger, out);
    }
    for (_, trigger) in &triggers {
        batch(trigger, out);
    }
    let annotations = function.get("metadata").and_then(|m| m.get("annotations"));
    let mut http_seen = false;
    for (key, trigger) in &triggers {
        trigger_fields(key, trigger, annotations, (min, max), &mut http_seen, out);
    }
}

/// `validateIngresses` of one trigger: an HTTP trigger's `attributes.ingresses` is a map of maps.
fn ingresses(key: &str, trigger: &Value, out: &mut Vec<Rejection>) {
    if text(trigger.get("kind")) != "http" {
        return;
    }
    let Some(ingresses) = trigger
        .get("attributes")
        .and_then(Value::as_mapping)
        .and_then(|a| a.get("ingresses"))
    else {
        return;
    };
    match ingresses.as_mapping() {
        None => reject(
            out,
            "validateIngresses",
            format!("Malformed structure for ingresses in trigger '{key}' (expects a map)"),
        ),
        Some(map) => {
            if let Some((name, _)) = map.iter().find(|(_, ingress)| !ingress.is_mapping()) {
                let name = name.as_str().map_or_else(
                    || serde_norway::to_string(name).unwrap_or_default(),
                    str::to_string,
                );
                reject(
                    out,
                    "validateIngresses",
                    format!(
                        "Malformed structure for ingress '{}' in trigger '{key}'",
                        name.trim_end()
                    ),
                );
            }
        }
    }
}

/// `validateBatchConfiguration` of one trigger, after `enrichBatchParams`.
fn batch(trigger: &Value, out: &mut Vec<Rejection>) {
    let Some(batch) = trigger.get("batch").filter(|b| !b.is_null()) else {
        return;
    };
    let enabled = text(batch.get("mode")) == "enable";
    let size = int(batch.get("batchSize"))
        .filter(|&n| n != 0 || !enabled)
        .unwrap_or(if enabled { 10 } else { 0 });
    let timeout = match text(batch.get("timeout")) {
        "" if enabled => "1s",
        other => other,
    };
    if size <= 0 {
        reject(
            out,
            "validateBatchConfiguration",
            "Batch size should be 1 or higher",
        );
    } else if let Err(e) = go_parse_duration(timeout) {
        reject(
            out,
            "validateBatchConfiguration",
            format!("Batching timeout validation failed. Error: {e}"),
        );
    }
}

/// `validateTriggers`' checks of one trigger, in Nuclio's order: key and name, workers, one
/// HTTP trigger (`http_seen`), explicit ack with worker pools, autoscaling of V3IO streams
/// (`replicas`: min and max).
fn trigger_fields(
    key: &str,
    trigger: &Value,
    annotations: Option<&Value>,
    (min, max): (Option<i64>, Option<i64>),
    http_seen: &mut bool,
    out: &mut Vec<Rejection>,
) {
    const RULE: &str = "validateTriggers";
    if key.is_empty() {
        reject(out, RULE, "Trigger key can not be empty");
        return;
    }
    let name = match text(trigger.get("name")) {
        "" => key,
        name => name,
    };
    if name != key {
        reject(
            out,
            RULE,
            format!("Trigger key and name mismatch ({key} != {name})"),
        );
        return;
    }
    let workers = match int(trigger.get("numWorkers")).unwrap_or(0) {
        0 => int(trigger.get("maxWorkers")).unwrap_or(0),
        n => n,
    };
    if workers > NUM_WORKERS_LIMIT {
        reject(
            out,
            RULE,
            format!(
                "NumWorkers value for {key} trigger ({workers}) exceeds the limit of \
                 {NUM_WORKERS_LIMIT}"
            ),
        );
        return;
    }
    let kind = text(trigger.get("kind"));
    if kind == "http" {
        if *http_seen {
            reject(
                out,
                RULE,
                "There's more than one http trigger (unsupported)",
            );
        }
        *http_seen = true;
        return;
    }
    if ["v3io-stream", "v3ioStream", "kafka-cluster", "kafka"].contains(&kind) {
        let prefix = if kind.contains("v3io") {
            "v3iostream"
        } else {
            "kafka"
        };
        let annotation = format!("nuclio.io/{prefix}-worker-allocation-mode");
        let mut mode = text(annotations.and_then(|a| a.get(annotation.as_str())));
        if let Some(attribute) = trigger
            .get("attributes")
            .and_then(|a| a.get("workerAllocationMode"))
        {
            mode = text(Some(attribute));
        }
        let explicit_ack =
            ["enable", "explicitOnly"].contains(&text(trigger.get("explicitAckMode")));
        if !mode.is_empty() && mode != "static" && explicit_ack {
            reject(
                out,
                RULE,
                "Explicit ack mode is not allowed when using worker pool allocation mode",
            );
            return;
        }
    }
    if ["v3io-stream", "v3ioStream"].contains(&kind) {
        if let (Some(min), Some(max)) = (min, max) {
            if min != max {
                reject(
                    out,
                    RULE,
                    "V3IO Stream trigger does not support autoscaling",
                );
            }
        }
    }
}

/// `common.ValidateLabels(spec.nodeSelector)` (`pkg/common/k8s.go`), with the messages of
/// `IsValidLabelValue` and `IsQualifiedName` of `k8s.io/apimachinery/pkg/util/validation`
/// (v0.29.8): a value is checked before its key.
fn node_selector(spec: &Value, out: &mut Vec<Rejection>) {
    const RULE: &str = "ValidateLabels";
    let Some(selector) = spec.get("nodeSelector").and_then(Value::as_mapping) else {
        return;
    };
    for (key, value) in selector {
        let key = key.as_str().unwrap_or_default();
        let value = value.as_str().unwrap_or_default();
        let errors = k8s::label_value(value);
        if !errors.is_empty() {
            let all = [vec![format!("Invalid value: {value}")], errors].concat();
            reject(out, RULE, all.join(", "));
            continue;
        }
        let errors = k8s::qualified_name(key);
        if !errors.is_empty() {
            let all = [vec![format!("Invalid key: {key}")], errors].concat();
            reject(out, RULE, all.join(", "));
        }
    }
}

/// `validateVolumes` (`pkg/platform/abstract/platform.go`), after `enrichVolumes` (a missing
/// `volume.name` or `volumeMount.name` takes the other).
fn volumes(spec: &Value, out: &mut Vec<Rejection>) {
    const RULE: &str = "validateVolumes";
    let Some(list) = spec.get("volumes").and_then(Value::as_sequence) else {
        return;
    };
    let mut by_mount: Vec<(&str, &Value, bool)> = Vec::new();
    for entry in list {
        let volume = entry.get("volume").unwrap_or(&Value::Null);
        let mount_name = text(entry.get("volumeMount").and_then(|m| m.get("name")));
        let volume_name = text(volume.get("name"));
        let (mount_name, volume_name) = match (mount_name, volume_name) {
            ("", v) => (v, v),
            (m, "") => (m, m),
            both => both,
        };
        if mount_name.is_empty() {
            reject(out, RULE, "Volume mount name is missing");
        } else if mount_name != volume_name {
            reject(out, RULE, "Volume and volume mount must have the same name");
        } else {
            match by_mount.iter_mut().find(|(name, _, _)| *name == mount_name) {
                None => by_mount.push((mount_name, volume, false)),
                Some((_, first, reported)) => {
                    if !*reported && !same_volume(first, volume) {
                        *reported = true;
                        reject(
                            out,
                            RULE,
                            format!(
                                "Volumes sharing the same volume mount '{mount_name}' must having \
                                 the same configuration"
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// Two `volume` entries as `cmp.Diff` compares them once both carry the enriched name.
fn same_volume(first: &Value, other: &Value) -> bool {
    let named = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_mapping_mut() {
            map.remove("name");
        }
        v
    };
    named(first) == named(other)
}

/// `validateScaleToZero` (`pkg/platform/abstract/platform.go`), when the spec itself disables the
/// default HTTP trigger (left unset, it comes from the platform's configuration).
fn scale_to_zero(spec: &Value, min: Option<i64>, out: &mut Vec<Rejection>) {
    let disabled = spec
        .get("disableDefaultHTTPTrigger")
        .and_then(Value::as_bool)
        == Some(true);
    let has_http = trigger_list(spec)
        .iter()
        .any(|(_, t)| text(t.get("kind")) == "http");
    if min == Some(0) && disabled && !has_http {
        reject(
            out,
            "validateScaleToZero",
            "Function can not be scaling to zero without http trigger. Either enable default \
             http trigger creation or create custom http trigger",
        );
    }
}

/// `validateAutoScaleMetrics` (`pkg/platform/abstract/platform.go`); the metric is printed as Go's
/// `%+v` prints a `functionconfig.AutoScaleMetric` (`pkg/functionconfig/types.go`).
fn auto_scale_metrics(spec: &Value, out: &mut Vec<Rejection>) {
    const RULE: &str = "validateAutoScaleMetrics";
    const KINDS: &[&str] = &[
        "Resource",
        "Pods",
        "External",
        "Object",
        "ContainerResource",
    ];
    let Some(list) = spec.get("autoScaleMetrics").and_then(Value::as_sequence) else {
        return;
    };
    for metric in list {
        let name = text(metric.get("metricName"));
        let kind = text(metric.get("sourceType"));
        let threshold = int(metric.get("threshold")).unwrap_or(0);
        let shown = format!(
            "{{ScaleResource:{{MetricName:{name} WindowSize:{} Threshold:{threshold}}} \
             SourceType:{kind} DisplayType:{}}}",
            text(metric.get("windowSize")),
            text(metric.get("displayType")),
        );
        let problem = if name.is_empty() {
            "Auto scale metric name is missing"
        } else if kind.is_empty() {
            "Auto scale metric kind is missing"
        } else if !KINDS.contains(&kind) {
            "Auto scale metric kind is invalid"
        } else if threshold == 0 {
            "Auto scale metric value is missing"
        } else if threshold < 0 {
            "Auto scale metric value must be positive"
        } else {
            continue;
        };
        reject(out, RULE, format!("{problem} - {shown}"));
    }
}

/// Go's `time.ParseDuration` (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`), with its error text.
pub fn go_parse_duration(input: &str) -> Result<(), String> {
    let invalid = || format!("time: invalid duration {}", go_time_quote(input));
    let mut s = input.strip_prefix(['-', '+']).unwrap_or(input);
    if s == "0" {
        return Ok(());
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total_ns: f64 = 0.0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let mut number: f64 = if digits > 0 {
            s[..digits].parse().map_err(|_| invalid())?
        } else {
            0.0
        };
        let pre = digits > 0;
        s = &s[digits..];
        let mut post = false;
        if let Some(rest) = s.strip_prefix('.') {
            let fraction = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            post = fraction > 0;
            if post {
                number += format!("0.{}", &rest[..fraction])
                    .parse::<f64>()
                    .unwrap_or(0.0);
            }
            s = &rest[fraction..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!(
                "time: missing unit in duration {}",
                go_time_quote(input)
            ));
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let factor = match unit {
            "ns" => 1.0,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_time_quote(unit),
                    go_time_quote(input)
                ))
            }
        };
        total_ns += number * factor;
        // Overflow of int64 nanoseconds.
        if total_ns > 9.223_372_036_854_775e18 {
            return Err(invalid());
        }
    }
    Ok(())
}

/// The `quote` of Go's `time` package: `"…"`, with `"` and `\` escaped and every byte of a
/// non-ASCII or control character as `\xNN`.
fn go_time_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if !c.is_ascii() || c < ' ' {
            let mut bytes = [0; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// Whether `reference.Parse` of `github.com/docker/distribution/reference` v2.8.2 (`regexp.go`,
/// `reference.go`) accepts `s`: `name[:tag][@digest]`, the name at most 255 characters, made of
/// `/`-separated lowercase components (`[a-z0-9]+` joined by `.`, `_`, `__` or dashes), the
/// first of which may instead be a domain (`host[:port]`), the tag `[\w][\w.-]{0,127}`, and the
/// digest one go-digest v1.0.0 parses (`sha256`, `sha384` or `sha512` with its length of
/// lowercase hex).
pub fn is_docker_reference(s: &str) -> bool {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    if name.len() > 255 || !docker_name(name) {
        return false;
    }
    if let Some(tag) = tag {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut chars = tag.chars();
        if !chars.next().is_some_and(word)
            || tag.len() > 128
            || !chars.all(|c| word(c) || c == '.' || c == '-')
        {
            return false;
        }
    }
    digest.is_none_or(docker_digest)
}

fn docker_name(name: &str) -> bool {
    let components: Vec<&str> = name.split('/').collect();
    let path_ok = |parts: &[&str]| !parts.is_empty() && parts.iter().all(|p| name_component(p));
    path_ok(&components) || (domain(components[0]) && path_ok(&components[1..]))
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn name_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(|&b| alnum(b)) || !bytes.last().is_some_and(|&b| alnum(b)) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &s[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `domainComponent(\.domainComponent)*(:[0-9]+)?`, a component being `[a-zA-Z0-9]` or
/// `[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn domain(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    let component = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !c.starts_with('-')
            && !c.ends_with('-')
    };
    host.split('.').all(component)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn docker_digest(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return false;
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == length
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The label checks of `k8s.io/apimachinery/pkg/util/validation/validation.go` (v0.29.8) that
/// `common.ValidateLabels` uses, with their messages.
mod k8s {
    const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
    const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
         and must start and end with an alphanumeric character";
    const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of \
         alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
         character";
    const DNS1123_SUBDOMAIN_FMT: &str =
        "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
    const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower \
         case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
         character";

    fn max_len(n: usize) -> String {
        format!("must be no more than {n} characters")
    }

    fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
        if examples.is_empty() {
            return format!("{msg} (regex used for validation is '{fmt}')");
        }
        let mut out = format!("{msg} (e.g. ");
        for (i, example) in examples.iter().enumerate() {
            if i > 0 {
                out.push_str(" or ");
            }
            out.push_str(&format!("'{example}', "));
        }
        out.push_str(&format!("regex used for validation is '{fmt}')"));
        out
    }

    /// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
    fn qualified(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    }

    fn dns1123_subdomain(s: &str) -> bool {
        s.split('.').all(|label| {
            let b = label.as_bytes();
            let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            !b.is_empty() && ok(b[0]) && ok(b[b.len() - 1]) && b.iter().all(|&c| ok(c) || c == b'-')
        })
    }

    /// `IsValidLabelValue`.
    pub(super) fn label_value(value: &str) -> Vec<String> {
        let mut errs = Vec::new();
        if value.len() > 63 {
            errs.push(max_len(63));
        }
        if !(value.is_empty() || qualified(value)) {
            errs.push(regex_error(
                LABEL_VALUE_ERR,
                &format!("({QUALIFIED_NAME_FMT})?"),
                &["MyValue", "my_value", "12345"],
            ));
        }
        errs
    }

    /// `IsQualifiedName`.
    pub(super) fn qualified_name(value: &str) -> Vec<String> {
        let mut errs = Vec::new();
        let parts: Vec<&str> = value.split('/').collect();
        let name = match parts.as_slice() {
            [name] => *name,
            [prefix, name] => {
                if prefix.is_empty() {
                    errs.push("prefix part must be non-empty".to_string());
                } else {
                    if prefix.len() > 253 {
                        errs.push(format!("prefix part {}", max_len(253)));
                    }
                    if !dns1123_subdomain(prefix) {
                        errs.push(format!(
                            "prefix part {}",
                            regex_error(
                                DNS1123_SUBDOMAIN_ERR,
                                DNS1123_SUBDOMAIN_FMT,
                                &["example.com"]
                            )
                        ));
                    }
                }
                *name
            }
            _ => {
                errs.push(format!(
                    "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. \
                     'example.com/MyName')",
                    regex_error(
                        QUALIFIED_NAME_ERR,
                        QUALIFIED_NAME_FMT,
                        &["MyName", "my.name", "123-abc"]
                    )
                ));
                return errs;
            }
        };
        if name.is_empty() {
            errs.push("name part must be non-empty".to_string());
        } else if name.len() > 63 {
            errs.push(format!("name part {}", max_len(63)));
        }
        if !qualified(name) {
            errs.push(format!(
                "name part {}",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests;
