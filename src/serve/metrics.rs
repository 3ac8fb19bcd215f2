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
    transitions: Family<ResultLabels, Counter>,
    transition_duration: HistogramFamily<ResultLabels>,
    worker_restarts: Counter,
    worker_restarts_seen: AtomicU64,
    trigger_events: Family<TriggerLabels, Counter>,
    trigger_events_seen: Mutex<HashMap<TriggerLabels, u64>>,
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
        let transitions = Family::<ResultLabels, Counter>::default();
        registry.register(
            "transitions",
            "Regroupings (phase transitions and reloads), by result",
            transitions.clone(),
        );
        let transition_duration: HistogramFamily<ResultLabels> =
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
        Metrics {
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

    pub fn transition(&self, ok: bool, elapsed: Duration) {
        let labels = ResultLabels {
            result: if ok { "ok" } else { "failed" }.to_string(),
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

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::TriggerEvents;

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
