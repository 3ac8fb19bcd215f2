//! Cached Python virtualenvs: one per distinct (interpreter, runtime requirements, build commands).
//!
//! "Building" a function on the local platform means making sure its environment exists: a
//! virtualenv created with `python -m venv`, the dispatcher's runtime requirements
//! (`dispatcher/requirements.txt`, embedded at compile time: what Nuclio's Python image installs,
//! nuclio-sdk and msgpack, and nothing else, so that a task missing a package of its own fails
//! here as it would on Nuclio) installed with pip, then each of the
//! function's `spec.build.commands` run with `sh -c` inside the venv (its `bin` first on `PATH`,
//! `VIRTUAL_ENV` set) with the staged artifact as working directory. Environments are keyed by a
//! sha256 over those three inputs and shared by every function (and project) with the same key.
//!
//! Where: `$FUSIONIZER_CACHE_DIR`, else `$XDG_CACHE_HOME/fusionizer`, else
//! `~/.cache/fusionizer`, under `venvs/<key>/`. Which Python: `$FUSIONIZER_PYTHON`, default
//! `python3`.
//!
//! Concurrency and crashes: builders of one key serialise on an exclusive file lock
//! (`venvs/<key>.lock`), so a second builder waits and then finds the environment ready. A venv
//! is usable only once its completion marker exists; the marker is written last, atomically, so
//! a crash mid-build leaves an unmarked directory that the next builder removes and rebuilds.
//! (The venv is built at its final path rather than renamed into place because virtualenvs are
//! not relocatable: pip and console scripts embed their absolute path.)

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::contract::{ENV_CACHE_DIR, ENV_PYTHON};
use crate::platform::{DeployProgress, PlatformError};
use crate::proc::{Cmd, ProcError};
use crate::ui::report::{self, Event, Tone};

/// The runtime's own Python requirements, part of every environment's key.
pub const REQUIREMENTS: &str = include_str!("../../../dispatcher/requirements.txt");

const MARKER: &str = ".fusionizer-complete";
const SETUP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The cache root: `$FUSIONIZER_CACHE_DIR`, `$XDG_CACHE_HOME/fusionizer` or
/// `~/.cache/fusionizer`.
pub fn cache_root() -> Result<PathBuf, PlatformError> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty(ENV_CACHE_DIR) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("fusionizer"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(PathBuf::from(home).join(".cache").join("fusionizer"));
    }
    Err(PlatformError::Unavailable {
        message: "cannot find a cache directory for Python environments".to_string(),
        hint: Some(format!("set `{ENV_CACHE_DIR}` (or `HOME`)")),
    })
}

/// A ready virtualenv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Venv {
    pub dir: PathBuf,
}

impl Venv {
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// `PATH` with this venv's `bin` first.
    pub fn path_var(&self) -> OsString {
        let mut paths = vec![self.dir.join("bin")];
        if let Some(path) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(paths).unwrap_or_else(|_| self.dir.join("bin").into_os_string())
    }
}

/// The environment cache of one platform instance.
#[derive(Debug)]
pub struct Environments {
    python: OsString,
    /// `sys.version` and `sys.executable` of the interpreter, asked once.
    python_id: OnceCell<String>,
}

impl Environments {
    /// Reads `FUSIONIZER_PYTHON` from the environment (the cache root is resolved when an
    /// environment is first needed, so opening the platform never fails for it).
    pub fn from_env() -> Self {
        let python = std::env::var_os(ENV_PYTHON)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| OsString::from("python3"));
        Environments {
            python,
            python_id: OnceCell::new(),
        }
    }

    async fn python_id(&self) -> Result<&str, PlatformError> {
        self.python_id
            .get_or_try_init(|| async {
                let cmd = Cmd::new(&self.python)
                    .args(["-c", "import sys; print(sys.version); print(sys.executable)"])
                    .timeout(Duration::from_secs(60));
                match cmd.run().await {
                    Ok(out) => Ok(out.stdout.trim().to_string()),
                    Err(ProcError::NotFound { program }) => Err(PlatformError::Unavailable {
                        message: format!("could not find the Python interpreter `{program}`"),
                        hint: Some(format!(
                            "install Python 3 (with the `venv` module) or point `{ENV_PYTHON}` at one"
                        )),
                    }),
                    Err(e) => Err(PlatformError::Unavailable {
                        message: e.to_string(),
                        hint: Some(format!("point `{ENV_PYTHON}` at a working Python 3")),
                    }),
                }
            })
            .await
            .map(String::as_str)
    }

    /// The cache key of an environment.
    pub fn key(python_id: &str, requirements: &str, build_commands: &[String]) -> String {
        let mut hasher = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        part(python_id.as_bytes());
        part(requirements.as_bytes());
        for command in build_commands {
            part(command.as_bytes());
        }
        hex::encode(&hasher.finalize()[..12])
    }

    /// Returns the environment for `build_commands`, building it when it is not cached yet.
    /// `workdir` (the staged artifact) is the working directory of the build commands.
    pub async fn ensure(
        &self,
        function: &str,
        build_commands: &[String],
        workdir: &Path,
        progress: &dyn DeployProgress,
    ) -> Result<Venv, PlatformError> {
        let key = Self::key(self.python_id().await?, REQUIREMENTS, build_commands);
        let venvs = cache_root()?.join("venvs");
        let venv = Venv {
            dir: venvs.join(&key),
        };
        if venv.dir.join(MARKER).is_file() {
            return Ok(venv);
        }
        std::fs::create_dir_all(&venvs)
            .map_err(|e| PlatformError::io(format!("cannot create `{}`", venvs.display()), e))?;
        let lock_path = venvs.join(format!("{key}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| PlatformError::io(format!("cannot open `{}`", lock_path.display()), e))?;
        progress.step(function, "waiting for the environment lock");
        let _lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| PlatformError::Other(format!("environment lock task failed: {e}")))?
            .map_err(|e| PlatformError::io(format!("cannot lock `{}`", lock_path.display()), e))?;
        if venv.dir.join(MARKER).is_file() {
            return Ok(venv);
        }
        let id = format!("env:{function}");
        let subject = format!("env {function} ({})", packages(build_commands));
        report::emit(Event::Begin {
            id: id.clone(),
            verb: "Building".to_string(),
            subject: subject.clone(),
        });
        let started = std::time::Instant::now();
        let built = self
            .build(
                function,
                &venv,
                build_commands,
                workdir,
                &EnvSteps { id: &id, progress },
            )
            .await;
        report::emit(Event::End {
            id,
            verb: if built.is_ok() { "Built" } else { "Failed" }.to_string(),
            subject,
            elapsed: Some(started.elapsed()),
            tone: if built.is_ok() { Tone::Good } else { Tone::Bad },
            detail: Vec::new(),
        });
        built?;
        Ok(venv)
    }

    async fn build(
        &self,
        function: &str,
        venv: &Venv,
        build_commands: &[String],
        workdir: &Path,
        progress: &dyn DeployProgress,
    ) -> Result<(), PlatformError> {
        let failed = |what: &str, err: ProcError| deploy_error(function, what, err);
        if venv.dir.exists() {
            std::fs::remove_dir_all(&venv.dir).map_err(|e| {
                PlatformError::io(
                    format!("cannot remove the unfinished `{}`", venv.dir.display()),
                    e,
                )
            })?;
        }
        progress.step(function, "creating a Python virtualenv");
        Cmd::new(&self.python)
            .args([OsString::from("-m"), "venv".into(), venv.dir.clone().into()])
            .timeout(SETUP_TIMEOUT)
            .run()
            .await
            .map_err(|e| failed("creating the virtualenv", e))?;
        let requirements = venv.dir.join("fusionizer-requirements.txt");
        std::fs::write(&requirements, REQUIREMENTS).map_err(|e| {
            PlatformError::io(format!("cannot write `{}`", requirements.display()), e)
        })?;
        progress.step(function, "installing the runtime (nuclio-sdk, msgpack)");
        Cmd::new(venv.python())
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
            ])
            .arg("-r")
            .arg(&requirements)
            .env("VIRTUAL_ENV", &venv.dir)
            .env("PATH", venv.path_var())
            .timeout(SETUP_TIMEOUT)
            .run()
            .await
            .map_err(|e| failed("installing the runtime requirements", e))?;
        // As in Nuclio's image: `/opt/nuclio` is the function's directory, and the post-copy
        // marker is no command (`fuse::build_paths`).
        for command in build_commands
            .iter()
            .filter_map(|c| crate::fuse::build_paths::localize(c, workdir))
        {
            progress.step(function, &format!("running `{command}`"));
            Cmd::new("sh")
                .args(["-c", &command])
                .env("VIRTUAL_ENV", &venv.dir)
                .env("PATH", venv.path_var())
                .cwd(workdir)
                .timeout(COMMAND_TIMEOUT)
                .run()
                .await
                .map_err(|e| failed(&format!("build command `{command}`"), e))?;
        }
        let marker = venv.dir.join(MARKER);
        let temp = venv.dir.join(format!("{MARKER}.tmp"));
        std::fs::write(&temp, build_commands.join("\n"))
            .and_then(|()| std::fs::rename(&temp, &marker))
            .map_err(|e| PlatformError::io(format!("cannot write `{}`", marker.display()), e))?;
        Ok(())
    }
}

/// What an environment build installs, for its progress line: `pip: nuclio-sdk, requests`, then
/// the function's build commands (`pip install numpy`).
fn packages(build_commands: &[String]) -> String {
    let mut pip: Vec<&str> = Vec::new();
    for name in REQUIREMENTS
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            line.split(|c: char| "<>=!~;[ ".contains(c))
                .next()
                .unwrap_or(line)
        })
    {
        // one name per package, however many lines (environment markers) pin it
        if !pip.contains(&name) {
            pip.push(name);
        }
    }
    let mut text = format!("pip: {}", pip.join(", "));
    for command in build_commands
        .iter()
        .filter(|c| c.trim() != crate::fuse::build_paths::POST_COPY)
    {
        text.push_str(&format!("; `{command}`"));
    }
    text
}

/// Forwards a build's steps to the function's progress and to the environment's own spinner.
struct EnvSteps<'a> {
    id: &'a str,
    progress: &'a dyn DeployProgress,
}

impl DeployProgress for EnvSteps<'_> {
    fn step(&self, function: &str, message: &str) {
        self.progress.step(function, "building its environment");
        report::emit(Event::Step {
            id: self.id.to_string(),
            message: message.to_string(),
        });
    }
}

/// A failed build step as a deploy error: the step and its exit status in the message, the
/// program's output (stdout then stderr) framed in the detail.
fn deploy_error(function: &str, what: &str, err: ProcError) -> PlatformError {
    match err {
        ProcError::Failed {
            status,
            stdout,
            stderr,
            ..
        } => {
            let output = format!("{stdout}{stderr}");
            let output = output.trim_end();
            PlatformError::Deploy {
                function: function.to_string(),
                message: format!("{what} exited {status}"),
                detail: (!output.is_empty()).then(|| super::framed("output:", output)),
            }
        }
        other => PlatformError::Deploy {
            function: function.to_string(),
            message: format!("{what} failed"),
            detail: Some(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_names_the_packages_and_build_commands() {
        assert_eq!(packages(&[]), "pip: nuclio-sdk, msgpack");
        assert_eq!(
            packages(&["pip install numpy".to_string()]),
            "pip: nuclio-sdk, msgpack; `pip install numpy`"
        );
    }

    #[test]
    fn the_environment_has_what_nuclios_image_has_and_not_requests() {
        // nuclio 1.14.1 pkg/processor/runtime/python/py/requirements/common.txt, python3_9.txt
        let pins: Vec<&str> = REQUIREMENTS
            .lines()
            .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
            .collect();
        assert!(pins.contains(&"nuclio-sdk==0.5.13"), "{pins:?}");
        assert!(
            pins.contains(&r#"msgpack==1.0.8; python_version < "3.13""#),
            "{pins:?}"
        );
        assert!(!REQUIREMENTS.contains("requests=="), "{REQUIREMENTS}");
    }

    #[test]
    fn key_depends_on_every_input_and_not_on_how_they_split() {
        let base = Environments::key("3.11", "req", &["a".into(), "b".into()]);
        assert_eq!(
            base,
            Environments::key("3.11", "req", &["a".into(), "b".into()])
        );
        assert_ne!(
            base,
            Environments::key("3.12", "req", &["a".into(), "b".into()])
        );
        assert_ne!(
            base,
            Environments::key("3.11", "req2", &["a".into(), "b".into()])
        );
        assert_ne!(base, Environments::key("3.11", "req", &["ab".into()]));
        assert_ne!(
            base,
            Environments::key("3.11", "req", &["b".into(), "a".into()])
        );
    }

    #[test]
    fn requirements_pin_the_runtime() {
        assert!(REQUIREMENTS.contains("nuclio-sdk"));
        assert!(REQUIREMENTS.contains("requests"));
    }
}
