//! A task's broken Python is caught before deploy (issue 21, items 5 and 8): `validate` and
//! `plan` compile every task file and check the handler from the syntax tree; a task that still
//! fails to import at deploy gets one line (the traceback only with `-v`), and serve's retries
//! say it once, then count; typos in a handler's module or a task directory get "did you mean".

use std::time::Duration;

use crate::support::{cache_dir, transcript, Serve, TestEnv};

const HANDLER: &str = "def handler(context, event):\n    return 'ok'\n";

/// A project `shop` on the local platform with tasks `a` and `b` (`main:handler` each, alone);
/// `b`'s `main.py` is `b_main`.
fn project(b_main: &str) -> TestEnv {
    let env = TestEnv::new();
    env.write(&[
        (
            "fusion.toml",
            "[project]\nname = \"shop\"\n\n[tasks]\na = \"tasks/a\"\nb = \"tasks/b\"\n",
        ),
        ("tasks/a/function.yaml", &function_yaml("main:handler")),
        ("tasks/a/main.py", HANDLER),
        ("tasks/b/function.yaml", &function_yaml("main:handler")),
        ("tasks/b/main.py", b_main),
    ]);
    env
}

fn function_yaml(handler: &str) -> String {
    format!("metadata:\n  name: x\nspec:\n  runtime: \"python:3.11\"\n  handler: \"{handler}\"\n")
}

/// Runs `fusionizer ARGS`, asserts exit `code`, returns stderr.
fn stderr_of(env: &TestEnv, args: &[&str], code: i32) -> String {
    let out = env
        .cmd()
        .env("FUSIONIZER_CACHE_DIR", cache_dir())
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", transcript(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The case: a missing `:` passed `validate` and `plan` (both exited 0).
#[test]
fn a_syntax_error_fails_validate_and_plan_with_task_file_line_and_column() {
    let env = project("\n\ndef handler(context, event)\n    return 'ok'\n");
    for command in [&["validate"][..], &["plan"][..]] {
        let err = stderr_of(&env, command, 78);
        assert!(
            err.contains("invalid configuration (1 problem)"),
            "{command:?}: {err}"
        );
        // The column is where Python puts the caret: after the `)`.
        assert!(
            err.contains("tasks/b/main.py:3:28: task `b`: invalid Python: "),
            "{command:?}: {err}"
        );
    }
}

#[test]
fn every_python_file_of_a_task_is_compiled_not_only_the_handler_module() {
    let env = project(HANDLER);
    env.write(&[("tasks/b/lib/util.py", "x = (1,\n")]);
    let err = stderr_of(&env, &["validate"], 78);
    // (Where Python puts an unclosed bracket differs between its versions.)
    assert!(
        err.contains("\n  tasks/b/lib/util.py:") && err.contains(": task `b`: invalid Python: "),
        "{err}"
    );
    // Nothing is run: a module that would fail at import passes.
    env.write(&[("tasks/b/lib/util.py", "raise SystemExit(3)\n")]);
    let out = stderr_of(&env, &["validate"], 0);
    assert_eq!(out, "");
}

#[test]
fn a_handler_missing_from_its_module_is_an_error_with_the_nearest_function() {
    let env = project("def handle(context, event):\n    return 1\n");
    let err = stderr_of(&env, &["validate"], 78);
    assert!(
        err.contains(
            "tasks/b/function.yaml:5:3: handler `main:handler`: `main.py` defines no function \
             `handler`\n    hint: did you mean `handle`? (`main:handle`)"
        ),
        "{err}"
    );
}

#[test]
fn a_handler_the_dispatcher_cannot_call_is_an_error_at_its_def() {
    for (main, why) in [
        (
            "def handler(context):\n    pass\n",
            "takes 1 positional parameter, but is called with 2",
        ),
        (
            "async def handler(context, event, session, extra):\n    pass\n",
            "requires 4 positional arguments, but is called with 3",
        ),
        (
            "def handler(context, event, *, mode):\n    pass\n",
            "has the keyword-only parameter `mode` without a default, which is never passed",
        ),
    ] {
        let env = project(main);
        let err = stderr_of(&env, &["validate"], 78);
        assert!(
            err.contains(&format!(
                "tasks/b/main.py:1:1: task `b`: handler `handler` {why}"
            )),
            "{main}: {err}"
        );
        assert!(
            err.contains("hint: the dispatcher calls a handler as"),
            "{err}"
        );
    }
    // What the dispatcher does call: two arguments, three (requests-style), defaults, *args,
    // async, a decorated or assigned handler (not checked).
    for main in [
        "def handler(context, event):\n    pass\n",
        "def handler(context, event, requests_session):\n    pass\n",
        "async def handler(context, event=None, session=None, more=1):\n    pass\n",
        "def handler(*args):\n    pass\n",
        "import functools\n@functools.lru_cache\ndef handler(context):\n    pass\n",
        "def make():\n    return lambda c, e: 1\nhandler = make()\n",
        "try:\n    from impl import handler\nexcept ImportError:\n    handler = None\n",
    ] {
        let env = project(main);
        stderr_of(&env, &["validate"], 0);
    }
}

/// Item 8: a module typo said "points outside the task" and suggested creating `mian.py`.
#[test]
fn a_module_typo_in_the_handler_suggests_the_nearest_module() {
    let env = project(HANDLER);
    env.write(&[("tasks/b/function.yaml", &function_yaml("mian:handler"))]);
    let err = stderr_of(&env, &["validate"], 78);
    assert!(
        err.contains(
            "tasks/b/function.yaml:5:3: `spec.handler`: no module `mian` in the task directory \
             (neither `mian.py` nor `mian/__init__.py`)"
        ),
        "{err}"
    );
    assert!(
        err.contains("hint: did you mean `main`? (`main:handler`)"),
        "{err}"
    );
    assert!(!err.contains("outside the task"), "{err}");
    assert!(!err.contains("`mian.py` inside"), "{err}");
}

/// Item 8: a typo in a task directory got no "did you mean", although unknown task names do.
#[test]
fn a_task_directory_typo_suggests_the_nearest_directory() {
    let env = project(HANDLER);
    env.write(&[(
        "fusion.toml",
        "[project]\nname = \"shop\"\n\n[tasks]\na = \"tasks/a\"\nb = \"tasks/bb\"\n",
    )]);
    let err = stderr_of(&env, &["validate"], 78);
    assert!(
        err.contains(
            "fusion.toml:6:5: task `b`: directory `tasks/bb` does not exist\n    \
             hint: did you mean `tasks/b`?"
        ),
        "{err}"
    );
}

/// Nuclio's bare `python` is Python 3.9: newer syntax is an error on nuctl and a warning on the
/// local platform, which runs the task with the local Python.
#[test]
fn syntax_newer_than_the_runtime_is_an_error_on_nuctl_and_a_warning_locally() {
    let main = "def handler(context, event):\n    match event.body:\n        case _:\n            return 1\n";
    let env = project(main);
    env.write(&[(
        "tasks/b/function.yaml",
        "spec:\n  runtime: python\n  handler: main:handler\n",
    )]);
    let err = stderr_of(&env, &["validate"], 0);
    assert!(
        err.contains("warning: tasks/b/main.py:") && err.contains("task `b`: not valid Python 3.9"),
        "{err}"
    );
    env.write(&[(
        "fusion.toml",
        "[project]\nname = \"shop\"\nplatform = \"nuctl\"\n\n[tasks]\na = \"tasks/a\"\nb = \"tasks/b\"\n",
    )]);
    let err = stderr_of(&env, &["validate"], 78);
    assert!(
        err.contains("\n  tasks/b/main.py:") && err.contains("task `b`: not valid Python 3.9"),
        "{err}"
    );
}

#[test]
fn without_a_local_python_the_check_is_skipped_with_a_warning() {
    let env = project("def handler(context, event)\n");
    let out = env
        .cmd()
        .env("FUSIONIZER_PYTHON", env.root().join("no-such-python"))
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the tasks' Python was not checked: could not find"),
        "{err}"
    );
}

/// `b` imports a module that is not installed: validate cannot know, the deploy fails.
const IMPORT_FAILS: &str =
    "import json\n\nimport no_such_module_anywhere\n\n\ndef handler(context, event):\n    return 1\n";

/// The case: "`init_context` of task `b` failed" (it has none) and two copies of a
/// 45-line traceback.
#[test]
fn apply_of_a_task_that_fails_to_import_says_one_line_and_the_traceback_only_with_v() {
    let env = project(IMPORT_FAILS);
    let line = "task `b`: cannot import handler `main:handler`: main.py:3: \
                ModuleNotFoundError: No module named 'no_such_module_anywhere'";
    let err = stderr_of(&env, &["apply", "--auto-approve"], 1);
    assert!(err.contains(line), "{err}");
    assert!(!err.contains("Traceback"), "{err}");
    assert!(!err.contains("init_context"), "{err}");
    assert!(!err.contains(".fusionizer/local/store"), "{err}");

    let err = stderr_of(&env, &["-v", "apply", "--auto-approve"], 1);
    assert!(err.contains(line), "{err}");
    assert!(err.contains("Traceback (most recent call last)"), "{err}");
}

/// serve retried the failing deploy every 5 s, printing the whole failure each time.
#[test]
fn serve_says_a_failing_import_once_then_counts() {
    let env = project(IMPORT_FAILS);
    let serve = Serve::spawn(&env, &[], &["--no-schedule"]);
    let line = "No module named 'no_such_module_anywhere'";
    serve.wait_for_log("still failing (2 times)", Duration::from_secs(120));
    let log = serve.log();
    assert_eq!(log.matches(line).count(), 1, "{log}");
    assert_eq!(log.matches("Creating shop-b").count(), 1, "{log}");
    assert!(!log.contains("Traceback"), "{log}");
}
