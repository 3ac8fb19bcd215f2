//! A task's Nuclio `function.yaml` and handler module, loaded and checked.
//!
//! The whole YAML document is kept as a [`serde_norway::Value`] so fields fusionizer does not model
//! survive the merge untouched; typed accessors read what fusion needs.

use std::path::{Path, PathBuf};

use super::{absolute, Diagnostic};
use crate::contract::{dns_label_hint, is_dns_label, FUNCTION_FILE, MAX_TASK_NAME};

/// One task, ready to fuse.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub name: String,
    /// The task directory (absolute).
    pub dir: PathBuf,
    /// The whole function.yaml document.
    pub function: serde_norway::Value,
    /// `spec.runtime`, e.g. `python:3.11` (bare `python` kept as written).
    pub runtime: String,
    /// `spec.handler` split at `:` — module (dotted, relative to the task dir) and function.
    pub handler_module: String,
    pub handler_function: String,
}

impl TaskSpec {
    /// Loads `<dir>/function.yaml` and checks it: Python runtime, `module:function` handler whose
    /// module file exists, valid task name. Every problem is returned, each naming the file.
    pub fn load(name: &str, dir: &Path) -> Result<TaskSpec, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        if !is_dns_label(name, MAX_TASK_NAME) {
            problems.push(
                Diagnostic::new(
                    absolute(dir).join(FUNCTION_FILE),
                    format!("invalid task name `{name}`"),
                )
                .with_hint(dns_label_hint("task name", MAX_TASK_NAME)),
            );
        }
        match Self::read(name, dir) {
            Ok(spec) if problems.is_empty() => Ok(spec),
            Ok(_) => Err(problems),
            Err(more) => {
                problems.extend(more);
                Err(problems)
            }
        }
    }

    /// [`TaskSpec::load`] without the name check, for callers that report the name themselves
    /// (fusion.toml validation does, at the name's location).
    pub(crate) fn read(name: &str, dir: &Path) -> Result<TaskSpec, Vec<Diagnostic>> {
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
            return Err(vec![problem(format!(
                "expected a mapping with `metadata` and `spec`, found {}",
                kind(&function)
            ))]);
        }
        let Some(spec) = function.get("spec").filter(|spec| spec.is_mapping()) else {
            return Err(vec![problem("missing `spec`".to_string()).with_hint(
                "add `spec:` with `runtime: \"python:3.11\"` and `handler: \"main:handler\"`",
            )]);
        };

        let mut problems = Vec::new();
        let runtime = match spec.get("runtime") {
            None => {
                problems.push(
                    problem("missing `spec.runtime`".to_string()).with_hint(
                        "add `runtime: \"python:3.11\"` under `spec`; Nuclio requires it",
                    ),
                );
                None
            }
            Some(serde_norway::Value::String(runtime)) if is_python_runtime(runtime) => {
                Some(runtime.clone())
            }
            Some(serde_norway::Value::String(runtime)) => {
                problems.push(
                    problem(format!("unsupported runtime `{runtime}`")).with_hint(
                        "fusionizer fuses Python tasks: use `python` or `python:3.x`, e.g. `python:3.11`",
                    ),
                );
                None
            }
            Some(other) => {
                problems.push(problem(format!(
                    "`spec.runtime` must be a string, found {}",
                    kind(other)
                )));
                None
            }
        };

        let handler = match spec.get("handler") {
            None => {
                problems.push(
                    problem("missing `spec.handler`".to_string()).with_hint(
                        "add `handler: \"main:handler\"` under `spec` (`module:function`)",
                    ),
                );
                None
            }
            Some(serde_norway::Value::String(handler)) => {
                match split_handler(handler) {
                    None => {
                        problems.push(
                        problem(format!("handler `{handler}` is not of the form `module:function`"))
                            .with_hint("e.g. `main:handler` for `def handler(context, event)` in `main.py`"),
                    );
                        None
                    }
                    Some((module, function)) => {
                        let relative = module.replace('.', "/");
                        let module_file = dir.join(format!("{relative}.py"));
                        let package = dir.join(&relative).join("__init__.py");
                        if module_file.is_file() || package.is_file() {
                            Some((module.to_string(), function.to_string()))
                        } else {
                            problems.push(
                                problem(format!("handler module `{module}` not found")).with_hint(
                                    format!("expected `{relative}.py` in the task directory"),
                                ),
                            );
                            None
                        }
                    }
                }
            }
            Some(other) => {
                problems.push(problem(format!(
                    "`spec.handler` must be a string, found {}",
                    kind(other)
                )));
                None
            }
        };

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
                    "task/function.yaml: unsupported runtime `{runtime}`\n  \
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
            "task/function.yaml: missing `spec.runtime`\n  \
             hint: add `runtime: \"python:3.11\"` under `spec`; Nuclio requires it\n\
             task/function.yaml: missing `spec.handler`\n  \
             hint: add `handler: \"main:handler\"` under `spec` (`module:function`)"
        );
    }

    #[test]
    fn runtime_and_handler_must_be_strings() {
        let dir = task(&[("function.yaml", "spec:\n  runtime: 3.11\n  handler: [a]\n")]);
        assert_eq!(
            load("t", &dir).unwrap_err(),
            "task/function.yaml: `spec.runtime` must be a string, found a number\n\
             task/function.yaml: `spec.handler` must be a string, found a sequence"
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
                    "task/function.yaml: handler `{handler}` is not of the form `module:function`\n  \
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
            "task/function.yaml: handler module `pkg.mod` not found\n  \
             hint: expected `pkg/mod.py` in the task directory"
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
            "task/function.yaml: expected a mapping with `metadata` and `spec`, found a sequence"
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
                     task/function.yaml: unsupported runtime `golang`\n  \
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
}
