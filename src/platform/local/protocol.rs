//! The framed wire protocol between the Rust side and one Python worker process.
//!
//! One Unix stream socket per worker: the Rust side listens, the worker connects once and keeps
//! the connection for its whole life. Every message in either direction is a frame:
//!
//! ```text
//! frame   := length:u32 big-endian | kind:u8 (ASCII letter) | payload (length - 1 bytes)
//! ```
//!
//! `length` counts the kind byte plus the payload.
//!
//! Rust → worker:
//! - `E` event: `meta_len:u32 BE | meta JSON | body bytes` with meta
//!   `{"id", "method", "path", "fields", "headers", "content_type", "timestamp", "trigger"}`
//!   and `"sample_rss": true` when the proxy asked for a peak-RSS sample
//!   ([`EventMeta`] for requests, [`TriggerEvent`] for cron events, whose header values may be
//!   any JSON value);
//! - `Q` quit: the worker takes no more events and exits 0.
//!
//! Worker → Rust:
//! - `S` ready, once, after every task's `init_context` finished: `{"pid", "tasks"}`
//!   ([`Ready`]);
//! - `F` init failed: `{"task", "error", "summary"}` ([`InitFailed`]), then the worker exits 1;
//! - `R` response, exactly one per `E` and in order: `meta_len:u32 BE | meta JSON | body bytes`
//!   with meta `{"status_code", "content_type", "headers", "task", "calls"}`, plus `"trace"`
//!   (the in-process call records, docs/traces.md) and `"peak_rss"` (bytes) when there is
//!   something to report ([`ResponseMeta`]); the body is the raw bytes (no base64). An answer
//!   whose meta and body exceed the worker's `--max-response-size` is not sent: an `R` frame
//!   with `"too_large"` (its size) and no body takes its place;
//! - `L` log line, at any time: `{"task", "level", "message", "with", "stream"}`, plus
//!   `"truncated"` (bytes dropped past [`contract::MAX_LOG_LINE`]) when the line was longer
//!   ([`LogLine`]).
//!
//! Encoding builds a whole frame in one buffer so that sending it is a single write; decoding
//! reads the 4-byte length and the kind, checks the length against the kind's limit (an `R`
//! frame may hold the largest answer allowed, any other at most [`MAX_SMALL_FRAME`]), then
//! reads exactly that many bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::contract;
use crate::platform::{InvokeRequest, InvokeResponse};

/// The longest frame a worker may send other than `R` (ready, init failure, log line): the
/// dispatcher cuts log lines at [`contract::MAX_LOG_LINE`], so this is room to spare.
pub const MAX_SMALL_FRAME: u32 = 1024 * 1024;
/// An `R` frame's bytes besides its meta and body: the kind and the meta length.
const RESPONSE_OVERHEAD: u64 = 1 + 4;

pub const KIND_EVENT: u8 = b'E';
pub const KIND_QUIT: u8 = b'Q';
pub const KIND_READY: u8 = b'S';
pub const KIND_INIT_FAILED: u8 = b'F';
pub const KIND_RESPONSE: u8 = b'R';
pub const KIND_LOG: u8 = b'L';

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The worker closed the connection (cleanly, between frames).
    #[error("the worker closed its connection")]
    Closed,
    #[error("reading from the worker failed")]
    Io(#[from] std::io::Error),
    #[error("the worker sent an invalid frame: {0}")]
    Invalid(String),
    /// Longer than its kind allows: the worker broke the protocol (it checks answers itself).
    #[error(
        "the worker sent a frame `{}` of {len} bytes, over the limit of {limit} bytes",
        char::from(*.kind).escape_default()
    )]
    TooLarge { kind: u8, len: u32, limit: u64 },
}

/// One decoded frame.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub payload: Bytes,
}

/// Reads one frame; an `R` frame may carry an answer of up to `max_response` bytes (meta and
/// body), any other frame at most [`MAX_SMALL_FRAME`] bytes. A clean EOF before the length is
/// [`FrameError::Closed`]; nothing is allocated for a frame over its limit.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_response: u64,
) -> Result<Frame, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Io(e)),
    }
    let len = u32::from_be_bytes(len);
    if len == 0 {
        return Err(FrameError::Invalid("frame length 0".to_string()));
    }
    let kind = reader.read_u8().await?;
    let limit = if kind == KIND_RESPONSE {
        max_response.saturating_add(RESPONSE_OVERHEAD)
    } else {
        u64::from(MAX_SMALL_FRAME)
    };
    if u64::from(len) > limit {
        return Err(FrameError::TooLarge { kind, len, limit });
    }
    let mut payload = BytesMut::zeroed(len as usize - 1);
    reader.read_exact(&mut payload).await?;
    Ok(Frame {
        kind,
        payload: payload.freeze(),
    })
}

/// A frame with no payload structure (`Q`).
pub fn encode_simple(kind: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(5);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.push(kind);
    out
}

/// `meta_len | meta | body` framed as `kind`, in one buffer.
fn encode_with_meta(kind: u8, meta: &[u8], body: &[u8]) -> Vec<u8> {
    let len = 1 + 4 + meta.len() + body.len();
    let mut out = Vec::with_capacity(4 + len);
    out.put_u32(len as u32);
    out.put_u8(kind);
    out.put_u32(meta.len() as u32);
    out.put_slice(meta);
    out.put_slice(body);
    out
}

/// Splits a `meta_len | meta | body` payload.
fn split_meta(payload: &Bytes) -> Result<(&[u8], Bytes), FrameError> {
    if payload.len() < 4 {
        return Err(FrameError::Invalid(
            "payload shorter than its meta length".into(),
        ));
    }
    let meta_len = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
    if payload.len() < 4 + meta_len {
        return Err(FrameError::Invalid(format!(
            "meta length {meta_len} exceeds the payload"
        )));
    }
    Ok((&payload[4..4 + meta_len], payload.slice(4 + meta_len..)))
}

/// The trigger an event came from: the default HTTP trigger for requests, or a cron trigger
/// the local platform fires ([`encode_trigger_event`]).
#[derive(Debug, serde::Serialize)]
pub struct Trigger<'a> {
    pub kind: &'a str,
    pub name: &'a str,
}

/// Meta of an `E` frame: Nuclio's event fields.
#[derive(Debug, serde::Serialize)]
pub struct EventMeta<'a> {
    pub id: String,
    pub method: &'a str,
    pub path: &'a str,
    /// Query arguments (the last value wins when a name repeats, as in Nuclio).
    pub fields: BTreeMap<String, String>,
    /// Headers as sent; repeated names are joined with `, `.
    pub headers: BTreeMap<&'a str, String>,
    pub content_type: &'a str,
    pub timestamp: u64,
    pub trigger: Trigger<'a>,
    /// The proxy asked for a peak-RSS sample over this event (header `X-Fusionizer-Sample-Rss`,
    /// which is not passed on as a header).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sample_rss: bool,
}

/// Encodes `request` as an `E` frame with event id `id`. The `Task-Name` header is set from
/// `request.task` (replacing any the client sent).
pub fn encode_event(request: &InvokeRequest, id: u64, timestamp: u64) -> Vec<u8> {
    let mut headers: BTreeMap<&str, String> = BTreeMap::new();
    let mut content_type = "";
    let mut sample_rss = false;
    for (name, value) in &request.headers {
        if !request.task.is_empty() && name.eq_ignore_ascii_case(crate::contract::HEADER_TASK_NAME)
        {
            continue; // replaced by the task the request is routed to
        }
        if name.eq_ignore_ascii_case(crate::contract::HEADER_SAMPLE_RSS) {
            sample_rss = true;
            continue;
        }
        if name.eq_ignore_ascii_case("content-type") {
            content_type = value;
        }
        headers
            .entry(name.as_str())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    if !request.task.is_empty() {
        headers.insert(crate::contract::HEADER_TASK_NAME, request.task.clone());
    }
    let fields = form_urlencoded::parse(request.query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let method = if request.method.is_empty() {
        "POST"
    } else {
        &request.method
    };
    let path = if request.path.is_empty() {
        "/"
    } else {
        &request.path
    };
    let meta = EventMeta {
        id: id.to_string(),
        method,
        path,
        fields,
        headers,
        content_type,
        timestamp,
        trigger: Trigger {
            kind: crate::contract::TRIGGER_KIND_HTTP,
            name: crate::contract::DEFAULT_HTTP_TRIGGER,
        },
        sample_rss,
    };
    let meta = serde_json::to_vec(&meta).expect("event meta always serialises");
    encode_with_meta(KIND_EVENT, &meta, &request.body)
}

/// An event a trigger of the platform's own builds (a cron trigger), sent as the trigger builds
/// it: no defaults are filled in, and header values keep their JSON type.
#[derive(Debug, serde::Serialize)]
pub struct TriggerEvent<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a serde_json::Map<String, serde_json::Value>,
    pub content_type: &'a str,
    /// Unix seconds.
    pub timestamp: u64,
    pub trigger: Trigger<'a>,
    #[serde(skip)]
    pub body: &'a [u8],
}

/// Meta of an `E` frame for a [`TriggerEvent`].
#[derive(serde::Serialize)]
struct TriggerEventMeta<'a> {
    id: String,
    /// Always empty: only the HTTP trigger has query arguments.
    fields: BTreeMap<String, String>,
    #[serde(flatten)]
    event: &'a TriggerEvent<'a>,
}

/// Encodes `event` as an `E` frame with event id `id`.
pub fn encode_trigger_event(event: &TriggerEvent<'_>, id: u64) -> Vec<u8> {
    let meta = TriggerEventMeta {
        id: id.to_string(),
        fields: BTreeMap::new(),
        event,
    };
    let meta = serde_json::to_vec(&meta).expect("event meta always serialises");
    encode_with_meta(KIND_EVENT, &meta, event.body)
}

/// Task-to-task call counts of one event, as the dispatcher reports them.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct Calls {
    #[serde(default)]
    pub local: u64,
    #[serde(default)]
    pub remote: u64,
}

/// Meta of an `R` frame.
#[derive(Debug, serde::Deserialize)]
pub struct ResponseMeta {
    pub status_code: u16,
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub headers: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub calls: Calls,
    /// The in-process call records of this event (the `X-Fusionizer-Trace` text).
    #[serde(default)]
    pub trace: Option<String>,
    /// The worker's peak resident set over the event in bytes, when a sample was asked for.
    #[serde(default)]
    pub peak_rss: Option<u64>,
    /// The size of the answer the worker did not send because it was over its limit.
    #[serde(default)]
    pub too_large: Option<u64>,
}

/// A decoded `R` frame.
#[derive(Debug)]
pub struct WorkerResponse {
    pub meta: ResponseMeta,
    pub body: Bytes,
}

impl WorkerResponse {
    pub fn decode(payload: &Bytes) -> Result<Self, FrameError> {
        let (meta, body) = split_meta(payload)?;
        let meta = serde_json::from_slice(meta)
            .map_err(|e| FrameError::Invalid(format!("response meta: {e}")))?;
        Ok(WorkerResponse { meta, body })
    }

    /// The HTTP answer: the worker's headers (numbers as text) plus `Content-Type` from
    /// `content_type` unless the headers already carry one.
    pub fn into_response(self) -> InvokeResponse {
        let mut headers = Vec::with_capacity(self.meta.headers.len() + 1);
        let mut has_content_type = false;
        for (name, value) in self.meta.headers {
            has_content_type |= name.eq_ignore_ascii_case("content-type");
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            headers.push((name, value));
        }
        if !has_content_type && !self.meta.content_type.is_empty() {
            headers.push(("Content-Type".to_string(), self.meta.content_type));
        }
        if self.meta.calls.local > 0 {
            // For the proxy's metrics; it strips the header before answering the client.
            headers.push((
                crate::contract::HEADER_LOCAL_CALLS.to_string(),
                self.meta.calls.local.to_string(),
            ));
        }
        push_trace_headers(&mut headers, self.meta.trace, self.meta.peak_rss);
        InvokeResponse {
            status: self.meta.status_code,
            headers,
            body: self.body,
        }
    }
}

/// The trace trailer and the peak-RSS sample as the response headers the proxy records and
/// strips (the same headers a function on Nuclio sends).
fn push_trace_headers(
    headers: &mut Vec<(String, String)>,
    trace: Option<String>,
    peak_rss: Option<u64>,
) {
    if let Some(trace) = trace.filter(|t| !t.is_empty()) {
        headers.push((crate::contract::HEADER_TRACE.to_string(), trace));
    }
    if let Some(rss) = peak_rss {
        headers.push((
            crate::contract::HEADER_PEAK_RSS.to_string(),
            rss.to_string(),
        ));
    }
}

/// Payload of `S`.
#[derive(Debug, serde::Deserialize)]
pub struct Ready {
    pub pid: u32,
    #[serde(default)]
    pub tasks: Vec<String>,
}

/// Payload of `F`.
#[derive(Debug, serde::Deserialize)]
pub struct InitFailed {
    #[serde(default)]
    pub task: Option<String>,
    /// The exception and its traceback.
    pub error: String,
    /// The failure on one line (`file:line: Type: message` where the task's code is known);
    /// absent from older workers.
    #[serde(default)]
    pub summary: Option<String>,
}

/// Payload of `L`.
#[derive(Debug, serde::Deserialize)]
pub struct LogLine {
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub level: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub with: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub stream: String,
    /// Bytes of the line the worker dropped past [`contract::MAX_LOG_LINE`].
    #[serde(default)]
    pub truncated: u64,
}

/// Decodes a JSON payload (`S`, `F`, `L`).
pub fn decode_json<T: serde::de::DeserializeOwned>(
    what: &str,
    payload: &[u8],
) -> Result<T, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::Invalid(format!("{what}: {e}")))
}

/// The `tracing` target of task log lines (filter with `FUSIONIZER_LOG=fusionizer::task=debug`).
pub const TASK_LOG_TARGET: &str = crate::ui::report::TASK_TARGET;
/// The `tracing` target of what workers write to their real stdout/stderr.
pub const WORKER_LOG_TARGET: &str = crate::ui::report::WORKER_TARGET;

/// `text` cut to at most [`contract::MAX_LOG_LINE`] bytes (at a character boundary), ending in
/// `… [truncated: N more bytes]` when anything was dropped here or, `dropped` bytes, before.
pub fn bounded_line(text: &str, dropped: u64) -> Cow<'_, str> {
    let mut keep = text.len().min(contract::MAX_LOG_LINE);
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    let dropped = dropped + (text.len() - keep) as u64;
    if dropped == 0 {
        return Cow::Borrowed(text);
    }
    Cow::Owned(format!(
        "{} … [truncated: {dropped} more bytes]",
        &text[..keep]
    ))
}

/// A logger call's fields as one JSON object, bounded as output lines are: a value whose text
/// is over [`contract::MAX_LOG_LINE`] bytes becomes that text cut ([`bounded_line`]), and once
/// the fields kept reach four times that, the rest are left out and counted under `…`. Always
/// valid JSON (serve's terminal and `--log-format json` parse it back).
pub fn bounded_fields(with: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut kept = serde_json::Map::new();
    let mut size = 0;
    let mut left_out = 0;
    for (key, value) in with {
        if size >= 4 * contract::MAX_LOG_LINE {
            left_out += 1;
            continue;
        }
        let key = bounded_line(key, 0).into_owned();
        let value = match value {
            serde_json::Value::String(text) => {
                serde_json::Value::String(bounded_line(text, 0).into_owned())
            }
            other => {
                let text = other.to_string();
                if text.len() > contract::MAX_LOG_LINE {
                    serde_json::Value::String(bounded_line(&text, 0).into_owned())
                } else {
                    other.clone()
                }
            }
        };
        size += key.len() + value.to_string().len();
        kept.insert(key, value);
    }
    if left_out > 0 {
        kept.insert(
            "…".to_string(),
            serde_json::Value::String(format!("{left_out} more fields left out")),
        );
    }
    serde_json::Value::Object(kept).to_string()
}

/// Emits a worker's `L` frame as a `tracing` event at its level, its message cut to
/// [`contract::MAX_LOG_LINE`] bytes and its fields as [`bounded_fields`].
pub fn emit_log(function: &str, line: &LogLine) {
    let task = line.task.as_deref().unwrap_or("-");
    let with = if line.with.is_empty() {
        String::new()
    } else {
        bounded_fields(&line.with)
    };
    let message = bounded_line(line.message.trim_end_matches('\n'), line.truncated);
    let stream = line.stream.as_str();
    match line.level.as_str() {
        "debug" => {
            tracing::debug!(target: TASK_LOG_TARGET, function, task, stream, with, "{message}");
        }
        "warn" | "warning" => {
            tracing::warn!(target: TASK_LOG_TARGET, function, task, stream, with, "{message}");
        }
        "error" | "critical" => {
            tracing::error!(target: TASK_LOG_TARGET, function, task, stream, with, "{message}");
        }
        _ => tracing::info!(target: TASK_LOG_TARGET, function, task, stream, with, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_fields_are_cut_field_by_field_and_stay_json() {
        let mut with = serde_json::Map::new();
        with.insert(
            "body".into(),
            "x".repeat(contract::MAX_LOG_LINE + 10).into(),
        );
        with.insert("n".into(), 3.into());
        with.insert(
            "list".into(),
            serde_json::Value::Array(vec![1.into(); contract::MAX_LOG_LINE]),
        );
        for i in 0..10 {
            with.insert(format!("big{i}"), "y".repeat(contract::MAX_LOG_LINE).into());
        }
        let text = bounded_fields(&with);
        let back: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert!(text.len() < 6 * contract::MAX_LOG_LINE, "{}", text.len());
        assert!(back["body"]
            .as_str()
            .unwrap()
            .ends_with("… [truncated: 10 more bytes]"));
        assert_eq!(back["n"], 3);
        assert!(back["list"].as_str().unwrap().contains("[truncated: "));
        assert!(back["…"]
            .as_str()
            .unwrap()
            .ends_with("more fields left out"));
    }

    #[tokio::test]
    async fn event_frame_round_trips_through_the_framing() {
        let request = InvokeRequest {
            task: "taska".into(),
            method: "POST".into(),
            path: "/x".into(),
            query: "a=1&b=two%20words&a=3".into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-Many".into(), "1".into()),
                ("X-Many".into(), "2".into()),
                ("task-name".into(), "spoofed".into()),
            ],
            body: Bytes::from_static(b"{\"n\":1}"),
        };
        let bytes = encode_event(&request, 7, 1_700_000_000);
        let frame = read_frame(&mut bytes.as_slice(), 1 << 20).await.unwrap();
        assert_eq!(frame.kind, KIND_EVENT);
        let (meta, body) = split_meta(&frame.payload).unwrap();
        let meta: serde_json::Value = serde_json::from_slice(meta).unwrap();
        assert_eq!(&body[..], b"{\"n\":1}");
        assert_eq!(meta["id"], "7");
        assert_eq!(meta["path"], "/x");
        assert_eq!(meta["content_type"], "application/json");
        assert_eq!(meta["fields"]["a"], "3");
        assert_eq!(meta["fields"]["b"], "two words");
        assert_eq!(meta["headers"]["X-Many"], "1, 2");
        assert_eq!(meta["headers"]["Task-Name"], "taska");
        assert!(meta["headers"].get("task-name").is_none());
        assert_eq!(meta["trigger"]["kind"], "http");
    }

    #[tokio::test]
    async fn trigger_event_frame_keeps_the_event_as_built() {
        let mut headers = serde_json::Map::new();
        headers.insert("Task-Name".into(), "taska".into());
        headers.insert("X-Count".into(), 3.into());
        let event = TriggerEvent {
            method: "",
            path: "",
            headers: &headers,
            content_type: "",
            timestamp: 0,
            trigger: Trigger {
                kind: "cron",
                name: "tick",
            },
            body: b"hello",
        };
        let bytes = encode_trigger_event(&event, 9);
        let frame = read_frame(&mut bytes.as_slice(), 1 << 20).await.unwrap();
        assert_eq!(frame.kind, KIND_EVENT);
        let (meta, body) = split_meta(&frame.payload).unwrap();
        let meta: serde_json::Value = serde_json::from_slice(meta).unwrap();
        assert_eq!(&body[..], b"hello");
        assert_eq!(
            meta,
            serde_json::json!({
                "id": "9", "fields": {}, "method": "", "path": "", "content_type": "",
                "timestamp": 0, "trigger": {"kind": "cron", "name": "tick"},
                "headers": {"Task-Name": "taska", "X-Count": 3},
            })
        );
    }

    #[tokio::test]
    async fn response_frame_decodes_headers_and_content_type() {
        let meta = br#"{"status_code": 201, "content_type": "text/plain",
            "headers": {"X-N": 3, "X-S": "s"}, "task": "a", "calls": {"local": 2, "remote": 0}}"#;
        let frame = encode_with_meta(KIND_RESPONSE, meta, b"hello");
        let frame = read_frame(&mut frame.as_slice(), 1 << 20).await.unwrap();
        let response = WorkerResponse::decode(&frame.payload).unwrap();
        assert_eq!(response.meta.calls.local, 2);
        let response = response.into_response();
        assert_eq!(response.status, 201);
        assert_eq!(&response.body[..], b"hello");
        assert!(response.headers.contains(&("X-N".into(), "3".into())));
        assert!(response
            .headers
            .contains(&("Content-Type".into(), "text/plain".into())));
    }

    #[tokio::test]
    async fn trace_reports_become_the_headers_the_proxy_strips() {
        let meta = br#"{"status_code": 200, "trace": "a b s 200 5 7", "peak_rss": 1048576}"#;
        let frame = encode_with_meta(KIND_RESPONSE, meta, b"");
        let frame = read_frame(&mut frame.as_slice(), 1 << 20).await.unwrap();
        let response = WorkerResponse::decode(&frame.payload)
            .unwrap()
            .into_response();
        assert!(response
            .headers
            .contains(&("X-Fusionizer-Trace".into(), "a b s 200 5 7".into())));
        assert!(response
            .headers
            .contains(&("X-Fusionizer-Peak-Rss".into(), "1048576".into())));
        // Asking for a sample is a field of the event, not a header the task sees.
        let request = InvokeRequest {
            task: "a".into(),
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: vec![(crate::contract::HEADER_SAMPLE_RSS.into(), "1".into())],
            body: Bytes::new(),
        };
        let bytes = encode_event(&request, 1, 0);
        let frame = read_frame(&mut bytes.as_slice(), 1 << 20).await.unwrap();
        let (meta, _) = split_meta(&frame.payload).unwrap();
        let meta: serde_json::Value = serde_json::from_slice(meta).unwrap();
        assert_eq!(meta["sample_rss"], true);
        assert!(meta["headers"].get("X-Fusionizer-Sample-Rss").is_none());
        let plain = InvokeRequest {
            headers: vec![],
            ..request
        };
        let bytes = encode_event(&plain, 1, 0);
        assert!(!String::from_utf8_lossy(&bytes).contains("sample_rss"));
    }

    #[tokio::test]
    async fn frames_over_their_kind_limit_are_refused_before_they_are_read() {
        // An `R` frame holds up to the answer limit in meta and body; one byte more is refused.
        let fits = encode_with_meta(KIND_RESPONSE, b"{}", &[b'x'; 98]);
        assert!(read_frame(&mut fits.as_slice(), 100).await.is_ok());
        let over = encode_with_meta(KIND_RESPONSE, b"{}", &[b'x'; 99]);
        assert!(matches!(
            read_frame(&mut over.as_slice(), 100).await,
            Err(FrameError::TooLarge {
                kind: KIND_RESPONSE,
                len: 106,
                limit: 105
            })
        ));
        // Any other kind: [`MAX_SMALL_FRAME`], whatever the answer limit, refused on its header
        // alone (nothing else is there to read).
        let mut log = (MAX_SMALL_FRAME + 1).to_be_bytes().to_vec();
        log.push(KIND_LOG);
        let refused = read_frame(&mut log.as_slice(), 1 << 30).await.unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the worker sent a frame `L` of 1048577 bytes, over the limit of 1048576 bytes"
        );
    }

    #[test]
    fn long_log_lines_are_cut_at_a_character_and_say_how_much_went() {
        let max = contract::MAX_LOG_LINE;
        // Two bytes a character: the cut falls between characters.
        let line = format!("a{}", "é".repeat(max));
        assert_eq!(
            bounded_line(&line, 7),
            format!(
                "a{} … [truncated: {} more bytes]",
                "é".repeat(max / 2 - 1),
                max + 2 + 7
            )
        );
        assert!(matches!(bounded_line("short", 0), Cow::Borrowed("short")));
        // What the worker dropped before is said even when the rest fits.
        assert_eq!(
            bounded_line("short", 3),
            "short … [truncated: 3 more bytes]"
        );
    }

    #[tokio::test]
    async fn eof_between_frames_is_closed_and_a_zero_length_is_invalid() {
        let empty: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut &empty[..], 1 << 20).await,
            Err(FrameError::Closed)
        ));
        let zero = 0u32.to_be_bytes();
        assert!(matches!(
            read_frame(&mut &zero[..], 1 << 20).await,
            Err(FrameError::Invalid(_))
        ));
    }
}
