//! What the proxy records about a request (docs/traces.md), and the asynchronous form of a
//! call (`Prefer: respond-async`). Kept apart from the request path in `mod.rs`: a request
//! costs one [`CallContext::of`], two header pushes and one [`CallContext::record`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::{text, App, AppState, InFlightGuard, ProxyError};
use crate::contract::{
    HEADER_PREFER, HEADER_PREFERENCE_APPLIED, HEADER_SAMPLE_RSS, HEADER_TRACEPARENT,
    PREFER_RESPOND_ASYNC,
};
use crate::platform::InvokeRequest;
use crate::serve::background::Refused;
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
    /// The parent id the request came with: the request the caller is serving, if serve
    /// forwarded that one.
    parent: Option<u64>,
    /// The parent id serve sends on with this request: calls the callee makes while serving it
    /// come back with it.
    span: u64,
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
    /// The context of a request with `headers`, made by `caller` (a known task, see
    /// `App::task_caller`) or by a client.
    pub(super) fn of(state: &AppState, headers: &HeaderMap, caller: Option<String>) -> Self {
        let incoming = headers
            .get(HEADER_TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(traces::parse_traceparent);
        let trace_id = incoming.map_or_else(traces::new_trace_id, |(trace, _)| trace);
        let mode = if prefers_async(headers) {
            Mode::Async
        } else {
            Mode::Sync
        };
        // Only entry invocations are sampled: a call's callee shares its trace's worker load.
        let sample_rss = caller.is_none() && state.traces.sample_rss();
        CallContext {
            trace_id,
            // Only a task's call continues a chain (a client's `traceparent` is its own affair).
            parent: incoming
                .filter(|_| caller.is_some())
                .map(|(_, parent)| parent),
            span: traces::new_span_id(),
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
            traces::traceparent(self.trace_id, self.span),
        ));
        if self.sample_rss {
            headers.push((HEADER_SAMPLE_RSS.to_string(), "1".to_string()));
        }
    }

    /// Records the request: a call when a task made it, else an invocation; and the in-process
    /// calls its answer reported.
    pub(super) fn record(
        &self,
        state: &App,
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
            let (records, mut skipped) = traces::parse_trailer(trailer);
            // The function reports its in-process calls; its tasks' code could write anything
            // there, so only calls between tasks serve knows are kept.
            for r in &records {
                if !(state.is_task(&r.caller) && state.is_task(&r.callee)) {
                    skipped += 1;
                    continue;
                }
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

/// The synchronous requests serve is forwarding, as a forest: each knows the request its caller
/// was serving when it called. A new synchronous call whose callee is already waiting up its own
/// chain would wait for itself: with one worker per function, until the timeout. serve answers
/// it `508 Loop Detected` at once instead ([`Chains::enter`]).
#[derive(Default)]
pub struct Chains {
    open: Mutex<HashMap<(u128, u64), Link>>,
}

/// One forwarded request in [`Chains`].
struct Link {
    /// The task it invokes.
    task: String,
    /// The task that called it, for a call.
    caller: Option<String>,
    /// The request that caller was serving.
    parent: Option<u64>,
}

/// How far up a chain serve looks: deeper chains are not checked beyond it.
const MAX_CHAIN: usize = 64;

impl Chains {
    /// Registers the synchronous request of `call` to `task` until the returned guard drops, or
    /// names the cycle it would close (`ping → pong → ping`).
    pub(super) fn enter<'c>(
        &'c self,
        call: &CallContext,
        task: &str,
    ) -> Result<ChainGuard<'c>, String> {
        let mut open = self.open.lock().expect("chains poisoned");
        if let (Some(caller), Some(parent)) = (&call.caller, call.parent) {
            // The tasks waiting on this call, nearest first.
            let mut waiting = vec![caller.clone()];
            let mut next = Some(parent);
            while let Some(span) = next.filter(|_| waiting.len() < MAX_CHAIN) {
                let Some(link) = open.get(&(call.trace_id, span)) else {
                    break;
                };
                // The task a request invoked may have called the waiting one in-process.
                if waiting.last() != Some(&link.task) {
                    waiting.push(link.task.clone());
                }
                waiting.extend(link.caller.clone());
                next = link.parent;
            }
            if let Some(at) = waiting.iter().position(|t| t == task) {
                let mut cycle: Vec<&str> =
                    waiting[..=at].iter().rev().map(String::as_str).collect();
                cycle.push(task);
                return Err(cycle.join(" → "));
            }
        }
        let key = (call.trace_id, call.span);
        open.insert(
            key,
            Link {
                task: task.to_string(),
                caller: call.caller.clone(),
                parent: call.parent,
            },
        );
        Ok(ChainGuard { chains: self, key })
    }

    /// Requests registered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().expect("chains poisoned").len()
    }
}

/// Keeps a request in [`Chains`] while it is forwarded.
pub(super) struct ChainGuard<'c> {
    chains: &'c Chains,
    key: (u128, u64),
}

impl Drop for ChainGuard<'_> {
    fn drop(&mut self) {
        self.chains
            .open
            .lock()
            .expect("chains poisoned")
            .remove(&self.key);
    }
}

/// `508 Loop Detected` (RFC 5842) for a synchronous call that closes `cycle`, logged.
pub(super) fn loop_detected(cycle: String) -> ProxyError {
    tracing::warn!(cycle, "synchronous call cycle refused (508)");
    ProxyError::Cycle(cycle)
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
) -> Result<Response, ProxyError> {
    let ticket = match state.background.try_accept(request.body.len()) {
        Ok(ticket) => ticket,
        Err(Refused::Full) => {
            state.metrics.async_call("rejected");
            tracing::warn!(
                task,
                capacity = state.background.capacity(),
                bytes = state.background.bytes(),
                "asynchronous call refused: the queue is full"
            );
            return Err(ProxyError::QueueFull {
                calls: state.background.capacity(),
                bytes: state.background.bytes(),
            });
        }
        Err(Refused::TooLarge) => {
            state.metrics.async_call("rejected");
            return Err(ProxyError::TooLargeForQueue {
                body: request.body.len(),
                queue: state.background.bytes(),
            });
        }
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
    Ok(response)
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
            ProxyError::upstream(task, err).status().as_u16(),
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

    fn call(trace: u128, caller: Option<&str>, parent: Option<u64>) -> CallContext {
        CallContext {
            trace_id: trace,
            parent,
            span: traces::new_span_id(),
            caller: caller.map(str::to_string),
            mode: Mode::Sync,
            sample_rss: false,
            request_bytes: 0,
        }
    }

    #[test]
    fn a_call_back_up_its_own_chain_is_a_cycle_and_siblings_are_not() {
        let chains = Chains::default();
        // client → ping
        let ping = call(1, None, None);
        let _g1 = chains.enter(&ping, "ping").unwrap();
        // ping → pong
        let pong = call(1, Some("ping"), Some(ping.span));
        let _g2 = chains.enter(&pong, "pong").unwrap();
        // pong → ping: the cycle.
        let back = call(1, Some("pong"), Some(pong.span));
        assert_eq!(
            chains.enter(&back, "ping").err().as_deref(),
            Some("ping → pong → ping")
        );
        // pong → pong (itself) too.
        assert_eq!(
            chains.enter(&back, "pong").err().as_deref(),
            Some("pong → pong")
        );
        // pong → other, and a second ping → pong beside the first: no cycle.
        let other = chains.enter(&back, "other").unwrap();
        let sibling = call(1, Some("ping"), Some(ping.span));
        let _g3 = chains.enter(&sibling, "pong").unwrap();
        // The same names in another trace are another chain.
        let elsewhere = call(2, Some("pong"), Some(pong.span));
        drop(chains.enter(&elsewhere, "ping").unwrap());
        drop(other);
        assert_eq!(chains.len(), 3);
    }

    #[test]
    fn a_cycle_through_an_in_process_call_is_named_with_it() {
        let chains = Chains::default();
        // client → a (fused with b; a calls b in-process) ; b → c ; c → b.
        let a = call(1, None, None);
        let _ga = chains.enter(&a, "a").unwrap();
        let c = call(1, Some("b"), Some(a.span));
        let _gc = chains.enter(&c, "c").unwrap();
        let back = call(1, Some("c"), Some(c.span));
        assert_eq!(chains.enter(&back, "b").err().as_deref(), Some("b → c → b"));
        assert_eq!(
            chains.enter(&back, "a").err().as_deref(),
            Some("a → b → c → a")
        );
    }

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
