//! The wire contract has one source per language: `src/contract.rs` for Rust and
//! `dispatcher/fusionizer_dispatcher/_contract.py` for the Python runtime inside every fused
//! function. This test fails when the two disagree, or when a Python name is added without
//! saying here how it is checked.

use std::collections::BTreeMap;

use fusionizer::contract as c;
use fusionizer::platform::local::protocol as p;

/// `NAME = "value"` lines of `_contract.py`.
fn python_contract() -> BTreeMap<String, String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dispatcher/fusionizer_dispatcher/_contract.py"
    );
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(" = ")?;
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            (!name.is_empty() && name.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'))
                .then(|| (name.to_string(), value.to_string()))
        })
        .collect()
}

fn kind(byte: u8) -> String {
    char::from(byte).to_string()
}

/// Python name → the Rust value it must equal.
fn rust_side() -> BTreeMap<&'static str, String> {
    [
        ("HEADER_TASK_NAME", c::HEADER_TASK_NAME.to_string()),
        ("HEADER_CALLER", c::HEADER_CALLER.to_string()),
        (
            "HEADER_SERVER_ADDRESS",
            c::HEADER_SERVER_ADDRESS.to_string(),
        ),
        ("HEADER_SERVER_PORT", c::HEADER_SERVER_PORT.to_string()),
        ("HEADER_TRACE", c::HEADER_TRACE.to_string()),
        ("HEADER_PEAK_RSS", c::HEADER_PEAK_RSS.to_string()),
        ("HEADER_SAMPLE_RSS", c::HEADER_SAMPLE_RSS.to_string()),
        ("HEADER_TRACEPARENT", c::HEADER_TRACEPARENT.to_string()),
        ("HEADER_PREFER", c::HEADER_PREFER.to_string()),
        ("PREFER_RESPOND_ASYNC", c::PREFER_RESPOND_ASYNC.to_string()),
        (
            "HEADER_PREFERENCE_APPLIED",
            c::HEADER_PREFERENCE_APPLIED.to_string(),
        ),
        ("ENV_PROXY_URL", c::ENV_PROXY_URL.to_string()),
        ("ENV_FUNCTION", c::ENV_FUNCTION.to_string()),
        ("ENTRY_MODULE", c::ENTRY_MODULE.to_string()),
        ("ENTRY_HANDLER", c::ENTRY_HANDLER.to_string()),
        ("DISPATCHER_PACKAGE", c::DISPATCHER_PACKAGE.to_string()),
        ("TASKS_DIR", c::TASKS_DIR.to_string()),
        ("TRIGGER_KIND_HTTP", c::TRIGGER_KIND_HTTP.to_string()),
        ("DEFAULT_HTTP_TRIGGER", c::DEFAULT_HTTP_TRIGGER.to_string()),
        ("WORKER_MODULE", c::WORKER_MODULE.to_string()),
        ("WORKER_ARG_SOCKET", c::WORKER_ARG_SOCKET.to_string()),
        ("WORKER_ARG_HANDLER", c::WORKER_ARG_HANDLER.to_string()),
        ("WORKER_ARG_WORKER_ID", c::WORKER_ARG_WORKER_ID.to_string()),
        ("WORKER_ARG_FUNCTION", c::WORKER_ARG_FUNCTION.to_string()),
        ("WORKER_ARG_WATCHDOG", c::WORKER_ARG_WATCHDOG.to_string()),
        (
            "WORKER_ARG_MAX_RESPONSE",
            c::WORKER_ARG_MAX_RESPONSE.to_string(),
        ),
        ("MAX_LOG_LINE", c::MAX_LOG_LINE.to_string()),
        ("FRAME_EVENT", kind(p::KIND_EVENT)),
        ("FRAME_QUIT", kind(p::KIND_QUIT)),
        ("FRAME_READY", kind(p::KIND_READY)),
        ("FRAME_INIT_FAILED", kind(p::KIND_INIT_FAILED)),
        ("FRAME_RESPONSE", kind(p::KIND_RESPONSE)),
        ("FRAME_LOG", kind(p::KIND_LOG)),
    ]
    .into_iter()
    .collect()
}

/// Python names with no Rust constant, and what checks them instead.
const CHECKED_ELSEWHERE: &[(&str, &str)] = &[
    (
        "HEADER_NUCLIO_TARGET",
        "Nuclio's own header, set by nuclio-sdk; Python only",
    ),
    (
        "HEADER_NUCLIO_INVOKE_TRIGGER",
        "Nuclio's own header (kube cron); Python only",
    ),
    (
        "DEFAULT_PROXY_PORT",
        "serve's default port in `[serve] listen`",
    ),
];

/// Prefixes of the worker protocol's JSON keys and values: the serde field names of
/// `platform::local::protocol`, exercised end to end by every local-platform test (a real
/// Python worker talks to the Rust side there).
const PROTOCOL_KEYS: &[&str] = &[
    "EVENT_",
    "TRIGGER_",
    "RESPONSE_",
    "CALLS_",
    "READY_",
    "FAILED_",
    "LOG_",
    "LEVEL_",
    "STREAM_",
];

#[test]
fn python_and_rust_agree_on_every_shared_name() {
    let python = python_contract();
    assert!(
        python.len() > 20,
        "parsed only {} constants from _contract.py",
        python.len()
    );
    let rust = rust_side();
    let mut problems = Vec::new();
    for (name, value) in &rust {
        match python.get(*name) {
            Some(py) if py == value => {}
            Some(py) => problems.push(format!("{name}: Python says `{py}`, Rust says `{value}`")),
            None => problems.push(format!("{name}: missing from _contract.py")),
        }
    }
    for name in python.keys() {
        let listed = rust.contains_key(name.as_str())
            || CHECKED_ELSEWHERE.iter().any(|(n, _)| n == name)
            || PROTOCOL_KEYS.iter().any(|prefix| name.starts_with(prefix));
        if !listed {
            problems.push(format!(
                "{name}: new in _contract.py; pair it with a Rust constant in tests/it/contract.rs"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_disagreement_is_reported() {
    // The check above must be able to fail: a changed header value is a mismatch.
    let mut python = python_contract();
    python.insert("HEADER_TASK_NAME".into(), "Task".into());
    assert_ne!(python["HEADER_TASK_NAME"], rust_side()["HEADER_TASK_NAME"]);
}
