//! Fuse: turn one group of tasks into a self-contained, Nuclio-deployable artifact.
//!
//! The artifact holds the merged `function.yaml` (Nuclio's merge rules, DESIGN.md), the generated
//! entry module (`spec.handler`), the dispatcher runtime and every task's files under its own
//! namespace. It is built in memory (relative path → bytes, sorted) so its digest is a pure
//! function of its bytes; [`Artifact::write`] puts it on disk.
//!
//! Layout of an artifact:
//! ```text
//! function.yaml                      merged spec, metadata.name, ownership labels/annotations
//! _fusionizer_entry.py               generated; spec.handler = "_fusionizer_entry:handler"
//! fusionizer_dispatcher/…            the runtime from dispatcher/fusionizer_dispatcher
//! fusionizer_tasks/<task>/…          each task's directory, verbatim
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::Workspace;
use crate::error::Error;
use crate::schedule::Grouping;
use crate::taskspec::TaskSpec;

/// The dispatcher runtime files (relative path under `fusionizer_dispatcher/`, bytes), embedded
/// at build time from `dispatcher/fusionizer_dispatcher/`.
pub const DISPATCHER_FILES: &[(&str, &[u8])] =
    include!(concat!(env!("OUT_DIR"), "/dispatcher_files.rs"));

/// The generated entry module's name; `spec.handler` is `<ENTRY_MODULE>:handler`.
pub const ENTRY_MODULE: &str = "_fusionizer_entry";
/// Directory in an artifact under which each task's files live (`fusionizer_tasks/<task>/`).
pub const TASKS_DIR: &str = "fusionizer_tasks";

/// One fused function, ready to deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// `metadata.name` (DESIGN.md naming rule).
    pub name: String,
    /// Sorted task names.
    pub tasks: Vec<String>,
    /// `sha256:<hex>` over every file (path and bytes, sorted by path) except the digest itself.
    pub digest: String,
    /// Task → `sha256:<hex>` over that task's own files.
    pub task_digests: BTreeMap<String, String>,
    /// The merged function.yaml as deployed (also present in `files`).
    pub function_yaml: String,
    /// The merged spec's HTTP trigger `numWorkers` (default 1): the local platform's pool size.
    pub num_workers: usize,
    /// `spec.build.commands`, merged.
    pub build_commands: Vec<String>,
    /// Every file of the artifact, relative path (with `/`) → bytes.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Artifact {
    /// Writes the artifact into `dir` (created; existing content replaced).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        for (rel, bytes) in &self.files {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
        Ok(())
    }
}

/// The deployed function name for a task set: `<project>-<tasks sorted, joined by ->`, or
/// `<project>-<first task>-<8 hex of sha256 of the task list>` when that is not a valid
/// ≤ 63-char DNS-1123 label.
pub fn function_name(project: &str, tasks: &[String]) -> String {
    let _ = (project, tasks);
    todo!("fuse::function_name")
}

/// Fuses one group. Merge conflicts are errors naming both tasks and the field.
pub fn fuse_group(project: &str, tasks: &[&TaskSpec]) -> Result<Artifact, Error> {
    let _ = (project, tasks);
    todo!("fuse::fuse_group")
}

/// Fuses every group of a grouping, reporting every conflict at once (exit 78).
pub fn fuse_all(
    workspace: &Workspace,
    specs: &BTreeMap<String, TaskSpec>,
    grouping: &Grouping,
) -> Result<Vec<Artifact>, Error> {
    let _ = (workspace, specs, grouping);
    todo!("fuse::fuse_all")
}
