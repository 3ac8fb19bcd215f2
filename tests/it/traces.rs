//! Call traces and asynchronous calls end to end (docs/traces.md): real local workers behind a
//! real serve; `GET /-/traces` read back with `fusionizer::traces::parse`.

use std::time::Duration;

use fusionizer::traces::{self, Mode, Span, TraceDoc, Via};

use crate::support::{client, result_of, wait_for, Serve, TestEnv};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn document(serve: &Serve) -> TraceDoc {
    let text = serve.text("/-/traces");
    traces::parse(&text, "/-/traces").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn edge<'a>(
    doc: &'a TraceDoc,
    caller: &str,
    callee: &str,
    mode: Mode,
    via: Via,
) -> Option<&'a traces::Edge> {
    doc.edges
        .iter()
        .find(|e| e.caller == caller && e.callee == callee && e.mode == mode && e.via == via)
}

fn post_taska(serve: &Serve, traceparent: Option<&str>) {
    let mut request = client()
        .post(serve.url("/taska"))
        .json(&serde_json::json!({"value1": 40, "value2": 2}));
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let body = response.text().unwrap();
    assert_eq!(
        (status, result_of(&body)),
        (200, Some(42)),
        "{body}\n{}",
        serve.log()
    );
}

/// The native pair: alone, `taska → taskb` is a proxy edge (one trace, joined through
/// `traceparent`); fused, an in-process edge the worker reported. The span ring keeps its size,
/// and `traces export` writes JSON Lines that read back as the same document.
#[test]
fn unfused_calls_cross_the_proxy_fused_calls_stay_in_process() {
    let env = TestEnv::example("native");
    let toml = std::fs::read_to_string(env.project().join("fusion.toml")).unwrap();
    env.write(&[(
        "fusion.toml",
        &format!("{toml}\n[serve]\ntrace-spans = 4\n"),
    )]);
    let traceparent = format!("00-{TRACE}-b7ad6b7169203331-01");

    let serve = Serve::start(&env, &["--phase", "1", "--no-schedule"]);
    post_taska(&serve, Some(&traceparent));
    let doc = document(&serve);
    let proxied = edge(&doc, "taska", "taskb", Mode::Sync, Via::Proxy).expect("a proxy edge");
    assert_eq!((proxied.count, proxied.errors), (1, 0), "{doc:#?}");
    assert!(proxied.bytes > 0 && proxied.p50_ms > 0.0, "{doc:#?}");
    assert!(edge(&doc, "taska", "taskb", Mode::Sync, Via::InProcess).is_none());
    // Only the entry is an invocation; the call to taskb is not.
    assert_eq!(doc.tasks.len(), 1, "{doc:#?}");
    assert_eq!(
        (doc.tasks[0].task.as_str(), doc.tasks[0].invocations),
        ("taska", 1)
    );
    if cfg!(target_os = "linux") {
        // The first invocation samples the worker's peak RSS.
        assert!(
            doc.tasks[0].peak_rss_p99_bytes.is_some_and(|b| b > 1 << 20),
            "{doc:#?}"
        );
    }
    // The client's trace id runs through both spans: the dispatcher sent it on to the proxy.
    let ids: Vec<(&str, &str)> = doc
        .spans
        .iter()
        .map(|s| match s {
            Span::Invocation { trace_id, .. } => ("invocation", trace_id.as_str()),
            Span::Call { trace_id, .. } => ("call", trace_id.as_str()),
        })
        .collect();
    assert_eq!(ids, [("call", TRACE), ("invocation", TRACE)], "{doc:#?}");

    // The ring keeps the last 4 spans, whatever comes.
    for _ in 0..5 {
        post_taska(&serve, None);
    }
    let doc = document(&serve);
    assert_eq!((doc.limits.spans, doc.spans.len()), (4, 4), "{doc:#?}");
    assert_eq!(
        edge(&doc, "taska", "taskb", Mode::Sync, Via::Proxy).map(|e| e.count),
        Some(6)
    );

    // `traces export`: JSON Lines, read back by the same parser.
    let out = env
        .cmd()
        .args(["traces", "export", "traces.jsonl", "--from", &serve.base])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::support::transcript(&out)
    );
    let text = std::fs::read_to_string(env.project().join("traces.jsonl")).unwrap();
    assert!(
        text.starts_with(r#"{"type":"header","version":1"#),
        "{text}"
    );
    let exported = traces::parse(&text, "traces.jsonl").unwrap();
    assert_eq!((exported.edges, exported.tasks), (doc.edges, doc.tasks));
    let out = env
        .cmd()
        .args(["traces", "export", "-", "--from", &serve.base])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    traces::parse(&String::from_utf8_lossy(&out.stdout), "stdout").unwrap();
    let metrics = serve.text("/-/metrics");
    assert!(
        metrics.contains(
            r#"fusionizer_edge_calls_total{caller="taska",callee="taskb",mode="sync",via="proxy"} 6"#
        ),
        "{metrics}"
    );
    drop(serve);

    let serve = Serve::start(&env, &["--phase", "2", "--no-schedule"]);
    post_taska(&serve, None);
    let doc = document(&serve);
    let local = edge(&doc, "taska", "taskb", Mode::Sync, Via::InProcess).expect("in-process");
    assert_eq!((local.count, local.errors), (1, 0), "{doc:#?}");
    assert!(edge(&doc, "taska", "taskb", Mode::Sync, Via::Proxy).is_none());
}

/// `traces export` against nothing: a clear error naming where it looked.
#[test]
fn traces_export_names_the_serve_it_could_not_reach() {
    let env = TestEnv::example("native");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let out = env
        .cmd()
        .args(["traces", "export", "t.jsonl", "--from", &address])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}",
        crate::support::transcript(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "could not reach fusionizer serve at `http://{address}`"
        )),
        "{stderr}"
    );
}

const CALLER: &str = r#"import nuclio_sdk


def handler(context, event):
    call = nuclio_sdk.Event(body=event.body, method="POST", path="/")
    answer = context.platform.call_function_async("slow", call)
    return {"status": answer.status_code}
"#;

const SLOW: &str = r#"import os
import time


def handler(context, event):
    gate = event.body["gate"]
    deadline = time.monotonic() + 60
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            return 504, "the gate never opened"
        time.sleep(0.01)
    return {"ok": True}
"#;

fn function_yaml(name: &str) -> String {
    format!(
        "apiVersion: \"nuclio.io/v1beta1\"\nkind: \"NuclioFunction\"\nmetadata:\n  name: {name}\n\
         spec:\n  runtime: \"python:3.11\"\n  handler: \"main:handler\"\n"
    )
}

/// A fire-and-forget call: the caller gets 202 while the callee still runs; with the one place
/// in the queue taken, the next asynchronous call gets 503 with `Retry-After`; the call shows as
/// `async` once it ran, through the proxy or (fused) in-process.
#[test]
fn async_calls_answer_202_first_and_a_full_queue_503() {
    let env = TestEnv::new();
    let (caller_yaml, slow_yaml) = (function_yaml("caller"), function_yaml("slow"));
    env.write(&[
        (
            "fusion.toml",
            "[project]\nname = \"asyncs\"\n\n[tasks]\ncaller = \"tasks/caller\"\nslow = \"tasks/slow\"\n\n\
             [[phase]]\nafter = \"0s\"\ngroups = [[\"caller\"], [\"slow\"]]\n\n\
             [[phase]]\nafter = \"1h\"\ngroups = [[\"caller\", \"slow\"]]\n\n\
             [serve]\nasync-queue = 1\n",
        ),
        ("tasks/caller/function.yaml", &caller_yaml),
        ("tasks/caller/main.py", CALLER),
        ("tasks/slow/function.yaml", &slow_yaml),
        ("tasks/slow/main.py", SLOW),
    ]);
    let gate = env.root().join("gate");
    let body = serde_json::json!({"gate": gate.display().to_string()});

    let serve = Serve::start(&env, &["--phase", "1", "--no-schedule"]);
    let answer = client()
        .post(serve.url("/caller"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let text = answer.text().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["status"],
        202,
        "{text}\n{}",
        serve.log()
    );
    // `slow` waits at the gate: its call is not finished, so not recorded yet, and it holds the
    // only place in the queue.
    let refused = client()
        .post(serve.url("/slow"))
        .header("Prefer", "respond-async")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        serve.metric("fusionizer_async_calls_total", r#"result="rejected""#),
        1.0
    );
    let doc = document(&serve);
    assert!(
        edge(&doc, "caller", "slow", Mode::Async, Via::Proxy).is_none(),
        "{doc:#?}"
    );

    std::fs::write(&gate, "open").unwrap();
    let count = wait_for(
        "the async call to be recorded",
        Duration::from_secs(60),
        || {
            edge(&document(&serve), "caller", "slow", Mode::Async, Via::Proxy)
                .map(|e| (e.count, e.errors))
        },
    );
    assert_eq!(count, (1, 0));
    assert_eq!(
        serve.metric("fusionizer_async_calls_total", r#"result="ok""#),
        1.0
    );
    drop(serve);

    // Fused: the call is deferred in the worker until the caller's answer is sent.
    let serve = Serve::start(&env, &["--phase", "2", "--no-schedule"]);
    let answer = client()
        .post(serve.url("/caller"))
        .json(&body)
        .send()
        .unwrap();
    let text = answer.text().unwrap();
    assert!(text.contains("202"), "{text}");
    let doc = document(&serve);
    let local = edge(&doc, "caller", "slow", Mode::Async, Via::InProcess).expect("async edge");
    assert_eq!((local.count, local.errors), (1, 0), "{doc:#?}");
}
