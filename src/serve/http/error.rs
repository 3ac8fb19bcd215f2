//! What can go wrong with a request to the proxy, as one type: [`ProxyError`]. Handlers return
//! `Result<Response, ProxyError>` and use `?`; [`ProxyError::parts`] is the one place that says
//! which status code, body and header each case answers (README, "serve: HTTP API").
//!
//! Every body is plain text ending in a newline, with `Content-Type: text/plain;
//! charset=utf-8`: it says what happened and how to fix it; causes go to the log.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{refuse, text};
use crate::platform::InvokeError;
use crate::serve::runner::error::{Kind, RunnerError};

/// Why the proxy answers a request with an error instead of a function's answer.
#[derive(Debug)]
pub enum ProxyError {
    /// The path's task name is no lowercase DNS-1123 label (400); the message shows it cut short
    /// and escaped (`contract::refused_task_name`).
    InvalidTaskName { task: String },
    /// No task of that name is routed or known (404), with the tasks that are.
    UnknownTask { task: String, known: Vec<String> },
    /// The task is known (declared or uploaded) but has no route right now (503); `retry`
    /// adds "retry shortly" (an invocation says it, a description does not).
    NotDeployed { task: String, retry: bool },
    /// The method is not one the path takes (405, with `Allow`).
    MethodNotAllowed { method: String, allow: &'static str },
    /// `PUT`/`DELETE` (or the dashboard's state) without the configured bearer token (401, with
    /// `WWW-Authenticate: Bearer`).
    Unauthorized,
    /// serve is shutting down and the request is a client's (503, with `Retry-After`).
    Draining,
    /// serve is shutting down (`/-/health`: 503, with `Retry-After`).
    ShuttingDown,
    /// The start phase is not deployed yet (`/-/health`: 503, with `Retry-After`).
    Starting,
    /// A present task has no function to route to (`/-/health`: 503, `Retry-After: 5`); says
    /// which and whether self-heal runs.
    Degraded(String),
    /// A body over its limit (413): `what` is the body ("request body", "the upload").
    TooLarge { what: &'static str, limit: usize },
    /// A body that did not arrive within `[serve] body-read-timeout` (408, with `Connection:
    /// close`).
    BodyTimeout {
        what: &'static str,
        timeout: Duration,
    },
    /// The request body could not be read (400).
    BodyUnreadable,
    /// An upload whose body is not `multipart/form-data` (400): axum's rejection.
    NotMultipart(String),
    /// An upload's multipart body failed while being read: its status, and why.
    UploadUnreadable { status: StatusCode, reason: String },
    /// An upload without the `zip_file` field (400).
    NoZipField,
    /// A synchronous call that closes a cycle of calls (508 Loop Detected, RFC 5842).
    Cycle(String),
    /// The task did not answer within `[serve] request-timeout` (504).
    Timeout { task: String, after: Duration },
    /// Invoking the function failed: 503, 502 or 504 by the error.
    Upstream { task: String, error: InvokeError },
    /// The function's answer could not be turned into a response (502).
    InvalidResponse,
    /// The queue of asynchronous calls is full (503, with `Retry-After`).
    QueueFull { calls: usize, bytes: u64 },
    /// An asynchronous call's body is larger than the whole queue may hold (413).
    TooLargeForQueue { body: usize, queue: u64 },
    /// The runner refused an upload or removal: its message, the status by its kind
    /// ([`control_status`]).
    Control(RunnerError),
    /// A control operation's task failed (500).
    Internal(String),
    /// `error`, answered while the rest of the request's unwanted `body` is read and thrown away
    /// ([`refuse`]: `Connection: close`).
    Refused { error: Box<ProxyError>, body: Body },
}

/// The one place a runner's refusal becomes an HTTP status.
fn control_status(kind: Kind) -> StatusCode {
    match kind {
        Kind::Busy => StatusCode::SERVICE_UNAVAILABLE,
        Kind::Conflict => StatusCode::CONFLICT,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ProxyError {
    /// `self`, answered with the rest of `body` discarded ([`refuse`]).
    pub fn discarding(self, body: Body) -> Self {
        ProxyError::Refused {
            error: Box::new(self),
            body,
        }
    }

    /// A failed invocation of `task`, logged.
    pub fn upstream(task: &str, error: InvokeError) -> Self {
        tracing::warn!(task, "{error}");
        ProxyError::Upstream {
            task: task.to_string(),
            error,
        }
    }

    /// The status code it answers.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The status code, the message and the one extra header of each case.
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per case: the whole mapping stays in one place"
    )]
    fn parts(&self) -> Parts {
        use ProxyError as E;
        match self {
            E::InvalidTaskName { task } => (
                StatusCode::BAD_REQUEST,
                crate::contract::refused_task_name(task),
                None,
            ),
            E::UnknownTask { task, known } => {
                let list = if known.is_empty() {
                    "no tasks are deployed".to_string()
                } else {
                    format!("known tasks: {}", known.join(", "))
                };
                (
                    StatusCode::NOT_FOUND,
                    format!("no task `{task}`; {list}"),
                    None,
                )
            }
            E::NotDeployed { task, retry: again } => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "task `{task}` is not deployed right now{}",
                    if *again { "; retry shortly" } else { "" }
                ),
                retry_after("1"),
            ),
            E::MethodNotAllowed { method, allow } => (
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} is not allowed here; allowed: {allow}"),
                Some((header::ALLOW, HeaderValue::from_static(allow))),
            ),
            E::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "this endpoint needs `Authorization: Bearer <token>`".to_string(),
                Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))),
            ),
            E::Draining => (
                StatusCode::SERVICE_UNAVAILABLE,
                "serve is shutting down; it answers only the requests it had already taken"
                    .to_string(),
                retry_after("1"),
            ),
            E::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down".to_string(),
                retry_after("1"),
            ),
            E::Starting => (
                StatusCode::SERVICE_UNAVAILABLE,
                "starting: the start phase is not deployed yet".to_string(),
                retry_after("1"),
            ),
            // A readiness probe takes serve out of rotation while a task cannot be answered.
            E::Degraded(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("degraded: {why}"),
                retry_after("5"),
            ),
            E::TooLarge { what, limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{what} is larger than the limit of {limit} bytes"),
                None,
            ),
            E::BodyTimeout { what, timeout } => (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the {what} did not arrive within {} (`[serve] body-read-timeout`)",
                    humantime::format_duration(*timeout)
                ),
                Some((header::CONNECTION, HeaderValue::from_static("close"))),
            ),
            E::BodyUnreadable => (
                StatusCode::BAD_REQUEST,
                "could not read the request body".to_string(),
                None,
            ),
            E::NotMultipart(rejection) => (
                StatusCode::BAD_REQUEST,
                format!("expected a multipart/form-data body with field `zip_file`: {rejection}"),
                None,
            ),
            E::UploadUnreadable { status, reason } => (
                *status,
                format!("could not read the upload: {reason}"),
                None,
            ),
            E::NoZipField => (
                StatusCode::BAD_REQUEST,
                "the multipart body has no field `zip_file`".to_string(),
                None,
            ),
            E::Cycle(cycle) => (
                StatusCode::LOOP_DETECTED,
                format!(
                    "call cycle: {cycle}. The callee is already waiting, up this chain of \
                     synchronous calls, for this call to return, so it could only wait until \
                     `request-timeout`. Break the cycle, or make one of its calls asynchronous \
                     (`call_function_async`, or `Prefer: respond-async`)"
                ),
                None,
            ),
            E::Timeout { task, after } => (
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "task `{task}` did not answer within {}",
                    humantime::format_duration(*after)
                ),
                None,
            ),
            E::Upstream { task, error } => upstream(task, error),
            E::InvalidResponse => (
                StatusCode::BAD_GATEWAY,
                "invalid response".to_string(),
                None,
            ),
            E::QueueFull { calls, bytes } => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the queue of asynchronous calls is full (at most {calls} calls and {bytes} \
                     bytes of bodies, `[serve] async-queue` and `async-queue-size`); retry later"
                ),
                retry_after("1"),
            ),
            E::TooLargeForQueue { body, queue } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "an asynchronous call's body of {body} bytes is larger than the whole queue \
                     may hold ({queue} bytes, `[serve] async-queue-size`)"
                ),
                None,
            ),
            E::Control(refusal) => (control_status(refusal.kind()), refusal.to_string(), None),
            E::Internal(message) => (StatusCode::INTERNAL_SERVER_ERROR, message.clone(), None),
            E::Refused { error, .. } => error.parts(),
        }
    }
}

/// The status code, the message and the extra header of a failed invocation of `task`.
fn upstream(
    task: &str,
    error: &InvokeError,
) -> (StatusCode, String, Option<(HeaderName, HeaderValue)>) {
    match error {
        // The reason goes to the client too: on the nuctl platform it may be a setting
        // to change (`pick_address` in src/platform/nuctl/function.rs), which no retry
        // fixes.
        InvokeError::Unavailable { function, reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("task `{task}` is unavailable right now (function `{function}`): {reason}"),
            retry_after("1"),
        ),
        InvokeError::Crashed { .. } => (
            StatusCode::BAD_GATEWAY,
            format!("the worker running task `{task}` crashed while handling this request"),
            None,
        ),
        InvokeError::Timeout { .. } => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("task `{task}` did not answer in time"),
            None,
        ),
        InvokeError::Connect { .. } => (
            StatusCode::BAD_GATEWAY,
            format!("could not reach the function running task `{task}`"),
            None,
        ),
        // Names the setting to change; says nothing the client's own request did not
        // reveal.
        too_large @ InvokeError::TooLarge { .. } => {
            (StatusCode::BAD_GATEWAY, too_large.to_string(), None)
        }
    }
}

/// An answer's status code, message, and the one header it adds, if any.
type Parts = (StatusCode, String, Option<(HeaderName, HeaderValue)>);

/// `Retry-After: <seconds>`.
fn retry_after(seconds: &'static str) -> Option<(HeaderName, HeaderValue)> {
    Some((header::RETRY_AFTER, HeaderValue::from_static(seconds)))
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        if let ProxyError::Refused { error, body } = self {
            return refuse(error.into_response(), body);
        }
        let (status, message, extra) = self.parts();
        let mut response = text(status, message);
        if let Some((name, value)) = extra {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    /// The status, the headers other than `Content-Type` (name: value, in order), and the body.
    async fn answer(error: ProxyError) -> (u16, Vec<String>, String) {
        let response = error.into_response();
        let status = response.status().as_u16();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| *name != header::CONTENT_TYPE && *name != header::CONTENT_LENGTH)
            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
            .collect();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Each error answers its status, its extra headers and its body, byte for byte.
    async fn answers(cases: Vec<(ProxyError, u16, &[&str], &str)>) {
        for (error, status, headers, body) in cases {
            let expected = (
                status,
                headers.iter().map(ToString::to_string).collect(),
                body.to_string(),
            );
            assert_eq!(answer(error).await, expected);
        }
    }

    fn task(name: &str) -> String {
        name.to_string()
    }

    #[tokio::test]
    async fn lookups_map_to_400_404_405_and_503() {
        let not_deployed = |retry| ProxyError::NotDeployed {
            task: task("a"),
            retry,
        };
        answers(vec![
            (
                ProxyError::InvalidTaskName { task: task("A") },
                400,
                &[],
                "`A` is not a valid task name: use a lowercase DNS-1123 label of at most 40 \
                 characters\n",
            ),
            (
                ProxyError::UnknownTask {
                    task: task("nope"),
                    known: vec![task("a"), task("b")],
                },
                404,
                &[],
                "no task `nope`; known tasks: a, b\n",
            ),
            (
                ProxyError::UnknownTask {
                    task: task("nope"),
                    known: vec![],
                },
                404,
                &[],
                "no task `nope`; no tasks are deployed\n",
            ),
            (
                not_deployed(true),
                503,
                &["retry-after: 1"],
                "task `a` is not deployed right now; retry shortly\n",
            ),
            (
                not_deployed(false),
                503,
                &["retry-after: 1"],
                "task `a` is not deployed right now\n",
            ),
            (
                ProxyError::MethodNotAllowed {
                    method: "PATCH".into(),
                    allow: "POST, OPTIONS",
                },
                405,
                &["allow: POST, OPTIONS"],
                "method PATCH is not allowed here; allowed: POST, OPTIONS\n",
            ),
            (
                ProxyError::Unauthorized,
                401,
                &["www-authenticate: Bearer"],
                "this endpoint needs `Authorization: Bearer <token>`\n",
            ),
        ])
        .await;
    }

    #[tokio::test]
    async fn readiness_maps_to_503_with_retry_after() {
        answers(vec![
            (
                ProxyError::Draining,
                503,
                &["retry-after: 1"],
                "serve is shutting down; it answers only the requests it had already taken\n",
            ),
            (
                ProxyError::ShuttingDown,
                503,
                &["retry-after: 1"],
                "shutting down\n",
            ),
            (
                ProxyError::Starting,
                503,
                &["retry-after: 1"],
                "starting: the start phase is not deployed yet\n",
            ),
            (
                ProxyError::Degraded("task `a` has no function".into()),
                503,
                &["retry-after: 5"],
                "degraded: task `a` has no function\n",
            ),
            (
                ProxyError::QueueFull {
                    calls: 2,
                    bytes: 10,
                },
                503,
                &["retry-after: 1"],
                "the queue of asynchronous calls is full (at most 2 calls and 10 bytes of bodies, \
                 `[serve] async-queue` and `async-queue-size`); retry later\n",
            ),
        ])
        .await;
    }

    #[tokio::test]
    async fn bodies_map_to_400_408_and_413() {
        answers(vec![
            (
                ProxyError::TooLarge {
                    what: "request body",
                    limit: 1024,
                },
                413,
                &[],
                "request body is larger than the limit of 1024 bytes\n",
            ),
            (
                ProxyError::TooLargeForQueue { body: 9, queue: 8 },
                413,
                &[],
                "an asynchronous call's body of 9 bytes is larger than the whole queue may hold \
                 (8 bytes, `[serve] async-queue-size`)\n",
            ),
            (
                ProxyError::BodyTimeout {
                    what: "upload",
                    timeout: Duration::from_secs(90),
                },
                408,
                &["connection: close"],
                "the upload did not arrive within 1m 30s (`[serve] body-read-timeout`)\n",
            ),
            (
                ProxyError::BodyUnreadable,
                400,
                &[],
                "could not read the request body\n",
            ),
            (
                ProxyError::NotMultipart("no boundary".into()),
                400,
                &[],
                "expected a multipart/form-data body with field `zip_file`: no boundary\n",
            ),
            (
                ProxyError::UploadUnreadable {
                    status: StatusCode::BAD_REQUEST,
                    reason: "eof".into(),
                },
                400,
                &[],
                "could not read the upload: eof\n",
            ),
            (
                ProxyError::NoZipField,
                400,
                &[],
                "the multipart body has no field `zip_file`\n",
            ),
        ])
        .await;
    }

    #[tokio::test]
    async fn upstream_failures_map_to_502_503_504_and_508() {
        let upstream = |error| ProxyError::upstream("a", error);
        answers(vec![
            (
                upstream(InvokeError::Unavailable {
                    function: task("f"),
                    reason: "no worker".into(),
                }),
                503,
                &["retry-after: 1"],
                "task `a` is unavailable right now (function `f`): no worker\n",
            ),
            (
                upstream(InvokeError::Crashed {
                    function: task("f"),
                    reason: "exit 1".into(),
                }),
                502,
                &[],
                "the worker running task `a` crashed while handling this request\n",
            ),
            (
                upstream(InvokeError::Timeout {
                    function: task("f"),
                    timeout: Duration::from_secs(1),
                }),
                504,
                &[],
                "task `a` did not answer in time\n",
            ),
            (
                upstream(InvokeError::Connect {
                    function: task("f"),
                    reason: "refused".into(),
                }),
                502,
                &[],
                "could not reach the function running task `a`\n",
            ),
            (
                upstream(InvokeError::TooLarge {
                    function: task("f"),
                    task: task("a"),
                    size: 9,
                    limit: 8,
                }),
                502,
                &[],
                "task `a` answered 9 bytes, over the limit of 8 bytes (`[serve] \
                 max-response-size`)\n",
            ),
            (
                ProxyError::Timeout {
                    task: task("a"),
                    after: Duration::from_secs(30),
                },
                504,
                &[],
                "task `a` did not answer within 30s\n",
            ),
            (ProxyError::InvalidResponse, 502, &[], "invalid response\n"),
            (
                ProxyError::Cycle("a → b → a".into()),
                508,
                &[],
                "call cycle: a → b → a. The callee is already waiting, up this chain of \
                 synchronous calls, for this call to return, so it could only wait until \
                 `request-timeout`. Break the cycle, or make one of its calls asynchronous \
                 (`call_function_async`, or `Prefer: respond-async`)\n",
            ),
        ])
        .await;
    }

    #[tokio::test]
    async fn control_refusals_keep_their_status_and_message() {
        answers(vec![
            (
                ProxyError::Control(RunnerError::Declared("task `a` is declared".into())),
                409,
                &[],
                "task `a` is declared\n",
            ),
            (
                ProxyError::Internal("panicked".into()),
                500,
                &[],
                "panicked\n",
            ),
        ])
        .await;
    }

    #[tokio::test]
    async fn a_refused_request_closes_the_connection_and_keeps_its_answer() {
        let error = ProxyError::Unauthorized.discarding(Body::from("unwanted"));
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
        answers(vec![(
            error,
            401,
            &["www-authenticate: Bearer", "connection: close"],
            "this endpoint needs `Authorization: Bearer <token>`\n",
        )])
        .await;
    }
}
