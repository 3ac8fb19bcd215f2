//! `fusionizer optimize` on `examples/iot` with a trace document shaped like what that app
//! produces (`fixtures/iot_traces.json`): the proposal, `--explain`, the markdown and JSON
//! outputs, `--write`, `--detailed-exitcode`, `--memory`, reading from a serve over HTTP, and
//! the errors. Also the `command` optimizers of `examples/optimizers/` driven through the runner.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::{transcript, violations, TestEnv};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/iot_traces.json")
}

fn iot() -> TestEnv {
    TestEnv::example("iot")
}

fn run(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    let output = env.cmd().args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn from_fixture(extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "optimize".to_string(),
        "--from".to_string(),
        fixture().display().to_string(),
    ];
    args.extend(extra.iter().map(ToString::to_string));
    args
}

fn run_owned(env: &TestEnv, args: &[String]) -> (i32, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(env, &args)
}

#[test]
fn iot_proposes_the_sync_component_and_keeps_archive_apart() {
    let env = iot();
    let (code, out, err) = run_owned(&env, &from_fixture(&["--explain"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Proposed: [archive] [enrich, ingest, store, validate]\n"),
        "{out}"
    );
    // One line per edge, each with its reason.
    let line = |from: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(from))
            .unwrap_or_else(|| panic!("no line for {from}: {out}"))
            .to_string()
    };
    assert!(line("ingest -> archive").contains("async-apart: async, 480 calls: the caller does not wait, so `archive` stays out of `ingest`'s group"));
    for edge in ["ingest -> validate", "ingest -> enrich", "enrich -> store"] {
        assert!(
            line(edge).contains("inlined: sync, 480 calls ≥ min-calls 10: inlined"),
            "{edge}: {out}"
        );
    }
    assert!(
        out.contains("task archive: seen, but no synchronous edge of it was inlined: runs alone")
    );
    assert!(out.contains("Expected gain +100%: of 1440 synchronous calls, 0 run in-process now (0%), 1440 would with the proposal (100%)."), "{out}");
    assert!(
        out.contains(
            "+groups = [[\"archive\"], [\"enrich\", \"ingest\", \"store\", \"validate\"]]\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("--- a/fusion.toml\n+++ b/fusion.toml\n"),
        "{out}"
    );
    // Without --explain: no call graph.
    let (_, plain, _) = run_owned(&env, &from_fixture(&[]));
    assert!(!plain.contains("Call graph"), "{plain}");
}

#[test]
fn detailed_exitcode_is_2_for_a_change_and_write_keeps_comments_then_0() {
    let env = iot();
    let before = std::fs::read_to_string(env.project().join("fusion.toml")).unwrap();
    let (code, _, err) = run_owned(&env, &from_fixture(&["--detailed-exitcode"]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        std::fs::read_to_string(env.project().join("fusion.toml")).unwrap(),
        before,
        "without --write, fusion.toml stays"
    );

    let (code, out, err) = run_owned(&env, &from_fixture(&["--write", "--detailed-exitcode"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("Wrote the proposal into `fusion.toml`"),
        "{err}"
    );
    let after = std::fs::read_to_string(env.project().join("fusion.toml")).unwrap();
    assert!(after.starts_with(&before), "only appended:\n{after}");
    assert!(
        after.contains("# An IoT pipeline with Fusionize's call graph"),
        "{after}"
    );
    assert!(after.ends_with(
        "[[phase]]\nafter = \"0s\"\ngroups = [[\"archive\"], [\"enrich\", \"ingest\", \"store\", \"validate\"]]\n"
    ), "{after}");
    let output = env.cmd().arg("validate").output().unwrap();
    assert!(output.status.success(), "{}", transcript(&output));

    // Now fusion.toml describes the proposal: nothing to change, exit 0.
    let (code, out, err) = run_owned(&env, &from_fixture(&["--detailed-exitcode", "--write"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("No change: the grouping in force already matches the traces."),
        "{out}"
    );
    assert!(err.contains("Nothing to write"), "{err}");
}

#[test]
fn after_defaults_past_the_last_phase_and_is_checked() {
    let env = iot();
    let path = env.project().join("fusion.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n# all alone for a minute\n[[phase]]\nafter = \"1m\"\ngroups = []\n\n[serve]\nlisten = \"127.0.0.1:8000\"\n");
    std::fs::write(&path, &text).unwrap();
    let (code, out, _) = run_owned(&env, &from_fixture(&["--after", "2h"]));
    assert_eq!(code, 0);
    assert!(out.contains("+after = \"2h\"\n"), "{out}");
    let (code, out, err) = run_owned(&env, &from_fixture(&["--write"]));
    assert_eq!(code, 0, "{out}{err}");
    let written = std::fs::read_to_string(&path).unwrap();
    let phase = written.find("after = \"1m 1s\"").expect(&written);
    assert!(
        phase < written.find("[serve]").unwrap(),
        "the new phase follows the last one:\n{written}"
    );
    assert!(written.contains("# all alone for a minute\n"), "{written}");

    let (code, _, err) = run_owned(&env, &from_fixture(&["--after", "30s"]));
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("`--after 30s` is not after the last [[phase]] (`after = \"1m 1s\"`)"),
        "{err}"
    );
    let (code, _, err) = run_owned(&env, &from_fixture(&["--after", "soon"]));
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("invalid value `soon` for `--after`"), "{err}");
}

#[test]
fn min_calls_above_every_edge_proposes_nothing() {
    let env = iot();
    let (code, out, err) = run_owned(
        &env,
        &from_fixture(&["--min-calls", "481", "--explain", "--detailed-exitcode"]),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("below-min-calls: sync, 480 calls < min-calls 481: ignored"),
        "{out}"
    );
    assert!(out.contains("No change"), "{out}");
}

#[test]
fn markdown_renders_a_mermaid_graph_before_and_after() {
    let env = iot();
    let (code, out, err) = run_owned(&env, &from_fixture(&["--output", "markdown"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("```mermaid\nflowchart LR\n"), "{out}");
    assert!(out.contains("subgraph before[\"before\"]"), "{out}");
    assert!(out.contains("subgraph after[\"after\"]"), "{out}");
    assert!(
        out.contains("[\"iot-enrich-ingest-store-validate\"]"),
        "{out}"
    );
    assert!(
        out.contains("after_ingest -.->|async 480| after_archive"),
        "{out}"
    );
    assert!(
        out.contains("after_ingest -->|480| after_validate"),
        "{out}"
    );
    assert!(
        out.contains("| `ingest` → `archive` | async | 480 | async-apart |"),
        "{out}"
    );
    assert!(out.contains("```diff\n--- a/fusion.toml"), "{out}");
}

#[test]
fn json_follows_the_documented_schema() {
    let env = iot();
    let (code, out, err) = run_owned(&env, &from_fixture(&["--output", "json", "--memory"]));
    assert_eq!(code, 0, "{err}");
    let value: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        violations("optimize-schema.json", &value),
        Vec::<String>::new()
    );
    assert_eq!(value["version"], 1);
    assert_eq!(value["changed"], true);
    assert_eq!(value["after"], "0s");
    assert_eq!(
        value["proposed"],
        serde_json::json!([["archive"], ["enrich", "ingest", "store", "validate"]])
    );
    let archive = value["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["callee"] == "archive")
        .unwrap();
    assert_eq!(archive["decision"], "async-apart");
    assert_eq!(value["gain"]["expected"], 1.0);
    // 38 MiB * 1.25 = 47.5 MiB -> 48Mi; the big group's largest is ingest's 33 MiB -> 42Mi.
    assert_eq!(value["memory"][0]["limit"], "48Mi");
    assert_eq!(value["memory"][1]["limit"], "42Mi");
    // Without --memory, `memory` is null; a missing field is a schema violation.
    let (_, out, _) = run_owned(&env, &from_fixture(&["--output", "json"]));
    let mut value: Value = serde_json::from_str(&out).unwrap();
    assert!(value["memory"].is_null());
    value.as_object_mut().unwrap().remove("gain");
    assert!(!violations("optimize-schema.json", &value).is_empty());
}

#[test]
fn memory_limits_are_written_as_overrides_that_build_applies() {
    let env = iot();
    let (code, out, err) = run_owned(
        &env,
        &from_fixture(&["--memory", "--memory-headroom", "50", "--write"]),
    );
    assert_eq!(code, 0, "{out}{err}");
    let written = std::fs::read_to_string(env.project().join("fusion.toml")).unwrap();
    assert!(written.contains("[[override]]\ntasks = [\"enrich\", \"ingest\", \"store\", \"validate\"]\nresources.limits.memory = \"50Mi\"\n"), "{written}");
    assert!(
        written.contains("resources.limits.memory = \"57Mi\""),
        "{written}"
    );
    let output = env.cmd().args(["build", "--phase", "1"]).output().unwrap();
    assert!(output.status.success(), "{}", transcript(&output));
    let yaml = std::fs::read_to_string(
        env.project()
            .join(".fusionizer/build/iot-enrich-ingest-store-validate/function.yaml"),
    )
    .unwrap();
    assert!(yaml.contains("memory: 50Mi"), "{yaml}");
}

#[test]
fn json_lines_read_the_same_as_json() {
    let env = iot();
    let text = std::fs::read_to_string(fixture()).unwrap();
    let doc = fusionizer::traces::parse(&text, "fixture").unwrap();
    env.write(&[("traces.jsonl", &doc.to_json_lines())]);
    let (code, lines_out, err) = run(&env, &["optimize", "--from", "traces.jsonl"]);
    assert_eq!(code, 0, "{err}");
    let (_, json_out, _) = run_owned(&env, &from_fixture(&[]));
    let proposed = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("Proposed:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(proposed(&lines_out), proposed(&json_out));
}

#[test]
fn bad_traces_are_refused_with_the_reason() {
    let env = iot();
    env.write(&[
        ("v2.json", "{\"version\": 2, \"started\": \"x\"}"),
        ("junk.json", "not json"),
    ]);
    let (code, _, err) = run(&env, &["optimize", "--from", "v2.json"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "v2.json: trace document version 2 is not supported (this build reads version 1)"
        ),
        "{err}"
    );
    let (code, _, err) = run(&env, &["optimize", "--from", "junk.json"]);
    assert_eq!(code, 1);
    assert!(err.contains("junk.json: not a trace document"), "{err}");
    let (code, _, err) = run(&env, &["optimize", "--from", "missing.json"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read traces `missing.json`"), "{err}");
    let (code, _, err) = run(&env, &["optimize", "--from", "https://example.com"]);
    assert_eq!(code, 64, "{err}");
    // `--live` keeps what a running serve has live: a file has no live grouping.
    let fixture = fixture().display().to_string();
    let (code, _, err) = run(&env, &["optimize", "--from", &fixture, "--live"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("`--live` reads a running serve"), "{err}");
}

/// A one-request HTTP server on loopback answering `status` and `body`; returns its address
/// and a handle yielding the request line it got.
fn serve_once(status: &str, body: String) -> (String, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let status = status.to_string();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        String::from_utf8_lossy(&request)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    });
    (addr, handle)
}

#[test]
fn from_a_running_serve_reads_its_traces_endpoint() {
    let env = iot();
    let (addr, server) = serve_once("200 OK", std::fs::read_to_string(fixture()).unwrap());
    let url = format!("http://{addr}");
    let (code, out, err) = run(&env, &["optimize", "--from", &url, "--explain"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(server.join().unwrap(), "GET /-/traces HTTP/1.1");
    assert!(
        out.contains(&format!("Call graph from http://{addr}/-/traces")),
        "{out}"
    );
    assert!(
        out.contains("Proposed: [archive] [enrich, ingest, store, validate]"),
        "{out}"
    );

    let (addr, server) = serve_once("503 Service Unavailable", "{\"error\":\"busy\"}".into());
    let (code, _, err) = run(&env, &["optimize", "--from", &format!("http://{addr}")]);
    server.join().unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("answered 503 Service Unavailable"), "{err}");

    // Nothing listens there any more.
    let (code, _, err) = run(&env, &["optimize", "--from", &format!("http://{addr}")]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("could not reach fusionizer serve"), "{err}");
}

// --- the command optimizers of examples/optimizers, through the runner ---------------------

fn specs_of(env: &TestEnv) -> BTreeMap<String, fusionizer::config::TaskSpec> {
    fusionizer::config::load(&env.project().join("fusion.toml"))
        .unwrap()
        .specs
}

fn request(env: &TestEnv) -> fusionizer::optimize::command::Request {
    use fusionizer::optimize::command::{request, RequestPhase, RequestSettings};
    let text = std::fs::read_to_string(fixture()).unwrap();
    let traces = fusionizer::traces::parse(&text, "fixture").unwrap();
    let grouping = ["archive", "enrich", "ingest", "store", "validate"]
        .iter()
        .map(|t| vec![(*t).to_string()])
        .collect();
    request(
        "iot",
        &grouping,
        &specs_of(env),
        RequestPhase {
            number: None,
            after: None,
        },
        RequestSettings {
            min_calls: 10,
            min_gain: 0.05,
        },
        traces,
    )
}

fn optimizer(name: &str) -> Vec<String> {
    vec![
        "python3".to_string(),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/optimizers")
            .join(name)
            .display()
            .to_string(),
    ]
}

fn drive(
    command: &[String],
    timeout: Duration,
    env: &TestEnv,
    request: &fusionizer::optimize::command::Request,
) -> Result<fusionizer::optimize::command::Answer, fusionizer::optimize::command::OptimizerError> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(fusionizer::optimize::command::run(
        command,
        &env.project(),
        timeout,
        request,
        &specs_of(env),
    ))
}

#[test]
fn the_request_follows_its_schema_and_the_examples_answer_by_theirs() {
    let env = iot();
    let request = request(&env);
    let value = serde_json::to_value(&request).unwrap();
    assert_eq!(
        violations("optimizer-request.schema.json", &value),
        Vec::<String>::new()
    );
    for name in ["hottest_edge.py", "threshold.py"] {
        let mut child = std::process::Command::new("python3")
            .args(&optimizer(name)[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.to_string().as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{name}");
        let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            violations("optimizer-response.schema.json", &answer),
            Vec::<String>::new(),
            "{name}: {answer}"
        );
    }
    let both = serde_json::json!({"version": 1, "keep": true, "grouping": [], "reason": ""});
    assert!(!violations("optimizer-response.schema.json", &both).is_empty());
}

#[test]
fn hottest_edge_fuses_the_busiest_synchronous_pair() {
    use fusionizer::optimize::command::Answer;
    let env = iot();
    let answer = drive(
        &optimizer("hottest_edge.py"),
        Duration::from_secs(30),
        &env,
        &request(&env),
    )
    .unwrap();
    // Every sync edge has 480 calls: the tie goes to the first by caller, then callee.
    let Answer::Regroup { grouping, reason } = answer else {
        panic!("expected a regroup, got {answer:?}")
    };
    assert_eq!(
        grouping.groups(),
        vec![
            vec!["archive".to_string()],
            vec!["enrich".to_string(), "store".to_string()],
            vec!["ingest".to_string()],
            vec!["validate".to_string()],
        ]
    );
    assert!(reason.contains("enrich -> store"), "{reason}");
    // Applied and asked again, it adds the next hottest edge to the group.
    let mut next = request(&env);
    next.grouping = grouping;
    let Answer::Regroup { grouping, .. } = drive(
        &optimizer("hottest_edge.py"),
        Duration::from_secs(30),
        &env,
        &next,
    )
    .unwrap() else {
        panic!("expected a regroup")
    };
    assert!(
        grouping.groups().contains(&vec![
            "enrich".to_string(),
            "ingest".to_string(),
            "store".to_string()
        ]),
        "{grouping:?}"
    );
}

#[test]
fn threshold_groups_every_edge_above_its_share_and_keeps_async_apart() {
    use fusionizer::optimize::command::Answer;
    let env = iot();
    let answer = drive(
        &optimizer("threshold.py"),
        Duration::from_secs(30),
        &env,
        &request(&env),
    )
    .unwrap();
    let Answer::Regroup { grouping, .. } = answer else {
        panic!("expected a regroup, got {answer:?}")
    };
    assert_eq!(
        grouping.groups(),
        vec![
            vec!["archive".to_string()],
            vec![
                "enrich".to_string(),
                "ingest".to_string(),
                "store".to_string(),
                "validate".to_string()
            ],
        ]
    );
    // Asked again with its own answer in force: keep.
    let mut next = request(&env);
    next.grouping = grouping;
    let answer = drive(
        &optimizer("threshold.py"),
        Duration::from_secs(30),
        &env,
        &next,
    )
    .unwrap();
    assert!(matches!(answer, Answer::Keep { .. }), "{answer:?}");
}

#[test]
fn broken_programs_are_refused_with_the_reason() {
    let env = iot();
    let request = request(&env);
    let script = |name: &str, body: &str| -> Vec<String> {
        env.write(&[(name, body)]);
        vec![
            "python3".to_string(),
            env.project().join(name).display().to_string(),
        ]
    };
    let kind = |command: &[String], timeout: Duration| {
        drive(command, timeout, &env, &request).unwrap_err()
    };
    let long = Duration::from_secs(30);
    let crash = kind(
        &script(
            "crash.py",
            "import sys\nsys.stderr.write('boom\\n')\nsys.exit(3)\n",
        ),
        long,
    );
    assert_eq!(crash.kind(), "crash");
    assert!(crash.to_string().contains("boom"), "{crash}");
    // It writes its pid, then hangs; after the timeout it must be gone.
    let hang = kind(
        &script(
            "hang.py",
            "import os, time\nopen('hang.pid', 'w').write(str(os.getpid()))\ntime.sleep(600)\n",
        ),
        Duration::from_secs(3),
    );
    assert_eq!(hang.kind(), "timeout");
    assert!(
        hang.to_string()
            .contains("timed out after 3s and was killed"),
        "{hang}"
    );
    let pid: u32 = std::fs::read_to_string(env.project().join("hang.pid"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        !crate::support::process_running(pid),
        "pid {pid} was killed and reaped"
    );
    let junk = kind(&script("junk.py", "print('fuse everything!')\n"), long);
    assert_eq!(junk.kind(), "invalid-json");
    assert!(junk.to_string().contains("fuse everything!"), "{junk}");
    let twice = kind(
        &script(
            "twice.py",
            "import json\nprint(json.dumps({'version': 1, 'grouping': [['ingest'], ['ingest']], 'reason': 'x'}))\n",
        ),
        long,
    );
    assert!(
        twice.to_string().contains("task `ingest` appears twice"),
        "{twice}"
    );
    let missing = kind(&["/nonexistent/optimizer".to_string()], long);
    assert_eq!(missing.kind(), "spawn");
}

#[test]
fn a_runtime_conflict_is_refused_by_the_fuse_check_and_the_examples_avoid_it() {
    use fusionizer::optimize::command::Answer;
    let env = iot();
    let yaml = env.project().join("tasks/store/function.yaml");
    let text = std::fs::read_to_string(&yaml)
        .unwrap()
        .replace("python:3.11", "python:3.10");
    std::fs::write(&yaml, text).unwrap();
    let request = request(&env);
    env.write(&[(
        "naive.py",
        "import json\nprint(json.dumps({'version': 1, 'grouping': [['enrich', 'store']], 'reason': 'x'}))\n",
    )]);
    // A relative path: the program runs in the directory holding fusion.toml.
    let naive = vec!["python3".to_string(), "naive.py".to_string()];
    let err = drive(&naive, Duration::from_secs(30), &env, &request).unwrap_err();
    assert_eq!(err.kind(), "conflict");
    assert!(err.to_string().contains("[enrich, store]"), "{err}");
    assert!(err.to_string().contains("spec.runtime"), "{err}");
    // The examples read the runtimes and never mix them.
    let Answer::Regroup { grouping, .. } = drive(
        &optimizer("threshold.py"),
        Duration::from_secs(30),
        &env,
        &request,
    )
    .unwrap() else {
        panic!("expected a regroup")
    };
    assert!(
        grouping.groups().contains(&vec!["store".to_string()]),
        "{grouping:?}"
    );
}
