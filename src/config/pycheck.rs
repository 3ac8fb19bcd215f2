//! The tasks' Python, checked without running it: every `.py` file of every task is compiled to
//! a syntax tree by the local Python (`$FUSIONIZER_PYTHON`, default `python3`) in one batched
//! run of `pycheck.py`, and the handler named by `spec.handler` must be defined in its module
//! with a signature the dispatcher can call. `validate`, `plan` and `apply` run it, so a missing
//! `:` is an error with its file, line and column before anything is deployed.
//!
//! Which grammar is checked: the local Python's. When the task's runtime is an older Python
//! (Nuclio's bare `python` is Python 3.9), each file is also parsed with
//! `ast.parse(feature_version=(3, minor))`, which catches most newer syntax (`match`, `except*`,
//! parenthesised context managers...) on a best-effort basis, as Python's documentation says.
//! Such a file is an error on the nuctl platform (Nuclio would run it with the older Python) and
//! a warning on the local platform (which runs every task with the local Python). When the local
//! Python is older than a nuctl task's runtime, what it cannot parse is only a warning. Without
//! a usable local Python the check is skipped with a warning; the rest of validation stands.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::closest;
use super::taskspec::{located, module_file};
use super::{Diagnostic, Diagnostics, PlatformKind, TaskSpec, Workspace};
use crate::contract::{ENV_PYTHON, FUNCTION_FILE};

/// The checker, run with `python -I -B -c`: isolated, and writing no bytecode (it only parses the
/// tasks' files, and a project may be read-only).
const SCRIPT: &str = include_str!("pycheck.py");
/// How long the checker may run (it only parses).
const TIMEOUT: Duration = Duration::from_secs(120);
/// Directories never deployed (as `src/fuse/files.rs` skips them), so never checked.
const SKIPPED_DIRS: &[&str] = &["__pycache__", ".git", ".fusionizer"];
/// How the dispatcher calls a handler (`dispatcher/fusionizer_dispatcher/dispatcher.py`,
/// `_handle_task`), for hints.
const HANDLER_HINT: &str = "the dispatcher calls a handler as `handler(context, event)`, or as \
     `handler(context, event, requests_session)` when it takes three or more positional \
     parameters; `async def` works too";

/// What the check found.
#[derive(Debug, Default, PartialEq)]
pub struct PythonCheck {
    /// Problems that fail validation.
    pub errors: Vec<Diagnostic>,
    /// Problems worth saying that do not (see the module documentation).
    pub warnings: Vec<Diagnostic>,
}

/// Checks the Python of every task of `ws` that has a directory ([`PythonCheck`]); prints the
/// warnings and returns the errors (exit 78).
pub fn check_python(ws: &Workspace) -> Result<(), Diagnostics> {
    let check = check_specs(
        ws.specs.values(),
        ws.config.project.platform,
        &ws.config.file,
    );
    for warning in &check.warnings {
        tracing::warn!("{warning}");
    }
    if check.errors.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics(check.errors))
    }
}

/// [`check_python`] over `specs`, without printing; `config_file` (fusion.toml) is where a
/// check that could not run is reported.
pub fn check_specs<'a>(
    specs: impl IntoIterator<Item = &'a TaskSpec>,
    platform: PlatformKind,
    config_file: &Path,
) -> PythonCheck {
    let python = std::env::var(ENV_PYTHON)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "python3".to_string());
    let tasks: Vec<TaskFiles> = specs.into_iter().map(TaskFiles::of).collect();
    let mut request = Request::default();
    for task in &tasks {
        for file in &task.files {
            request.files.push(FileRequest {
                path: file.clone(),
                feature: runtime_minor(&task.spec.runtime),
            });
        }
        if let Some(module) = &task.module {
            request.functions.push(FunctionRequest {
                path: module.clone(),
                name: task.spec.handler_function.clone(),
            });
            request.functions.push(FunctionRequest {
                path: module.clone(),
                name: "init_context".to_string(),
            });
        }
    }
    if request.files.is_empty() {
        return PythonCheck::default();
    }
    match run(&python, &request) {
        Ok(answer) => judge(&tasks, &answer, platform),
        Err(why) => PythonCheck {
            errors: Vec::new(),
            warnings: vec![Diagnostic::new(
                config_file,
                format!("the tasks' Python was not checked: {why}"),
            )
            .with_hint(format!(
                "install Python 3 or point `{ENV_PYTHON}` at one; the rest of the configuration \
                 was checked"
            ))],
        },
    }
}

/// One task's files to check.
struct TaskFiles<'a> {
    spec: &'a TaskSpec,
    /// Every `.py` file that would be deployed, sorted.
    files: Vec<PathBuf>,
    /// The handler's module file.
    module: Option<PathBuf>,
}

impl<'a> TaskFiles<'a> {
    fn of(spec: &'a TaskSpec) -> Self {
        let files = walkdir::WalkDir::new(&spec.dir)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| {
                entry.depth() == 0
                    || !(entry.file_type().is_dir()
                        && SKIPPED_DIRS.contains(&entry.file_name().to_string_lossy().as_ref()))
            })
            .flatten()
            .filter(|entry| {
                entry.file_type().is_file() && entry.file_name().to_string_lossy().ends_with(".py")
            })
            .map(walkdir::DirEntry::into_path)
            .collect();
        TaskFiles {
            spec,
            files,
            module: module_file(&spec.dir, &spec.handler_module),
        }
    }
}

/// `python:3.<minor>` (bare `python` is 3.9, as Nuclio aliases it) → minor.
fn runtime_minor(runtime: &str) -> Option<u32> {
    if runtime == "python" {
        return Some(9);
    }
    runtime.strip_prefix("python:3.")?.parse().ok()
}

/// The runtime's Python version for messages.
fn runtime_python(runtime: &str) -> String {
    match runtime_minor(runtime) {
        Some(minor) => format!("Python 3.{minor}"),
        None => format!("`{runtime}`"),
    }
}

#[derive(Debug, Default, Serialize)]
struct Request {
    files: Vec<FileRequest>,
    functions: Vec<FunctionRequest>,
}

#[derive(Debug, Serialize)]
struct FileRequest {
    path: PathBuf,
    feature: Option<u32>,
}

#[derive(Debug, Serialize)]
struct FunctionRequest {
    path: PathBuf,
    name: String,
}

/// `pycheck.py`'s answer.
#[derive(Debug, Deserialize)]
struct Answer {
    version: (u32, u32),
    files: Vec<FileAnswer>,
    functions: Vec<Binding>,
}

#[derive(Debug, Deserialize)]
struct FileAnswer {
    error: Option<SyntaxProblem>,
    feature_error: Option<SyntaxProblem>,
}

#[derive(Debug, Deserialize)]
struct SyntaxProblem {
    line: usize,
    column: usize,
    message: String,
}

/// How a name is bound at a module's top level.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Binding {
    kind: String,
    line: usize,
    column: usize,
    decorated: bool,
    positional: usize,
    defaults: usize,
    varargs: bool,
    kwonly_required: Vec<String>,
    functions: Vec<String>,
}

/// Runs the checker on `request`; why not, as a sentence.
fn run(python: &str, request: &Request) -> Result<Answer, String> {
    let file = tempfile::NamedTempFile::new()
        .map_err(|e| format!("cannot write the request for `{python}`: {e}"))?;
    let mut writer = std::io::BufWriter::new(file);
    serde_json::to_writer(&mut writer, request)
        .map_err(|e| format!("cannot write the request for `{python}`: {e}"))?;
    let file = writer
        .into_inner()
        .map_err(|e| format!("cannot write the request for `{python}`: {}", e.error()))?;
    let cmd = crate::proc::Cmd::new(python)
        .args(["-I", "-B", "-c", SCRIPT])
        .arg(file.path())
        .timeout(TIMEOUT);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start `{python}`: {e}"))?;
    let output = runtime.block_on(cmd.output()).map_err(|e| match e {
        crate::proc::ProcError::NotFound { program } => format!("could not find `{program}`"),
        other => other.to_string(),
    })?;
    if output.status != 0 {
        let last = output
            .stderr
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .to_string();
        return Err(format!("`{python}` exited {}: {last}", output.status));
    }
    let answer: Answer = serde_json::from_str(&output.stdout)
        .map_err(|e| format!("`{python}` answered something else than the check's JSON: {e}"))?;
    if answer.files.len() != request.files.len()
        || answer.functions.len() != request.functions.len()
    {
        return Err(format!(
            "`{python}` answered for other files than it was asked"
        ));
    }
    Ok(answer)
}

/// The problems in `answer` (to the request built from `tasks`, in order).
fn judge(tasks: &[TaskFiles<'_>], answer: &Answer, platform: PlatformKind) -> PythonCheck {
    let mut check = PythonCheck::default();
    let (_, local_minor) = answer.version;
    let local = format!("Python 3.{local_minor}");
    let mut files = answer.files.iter();
    let mut functions = answer.functions.iter();
    for task in tasks {
        let name = &task.spec.name;
        let runtime = &task.spec.runtime;
        let target = runtime_minor(runtime);
        let mut parsed = BTreeMap::new();
        for path in &task.files {
            let Some(found) = files.next() else { break };
            parsed.insert(path.clone(), found.error.is_none());
            if let Some(error) = &found.error {
                let diagnostic = at(
                    Diagnostic::new(
                        path,
                        format!("task `{name}`: invalid Python: {}", error.message),
                    ),
                    error,
                );
                match target {
                    Some(minor) if platform == PlatformKind::Nuctl && minor > local_minor => {
                        check.warnings.push(
                            Diagnostic {
                                message: format!(
                                    "task `{name}`: the local {local} cannot parse this file \
                                     ({}); its runtime `{runtime}` may",
                                    error.message
                                ),
                                ..diagnostic
                            }
                            .with_hint(format!(
                                "to check it, point `{ENV_PYTHON}` at a Python 3.{minor}"
                            )),
                        );
                    }
                    _ => check.errors.push(diagnostic),
                }
            } else if let Some(error) = &found.feature_error {
                let python = runtime_python(runtime);
                let diagnostic = at(
                    Diagnostic::new(
                        path,
                        format!(
                            "task `{name}`: not valid {python}, which runtime `{runtime}` is: {}",
                            error.message
                        ),
                    ),
                    error,
                );
                match platform {
                    PlatformKind::Nuctl => check.errors.push(diagnostic.with_hint(format!(
                        "Nuclio runs this task with {python}: write it for that Python, or \
                         choose a newer runtime such as `python:3.11`"
                    ))),
                    PlatformKind::Local => check.warnings.push(diagnostic.with_hint(format!(
                        "the local platform runs it with the local {local}, but Nuclio would \
                         not (checked on a best-effort basis, as Python's `ast` does)"
                    ))),
                }
            }
        }
        let Some(module) = &task.module else { continue };
        let (Some(handler), Some(init)) = (functions.next(), functions.next()) else {
            break;
        };
        if !parsed.get(module).copied().unwrap_or(true) {
            continue;
        }
        check
            .errors
            .extend(handler_problem(task.spec, module, handler));
        if handler.kind == "def" {
            check.errors.extend(init_problem(task.spec, module, init));
            check
                .warnings
                .extend(requests_problem(task.spec, module, handler));
        }
    }
    check
}

/// `diagnostic` at `problem`'s line and column, where known.
fn at(diagnostic: Diagnostic, problem: &SyntaxProblem) -> Diagnostic {
    match (problem.line, problem.column) {
        (0, _) => diagnostic,
        (line, 0) => Diagnostic {
            line: Some(line),
            ..diagnostic
        },
        (line, column) => diagnostic.at(line, column),
    }
}

/// `module` relative to the task directory, for messages.
fn relative(spec: &TaskSpec, module: &Path) -> String {
    module
        .strip_prefix(&spec.dir)
        .unwrap_or(module)
        .display()
        .to_string()
}

/// The handler is missing from its module, or defined with a signature the dispatcher cannot
/// call (`dispatcher.py`, `_positional_arity` and `_handle_task`).
fn handler_problem(spec: &TaskSpec, module: &Path, binding: &Binding) -> Option<Diagnostic> {
    let function = &spec.handler_function;
    let handler = format!("{}:{function}", spec.handler_module);
    let file = relative(spec, module);
    match binding.kind.as_str() {
        "missing" => {
            let yaml = spec.dir.join(FUNCTION_FILE);
            let text = std::fs::read_to_string(&yaml).unwrap_or_default();
            let hint = match closest(function, binding.functions.iter().map(String::as_str)) {
                Some(close) => format!(
                    "did you mean `{close}`? (`{}:{close}`)",
                    spec.handler_module
                ),
                None => format!("define `def {function}(context, event):` in `{file}`"),
            };
            Some(
                located(
                    Diagnostic::new(
                        &yaml,
                        format!("handler `{handler}`: `{file}` defines no function `{function}`"),
                    ),
                    &text,
                    &["spec", "handler"],
                )
                .with_hint(hint),
            )
        }
        "def" if !binding.decorated => {
            // Like `_positional_arity`: three or more positional parameters get the session.
            let passed = if binding.positional >= 3 { 3 } else { 2 };
            let required = binding.positional.saturating_sub(binding.defaults);
            let why = signature_problem(binding, passed, required)?;
            Some(
                Diagnostic::new(
                    module,
                    format!("task `{}`: handler `{function}` {why}", spec.name),
                )
                .at(binding.line, binding.column)
                .with_hint(HANDLER_HINT),
            )
        }
        _ => None,
    }
}

/// A requests_session-style handler (three or more positional parameters, as the dispatcher's
/// `_positional_arity` counts them) in a task whose build commands do not install `requests`,
/// which Nuclio's Python image lacks (its wrapper installs nuclio-sdk and msgpack only:
/// `pkg/processor/runtime/python/py/requirements/`), as the local platform's environments do.
fn requests_problem(spec: &TaskSpec, module: &Path, binding: &Binding) -> Option<Diagnostic> {
    if binding.decorated || binding.positional < 3 || installs_requests(spec) {
        return None;
    }
    let function = &spec.handler_function;
    Some(
        Diagnostic::new(
            module,
            format!(
                "task `{}`: handler `{function}` takes a `requests_session`, but the task's \
                 build commands do not install `requests`, which Nuclio's image does not have",
                spec.name
            ),
        )
        .at(binding.line, binding.column)
        .with_hint(format!(
            "add `pip install requests` to `spec.build.commands` in the task's `{FUNCTION_FILE}`; \
             without it the function fails to deploy, on the local platform as on Nuclio"
        )),
    )
}

/// Whether `spec`'s build commands install `requests`: a command naming the package `requests`
/// (`pip install requests`, `requests==2.32.3`, `"requests>=2"`), or a requirements file given
/// with `-r`/`--requirement` that lists it (read from the task's directory, where a path under
/// `/opt/nuclio/` or a relative one points). A heuristic for a warning: a package installed
/// some other way is not seen.
fn installs_requests(spec: &TaskSpec) -> bool {
    let commands: Vec<&str> = spec
        .function
        .get("spec")
        .and_then(|s| s.get("build"))
        .and_then(|b| b.get("commands"))
        .and_then(serde_norway::Value::as_sequence)
        .map(|list| {
            list.iter()
                .filter_map(serde_norway::Value::as_str)
                .collect()
        })
        .unwrap_or_default();
    commands.iter().any(|command| {
        let words: Vec<&str> = command.split_whitespace().collect();
        words.iter().any(|word| names_requests(word))
            || words.windows(2).any(|pair| {
                matches!(pair[0], "-r" | "--requirement")
                    && requirements_file(spec, pair[1])
                        .is_some_and(|text| text.lines().any(|line| names_requests(line.trim())))
            })
    })
}

/// Whether a requirement (`requests`, `requests[socks]==2.32.3`, quoted) names `requests`.
fn names_requests(requirement: &str) -> bool {
    let requirement = requirement.trim_matches(|c| c == '"' || c == '\'');
    let name = requirement
        .split(|c: char| "<>=!~;[ @".contains(c))
        .next()
        .unwrap_or_default();
    name.eq_ignore_ascii_case("requests")
}

/// The text of a requirements file a build command names, read from the task's directory: a
/// path that leaves it (`..`, or absolute outside `/opt/nuclio/`) is not read, nor is more than
/// [`MAX_REQUIREMENTS_FILE`] of it (a build command is the task author's, and could name
/// `/dev/zero`).
fn requirements_file(spec: &TaskSpec, path: &str) -> Option<String> {
    use std::io::Read;
    use std::path::Component;
    let path = path.trim_matches(|c| c == '"' || c == '\'');
    let relative = match path.strip_prefix("/opt/nuclio/") {
        Some(rest) => rest,
        None if path.starts_with('/') => return None,
        None => path,
    };
    if !Path::new(relative)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    let file = std::fs::File::open(spec.dir.join(relative)).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_REQUIREMENTS_FILE)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// How much of a requirements file [`requirements_file`] reads.
const MAX_REQUIREMENTS_FILE: u64 = 1 << 20;

/// Why a function of `binding`'s signature cannot be called with `passed` positional arguments.
fn signature_problem(binding: &Binding, passed: usize, required: usize) -> Option<String> {
    if let Some(name) = binding.kwonly_required.first() {
        return Some(format!(
            "has the keyword-only parameter `{name}` without a default, which is never passed"
        ));
    }
    if binding.positional < passed && !binding.varargs {
        return Some(format!(
            "takes {} positional parameter{}, but is called with {passed}",
            binding.positional,
            if binding.positional == 1 { "" } else { "s" }
        ));
    }
    if required > passed {
        return Some(format!(
            "requires {required} positional arguments, but is called with {passed}"
        ));
    }
    None
}

/// `init_context` defined beside the handler with a signature that cannot take `(context)`
/// (`dispatcher.py`, `_init_tasks`).
fn init_problem(spec: &TaskSpec, module: &Path, binding: &Binding) -> Option<Diagnostic> {
    if binding.kind != "def" || binding.decorated {
        return None;
    }
    let required = binding.positional.saturating_sub(binding.defaults);
    let why = signature_problem(binding, 1, required)?;
    Some(
        Diagnostic::new(
            module,
            format!("task `{}`: `init_context` {why}", spec.name),
        )
        .at(binding.line, binding.column)
        .with_hint("the dispatcher calls `init_context(context)` once per worker"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with_commands(dir: &Path, commands: &[&str]) -> TaskSpec {
        let yaml = format!(
            "spec:\n  build:\n    commands: {}\n",
            serde_json::to_string(commands).unwrap()
        );
        TaskSpec {
            name: "taska".to_string(),
            dir: dir.to_path_buf(),
            function: serde_norway::from_str(&yaml).unwrap(),
            runtime: "python:3.11".to_string(),
            handler_module: "main".to_string(),
            handler_function: "handler".to_string(),
        }
    }

    #[test]
    fn requests_is_seen_in_commands_and_in_the_requirements_files_they_name() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("requirements.txt"),
            "numpy\nRequests>=2.31\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("other.txt"), "requests-oauthlib\n").unwrap();
        let installs =
            |commands: &[&str]| installs_requests(&spec_with_commands(tmp.path(), commands));
        assert!(installs(&["pip install requests"]));
        assert!(installs(&["pip install -q 'requests==2.32.3' numpy"]));
        assert!(installs(&["pip install requests[socks]"]));
        assert!(installs(&[
            "@nuclio.postCopy",
            "pip install -r /opt/nuclio/requirements.txt"
        ]));
        assert!(installs(&["pip install --requirement requirements.txt"]));
        assert!(!installs(&[]));
        assert!(!installs(&[
            "pip install numpy",
            "pip install requests-oauthlib"
        ]));
        assert!(!installs(&[
            "pip install -r other.txt",
            "pip install -r missing.txt"
        ]));
        assert!(!installs(&["pip install -r /etc/requirements.txt"]));
        // Nothing outside the task's directory is read, nor anything but a regular file.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(tmp.path().join("leak.txt"), "requests\n").unwrap();
        let inner = |commands: &[&str]| installs_requests(&spec_with_commands(&outside, commands));
        assert!(!inner(&["pip install -r ../leak.txt"]));
        assert!(!inner(&["pip install -r /opt/nuclio/../leak.txt"]));
        assert!(!inner(&["pip install -r /opt/nuclio/../../../../dev/zero"]));
        std::fs::create_dir(outside.join("dir")).unwrap();
        assert!(!inner(&["pip install -r dir"]));
    }

    #[test]
    fn runtimes_map_to_their_python() {
        assert_eq!(runtime_minor("python"), Some(9));
        assert_eq!(runtime_minor("python:3.11"), Some(11));
        assert_eq!(runtime_minor("python:3.x"), None);
        assert_eq!(runtime_python("python"), "Python 3.9");
    }

    fn def(positional: usize, defaults: usize, varargs: bool) -> Binding {
        Binding {
            kind: "def".to_string(),
            positional,
            defaults,
            varargs,
            ..Binding::default()
        }
    }

    /// Whether the dispatcher can call a handler of this signature.
    fn callable(binding: &Binding) -> bool {
        let passed = if binding.positional >= 3 { 3 } else { 2 };
        let required = binding.positional.saturating_sub(binding.defaults);
        signature_problem(binding, passed, required).is_none()
    }

    #[test]
    fn handler_signatures_follow_how_the_dispatcher_calls_them() {
        // (context, event), requests-style (context, event, session), defaults, *args.
        assert!(callable(&def(2, 0, false)));
        assert!(callable(&def(3, 0, false)));
        assert!(callable(&def(4, 1, false)));
        assert!(callable(&def(0, 0, true)));
        assert!(callable(&def(1, 0, true)));
        assert!(callable(&def(3, 3, false)));
        // Too few, too many required, a required keyword-only parameter.
        assert!(!callable(&def(1, 0, false)));
        assert!(!callable(&def(0, 0, false)));
        assert!(!callable(&def(4, 0, false)));
        let mut kwonly = def(2, 0, false);
        kwonly.kwonly_required = vec!["x".to_string()];
        assert!(!callable(&kwonly));
    }
}
