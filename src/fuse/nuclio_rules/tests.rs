//! Unit tests for Nuclio's validation rules, one or more per rule, on whole function.yaml
//! documents; the merges that trip them are tested in `src/fuse/tests.rs`.

use serde_norway::Value;

use super::*;

/// `rule: message` of every rejection of the document whose `spec` holds `spec` (indented by two
/// spaces) and whose metadata holds `metadata` (likewise).
fn rejects_with(metadata: &str, spec: &str) -> Vec<String> {
    let text = format!(
        "apiVersion: nuclio.io/v1beta1\nkind: NuclioFunction\nmetadata:\n  name: shop-a-b\n{metadata}\
         spec:\n  runtime: python:3.11\n  handler: _fusionizer_entry:handler\n{spec}"
    );
    let doc: Value = serde_norway::from_str(&text).unwrap();
    check(&doc)
        .into_iter()
        .map(|r| format!("{}: {}", r.rule, r.message))
        .collect()
}

fn rejects(spec: &str) -> Vec<String> {
    rejects_with("", spec)
}

#[test]
fn a_plain_merged_spec_passes() {
    assert_eq!(
        rejects(
            "  minReplicas: 1\n  maxReplicas: 3\n  triggers:\n    http:\n      kind: http\n      \
             name: http\n      numWorkers: 4\n      attributes:\n        ingresses:\n          \
             main:\n            host: shop.example\n    tick:\n      kind: cron\n      \
             attributes:\n        interval: 10s\n  volumes:\n  - volume:\n      name: data\n      \
             hostPath:\n        path: /srv\n    volumeMount:\n      mountPath: /data\n  \
             nodeSelector:\n    kubernetes.io/os: linux\n  runRegistry: localhost:5000/\n  \
             build:\n    baseImage: python:3.11-slim\n    registry: registry.example.com:5000/team\n"
        ),
        Vec::<String>::new()
    );
}

#[test]
fn min_replicas_above_max_replicas() {
    assert_eq!(
        rejects("  minReplicas: 3\n  maxReplicas: 2\n"),
        ["validateMinMaxReplicas: Min replicas must be less than or equal to max replicas"]
    );
}

#[test]
fn max_replicas_zero_and_a_lone_min_replicas_zero() {
    let expected = ["validateMinMaxReplicas: Max replicas must be greater than zero"];
    assert_eq!(rejects("  maxReplicas: 0\n"), expected);
    // enrichMinMaxReplicas copies a lone minReplicas into maxReplicas first.
    assert_eq!(rejects("  minReplicas: 0\n"), expected);
    assert_eq!(rejects("  minReplicas: 0\n  maxReplicas: 0\n"), expected);
    assert!(rejects("  minReplicas: 0\n  maxReplicas: 1\n").is_empty());
    assert!(rejects("  maxReplicas: 2\n").is_empty());
}

#[test]
fn a_trigger_key_must_equal_its_name() {
    assert_eq!(
        rejects("  triggers:\n    taska-queue:\n      kind: kafka-cluster\n      name: queue\n"),
        ["validateTriggers: Trigger key and name mismatch (taska-queue != queue)"]
    );
    // Without a name, the trigger takes its key (enrichTriggers).
    assert!(rejects("  triggers:\n    taska-queue:\n      kind: kafka-cluster\n").is_empty());
}

#[test]
fn a_trigger_key_cannot_be_empty() {
    assert_eq!(
        rejects("  triggers:\n    \"\":\n      kind: cron\n"),
        ["validateTriggers: Trigger key can not be empty"]
    );
}

#[test]
fn num_workers_over_the_limit() {
    assert_eq!(
        rejects("  triggers:\n    http:\n      kind: http\n      numWorkers: 100001\n"),
        ["validateTriggers: NumWorkers value for http trigger (100001) exceeds the limit of 100000"]
    );
    // The deprecated maxWorkers stands in for a missing numWorkers.
    assert_eq!(
        rejects("  triggers:\n    q:\n      kind: rabbit-mq\n      maxWorkers: 200000\n"),
        ["validateTriggers: NumWorkers value for q trigger (200000) exceeds the limit of 100000"]
    );
    assert!(
        rejects("  triggers:\n    http:\n      kind: http\n      numWorkers: 100000\n").is_empty()
    );
}

#[test]
fn more_than_one_http_trigger() {
    assert_eq!(
        rejects("  triggers:\n    a:\n      kind: http\n    b:\n      kind: http\n"),
        ["validateTriggers: There's more than one http trigger (unsupported)"]
    );
}

#[test]
fn explicit_ack_needs_static_worker_allocation() {
    let trigger = "  triggers:\n    q:\n      kind: kafka-cluster\n      explicitAckMode: enable\n";
    let message =
        "validateTriggers: Explicit ack mode is not allowed when using worker pool allocation mode";
    assert_eq!(
        rejects_with(
            "  annotations:\n    nuclio.io/kafka-worker-allocation-mode: pool\n",
            trigger
        ),
        [message]
    );
    assert_eq!(
        rejects(&format!(
            "{trigger}      attributes:\n        workerAllocationMode: pool\n"
        )),
        [message]
    );
    // The attribute wins over the annotation.
    assert!(rejects_with(
        "  annotations:\n    nuclio.io/kafka-worker-allocation-mode: pool\n",
        &format!("{trigger}      attributes:\n        workerAllocationMode: static\n")
    )
    .is_empty());
    assert!(rejects(trigger).is_empty());
    assert_eq!(
        rejects_with(
            "  annotations:\n    nuclio.io/v3iostream-worker-allocation-mode: pool\n",
            "  triggers:\n    s:\n      kind: v3ioStream\n      explicitAckMode: explicitOnly\n"
        ),
        [message]
    );
}

#[test]
fn a_v3io_stream_trigger_does_not_autoscale() {
    let trigger = "  triggers:\n    s:\n      kind: v3ioStream\n";
    assert_eq!(
        rejects(&format!("{trigger}  minReplicas: 1\n  maxReplicas: 3\n")),
        ["validateTriggers: V3IO Stream trigger does not support autoscaling"]
    );
    assert!(rejects(&format!("{trigger}  minReplicas: 2\n")).is_empty());
}

#[test]
fn malformed_ingresses() {
    assert_eq!(
        rejects(
            "  triggers:\n    http:\n      kind: http\n      attributes:\n        ingresses: [a]\n"
        ),
        ["validateIngresses: Malformed structure for ingresses in trigger 'http' (expects a map)"]
    );
    assert_eq!(
        rejects(
            "  triggers:\n    http:\n      kind: http\n      attributes:\n        ingresses:\n          \
             main: shop.example\n"
        ),
        ["validateIngresses: Malformed structure for ingress 'main' in trigger 'http'"]
    );
}

#[test]
fn batch_size_and_timeout() {
    let batch = |b: &str| {
        rejects(&format!(
            "  triggers:\n    http:\n      kind: http\n      batch:\n{b}"
        ))
    };
    assert_eq!(
        batch("        mode: disable\n"),
        ["validateBatchConfiguration: Batch size should be 1 or higher"]
    );
    assert_eq!(
        batch("        mode: enable\n        batchSize: -1\n"),
        ["validateBatchConfiguration: Batch size should be 1 or higher"]
    );
    assert_eq!(
        batch("        mode: enable\n        timeout: \"10\"\n"),
        ["validateBatchConfiguration: Batching timeout validation failed. Error: time: missing unit in duration \"10\""]
    );
    assert_eq!(
        batch("        batchSize: 5\n"),
        ["validateBatchConfiguration: Batching timeout validation failed. Error: time: invalid duration \"\""]
    );
    // enrichBatchParams fills an enabled batch's size and timeout.
    assert!(batch("        mode: enable\n").is_empty());
}

#[test]
fn reserved_function_names() {
    let doc: Value =
        serde_norway::from_str("metadata:\n  name: dashboard\nspec:\n  runtime: python:3.11\n")
            .unwrap();
    assert_eq!(
        check(&doc),
        [Rejection {
            rule: "ValidateFunctionConfig",
            message: "Function name dashboard is reserved and cannot be used.".to_string(),
        }]
    );
}

#[test]
fn image_and_registry_fields_must_be_docker_references() {
    assert_eq!(
        rejects("  runRegistry: https://registry.example.com\n  build:\n    registry: Registry.Example/Team\n    baseImageRegistry: \"a b\"\n    onbuildImage: quay.io/nuclio/onbuild:1.14.1\n"),
        [
            "validateDockerImageFields: Invalid Spec.RunRegistry passed",
            "validateDockerImageFields: Invalid Spec.Build.Registry passed",
            "validateDockerImageFields: Invalid Spec.Build.BaseImageRegistry passed",
        ]
    );
}

#[test]
fn docker_references_parse_like_distribution_v2_8_2() {
    for ok in [
        "python",
        "python:3.11-slim",
        "localhost:5000",
        "localhost:5000/team/app:v1",
        "registry.example.com/a__b/c--d/e.f_g",
        "Registry.Example.com:443/team",
        // The first component may be a domain, and domains may have capitals.
        "Team/app",
        "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "app:Latest_1.0-rc",
    ] {
        assert!(is_docker_reference(ok), "{ok}");
    }
    for bad in [
        "",
        "https://registry",
        "a b",
        "app:",
        "app:-x",
        "-app",
        "team/App",
        "a..b",
        "a/",
        "a:b:c",
        "app@sha256:0123",
        "app@md5:0123456789abcdef0123456789abcdef",
        &"a".repeat(256),
    ] {
        assert!(!is_docker_reference(bad), "{bad}");
    }
}

#[test]
fn node_selector_labels() {
    assert_eq!(
        rejects("  nodeSelector:\n    disk: fast ssd\n"),
        ["ValidateLabels: Invalid value: fast ssd, a valid label must be an empty string or consist of \
          alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
          character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
          '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]
    );
    assert_eq!(
        rejects("  nodeSelector:\n    Example.com/disk: ssd\n"),
        ["ValidateLabels: Invalid key: Example.com/disk, prefix part a lowercase RFC 1123 subdomain \
          must consist of lower case alphanumeric characters, '-' or '.', and must start and end \
          with an alphanumeric character (e.g. 'example.com', regex used for validation is \
          '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
    );
    assert_eq!(
        rejects("  nodeSelector:\n    a/b/c: x\n"),
        [
            "ValidateLabels: Invalid key: a/b/c, a qualified name must consist of alphanumeric \
          characters, '-', '_' or '.', and must start and end with an alphanumeric character \
          (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
          '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and \
          '/' (e.g. 'example.com/MyName')"
        ]
    );
}

#[test]
fn volume_names() {
    assert_eq!(
        rejects("  volumes:\n  - volume:\n      hostPath:\n        path: /srv\n    volumeMount:\n      mountPath: /data\n"),
        ["validateVolumes: Volume mount name is missing"]
    );
    assert_eq!(
        rejects("  volumes:\n  - volume:\n      name: a\n    volumeMount:\n      name: b\n      mountPath: /data\n"),
        ["validateVolumes: Volume and volume mount must have the same name"]
    );
    assert_eq!(
        rejects(
            "  volumes:\n  - volume:\n      name: a\n      hostPath:\n        path: /x\n    volumeMount:\n      \
             mountPath: /x\n  - volume:\n      hostPath:\n        path: /y\n    volumeMount:\n      \
             name: a\n      mountPath: /y\n"
        ),
        ["validateVolumes: Volumes sharing the same volume mount 'a' must having the same configuration"]
    );
    // The same volume mounted twice is fine.
    assert!(rejects(
        "  volumes:\n  - volume:\n      name: a\n      hostPath:\n        path: /x\n    volumeMount:\n      \
         mountPath: /x\n  - volume:\n      hostPath:\n        path: /x\n    volumeMount:\n      \
         name: a\n      mountPath: /y\n"
    )
    .is_empty());
}

#[test]
fn scaling_to_zero_needs_an_http_trigger() {
    let spec = "  minReplicas: 0\n  maxReplicas: 2\n  disableDefaultHTTPTrigger: true\n  \
                triggers:\n    tick:\n      kind: cron\n";
    assert_eq!(
        rejects(spec),
        ["validateScaleToZero: Function can not be scaling to zero without http trigger. Either \
          enable default http trigger creation or create custom http trigger"]
    );
    assert!(rejects(&format!("{spec}    http:\n      kind: http\n")).is_empty());
    assert!(rejects(&spec.replace("true", "false")).is_empty());
}

#[test]
fn auto_scale_metrics() {
    let metric = |m: &str| rejects(&format!("  autoScaleMetrics:\n  - {m}\n"));
    assert_eq!(
        metric("{sourceType: Resource, threshold: 50}"),
        ["validateAutoScaleMetrics: Auto scale metric name is missing - {ScaleResource:{MetricName: \
          WindowSize: Threshold:50} SourceType:Resource DisplayType:}"]
    );
    assert_eq!(
        metric("{metricName: cpu, threshold: 50}"),
        ["validateAutoScaleMetrics: Auto scale metric kind is missing - {ScaleResource:{MetricName:cpu \
          WindowSize: Threshold:50} SourceType: DisplayType:}"]
    );
    assert_eq!(
        metric("{metricName: cpu, sourceType: Cpu, threshold: 50, windowSize: 1m}"),
        ["validateAutoScaleMetrics: Auto scale metric kind is invalid - {ScaleResource:{MetricName:cpu \
          WindowSize:1m Threshold:50} SourceType:Cpu DisplayType:}"]
    );
    assert_eq!(
        metric("{metricName: cpu, sourceType: Resource, displayType: percentage}"),
        ["validateAutoScaleMetrics: Auto scale metric value is missing - {ScaleResource:{MetricName:cpu \
          WindowSize: Threshold:0} SourceType:Resource DisplayType:percentage}"]
    );
    assert_eq!(
        metric("{metricName: cpu, sourceType: Resource, threshold: -5}"),
        ["validateAutoScaleMetrics: Auto scale metric value must be positive - {ScaleResource:{MetricName:cpu \
          WindowSize: Threshold:-5} SourceType:Resource DisplayType:}"]
    );
    assert!(metric("{metricName: cpu, sourceType: Resource, threshold: 50}").is_empty());
}

#[test]
fn go_durations_fail_with_go_s_messages() {
    for ok in [
        "0",
        "1s",
        "-1.5h",
        "+.5m",
        "1h30m",
        "10us",
        "3\u{00b5}s",
        "2.s",
    ] {
        assert_eq!(go_parse_duration(ok), Ok(()), "{ok}");
    }
    assert_eq!(
        go_parse_duration(""),
        Err("time: invalid duration \"\"".into())
    );
    assert_eq!(
        go_parse_duration("s"),
        Err("time: invalid duration \"s\"".into())
    );
    assert_eq!(
        go_parse_duration(".s"),
        Err("time: invalid duration \".s\"".into())
    );
    assert_eq!(
        go_parse_duration("10"),
        Err("time: missing unit in duration \"10\"".into())
    );
    assert_eq!(
        go_parse_duration("5d"),
        Err("time: unknown unit \"d\" in duration \"5d\"".into())
    );
    assert_eq!(
        go_parse_duration("1é"),
        Err("time: unknown unit \"\\xc3\\xa9\" in duration \"1\\xc3\\xa9\"".into())
    );
    assert_eq!(
        go_parse_duration("99999999999h"),
        Err("time: invalid duration \"99999999999h\"".into())
    );
}
