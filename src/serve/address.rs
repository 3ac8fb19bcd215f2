//! Where a running serve can be reached: serve writes its URL and pid to
//! `serve.json` in the state directory once it listens and removes the file when it exits, so that
//! `invoke`, `traces export` and `optimize` find it without `--server`. A record whose process is
//! gone (serve was killed) is recognised as stale and not used.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The record's file name inside the state dir.
pub const ADDRESS_FILE: &str = "serve.json";

/// What serve records about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeAddress {
    /// The URL a client uses, e.g. `http://127.0.0.1:18200` (a wildcard listen address is
    /// recorded as loopback).
    pub url: String,
    /// serve's process id.
    pub pid: u32,
}

/// What the state dir says about a running serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No record (no serve started here, or it exited cleanly).
    None,
    /// A record whose process is running.
    Running(ServeAddress),
    /// A record whose process is gone (serve was killed) or that cannot be read.
    Stale {
        /// The record's file.
        file: PathBuf,
        /// Why it is not used.
        why: String,
    },
}

impl ServeAddress {
    /// The record of this process listening on `local`.
    pub fn of_this_process(local: std::net::SocketAddr) -> Self {
        let mut local = local;
        if local.ip().is_unspecified() {
            let loopback: std::net::IpAddr = if local.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            local.set_ip(loopback);
        }
        ServeAddress {
            url: format!("http://{local}"),
            pid: std::process::id(),
        }
    }

    /// Writes the record (whole or not at all: a temporary file renamed into place) and returns
    /// the guard that removes it when dropped.
    pub fn write(&self, state_dir: &Path) -> std::io::Result<Recorded> {
        std::fs::create_dir_all(state_dir)?;
        let mut file = tempfile::NamedTempFile::new_in(state_dir)?;
        serde_json::to_writer_pretty(&mut file, self)?;
        let path = state_dir.join(ADDRESS_FILE);
        file.persist(&path).map_err(|e| e.error)?;
        Ok(Recorded {
            path,
            pid: self.pid,
        })
    }

    /// The record in `state_dir`, checked against the running processes.
    pub fn find(state_dir: &Path) -> Found {
        let file = state_dir.join(ADDRESS_FILE);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::None,
            Err(e) => {
                return Found::Stale {
                    file,
                    why: format!("cannot be read: {e}"),
                }
            }
        };
        let record: ServeAddress = match serde_json::from_str(&text) {
            Ok(record) => record,
            Err(e) => {
                return Found::Stale {
                    file,
                    why: format!("is not a serve address record: {e}"),
                }
            }
        };
        if is_running(record.pid) {
            Found::Running(record)
        } else {
            Found::Stale {
                file,
                why: format!(
                    "names serve at {} (pid {}), which is no longer running",
                    record.url, record.pid
                ),
            }
        }
    }
}

/// Whether a process `pid` exists (one of another user counts: it exists).
fn is_running(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// The written record; dropping it removes the file, unless another serve has replaced it since.
#[derive(Debug)]
pub struct Recorded {
    path: PathBuf,
    pid: u32,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| serde_json::from_str::<ServeAddress>(&text).ok())
            .is_some_and(|record| record.pid == self.pid);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_found_while_its_process_runs_and_removed_with_its_guard() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ServeAddress::find(dir.path()), Found::None);
        let record = ServeAddress::of_this_process("0.0.0.0:18200".parse().unwrap());
        assert_eq!(record.url, "http://127.0.0.1:18200");
        let guard = record.write(dir.path()).unwrap();
        assert_eq!(ServeAddress::find(dir.path()), Found::Running(record));
        drop(guard);
        assert_eq!(ServeAddress::find(dir.path()), Found::None);
    }

    #[test]
    fn a_record_of_a_gone_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        // A child that has exited and been reaped: its pid names no process of ours.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let record = ServeAddress {
            url: "http://127.0.0.1:9".to_string(),
            pid,
        };
        // Written by hand: the guard would remove it.
        std::fs::write(
            dir.path().join(ADDRESS_FILE),
            serde_json::to_string(&record).unwrap(),
        )
        .unwrap();
        match ServeAddress::find(dir.path()) {
            Found::Stale { why, .. } => {
                assert!(why.contains("no longer running"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(dir.path().join(ADDRESS_FILE), "not json").unwrap();
        assert!(matches!(
            ServeAddress::find(dir.path()),
            Found::Stale { .. }
        ));
    }
}
