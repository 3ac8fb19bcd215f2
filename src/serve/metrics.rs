//! `/-/metrics`: Prometheus text exposition of the proxy's counters and histograms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    task: String,
    status: String,
    /// `client` or `task` (a call from another task, header `X-Fusionizer-Caller`).
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    /// `in_process` (fused sibling call) or `proxied` (through this proxy).
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    result: String,
    /// Who chose the grouping: `static` (the phases), `feedback` or `command` (an optimizer).
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    function: String,
    trigger: String,
    kind: String,
    /// `ok`, `error` or `failed` ([`crate::platform::TriggerEvents::result`]).
    result: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs … ~26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// Every metric serve exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RequestLabels>,
    calls: Family<CallLabels, Counter>,
    transitions: Family<TransitionLabels, Counter>,
    transition_duration: HistogramFamily<TransitionLabels>,
    worker_restarts: Counter,
    worker_restarts_seen: AtomicU64,
    trigger_events: Family<TriggerLabels, Counter>,
    trigger_events_seen: Mutex<HashMap<TriggerLabels, u64>>,
    async_calls: Family<ResultLabels, Counter>,
    trace_records_skipped: Counter,
    unknown_callers: Counter,
    trace_dropped: Counter,
    trace_dropped_seen: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fusionizer");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered by the proxy, by task, status and source",
            requests.clone(),
        );
        let latency: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "request_duration_seconds",
            "End-to-end latency of proxied requests, by task, status and source",
            latency.clone(),
        );
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "task_calls",
            "Task-to-task calls: in-process (fused) or proxied",
            calls.clone(),
        );
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "transitions",
            "Regroupings (phase transitions, optimizer regroups, uploads and reloads), by result \
             and by who chose the grouping (static, feedback or command)",
            transitions.clone(),
        );
        let transition_duration: HistogramFamily<TransitionLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "transition_duration_seconds",
            "How long a regrouping took from start to routes switched",
            transition_duration.clone(),
        );
        let worker_restarts = Counter::default();
        registry.register(
            "worker_restarts",
            "Worker processes restarted after a crash or timeout",
            worker_restarts.clone(),
        );
        let trigger_events = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "trigger_events",
            "Events the platform's own triggers fired (local cron), by function, trigger, kind and result",
            trigger_events.clone(),
        );
        let async_calls = Family::<ResultLabels, Counter>::default();
        registry.register(
            "async_calls",
            "Asynchronous calls (Prefer: respond-async): accepted, rejected (queue full, 503), \
             then ok or failed when they ran",
            async_calls.clone(),
        );
        let trace_records_skipped = Counter::default();
        registry.register(
            "trace_records_skipped",
            "In-process call records a function reported but that were not itemised or not readable",
            trace_records_skipped.clone(),
        );
        let unknown_callers = Counter::default();
        registry.register(
            "unknown_callers",
            "Requests whose X-Fusionizer-Caller named no known task: served as client requests, \
             their caller not recorded",
            unknown_callers.clone(),
        );
        let trace_dropped = Counter::default();
        registry.register(
            "trace_dropped",
            "Calls and invocations not aggregated because their edge or task was past [serve] trace-edges",
            trace_dropped.clone(),
        );
        Metrics {
            async_calls,
            trace_records_skipped,
            unknown_callers,
            trace_dropped,
            trace_dropped_seen: AtomicU64::new(0),
            registry,
            requests,
            latency,
            calls,
            transitions,
            transition_duration,
            worker_restarts,
            worker_restarts_seen: AtomicU64::new(0),
            trigger_events,
            trigger_events_seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records one answered request.
    pub fn request(&self, task: &str, status: u16, from_task: bool, elapsed: Duration) {
        let labels = RequestLabels {
            task: task.to_string(),
            status: status.to_string(),
            source: if from_task { "task" } else { "client" }.to_string(),
        };
        self.requests.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if from_task {
            self.calls
                .get_or_create(&CallLabels {
                    path: "proxied".into(),
                })
                .inc();
        }
    }

    /// Records sibling calls a function made in-process while serving a request.
    pub fn in_process_calls(&self, n: u64) {
        if n > 0 {
            self.calls
                .get_or_create(&CallLabels {
                    path: "in_process".into(),
                })
                .inc_by(n);
        }
    }

    /// Records one regroup; `reason` says who chose the grouping it applied
    /// ([`super::routes::Source::word`]).
    pub fn transition(&self, ok: bool, reason: &str, elapsed: Duration) {
        let labels = TransitionLabels {
            result: if ok { "ok" } else { "failed" }.to_string(),
            reason: reason.to_string(),
        };
        self.transitions.get_or_create(&labels).inc();
        self.transition_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Brings the restart counter up to the platform's running total.
    pub fn worker_restarts_total(&self, total: u64) {
        let seen = self.worker_restarts_seen.swap(total, Ordering::SeqCst);
        if total > seen {
            self.worker_restarts.inc_by(total - seen);
        }
    }

    /// Brings the trigger event counters up to the platform's running totals.
    pub fn trigger_events_total(&self, totals: &[crate::platform::TriggerEvents]) {
        let mut seen = self.trigger_events_seen.lock().expect("metrics poisoned");
        for events in totals {
            let labels = TriggerLabels {
                function: events.function.clone(),
                trigger: events.trigger.clone(),
                kind: events.kind.clone(),
                result: events.result.clone(),
            };
            let before = seen.insert(labels.clone(), events.total).unwrap_or(0);
            if events.total > before {
                self.trigger_events
                    .get_or_create(&labels)
                    .inc_by(events.total - before);
            }
        }
    }

    /// Counts an asynchronous call by `result`: `accepted`, `rejected`, `ok` or `failed`.
    pub fn async_call(&self, result: &str) {
        self.async_calls
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts trace records a function reported that could not be recorded one by one.
    pub fn trace_records_skipped(&self, n: u64) {
        self.trace_records_skipped.inc_by(n);
    }

    /// Counts a request whose `X-Fusionizer-Caller` named no known task.
    pub fn unknown_caller(&self) {
        self.unknown_callers.inc();
    }

    /// Brings the dropped-trace counter up to the recorder's running total.
    pub fn trace_dropped_total(&self, total: u64) {
        let seen = self.trace_dropped_seen.fetch_max(total, Ordering::SeqCst);
        if total > seen {
            self.trace_dropped.inc_by(total - seen);
        }
    }

    /// The exposition with the per-edge metrics of the trace document `doc` added:
    /// `fusionizer_edge_calls_total`, `fusionizer_edge_errors_total`,
    /// `fusionizer_edge_bytes_total` and `fusionizer_edge_duration_seconds` (p50 and p99, as
    /// a summary's quantiles), each labelled by `caller`, `callee`, `mode` and `via`.
    pub fn encode_with(&self, doc: &crate::traces::TraceDoc) -> String {
        let mut out = self.encode();
        let eof = out.rfind("# EOF").unwrap_or(out.len());
        out.truncate(eof);
        out.push_str(&edge_metrics(doc));
        out.push_str("# EOF\n");
        out
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Label values escaped for the text format (task names never need it; kept exact anyway).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Reads one counter of an edge.
type EdgeValue = fn(&crate::traces::Edge) -> u64;

/// The per-edge families of [`Metrics::encode_with`].
fn edge_metrics(doc: &crate::traces::TraceDoc) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let labels: Vec<String> = doc
        .edges
        .iter()
        .map(|e| {
            format!(
                "caller=\"{}\",callee=\"{}\",mode=\"{}\",via=\"{}\"",
                label(&e.caller),
                label(&e.callee),
                e.mode,
                e.via
            )
        })
        .collect();
    let counters: [(&str, &str, EdgeValue); 3] = [
        ("edge_calls", "Task-to-task calls observed, per edge", |e| {
            e.count
        }),
        (
            "edge_errors",
            "Calls per edge that failed (status >= 500 or transport)",
            |e| e.errors,
        ),
        (
            "edge_bytes",
            "Request plus response body bytes, per edge",
            |e| e.bytes,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP fusionizer_{name} {help}.");
        let _ = writeln!(out, "# TYPE fusionizer_{name} counter");
        for (edge, labels) in doc.edges.iter().zip(&labels) {
            let _ = writeln!(out, "fusionizer_{name}_total{{{labels}}} {}", value(edge));
        }
    }
    let _ = writeln!(
        out,
        "# HELP fusionizer_edge_duration_seconds Call duration per edge, from the trace sketch."
    );
    let _ = writeln!(out, "# TYPE fusionizer_edge_duration_seconds summary");
    for (edge, labels) in doc.edges.iter().zip(&labels) {
        for (q, ms) in [("0.5", edge.p50_ms), ("0.99", edge.p99_ms)] {
            let _ = writeln!(
                out,
                "fusionizer_edge_duration_seconds{{{labels},quantile=\"{q}\"}} {}",
                ms / 1000.0
            );
        }
        let _ = writeln!(
            out,
            "fusionizer_edge_duration_seconds_count{{{labels}}} {}",
            edge.count
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::TriggerEvents;

    #[test]
    fn dropped_traces_follow_the_recorders_running_total() {
        let metrics = Metrics::new();
        metrics.trace_dropped_total(3);
        metrics.trace_dropped_total(3);
        metrics.trace_dropped_total(5);
        let text = metrics.encode();
        assert!(text.contains("fusionizer_trace_dropped_total 5"), "{text}");
    }

    #[test]
    fn trigger_events_follow_the_platforms_running_totals() {
        let metrics = Metrics::new();
        let total = |total| TriggerEvents {
            function: "shop-a".into(),
            trigger: "tick".into(),
            kind: "cron".into(),
            result: "ok".into(),
            total,
        };
        metrics.trigger_events_total(&[total(2)]);
        metrics.trigger_events_total(&[total(2)]);
        metrics.trigger_events_total(&[total(5)]);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"fusionizer_trigger_events_total{function="shop-a",trigger="tick",kind="cron",result="ok"} 5"#
            ),
            "{text}"
        );
    }
}
