//! The CLI end to end on `platform = "nuctl"` against the fake nuctl (`tests/fake_nuctl/nuctl`):
//! the exact nuctl command lines of plan/apply and of a regroup, recovery from a failed deploy,
//! exit 69 for every command when nuctl is missing, and `serve` routing to the fake's served
//! functions without running nuctl per request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::nuctl::sdk_venv_python;
use crate::plan::{expect_nuctl, quickstart_on_nuctl, settings, stderr, stdout, FAKE_NUCTL};
use crate::serve::{client, wait_for, Serve};
use crate::support::{transcript, TestEnv};

/// The argv of every nuctl call recorded by the fake so far.
fn calls(state: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(state.join("calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// `calls` with the plan's lookups of the `missing` functions (right after its project-wide
/// `get function -l`) in name order: the plan runs them concurrently, so they land in any order.
fn with_lookups_sorted(mut calls: Vec<Vec<String>>, missing: usize) -> Vec<Vec<String>> {
    assert!(
        calls[0]
            .iter()
            .any(|a| a.starts_with("fusionizer.io/project=")),
        "{calls:?}"
    );
    let lookups = &mut calls[1..=missing];
    assert!(
        lookups.iter().all(|argv| argv[..2] == ["get", "function"]),
        "{lookups:?}"
    );
    lookups.sort();
    calls
}

/// Calls as command lines, one per line.
fn command_lines(calls: &[Vec<String>]) -> String {
    calls
        .iter()
        .map(|argv| format!("nuctl {}\n", argv.join(" ")))
        .collect()
}

fn is_deploy_of(argv: &[String], name: &str) -> bool {
    argv.first().is_some_and(|c| c == "deploy") && argv.get(1).is_some_and(|n| n == name)
}

fn is_delete_of(argv: &[String], name: &str) -> bool {
    argv.len() > 2 && argv[0] == "delete" && argv[1] == "function" && argv[2] == name
}

#[test]
fn quickstart_plan_apply_regroup_on_fake_nuctl() {
    let (env, state) = quickstart_on_nuctl();
    let s = settings(&env);

    let out = expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 2);
    assert!(
        stdout(&out).contains("Plan: 2 to add, 0 to change, 0 to destroy."),
        "{}",
        stdout(&out)
    );
    let before = calls(&state).len();
    // One deploy at a time, so the sequence is exact.
    expect_nuctl(
        &env,
        &state,
        &[],
        &["apply", "--auto-approve", "--parallelism", "1"],
        0,
    );
    let first_apply = with_lookups_sorted(calls(&state)[before..].to_vec(), 2);
    s.bind(|| insta::assert_snapshot!("first_apply_calls", command_lines(&first_apply)));
    expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 0);

    // Regroup to the fused phase: the new function is deployed before the old ones go.
    let before = calls(&state).len();
    expect_nuctl(
        &env,
        &state,
        &[],
        &[
            "apply",
            "--phase",
            "2",
            "--auto-approve",
            "--parallelism",
            "1",
        ],
        0,
    );
    let regroup = with_lookups_sorted(calls(&state)[before..].to_vec(), 1);
    s.bind(|| insta::assert_snapshot!("regroup_calls", command_lines(&regroup)));
    let deploys: Vec<usize> = (0..regroup.len())
        .filter(|&i| is_deploy_of(&regroup[i], "quickstart-taska-taskb"))
        .collect();
    let deletes: Vec<usize> = (0..regroup.len())
        .filter(|&i| {
            ["quickstart-taska", "quickstart-taskb"]
                .iter()
                .any(|old| is_delete_of(&regroup[i], old))
        })
        .collect();
    let lines = command_lines(&regroup);
    for old in ["quickstart-taska", "quickstart-taskb"] {
        assert!(
            regroup.iter().any(|argv| is_delete_of(argv, old)),
            "`{old}` was not deleted:\n{lines}"
        );
    }
    assert!(
        !deploys.is_empty(),
        "no deploy of the fused function:\n{lines}"
    );
    assert!(
        deploys.iter().max() < deletes.iter().min(),
        "a delete ran before the fused function was deployed:\n{lines}"
    );
    expect_nuctl(
        &env,
        &state,
        &[],
        &["plan", "--phase", "2", "--detailed-exitcode"],
        0,
    );
}

/// A failed first deploy (the function is left in nuctl's `error` state): apply names it and
/// exits 1; the next apply converges. (Failures during a regroup and stuck deploys are covered by
/// `plan::nuctl_stuck_function_is_replaced_and_regroup_converges`.)
#[test]
fn recover_from_a_failed_deploy_on_fake_nuctl() {
    let (env, state) = quickstart_on_nuctl();
    let fail = [("FAKE_NUCTL_FAIL_DEPLOY", "quickstart-taskb")];
    let out = expect_nuctl(&env, &state, &fail, &["apply", "--auto-approve"], 1);
    let err = stderr(&out);
    assert!(
        err.contains("error: apply incomplete: 1 applied, 1 failed, 0 not attempted"),
        "{err}"
    );
    assert!(err.contains("create `quickstart-taskb` failed: "), "{err}");
    assert!(
        err.contains("Failed to build processor image"),
        "nuctl's stderr is shown:\n{err}"
    );

    let out = expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 2);
    assert!(
        stdout(&out).contains("quickstart-taskb"),
        "{}",
        stdout(&out)
    );
    expect_nuctl(&env, &state, &[], &["apply", "--auto-approve"], 0);
    expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 0);
    let out = expect_nuctl(&env, &state, &[], &["status", "--output", "json"], 0);
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let functions = status["functions"].as_array().unwrap();
    assert_eq!(functions.len(), 2, "{status}");
    for f in functions {
        assert_eq!(f["state"], "ready", "{status}");
    }
}

#[test]
fn every_command_that_needs_nuctl_exits_69_without_it() {
    let (env, _state) = quickstart_on_nuctl();
    let missing = env.root().join("no/such/nuctl");
    let mut serve_stderr = String::new();
    for args in [
        &["plan"][..],
        &["plan", "--detailed-exitcode"],
        &["apply", "--auto-approve"],
        &["status"],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let out = env
            .cmd()
            .env("FUSIONIZER_NUCTL", &missing)
            .args(args)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        let text = transcript(&out);
        assert_eq!(out.status.code(), Some(69), "{args:?}:\n{text}");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: one line and a hint:\n{text}");
        assert!(lines[0].starts_with("error: "), "{args:?}:\n{text}");
        assert!(
            lines[0].contains(&format!("`{}`", missing.display())),
            "{args:?}:\n{text}"
        );
        assert!(lines[1].starts_with("hint: "), "{args:?}:\n{text}");
        if args[0] == "serve" {
            serve_stderr = err;
        }
    }
    settings(&env).bind(|| insta::assert_snapshot!("serve_without_nuctl", serve_stderr));
}

// ---------------------------------------------------------------------------------------------
// serve on the fake's served functions.

/// A fake nuctl for serve: it serves deployed functions with `python`, and while the gate file
/// exists every call waits at the gate (logged in `gated`) before reaching the fake, so the test
/// can park serve's background refresh and see every other nuctl call.
struct Served {
    state: PathBuf,
    gate: PathBuf,
    launcher: PathBuf,
}

impl Served {
    fn new(env: &TestEnv, state: &Path) -> Served {
        use std::os::unix::fs::PermissionsExt;
        let python = sdk_venv_python("fake-nuctl-sdk-requests-venv", &["requests"]);
        let gate = env.root().join("nuctl-gate");
        let launcher = env.root().join("nuctl-served");
        let script = format!(
            "#!/bin/sh\n\
             FAKE_NUCTL_DIR='{state}'; export FAKE_NUCTL_DIR\n\
             FAKE_NUCTL_SERVE=1; export FAKE_NUCTL_SERVE\n\
             FAKE_NUCTL_PYTHON='{python}'; export FAKE_NUCTL_PYTHON\n\
             if [ -e '{gate}' ]; then\n  \
               echo \"$*\" >> '{state}/gated'\n  \
               while [ -e '{gate}' ]; do sleep 0.05; done\n\
             fi\n\
             exec '{FAKE_NUCTL}' \"$@\"\n",
            state = state.display(),
            python = python.display(),
            gate = gate.display(),
        );
        std::fs::write(&launcher, script).unwrap();
        std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755)).unwrap();
        Served {
            state: state.to_path_buf(),
            gate,
            launcher,
        }
    }

    fn start(&self, env: &TestEnv, phase: &str) -> Serve {
        let launcher = self.launcher.display().to_string();
        Serve::start_with(
            env,
            &[("FUSIONIZER_NUCTL", launcher.as_str())],
            &["--phase", phase, "--no-schedule"],
        )
    }

    /// Closes the gate and waits until a nuctl call is parked at it.
    fn close_gate(&self) {
        std::fs::write(&self.gate, "").unwrap();
        wait_for(
            "a nuctl call parked at the gate",
            Duration::from_secs(60),
            || {
                std::fs::read_to_string(self.state.join("gated"))
                    .ok()
                    .filter(|text| !text.is_empty())
            },
        );
    }

    /// The calls that waited at the gate.
    fn gated(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("gated"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn open_gate(&self) {
        let _ = std::fs::remove_file(&self.gate);
    }
}

impl Drop for Served {
    /// Deletes every function the fake holds (stopping its server process), pass or fail.
    fn drop(&mut self) {
        self.open_gate();
        let Ok(text) = std::fs::read_to_string(self.state.join("state.json")) else {
            return;
        };
        let Ok(data) = serde_json::from_str::<serde_json::Value>(&text) else {
            return;
        };
        let Some(namespaces) = data["functions"].as_object() else {
            return;
        };
        for (namespace, functions) in namespaces {
            for name in functions.as_object().into_iter().flat_map(|f| f.keys()) {
                let _ = std::process::Command::new(FAKE_NUCTL)
                    .env("FAKE_NUCTL_DIR", &self.state)
                    .args(["delete", "function", name, "--force", "--namespace"])
                    .arg(namespace)
                    .output();
            }
        }
    }
}

fn add(serve: &Serve, a: i64, b: i64) -> i64 {
    let response = client()
        .post(serve.url("/taska"))
        .json(&serde_json::json!({"value1": a, "value2": b}))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().unwrap();
    assert_eq!(status, 200, "{body}\n{}", serve.log());
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    value["result"]
        .as_i64()
        .unwrap_or_else(|| panic!("no result in {body}"))
}

#[test]
fn serve_routes_to_fake_nuctl_endpoints_without_nuctl_per_request() {
    // Phase 2: taska and taskb fused; the sibling call runs in-process.
    let (env, state) = quickstart_on_nuctl();
    let served = Served::new(&env, &state);
    let serve = served.start(&env, "2");
    assert_eq!(add(&serve, 5, 3), 8);
    assert_eq!(serve.metric("fusionizer_task_calls_total", "proxied"), 0.0);

    // Serve's background refresh runs nuctl twice a second; park it at the gate so any other
    // nuctl call shows up in the count.
    served.close_gate();
    let before = calls(&state).len();
    for i in 0..20 {
        assert_eq!(add(&serve, i, 100), i + 100);
    }
    assert_eq!(
        calls(&state).len(),
        before,
        "nuctl ran during the requests:\n{}",
        command_lines(&calls(&state)[before..])
    );
    assert_eq!(served.gated().len(), 1, "{:#?}", served.gated());
    served.open_gate();
    drop(serve);
    drop(served);

    // Phase 1: each task alone; taska reaches taskb through serve's proxy, at the address and
    // port serve hands it in `Fusionizer-Server-Address`/`-Port`.
    let (env, state) = quickstart_on_nuctl();
    let served = Served::new(&env, &state);
    let serve = served.start(&env, "1");
    assert_eq!(add(&serve, 5, 3), 8);
    assert_eq!(serve.metric("fusionizer_task_calls_total", "proxied"), 1.0);
}
