//! Unit tests for fusion.toml parsing and validation: every diagnostic with its exact rendering.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::*;
use crate::error::{Error, ExitCode};

const FUNCTION_YAML: &str =
    "metadata:\n  name: task\nspec:\n  runtime: \"python:3.11\"\n  handler: \"main:handler\"\n";

/// A temp project directory.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, relative: &str, content: &str) {
        let path = self.root().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// A valid task under `tasks/<name>`.
    fn task(&self, name: &str) -> &Self {
        self.write(&format!("tasks/{name}/function.yaml"), FUNCTION_YAML);
        self.write(
            &format!("tasks/{name}/main.py"),
            "def handler(context, event):\n    return 1\n",
        );
        self
    }

    fn toml_path(&self) -> PathBuf {
        self.root().join(FILE_NAME)
    }

    /// Loads `toml` as the project's fusion.toml; errors rendered with the temp root stripped.
    fn load(&self, toml: &str) -> Result<Workspace, String> {
        self.write(FILE_NAME, toml);
        load(&self.toml_path()).map_err(|d| render(&d, self.root()))
    }

    /// Parses `toml` without touching task directories.
    fn parse(&self, toml: &str) -> Result<Config, String> {
        parse(&self.toml_path(), toml).map_err(|d| render(&d, self.root()))
    }
}

fn render(diagnostics: &Diagnostics, root: &Path) -> String {
    let prefix = format!("{}/", root.display());
    diagnostics
        .0
        .iter()
        .map(|d| d.to_string().replace(&prefix, ""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A fusion.toml header with a valid project, followed by `rest`.
fn with_project(rest: &str) -> String {
    format!("[project]\nname = \"shop\"\n\n{rest}")
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "every setting of fusion.toml, one assertion each"
)]
fn a_complete_config_loads_with_every_value() {
    let fx = Fixture::new();
    fx.task("taska").task("taskb");
    let ws = fx
        .load(
            r#"[project]
name = "shop"
platform = "nuctl"

[tasks]
taska = "tasks/taska"
taskb = { path = "tasks/taskb" }
taskc = { upload = true }

[[phase]]
after = "0s"
groups = [["taska"], ["taskb"]]

[[phase]]
after = "1h 30m"
groups = [["taskc", "taskb", "taska"]]

[serve]
listen = "0.0.0.0:9000"
advertise = "fusionizer-serve.invalid"
token-env = "FUSIONIZER_TOKEN"
max-body-size = 1024
max-response-size = "2MiB"
request-timeout = "2m"
drain-timeout = "0s"
shutdown-timeout = "5s"
max-upload-size = "2MiB"
max-unpacked-size = "1GB"
trace-spans = 0
trace-edges = 64
async-queue = 8
async-queue-size = "1MiB"
allowed-hosts = ["Serve.Example.Test", "*.apps.test", "[::1]", "192.0.2.1", "*"]
allowed-origins = ["http://localhost:3000", "https://dash.example.test"]
header-read-timeout = "5s"
body-read-timeout = "30s"
idle-timeout = "2m"
max-connections = 100
self-heal = false

[nuctl]
binary = "/opt/nuctl"
platform = "kube"
namespace = "nuclio"
kubeconfig = "~/.kube/config"
registry = "localhost:5000"
run-registry = "registry:5000"
project = "default"
readiness-timeout = "120s"
build-timeout = "20m"
invocation-url = "internal"
images = "prebuilt"
"#,
        )
        .unwrap();
    let c = &ws.config;
    assert_eq!(c.root, fx.root());
    assert_eq!(c.file, fx.toml_path());
    assert_eq!(c.state_dir(), fx.root().join(".fusionizer"));
    assert_eq!(c.project.name, "shop");
    assert_eq!(c.project.platform, PlatformKind::Nuctl);
    assert_eq!(
        c.tasks["taska"].source,
        TaskSource::Path {
            written: "tasks/taska".to_string(),
            dir: fx.root().join("tasks/taska"),
        }
    );
    assert!(matches!(c.tasks["taskb"].source, TaskSource::Path { .. }));
    assert_eq!(c.tasks["taskc"].source, TaskSource::Upload);
    assert_eq!(c.phases.len(), 2);
    assert_eq!(c.phases[0].after, Duration::ZERO);
    assert_eq!(c.phases[0].groups, vec![vec!["taska"], vec!["taskb"]]);
    assert_eq!(c.phases[1].after, Duration::from_secs(5400));
    assert_eq!(c.phases[1].groups, vec![vec!["taska", "taskb", "taskc"]]);
    assert_eq!(
        c.serve,
        ServeConfig {
            listen: "0.0.0.0:9000".to_string(),
            advertise: Some("fusionizer-serve.invalid".to_string()),
            token_env: Some("FUSIONIZER_TOKEN".to_string()),
            max_body_bytes: 1024,
            max_response_bytes: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(120),
            drain_timeout: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(5),
            max_upload_bytes: 2 * 1024 * 1024,
            max_unpacked_bytes: 1_000_000_000,
            trace_spans: 0,
            trace_edges: 64,
            async_queue: 8,
            async_queue_bytes: 1024 * 1024,
            allowed_hosts: vec![
                "serve.example.test".to_string(),
                "*.apps.test".to_string(),
                "[::1]".to_string(),
                "192.0.2.1".to_string(),
                "*".to_string()
            ],
            allowed_origins: vec![
                "http://localhost:3000".to_string(),
                "https://dash.example.test".to_string()
            ],
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 100,
            self_heal: false,
        }
    );
    assert_eq!(
        c.nuctl,
        NuctlConfig {
            binary: "/opt/nuctl".to_string(),
            platform: Some("kube".to_string()),
            namespace: Some("nuclio".to_string()),
            kubeconfig: Some(PathBuf::from(std::env::var("HOME").unwrap()).join(".kube/config")),
            registry: Some("localhost:5000".to_string()),
            run_registry: Some("registry:5000".to_string()),
            project: Some("default".to_string()),
            images: ImageMode::Prebuilt,
            readiness_timeout: Duration::from_secs(120),
            build_timeout: Duration::from_secs(1200),
            invocation_url: UrlPreference::Internal,
            http_trigger_service_type: None,
            proxy_url: None,
        }
    );
    // Upload tasks have no spec; path tasks do.
    assert_eq!(ws.specs.keys().collect::<Vec<_>>(), ["taska", "taskb"]);
    assert_eq!(ws.specs["taska"].dir, fx.root().join("tasks/taska"));
}

#[test]
fn defaults_fill_in_what_is_not_written() {
    let fx = Fixture::new();
    let c = fx.parse("[project]\nname = \"shop\"\n").unwrap();
    assert_eq!(c.project.platform, PlatformKind::Local);
    assert!(c.tasks.is_empty());
    assert!(c.phases.is_empty());
    assert_eq!(c.serve, ServeConfig::default());
    assert_eq!(c.nuctl, NuctlConfig::default());
}

#[test]
fn a_toml_syntax_error_is_one_diagnostic_with_its_location() {
    let fx = Fixture::new();
    let err = fx
        .parse("[project]\nname = \"shop\n[tasks]\nx = \n")
        .unwrap_err();
    assert_eq!(
        err,
        "fusion.toml:2:13: invalid TOML: invalid basic string, expected `\"`"
    );
}

#[test]
fn project_problems() {
    let fx = Fixture::new();
    assert_eq!(
        fx.parse("[tasks]\n").unwrap_err(),
        "fusion.toml: missing `[project]`\n  hint: add `[project]` with `name = \"myproject\"`"
    );
    assert_eq!(
        fx.parse("[project]\nplatform = \"local\"\n").unwrap_err(),
        "fusion.toml:1:1: missing `project.name`\n  hint: add `name = \"myproject\"` under `[project]`"
    );
    assert_eq!(
        fx.parse("[project]\nname = \"My_Shop\"\n").unwrap_err(),
        "fusion.toml:2:8: invalid project name `My_Shop`\n  hint: a project name is a lowercase \
         DNS-1123 label of at most 40 characters: `a-z`, `0-9` and `-`, starting and ending with a \
         letter or digit"
    );
    let long = "a".repeat(41);
    assert!(fx
        .parse(&format!("[project]\nname = \"{long}\"\n"))
        .unwrap_err()
        .starts_with(&format!("fusion.toml:2:8: invalid project name `{long}`")));
    assert_eq!(
        fx.parse("[project]\nname = \"shop\"\nplatform = \"docker\"\n")
            .unwrap_err(),
        "fusion.toml:3:12: unknown platform `docker`\n  hint: `platform` is `local` or `nuctl`"
    );
    assert_eq!(
        fx.parse("[project]\nname = 7\n").unwrap_err(),
        "fusion.toml:2:8: `project.name` must be a string, found integer"
    );
    assert_eq!(
        fx.parse("project = \"shop\"\n").unwrap_err(),
        "fusion.toml:1:11: `project` must be a table, found string"
    );
}

#[test]
fn task_declaration_problems() {
    let fx = Fixture::new();
    let hint = |n: &str| {
        format!(
            "  hint: write `{n} = \"tasks/{n}\"`, `{n} = {{ path = \"tasks/{n}\" }}` or `{n} = {{ upload = true }}`"
        )
    };
    assert_eq!(
        fx.parse(&with_project("[tasks]\nTask_A = { upload = true }\n"))
            .unwrap_err(),
        "fusion.toml:5:1: invalid task name `Task_A`\n  hint: a task name is a lowercase DNS-1123 \
         label of at most 40 characters: `a-z`, `0-9` and `-`, starting and ending with a letter \
         or digit"
    );
    assert!(fx
        .parse(&with_project("[tasks]\n\"-x\" = { upload = true }\n"))
        .unwrap_err()
        .starts_with("fusion.toml:5:1: invalid task name `-x`"));
    assert_eq!(
        fx.parse(&with_project(
            "[tasks]\ntaska = { path = \"a\", upload = true }\n"
        ))
        .unwrap_err(),
        format!(
            "fusion.toml:5:9: task `taska` has both `path` and `upload`\n{}",
            hint("taska")
        )
    );
    assert_eq!(
        fx.parse(&with_project("[tasks]\ntaska = { upload = false }\n"))
            .unwrap_err(),
        format!(
            "fusion.toml:5:9: task `taska` needs `path` or `upload = true`\n{}",
            hint("taska")
        )
    );
    assert_eq!(
        fx.parse(&with_project("[tasks]\ntaska = 3\n")).unwrap_err(),
        format!(
            "fusion.toml:5:9: task `taska` must be a directory path or a table, found integer\n{}",
            hint("taska")
        )
    );
    assert_eq!(
        fx.parse(&with_project("[tasks]\ntaska = \"\"\n"))
            .unwrap_err(),
        format!(
            "fusion.toml:5:9: task `taska` has an empty path\n{}",
            hint("taska")
        )
    );
    assert_eq!(
        fx.parse(&with_project("[tasks]\ntaska = { upload = \"yes\" }\n"))
            .unwrap_err(),
        "fusion.toml:5:20: `tasks.taska.upload` must be a boolean, found string"
    );
}

#[test]
fn task_directory_problems_point_at_the_path() {
    let fx = Fixture::new();
    fx.write("tasks/file", "not a directory");
    let err = fx
        .load(&with_project(
            "[tasks]\ntaska = \"tasks/taska\"\ntaskb = { path = \"tasks/file\" }\n",
        ))
        .unwrap_err();
    assert_eq!(
        err,
        "fusion.toml:5:9: task `taska`: directory `tasks/taska` does not exist\n  \
         hint: create it with a `function.yaml` and the handler module, or fix the path\n\
         fusion.toml:6:18: task `taskb`: `tasks/file` is not a directory\n  \
         hint: point the task at the directory holding its `function.yaml`"
    );
}

#[test]
fn task_spec_problems_are_collected_with_fusion_toml_problems() {
    let fx = Fixture::new();
    fx.task("taska");
    fx.write("tasks/taskb/main.py", "");
    fx.write(
        "tasks/taskc/function.yaml",
        "spec:\n  runtime: golang\n  handler: main:handler\n",
    );
    fx.write("tasks/taskc/main.py", "");
    let err = fx
        .load(&with_project(
            "[tasks]\ntaska = \"tasks/taska\"\ntaskb = \"tasks/taskb\"\ntaskc = \"tasks/taskc\"\n\n[serve]\nlisten = \"localhost\"\n",
        ))
        .unwrap_err();
    assert_eq!(
        err,
        "fusion.toml:10:10: invalid `listen` address `localhost`\n  \
         hint: use `IP:PORT`, e.g. `127.0.0.1:8000` or `0.0.0.0:8000`\n\
         tasks/taskb/function.yaml: file does not exist\n  \
         hint: every task directory holds a Nuclio `function.yaml` with `spec.runtime` and `spec.handler`\n\
         tasks/taskc/function.yaml:2:3: unsupported runtime `golang`\n  \
         hint: fusionizer fuses Python tasks: use `python` or `python:3.x`, e.g. `python:3.11`"
    );
}

#[test]
fn an_invalid_task_name_is_reported_once_at_fusion_toml() {
    let fx = Fixture::new();
    fx.task("Bad");
    let err = fx
        .load(&with_project("[tasks]\nBad = \"tasks/Bad\"\n"))
        .unwrap_err();
    assert_eq!(err.lines().filter(|l| !l.starts_with("  hint")).count(), 1);
    assert!(err.starts_with("fusion.toml:5:1: invalid task name `Bad`"));
}

#[test]
fn phase_after_problems() {
    let fx = Fixture::new();
    let tasks = "[tasks]\na = { upload = true }\n\n";
    assert_eq!(
        fx.parse(&with_project(&format!(
            "{tasks}[[phase]]\nafter = \"90\"\ngroups = []\n"
        )))
        .unwrap_err(),
        "fusion.toml:8:9: phase 1: invalid `after` `90`: missing unit\n  hint: add a unit, e.g. `90s`"
    );
    assert_eq!(
        fx.parse(&with_project(&format!(
            "{tasks}[[phase]]\nafter = \"soon\"\ngroups = []\n"
        )))
        .unwrap_err(),
        "fusion.toml:8:9: phase 1: invalid `after` `soon`: not a duration\n  \
         hint: use a number with a unit, e.g. `500ms`, `90s`, `5m`, `1h30m`"
    );
    assert_eq!(
        fx.parse(&with_project(&format!(
            "{tasks}[[phase]]\nafter = 90\ngroups = []\n"
        )))
        .unwrap_err(),
        "fusion.toml:8:9: phase 1: `after` must be a string, found integer"
    );
    assert_eq!(
        fx.parse(&with_project(&format!("{tasks}[[phase]]\ngroups = []\n")))
            .unwrap_err(),
        "fusion.toml:7:1: phase 1 is missing `after`\n  \
         hint: add `after = \"0s\"` (the offset from `serve` start)"
    );
    assert_eq!(
        fx.parse(&with_project(&format!("{tasks}[[phase]]\nafter = \"0s\"\n")))
            .unwrap_err(),
        "fusion.toml:7:1: phase 1 is missing `groups`\n  \
         hint: list the groups, e.g. `groups = [[\"taska\", \"taskb\"]]`; `groups = []` runs every task alone"
    );
    assert_eq!(
        fx.parse(&with_project(&format!("{tasks}[phase]\nafter = \"0s\"\n")))
            .unwrap_err(),
        "fusion.toml:7:1: `phase` must be an array of tables, found table\n  \
         hint: write each phase as a `[[phase]]` table"
    );
}

#[test]
fn phases_must_be_in_strictly_increasing_order() {
    let fx = Fixture::new();
    let err = fx
        .parse(&with_project(
            "[[phase]]\nafter = \"1m\"\ngroups = []\n\n[[phase]]\nafter = \"60s\"\ngroups = []\n\n\
             [[phase]]\nafter = \"30s\"\ngroups = []\n\n[[phase]]\nafter = \"2m\"\ngroups = []\n",
        ))
        .unwrap_err();
    assert_eq!(
        err,
        "fusion.toml:9:9: phase 2 starts at `60s`, not after phase 1 at `1m`\n  \
         hint: list `[[phase]]` tables in strictly increasing `after` order\n\
         fusion.toml:13:9: phase 3 starts at `30s`, not after phase 1 at `1m`\n  \
         hint: list `[[phase]]` tables in strictly increasing `after` order"
    );
}

#[test]
fn group_problems() {
    let fx = Fixture::new();
    let tasks = "[tasks]\ntaska = { upload = true }\ntaskb = { upload = true }\n\n[[phase]]\nafter = \"0s\"\n";
    let phase = |groups: &str| fx.parse(&with_project(&format!("{tasks}groups = {groups}\n")));
    assert_eq!(
        phase("[[\"taska\", \"tasbk\"]]").unwrap_err(),
        "fusion.toml:10:21: phase 1: unknown task `tasbk`\n  hint: did you mean `taskb`?"
    );
    assert_eq!(
        phase("[[\"payments\"]]").unwrap_err(),
        "fusion.toml:10:12: phase 1: unknown task `payments`\n  hint: declare it under `[tasks]`"
    );
    assert_eq!(
        phase("[[\"taska\"], [\"taskb\", \"taska\"]]").unwrap_err(),
        "fusion.toml:10:32: phase 1: task `taska` is in two groups\n  \
         hint: a task runs in one function per phase; keep it in one group"
    );
    assert_eq!(
        phase("[[\"taska\", \"taska\"]]").unwrap_err(),
        "fusion.toml:10:21: phase 1: task `taska` appears twice in one group\n  \
         hint: list each task once"
    );
    assert_eq!(
        phase("[[\"taska\"], []]").unwrap_err(),
        "fusion.toml:10:22: phase 1: empty group\n  hint: remove the `[]` from `groups`"
    );
    assert_eq!(
        phase("[\"taska\"]").unwrap_err(),
        "fusion.toml:10:11: phase 1: a group must be an array of task names, found string\n  \
         hint: write `groups = [[\"taska\", \"taskb\"], [\"taskc\"]]`"
    );
    assert_eq!(
        phase("\"taska\"").unwrap_err(),
        "fusion.toml:10:10: phase 1: `groups` must be an array of arrays of task names, found string\n  \
         hint: write `groups = [[\"taska\", \"taskb\"], [\"taskc\"]]`"
    );
}

#[test]
fn unknown_keys_list_the_valid_keys_of_their_table() {
    let fx = Fixture::new();
    assert_eq!(
        fx.parse(&with_project("[[phases]]\nafter = \"0s\"\n"))
            .unwrap_err(),
        "fusion.toml:4:3: unknown top-level key `phases`\n  hint: did you mean `phase`? \
         valid top-level keys: `project`, `tasks`, `phase`, `serve`, `nuctl`, `optimizer`, \
         `override`"
    );
    assert_eq!(
        fx.parse("[project]\nname = \"shop\"\nplatfrom = \"local\"\n")
            .unwrap_err(),
        "fusion.toml:3:1: unknown key `platfrom` in `[project]`\n  hint: did you mean `platform`? \
         valid keys in `[project]`: `name`, `platform`"
    );
    assert_eq!(
        fx.parse(&with_project(
            "[tasks]\ntaska = { dir = \"x\", upload = true }\n"
        ))
        .unwrap_err(),
        "fusion.toml:5:11: unknown key `dir` in task `taska`\n  \
         hint: valid keys in task `taska`: `path`, `upload`"
    );
    assert_eq!(
        fx.parse(&with_project(
            "[[phase]]\nafter = \"0s\"\ngroups = []\nname = \"x\"\n"
        ))
        .unwrap_err(),
        "fusion.toml:7:1: unknown key `name` in phase 1\n  \
         hint: valid keys in phase 1: `after`, `groups`"
    );
    assert_eq!(
        fx.parse(&with_project("[serve]\nlisten-address = \"127.0.0.1:1\"\n"))
            .unwrap_err(),
        "fusion.toml:5:1: unknown key `listen-address` in `[serve]`\n  hint: did you mean `listen`? \
         valid keys in `[serve]`: `listen`, `advertise`, `token-env`, `max-body-size`, \
         `max-response-size`, `request-timeout`, `drain-timeout`, `shutdown-timeout`, `max-upload-size`, `max-unpacked-size`, \
         `trace-spans`, `trace-edges`, `async-queue`, `async-queue-size`, `allowed-hosts`, \
         `allowed-origins`, `header-read-timeout`, `body-read-timeout`, `idle-timeout`, \
         `max-connections`, `self-heal`"
    );
    assert_eq!(
        fx.parse(&with_project("[nuctl]\nzone = \"x\"\n"))
            .unwrap_err(),
        "fusion.toml:5:1: unknown key `zone` in `[nuctl]`\n  hint: valid keys in `[nuctl]`: \
         `binary`, `platform`, `namespace`, `kubeconfig`, `registry`, `run-registry`, `project`, \
         `readiness-timeout`, `build-timeout`, `invocation-url`, `http-trigger-service-type`, \
         `proxy-url`, `images`"
    );
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one bad value per setting, one assertion each"
)]
fn serve_and_nuctl_value_problems() {
    let fx = Fixture::new();
    let serve = |body: &str| fx.parse(&with_project(&format!("[serve]\n{body}\n")));
    assert_eq!(
        serve("listen = \"localhost:8000\"").unwrap_err(),
        "fusion.toml:5:10: invalid `listen` address `localhost:8000`\n  \
         hint: use `IP:PORT`, e.g. `127.0.0.1:8000` or `0.0.0.0:8000`"
    );
    assert!(serve("listen = \"[::1]:8000\"").is_ok());
    assert_eq!(
        serve("max-body-size = \"4 parsecs\"").unwrap_err(),
        "fusion.toml:5:17: invalid `serve.max-body-size` `4 parsecs`: unknown unit `parsecs`\n  \
         hint: write bytes as an integer, or a string with a unit (`B`, `KB`, `MB`, `GB`, `KiB`, \
         `MiB`, `GiB`), e.g. `\"4MiB\"`"
    );
    assert_eq!(
        serve("max-response-size = \"2GiB\"").unwrap_err(),
        "fusion.toml:5:21: `serve.max-response-size` must be at most 1GiB, not 2147483648 bytes\n  \
         hint: a worker's answer is held in memory whole; keep the limit to what serve can hold"
    );
    assert_eq!(
        serve("max-upload-size = 0").unwrap_err(),
        "fusion.toml:5:19: invalid `serve.max-upload-size` `0`: must be a positive number of bytes"
    );
    assert_eq!(
        serve("max-unpacked-size = 1.5").unwrap_err(),
        "fusion.toml:5:21: `serve.max-unpacked-size` must be an integer (bytes) or a string like \
         `\"4MiB\"`, found float"
    );
    assert_eq!(
        serve("request-timeout = \"0s\"").unwrap_err(),
        "fusion.toml:5:19: `serve.request-timeout` must be greater than zero"
    );
    assert_eq!(
        serve("drain-timeout = \"30\"").unwrap_err(),
        "fusion.toml:5:17: invalid `serve.drain-timeout` `30`: missing unit\n  \
         hint: add a unit, e.g. `30s`"
    );
    assert_eq!(
        serve("token-env = \"MY-TOKEN\"").unwrap_err(),
        "fusion.toml:5:13: invalid `token-env` `MY-TOKEN`: not an environment variable name\n  \
         hint: name the variable that holds the token, e.g. `FUSIONIZER_TOKEN`"
    );
    assert_eq!(
        serve("advertise = \"\"").unwrap_err(),
        "fusion.toml:5:13: `serve.advertise` is empty"
    );
    let host_hint = "hint: write a host name or IP address as clients put it in `Host` (no \
                     scheme, port or path), `*.example.com` for its subdomains, or `*` for any host";
    for (value, reason) in [
        (
            "http://serve.test",
            "`http://serve.test` is a URL, not a host",
        ),
        (
            "serve.test:8000",
            "`serve.test:8000` has a port: ports are not compared, list the host alone",
        ),
        ("bad host", "`bad host` is not a host name"),
        ("[zz]", "`[zz]` is not an IPv6 address"),
    ] {
        assert_eq!(
            serve(&format!("allowed-hosts = [\"ok.test\", \"{value}\"]")).unwrap_err(),
            format!("fusion.toml:5:29: `serve.allowed-hosts`: {reason}\n  {host_hint}"),
        );
    }
    assert_eq!(
        serve("allowed-hosts = \"serve.test\"").unwrap_err(),
        "fusion.toml:5:17: `serve.allowed-hosts` must be an array of strings, found string"
    );
    let origin_hint = "hint: write an origin as browsers send it, `scheme://host` or \
                       `scheme://host:port` with no path (e.g. `http://localhost:3000`), or `*`";
    for (value, reason) in [
        (
            "localhost:3000",
            "`localhost:3000` has no scheme or no host",
        ),
        (
            "ftp://files.test",
            "`ftp://files.test`: the scheme is `http` or `https`",
        ),
        (
            "http://localhost:3000/",
            "`http://localhost:3000/` is not an origin: it has more than a scheme, host and port",
        ),
        (
            "http://user@localhost",
            "`http://user@localhost` is not an origin: it has more than a scheme, host and port",
        ),
    ] {
        assert_eq!(
            serve(&format!("allowed-origins = [\"{value}\"]")).unwrap_err(),
            format!("fusion.toml:5:20: `serve.allowed-origins`: {reason}\n  {origin_hint}"),
        );
    }
    assert_eq!(
        serve("idle-timeout = \"0s\"").unwrap_err(),
        "fusion.toml:5:16: `serve.idle-timeout` must be greater than zero\n  hint: a connection \
         that never times out can be held forever by a client that sends nothing"
    );
    let nuctl = |body: &str| fx.parse(&with_project(&format!("[nuctl]\n{body}\n")));
    assert_eq!(
        nuctl("platform = \"docker\"").unwrap_err(),
        "fusion.toml:5:12: unknown nuctl platform `docker`\n  \
         hint: `nuctl.platform` is `auto`, `local` or `kube`"
    );
    assert_eq!(
        nuctl("invocation-url = \"public\"").unwrap_err(),
        "fusion.toml:5:18: unknown `invocation-url` `public`\n  \
         hint: `invocation-url` is `external` or `internal`"
    );
    assert_eq!(
        nuctl("images = \"pull\"").unwrap_err(),
        "fusion.toml:5:10: unknown `images` `pull`\n  \
         hint: `images` is `build` (each deploy builds its image, needs Docker) or `prebuilt` \
         (deploys run the images `fusionizer images` built)"
    );
    assert_eq!(
        nuctl("http-trigger-service-type = \"LoadBalancer\"").unwrap_err(),
        "fusion.toml:5:29: unknown `http-trigger-service-type` `LoadBalancer`\n  \
         hint: `http-trigger-service-type` is `NodePort` (serve outside the cluster) or \
         `ClusterIP` (serve inside it)"
    );
    assert!(nuctl("proxy-url = \"fusionizer:8000\"")
        .unwrap_err()
        .contains("`nuctl.proxy-url` `fusionizer:8000` is not an http(s) URL"));
    assert_eq!(
        nuctl("readiness-timeout = \"two minutes\"").unwrap_err(),
        "fusion.toml:5:21: invalid `nuctl.readiness-timeout` `two minutes`: not a duration\n  \
         hint: use a number with a unit, e.g. `500ms`, `90s`, `5m`, `1h30m`"
    );
    for key in ["readiness-timeout", "build-timeout"] {
        assert_eq!(
            nuctl(&format!("{key} = \"0s\"")).unwrap_err(),
            format!(
                "fusion.toml:5:{}: `nuctl.{key}` must be greater than zero\n  hint: every \
                 deploy has a deadline: leave the key out for the default, or give a duration \
                 such as `\"10m\"`",
                key.len() + 4
            )
        );
    }
}

#[test]
fn every_deploy_has_a_deadline_by_default() {
    let fx = Fixture::new();
    let nuctl = fx
        .parse(&with_project(
            "[nuctl]
platform = \"local\"\n",
        ))
        .unwrap()
        .nuctl;
    assert_eq!(nuctl.readiness_timeout, Duration::from_secs(300));
    assert_eq!(nuctl.build_timeout, Duration::from_secs(600));
}

#[test]
fn kube_on_the_nuctl_platform_requires_a_namespace() {
    let fx = Fixture::new();
    let on = |platform: &str, body: &str| {
        fx.parse(&format!(
            "[project]\nname = \"shop\"\nplatform = \"{platform}\"\n\n[nuctl]\n{body}\n"
        ))
    };
    let message = "`nuctl.namespace` must be set when `nuctl.platform = \"kube\"`: nuctl would \
                   take the kubeconfig context's namespace, and a Nuclio that does not watch it \
                   never deploys the function\n  hint: set `namespace` in `[nuctl]` to the \
                   namespace Nuclio was installed in, e.g. `namespace = \"nuclio\"`";
    assert_eq!(
        on("nuctl", "platform = \"kube\"").unwrap_err(),
        format!("fusion.toml:6:12: {message}")
    );
    assert_eq!(
        on("nuctl", "platform = \"kube\"\nnamespace = \"\"").unwrap_err(),
        "fusion.toml:7:13: `nuctl.namespace` is empty"
    );
    assert!(on("nuctl", "platform = \"kube\"\nnamespace = \"nuclio\"").is_ok());
    // Other nuctl platforms pick their own; `[nuctl]` is not read on the local platform.
    assert!(on("nuctl", "platform = \"local\"").is_ok());
    assert!(on("nuctl", "platform = \"auto\"").is_ok());
    assert!(on("local", "platform = \"kube\"").is_ok());
}

#[test]
fn five_different_mistakes_are_all_reported_with_locations() {
    let fx = Fixture::new();
    fx.task("taska").task("taskb");
    let err = fx
        .load(
            r#"[project]
name = "Shop"

[tasks]
taska = "tasks/taska"
taskb = "tasks/taskb"
taskc = "tasks/missing"

[[phase]]
after = "40s"
groups = [["taska", "tasbk"]]

[[phase]]
after = "10s"
groups = []

[serve]
listn = "127.0.0.1:8000"
"#,
        )
        .unwrap_err();
    assert_eq!(
        err,
        r"fusion.toml:2:8: invalid project name `Shop`
  hint: a project name is a lowercase DNS-1123 label of at most 40 characters: `a-z`, `0-9` and `-`, starting and ending with a letter or digit
fusion.toml:7:9: task `taskc`: directory `tasks/missing` does not exist
  hint: create it with a `function.yaml` and the handler module, or fix the path
fusion.toml:11:21: phase 1: unknown task `tasbk`
  hint: did you mean `taskb`?
fusion.toml:14:9: phase 2 starts at `10s`, not after phase 1 at `40s`
  hint: list `[[phase]]` tables in strictly increasing `after` order
fusion.toml:18:1: unknown key `listn` in `[serve]`
  hint: did you mean `listen`? valid keys in `[serve]`: `listen`, `advertise`, `token-env`, `max-body-size`, `max-response-size`, `request-timeout`, `drain-timeout`, `shutdown-timeout`, `max-upload-size`, `max-unpacked-size`, `trace-spans`, `trace-edges`, `async-queue`, `async-queue-size`, `allowed-hosts`, `allowed-origins`, `header-read-timeout`, `body-read-timeout`, `idle-timeout`, `max-connections`, `self-heal`"
    );
    // And as the top-level error: exit 78 with one cause per problem.
    let diagnostics = load(&fx.toml_path()).unwrap_err();
    let error = Error::from(diagnostics);
    assert_eq!(error.code, ExitCode::Config);
    assert_eq!(error.message, "invalid configuration (5 problems)");
    assert_eq!(error.details.len(), 5);
}

#[test]
fn columns_count_characters_not_bytes() {
    let fx = Fixture::new();
    let err = fx
        .parse("[project]\n# déjà vu\nname = \"shop\"\nplatform = \"é\"\n")
        .unwrap_err();
    assert!(
        err.starts_with("fusion.toml:4:12: unknown platform `é`"),
        "{err}"
    );
    assert_eq!(check::line_column("ab\ncdé f", 8), (2, 5));
    assert_eq!(check::line_column("ab\ncdé f", 9), (2, 6));
}

#[test]
fn missing_fusion_toml_is_one_diagnostic() {
    let fx = Fixture::new();
    let err = load(&fx.toml_path()).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert!(err.0[0].message.starts_with("cannot read: "));
}

#[test]
fn durations() {
    let ok = [
        ("0s", Duration::ZERO),
        ("90s", Duration::from_secs(90)),
        ("5m", Duration::from_secs(300)),
        ("1h30m", Duration::from_secs(5400)),
        ("1h 30m", Duration::from_secs(5400)),
        ("500ms", Duration::from_millis(500)),
        (" 2m ", Duration::from_secs(120)),
    ];
    for (text, expected) in ok {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
    assert_eq!(
        parse_duration("90"),
        Err("missing unit; add a unit, e.g. `90s`".to_string())
    );
    assert_eq!(
        parse_duration("1.5"),
        Err("missing unit; add a unit, e.g. `1.5s`".to_string())
    );
    assert_eq!(
        parse_duration(""),
        Err(
            "empty duration; use a number with a unit, e.g. `500ms`, `90s`, `5m`, `1h30m`"
                .to_string()
        )
    );
    for bad in ["-1s", "5 parsecs", "m", "1h30"] {
        assert_eq!(
            parse_duration(bad),
            Err(
                "not a duration; use a number with a unit, e.g. `500ms`, `90s`, `5m`, `1h30m`"
                    .to_string()
            ),
            "{bad}"
        );
    }
}

#[test]
fn sizes() {
    assert_eq!(parse_size("4MiB"), Ok(4 * 1024 * 1024));
    assert_eq!(parse_size("512 KiB"), Ok(512 * 1024));
    assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
    assert_eq!(parse_size("100"), Ok(100));
    assert_eq!(parse_size("100B"), Ok(100));
    assert!(parse_size("0MiB")
        .unwrap_err()
        .starts_with("must be greater than zero"));
    assert!(parse_size("MiB").unwrap_err().starts_with("not a size"));
    assert!(parse_size("4mib")
        .unwrap_err()
        .starts_with("unknown unit `mib`"));
    assert!(parse_size("99999999999999999999GiB")
        .unwrap_err()
        .starts_with("too large"));
}

#[test]
fn paths_display_relative_to_a_base_below_it() {
    let base = Path::new("/home/u/proj");
    assert_eq!(
        relative_to(Path::new("/home/u/proj/tasks/a/function.yaml"), base),
        Some(Path::new("tasks/a/function.yaml"))
    );
    assert_eq!(
        relative_to(Path::new("/home/u/other/fusion.toml"), base),
        None
    );
    assert_eq!(relative_to(base, base), None);
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(display_path(&cwd.join("fusion.toml")), "fusion.toml");
    assert_eq!(
        display_path(Path::new("/elsewhere/fusion.toml")),
        "/elsewhere/fusion.toml"
    );
    assert_eq!(
        display_path(Path::new("rel/fusion.toml")),
        "rel/fusion.toml"
    );
    let d = Diagnostic::new(cwd.join("tasks/taskb/function.yaml"), "invalid YAML: x")
        .at(3, 5)
        .with_hint("fix it");
    assert_eq!(
        d.to_string(),
        "tasks/taskb/function.yaml:3:5: invalid YAML: x\n  hint: fix it"
    );
}

#[test]
fn discover_walks_up_to_the_nearest_fusion_toml() {
    let fx = Fixture::new();
    fx.write(FILE_NAME, "");
    fx.write("a/b/keep", "");
    assert_eq!(discover(&fx.root().join("a/b")), Some(fx.toml_path()));
}

#[test]
fn path_settings_expand_the_home_directory_and_are_relative_to_fusion_toml() {
    let fx = Fixture::new();
    let nuctl = |body: &str| {
        fx.parse(&with_project(&format!("[nuctl]\n{body}\n")))
            .unwrap()
            .nuctl
    };
    let home = PathBuf::from(std::env::var("HOME").unwrap());
    assert_eq!(
        nuctl("kubeconfig = \"~/.kube/config\"").kubeconfig,
        Some(home.join(".kube/config"))
    );
    assert_eq!(
        nuctl("kubeconfig = \"ci/kubeconfig\"").kubeconfig,
        Some(fx.root().join("ci/kubeconfig"))
    );
    assert_eq!(
        nuctl("kubeconfig = \"/etc/k\"").kubeconfig,
        Some(PathBuf::from("/etc/k"))
    );
    assert_eq!(
        nuctl("binary = \"bin/nuctl\"").binary,
        fx.root().join("bin/nuctl").display().to_string()
    );
    assert_eq!(nuctl("binary = \"nuctl-1.14\"").binary, "nuctl-1.14");
    let set = nuctl(
        "http-trigger-service-type = \"NodePort\"\nproxy-url = \"http://fz.tools.svc:8000/\"",
    );
    assert_eq!(set.http_trigger_service_type.as_deref(), Some("NodePort"));
    assert_eq!(set.proxy_url.as_deref(), Some("http://fz.tools.svc:8000"));
}

#[test]
fn the_runtime_is_checked_for_the_project_platform() {
    let fx = Fixture::new();
    fx.write(
        "tasks/taska/function.yaml",
        "spec:\n  runtime: \"python:3.12\"\n  handler: main:handler\n",
    );
    fx.write("tasks/taska/main.py", "");
    let tasks = "[tasks]\ntaska = \"tasks/taska\"\n";
    // local: accepted (with a warning naming the local Python).
    let ws = fx.load(&with_project(tasks)).unwrap();
    assert_eq!(ws.specs["taska"].runtime, "python:3.12");
    // nuctl: refused with the valid values, exit 78.
    let toml = format!("[project]\nname = \"shop\"\nplatform = \"nuctl\"\n\n{tasks}");
    assert_eq!(
        fx.load(&toml).unwrap_err(),
        "tasks/taska/function.yaml:2:3: unsupported runtime `python:3.12` on the nuctl platform\n  \
         hint: Nuclio 1.14 builds `python:3.9`, `python:3.10` and `python:3.11`, and `python` is \
         an alias for `python:3.9`: use one of those"
    );
    let error = Error::from(load(&fx.toml_path()).unwrap_err());
    assert_eq!(error.code, ExitCode::Config);
}

#[test]
fn optimizer_defaults_and_every_key() {
    let fx = Fixture::new();
    let config = fx.parse(&with_project("")).unwrap();
    assert_eq!(config.optimizer, super::OptimizerConfig::default());
    assert_eq!(config.optimizer.kind, super::OptimizerKind::Static);
    let config = fx
        .parse(&with_project(
            "[optimizer]\nkind = \"command\"\ninterval = \"30s\"\nmin-calls = 5\nmin-gain = 0.2\n\
             stable-intervals = 3\ncooldown = \"2m\"\ncommand = [\"python3\", \"opt.py\"]\n\
             timeout = \"5s\"\n",
        ))
        .unwrap();
    let o = config.optimizer;
    assert_eq!(o.kind, super::OptimizerKind::Command);
    assert_eq!(o.interval, Duration::from_secs(30));
    assert_eq!(o.min_calls, 5);
    assert!((o.min_gain - 0.2).abs() < 1e-12);
    assert_eq!(o.stable_intervals, 3);
    assert_eq!(o.cooldown, Duration::from_secs(120));
    assert_eq!(o.command, vec!["python3".to_string(), "opt.py".to_string()]);
    assert_eq!(o.timeout, Duration::from_secs(5));
    let config = fx
        .parse(&with_project(
            "[optimizer]\nkind = \"feedback\"\nmin-gain = 0\n",
        ))
        .unwrap();
    assert_eq!(config.optimizer.kind, super::OptimizerKind::Feedback);
}

#[test]
fn optimizer_problems_are_named_with_a_fix() {
    let fx = Fixture::new();
    let err = |rest: &str| fx.parse(&with_project(rest)).unwrap_err();
    assert_eq!(
        err("[optimizer]\nkind = \"smart\"\n"),
        "fusion.toml:5:8: unknown optimizer kind `smart`\n  hint: `optimizer.kind` is `static`, \
         `feedback` or `command`"
    );
    assert!(err("[optimizer]\nkind = \"command\"\n")
        .contains("`optimizer.kind = \"command\"` needs `command`"));
    assert!(err("[optimizer]\ncommand = [\"x\"]\n")
        .contains("`optimizer.command` is only read with `kind = \"command\"`"));
    assert!(err("[optimizer]\nkind = \"command\"\ncommand = []\n")
        .contains("`optimizer.command` must be a non-empty array of strings"));
    assert!(err("[optimizer]\nmin-gain = 1.5\n")
        .contains("`optimizer.min-gain` is 1.5, outside 0 to 1"));
    assert!(err("[optimizer]\nmin-calls = 0\n")
        .contains("`optimizer.min-calls` must be a whole number of at least 1"));
    assert!(err("[optimizer]\ninterval = \"0s\"\n")
        .contains("`optimizer.interval` must be greater than zero"));
    assert!(err("[optimizer]\ntimeout = \"10\"\n")
        .contains("invalid `optimizer.timeout` `10`: missing unit"));
    assert!(err("[optimizer]\nintreval = \"1m\"\n").contains("did you mean `interval`?"));
}

#[test]
fn overrides_name_declared_tasks_and_a_memory_quantity() {
    let fx = Fixture::new();
    let tasks = "[tasks]\ntaska = { upload = true }\ntaskb = { upload = true }\n\n";
    let config = fx
        .parse(&with_project(&format!(
            "{tasks}[[override]]\ntasks = [\"taskb\", \"taska\"]\nresources.limits.memory = \"96Mi\"\n"
        )))
        .unwrap();
    assert_eq!(
        config.overrides,
        vec![super::Override {
            tasks: vec!["taska".into(), "taskb".into()],
            memory_limit: Some("96Mi".into()),
        }]
    );
    let err = |rest: &str| {
        fx.parse(&with_project(&format!("{tasks}{rest}")))
            .unwrap_err()
    };
    assert!(err("[[override]]\ntasks = [\"taskx\"]\n").contains("override 1: unknown task `taskx`"));
    assert!(
        err("[[override]]\ntasks = [\"taska\"]\nresources.limits.memory = \"lots\"\n")
            .contains("invalid `override 1.resources.limits.memory` `lots`")
    );
    assert!(
        err("[[override]]\ntasks = [\"taska\"]\nresources.limits.cpu = \"1\"\n")
            .contains("unknown key `cpu` in override 1.resources.limits")
    );
    assert!(
        err("[[override]]\ntasks = [\"taska\"]\n\n[[override]]\ntasks = [\"taska\"]\n")
            .contains("override 2: another `[[override]]` is for the same tasks `taska`")
    );
    assert!(err("[[override]]\nresources.limits.memory = \"1Gi\"\n")
        .contains("override 1 is missing `tasks`"));
}

/// The override's task list is read by the same reader as a phase's group, in its own words.
#[test]
fn override_task_list_problems_are_worded_for_the_override() {
    let fx = Fixture::new();
    let tasks = "[tasks]\ntaska = { upload = true }\ntaskb = { upload = true }\n\n";
    let err = |list: &str| {
        fx.parse(&with_project(&format!(
            "{tasks}[[override]]\ntasks = {list}\n"
        )))
        .unwrap_err()
    };
    assert_eq!(
        err("[\"taska\", \"taska\"]"),
        "fusion.toml:9:19: override 1: task `taska` is listed twice\n  hint: list each task once"
    );
    assert_eq!(
        err("[]"),
        "fusion.toml:9:9: override 1: `tasks` is empty\n  \
         hint: name the tasks of the function it applies to"
    );
    assert_eq!(
        err("[\"taska\", 1]"),
        "fusion.toml:9:19: `override 1.tasks` must be task names, found integer"
    );
    assert_eq!(
        err("\"taska\""),
        "fusion.toml:9:9: `override 1.tasks` must be an array of task names, found string"
    );
    assert_eq!(
        err("[\"taskb\", \"tasbk\"]"),
        "fusion.toml:9:19: override 1: unknown task `tasbk`\n  hint: did you mean `taskb`?"
    );
}

/// `FUSIONIZER_PROXY_URL` is decided in one place, for serve running, nuctl and local alike.
#[test]
fn the_proxy_url_tasks_use_follows_serve_advertise_and_nuctl_proxy_url() {
    let fx = Fixture::new();
    let plain = "[serve]\nlisten = \"0.0.0.0:9000\"\n";
    let advertised = "[serve]\nlisten = \"0.0.0.0:9000\"\nadvertise = \"fz.invalid\"\n";
    let proxy = format!("{advertised}\n[nuctl]\nproxy-url = \"http://proxy.invalid:8000\"\n");
    // (platform, settings, the address serve bound, the URL)
    let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        (
            "local",
            plain,
            Some("0.0.0.0:9100"),
            Some("http://127.0.0.1:9100"),
        ),
        (
            "local",
            plain,
            Some("127.0.0.2:9100"),
            Some("http://127.0.0.2:9100"),
        ),
        ("local", plain, None, Some("http://0.0.0.0:9000")),
        (
            "local",
            advertised,
            Some("0.0.0.0:9100"),
            Some("http://fz.invalid:9100"),
        ),
        ("local", advertised, None, Some("http://fz.invalid:9000")),
        ("nuctl", advertised, None, Some("http://fz.invalid:9000")),
        ("nuctl", "", None, None),
        ("nuctl", &proxy, None, Some("http://proxy.invalid:8000")),
    ];
    for (platform, rest, bound, url) in cases {
        let config = fx
            .parse(&format!(
                "[project]\nname = \"shop\"\nplatform = \"{platform}\"\n\n{rest}"
            ))
            .unwrap();
        let bound = bound.map(|text| text.parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(
            config.proxy_url(bound).as_deref(),
            *url,
            "{platform} {rest:?} {bound:?}"
        );
    }
}

/// Loads `toml` as fusion.toml with `overlay` written to `overlay.toml` beside it.
fn load_with_overlay(fx: &Fixture, toml: &str, overlay: &str) -> Result<Workspace, String> {
    fx.write(FILE_NAME, toml);
    fx.write("overlay.toml", overlay);
    let options = LoadOptions {
        state_dir: None,
        overlay: Some(fx.root().join("overlay.toml")),
    };
    load_with(&fx.toml_path(), &options).map_err(|d| render(&d, fx.root()))
}

#[test]
fn an_overlay_replaces_serve_and_nuctl_keys_and_keeps_the_others() {
    let fx = Fixture::new();
    let toml = with_project(
        "[serve]\nlisten = \"127.0.0.1:9000\"\nrequest-timeout = \"5s\"\n\n\
         [nuctl]\nnamespace = \"nuclio\"\nproxy-url = \"http://serve.invalid:8000\"\n",
    );
    let overlay = "[serve]\nlisten = \"0.0.0.0:8000\"\nallowed-hosts = [\"fusionizer\"]\n\n\
                   [nuctl]\ninvocation-url = \"internal\"\n";
    let ws = load_with_overlay(&fx, &toml, overlay).unwrap();
    let c = &ws.config;
    assert_eq!(c.serve.listen, "0.0.0.0:8000");
    assert_eq!(c.serve.request_timeout, Duration::from_secs(5));
    assert_eq!(c.serve.allowed_hosts, vec!["fusionizer".to_string()]);
    assert_eq!(c.nuctl.invocation_url, UrlPreference::Internal);
    assert_eq!(c.nuctl.namespace.as_deref(), Some("nuclio"));
    assert_eq!(
        c.nuctl.proxy_url.as_deref(),
        Some("http://serve.invalid:8000")
    );
    assert_eq!(c.overlay, Some(fx.root().join("overlay.toml")));
    // Loading again alike (serve's `--watch`) keeps the overlay.
    assert_eq!(
        c.load_options().overlay,
        Some(fx.root().join("overlay.toml"))
    );
}

#[test]
fn an_overlay_adds_tables_fusion_toml_does_not_have() {
    let fx = Fixture::new();
    let ws = load_with_overlay(
        &fx,
        &with_project(""),
        "[serve]\nlisten = \"0.0.0.0:8000\"\n",
    )
    .unwrap();
    assert_eq!(ws.config.serve.listen, "0.0.0.0:8000");
}

#[test]
fn an_overlay_value_that_is_wrong_is_reported_in_the_overlay() {
    let fx = Fixture::new();
    let err = load_with_overlay(
        &fx,
        &with_project("[serve]\nlisten = \"127.0.0.1:9000\"\n"),
        "[nuctl]\ninvocation-url = \"inside\"\n\n[serve]\nlisten = \"fusionizer:8000\"\n",
    )
    .unwrap_err();
    assert_eq!(
        err,
        "overlay.toml:2:18: unknown `invocation-url` `inside`\n  \
         hint: `invocation-url` is `external` or `internal`\n\
         overlay.toml:5:10: invalid `listen` address `fusionizer:8000`\n  \
         hint: use `IP:PORT`, e.g. `127.0.0.1:8000` or `0.0.0.0:8000`"
    );
}

#[test]
fn an_overlay_may_hold_only_serve_and_nuctl() {
    let fx = Fixture::new();
    let err = load_with_overlay(
        &fx,
        &with_project(""),
        "listen = \"0.0.0.0:8000\"\nserve = 3\n\n[tasks]\nx = \"tasks/x\"\n",
    )
    .unwrap_err();
    assert_eq!(
        err,
        "overlay.toml:1:1: the overlay may not set the top-level key `listen`\n  \
         hint: an overlay holds only the `[serve]` and `[nuctl]` tables; set everything else in \
         fusion.toml\n\
         overlay.toml:2:9: the overlay's `serve` must be a table, found integer\n  \
         hint: write `[serve]` and the settings below it\n\
         overlay.toml:4:2: the overlay may not set the table `[tasks]`\n  \
         hint: an overlay holds only the `[serve]` and `[nuctl]` tables; set everything else in \
         fusion.toml"
    );
}

#[test]
fn an_overlay_that_is_missing_or_not_toml_is_refused_naming_it() {
    let fx = Fixture::new();
    let err = load_with_overlay(&fx, &with_project(""), "[serve\n").unwrap_err();
    assert!(
        err.starts_with("overlay.toml:1:7: the overlay is not valid TOML: "),
        "{err}"
    );
    fx.write(FILE_NAME, &with_project(""));
    let options = LoadOptions {
        state_dir: None,
        overlay: Some(fx.root().join("missing.toml")),
    };
    let err = render(
        &load_with(&fx.toml_path(), &options).unwrap_err(),
        fx.root(),
    );
    assert!(
        err.starts_with("missing.toml: cannot read the overlay: "),
        "{err}"
    );
    assert!(err.contains("`--overlay` or `FUSIONIZER_OVERLAY`"), "{err}");
}

#[test]
fn the_state_dir_defaults_beside_fusion_toml_and_follows_the_option() {
    let fx = Fixture::new();
    let ws = fx.load(&with_project("")).unwrap();
    assert_eq!(ws.config.state_dir(), fx.root().join(".fusionizer"));
    let elsewhere = fx.root().join("state");
    let options = LoadOptions {
        state_dir: Some(elsewhere.clone()),
        overlay: None,
    };
    let ws = load_with(&fx.toml_path(), &options).unwrap();
    assert_eq!(ws.config.state_dir(), elsewhere);
    assert_eq!(ws.config.load_options(), options);
}
