//! The state directory (`--state-dir`, `FUSIONIZER_STATE_DIR`) and the overlay (`--overlay`,
//! `FUSIONIZER_OVERLAY`): with the state elsewhere a project is only read, never written (the
//! tests run as root, so a snapshot of the tree shows it, not a read-only mount); the flag wins
//! over the variable; what cannot be used is refused naming the flag or variable.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::{
    add, cache_dir, client, expect, quickstart, result_of, stderr, stdout, wait_for, Serve, TestEnv,
};

/// Every entry below `dir` (itself included): path, whether a directory, size and modification
/// time. Any write (a file, a `__pycache__`, a lock) changes it.
fn snapshot(dir: &Path) -> Vec<(String, bool, u64, SystemTime)> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let rel = entry.path().strip_prefix(dir).unwrap();
            (
                rel.display().to_string(),
                meta.is_dir(),
                meta.len(),
                meta.modified().unwrap(),
            )
        })
        .collect()
}

/// Runs `fusionizer ARGS` in `env`'s project with the shared venv cache and `vars`; asserts the
/// exit code.
fn run_with(
    env: &TestEnv,
    vars: &[(&str, &str)],
    args: &[&str],
    code: i32,
) -> std::process::Output {
    let mut cmd = env.cmd();
    cmd.env("FUSIONIZER_CACHE_DIR", cache_dir());
    for (key, value) in vars {
        cmd.env(key, value);
    }
    crate::support::exited(cmd.args(args).output().unwrap(), args, code)
}

/// Issue 24: a read-only project (a Kubernetes config map, an image layer, a `:ro` mount) works
/// when the state directory is elsewhere: plan, apply, serve (a POST, a phase change), status and destroy
/// leave the project's tree exactly as it was, and the state directory holds the state.
#[test]
fn a_project_is_only_read_when_the_state_dir_is_elsewhere() {
    let env = quickstart();
    // Phase 2 (the fused function) a second after serve starts, so the phase change is cheap.
    let toml = env.project().join("fusion.toml");
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("after = \"40s\"", "after = \"1s\"");
    std::fs::write(&toml, text).unwrap();
    let state = env.root().join("state");
    let state_arg = state.display().to_string();
    let before = snapshot(&env.project());

    let global = ["--state-dir", state_arg.as_str()];
    let with = |args: &[&'static str]| -> Vec<&str> { [&global[..], args].concat() };
    expect(&env, &with(&["plan", "--phase", "1"]), 0);
    expect(&env, &with(&["apply", "--phase", "1", "--auto-approve"]), 0);
    {
        let serve = Serve::start(&env, &global);
        let (status, body) = add(&serve, "taska", 40, 2);
        assert_eq!(
            (status, result_of(&body)),
            (200, Some(42)),
            "{}",
            serve.log()
        );
        wait_for(
            "serve to switch to phase 2 (the fused function)",
            Duration::from_secs(60),
            || {
                let info = client().get(serve.url("/taska")).send().ok()?.text().ok()?;
                info.contains("Function: quickstart-taska-taskb\n")
                    .then_some(())
            },
        );
        let (status, body) = add(&serve, "taska", 1, 2);
        assert_eq!(
            (status, result_of(&body)),
            (200, Some(3)),
            "{}",
            serve.log()
        );
        // `status` and `invoke` find the running serve through the same state directory
        // (serve listens on a port nobody chose, so only its record there leads to it).
        let out = expect(&env, &with(&["status"]), 0);
        assert!(
            stdout(&out).contains(&serve.base),
            "status should name serve at {}:\n{}",
            serve.base,
            stdout(&out)
        );
        let out = expect(
            &env,
            &with(&["invoke", "taska", "-d", r#"{"value1": 2, "value2": 3}"#]),
            0,
        );
        assert_eq!(result_of(&stdout(&out)), Some(5), "{}", stdout(&out));
        assert_eq!(Serve::terminate(serve), Some(0));
    }
    expect(&env, &with(&["destroy", "--auto-approve"]), 0);

    assert_eq!(
        snapshot(&env.project()),
        before,
        "the project's tree changed"
    );
    for written in ["local", "locks"] {
        assert!(
            state.join(written).is_dir(),
            "`{written}` missing from the state dir: {:?}",
            crate::support::entries(&state)
        );
    }
}

/// `FUSIONIZER_STATE_DIR` puts the state elsewhere like `--state-dir`, relative paths resolved
/// against the working directory; `--state-dir` wins over it.
#[test]
fn the_state_dir_comes_from_the_env_and_the_flag_wins() {
    let env = quickstart();
    let before = snapshot(&env.project());
    let from_env = env.root().join("from-env");
    let from_env_arg = from_env.display().to_string();
    let vars = [("FUSIONIZER_STATE_DIR", from_env_arg.as_str())];
    run_with(&env, &vars, &["build", "--phase", "2"], 0);
    assert!(from_env.join("build/quickstart-taska-taskb").is_dir());
    assert_eq!(
        snapshot(&env.project()),
        before,
        "the project's tree changed"
    );

    // Relative to the working directory; the flag over the variable.
    run_with(
        &env,
        &vars,
        &["--state-dir", "../from-flag", "build", "--phase", "2"],
        0,
    );
    assert!(env
        .root()
        .join("from-flag/build/quickstart-taska-taskb")
        .is_dir());
    assert_eq!(
        crate::support::entries(&from_env.join("build")),
        ["quickstart-taska-taskb"]
    );
    assert_eq!(
        snapshot(&env.project()),
        before,
        "the project's tree changed"
    );
}

/// A state directory that cannot be created is refused before anything runs, naming it and
/// where it came from.
#[test]
fn a_state_dir_that_cannot_be_created_is_refused_naming_the_flag_or_variable() {
    let env = quickstart();
    let file = env.root().join("a-file");
    std::fs::write(&file, "").unwrap();
    let below = file.join("state").display().to_string();
    let out = run_with(&env, &[], &["--state-dir", &below, "plan"], 64);
    env.settings()
        .bind(|| insta::assert_snapshot!("uncreatable_state_dir", stderr(&out)));
    let out = run_with(&env, &[("FUSIONIZER_STATE_DIR", &below)], &["status"], 64);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "`FUSIONIZER_STATE_DIR`: cannot create the state directory `{below}`"
        )),
        "{err}"
    );
}

/// An overlay's `[serve]` reaches the commands (here `invoke`, which falls back to
/// `[serve] listen`), from `--overlay` or `FUSIONIZER_OVERLAY`; a table it may not set is
/// refused naming the overlay.
#[test]
fn an_overlay_is_merged_and_refused_naming_it() {
    let env = quickstart();
    env.write(&[
        ("../overlay.toml", "[serve]\nlisten = \"127.0.0.1:9\"\n"),
        ("../bad.toml", "[project]\nname = \"other\"\n"),
    ]);
    let overlay = env.root().join("overlay.toml").display().to_string();
    for vars in [vec![], vec![("FUSIONIZER_OVERLAY", overlay.as_str())]] {
        let args: Vec<&str> = if vars.is_empty() {
            vec!["--overlay", &overlay, "invoke", "taska", "--timeout", "5s"]
        } else {
            vec!["invoke", "taska", "--timeout", "5s"]
        };
        let out = run_with(&env, &vars, &args, 69);
        assert!(stderr(&out).contains("127.0.0.1:9"), "{}", stderr(&out));
    }
    let out = run_with(&env, &[], &["--overlay", "../bad.toml", "validate"], 78);
    let err = stderr(&out);
    assert!(
        err.contains("bad.toml:1:2: the overlay may not set the table `[project]`"),
        "{err}"
    );
    assert!(err.contains("`[serve]` and `[nuctl]`"), "{err}");
    let out = run_with(&env, &[], &["--overlay", "../missing.toml", "validate"], 78);
    assert!(
        stderr(&out).contains("missing.toml: cannot read the overlay"),
        "{}",
        stderr(&out)
    );
}

/// The local platform's identity is its state directory: two state directories of one project
/// are two local platforms, so a plan saved for one is refused by the other, and what one
/// deployed is not live in the other.
#[test]
fn two_state_dirs_of_one_project_are_two_local_platforms() {
    let env = quickstart();
    let root = env.root().canonicalize().unwrap();
    let (a, b) = (root.join("a"), root.join("b"));
    let (a, b) = (a.display().to_string(), b.display().to_string());
    expect(
        &env,
        &["--state-dir", &a, "plan", "--out", "../plan.json"],
        0,
    );
    let out = expect(&env, &["--state-dir", &b, "apply", "../plan.json"], 75);
    assert!(
        stderr(&out).contains(&format!(
            "the plan was made for platform `local:{a}/local`, not `local:{b}/local`"
        )),
        "{}",
        stderr(&out)
    );
    expect(&env, &["--state-dir", &a, "apply", "../plan.json"], 0);
    expect(&env, &["--state-dir", &a, "plan", "--detailed-exitcode"], 0);
    expect(&env, &["--state-dir", &b, "plan", "--detailed-exitcode"], 2);
    expect(&env, &["--state-dir", &a, "destroy", "--auto-approve"], 0);
}
