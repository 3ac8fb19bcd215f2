//! `fusionizer destroy` and `plan --destroy`: every function the project owns is deleted through
//! the same plan, confirmation, lock and exit codes as apply, and nothing else is touched.

use serde_json::Value;

use fusionizer::plan::testing::Fake;
use fusionizer::plan::{self, Action};
use fusionizer::platform::memory::{Call, MemoryPlatform};

use crate::support::{
    append, expect, expect_nuctl, live, live_functions, quickstart, quickstart_on_nuctl,
    schema_errors, stderr, stdout, TestEnv,
};

const NO_CHANGES: &str = "No changes. Live state matches fusion.toml.\n";

/// A second fusionizer project, `other`, beside the quickstart's fusion.toml: same tasks, same
/// platform (and so the same local state directory, or the same Nuclio project), another owner.
fn add_other_project(env: &TestEnv) {
    let toml = std::fs::read_to_string(env.project().join("fusion.toml")).unwrap();
    let other = toml.replace("name = \"quickstart\"", "name = \"other\"");
    assert_ne!(toml, other);
    std::fs::write(env.project().join("other.toml"), other).unwrap();
}

/// The names of the functions `other` owns, through its own status.
fn other_live(env: &TestEnv) -> Vec<(String, String, String)> {
    live_functions(env, &["--config", "other.toml"])
        .iter()
        .map(|f| {
            (
                f["function"].as_str().unwrap().to_string(),
                f["drift"].as_str().unwrap().to_string(),
                f["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn plan_destroy_then_destroy_removes_every_owned_function_and_nothing_else() {
    let env = quickstart();
    add_other_project(&env);
    expect(
        &env,
        &["--config", "other.toml", "apply", "--auto-approve"],
        0,
    );
    let other_before = other_live(&env);
    assert_eq!(
        other_before
            .iter()
            .map(|f| f.0.as_str())
            .collect::<Vec<_>>(),
        vec!["other-taska", "other-taskb"]
    );

    // Nothing of this project is live yet: nothing to destroy.
    let out = expect(&env, &["plan", "--destroy", "--detailed-exitcode"], 0);
    assert_eq!(stdout(&out), NO_CHANGES);

    expect(&env, &["apply", "--auto-approve"], 0);
    let out = expect(&env, &["plan", "--destroy", "--detailed-exitcode"], 2);
    let text = stdout(&out);
    for line in [
        "  - destroy\n",
        "  - quickstart-taska\n",
        "  - quickstart-taskb\n",
        "      reason: destroying every function of project `quickstart`\n",
        "Plan: 0 to add, 0 to change, 2 to destroy.\n",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    assert!(!text.contains("other-"), "{text}");

    // Same renderers: JSON follows the schema, markdown renders.
    let out = expect(&env, &["plan", "--destroy", "--output", "json"], 0);
    let json = stdout(&out);
    assert_eq!(schema_errors(&json), Vec::<String>::new());
    let plan: Value = serde_json::from_str(&json).unwrap();
    let changes: Vec<(&str, &str)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap(),
                c["function"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("delete", "quickstart-taska"),
            ("delete", "quickstart-taskb")
        ]
    );
    assert_eq!(plan["unchanged"], serde_json::json!([]));
    let out = expect(&env, &["plan", "--destroy", "--output", "markdown"], 0);
    assert!(
        stdout(&out).contains("quickstart-taska"),
        "{}",
        stdout(&out)
    );

    // A grouping makes no sense for a destroy.
    expect(&env, &["plan", "--destroy", "--phase", "2"], 64);

    let out = expect(&env, &["destroy", "--auto-approve"], 0);
    let text = stdout(&out);
    assert!(
        text.ends_with(
            "Plan: 0 to add, 0 to change, 2 to destroy.\nDestroy complete: 2 destroyed.\n"
        ),
        "{text}"
    );
    let err = stderr(&out);
    for line in [
        "Deleted quickstart-taska in ",
        "Deleted quickstart-taskb in ",
    ] {
        assert!(err.contains(line), "no `{line}` in:\n{err}");
    }
    assert!(live(&env).is_empty());

    // Gone: nothing left to destroy, and a second destroy is a no-op.
    let out = expect(&env, &["plan", "--destroy", "--detailed-exitcode"], 0);
    assert_eq!(stdout(&out), NO_CHANGES);
    let out = expect(&env, &["destroy"], 0);
    assert_eq!(stdout(&out), NO_CHANGES);
    expect(&env, &["plan", "--detailed-exitcode"], 2);

    // The other project's functions were never touched.
    assert_eq!(other_live(&env), other_before);
    assert!(
        other_before.iter().all(|f| f.1 == "in sync"),
        "{other_before:?}"
    );
}

#[test]
fn destroy_without_a_terminal_needs_auto_approve() {
    let env = quickstart();
    expect(&env, &["apply", "--auto-approve"], 0);
    let out = expect(&env, &["destroy"], 1);
    assert!(
        stdout(&out).contains("Plan: 0 to add, 0 to change, 2 to destroy."),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(
            "error: refusing to destroy without confirmation: there is no terminal to ask on\n"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "hint: pass `--auto-approve`, or save a plan with `fusionizer plan --destroy --out \
             FILE` and apply it with `fusionizer apply FILE`"
        ),
        "{err}"
    );
    assert_eq!(live(&env).len(), 2, "nothing was destroyed");
    expect(&env, &["destroy", "--parallelism", "0"], 64);
    expect(&env, &["destroy", "--lock-timeout", "soon"], 64);
}

#[test]
fn destroy_takes_the_apply_lock() {
    let env = quickstart();
    expect(&env, &["apply", "--auto-approve"], 0);
    let ws = fusionizer::config::load(&env.project().join("fusion.toml")).expect("valid");
    let platform = fusionizer::platform::open(&ws.config, None).expect("local opens");
    let lock_file = fusionizer::lock::lock_path(&ws.config.state_dir(), &platform.identity());
    let held = fusionizer::lock::acquire(
        &lock_file,
        "fusionizer apply (held by the test)",
        std::time::Duration::ZERO,
    )
    .unwrap();
    let out = expect(
        &env,
        &["destroy", "--auto-approve", "--lock-timeout", "1s"],
        75,
    );
    assert!(
        stderr(&out).contains("gave up after waiting 1s"),
        "{}",
        stderr(&out)
    );
    assert_eq!(live(&env).len(), 2, "nothing was destroyed");
    drop(held);
    expect(&env, &["destroy", "--auto-approve"], 0);
    assert!(live(&env).is_empty());
}

#[test]
fn saved_destroy_plan_is_checked_against_an_empty_desired_set() {
    let env = quickstart();
    expect(&env, &["apply", "--auto-approve"], 0);

    // Saved, then taska is redeployed: the live state moved, so the plan is stale.
    let out = expect(&env, &["plan", "--destroy", "--out", "destroy.plan"], 0);
    assert!(stderr(&out).contains("Saved the plan to `destroy.plan`"));
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(env.project().join("destroy.plan")).unwrap())
            .unwrap();
    assert_eq!(saved["destroy"], Value::Bool(true));
    assert_eq!(saved["inputs"], serde_json::json!([]));
    append(&env, "tasks/taska/main.py", "\n# redeployed meanwhile\n");
    expect(&env, &["apply", "--auto-approve"], 0);
    let out = expect(&env, &["apply", "destroy.plan"], 75);
    let err = stderr(&out);
    assert!(
        err.contains("caused by: live: `quickstart-taska` was redeployed"),
        "{err}"
    );
    assert!(
        err.contains("hint: review a fresh plan: `fusionizer plan --destroy --out destroy.plan`"),
        "{err}"
    );
    assert_eq!(live(&env).len(), 2, "nothing was destroyed");

    // Ordinary saved plans do not record `destroy`.
    expect(&env, &["plan", "--out", "apply.plan"], 0);
    let text = std::fs::read_to_string(env.project().join("apply.plan")).unwrap();
    let saved: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(saved.get("destroy"), None, "{text}");

    // A fresh one applies without prompting, even though fusion.toml's tasks changed since:
    // a destroy plan's desired set is empty, whatever the config says.
    expect(&env, &["plan", "--destroy", "--out", "destroy.plan"], 0);
    append(&env, "tasks/taskb/main.py", "\n# edited after planning\n");
    let out = expect(&env, &["apply", "destroy.plan"], 0);
    assert!(
        stdout(&out).ends_with("Destroy complete: 2 destroyed.\n"),
        "{}",
        stdout(&out)
    );
    expect(&env, &["plan", "--destroy", "--detailed-exitcode"], 0);
    assert!(live(&env).is_empty());
}

#[test]
fn destroy_plan_lists_only_functions_with_both_ownership_labels() {
    let owned = Fake::new("shop", &["taska"]).live();
    let mut project_label_only = Fake::new("shop", &["taskb"]).live();
    project_label_only
        .labels
        .remove(fusionizer::contract::LABEL_MANAGED_BY);
    let other_project = Fake::new("other", &["taska"]).live();
    let mut unlabelled = Fake::new("shop", &["taskc"]).live();
    unlabelled.labels.clear();
    let all = vec![
        owned.clone(),
        project_label_only.clone(),
        other_project.clone(),
        unlabelled.clone(),
    ];

    // Pure: even when handed every function, only the owned one is planned.
    let destroy = plan::destroy("shop", &all).unwrap();
    let planned: Vec<(Action, &str)> = destroy
        .changes
        .iter()
        .map(|c| (c.action, c.function.as_str()))
        .collect();
    assert_eq!(planned, vec![(Action::Delete, "shop-taska")]);
    assert_eq!(destroy.summary.destroy, 1);
    let empty_desired = plan::compute("shop", &[], &all, &[]).unwrap();
    assert_eq!(destroy.fingerprint, empty_desired.fingerprint);
    assert_eq!(destroy.changes.len(), empty_desired.changes.len());

    // Through the engine on a platform that holds all four: one delete, nothing else.
    let platform = MemoryPlatform::default();
    for f in &all {
        platform.insert(f.clone());
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let observed = rt
        .block_on(fusionizer::workspace::observe(&platform, "shop", &[]))
        .unwrap();
    let destroy = plan::destroy("shop", &observed.owned).unwrap();
    let report = rt.block_on(fusionizer::apply::execute(
        &platform,
        &destroy,
        &[],
        &fusionizer::apply::ApplyOptions {
            parallelism: 4,
            observer: &fusionizer::apply::NoObserver,
            hooks: &fusionizer::apply::NoHooks,
        },
    ));
    assert!(report.is_success(), "{report:?}");
    let deletes: Vec<Call> = platform
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Delete { .. } | Call::Deploy { .. }))
        .collect();
    assert_eq!(
        deletes,
        vec![Call::Delete {
            name: "shop-taska".into(),
            force: false
        }]
    );
    let left: Vec<String> = platform.functions().into_iter().map(|f| f.name).collect();
    assert_eq!(left, vec!["other-taska", "shop-taskb", "shop-taskc"]);
}

#[test]
fn nuctl_destroy_leaves_other_owners_in_the_nuclio_project_alone() {
    let (env, state) = quickstart_on_nuctl();
    add_other_project(&env);
    let other = ["--config", "other.toml"];
    let with_other = |args: &[&'static str]| -> Vec<&'static str> {
        other.iter().copied().chain(args.iter().copied()).collect()
    };
    expect_nuctl(
        &env,
        &state,
        &[],
        &with_other(&["apply", "--auto-approve"]),
        0,
    );
    expect_nuctl(&env, &state, &[], &["apply", "--auto-approve"], 0);

    let out = expect_nuctl(
        &env,
        &state,
        &[],
        &["plan", "--destroy", "--detailed-exitcode"],
        2,
    );
    let text = stdout(&out);
    assert!(
        text.contains("Plan: 0 to add, 0 to change, 2 to destroy."),
        "{text}"
    );
    assert!(!text.contains("other-"), "{text}");
    let out = expect_nuctl(&env, &state, &[], &["destroy", "--auto-approve"], 0);
    assert!(
        stdout(&out).ends_with("Destroy complete: 2 destroyed.\n"),
        "{}",
        stdout(&out)
    );
    let out = expect_nuctl(
        &env,
        &state,
        &[],
        &["plan", "--destroy", "--detailed-exitcode"],
        0,
    );
    assert_eq!(stdout(&out), NO_CHANGES);

    // The other project's functions are still there, unchanged.
    let out = expect_nuctl(
        &env,
        &state,
        &[],
        &with_other(&["plan", "--detailed-exitcode"]),
        0,
    );
    assert_eq!(stdout(&out), NO_CHANGES);
}
