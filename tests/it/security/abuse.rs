//! Clients and tasks that misuse what serve offers (docs/security.md): caller names that are no
//! task, a token variable that is not set, asynchronous calls with large bodies, and
//! synchronous calls that come back to a task that is waiting for them.

use std::time::Duration;

use super::{project, ran};
use crate::support::{add, client, result_of, wait_for, Serve, TestEnv};

#[test]
fn spoofed_callers_neither_fill_the_traces_nor_the_metrics() {
    let env = TestEnv::example("quickstart");
    env.write(&[(
        "fusion.toml",
        "[project]\nname = \"quickstart\"\n\n[tasks]\ntaska = \"tasks/taska\"\ntaskb = \
         \"tasks/taskb\"\n\n[serve]\ntrace-edges = 8\n",
    )]);
    let serve = Serve::start(&env, &[]);
    // Every caller a client makes up: more than the edge table holds.
    for i in 0..100 {
        let response = client()
            .post(serve.url("/taskb"))
            .header("X-Fusionizer-Caller", format!("spoof-{i}"))
            .json(&serde_json::json!({"value1": 1, "value2": 2}))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // A real call between tasks (each alone: through the proxy) is still recorded.
    let (status, body) = add(&serve, "taska", 5, 3);
    assert_eq!((status, result_of(&body)), (200, Some(8)), "{body}");
    let traces: serde_json::Value = client()
        .get(serve.url("/-/traces"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let edges: Vec<String> = traces["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} → {}", e["caller"], e["callee"]))
        .collect();
    assert_eq!(edges, [r#""taska" → "taskb""#], "{traces:#}");
    let metrics = serve.text("/-/metrics");
    assert!(!metrics.contains("spoof-"), "{metrics}");
    assert_eq!(serve.metric("fusionizer_unknown_callers_total", ""), 100.0);
    assert_eq!(serve.metric("fusionizer_trace_dropped_total", ""), 0.0);
}

#[test]
fn a_token_variable_that_is_not_set_stops_serve_from_starting() {
    let (env, marker) = project("token-env = \"SEC_TOKEN\"");
    for (vars, why) in [
        (&[][..], "is not set"),
        (&[("SEC_TOKEN", "")][..], "is empty"),
    ] {
        let mut cmd = env.cmd();
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env("FUSIONIZER_CACHE_DIR", crate::support::cache_dir())
            .timeout(Duration::from_secs(120));
        for (name, value) in vars {
            cmd.env(name, value);
        }
        let output = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "`[serve] token-env` names `SEC_TOKEN`, but that environment variable {why}"
            )),
            "{stderr}"
        );
    }
    assert_eq!(ran(&marker), Vec::<String>::new());
}

/// A task that answers only once the file `$RELEASE` exists (or after 60 s).
const SLOW_MAIN: &str = r#"import os
import time


def handler(context, event):
    deadline = time.monotonic() + 60
    while not os.path.exists(os.environ["RELEASE"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "done"
"#;

#[test]
fn the_asynchronous_queue_is_bounded_by_bytes_too() {
    let env = TestEnv::new();
    let release = env.root().join("release");
    env.write(&[
        (
            "fusion.toml",
            "[project]\nname = \"queue\"\n\n[tasks]\nslow = \"tasks/slow\"\n\n[serve]\n\
             async-queue-size = \"64KiB\"\n",
        ),
        (
            "tasks/slow/function.yaml",
            &format!(
                "apiVersion: \"nuclio.io/v1beta1\"\nkind: \"NuclioFunction\"\nmetadata:\n  \
                 name: slow\nspec:\n  runtime: \"python:3.11\"\n  handler: \"main:handler\"\n  \
                 env:\n    - name: RELEASE\n      value: \"{}\"\n",
                release.display()
            ),
        ),
        ("tasks/slow/main.py", SLOW_MAIN),
    ]);
    let serve = Serve::start(&env, &[]);
    let post = |bytes: usize| {
        let response = client()
            .post(serve.url("/slow"))
            .header("Prefer", "respond-async")
            .body(vec![b'x'; bytes])
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    // 40 KiB waits in the queue (the task holds it until released)...
    assert_eq!(post(40 * 1024).0, 202);
    // ...so another 40 KiB would pass 64 KiB: refused, to retry later.
    let (status, body) = post(40 * 1024);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("async-queue-size"), "{body}");
    // Larger than the queue may ever hold: refused for good.
    let (status, body) = post(100 * 1024);
    assert_eq!(status, 413, "{body}");
    // Once the first call is done, its bytes are free again.
    std::fs::write(&release, "").unwrap();
    wait_for("the first call to finish", Duration::from_secs(60), || {
        (serve.metric("fusionizer_async_calls_total", "result=\"ok\"") >= 1.0).then_some(())
    });
    assert_eq!(post(40 * 1024).0, 202);
    assert_eq!(
        serve.metric("fusionizer_async_calls_total", "result=\"rejected\""),
        2.0
    );
}

/// A task that calls `other` synchronously and answers what it answered.
fn caller_of(other: &str) -> String {
    format!(
        r#"import nuclio_sdk


def handler(context, event):
    answer = context.platform.call_function("{other}", nuclio_sdk.Event(body=b"x", method="POST"))
    return context.Response(
        body=answer.body, status_code=answer.status_code, content_type="text/plain"
    )
"#
    )
}

fn spec(name: &str) -> String {
    format!(
        "apiVersion: \"nuclio.io/v1beta1\"\nkind: \"NuclioFunction\"\nmetadata:\n  name: {name}\n\
         spec:\n  runtime: \"python:3.11\"\n  handler: \"main:handler\"\n"
    )
}

#[test]
fn a_synchronous_call_cycle_is_refused_at_once_naming_it() {
    let env = TestEnv::new();
    env.write(&[
        (
            "fusion.toml",
            "[project]\nname = \"loop\"\n\n[tasks]\nping = \"tasks/ping\"\npong = \"tasks/pong\"\n\
             \n[serve]\nrequest-timeout = \"30s\"\n",
        ),
        ("tasks/ping/function.yaml", &spec("ping")),
        ("tasks/ping/main.py", &caller_of("pong")),
        ("tasks/pong/function.yaml", &spec("pong")),
        ("tasks/pong/main.py", &caller_of("ping")),
    ]);
    let serve = Serve::start(&env, &[]);
    // Each task alone, one worker each: without the check, pong's call to ping waits for the
    // worker that is waiting for pong, until `request-timeout`.
    let response = client().post(serve.url("/ping")).body("x").send().unwrap();
    let status = response.status().as_u16();
    let body = response.text().unwrap();
    assert_eq!(status, 508, "{body}");
    assert!(body.contains("call cycle: ping → pong → ping"), "{body}");
    assert!(serve.log().contains("synchronous call cycle refused"));
    // Serve and both workers are free at once: the next request gets the same answer.
    let again = client().post(serve.url("/pong")).body("x").send().unwrap();
    assert_eq!(again.status().as_u16(), 508);
    assert!(again.text().unwrap().contains("pong → ping → pong"));
}
