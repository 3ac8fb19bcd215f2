//! Ad-hoc task uploads (`PUT /<task>` with a zip, `DELETE /<task>`), persisted under
//! `.fusionizer/uploads/<task>/` so they survive a restart.
//!
//! Extraction is defensive: the archive and what it unpacks to are size-limited (counting real
//! bytes, not the sizes the archive claims), entries with absolute paths, `..` or links are
//! refused, and everything is unpacked into a staging directory that only replaces the task's
//! directory (by rename) once the task validated.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use crate::config::Diagnostic;
use crate::taskspec::TaskSpec;

/// Most entries an upload may hold.
const MAX_ENTRIES: usize = 10_000;

/// Why an upload was refused. Each maps to a 4xx.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("the archive unpacks to more than {limit} bytes")]
    UnpackedTooLarge { limit: u64 },
    #[error("the archive has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("`zip_file` is not a valid zip archive: {0}")]
    NotZip(String),
    #[error("archive entry `{0}` has an absolute path or `..`; paths must stay inside the task")]
    UnsafePath(String),
    #[error("archive entry `{0}` is a link; links are not allowed in uploads")]
    Link(String),
    #[error("the task is invalid:\n{}", render(.0))]
    Invalid(Vec<Diagnostic>),
    #[error("storing the upload failed: {0}")]
    Io(#[from] std::io::Error),
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("  {}", d.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The persisted uploads of one project.
#[derive(Debug, Clone)]
pub struct UploadStore {
    dir: PathBuf,
}

impl UploadStore {
    pub fn new(state_dir: &Path) -> Self {
        UploadStore {
            dir: state_dir.join("uploads"),
        }
    }

    fn task_dir(&self, task: &str) -> PathBuf {
        self.dir.join(task)
    }

    /// Every stored upload, loaded and validated; invalid ones are skipped with a warning.
    pub fn load_all(&self) -> BTreeMap<String, TaskSpec> {
        let mut out = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            match TaskSpec::load(&name, &entry.path()) {
                Ok(spec) => {
                    out.insert(name, spec);
                }
                Err(problems) => {
                    tracing::warn!(task = %name, "ignoring stored upload: {}", render(&problems));
                }
            }
        }
        out
    }

    pub fn contains(&self, task: &str) -> bool {
        self.task_dir(task).is_dir()
    }

    /// Unpacks and validates `zip` into a staging directory. Nothing is replaced yet.
    pub fn stage(
        &self,
        task: &str,
        zip: &[u8],
        max_zip: u64,
        max_unpacked: u64,
    ) -> Result<Staged, UploadError> {
        if zip.len() as u64 > max_zip {
            return Err(UploadError::TooLarge {
                size: zip.len() as u64,
                limit: max_zip,
            });
        }
        std::fs::create_dir_all(&self.dir)?;
        let staging = tempfile::Builder::new()
            .prefix(&format!(".staging-{task}-"))
            .tempdir_in(&self.dir)?;
        extract(std::io::Cursor::new(zip), staging.path(), max_unpacked)?;
        let root = task_root(staging.path());
        let spec = TaskSpec::load(task, &root).map_err(UploadError::Invalid)?;
        Ok(Staged {
            staging,
            root,
            spec,
        })
    }

    /// Puts a staged upload in place of the task's directory; returns the previous directory
    /// (moved aside) so a failed deploy can [`UploadStore::restore`] it.
    pub fn commit(&self, task: &str, staged: Staged) -> Result<Replaced, UploadError> {
        let target = self.task_dir(task);
        let backup = self.take_aside(task)?;
        std::fs::rename(&staged.root, &target)?;
        drop(staged.staging);
        Ok(Replaced {
            task: task.to_string(),
            backup,
        })
    }

    /// Moves the task's directory aside (for a delete that may need undoing).
    pub fn take_aside(&self, task: &str) -> Result<Option<tempfile::TempDir>, UploadError> {
        let target = self.task_dir(task);
        if !target.exists() {
            return Ok(None);
        }
        std::fs::create_dir_all(&self.dir)?;
        let aside = tempfile::Builder::new()
            .prefix(&format!(".old-{task}-"))
            .tempdir_in(&self.dir)?;
        std::fs::rename(&target, aside.path().join("task"))?;
        Ok(Some(aside))
    }

    /// Undoes a [`UploadStore::commit`] or [`UploadStore::take_aside`].
    pub fn restore(&self, replaced: Replaced) -> Result<(), UploadError> {
        let target = self.task_dir(&replaced.task);
        if target.exists() {
            std::fs::remove_dir_all(&target)?;
        }
        if let Some(backup) = replaced.backup {
            std::fs::rename(backup.path().join("task"), &target)?;
        }
        Ok(())
    }

    /// The task's stored spec after a commit.
    pub fn spec(&self, task: &str) -> Option<TaskSpec> {
        TaskSpec::load(task, &self.task_dir(task)).ok()
    }
}

/// An upload unpacked and validated, not yet in place.
pub struct Staged {
    staging: tempfile::TempDir,
    root: PathBuf,
    pub spec: TaskSpec,
}

/// What a commit replaced (dropped: the old code is deleted).
pub struct Replaced {
    pub task: String,
    pub backup: Option<tempfile::TempDir>,
}

/// The directory holding `function.yaml`: the archive root, or its single top-level directory
/// (for zips made from outside the task directory).
fn task_root(dir: &Path) -> PathBuf {
    if dir.join("function.yaml").is_file() {
        return dir.to_path_buf();
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    match entries.as_slice() {
        [only] if only.is_dir() && only.join("function.yaml").is_file() => only.clone(),
        _ => dir.to_path_buf(),
    }
}

/// Extracts `archive` into `dest`, enforcing the rules in the module docs.
pub fn extract<R: Read + Seek>(
    archive: R,
    dest: &Path,
    max_unpacked: u64,
) -> Result<(), UploadError> {
    let mut zip = zip::ZipArchive::new(archive).map_err(|e| UploadError::NotZip(e.to_string()))?;
    if zip.len() > MAX_ENTRIES {
        return Err(UploadError::TooManyEntries);
    }
    let mut budget = max_unpacked;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| UploadError::NotZip(e.to_string()))?;
        let raw_name = entry.name().to_string();
        let Some(relative) = entry.enclosed_name() else {
            return Err(UploadError::UnsafePath(raw_name));
        };
        if raw_name.starts_with('/') || raw_name.starts_with('\\') {
            return Err(UploadError::UnsafePath(raw_name));
        }
        if entry.is_symlink() || entry.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(UploadError::Link(raw_name));
        }
        let path = dest.join(&relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&path)?;
            continue;
        }
        if entry.size() > budget {
            return Err(UploadError::UnpackedTooLarge {
                limit: max_unpacked,
            });
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::File::create(&path)?;
        // Count real bytes: the size in the header may lie.
        let written = std::io::copy(&mut (&mut entry).take(budget + 1), &mut file)?;
        if written > budget {
            return Err(UploadError::UnpackedTooLarge {
                limit: max_unpacked,
            });
        }
        budget -= written;
    }
    Ok(())
}
