//! The one wrapper every external program goes through.
//!
//! It captures both streams and tells "could not find `nuctl`" apart from "`nuctl deploy …`
//! exited 1" (with its stderr framed), so callers can map each to the right exit code. A
//! long-running program started with [`Cmd::watchdog`] leads a process group of its own, and
//! [`ProcessGroup`] ends what it started once it is done.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};

/// How often [`ProcessGroup::end`] looks whether the group is gone.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// A finished program run.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Why a program run failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("could not find `{program}`")]
    NotFound { program: String },
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` exited {status}{}", frame(.stderr, .stdout))]
    Failed {
        command: String,
        status: i32,
        stdout: String,
        stderr: String,
    },
    #[error("`{command}` did not finish within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
}

/// `stderr` (or, when empty, `stdout`) indented under a `|` frame, for error messages.
pub fn frame(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let text = text.trim_end();
    if text.is_empty() {
        return String::new();
    }
    let mut out = String::from(":");
    for line in text.lines() {
        out.push_str("\n    | ");
        out.push_str(line);
    }
    out
}

/// A command to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
    pub timeout: Option<Duration>,
    /// [`Cmd::watchdog`].
    pub watchdog: bool,
    /// [`Cmd::own_group`].
    pub own_group: bool,
}

impl Cmd {
    pub fn new(program: impl Into<OsString>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            timeout: None,
            watchdog: false,
            own_group: false,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The program leads a process group of its own, and when [`Cmd::output`] passes its
    /// timeout the whole group is killed, so what the program started (a `docker build`) goes
    /// with it.
    pub fn own_group(mut self) -> Self {
        self.own_group = true;
        self
    }

    /// For [`Cmd::spawn`]: the program leads a process group of its own, and its stdin is a pipe
    /// whose write end only this process holds (the returned child's `stdin`, never written; take
    /// it out and keep it, since `Child::wait` closes it). When
    /// this process dies, however it dies, the kernel closes that end and the program reads EOF:
    /// a program that watches its stdin (the local worker's `--watchdog-stdin`) then knows to
    /// stop, with everything it started.
    pub fn watchdog(mut self) -> Self {
        self.watchdog = true;
        self
    }

    /// The command line as a user would type it (for messages and snapshots).
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| {
                let a = a.to_string_lossy();
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"')
                {
                    format!("'{}'", a.replace('\'', "'\\''"))
                } else {
                    a.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs to completion, capturing both streams. Any exit status is returned as `Ok`.
    pub async fn output(&self) -> Result<Output, ProcError> {
        let child = self.spawn()?;
        let group = child
            .id()
            .filter(|_| self.own_group)
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        // Out of the terminal's process group, the program no longer gets the terminal's
        // Ctrl-C: [`end_groups_on_signal`] passes it on, and a cancelled run ends the group.
        let mut running = group.map(RunningGroup::enter);
        let waited = child.wait_with_output();
        let output = match self.timeout {
            Some(t) => tokio::time::timeout(t, waited).await.map_err(|_| {
                if let Some(pid) = group {
                    let _ = kill_process_group(pid, Signal::KILL);
                }
                ProcError::Timeout {
                    command: self.display(),
                    timeout: t,
                }
            })?,
            None => waited.await,
        }
        .map_err(|source| ProcError::Spawn {
            command: self.display(),
            source,
        })?;
        if let Some(running) = running.as_mut() {
            running.finished = true;
        }
        Ok(Output {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Starts a long-running program (a worker process): stdin closed (or, with
    /// [`Cmd::watchdog`], a pipe held open), stdout and stderr piped for the caller to read,
    /// killed when the returned child is dropped.
    pub fn spawn(&self) -> Result<tokio::process::Child, ProcError> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if self.watchdog {
            command.stdin(Stdio::piped()).process_group(0);
        } else if self.own_group {
            command.process_group(0);
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        command.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ProcError::NotFound {
                    program: self.program.to_string_lossy().into_owned(),
                }
            } else {
                ProcError::Spawn {
                    command: self.display(),
                    source,
                }
            }
        })
    }

    /// Runs and requires exit 0.
    pub async fn run(&self) -> Result<Output, ProcError> {
        let out = self.output().await?;
        if out.status == 0 {
            Ok(out)
        } else {
            Err(ProcError::Failed {
                command: self.display(),
                status: out.status,
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }
}

/// The process groups of [`Cmd::own_group`] programs running now.
static RUNNING_GROUPS: std::sync::Mutex<std::collections::BTreeSet<i32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Keeps a running group in [`RUNNING_GROUPS`]; ends the group when dropped before its program
/// finished (the run was cancelled).
struct RunningGroup {
    leader: rustix::process::Pid,
    finished: bool,
}

impl RunningGroup {
    fn enter(leader: rustix::process::Pid) -> Self {
        RUNNING_GROUPS
            .lock()
            .expect("groups poisoned")
            .insert(leader.as_raw_nonzero().get());
        RunningGroup {
            leader,
            finished: false,
        }
    }
}

impl Drop for RunningGroup {
    fn drop(&mut self) {
        RUNNING_GROUPS
            .lock()
            .expect("groups poisoned")
            .remove(&self.leader.as_raw_nonzero().get());
        if !self.finished {
            let _ = kill_process_group(self.leader, Signal::KILL);
        }
    }
}

/// From now on, a SIGINT or SIGTERM to this process is passed on to the process groups of the
/// programs it runs with [`Cmd::own_group`] (which the terminal's Ctrl-C no longer reaches),
/// and then this process exits as the signal would have ended it (130 or 143). Call it once,
/// inside the runtime of a command that is not `serve` (serve handles the signals itself).
pub fn end_groups_on_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::spawn(async move {
        let (signal, code) = tokio::select! {
            _ = interrupt.recv() => (Signal::INT, 130),
            _ = terminate.recv() => (Signal::TERM, 143),
        };
        let groups: Vec<i32> = RUNNING_GROUPS
            .lock()
            .map(|g| g.iter().copied().collect())
            .unwrap_or_default();
        for group in groups
            .into_iter()
            .filter_map(rustix::process::Pid::from_raw)
        {
            let _ = kill_process_group(group, signal);
        }
        std::process::exit(code);
    });
}

/// The process group a program started with [`Cmd::watchdog`] leads: the program and whatever
/// it started that did not leave the group (`setsid`, `setpgid`). Dropped without
/// [`ProcessGroup::end`], it kills the whole group with SIGKILL.
#[derive(Debug)]
pub struct ProcessGroup {
    leader: Option<Pid>,
}

impl ProcessGroup {
    /// The group `child` leads. Take it right after the spawn: a child already waited for has
    /// no id.
    pub fn of(child: &tokio::process::Child) -> Self {
        let leader = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        ProcessGroup { leader }
    }

    /// Ends what is left of the group once its leader is gone: SIGTERM, then SIGKILL to whatever
    /// is still there after `grace`. Returns at once when nothing is left.
    pub async fn end(&mut self, grace: Duration) {
        let Some(group) = self.leader.take() else {
            return;
        };
        if kill_process_group(group, Signal::TERM).is_err() {
            return; // no process left in the group
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(GROUP_POLL).await;
            if test_kill_process_group(group).is_err() {
                return;
            }
        }
        let _ = kill_process_group(group, Signal::KILL);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(group) = self.leader {
            let _ = kill_process_group(group, Signal::KILL);
        }
    }
}
