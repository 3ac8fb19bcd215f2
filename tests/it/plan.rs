//! plan, apply and status: the JSON schema, and the `GitOps` walkthrough on the local platform.

use serde_json::Value;

use fusionizer::plan::testing::Fake;
use fusionizer::plan::{self, render};
use fusionizer::platform::FunctionState;

use crate::support::{
    append, expect, expect_nuctl, live, quickstart, quickstart_on_nuctl, schema_errors, settings,
    stderr, stdout, transcript, TestEnv,
};

#[test]
fn json_of_every_action_validates_against_the_schema() {
    let (a, b, c, d) = (
        Fake::new("shop", &["taska"]),
        Fake::new("shop", &["taskb"]),
        Fake::new("shop", &["taskc"]),
        Fake::new("shop", &["taskd"]),
    );
    let desired = vec![
        a.clone().version("taska", "v2").env("API_KEY", "k").build(),
        b.build(),
        d.build(),
    ];
    let live = vec![
        a.live(),
        b.live_in(FunctionState::Error("boom".into())),
        c.live(),
    ];
    let plan = plan::compute("shop", &desired, &live, &[]).unwrap();
    let actions: Vec<&str> = plan.changes.iter().map(|c| c.action.word()).collect();
    assert_eq!(actions, vec!["update", "replace", "create", "delete"]);
    assert_eq!(schema_errors(&render::json(&plan)), Vec::<String>::new());

    let none = plan::compute("shop", &[a.build()], &[a.live()], &[]).unwrap();
    assert_eq!(schema_errors(&render::json(&none)), Vec::<String>::new());
}

#[test]
fn the_schema_check_catches_a_broken_plan() {
    let a = Fake::new("shop", &["taska"]);
    let plan = plan::compute("shop", &[a.build()], &[], &[]).unwrap();
    let mut value: Value = serde_json::from_str(&render::json(&plan)).unwrap();
    value["changes"][0]["action"] = Value::String("upsert".into());
    value["changes"][0].as_object_mut().unwrap().remove("tasks");
    value["summary"]["add"] = Value::from(-1);
    value["extra"] = Value::Bool(true);
    let errors = schema_errors(&value.to_string());
    assert_eq!(
        errors,
        vec![
            "$: unexpected `extra`".to_string(),
            "$.changes[0]: missing required `tasks`".to_string(),
            "$.changes[0].action: \"upsert\" is not one of [\"create\",\"update\",\"replace\",\"delete\"]".to_string(),
            "$.summary.add: -1 is below 0".to_string(),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The CLI on the local platform (real Python workers; venvs cached under the target dir).

#[test]
fn walkthrough_first_apply_edit_regroup_converge() {
    let env = quickstart();
    let s = settings(&env);

    // Nothing is live: two creates.
    let out = expect(&env, &["plan", "--detailed-exitcode"], 2);
    s.bind(|| insta::assert_snapshot!("walk_1_plan_creates", stdout(&out)));
    let out = expect(&env, &["plan", "--output", "json"], 0);
    assert_eq!(schema_errors(&stdout(&out)), Vec::<String>::new());

    // First apply.
    let out = expect(&env, &["apply", "--auto-approve"], 0);
    s.bind(|| insta::assert_snapshot!("walk_2_apply_creates", stdout(&out)));
    let err = stderr(&out);
    for line in [
        "    Creating quickstart-taska\n",
        "    Creating quickstart-taskb\n",
        "    Deployed quickstart-taska in ",
        "    Deployed quickstart-taskb in ",
    ] {
        assert!(err.contains(line), "no `{line}` in:\n{err}");
    }
    assert!(
        !err.contains('\x1b'),
        "control codes off a terminal:\n{err}"
    );

    // Converged.
    let out = expect(&env, &["plan", "--detailed-exitcode"], 0);
    assert_eq!(
        stdout(&out),
        "No changes. Live state matches fusion.toml.\n"
    );
    let out = expect(&env, &["apply", "--auto-approve"], 0);
    assert_eq!(
        stdout(&out),
        "No changes. Live state matches fusion.toml.\n"
    );

    // Edit one task's file: exactly one update, naming the task.
    append(&env, "tasks/taskb/main.py", "\n# a harmless edit\n");
    let out = expect(&env, &["plan", "--detailed-exitcode"], 2);
    s.bind(|| insta::assert_snapshot!("walk_3_plan_update", stdout(&out)));
    let out = expect(&env, &["plan", "--output", "json"], 0);
    let json = stdout(&out);
    assert_eq!(schema_errors(&json), Vec::<String>::new());
    let plan: Value = serde_json::from_str(&json).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{json}");
    assert_eq!(changes[0]["action"], "update");
    assert_eq!(changes[0]["function"], "quickstart-taskb");
    assert_eq!(changes[0]["changed_tasks"], serde_json::json!(["taskb"]));
    assert_eq!(changes[0]["reason"], "files of task `taskb` changed");
    assert_eq!(plan["unchanged"], serde_json::json!(["quickstart-taska"]));
    let out = expect(&env, &["apply", "--auto-approve"], 0);
    s.bind(|| insta::assert_snapshot!("walk_4_apply_update", stdout(&out)));
    expect(&env, &["plan", "--detailed-exitcode"], 0);

    // Regroup to the next phase: a create and two deletes, in every format.
    let out = expect(&env, &["plan", "--phase", "2", "--detailed-exitcode"], 2);
    s.bind(|| insta::assert_snapshot!("walk_5_plan_regroup", stdout(&out)));
    let out = expect(&env, &["plan", "--phase", "2", "--output", "markdown"], 0);
    s.bind(|| insta::assert_snapshot!("walk_5_plan_regroup_markdown", stdout(&out)));
    let out = expect(&env, &["plan", "--at", "40s", "--output", "json"], 0);
    assert_eq!(schema_errors(&stdout(&out)), Vec::<String>::new());
    let out = expect(&env, &["status", "--phase", "2"], 0);
    s.bind(|| insta::assert_snapshot!("walk_5_status_before_regroup", stdout(&out)));

    let out = expect(&env, &["apply", "--phase", "2", "--auto-approve"], 0);
    s.bind(|| insta::assert_snapshot!("walk_6_apply_regroup", stdout(&out)));
    let err = stderr(&out);
    let ready = err.find("Deployed quickstart-taska-taskb in ").expect(&err);
    let deleted = err.find("Deleted quickstart-taska in ").expect(&err);
    assert!(
        ready < deleted,
        "the new home is ready before the old one goes:\n{err}"
    );

    expect(&env, &["plan", "--phase", "2", "--detailed-exitcode"], 0);
    let out = expect(&env, &["status", "--phase", "2"], 0);
    s.bind(|| insta::assert_snapshot!("walk_7_status_after_regroup", stdout(&out)));
}

#[test]
fn saved_plan_is_refused_once_live_state_or_inputs_moved() {
    let env = quickstart();
    let s = settings(&env);
    expect(&env, &["apply", "--auto-approve"], 0);

    // A plan for phase 2, then someone redeploys taska.
    let out = expect(&env, &["plan", "--phase", "2", "--out", "regroup.plan"], 0);
    assert!(stderr(&out).contains("Saved the plan to `regroup.plan`"));
    let saved = std::fs::read_to_string(env.project().join("regroup.plan")).unwrap();
    assert!(saved.contains("\"phase\": 2"), "{saved}");
    append(&env, "tasks/taska/main.py", "\n# redeployed meanwhile\n");
    expect(&env, &["apply", "--auto-approve"], 0);
    let out = expect(&env, &["apply", "regroup.plan"], 75);
    s.bind(|| insta::assert_snapshot!("saved_plan_stale_live", transcript(&out)));

    // Inputs moving is caught too.
    expect(&env, &["plan", "--out", "phase1.plan"], 0);
    append(&env, "tasks/taskb/main.py", "\n# edited after planning\n");
    let out = expect(&env, &["apply", "phase1.plan"], 75);
    s.bind(|| insta::assert_snapshot!("saved_plan_stale_inputs", transcript(&out)));

    // A fresh saved plan applies exactly, without prompting (no TTY here).
    expect(&env, &["plan", "--phase", "2", "--out", "fresh.plan"], 0);
    let out = expect(&env, &["apply", "fresh.plan"], 0);
    s.bind(|| insta::assert_snapshot!("saved_plan_applied", stdout(&out)));
    expect(&env, &["plan", "--phase", "2", "--detailed-exitcode"], 0);
}

/// The lock file the CLI uses for this project, computed through the library.
fn lock_file(env: &TestEnv) -> std::path::PathBuf {
    let ws = fusionizer::config::load(&env.project().join("fusion.toml")).expect("valid");
    let platform = fusionizer::platform::open(&ws.config, None).expect("local opens");
    fusionizer::lock::lock_path(&ws.config.state_dir(), &platform.identity())
}

#[test]
fn second_concurrent_apply_is_refused_naming_the_holder() {
    let env = quickstart();
    let held = fusionizer::lock::acquire(
        &lock_file(&env),
        "fusionizer apply (held by the test)",
        std::time::Duration::ZERO,
    )
    .unwrap();
    let out = expect(&env, &["apply", "--auto-approve"], 75);
    let err = stderr(&out);
    assert!(err.contains("error: another apply holds the lock"), "{err}");
    assert!(
        err.contains(&format!("held by pid {} (", std::process::id())),
        "{err}"
    );
    assert!(
        err.contains("running `fusionizer apply (held by the test)`"),
        "{err}"
    );
    assert!(
        err.contains("hint: wait for that apply to finish, or pass `--lock-timeout"),
        "{err}"
    );
    let out = expect(
        &env,
        &["apply", "--auto-approve", "--lock-timeout", "1s"],
        75,
    );
    assert!(
        stderr(&out).contains("gave up after waiting 1s"),
        "{}",
        stderr(&out)
    );
    // Nothing was deployed while the lock was held.
    assert!(live(&env).is_empty());
    drop(held);
}

#[test]
fn failed_build_keeps_every_task_on_its_old_function_until_fixed() {
    let env = quickstart();
    expect(&env, &["apply", "--auto-approve"], 0);
    let before = live(&env);
    assert_eq!(
        before.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        vec!["quickstart-taska", "quickstart-taskb"]
    );

    // The fused function of phase 2 cannot build.
    let yaml = env.project().join("tasks/taskb/function.yaml");
    let original = std::fs::read_to_string(&yaml).unwrap();
    assert!(!original.contains("build:"), "{original}");
    append(
        &env,
        "tasks/taskb/function.yaml",
        "  build:\n    commands:\n      - \"exit 1\"\n",
    );
    let out = expect(&env, &["apply", "--phase", "2", "--auto-approve"], 1);
    let err = stderr(&out);
    assert!(
        err.contains("error: apply incomplete: 0 applied, 1 failed, 2 not attempted"),
        "{err}"
    );
    assert!(
        err.contains("create `quickstart-taska-taskb` failed: "),
        "{err}"
    );
    assert!(
        err.contains(
            "delete `quickstart-taska` not attempted: it still serves `taska` (its new function `quickstart-taska-taskb` failed)"
        ),
        "{err}"
    );
    assert!(
        err.contains("Skipped delete quickstart-taskb: it still serves `taskb`"),
        "{err}"
    );
    assert_eq!(
        live(&env),
        before,
        "every task is still served by its previous function"
    );

    // Fixed: the next apply converges.
    std::fs::write(&yaml, original).unwrap();
    let out = expect(&env, &["plan", "--phase", "2", "--detailed-exitcode"], 2);
    assert!(stdout(&out).contains("Plan: 1 to add, 0 to change, 2 to destroy."));
    expect(&env, &["apply", "--phase", "2", "--auto-approve"], 0);
    expect(&env, &["plan", "--phase", "2", "--detailed-exitcode"], 0);
    assert_eq!(
        live(&env).iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        vec!["quickstart-taska-taskb"]
    );
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let env = quickstart();
    let out = expect(&env, &["apply"], 1);
    settings(&env).bind(|| insta::assert_snapshot!("apply_no_tty", transcript(&out)));
    assert!(live(&env).is_empty());
}

#[test]
fn invalid_config_exits_78_and_bad_flags_64() {
    let env = quickstart();
    env.write(&[("fusion.toml", "[project]\nname = \"Bad Name\"\n")]);
    let out = expect(&env, &["plan", "--detailed-exitcode"], 78);
    assert!(
        stderr(&out).starts_with("error: invalid configuration"),
        "{}",
        stderr(&out)
    );
    expect(&env, &["plan", "--output", "yaml"], 64);
    expect(&env, &["apply", "--parallelism", "0"], 64);
}

#[test]
fn same_named_unowned_function_is_refused() {
    use fusionizer::platform::memory::MemoryPlatform;
    // Through the library: the memory platform holds a stranger under a desired name.
    let platform = MemoryPlatform::default();
    let stranger = Fake::new("shop", &["taska"]).live();
    let mut stranger = stranger;
    stranger.labels.clear();
    platform.insert(stranger);
    let desired = vec![Fake::new("shop", &["taska"]).build()];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let observed = rt
        .block_on(fusionizer::workspace::observe(&platform, "shop", &desired))
        .unwrap();
    assert!(observed.owned.is_empty());
    assert_eq!(observed.unowned.len(), 1);
    let err = plan::compute("shop", &desired, &observed.owned, &observed.unowned).unwrap_err();
    assert!(
        err.to_string().contains("`shop-taska` already exists"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// The same commands on the nuctl platform, against the fake `nuctl` (no plan/apply code knows
// which platform it drives).

#[test]
fn nuctl_stuck_function_is_replaced_and_regroup_converges() {
    let (env, state) = quickstart_on_nuctl();
    let s = settings(&env);

    // taska's deploy gets stuck in `building`: apply fails for it, taskb is created.
    let out = expect_nuctl(
        &env,
        &state,
        &[("FAKE_NUCTL_STUCK", "quickstart-taska")],
        &["apply", "--auto-approve"],
        1,
    );
    assert!(
        stderr(&out).contains("error: apply incomplete: 1 applied, 1 failed, 0 not attempted"),
        "{}",
        stderr(&out)
    );
    // The next plan replaces it, saying why.
    let out = expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 2);
    s.bind(|| insta::assert_snapshot!("nuctl_plan_replace_stuck", stdout(&out)));
    expect_nuctl(&env, &state, &[], &["apply", "--auto-approve"], 0);
    expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 0);

    // An edit plans exactly one update; nuctl's normalised copy of the live function.yaml
    // differs from fuse's only where the content does.
    append(&env, "tasks/taskb/main.py", "\n# edited\n");
    let out = expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 2);
    s.bind(|| insta::assert_snapshot!("nuctl_plan_update", stdout(&out)));
    let out = expect_nuctl(&env, &state, &[], &["plan", "--output", "json"], 0);
    let plan: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["changes"].as_array().unwrap().len(), 1);
    assert_eq!(
        plan["changes"][0]["reason"],
        "files of task `taskb` changed"
    );
    assert_eq!(plan["changes"][0]["changed_fields"], serde_json::json!([]));
    // The same without the function.yaml files fusionizer wrote on deploy (another machine, a
    // cleaned state dir): what Nuclio 1.14.1 filled in is still told apart by its defaults.
    std::fs::remove_dir_all(env.project().join(".fusionizer/build")).unwrap();
    let out = expect_nuctl(&env, &state, &[], &["plan", "--output", "json"], 0);
    let plan: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["changes"][0]["changed_fields"], serde_json::json!([]));
    expect_nuctl(&env, &state, &[], &["apply", "--auto-approve"], 0);

    // Regroup; the fused function fails to deploy: both old functions stay.
    let fail = [("FAKE_NUCTL_FAIL_DEPLOY", "quickstart-taska-taskb")];
    let out = expect_nuctl(
        &env,
        &state,
        &fail,
        &["apply", "--phase", "2", "--auto-approve"],
        1,
    );
    assert!(
        stderr(&out).contains("0 applied, 1 failed, 2 not attempted"),
        "{}",
        stderr(&out)
    );
    let out = expect_nuctl(&env, &state, &[], &["status", "--phase", "2"], 0);
    s.bind(|| insta::assert_snapshot!("nuctl_status_after_failed_regroup", stdout(&out)));

    // Fixed: the regroup converges.
    expect_nuctl(
        &env,
        &state,
        &[],
        &["apply", "--phase", "2", "--auto-approve"],
        0,
    );
    expect_nuctl(
        &env,
        &state,
        &[],
        &["plan", "--phase", "2", "--detailed-exitcode"],
        0,
    );
}

#[test]
fn nuctl_missing_is_exit_69() {
    let (env, _state) = quickstart_on_nuctl();
    for args in [&["plan"][..], &["apply", "--auto-approve"], &["status"]] {
        let out = env
            .cmd()
            .env("FUSIONIZER_NUCTL", env.root().join("no/such/nuctl"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(69),
            "{args:?}:\n{}",
            transcript(&out)
        );
    }
}
