"""The wire contract: every name the Python runtime shares with fusionizer's Rust side.

The Rust side keeps the same names in `src/contract.rs`; a Rust test parses this file, one
constant per line in exactly the form `NAME = "value"`, and fails when the two disagree. So keep
that form: plain module-level string constants, double quotes, no annotations, nothing else on
the line. The rest of the package takes these names from here, never from literals.
"""

# ------------------------------------------------------------------ request headers
# Names as Nuclio's HTTP trigger presents them (canonical case); lookups ignore case.

# The task an event is for; the dispatcher routes on it.
HEADER_TASK_NAME = "Task-Name"
# Set on a call from one task to another that goes through the proxy (the caller's name).
HEADER_CALLER = "X-Fusionizer-Caller"
# The proxy's host, as the original project's tasks read it.
HEADER_SERVER_ADDRESS = "Fusionizer-Server-Address"
# The proxy's port.
HEADER_SERVER_PORT = "Fusionizer-Server-Port"
# Nuclio's own header naming the function a call targets (nuclio_sdk `Platform.call_function`).
HEADER_NUCLIO_TARGET = "X-Nuclio-Target"
# Nuclio's own header on events a kube-mode cron trigger sends through the HTTP trigger.
HEADER_NUCLIO_INVOKE_TRIGGER = "X-Nuclio-Invoke-Trigger"
# Response header: the in-process calls a request made, one record each
# (`caller callee s|a status duration_us bytes`, joined by `,`); the proxy strips it.
HEADER_TRACE = "X-Fusionizer-Trace"
# Response header: the worker's peak resident set (bytes) over the event, when sampled.
HEADER_PEAK_RSS = "X-Fusionizer-Peak-Rss"
# Request header: the proxy asks for a peak-RSS sample over this event (value `1`).
HEADER_SAMPLE_RSS = "X-Fusionizer-Sample-Rss"
# W3C Trace Context, propagated on calls through the proxy.
HEADER_TRACEPARENT = "traceparent"
# RFC 7240: `Prefer: respond-async` makes a call fire-and-forget (the proxy answers 202).
HEADER_PREFER = "Prefer"
PREFER_RESPOND_ASYNC = "respond-async"
HEADER_PREFERENCE_APPLIED = "Preference-Applied"

# ------------------------------------------------------------------ environment
# The proxy's base URL, for calls to tasks in other functions.
ENV_PROXY_URL = "FUSIONIZER_PROXY_URL"
# The name of the function a local worker runs.
ENV_FUNCTION = "FUSIONIZER_FUNCTION"
# The proxy's port when `ENV_PROXY_URL` or `HEADER_SERVER_PORT` names none (serve's default).
DEFAULT_PROXY_PORT = "8000"

# ------------------------------------------------------------------ artifact layout
# The generated entry module; a fused function's `spec.handler` is `<ENTRY_MODULE>:<ENTRY_HANDLER>`.
ENTRY_MODULE = "_fusionizer_entry"
ENTRY_HANDLER = "handler"
# This package, shipped inside every artifact.
DISPATCHER_PACKAGE = "fusionizer_dispatcher"
# Directory of an artifact holding one directory per task, mounted as this package.
TASKS_DIR = "fusionizer_tasks"

# ------------------------------------------------------------------ triggers
# Trigger kind and name of events the local platform sends on its HTTP trigger.
TRIGGER_KIND_HTTP = "http"
DEFAULT_HTTP_TRIGGER = "default-http"

# ------------------------------------------------------------------ local worker
# `python -u -m <WORKER_MODULE> --socket PATH --handler H --worker-id N --function NAME
# [--max-response-size BYTES] [--watchdog-stdin]`
WORKER_MODULE = "fusionizer_dispatcher.worker"
WORKER_ARG_SOCKET = "--socket"
WORKER_ARG_HANDLER = "--handler"
WORKER_ARG_WORKER_ID = "--worker-id"
WORKER_ARG_FUNCTION = "--function"
# Flag: stdin is a pipe only the parent holds open; when it reads EOF the parent died, and the
# worker kills its process group (itself and what its tasks started).
WORKER_ARG_WATCHDOG = "--watchdog-stdin"
# The largest answer (R frame meta and body, bytes) the worker sends; a larger one becomes a
# short R frame carrying `RESPONSE_TOO_LARGE` (its size) instead.
WORKER_ARG_MAX_RESPONSE = "--max-response-size"
# Longest log line (bytes) a task's output makes; the rest is dropped and counted in
# `LOG_TRUNCATED`.
MAX_LOG_LINE = "16384"

# Frame kinds (one ASCII letter) of the worker protocol; see `worker`.
FRAME_EVENT = "E"
FRAME_QUIT = "Q"
FRAME_READY = "S"
FRAME_INIT_FAILED = "F"
FRAME_RESPONSE = "R"
FRAME_LOG = "L"

# Keys of the `E` frame's meta JSON.
EVENT_ID = "id"
EVENT_METHOD = "method"
EVENT_PATH = "path"
EVENT_FIELDS = "fields"
EVENT_HEADERS = "headers"
EVENT_CONTENT_TYPE = "content_type"
EVENT_TIMESTAMP = "timestamp"
EVENT_TRIGGER = "trigger"
# true when the proxy asked for a peak-RSS sample over this event.
EVENT_SAMPLE_RSS = "sample_rss"
TRIGGER_KIND = "kind"
TRIGGER_NAME = "name"

# Keys of the `R` frame's meta JSON.
RESPONSE_STATUS_CODE = "status_code"
RESPONSE_CONTENT_TYPE = "content_type"
RESPONSE_HEADERS = "headers"
RESPONSE_TASK = "task"
RESPONSE_CALLS = "calls"
# The in-process call records (the `HEADER_TRACE` text) and the sampled peak RSS (bytes).
RESPONSE_TRACE = "trace"
RESPONSE_PEAK_RSS = "peak_rss"
# Set instead of a body when the answer was over the worker's `--max-response-size`: its size.
RESPONSE_TOO_LARGE = "too_large"
CALLS_LOCAL = "local"
CALLS_REMOTE = "remote"

# Keys of the `S`, `F` and `L` frames' JSON.
READY_PID = "pid"
READY_TASKS = "tasks"
FAILED_TASK = "task"
FAILED_ERROR = "error"
# The failure on one line (`file:line: Type: message` where the task's code is known).
FAILED_SUMMARY = "summary"
LOG_TASK = "task"
LOG_LEVEL = "level"
LOG_MESSAGE = "message"
LOG_WITH = "with"
LOG_STREAM = "stream"
# Bytes of the line dropped past `MAX_LOG_LINE` (absent when nothing was).
LOG_TRUNCATED = "truncated"

# Values of `L` frames' `level` and `stream`.
LEVEL_DEBUG = "debug"
LEVEL_INFO = "info"
LEVEL_WARN = "warn"
LEVEL_ERROR = "error"
STREAM_LOGGER = "logger"
STREAM_STDOUT = "stdout"
STREAM_STDERR = "stderr"
