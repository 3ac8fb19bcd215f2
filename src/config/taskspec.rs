//! A task's Nuclio `function.yaml` and handler module, loaded and checked.
//!
//! The whole YAML document is kept as a [`serde_norway::Value`] so fields fusionizer does not model
//! survive the merge untouched; typed accessors read what fusion needs.

use std::path::{Path, PathBuf};

use super::{absolute, display_path, Diagnostic, PlatformKind};
use crate::contract::{invalid_task_name, is_task_name, ENV_PYTHON, FUNCTION_FILE};

/// The Python runtimes Nuclio 1.14.1 builds. `pkg/processor/build/builder.go`
/// (`initializeSupportedRuntimes`) registers `python`, `python:3.9`, `python:3.10` and
/// `python:3.11`; bare `python` is an alias that `pkg/platform/abstract/platform.go`
/// (`EnrichFunctionConfig`: "`python` is just an alias") and the builder's
/// `validateAndEnrichConfiguration` both rewrite to `python:3.9`. Any other name fails the build
/// with "Unsupported runtime name: <runtime>" (`getRuntimeFileExtensionByName`, builder.go).
pub const NUCLIO_PYTHON_RUNTIMES: &[&str] = &["python", "python:3.9", "python:3.10", "python:3.11"];

/// One task, ready to fuse.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The task name (its key under `[tasks]`, or the name it was uploaded as).
    pub name: String,
    /// The task directory (absolute).
    pub dir: PathBuf,
    /// The whole function.yaml document.
    pub function: serde_norway::Value,
    /// `spec.runtime`, e.g. `python:3.11` (bare `python` kept as written).
    pub runtime: String,
    /// `spec.handler` split at `:` — module (dotted, relative to the task dir) and function.
    pub handler_module: String,
    /// The function part of `spec.handler` (after the `:`).
    pub handler_function: String,
}

impl TaskSpec {
    /// Loads `<dir>/function.yaml` and checks it: Python runtime, `module:function` handler whose
    /// module file exists, valid task name, no field that would replace the fused code. Every
    /// problem is returned, each naming the file. Runtimes are checked as for the local platform
    /// ([`TaskSpec::load_on`]).
    pub fn load(name: &str, dir: &Path) -> Result<TaskSpec, Vec<Diagnostic>> {
        Self::load_on(name, dir, PlatformKind::Local)
    }

    /// [`TaskSpec::load`] for a project deploying to `platform`: on `nuctl` a runtime Nuclio 1.14
    /// does not build is refused; on `local` it is a warning ([`NUCLIO_PYTHON_RUNTIMES`]).
    pub fn load_on(
        name: &str,
        dir: &Path,
        platform: PlatformKind,
    ) -> Result<TaskSpec, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        if !is_task_name(name) {
            let (message, hint) = invalid_task_name(name);
            problems
                .push(Diagnostic::new(absolute(dir).join(FUNCTION_FILE), message).with_hint(hint));
        }
        match Self::read(name, dir, platform) {
            Ok(spec) if problems.is_empty() => Ok(spec),
            Ok(_) => Err(problems),
            Err(more) => {
                problems.extend(more);
                Err(problems)
            }
        }
    }

    /// [`TaskSpec::load_on`] without the name check, for callers that report the name themselves
    /// (fusion.toml validation does, at the name's location).
    pub(crate) fn read(
        name: &str,
        dir: &Path,
        platform: PlatformKind,
    ) -> Result<TaskSpec, Vec<Diagnostic>> {
        let dir = absolute(dir);
        let file = dir.join(FUNCTION_FILE);
        let problem = |message: String| Diagnostic::new(&file, message);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(vec![problem("file does not exist".to_string()).with_hint(
                    "every task directory holds a Nuclio `function.yaml` with `spec.runtime` and `spec.handler`",
                )]);
            }
            Err(e) => return Err(vec![problem(format!("cannot read: {e}"))]),
        };
        let function: serde_norway::Value = match serde_norway::from_str(&text) {
            Ok(value) => value,
            Err(e) => return Err(vec![yaml_error(&file, &e)]),
        };
        if !function.is_mapping() {
            return Err(vec![located(
                problem(format!(
                    "expected a mapping with `metadata` and `spec`, found {}",
                    kind(&function)
                )),
                &text,
                &[],
            )]);
        }
        let Some(spec) = function.get("spec").filter(|spec| spec.is_mapping()) else {
            let missing = match function.get("spec") {
                Some(other) => located(
                    problem(format!("`spec` must be a mapping, found {}", kind(other))),
                    &text,
                    &["spec"],
                ),
                None => problem("missing `spec`".to_string()),
            };
            return Err(vec![missing.with_hint(
                "add `spec:` with `runtime: \"python:3.11\"` and `handler: \"main:handler\"`",
            )]);
        };

        let mut problems = code_source_fields(&file, &text, spec);
        let runtime = check_runtime(spec, &file, &text, platform, &mut problems);
        let handler = check_handler(spec, &dir, &file, &text, &mut problems);

        match (runtime, handler) {
            (Some(runtime), Some((handler_module, handler_function))) if problems.is_empty() => {
                Ok(TaskSpec {
                    name: name.to_string(),
                    dir,
                    function,
                    runtime,
                    handler_module,
                    handler_function,
                })
            }
            _ => Err(problems),
        }
    }
}

/// `spec.runtime`: present, a string, Python, and one the platform builds; `None` after
/// pushing the problem.
fn check_runtime(
    spec: &serde_norway::Value,
    file: &Path,
    text: &str,
    platform: PlatformKind,
    problems: &mut Vec<Diagnostic>,
) -> Option<String> {
    let problem = |message: String| Diagnostic::new(file, message);
    match spec.get("runtime") {
        None => {
            problems.push(
                located(
                    problem("missing `spec.runtime`".to_string()),
                    text,
                    &["spec"],
                )
                .with_hint("add `runtime: \"python:3.11\"` under `spec`; Nuclio requires it"),
            );
            None
        }
        Some(serde_norway::Value::String(runtime)) => match runtime_check(runtime, platform) {
            RuntimeCheck::Supported => Some(runtime.clone()),
            RuntimeCheck::Warn(note) => {
                tracing::warn!("{}: {note}", display_path(file));
                Some(runtime.clone())
            }
            RuntimeCheck::RefusedOnNuctl => {
                problems.push(
                    located(
                        problem(format!(
                            "unsupported runtime `{runtime}` on the nuctl platform"
                        )),
                        text,
                        &["spec", "runtime"],
                    )
                    .with_hint(NUCTL_RUNTIMES_HINT),
                );
                None
            }
            RuntimeCheck::NotPython => {
                problems.push(
                    located(
                        problem(format!("unsupported runtime `{runtime}`")),
                        text,
                        &["spec", "runtime"],
                    )
                    .with_hint(
                        "fusionizer fuses Python tasks: use `python` or `python:3.x`, e.g. `python:3.11`",
                    ),
                );
                None
            }
        },
        Some(other) => {
            problems.push(located(
                problem(format!(
                    "`spec.runtime` must be a string, found {}",
                    kind(other)
                )),
                text,
                &["spec", "runtime"],
            ));
            None
        }
    }
}

/// `spec.handler`: present, `module:function`, and the module a file inside the task
/// directory; `None` after pushing the problem.
fn check_handler(
    spec: &serde_norway::Value,
    dir: &Path,
    file: &Path,
    text: &str,
    problems: &mut Vec<Diagnostic>,
) -> Option<(String, String)> {
    let problem = |message: String| Diagnostic::new(file, message);
    match spec.get("handler") {
        None => {
            problems.push(
                located(
                    problem("missing `spec.handler`".to_string()),
                    text,
                    &["spec"],
                )
                .with_hint("add `handler: \"main:handler\"` under `spec` (`module:function`)"),
            );
            None
        }
        Some(serde_norway::Value::String(handler)) => {
            match split_handler(handler) {
                None => {
                    problems.push(
                        located(
                            problem(format!(
                                "handler `{handler}` is not of the form `module:function`"
                            )),
                            text,
                            &["spec", "handler"],
                        )
                        .with_hint(
                            "e.g. `main:handler` for `def handler(context, event)` in `main.py`",
                        ),
                    );
                    None
                }
                Some((module, function)) => {
                    let relative = module.replace('.', "/");
                    let located_here = |d: Diagnostic| located(d, text, &["spec", "handler"]);
                    match module_file(dir, module) {
                        None => {
                            problems
                                .push(located_here(no_such_module(file, dir, module, function)));
                            None
                        }
                        // The fused entry imports each handler from the task's own directory
                        // (`fusionizer_tasks/<task>/`); a module linked from elsewhere would not
                        // be the task's code.
                        Some(found) if !inside(dir, &found) => {
                            problems.push(located_here(
                                problem(format!(
                                    "`spec.handler` points outside the task: module `{module}` \
                                     resolves to a file outside the task directory; fusionizer \
                                     supplies each function's code from its tasks' directories"
                                ))
                                .with_hint(format!(
                                    "put the handler in `{relative}.py` (or \
                                     `{relative}/__init__.py`) inside the task directory"
                                )),
                            ));
                            None
                        }
                        Some(_) => Some((module.to_string(), function.to_string())),
                    }
                }
            }
        }
        Some(other) => {
            problems.push(located(
                problem(format!(
                    "`spec.handler` must be a string, found {}",
                    kind(other)
                )),
                text,
                &["spec", "handler"],
            ));
            None
        }
    }
}

/// The file of the handler module `module` (dotted, relative to `dir`): `<module>.py` or
/// `<module>/__init__.py`, when one exists.
pub(super) fn module_file(dir: &Path, module: &str) -> Option<PathBuf> {
    let relative = module.replace('.', "/");
    [
        dir.join(format!("{relative}.py")),
        dir.join(&relative).join("__init__.py"),
    ]
    .into_iter()
    .find(|f| f.is_file())
}

/// The modules a handler could name in `dir`: every `.py` file and every package (a directory
/// with `__init__.py`), dotted, below it (caches and version control skipped), sorted.
fn task_modules(dir: &Path) -> Vec<String> {
    let mut modules: Vec<String> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .max_depth(8)
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0
                || !(e.file_type().is_dir() && (name.starts_with('.') || name == "__pycache__"))
        })
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let relative = e
                .path()
                .strip_prefix(dir)
                .ok()?
                .to_string_lossy()
                .into_owned();
            let stem = relative.strip_suffix(".py")?;
            let module = stem.strip_suffix("/__init__").unwrap_or(stem);
            (module != "__init__").then(|| module.replace('/', "."))
        })
        .collect();
    modules.sort();
    modules.dedup();
    modules
}

/// The problem of a handler whose module has no file in the task directory: says so, and
/// suggests the nearest module of the task (or lists them).
fn no_such_module(file: &Path, dir: &Path, module: &str, function: &str) -> Diagnostic {
    let relative = module.replace('.', "/");
    let modules = task_modules(dir);
    let hint = match super::check::closest(module, modules.iter().map(String::as_str)) {
        Some(close) => format!("did you mean `{close}`? (`{close}:{function}`)"),
        None if modules.is_empty() => format!(
            "put the handler in `{relative}.py` (or `{relative}/__init__.py`) inside the task \
             directory"
        ),
        None => format!(
            "the task's modules are {}; or put the handler in `{relative}.py` inside the task \
             directory",
            modules
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Diagnostic::new(
        file,
        format!(
            "`spec.handler`: no module `{module}` in the task directory (neither `{relative}.py` \
             nor `{relative}/__init__.py`); fusionizer imports each handler from its task's own \
             files"
        ),
    )
    .with_hint(hint)
}

/// The hint of a runtime refused on the nuctl platform: the values Nuclio 1.14 accepts.
const NUCTL_RUNTIMES_HINT: &str =
    "Nuclio 1.14 builds `python:3.9`, `python:3.10` and `python:3.11`, \
     and `python` is an alias for `python:3.9`: use one of those";

/// What [`runtime_check`] says of a `spec.runtime`.
#[derive(Debug, PartialEq)]
enum RuntimeCheck {
    /// One of [`NUCLIO_PYTHON_RUNTIMES`].
    Supported,
    /// `python:3.<minor>` that Nuclio does not build, on the local platform: accepted, with this
    /// note naming the interpreter that really runs it.
    Warn(String),
    /// Anything Nuclio 1.14 does not build, on the nuctl platform.
    RefusedOnNuctl,
    /// Not Python at all, on the local platform.
    NotPython,
}

/// Checks a runtime against what Nuclio 1.14 builds ([`NUCLIO_PYTHON_RUNTIMES`]): on the nuctl
/// platform the deploy would fail with "Unsupported runtime name" (`pkg/processor/build/builder.go`),
/// so it is refused here; the local platform runs every Python task with one local interpreter
/// (`$FUSIONIZER_PYTHON`, default `python3`, as `src/platform/local/venv.rs` picks it), so a
/// `python:3.<minor>` Nuclio would not build only gets a warning.
fn runtime_check(runtime: &str, platform: PlatformKind) -> RuntimeCheck {
    if NUCLIO_PYTHON_RUNTIMES.contains(&runtime) {
        return RuntimeCheck::Supported;
    }
    match platform {
        PlatformKind::Nuctl => RuntimeCheck::RefusedOnNuctl,
        PlatformKind::Local if is_python_runtime(runtime) => {
            let python = std::env::var(ENV_PYTHON)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "python3".to_string());
            RuntimeCheck::Warn(format!(
                "runtime `{runtime}` is not one Nuclio 1.14 builds (`python:3.9`, `python:3.10`, \
                 `python:3.11`); the local platform runs the task with the local Python, \
                 `{python}` (set `{ENV_PYTHON}` to choose another)"
            ))
        }
        PlatformKind::Local => RuntimeCheck::NotPython,
    }
}

/// Whether `file` (which exists) lies inside `dir` once links are resolved.
fn inside(dir: &Path, file: &Path) -> bool {
    match (dir.canonicalize(), file.canonicalize()) {
        (Ok(dir), Ok(file)) => file.starts_with(dir),
        _ => true,
    }
}

/// The fields of a task's `spec` that tell Nuclio where the function's code or image comes from.
/// Fusion supplies the code (the fused artifact, deployed with its own `spec.build.path`), so
/// each of these would replace it or clash with it, and is refused with a diagnostic at the key
/// when a scan of `text` finds it. Empty values (`""`, `{}`, null) are what Nuclio treats as
/// unset, and pass.
///
/// What each does in Nuclio 1.14.1:
/// - `spec.image`: with nothing to build, the function runs that image and is never built
///   (`functionBuildRequired`, `pkg/platform/abstract/platform.go`);
/// - `spec.build.path`, `spec.build.functionSourceCode`: the code the builder builds
///   (`resolveFunctionPath`, `pkg/processor/build/builder.go`; inline source wins over the path);
/// - `spec.build.codeEntryType`, `spec.build.codeEntryAttributes`: where the builder fetches the
///   code from (`github`, `archive`, `s3`, `image`, with their URL, branch, `workDir`…;
///   `resolveFunctionPath` and `resolveFunctionPathFromURL`, builder.go);
/// - `spec.build.image`: the name of the built image (`getImage`, builder.go), which every
///   function the task is fused into would build and push over the others;
/// - `spec.build.mode: neverBuild`: skip the build and run an existing image
///   (`functionBuildRequired`, platform.go).
///
/// `spec.build.baseImage` is harmless (the image the fused code is built on); the merge requires
/// it to agree within a group (`src/fuse/rules.rs`, `build`).
// Long by design: a table of refused fields, each with Nuclio's reason, then one loop.
fn code_source_fields(file: &Path, text: &str, spec: &serde_norway::Value) -> Vec<Diagnostic> {
    const REMOVE: &str = "remove it: fusionizer deploys each function from its tasks' directories \
         (to choose the image the code is built on, set `spec.build.baseImage`)";
    let set = |value: Option<&serde_norway::Value>| -> Option<String> {
        match value? {
            serde_norway::Value::Null => None,
            serde_norway::Value::String(s) if s.is_empty() => None,
            serde_norway::Value::Mapping(m) if m.is_empty() => None,
            serde_norway::Value::String(s) => Some(s.clone()),
            other => Some(serde_json::to_string(other).unwrap_or_default()),
        }
    };
    let build = spec.get("build").filter(|b| b.is_mapping());
    let in_build = |key: &str| set(build.and_then(|b| b.get(key)));
    let mut found: Vec<(&[&str], String, &str)> = Vec::new();
    if set(spec.get("image")).is_some() {
        found.push((
            &["spec", "image"],
            "Nuclio would run that prebuilt image and never build the fused code".to_string(),
            REMOVE,
        ));
    }
    if in_build("path").is_some() {
        found.push((
            &["spec", "build", "path"],
            "Nuclio would build the code at that path instead of the fused code".to_string(),
            "remove it: the task's code is its directory, and fusionizer gives Nuclio the fused \
             artifact's path itself",
        ));
    }
    if in_build("functionSourceCode").is_some() {
        found.push((
            &["spec", "build", "functionSourceCode"],
            "Nuclio would build that inline source instead of the fused code".to_string(),
            "remove it and keep the handler's code as files in the task directory",
        ));
    }
    if let Some(kind) = in_build("codeEntryType") {
        found.push((
            &["spec", "build", "codeEntryType"],
            format!("Nuclio would take the code from `{kind}` instead of the fused code"),
            "remove it (and `codeEntryAttributes`): fusionizer gives Nuclio the fused code itself",
        ));
    }
    if in_build("codeEntryAttributes").is_some() {
        found.push((
            &["spec", "build", "codeEntryAttributes"],
            "it tells Nuclio where to fetch the code from".to_string(),
            "remove it (and `codeEntryType`): fusionizer gives Nuclio the fused code itself",
        ));
    }
    if in_build("image").is_some() {
        found.push((
            &["spec", "build", "image"],
            "it names the image Nuclio builds, and every function this task is fused into would \
             build and push that one image over the others"
                .to_string(),
            "remove it: Nuclio names each function's image after the function \
             (to choose the image the code is built on, set `spec.build.baseImage`)",
        ));
    }
    if in_build("mode").as_deref() == Some("neverBuild") {
        found.push((
            &["spec", "build", "mode"],
            "`neverBuild` makes Nuclio skip the build and run an existing image, never the fused \
             code"
                .to_string(),
            "remove `mode`, or set it to `alwaysBuild`",
        ));
    }
    found
        .into_iter()
        .map(|(path, why, hint)| {
            located(
                Diagnostic::new(
                    file,
                    format!(
                        "`{}` is not allowed: fusionizer supplies the code, and {why}",
                        path.join(".")
                    ),
                ),
                text,
                path,
            )
            .with_hint(hint)
        })
        .collect()
}

/// `diagnostic` at the key `path` of `text` (the document itself for an empty path), where the
/// YAML parser puts it ([`parser_location`]), or else where [`key_location`]'s scan finds it;
/// unchanged (about the file as a whole) when neither does.
pub(super) fn located(diagnostic: Diagnostic, text: &str, path: &[&str]) -> Diagnostic {
    match parser_location(text, path).or_else(|| key_location(text, path)) {
        Some((line, column)) => diagnostic.at(line, column),
        None => diagnostic,
    }
}

/// The 1-based line and column of the key at `path` (e.g. `["spec", "runtime"]`) in `text`, or
/// of the document's root value for an empty path, as the YAML parser reports them. A
/// [`serde_norway::Value`] keeps no positions, but the parser attaches the position of the
/// current event to an error raised while deserializing: `text` is walked down `path` and an
/// error raised at the wanted key, whose position is the answer. Any layout YAML allows (flow
/// mappings, quoted keys, anchors) is handled as the parser reads it; `None` when the key is not
/// there.
fn parser_location(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    use serde::de::DeserializeSeed;
    let error = match Walk(path).deserialize(serde_norway::Deserializer::from_str(text)) {
        Ok(()) => return None,
        Err(error) => error,
    };
    // An empty path fails at the root on purpose; otherwise only the marker error is ours.
    if !path.is_empty() && !error.to_string().contains(HERE) {
        return None;
    }
    let location = error.location()?;
    Some((location.line(), location.column()))
}

/// The message of the error [`parser_location`] raises at the key it looks for.
const HERE: &str = "fusionizer: the key looked for";

/// Walks a YAML document down a key path ([`parser_location`]).
struct Walk<'a>(&'a [&'a str]);

impl<'de> serde::de::DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        // Every visit but a mapping's fails: at the root (empty path) that failure is the point.
        f.write_str("a mapping")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((wanted, rest)) = self.0.split_first() else {
            return Err(serde::de::Error::custom(HERE));
        };
        while let Some(found) = map.next_key_seed(Key {
            wanted,
            last: rest.is_empty(),
        })? {
            if found {
                return map.next_value_seed(Walk(rest));
            }
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(())
    }
}

/// One mapping key: `Ok(true)` when it is the one wanted, an error at it when it is also the
/// last of the path.
struct Key<'a> {
    wanted: &'a str,
    last: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Key<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl serde::de::Visitor<'_> for Key<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        match (key == self.wanted, self.last) {
            (true, true) => Err(E::custom(HERE)),
            (found, _) => Ok(found),
        }
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// The 1-based line and column of the key at `path` (e.g. `["spec", "build", "image"]`) in
/// block-style YAML, by a plain scan of the text: each key of the path must start a line directly
/// inside its parent's block (one indentation level deeper). Anything else (flow mappings, keys
/// written twice, anchors, several documents) gives `None`, and the caller reports about the
/// file as a whole; `serde_norway` keeps no positions on a `Value`.
fn key_location(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut depth = 0;
    // The indentation of the key whose block is searched; `None` for the document itself.
    let mut parent: Option<usize> = None;
    // The indentation of that block's keys, set by its first line.
    let mut child: Option<usize> = None;
    for (index, line) in text.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if parent.is_none() && indent == 0 && (content.starts_with("---") || content == "...") {
            continue;
        }
        if parent.is_some_and(|p| indent <= p) {
            return None;
        }
        let level = *child.get_or_insert(indent);
        if indent != level {
            continue;
        }
        if mapping_key(content) == Some(path[depth]) {
            depth += 1;
            if depth == path.len() {
                return Some((index + 1, indent + 1));
            }
            parent = Some(indent);
            child = None;
        }
    }
    None
}

/// The key a block-mapping line starts with (`key:`, `"key":`, `'key':`), unquoted.
fn mapping_key(content: &str) -> Option<&str> {
    // A `:` ends a key when the line ends after it or a blank follows.
    let ends_key = |after: &str| after.is_empty() || after.starts_with([' ', '\t']);
    match content.as_bytes().first()? {
        quote @ (b'"' | b'\'') => {
            let end = content[1..].find(*quote as char)? + 1;
            let rest = content[end + 1..].trim_start_matches(' ');
            rest.strip_prefix(':')
                .is_some_and(ends_key)
                .then_some(&content[1..end])
        }
        _ => content
            .char_indices()
            .find(|&(i, c)| c == ':' && ends_key(&content[i + 1..]))
            .map(|(i, _)| content[..i].trim_end()),
    }
}

/// `python`, or `python:3.<minor>`.
fn is_python_runtime(runtime: &str) -> bool {
    if runtime == "python" {
        return true;
    }
    runtime
        .strip_prefix("python:3.")
        .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
}

/// Splits a handler as Nuclio's wrapper matches it, `^([\w|-]+(\.[\w|-]+)*):(\w+)$`, into module
/// and function.
fn split_handler(handler: &str) -> Option<(&str, &str)> {
    let (module, function) = handler.split_once(':')?;
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let module_ok = module
        .split('.')
        .all(|part| !part.is_empty() && part.bytes().all(|b| word(b) || b == b'|' || b == b'-'));
    let function_ok = !function.is_empty() && function.bytes().all(word);
    (module_ok && function_ok).then_some((module, function))
}

/// A YAML syntax error at its line and column, the location moved out of the message.
fn yaml_error(file: &Path, error: &serde_norway::Error) -> Diagnostic {
    let mut message = error.to_string();
    let mut diagnostic = Diagnostic::new(file, String::new());
    if let Some(location) = error.location() {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        message = message.replacen(&suffix, "", 1);
        diagnostic = diagnostic.at(location.line(), location.column());
    }
    diagnostic.message = format!("invalid YAML: {message}");
    diagnostic
}

fn kind(value: &serde_norway::Value) -> &'static str {
    match value {
        serde_norway::Value::Null => "null",
        serde_norway::Value::Bool(_) => "a boolean",
        serde_norway::Value::Number(_) => "a number",
        serde_norway::Value::String(_) => "a string",
        serde_norway::Value::Sequence(_) => "a sequence",
        serde_norway::Value::Mapping(_) => "a mapping",
        serde_norway::Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::MAX_TASK_NAME;

    /// A task directory holding `files`.
    fn task(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    fn yaml(runtime: &str, handler: &str) -> String {
        format!("metadata:\n  name: x\nspec:\n  runtime: \"{runtime}\"\n  handler: \"{handler}\"\n")
    }

    /// Loads `name` from `dir`; errors rendered with the directory shown as `task/`.
    fn load(name: &str, dir: &tempfile::TempDir) -> Result<TaskSpec, String> {
        let prefix = format!("{}/", dir.path().display());
        TaskSpec::load(name, dir.path()).map_err(|problems| {
            problems
                .iter()
                .map(|d| d.to_string().replace(&prefix, "task/"))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn a_valid_task_keeps_the_whole_document() {
        let text = "apiVersion: nuclio.io/v1\nmetadata:\n  name: x\n  labels:\n    team: a\nspec:\n  runtime: \"python:3.11\"\n  handler: \"pkg.mod:run\"\n  env:\n    - name: A\n      value: \"1\"\n";
        let dir = task(&[("function.yaml", text), ("pkg/mod.py", "")]);
        let spec = load("taska", &dir).unwrap();
        assert_eq!(spec.name, "taska");
        assert_eq!(spec.dir, dir.path());
        assert_eq!(spec.runtime, "python:3.11");
        assert_eq!(spec.handler_module, "pkg.mod");
        assert_eq!(spec.handler_function, "run");
        let expected: serde_norway::Value = serde_norway::from_str(text).unwrap();
        assert_eq!(spec.function, expected);
        assert_eq!(spec.function["spec"]["env"][0]["name"], "A");
    }

    #[test]
    fn python_runtimes_are_accepted() {
        for runtime in ["python", "python:3.9", "python:3.11"] {
            let dir = task(&[
                ("function.yaml", &yaml(runtime, "main:handler")),
                ("main.py", ""),
            ]);
            assert_eq!(load("t", &dir).unwrap().runtime, runtime);
        }
    }

    #[test]
    fn other_runtimes_are_refused() {
        for runtime in ["golang", "python:2.7", "python:3", "python:3.x", "nodejs"] {
            let dir = task(&[
                ("function.yaml", &yaml(runtime, "main:handler")),
                ("main.py", ""),
            ]);
            assert_eq!(
                load("t", &dir).unwrap_err(),
                format!(
                    "task/function.yaml:4:3: unsupported runtime `{runtime}`\n  \
                     hint: fusionizer fuses Python tasks: use `python` or `python:3.x`, e.g. `python:3.11`"
                )
            );
        }
    }

    #[test]
    fn missing_runtime_and_handler_are_both_reported() {
        let dir = task(&[("function.yaml", "spec:\n  description: nothing\n")]);
        assert_eq!(
            load("t", &dir).unwrap_err(),
            "task/function.yaml:1:1: missing `spec.runtime`\n  \
             hint: add `runtime: \"python:3.11\"` under `spec`; Nuclio requires it\n\
             task/function.yaml:1:1: missing `spec.handler`\n  \
             hint: add `handler: \"main:handler\"` under `spec` (`module:function`)"
        );
    }

    #[test]
    fn runtime_and_handler_must_be_strings() {
        let dir = task(&[("function.yaml", "spec:\n  runtime: 3.11\n  handler: [a]\n")]);
        assert_eq!(
            load("t", &dir).unwrap_err(),
            "task/function.yaml:2:3: `spec.runtime` must be a string, found a number\n\
             task/function.yaml:3:3: `spec.handler` must be a string, found a sequence"
        );
    }

    #[test]
    fn handlers_must_have_the_module_function_form() {
        for handler in [
            "main.handler",
            "main:",
            ":handler",
            "a..b:f",
            "main:handler-x",
            "main:a:b",
            "a b:f",
        ] {
            let dir = task(&[
                ("function.yaml", &yaml("python:3.11", handler)),
                ("main.py", ""),
            ]);
            assert_eq!(
                load("t", &dir).unwrap_err(),
                format!(
                    "task/function.yaml:5:3: handler `{handler}` is not of the form `module:function`\n  \
                     hint: e.g. `main:handler` for `def handler(context, event)` in `main.py`"
                ),
                "{handler}"
            );
        }
    }

    #[test]
    fn the_handler_module_must_exist() {
        let dir = task(&[
            ("function.yaml", &yaml("python:3.11", "pkg.mod:handler")),
            ("mod.py", ""),
        ]);
        assert_eq!(
            load("t", &dir).unwrap_err(),
            "task/function.yaml:5:3: `spec.handler`: no module `pkg.mod` in the task directory \
             (neither `pkg/mod.py` nor `pkg/mod/__init__.py`); fusionizer imports each handler \
             from its task's own files\n  \
             hint: the task's modules are `mod`; or put the handler in `pkg/mod.py` inside the \
             task directory"
        );
        let dir = task(&[
            ("function.yaml", &yaml("python:3.11", "pkg:handler")),
            ("pkg/__init__.py", ""),
        ]);
        assert_eq!(load("t", &dir).unwrap().handler_module, "pkg");
    }

    #[test]
    fn yaml_syntax_errors_carry_their_location() {
        let dir = task(&[(
            "function.yaml",
            "spec:\n  runtime: python\n    handler: main:h\n",
        )]);
        assert_eq!(
            load("t", &dir).unwrap_err(),
            "task/function.yaml:3:12: invalid YAML: mapping values are not allowed in this context"
        );
    }

    #[test]
    fn the_document_must_be_a_mapping_with_a_spec() {
        let dir = task(&[("function.yaml", "- a\n- b\n")]);
        assert_eq!(
            load("t", &dir).unwrap_err(),
            "task/function.yaml:1:1: expected a mapping with `metadata` and `spec`, found a sequence"
        );
        let dir = task(&[("function.yaml", "metadata:\n  name: x\n")]);
        assert_eq!(
            load("t", &dir).unwrap_err(),
            "task/function.yaml: missing `spec`\n  \
             hint: add `spec:` with `runtime: \"python:3.11\"` and `handler: \"main:handler\"`"
        );
    }

    #[test]
    fn a_missing_function_yaml_names_the_file() {
        let dir = task(&[("main.py", "")]);
        assert_eq!(
            load("t", &dir).unwrap_err(),
            "task/function.yaml: file does not exist\n  \
             hint: every task directory holds a Nuclio `function.yaml` with `spec.runtime` and `spec.handler`"
        );
    }

    #[test]
    fn the_task_name_is_checked_along_with_the_file() {
        let dir = task(&[
            ("function.yaml", &yaml("golang", "main:handler")),
            ("main.py", ""),
        ]);
        let long = "a".repeat(MAX_TASK_NAME + 1);
        for name in ["Task", "-a", "a_b", long.as_str()] {
            let err = load(name, &dir).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "task/function.yaml: invalid task name `{name}`\n  \
                     hint: a task name is a lowercase DNS-1123 label of at most 40 characters: \
                     `a-z`, `0-9` and `-`, starting and ending with a letter or digit\n\
                     task/function.yaml:4:3: unsupported runtime `golang`\n  \
                     hint: fusionizer fuses Python tasks: use `python` or `python:3.x`, e.g. `python:3.11`"
                )
            );
        }
        assert!(load(
            &"a".repeat(MAX_TASK_NAME),
            &task(&[
                ("function.yaml", &yaml("python", "main:handler")),
                ("main.py", ""),
            ])
        )
        .is_ok());
    }

    #[test]
    fn a_handler_module_from_outside_the_task_is_refused() {
        // `json` is importable (the standard library), but it is not the task's code.
        let dir = task(&[("function.yaml", &yaml("python:3.11", "json:loads"))]);
        assert_eq!(
            load("t", &dir).unwrap_err(),
            "task/function.yaml:5:3: `spec.handler`: no module `json` in the task directory \
             (neither `json.py` nor `json/__init__.py`); fusionizer imports each handler from its \
             task's own files\n  \
             hint: put the handler in `json.py` (or `json/__init__.py`) inside the task directory"
        );
    }

    /// Issue 21, item 8: a typo said "points outside the task" and "put the handler in
    /// `mian.py`".
    #[test]
    fn a_module_typo_suggests_the_nearest_module_of_the_task() {
        let dir = task(&[
            ("function.yaml", &yaml("python:3.11", "mian:handler")),
            ("main.py", ""),
            ("helpers.py", ""),
            ("lib/__init__.py", ""),
            ("lib/orders.py", ""),
            ("__pycache__/mian.py", ""),
        ]);
        assert_eq!(
            load("t", &dir).unwrap_err(),
            "task/function.yaml:5:3: `spec.handler`: no module `mian` in the task directory \
             (neither `mian.py` nor `mian/__init__.py`); fusionizer imports each handler from its \
             task's own files\n  \
             hint: did you mean `main`? (`main:handler`)"
        );
        let dir = task(&[
            ("function.yaml", &yaml("python:3.11", "lib.order:handler")),
            ("lib/__init__.py", ""),
            ("lib/orders.py", ""),
        ]);
        assert!(load("t", &dir)
            .unwrap_err()
            .ends_with("hint: did you mean `lib.orders`? (`lib.orders:handler`)"));
    }

    #[cfg(unix)]
    #[test]
    fn a_handler_module_linked_from_outside_the_task_is_refused() {
        let elsewhere = task(&[("main.py", "def handler(context, event):\n    pass\n")]);
        let dir = task(&[("function.yaml", &yaml("python:3.11", "main:handler"))]);
        std::os::unix::fs::symlink(elsewhere.path().join("main.py"), dir.path().join("main.py"))
            .unwrap();
        assert_eq!(
            load("t", &dir).unwrap_err(),
            "task/function.yaml:5:3: `spec.handler` points outside the task: module `main` \
             resolves to a file outside the task directory; fusionizer supplies each function's \
             code from its tasks' directories\n  \
             hint: put the handler in `main.py` (or `main/__init__.py`) inside the task directory"
        );
    }

    /// A valid task whose `spec` also holds `extra` (indented under `spec:`).
    fn with_spec(extra: &str) -> tempfile::TempDir {
        task(&[
            (
                "function.yaml",
                &format!("{}{extra}", yaml("python:3.11", "main:handler")),
            ),
            ("main.py", ""),
        ])
    }

    #[test]
    fn every_code_source_field_is_refused_at_its_key() {
        let remove = "remove it: fusionizer deploys each function from its tasks' directories \
                      (to choose the image the code is built on, set `spec.build.baseImage`)";
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "  image: registry.example/shop:1\n",
                "6:3: `spec.image`",
                "Nuclio would run that prebuilt image and never build the fused code",
                remove,
            ),
            (
                "  build:\n    path: /src/shop\n",
                "7:5: `spec.build.path`",
                "Nuclio would build the code at that path instead of the fused code",
                "remove it: the task's code is its directory, and fusionizer gives Nuclio the \
                 fused artifact's path itself",
            ),
            (
                "  build:\n    functionSourceCode: ZGVmIGhhbmRsZXIoKTogcGFzcw==\n",
                "7:5: `spec.build.functionSourceCode`",
                "Nuclio would build that inline source instead of the fused code",
                "remove it and keep the handler's code as files in the task directory",
            ),
            (
                "  build:\n    codeEntryType: github\n",
                "7:5: `spec.build.codeEntryType`",
                "Nuclio would take the code from `github` instead of the fused code",
                "remove it (and `codeEntryAttributes`): fusionizer gives Nuclio the fused code \
                 itself",
            ),
            (
                "  build:\n    codeEntryAttributes:\n      branch: main\n",
                "7:5: `spec.build.codeEntryAttributes`",
                "it tells Nuclio where to fetch the code from",
                "remove it (and `codeEntryType`): fusionizer gives Nuclio the fused code itself",
            ),
            (
                "  build:\n    image: shop/processor\n",
                "7:5: `spec.build.image`",
                "it names the image Nuclio builds, and every function this task is fused into \
                 would build and push that one image over the others",
                "remove it: Nuclio names each function's image after the function (to choose \
                 the image the code is built on, set `spec.build.baseImage`)",
            ),
            (
                "  build:\n    mode: neverBuild\n",
                "7:5: `spec.build.mode`",
                "`neverBuild` makes Nuclio skip the build and run an existing image, never the \
                 fused code",
                "remove `mode`, or set it to `alwaysBuild`",
            ),
        ];
        for (extra, at_field, why, hint) in cases {
            let (at, field) = at_field.split_once(": ").unwrap();
            assert_eq!(
                load("t", &with_spec(extra)).unwrap_err(),
                format!(
                    "task/function.yaml:{at}: {field} is not allowed: fusionizer supplies the \
                     code, and {why}\n  hint: {hint}"
                ),
                "{extra}"
            );
        }
    }

    #[test]
    fn harmless_build_fields_and_empty_code_fields_pass() {
        let extra =
            "  image: \"\"\n  build:\n    baseImage: python:3.11-slim\n    mode: alwaysBuild\n    \
                     codeEntryAttributes: {}\n    commands:\n      - pip install requests\n";
        let spec = load("t", &with_spec(extra)).unwrap();
        assert_eq!(
            spec.function["spec"]["build"]["baseImage"],
            "python:3.11-slim"
        );
    }

    #[test]
    fn keys_in_flow_mappings_are_located_by_the_parser() {
        // A flow mapping: the key is not on a line of its own, and the parser still knows where
        // it is.
        let dir = with_spec("  build: {image: shop/processor, path: /src}\n");
        let err = load("t", &dir).unwrap_err();
        assert!(
            err.starts_with("task/function.yaml:6:34: `spec.build.path` is not allowed"),
            "{err}"
        );
        assert!(
            err.contains("\ntask/function.yaml:6:11: `spec.build.image` is not allowed"),
            "{err}"
        );
        let dir = task(&[
            (
                "function.yaml",
                "metadata: {name: x}\nspec: {\"handler\": main:handler,\n  runtime: golang}\n",
            ),
            ("main.py", ""),
        ]);
        let err = load("t", &dir).unwrap_err();
        assert!(
            err.starts_with("task/function.yaml:3:3: unsupported runtime `golang`"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_in_a_function_yaml_has_a_line_and_column() {
        for (yaml, at) in [
            ("spec:\n  runtime: golang\n  handler: main:handler\n", "2:3"),
            ("spec:\n  runtime: 3\n  handler: main:handler\n", "2:3"),
            ("spec:\n  runtime: python:3.11\n  handler: main\n", "3:3"),
            ("spec:\n  runtime: python:3.11\n  handler: {a: b}\n", "3:3"),
            ("# c\nspec:\n  runtime: python:3.11\n", "2:1"),
            ("metadata: {}\nspec: []\n", "2:1"),
            ("42\n", "1:1"),
        ] {
            let dir = task(&[("function.yaml", yaml), ("main.py", "")]);
            let err = load("t", &dir).unwrap_err();
            assert!(
                err.starts_with(&format!("task/function.yaml:{at}: ")),
                "{yaml:?}: {err}"
            );
        }
    }

    #[test]
    fn key_locations_follow_the_block_structure() {
        let text = "# comment\nmetadata:\n  name: x\n  build:\n    image: not-this\nspec:\n\n  \
                    \"build\":   # quoted key\n    commands:\n      - image: nor-this\n    'image': here\n";
        assert_eq!(
            key_location(text, &["spec", "build", "image"]),
            Some((11, 5))
        );
        assert_eq!(
            key_location(text, &["metadata", "build", "image"]),
            Some((5, 5))
        );
        assert_eq!(key_location(text, &["spec", "image"]), None);
        assert_eq!(key_location(text, &["spec", "build", "path"]), None);
        assert_eq!(key_location("a:b: c\n", &["a:b"]), Some((1, 1)));
    }

    #[test]
    fn nuctl_refuses_runtimes_nuclio_does_not_build_with_the_valid_list() {
        for runtime in ["python:3.12", "python:3.8", "golang", "python:2.7"] {
            let dir = task(&[
                ("function.yaml", &yaml(runtime, "main:handler")),
                ("main.py", ""),
            ]);
            let prefix = format!("{}/", dir.path().display());
            let err = TaskSpec::load_on("t", dir.path(), PlatformKind::Nuctl)
                .unwrap_err()
                .iter()
                .map(|d| d.to_string().replace(&prefix, "task/"))
                .collect::<Vec<_>>()
                .join("\n");
            assert_eq!(
                err,
                format!(
                    "task/function.yaml:4:3: unsupported runtime `{runtime}` on the nuctl platform\n  \
                     hint: Nuclio 1.14 builds `python:3.9`, `python:3.10` and `python:3.11`, \
                     and `python` is an alias for `python:3.9`: use one of those"
                )
            );
        }
        for runtime in NUCLIO_PYTHON_RUNTIMES {
            let dir = task(&[
                ("function.yaml", &yaml(runtime, "main:handler")),
                ("main.py", ""),
            ]);
            let spec = TaskSpec::load_on("t", dir.path(), PlatformKind::Nuctl).unwrap();
            assert_eq!(spec.runtime, *runtime);
        }
    }

    #[test]
    fn local_accepts_other_python_runtimes_with_a_warning_naming_the_local_python() {
        let dir = task(&[
            ("function.yaml", &yaml("python:3.12", "main:handler")),
            ("main.py", ""),
        ]);
        assert_eq!(load("t", &dir).unwrap().runtime, "python:3.12");
        let RuntimeCheck::Warn(note) = runtime_check("python:3.12", PlatformKind::Local) else {
            panic!("expected a warning");
        };
        let python = std::env::var(ENV_PYTHON)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "python3".to_string());
        assert_eq!(
            note,
            format!(
                "runtime `python:3.12` is not one Nuclio 1.14 builds (`python:3.9`, \
                 `python:3.10`, `python:3.11`); the local platform runs the task with the local \
                 Python, `{python}` (set `FUSIONIZER_PYTHON` to choose another)"
            )
        );
        for runtime in NUCLIO_PYTHON_RUNTIMES {
            assert_eq!(
                runtime_check(runtime, PlatformKind::Local),
                RuntimeCheck::Supported
            );
        }
        assert_eq!(
            runtime_check("golang", PlatformKind::Local),
            RuntimeCheck::NotPython
        );
    }
}
