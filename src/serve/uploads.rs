//! Ad-hoc task uploads (`PUT /<task>` with a zip, `DELETE /<task>`), persisted under
//! `<state dir>/uploads/<task>/` so they survive a restart.
//!
//! Extraction is defensive: the archive and what it unpacks to are size-limited (counting real
//! bytes, not the sizes the archive claims), entries with absolute paths, `..` or links are
//! refused, and everything is unpacked into a staging directory that only replaces the task's
//! directory (by rename) once the task validated.
//!
//! A change (an upload put in place, or a task taken out) moves the previous directory aside
//! into `.old-<task>-…/task` and is undone with [`UploadStore::restore`] or made final with
//! [`Replaced::keep`]. The aside directory stays on disk until one of those runs, so a change
//! cut short (serve killed mid-deploy) is undone by [`UploadStore::recover`] at the next start:
//! what was acknowledged before it is what comes back.
//!
//! Only names that are valid task names (lowercase DNS-1123 labels) ever become paths here: every
//! method that takes a task name checks it first.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use crate::config::{Diagnostic, PlatformKind, TaskSpec};

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
    #[error("{}", crate::contract::not_a_task_name(.0))]
    InvalidName(String),
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
    /// The project's platform: an upload is checked as a declared task would be there.
    platform: PlatformKind,
}

impl UploadStore {
    pub fn new(state_dir: &Path, platform: PlatformKind) -> Self {
        UploadStore {
            dir: state_dir.join("uploads"),
            platform,
        }
    }

    /// `uploads/<task>`, for a valid task name only: an unchecked name (`..`, `/etc`, …) never
    /// becomes a path.
    fn task_dir(&self, task: &str) -> Option<PathBuf> {
        crate::contract::is_task_name(task).then(|| self.dir.join(task))
    }

    /// [`UploadStore::task_dir`], or the error an invalid name gets.
    fn checked_dir(&self, task: &str) -> Result<PathBuf, UploadError> {
        self.task_dir(task)
            .ok_or_else(|| UploadError::InvalidName(task.to_string()))
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
            match TaskSpec::load_on(&name, &entry.path(), self.platform) {
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

    /// Whether `task` is a stored upload; `false` for any name that is not a valid task name,
    /// without looking at the disk.
    pub fn contains(&self, task: &str) -> bool {
        self.task_dir(task).is_some_and(|dir| dir.is_dir())
    }

    /// Unpacks and validates `zip` into a staging directory. Nothing is replaced yet.
    pub fn stage(
        &self,
        task: &str,
        zip: &[u8],
        max_zip: u64,
        max_unpacked: u64,
    ) -> Result<Staged, UploadError> {
        self.checked_dir(task)?;
        if zip.len() as u64 > max_zip {
            return Err(UploadError::TooLarge {
                size: zip.len() as u64,
                limit: max_zip,
            });
        }
        std::fs::create_dir_all(&self.dir)?;
        let staging = tempfile::Builder::new()
            .prefix(&format!("{STAGING_PREFIX}{task}-"))
            .tempdir_in(&self.dir)?;
        extract(std::io::Cursor::new(zip), staging.path(), max_unpacked)?;
        let root = task_root(staging.path());
        let spec = TaskSpec::load_on(task, &root, self.platform).map_err(UploadError::Invalid)?;
        Ok(Staged {
            staging,
            root,
            spec,
        })
    }

    /// Puts a staged upload in place of the task's directory; returns the previous directory
    /// (moved aside) so a failed deploy can [`UploadStore::restore`] it.
    pub fn commit(&self, task: &str, staged: Staged) -> Result<Replaced, UploadError> {
        let target = self.checked_dir(task)?;
        let replaced = self.take_aside(task)?;
        if let Err(e) = std::fs::rename(&staged.root, &target) {
            let _ = self.restore(replaced);
            return Err(e.into());
        }
        drop(staged.staging);
        Ok(replaced)
    }

    /// Moves the task's directory aside (for a change that may need undoing).
    pub fn take_aside(&self, task: &str) -> Result<Replaced, UploadError> {
        let target = self.checked_dir(task)?;
        let mut replaced = Replaced {
            task: task.to_string(),
            aside: None,
        };
        if !target.exists() {
            return Ok(replaced);
        }
        std::fs::create_dir_all(&self.dir)?;
        let aside = tempfile::Builder::new()
            .prefix(&format!("{ASIDE_PREFIX}{task}-"))
            .tempdir_in(&self.dir)?
            .keep();
        replaced.aside = Some(aside.clone());
        if let Err(e) = std::fs::rename(&target, aside.join(ASIDE_TASK)) {
            let _ = std::fs::remove_dir(&aside);
            return Err(e.into());
        }
        Ok(replaced)
    }

    /// Undoes a [`UploadStore::commit`] or [`UploadStore::take_aside`].
    pub fn restore(&self, replaced: Replaced) -> Result<(), UploadError> {
        let target = self.checked_dir(&replaced.task)?;
        if target.exists() {
            std::fs::remove_dir_all(&target)?;
        }
        if let Some(aside) = &replaced.aside {
            let previous = aside.join(ASIDE_TASK);
            if previous.exists() {
                std::fs::rename(&previous, &target)?;
            }
            std::fs::remove_dir_all(aside)?;
        }
        Ok(())
    }

    /// Undoes every change a previous run left halfway (see the module docs) and removes its
    /// staging directories; says what it restored.
    pub fn recover(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(STAGING_PREFIX) {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            let Some(rest) = name.strip_prefix(ASIDE_PREFIX) else {
                continue;
            };
            // `.old-<task>-<random>`: the task is everything before the last `-`.
            let task = rest.rsplit_once('-').map_or(rest, |(task, _)| task);
            let replaced = Replaced {
                task: task.to_string(),
                aside: Some(path.clone()),
            };
            if !path.join(ASIDE_TASK).exists() {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            match self.restore(replaced) {
                Ok(()) => tracing::warn!(
                    task,
                    "an upload or removal of `{task}` was cut short before it was acknowledged; \
                     its previous code is back"
                ),
                Err(e) => tracing::error!(
                    task,
                    "cannot restore the previous code of `{task}` from `{}`: {e}",
                    path.display()
                ),
            }
        }
    }

    /// The task's stored spec after a commit.
    pub fn spec(&self, task: &str) -> Option<TaskSpec> {
        TaskSpec::load_on(task, &self.task_dir(task)?, self.platform).ok()
    }
}

/// An upload unpacked and validated, not yet in place.
pub struct Staged {
    staging: tempfile::TempDir,
    root: PathBuf,
    pub spec: TaskSpec,
}

/// What a change replaced: the task's previous directory, moved aside. Dropping it leaves the
/// backup on disk (for [`UploadStore::recover`]); [`Replaced::keep`] makes the change final.
#[derive(Debug)]
pub struct Replaced {
    pub task: String,
    /// `.old-<task>-…`, holding the previous directory as `task`; `None` when there was none.
    aside: Option<PathBuf>,
}

impl Replaced {
    /// Makes the change final: deletes the previous code.
    pub fn keep(self) -> Result<(), UploadError> {
        if let Some(aside) = &self.aside {
            std::fs::remove_dir_all(aside)?;
        }
        Ok(())
    }
}

/// Prefix of the directory a change moves the previous code into.
const ASIDE_PREFIX: &str = ".old-";
/// The previous task directory's name inside it.
const ASIDE_TASK: &str = "task";
/// Prefix of the directories uploads are unpacked into.
const STAGING_PREFIX: &str = ".staging-";

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
        if entry.is_symlink()
            || entry
                .unix_mode()
                .is_some_and(|m| m & 0o170_000 == 0o120_000)
        {
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut buf);
        for (name, data) in entries {
            zip.start_file(*name, SimpleFileOptions::default()).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        buf.into_inner()
    }

    const FUNCTION_YAML: &[u8] =
        b"apiVersion: nuclio.io/v1beta1\nkind: NuclioFunction\nmetadata:\n  name: t\nspec:\n  runtime: python:3.11\n  handler: main:handler\n";

    fn only_entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = walkdir::WalkDir::new(dir)
            .into_iter()
            .flatten()
            .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn traversal_is_refused_and_nothing_escapes() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let zip = zip_of(&[("ok.py", b"x"), ("../evil.py", b"x")]);
        let err = extract(std::io::Cursor::new(zip), &dest, 1 << 20).unwrap_err();
        assert!(
            matches!(err, UploadError::UnsafePath(ref p) if p == "../evil.py"),
            "{err}"
        );
        assert!(!root.path().join("evil.py").exists());
        let zip = zip_of(&[("/etc/evil.py", b"x")]);
        let err = extract(std::io::Cursor::new(zip), &dest, 1 << 20).unwrap_err();
        assert!(matches!(err, UploadError::UnsafePath(_)), "{err}");
    }

    #[test]
    fn symlinks_are_refused() {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut buf);
        zip.add_symlink("link", "/etc/passwd", SimpleFileOptions::default())
            .unwrap();
        zip.finish().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let err =
            extract(std::io::Cursor::new(buf.into_inner()), dest.path(), 1 << 20).unwrap_err();
        assert!(
            matches!(err, UploadError::Link(ref p) if p == "link"),
            "{err}"
        );
        assert!(only_entries(dest.path()).is_empty());
    }

    #[test]
    fn bombs_are_stopped_at_the_unpacked_limit() {
        // 8 MiB of zeros compresses to a few KiB.
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut buf);
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("zeros.bin", options).unwrap();
        zip.write_all(&vec![0u8; 8 << 20]).unwrap();
        zip.finish().unwrap();
        let bytes = buf.into_inner();
        assert!(bytes.len() < 64 * 1024);
        let dest = tempfile::tempdir().unwrap();
        let err = extract(std::io::Cursor::new(bytes), dest.path(), 1 << 20).unwrap_err();
        assert!(matches!(err, UploadError::UnpackedTooLarge { .. }), "{err}");
    }

    #[test]
    fn not_a_zip_is_refused() {
        let store = UploadStore::new(tempfile::tempdir().unwrap().path(), PlatformKind::Local);
        let err = store.stage("t", b"hello", 1 << 20, 1 << 20).err().unwrap();
        assert!(matches!(err, UploadError::NotZip(_)), "{err}");
    }

    #[test]
    fn archive_over_the_size_limit_is_refused() {
        let state = tempfile::tempdir().unwrap();
        let store = UploadStore::new(state.path(), PlatformKind::Local);
        let zip = zip_of(&[
            ("function.yaml", FUNCTION_YAML),
            ("main.py", b"def handler(c, e):\n    return 1\n"),
        ]);
        let err = store.stage("t", &zip, 10, 1 << 20).err().unwrap();
        assert!(matches!(err, UploadError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn valid_upload_commits_and_restores() {
        let state = tempfile::tempdir().unwrap();
        let store = UploadStore::new(state.path(), PlatformKind::Local);
        let v1 = zip_of(&[
            ("function.yaml", FUNCTION_YAML),
            ("main.py", b"def handler(c, e):\n    return 1\n"),
        ]);
        let staged = store.stage("t", &v1, 1 << 20, 1 << 20).unwrap();
        store.commit("t", staged).unwrap().keep().unwrap();
        assert!(store.contains("t"));
        // A zip made from outside the task directory (one top-level folder) works too.
        let v2 = zip_of(&[
            ("t/function.yaml", FUNCTION_YAML),
            ("t/main.py", b"def handler(c, e):\n    return 2\n"),
        ]);
        let staged = store.stage("t", &v2, 1 << 20, 1 << 20).unwrap();
        let replaced = store.commit("t", staged).unwrap();
        let main = std::fs::read_to_string(state.path().join("uploads/t/main.py")).unwrap();
        assert!(main.contains("return 2"));
        store.restore(replaced).unwrap();
        let main = std::fs::read_to_string(state.path().join("uploads/t/main.py")).unwrap();
        assert!(main.contains("return 1"), "restore did not bring v1 back");
        assert_eq!(store.load_all().len(), 1);
        assert_eq!(
            only_entries(&state.path().join("uploads")),
            ["t", "t/function.yaml", "t/main.py"]
        );
    }

    #[test]
    fn a_change_cut_short_is_undone_at_the_next_start() {
        let state = tempfile::tempdir().unwrap();
        let store = UploadStore::new(state.path(), PlatformKind::Local);
        let v1 = zip_of(&[
            ("function.yaml", FUNCTION_YAML),
            ("main.py", b"def handler(c, e):\n    return 1\n"),
        ]);
        let v2 = zip_of(&[
            ("function.yaml", FUNCTION_YAML),
            ("main.py", b"def handler(c, e):\n    return 2\n"),
        ]);
        store
            .commit("t", store.stage("t", &v1, 1 << 20, 1 << 20).unwrap())
            .unwrap()
            .keep()
            .unwrap();
        // Never acknowledged: serve died before `keep` or `restore`.
        drop(
            store
                .commit("t", store.stage("t", &v2, 1 << 20, 1 << 20).unwrap())
                .unwrap(),
        );
        let stale = store.stage("t", &v2, 1 << 20, 1 << 20).unwrap();
        std::mem::forget(stale);
        store.recover();
        let main = std::fs::read_to_string(state.path().join("uploads/t/main.py")).unwrap();
        assert!(main.contains("return 1"), "{main}");
        assert_eq!(
            only_entries(&state.path().join("uploads")),
            ["t", "t/function.yaml", "t/main.py"]
        );
        // A removal cut short, likewise.
        drop(store.take_aside("t").unwrap());
        assert!(!store.contains("t"));
        store.recover();
        assert!(store.contains("t"));
    }

    #[test]
    fn invalid_names_never_become_paths() {
        let state = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(state.path().join("uploads")).unwrap();
        let store = UploadStore::new(state.path(), PlatformKind::Local);
        for name in [
            "..",
            ".",
            "/etc",
            "../uploads",
            "a/b",
            "",
            "UP",
            "a\0b",
            "é",
        ] {
            assert!(!store.contains(name), "{name:?}");
            assert!(
                matches!(store.take_aside(name), Err(UploadError::InvalidName(_))),
                "{name:?}"
            );
        }
        assert!(state.path().join("uploads").is_dir());
    }

    #[test]
    fn invalid_task_is_refused_before_anything_is_replaced() {
        let state = tempfile::tempdir().unwrap();
        let store = UploadStore::new(state.path(), PlatformKind::Local);
        let zip = zip_of(&[("main.py", b"x")]);
        let err = store.stage("t", &zip, 1 << 20, 1 << 20).err().unwrap();
        assert!(matches!(err, UploadError::Invalid(_)), "{err}");
        assert!(!store.contains("t"));
    }
}
