//! The proxy's HTTP API (README, "serve: HTTP API"): `POST /<task>` invokes, `GET /<task>`
//! describes, `PUT`/`DELETE /<task>` upload and remove ad-hoc tasks, and `/-/health`,
//! `/-/routes`, `/-/metrics`, `/-/traces` serve operations. [`router`] builds it from shared
//! state so tests can drive it in-process. What a request records in the traces, and the
//! asynchronous form of a call (`Prefer: respond-async`), are in `http/calls.rs` (docs/traces.md).
//!
//! Errors are a type, [`ProxyError`] (`http/error.rs`), that answers itself: unknown task →
//! 404, function down → 503 with `Retry-After`, worker crash → 502, timeout → 504, body too
//! large → 413. The body says what happened; causes go to the log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use super::background::Background;
use super::metrics::Metrics;
use super::routes::{FunctionRoute, Routes};
use super::state::Board;
use super::traces::Recorder;
use crate::contract::{
    is_hop_by_hop, HEADER_CALLER, HEADER_LOCAL_CALLS, HEADER_PEAK_RSS, HEADER_SAMPLE_RSS,
    HEADER_SERVER_ADDRESS, HEADER_SERVER_PORT, HEADER_TASK_NAME, HEADER_TRACE, HEADER_TRACEPARENT,
};

mod calls;
mod error;
use super::runner::error::RunnerError;
use crate::inflight::{InFlight, InFlightGuard};
use crate::platform::{InvokeRequest, InvokeResponse};
pub use calls::Chains;
pub use error::ProxyError;

/// What the HTTP layer asks of the schedule runner.
#[async_trait]
pub trait Control: Send + Sync {
    /// Stores and deploys an uploaded task (the zip's bytes).
    async fn upload(&self, task: &str, zip: Bytes) -> Result<String, RunnerError>;
    /// Removes an uploaded task.
    async fn remove(&self, task: &str) -> Result<String, RunnerError>;
    /// Whether `task` is known (declared or uploaded) even if it has no route right now.
    fn is_known(&self, task: &str) -> bool;
}

/// At most how much of an unwanted request body is read and thrown away after the answer
/// ([`refuse`]): enough for any body a client would reasonably send to a refused endpoint.
const LINGER_BYTES: usize = 1 << 30;
/// At most how long an unwanted request body is read after the answer ([`refuse`]).
const LINGER_TIME: Duration = Duration::from_secs(30);

/// Everything the handlers share.
pub struct AppState {
    pub routes: Routes,
    pub metrics: Metrics,
    /// What `/-/state` reports beside the routes (schedule, transitions, request windows).
    pub board: Board,
    /// Set once the start phase is deployed and ready.
    pub ready: AtomicBool,
    /// Set when serve shuts down: client requests are refused (503), task-to-task calls (those
    /// carrying `X-Fusionizer-Caller`) are still served, so that requests in flight can finish.
    pub draining: AtomicBool,
    /// The requests being handled (invocations, uploads, removals), for the shutdown drain.
    pub inflight: Arc<InFlight>,
    /// The bearer token for PUT/DELETE, when configured.
    pub token: Option<String>,
    /// Host and port given to tasks in `Fusionizer-Server-Address`/`-Port`.
    pub advertise_host: String,
    pub port: u16,
    pub max_body: usize,
    pub max_upload: usize,
    pub request_timeout: Duration,
    /// How long a client has to send a whole request body (`[serve] body-read-timeout`).
    pub body_timeout: Duration,
    /// What serve observed about calls and invocations (`GET /-/traces`).
    pub traces: Arc<Recorder>,
    /// The queue of asynchronous calls (`Prefer: respond-async`).
    pub background: Background,
    /// The synchronous requests being forwarded, to refuse call cycles (508).
    pub chains: Chains,
    /// Set while a present task has no function to route to (the runner keeps it current):
    /// `/-/health` then answers 503 `degraded: …`, saying which and whether self-heal runs.
    pub degraded: std::sync::Mutex<Option<String>>,
}

#[cfg(test)]
impl AppState {
    /// A ready state with empty routes and small bounds, for unit tests: bearer `token`, answers
    /// due within `request_timeout`, a trace recorder keeping `traces` spans and edges.
    pub(crate) fn for_tests(token: Option<&str>, request_timeout: Duration, traces: usize) -> Self {
        AppState {
            routes: Routes::default(),
            metrics: Metrics::new(),
            board: crate::serve::state::Board::default(),
            ready: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            inflight: Arc::default(),
            token: token.map(str::to_string),
            advertise_host: "127.0.0.1".into(),
            port: 8000,
            max_body: 1024,
            max_upload: 4096,
            request_timeout,
            body_timeout: Duration::from_secs(60),
            traces: Arc::new(crate::serve::traces::Recorder::new(traces, traces)),
            background: crate::serve::background::Background::new(1, 1 << 20, 1),
            chains: Chains::default(),
            degraded: std::sync::Mutex::default(),
        }
    }
}

/// What the handlers see: the shared state, and the control plane that changes it. The runner
/// holds the same [`AppState`] but never this, so neither points back at the other.
pub struct App {
    state: Arc<AppState>,
    control: Arc<dyn Control>,
}

impl std::ops::Deref for App {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.state
    }
}

/// The proxy's router.
pub fn router(state: Arc<AppState>, control: Arc<dyn Control>) -> Router {
    let upload_limit = state.max_upload + 64 * 1024;
    let state = Arc::new(App { state, control });
    Router::new()
        .route("/-/health", get(health))
        .route("/-/routes", get(routes))
        .route("/-/metrics", get(metrics))
        .route("/-/traces", get(traces))
        .route(
            "/{task}",
            any(task_root).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/{task}/{*rest}", any(task_sub))
        .with_state(state)
}

async fn health(State(state): State<Arc<App>>) -> Result<&'static str, ProxyError> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(ProxyError::ShuttingDown);
    }
    if !state.ready.load(Ordering::SeqCst) {
        return Err(ProxyError::Starting);
    }
    let degraded = state
        .degraded
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match degraded {
        Some(why) => Err(ProxyError::Degraded(why)),
        None => Ok("ok\n"),
    }
}

async fn routes(State(state): State<Arc<App>>) -> Response {
    axum::Json(state.routes.current().document()).into_response()
}

async fn metrics(State(state): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        {
            state.metrics.trace_dropped_total(state.traces.dropped());
            state.metrics.encode_with(&state.traces.document())
        },
    )
        .into_response()
}

/// `GET /-/traces`: the trace document (docs/traces.md).
async fn traces(State(state): State<Arc<App>>) -> Response {
    axum::Json(state.traces.document()).into_response()
}

async fn task_root(
    State(state): State<Arc<App>>,
    Path(task): Path<String>,
    request: Request,
) -> Result<Response, ProxyError> {
    task_request(&state, &task, TaskRoute::Task, request).await
}

/// `/<task>` (every method) or `/<task>/<path>` (invocation only).
#[derive(Clone, Copy, PartialEq, Eq)]
enum TaskRoute {
    Task,
    TaskPath,
}

/// What `/<task>` and `/<task>/<path>` answer.
async fn task_request(
    state: &Arc<App>,
    task: &str,
    route: TaskRoute,
    request: Request,
) -> Result<Response, ProxyError> {
    // The name is checked before anything else looks at it: no answer may depend on what an
    // invalid name would point at (on disk or anywhere else).
    if let Err(error) = valid_task_name(task) {
        return Err(error.discarding(request.into_body()));
    }
    let (allow, whole) = match route {
        TaskRoute::Task => (TASK_METHODS, true),
        TaskRoute::TaskPath => (TASK_PATH_METHODS, false),
    };
    // A task's call (it carries `X-Fusionizer-Caller`) is delivered whatever its method, as
    // Nuclio delivers an event and as the same call runs when the two tasks are fused. A
    // browser cannot send that header across origins without a preflight, which serve never
    // grants (serve::guard).
    let caller = state.task_caller(request.headers());
    match request.method().clone() {
        Method::OPTIONS => Ok(options(allow, request)),
        Method::TRACE | Method::CONNECT => Err(not_allowed(allow, request)),
        _ if caller.is_some() => invoke(state, task, caller, request).await,
        Method::POST => invoke(state, task, caller, request).await,
        Method::GET | Method::HEAD if whole => describe(state, task, request.headers()),
        Method::PUT if whole => upload(state, task, request).await,
        Method::DELETE if whole => remove(state, task, request).await,
        _ => Err(not_allowed(allow, request)),
    }
}

/// The methods of `/<task>`: `POST` invokes, `GET` (and `HEAD`) describes, `PUT` uploads,
/// `DELETE` removes.
const TASK_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS";
/// The methods of `/<task>/<path>`: `POST` invokes with that path.
const TASK_PATH_METHODS: &str = "POST, OPTIONS";

/// `OPTIONS`: the methods, and nothing else. No `Access-Control-Allow-*` header: a browser's
/// preflight gets no permission, so the request it asked about is never sent.
fn options(allow: &'static str, request: Request) -> Response {
    let mut response = refuse(StatusCode::NO_CONTENT.into_response(), request.into_body());
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// 405 with the methods that are allowed.
fn not_allowed(allow: &'static str, request: Request) -> ProxyError {
    ProxyError::MethodNotAllowed {
        method: request.method().to_string(),
        allow,
    }
    .discarding(request.into_body())
}

async fn task_sub(
    State(state): State<Arc<App>>,
    Path((task, _rest)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ProxyError> {
    task_request(&state, &task, TaskRoute::TaskPath, request).await
}

/// Answers `response` to a request whose body is not wanted, while the rest of that body is
/// read and thrown away in the background (at most [`LINGER_BYTES`], for at most
/// [`LINGER_TIME`]), and with `Connection: close`. A client that sends its whole body before it
/// reads (Python's `http.client`, and many others) then sees the answer: closing a socket that
/// still holds unread data makes the kernel reset the connection, and the client may lose it.
fn refuse(mut response: Response, body: Body) -> Response {
    tokio::spawn(discard(body.into_data_stream()));
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads and drops the rest of a request body, bounded (see [`refuse`]).
async fn discard(mut body: axum::body::BodyDataStream) {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut left = LINGER_BYTES;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await {
        left = left.saturating_sub(chunk.len());
        if left == 0 {
            break;
        }
    }
}

/// The request body, when it fits in `limit` bytes and arrives within `timeout`; otherwise the
/// 413 answer, given with the rest of the body discarded in the background ([`refuse`]), or the
/// 408 answer, with the connection closed.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
    what: &'static str,
) -> Result<Bytes, ProxyError> {
    use futures_util::StreamExt;
    let too_large = || ProxyError::TooLarge { what, limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large().discarding(body));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => return Err(ProxyError::BodyTimeout { what, timeout }),
        };
        let Ok(chunk) = chunk else {
            return Err(ProxyError::BodyUnreadable);
        };
        if buf.len() + chunk.len() > limit {
            return Err(too_large().discarding(Body::from_stream(stream)));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    if !message.ends_with('\n') {
        message.push('\n');
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

/// The route of `task`, or why there is none: 503 for a task serve knows but routes nowhere
/// right now (`retry` adds "retry shortly"), else 404 naming the tasks it routes.
fn route_of(state: &App, task: &str, retry: bool) -> Result<Arc<FunctionRoute>, ProxyError> {
    let table = state.routes.current();
    if let Some(route) = table.by_task.get(task) {
        return Ok(route.clone());
    }
    if state.control.is_known(task) {
        return Err(ProxyError::NotDeployed {
            task: task.to_string(),
            retry,
        });
    }
    Err(ProxyError::UnknownTask {
        task: task.to_string(),
        known: table.by_task.keys().cloned().collect(),
    })
}

/// Whether a client's header is forwarded to the function: not hop-by-hop, and not one the proxy
/// sets itself.
fn forwardable(name: &HeaderName) -> bool {
    let name = name.as_str();
    !is_hop_by_hop(name)
        && ![
            HEADER_TASK_NAME,
            HEADER_SERVER_ADDRESS,
            HEADER_SERVER_PORT,
            HEADER_TRACEPARENT,
            HEADER_SAMPLE_RSS,
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

impl App {
    /// The task a request says it comes from (`X-Fusionizer-Caller`), when that names a task
    /// serve knows. Any client can send the header: a name that is no task is not believed (an
    /// invocation counts it in `fusionizer_unknown_callers_total`), so that what clients send
    /// cannot fill the traces' edge table or the metrics' labels.
    fn task_caller(&self, headers: &HeaderMap) -> Option<String> {
        let caller = headers.get(HEADER_CALLER)?.to_str().ok()?;
        self.is_task(caller).then(|| caller.to_string())
    }

    /// Whether `name` is a task serve routes, or one it knows (declared or uploaded).
    fn is_task(&self, name: &str) -> bool {
        self.routes.current().by_task.contains_key(name) || self.control.is_known(name)
    }
}

/// Counts the request in flight, unless serve is shutting down and it comes from a client
/// (not a task, `from_task`): then the 503 to answer, with the body discarded ([`refuse`]).
fn admit(
    state: &App,
    request: Request,
    from_task: bool,
) -> Result<(InFlightGuard, Request), ProxyError> {
    // Counted before the check, so a shutdown that sees nothing in flight also means that every
    // request after it sees `draining`.
    let guard = state.inflight.enter();
    if state.draining.load(Ordering::SeqCst) && !from_task {
        drop(guard);
        return Err(ProxyError::Draining.discarding(request.into_body()));
    }
    Ok((guard, request))
}

/// Invokes `task` with `request`, made by `caller` (a known task, [`App::task_caller`]) or a
/// client.
async fn invoke(
    state: &Arc<App>,
    task: &str,
    caller: Option<String>,
    request: Request,
) -> Result<Response, ProxyError> {
    let started = Instant::now();
    let (inflight, request) = admit(state, request, caller.is_some())?;
    let route = route_of(state, task, true)?;
    let (parts, body) = request.into_parts();
    let from_task = caller.is_some();
    if !from_task && parts.headers.contains_key(HEADER_CALLER) {
        state.metrics.unknown_caller();
    }
    let mut call = calls::CallContext::of(state, &parts.headers, caller);
    // An answer given before the task is invoked: counted, then sent.
    let answered = |status: StatusCode| {
        state
            .metrics
            .request(task, status.as_u16(), from_task, started.elapsed());
    };
    let body = read_body(
        &parts.headers,
        body,
        state.max_body,
        state.body_timeout,
        "request body",
    )
    .await
    .inspect_err(|error| answered(error.status()))?;
    let mut headers = forwarded_headers(state, task, &parts.headers);
    call.add_headers(&mut headers, body.len());
    let invoke_request = InvokeRequest {
        task: task.to_string(),
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers,
        body,
    };
    if call.is_async() {
        drop(route);
        return calls::accept(state, task, invoke_request, call, inflight)
            .inspect(|response| answered(response.status()))
            .inspect_err(|error| answered(error.status()));
    }
    let chain = state
        .chains
        .enter(&call, task)
        .map_err(calls::loop_detected)
        .inspect_err(|error| answered(error.status()))?;
    let guard = route.enter();
    let outcome =
        tokio::time::timeout(state.request_timeout, route.invoker.invoke(invoke_request)).await;
    drop(guard);
    drop(chain);
    let mut observed = calls::Observed::default();
    let response = match outcome {
        Err(_) => {
            tracing::warn!(task, function = %route.name, "request timed out");
            ProxyError::Timeout {
                task: task.to_string(),
                after: state.request_timeout,
            }
            .into_response()
        }
        Ok(Err(err)) => ProxyError::upstream(task, err).into_response(),
        Ok(Ok(answer)) => client_response(state, answer, &mut observed),
    };
    state.metrics.request(
        task,
        response.status().as_u16(),
        from_task,
        started.elapsed(),
    );
    state
        .board
        .request(task, response.status().as_u16(), started.elapsed());
    call.record(
        state,
        task,
        response.status().as_u16(),
        started.elapsed(),
        &observed,
    );
    drop(inflight);
    Ok(response)
}

/// The client's forwardable headers, plus the ones the proxy sets: the task, and where tasks
/// reach the proxy.
fn forwarded_headers(state: &App, task: &str, client: &HeaderMap) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::with_capacity(client.len() + 5);
    for (name, value) in client {
        if forwardable(name) {
            if let Ok(value) = value.to_str() {
                headers.push((name.as_str().to_string(), value.to_string()));
            }
        }
    }
    headers.push((HEADER_TASK_NAME.into(), task.to_string()));
    headers.push((HEADER_SERVER_ADDRESS.into(), state.advertise_host.clone()));
    headers.push((HEADER_SERVER_PORT.into(), state.port.to_string()));
    headers
}

/// The function's answer as the client sees it: internal and hop-by-hop headers removed, the
/// in-process call count taken into the metrics, the trace trailer and peak RSS into `observed`.
fn client_response(
    state: &App,
    answer: InvokeResponse,
    observed: &mut calls::Observed,
) -> Response {
    let mut builder = Response::builder().status(answer.status);
    let mut local_calls = 0;
    observed.body_len = answer.body.len();
    for (name, value) in &answer.headers {
        if name.eq_ignore_ascii_case(HEADER_LOCAL_CALLS) {
            local_calls = value.parse().unwrap_or(0);
            continue;
        }
        if name.eq_ignore_ascii_case(HEADER_TRACE) {
            observed.trace = Some(value.clone());
            continue;
        }
        if name.eq_ignore_ascii_case(HEADER_PEAK_RSS) {
            observed.peak_rss = value.parse().ok();
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        if !forwardable(&name) {
            continue;
        }
        if let Ok(value) = HeaderValue::from_str(value) {
            builder = builder.header(name, value);
        }
    }
    state.metrics.in_process_calls(local_calls);
    builder
        .body(Body::from(answer.body))
        .unwrap_or_else(|_| ProxyError::InvalidResponse.into_response())
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// `GET /<task>`: the original project's text, or JSON on `Accept: application/json`.
fn describe(state: &App, task: &str, headers: &HeaderMap) -> Result<Response, ProxyError> {
    let route = route_of(state, task, false)?;
    let others = route.others(task);
    if wants_json(headers) {
        return Ok(axum::Json(serde_json::json!({
            "task": task,
            "function": route.name,
            "colocated": others,
            "state": route.state,
            "digest": route.digest,
        }))
        .into_response());
    }
    let with = if others.is_empty() {
        "None".to_string()
    } else {
        others.join(", ")
    };
    Ok(text(
        StatusCode::OK,
        format!(
            "Task '{task}':\nCurrently deployed with other Tasks: {with}\nFunction: {}\nStatus: {}\n",
            route.name, route.state
        ),
    ))
}

/// Checks `Authorization: Bearer <token>` in constant time when a token is configured.
pub(super) fn authorized(state: &AppState, headers: &HeaderMap) -> Result<(), ProxyError> {
    use subtle::ConstantTimeEq;
    let Some(expected) = &state.token else {
        return Ok(());
    };
    // `<scheme> <token>`; the scheme is case-insensitive (RFC 9110 §11.1), so `bearer` and
    // `BEARER` are `Bearer` too.
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim_start_matches(' '));
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ProxyError::Unauthorized)
    }
}

/// A task name must be a lowercase DNS-1123 label: anything else is refused (400) before it is
/// looked up anywhere. The message shows at most the first characters, escaped.
fn valid_task_name(task: &str) -> Result<(), ProxyError> {
    if crate::contract::is_task_name(task) {
        Ok(())
    } else {
        Err(ProxyError::InvalidTaskName {
            task: task.to_string(),
        })
    }
}

async fn upload(state: &App, task: &str, request: Request) -> Result<Response, ProxyError> {
    if let Err(error) = authorized(state, request.headers()) {
        return Err(error.discarding(request.into_body()));
    }
    let from_task = state.task_caller(request.headers()).is_some();
    let (inflight, request) = admit(state, request, from_task)?;
    let limit = state.max_upload + 64 * 1024;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || ProxyError::TooLarge {
        what: "the upload",
        limit: state.max_upload,
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large().discarding(request.into_body()));
    }
    let mut multipart = <Multipart as axum::extract::FromRequest<()>>::from_request(request, &())
        .await
        .map_err(|rejection| ProxyError::NotMultipart(rejection.to_string()))?;
    let timed_out = || ProxyError::BodyTimeout {
        what: "upload",
        timeout: state.body_timeout,
    };
    let unreadable = |err: axum::extract::multipart::MultipartError| {
        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ProxyError::UploadUnreadable {
                status: err.status(),
                reason: err.to_string(),
            }
        }
    };
    let deadline = tokio::time::Instant::now() + state.body_timeout;
    let mut zip = None;
    while let Some(field) = tokio::time::timeout_at(deadline, multipart.next_field())
        .await
        .map_err(|_| timed_out())?
        .map_err(unreadable)?
    {
        if field.name() == Some("zip_file") {
            let bytes = tokio::time::timeout_at(deadline, field.bytes())
                .await
                .map_err(|_| timed_out())?
                .map_err(unreadable)?;
            zip = Some(bytes);
        }
    }
    let zip = zip.ok_or(ProxyError::NoZipField)?;
    // Run to the end even if the client goes away: an upload is made, deployed and kept or
    // rolled back as one unit, never cut off halfway.
    let (control, name) = (state.control.clone(), task.to_string());
    let outcome = tokio::spawn(async move {
        let _inflight = inflight;
        control.upload(&name, zip).await
    })
    .await;
    control_response(outcome)
}

/// The answer of a control operation run in its own task.
fn control_response(
    outcome: Result<Result<String, RunnerError>, tokio::task::JoinError>,
) -> Result<Response, ProxyError> {
    match outcome {
        Ok(Ok(message)) => Ok(text(StatusCode::OK, message)),
        Ok(Err(e)) => Err(ProxyError::Control(e)),
        Err(e) => Err(ProxyError::Internal(e.to_string())),
    }
}

async fn remove(state: &App, task: &str, request: Request) -> Result<Response, ProxyError> {
    if let Err(error) = authorized(state, request.headers()) {
        return Err(error.discarding(request.into_body()));
    }
    let from_task = state.task_caller(request.headers()).is_some();
    let (inflight, _request) = admit(state, request, from_task)?;
    let (control, name) = (state.control.clone(), task.to_string());
    control_response(
        tokio::spawn(async move {
            let _inflight = inflight;
            control.remove(&name).await
        })
        .await,
    )
}

#[cfg(test)]
mod tests;
