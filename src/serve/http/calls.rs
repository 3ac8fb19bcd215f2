//! What the proxy records about a request (docs/traces.md), and the asynchronous form of a
//! call (`Prefer: respond-async`). Kept apart from the request path in `http.rs`: a request
//! costs one [`CallContext::of`], two header pushes and one [`CallContext::record`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::{invoke_error, text, unavailable, App, AppState, InFlightGuard};
use crate::contract::{
    HEADER_CALLER, HEADER_PREFER, HEADER_PREFERENCE_APPLIED, HEADER_SAMPLE_RSS, HEADER_TRACEPARENT,
    PREFER_RESPOND_ASYNC,
};
use crate::platform::InvokeRequest;
use crate::serve::traces::{self, CallRecord};
use crate::traces::{Mode, Via};

/// What a function's answer reported besides itself: the in-process call records, the peak RSS
/// sample, and the body's size. `client_response` fills it in as it strips the headers.
#[derive(Debug, Default)]
pub(super) struct Observed {
    pub(super) trace: Option<String>,
    pub(super) peak_rss: Option<u64>,
    pub(super) body_len: usize,
}

/// The trace side of one request: its trace id, who called (a task, or a client), whether it
/// is asynchronous, and whether it samples peak RSS.
pub(super) struct CallContext {
    trace_id: u128,
    caller: Option<String>,
    mode: Mode,
    sample_rss: bool,
    request_bytes: usize,
}

/// Whether `Prefer` holds the `respond-async` token (RFC 7240: a comma-separated list of
/// preferences, each possibly with `;` parameters; tokens compare case-insensitively).
fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all(HEADER_PREFER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            let token = p.split(';').next().unwrap_or("").trim();
            let token = token.split('=').next().unwrap_or("").trim();
            token.eq_ignore_ascii_case(PREFER_RESPOND_ASYNC)
        })
}

impl CallContext {
    pub(super) fn of(state: &AppState, headers: &HeaderMap) -> Self {
        let trace_id = headers
            .get(HEADER_TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(traces::parse_traceparent)
            .unwrap_or_else(traces::new_trace_id);
        let caller = headers
            .get(HEADER_CALLER)
            .and_then(|v| v.to_str().ok())
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        let mode = if prefers_async(headers) {
            Mode::Async
        } else {
            Mode::Sync
        };
        // Only entry invocations are sampled: a call's callee shares its trace's worker load.
        let sample_rss = caller.is_none() && state.traces.sample_rss();
        CallContext {
            trace_id,
            caller,
            mode,
            sample_rss,
            request_bytes: 0,
        }
    }

    pub(super) fn is_async(&self) -> bool {
        self.mode == Mode::Async
    }

    /// Adds what the proxy sends on: `traceparent` (this trace, a new parent id) and, when this
    /// request samples it, the peak-RSS request. The client's own are not forwarded.
    pub(super) fn add_headers(&mut self, headers: &mut Vec<(String, String)>, body_len: usize) {
        self.request_bytes = body_len;
        headers.push((
            HEADER_TRACEPARENT.to_string(),
            traces::traceparent(self.trace_id),
        ));
        if self.sample_rss {
            headers.push((HEADER_SAMPLE_RSS.to_string(), "1".to_string()));
        }
    }

    /// Records the request: a call when a task made it, else an invocation; and the in-process
    /// calls its answer reported.
    pub(super) fn record(
        &self,
        state: &AppState,
        task: &str,
        status: u16,
        elapsed: Duration,
        observed: &Observed,
    ) {
        let recorder = &state.traces;
        match &self.caller {
            Some(caller) => recorder.call(
                self.trace_id,
                &CallRecord {
                    caller,
                    callee: task,
                    mode: self.mode,
                    via: Via::Proxy,
                    status,
                    duration: elapsed,
                    bytes: (self.request_bytes + observed.body_len) as u64,
                },
            ),
            None => recorder.invocation(self.trace_id, task, status, elapsed, observed.peak_rss),
        }
        if let Some(trailer) = &observed.trace {
            let (records, skipped) = traces::parse_trailer(trailer);
            for r in &records {
                recorder.call(
                    self.trace_id,
                    &CallRecord {
                        caller: &r.caller,
                        callee: &r.callee,
                        mode: r.mode,
                        via: Via::InProcess,
                        status: r.status,
                        duration: r.duration,
                        bytes: r.bytes,
                    },
                );
            }
            if skipped > 0 {
                state.metrics.trace_records_skipped(skipped);
            }
        }
    }
}

/// `Prefer: respond-async`: takes a place in the background queue and answers 202 at once, or
/// 503 with `Retry-After` when the queue is full. The call runs later on the route in force
/// then, and is recorded when it finishes (mode `async`).
pub(super) fn accept(
    state: &Arc<App>,
    task: &str,
    request: InvokeRequest,
    call: CallContext,
    inflight: InFlightGuard,
) -> Response {
    let Some(ticket) = state.background.try_accept() else {
        state.metrics.async_call("rejected");
        tracing::warn!(
            task,
            capacity = state.background.capacity(),
            "asynchronous call refused: the queue is full"
        );
        return unavailable(format!(
            "the queue of asynchronous calls is full ({} calls waiting or running); retry later",
            state.background.capacity()
        ));
    };
    state.metrics.async_call("accepted");
    let (app, name) = (state.clone(), task.to_string());
    tokio::spawn(async move {
        let _ticket = ticket;
        let _inflight = inflight;
        let started = Instant::now();
        let _turn = app.background.turn().await;
        let (status, observed) = run(&app, &name, request).await;
        app.metrics
            .async_call(if status < 500 { "ok" } else { "failed" });
        call.record(&app, &name, status, started.elapsed(), &observed);
    });
    let mut response = text(
        StatusCode::ACCEPTED,
        format!("accepted: task `{task}` runs in the background"),
    );
    response.headers_mut().insert(
        HEADER_PREFERENCE_APPLIED,
        HeaderValue::from_static(PREFER_RESPOND_ASYNC),
    );
    response
}

/// Runs an accepted call on the route in force now; its status and what its answer reported.
async fn run(app: &App, task: &str, request: InvokeRequest) -> (u16, Observed) {
    let route = app.routes.current().by_task.get(task).cloned();
    let Some(route) = route else {
        tracing::warn!(
            task,
            "asynchronous call failed: the task is not deployed any more"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE.as_u16(),
            Observed::default(),
        );
    };
    let guard = route.enter();
    let outcome = tokio::time::timeout(app.request_timeout, route.invoker.invoke(request)).await;
    drop(guard);
    match outcome {
        Err(_) => {
            tracing::warn!(task, "asynchronous call timed out");
            (StatusCode::GATEWAY_TIMEOUT.as_u16(), Observed::default())
        }
        Ok(Err(err)) => (
            invoke_error(task, err).status().as_u16(),
            Observed::default(),
        ),
        Ok(Ok(answer)) => {
            let mut observed = Observed::default();
            let response = super::client_response(app, answer, &mut observed);
            let status = response.status().as_u16();
            if status >= 500 {
                tracing::warn!(task, status, "asynchronous call failed");
            }
            (status, observed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respond_async_is_found_among_other_preferences() {
        let mut headers = HeaderMap::new();
        assert!(!prefers_async(&headers));
        headers.insert(
            HEADER_PREFER,
            HeaderValue::from_static("return=minimal, Respond-Async; x=1"),
        );
        assert!(prefers_async(&headers));
        headers.insert(HEADER_PREFER, HeaderValue::from_static("wait=10"));
        assert!(!prefers_async(&headers));
    }
}
