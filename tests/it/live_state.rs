//! One source of truth (issue 21): a running serve records who owns the grouping and which
//! tasks were uploaded on the functions it deploys, so `plan`, `apply` and `status` from another
//! process agree with it; and serve notices changes made from another terminal, reports them as
//! drift, repairs them (`[serve] self-heal`) and says `degraded` on `/-/health` meanwhile.

use std::time::Duration;

use crate::support::{
    add, cache_dir, client, put_zip, result_of, transcript, wait_for, zip_dir, Serve, TestEnv,
};

/// The quickstart, with `extra` appended to fusion.toml.
fn quickstart(phase_two_after: &str, extra: &str) -> TestEnv {
    let env = TestEnv::example("quickstart");
    let file = env.project().join("fusion.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("after = \"40s\"", &format!("after = \"{phase_two_after}\""));
    std::fs::write(&file, format!("{text}{extra}")).unwrap();
    env
}

/// Runs the CLI in `env` and returns (exit code, stdout, transcript).
fn run(env: &TestEnv, args: &[&str]) -> (Option<i32>, String, String) {
    let out = env
        .cmd()
        .env("FUSIONIZER_CACHE_DIR", cache_dir())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        transcript(&out),
    )
}

/// The function serving `task`, from its info page (`GET /<task>`).
fn serving(serve: &Serve, task: &str) -> Option<String> {
    let info = client()
        .get(serve.url(&format!("/{task}")))
        .send()
        .ok()?
        .text()
        .ok()?;
    let line = info.lines().find(|l| l.starts_with("Function: "))?;
    Some(line["Function: ".len()..].to_string())
}

/// `/-/health`: (status, body).
fn health(serve: &Serve) -> (u16, String) {
    let response = client().get(serve.url("/-/health")).send().unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// serve follows the schedule into phase 2; `status`, `plan` and `apply` without `--at`/`--phase`
/// read the schedule's origin from the live functions, compute phase 2 as serve does, and agree
/// that nothing is to change. `--at 0s` still overrides it.
#[test]
fn plan_apply_and_status_follow_a_running_serves_phase() {
    let env = quickstart("2s", "");
    let serve = Serve::start(&env, &[]);
    wait_for("serve to reach phase 2", Duration::from_secs(120), || {
        (serving(&serve, "taska")? == "quickstart-taska-taskb").then_some(())
    });

    let (code, stdout, all) = run(&env, &["status", "--output", "json"]);
    assert_eq!(code, Some(0), "{all}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["summary"]["in_sync"], 1, "{all}");
    assert_eq!(status["summary"]["missing"], 0, "{all}");
    assert_eq!(status["summary"]["not_desired"], 0, "{all}");
    assert_eq!(status["grouping"]["owner"], "schedule", "{all}");

    let (code, stdout, all) = run(&env, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        stdout.contains("Grouping: phase 2, as serve's schedule"),
        "{all}"
    );
    assert!(stdout.contains("No changes."), "{all}");

    let (code, stdout, all) = run(&env, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(stdout.contains("No changes."), "{all}");
    assert_eq!(
        serving(&serve, "taska").as_deref(),
        Some("quickstart-taska-taskb")
    );
    assert_eq!(result_of(&add(&serve, "taska", 20, 22).1), Some(42));

    // `--at` overrides what is live, and says so.
    let (code, stdout, all) = run(&env, &["plan", "--at", "0s", "--detailed-exitcode"]);
    assert_eq!(code, Some(2), "{all}");
    assert!(
        stdout.contains("(given), overriding serve's schedule"),
        "{all}"
    );
    assert!(!serve.log().contains("Drift"), "{}", serve.log());
}

/// A task uploaded to serve is recorded on its function: `plan` shows it as serve's and plans no
/// deletion, `apply` keeps it, `status` lists it as `kept (serve)`, and serve still answers it.
#[test]
fn an_upload_to_serve_survives_an_apply_from_the_cli() {
    let env = quickstart("40s", "");
    let serve = Serve::start(&env, &["--phase", "1", "--no-schedule"]);
    let (status, body) = put_zip(
        &serve,
        "extra",
        zip_dir(&env.project().join("tasks/taskb")),
        None,
    );
    assert_eq!(status, 200, "{body}");

    let (code, stdout, all) = run(&env, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        stdout.contains("Kept: quickstart-extra (tasks extra): owned by serve"),
        "{all}"
    );
    assert!(!stdout.contains("destroy"), "{all}");

    let (code, _, all) = run(&env, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{all}");
    let (code, stdout, all) = run(&env, &["status"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(stdout.contains("kept (serve)"), "{all}");

    let (status, body) = add(&serve, "extra", 2, 2);
    assert_eq!((status, result_of(&body)), (200, Some(4)), "{body}");
    assert!(!serve.log().contains("Drift"), "{}", serve.log());
}

/// The functions of the quickstart's phase 1 are deleted from another process (what `destroy`
/// does) while that process holds the apply lock: serve reports the drift, `/-/health` says
/// `degraded` (503) while it cannot repair it, and once the lock is free self-heal redeploys and
/// the tasks answer again.
#[test]
fn serve_reports_and_heals_an_external_destroy() {
    let env = quickstart("40s", "");
    let serve = Serve::start(&env, &["--phase", "1", "--no-schedule"]);
    let ws = fusionizer::config::load(&env.project().join("fusion.toml")).unwrap();
    let platform = fusionizer::platform::open(&ws.config, None).unwrap();
    let lock_path = fusionizer::lock::lock_path(&ws.config.state_dir(), &platform.identity());
    let held =
        fusionizer::lock::acquire(&lock_path, "fusionizer destroy (test)", Duration::ZERO).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for name in ["quickstart-taska", "quickstart-taskb"] {
        rt.block_on(platform.delete(name, false)).unwrap();
    }

    serve.wait_for_log(
        "function `quickstart-taska` (tasks taska) is missing",
        Duration::from_secs(60),
    );
    serve.wait_for_log("Healing", Duration::from_secs(60));
    let (code, body) = wait_for("health to say degraded", Duration::from_secs(60), || {
        let (code, body) = health(&serve);
        body.starts_with("degraded").then_some((code, body))
    });
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("`taska`, `taskb`"), "{body}");
    assert!(body.contains("self-heal is repairing it"), "{body}");

    drop(held);
    wait_for("serve to heal", Duration::from_secs(120), || {
        (health(&serve).0 == 200).then_some(())
    });
    assert_eq!(
        result_of(&add(&serve, "taska", 20, 22).1),
        Some(42),
        "{}",
        serve.log()
    );
}

/// With `[serve] self-heal = false`, an external `destroy` is reported and left: `/-/health`
/// stays `degraded` and says self-heal is off; `apply` from the CLI repairs it.
#[test]
fn without_self_heal_serve_reports_drift_and_stays_degraded() {
    let env = quickstart("40s", "\n[serve]\nself-heal = false\n");
    let serve = Serve::start(&env, &["--phase", "1", "--no-schedule"]);
    let (code, _, all) = run(&env, &["destroy", "--auto-approve"]);
    assert_eq!(code, Some(0), "{all}");

    serve.wait_for_log("Not healing", Duration::from_secs(60));
    let log = serve.log();
    assert!(
        log.contains("function `quickstart-taskb` (tasks taskb) is missing"),
        "{log}"
    );
    let (code, body) = health(&serve);
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with("degraded: no function serves task(s) `taska`, `taskb`"),
        "{body}"
    );
    assert!(body.contains("self-heal is off"), "{body}");
    assert!(
        !serve.log().contains("self-heal: routes switched"),
        "{}",
        serve.log()
    );

    // The CLI repairs it: the grouping serve recorded is gone with its functions, so `apply`
    // deploys fusion.toml's at 0s, which is phase 1 here too.
    let (code, _, all) = run(&env, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{all}");
    wait_for("serve to route again", Duration::from_secs(60), || {
        (health(&serve).0 == 200).then_some(())
    });
    assert_eq!(result_of(&add(&serve, "taska", 20, 22).1), Some(42));
}
