//! Unit tests for the optimizer: Fusionize's rules over in-memory specs and trace documents.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::traces::{Edge, Limits, TaskStats};

fn spec(name: &str, runtime: &str, extra: &str) -> TaskSpec {
    let yaml = format!(
        "apiVersion: nuclio.io/v1beta1\nkind: NuclioFunction\nmetadata:\n  name: {name}\n\
         spec:\n  runtime: \"{runtime}\"\n  handler: main:handler\n{extra}"
    );
    TaskSpec {
        name: name.to_string(),
        dir: PathBuf::from(format!("/nowhere/{name}")),
        function: serde_norway::from_str(&yaml).unwrap(),
        runtime: runtime.to_string(),
        handler_module: "main".to_string(),
        handler_function: "handler".to_string(),
    }
}

fn specs(list: Vec<TaskSpec>) -> BTreeMap<String, TaskSpec> {
    list.into_iter().map(|s| (s.name.clone(), s)).collect()
}

fn edge(caller: &str, callee: &str, mode: Mode, via: Via, count: u64) -> Edge {
    Edge {
        caller: caller.to_string(),
        callee: callee.to_string(),
        mode,
        via,
        count,
        errors: 0,
        p50_ms: 1.0,
        p99_ms: 2.0,
        bytes: 100,
    }
}

fn stats(task: &str, rss: Option<u64>) -> TaskStats {
    TaskStats {
        task: task.to_string(),
        invocations: 10,
        errors: 0,
        p50_ms: 1.0,
        p99_ms: 2.0,
        peak_rss_p99_bytes: rss,
    }
}

fn doc(edges: Vec<Edge>, tasks: Vec<TaskStats>) -> TraceDoc {
    TraceDoc {
        version: crate::traces::VERSION,
        started: "2026-12-06T19:00:00.000Z".to_string(),
        limits: Limits {
            spans: 16,
            edges: 16,
            sketch: "test".to_string(),
        },
        edges,
        tasks,
        spans: Vec::new(),
    }
}

fn g(groups: &[&[&str]]) -> Grouping {
    groups
        .iter()
        .map(|g| g.iter().map(ToString::to_string).collect())
        .collect()
}

fn iot_specs() -> BTreeMap<String, TaskSpec> {
    specs(
        ["archive", "enrich", "ingest", "store", "validate"]
            .iter()
            .map(|n| spec(n, "python:3.11", ""))
            .collect(),
    )
}

/// The call graph of `examples/iot`: ingest → validate, ingest → enrich → store (sync), ingest ⇢ archive.
fn iot_doc() -> TraceDoc {
    doc(
        vec![
            edge("enrich", "store", Mode::Sync, Via::Proxy, 300),
            edge("ingest", "archive", Mode::Async, Via::Proxy, 300),
            edge("ingest", "enrich", Mode::Sync, Via::InProcess, 100),
            edge("ingest", "enrich", Mode::Sync, Via::Proxy, 200),
            edge("ingest", "validate", Mode::Sync, Via::Proxy, 300),
        ],
        ["archive", "ingest"]
            .iter()
            .map(|t| stats(t, Some(40 * 1024 * 1024)))
            .collect(),
    )
}

fn run(
    specs: &BTreeMap<String, TaskSpec>,
    current: &Grouping,
    traces: &TraceDoc,
    min: u64,
) -> Proposal {
    propose(
        Input {
            project: "iot",
            specs,
            current,
            traces,
        },
        Options { min_calls: min },
    )
}

fn decision(p: &Proposal, caller: &str, callee: &str, mode: Mode) -> (Decision, String) {
    let e = p
        .edges
        .iter()
        .find(|e| e.caller == caller && e.callee == callee && e.mode == mode)
        .unwrap();
    (e.decision, e.reason.clone())
}

#[test]
fn sync_components_group_and_the_async_callee_stays_apart() {
    let specs = iot_specs();
    let current = g(&[
        &["archive"],
        &["enrich"],
        &["ingest"],
        &["store"],
        &["validate"],
    ]);
    let p = run(&specs, &current, &iot_doc(), 10);
    assert_eq!(
        p.proposed,
        g(&[&["archive"], &["enrich", "ingest", "store", "validate"]])
    );
    assert!(p.changed());
    let (d, why) = decision(&p, "ingest", "archive", Mode::Async);
    assert_eq!(d, Decision::AsyncApart);
    assert!(why.contains("stays out of `ingest`'s group"), "{why}");
    let (d, why) = decision(&p, "ingest", "enrich", Mode::Sync);
    assert_eq!(d, Decision::Inlined);
    assert!(why.contains("300 calls"), "via summed: {why}");
    // 900 sync calls. "Before" is judged by the current grouping, not by the `via` of the
    // edges (the trace may span a regroup): none now, all with the proposal.
    assert_eq!(p.gain.sync_calls, 900);
    assert_eq!(p.gain.in_process_before, 0);
    assert_eq!(p.gain.in_process_after, 900);
    assert!((p.gain.expected - 1.0).abs() < 1e-9);
}

#[test]
fn a_grouping_chosen_elsewhere_keeps_the_edges_and_recomputes_the_gain() {
    let specs = iot_specs();
    let alone = g(&[
        &["archive"],
        &["enrich"],
        &["ingest"],
        &["store"],
        &["validate"],
    ]);
    // What an optimizer in serve might have chosen instead: only `enrich` and `store` together.
    let live = g(&[
        &["archive"],
        &["enrich", "store"],
        &["ingest"],
        &["validate"],
    ]);
    let p = run(&specs, &alone, &iot_doc(), 10).with_proposed(live.clone());
    assert_eq!(p.proposed, live);
    assert!(p.changed());
    assert_eq!(p.edges.len(), 4, "the edges still explain the traffic");
    // 300 of the 900 synchronous calls (enrich -> store) run in-process with it.
    assert_eq!(p.gain.sync_calls, 900);
    assert_eq!(p.gain.in_process_after, 300);
    assert!((p.gain.expected - 1.0 / 3.0).abs() < 1e-9);
    // Back to the grouping in force: no change, no gain.
    let p = run(&specs, &alone, &iot_doc(), 10).with_proposed(alone.clone());
    assert!(!p.changed());
    assert_eq!(p.gain.in_process_after, 0);
    assert!(p.gain.expected.abs() < 1e-9);
}

#[test]
fn the_proposal_in_force_is_no_change() {
    let specs = iot_specs();
    let current = g(&[&["archive"], &["enrich", "ingest", "store", "validate"]]);
    let p = run(&specs, &current, &iot_doc(), 10);
    assert!(!p.changed());
    assert!(p.gain.expected.abs() < 1e-9);
}

#[test]
fn an_async_callee_also_called_synchronously_joins_and_says_why() {
    let specs = iot_specs();
    let current = g(&[
        &["archive"],
        &["enrich"],
        &["ingest"],
        &["store"],
        &["validate"],
    ]);
    let mut traces = iot_doc();
    traces
        .edges
        .push(edge("enrich", "archive", Mode::Sync, Via::Proxy, 50));
    let p = run(&specs, &current, &traces, 10);
    assert_eq!(
        p.proposed,
        g(&[&["archive", "enrich", "ingest", "store", "validate"]])
    );
    let (d, why) = decision(&p, "ingest", "archive", Mode::Async);
    assert_eq!(d, Decision::AsyncJoined);
    assert!(
        why.contains("also called synchronously by `enrich` (50 calls)"),
        "{why}"
    );
}

#[test]
fn edges_below_min_calls_are_ignored() {
    let specs = iot_specs();
    let current = g(&[
        &["archive"],
        &["enrich"],
        &["ingest"],
        &["store"],
        &["validate"],
    ]);
    let p = run(&specs, &current, &iot_doc(), 301);
    assert_eq!(p.proposed, current);
    let (d, why) = decision(&p, "ingest", "validate", Mode::Sync);
    assert_eq!(d, Decision::BelowMinCalls);
    assert!(why.contains("300 calls < min-calls 301"), "{why}");
    assert_eq!(p.gain.in_process_after, 0);
}

#[test]
fn runtimes_never_share_a_group_and_the_split_is_hottest_first() {
    let mut specs = iot_specs();
    specs.insert("store".into(), spec("store", "python:3.10", ""));
    let current = g(&[
        &["archive"],
        &["enrich"],
        &["ingest"],
        &["store"],
        &["validate"],
    ]);
    let p = run(&specs, &current, &iot_doc(), 10);
    assert_eq!(
        p.proposed,
        g(&[&["archive"], &["enrich", "ingest", "validate"], &["store"]])
    );
    let (d, why) = decision(&p, "enrich", "store", Mode::Sync);
    assert_eq!(d, Decision::Conflict);
    assert!(why.contains("spec.runtime"), "{why}");
    // The same input, the same answer.
    assert_eq!(run(&specs, &current, &iot_doc(), 10), p);
}

#[test]
fn conflicting_specs_split_deterministically() {
    // validate and store disagree on an env var's value: both edges are equally hot, so the
    // one whose caller, then callee, sorts first wins.
    let mut specs = iot_specs();
    let env = |v: &str| format!("  env:\n    - name: MODE\n      value: {v}\n");
    specs.insert(
        "validate".into(),
        spec("validate", "python:3.11", &env("a")),
    );
    specs.insert("store".into(), spec("store", "python:3.11", &env("b")));
    let current = g(&[
        &["archive"],
        &["enrich"],
        &["ingest"],
        &["store"],
        &["validate"],
    ]);
    let p = run(&specs, &current, &iot_doc(), 10);
    // enrich→store (300), ingest→enrich (300), ingest→validate (300): enrich→store first, then
    // ingest→enrich; ingest→validate would bring validate next to store.
    assert_eq!(
        p.proposed,
        g(&[&["archive"], &["enrich", "ingest", "store"], &["validate"]])
    );
    let (d, why) = decision(&p, "ingest", "validate", Mode::Sync);
    assert_eq!(d, Decision::Conflict);
    assert!(why.contains("spec.env"), "{why}");
}

#[test]
fn unseen_tasks_keep_their_current_company_and_unknown_tasks_are_named() {
    let mut specs = iot_specs();
    specs.insert("report".into(), spec("report", "python:3.11", ""));
    specs.insert("audit".into(), spec("audit", "python:3.11", ""));
    let current = g(&[
        &["archive"],
        &["audit", "report", "validate"],
        &["enrich"],
        &["ingest"],
        &["store"],
    ]);
    let mut traces = iot_doc();
    traces
        .edges
        .push(edge("ingest", "ghost", Mode::Sync, Via::Proxy, 90));
    let p = run(&specs, &current, &traces, 10);
    assert!(
        p.proposed
            .groups()
            .contains(&g(&[&["audit", "report"]]).groups()[0]),
        "{:?}",
        p.proposed
    );
    assert!(p
        .tasks
        .iter()
        .any(|n| n.task == "audit" && n.reason.contains("not seen")));
    let (d, why) = decision(&p, "ingest", "ghost", Mode::Sync);
    assert_eq!(d, Decision::UnknownTask);
    assert!(why.contains("`ghost` is not a task"), "{why}");
}

#[test]
fn a_seen_task_without_an_inlined_edge_runs_alone_even_if_grouped_now() {
    let specs = iot_specs();
    let current = g(&[
        &["archive", "ingest"],
        &["enrich"],
        &["store"],
        &["validate"],
    ]);
    let p = run(&specs, &current, &iot_doc(), 10);
    assert!(p.proposed.groups().contains(&vec!["archive".to_string()]));
    assert!(p
        .tasks
        .iter()
        .any(|n| n.task == "archive" && n.reason.contains("runs alone")));
}

#[test]
fn feedback_judges_the_gain_and_hysteresis_damps_flapping() {
    let specs = iot_specs();
    let live = g(&[
        &["archive"],
        &["enrich"],
        &["ingest"],
        &["store"],
        &["validate"],
    ]);
    let mut config = OptimizerConfig::default();
    let out = feedback(&iot_doc(), &config, "iot", &specs, &live);
    assert!(out.worth_it);
    config.min_gain = 1.0;
    config.min_calls = 1000;
    assert!(!feedback(&iot_doc(), &config, "iot", &specs, &live).worth_it);

    let config = OptimizerConfig {
        stable_intervals: 2,
        cooldown: Duration::from_secs(300),
        ..OptimizerConfig::default()
    };
    let mut damper = Hysteresis::new(&config);
    let a = g(&[&["archive"], &["enrich", "ingest", "store", "validate"]]);
    let b = live.clone();
    let at = Duration::from_secs;
    assert!(matches!(damper.decide(at(60), Some(&a)), Verdict::Keep(_)));
    assert_eq!(damper.decide(at(120), Some(&a)), Verdict::Regroup);
    // Straight back: two runs, but inside the cooldown.
    assert!(matches!(damper.decide(at(180), Some(&b)), Verdict::Keep(_)));
    let Verdict::Keep(why) = damper.decide(at(240), Some(&b)) else {
        panic!("inside the cooldown")
    };
    assert!(why.contains("cooldown"), "{why}");
    // A run with nothing to do resets the count.
    assert!(matches!(damper.decide(at(500), None), Verdict::Keep(_)));
    assert!(matches!(damper.decide(at(560), Some(&b)), Verdict::Keep(_)));
    assert_eq!(damper.decide(at(620), Some(&b)), Verdict::Regroup);
}

#[test]
fn memory_is_the_largest_p99_of_the_group_plus_headroom() {
    let specs = iot_specs();
    let current = g(&[
        &["archive"],
        &["enrich"],
        &["ingest"],
        &["store"],
        &["validate"],
    ]);
    let traces = iot_doc();
    let p = run(&specs, &current, &traces, 10);
    let limits = edit::memory_limits(&p, &traces, 25);
    assert_eq!(limits.len(), 2);
    assert_eq!(limits[0].tasks, vec!["archive".to_string()]);
    assert_eq!(limits[0].limit, "50Mi");
    assert_eq!(limits[1].peak_rss_p99_bytes, 40 * 1024 * 1024);
}

mod protocol {
    use super::*;
    use crate::optimize::command::{
        check, request, Answer, OptimizerError, RequestPhase, RequestSettings,
    };

    fn req(specs: &BTreeMap<String, TaskSpec>) -> command::Request {
        request(
            "iot",
            &g(&[
                &["archive"],
                &["enrich"],
                &["ingest"],
                &["store"],
                &["validate"],
            ]),
            specs,
            RequestPhase {
                number: Some(1),
                after: Some("0s".into()),
            },
            RequestSettings {
                min_calls: 10,
                min_gain: 0.05,
            },
            iot_doc(),
        )
    }

    #[test]
    fn a_grouping_is_completed_with_the_tasks_it_leaves_out() {
        let specs = iot_specs();
        let answer = check(
            br#"{"version":1,"grouping":[["validate","ingest"]],"reason":"hot"}"#,
            &req(&specs),
            &specs,
        )
        .unwrap();
        assert_eq!(
            answer,
            Answer::Regroup {
                grouping: g(&[
                    &["archive"],
                    &["enrich"],
                    &["ingest", "validate"],
                    &["store"]
                ]),
                reason: "hot".into()
            }
        );
        let keep = check(
            br#"{"version":1,"keep":true,"reason":"fine"}"#,
            &req(&specs),
            &specs,
        );
        assert_eq!(
            keep.unwrap(),
            Answer::Keep {
                reason: "fine".into()
            }
        );
    }

    #[test]
    fn bad_answers_are_refused_with_the_reason() {
        let mut specs = iot_specs();
        specs.insert("store".into(), spec("store", "python:3.10", ""));
        let r = req(&specs);
        let err = |out: &str| check(out.as_bytes(), &r, &specs).unwrap_err();
        assert_eq!(err("not json").kind(), "invalid-json");
        assert_eq!(
            err(r#"{"version":2,"keep":true,"reason":""}"#).kind(),
            "version"
        );
        assert_eq!(err(r#"{"version":1,"reason":""}"#).kind(), "invalid-json");
        let e = err(r#"{"version":1,"grouping":[["ghost"]],"reason":""}"#);
        assert_eq!(
            e.to_string(),
            "optimizer command proposed an invalid grouping: unknown task `ghost`"
        );
        let e = err(r#"{"version":1,"grouping":[["ingest"],["ingest","store"]],"reason":""}"#);
        assert!(e.to_string().contains("task `ingest` appears twice"), "{e}");
        let e = err(r#"{"version":1,"grouping":[["enrich","store"]],"reason":""}"#);
        assert!(matches!(e, OptimizerError::Conflict { .. }), "{e}");
        assert!(e.to_string().contains("spec.runtime"), "{e}");
        assert_eq!(
            err(r#"{"version":1,"grouping":[[]],"reason":""}"#).kind(),
            "invalid-grouping"
        );
    }
}

#[test]
fn feedback_converges_on_the_iot_graph_within_three_intervals_and_stays() {
    let specs = iot_specs();
    let config = OptimizerConfig::default();
    let mut damper = Hysteresis::new(&config);
    let mut live = g(&[
        &["archive"],
        &["enrich"],
        &["ingest"],
        &["store"],
        &["validate"],
    ]);
    let mut regroups = Vec::new();
    for interval in 1..=10u64 {
        let step = feedback(&iot_doc(), &config, "iot", &specs, &live);
        let wanted = step.worth_it.then_some(&step.proposal.proposed);
        if damper.decide(config.interval * u32::try_from(interval).unwrap(), wanted)
            == Verdict::Regroup
        {
            live = step.proposal.proposed.clone();
            regroups.push(interval);
        }
    }
    assert_eq!(regroups, vec![2], "one regroup, at the second interval");
    assert_eq!(
        live,
        g(&[&["archive"], &["enrich", "ingest", "store", "validate"]])
    );
}
