//! A task's Nuclio `function.yaml` and handler module, loaded and checked.
//!
//! The whole YAML document is kept as a [`serde_yaml::Value`] so fields fusionizer does not model
//! survive the merge untouched; typed accessors read what fusion needs.

use std::path::{Path, PathBuf};

use crate::config::Diagnostic;

/// Maximum length of a task name (DESIGN.md: a DNS-1123 label of at most 40 characters).
pub const MAX_TASK_NAME: usize = 40;

/// One task, ready to fuse.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub name: String,
    /// The task directory (absolute).
    pub dir: PathBuf,
    /// The whole function.yaml document.
    pub function: serde_yaml::Value,
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
        let _ = (name, dir);
        todo!("TaskSpec::load")
    }
}
