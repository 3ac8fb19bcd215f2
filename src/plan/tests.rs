//! Unit tests of plan computation, rendering and saved-plan staleness.

use super::render;
use super::saved::SavedPlan;
use super::testing::Fake;
use super::*;
use crate::platform::{FunctionState, LiveFunction};
use crate::schedule::{Grouping, Selection};

const P: &str = "shop";

fn plan(desired: &[&Fake], live: &[LiveFunction]) -> Plan {
    let desired: Vec<Artifact> = desired.iter().map(|f| f.build()).collect();
    compute(P, &desired, live, &[]).expect("plan")
}

fn unowned(name: &str, project: Option<&str>) -> LiveFunction {
    let mut labels = BTreeMap::new();
    if let Some(p) = project {
        labels = crate::platform::memory::ownership_labels(p);
    }
    LiveFunction {
        name: name.to_string(),
        labels,
        annotations: BTreeMap::new(),
        state: FunctionState::Ready,
        config_yaml: None,
    }
}

#[test]
fn empty_platform_plans_all_creates() {
    let a = Fake::new(P, &["taska"]);
    let b = Fake::new(P, &["taskb", "taskc"]);
    let plan = plan(&[&a, &b], &[]);
    let actions: Vec<(Action, &str)> = plan
        .changes
        .iter()
        .map(|c| (c.action, c.function.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            (Action::Create, "shop-taska"),
            (Action::Create, "shop-taskb-taskc")
        ]
    );
    assert_eq!(
        plan.summary,
        Summary {
            add: 2,
            change: 0,
            destroy: 0
        }
    );
    assert_eq!(plan.changes[1].tasks, vec!["taskb", "taskc"]);
    assert_eq!(plan.changes[0].reason, "not deployed yet");
    assert!(plan.changes[0].old_digest.is_none());
    assert_eq!(
        plan.changes[0].new_digest.as_deref(),
        Some(a.build().digest.as_str())
    );
    insta::assert_snapshot!("all_creates_text", render::text(&plan, false));
    insta::assert_snapshot!("all_creates_markdown", render::markdown(&plan));
}

#[test]
fn matching_live_state_plans_no_changes() {
    let a = Fake::new(P, &["taska"]);
    let b = Fake::new(P, &["taskb"]);
    let plan = plan(&[&a, &b], &[a.live(), b.live()]);
    assert!(!plan.has_changes());
    assert_eq!(plan.unchanged, vec!["shop-taska", "shop-taskb"]);
    assert_eq!(plan.summary, Summary::default());
    assert_eq!(
        render::text(&plan, false),
        format!("{}\n", render::NO_CHANGES)
    );
    insta::assert_snapshot!("no_changes_markdown", render::markdown(&plan));
    insta::assert_snapshot!("no_changes_json", render::json(&plan));
}

#[test]
fn edited_task_plans_one_update_naming_the_task() {
    let ab = Fake::new(P, &["taska", "taskb"]);
    let c = Fake::new(P, &["taskc"]);
    let edited = ab.clone().version("taskb", "v2");
    let plan = plan(&[&edited, &c], &[ab.live(), c.live()]);
    assert_eq!(plan.changes.len(), 1);
    let change = &plan.changes[0];
    assert_eq!(change.action, Action::Update);
    assert_eq!(change.function, "shop-taska-taskb");
    assert_eq!(change.changed_tasks, vec!["taskb"]);
    assert!(
        change.changed_fields.is_empty(),
        "{:?}",
        change.changed_fields
    );
    assert_eq!(change.reason, "files of task `taskb` changed");
    assert_eq!(change.old_digest.as_deref(), ab.live().digest());
    assert!(change
        .diff
        .as_deref()
        .unwrap()
        .contains("fusionizer.io/digest"));
    assert_eq!(plan.unchanged, vec!["shop-taskc"]);
    assert_eq!(
        plan.summary,
        Summary {
            add: 0,
            change: 1,
            destroy: 0
        }
    );
    insta::assert_snapshot!("update_text", render::text(&plan, false));
    insta::assert_snapshot!("update_markdown", render::markdown(&plan));
}

#[test]
fn merged_field_change_is_named_and_secrets_are_masked() {
    let old = Fake::new(P, &["taska"])
        .env("API_TOKEN", "hunter2")
        .env("db_password", "same-pass")
        .env("LOG_LEVEL", "info");
    let new = Fake::new(P, &["taska"])
        .env("API_TOKEN", "swordfish")
        .env("db_password", "same-pass")
        .env("LOG_LEVEL", "debug")
        .workers(4);
    let plan = plan(&[&new], &[old.live()]);
    let change = &plan.changes[0];
    assert_eq!(change.action, Action::Update);
    assert!(change.changed_tasks.is_empty());
    assert_eq!(
        change.changed_fields,
        vec!["spec.env", "spec.triggers.http.numWorkers"]
    );
    assert_eq!(
        change.reason,
        "merged function.yaml changed: `spec.env`, `spec.triggers.http.numWorkers`"
    );
    let diff = change.diff.as_deref().unwrap();
    for secret in ["hunter2", "swordfish", "same-pass"] {
        assert!(!diff.contains(secret), "{secret} leaked into:\n{diff}");
    }
    assert!(
        diff.contains(&format!("+    value: {}", diff::MASKED_CHANGED)),
        "{diff}"
    );
    assert!(diff.contains("+    value: debug"), "{diff}");
    let json = render::json(&plan);
    assert!(!json.contains("hunter2") && !json.contains("swordfish"));
    insta::assert_snapshot!("masked_update_text", render::text(&plan, false));
}

#[test]
fn secret_names_are_recognised_case_insensitively() {
    for name in [
        "API_TOKEN",
        "token",
        "MySecret",
        "DB_PASSWORD",
        "aws_access_key_id",
    ] {
        assert!(diff::is_secret_name(name), "{name}");
    }
    for name in ["LOG_LEVEL", "PASSWD", "HOST"] {
        assert!(!diff::is_secret_name(name), "{name}");
    }
}

#[test]
fn regroup_plans_creates_and_deletes_with_where_tasks_go() {
    let a = Fake::new(P, &["taska"]);
    let b = Fake::new(P, &["taskb"]);
    let c = Fake::new(P, &["taskc"]);
    let ab = Fake::new(P, &["taska", "taskb"]);
    let plan = plan(&[&ab, &c], &[a.live(), b.live(), c.live()]);
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
    assert_eq!(
        plan.changes[0].reason,
        "regrouped: `taska` from `shop-taska`; `taskb` from `shop-taskb`"
    );
    assert_eq!(
        plan.changes[1].reason,
        "not in the selected grouping: `taska` now in `shop-taska-taskb`"
    );
    assert_eq!(
        plan.summary,
        Summary {
            add: 1,
            change: 0,
            destroy: 2
        }
    );
    insta::assert_snapshot!("regroup_text", render::text(&plan, false));
    insta::assert_snapshot!("regroup_markdown", render::markdown(&plan));
    insta::assert_snapshot!("regroup_json", render::json(&plan));

    // With the groupings, the markdown also draws them before → after, inside the block.
    let before = Grouping::new([["taska"], ["taskb"]]);
    let after = Grouping::new([["taska", "taskb"]]);
    let drawn = render::markdown_with_grouping(&plan, &before, &after);
    assert!(
        drawn.starts_with(&render::markdown(&plan).replace("\n</details>\n", "")),
        "{drawn}"
    );
    assert!(
        drawn.contains("Grouping, before → after:\n\n```mermaid\nflowchart LR\n"),
        "{drawn}"
    );
    assert!(
        drawn.contains("subgraph after_f0[\"shop-taska-taskb\"]"),
        "{drawn}"
    );
    assert!(
        drawn.contains("subgraph before_f1[\"shop-taskb\"]"),
        "{drawn}"
    );
    assert!(drawn.ends_with("```\n\n</details>\n"), "{drawn}");
    // The same grouping on both sides: no diagram.
    assert_eq!(
        render::markdown_with_grouping(&plan, &after, &after),
        render::markdown(&plan)
    );
}

#[test]
fn broken_live_function_is_replaced_with_reason() {
    let a = Fake::new(P, &["taska"]);
    let b = Fake::new(P, &["taskb"]);
    let stuck = Fake::new(P, &["taskc"]);
    let live = vec![
        a.live_in(FunctionState::Error("build failed".into())),
        b.live_in(FunctionState::Unhealthy(String::new())),
        stuck.live_in(FunctionState::Provisioning("building".into())),
    ];
    let b2 = b.clone().version("taskb", "v2");
    let plan = plan(&[&a, &b2, &stuck], &live);
    let reasons: Vec<(Action, &str)> = plan
        .changes
        .iter()
        .map(|c| (c.action, c.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (Action::Replace, "live state is `error`: build failed"),
            (
                Action::Replace,
                "live state is `unhealthy`; the desired version also differs"
            ),
            (Action::Replace, "stuck provisioning (`building`)"),
        ]
    );
    assert_eq!(
        plan.summary,
        Summary {
            add: 3,
            change: 0,
            destroy: 3
        }
    );
    insta::assert_snapshot!("replace_text", render::text(&plan, false));
}

#[test]
fn every_action_in_one_plan_renders_every_symbol() {
    let a = Fake::new(P, &["taska"]);
    let b = Fake::new(P, &["taskb"]);
    let c = Fake::new(P, &["taskc"]);
    let d = Fake::new(P, &["taskd"]);
    let plan = plan(
        &[&a.clone().version("taska", "v2"), &b, &d],
        &[
            a.live(),
            b.live_in(FunctionState::Error(String::new())),
            c.live(),
        ],
    );
    let actions: Vec<Action> = plan.changes.iter().map(|c| c.action).collect();
    assert_eq!(
        actions,
        vec![
            Action::Update,
            Action::Replace,
            Action::Create,
            Action::Delete
        ]
    );
    assert_eq!(
        plan.changes[3].reason,
        "not in the selected grouping: `taskc` no longer present"
    );
    insta::assert_snapshot!("every_action_text", render::text(&plan, false));
    insta::assert_snapshot!("every_action_markdown", render::markdown(&plan));
    insta::assert_snapshot!("every_action_json", render::json(&plan));
}

#[test]
fn legend_lists_only_the_symbols_used() {
    let a = Fake::new(P, &["taska"]);
    let text = render::text(&plan(&[], &[a.live()]), false);
    assert!(text.contains("  - destroy"), "{text}");
    assert!(!text.contains("+ create"), "{text}");
    assert!(!text.contains("~ update"), "{text}");
    assert!(text.ends_with("Plan: 0 to add, 0 to change, 1 to destroy.\n"));
}

#[test]
fn colour_only_when_asked() {
    let a = Fake::new(P, &["taska"]);
    let p = plan(&[&a], &[]);
    assert!(!render::text(&p, false).contains('\x1b'));
    assert!(render::text(&p, true).contains("\x1b[32m  +\x1b[0m"));
}

#[test]
fn same_named_unowned_function_is_an_error_not_an_overwrite() {
    let a = Fake::new(P, &["taska"]);
    let b = Fake::new(P, &["taskb"]);
    let err = compute(
        P,
        &[a.build(), b.build()],
        &[],
        &[
            unowned("shop-taska", None),
            unowned("shop-taskb", Some("other")),
        ],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "functions `shop-taska`, `shop-taskb` already exist on the platform but are not owned by project `shop`"
    );
    let err = Error::from(err);
    assert_eq!(err.code, ExitCode::Failure);
    assert_eq!(
        err.causes,
        vec![
            "`shop-taska` has no fusionizer ownership labels",
            "`shop-taskb` belongs to project `other`"
        ]
    );
    assert!(err.hint.is_some());
}

#[test]
fn unowned_functions_are_never_touched() {
    let a = Fake::new(P, &["taska"]);
    // Listed by a sloppy platform, but without our labels: neither deleted nor counted.
    let stranger = unowned("shop-legacy", None);
    let other = unowned("shop-other", Some("other"));
    let plan = plan(&[&a], &[a.live(), stranger, other]);
    assert!(!plan.has_changes(), "{:?}", plan.changes);
}

#[test]
fn live_function_without_details_still_plans_an_update() {
    let a = Fake::new(P, &["taska"]);
    let mut live = a.live();
    live.config_yaml = None;
    live.annotations
        .remove(crate::contract::ANNOTATION_TASK_DIGESTS);
    live.annotations.insert(
        crate::contract::ANNOTATION_DIGEST.into(),
        "sha256:old".into(),
    );
    let plan = plan(&[&a], &[live]);
    assert_eq!(plan.changes[0].action, Action::Update);
    assert_eq!(
        plan.changes[0].reason,
        "digest differs (the platform keeps no details of the live version)"
    );
    assert!(plan.changes[0].diff.is_none());
}

#[test]
fn duplicate_desired_names_are_an_error() {
    let a = Fake::new(P, &["taska"]).build();
    assert!(matches!(
        compute(P, &[a.clone(), a], &[], &[]),
        Err(PlanError::DuplicateName(_))
    ));
}

#[test]
fn fingerprints_follow_inputs_and_live_state() {
    let a = Fake::new(P, &["taska"]);
    let p1 = plan(&[&a], &[a.live()]);
    let p2 = plan(&[&a.clone().version("taska", "v2")], &[a.live()]);
    let p3 = plan(
        &[&a],
        &[a.live_in(FunctionState::Other("scaledToZero".into()))],
    );
    assert_eq!(p1.fingerprint.live, p2.fingerprint.live);
    assert_ne!(p1.fingerprint.inputs, p2.fingerprint.inputs);
    assert_eq!(p1.fingerprint.inputs, p3.fingerprint.inputs);
    assert_ne!(p1.fingerprint.live, p3.fingerprint.live);
    assert_eq!(p1, plan(&[&a], &[a.live()]), "deterministic");
}

#[test]
fn saved_plan_round_trips_and_reports_what_moved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    let a = Fake::new(P, &["taska"]);
    let b = Fake::new(P, &["taskb"]);
    let desired = vec![a.clone().version("taska", "v2").build(), b.build()];
    let live = vec![a.live()];
    let p = compute(P, &desired, &live, &[]).unwrap();
    let saved = SavedPlan::new(p, Selection::Phase(2), "memory:t".into(), &desired, &live);
    saved.write(&path).unwrap();
    let back = SavedPlan::read(&path).unwrap();
    assert_eq!(back, saved);
    assert!(back.moved("memory:t", P, &desired, &live).is_empty());
    back.check_fresh(&path, "memory:t", P, &desired, &live)
        .unwrap();

    // The live function was redeployed and another one appeared; a task's files changed again.
    let c = Fake::new(P, &["taskc"]);
    let live_now = vec![
        a.clone().version("taska", "v2").live(),
        c.live_in(FunctionState::Error(String::new())),
    ];
    let desired_now = vec![a.clone().version("taska", "v3").build(), b.build()];
    let moved = back.moved("memory:other", P, &desired_now, &live_now);
    let expected = vec![
        "the plan was made for platform `memory:t`, not `memory:other`".to_string(),
        "inputs: `shop-taska` changed (files of task `taska`)".to_string(),
        format!(
            "live: `shop-taska` was redeployed ({} -> {})",
            a.build().digest,
            a.clone().version("taska", "v2").build().digest
        ),
        "live: `shop-taskc` appeared on the platform (state `error`)".to_string(),
    ];
    assert_eq!(moved, expected);
    let err = back
        .check_fresh(&path, "memory:other", P, &desired_now, &live_now)
        .unwrap_err();
    assert_eq!(err.code, ExitCode::TempFail);
    assert_eq!(err.causes, expected);
    assert!(err.hint.unwrap().contains("--phase 2"));
}

#[test]
fn saved_plan_holds_no_env_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    let old = Fake::new(P, &["taska"])
        .env("LOG_LEVEL", "info")
        .env("API_KEY", "k-1");
    let new = Fake::new(P, &["taska"])
        .env("LOG_LEVEL", "info")
        .env("API_KEY", "k-2");
    let desired = vec![new.build()];
    let live = vec![old.live()];
    let p = compute(P, &desired, &live, &[]).unwrap();
    SavedPlan::new(p, Selection::default(), "memory:t".into(), &desired, &live)
        .write(&path)
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("k-1") && !text.contains("k-2"), "{text}");
}

#[test]
fn saved_plan_with_another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    std::fs::write(&path, r#"{"format_version": 99}"#).unwrap();
    let err = SavedPlan::read(&path).unwrap_err();
    assert!(err.message.contains("format version 99"), "{err}");
    std::fs::write(&path, "not json").unwrap();
    let err = SavedPlan::read(&path).unwrap_err();
    assert!(
        err.message.contains("is not a fusionizer plan file"),
        "{err}"
    );
}

#[test]
fn platform_normalised_live_yaml_shows_only_real_changes() {
    // A platform may give the live function.yaml back without `apiVersion`/`kind`, with keys
    // reordered and empty values added; none of that is a change.
    let a = Fake::new(P, &["taska"]);
    let mut live = a.live();
    let yaml = live.config_yaml.take().unwrap();
    let mut lines: Vec<&str> = yaml.lines().skip(2).collect();
    let spec = lines.iter().position(|l| *l == "spec:").unwrap();
    lines.insert(spec + 1, "  description: ''");
    lines.insert(spec + 1, "  volumes: []");
    let metadata: Vec<&str> = lines.drain(..spec).collect();
    lines.extend(metadata);
    live.config_yaml = Some(lines.join("\n"));
    let plan = plan(&[&a.clone().version("taska", "v2")], &[live]);
    let change = &plan.changes[0];
    assert_eq!(change.changed_fields, Vec::<String>::new());
    assert_eq!(change.reason, "files of task `taska` changed");
    let diff = change.diff.as_deref().unwrap();
    assert!(
        !diff.contains("apiVersion") && !diff.contains("volumes"),
        "{diff}"
    );
}

#[test]
fn live_state_annotations_alone_are_an_update_only_when_the_artifacts_carry_them() {
    use crate::platform::owner::GroupingOwner;
    let a = Fake::new(P, &["taska"]);
    let stamped = |owner: &GroupingOwner| {
        let mut artifact = a.build();
        crate::fuse::metadata::stamp(&mut artifact, &owner.annotations());
        artifact
    };
    let serve = GroupingOwner::Phase(1);
    let live = crate::platform::memory::live_from_artifact(&stamped(&serve));
    // Same content, same stamps: unchanged. No stamps (`--at`/`--phase`): unchanged too.
    assert!(
        !compute(P, &[stamped(&serve)], std::slice::from_ref(&live), &[])
            .unwrap()
            .has_changes()
    );
    assert!(!compute(P, &[a.build()], std::slice::from_ref(&live), &[])
        .unwrap()
        .has_changes());
    // Other stamps: an update that says so, and no diff of the annotations.
    let other = GroupingOwner::Phase(2);
    let plan = compute(P, &[stamped(&other)], &[live], &[]).unwrap();
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(plan.changes[0].action, Action::Update);
    assert_eq!(
        plan.changes[0].reason,
        "live-state annotations changed: `fusionizer.io/phase` (same content)"
    );
    assert!(plan.changes[0].changed_fields.is_empty());
}
