//! What `serve` writes to stderr when it is not on a terminal: plain lines without control
//! codes (even with colour allowed, since stderr is a pipe), one `Deployed` line per function
//! and task output prefixed with the task's name; and with `--log-format json`, one JSON object
//! per line.

use std::time::Duration;

use crate::support::{add, Serve, TestEnv};

/// Starts the quickstart's serve with `NO_COLOR` unset (so only the pipe keeps colour off),
/// calls `taska` once (it logs `taskb answered`), waits for that line, and stops serve.
fn run_quickstart(args: &[&str], task_line: &str) -> String {
    let env = TestEnv::example("quickstart");
    let mut serve = Serve::start_with(&env, &[("NO_COLOR", "")], args);
    let (status, body) = add(&serve, "taska", 5, 3);
    assert_eq!(status, 200, "{body}");
    serve.wait_for_log(task_line, Duration::from_secs(30));
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(), Some(0), "{}", serve.log());
    let stopped = if args.contains(&"json") {
        r#""verb":"Stopped""#
    } else {
        "Stopped fusionizer serve"
    };
    serve.wait_for_log(stopped, Duration::from_secs(30));
    serve.log()
}

#[test]
fn serve_piped_has_no_control_codes_and_says_ready_once_per_function() {
    let log = run_quickstart(&[], "taska | taskb answered");
    assert!(!log.contains('\x1b'), "control codes in a pipe:\n{log}");
    for function in ["quickstart-taska", "quickstart-taskb"] {
        let deployed = log
            .lines()
            .filter(|l| l.contains(&format!("Deployed {function} in ")))
            .count();
        let mentions_ready = log
            .lines()
            .filter(|l| l.contains(function) && l.contains("ready"))
            .count();
        assert_eq!((deployed, mentions_ready), (1, 0), "{function}:\n{log}");
    }
    for line in [
        "   Listening on http://127.0.0.1:",
        "   Deploying phase 1\n",
        "    Switched 2 routes in ",
        "      Routes ROUTE ",
        "    Schedule AFTER  PHASE\n",
        "       taska | taskb answered result=8\n",
        "    Stopping serve: new client requests get 503; 0 in flight",
    ] {
        assert!(log.contains(line), "no `{line}` in:\n{log}");
    }
    // No timestamped `tracing` lines without `-v`.
    assert!(!log.contains(" INFO "), "{log}");
}

#[test]
fn serve_with_log_format_json_writes_one_object_per_line() {
    let log = run_quickstart(&["--log-format", "json"], "taskb answered");
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\nin:\n{log}"))
        })
        .collect();
    for event in &events {
        assert!(event["ts"].is_string(), "{event}");
        assert!(event["event"].is_string(), "{event}");
        assert!(event["message"].is_string(), "{event}");
    }
    let find = |kind: &str, verb: &str, subject: &str| {
        events.iter().any(|e| {
            e["event"] == kind && e["verb"] == verb && e["subject"].as_str() == Some(subject)
        })
    };
    assert!(find("end", "Deployed", "quickstart-taska"), "{log}");
    assert!(find("end", "Deployed", "quickstart-taskb"), "{log}");
    assert!(find("status", "Stopped", "fusionizer serve"), "{log}");
    assert!(
        events.iter().any(|e| e["event"] == "task_output"
            && e["task"] == "taska"
            && e["message"] == "taskb answered"),
        "{log}"
    );
}

#[test]
fn an_unknown_log_format_is_a_usage_error() {
    let env = TestEnv::example("quickstart");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fusionizer"))
        .current_dir(env.project())
        .args(["--log-format", "xml", "validate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'xml' for '--log-format"),
        "{err}"
    );
    assert!(err.contains("text, json"), "{err}");
}
