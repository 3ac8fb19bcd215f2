//! Images built ahead (`[nuctl] images = "prebuilt"`), against the fake nuctl: `fusionizer
//! images` builds one image per distinct function of every phase (and `--dry-run` none), a
//! prebuilt apply deploys them with `--run-image` and builds nothing, an apply whose images were
//! never built fails with the hint that names `fusionizer images`, `validate` refuses
//! prebuilt images without a registry, and serve on prebuilt images (as in a pod) answers
//! through the functions it deployed from them.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{
    client, expect_nuctl, quickstart_on_nuctl, sdk_venv_python, stderr, stdout, Serve, TestEnv,
    FAKE_NUCTL,
};

const REGISTRY: &str = "registry.invalid:5000/team";

/// The quickstart on the fake nuctl with `[nuctl]` lines added (the platform is `local` unless
/// `nuctl` sets it).
fn quickstart_with(nuctl: &str) -> (TestEnv, std::path::PathBuf) {
    let (env, state) = quickstart_on_nuctl();
    let toml = env.project().join("fusion.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    if nuctl.contains("platform = ") {
        text = text.replace("[nuctl]\nplatform = \"local\"\n", "[nuctl]\n");
    }
    std::fs::write(&toml, format!("{text}{nuctl}")).unwrap();
    (env, state)
}

fn prebuilt(platform: &str) -> String {
    let platform = match platform {
        "kube" => "platform = \"kube\"\nnamespace = \"nuclio\"\n",
        _ => "",
    };
    format!("{platform}registry = \"{REGISTRY}/\"\nimages = \"prebuilt\"\n")
}

/// The argv of every nuctl call recorded by the fake so far.
fn calls(state: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(state.join("calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn fake_state(state: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(state.join("state.json")).unwrap()).unwrap()
}

fn strings(value: &serde_json::Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The value after `flag` in `argv`.
fn flag<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    let i = argv.iter().position(|a| a == flag)?;
    argv.get(i + 1).map(String::as_str)
}

/// `fusionizer images` builds, one by one, the three functions of the quickstart's two phases
/// (`taska`, `taskb`, then `taska-taskb`), each tagged with its content digest, and pushes them.
#[test]
fn images_builds_one_image_per_function_of_every_phase() {
    let (env, state) = quickstart_with(&prebuilt("local"));

    let out = expect_nuctl(&env, &state, &[], &["images", "--dry-run"], 0);
    assert!(
        calls(&state).is_empty(),
        "a dry run ran nuctl: {:?}",
        calls(&state)
    );
    let listed = stdout(&out);
    assert_eq!(listed.lines().count(), 3, "{listed}");

    let out = expect_nuctl(&env, &state, &[], &["images"], 0);
    let builds = calls(&state);
    assert_eq!(builds.len(), 3, "{builds:?}");
    let mut names = BTreeSet::new();
    let mut pushed = BTreeSet::new();
    for argv in &builds {
        assert_eq!(argv[0], "build", "{argv:?}");
        let name = argv[1].clone();
        let dir = flag(argv, "--path").unwrap();
        assert_eq!(
            flag(argv, "--file").unwrap(),
            Path::new(dir).join("function.yaml").to_str().unwrap()
        );
        assert_eq!(flag(argv, "--registry"), Some(REGISTRY));
        assert_eq!(flag(argv, "--platform"), Some("local"));
        // The tag is the digest the function.yaml it built carries.
        let image = flag(argv, "--image").unwrap();
        let tag = image
            .strip_prefix(&format!("processor-{name}:"))
            .unwrap_or_else(|| panic!("{image}"));
        assert_eq!(tag.len(), 32, "{image}");
        let yaml = std::fs::read_to_string(Path::new(dir).join("function.yaml")).unwrap();
        assert!(
            yaml.contains(&format!("fusionizer.io/digest: sha256:{tag}")),
            "{yaml}"
        );
        let image = format!("{REGISTRY}/{image}");
        assert!(listed.contains(&image), "{listed}");
        assert!(
            stdout(&out).contains(&format!("built   {image}")),
            "{}",
            stdout(&out)
        );
        pushed.insert(image);
        names.insert(name);
    }
    assert_eq!(
        names,
        BTreeSet::from(
            [
                "quickstart-taska",
                "quickstart-taskb",
                "quickstart-taska-taskb"
            ]
            .map(String::from)
        )
    );
    assert_eq!(strings(&fake_state(&state)["images"]["pushed"]), pushed);
}

/// A build that fails is reported, the others still run, and the command exits 1.
#[test]
fn images_reports_a_failed_build_and_exits_non_zero() {
    let (env, state) = quickstart_with(&prebuilt("local"));
    let fail = [("FAKE_NUCTL_FAIL_DEPLOY", "quickstart-taskb")];
    let out = expect_nuctl(&env, &state, &fail, &["images"], 1);
    assert_eq!(calls(&state).len(), 3);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("failed  {REGISTRY}/processor-quickstart-taskb:")),
        "{text}"
    );
    assert!(
        text.contains(&format!("built   {REGISTRY}/processor-quickstart-taska:")),
        "{text}"
    );
    let err = stderr(&out);
    assert!(err.contains("1 of 3 images failed to build"), "{err}");
}

/// After `fusionizer images`, a prebuilt apply deploys each function from its image with
/// `--run-image` and no `--path`: nothing is built.
#[test]
fn prebuilt_apply_after_images_runs_the_images_without_building() {
    for platform in ["local", "kube"] {
        let (env, state) = quickstart_with(&prebuilt(platform));
        expect_nuctl(&env, &state, &[], &["images"], 0);
        let built = fake_state(&state)["images"].clone();
        let before = calls(&state).len();
        expect_nuctl(&env, &state, &[], &["apply", "--auto-approve"], 0);
        let apply = calls(&state)[before..].to_vec();
        assert!(apply.iter().all(|argv| argv[0] != "build"), "{apply:?}");
        let deploys: Vec<&Vec<String>> = apply.iter().filter(|a| a[0] == "deploy").collect();
        assert_eq!(deploys.len(), 2, "{apply:?}");
        for argv in deploys {
            assert!(!argv.contains(&"--path".to_string()), "{argv:?}");
            assert!(!argv.contains(&"--registry".to_string()), "{argv:?}");
            let image = flag(argv, "--run-image").unwrap();
            assert!(
                image.starts_with(&format!("{REGISTRY}/processor-{}:", argv[1])),
                "{argv:?}"
            );
            assert_eq!(flag(argv, "--run-registry"), Some(REGISTRY));
        }
        // No build happened: the fake's images are those `images` made.
        assert_eq!(fake_state(&state)["images"], built, "{platform}");
        expect_nuctl(&env, &state, &[], &["plan", "--detailed-exitcode"], 0);
    }
}

/// A prebuilt apply whose images were never built fails on the pull, as nuclio reports it (on
/// kube an `ImagePullBackOff` until the readiness deadline; on Docker `docker run` failing to
/// pull), with the hint naming `fusionizer images`; nothing is built or deleted.
#[test]
fn prebuilt_apply_without_images_fails_with_the_hint() {
    for platform in ["kube", "local"] {
        let (env, state) = quickstart_with(&prebuilt(platform));
        let out = expect_nuctl(&env, &state, &[], &["apply", "--auto-approve"], 1);
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "was `fusionizer images` run for this commit? it builds \
                 `{REGISTRY}/processor-quickstart-taska:"
            )),
            "{platform}: {err}"
        );
        let all = calls(&state);
        assert!(
            all.iter()
                .all(|argv| argv[0] != "build" && argv[0] != "delete"),
            "{all:?}"
        );
        let images = &fake_state(&state)["images"];
        assert!(strings(&images["pushed"]).is_empty(), "{images}");
        assert!(strings(&images["local"]).is_empty(), "{images}");
    }
}

/// `validate` (and `plan`) refuse `images = "prebuilt"` without a registry, naming the setting;
/// env `NUCTL_REGISTRY` is enough.
#[test]
fn prebuilt_without_a_registry_is_refused() {
    let (env, state) = quickstart_with("images = \"prebuilt\"\n");
    for command in ["validate", "plan", "images"] {
        let out = expect_nuctl(&env, &state, &[], &[command], 78);
        let err = stderr(&out);
        assert!(
            err.contains("neither `nuctl.registry` nor `NUCTL_REGISTRY`"),
            "{command}: {err}"
        );
        assert!(
            err.contains("hint: set `registry` in `[nuctl]`"),
            "{command}: {err}"
        );
    }
    let registry = [("NUCTL_REGISTRY", REGISTRY)];
    expect_nuctl(&env, &state, &registry, &["validate"], 0);
    assert!(calls(&state).is_empty());
}

/// Deletes the fake's local functions when dropped (each served one is a process of its own).
struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string(self.0.join("state.json")) else {
            return;
        };
        let data: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let Some(namespaces) = data["functions"].as_object() else {
            return;
        };
        for (namespace, functions) in namespaces {
            for name in functions.as_object().into_iter().flat_map(|f| f.keys()) {
                let _ = std::process::Command::new(FAKE_NUCTL)
                    .env("FAKE_NUCTL_DIR", self.0)
                    .args(["delete", "function", name, "--force", "--platform", "local"])
                    .args(["--namespace", namespace])
                    .output();
            }
        }
    }
}

/// serve with prebuilt images, the way it runs in a pod: it deploys its start phase from the
/// images `fusionizer images` built (`--run-image`, no build) and answers through them, each
/// running the code it was built from; taska reaches taskb through serve's proxy.
#[test]
fn serve_on_prebuilt_images_answers_through_them() {
    let (env, state) = quickstart_with(&prebuilt("local"));
    let _cleanup = Cleanup(&state);
    expect_nuctl(&env, &state, &[], &["images"], 0);
    let before = calls(&state).len();
    let python = sdk_venv_python("fake-nuctl-sdk-requests-venv", &["requests"]);
    let python = python.to_str().unwrap();
    let state_text = state.to_str().unwrap();
    let serve = Serve::start_with(
        &env,
        &[
            ("FUSIONIZER_NUCTL", FAKE_NUCTL),
            ("FAKE_NUCTL_DIR", state_text),
            ("FAKE_NUCTL_SERVE", "1"),
            ("FAKE_NUCTL_PYTHON", python),
        ],
        &["--phase", "1", "--no-schedule"],
    );
    let response = client()
        .post(serve.url("/taska"))
        .json(&serde_json::json!({"value1": 5, "value2": 3}))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().unwrap();
    assert_eq!(status, 200, "{body}\n{}", serve.log());
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["result"], 8, "{body}");
    let deploys: Vec<Vec<String>> = calls(&state)[before..]
        .iter()
        .filter(|argv| argv[0] == "deploy" || argv[0] == "build")
        .cloned()
        .collect();
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    for argv in &deploys {
        assert_eq!(argv[0], "deploy", "{argv:?}");
        assert!(flag(argv, "--run-image").is_some(), "{argv:?}");
        assert!(!argv.contains(&"--path".to_string()), "{argv:?}");
    }
}
