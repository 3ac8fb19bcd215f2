//! Running `fusionizer` in a test project with the shared venv cache: its exit code asserted
//! (else the whole transcript), its output as text, snapshot settings, and the live functions
//! as `status` reports them.

use serde_json::Value;

use super::{cache_dir, transcript, TestEnv};

/// The quickstart project (taska, taskb; phase 2 fuses them), with a shared venv cache.
pub(crate) fn quickstart() -> TestEnv {
    TestEnv::example("quickstart")
}

/// Runs `fusionizer ARGS` in the project with the shared cache; returns the output.
pub(crate) fn run(env: &TestEnv, args: &[&str]) -> std::process::Output {
    env.cmd()
        .env("FUSIONIZER_CACHE_DIR", cache_dir())
        .args(args)
        .output()
        .expect("run fusionizer")
}

/// A command's stdout as text.
pub(crate) fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A command's stderr as text.
pub(crate) fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs and asserts the exit code, showing the whole transcript when it differs.
pub(crate) fn expect(env: &TestEnv, args: &[&str], code: i32) -> std::process::Output {
    exited(run(env, args), args, code)
}

/// `output`, after asserting that `fusionizer ARGS` exited `code` (else the whole transcript).
pub(crate) fn exited(
    output: std::process::Output,
    args: &[&str],
    code: i32,
) -> std::process::Output {
    assert_eq!(
        output.status.code(),
        Some(code),
        "`fusionizer {}`:\n{}",
        args.join(" "),
        transcript(&output)
    );
    output
}

/// The common filters plus short digests and durations.
pub(crate) fn settings(env: &TestEnv) -> insta::Settings {
    let mut settings = env.settings();
    // Same width as the 12 hex digits, so tables stay aligned.
    settings.add_filter(r"sha256:[0-9a-f]{12}\b", "sha256:[HEX DIGEST]");
    settings.add_filter(r"\(\d+\.\d+s\)", "([TIME])");
    settings
}

/// Appends `text` to the project file `rel`.
pub(crate) fn append(env: &TestEnv, rel: &str, text: &str) {
    let path = env.project().join(rel);
    let mut content = std::fs::read_to_string(&path).unwrap();
    content.push_str(text);
    std::fs::write(path, content).unwrap();
}

/// The functions `status --output json` reports live (every drift but `missing`); `global`
/// goes before `status` (e.g. `--config other.toml`).
pub(crate) fn live_functions(env: &TestEnv, global: &[&str]) -> Vec<Value> {
    let mut args = global.to_vec();
    args.extend(["status", "--output", "json"]);
    let status: Value = serde_json::from_str(&stdout(&expect(env, &args, 0))).unwrap();
    let functions = status["functions"].as_array().unwrap();
    functions
        .iter()
        .filter(|f| f["drift"] != "missing")
        .cloned()
        .collect()
}

/// function → (tasks, digest) of the live owned functions.
pub(crate) fn live(env: &TestEnv) -> Vec<(String, String, String)> {
    live_functions(env, &[])
        .iter()
        .map(|f| {
            (
                f["function"].as_str().unwrap().to_string(),
                f["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(","),
                f["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
