//! The optimizer loop over a runner on the in-memory platform, with a scripted optimizer: rounds
//! are driven one by one at chosen offsets, so nothing here sleeps or depends on timing.

use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;

use super::testing::Scripted;
use super::*;
use crate::config::OptimizerConfig;
use crate::platform::memory::MemoryPlatform;
use crate::schedule::Selection;
use crate::serve::http::AppState;
use crate::serve::traces::CallRecord;
use crate::status::LiveGrouping;
use crate::traces::{Edge, Limits, Mode, Span, TaskStats, Via};

/// A project `shop` with tasks `a`, `b`, `c` (python:3.11) and `old` (python:3.10, so it
/// cannot share a function with the others), every task alone.
struct Fixture {
    dir: TempDir,
    platform: Arc<MemoryPlatform>,
    state: Arc<AppState>,
    runner: Arc<Runner>,
}

fn task(dir: &std::path::Path, name: &str, runtime: &str) {
    let root = dir.join("tasks").join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("function.yaml"),
        format!("metadata:\n  name: {name}\nspec:\n  runtime: \"{runtime}\"\n  handler: \"main:handler\"\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("main.py"),
        "def handler(context, event):\n    return 1\n",
    )
    .unwrap();
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b", "c"] {
            task(dir.path(), name, "python:3.11");
        }
        task(dir.path(), "old", "python:3.10");
        std::fs::write(
            dir.path().join("fusion.toml"),
            "[project]\nname = \"shop\"\n\n[tasks]\na = \"tasks/a\"\nb = \"tasks/b\"\nc = \"tasks/c\"\nold = \"tasks/old\"\n",
        )
        .unwrap();
        let workspace = crate::config::load(&dir.path().join("fusion.toml")).unwrap();
        let platform = Arc::new(MemoryPlatform::default());
        let state = Arc::new(AppState {
            port: 8123,
            ..AppState::for_tests(None, Duration::from_secs(1), 64)
        });
        let runner = Arc::new(Runner::new(
            workspace,
            platform.clone(),
            Selection::default(),
            state.clone(),
        ));
        let report = runner.regroup("start").await.unwrap();
        assert!(report.failed.is_empty(), "{report:?}");
        Fixture {
            dir,
            platform,
            state,
            runner,
        }
    }

    fn looper(&self, optimizer: Scripted, stable_intervals: u32, cooldown: u64) -> OptimizerLoop {
        OptimizerLoop::new(
            self.runner.clone(),
            self.state.clone(),
            Box::new(optimizer),
            &OptimizerConfig {
                interval: Duration::from_secs(1),
                min_gain: 0.1,
                stable_intervals,
                cooldown: Duration::from_secs(cooldown),
                ..OptimizerConfig::default()
            },
        )
    }

    /// The live grouping, read from the route table.
    fn routed(&self) -> Grouping {
        self.state
            .routes
            .current()
            .functions()
            .into_values()
            .map(|f| f.tasks.clone())
            .collect()
    }

    /// The `/-/state` document as JSON.
    fn state_doc(&self) -> serde_json::Value {
        let table = self.state.routes.current();
        serde_json::to_value(crate::serve::state::document(
            &self.state.board,
            &table,
            true,
            false,
        ))
        .unwrap()
    }

    fn deploys(&self) -> usize {
        self.platform
            .calls()
            .iter()
            .filter(|c| matches!(c, crate::platform::memory::Call::Deploy { .. }))
            .count()
    }
}

fn grouping(groups: &[&[&str]]) -> Grouping {
    groups
        .iter()
        .map(|g| g.iter().map(ToString::to_string).collect())
        .collect()
}

fn alone() -> Grouping {
    grouping(&[&["a"], &["b"], &["c"], &["old"]])
}

fn at(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

#[tokio::test]
async fn a_proposal_that_holds_is_applied_live_and_shows_where_it_came_from() {
    let fx = Fixture::new().await;
    assert_eq!(fx.routed(), alone());
    let ab = &[&["a", "b"][..], &["c"], &["old"]][..];
    let mut looper = fx.looper(
        Scripted::new(Source::Feedback, vec![Scripted::suggest(ab, Some(0.5))]),
        2,
        0,
    );
    match looper.round(at(1)).await {
        Outcome::Kept(why) => assert!(why.contains("1 of 2 consecutive runs"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.routed(), alone());
    // `/-/state` shows the proposal while it waits.
    let doc = fx.state_doc();
    assert_eq!(
        doc["optimizer"]["proposal"]["after"][0],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(
        doc["optimizer"]["proposal"]["before"][0],
        serde_json::json!(["a"])
    );
    assert_eq!(
        doc["optimizer"]["proposal"]["reasons"][0],
        "waiting: the proposal has come out the same in 1 of 2 consecutive runs"
    );
    assert_eq!(
        looper.round(at(2)).await,
        Outcome::Regrouped {
            from: alone(),
            to: grouping(ab),
        }
    );
    assert_eq!(fx.routed(), grouping(ab));
    let doc = fx.state_doc();
    assert!(doc["optimizer"]["proposal"].is_null(), "{doc}");
    // The live grouping stays once it is the proposal: no more regroups.
    let deploys = fx.deploys();
    for secs in 3..6 {
        assert_eq!(
            looper.round(at(secs)).await,
            Outcome::Kept("the live grouping is the proposal: scripted".to_string())
        );
    }
    assert_eq!(fx.deploys(), deploys);

    // Visible in /-/routes, in the metrics and, for `fusionizer status`, in the state dir.
    let routes = serde_json::to_value(fx.state.routes.current().document()).unwrap();
    assert_eq!(routes["grouping"]["source"], "feedback");
    assert!(routes["grouping"]["phase"].is_null());
    assert!(routes["grouping"]["chosen_at"].is_string());
    assert_eq!(routes["routes"]["a"]["function"], "shop-a-b");
    let metrics = fx.state.metrics.encode();
    assert!(
        metrics.contains(r#"fusionizer_transitions_total{result="ok",reason="feedback"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"fusionizer_transitions_total{result="ok",reason="static"} 1"#),
        "{metrics}"
    );
    let state_dir = fx.dir.path().join(".fusionizer");
    let note = LiveGrouping::read(&state_dir).expect("serve noted the live grouping");
    assert_eq!(note.source, "feedback");
    assert_eq!(note.groups, grouping(ab).groups());
    assert_eq!(note.serve_url, "http://127.0.0.1:8123");

    // Back to fusion.toml's grouping: the note goes, the routes say `static` again.
    fx.runner.choose(None);
    fx.runner.regroup("reload").await.unwrap();
    assert_eq!(fx.routed(), alone());
    assert!(LiveGrouping::read(&state_dir).is_none());
    let routes = serde_json::to_value(fx.state.routes.current().document()).unwrap();
    assert_eq!(routes["grouping"]["source"], "static");
}

#[tokio::test]
async fn two_groupings_proposed_in_turn_never_flip_and_one_just_left_waits_for_the_cooldown() {
    let fx = Fixture::new().await;
    let ab = &[&["a", "b"][..], &["c"], &["old"]][..];
    let bc = &[&["a"][..], &["b", "c"], &["old"]][..];
    let alone_ = &[&["a"][..], &["b"], &["c"], &["old"]][..];
    let mut script = Vec::new();
    for _ in 0..4 {
        script.push(Scripted::suggest(ab, Some(0.5)));
        script.push(Scripted::suggest(bc, Some(0.5)));
    }
    // Then `ab` holds (applied), then the grouping just left comes back, and holds.
    script.extend([
        Scripted::suggest(ab, Some(0.5)),
        Scripted::suggest(ab, Some(0.5)),
        Scripted::suggest(alone_, Some(0.5)),
    ]);
    let mut looper = fx.looper(Scripted::new(Source::Command, script), 2, 60);
    for secs in 1..=8 {
        let outcome = looper.round(at(secs)).await;
        assert!(
            matches!(outcome, Outcome::Kept(_)),
            "round {secs}: {outcome:?}"
        );
    }
    assert_eq!(fx.routed(), alone());
    assert_eq!(
        looper.round(at(9)).await,
        Outcome::Kept(format!(
            "proposes {}, but the proposal has come out the same in 1 of 2 consecutive runs",
            render(&grouping(ab))
        ))
    );
    assert!(matches!(
        looper.round(at(10)).await,
        Outcome::Regrouped { .. }
    ));
    assert_eq!(fx.routed(), grouping(ab));
    // The grouping just left wins two rounds, but within the cooldown it stays away.
    looper.round(at(11)).await;
    match looper.round(at(12)).await {
        Outcome::Kept(why) => assert!(
            why.contains("the last regroup was 2s ago; cooldown is 60s"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.routed(), grouping(ab));
    assert!(matches!(
        looper.round(at(70)).await,
        Outcome::Regrouped { .. }
    ));
    assert_eq!(fx.routed(), alone());
    let metrics = fx.state.metrics.encode();
    assert!(
        metrics.contains(r#"fusionizer_transitions_total{result="ok",reason="command"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failing_invalid_or_conflicting_answer_leaves_the_grouping_as_it_is() {
    let fx = Fixture::new().await;
    let script = vec![
        Err("`python3 opt.py` exited with status 1: Traceback …".to_string()),
        Scripted::suggest(&[&["a", "b", "zed"], &["c"], &["old"]], None),
        Scripted::suggest(&[&["a", "b"], &["old"]], None),
        Scripted::suggest(&[&["a", "b"], &["b", "c"], &["old"]], None),
        Scripted::suggest(&[&["a", "old"], &["b"], &["c"]], None),
        Scripted::suggest(&[&["a", "b", "c"], &[], &["old"]], None),
    ];
    let mut looper = fx.looper(Scripted::new(Source::Command, script), 1, 0);
    let deploys = fx.deploys();
    let mut reasons = Vec::new();
    for secs in 1..=6 {
        match looper.round(at(secs)).await {
            Outcome::Refused(why) => reasons.push(why),
            other => panic!("round {secs}: {other:?}"),
        }
    }
    assert_eq!(
        reasons[0],
        "`python3 opt.py` exited with status 1: Traceback …"
    );
    let expect = [
        (1, "task `zed` is not a task of this project with code"),
        (2, "task `c` is in no group"),
        (3, "task `b` is in more than one group"),
        (4, "`old`"),
        (5, "a group is empty"),
    ];
    for (i, needle) in expect {
        assert!(
            reasons[i].starts_with("refused the grouping ["),
            "{}",
            reasons[i]
        );
        assert!(reasons[i].contains(needle), "{needle}: {}", reasons[i]);
    }
    assert!(reasons[4].contains("runtime"), "{}", reasons[4]);
    assert_eq!(fx.deploys(), deploys, "nothing was deployed");
    assert_eq!(fx.routed(), alone());
    assert!(fx.runner.chosen().is_none());
}

#[tokio::test]
async fn a_gain_below_min_gain_keeps_the_grouping() {
    let fx = Fixture::new().await;
    let ab = &[&["a", "b"][..], &["c"], &["old"]][..];
    let mut looper = fx.looper(
        Scripted::new(Source::Feedback, vec![Scripted::suggest(ab, Some(0.05))]),
        1,
        0,
    );
    match looper.round(at(1)).await {
        Outcome::Kept(why) => assert!(why.contains("below min-gain 0.1"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.routed(), alone());
}

#[tokio::test]
async fn a_failed_regroup_puts_the_previous_grouping_back() {
    let fx = Fixture::new().await;
    fx.platform.fail_deploy("shop-a-b", "image build failed");
    let ab = &[&["a", "b"][..], &["c"], &["old"]][..];
    let mut looper = fx.looper(
        Scripted::new(Source::Feedback, vec![Scripted::suggest(ab, Some(0.5))]),
        1,
        0,
    );
    match looper.round(at(1)).await {
        Outcome::Failed(why) => assert!(why.contains("image build failed"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(fx.runner.chosen().is_none());
    assert_eq!(fx.runner.grouping().unwrap(), alone());
    assert_eq!(fx.routed(), alone());
    let metrics = fx.state.metrics.encode();
    assert!(
        metrics.contains(r#"fusionizer_transitions_total{result="failed",reason="feedback"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn each_round_sees_only_the_calls_since_the_last() {
    let fx = Fixture::new().await;
    let scripted = Scripted::new(Source::Feedback, vec![Err("just looking".to_string())]);
    let seen = scripted.seen.clone();
    let mut looper = fx.looper(scripted, 2, 0);
    let call = |n: usize| {
        for _ in 0..n {
            fx.state.traces.call(
                1,
                &CallRecord {
                    caller: "a",
                    callee: "b",
                    mode: Mode::Sync,
                    via: Via::Proxy,
                    status: 200,
                    duration: Duration::from_millis(2),
                    bytes: 10,
                },
            );
        }
    };
    call(5);
    looper.round(at(1)).await;
    call(3);
    looper.round(at(2)).await;
    looper.round(at(3)).await;
    let seen = seen.lock().unwrap();
    let counts: Vec<_> = seen.iter().map(|(_, edges)| edges.clone()).collect();
    assert_eq!(
        counts,
        vec![
            vec![("a".to_string(), "b".to_string(), 5)],
            vec![("a".to_string(), "b".to_string(), 3)],
            vec![],
        ]
    );
    assert_eq!(seen[0].0, alone());
}

fn doc(edges: &[(&str, &str, u64)], tasks: &[(&str, u64)], span_times: &[&str]) -> TraceDoc {
    TraceDoc {
        version: crate::traces::VERSION,
        started: "2026-12-06T19:00:00.000Z".to_string(),
        limits: Limits {
            spans: 8,
            edges: 8,
            sketch: "test".to_string(),
        },
        edges: edges
            .iter()
            .map(|(caller, callee, count)| Edge {
                caller: caller.to_string(),
                callee: callee.to_string(),
                mode: Mode::Sync,
                via: Via::Proxy,
                count: *count,
                errors: 1,
                p50_ms: 1.0,
                p99_ms: 2.0,
                bytes: count * 10,
            })
            .collect(),
        tasks: tasks
            .iter()
            .map(|(task, invocations)| TaskStats {
                task: task.to_string(),
                invocations: *invocations,
                errors: 0,
                p50_ms: 1.0,
                p99_ms: 2.0,
                peak_rss_p99_bytes: None,
            })
            .collect(),
        spans: span_times
            .iter()
            .map(|time| Span::Invocation {
                time: time.to_string(),
                trace_id: "t".to_string(),
                task: "a".to_string(),
                status: 200,
                duration_ms: 1.0,
                peak_rss_bytes: None,
            })
            .collect(),
    }
}

#[test]
fn a_window_subtracts_what_the_last_round_saw() {
    let earlier = doc(
        &[("a", "b", 5), ("b", "c", 4), ("c", "a", 9)],
        &[("a", 7)],
        &["2026-12-06T19:00:01.000Z"],
    );
    let now = doc(
        &[("a", "b", 8), ("b", "c", 4), ("c", "a", 2), ("c", "b", 1)],
        &[("a", 7), ("c", 2)],
        &["2026-12-06T19:00:01.000Z", "2026-12-06T19:00:02.000Z"],
    );
    let w = window(&earlier, "2026-12-06T19:00:01.500Z", &now);
    let edges: Vec<_> = w
        .edges
        .iter()
        .map(|e| (e.caller.as_str(), e.callee.as_str(), e.count, e.bytes))
        .collect();
    // `c → a` went down: recording restarted, so all of it is new.
    assert_eq!(
        edges,
        vec![("a", "b", 3, 30), ("c", "a", 2, 20), ("c", "b", 1, 10)]
    );
    assert_eq!(w.edges[0].errors, 0);
    let tasks: Vec<_> = w
        .tasks
        .iter()
        .map(|t| (t.task.as_str(), t.invocations))
        .collect();
    assert_eq!(tasks, vec![("c", 2)]);
    assert_eq!(w.spans.len(), 1);
    assert_eq!(w.started, "2026-12-06T19:00:01.500Z");
}
