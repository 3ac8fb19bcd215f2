//! Unit tests of the apply engine against the in-memory platform.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::engine::*;
use crate::fuse::Artifact;
use crate::plan::testing::Fake;
use crate::plan::{self, Action, Change, Plan};
use crate::platform::memory::{Call, MemoryPlatform};
use crate::platform::{FunctionState, NoProgress, Platform};

const P: &str = "shop";

async fn deploy_all(platform: &MemoryPlatform, fakes: &[&Fake]) {
    for f in fakes {
        platform.deploy(&f.build(), &NoProgress).await.unwrap();
    }
    platform.clear_calls();
}

/// The plan against the platform's current state; forgets the `list` call it made.
async fn plan_for(platform: &MemoryPlatform, desired: &[Artifact]) -> Plan {
    let live = platform.list(P).await.unwrap();
    platform.clear_calls();
    plan::compute(P, desired, &live, &[]).unwrap()
}

fn build(fakes: &[&Fake]) -> Vec<Artifact> {
    fakes.iter().map(|f| f.build()).collect()
}

/// Records the calls made before `before_deletes`, and optionally refuses the deletes.
struct RecordingHooks {
    platform: Arc<MemoryPlatform>,
    seen: Mutex<Option<(Vec<Call>, ApplyReport)>>,
    refuse: Option<String>,
}

#[async_trait]
impl ApplyHooks for RecordingHooks {
    async fn before_deletes(&self, report: &ApplyReport) -> Result<(), String> {
        *self.seen.lock().unwrap() = Some((self.platform.calls(), report.clone()));
        match &self.refuse {
            Some(r) => Err(r.clone()),
            None => Ok(()),
        }
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl ApplyObserver for Events {
    fn started(&self, change: &Change) {
        self.0
            .lock()
            .unwrap()
            .push(format!("start {}", change.function));
    }
    fn finished(&self, result: &ChangeResult) {
        let word = match result.outcome {
            Outcome::Applied => "applied",
            Outcome::Failed(_) => "failed",
            Outcome::NotAttempted(_) => "skipped",
        };
        self.0
            .lock()
            .unwrap()
            .push(format!("{word} {}", result.change.function));
    }
}

#[tokio::test]
async fn regroup_deploys_first_then_hook_then_deletes() {
    let platform = Arc::new(MemoryPlatform::default());
    let (a, b, c) = (
        Fake::new(P, &["taska"]),
        Fake::new(P, &["taskb"]),
        Fake::new(P, &["taskc"]),
    );
    deploy_all(&platform, &[&a, &b, &c]).await;
    let ab = Fake::new(P, &["taska", "taskb"]);
    let c2 = c.clone().version("taskc", "v2");
    let desired = build(&[&ab, &c2]);
    let plan = plan_for(&platform, &desired).await;
    let hooks = RecordingHooks {
        platform: platform.clone(),
        seen: Mutex::new(None),
        refuse: None,
    };
    let events = Events::default();
    let report = execute(
        platform.as_ref(),
        &plan,
        &desired,
        &ApplyOptions {
            parallelism: 4,
            observer: &events,
            hooks: &hooks,
        },
    )
    .await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.summary(), "4 applied, 0 failed, 0 not attempted");

    let (calls_before, report_before) = hooks.seen.lock().unwrap().clone().unwrap();
    let mut deployed: Vec<Call> = calls_before.clone();
    deployed.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        deployed,
        vec![
            Call::Deploy {
                name: "shop-taska-taskb".into(),
                digest: ab.build().digest
            },
            Call::Deploy {
                name: "shop-taskc".into(),
                digest: c2.build().digest
            },
        ],
        "only deploys happen before the hook"
    );
    assert_eq!(report_before.results.len(), 2);
    assert_eq!(
        report_before
            .deployed_tasks()
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["taska", "taskb", "taskc"]
    );
    let after: Vec<Call> = platform.calls()[calls_before.len()..].to_vec();
    let mut after_sorted = after.clone();
    after_sorted.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        after_sorted,
        vec![
            Call::Delete {
                name: "shop-taska".into(),
                force: false
            },
            Call::Delete {
                name: "shop-taskb".into(),
                force: false
            },
        ]
    );
    let names: Vec<String> = platform.functions().into_iter().map(|f| f.name).collect();
    assert_eq!(names, vec!["shop-taska-taskb", "shop-taskc"]);
    assert_eq!(events.0.lock().unwrap().len(), 8, "a start and an end each");
    // Converged.
    assert!(!plan_for(&platform, &desired).await.has_changes());
}

#[tokio::test]
async fn deploys_run_up_to_parallelism_at_once() {
    for (parallelism, expected) in [(1, 1), (2, 2), (4, 4), (10, 6)] {
        let platform = MemoryPlatform::default();
        let fakes: Vec<Fake> = (0..6)
            .map(|i| Fake::new(P, &[format!("task{i}").as_str()]))
            .collect();
        let desired: Vec<Artifact> = fakes.iter().map(Fake::build).collect();
        let plan = plan_for(&platform, &desired).await;
        let report = execute(
            &platform,
            &plan,
            &desired,
            &ApplyOptions {
                parallelism,
                ..ApplyOptions::default()
            },
        )
        .await;
        assert_eq!(report.applied(), 6);
        assert_eq!(
            platform.max_concurrent_deploys(),
            expected,
            "parallelism {parallelism}"
        );
    }
}

#[tokio::test]
async fn replacement_force_deletes_then_deploys() {
    let platform = MemoryPlatform::default();
    let a = Fake::new(P, &["taska"]);
    deploy_all(&platform, &[&a]).await;
    platform.set_state("shop-taska", FunctionState::Provisioning("building".into()));
    let desired = build(&[&a]);
    let plan = plan_for(&platform, &desired).await;
    assert_eq!(plan.changes[0].action, Action::Replace);
    platform.clear_calls();
    let report = execute(&platform, &plan, &desired, &ApplyOptions::default()).await;
    assert!(report.is_success());
    assert_eq!(
        platform.calls(),
        vec![
            Call::Delete {
                name: "shop-taska".into(),
                force: true
            },
            Call::Deploy {
                name: "shop-taska".into(),
                digest: a.build().digest
            },
        ]
    );
    assert_eq!(
        platform.function("shop-taska").unwrap().state,
        FunctionState::Ready
    );
}

#[tokio::test]
async fn failed_new_home_keeps_the_old_one_and_rerun_converges() {
    let platform = MemoryPlatform::default();
    let (a, b, c, d) = (
        Fake::new(P, &["taska"]),
        Fake::new(P, &["taskb"]),
        Fake::new(P, &["taskc"]),
        Fake::new(P, &["taskd"]),
    );
    deploy_all(&platform, &[&a, &b, &c, &d]).await;
    // Next phase: a+b fuse (fails to build), c changes, d is dropped.
    let ab = Fake::new(P, &["taska", "taskb"]);
    let c2 = c.clone().version("taskc", "v2");
    let desired = build(&[&ab, &c2]);
    platform.fail_deploy("shop-taska-taskb", "build command `exit 1` exited 1");
    let plan = plan_for(&platform, &desired).await;
    let report = execute(&platform, &plan, &desired, &ApplyOptions::default()).await;
    assert_eq!(report.summary(), "2 applied, 1 failed, 2 not attempted");
    assert_eq!(
        report.outcome("shop-taska-taskb"),
        Some(&Outcome::Failed(
            "build command `exit 1` exited 1".to_string()
        ))
    );
    assert_eq!(
        report.outcome("shop-taska"),
        Some(&Outcome::NotAttempted(
            "it still serves `taska` (its new function `shop-taska-taskb` failed)".to_string()
        ))
    );
    assert_eq!(report.outcome("shop-taskd"), Some(&Outcome::Applied));
    // Every task is still served by some function.
    let live = platform.list(P).await.unwrap();
    let served: Vec<String> = live
        .iter()
        .flat_map(crate::platform::LiveFunction::tasks)
        .collect();
    assert_eq!(served, vec!["taska", "taskb", "taskc"]);
    assert_eq!(
        platform.function("shop-taskc").unwrap().digest(),
        Some(c2.build().digest.as_str())
    );

    // Fixed: the next plan carries only what is left, and applying it converges.
    platform.clear_failures();
    let plan = plan_for(&platform, &desired).await;
    let actions: Vec<(Action, &str)> = plan
        .changes
        .iter()
        .map(|c| (c.action, c.function.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            (Action::Create, "shop-taska-taskb"),
            (Action::Delete, "shop-taska"),
            (Action::Delete, "shop-taskb"),
        ]
    );
    let report = execute(&platform, &plan, &desired, &ApplyOptions::default()).await;
    assert!(report.is_success(), "{report:?}");
    assert!(!plan_for(&platform, &desired).await.has_changes());
}

#[tokio::test]
async fn a_refusing_hook_skips_every_delete() {
    let platform = Arc::new(MemoryPlatform::default());
    let (a, b) = (Fake::new(P, &["taska"]), Fake::new(P, &["taskb"]));
    deploy_all(&platform, &[&a, &b]).await;
    let desired = build(&[&Fake::new(P, &["taska", "taskb"])]);
    let plan = plan_for(&platform, &desired).await;
    let hooks = RecordingHooks {
        platform: platform.clone(),
        seen: Mutex::new(None),
        refuse: Some("routes could not be switched".into()),
    };
    let report = execute(
        platform.as_ref(),
        &plan,
        &desired,
        &ApplyOptions {
            hooks: &hooks,
            ..ApplyOptions::default()
        },
    )
    .await;
    assert_eq!(report.summary(), "1 applied, 0 failed, 2 not attempted");
    assert!(!platform
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Delete { .. })));
}

#[tokio::test]
async fn failed_delete_is_reported_and_others_continue() {
    let platform = MemoryPlatform::default();
    let (a, b, c) = (
        Fake::new(P, &["taska"]),
        Fake::new(P, &["taskb"]),
        Fake::new(P, &["taskc"]),
    );
    deploy_all(&platform, &[&a, &b, &c]).await;
    platform.set_state("shop-taskb", FunctionState::Other("scaledToZero".into()));
    platform.fail_delete("shop-taska", "permission denied");
    let desired = build(&[&c]);
    let plan = plan_for(&platform, &desired).await;
    let report = execute(&platform, &plan, &desired, &ApplyOptions::default()).await;
    assert_eq!(report.summary(), "1 applied, 1 failed, 0 not attempted");
    assert!(platform.function("shop-taskb").is_none());
    assert!(platform.calls().contains(&Call::Delete {
        name: "shop-taskb".into(),
        force: true
    }));
}

#[tokio::test]
async fn artifact_that_does_not_match_the_plan_is_not_deployed() {
    let platform = MemoryPlatform::default();
    let a = Fake::new(P, &["taska"]);
    let plan = plan_for(&platform, &build(&[&a])).await;
    let other = build(&[&a.clone().version("taska", "v9")]);
    let report = execute(&platform, &plan, &other, &ApplyOptions::default()).await;
    assert_eq!(report.failed(), 1);
    assert!(platform.calls().is_empty(), "{:?}", platform.calls());
    let report = execute(&platform, &plan, &[], &ApplyOptions::default()).await;
    assert_eq!(
        report.outcome("shop-taska"),
        Some(&Outcome::Failed(
            "no fused artifact has this name".to_string()
        ))
    );
}

#[test]
fn outcome_lines_read_well_in_ci_logs() {
    use super::progress::outcome_line;
    let change = plan::compute(P, &build(&[&Fake::new(P, &["taska"])]), &[], &[])
        .unwrap()
        .changes
        .remove(0);
    let line = |outcome, ms| {
        outcome_line(
            &ChangeResult {
                change: change.clone(),
                outcome,
                elapsed: std::time::Duration::from_millis(ms),
            },
            false,
        )
    };
    assert_eq!(
        line(Outcome::Applied, 3240),
        "    Deployed shop-taska in 3.2s"
    );
    assert_eq!(
        line(Outcome::Failed("exit 1\n  | boom".into()), 50),
        "      Failed create shop-taska after 50ms: exit 1\n               | boom"
    );
    assert_eq!(
        line(Outcome::NotAttempted("why".into()), 0),
        "     Skipped create shop-taska: why"
    );
}
