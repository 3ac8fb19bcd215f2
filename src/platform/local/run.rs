//! Where this process's worker sockets live, and the cleanup after a predecessor that died.
//!
//! Unix sockets need a short path (`sun_path` holds 108 bytes), so they live below the system's
//! temp directory (`$TMPDIR` when its path is short, else `/tmp`): one private directory per
//! process and project, `fz-<nonce>/` (mode 0700), with one sub-directory per pool. While it
//! exists the project's state directory records it, in `.fusionizer/local/run/<pid>-<nonce>.json`
//! (the process id, the process's start time, its command and the directory). Both are removed
//! when the platform shuts down or is dropped.
//!
//! A process killed with `kill -9` cannot remove them. Its workers go by themselves (their
//! watchdog, [`crate::proc::Cmd::watchdog`]); the next process that opens the project's local
//! platform (any command) finds the record, sees that its process is gone (no such process, or
//! the id now belongs to one started at another time), stops any worker still attached to its
//! socket directory (found in `/proc` by its `--socket` argument: one whose watchdog could not
//! act), removes the directory and the record, and says so.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::contract;
use crate::platform::PlatformError;

/// The records' directory below `.fusionizer/local/`.
const RECORDS: &str = "run";

/// What the state directory records about a live run directory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    pid: u32,
    /// The process's start time (`/proc/<pid>/stat`, field 22), telling a reused pid apart.
    started: Option<u64>,
    command: String,
    dir: PathBuf,
}

/// This process's run directory for one project, created on first use.
#[derive(Debug)]
pub(super) struct RunDir {
    records: PathBuf,
    current: Mutex<Option<Created>>,
}

#[derive(Debug)]
struct Created {
    dir: PathBuf,
    record: PathBuf,
    next_pool: u64,
}

impl RunDir {
    /// The run directory of the project whose local state is `state_root`
    /// (`.fusionizer/local/`); nothing is created yet.
    pub(super) fn new(state_root: &Path) -> Self {
        RunDir {
            records: state_root.join(RECORDS),
            current: Mutex::new(None),
        }
    }

    /// A fresh private directory for one pool's sockets (removed by the pool when it stops, and
    /// with the whole run directory in any case).
    pub(super) fn pool_dir(&self) -> Result<PathBuf, PlatformError> {
        let mut current = self.current.lock().expect("run dir poisoned");
        if current.is_none() {
            *current = Some(self.create()?);
        }
        let created = current.as_mut().expect("just created");
        created.next_pool += 1;
        let dir = created.dir.join(created.next_pool.to_string());
        std::fs::create_dir(&dir)
            .map_err(|e| PlatformError::io(format!("cannot create `{}`", dir.display()), e))?;
        Ok(dir)
    }

    fn create(&self) -> Result<Created, PlatformError> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let base = if base.as_os_str().len() <= 60 {
            base
        } else {
            PathBuf::from("/tmp")
        };
        let nonce = super::state::nonce();
        let dir = base.join(format!("fz-{nonce}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| PlatformError::io(format!("cannot create `{}`", dir.display()), e))?;
        let pid = std::process::id();
        let record = Record {
            pid,
            started: start_time("self"),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            dir: dir.clone(),
        };
        let path = self.records.join(format!("{pid}-{nonce}.json"));
        let written = std::fs::create_dir_all(&self.records)
            .map_err(|e| {
                PlatformError::io(format!("cannot create `{}`", self.records.display()), e)
            })
            .and_then(|()| {
                super::state::write_atomically(
                    &path,
                    &serde_json::to_vec_pretty(&record).expect("records always serialise"),
                )
            });
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(Created {
            dir,
            record: path,
            next_pool: 0,
        })
    }

    /// Removes the run directory and its record. Call once the workers are stopped; a later
    /// [`RunDir::pool_dir`] creates a new one.
    pub(super) fn remove(&self) {
        let created = self.current.lock().expect("run dir poisoned").take();
        if let Some(created) = created {
            let _ = std::fs::remove_dir_all(&created.dir);
            let _ = std::fs::remove_file(&created.record);
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        self.remove();
    }
}

/// What [`reap`] cleaned up after one dead predecessor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reaped {
    pub(super) pid: u32,
    pub(super) command: String,
    pub(super) dir: PathBuf,
    /// Workers still running that were stopped.
    pub(super) workers: usize,
}

/// Cleans up after every predecessor of this project that died without doing so itself (see
/// the module docs), logging what it did. Best effort: what cannot be read is left alone.
pub(super) fn reap(state_root: &Path) -> Vec<Reaped> {
    let records = state_root.join(RECORDS);
    let Ok(entries) = std::fs::read_dir(&records) else {
        return Vec::new();
    };
    // Without `/proc` a live process cannot be told from a dead one: leave everything alone.
    if !Path::new("/proc/self/stat").exists() {
        return Vec::new();
    }
    let mut reaped = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Some(record) = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok())
        else {
            continue;
        };
        if alive(&record) {
            continue;
        }
        let workers = stop_workers_in(&record.dir);
        let _ = std::fs::remove_dir_all(&record.dir);
        let _ = std::fs::remove_file(&path);
        tracing::warn!(
            "a previous fusionizer (pid {}, `{}`) did not exit cleanly: stopped {} worker(s) it \
             left running and removed its socket directory `{}`",
            record.pid,
            record.command,
            workers,
            record.dir.display()
        );
        reaped.push(Reaped {
            pid: record.pid,
            command: record.command,
            dir: record.dir,
            workers,
        });
    }
    reaped
}

/// Whether the process that wrote `record` still runs.
fn alive(record: &Record) -> bool {
    let Some(now) = start_time(&record.pid.to_string()) else {
        return false;
    };
    record.started.is_none_or(|started| started == now)
}

/// The start time of process `pid` (`self` for this one): field 22 of `/proc/<pid>/stat`.
fn start_time(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command (field 2) is in parentheses and may hold anything; count after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Kills every worker whose socket lies in `dir` (with its process group, which it leads);
/// returns how many there were.
fn stop_workers_in(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut stopped = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let attached = args.windows(2).any(|pair| {
            pair[0] == contract::WORKER_ARG_SOCKET.as_bytes()
                && Path::new(std::ffi::OsStr::from_bytes(pair[1])).starts_with(dir)
        });
        if !attached {
            continue;
        }
        let Some(pid) = rustix::process::Pid::from_raw(pid) else {
            continue;
        };
        let signal = rustix::process::Signal::KILL;
        if rustix::process::kill_process_group(pid, signal).is_ok()
            || rustix::process::kill_process(pid, signal).is_ok()
        {
            stopped += 1;
        }
    }
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_predecessor_is_reaped_and_a_live_one_left_alone() {
        let state = tempfile::tempdir().unwrap();
        let records = state.path().join(RECORDS);
        std::fs::create_dir_all(&records).unwrap();
        let leftover = tempfile::tempdir().unwrap().keep();
        std::fs::create_dir_all(leftover.join("1")).unwrap();
        // A process that started at another time than this one, under this one's pid: dead.
        let dead = Record {
            pid: std::process::id(),
            started: start_time("self").map(|t| t + 1),
            command: "fusionizer serve".into(),
            dir: leftover.clone(),
        };
        std::fs::write(records.join("1-a.json"), serde_json::to_vec(&dead).unwrap()).unwrap();
        // This very process, with its own run directory: alive.
        let run = RunDir::new(state.path());
        let pool = run.pool_dir().unwrap();
        assert!(pool.is_dir());
        let reaped = reap(state.path());
        assert_eq!(
            reaped,
            [Reaped {
                pid: std::process::id(),
                command: "fusionizer serve".into(),
                dir: leftover.clone(),
                workers: 0,
            }]
        );
        assert!(!leftover.exists());
        assert!(pool.is_dir(), "a live process's directory was reaped");
        assert_eq!(std::fs::read_dir(&records).unwrap().count(), 1);
        drop(run);
        assert!(!pool.exists());
        assert_eq!(std::fs::read_dir(&records).unwrap().count(), 0);
    }
}
