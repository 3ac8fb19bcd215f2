//! The harness every integration test shares (the specs are in `tests/it`): here a temp project,
//! the `fusionizer` binary with a clean environment, insta settings that hide temp paths and
//! digests, and the processes and venv cache of the local platform; in the files beside it,
//! waiting with a deadline ([`wait`]), running commands and reading their output ([`cli`]), a
//! running serve ([`serve`]), the fake nuctl ([`nuctl`]) and the JSON Schema check ([`schema`]).

#![allow(dead_code)]

mod cli;
mod nuctl;
mod schema;
mod serve;
mod wait;

use std::path::{Path, PathBuf};

pub(crate) use cli::*;
pub(crate) use nuctl::*;
pub(crate) use schema::*;
pub(crate) use serve::*;
pub(crate) use wait::*;

/// A temp dir holding a project directory (`project/`) and a `home/` used as `HOME`.
pub(crate) struct TestEnv {
    tmp: tempfile::TempDir,
}

impl TestEnv {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().expect("create a temp dir");
        std::fs::create_dir_all(tmp.path().join("home")).unwrap();
        std::fs::create_dir_all(tmp.path().join("project")).unwrap();
        TestEnv { tmp }
    }

    /// A test env whose project is a copy of `examples/<name>` from this repository.
    pub(crate) fn example(name: &str) -> Self {
        let env = TestEnv::new();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name);
        for entry in walkdir::WalkDir::new(&src).sort_by_file_name() {
            let entry = entry.unwrap();
            let rel = entry.path().strip_prefix(&src).unwrap();
            if rel.components().any(|c| c.as_os_str() == ".fusionizer") {
                continue;
            }
            let dest = env.project().join(rel);
            if entry.file_type().is_dir() {
                std::fs::create_dir_all(&dest).unwrap();
            } else {
                std::fs::copy(entry.path(), &dest).unwrap();
            }
        }
        env
    }

    /// The temp dir itself.
    pub(crate) fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// The project directory (the working directory of [`TestEnv::cmd`]).
    pub(crate) fn project(&self) -> PathBuf {
        self.tmp.path().join("project")
    }

    /// Writes `(path, content)` pairs below the project directory, creating parents.
    pub(crate) fn write(&self, files: &[(&str, &str)]) -> &Self {
        for (rel, content) in files {
            let path = self.project().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        self
    }

    /// The `fusionizer` binary, run in the project directory with nothing inherited from the
    /// environment but `PATH`; `HOME` is the temp home and `NO_COLOR=1`.
    pub(crate) fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_fusionizer"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root().join("home"))
            .env("NO_COLOR", "1")
            .current_dir(self.project());
        cmd
    }

    /// insta settings replacing this env's temp paths with `[TEMP]` and sha256 digests with
    /// `sha256:[DIGEST]` (they change whenever the dispatcher runtime does).
    pub(crate) fn settings(&self) -> insta::Settings {
        let mut settings = insta::Settings::clone_current();
        let mut roots = vec![self.root().to_path_buf()];
        if let Ok(canonical) = self.root().canonicalize() {
            if canonical != self.root() {
                roots.push(canonical);
            }
        }
        for root in roots {
            settings.add_filter(&regex_escape(&root.display().to_string()), "[TEMP]");
        }
        settings.add_filter(r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]");
        settings
    }
}

/// `text` with every regex metacharacter escaped.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The whole output of a finished command: exit code, stdout, stderr.
pub(crate) fn transcript(output: &std::process::Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        output
            .status
            .code()
            .map_or("signal".to_string(), |c| c.to_string()),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every file below `dir`: relative path → bytes, sorted.
pub(crate) fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let rel = entry.path().strip_prefix(dir).unwrap();
            files.push((
                rel.to_string_lossy().replace('\\', "/"),
                std::fs::read(entry.path()).unwrap(),
            ));
        }
    }
    files
}

/// Whether process `pid` is running (exists and is not a zombie waiting to be reaped).
pub(crate) fn process_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("");
    !matches!(state, "Z" | "X" | "x")
}

/// The running local workers (pid, command line arguments) whose `--function` starts with
/// `<project>-`, found in `/proc`.
pub(crate) fn workers_of(project: &str) -> Vec<(u32, Vec<String>)> {
    let prefix = format!("{project}-");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_worker = args.iter().any(|a| a == "fusionizer_dispatcher.worker")
            && args
                .windows(2)
                .any(|w| w[0] == "--function" && w[1].starts_with(&prefix));
        if is_worker && process_running(pid) {
            found.push((pid, args));
        }
    }
    found
}

/// Entries of `dir` (names), sorted; empty when it does not exist.
pub(crate) fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The virtualenv cache every test shares (under the target dir, so a clean build starts cold).
pub(crate) fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fusionizer-cache")
}

/// Points this test process's local platform at [`cache_dir`]. Every test sets the same value,
/// so concurrent tests agree.
pub(crate) fn use_shared_cache() {
    std::env::set_var("FUSIONIZER_CACHE_DIR", cache_dir());
}

/// A minimal fusion.toml of project `shop` on the local platform, rooted at `root`.
pub(crate) fn local_config(root: &Path) -> fusionizer::config::Config {
    use fusionizer::config::{
        Config, NuctlConfig, OptimizerConfig, PlatformKind, ProjectConfig, ServeConfig,
    };
    Config {
        file: root.join("fusion.toml"),
        root: root.to_path_buf(),
        state_dir: root.join(".fusionizer"),
        overlay: None,
        project: ProjectConfig {
            name: "shop".to_string(),
            platform: PlatformKind::Local,
        },
        tasks: std::collections::BTreeMap::new(),
        phases: Vec::new(),
        serve: ServeConfig::default(),
        nuctl: NuctlConfig::default(),
        optimizer: OptimizerConfig::default(),
        overrides: Vec::new(),
    }
}
