//! The command line as a user meets it: `--help` keeps each command's options apart from the
//! global ones and lists `--output` values, `init` and `completions` take no project options,
//! the commands that talk to serve find the running one without `--server`, and a task's
//! structured log fields reach serve's terminal and its JSON events.

use std::time::Duration;

use crate::support::{add, Serve, TestEnv};

/// `fusionizer ARGS` in an empty project dir: (exit code, stdout, stderr).
fn run(env: &TestEnv, args: &[&str]) -> (Option<i32>, String, String) {
    let out = env.cmd().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_puts_global_options_under_their_own_heading_after_the_commands_own() {
    let env = TestEnv::new();
    for command in ["plan", "build", "status", "invoke", "serve"] {
        let (code, help, _) = run(&env, &[command, "--help"]);
        assert_eq!(code, Some(0), "{help}");
        let global = help.find("Global options:").unwrap_or_else(|| {
            panic!("no `Global options:` heading in `{command} --help`:\n{help}")
        });
        let (own, globals) = help.split_at(global);
        assert!(own.contains("Options:"), "{help}");
        for flag in [
            "-C <DIR>",
            "--config <FILE>",
            "--state-dir <DIR>",
            "--overlay <FILE>",
            "--color <COLOR>",
            "--log-format",
        ] {
            assert!(
                !own.contains(flag),
                "`{flag}` among {command}'s own options:\n{help}"
            );
            assert!(globals.contains(flag), "`{flag}` not global in:\n{help}");
        }
    }
}

#[test]
fn build_and_status_output_list_their_values() {
    let env = TestEnv::new();
    for command in ["build", "status"] {
        let (_, help, _) = run(&env, &[command, "--help"]);
        let output = &help[help.find("--output").expect("--output")..];
        let output = &output[..output.find("Global options:").unwrap_or(output.len())];
        assert!(
            output.contains("Possible values:")
                && output.contains("- text")
                && output.contains("- json"),
            "`{command} --output` does not list its values:\n{help}"
        );
        let (code, _, err) = run(&env, &[command, "--output", "markdown"]);
        assert_eq!(code, Some(64), "{err}");
        assert!(err.contains("[possible values: text, json]"), "{err}");
    }
}

#[test]
fn init_and_completions_take_no_project_options() {
    let env = TestEnv::new();
    for command in ["init", "completions"] {
        let (_, help, _) = run(&env, &[command, "--help"]);
        assert!(
            !help.contains("--config"),
            "{command} offers --config:\n{help}"
        );
        assert!(!help.contains("-C <DIR>"), "{command} offers -C:\n{help}");
        for flag in ["--state-dir", "--overlay"] {
            assert!(!help.contains(flag), "{command} offers {flag}:\n{help}");
        }
    }
    for args in [
        &["init", "--config", "x.toml"][..],
        &["--config", "x.toml", "init"],
        &["-C", ".", "init"],
        &["completions", "bash", "-C", "."],
        &["init", "--state-dir", "state"],
        &["--overlay", "o.toml", "completions", "bash"],
    ] {
        let (code, out, err) = run(&env, args);
        assert_eq!(code, Some(64), "{args:?}: {out}{err}");
        assert!(
            err.contains(
                "`-C`, `--config`, `--state-dir` and `--overlay` mean nothing to `fusionizer "
            ),
            "{args:?}: {err}"
        );
    }
    assert!(!env.project().join("fusion.toml").exists());
    // Without them both still work.
    let (code, script, err) = run(&env, &["completions", "bash"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(script.contains("fusionizer"), "{script}");
}

#[test]
fn invoke_finds_the_running_serve_without_server_and_forgets_it_when_serve_exits() {
    let env = TestEnv::example("quickstart");
    let record = env.project().join(".fusionizer/serve.json");
    // `--listen 127.0.0.1:0`: a port nobody chose, so only the record can lead `invoke` there.
    let serve = Serve::start(&env, &[]);
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(recorded["url"], serve.base.as_str(), "{recorded}");
    assert_eq!(recorded["pid"], serve.pid(), "{recorded}");

    let (code, out, err) = run(
        &env,
        &["invoke", "taska", "-d", r#"{"value1": 5, "value2": 3}"#],
    );
    assert_eq!(code, Some(0), "{out}{err}\n{}", serve.log());
    assert!(
        out.contains("\"result\": 8") || out.contains("\"result\":8"),
        "{out}"
    );
    let (code, out, err) = run(&env, &["traces", "export", "-"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("\"taska\""), "{out}");
    let (code, out, err) = run(&env, &["optimize", "--explain"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("{}/-/traces", serve.base)), "{out}");

    assert_eq!(serve.terminate(), Some(0));
    assert!(!record.exists(), "serve left its address record behind");
}

#[test]
fn a_record_of_a_serve_that_is_gone_is_noted_and_not_used() {
    let env = TestEnv::example("quickstart");
    // A process that has exited: its pid names no running serve.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    env.write(&[(
        ".fusionizer/serve.json",
        &format!(r#"{{"url": "http://127.0.0.1:9", "pid": {pid}}}"#),
    )]);
    // `[serve] listen` stays the default; whether something answers there does not matter.
    let (_, out, err) = run(&env, &["invoke", "taska", "--timeout", "2s"]);
    assert!(
        err.contains(&format!(
            "note: `.fusionizer/serve.json` names serve at http://127.0.0.1:9 (pid {pid}), \
             which is no longer running; using 127.0.0.1:8000"
        )),
        "{out}{err}"
    );
    assert!(
        !err.contains("127.0.0.1:9`"),
        "the stale address was used: {err}"
    );
}

/// Starts the quickstart's serve with `args`, calls `taska` (it logs `taskb answered` with the
/// field `result`), waits for `needle` in serve's log and returns the log.
fn log_of_one_call(args: &[&str], needle: &str) -> String {
    let env = TestEnv::example("quickstart");
    let serve = Serve::start(&env, args);
    let (status, body) = add(&serve, "taska", 5, 3);
    assert_eq!(status, 200, "{body}");
    serve.wait_for_log(needle, Duration::from_secs(30));
    serve.log()
}

#[test]
fn a_tasks_log_fields_show_on_serves_terminal_unfused_and_fused() {
    // Phase 1: taska alone in its function; phase 2: fused with taskb.
    for phase in ["1", "2"] {
        log_of_one_call(&["--phase", phase], "taska | taskb answered result=8\n");
    }
}

#[test]
fn a_tasks_log_fields_are_a_fields_object_in_json_events() {
    for phase in ["1", "2"] {
        let log = log_of_one_call(
            &["--phase", phase, "--log-format", "json"],
            r#""fields":{"result":8}"#,
        );
        let event = log
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|e| e["event"] == "task_output" && e["message"] == "taskb answered")
            .unwrap_or_else(|| panic!("no task_output event:\n{log}"));
        assert_eq!(event["task"], "taska", "{event}");
        assert_eq!(event["fields"], serde_json::json!({"result": 8}), "{event}");
    }
}

#[test]
fn init_writes_a_gitignore_for_the_state_dir_and_adds_to_one_there() {
    let env = TestEnv::new();
    let (code, _, err) = run(&env, &["init", "fresh"]);
    assert_eq!(code, Some(0), "{err}");
    let ignore = std::fs::read_to_string(env.project().join("fresh/.gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == ".fusionizer/"), "{ignore}");

    // An existing .gitignore keeps its lines and gains the one line, once.
    env.write(&[("kept/.gitignore", "target/")]);
    let (code, _, err) = run(&env, &["init", "kept"]);
    assert_eq!(code, Some(0), "{err}");
    let ignore = std::fs::read_to_string(env.project().join("kept/.gitignore")).unwrap();
    assert!(ignore.starts_with("target/\n"), "{ignore}");
    assert_eq!(
        ignore.lines().filter(|l| *l == ".fusionizer/").count(),
        1,
        "{ignore}"
    );
}

#[test]
fn init_declares_the_task_directories_already_there() {
    let env = TestEnv::example("quickstart");
    std::fs::remove_file(env.project().join("fusion.toml")).unwrap();
    // One under tasks/, one at the top; a directory without function.yaml is no task.
    std::fs::rename(
        env.project().join("tasks/taskb"),
        env.project().join("taskb"),
    )
    .unwrap();
    env.write(&[("notes/readme.txt", "not a task")]);
    let (code, _, err) = run(&env, &["init", "--name", "found"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("taska (tasks/taska), taskb (taskb)"), "{err}");
    let toml = std::fs::read_to_string(env.project().join("fusion.toml")).unwrap();
    assert!(
        toml.contains("taska = \"tasks/taska\"\ntaskb = \"taskb\"\n"),
        "{toml}"
    );
    assert!(!toml.contains("notes"), "{toml}");
    // No example tasks are written over or beside them, and the result is valid.
    assert!(!env.project().join("tasks/taskb").exists());
    let (code, out, err) = run(&env, &["validate"]);
    assert_eq!(code, Some(0), "{out}{err}");
}

#[test]
fn status_shows_each_functions_urls_through_the_running_serve_on_the_local_platform() {
    let env = TestEnv::example("quickstart");
    let serve = Serve::start(&env, &[]);
    let (code, out, err) = run(&env, &["status", "--phase", "1"]);
    assert_eq!(code, Some(0), "{err}");
    for task in ["taska", "taskb"] {
        let line = format!("quickstart-{task}  {}/{task}\n", serve.base);
        assert!(out.contains(&line), "no `{line}` in:\n{out}");
    }
    let (code, out, err) = run(&env, &["status", "--phase", "1", "--output", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let taska = doc["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == "quickstart-taska")
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(
        taska["urls"],
        serde_json::json!([format!("{}/taska", serve.base)]),
        "{doc}"
    );
    assert_eq!(serve.terminate(), Some(0));
}

#[test]
fn status_shows_each_functions_own_url_on_nuctl() {
    use crate::support::{expect_nuctl, quickstart_on_nuctl, stdout};
    let (env, state) = quickstart_on_nuctl();
    expect_nuctl(&env, &state, &[], &["apply", "--auto-approve"], 0);
    let out = expect_nuctl(&env, &state, &[], &["status", "--output", "json"], 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    for function in doc["functions"].as_array().unwrap() {
        let url = function["urls"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{doc}"));
        // Nuclio's Docker platform reports `0.0.0.0:<port>`: this machine.
        assert!(url.starts_with("http://127.0.0.1:"), "{doc}");
    }
    let out = expect_nuctl(&env, &state, &[], &["status"], 0);
    let text = stdout(&out);
    assert!(text.contains("FUNCTION          URL\n"), "{text}");
    assert!(
        text.contains("quickstart-taska  http://127.0.0.1:"),
        "{text}"
    );
}
