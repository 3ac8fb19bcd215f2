//! In-process tests of the proxy's router: answers, error mapping, limits, auth, drain.

use std::sync::atomic::AtomicU64;

use axum::body::to_bytes;
use tower::ServiceExt;

use super::*;
use crate::platform::{InvokeResponse, Invoker};
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
    async fn upload(&self, task: &str, zip: Bytes) -> Result<String, ControlError> {
        Ok(format!("stored {task} ({} bytes)", zip.len()))
    }
    async fn remove(&self, task: &str) -> Result<String, ControlError> {
        Err(ControlError::new(
            StatusCode::CONFLICT,
            format!("task `{task}` is declared"),
        ))
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
    let state = AppState {
        routes: Routes::default(),
        metrics: Metrics::new(),
        ready: AtomicBool::new(true),
        draining: AtomicBool::new(false),
        inflight: Arc::default(),
        token: token.map(str::to_string),
        advertise_host: "127.0.0.1".into(),
        port: 8000,
        max_body: 1024,
        max_upload: 4096,
        request_timeout: Duration::from_millis(200),
    };
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
