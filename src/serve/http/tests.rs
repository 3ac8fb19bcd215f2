//! In-process tests of the proxy's router: answers, error mapping, limits, auth, drain.

use std::sync::atomic::AtomicU64;

use axum::body::to_bytes;
use tower::ServiceExt;

use super::*;
use crate::platform::{InvokeError, InvokeResponse, Invoker};
use crate::serve::routes::{FunctionRoute, RouteTable};

/// Echoes what it received as JSON; fails in the ways a test asks.
struct Echo {
    calls: AtomicU64,
    mode: &'static str,
}

#[async_trait]
impl Invoker for Echo {
    async fn invoke(&self, req: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.mode {
            "crash" => Err(InvokeError::Crashed {
                function: "f".into(),
                reason: "worker exited".into(),
            }),
            "down" => Err(InvokeError::Unavailable {
                function: "f".into(),
                reason: "no worker".into(),
            }),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                unreachable!()
            }
            _ => {
                let headers: serde_json::Map<String, serde_json::Value> = req
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone().into()))
                    .collect();
                let body = serde_json::json!({
                    "task": req.task, "method": req.method, "path": req.path,
                    "query": req.query, "headers": headers,
                    "body": String::from_utf8_lossy(&req.body),
                });
                Ok(InvokeResponse {
                    status: 201,
                    headers: vec![
                        ("Content-Type".into(), "application/json".into()),
                        ("X-Custom".into(), "yes".into()),
                        (HEADER_LOCAL_CALLS.into(), "3".into()),
                        // What a function on Nuclio reports (`_trace` in the dispatcher).
                        (HEADER_TRACE.into(), "taska taskb s 200 150 42,+2".into()),
                        (HEADER_PEAK_RSS.into(), "31457280".into()),
                    ],
                    body: Bytes::from(body.to_string()),
                })
            }
        }
    }
}

struct NoControl;

#[async_trait]
impl Control for NoControl {
    async fn upload(&self, task: &str, zip: Bytes) -> Result<String, RunnerError> {
        Ok(format!("stored {task} ({} bytes)", zip.len()))
    }
    async fn remove(&self, task: &str) -> Result<String, RunnerError> {
        Err(RunnerError::Declared(format!("task `{task}` is declared")))
    }
    fn is_known(&self, task: &str) -> bool {
        task == "pending"
    }
}

fn state(mode: &'static str, token: Option<&str>) -> Arc<AppState> {
    let invoker = Arc::new(Echo {
        calls: AtomicU64::new(0),
        mode,
    });
    let route = Arc::new(FunctionRoute::new(
        "shop-taska-taskb".into(),
        vec!["taska".into(), "taskb".into()],
        "sha256:abc".into(),
        "ready".into(),
        invoker,
    ));
    let mut table = RouteTable::default();
    table.by_task.insert("taska".into(), route.clone());
    table.by_task.insert("taskb".into(), route);
    let state = AppState::for_tests(token, Duration::from_millis(200), 16);
    state.routes.swap(table);
    Arc::new(state)
}

async fn send(
    state: &Arc<AppState>,
    request: axum::http::Request<Body>,
) -> (u16, HeaderMap, String) {
    let response = router(state.clone(), Arc::new(NoControl))
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn post(uri: &str, body: &str) -> axum::http::Request<Body> {
    axum::http::Request::post(uri)
        .header("content-type", "application/json")
        .header("x-client", "1")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn post_passes_body_query_headers_and_returns_the_answer() {
    let state = state("echo", None);
    let (status, headers, body) = send(&state, post("/taska/sub?x=1", r#"{"a":1}"#)).await;
    assert_eq!(status, 201);
    assert_eq!(headers["x-custom"], "yes");
    assert!(
        !headers.contains_key(HEADER_LOCAL_CALLS),
        "internal header leaked"
    );
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["task"], "taska");
    assert_eq!(echo["path"], "/taska/sub");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["body"], r#"{"a":1}"#);
    assert_eq!(echo["headers"]["task-name"], "taska");
    assert_eq!(echo["headers"]["fusionizer-server-address"], "127.0.0.1");
    assert_eq!(echo["headers"]["fusionizer-server-port"], "8000");
    assert_eq!(echo["headers"]["x-client"], "1");
    let metrics = state.metrics.encode();
    assert!(
        metrics.contains(r#"fusionizer_task_calls_total{path="in_process"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"fusionizer_requests_total{task="taska",status="201",source="client"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_task_is_404_listing_known_ones() {
    let (status, _, body) = send(&state("echo", None), post("/nope", "")).await;
    assert_eq!(status, 404);
    assert_eq!(body, "no task `nope`; known tasks: taska, taskb\n");
}

#[tokio::test]
async fn known_but_unrouted_task_is_503_with_retry_after() {
    let (status, headers, _) = send(&state("echo", None), post("/pending", "")).await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "1");
}

#[tokio::test]
async fn invoke_errors_map_to_502_503_504() {
    assert_eq!(send(&state("crash", None), post("/taska", "")).await.0, 502);
    let (status, headers, _) = send(&state("down", None), post("/taska", "")).await;
    assert_eq!(
        (status, &headers["retry-after"]),
        (503, &HeaderValue::from_static("1"))
    );
    assert_eq!(send(&state("slow", None), post("/taska", "")).await.0, 504);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let (status, _, body) = send(&state("echo", None), post("/taska", &"x".repeat(2000))).await;
    assert_eq!(status, 413);
    assert!(body.contains("1024 bytes"), "{body}");
}

#[tokio::test]
async fn get_describes_the_task_like_the_original() {
    let state = state("echo", None);
    let request = axum::http::Request::get("/taska")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&state, request).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "Task 'taska':\nCurrently deployed with other Tasks: taskb\nFunction: shop-taska-taskb\nStatus: ready\n"
    );
    let request = axum::http::Request::get("/taska")
        .header("accept", "application/json")
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = send(&state, request).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["colocated"], serde_json::json!(["taskb"]));
    assert_eq!(json["function"], "shop-taska-taskb");
}

#[tokio::test]
async fn health_is_503_until_ready() {
    let state = state("echo", None);
    state.ready.store(false, Ordering::SeqCst);
    let get = || {
        axum::http::Request::get("/-/health")
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&state, get()).await.0, 503);
    state.ready.store(true, Ordering::SeqCst);
    assert_eq!(send(&state, get()).await.0, 200);
}

#[tokio::test]
async fn routes_are_served_as_json() {
    let request = axum::http::Request::get("/-/routes")
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = send(&state("echo", None), request).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["routes"]["taskb"]["function"], "shop-taska-taskb");
}

fn multipart(task: &str, token: Option<&str>, field: &str) -> axum::http::Request<Body> {
    let body = format!(
        "--XX\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"t.zip\"\r\nContent-Type: application/zip\r\n\r\nPK-bytes\r\n--XX--\r\n"
    );
    let mut builder = axum::http::Request::put(format!("/{task}"))
        .header("content-type", "multipart/form-data; boundary=XX");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn mutating_endpoints_need_the_token_when_configured() {
    let state = state("echo", Some("s3cret"));
    let (status, headers, _) = send(&state, multipart("newtask", None, "zip_file")).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(
        send(&state, multipart("newtask", Some("wrong"), "zip_file"))
            .await
            .0,
        401
    );
    let (status, _, body) = send(&state, multipart("newtask", Some("s3cret"), "zip_file")).await;
    assert_eq!((status, body.as_str()), (200, "stored newtask (8 bytes)\n"));
    let delete = axum::http::Request::delete("/taska")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&state, delete).await.0, 401);
}

#[tokio::test]
async fn upload_without_zip_field_or_with_bad_name_is_400() {
    let state = state("echo", None);
    assert_eq!(
        send(&state, multipart("newtask", None, "other")).await.0,
        400
    );
    assert_eq!(
        send(&state, multipart("Bad_Name", None, "zip_file"))
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn delete_of_a_declared_task_is_409() {
    let delete = axum::http::Request::delete("/taska")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&state("echo", None), delete).await;
    assert_eq!(status, 409);
    assert!(body.contains("declared"));
}

#[tokio::test]
async fn drain_waits_for_inflight_requests() {
    let state = state("echo", None);
    let route = state.routes.current().by_task["taska"].clone();
    let guard = route.enter();
    assert!(
        !route.drain(Duration::from_millis(20)).await,
        "drained while a request was in flight"
    );
    let waiter = {
        let route = route.clone();
        tokio::spawn(async move { route.drain(Duration::from_secs(10)).await })
    };
    drop(guard);
    assert!(waiter.await.unwrap());
}

#[tokio::test]
async fn while_draining_clients_get_503_and_tasks_are_still_served() {
    let state = state("echo", None);
    state.draining.store(true, Ordering::SeqCst);
    let (status, headers, body) = send(&state, post("/taska", "")).await;
    assert_eq!(
        (status, &headers["connection"]),
        (503, &HeaderValue::from_static("close"))
    );
    assert!(body.contains("shutting down"), "{body}");
    let from_task = axum::http::Request::post("/taskb")
        .header(HEADER_CALLER, "taska")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&state, from_task).await.0, 201);
    let health = axum::http::Request::get("/-/health")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&state, health).await.0, 503);
    assert_eq!(state.inflight.count(), 0);
}

#[tokio::test]
async fn invalid_names_are_400_on_every_method_before_any_lookup() {
    let state = state("echo", None);
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
        for uri in [
            "/%2Fetc",
            "/..",
            "/%2E%2E",
            "/Task",
            "/a%00",
            "/%C3%A9",
            "/%2Fetc/sub",
        ] {
            let request = axum::http::Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap();
            let (status, _, body) = send(&state, request).await;
            assert_eq!(status, 400, "{method} {uri}: {body}");
        }
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let state = state("echo", Some("s3cret"));
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let delete = axum::http::Request::delete("/taska")
            .header("authorization", format!("{scheme} s3cret"))
            .body(Body::empty())
            .unwrap();
        // Past the token check: the declared task's 409.
        assert_eq!(send(&state, delete).await.0, 409, "{scheme}");
    }
    for wrong in ["Basic s3cret", "Bearer", "Bearers3cret", "Bearer s3cre"] {
        let delete = axum::http::Request::delete("/taska")
            .header("authorization", wrong)
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&state, delete).await.0, 401, "{wrong}");
    }
}

#[tokio::test]
async fn the_trace_headers_are_recorded_and_stripped() {
    let state = state("echo", None);
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let request = axum::http::Request::post("/taska")
        .header("traceparent", trace)
        .body(Body::from("hi"))
        .unwrap();
    let (status, headers, body) = send(&state, request).await;
    assert_eq!(status, 201);
    for name in [HEADER_TRACE, HEADER_PEAK_RSS] {
        assert!(!headers.contains_key(name), "{name} leaked to the client");
    }
    // The function sees the same trace under a new parent id, and the proxy's RSS request.
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sent = echo["headers"]["traceparent"].as_str().unwrap();
    assert!(
        sent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "{sent}"
    );
    assert_ne!(sent, trace);
    assert_eq!(echo["headers"]["x-fusionizer-sample-rss"], "1");
    let doc = state.traces.document();
    assert_eq!(doc.tasks[0].task, "taska");
    assert_eq!(doc.tasks[0].invocations, 1);
    assert!(doc.tasks[0].peak_rss_p99_bytes.is_some());
    let edge = &doc.edges[0];
    assert_eq!(
        (
            edge.caller.as_str(),
            edge.callee.as_str(),
            edge.via,
            edge.count,
            edge.bytes
        ),
        ("taska", "taskb", crate::traces::Via::InProcess, 1, 42)
    );
    let trace_ids: Vec<_> = doc
        .spans
        .iter()
        .map(|s| match s {
            crate::traces::Span::Invocation { trace_id, .. }
            | crate::traces::Span::Call { trace_id, .. } => trace_id.clone(),
        })
        .collect();
    assert_eq!(trace_ids, ["0af7651916cd43dd8448eb211c80319c"; 2]);
    // `+2`: calls the function made but did not itemise are counted, not lost.
    let metrics = state.metrics.encode_with(&doc);
    assert!(
        metrics.contains("fusionizer_trace_records_skipped_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"fusionizer_edge_calls_total{caller="taska",callee="taskb",mode="sync",via="in-process"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    // The document itself, as the dashboard and `optimize` read it.
    let (status, _, body) = send(
        &state,
        axum::http::Request::get("/-/traces")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(crate::traces::parse(&body, "/-/traces").unwrap(), doc);
}

#[tokio::test]
async fn a_call_from_a_task_is_an_edge_through_the_proxy() {
    let state = state("echo", None);
    let request = axum::http::Request::post("/taskb")
        .header(HEADER_CALLER, "taska")
        .body(Body::from("12345"))
        .unwrap();
    let (status, _, body) = send(&state, request).await;
    assert_eq!(status, 201);
    let doc = state.traces.document();
    assert!(doc.tasks.iter().all(|t| t.task != "taskb"), "{doc:?}");
    let edge = doc
        .edges
        .iter()
        .find(|e| e.via == crate::traces::Via::Proxy)
        .unwrap();
    assert_eq!(
        (edge.caller.as_str(), edge.callee.as_str()),
        ("taska", "taskb")
    );
    assert_eq!(edge.bytes, 5 + body.len() as u64);
}

#[tokio::test]
async fn respond_async_answers_202_then_503_when_the_queue_is_full() {
    // "slow" never answers within the test: the one place in the queue stays taken.
    let state = state("slow", None);
    let async_post = || {
        axum::http::Request::post("/taska")
            .header("prefer", "respond-async")
            .header(HEADER_CALLER, "taskz")
            .body(Body::from("x"))
            .unwrap()
    };
    let (status, headers, _) = send(&state, async_post()).await;
    assert_eq!(status, 202);
    assert_eq!(headers["preference-applied"], "respond-async");
    let (status, headers, body) = send(&state, async_post()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        body.contains("queue of asynchronous calls is full"),
        "{body}"
    );
    let metrics = state.metrics.encode();
    assert!(
        metrics.contains(r#"fusionizer_async_calls_total{result="rejected"} 1"#),
        "{metrics}"
    );
    // The accepted call keeps serve's in-flight count up, so a shutdown drain waits for it.
    assert_eq!(state.inflight.count(), 1);
}

#[tokio::test]
async fn an_async_call_is_recorded_as_async_when_it_ran() {
    let state = state("echo", None);
    let request = axum::http::Request::post("/taskb")
        .header("prefer", "respond-async")
        .header(HEADER_CALLER, "taska")
        .body(Body::from("x"))
        .unwrap();
    let (status, _, _) = send(&state, request).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    let edge = loop {
        let doc = state.traces.document();
        if let Some(edge) = doc
            .edges
            .into_iter()
            .find(|e| e.via == crate::traces::Via::Proxy)
        {
            break edge;
        }
        assert!(
            Instant::now() < deadline,
            "the async call was never recorded"
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(edge.mode, crate::traces::Mode::Async);
    assert_eq!((edge.count, edge.errors), (1, 0));
    assert_eq!(state.background.queued(), 0);
}
