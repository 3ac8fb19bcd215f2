//! The proxy's HTTP API (README, "serve: HTTP API"): `POST /<task>` invokes, `GET /<task>`
//! describes, `PUT`/`DELETE /<task>` upload and remove ad-hoc tasks, and `/-/health`,
//! `/-/routes`, `/-/metrics` serve operations. [`router`] builds it from shared state so tests
//! can drive it in-process.
//!
//! Errors are responses: unknown task → 404, function down → 503 with `Retry-After`, worker
//! crash → 502, timeout → 504, body too large → 413. The body says what happened; causes go to
//! the log.

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

use super::metrics::Metrics;
use super::routes::Routes;
use crate::contract::{
    is_hop_by_hop, HEADER_CALLER, HEADER_LOCAL_CALLS, HEADER_SERVER_ADDRESS, HEADER_SERVER_PORT,
    HEADER_TASK_NAME,
};
use crate::platform::{InvokeError, InvokeRequest, InvokeResponse};

/// A refusal from the control plane, as an HTTP status and a message.
#[derive(Debug)]
pub struct ControlError {
    pub status: StatusCode,
    pub message: String,
}

impl ControlError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ControlError {
            status,
            message: message.into(),
        }
    }
}

/// What the HTTP layer asks of the schedule runner.
#[async_trait]
pub trait Control: Send + Sync {
    /// Stores and deploys an uploaded task (the zip's bytes).
    async fn upload(&self, task: &str, zip: Bytes) -> Result<String, ControlError>;
    /// Removes an uploaded task.
    async fn remove(&self, task: &str) -> Result<String, ControlError>;
    /// Whether `task` is known (declared or uploaded) even if it has no route right now.
    fn is_known(&self, task: &str) -> bool;
}

/// How much of a refused upload's body is read before answering (see `upload`).
const REFUSED_BODY_DRAIN: usize = 64 * 1024;

/// Everything the handlers share.
pub struct AppState {
    pub routes: Routes,
    pub metrics: Metrics,
    /// Set once the start phase is deployed and ready.
    pub ready: AtomicBool,
    /// The bearer token for PUT/DELETE, when configured.
    pub token: Option<String>,
    /// Host and port given to tasks in `Fusionizer-Server-Address`/`-Port`.
    pub advertise_host: String,
    pub port: u16,
    pub max_body: usize,
    pub max_upload: usize,
    pub request_timeout: Duration,
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
        .route(
            "/{task}",
            any(task_root).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/{task}/{*rest}", any(task_sub))
        .with_state(state)
}

async fn health(State(state): State<Arc<App>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "starting: the start phase is not deployed yet\n",
        )
            .into_response()
    }
}

async fn routes(State(state): State<Arc<App>>) -> Response {
    axum::Json(state.routes.current().to_json()).into_response()
}

async fn metrics(State(state): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn task_root(
    State(state): State<Arc<App>>,
    Path(task): Path<String>,
    request: Request,
) -> Response {
    match *request.method() {
        Method::GET => describe(&state, &task, request.headers()),
        Method::PUT => upload(&state, &task, request).await,
        Method::DELETE => remove(&state, &task, request.headers()).await,
        _ => invoke(&state, &task, request).await,
    }
}

async fn task_sub(
    State(state): State<Arc<App>>,
    Path((task, _rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    invoke(&state, &task, request).await
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

fn unknown_task(state: &AppState, task: &str) -> Response {
    let table = state.routes.current();
    let known: Vec<&str> = table.by_task.keys().map(String::as_str).collect();
    let list = if known.is_empty() {
        "no tasks are deployed".to_string()
    } else {
        format!("known tasks: {}", known.join(", "))
    };
    text(StatusCode::NOT_FOUND, format!("no task `{task}`; {list}"))
}

fn unavailable(message: String) -> Response {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Whether a client's header is forwarded to the function: not hop-by-hop, and not one the proxy
/// sets itself.
fn forwardable(name: &HeaderName) -> bool {
    let name = name.as_str();
    !is_hop_by_hop(name)
        && ![HEADER_TASK_NAME, HEADER_SERVER_ADDRESS, HEADER_SERVER_PORT]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
}

async fn invoke(state: &Arc<App>, task: &str, request: Request) -> Response {
    let started = Instant::now();
    let table = state.routes.current();
    let Some(route) = table.by_task.get(task).cloned() else {
        if state.control.is_known(task) {
            return unavailable(format!(
                "task `{task}` is not deployed right now; retry shortly"
            ));
        }
        return unknown_task(state, task);
    };
    drop(table);
    let (parts, body) = request.into_parts();
    let from_task = parts.headers.contains_key(HEADER_CALLER);
    let Ok(body) = axum::body::to_bytes(body, state.max_body).await else {
        let response = text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body is larger than the limit of {} bytes",
                state.max_body
            ),
        );
        state
            .metrics
            .request(task, 413, from_task, started.elapsed());
        return response;
    };
    let invoke_request = InvokeRequest {
        task: task.to_string(),
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: forwarded_headers(state, task, &parts.headers),
        body,
    };
    let guard = route.enter();
    let outcome =
        tokio::time::timeout(state.request_timeout, route.invoker.invoke(invoke_request)).await;
    drop(guard);
    let response = match outcome {
        Err(_) => {
            tracing::warn!(task, function = %route.name, "request timed out");
            text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "task `{task}` did not answer within {}",
                    humantime::format_duration(state.request_timeout)
                ),
            )
        }
        Ok(Err(err)) => invoke_error(task, err),
        Ok(Ok(answer)) => client_response(state, answer),
    };
    state.metrics.request(
        task,
        response.status().as_u16(),
        from_task,
        started.elapsed(),
    );
    response
}

/// The client's forwardable headers, plus the ones the proxy sets: the task, and where tasks
/// reach the proxy.
fn forwarded_headers(state: &App, task: &str, client: &HeaderMap) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::with_capacity(client.len() + 3);
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
/// in-process call count taken into the metrics.
fn client_response(state: &App, answer: InvokeResponse) -> Response {
    let mut builder = Response::builder().status(answer.status);
    let mut local_calls = 0;
    for (name, value) in &answer.headers {
        if name.eq_ignore_ascii_case(HEADER_LOCAL_CALLS) {
            local_calls = value.parse().unwrap_or(0);
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
        .unwrap_or_else(|_| text(StatusCode::BAD_GATEWAY, "invalid response"))
}

fn invoke_error(task: &str, err: InvokeError) -> Response {
    tracing::warn!(task, "{err}");
    match err {
        InvokeError::Unavailable { .. } => unavailable(format!(
            "task `{task}` is unavailable right now; retry shortly"
        )),
        InvokeError::Crashed { .. } => text(
            StatusCode::BAD_GATEWAY,
            format!("the worker running task `{task}` crashed while handling this request"),
        ),
        InvokeError::Timeout { .. } => text(
            StatusCode::GATEWAY_TIMEOUT,
            format!("task `{task}` did not answer in time"),
        ),
        InvokeError::Connect { .. } => text(
            StatusCode::BAD_GATEWAY,
            format!("could not reach the function running task `{task}`"),
        ),
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// `GET /<task>`: the original project's text, or JSON on `Accept: application/json`.
fn describe(state: &App, task: &str, headers: &HeaderMap) -> Response {
    let table = state.routes.current();
    let Some(route) = table.by_task.get(task) else {
        if state.control.is_known(task) {
            return unavailable(format!("task `{task}` is not deployed right now"));
        }
        return unknown_task(state, task);
    };
    let others: Vec<&str> = route
        .tasks
        .iter()
        .filter(|t| *t != task)
        .map(String::as_str)
        .collect();
    if wants_json(headers) {
        return axum::Json(serde_json::json!({
            "task": task,
            "function": route.name,
            "colocated": others,
            "state": route.state,
            "digest": route.digest,
        }))
        .into_response();
    }
    let with = if others.is_empty() {
        "None".to_string()
    } else {
        others.join(", ")
    };
    text(
        StatusCode::OK,
        format!(
            "Task '{task}':\nCurrently deployed with other Tasks: {with}\nFunction: {}\nStatus: {}\n",
            route.name, route.state
        ),
    )
}

/// Checks `Authorization: Bearer <token>` in constant time when a token is configured.
fn authorized(state: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    use subtle::ConstantTimeEq;
    let Some(expected) = &state.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        let mut response = text(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs `Authorization: Bearer <token>`",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Err(Box::new(response))
    }
}

fn valid_task_name(task: &str) -> Result<(), Box<Response>> {
    if crate::contract::is_dns_label(task, crate::contract::MAX_TASK_NAME) {
        Ok(())
    } else {
        Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            format!(
                "`{task}` is not a valid task name: use a lowercase DNS-1123 label of at most {} characters",
                crate::contract::MAX_TASK_NAME
            ),
        )))
    }
}

async fn upload(state: &App, task: &str, request: Request) -> Response {
    let refused = authorized(state, request.headers()).and_then(|()| valid_task_name(task));
    if let Err(response) = refused {
        // Read (at most a little of) the body before refusing: closing a socket that still
        // holds unread data makes the kernel reset the connection, and the client may then
        // lose this answer.
        let _ = axum::body::to_bytes(request.into_body(), REFUSED_BODY_DRAIN).await;
        return *response;
    }
    let mut multipart =
        match <Multipart as axum::extract::FromRequest<()>>::from_request(request, &()).await {
            Ok(m) => m,
            Err(rejection) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "expected a multipart/form-data body with field `zip_file`: {rejection}"
                    ),
                )
            }
        };
    let mut zip = None;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                if field.name() == Some("zip_file") {
                    match field.bytes().await {
                        Ok(bytes) => zip = Some(bytes),
                        Err(e) => return multipart_error(state, e),
                    }
                }
            }
            Ok(None) => break,
            Err(e) => return multipart_error(state, e),
        }
    }
    let Some(zip) = zip else {
        return text(
            StatusCode::BAD_REQUEST,
            "the multipart body has no field `zip_file`",
        );
    };
    match state.control.upload(task, zip).await {
        Ok(message) => text(StatusCode::OK, message),
        Err(e) => text(e.status, e.message),
    }
}

fn multipart_error(state: &AppState, err: axum::extract::multipart::MultipartError) -> Response {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the upload is larger than the limit of {} bytes",
                state.max_upload
            ),
        )
    } else {
        text(err.status(), format!("could not read the upload: {err}"))
    }
}

async fn remove(state: &App, task: &str, headers: &HeaderMap) -> Response {
    if let Err(response) = authorized(state, headers) {
        return *response;
    }
    if let Err(response) = valid_task_name(task) {
        return *response;
    }
    match state.control.remove(task).await {
        Ok(message) => text(StatusCode::OK, message),
        Err(e) => text(e.status, e.message),
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
