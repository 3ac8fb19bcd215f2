//! `fusionizer build`, `validate` and `init` against temp projects: artifact layout, determinism,
//! merge conflicts, validation errors, JSON output and grouping selection.

use std::path::Path;

use crate::support::{transcript, tree, TestEnv};

const PY_TASK: &str = "apiVersion: nuclio.io/v1beta1\nkind: NuclioFunction\nmetadata:\n  name: x\n\
spec:\n  runtime: python:3.11\n  handler: main:handler\n";

/// A task `function.yaml` with extra `spec` lines appended.
fn task_yaml(extra_spec: &str) -> String {
    format!("{PY_TASK}{extra_spec}")
}

fn fused_toml(project: &str) -> String {
    format!(
        "[project]\nname = \"{project}\"\n\n[tasks]\ntaska = \"tasks/taska\"\ntaskb = \"tasks/taskb\"\n\n\
         [[phase]]\nafter = \"0s\"\ngroups = [[\"taska\", \"taskb\"]]\n"
    )
}

fn dirs(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn quickstart_builds_one_dir_per_group_and_rebuilds_byte_identically() {
    let env = TestEnv::example("quickstart");
    let build_dir = env.project().join(".fusionizer/build");

    let alone = env.cmd().arg("build").output().unwrap();
    assert!(alone.status.success(), "{}", transcript(&alone));
    assert_eq!(
        dirs(&build_dir),
        vec!["quickstart-taska", "quickstart-taskb"]
    );

    let fused = env.cmd().args(["build", "--phase", "2"]).output().unwrap();
    assert!(fused.status.success(), "{}", transcript(&fused));
    // The phase-1 functions are stale now and were removed.
    assert_eq!(dirs(&build_dir), vec!["quickstart-taska-taskb"]);
    let first_tree = tree(&build_dir);

    let again = env.cmd().args(["build", "--phase", "2"]).output().unwrap();
    assert!(again.status.success(), "{}", transcript(&again));
    assert_eq!(stdout(&again), stdout(&fused));
    assert!(
        tree(&build_dir) == first_tree,
        "rebuild changed the artifact bytes"
    );

    let artifact = build_dir.join("quickstart-taska-taskb");
    let files: Vec<String> = tree(&artifact).into_iter().map(|(p, _)| p).collect();
    for expected in [
        "_fusionizer_entry.py",
        "function.yaml",
        "fusionizer_dispatcher/__init__.py",
        "fusionizer_tasks/taska/function.yaml",
        "fusionizer_tasks/taska/main.py",
        "fusionizer_tasks/taskb/function.yaml",
        "fusionizer_tasks/taskb/main.py",
    ] {
        assert!(
            files.contains(&expected.to_string()),
            "{expected} not in {files:?}"
        );
    }
    // The printed digest is the one in the function.yaml annotation.
    let function_yaml = std::fs::read_to_string(artifact.join("function.yaml")).unwrap();
    let digest = stdout(&fused)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    assert!(function_yaml.contains(&format!("fusionizer.io/digest: {digest}")));

    env.settings().bind(|| {
        insta::assert_snapshot!("quickstart_build_phase_2", transcript(&fused));
        insta::assert_snapshot!("quickstart_fused_function_yaml", function_yaml);
    });
}

#[test]
fn changing_one_task_changes_only_the_groups_that_contain_it() {
    let env = TestEnv::example("quickstart");
    let digests = |env: &TestEnv| {
        let out = env.cmd().arg("build").output().unwrap();
        assert!(out.status.success(), "{}", transcript(&out));
        stdout(&out)
            .lines()
            .map(|l| {
                let mut parts = l.split_whitespace();
                (
                    parts.next().unwrap().to_string(),
                    parts.nth(1).unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let before = digests(&env);
    env.write(&[(
        "tasks/taskb/main.py",
        "def handler(context, event):\n    return 2\n",
    )]);
    let after = digests(&env);
    assert_eq!(before[0].0, "quickstart-taska");
    assert_eq!(before[0], after[0], "taska's function must not change");
    assert_eq!(before[1].0, after[1].0);
    assert_ne!(before[1].1, after[1].1, "taskb's function must change");
}

#[test]
fn tasks_with_the_same_file_names_do_not_clash() {
    let env = TestEnv::new();
    env.write(&[
        ("fusion.toml", &fused_toml("shop")),
        ("tasks/taska/function.yaml", PY_TASK),
        (
            "tasks/taska/main.py",
            "import utils\n\ndef handler(context, event):\n    return utils.NAME\n",
        ),
        ("tasks/taska/utils.py", "NAME = 'a'\n"),
        ("tasks/taskb/function.yaml", PY_TASK),
        (
            "tasks/taskb/main.py",
            "import utils\n\ndef handler(context, event):\n    return utils.NAME\n",
        ),
        ("tasks/taskb/utils.py", "NAME = 'b'\n"),
    ]);
    let out = env.cmd().arg("build").output().unwrap();
    assert!(out.status.success(), "{}", transcript(&out));
    let artifact = env.project().join(".fusionizer/build/shop-taska-taskb");
    let read = |rel: &str| std::fs::read_to_string(artifact.join(rel)).unwrap();
    assert_eq!(read("fusionizer_tasks/taska/utils.py"), "NAME = 'a'\n");
    assert_eq!(read("fusionizer_tasks/taskb/utils.py"), "NAME = 'b'\n");
    assert!(read("fusionizer_tasks/taska/main.py").contains("import utils"));
    assert!(read("fusionizer_tasks/taskb/main.py").contains("import utils"));
    assert!(read("_fusionizer_entry.py")
        .contains(r#"tasks={"taska": "main:handler", "taskb": "main:handler"}"#));
}

#[test]
fn conflicting_env_is_refused_naming_both_tasks() {
    let env = TestEnv::new();
    env.write(&[
        ("fusion.toml", &fused_toml("shop")),
        (
            "tasks/taska/function.yaml",
            &task_yaml("  env:\n  - name: GREETING\n    value: hello\n"),
        ),
        // (a handler each: validate checks the tasks' Python before it fuses)
        (
            "tasks/taska/main.py",
            "def handler(context, event):\n    pass\n",
        ),
        (
            "tasks/taskb/function.yaml",
            &task_yaml("  env:\n  - name: GREETING\n    value: goodbye\n"),
        ),
        (
            "tasks/taskb/main.py",
            "def handler(context, event):\n    pass\n",
        ),
    ]);
    let out = env.cmd().arg("build").output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", transcript(&out));
    assert!(!env.project().join(".fusionizer").exists());
    env.settings().bind(|| {
        insta::assert_snapshot!("env_conflict_build", transcript(&out));
    });

    // validate catches it too, and says in which phase.
    let out = env.cmd().arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", transcript(&out));
    env.settings().bind(|| {
        insta::assert_snapshot!("env_conflict_validate", transcript(&out));
    });
}

#[test]
fn five_mistakes_are_reported_at_once_and_nothing_is_written() {
    let env = TestEnv::new();
    env.write(&[
        (
            "fusion.toml",
            r#"[project]
name = "Shop"
colour = "blue"

[tasks]
taska = "tasks/taska"
taskb = "tasks/missing"

[[phase]]
after = "1m"
groups = [["taska", "tsakb"]]

[[phase]]
after = "30s"
groups = [["taska"]]
"#,
        ),
        ("tasks/taska/function.yaml", PY_TASK),
        ("tasks/taska/main.py", ""),
    ]);
    let out = env.cmd().arg("build").output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", transcript(&out));
    assert!(
        !env.project().join(".fusionizer").exists(),
        "build wrote something"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(5 problems)"), "{stderr}");
    env.settings().bind(|| {
        insta::assert_snapshot!("five_mistakes", transcript(&out));
    });
}

#[test]
fn json_output_lists_every_function() {
    let env = TestEnv::example("quickstart");
    let out_dir = env.root().join("out");
    let out = env
        .cmd()
        .args(["build", "--output", "json", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", transcript(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let functions = doc["functions"].as_array().unwrap();
    assert_eq!(functions.len(), 2);
    for function in functions {
        let path = Path::new(function["path"].as_str().unwrap());
        assert_eq!(path, out_dir.join(function["name"].as_str().unwrap()));
        let yaml = std::fs::read_to_string(path.join("function.yaml")).unwrap();
        let digest = function["digest"].as_str().unwrap();
        assert!(yaml.contains(&format!("fusionizer.io/digest: {digest}")));
    }
    assert!(!env.project().join(".fusionizer").exists());
    env.settings().bind(|| {
        insta::assert_snapshot!("quickstart_build_json", stdout(&out));
    });
}

#[test]
fn init_then_validate_then_build() {
    let env = TestEnv::new();
    let out = env
        .cmd()
        .args(["init", "demo", "--name", "demo"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", transcript(&out));
    let demo = env.project().join("demo");
    for file in [
        "fusion.toml",
        "tasks/taska/function.yaml",
        "tasks/taska/main.py",
        "tasks/taskb/function.yaml",
        "tasks/taskb/main.py",
    ] {
        assert!(demo.join(file).is_file(), "{file} missing");
    }
    let taska = std::fs::read_to_string(demo.join("tasks/taska/main.py")).unwrap();
    assert!(
        taska.contains("call_function(\n        \"taskb\""),
        "{taska}"
    );

    let out = env.cmd().args(["-C", "demo", "validate"]).output().unwrap();
    assert!(out.status.success(), "{}", transcript(&out));
    assert_eq!(stdout(&out), "fusion.toml is valid: 2 tasks, 2 phases\n");

    let out = env
        .cmd()
        .args(["-C", "demo", "build", "--phase", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", transcript(&out));
    assert!(stdout(&out).starts_with("demo-taska-taskb  taska,taskb  sha256:"));
    assert!(demo
        .join(".fusionizer/build/demo-taska-taskb/function.yaml")
        .is_file());

    // A second init refuses to overwrite.
    let out = env.cmd().args(["init", "demo"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    env.settings().bind(|| {
        insta::assert_snapshot!("init_refuses_to_overwrite", transcript(&out));
    });
}

#[test]
fn init_names_the_project_after_its_directory() {
    let env = TestEnv::new();
    let out = env.cmd().args(["init", "My_Shop"]).output().unwrap();
    assert!(out.status.success(), "{}", transcript(&out));
    let toml = std::fs::read_to_string(env.project().join("My_Shop/fusion.toml")).unwrap();
    assert!(toml.contains("name = \"my-shop\""), "{toml}");
}

#[test]
fn phase_and_at_select_the_same_grouping() {
    let env = TestEnv::example("quickstart");
    let by_phase = env.cmd().args(["build", "--phase", "2"]).output().unwrap();
    let by_at = env.cmd().args(["build", "--at", "40s"]).output().unwrap();
    assert!(by_phase.status.success(), "{}", transcript(&by_phase));
    assert!(by_at.status.success(), "{}", transcript(&by_at));
    assert_eq!(stdout(&by_phase), stdout(&by_at));
    assert_eq!(stdout(&by_phase).lines().count(), 1);

    let before = env.cmd().args(["build", "--at", "39s"]).output().unwrap();
    assert!(before.status.success(), "{}", transcript(&before));
    let names: Vec<&str> = std::str::from_utf8(&before.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, vec!["quickstart-taska", "quickstart-taskb"]);
}

#[test]
fn the_documented_example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fusion.toml.example");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = fusionizer::config::parse(&path, &text).unwrap();
    assert_eq!(config.tasks.len(), 3);
    assert_eq!(config.phases.len(), 2);
    assert_eq!(
        config.optimizer,
        fusionizer::config::OptimizerConfig::default()
    );
    assert_eq!(config.overrides.len(), 1);
}

/// Two tasks, each installing its own `requirements.txt` after Nuclio's code copy.
fn post_copy_project() -> TestEnv {
    let env = TestEnv::new();
    let spec = task_yaml(
        "  build:\n    commands:\n    - '@nuclio.postCopy'\n    - pip install -r /opt/nuclio/requirements.txt\n",
    );
    for task in ["taska", "taskb"] {
        env.write(&[
            (&format!("tasks/{task}/function.yaml"), spec.as_str()),
            (
                &format!("tasks/{task}/main.py"),
                "def handler(context, event):\n    return 'ok'\n",
            ),
            (
                &format!("tasks/{task}/requirements.txt"),
                "# nothing to install: the test runs offline\n",
            ),
        ]);
    }
    env.write(&[("fusion.toml", &fused_toml("postcopy"))]);
    env
}

#[test]
fn post_copy_build_commands_follow_the_task_files_in_plan_and_on_the_local_platform() {
    let env = post_copy_project();
    let output = env
        .cmd()
        .env("FUSIONIZER_CACHE_DIR", crate::support::cache_dir())
        .args(["plan"])
        .output()
        .unwrap();
    let text = transcript(&output);
    for task in ["taska", "taskb"] {
        assert!(
            text.contains(&format!(
                "build:  {task}: `pip install -r /opt/nuclio/requirements.txt`\n              \
                 runs as `pip install -r /opt/nuclio/fusionizer_tasks/{task}/requirements.txt`"
            )),
            "{text}"
        );
    }
    // The local platform runs them too, `/opt/nuclio` being the function's directory (and the
    // post-copy marker no command): the fused function deploys and answers.
    let serve = crate::support::Serve::start(&env, &[]);
    let response = crate::support::client()
        .post(serve.url("/taskb"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "ok");
}

#[test]
fn a_post_copy_path_that_cannot_follow_the_task_is_refused_at_validate() {
    let env = post_copy_project();
    std::fs::remove_file(env.project().join("tasks/taskb/requirements.txt")).unwrap();
    let output = env.cmd().arg("validate").output().unwrap();
    let text = transcript(&output);
    assert_eq!(output.status.code(), Some(78), "{text}");
    assert!(
        text.contains(
            "task `taskb`: the build command `pip install -r /opt/nuclio/requirements.txt` names \
             `/opt/nuclio/requirements.txt`"
        ),
        "{text}"
    );
}

/// The quickstart with `taska` (a requests_session-style task) no longer installing `requests`.
fn quickstart_without_requests() -> TestEnv {
    let env = TestEnv::example("quickstart");
    env.write(&[(
        "tasks/taska/function.yaml",
        "apiVersion: nuclio.io/v1beta1\nkind: NuclioFunction\nmetadata:\n  name: taska\n\
         spec:\n  runtime: python:3.11\n  handler: main:handler\n",
    )]);
    env
}

#[test]
fn validate_and_plan_warn_about_a_requests_session_task_that_does_not_install_requests() {
    let env = quickstart_without_requests();
    for command in ["validate", "plan"] {
        let output = env
            .cmd()
            .env("FUSIONIZER_CACHE_DIR", crate::support::cache_dir())
            .arg(command)
            .output()
            .unwrap();
        let text = transcript(&output);
        assert!(
            output.status.code() == Some(0) || output.status.code() == Some(2),
            "{text}"
        );
        assert!(
            text.contains(
                "tasks/taska/main.py:10:1: task `taska`: handler `handler` takes a \
                 `requests_session`, but the task's build commands do not install `requests`"
            ) && text.contains("add `pip install requests` to `spec.build.commands`"),
            "{command}: {text}"
        );
    }
    // The quickstart as it is installs it, and gets no warning.
    let env = TestEnv::example("quickstart");
    let output = env.cmd().arg("validate").output().unwrap();
    let text = transcript(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(!text.contains("requests_session"), "{text}");
}

#[test]
fn the_local_environment_lacks_requests_as_nuclios_image_does() {
    // Nuclio's image installs nuclio-sdk and msgpack only (its wrapper's requirements): a
    // requests_session task that does not install `requests` itself fails to deploy here too,
    // naming the fix, instead of working locally and failing on the cluster.
    let env = quickstart_without_requests();
    let output = env
        .cmd()
        .env("FUSIONIZER_CACHE_DIR", crate::support::cache_dir())
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    let text = transcript(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("task `taska` takes a `requests_session`")
            && text.contains("add `pip install requests` to the task's build commands"),
        "{text}"
    );
}
