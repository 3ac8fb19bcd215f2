//! The security suite (docs/security.md): what a web page, a client or a task could do to
//! `serve` on a developer's laptop, each tried against the real binary on loopback.
//!
//! - `origin`: DNS rebinding, cross-origin requests and methods, in a real browser too;
//! - `connections`: slow, silent and idle clients, and the file descriptor limit;
//! - `abuse`: spoofed callers, a missing token, the asynchronous queue's bytes, call cycles;
//! - `clients`: the CLI's clients of a running serve against a silent or hostile server;
//! - `workers`: what a task prints, answers and starts.

mod abuse;
mod clients;
mod connections;
mod origin;
mod workers;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::{Serve, TestEnv};

/// A task that appends its event's method to the file `$MARKER`, then answers `ran`: whatever
/// runs it leaves a line there.
const VICTIM_MAIN: &str = r#"import os


def handler(context, event):
    with open(os.environ["MARKER"], "a") as marker:
        marker.write(event.method + "\n")
    return "ran"
"#;

/// A project `sec` with the task `victim` (see [`VICTIM_MAIN`]) and `serve` lines added to
/// `[serve]`; its marker file.
pub(crate) fn project(serve: &str) -> (TestEnv, PathBuf) {
    let env = TestEnv::new();
    let marker = env.root().join("marker");
    env.write(&[
        (
            "fusion.toml",
            &format!(
                "[project]\nname = \"sec\"\n\n[tasks]\nvictim = \"tasks/victim\"\n\n[serve]\n{serve}\n"
            ),
        ),
        (
            "tasks/victim/function.yaml",
            &format!(
                "apiVersion: \"nuclio.io/v1beta1\"\nkind: \"NuclioFunction\"\nmetadata:\n  name: victim\n\
                 spec:\n  runtime: \"python:3.11\"\n  handler: \"main:handler\"\n  env:\n    \
                 - name: MARKER\n      value: \"{}\"\n",
                marker.display()
            ),
        ),
        ("tasks/victim/main.py", VICTIM_MAIN),
    ]);
    (env, marker)
}

/// The lines of the marker file: one per time the victim ran.
pub(crate) fn ran(marker: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(marker)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `host:port` of a running serve.
pub(crate) fn addr(serve: &Serve) -> String {
    serve.base.trim_start_matches("http://").to_string()
}

/// Sends `request` as written on a new connection and reads the answer until the server
/// closes it (at most 30 s); the status and the whole answer.
pub(crate) fn raw(serve: &Serve, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr(serve)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// A request with `method`, `path`, `Host: host` and extra header lines, no body, closing.
pub(crate) fn request(method: &str, path: &str, host: &str, headers: &[&str]) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    text.into_bytes()
}
