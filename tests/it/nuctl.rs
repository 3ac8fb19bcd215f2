//! The `nuctl` platform against the fake nuctl (`tests/fake_nuctl/nuctl`), and the fake itself.
//!
//! Each test gets its own temp dir holding the fake's state and a tiny launcher script that
//! points the fake at it, so tests run in parallel without touching the process environment.
//! The platform is given that launcher as `[nuctl] binary`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fusionizer::config::{
    Config, NuctlConfig, PlatformKind, ProjectConfig, ServeConfig, UrlPreference,
};
use fusionizer::fuse::Artifact;
use fusionizer::platform::nuctl::{Nuctl, NuctlPlatform};
use fusionizer::platform::{
    FunctionState, HostOptions, InvokeError, InvokeRequest, NoProgress, Platform, PlatformError,
};

use crate::support::{sdk_venv_python, FAKE_NUCTL};

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        std::fs::create_dir_all(dir.path().join("project")).unwrap();
        Fake { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A launcher running the fake on this test's state with `env` set.
    fn launcher(&self, env: &[(&str, &str)]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let n = std::fs::read_dir(self.path()).unwrap().count();
        let path = self.path().join(format!("nuctl-{n}"));
        let mut script =
            String::from("#!/bin/sh\nunset KUBECONFIG NUCTL_PLATFORM NUCTL_NAMESPACE\n");
        script.push_str(&format!(
            "FAKE_NUCTL_DIR='{}'\nexport FAKE_NUCTL_DIR\n",
            self.path().join("state").display()
        ));
        for (k, v) in env {
            script.push_str(&format!("{k}='{v}'\nexport {k}\n"));
        }
        script.push_str(&format!("exec '{FAKE_NUCTL}' \"$@\"\n"));
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn config(&self, env: &[(&str, &str)]) -> Config {
        let root = self.path().join("project");
        Config {
            file: root.join("fusion.toml"),
            state_dir: root.join(".fusionizer"),
            overlay: None,
            root,
            project: ProjectConfig {
                name: "shop".into(),
                platform: PlatformKind::Nuctl,
            },
            tasks: BTreeMap::new(),
            phases: Vec::new(),
            serve: ServeConfig::default(),
            nuctl: NuctlConfig {
                binary: self.launcher(env).display().to_string(),
                platform: Some("local".into()),
                ..NuctlConfig::default()
            },
            optimizer: fusionizer::config::OptimizerConfig::default(),
            overrides: Vec::new(),
        }
    }

    fn platform(&self, env: &[(&str, &str)]) -> NuctlPlatform {
        NuctlPlatform::new(&self.config(env), None).unwrap()
    }

    /// Every nuctl command line run so far, temp paths replaced by `[TMP]`.
    fn calls(&self) -> Vec<String> {
        let text =
            std::fs::read_to_string(self.path().join("state/calls.jsonl")).unwrap_or_default();
        let tmp = self.path().display().to_string();
        text.lines()
            .map(|line| {
                let argv: Vec<String> = serde_json::from_str(line).unwrap();
                format!("nuctl {}", argv.join(" ")).replace(&tmp, "[TMP]")
            })
            .collect()
    }
}

/// An artifact like fuse makes one: owned by `shop`, with a function.yaml and an entry module.
fn artifact(tasks: &[&str], port: Option<u16>) -> Artifact {
    let name = format!("shop-{}", tasks.join("-"));
    let attributes = match port {
        Some(p) => format!("\n        port: {p}"),
        None => " {}".to_string(),
    };
    let function_yaml = format!(
        "apiVersion: nuclio.io/v1beta1\nkind: NuclioFunction\nmetadata:\n  name: {name}\n  \
         labels:\n    fusionizer.io/managed-by: fusionizer\n    fusionizer.io/project: shop\n  \
         annotations:\n    fusionizer.io/digest: sha256:0123\n    fusionizer.io/tasks: {}\n\
         spec:\n  runtime: python:3.11\n  handler: _fusionizer_entry:handler\n  env:\n  - name: \
         GREETING\n    value: hello, world=1\n  triggers:\n    http:\n      kind: http\n      \
         name: http\n      numWorkers: 2\n      attributes:{attributes}\n",
        tasks.join(",")
    );
    let mut files = BTreeMap::new();
    files.insert(
        "function.yaml".to_string(),
        function_yaml.clone().into_bytes(),
    );
    files.insert(
        "_fusionizer_entry.py".to_string(),
        b"def handler(context, event):\n    return 'ok'\n".to_vec(),
    );
    Artifact {
        name,
        tasks: tasks.iter().map(ToString::to_string).collect(),
        digest: "sha256:0123".into(),
        task_digests: BTreeMap::new(),
        function_yaml,
        num_workers: 2,
        build_commands: Vec::new(),
        build_rewrites: Vec::new(),
        files,
    }
}

fn render(err: PlatformError) -> String {
    let err: fusionizer::Error = err.into();
    err.render("error:")
}

#[tokio::test]
async fn list_handles_none_one_and_many() {
    let fake = Fake::new();
    let platform = fake.platform(&[]);
    // A listing that matches nothing: nuctl 1.14.1 prints `No functions found\n` and exits 0
    // (pkg/nuctl/command/get.go), which is an empty list, not an error.
    assert_eq!(platform.list("shop").await.unwrap(), vec![]);
    assert_eq!(
        fake.calls(),
        ["nuctl get function -o json -l fusionizer.io/project=shop --platform local".to_string()]
    );

    platform
        .deploy(&artifact(&["a"], None), &NoProgress)
        .await
        .unwrap();
    let one = platform.list("shop").await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].name, "shop-a");
    assert!(one[0].is_owned_by("shop"));
    assert_eq!(one[0].state, FunctionState::Ready);
    assert_eq!(one[0].digest(), Some("sha256:0123"));
    // Labels and annotations came from function.yaml, values with `,` and `=` intact.
    assert_eq!(one[0].tasks(), vec!["a"]);
    let yaml = one[0].config_yaml.as_deref().unwrap();
    assert!(yaml.contains("value: hello, world=1"), "{yaml}");
    assert!(!yaml.contains("timestamp"), "{yaml}");

    platform
        .deploy(&artifact(&["c", "b"], None), &NoProgress)
        .await
        .unwrap();
    let many = platform.list("shop").await.unwrap();
    let names: Vec<&str> = many.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["shop-a", "shop-c-b"]);
    assert_eq!(platform.list("other").await.unwrap(), vec![]);
}

/// The live-state annotations serve stamps on a function (who owns the grouping, the schedule's
/// origin, the uploaded tasks) reach Nuclio in function.yaml and come back from `nuctl get`:
/// nuctl 1.14.1 keeps `metadata.annotations` of the `--file` config and merges its
/// `--annotations` flag into them (pkg/nuctl/command/deploy.go, "decode annotations"), and
/// `get -o json` renders each function's config with its metadata
/// (pkg/nuctl/command/common/renderers.go, `RenderFunctions`).
#[tokio::test]
async fn live_state_annotations_survive_a_deploy_and_come_back_from_get() {
    use fusionizer::platform::owner::{
        live_owner, uploaded_annotation, uploaded_tasks, GroupingOwner,
    };
    let fake = Fake::new();
    let platform = fake.platform(&[]);
    let owner = GroupingOwner::Schedule {
        origin: "2026-12-07T21:00:00.000Z".to_string(),
    };
    let mut stamps = owner.annotations();
    stamps.extend(uploaded_annotation(&["a".to_string()]));
    let mut stamped = artifact(&["a"], None);
    fusionizer::fuse::metadata::stamp(&mut stamped, &stamps);
    platform.deploy(&stamped, &NoProgress).await.unwrap();
    let live = platform.list("shop").await.unwrap();
    assert_eq!(live_owner(&live), Some(owner));
    assert_eq!(uploaded_tasks(&live[0]), ["a"]);
    assert_eq!(live[0].digest(), Some("sha256:0123"));
}

#[tokio::test]
async fn get_returns_unowned_functions_and_none_for_missing() {
    let fake = Fake::new();
    let platform = fake.platform(&[]);
    assert_eq!(platform.get("shop-a").await.unwrap(), None);
    let mut foreign = artifact(&["a"], None);
    foreign.function_yaml = foreign
        .function_yaml
        .replace("fusionizer.io/project: shop", "team: billing");
    foreign.files.insert(
        "function.yaml".into(),
        foreign.function_yaml.clone().into_bytes(),
    );
    platform.deploy(&foreign, &NoProgress).await.unwrap();
    // Nuclio's Docker platform ignores the `fusionizer.io/project` selector
    // (pkg/platform/local/client/store.go): the listing holds the foreign function, and only
    // the client-side ownership check keeps it out.
    let calls = fake.calls();
    assert_eq!(platform.list("shop").await.unwrap(), vec![]);
    assert_eq!(
        fake.calls()[calls.len()..],
        ["nuctl get function -o json -l fusionizer.io/project=shop --platform local".to_string()]
    );
    let live = platform.get("shop-a").await.unwrap().unwrap();
    assert!(!live.is_owned_by("shop"));
    assert_eq!(live.labels.get("team").map(String::as_str), Some("billing"));
    // Neither the listing, a refresh nor a look-up by name lets an invocation reach it.
    platform.refresh().await.unwrap();
    let err = platform
        .invoker("shop-a")
        .await
        .unwrap()
        .invoke(request(""))
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::Unavailable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("not owned by fusionizer project `shop`"),
        "{err}"
    );
}

/// An artifact of `tasks` whose function is called `name`, as a hand-made artifact could be.
fn artifact_named(name: &str, tasks: &[&str]) -> Artifact {
    let mut a = artifact(tasks, None);
    a.function_yaml = a.function_yaml.replace(&a.name, name);
    a.files
        .insert("function.yaml".into(), a.function_yaml.clone().into_bytes());
    a.name = name.to_string();
    a
}

#[tokio::test]
async fn a_name_over_56_characters_is_refused_before_nuctl_runs() {
    // On kube, Nuclio names the Service `nuclio-<function>` (pkg/platform/kube/types.go), a
    // 63-character DNS label: 57 to 63 characters fail late, over 63 nuctl waits forever.
    let fake = Fake::new();
    let mut config = fake.config(&[]);
    config.nuctl.platform = Some("kube".into());
    config.nuctl.namespace = Some("nuclio".into());
    let platform = NuctlPlatform::new(&config, None).unwrap();
    for length in [57, 64] {
        let name = format!("shop-{}", "a".repeat(length - 5));
        let err = platform
            .deploy(&artifact_named(&name, &["a"]), &NoProgress)
            .await
            .unwrap_err();
        let text = render(err);
        assert!(
            text.contains(&format!("deploying `{name}` failed")),
            "{text}"
        );
        assert!(
            text.contains(&format!("its name has {length} characters")),
            "{text}"
        );
        assert!(text.contains("at most 56"), "{text}");
        assert!(text.contains("`nuclio-<function>`"), "{text}");
        // `replace` refuses before deleting anything.
        platform
            .replace(&artifact_named(&name, &["a"]), &NoProgress)
            .await
            .unwrap_err();
    }
    assert_eq!(fake.calls(), Vec::<String>::new());
    // 56 characters deploy.
    let name = format!("shop-{}", "a".repeat(51));
    platform
        .deploy(&artifact_named(&name, &["a"]), &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        platform.get(&name).await.unwrap().unwrap().state,
        FunctionState::Ready
    );
}

#[tokio::test]
async fn deploy_creates_the_nuclio_project_first_and_runs_these_commands() {
    let fake = Fake::new();
    let mut config = fake.config(&[]);
    config.nuctl = NuctlConfig {
        platform: Some("kube".into()),
        namespace: Some("nuclio".into()),
        kubeconfig: Some("/home/ci/.kube/config".into()),
        registry: Some("localhost:5000".into()),
        run_registry: Some("registry.local:5000".into()),
        project: Some("shop".into()),
        readiness_timeout: Duration::from_secs(90),
        invocation_url: UrlPreference::Internal,
        ..config.nuctl
    };
    let platform = NuctlPlatform::new(&config, None).unwrap();
    platform
        .deploy(&artifact(&["a"], None), &NoProgress)
        .await
        .unwrap();
    platform
        .deploy(&artifact(&["b"], None), &NoProgress)
        .await
        .unwrap();
    platform.list("shop").await.unwrap();
    platform.delete("shop-a", false).await.unwrap();
    assert!(platform.build_dir("shop-b").join("function.yaml").is_file());
    assert!(platform
        .build_dir("shop-b")
        .join("_fusionizer_entry.py")
        .is_file());
    insta::assert_snapshot!(fake.calls().join("\n"));
}

#[tokio::test]
async fn the_default_nuclio_project_is_never_created() {
    let fake = Fake::new();
    let mut config = fake.config(&[]);
    config.nuctl.project = Some("default".into());
    let platform = NuctlPlatform::new(&config, None).unwrap();
    platform
        .deploy(&artifact(&["a"], None), &NoProgress)
        .await
        .unwrap();
    let calls = fake.calls();
    assert!(
        calls.iter().all(|c| !c.contains("project shop")),
        "{calls:#?}"
    );
    assert!(
        calls.iter().any(|c| c.contains("--project-name default")),
        "{calls:#?}"
    );
}

#[tokio::test]
async fn delete_is_idempotent() {
    let fake = Fake::new();
    let platform = fake.platform(&[]);
    platform.delete("shop-a", false).await.unwrap();
    platform
        .deploy(&artifact(&["a"], None), &NoProgress)
        .await
        .unwrap();
    platform.delete("shop-a", false).await.unwrap();
    platform.delete("shop-a", false).await.unwrap();
    assert_eq!(platform.get("shop-a").await.unwrap(), None);
}

#[tokio::test]
async fn a_function_stuck_provisioning_is_reported_and_replaced_with_force() {
    let fake = Fake::new();
    let stuck = fake.platform(&[("FAKE_NUCTL_STUCK", "shop-a")]);
    let err = stuck
        .deploy(&artifact(&["a"], None), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::Deploy { .. }), "{err:?}");

    let platform = fake.platform(&[]);
    let live = platform.get("shop-a").await.unwrap().unwrap();
    assert_eq!(live.state, FunctionState::Provisioning("building".into()));
    assert!(live.state.needs_replacement().is_some());

    let err = platform
        .deploy(&artifact(&["a"], None), &NoProgress)
        .await
        .unwrap_err();
    insta::assert_snapshot!("stuck_deploy", render(err));

    let err = platform.delete("shop-a", false).await.unwrap_err();
    let text = render(err);
    assert!(
        text.contains("Function is being provisioned and cannot be deleted"),
        "{text}"
    );

    let before = fake.calls().len();
    platform
        .replace(&artifact(&["a"], None), &NoProgress)
        .await
        .unwrap();
    let calls = fake.calls();
    assert_eq!(
        calls[before],
        "nuctl delete function shop-a --force --platform local"
    );
    let live = platform.get("shop-a").await.unwrap().unwrap();
    assert_eq!(live.state, FunctionState::Ready);
}

#[tokio::test]
async fn a_failed_deploy_surfaces_nuctl_stderr_framed() {
    let fake = Fake::new();
    let platform = fake.platform(&[("FAKE_NUCTL_FAIL_DEPLOY", "shop-a")]);
    let err = platform
        .deploy(&artifact(&["a"], None), &NoProgress)
        .await
        .unwrap_err();
    let err: fusionizer::Error = err.into();
    assert_eq!(err.code, fusionizer::ExitCode::Failure);
    let tmp = fake.path().display().to_string();
    insta::assert_snapshot!(err.render("error:").replace(&tmp, "[TMP]"));
    let live = platform.get("shop-a").await.unwrap().unwrap();
    assert!(matches!(live.state, FunctionState::Error(_)));
}

#[tokio::test]
async fn a_hung_nuctl_is_killed_at_the_timeout() {
    let fake = Fake::new();
    let config = fake.config(&[("FAKE_NUCTL_HANG", "deploy")]);
    let nuctl = Nuctl::new(&config.nuctl, None).with_timeout(Duration::from_secs(3));
    let platform = NuctlPlatform::with_nuctl(&config, None, nuctl).unwrap();
    let err = platform
        .deploy(&artifact(&["a"], None), &NoProgress)
        .await
        .unwrap_err();
    let text = render(err);
    assert!(text.contains("did not finish within 3s"), "{text}");
    // The interrupted deploy leaves the function stuck, as a real one does (nuclio#3013).
    let live = fake.platform(&[]).get("shop-a").await.unwrap().unwrap();
    assert_eq!(live.state, FunctionState::Provisioning("building".into()));
}

#[tokio::test]
async fn no_nuctl_is_unavailable_with_an_install_hint() {
    let fake = Fake::new();
    let mut config = fake.config(&[]);
    config.nuctl.binary = fake.path().join("missing/nuctl").display().to_string();
    let platform = NuctlPlatform::new(&config, None).unwrap();
    let err = platform.list("shop").await.unwrap_err();
    assert!(matches!(err, PlatformError::Unavailable { .. }), "{err:?}");
    let err: fusionizer::Error = err.into();
    assert_eq!(err.code, fusionizer::ExitCode::Unavailable);
    let tmp = fake.path().display().to_string();
    insta::assert_snapshot!(err.render("error:").replace(&tmp, "[TMP]"));
}

#[test]
fn the_fake_rejects_flags_nuctl_does_not_have() {
    let fake = Fake::new();
    let run = |args: &[&str]| {
        std::process::Command::new(FAKE_NUCTL)
            .args(args)
            .env("FAKE_NUCTL_DIR", fake.path().join("state"))
            .output()
            .unwrap()
    };
    let out = run(&["get", "function", "--foo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "\nError - unknown flag: --foo\nCall stack:\nunknown flag: --foo\n"
    );
    // Flags that do not exist in 1.14.1 (reference §1), and a flag of another command.
    for args in [
        &["deploy", "f", "--no-build"][..],
        &["deploy", "f", "--port", "8080"],
        &["delete", "function", "f", "--output", "json"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unknown flag"),
            "{args:?}"
        );
    }
    let out = run(&["get", "function", "missing", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "No functions found");
    assert!(out.stderr.is_empty());
    let out = run(&["delete", "fn", "missing", "-f"]);
    assert_eq!(out.status.code(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// Invocations go to the function's URL over HTTP, never through nuctl.

/// An HTTP server on 127.0.0.1 that answers with what it received.
async fn echo_server(tag: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    echo_server_on(listener, tag)
}

/// [`echo_server`] on a port of Kubernetes' `NodePort` range (30000-32767), which the fake then
/// reports as the function's node port (pkg/platform/kube/functionres/lazy.go).
async fn node_port_echo_server(tag: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    for port in (30000..=32767).rev() {
        if let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            return echo_server_on(listener, tag);
        }
    }
    panic!("no free port in 30000-32767 on 127.0.0.1");
}

fn echo_server_on(
    listener: tokio::net::TcpListener,
    tag: &'static str,
) -> (u16, tokio::task::JoinHandle<()>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, Uri};
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
            let mut names: Vec<String> = headers
                .iter()
                .filter(|(n, _)| {
                    ["task-name", "x-nuclio-target", "x-custom", "connection"].contains(&n.as_str())
                })
                .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
                .collect();
            names.sort();
            (
                [("x-server", tag)],
                format!(
                    "{method} {uri} {} {}",
                    names.join(";"),
                    String::from_utf8_lossy(&body)
                ),
            )
        },
    );
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (port, task)
}

fn request(body: &str) -> InvokeRequest {
    InvokeRequest {
        task: "a".into(),
        method: "POST".into(),
        path: "/orders/7".into(),
        query: "x=1&y=2".into(),
        headers: vec![
            ("X-Custom".into(), "yes".into()),
            ("Connection".into(), "close".into()),
            ("Task-Name".into(), "spoofed".into()),
        ],
        body: body.to_string().into(),
    }
}

#[tokio::test]
async fn invocations_use_the_cached_url_without_running_nuctl() {
    let fake = Fake::new();
    let (port, server) = echo_server("one").await;
    let platform = fake.platform(&[]);
    platform
        .deploy(&artifact(&["a"], Some(port)), &NoProgress)
        .await
        .unwrap();
    let invoker = platform.invoker("shop-a").await.unwrap();
    let before = fake.calls().len();
    for i in 0..5 {
        let response = invoker.invoke(request(&format!("body {i}"))).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(
            String::from_utf8_lossy(&response.body),
            format!(
                "POST /orders/7?x=1&y=2 task-name=a;x-custom=yes;x-nuclio-target=shop-a body {i}"
            )
        );
        assert!(response
            .headers
            .iter()
            .any(|(n, v)| n == "x-server" && v == "one"));
    }
    assert_eq!(fake.calls().len(), before, "{:#?}", fake.calls());
    server.abort();
}

#[tokio::test]
async fn a_refused_connection_refreshes_the_url_and_retries_once() {
    let fake = Fake::new();
    let (old_port, old_server) = echo_server("old").await;
    let platform = fake.platform(&[]);
    platform
        .deploy(&artifact(&["a"], Some(old_port)), &NoProgress)
        .await
        .unwrap();
    let invoker = platform.invoker("shop-a").await.unwrap();
    invoker.invoke(request("warm")).await.unwrap();

    // Another process redeploys the function on a new port; the old one goes away.
    let (new_port, new_server) = echo_server("new").await;
    fake.platform(&[])
        .deploy(&artifact(&["a"], Some(new_port)), &NoProgress)
        .await
        .unwrap();
    old_server.abort();
    let _ = old_server.await;

    let before = fake.calls().len();
    let response = invoker.invoke(request("again")).await.unwrap();
    assert!(response
        .headers
        .iter()
        .any(|(n, v)| n == "x-server" && v == "new"));
    assert_eq!(
        fake.calls()[before..],
        ["nuctl get function shop-a -o json --platform local".to_string()]
    );
    new_server.abort();
}

#[tokio::test]
async fn refresh_picks_up_a_redeploy_made_elsewhere() {
    let fake = Fake::new();
    let (first, first_server) = echo_server("first").await;
    let (second, second_server) = echo_server("second").await;
    let platform = fake.platform(&[]);
    platform
        .deploy(&artifact(&["a"], Some(first)), &NoProgress)
        .await
        .unwrap();
    let invoker = platform.invoker("shop-a").await.unwrap();
    let tag = |r: fusionizer::platform::InvokeResponse| {
        r.headers
            .into_iter()
            .find(|(n, _)| n == "x-server")
            .map(|(_, v)| v)
    };
    assert_eq!(
        tag(invoker.invoke(request("")).await.unwrap()).as_deref(),
        Some("first")
    );
    fake.platform(&[])
        .deploy(&artifact(&["a"], Some(second)), &NoProgress)
        .await
        .unwrap();
    // Still cached: the old endpoint answers until refresh.
    assert_eq!(
        tag(invoker.invoke(request("")).await.unwrap()).as_deref(),
        Some("first")
    );
    platform.refresh().await.unwrap();
    assert_eq!(
        tag(invoker.invoke(request("")).await.unwrap()).as_deref(),
        Some("second")
    );
    first_server.abort();
    second_server.abort();
}

/// The fake on kube settings (`--platform kube --namespace nuclio`), with `[nuctl]
/// http-trigger-service-type` set to `service_type`.
fn kube_platform(fake: &Fake, env: &[(&str, &str)], service_type: Option<&str>) -> NuctlPlatform {
    let mut config = fake.config(env);
    config.nuctl.platform = Some("kube".into());
    config.nuctl.namespace = Some("nuclio".into());
    config.nuctl.http_trigger_service_type = service_type.map(str::to_string);
    NuctlPlatform::new(&config, None).unwrap()
}

#[tokio::test]
async fn a_node_port_without_a_host_is_unavailable_on_kube_with_the_settings_named() {
    // The default Helm chart leaves NUCLIO_CONTROLLER_EXTERNAL_IP_ADDRESSES empty, so a NodePort
    // function's external URL is `:<nodePort>`
    // (pkg/platform/kube/controller/nucliofunction.go `populateFunctionInvocationStatus`).
    let fake = Fake::new();
    let platform = kube_platform(&fake, &[], Some("NodePort"));
    platform
        .deploy(&artifact(&["a"], None), &NoProgress)
        .await
        .unwrap();
    let calls = fake.calls();
    assert!(
        calls.iter().any(|c| c.starts_with("nuctl deploy shop-a ")
            && c.contains(" --http-trigger-service-type NodePort")),
        "{calls:#?}"
    );
    let err = platform
        .invoker("shop-a")
        .await
        .unwrap()
        .invoke(request(""))
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::Unavailable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("only node port 30000"), "{text}");
    assert!(
        text.contains("NUCLIO_CONTROLLER_EXTERNAL_IP_ADDRESSES"),
        "{text}"
    );
    assert!(text.contains("invocation-url = \"internal\""), "{text}");
}

#[tokio::test]
async fn a_node_port_at_the_controllers_external_address_is_reached() {
    // With the controller's external IP addresses set, the URL is `<ip>:<nodePort>`.
    let fake = Fake::new();
    let (port, server) = node_port_echo_server("node").await;
    let platform = kube_platform(
        &fake,
        &[("FAKE_NUCTL_CONTROLLER_EXTERNAL_IP_ADDRESSES", "127.0.0.1")],
        Some("NodePort"),
    );
    platform
        .deploy(&artifact(&["a"], Some(port)), &NoProgress)
        .await
        .unwrap();
    let response = platform
        .invoker("shop-a")
        .await
        .unwrap()
        .invoke(request("hi"))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(response
        .headers
        .iter()
        .any(|(n, v)| n == "x-server" && v == "node"));
    server.abort();
}

#[tokio::test]
async fn missing_and_broken_functions_are_unavailable() {
    let fake = Fake::new();
    let platform = Arc::new(fake.platform(&[("FAKE_NUCTL_FAIL_DEPLOY", "shop-b")]));
    let err = platform
        .invoker("shop-a")
        .await
        .unwrap()
        .invoke(request(""))
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("not deployed"), "{err}");
    platform
        .deploy(&artifact(&["b"], None), &NoProgress)
        .await
        .unwrap_err();
    let err = platform
        .invoker("shop-b")
        .await
        .unwrap()
        .invoke(request(""))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`error`"), "{err}");
}

#[tokio::test]
async fn a_silent_function_times_out() {
    let fake = Fake::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            held.push(socket);
        }
    });
    let config = fake.config(&[]);
    let host = HostOptions {
        proxy_url: "http://127.0.0.1:8000".into(),
        request_timeout: Duration::from_millis(300),
    };
    let platform = NuctlPlatform::new(&config, Some(host)).unwrap();
    platform
        .deploy(&artifact(&["a"], Some(port)), &NoProgress)
        .await
        .unwrap();
    let err = platform
        .invoker("shop-a")
        .await
        .unwrap()
        .invoke(request(""))
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::Timeout { .. }), "{err:?}");
    holder.abort();
}

// ---------------------------------------------------------------------------------------------
// FAKE_NUCTL_SERVE: the fake runs the deployed function with nuclio_sdk behind a real port.

/// A venv with `nuclio-sdk==0.6.3`, built once under the shared test cache.
fn sdk_python() -> PathBuf {
    sdk_venv_python("fake-nuctl-sdk-venv", &[])
}

/// Deletes a served function (stopping its server process) when the test ends, pass or fail.
struct Served<'a> {
    launcher: PathBuf,
    name: &'a str,
}

impl Drop for Served<'_> {
    fn drop(&mut self) {
        // The platform the function was deployed on: without `--platform`, nuctl's `auto` would
        // pick kube whenever a kubeconfig resolves on this machine.
        let _ = std::process::Command::new(&self.launcher)
            .args([
                "delete",
                "function",
                self.name,
                "--force",
                "--platform",
                "local",
            ])
            .output();
    }
}

#[tokio::test]
async fn served_functions_answer_over_http_without_nuctl_per_request() {
    let fake = Fake::new();
    let python = sdk_python();
    let python = python.display().to_string();
    let env = [
        ("FAKE_NUCTL_SERVE", "1"),
        ("FAKE_NUCTL_PYTHON", python.as_str()),
    ];
    let config = fake.config(&env);
    let _served = Served {
        launcher: PathBuf::from(&config.nuctl.binary),
        name: "shop-a",
    };
    let platform = NuctlPlatform::new(&config, None).unwrap();
    let mut served = artifact(&["a"], None);
    served.files.insert(
        "_fusionizer_entry.py".into(),
        b"def init_context(context):\n    context.user_data.base = 40\n\n\
          def handler(context, event):\n    return {'n': context.user_data.base + 2, \
          'task': event.headers.get('Task-Name'), 'body': event.body.decode()}\n"
            .to_vec(),
    );
    platform.deploy(&served, &NoProgress).await.unwrap();
    let invoker = platform.invoker("shop-a").await.unwrap();
    let before = fake.calls().len();
    for i in 0..3 {
        let response = invoker.invoke(request(&format!("hi {i}"))).await.unwrap();
        assert_eq!(response.status, 200);
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"n": 42, "task": "a", "body": format!("hi {i}")})
        );
    }
    assert_eq!(fake.calls().len(), before);
}
