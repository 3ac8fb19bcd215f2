//! The `command` optimizer: an external program, in any language, that reads a JSON document
//! on stdin and prints the next grouping as JSON on stdout (`docs/optimizer-protocol.md`, with
//! the JSON Schemas `docs/optimizer-request.schema.json` and `docs/optimizer-response.schema.json`).
//!
//! [`run`] starts the program (no shell) in a process group of its own, feeds it the
//! [`Request`], waits at most the timeout for it to exit (then kills it), kills whatever it left
//! in its group, and checks the [`Response`]: the version, every task known, no task twice,
//! and every group fusable ([`crate::fuse::check_group`]: one runtime, no conflicting fields).
//! Any failure is an [`OptimizerError`] naming the reason; the caller keeps the grouping it has.
//! This is the one part of the optimizer that has effects: it spawns the program.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::TaskSpec;
use crate::fuse;
use crate::schedule::Grouping;
use crate::traces::TraceDoc;

/// The protocol version this build speaks, in both directions.
pub const PROTOCOL_VERSION: u32 = 1;

/// The most a program may print on stdout; more is an invalid answer.
pub const MAX_STDOUT_BYTES: u64 = 4 * 1024 * 1024;

/// How much of stderr is kept for the error message (the end of it).
const STDERR_TAIL: usize = 2000;

/// A task as the program sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTask {
    /// The task name.
    pub name: String,
    /// Its `spec.runtime` (`python:3.11`): tasks of different runtimes never share a function.
    pub runtime: String,
}

/// The schedule position serve is at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestPhase {
    /// The 1-based number of the `[[phase]]` in force, `None` before the first phase or when a
    /// regroup by an optimizer replaced it.
    pub number: Option<usize>,
    /// That phase's `after`, as written in fusion.toml.
    pub after: Option<String>,
}

/// The settings of the run, from `[optimizer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSettings {
    /// `min-calls`.
    pub min_calls: u64,
    /// `min-gain`.
    pub min_gain: f64,
}

/// The document written to the program's stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The project name.
    pub project: String,
    /// The grouping serve runs now: sorted groups of sorted task names, every task once.
    pub grouping: Grouping,
    /// Every task that can be grouped, sorted by name.
    pub tasks: Vec<RequestTask>,
    /// Where the schedule is.
    pub phase: RequestPhase,
    /// The settings.
    pub settings: RequestSettings,
    /// The trace document (`docs/traces.md`) of the window since the last run.
    pub traces: TraceDoc,
}

/// The document the program prints on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// Must be [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The next grouping as the program wrote it (a [`Grouping`] once validated); a task named
    /// in no group runs alone. Absent when `keep` is true.
    #[serde(default)]
    pub grouping: Option<Vec<Vec<String>>>,
    /// `true`: keep the grouping as it is.
    #[serde(default)]
    pub keep: bool,
    /// Why, in one line (logged with the decision).
    pub reason: String,
}

/// What a run decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Keep the grouping; the program's reason.
    Keep {
        /// Why.
        reason: String,
    },
    /// Move to this grouping (sorted groups of sorted names, every task of the request once).
    Regroup {
        /// The next grouping.
        grouping: Grouping,
        /// Why.
        reason: String,
    },
}

/// Why a run of the program was not used. The grouping stays as it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptimizerError {
    /// The program could not be started.
    #[error("optimizer command `{program}` could not be started: {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        reason: String,
    },
    /// The program exited with a failure status (or was killed by a signal).
    #[error("optimizer command crashed ({status}){}", stderr_suffix(.stderr))]
    Crash {
        /// The exit status as text.
        status: String,
        /// The end of what it printed on stderr.
        stderr: String,
    },
    /// The program ran longer than `timeout` and was killed.
    #[error("optimizer command timed out after {}s and was killed", .after.as_secs_f64())]
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// Its stdout was not a response document.
    #[error("optimizer command printed invalid JSON: {reason}")]
    InvalidJson {
        /// What is wrong, with the start of the output.
        reason: String,
    },
    /// It answered in a protocol version this build does not speak.
    #[error("optimizer command answered protocol version {found}; this build speaks version {PROTOCOL_VERSION}")]
    Version {
        /// The version it sent.
        found: u32,
    },
    /// A valid document whose grouping cannot be used as it is.
    #[error("optimizer command proposed an invalid grouping: {reason}")]
    InvalidGrouping {
        /// The problem, naming the task(s).
        reason: String,
    },
    /// A group that cannot be fused: different runtimes or conflicting function.yaml fields.
    #[error("optimizer command proposed a group that cannot be fused, [{}]: {reason}", .group.join(", "))]
    Conflict {
        /// The group.
        group: Vec<String>,
        /// The conflicts, from the fuse check.
        reason: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", stderr.trim())
    }
}

impl OptimizerError {
    /// The reason in one word, for logs and metrics: `spawn`, `crash`, `timeout`,
    /// `invalid-json`, `version`, `invalid-grouping`, `conflict`.
    pub fn kind(&self) -> &'static str {
        match self {
            OptimizerError::Spawn { .. } => "spawn",
            OptimizerError::Crash { .. } => "crash",
            OptimizerError::Timeout { .. } => "timeout",
            OptimizerError::InvalidJson { .. } => "invalid-json",
            OptimizerError::Version { .. } => "version",
            OptimizerError::InvalidGrouping { .. } => "invalid-grouping",
            OptimizerError::Conflict { .. } => "conflict",
        }
    }
}

/// The request for a run: `grouping` is what serve runs now, `specs` every present task's spec.
pub fn request(
    project: &str,
    grouping: &Grouping,
    specs: &BTreeMap<String, TaskSpec>,
    phase: RequestPhase,
    settings: RequestSettings,
    traces: TraceDoc,
) -> Request {
    Request {
        version: PROTOCOL_VERSION,
        project: project.to_string(),
        grouping: grouping.clone(),
        tasks: specs
            .values()
            .map(|s| RequestTask {
                name: s.name.clone(),
                runtime: s.runtime.clone(),
            })
            .collect(),
        phase,
        settings,
        traces,
    }
}

/// Runs `command` (program and arguments, no shell) in the directory `dir` (serve passes the
/// one holding fusion.toml) with `request` on stdin, and checks its answer against the
/// request's tasks and `specs` (each proposed group must fuse).
pub async fn run(
    command: &[String],
    dir: &Path,
    timeout: Duration,
    request: &Request,
    specs: &BTreeMap<String, TaskSpec>,
) -> Result<Answer, OptimizerError> {
    let stdout = spawn_and_wait(command, dir, timeout, request).await?;
    check(&stdout, request, specs)
}

/// Starts the program in a process group of its own, feeds it the request, and reads its
/// stdout and stderr until it exits (not until EOF: a background child it left may hold them
/// open for ever). Then everything left in its group is killed. More than
/// [`MAX_STDOUT_BYTES`] on stdout ends the run at once, as an invalid answer.
async fn spawn_and_wait(
    command: &[String],
    dir: &Path,
    timeout: Duration,
    request: &Request,
) -> Result<Vec<u8>, OptimizerError> {
    let Some((program, args)) = command.split_first() else {
        return Err(OptimizerError::Spawn {
            program: String::new(),
            reason: "the command is empty".to_string(),
        });
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| OptimizerError::Spawn {
            program: program.clone(),
            reason: e.to_string(),
        })?;
    // From here on, however the run ends (even when this future is dropped), nothing the
    // program started outlives it.
    let mut group = Group::of(&child);
    let input = serde_json::to_vec(request).expect("a request always serialises");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // A program that exits without reading all of stdin is judged by its answer.
    let feed = async move {
        let _ = stdin.write_all(&input).await;
        drop(stdin); // EOF: the request is complete.
    };
    tokio::pin!(feed);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut out = Capture::head(MAX_STDOUT_BYTES as usize);
    let mut err = Capture::tail(STDERR_KEPT);
    let (mut out_buf, mut err_buf) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let (mut fed, mut out_open, mut err_open) = (false, true, true);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = &mut feed, if !fed => fed = true,
            read = stdout.read(&mut out_buf), if out_open => match read {
                Ok(n) if n > 0 => out.push(&out_buf[..n]),
                _ => out_open = false,
            },
            read = stderr.read(&mut err_buf), if err_open => match read {
                Ok(n) if n > 0 => err.push(&err_buf[..n]),
                _ => err_open = false,
            },
            () = &mut deadline => {
                group.kill();
                let _ = child.kill().await;
                return Err(OptimizerError::Timeout { after: timeout });
            }
        }
        if out.over() {
            group.kill();
            let _ = child.kill().await;
            return Err(too_much_output());
        }
    };
    // The program has exited: everything it wrote is in the pipes now. What it left running
    // goes, and what the pipes hold is read without waiting for an EOF they may never reach.
    group.kill();
    drain(&stdout, &mut out);
    drain(&stderr, &mut err);
    let status = status.map_err(|e| OptimizerError::Crash {
        status: format!("could not wait for it: {e}"),
        stderr: String::new(),
    })?;
    if !status.success() {
        let text = String::from_utf8_lossy(&err.bytes);
        let mut start = text.len().saturating_sub(STDERR_TAIL);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        return Err(OptimizerError::Crash {
            status: status.to_string(),
            stderr: text[start..].to_string(),
        });
    }
    if out.over() {
        return Err(too_much_output());
    }
    Ok(out.bytes)
}

/// How much is read from a pipe at a time.
const CHUNK: usize = 64 * 1024;

/// How much of the end of stderr is kept while the program runs (the message shows the last
/// [`STDERR_TAIL`] characters of it).
const STDERR_KEPT: usize = 16 * 1024;

fn too_much_output() -> OptimizerError {
    OptimizerError::InvalidJson {
        reason: format!("more than {MAX_STDOUT_BYTES} bytes on stdout"),
    }
}

/// What is kept of one output stream: its start up to a limit (and a chunk past it, so that
/// going over shows), or its last bytes.
struct Capture {
    bytes: Vec<u8>,
    limit: usize,
    /// Keep the end (drop the oldest bytes) instead of the start.
    tail: bool,
}

impl Capture {
    fn head(limit: usize) -> Self {
        Capture {
            bytes: Vec::new(),
            limit,
            tail: false,
        }
    }

    fn tail(keep: usize) -> Self {
        Capture {
            bytes: Vec::new(),
            limit: keep,
            tail: true,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        if !self.tail && self.over() {
            return;
        }
        self.bytes.extend_from_slice(chunk);
        if self.tail && self.bytes.len() > 2 * self.limit {
            self.bytes.drain(..self.bytes.len() - self.limit);
        }
    }

    /// More than the limit of a head capture arrived.
    fn over(&self) -> bool {
        !self.tail && self.bytes.len() > self.limit
    }
}

/// Reads what `pipe` holds now, without waiting for more: its descriptor is non-blocking (tokio
/// keeps its child pipes so), so a read of an empty pipe whose write end someone still holds
/// fails with `EAGAIN` instead of waiting. Stops at the capture's limit.
fn drain(pipe: &impl std::os::fd::AsFd, into: &mut Capture) {
    let mut buf = vec![0u8; CHUNK];
    while !into.over() {
        match rustix::io::read(pipe, &mut buf[..]) {
            Ok(0) => break,
            Ok(n) => into.push(&buf[..n]),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
}

/// The process group the program leads ([`tokio::process::Command::process_group`]), so that
/// what it starts in the background is stopped with it. Killed with `SIGKILL` by
/// [`Group::kill`], or when dropped.
struct Group(Option<rustix::process::Pid>);

impl Group {
    fn of(child: &tokio::process::Child) -> Self {
        Group(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw),
        )
    }

    /// Kills every process left in the group (once; a group that is empty already is fine).
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Checks a program's stdout against the request (public so it can be tested without a program).
pub fn check(
    stdout: &[u8],
    request: &Request,
    specs: &BTreeMap<String, TaskSpec>,
) -> Result<Answer, OptimizerError> {
    let excerpt = || {
        let text = String::from_utf8_lossy(stdout);
        let cut: String = text.chars().take(120).collect();
        if cut.trim().is_empty() {
            "(nothing printed)".to_string()
        } else {
            format!("`{}`", cut.trim())
        }
    };
    let value: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|e| OptimizerError::InvalidJson {
            reason: format!("{e}; stdout began {}", excerpt()),
        })?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(OptimizerError::Version {
                found: u32::try_from(v).unwrap_or(u32::MAX),
            })
        }
        None => {
            return Err(OptimizerError::InvalidJson {
                reason: "missing field `version`".to_string(),
            })
        }
    }
    let response: Response =
        serde_json::from_value(value).map_err(|e| OptimizerError::InvalidJson {
            reason: e.to_string(),
        })?;
    let grouping = match (response.keep, response.grouping) {
        (true, None) => {
            return Ok(Answer::Keep {
                reason: response.reason,
            })
        }
        (false, Some(grouping)) => grouping,
        (true, Some(_)) => {
            return Err(OptimizerError::InvalidJson {
                reason: "both `keep: true` and `grouping`; send one".to_string(),
            })
        }
        (false, None) => {
            return Err(OptimizerError::InvalidJson {
                reason: "neither `grouping` nor `keep: true`".to_string(),
            })
        }
    };
    let known: BTreeSet<&str> = request.tasks.iter().map(|t| t.name.as_str()).collect();
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut next: Vec<Vec<String>> = Vec::new();
    for group in grouping {
        if group.is_empty() {
            return Err(OptimizerError::InvalidGrouping {
                reason: "an empty group".to_string(),
            });
        }
        for task in &group {
            if !known.contains(task.as_str()) {
                return Err(OptimizerError::InvalidGrouping {
                    reason: format!("unknown task `{task}`"),
                });
            }
            if !placed.insert(task.clone()) {
                return Err(OptimizerError::InvalidGrouping {
                    reason: format!("task `{task}` appears twice"),
                });
            }
        }
        let mut group = group;
        group.sort();
        if group.len() > 1 {
            let members: Vec<&TaskSpec> = group.iter().filter_map(|t| specs.get(t)).collect();
            let problems = fuse::check_group(&request.project, &members);
            if !problems.is_empty() {
                return Err(OptimizerError::Conflict {
                    group,
                    reason: problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
        }
        next.push(group);
    }
    for task in &known {
        if !placed.contains(*task) {
            next.push(vec![(*task).to_string()]);
        }
    }
    Ok(Answer::Regroup {
        grouping: Grouping::new(next),
        reason: response.reason,
    })
}
