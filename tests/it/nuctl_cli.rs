//! The CLI end to end on `platform = "nuctl"` against the fake nuctl (`tests/fake_nuctl/nuctl`):
//! the exact nuctl command lines of plan/apply and of a regroup, recovery from a failed deploy,
//! exit 69 for every command when nuctl is missing, `plan` on kube with a pod's service account
//! instead of a kubeconfig, and `serve` routing to the fake's served functions without running
//! nuctl per request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{
    client, expect_nuctl, quickstart_on_nuctl, sdk_venv_python, settings, stderr, stdout,
    transcript, wait_for, Serve, TestEnv, FAKE_NUCTL,
};

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
        delete_every_function(&self.state);
    }
}

/// Deletes every function the fake at `state` holds, on both of its platforms (`state.json`
/// keeps the Docker platform's functions at the top and the kube ones under `kube`), each with
/// its own `--platform`: nuctl's `auto` would pick kube whenever a kubeconfig resolves here.
fn delete_every_function(state: &Path) {
    let Ok(text) = std::fs::read_to_string(state.join("state.json")) else {
        return;
    };
    let Ok(data) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    for (platform, store) in [("local", &data), ("kube", &data["kube"])] {
        let Some(namespaces) = store["functions"].as_object() else {
            continue;
        };
        for (namespace, functions) in namespaces {
            for name in functions.as_object().into_iter().flat_map(|f| f.keys()) {
                let _ = std::process::Command::new(FAKE_NUCTL)
                    .env("FAKE_NUCTL_DIR", state)
                    .args([
                        "delete",
                        "function",
                        name,
                        "--force",
                        "--platform",
                        platform,
                    ])
                    .args(["--namespace", namespace])
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

// ---------------------------------------------------------------------------------------------
// What a real Nuclio 1.14.1 does that the first fake did not (issue 12): empty listings, the
// Docker platform's selector quirk, ClusterIP and NodePort services on Kubernetes.

/// The registry the kube settings of these tests name (the fake never connects to it).
const REGISTRY: &str = "registry.invalid/fusionizer";

/// The quickstart on kube settings: `[nuctl] platform = "kube"`, namespace `nuclio` (so no
/// kubeconfig is needed), a registry, plus the `extra` lines of `[nuctl]`.
fn quickstart_on_kube(extra: &str) -> (TestEnv, PathBuf) {
    quickstart_on_kube_with(&format!(
        "namespace = \"nuclio\"\nregistry = \"{REGISTRY}\"\n{extra}"
    ))
}

/// The quickstart with `[nuctl] platform = "kube"` and only the `lines` given.
fn quickstart_on_kube_with(lines: &str) -> (TestEnv, PathBuf) {
    let (env, state) = quickstart_on_nuctl();
    let toml = env.project().join("fusion.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let kube = format!("[nuctl]\nplatform = \"kube\"\n{lines}");
    let text = text.replace("[nuctl]\nplatform = \"local\"\n", &kube);
    assert!(text.contains("platform = \"kube\""), "{text}");
    std::fs::write(&toml, text).unwrap();
    (env, state)
}

/// Runs the fake nuctl directly (as another user of the same Nuclio would) in `dir`; it must
/// succeed.
fn fake_nuctl(env: &TestEnv, state: &Path, dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(FAKE_NUCTL)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.root().join("home"))
        .env("FAKE_NUCTL_DIR", state)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nuctl {args:?}:\n{}",
        transcript(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deploys a function that fusionizer project `quickstart` does not own, with `labels`, through
/// the fake directly; `flags` are the global flags and `--project-name`.
fn deploy_foreign(env: &TestEnv, state: &Path, name: &str, labels: &str, flags: &[&str]) {
    let dir = env.root().join("foreign").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("function.yaml"),
        format!(
            "metadata:\n  name: {name}\n  labels:\n{labels}spec:\n  runtime: \"python:3.11\"\n  \
             handler: main:handler\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("main.py"),
        "def handler(context, event):\n    return 'foreign'\n",
    )
    .unwrap();
    let mut args = vec!["deploy", name, "--path", ".", "--file", "function.yaml"];
    args.extend_from_slice(flags);
    fake_nuctl(env, state, &dir, &args);
}

/// `nuctl get function NAME -o json` of each of `names`, through the fake directly.
fn foreign_json(env: &TestEnv, state: &Path, names: &[&str], flags: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|name| {
            let mut args = vec!["get", "function", name, "-o", "json"];
            args.extend_from_slice(flags);
            fake_nuctl(env, state, env.root(), &args)
        })
        .collect()
}

/// Whether a nuctl call recorded after the first `since` changed function `name` (deploy or
/// delete).
fn touched(state: &Path, since: usize, name: &str) -> bool {
    calls(state)[since..]
        .iter()
        .any(|argv| is_deploy_of(argv, name) || is_delete_of(argv, name))
}

/// The function names `status --output json` (with `args`) reports as live, and every drift.
fn status_of(env: &TestEnv, state: &Path, args: &[&str]) -> (Vec<String>, Vec<String>) {
    let mut argv = vec!["status", "--output", "json"];
    argv.extend_from_slice(args);
    let out = expect_nuctl(env, state, &[], &argv, 0);
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let functions = status["functions"].as_array().unwrap();
    let live = functions
        .iter()
        .filter(|f| f["drift"] != "missing")
        .map(|f| f["function"].as_str().unwrap().to_string())
        .collect();
    let drifts = functions
        .iter()
        .map(|f| f["drift"].as_str().unwrap().to_string())
        .collect();
    (live, drifts)
}

#[test]
fn plan_on_a_nuclio_without_functions_is_exit_2_not_an_error() {
    // nuctl 1.14.1 answers a listing that matches nothing with `No functions found\n` on
    // stdout and exit 0 (pkg/nuctl/command/get.go), on both of its platforms.
    for kube in [false, true] {
        let (env, state) = if kube {
            quickstart_on_kube("")
        } else {
            quickstart_on_nuctl()
        };
        let out = expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 2);
        assert!(
            stdout(&out).contains("Plan: 2 to add, 0 to change, 0 to destroy."),
            "kube: {kube}\n{}",
            transcript(&out)
        );
        assert!(
            stderr(&out).is_empty(),
            "kube: {kube}\n{}",
            transcript(&out)
        );
        let listing = &calls(&state)[0];
        assert_eq!(
            listing[..6],
            [
                "get",
                "function",
                "-o",
                "json",
                "-l",
                "fusionizer.io/project=quickstart"
            ],
            "{listing:?}"
        );
        let (live, _) = status_of(&env, &state, &[]);
        assert!(live.is_empty(), "{live:?}");
    }
}

#[test]
fn a_function_of_another_owner_in_the_same_nuclio_project_is_left_alone_on_docker() {
    // Nuclio's Docker platform ignores every selector key but `nuclio.io/project-name`
    // (pkg/platform/local/client/store.go): `-l fusionizer.io/project=quickstart` lists every
    // function of the Nuclio project, these two included.
    let (env, state) = quickstart_on_nuctl();
    let local = ["--platform", "local"];
    let owned_by_other =
        "    fusionizer.io/project: other\n    fusionizer.io/managed-by: fusionizer\n";
    deploy_foreign(&env, &state, "other-taska", owned_by_other, &local);
    deploy_foreign(
        &env,
        &state,
        "billing-report",
        "    team: billing\n",
        &local,
    );
    let foreign = ["other-taska", "billing-report"];
    let before = foreign_json(&env, &state, &foreign, &local);
    let since = calls(&state).len();

    let (live, _) = status_of(&env, &state, &[]);
    assert!(live.is_empty(), "{live:?}");
    let out = expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 2);
    let text = stdout(&out);
    assert!(
        text.contains("Plan: 2 to add, 0 to change, 0 to destroy."),
        "{text}"
    );
    for name in foreign {
        assert!(!text.contains(name), "{name} in the plan:\n{text}");
    }
    expect_nuctl(&env, &state, &[], &["apply", "--auto-approve"], 0);
    expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 0);
    // A regroup deletes the project's own old functions, and only those.
    expect_nuctl(
        &env,
        &state,
        &[],
        &["apply", "--phase", "2", "--auto-approve"],
        0,
    );
    let (live, _) = status_of(&env, &state, &["--phase", "2"]);
    assert_eq!(live, ["quickstart-taska-taskb"]);
    for name in foreign {
        assert!(!touched(&state, since, name), "{name} was changed");
    }
    assert_eq!(foreign_json(&env, &state, &foreign, &local), before);
}

#[test]
fn http_trigger_service_type_is_passed_to_every_deploy_when_configured() {
    let (env, state) = quickstart_on_kube("http-trigger-service-type = \"NodePort\"\n");
    expect_nuctl(&env, &state, &[], &["apply", "--auto-approve"], 0);
    let deploys: Vec<Vec<String>> = calls(&state)
        .into_iter()
        .filter(|argv| argv[0] == "deploy")
        .collect();
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    for argv in &deploys {
        assert!(
            argv.windows(2)
                .any(|w| w == ["--http-trigger-service-type", "NodePort"]),
            "{argv:?}"
        );
    }
    // The kube platform gave the HTTP trigger a NodePort service
    // (pkg/platform/kube/platform.go `enrichTriggerWithServiceType`), whose external URL has an
    // empty host with the default Helm chart.
    let kube = ["--platform", "kube", "--namespace", "nuclio"];
    let json = foreign_json(&env, &state, &["quickstart-taska"], &kube);
    let function: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
    let triggers = function["spec"]["triggers"].as_object().unwrap();
    assert!(
        triggers
            .values()
            .all(|t| t["attributes"]["serviceType"] == "NodePort"),
        "{triggers:?}"
    );
    let external = function["status"]["externalInvocationUrls"][0]
        .as_str()
        .unwrap();
    assert!(external.starts_with(':'), "{external}");
    // The plan after the deploy shows no change: the service type is Nuclio's enrichment.
    expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 0);

    // Unset, nothing is passed and Nuclio's default ClusterIP applies.
    let (env, state) = quickstart_on_kube("");
    expect_nuctl(&env, &state, &[], &["apply", "--auto-approve"], 0);
    assert!(calls(&state)
        .iter()
        .all(|argv| !argv.iter().any(|a| a == "--http-trigger-service-type")));
}

#[test]
fn serve_answers_503_naming_the_setting_when_a_cluster_ip_function_has_no_external_url() {
    // Kubernetes settings with Nuclio's default ClusterIP service and the default
    // `invocation-url = "external"`: the function has internal URLs only
    // (pkg/platform/kube/controller/nucliofunction.go `populateFunctionInvocationStatus`).
    let (env, state) = quickstart_on_kube("invocation-url = \"external\"\n");
    let state_dir = state.display().to_string();
    let serve = Serve::start_with(
        &env,
        &[
            ("FUSIONIZER_NUCTL", FAKE_NUCTL),
            ("FAKE_NUCTL_DIR", state_dir.as_str()),
        ],
        &["--phase", "2", "--no-schedule"],
    );
    let response = client()
        .post(serve.url("/taska"))
        .json(&serde_json::json!({"value1": 1, "value2": 2}))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().unwrap();
    assert_eq!(status, 503, "{body}\n{}", serve.log());
    assert!(body.contains("quickstart-taska-taskb"), "{body}");
    assert!(body.contains("ClusterIP"), "{body}");
    assert!(
        body.contains("`[nuctl] http-trigger-service-type = \"NodePort\"`"),
        "{body}"
    );
    assert!(
        body.contains("`[nuctl] invocation-url = \"internal\"`"),
        "{body}"
    );
}

#[test]
fn serve_reaches_node_ports_at_the_controllers_external_address_on_kube() {
    // NodePort services, and a controller that knows the nodes' external address (the fake
    // serves each function on 127.0.0.1 and reports it as `127.0.0.1:<nodePort>`). Phase 1:
    // taska calls taskb across functions, through serve's proxy.
    let (env, state) = quickstart_on_kube("http-trigger-service-type = \"NodePort\"\n");
    let served = Served::new(&env, &state);
    let serve = served.start(&env, "1");
    assert_eq!(add(&serve, 5, 3), 8);
    assert_eq!(serve.metric("fusionizer_task_calls_total", "proxied"), 1.0);
    let deploys = calls(&state)
        .into_iter()
        .filter(|argv| argv[0] == "deploy")
        .count();
    assert_eq!(deploys, 2);
}

/// The whole journey of issue 12 on Kubernetes settings, starting from nothing: init, plan
/// (exit 2), apply, plan (exit 0), regroup, status, destroy, plan; functions of other owners in
/// the same Nuclio project stay untouched throughout.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one user journey, command by command"
)]
fn journey_on_kube_settings_from_init_to_destroy() {
    let env = TestEnv::new();
    let state = env.root().join("nuctl-state");
    std::fs::create_dir_all(&state).unwrap();

    // init, then the kube settings.
    let out = env
        .cmd()
        .args(["init", "--name", "journey"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let toml = env.project().join("fusion.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replace(
        "name = \"journey\"\n",
        "name = \"journey\"\nplatform = \"nuctl\"\n",
    );
    assert!(text.contains("platform = \"nuctl\""), "{text}");
    std::fs::write(
        &toml,
        format!(
            "{text}\n[nuctl]\nplatform = \"kube\"\nnamespace = \"nuclio\"\nregistry = \
             \"{REGISTRY}\"\nproject = \"shared\"\nhttp-trigger-service-type = \"NodePort\"\n"
        ),
    )
    .unwrap();

    // plan on a namespace without functions: exit 2, two to add.
    let out = expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 2);
    assert!(
        stdout(&out).contains("Plan: 2 to add, 0 to change, 0 to destroy."),
        "{}",
        stdout(&out)
    );

    // Others use the same Nuclio project: one function matches the project selector but is
    // hand-made (no `managed-by`), one is another team's.
    let kube = ["--platform", "kube", "--namespace", "nuclio"];
    fake_nuctl(
        &env,
        &state,
        env.root(),
        &[
            "create",
            "project",
            "shared",
            "--platform",
            "kube",
            "--namespace",
            "nuclio",
        ],
    );
    let mut flags = kube.to_vec();
    flags.extend(["--project-name", "shared"]);
    deploy_foreign(
        &env,
        &state,
        "journey-manual",
        "    fusionizer.io/project: journey\n",
        &flags,
    );
    deploy_foreign(
        &env,
        &state,
        "billing-report",
        "    team: billing\n",
        &flags,
    );
    let foreign = ["journey-manual", "billing-report"];
    let before = foreign_json(&env, &state, &foreign, &kube);
    let since = calls(&state).len();

    // apply; every deploy goes to the kube platform with the configured service type and
    // Nuclio project; plan is then a no-op.
    let out = expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 2);
    for name in foreign {
        assert!(!stdout(&out).contains(name), "{}", stdout(&out));
    }
    expect_nuctl(&env, &state, &[], &["apply", "--auto-approve"], 0);
    for argv in calls(&state)
        .iter()
        .filter(|argv| argv[0] == "deploy" && argv[1].starts_with("journey-task"))
    {
        for pair in [
            ["--http-trigger-service-type", "NodePort"],
            ["--project-name", "shared"],
            ["--platform", "kube"],
        ] {
            assert!(argv.windows(2).any(|w| w == pair), "{argv:?}");
        }
    }
    expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 0);
    let (live, drifts) = status_of(&env, &state, &[]);
    assert_eq!(live, ["journey-taska", "journey-taskb"]);
    assert!(drifts.iter().all(|d| d == "in sync"), "{drifts:?}");

    // Regroup to the fused phase.
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
    let (live, drifts) = status_of(&env, &state, &["--phase", "2"]);
    assert_eq!(live, ["journey-taska-taskb"]);
    assert!(drifts.iter().all(|d| d == "in sync"), "{drifts:?}");

    // destroy: every function the project owns goes, nothing else.
    let out = expect_nuctl(&env, &state, &[], &["destroy", "--auto-approve"], 0);
    assert!(
        !foreign.iter().any(|name| stdout(&out).contains(name)),
        "{}",
        transcript(&out)
    );
    let out = expect_nuctl(
        &env,
        &state,
        &[],
        &["plan", "--destroy", "--detailed-exitcode"],
        0,
    );
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
    let out = expect_nuctl(
        &env,
        &state,
        &[],
        &["plan", "--phase", "2", "--detailed-exitcode"],
        2,
    );
    assert!(
        stdout(&out).contains("Plan: 1 to add, 0 to change, 0 to destroy."),
        "{}",
        stdout(&out)
    );
    let (live, _) = status_of(&env, &state, &["--phase", "2"]);
    assert!(live.is_empty(), "{live:?}");

    // The others' functions were never touched.
    for name in foreign {
        assert!(!touched(&state, since, name), "{name} was changed");
    }
    assert_eq!(foreign_json(&env, &state, &foreign, &kube), before);
    let listing = fake_nuctl(
        &env,
        &state,
        env.root(),
        &[
            "get",
            "function",
            "-o",
            "json",
            "--platform",
            "kube",
            "--namespace",
            "nuclio",
        ],
    );
    let mut names: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&listing)
        .map_or_else(
            |_| {
                let one: serde_json::Value = serde_json::from_str(&listing).unwrap();
                vec![one["metadata"]["name"].as_str().unwrap().to_string()]
            },
            |functions| {
                functions
                    .iter()
                    .map(|f| f["metadata"]["name"].as_str().unwrap().to_string())
                    .collect()
            },
        );
    names.sort();
    assert_eq!(names, ["billing-report", "journey-manual"]);
}

/// Issue 20, item 3: without `--namespace` nuctl takes the kubeconfig context's namespace
/// (pkg/nuctl/command/nuctl.go), which a namespaced Nuclio may not watch: a deploy would wait
/// forever. `validate` and `plan` refuse before nuctl runs.
#[test]
fn kube_without_a_namespace_is_refused_by_validate_and_plan() {
    let (env, state) = quickstart_on_kube_with(&format!("registry = \"{REGISTRY}\"\n"));
    expect_refused(
        &env,
        &state,
        &[&["validate"], &["plan"], &["apply", "--auto-approve"]],
        &[
            "`nuctl.namespace` must be set when `nuctl.platform = \"kube\"`",
            "fusion.toml:",
            "hint: set `namespace` in `[nuctl]`",
        ],
    );
}

/// Runs each of `commands`, expecting exit 78 with every one of `expected` on stderr, and no
/// nuctl call at all.
fn expect_refused(env: &TestEnv, state: &Path, commands: &[&[&str]], expected: &[&str]) {
    for args in commands {
        let out = expect_nuctl(env, state, &[], args, 78);
        for text in expected {
            assert!(
                stderr(&out).contains(text),
                "{args:?}: {text}\n{}",
                transcript(&out)
            );
        }
    }
    assert!(calls(state).is_empty(), "{:?}", calls(state));
}

/// Issue 20, item 4: without `--registry` or `NUCTL_REGISTRY` nuctl never pushes the image
/// (pkg/containerimagebuilderpusher/docker.go), and the pod cannot pull it. `plan` and `apply`
/// refuse, naming both; the variable alone is enough.
#[test]
fn kube_without_a_registry_is_refused_at_plan_naming_the_setting_and_the_variable() {
    let (env, state) = quickstart_on_kube_with("namespace = \"nuclio\"\n");
    expect_refused(
        &env,
        &state,
        &[&["plan"], &["apply", "--auto-approve"]],
        &[
            "`nuctl.registry` is not set and neither is `NUCTL_REGISTRY`",
            "ImagePullBackOff",
            "or export `NUCTL_REGISTRY`",
        ],
    );
    // The variable nuctl itself reads is as good as the setting.
    let registry = [("NUCTL_REGISTRY", REGISTRY)];
    let out = expect_nuctl(&env, &state, &registry, &["plan", "--detailed-exitcode"], 2);
    assert!(
        stdout(&out).contains("Plan: 2 to add"),
        "{}",
        transcript(&out)
    );
    // Docker builds and runs on this machine: no registry needed there.
    let (env, state) = quickstart_on_nuctl();
    expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 2);
}

/// Whether a process holding `FAKE_NUCTL_DIR=<state>` in its environment is still running.
fn fake_running(state: &Path) -> bool {
    let needle = format!("FAKE_NUCTL_DIR={}", state.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("environ")).ok())
        .any(|environ| {
            environ
                .split(|b| *b == 0)
                .any(|var| var == needle.as_bytes())
        })
}

/// Issue 20, item 5: every deploy has a deadline. A deploy no controller ever picks up (nuctl
/// polls forever, pkg/platform/kube/client/deployer.go) is killed at `build-timeout` plus
/// `readiness-timeout`, with what it started; apply names the function, the state nuctl
/// reports and the commands that show why, and the functions already deployed stay.
#[test]
fn a_deploy_that_never_becomes_ready_is_stopped_at_its_deadline_and_nothing_else_changes() {
    let (env, state) = quickstart_on_kube("readiness-timeout = \"2s\"\nbuild-timeout = \"1s\"\n");
    expect_nuctl(&env, &state, &[], &["apply", "--auto-approve"], 0);
    for argv in calls(&state).iter().filter(|argv| argv[0] == "deploy") {
        assert!(
            argv.windows(2).any(|w| w == ["--readiness-timeout", "2"]),
            "{argv:?}"
        );
    }

    // nuctl run through a shell that does not exec it: killing the shell alone would leave
    // the fake polling.
    let wrapper = env.root().join("nuctl-wrapper");
    std::fs::write(&wrapper, format!("#!/bin/sh\n'{FAKE_NUCTL}' \"$@\"\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let wrapper = wrapper.display().to_string();
    let before = calls(&state).len();
    let out = expect_nuctl(
        &env,
        &state,
        &[
            ("FAKE_NUCTL_NEVER_READY", "quickstart-taska-taskb"),
            ("FUSIONIZER_NUCTL", wrapper.as_str()),
        ],
        &["apply", "--phase", "2", "--auto-approve"],
        1,
    );
    let text = stderr(&out);
    for expected in [
        "quickstart-taska-taskb",
        "`nuctl deploy` did not finish within 3s (`[nuctl] build-timeout` 1s plus \
         `readiness-timeout` 2s), so it was stopped; its state is \
         `waitingForResourceConfiguration`",
        "get function quickstart-taska-taskb -o yaml --platform kube --namespace nuclio`",
        "`kubectl describe pods --namespace nuclio -l \
         nuclio.io/function-name=quickstart-taska-taskb`",
    ] {
        assert!(text.contains(expected), "{expected}\n{}", transcript(&out));
    }
    // The old functions were not deleted: they still serve taska and taskb.
    let since = &calls(&state)[before..];
    assert!(
        !since.iter().any(|argv| argv[0] == "delete"),
        "{}",
        command_lines(since)
    );
    let (live, _) = status_of(&env, &state, &[]);
    assert_eq!(live.len(), 3, "{live:?}");
    for old in ["quickstart-taska", "quickstart-taskb"] {
        assert!(live.iter().any(|l| l == old), "{live:?}");
    }
    // Nothing nuctl started is left running.
    assert!(!fake_running(&state), "the fake nuctl is still running");
}

/// Issue 20, item 7: client-go and exec credential plugins print warnings on nuctl's stderr,
/// on any command. The whole journey reads nuctl's answers the same with them.
#[test]
fn warnings_on_nuctl_stderr_change_no_answer() {
    let warn = [("FAKE_NUCTL_WARN", "1")];
    for kube in [false, true] {
        let (env, state) = if kube {
            quickstart_on_kube("")
        } else {
            quickstart_on_nuctl()
        };
        let out = expect_nuctl(&env, &state, &warn, &["plan", "--detailed-exitcode"], 2);
        assert!(
            stdout(&out).contains("Plan: 2 to add, 0 to change, 0 to destroy."),
            "kube: {kube}\n{}",
            transcript(&out)
        );
        expect_nuctl(&env, &state, &warn, &["apply", "--auto-approve"], 0);
        expect_nuctl(&env, &state, &warn, &["plan", "--detailed-exitcode"], 0);
        expect_nuctl(&env, &state, &warn, &["status"], 0);
        expect_nuctl(&env, &state, &warn, &["destroy", "--auto-approve"], 0);
        let out = expect_nuctl(
            &env,
            &state,
            &warn,
            &["plan", "--destroy", "--detailed-exitcode"],
            0,
        );
        assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
        expect_nuctl(&env, &state, &warn, &["plan", "--detailed-exitcode"], 2);
    }
}

/// nuctl runs in a process group of its own (so that a deadline ends what it started), out of
/// the terminal's reach: a Ctrl-C (SIGINT) to `apply` is passed on to it, and apply exits 130.
#[test]
fn a_ctrl_c_during_a_deploy_reaches_nuctl() {
    let (env, state) = quickstart_on_kube("");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fusionizer"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.root().join("home"))
        .env("NO_COLOR", "1")
        .env("FUSIONIZER_NUCTL", FAKE_NUCTL)
        .env("FAKE_NUCTL_DIR", &state)
        .env("FAKE_NUCTL_NEVER_READY", "quickstart-taska")
        .current_dir(env.project())
        .args(["apply", "--auto-approve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut apply = cmd.spawn().unwrap();
    // (`fake_running` would see apply itself: it carries the fake's variables too.)
    wait_for("nuctl deploying", Duration::from_secs(60), || {
        calls(&state)
            .iter()
            .any(|argv| argv[0] == "deploy")
            .then_some(())
    });
    let _ = std::process::Command::new("kill")
        .args(["-INT", &apply.id().to_string()])
        .status();
    let status = wait_for("apply to exit", Duration::from_secs(60), || {
        apply.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(130));
    wait_for("nuctl to stop", Duration::from_secs(30), || {
        (!fake_running(&state)).then_some(())
    });
}

/// Issue 24 item 4: in a pod, nuctl has no kubeconfig and uses its service account
/// (pkg/platform/kube/platform.go `NewPlatform`, pkg/common/k8s.go `GetClientConfig`, client-go's
/// `rest.InClusterConfig`). `plan` on kube without `[nuctl] kubeconfig` passes no
/// `--kubeconfig`, and works where the pod's credentials are (the fake checks them, as nuctl
/// builds its client from them); without them nuctl's error comes through.
#[test]
fn plan_on_kube_works_without_a_kubeconfig_with_the_pods_service_account() {
    let (env, state) = quickstart_on_kube("");
    let account = env.root().join("serviceaccount");
    std::fs::create_dir_all(&account).unwrap();
    std::fs::write(account.join("token"), "a-token").unwrap();
    let account = account.display().to_string();
    let in_pod = [
        ("FAKE_NUCTL_CREDENTIALS", "1"),
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
        ("KUBERNETES_SERVICE_PORT", "6443"),
        ("FAKE_NUCTL_SERVICE_ACCOUNT_DIR", account.as_str()),
    ];
    let out = expect_nuctl(&env, &state, &in_pod, &["plan", "--detailed-exitcode"], 2);
    assert!(
        stdout(&out).contains("Plan: 2 to add, 0 to change, 0 to destroy."),
        "{}",
        transcript(&out)
    );
    let calls = calls(&state);
    assert!(!calls.is_empty());
    for call in &calls {
        assert!(!call.iter().any(|a| a == "--kubeconfig"), "{call:?}");
    }
    // Outside a pod, with no kubeconfig either, nuctl cannot build its client.
    let out = expect_nuctl(
        &env,
        &state,
        &[("FAKE_NUCTL_CREDENTIALS", "1")],
        &["plan"],
        1,
    );
    assert!(
        stderr(&out).contains("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT"),
        "{}",
        transcript(&out)
    );
}
