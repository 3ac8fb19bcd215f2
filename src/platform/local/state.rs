//! The local platform's live state: what is deployed, on disk, readable by any process.
//!
//! Layout under `<state dir>/local/` (`.fusionizer/local/` beside fusion.toml by default):
//! ```text
//! functions/<name>            symlink → ../store/<id>; the function exists iff the link does
//! store/<id>/function.json    name, labels, annotations, state, message, digest, function.yaml…
//! store/<id>/artifact/…       the deployed files (workers run here)
//! store/<id>/in-use.lock      held (shared) by every process running or staging this version
//! ```
//! So `functions/<name>/function.json` and `functions/<name>/artifact/` resolve as expected.
//!
//! Atomicity: a deploy stages a fresh store entry, proves it ready, writes its `function.json`
//! (temp file + rename), then swaps the `functions/<name>` link (new link + rename). rename(2)
//! replaces the link in one step, so readers see the old version or the new one, never half a
//! deploy, and a crash at any point leaves the previous version installed. Versions are
//! immutable: a hosted process keeps running an old version from its own directory until it has
//! switched to the new one. Store entries that no link points to are collected once no process
//! holds their `in-use.lock`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::fuse::metadata::scalar;
use crate::fuse::{Artifact, Metadata};
use crate::platform::{FunctionState, LiveFunction, PlatformError};

const FUNCTION_JSON: &str = "function.json";
const ARTIFACT_DIR: &str = "artifact";
const IN_USE: &str = "in-use.lock";

/// What `function.json` records about one deployed version.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FunctionRecord {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub state: FunctionState,
    pub digest: String,
    pub tasks: Vec<String>,
    /// `numWorkers` of the HTTP trigger: the pool size.
    pub num_workers: usize,
    /// `spec.build.commands`, part of the environment key.
    pub build_commands: Vec<String>,
    /// `spec.env` name/value pairs, in file order.
    pub env: Vec<(String, String)>,
    /// The merged function.yaml as deployed.
    pub function_yaml: String,
}

impl FunctionRecord {
    /// The record of `artifact`, deployed and ready. Labels, annotations and env come from its
    /// function.yaml.
    pub fn from_artifact(artifact: &Artifact) -> Result<Self, PlatformError> {
        let invalid = |message: String| PlatformError::Deploy {
            function: artifact.name.clone(),
            message,
            detail: None,
        };
        let doc: serde_norway::Value = serde_norway::from_str(&artifact.function_yaml)
            .map_err(|e| invalid(format!("its function.yaml is not valid YAML: {e}")))?;
        let metadata = Metadata::from_value(&doc);
        let mut env = Vec::new();
        if let Some(list) = doc
            .get("spec")
            .and_then(|s| s.get("env"))
            .and_then(serde_norway::Value::as_sequence)
        {
            for entry in list {
                let Some(name) = entry.get("name").and_then(scalar) else {
                    return Err(invalid("an entry of `spec.env` has no `name`".to_string()));
                };
                match entry.get("value") {
                    Some(value) => env.push((name, scalar(value).unwrap_or_default())),
                    None => tracing::warn!(
                        function = artifact.name.as_str(),
                        "`spec.env` entry `{name}` has no literal `value`; the local platform leaves it unset"
                    ),
                }
            }
        }
        Ok(FunctionRecord {
            name: artifact.name.clone(),
            labels: metadata.labels,
            annotations: metadata.annotations,
            state: FunctionState::Ready,
            digest: artifact.digest.clone(),
            tasks: artifact.tasks.clone(),
            num_workers: artifact.num_workers.max(1),
            build_commands: artifact.build_commands.clone(),
            env,
            function_yaml: artifact.function_yaml.clone(),
        })
    }

    pub fn live(&self) -> LiveFunction {
        LiveFunction {
            name: self.name.clone(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            state: self.state.clone(),
            config_yaml: Some(self.function_yaml.clone()),
        }
    }
}

/// One installed (or staged) version of a function.
#[derive(Debug, Clone)]
pub struct Version {
    /// The store entry name, unique per deploy.
    pub id: String,
    /// `store/<id>`.
    pub dir: PathBuf,
}

impl Version {
    pub fn artifact_dir(&self) -> PathBuf {
        self.dir.join(ARTIFACT_DIR)
    }

    pub fn read_record(&self) -> Result<FunctionRecord, PlatformError> {
        let path = self.dir.join(FUNCTION_JSON);
        let text = std::fs::read(&path)
            .map_err(|e| PlatformError::io(format!("cannot read `{}`", path.display()), e))?;
        serde_json::from_slice(&text).map_err(|e| {
            PlatformError::Other(format!(
                "`{}` is not a valid function record: {e}; delete the function's directory to reset it",
                path.display()
            ))
        })
    }

    /// Takes a shared hold on this version so that no process collects it while it runs.
    pub fn hold(&self) -> Result<File, PlatformError> {
        let path = self.dir.join(IN_USE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| PlatformError::io(format!("cannot open `{}`", path.display()), e))?;
        file.lock_shared()
            .map_err(|e| PlatformError::io(format!("cannot lock `{}`", path.display()), e))?;
        Ok(file)
    }
}

/// A version being deployed: its store entry exists and is held, but no link points to it yet.
#[derive(Debug)]
pub struct Staged {
    pub version: Version,
    pub hold: File,
}

/// `.fusionizer/local/` of one project.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// A function name that is safe as a single path component.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl StateDir {
    pub fn new(state_dir: &Path) -> Self {
        StateDir {
            root: state_dir.join("local"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn functions(&self) -> PathBuf {
        self.root.join("functions")
    }

    fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// The installed version of `name`, if any.
    pub fn current(&self, name: &str) -> Result<Option<Version>, PlatformError> {
        if !valid_name(name) {
            return Ok(None);
        }
        let link = self.functions().join(name);
        match std::fs::read_link(&link) {
            Ok(target) => {
                let id = target
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok(Some(Version {
                    dir: self.store().join(&id),
                    id,
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PlatformError::io(
                format!(
                    "cannot read `{}` (expected a link made by fusionizer)",
                    link.display()
                ),
                e,
            )),
        }
    }

    /// Every installed function and its version, by name.
    pub fn installed(&self) -> Result<BTreeMap<String, Version>, PlatformError> {
        let dir = self.functions();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(PlatformError::io(
                    format!("cannot read `{}`", dir.display()),
                    e,
                ))
            }
        };
        let mut out = BTreeMap::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| PlatformError::io(format!("cannot read `{}`", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(version) = self.current(&name)? {
                out.insert(name, version);
            }
        }
        Ok(out)
    }

    /// The record of `name`, if it is installed.
    pub fn get(&self, name: &str) -> Result<Option<FunctionRecord>, PlatformError> {
        match self.current(name)? {
            Some(version) => version.read_record().map(Some),
            None => Ok(None),
        }
    }

    /// Creates a fresh, held store entry for a deploy of `artifact` and writes its files.
    pub fn stage(&self, artifact: &Artifact) -> Result<Staged, PlatformError> {
        let store = self.store();
        std::fs::create_dir_all(&store)
            .map_err(|e| PlatformError::io(format!("cannot create `{}`", store.display()), e))?;
        let digest = artifact
            .digest
            .strip_prefix("sha256:")
            .unwrap_or(&artifact.digest);
        let id = format!(
            "{}-{}-{}",
            artifact.name,
            &digest[..digest.len().min(12)],
            nonce()
        );
        // Created under a hidden name and held before it gets its real name, so a concurrent
        // collector (which skips hidden entries) never sees it unheld.
        let hidden = store.join(format!(".{id}"));
        std::fs::create_dir(&hidden)
            .map_err(|e| PlatformError::io(format!("cannot create `{}`", hidden.display()), e))?;
        let hold = Version {
            id: id.clone(),
            dir: hidden.clone(),
        }
        .hold()?;
        let version = Version {
            dir: store.join(&id),
            id,
        };
        std::fs::rename(&hidden, &version.dir).map_err(|e| {
            PlatformError::io(format!("cannot create `{}`", version.dir.display()), e)
        })?;
        artifact.write(&version.artifact_dir()).map_err(|e| {
            PlatformError::io(
                format!("cannot write the artifact into `{}`", version.dir.display()),
                e,
            )
        })?;
        Ok(Staged { version, hold })
    }

    /// Makes `staged` the installed version of its function: writes its record, then swaps
    /// the function's link.
    pub fn install(&self, staged: &Staged, record: &FunctionRecord) -> Result<(), PlatformError> {
        let dir = &staged.version.dir;
        write_atomically(
            &dir.join(FUNCTION_JSON),
            &serde_json::to_vec_pretty(record).expect("records always serialise"),
        )?;
        let functions = self.functions();
        std::fs::create_dir_all(&functions).map_err(|e| {
            PlatformError::io(format!("cannot create `{}`", functions.display()), e)
        })?;
        let temp = functions.join(format!(".{}.{}", record.name, nonce()));
        let target = Path::new("..").join("store").join(&staged.version.id);
        std::os::unix::fs::symlink(&target, &temp)
            .map_err(|e| PlatformError::io(format!("cannot create `{}`", temp.display()), e))?;
        let link = functions.join(&record.name);
        std::fs::rename(&temp, &link).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            PlatformError::io(format!("cannot replace `{}`", link.display()), e)
        })
    }

    /// Removes `name` (its link; the version is collected by [`StateDir::collect`]).
    pub fn remove(&self, name: &str) -> Result<(), PlatformError> {
        if !valid_name(name) {
            return Ok(());
        }
        let link = self.functions().join(name);
        match std::fs::remove_file(&link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(PlatformError::io(
                format!("cannot remove `{}`", link.display()),
                e,
            )),
        }
    }

    /// Removes store entries no link points to and no process holds. Best effort: problems are
    /// logged, never returned (a leftover entry only costs disk space).
    pub fn collect(&self) {
        let referenced: BTreeSet<String> = match self.installed() {
            Ok(installed) => installed.into_values().map(|v| v.id).collect(),
            Err(e) => {
                tracing::debug!("skipping state collection: {e}");
                return;
            }
        };
        let Ok(entries) = std::fs::read_dir(self.store()) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if id.starts_with('.') || referenced.contains(&id) {
                continue;
            }
            let dir = entry.path();
            let Ok(lock) = File::options().write(true).open(dir.join(IN_USE)) else {
                continue;
            };
            if lock.try_lock().is_ok() {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::debug!("cannot remove `{}`: {e}", dir.display());
                }
            }
        }
    }
}

/// Writes `path` through a temp file in the same directory and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PlatformError> {
    let temp = path.with_extension(format!("tmp.{}", nonce()));
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            PlatformError::io(format!("cannot write `{}`", path.display()), e)
        })
}

/// A string unique per call within this machine (pid, time, counter).
pub fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{:x}{:x}{:x}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(name: &str, digest: &str) -> Artifact {
        let yaml = format!(
            "metadata:\n  name: {name}\n  labels:\n    fusionizer.io/project: shop\n    fusionizer.io/managed-by: fusionizer\n  annotations:\n    fusionizer.io/digest: {digest}\nspec:\n  env:\n    - name: A\n      value: 1\n"
        );
        Artifact {
            name: name.to_string(),
            tasks: vec!["a".into()],
            digest: digest.to_string(),
            task_digests: BTreeMap::new(),
            function_yaml: yaml.clone(),
            num_workers: 0,
            build_commands: vec![],
            build_rewrites: vec![],
            files: BTreeMap::from([("function.yaml".to_string(), yaml.into_bytes())]),
        }
    }

    #[test]
    fn record_reads_labels_annotations_and_env_from_the_yaml() {
        let record = FunctionRecord::from_artifact(&artifact("shop-a", "sha256:ab")).unwrap();
        assert_eq!(record.labels["fusionizer.io/project"], "shop");
        assert_eq!(record.annotations["fusionizer.io/digest"], "sha256:ab");
        assert_eq!(record.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(record.num_workers, 1);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["state"], "ready");
        let back: FunctionRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
        assert!(record.live().is_owned_by("shop"));
    }

    #[test]
    fn install_swaps_versions_and_collect_keeps_held_ones() {
        let temp = tempfile::tempdir().unwrap();
        let state = StateDir::new(temp.path());
        assert!(state.get("shop-a").unwrap().is_none());

        let first = state.stage(&artifact("shop-a", "sha256:0001")).unwrap();
        let record = FunctionRecord::from_artifact(&artifact("shop-a", "sha256:0001")).unwrap();
        // Staged but not installed: invisible.
        assert!(state.get("shop-a").unwrap().is_none());
        state.install(&first, &record).unwrap();
        assert_eq!(state.get("shop-a").unwrap().unwrap().digest, "sha256:0001");
        assert!(temp
            .path()
            .join("local/functions/shop-a/artifact/function.yaml")
            .is_file());

        let second = state.stage(&artifact("shop-a", "sha256:0002")).unwrap();
        let record2 = FunctionRecord::from_artifact(&artifact("shop-a", "sha256:0002")).unwrap();
        state.install(&second, &record2).unwrap();
        assert_eq!(state.get("shop-a").unwrap().unwrap().digest, "sha256:0002");

        // The first version is unreferenced but still held: kept.
        state.collect();
        assert!(first.version.dir.is_dir());
        drop(first);
        state.collect();
        assert!(!temp.path().join("local/store").join(&record.name).exists());
        let remaining: Vec<_> = std::fs::read_dir(temp.path().join("local/store"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            remaining,
            vec![std::ffi::OsString::from(&second.version.id)]
        );

        state.remove("shop-a").unwrap();
        state.remove("shop-a").unwrap();
        assert!(state.get("shop-a").unwrap().is_none());
        assert!(state.installed().unwrap().is_empty());
    }

    #[test]
    fn names_that_are_not_one_path_component_do_not_exist() {
        let temp = tempfile::tempdir().unwrap();
        let state = StateDir::new(temp.path());
        assert!(state.get("../x").unwrap().is_none());
        assert!(state.get(".hidden").unwrap().is_none());
        state.remove("../../etc").unwrap();
    }
}
