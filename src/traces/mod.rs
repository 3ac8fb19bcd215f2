//! The trace document: what serve observed about calls between tasks, as `GET /-/traces`
//! answers it and `fusionizer traces export` writes it (docs/traces.md).
//!
//! Plain data shared by serve (which records it), `fusionizer optimize` (which reads it) and the
//! dashboard. Two encodings of the same data: one JSON object ([`TraceDoc`]), or JSON Lines (a
//! `header` line, then one line per edge, task and span). [`parse`] reads both and refuses a
//! `version` it does not know.
//!
//! Beside it, the routes document ([`RoutesDoc`], `GET /-/routes`), shared the same way by serve
//! and `fusionizer optimize --live`.

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod routes;
pub use routes::RoutesDoc;

/// The one version of the document this build reads and writes.
pub const VERSION: u32 = 1;

/// Everything serve knows about the calls it has seen, since `started`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceDoc {
    pub version: u32,
    /// When recording began (RFC 3339, UTC, milliseconds).
    pub started: String,
    pub limits: Limits,
    /// Sorted by caller, callee, mode, via.
    pub edges: Vec<Edge>,
    /// Sorted by task name.
    pub tasks: Vec<TaskStats>,
    /// The most recent raw spans, oldest first.
    pub spans: Vec<Span>,
}

/// The bounds that keep recording in constant memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Raw spans kept (a ring: the oldest goes first).
    pub spans: usize,
    /// Distinct edges aggregated; calls on edges past the bound are counted, not kept.
    pub edges: usize,
    /// How quantiles are estimated, with the error bound.
    pub sketch: String,
}

/// Whether the caller waited for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Sync,
    Async,
}

/// How a call travelled: inside one function's process, or through serve's proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Via {
    #[serde(rename = "in-process")]
    InProcess,
    #[serde(rename = "proxy")]
    Proxy,
}

/// The aggregate of every call from `caller` to `callee` made the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub caller: String,
    pub callee: String,
    pub mode: Mode,
    pub via: Via,
    pub count: u64,
    /// Statuses ≥ 500 and transport failures.
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Request plus response body bytes.
    pub bytes: u64,
}

/// The aggregate of every invocation whose entry was `task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskStats {
    pub task: String,
    pub invocations: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// p99 of the worker's peak resident set over an invocation, when the platform measures it.
    pub peak_rss_p99_bytes: Option<u64>,
}

/// One observed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Span {
    /// A request that entered the system at `task`.
    Invocation {
        time: String,
        trace_id: String,
        task: String,
        status: u16,
        duration_ms: f64,
        peak_rss_bytes: Option<u64>,
    },
    /// A call from one task to another.
    Call {
        time: String,
        trace_id: String,
        caller: String,
        callee: String,
        mode: Mode,
        via: Via,
        status: u16,
        duration_ms: f64,
        bytes: u64,
    },
}

/// One line of the JSON Lines form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Line {
    Header {
        version: u32,
        started: String,
        limits: Limits,
    },
    Edge(Edge),
    Task(TaskStats),
    Span(Span),
}

/// Why a trace document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{source_name}: trace document version {found} is not supported (this build reads version {VERSION})")]
    Version { source_name: String, found: u32 },
    #[error("{source_name}: not a trace document: {reason}")]
    Json { source_name: String, reason: String },
    #[error("{source_name}: line {line}: {reason}")]
    Line {
        source_name: String,
        line: usize,
        reason: String,
    },
}

impl TraceDoc {
    /// An empty document that started at `started`.
    #[must_use]
    pub fn empty(started: String, limits: Limits) -> Self {
        TraceDoc {
            version: VERSION,
            started,
            limits,
            edges: Vec::new(),
            tasks: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// The JSON Lines form: a header line, then edges, tasks and spans, one per line.
    #[must_use]
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        let header = Line::Header {
            version: self.version,
            started: self.started.clone(),
            limits: self.limits.clone(),
        };
        let lines = std::iter::once(header)
            .chain(self.edges.iter().cloned().map(Line::Edge))
            .chain(self.tasks.iter().cloned().map(Line::Task))
            .chain(self.spans.iter().cloned().map(Line::Span));
        for line in lines {
            out.push_str(&serde_json::to_string(&line).expect("trace lines are plain data"));
            out.push('\n');
        }
        out
    }
}

/// Reads a trace document in either form; `source_name` (a file or URL) names it in errors.
pub fn parse(text: &str, source_name: &str) -> Result<TraceDoc, TraceError> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let is_lines = serde_json::from_str::<serde_json::Value>(first)
        .ok()
        .is_some_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("header"));
    if is_lines {
        parse_lines(text, source_name)
    } else {
        parse_object(text, source_name)
    }
}

fn parse_object(text: &str, source_name: &str) -> Result<TraceDoc, TraceError> {
    let json = |reason: String| TraceError::Json {
        source_name: source_name.to_string(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| json(e.to_string()))?;
    check_version(value.get("version"), source_name)?;
    serde_json::from_value(value).map_err(|e| json(e.to_string()))
}

fn check_version(version: Option<&serde_json::Value>, source_name: &str) -> Result<(), TraceError> {
    match version.and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => Ok(()),
        Some(v) => Err(TraceError::Version {
            source_name: source_name.to_string(),
            found: u32::try_from(v).unwrap_or(u32::MAX),
        }),
        None => Err(TraceError::Json {
            source_name: source_name.to_string(),
            reason: "missing field `version`".to_string(),
        }),
    }
}

fn parse_lines(text: &str, source_name: &str) -> Result<TraceDoc, TraceError> {
    let mut doc: Option<TraceDoc> = None;
    for (index, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let at = |reason: String| TraceError::Line {
            source_name: source_name.to_string(),
            line: index + 1,
            reason,
        };
        let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| at(e.to_string()))?;
        if doc.is_none() {
            check_version(value.get("version"), source_name)?;
        }
        let line: Line = serde_json::from_value(value).map_err(|e| at(e.to_string()))?;
        match (line, doc.as_mut()) {
            (
                Line::Header {
                    version,
                    started,
                    limits,
                },
                None,
            ) => {
                doc = Some(TraceDoc {
                    version,
                    ..TraceDoc::empty(started, limits)
                });
            }
            (Line::Header { .. }, Some(_)) => {
                return Err(at("a second `header` line".to_string()));
            }
            (_, None) => return Err(at("the first line must be the `header`".to_string())),
            (Line::Edge(edge), Some(doc)) => doc.edges.push(edge),
            (Line::Task(task), Some(doc)) => doc.tasks.push(task),
            (Line::Span(span), Some(doc)) => doc.spans.push(span),
        }
    }
    doc.ok_or_else(|| TraceError::Json {
        source_name: source_name.to_string(),
        reason: "empty".to_string(),
    })
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
        })
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Via::InProcess => "in-process",
            Via::Proxy => "proxy",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TraceDoc {
        TraceDoc {
            version: VERSION,
            started: "2026-12-06T19:00:00.000Z".to_string(),
            limits: Limits {
                spans: 1024,
                edges: 4096,
                sketch: "test".to_string(),
            },
            edges: vec![Edge {
                caller: "taska".to_string(),
                callee: "taskb".to_string(),
                mode: Mode::Sync,
                via: Via::InProcess,
                count: 10,
                errors: 1,
                p50_ms: 0.02,
                p99_ms: 0.11,
                bytes: 1234,
            }],
            tasks: vec![TaskStats {
                task: "taska".to_string(),
                invocations: 10,
                errors: 0,
                p50_ms: 1.2,
                p99_ms: 3.4,
                peak_rss_p99_bytes: None,
            }],
            spans: vec![
                Span::Invocation {
                    time: "2026-12-06T19:00:01.123Z".to_string(),
                    trace_id: "0af7651916cd43dd8448eb211c80319c".to_string(),
                    task: "taska".to_string(),
                    status: 200,
                    duration_ms: 1.2,
                    peak_rss_bytes: Some(31_457_280),
                },
                Span::Call {
                    time: "2026-12-06T19:00:01.124Z".to_string(),
                    trace_id: "0af7651916cd43dd8448eb211c80319c".to_string(),
                    caller: "taska".to_string(),
                    callee: "taskb".to_string(),
                    mode: Mode::Async,
                    via: Via::Proxy,
                    status: 202,
                    duration_ms: 0.4,
                    bytes: 120,
                },
            ],
        }
    }

    #[test]
    fn both_forms_read_back_the_same_document() {
        let doc = sample();
        let object = serde_json::to_string_pretty(&doc).unwrap();
        assert_eq!(parse(&object, "traces.json").unwrap(), doc);
        let lines = doc.to_json_lines();
        assert_eq!(lines.lines().count(), 5);
        assert!(
            lines.starts_with(r#"{"type":"header","version":1"#),
            "{lines}"
        );
        assert!(
            lines.contains(r#"{"type":"span","kind":"call","#),
            "{lines}"
        );
        assert_eq!(parse(&lines, "traces.jsonl").unwrap(), doc);
    }

    #[test]
    fn wire_names_follow_the_documented_schema() {
        let value = serde_json::to_value(sample()).unwrap();
        assert_eq!(value["edges"][0]["via"], "in-process");
        assert_eq!(value["edges"][0]["mode"], "sync");
        assert_eq!(value["spans"][0]["kind"], "invocation");
        assert_eq!(value["spans"][1]["via"], "proxy");
        assert!(value["tasks"][0]["peak_rss_p99_bytes"].is_null());
    }

    #[test]
    fn an_unknown_version_is_refused_by_name() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["version"] = 2.into();
        let err = parse(&value.to_string(), "t.json").unwrap_err().to_string();
        assert_eq!(
            err,
            "t.json: trace document version 2 is not supported (this build reads version 1)"
        );
        let lines = sample()
            .to_json_lines()
            .replacen(r#""version":1"#, r#""version":7"#, 1);
        let err = parse(&lines, "t.jsonl").unwrap_err().to_string();
        assert!(err.contains("version 7 is not supported"), "{err}");
    }

    #[test]
    fn broken_lines_are_named_by_number() {
        let mut lines = sample().to_json_lines();
        lines.push_str("{\"type\":\"edge\",\"caller\":\"x\"}\n");
        let err = parse(&lines, "t.jsonl").unwrap_err().to_string();
        assert!(err.starts_with("t.jsonl: line 6: missing field"), "{err}");
        let headless = sample()
            .to_json_lines()
            .lines()
            .skip(1)
            .collect::<Vec<_>>()
            .join("\n");
        let err = parse(&headless, "t.jsonl").unwrap_err().to_string();
        assert!(err.contains("not a trace document"), "{err}");
        let err = parse("", "t.jsonl").unwrap_err().to_string();
        assert!(err.contains("not a trace document"), "{err}");
    }
}
