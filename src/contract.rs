//! The wire contract: every name fusionizer shares with Nuclio, with the Python dispatcher inside
//! a fused function, or with a later run of itself. This is the ground floor; it imports nothing
//! from the crate, and every other module takes these names from here.
//!
//! The Python side keeps the names it needs in `dispatcher/fusionizer_dispatcher/_contract.py`;
//! a test (`tests/it/contract.rs`) fails when the two disagree. See `docs/architecture.md`
//! ("The wire contract").

#![warn(missing_docs)]

/// Label naming the fusionizer project that owns a deployed function.
pub const LABEL_PROJECT: &str = "fusionizer.io/project";
/// Label saying fusionizer manages a deployed function (value [`MANAGED_BY`]).
pub const LABEL_MANAGED_BY: &str = "fusionizer.io/managed-by";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "fusionizer";
/// Annotation listing a function's tasks, sorted and joined by `,`.
pub const ANNOTATION_TASKS: &str = "fusionizer.io/tasks";
/// Annotation holding a function's content digest (`sha256:…`).
pub const ANNOTATION_DIGEST: &str = "fusionizer.io/digest";
/// Per-task digests, `a=sha256:…,b=sha256:…`, so a plan can say which task's files changed.
pub const ANNOTATION_TASK_DIGESTS: &str = "fusionizer.io/task-digests";
/// Who chose the grouping the function was deployed for ("live-state annotation"):
/// `schedule` (serve follows fusion.toml's phases from [`ANNOTATION_SCHEDULE_ORIGIN`]), `phase`
/// (the phase in [`ANNOTATION_PHASE`] is held: `serve --no-schedule`, or serve with an optimizer
/// that has not chosen yet), `feedback` or `command` (serve's optimizer chose it, at
/// [`ANNOTATION_CHOSEN_AT`]). Written by serve on every function it deploys; `plan`, `apply` and
/// `status` read it to pick the grouping serve would. Not part of the digest.
pub const ANNOTATION_GROUPING_OWNER: &str = "fusionizer.io/grouping-owner";
/// The instant (RFC 3339, UTC) serve's schedule counts phase offsets from: serve's start minus
/// the offset of the phase it started in. Live-state annotation, beside
/// [`ANNOTATION_GROUPING_OWNER`] = `schedule`.
pub const ANNOTATION_SCHEDULE_ORIGIN: &str = "fusionizer.io/schedule-origin";
/// The phase serve holds, counting from 1 (`0`: the initial grouping, every task alone).
/// Live-state annotation, beside [`ANNOTATION_GROUPING_OWNER`] = `phase`.
pub const ANNOTATION_PHASE: &str = "fusionizer.io/phase";
/// When serve's optimizer chose the live grouping (RFC 3339, UTC). Live-state annotation,
/// beside [`ANNOTATION_GROUPING_OWNER`] = `feedback` or `command`.
pub const ANNOTATION_CHOSEN_AT: &str = "fusionizer.io/chosen-at";
/// The tasks of the function that were uploaded to serve (`PUT /<task>`), sorted and joined by
/// `,`. Such a function belongs to serve: `plan` and `apply` keep it; `destroy` removes it.
/// Live-state annotation.
pub const ANNOTATION_UPLOADED: &str = "fusionizer.io/uploaded";
/// Every live-state annotation: what serve writes beside a function's content. They are left out
/// of the digest and of plan diffs.
pub const LIVE_STATE_ANNOTATIONS: &[&str] = &[
    ANNOTATION_GROUPING_OWNER,
    ANNOTATION_SCHEDULE_ORIGIN,
    ANNOTATION_PHASE,
    ANNOTATION_CHOSEN_AT,
    ANNOTATION_UPLOADED,
];
/// Label and annotation keys under this prefix are fusionizer's; a task may not set them.
pub const RESERVED_PREFIX: &str = "fusionizer.io/";

/// Request header naming the task an event is for.
pub const HEADER_TASK_NAME: &str = "Task-Name";
/// Request header a task sets on a proxied call to another task (the caller's name).
pub const HEADER_CALLER: &str = "X-Fusionizer-Caller";
/// Request header carrying the proxy's host, as the original project's tasks read it.
pub const HEADER_SERVER_ADDRESS: &str = "Fusionizer-Server-Address";
/// Request header carrying the proxy's port, as the original project's tasks read it.
pub const HEADER_SERVER_PORT: &str = "Fusionizer-Server-Port";
/// Response header through which a platform reports how many in-process sibling calls a
/// request made (the proxy counts them in its metrics and strips the header).
pub const HEADER_LOCAL_CALLS: &str = "X-Fusionizer-Local-Calls";
/// Response header through which the dispatcher reports the in-process calls a request made, one
/// record each (`caller callee s|a status duration_us bytes`, joined by `,`; docs/traces.md).
/// The local worker sends the same text in its `R` frame; the proxy records it and strips the
/// header before answering the client.
pub const HEADER_TRACE: &str = "X-Fusionizer-Trace";
/// Response header carrying the worker's peak resident set (bytes) over the event, when the
/// proxy asked for a sample ([`HEADER_SAMPLE_RSS`]); stripped by the proxy.
pub const HEADER_PEAK_RSS: &str = "X-Fusionizer-Peak-Rss";
/// Request header by which the proxy asks the function to measure its peak resident set over
/// this event (value `1`); the local platform turns it into the `E` frame's `sample_rss`.
pub const HEADER_SAMPLE_RSS: &str = "X-Fusionizer-Sample-Rss";
/// W3C Trace Context header, read and propagated on proxied calls (lowercase, as the
/// recommendation spells it).
pub const HEADER_TRACEPARENT: &str = "traceparent";
/// RFC 7240 request header; `Prefer: respond-async` asks for a fire-and-forget call.
pub const HEADER_PREFER: &str = "Prefer";
/// The `Prefer` token asking the proxy to answer `202 Accepted` at once (RFC 7240 §4.1).
pub const PREFER_RESPOND_ASYNC: &str = "respond-async";
/// RFC 7240 response header naming the preferences the server honoured.
pub const HEADER_PREFERENCE_APPLIED: &str = "Preference-Applied";

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the ones a
/// forwarding client recomputes (`host`, `content-length`). Lowercase.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Whether `name` is one of [`HOP_BY_HOP`] (ASCII case-insensitive).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Environment variable: the proxy's base URL, for calls from a task to a task in another
/// function.
pub const ENV_PROXY_URL: &str = "FUSIONIZER_PROXY_URL";
/// Environment variable: the name of the function a worker runs.
pub const ENV_FUNCTION: &str = "FUSIONIZER_FUNCTION";
/// Environment variable: the Python interpreter for the local platform.
pub const ENV_PYTHON: &str = "FUSIONIZER_PYTHON";
/// Environment variable: where the local platform caches virtualenvs.
pub const ENV_CACHE_DIR: &str = "FUSIONIZER_CACHE_DIR";
/// Environment variable: the state directory, where everything fusionizer writes goes
/// (`--state-dir` wins over it; default [`STATE_DIR`] beside fusion.toml).
pub const ENV_STATE_DIR: &str = "FUSIONIZER_STATE_DIR";
/// Environment variable: an overlay merged over fusion.toml's `[serve]` and `[nuctl]`
/// (`--overlay` wins over it).
pub const ENV_OVERLAY: &str = "FUSIONIZER_OVERLAY";
/// Environment variable: the `nuctl` binary to run.
pub const ENV_NUCTL: &str = "FUSIONIZER_NUCTL";
/// Environment variable: an env-filter for fusionizer's own logs.
pub const ENV_LOG: &str = "FUSIONIZER_LOG";

/// The file every task directory holds.
pub const FUNCTION_FILE: &str = "function.yaml";
/// The generated entry module's name; `spec.handler` is `<ENTRY_MODULE>:handler`.
pub const ENTRY_MODULE: &str = "_fusionizer_entry";
/// The handler function inside [`ENTRY_MODULE`].
pub const ENTRY_HANDLER: &str = "handler";
/// Directory in an artifact under which each task's files live (`fusionizer_tasks/<task>/`).
pub const TASKS_DIR: &str = "fusionizer_tasks";
/// The dispatcher package inside every artifact.
pub const DISPATCHER_PACKAGE: &str = "fusionizer_dispatcher";
/// The module a local worker runs: `python -u -m <WORKER_MODULE> --socket PATH --handler H
/// --worker-id N --function NAME --max-response-size BYTES --watchdog-stdin`.
pub const WORKER_MODULE: &str = "fusionizer_dispatcher.worker";
/// The local worker's socket argument.
pub const WORKER_ARG_SOCKET: &str = "--socket";
/// The local worker's handler argument (`<ENTRY_MODULE>:<ENTRY_HANDLER>`).
pub const WORKER_ARG_HANDLER: &str = "--handler";
/// The local worker's id argument.
pub const WORKER_ARG_WORKER_ID: &str = "--worker-id";
/// The local worker's function-name argument.
pub const WORKER_ARG_FUNCTION: &str = "--function";
/// The local worker's watchdog flag: its stdin is a pipe only the parent holds open, and at EOF
/// (the parent died, however) the worker kills its own process group.
pub const WORKER_ARG_WATCHDOG: &str = "--watchdog-stdin";
/// The local worker's response limit (`[serve] max-response-size`, bytes of an answer's body and
/// headers): a larger answer is replaced by a short `R` frame saying its size, and the worker
/// keeps serving.
pub const WORKER_ARG_MAX_RESPONSE: &str = "--max-response-size";
/// Longest log line a task's output makes, in bytes: the rest of a longer line is dropped while
/// it streams and counted (`[truncated: N more bytes]`), on the Python side and the Rust side
/// alike.
pub const MAX_LOG_LINE: usize = 16 * 1024;
/// Trigger kind of the events the local platform sends on its HTTP trigger.
pub const TRIGGER_KIND_HTTP: &str = "http";
/// Trigger name of the events the local platform sends on its HTTP trigger.
pub const DEFAULT_HTTP_TRIGGER: &str = "default-http";
/// Nuclio's kind of a cron trigger (`spec.triggers.<name>.kind`), and the trigger kind of the
/// events the local platform fires for one (pkg/processor/trigger/cron/trigger.go).
pub const TRIGGER_KIND_CRON: &str = "cron";

/// The default state directory, beside fusion.toml (build output, local live state, locks);
/// `--state-dir` or [`ENV_STATE_DIR`] put it elsewhere.
pub const STATE_DIR: &str = ".fusionizer";

/// Longest task name (a DNS-1123 label).
pub const MAX_TASK_NAME: usize = 40;
/// Longest project name (a DNS-1123 label).
pub const MAX_PROJECT_NAME: usize = 40;
/// Longest function name: 56 characters. On Kubernetes, Nuclio names the function's Service and
/// Deployment `nuclio-<function>` (pkg/platform/kube/types.go, `DeploymentNameFromFunctionName` and friends), and
/// those are DNS-1123 labels of at most 63 characters; 63 - len("nuclio-") = 56. A longer name
/// deploys on Docker and fails on Kubernetes, so every name fusionizer makes fits both.
pub const MAX_FUNCTION_NAME: usize = 56;

/// Whether `name` is a lowercase DNS-1123 label of at most `max` characters.
pub fn is_dns_label(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` is a task name: a lowercase DNS-1123 label of at most [`MAX_TASK_NAME`]
/// characters. The one rule for every place that takes a task name (fusion.toml, a task's
/// directory, serve's routes and uploads); only such names ever become paths.
pub fn is_task_name(name: &str) -> bool {
    is_dns_label(name, MAX_TASK_NAME)
}

/// fusion.toml's and function.yaml's problem with a task name that is not one, and its hint.
pub fn invalid_task_name(name: &str) -> (String, String) {
    (
        format!("invalid task name `{name}`"),
        dns_label_hint("task name", MAX_TASK_NAME),
    )
}

/// serve's refusal of a task name that is not one.
pub fn not_a_task_name(name: &str) -> String {
    format!("`{name}` is not a valid task name")
}

/// serve's refusal of a task name in a request: at most its first 64 characters, escaped, and
/// the rule.
pub fn refused_task_name(name: &str) -> String {
    let mut shown: String = name.chars().take(64).flat_map(char::escape_debug).collect();
    if name.chars().count() > 64 {
        shown.push('…');
    }
    format!(
        "{}: use a lowercase DNS-1123 label of at most {MAX_TASK_NAME} characters",
        not_a_task_name(&shown)
    )
}

/// The hint for a name that must be a lowercase DNS-1123 label.
pub fn dns_label_hint(what: &str, max: usize) -> String {
    format!(
        "a {what} is a lowercase DNS-1123 label of at most {max} characters: `a-z`, `0-9` and `-`, \
         starting and ending with a letter or digit"
    )
}

#[cfg(test)]
mod task_name_tests {
    use super::*;

    #[test]
    fn task_names_are_checked_and_refused_in_one_wording() {
        assert!(is_task_name("taska"));
        assert!(!is_task_name("Task"));
        assert!(!is_task_name(&"a".repeat(MAX_TASK_NAME + 1)));
        assert_eq!(invalid_task_name("A").0, "invalid task name `A`",);
        assert_eq!(not_a_task_name("A"), "`A` is not a valid task name");
        assert_eq!(
            refused_task_name("a\nb"),
            "`a\\nb` is not a valid task name: use a lowercase DNS-1123 label of at most 40 characters"
        );
        assert!(refused_task_name(&"X".repeat(65)).starts_with(&format!("`{}…`", "X".repeat(64))));
    }
}
