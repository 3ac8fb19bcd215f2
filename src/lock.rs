//! The advisory apply lock, one per project and platform, so two applies never run at once.
//!
//! The lock is an OS file lock (`File::try_lock`) on
//! `<state dir>/locks/<sanitised platform identity>.lock` (`Config::state_dir`); the holder
//! writes who it is (pid, user, host, command, since) into the file so a refused apply can say
//! who holds it. The OS releases the lock when the holder exits, however it exits, so a lock is
//! never stale. Because the file lives in the state directory, the lock only excludes applies from the
//! same checkout on the same machine: for `nuctl`, two machines (or two checkouts) applying to
//! the same cluster are not excluded by it — serialise those in CI (one apply job at a time).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, ExitCode};

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub pid: u32,
    pub user: String,
    pub host: String,
    pub command: String,
    /// RFC 3339, UTC, seconds.
    pub since: String,
}

impl LockInfo {
    /// Describes this process, running `command`.
    pub fn current(command: &str) -> LockInfo {
        LockInfo {
            pid: std::process::id(),
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "unknown".to_string()),
            host: hostname(),
            command: command.to_string(),
            since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "held by pid {} ({}@{}) running `{}` since {}",
            self.pid, self.user, self.host, self.command, self.since
        )
    }
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another apply holds the lock `{}`", .path.display())]
    Held {
        path: PathBuf,
        /// What the holder wrote, when it could be read.
        holder: Option<Box<LockInfo>>,
        /// How long this process waited for it: zero when no wait was asked for (one try).
        waited: Duration,
    },
    #[error("cannot use the lock file `{}`", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<LockError> for Error {
    fn from(err: LockError) -> Self {
        match &err {
            LockError::Held { holder, waited, .. } => {
                let mut e = Error::new(ExitCode::TempFail, err.to_string());
                e.causes.push(match holder {
                    Some(info) => info.to_string(),
                    None => "the holder has not said who it is yet".to_string(),
                });
                if !waited.is_zero() {
                    // Whole seconds, or milliseconds for a wait under a second (never "0s").
                    let shown = if waited.as_secs() > 0 {
                        Duration::from_secs(waited.as_secs())
                    } else {
                        Duration::from_millis(waited.as_millis().max(1) as u64)
                    };
                    e.causes.push(format!(
                        "gave up after waiting {}",
                        humantime::format_duration(shown)
                    ));
                }
                e.with_hint(
                    "wait for that apply to finish, or pass `--lock-timeout 5m` to wait for it; \
                     the lock is released as soon as its holder exits",
                )
            }
            LockError::Io { .. } => Error::from_std(ExitCode::Failure, &err),
        }
    }
}

/// A held lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct ApplyLock {
    file: File,
    path: PathBuf,
}

impl ApplyLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ApplyLock {
    fn drop(&mut self) {
        // Leave the file in place (removing it would race with a waiter that opened it); an
        // empty file says nobody holds it.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// `<state_dir>/locks/<sanitised identity>.lock`.
pub fn lock_path(state_dir: &Path, platform_identity: &str) -> PathBuf {
    state_dir
        .join("locks")
        .join(format!("{}.lock", sanitise(platform_identity)))
}

/// A file-name-safe form of a platform identity: other characters become `_`; long or altered
/// identities get a short hash so two identities never share a file.
pub fn sanitise(identity: &str) -> String {
    let clean: String = identity
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_matches(|c| c == '_' || c == '.').to_string();
    if clean == identity && clean.len() <= 64 {
        return clean;
    }
    let hash = hex::encode(&Sha256::digest(identity.as_bytes())[..4]);
    let head: String = clean.chars().take(48).collect();
    format!("{head}-{hash}")
}

/// How often a waiting apply retries the lock.
const POLL: Duration = Duration::from_millis(100);

/// Takes the lock at `path` for `command`, waiting up to `timeout` (zero: try once).
pub fn acquire(path: &Path, command: &str, timeout: Duration) -> Result<ApplyLock, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(LockError::Held {
                        path: path.to_path_buf(),
                        holder: read_holder(path).map(Box::new),
                        // One try (no wait asked for) is not a wait, however long it took.
                        waited: if timeout.is_zero() {
                            Duration::ZERO
                        } else {
                            now - start
                        },
                    });
                }
                std::thread::sleep(POLL.min(deadline - now));
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    let info = serde_json::to_string(&LockInfo::current(command)).expect("serialisable");
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(info.as_bytes()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(ApplyLock {
        file,
        path: path.to_path_buf(),
    })
}

/// What the current holder wrote into the lock file, if readable.
pub fn read_holder(path: &Path) -> Option<LockInfo> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_with_the_holder_then_succeeds_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), "local:/some/dir");
        let held = acquire(&path, "fusionizer apply", Duration::ZERO).unwrap();
        let err = acquire(&path, "fusionizer apply", Duration::ZERO).unwrap_err();
        match &err {
            LockError::Held { holder, .. } => {
                let holder = holder.as_ref().expect("holder info");
                assert_eq!(holder.pid, std::process::id());
                assert_eq!(holder.command, "fusionizer apply");
            }
            other @ LockError::Io { .. } => panic!("{other:?}"),
        }
        let err = Error::from(err);
        assert_eq!(err.code, ExitCode::TempFail);
        assert!(err.causes[0].starts_with("held by pid "), "{err}");
        // No wait was asked for: none is reported (it used to say "gave up after waiting 0s").
        assert_eq!(err.causes.len(), 1, "{:?}", err.causes);
        let waited = Error::from(LockError::Held {
            path: path.clone(),
            holder: None,
            waited: Duration::from_millis(250),
        });
        assert_eq!(waited.causes[1], "gave up after waiting 250ms");
        drop(held);
        let again = acquire(&path, "fusionizer apply", Duration::ZERO).unwrap();
        assert_eq!(again.path(), path);
    }

    #[test]
    fn waiting_acquire_gets_the_lock_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), "memory:x");
        let held = acquire(&path, "first", Duration::ZERO).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                tx.send(()).unwrap();
                acquire(&path, "second", Duration::from_secs(60)).map(|_| ())
            })
        };
        rx.recv().unwrap();
        drop(held);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn identities_become_distinct_safe_file_names() {
        assert_eq!(sanitise("nuctl-kube"), "nuctl-kube");
        let a = sanitise("local:/home/u/shop/.fusionizer");
        let b = sanitise("local:/home/u/shop_/.fusionizer");
        assert!(a.starts_with("local__home_u_shop_.fusionizer-"), "{a}");
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)));
        assert!(sanitise(&"x/".repeat(100)).len() <= 57);
    }
}
