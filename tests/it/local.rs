//! The local platform against real Python worker processes: deploy and readiness, invocation,
//! crashes and timeouts, failed builds, and `refresh` across two platform instances.
//!
//! The artifacts are built by hand around a stub worker (`fixtures/stub_worker.py`) that speaks
//! the wire protocol but calls a tiny entry module directly, so these tests pin the platform's
//! mechanics independently of the dispatcher. The venv is built once into a shared cache under
//! the target directory (needs `PyPI` the first time).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fusionizer::fuse::Artifact;
use fusionizer::platform::local::LocalPlatform;
use fusionizer::platform::{
    FunctionState, HostOptions, InvokeError, InvokeRequest, InvokeResponse, Invoker, NoProgress,
    Platform, PlatformError,
};
use sha2::{Digest, Sha256};

use crate::support::{local_config, use_shared_cache, wait_for_async};

/// How long a test waits for what the platform does.
const PATIENCE: Duration = Duration::from_secs(30);

const STUB_WORKER: &str = include_str!("fixtures/stub_worker.py");

fn hosted(timeout: Duration) -> Option<HostOptions> {
    Some(HostOptions {
        proxy_url: "http://127.0.0.1:9".to_string(),
        request_timeout: timeout,
    })
}

/// The stub's entry module: `init_context(log)` and `handler(log, meta, body)`.
fn entry(version: &str) -> String {
    format!(
        r#"import json, os, time

VERSION = "{version}"


def init_context(log):
    delay = float(os.environ.get("STUB_INIT_DELAY", "0"))
    if delay:
        time.sleep(delay)
    if os.environ.get("STUB_INIT_FAIL"):
        raise RuntimeError("init failed on purpose")
    marker = os.environ.get("STUB_INIT_MARKER")
    if marker:
        with open(marker + "." + str(os.getpid()), "w") as f:
            f.write("ready")


def handler(log, meta, body):
    text = body.decode()
    if text == "pid":
        return 200, {{}}, str(os.getpid()).encode()
    if text == "meta":
        return 200, {{}}, json.dumps(meta).encode()
    if text == "env":
        return 200, {{}}, os.environ.get("FUSIONIZER_FUNCTION", "").encode()
    if text.startswith("sleep "):
        open(text[len("sleep "):], "w").close()
        time.sleep(60)
    if text == "log":
        log("warn", "a warning from the task", task="taska")
    return 200, {{"X-Version": VERSION, "X-Num": 7}}, ("echo:" + text).encode()
"#
    )
}

struct Spec<'a> {
    name: &'a str,
    version: &'a str,
    env: &'a [(&'a str, &'a str)],
    build_commands: &'a [&'a str],
    workers: usize,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec {
            name: "shop-a",
            version: "v1",
            env: &[],
            build_commands: &[],
            workers: 1,
        }
    }
}

fn artifact(spec: Spec<'_>) -> Artifact {
    let mut yaml = format!(
        "metadata:\n  name: {}\n  labels:\n    fusionizer.io/project: shop\n    fusionizer.io/managed-by: fusionizer\n  annotations:\n    fusionizer.io/tasks: a\nspec:\n  handler: _fusionizer_entry:handler\n",
        spec.name
    );
    if !spec.env.is_empty() {
        yaml.push_str("  env:\n");
        for (k, v) in spec.env {
            yaml.push_str(&format!("    - name: {k}\n      value: {v:?}\n"));
        }
    }
    let files: BTreeMap<String, Vec<u8>> = [
        ("function.yaml", yaml.clone().into_bytes()),
        ("_fusionizer_entry.py", entry(spec.version).into_bytes()),
        ("fusionizer_dispatcher/__init__.py", Vec::new()),
        (
            "fusionizer_dispatcher/worker.py",
            STUB_WORKER.as_bytes().to_vec(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut hasher = Sha256::new();
    for (path, bytes) in &files {
        hasher.update(path.as_bytes());
        hasher.update(bytes);
    }
    Artifact {
        name: spec.name.to_string(),
        tasks: vec!["a".to_string()],
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        task_digests: BTreeMap::new(),
        function_yaml: yaml,
        num_workers: spec.workers,
        build_commands: spec
            .build_commands
            .iter()
            .map(ToString::to_string)
            .collect(),
        build_rewrites: Vec::new(),
        files,
    }
}

fn request(body: &str) -> InvokeRequest {
    InvokeRequest {
        task: "a".to_string(),
        method: "POST".to_string(),
        path: "/".to_string(),
        query: String::new(),
        headers: vec![("Content-Type".to_string(), "text/plain".to_string())],
        body: Bytes::from(body.to_string()),
    }
}

async fn call(invoker: &Arc<dyn Invoker>, body: &str) -> Result<InvokeResponse, InvokeError> {
    invoker.invoke(request(body)).await
}

fn text(response: &InvokeResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

fn header<'a>(response: &'a InvokeResponse, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn files_starting_with(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(prefix)
        })
        .count()
}

#[tokio::test]
async fn apply_mode_deploy_waits_for_every_init_context_and_records_the_function() {
    use_shared_cache();
    let temp = tempfile::tempdir().unwrap();
    let marker = temp.path().join("init-done");
    let marker_env = marker.to_string_lossy().into_owned();
    let platform = LocalPlatform::new(&local_config(temp.path()), None).unwrap();
    let artifact = artifact(Spec {
        env: &[
            ("STUB_INIT_DELAY", "0.3"),
            ("STUB_INIT_MARKER", &marker_env),
        ],
        workers: 2,
        ..Spec::default()
    });
    platform.deploy(&artifact, &NoProgress).await.unwrap();

    // Both workers finished init_context before deploy returned.
    assert_eq!(files_starting_with(temp.path(), "init-done."), 2);
    let live = platform.get("shop-a").await.unwrap().expect("recorded");
    assert_eq!(live.state, FunctionState::Ready);
    assert_eq!(
        live.digest(),
        None,
        "no digest annotation in this hand-made yaml"
    );
    assert_eq!(
        live.config_yaml.as_deref(),
        Some(artifact.function_yaml.as_str())
    );
    assert!(temp
        .path()
        .join(".fusionizer/local/functions/shop-a/artifact/_fusionizer_entry.py")
        .is_file());
    let listed = platform.list("shop").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(platform.list("other").await.unwrap().is_empty());
    assert!(platform.get("shop-missing").await.unwrap().is_none());
    assert!(platform.identity().starts_with("local:"));
    assert!(platform.identity().ends_with(".fusionizer/local"));
    assert!(
        platform.worker_pids("shop-a").is_empty(),
        "apply mode keeps nothing running"
    );

    platform.delete("shop-a", false).await.unwrap();
    assert!(platform.get("shop-a").await.unwrap().is_none());
    platform.delete("shop-a", false).await.unwrap();
}

#[tokio::test]
async fn hosted_deploy_answers_requests_with_the_handlers_result() {
    use_shared_cache();
    let temp = tempfile::tempdir().unwrap();
    let platform =
        LocalPlatform::new(&local_config(temp.path()), hosted(Duration::from_secs(30))).unwrap();
    platform
        .deploy(
            &artifact(Spec {
                workers: 2,
                ..Spec::default()
            }),
            &NoProgress,
        )
        .await
        .unwrap();
    let invoker = platform.invoker("shop-a").await.unwrap();

    let response = call(&invoker, "hello").await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(text(&response), "echo:hello");
    assert_eq!(header(&response, "X-Version"), Some("v1"));
    assert_eq!(header(&response, "X-Num"), Some("7"));
    assert_eq!(header(&response, "Content-Type"), Some("text/plain"));

    let mut req = request("meta");
    req.query = "a=1&b=two%20words".to_string();
    req.path = "/sub".to_string();
    let meta: serde_json::Value =
        serde_json::from_slice(&invoker.invoke(req).await.unwrap().body).unwrap();
    assert_eq!(meta["fields"]["b"], "two words");
    assert_eq!(meta["path"], "/sub");
    assert_eq!(meta["content_type"], "text/plain");
    assert_eq!(text(&call(&invoker, "env").await.unwrap()), "shop-a");

    // Concurrent requests spread over both workers and all succeed.
    let answers = futures_util::future::join_all((0..20).map(|i| {
        let invoker = invoker.clone();
        async move { text(&call(&invoker, &format!("n{i}")).await.unwrap()) }
    }))
    .await;
    assert_eq!(answers[19], "echo:n19");
    assert_eq!(platform.worker_pids("shop-a").iter().flatten().count(), 2);
    platform.shutdown().await;
    assert!(matches!(
        call(&invoker, "hello").await,
        Err(InvokeError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn a_killed_worker_fails_its_request_with_crashed_and_the_next_requests_succeed() {
    use_shared_cache();
    let temp = tempfile::tempdir().unwrap();
    let platform =
        LocalPlatform::new(&local_config(temp.path()), hosted(Duration::from_secs(30))).unwrap();
    platform
        .deploy(&artifact(Spec::default()), &NoProgress)
        .await
        .unwrap();
    let invoker = platform.invoker("shop-a").await.unwrap();
    let pid = text(&call(&invoker, "pid").await.unwrap());

    let busy = temp.path().join("busy");
    let slow = {
        let invoker = invoker.clone();
        let body = format!("sleep {}", busy.display());
        tokio::spawn(async move { invoker.invoke(request(&body)).await })
    };
    wait_for_async("the handler to start", PATIENCE, || busy.exists()).await;
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(killed.success());

    match slow.await.unwrap() {
        Err(InvokeError::Crashed { function, reason }) => {
            assert_eq!(function, "shop-a");
            assert!(reason.contains(&format!("pid {pid}")), "{reason}");
            assert!(reason.contains("signal 9"), "{reason}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    // The next requests wait for the restarted worker and succeed.
    let new_pid = text(&call(&invoker, "pid").await.unwrap());
    assert_ne!(new_pid, pid);
    assert_eq!(text(&call(&invoker, "again").await.unwrap()), "echo:again");
    assert_eq!(platform.worker_restarts(), 1);
    platform.shutdown().await;
}

#[tokio::test]
async fn a_request_that_times_out_kills_its_worker_and_later_requests_succeed() {
    use_shared_cache();
    let temp = tempfile::tempdir().unwrap();
    let platform = LocalPlatform::new(
        &local_config(temp.path()),
        hosted(Duration::from_millis(500)),
    )
    .unwrap();
    platform
        .deploy(&artifact(Spec::default()), &NoProgress)
        .await
        .unwrap();
    let invoker = platform.invoker("shop-a").await.unwrap();
    let pid = text(&call(&invoker, "pid").await.unwrap());
    let busy = temp.path().join("busy");
    let result = call(&invoker, &format!("sleep {}", busy.display())).await;
    assert!(
        matches!(result, Err(InvokeError::Timeout { .. })),
        "{result:?}"
    );
    // Restarting takes a moment; poll until a request gets through.
    let mut answer = None;
    for _ in 0..60 {
        if let Ok(response) = call(&invoker, "pid").await {
            answer = Some(text(&response));
            break;
        }
    }
    assert_ne!(answer.expect("the worker came back"), pid);
    assert_eq!(platform.worker_restarts(), 1);
    platform.shutdown().await;
}

#[tokio::test]
async fn a_failing_build_command_is_reported_and_the_previous_version_keeps_answering() {
    use_shared_cache();
    let temp = tempfile::tempdir().unwrap();
    let platform =
        LocalPlatform::new(&local_config(temp.path()), hosted(Duration::from_secs(30))).unwrap();
    let v1 = artifact(Spec::default());
    platform.deploy(&v1, &NoProgress).await.unwrap();
    let invoker = platform.invoker("shop-a").await.unwrap();

    let command = "echo compiling; echo 'no such package: frobnicate' >&2; exit 3";
    let err = platform
        .deploy(
            &artifact(Spec {
                version: "v2",
                build_commands: &[command],
                ..Spec::default()
            }),
            &NoProgress,
        )
        .await
        .unwrap_err();
    match &err {
        PlatformError::Deploy {
            function,
            message,
            detail,
        } => {
            assert_eq!(function, "shop-a");
            assert!(message.contains(command), "{message}");
            assert!(message.contains("exited 3"), "{message}");
            let detail = detail.as_deref().unwrap();
            assert!(detail.contains("| compiling"), "{detail}");
            assert!(detail.contains("| no such package: frobnicate"), "{detail}");
        }
        other => panic!("expected a deploy error, got {other:?}"),
    }
    let live = platform.get("shop-a").await.unwrap().unwrap();
    assert_eq!(live.config_yaml.as_deref(), Some(v1.function_yaml.as_str()));
    let response = call(&invoker, "still").await.unwrap();
    assert_eq!(header(&response, "X-Version"), Some("v1"));
    platform.shutdown().await;
}

/// Issue 21: the error is one line naming the task and what failed (here from a worker that
/// sends no summary: the traceback's last line); the traceback is logged, not carried.
#[tokio::test]
async fn a_failing_init_context_is_a_one_line_deploy_error() {
    use_shared_cache();
    let temp = tempfile::tempdir().unwrap();
    let platform = LocalPlatform::new(&local_config(temp.path()), None).unwrap();
    let err = platform
        .deploy(
            &artifact(Spec {
                env: &[("STUB_INIT_FAIL", "1")],
                ..Spec::default()
            }),
            &NoProgress,
        )
        .await
        .unwrap_err();
    let PlatformError::Deploy {
        message, detail, ..
    } = &err
    else {
        panic!("expected a deploy error, got {err:?}");
    };
    assert_eq!(message, "task `stub`: RuntimeError: init failed on purpose");
    assert_eq!(detail, &None);
    assert!(platform.get("shop-a").await.unwrap().is_none());
}

#[tokio::test]
async fn refresh_follows_deploys_and_deletes_made_by_another_instance() {
    use_shared_cache();
    let temp = tempfile::tempdir().unwrap();
    let serve =
        LocalPlatform::new(&local_config(temp.path()), hosted(Duration::from_secs(30))).unwrap();
    let apply = LocalPlatform::new(&local_config(temp.path()), None).unwrap();
    assert_eq!(serve.identity(), apply.identity());

    apply
        .deploy(&artifact(Spec::default()), &NoProgress)
        .await
        .unwrap();
    serve.refresh().await.unwrap();
    assert_eq!(serve.worker_pids("shop-a").iter().flatten().count(), 1);
    let invoker = serve.invoker("shop-a").await.unwrap();
    let response = call(&invoker, "x").await.unwrap();
    assert_eq!(header(&response, "X-Version"), Some("v1"));

    apply
        .deploy(
            &artifact(Spec {
                version: "v2",
                ..Spec::default()
            }),
            &NoProgress,
        )
        .await
        .unwrap();
    serve.refresh().await.unwrap();
    // The invoker handed out before follows the new version.
    let response = call(&invoker, "x").await.unwrap();
    assert_eq!(header(&response, "X-Version"), Some("v2"));
    // Unchanged state: refresh is a no-op and keeps the same workers.
    let pids = serve.worker_pids("shop-a");
    serve.refresh().await.unwrap();
    assert_eq!(serve.worker_pids("shop-a"), pids);

    apply.delete("shop-a", false).await.unwrap();
    serve.refresh().await.unwrap();
    assert!(matches!(
        call(&invoker, "x").await,
        Err(InvokeError::Unavailable { .. })
    ));
    serve.shutdown().await;
    // Every version was collected once nothing ran it.
    let store = temp.path().join(".fusionizer/local/store");
    assert_eq!(files_starting_with(&store, "shop-a"), 0);
}

/// Captures `tracing` output of the current thread (the tests' runtime is single-threaded, so
/// the worker reader tasks log on it too).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn the_fused_quickstart_runs_on_the_real_dispatcher_and_its_logs_reach_tracing() {
    use_shared_cache();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let temp = tempfile::tempdir().unwrap();
    let tasks = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/tasks");
    let a = fusionizer::config::TaskSpec::load("taska", &tasks.join("taska")).unwrap();
    let b = fusionizer::config::TaskSpec::load("taskb", &tasks.join("taskb")).unwrap();
    let artifact = fusionizer::fuse::fuse_group("quickstart", &[&a, &b]).unwrap();
    let platform =
        LocalPlatform::new(&local_config(temp.path()), hosted(Duration::from_secs(30))).unwrap();
    platform.deploy(&artifact, &NoProgress).await.unwrap();
    let live = platform.get(&artifact.name).await.unwrap().unwrap();
    assert_eq!(live.digest(), Some(artifact.digest.as_str()));
    assert_eq!(live.tasks(), vec!["taska", "taskb"]);

    let invoker = platform.invoker(&artifact.name).await.unwrap();
    // Nothing listens on the advertised proxy port: the answer proves the call ran in-process.
    let response = invoker
        .invoke(InvokeRequest {
            task: "taska".to_string(),
            method: "POST".to_string(),
            path: "/".to_string(),
            query: String::new(),
            headers: vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                (
                    "Fusionizer-Server-Address".to_string(),
                    "127.0.0.1".to_string(),
                ),
                ("Fusionizer-Server-Port".to_string(), "9".to_string()),
            ],
            body: Bytes::from_static(br#"{"value1": 3, "value2": 4}"#),
        })
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", text(&response));
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body, serde_json::json!({"result": 7}));

    let mut unknown = request("{}");
    unknown.task = "nope".to_string();
    assert_eq!(invoker.invoke(unknown).await.unwrap().status, 404);
    platform.shutdown().await;

    let logs = captured.text();
    let line = logs
        .lines()
        .find(|l| l.contains("taskb answered"))
        .unwrap_or_else(|| panic!("the task's log line is missing from:\n{logs}"));
    assert!(line.contains("INFO fusionizer::task"), "{line}");
    assert!(line.contains(r#"task="taska""#), "{line}");
    assert!(
        line.contains(r#"function="quickstart-taska-taskb""#),
        "{line}"
    );
}

/// Rough per-request cost of the invoker against the stub worker (not a benchmark: no
/// assertion on time). Run with `cargo test --test it local::invoker_round_trip -- --ignored
/// --nocapture`.
#[tokio::test]
#[ignore = "measurement, prints timings"]
async fn invoker_round_trip_cost() {
    use_shared_cache();
    let temp = tempfile::tempdir().unwrap();
    let platform =
        LocalPlatform::new(&local_config(temp.path()), hosted(Duration::from_secs(30))).unwrap();
    platform
        .deploy(&artifact(Spec::default()), &NoProgress)
        .await
        .unwrap();
    let stub = platform.invoker("shop-a").await.unwrap();
    measure("stub worker", &stub, request("x")).await;

    // The real dispatcher with the quickstart's trivial `taskb`.
    let tasks = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/tasks");
    let b = fusionizer::config::TaskSpec::load("taskb", &tasks.join("taskb")).unwrap();
    let artifact = fusionizer::fuse::fuse_group("quickstart", &[&b]).unwrap();
    platform.deploy(&artifact, &NoProgress).await.unwrap();
    let real = platform.invoker(&artifact.name).await.unwrap();
    let mut add = request(r#"{"value1": 1, "value2": 2}"#);
    add.task = "taskb".to_string();
    add.headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    measure("real dispatcher", &real, add).await;
    platform.shutdown().await;
}

async fn measure(what: &str, invoker: &Arc<dyn Invoker>, request: InvokeRequest) {
    for _ in 0..200 {
        assert_eq!(invoker.invoke(request.clone()).await.unwrap().status, 200);
    }
    let mut samples = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let start = std::time::Instant::now();
        invoker.invoke(request.clone()).await.unwrap();
        samples.push(start.elapsed());
    }
    samples.sort();
    let pct = |p: usize| samples[samples.len() * p / 100];
    println!(
        "{what}: invoke round trip over {} requests: p50 {:?}, p90 {:?}, p99 {:?}",
        samples.len(),
        pct(50),
        pct(90),
        pct(99)
    );
}

#[tokio::test]
async fn a_hosted_redeploy_under_load_drops_no_request() {
    use_shared_cache();
    let temp = tempfile::tempdir().unwrap();
    let platform = Arc::new(
        LocalPlatform::new(&local_config(temp.path()), hosted(Duration::from_secs(30))).unwrap(),
    );
    let v1 = artifact(Spec {
        workers: 2,
        ..Spec::default()
    });
    platform.deploy(&v1, &NoProgress).await.unwrap();
    let invoker = platform.invoker("shop-a").await.unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let invoker = invoker.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut versions = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let response = call(&invoker, "load").await.expect("no request fails");
                    versions.push(header(&response, "X-Version").unwrap().to_string());
                }
                versions
            })
        })
        .collect();
    let v2 = artifact(Spec {
        version: "v2",
        workers: 2,
        ..Spec::default()
    });
    platform.deploy(&v2, &NoProgress).await.unwrap();
    // The deploy switched the pool before returning: every later request answers from v2.
    let response = call(&invoker, "after").await.unwrap();
    assert_eq!(header(&response, "X-Version"), Some("v2"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = Vec::new();
    for task in load {
        seen.extend(task.await.unwrap());
    }
    assert!(seen.iter().any(|v| v == "v1"), "load started on v1");
    platform.shutdown().await;
}
