//! The trace recorder: what serve observed about invocations and task-to-task calls, in bounded
//! memory, as the trace document (`crate::traces`, docs/traces.md) reads it.
//!
//! Kept per edge (caller, callee, mode, via) and per entry task: counts, errors, bytes and a
//! fixed-size quantile sketch ([`Sketch`]); plus a ring of the last raw spans. The bounds:
//!
//! - at most `edges` distinct edges and `edges` distinct entry tasks; calls on an edge past the
//!   bound are counted in [`Recorder::dropped`] (and in `/-/metrics`), not kept;
//! - at most `spans` raw spans (the oldest is overwritten);
//! - each edge holds one [`Sketch`] (2 KiB), each task two (4 KiB).
//!
//! So the recorder never holds more than about `edges × 6 KiB + spans × 100 B` (≈ 24 MiB with
//! the defaults, and only when 4096 distinct edges were actually seen).
//!
//! Recording takes one short `std::sync::Mutex` section (never held across an await), a hash
//! look-up by `&str` (no allocation once an edge exists), one `ln` and a ring write; times are
//! formatted only when the document is read.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::traces::{Edge, Limits, Mode, Span, TaskStats, TraceDoc, Via};

/// Raw spans kept by default.
pub const DEFAULT_SPANS: usize = 1024;
/// Distinct edges (and distinct entry tasks) kept by default.
pub const DEFAULT_EDGES: usize = 4096;

/// Buckets of one [`Sketch`].
const BUCKETS: usize = 512;
/// Ratio between the bounds of consecutive buckets.
const GAMMA: f64 = 1.05;
/// Durations are sketched in milliseconds from 1 µs; peak RSS in KiB from 1 KiB.
const MIN_MS: f64 = 0.001;
const MIN_KIB: f64 = 1.0;

/// How the quantiles in the document are estimated (the document's `limits.sketch`).
pub const SKETCH: &str = "fixed log histogram: 512 buckets, each 5% wider than the last; a \
     quantile is its bucket's geometric midpoint, within 2.5% of the true value for durations \
     between 1 µs and 19 h and peak RSS between 1 KiB and 64 TiB (smaller values read as the \
     lower bound, larger as the upper)";

/// A fixed-size log histogram: bucket `i` holds values in `[min·γ^i, min·γ^(i+1))` (bucket 0
/// also everything smaller, the last also everything larger). Reporting a bucket's geometric
/// midpoint bounds the relative error by `√γ − 1` (2.47% for γ = 1.05).
#[derive(Clone)]
pub struct Sketch {
    min: f64,
    counts: Box<[u32; BUCKETS]>,
    total: u64,
}

impl Sketch {
    fn new(min: f64) -> Self {
        Sketch {
            min,
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }

    fn add(&mut self, value: f64) {
        let index = if value > self.min {
            // Truncation is the bucket's floor; the value is positive and finite here.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = ((value / self.min).ln() / GAMMA.ln()) as usize;
            i.min(BUCKETS - 1)
        } else {
            0
        };
        self.counts[index] = self.counts[index].saturating_add(1);
        self.total += 1;
    }

    /// The `q`-quantile (0 < q ≤ 1), or `None` when empty.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &count) in self.counts.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                #[allow(clippy::cast_precision_loss, clippy::cast_possible_wrap)]
                return Some(self.min * GAMMA.powf(i as f64 + 0.5));
            }
        }
        #[allow(clippy::cast_precision_loss)]
        Some(self.min * GAMMA.powf(BUCKETS as f64 - 0.5))
    }
}

/// Statuses that count as errors: ≥ 500, and transport failures (recorded as 502/504).
fn is_error(status: u16) -> bool {
    status >= 500
}

struct EdgeAgg {
    count: u64,
    errors: u64,
    bytes: u64,
    latency: Sketch,
}

struct TaskAgg {
    name: Arc<str>,
    invocations: u64,
    errors: u64,
    latency: Sketch,
    rss: Option<Sketch>,
}

/// One call, as recorded.
#[derive(Debug, Clone)]
pub struct CallRecord<'a> {
    pub caller: &'a str,
    pub callee: &'a str,
    pub mode: Mode,
    pub via: Via,
    pub status: u16,
    pub duration: Duration,
    pub bytes: u64,
}

enum RawKind {
    Invocation {
        task: Arc<str>,
        peak_rss: Option<u64>,
    },
    Call {
        caller: Arc<str>,
        callee: Arc<str>,
        mode: Mode,
        via: Via,
        bytes: u64,
    },
}

struct RawSpan {
    time: SystemTime,
    trace_id: u128,
    status: u16,
    duration: Duration,
    kind: RawKind,
}

/// Edges of one caller, by callee; each callee has one slot per (mode, via).
type Callees = HashMap<Arc<str>, [Option<Box<EdgeAgg>>; 4]>;

#[derive(Default)]
struct Inner {
    /// caller → callee → [sync/in-process, sync/proxy, async/in-process, async/proxy].
    edges: HashMap<Arc<str>, Callees>,
    edge_count: usize,
    tasks: HashMap<Arc<str>, TaskAgg>,
    spans: VecDeque<RawSpan>,
}

/// The recorder serve keeps for its whole life; see the module docs.
pub struct Recorder {
    started: SystemTime,
    spans: usize,
    edges: usize,
    inner: Mutex<Inner>,
    dropped: AtomicU64,
    /// Entry invocations seen, for [`Recorder::sample_rss`].
    entries: AtomicU64,
}

/// One entry invocation in this many samples the worker's peak RSS (docs/traces.md).
pub const RSS_SAMPLE_EVERY: u64 = 8;

fn slot(mode: Mode, via: Via) -> usize {
    match (mode, via) {
        (Mode::Sync, Via::InProcess) => 0,
        (Mode::Sync, Via::Proxy) => 1,
        (Mode::Async, Via::InProcess) => 2,
        (Mode::Async, Via::Proxy) => 3,
    }
}

const SLOTS: [(Mode, Via); 4] = [
    (Mode::Sync, Via::InProcess),
    (Mode::Sync, Via::Proxy),
    (Mode::Async, Via::InProcess),
    (Mode::Async, Via::Proxy),
];

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The name as a shared string: the one the map already holds, else a new one.
fn intern<V>(map: &HashMap<Arc<str>, V>, name: &str) -> Arc<str> {
    map.get_key_value(name)
        .map_or_else(|| Arc::from(name), |(k, _)| k.clone())
}

impl Recorder {
    /// A recorder keeping at most `spans` raw spans and `edges` edges (and entry tasks).
    pub fn new(spans: usize, edges: usize) -> Self {
        Recorder {
            started: SystemTime::now(),
            spans,
            edges,
            inner: Mutex::new(Inner::default()),
            dropped: AtomicU64::new(0),
            entries: AtomicU64::new(0),
        }
    }

    /// Whether the next entry invocation should sample the worker's peak RSS: the first, then
    /// one in [`RSS_SAMPLE_EVERY`] (a sample costs the worker two `/proc` accesses).
    pub fn sample_rss(&self) -> bool {
        self.entries
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(RSS_SAMPLE_EVERY)
    }

    /// Calls and invocations not aggregated because their edge or task was past the bound.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn push_span(&self, inner: &mut Inner, span: RawSpan) {
        if self.spans == 0 {
            return;
        }
        if inner.spans.len() >= self.spans {
            inner.spans.pop_front();
        }
        inner.spans.push_back(span);
    }

    /// Records an invocation whose entry was `task`.
    pub fn invocation(
        &self,
        trace_id: u128,
        task: &str,
        status: u16,
        duration: Duration,
        peak_rss: Option<u64>,
    ) {
        let time = SystemTime::now();
        let mut inner = self.inner.lock().expect("trace recorder poisoned");
        let name = if let Some(agg) = inner.tasks.get_mut(task) {
            agg.invocations += 1;
            agg.errors += u64::from(is_error(status));
            agg.latency.add(millis(duration));
            if let Some(rss) = peak_rss {
                #[allow(clippy::cast_precision_loss)]
                agg.rss
                    .get_or_insert_with(|| Sketch::new(MIN_KIB))
                    .add(rss as f64 / 1024.0);
            }
            agg.name.clone()
        } else if inner.tasks.len() < self.edges {
            let name: Arc<str> = Arc::from(task);
            let mut agg = TaskAgg {
                name: name.clone(),
                invocations: 1,
                errors: u64::from(is_error(status)),
                latency: Sketch::new(MIN_MS),
                rss: None,
            };
            agg.latency.add(millis(duration));
            if let Some(rss) = peak_rss {
                let mut sketch = Sketch::new(MIN_KIB);
                #[allow(clippy::cast_precision_loss)]
                sketch.add(rss as f64 / 1024.0);
                agg.rss = Some(sketch);
            }
            inner.tasks.insert(name.clone(), agg);
            name
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Arc::from(task)
        };
        self.push_span(
            &mut inner,
            RawSpan {
                time,
                trace_id,
                status,
                duration,
                kind: RawKind::Invocation {
                    task: name,
                    peak_rss,
                },
            },
        );
    }

    /// Records one call from a task to a task.
    pub fn call(&self, trace_id: u128, call: &CallRecord<'_>) {
        let time = SystemTime::now();
        let mut guard = self.inner.lock().expect("trace recorder poisoned");
        let inner = &mut *guard;
        let caller = intern(&inner.edges, call.caller);
        let full = inner.edge_count >= self.edges;
        let callees = inner.edges.entry(caller.clone()).or_default();
        let callee = intern(callees, call.callee);
        let slots = callees.entry(callee.clone()).or_default();
        let agg = &mut slots[slot(call.mode, call.via)];
        if agg.is_none() && !full {
            *agg = Some(Box::new(EdgeAgg {
                count: 0,
                errors: 0,
                bytes: 0,
                latency: Sketch::new(MIN_MS),
            }));
            inner.edge_count += 1;
        }
        if let Some(agg) = agg {
            agg.count += 1;
            agg.errors += u64::from(is_error(call.status));
            agg.bytes += call.bytes;
            agg.latency.add(millis(call.duration));
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if slots.iter().all(Option::is_none) {
                callees.remove(call.callee);
            }
            if inner.edges.get(call.caller).is_some_and(HashMap::is_empty) {
                inner.edges.remove(call.caller);
            }
        }
        self.push_span(
            inner,
            RawSpan {
                time,
                trace_id,
                status: call.status,
                duration: call.duration,
                kind: RawKind::Call {
                    caller,
                    callee,
                    mode: call.mode,
                    via: call.via,
                    bytes: call.bytes,
                },
            },
        );
    }

    /// The trace document: aggregates and spans as they are now, sorted.
    pub fn document(&self) -> TraceDoc {
        let limits = Limits {
            spans: self.spans,
            edges: self.edges,
            sketch: SKETCH.to_string(),
        };
        let mut doc = TraceDoc::empty(rfc3339(self.started), limits);
        let inner = self.inner.lock().expect("trace recorder poisoned");
        for (caller, callees) in &inner.edges {
            for (callee, slots) in callees {
                for (agg, (mode, via)) in slots.iter().zip(SLOTS) {
                    let Some(agg) = agg else { continue };
                    doc.edges.push(Edge {
                        caller: caller.to_string(),
                        callee: callee.to_string(),
                        mode,
                        via,
                        count: agg.count,
                        errors: agg.errors,
                        p50_ms: round(agg.latency.quantile(0.5).unwrap_or(0.0)),
                        p99_ms: round(agg.latency.quantile(0.99).unwrap_or(0.0)),
                        bytes: agg.bytes,
                    });
                }
            }
        }
        for agg in inner.tasks.values() {
            doc.tasks.push(TaskStats {
                task: agg.name.to_string(),
                invocations: agg.invocations,
                errors: agg.errors,
                p50_ms: round(agg.latency.quantile(0.5).unwrap_or(0.0)),
                p99_ms: round(agg.latency.quantile(0.99).unwrap_or(0.0)),
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                peak_rss_p99_bytes: agg
                    .rss
                    .as_ref()
                    .and_then(|s| s.quantile(0.99))
                    .map(|kib| (kib * 1024.0) as u64),
            });
        }
        doc.spans = inner.spans.iter().map(RawSpan::to_span).collect();
        drop(inner);
        doc.edges.sort_by(|a, b| {
            (&a.caller, &a.callee, a.mode, a.via).cmp(&(&b.caller, &b.callee, b.mode, b.via))
        });
        doc.tasks.sort_by(|a, b| a.task.cmp(&b.task));
        doc
    }
}

impl RawSpan {
    fn to_span(&self) -> Span {
        let time = rfc3339(self.time);
        let trace_id = format!("{:032x}", self.trace_id);
        let duration_ms = round(millis(self.duration));
        match &self.kind {
            RawKind::Invocation { task, peak_rss } => Span::Invocation {
                time,
                trace_id,
                task: task.to_string(),
                status: self.status,
                duration_ms,
                peak_rss_bytes: *peak_rss,
            },
            RawKind::Call {
                caller,
                callee,
                mode,
                via,
                bytes,
            } => Span::Call {
                time,
                trace_id,
                caller: caller.to_string(),
                callee: callee.to_string(),
                mode: *mode,
                via: *via,
                status: self.status,
                duration_ms,
                bytes: *bytes,
            },
        }
    }
}

/// Milliseconds to the microsecond: the sketch is not finer, and the JSON stays short.
fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// RFC 3339, UTC, milliseconds (`2026-12-06T19:00:00.000Z`).
pub fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A new random trace id (W3C Trace Context: 16 bytes, not all zero).
pub fn new_trace_id() -> u128 {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return id;
        }
    }
}

/// A new random parent (span) id: 8 bytes, not all zero.
pub fn new_span_id() -> u64 {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id;
        }
    }
}

/// The trace id and parent id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`),
/// when valid.
pub fn parse_traceparent(value: &str) -> Option<(u128, u64)> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2)
    {
        return None;
    }
    // Version 00 has exactly four fields; later versions may add more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let id = u128::from_str_radix(trace, 16).ok()?;
    let parent = u64::from_str_radix(parent, 16).ok()?;
    (id != 0 && parent != 0).then_some((id, parent))
}

/// The `traceparent` serve sends on: the trace id, the parent (span) id of the request it
/// forwards, sampled.
pub fn traceparent(trace_id: u128, span_id: u64) -> String {
    format!("00-{trace_id:032x}-{span_id:016x}-01")
}

/// One in-process call as the dispatcher reports it in its trailer (docs/traces.md):
/// `caller callee mode status duration_us bytes`, records separated by `,`; `mode` is `s` or
/// `a`. A last record `+N` says N more calls were made but not itemised.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub caller: String,
    pub callee: String,
    pub mode: Mode,
    pub status: u16,
    pub duration: Duration,
    pub bytes: u64,
}

/// Parses a dispatcher trailer; malformed records are skipped and counted in the second value,
/// with `+N` markers.
pub fn parse_trailer(value: &str) -> (Vec<Reported>, u64) {
    let mut records = Vec::new();
    let mut skipped = 0u64;
    for record in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        if let Some(more) = record.strip_prefix('+') {
            skipped += more.parse::<u64>().unwrap_or(1);
            continue;
        }
        match parse_record(record) {
            Some(r) => records.push(r),
            None => skipped += 1,
        }
    }
    (records, skipped)
}

fn parse_record(record: &str) -> Option<Reported> {
    let mut fields = record.split(' ');
    let caller = fields.next()?;
    let callee = fields.next()?;
    let mode = match fields.next()? {
        "s" => Mode::Sync,
        "a" => Mode::Async,
        _ => return None,
    };
    let status = fields.next()?.parse().ok()?;
    let micros: u64 = fields.next()?.parse().ok()?;
    let bytes = fields.next()?.parse().ok()?;
    if fields.next().is_some() || caller.is_empty() || callee.is_empty() {
        return None;
    }
    Some(Reported {
        caller: caller.to_string(),
        callee: callee.to_string(),
        mode,
        status,
        duration: Duration::from_micros(micros),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(caller: &'a str, callee: &'a str, via: Via, status: u16) -> CallRecord<'a> {
        CallRecord {
            caller,
            callee,
            mode: Mode::Sync,
            via,
            status,
            duration: Duration::from_millis(2),
            bytes: 10,
        }
    }

    #[test]
    fn the_sketch_stays_within_its_error_bound() {
        let mut sketch = Sketch::new(MIN_MS);
        for i in 1..=10_000 {
            sketch.add(f64::from(i) / 100.0);
        }
        for (q, exact) in [(0.5, 50.0), (0.99, 99.0), (1.0, 100.0)] {
            let got = sketch.quantile(q).unwrap();
            assert!(
                (got - exact).abs() / exact <= 0.025,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(Sketch::new(MIN_MS).quantile(0.5), None);
        let mut tiny = Sketch::new(MIN_MS);
        tiny.add(0.0);
        tiny.add(1e12);
        assert!(tiny.quantile(0.5).unwrap() < 0.0011);
        assert!(tiny.quantile(1.0).unwrap() > 6.0e7);
    }

    #[test]
    fn edges_and_tasks_aggregate_and_sort() {
        let recorder = Recorder::new(8, 16);
        recorder.call(1, &call("b", "c", Via::Proxy, 200));
        recorder.call(1, &call("a", "b", Via::InProcess, 200));
        recorder.call(2, &call("a", "b", Via::InProcess, 503));
        recorder.call(2, &call("a", "b", Via::Proxy, 200));
        recorder.invocation(1, "a", 200, Duration::from_millis(5), Some(30 << 20));
        recorder.invocation(2, "a", 500, Duration::from_millis(7), None);
        let doc = recorder.document();
        let keys: Vec<_> = doc
            .edges
            .iter()
            .map(|e| {
                (
                    e.caller.as_str(),
                    e.callee.as_str(),
                    e.via,
                    e.count,
                    e.errors,
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("a", "b", Via::InProcess, 2, 1),
                ("a", "b", Via::Proxy, 1, 0),
                ("b", "c", Via::Proxy, 1, 0)
            ]
        );
        assert_eq!(doc.edges[0].bytes, 20);
        assert!((doc.edges[0].p50_ms - 2.0).abs() < 0.05);
        assert_eq!(doc.tasks.len(), 1);
        assert_eq!((doc.tasks[0].invocations, doc.tasks[0].errors), (2, 1));
        let rss = doc.tasks[0].peak_rss_p99_bytes.unwrap();
        assert!(rss.abs_diff(30 << 20) < (30 << 20) / 40, "{rss}");
        assert_eq!(doc.spans.len(), 6);
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(
            crate::traces::parse(&text, "t").unwrap().version,
            crate::traces::VERSION
        );
    }

    #[test]
    fn memory_is_bounded_by_the_limits() {
        let recorder = Recorder::new(4, 2);
        for i in 0..100u32 {
            let callee = format!("t{i}");
            recorder.call(u128::from(i) + 1, &call("a", &callee, Via::Proxy, 200));
            recorder.invocation(1, &callee, 200, Duration::from_millis(1), None);
        }
        let doc = recorder.document();
        assert_eq!(doc.edges.len(), 2);
        assert_eq!(doc.tasks.len(), 2);
        assert_eq!(doc.spans.len(), 4);
        assert_eq!(recorder.dropped(), 98 + 98);
        // The ring keeps the newest, oldest first.
        let Span::Invocation { task, .. } = &doc.spans[3] else {
            panic!("{:?}", doc.spans[3])
        };
        assert_eq!(task, "t99");
        assert_eq!(recorder.inner.lock().unwrap().edges["a"].len(), 2);
    }

    /// What recording costs per request (run with `--release -- --ignored --nocapture`):
    /// one invocation plus one call, as a proxied call from a task records, with a full ring.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn cost_per_request() {
        let recorder = Recorder::new(DEFAULT_SPANS, DEFAULT_EDGES);
        let n = 1_000_000u32;
        let started = std::time::Instant::now();
        for i in 0..n {
            let id = new_trace_id();
            recorder.invocation(
                id,
                "taska",
                200,
                Duration::from_micros(u64::from(i % 977)),
                None,
            );
            recorder.call(id, &call("taska", "taskb", Via::Proxy, 200));
        }
        let per = started.elapsed() / n;
        let doc_started = std::time::Instant::now();
        let doc = recorder.document();
        println!(
            "record invocation + call: {per:?} per request; document ({} spans): {:?}",
            doc.spans.len(),
            doc_started.elapsed()
        );
    }

    #[test]
    fn traceparent_is_read_and_written_as_w3c_says() {
        let id = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c_u128;
        assert_eq!(
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some((id, 0xb7ad_6b71_6920_3331))
        );
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "garbage",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        let written = traceparent(id, 7);
        assert_eq!(parse_traceparent(&written), Some((id, 7)), "{written}");
        assert!(written.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
    }

    #[test]
    fn trailers_parse_and_count_what_they_cannot_read() {
        let (records, skipped) = parse_trailer("a b s 200 150 12,a c a 202 9 3,bad,+5");
        assert_eq!(skipped, 6);
        assert_eq!(
            records[0],
            Reported {
                caller: "a".into(),
                callee: "b".into(),
                mode: Mode::Sync,
                status: 200,
                duration: Duration::from_micros(150),
                bytes: 12,
            }
        );
        assert_eq!(records[1].mode, Mode::Async);
        assert_eq!(parse_trailer(""), (vec![], 0));
    }
}
