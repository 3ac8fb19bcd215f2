//! Cron triggers on the local platform, against the real dispatcher: fused tasks each get their
//! own trigger's events (body, `Task-Name`, trigger kind and name as the dispatcher hands them
//! to the task), a regroup moves a task's trigger to its new function without firing it twice,
//! deleting a function stops its ticks, and an unparsable trigger fails the deploy.
//!
//! Nothing here sleeps to synchronise: every wait polls for a condition, with a deadline. The
//! venv is built once into the same shared cache as `local.rs` (needs `PyPI` the first time).

use std::path::Path;
use std::time::Duration;

use fusionizer::config::TaskSpec;
use fusionizer::platform::local::LocalPlatform;
use fusionizer::platform::{HostOptions, NoProgress, Platform, PlatformError, TriggerEvents};

use crate::support::{local_config, use_shared_cache, wait_for_async};

/// How long a test waits for what the platform does.
const PATIENCE: Duration = Duration::from_secs(60);

fn hosted() -> Option<HostOptions> {
    Some(HostOptions {
        proxy_url: "http://127.0.0.1:9".to_string(),
        request_timeout: Duration::from_secs(30),
    })
}

/// A handler that appends what it receives, as the task sees it, to `$CRON_OUT/<task>.jsonl`.
const HANDLER: &str = r#"import json, os


def handler(context, event):
    body = event.body
    if isinstance(body, bytes):
        body = body.decode()
    record = {
        "body": body,
        "task_name": event.headers.get("Task-Name"),
        "from": event.headers.get("X-From"),
        "trigger_kind": event.trigger.kind,
        "trigger_name": event.trigger.name,
        "method": event.method,
        "path": event.path,
        "content_type": event.content_type,
    }
    path = os.path.join(os.environ["CRON_OUT"], record["task_name"] + ".jsonl")
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    return "ok"
"#;

/// Writes task `name` with a cron trigger `tick` (`attributes` indented under it) and loads it.
fn task(root: &Path, out: &Path, name: &str, attributes: &str) -> TaskSpec {
    let dir = root.join("tasks").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = format!(
        "metadata:\n  name: {name}\nspec:\n  runtime: \"python:3.11\"\n  handler: \"main:handler\"\n  env:\n    - name: CRON_OUT\n      value: {out:?}\n  triggers:\n    tick:\n      kind: cron\n      attributes:\n{attributes}",
        out = out.display().to_string(),
    );
    std::fs::write(dir.join("function.yaml"), yaml).unwrap();
    std::fs::write(dir.join("main.py"), HANDLER).unwrap();
    TaskSpec::load(name, &dir).unwrap()
}

fn every_second(body: &str, from: &str) -> String {
    format!(
        "        interval: 1s\n        event:\n          body: {body}\n          headers:\n            X-From: {from}\n"
    )
}

/// The events `task` received so far.
fn received(out: &Path, task: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join(format!("{task}.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn from_trigger(events: &[serde_json::Value], trigger: &str) -> usize {
    events
        .iter()
        .filter(|e| e["trigger_name"] == trigger)
        .count()
}

fn fired(platform: &LocalPlatform, function: &str, trigger: &str) -> u64 {
    platform
        .trigger_events()
        .iter()
        .filter(|e: &&TriggerEvents| e.function == function && e.trigger == trigger)
        .map(|e| {
            assert_eq!(e.kind, "cron");
            assert_eq!(e.result, "ok", "{e:?}");
            e.total
        })
        .sum()
}

#[tokio::test]
async fn local_cron_triggers_fire_per_task_move_with_a_regroup_and_stop_with_their_function() {
    use_shared_cache();
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Both tasks have a cron trigger called `tick`: fused, they become `taska-tick` and
    // `taskb-tick`, each with its task's `Task-Name` header.
    let a = task(temp.path(), &out, "taska", &every_second("from-a", "a"));
    let b = task(temp.path(), &out, "taskb", &every_second("from-b", "b"));
    let fused = fusionizer::fuse::fuse_group("shop", &[&a, &b]).unwrap();
    let platform = LocalPlatform::new(&local_config(temp.path()), hosted()).unwrap();
    platform.deploy(&fused, &NoProgress).await.unwrap();

    wait_for_async("two events for each task", PATIENCE, || {
        received(&out, "taska").len() >= 2 && received(&out, "taskb").len() >= 2
    })
    .await;
    for (task, trigger, body, from) in [
        ("taska", "taska-tick", "from-a", "a"),
        ("taskb", "taskb-tick", "from-b", "b"),
    ] {
        for event in received(&out, task) {
            // No path in the event; nuclio-sdk's `Event` makes that `/` (nuclio_sdk/event.py).
            assert_eq!(
                event,
                serde_json::json!({
                    "body": body, "task_name": task, "from": from, "trigger_kind": "cron",
                    "trigger_name": trigger, "method": "", "path": "/", "content_type": "",
                }),
                "{task}"
            );
        }
    }
    // A task records its event before its answer is counted: wait for the counts as well.
    wait_for_async(
        "the fused function's events to be counted",
        PATIENCE,
        || {
            fired(&platform, &fused.name, "taska-tick") >= 2
                && fired(&platform, &fused.name, "taskb-tick") >= 2
        },
    )
    .await;

    // Regroup: `taska` alone in a new function, deployed while the fused one still runs.
    let solo = fusionizer::fuse::fuse_group("shop", &[&a]).unwrap();
    platform.deploy(&solo, &NoProgress).await.unwrap();
    // From here on the fused function takes no new tick of taska's trigger; one it already
    // sent may still be answered.
    let old_events = from_trigger(&received(&out, "taska"), "taska-tick");
    let old_fired = fired(&platform, &fused.name, "taska-tick");
    wait_for_async(
        "two events of taska's trigger in its new function",
        PATIENCE,
        || from_trigger(&received(&out, "taska"), "tick") >= 2,
    )
    .await;
    assert!(from_trigger(&received(&out, "taska"), "taska-tick") <= old_events + 1);
    assert!(fired(&platform, &fused.name, "taska-tick") <= old_fired + 1);
    let after_takeover = fired(&platform, &fused.name, "taska-tick");
    wait_for_async("the new function's events to be counted", PATIENCE, || {
        fired(&platform, &solo.name, "tick") >= 2
    })
    .await;
    // taskb's trigger still fires in the fused function.
    let b_before = received(&out, "taskb").len();
    wait_for_async("taskb's trigger to keep firing", PATIENCE, || {
        received(&out, "taskb").len() > b_before
    })
    .await;

    // Deleting the fused function stops taskb's ticks; taska's, elsewhere, go on. Three more
    // of taska's events (a second apart) give taskb's trigger time to fire, were it running.
    platform.delete(&fused.name, false).await.unwrap();
    assert!(platform.worker_pids(&fused.name).is_empty());
    let b_stopped = received(&out, "taskb").len();
    let b_fired = fired(&platform, &fused.name, "taskb-tick");
    let a_now = from_trigger(&received(&out, "taska"), "tick");
    wait_for_async("three more events of taska's trigger", PATIENCE, || {
        from_trigger(&received(&out, "taska"), "tick") >= a_now + 3
    })
    .await;
    assert_eq!(received(&out, "taskb").len(), b_stopped);
    assert_eq!(fired(&platform, &fused.name, "taskb-tick"), b_fired);
    assert_eq!(fired(&platform, &fused.name, "taska-tick"), after_takeover);

    platform.shutdown().await;
    assert!(platform.worker_pids(&solo.name).is_empty());
}

#[tokio::test]
async fn local_cron_trigger_that_cannot_be_parsed_fails_the_deploy_naming_function_and_trigger() {
    use_shared_cache();
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("out");
    let a = task(
        temp.path(),
        &out,
        "taska",
        "        schedule: \"0 0 L * *\"\n",
    );
    let artifact = fusionizer::fuse::fuse_group("shop", &[&a]).unwrap();
    for platform in [
        LocalPlatform::new(&local_config(temp.path()), None).unwrap(),
        LocalPlatform::new(&local_config(temp.path()), hosted()).unwrap(),
    ] {
        let err = platform.deploy(&artifact, &NoProgress).await.unwrap_err();
        let PlatformError::Deploy {
            function, message, ..
        } = &err
        else {
            panic!("expected a deploy error, got {err:?}");
        };
        assert_eq!(function, &artifact.name);
        assert!(
            message.starts_with(
                "cron trigger `tick`: Failed to parse schedule from cron trigger configuration: 0 0 L * *: "
            ),
            "{message}"
        );
        assert!(platform.get(&artifact.name).await.unwrap().is_none());
        platform.shutdown().await;
    }
}
