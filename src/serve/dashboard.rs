//! The dashboard: `GET /-/ui`, a single page embedded in the binary (plain JavaScript and inline
//! SVG, no library, no build step), and `GET /-/state`, the document it polls beside
//! `/-/routes` and `/-/traces` (docs/dashboard.md).
//!
//! The page and its two assets are static and hold no data. Everything it shows comes from the
//! JSON endpoints, so it is as scriptable as the page. `/-/state` is read-only and, like `PUT`
//! and `DELETE`, needs `Authorization: Bearer <token>` when a token is configured, unless the
//! request comes from a loopback address and names a loopback host (`Host: localhost:8000`, not
//! a name a local reverse proxy relays); the page asks for the token then.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::guard::{Connection, Guard};
use super::http::{authorized, AppState, ProxyError};
use super::runner::Runner;
use super::state::{Proposal, Proposer};
use super::traces::Recorder;
use crate::optimize;

const INDEX_HTML: &str = include_str!("ui/index.html");
const DASHBOARD_JS: &str = include_str!("ui/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("ui/dashboard.css");

/// The page's content security policy: its own script and style only, data from serve only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The dashboard's routes, merged into the proxy's router: `/-/ui`, its assets, `/-/state`.
pub(super) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/-/state", get(state_document))
        .route("/-/ui", get(page))
        .route("/-/ui/", get(to_page))
        .route("/-/ui/{asset}", get(asset))
        .with_state(state)
}

/// For the `static` optimizer (no loop posts proposals): what `fusionizer optimize` would propose
/// now from the traces recorded so far, the live grouping and `[optimizer] min-calls`; `None`
/// when that is the live grouping.
pub(super) fn static_proposer(runner: &Arc<Runner>, traces: Arc<Recorder>) -> Proposer {
    // Weak: the runner holds the state that holds this.
    let runner = Arc::downgrade(runner);
    Box::new(move || {
        let runner = runner.upgrade()?;
        let live = runner.grouping().ok()?;
        let specs = runner.specs();
        let workspace = runner.workspace();
        let config = &workspace.config;
        let document = traces.document();
        let proposal = optimize::propose(
            optimize::Input {
                project: &config.project.name,
                specs: &specs,
                current: &live,
                traces: &document,
            },
            optimize::Options {
                min_calls: config.optimizer.min_calls,
            },
        );
        if !proposal.changed() {
            return None;
        }
        let mut reasons = vec![optimize::render::gain_line(&proposal.gain)];
        reasons.extend(proposal.edges.iter().map(|edge| {
            format!(
                "{} → {} ({}, {} call(s), {}): {}",
                edge.caller,
                edge.callee,
                edge.mode,
                edge.calls,
                edge.decision.word(),
                edge.reason
            )
        }));
        reasons.extend(
            proposal
                .tasks
                .iter()
                .map(|note| format!("{}: {}", note.task, note.reason)),
        );
        Some(Proposal {
            before: proposal.current,
            after: proposal.proposed,
            reasons,
        })
    })
}

/// `GET /-/ui`: the page.
async fn page() -> Response {
    asset_response(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /-/ui/`: to the page (relative, so that a path prefix in front of serve is kept).
async fn to_page() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, "../ui")],
    )
        .into_response()
}

/// `GET /-/ui/<asset>`: the page's script and style sheet.
async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "dashboard.js" => asset_response(DASHBOARD_JS, "text/javascript; charset=utf-8"),
        "dashboard.css" => asset_response(DASHBOARD_CSS, "text/css; charset=utf-8"),
        _ => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such dashboard file; the dashboard is at /-/ui\n",
        )
            .into_response(),
    }
}

fn asset_response(body: &'static str, content_type: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            // Served from the binary: a new build may change it, so always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// `GET /-/state`: the state document (docs/state.schema.json).
async fn state_document(
    State(app): State<Arc<AppState>>,
    connection: Option<axum::Extension<Connection>>,
    headers: HeaderMap,
) -> Response {
    if let Err(error) = may_read(&app, connection.map(|c| c.0), &headers) {
        return error.into_response();
    }
    let document = super::state::document(
        &app.board,
        &app.routes.current(),
        app.ready.load(Ordering::SeqCst),
        app.draining.load(Ordering::SeqCst),
    );
    let mut response = axum::Json(document).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Reading serve's state needs the token when one is configured, unless the request comes from
/// a loopback address (the machine serve runs on) and names a loopback host
/// ([`Guard::is_local`]). A request whose peer is unknown needs it.
fn may_read(
    app: &AppState,
    connection: Option<Connection>,
    headers: &HeaderMap,
) -> Result<(), ProxyError> {
    if Guard::is_local(headers, connection) {
        Ok(())
    } else {
        authorized(app, headers)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime};

    use std::net::SocketAddr;

    use axum::body::{to_bytes, Body};
    use tower::ServiceExt;

    use super::*;
    use crate::platform::memory::MemoryPlatform;
    use crate::serve::http::{AppState, Control};
    use crate::serve::runner::error::RunnerError;
    use crate::serve::state::{Setup, Transition};

    struct ReadOnly;

    #[async_trait::async_trait]
    impl Control for ReadOnly {
        async fn upload(&self, _: &str, _: axum::body::Bytes) -> Result<String, RunnerError> {
            unreachable!("the dashboard never uploads")
        }
        async fn remove(&self, _: &str) -> Result<String, RunnerError> {
            unreachable!("the dashboard never removes")
        }
        fn is_known(&self, _: &str) -> bool {
            false
        }
    }

    fn app(token: Option<&str>) -> Arc<AppState> {
        let state = AppState::for_tests(token, Duration::from_secs(1), 16);
        Arc::new(state)
    }

    /// A peer that is not loopback, as a mocked connection reports it: nothing connects to it.
    /// TEST-NET-1 (RFC 5737), reserved for documentation and never routed.
    const REMOTE_PEER: &str = "192.0.2.7:5000";

    async fn get(
        app: &Arc<AppState>,
        uri: &str,
        peer: Option<&str>,
        auth: Option<&str>,
    ) -> (u16, axum::http::HeaderMap, String) {
        get_as(app, "127.0.0.1:8000", uri, peer, auth).await
    }

    async fn get_as(
        app: &Arc<AppState>,
        host: &str,
        uri: &str,
        peer: Option<&str>,
        auth: Option<&str>,
    ) -> (u16, axum::http::HeaderMap, String) {
        let mut router = crate::serve::http::router(app.clone(), Arc::new(ReadOnly))
            .merge(super::router(app.clone()));
        if let Some(peer) = peer {
            router = router.layer(axum::Extension(Connection {
                peer: peer.parse::<SocketAddr>().unwrap(),
                local: "127.0.0.1:8000".parse().unwrap(),
            }));
        }
        let mut request = axum::http::Request::get(uri).header("host", host);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_from_the_binary() {
        let app = app(Some("secret"));
        // The page holds no data: it loads without a token from anywhere.
        let (status, headers, body) = get(&app, "/-/ui", Some(REMOTE_PEER), None).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert!(headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        assert!(body.contains("ui/dashboard.js"), "{body}");
        let (status, headers, body) = get(&app, "/-/ui/dashboard.js", None, None).await;
        assert_eq!(status, 200);
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
        assert!(body.contains("fetch("), "{body}");
        let (status, _, _) = get(&app, "/-/ui/dashboard.css", None, None).await;
        assert_eq!(status, 200);
        // Not a dashboard path at all (and `-` is no task name).
        let (status, _, body) = get(&app, "/-/ui/../../etc/passwd", None, None).await;
        assert_eq!(status, 400, "{body}");
        let (status, _, body) = get(&app, "/-/ui/other.js", None, None).await;
        assert_eq!(status, 404, "{body}");
    }

    #[tokio::test]
    async fn state_needs_the_token_unless_the_request_is_from_loopback() {
        let app = app(Some("secret"));
        for peer in ["127.0.0.1:40000", "[::1]:40000", "[::ffff:127.0.0.1]:40000"] {
            let (status, _, body) = get(&app, "/-/state", Some(peer), None).await;
            assert_eq!(status, 200, "{peer}: {body}");
        }
        for peer in [Some(REMOTE_PEER), None] {
            let (status, headers, body) = get(&app, "/-/state", peer, None).await;
            assert_eq!(status, 401, "{peer:?}: {body}");
            assert_eq!(headers["www-authenticate"], "Bearer");
            assert!(body.contains("Authorization: Bearer"), "{body}");
            let (status, _, _) = get(&app, "/-/state", peer, Some("Bearer wrong")).await;
            assert_eq!(status, 401);
            let (status, _, body) = get(&app, "/-/state", peer, Some("bearer secret")).await;
            assert_eq!(status, 200, "{body}");
        }
        // A loopback peer relaying for another name (a local reverse proxy, or a page that
        // rebound its name to 127.0.0.1 where `allowed-hosts` lets it in) is not local.
        for host in ["serve.example.test", "fusionizer.invalid:8000"] {
            let (status, _, body) =
                get_as(&app, host, "/-/state", Some("127.0.0.1:40000"), None).await;
            assert_eq!(status, 401, "{host}: {body}");
        }
        // Without a configured token, anyone may read.
        let (status, _, _) = get(&self::app(None), "/-/state", Some(REMOTE_PEER), None).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn state_reports_the_schedule_the_workers_tasks_and_transitions() {
        let app = app(None);
        let phase = |after: u64, groups: &[&[&str]]| crate::config::Phase {
            after: Duration::from_secs(after),
            groups: groups
                .iter()
                .map(|g| g.iter().map(|t| (*t).to_string()).collect())
                .collect(),
        };
        app.board.start(Setup {
            project: "shop".into(),
            platform: Arc::new(MemoryPlatform::default()),
            started: SystemTime::now(),
            origin: Instant::now(),
            phases: vec![
                phase(0, &[&["taska"], &["taskb"]]),
                phase(3600, &[&["taska", "taskb"]]),
            ],
            start: Some(0),
            upcoming: vec![(Duration::from_secs(3600), 1)],
            declared: vec!["taska".into(), "taskb".into()],
            optimizer: "static".into(),
            proposer: None,
        });
        app.board.request("taska", 200, Duration::from_millis(3));
        app.board.request("taska", 502, Duration::from_millis(40));
        app.board.transition(
            Some(0),
            Transition::finished("start (phase 1)", Instant::now(), true)
                .switched_after(Duration::from_millis(1500)),
        );
        let (status, headers, body) = get(&app, "/-/state", Some("127.0.0.1:1"), None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["cache-control"], "no-store");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["project"], "shop");
        assert_eq!(doc["platform"], "memory");
        assert_eq!(doc["current_phase"], 1);
        assert_eq!(doc["phases"][1]["after"], "1h");
        assert_eq!(doc["phases"][1]["groups"][0][1], "taskb");
        assert!(doc["phases"][0]["at"].is_string());
        assert_eq!(doc["next_change"]["phase"], 2);
        let left = doc["next_change"]["in_ms"].as_u64().unwrap();
        assert!(left <= 3_600_000 && left > 3_000_000, "{left}");
        let taska = &doc["tasks"][0];
        assert_eq!(taska["task"], "taska");
        assert_eq!(
            (&taska["requests"], &taska["errors"]),
            (&2.into(), &1.into())
        );
        assert!(taska["p99_ms"].as_f64().unwrap() > 30.0, "{taska}");
        // Declared but without a route or a request yet.
        assert_eq!(doc["tasks"][1]["task"], "taskb");
        assert!(doc["tasks"][1]["function"].is_null());
        assert!(doc["tasks"][1]["p50_ms"].is_null());
        assert_eq!(doc["transitions"][0]["reason"], "start (phase 1)");
        assert_eq!(doc["transitions"][0]["switched_after_ms"], 1500.0);
        assert_eq!(doc["optimizer"]["kind"], "static");
        assert!(doc["optimizer"]["proposal"].is_null());
        // A proposal shows as before → after.
        app.board.propose(Some(Proposal {
            before: crate::schedule::Grouping::new([["taska"], ["taskb"]]),
            after: crate::schedule::Grouping::new([["taska", "taskb"]]),
            reasons: vec!["taska → taskb: 2 sync calls".into()],
        }));
        let (_, _, body) = get(&app, "/-/state", Some("127.0.0.1:1"), None).await;
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            doc["optimizer"]["proposal"]["after"],
            serde_json::json!([["taska", "taskb"]])
        );
    }
}
