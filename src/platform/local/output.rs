//! A worker's own stdout and stderr, logged line by line in bounded memory.
//!
//! What reaches them bypasses the dispatcher's framing: writes to the file descriptors
//! themselves (`os.write(1, …)`, a C extension, a subprocess that inherited them) and the
//! interpreter's own crash report. They are read in chunks; a line longer than
//! [`contract::MAX_LOG_LINE`] keeps its first part, the rest is counted and dropped as it
//! streams, and the logged line ends in `… [truncated: N more bytes]`. However much a task
//! prints without a newline, this process holds one line's worth of it. The last lines are kept
//! to explain a failed start.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::protocol;
use crate::contract;

/// Lines of a worker's own stdout/stderr kept to explain a failed start.
const TAIL_LINES: usize = 40;
/// How much is read from the pipe at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The last lines of a worker's output, shared by its two pumps.
pub(super) type Tail = Arc<Mutex<VecDeque<String>>>;

/// Logs `stream` (a worker's stdout, at info, or with `stderr` its stderr, at warn) line by
/// line until it ends, keeping the last lines in `tail`.
pub(super) async fn pump<R: AsyncRead + Unpin>(
    stream: R,
    function: String,
    index: usize,
    stderr: bool,
    tail: Tail,
) {
    let emit = |line: String| {
        let function = function.as_str();
        if stderr {
            tracing::warn!(target: protocol::WORKER_LOG_TARGET, function, worker = index, stream = "stderr", "{line}");
        } else {
            tracing::info!(target: protocol::WORKER_LOG_TARGET, function, worker = index, stream = "stdout", "{line}");
        }
        let mut tail = tail.lock().expect("tail poisoned");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    let mut reader = BufReader::with_capacity(READ_CHUNK, stream);
    let mut lines = Lines::default();
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (used, ended) = lines.feed(chunk);
        reader.consume(used);
        if ended {
            emit(lines.take());
        }
    }
    if lines.pending() {
        emit(lines.take());
    }
}

/// Splits a byte stream into lines of at most [`contract::MAX_LOG_LINE`] bytes, counting what
/// it drops from longer ones.
#[derive(Default)]
struct Lines {
    line: Vec<u8>,
    dropped: u64,
}

impl Lines {
    /// Takes `chunk` up to and including its first newline: (bytes taken, whether a line
    /// ended). What does not fit in the line is counted, not kept.
    fn feed(&mut self, chunk: &[u8]) -> (usize, bool) {
        let (text, used, ended) = match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => (&chunk[..at], at + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let room = contract::MAX_LOG_LINE.saturating_sub(self.line.len());
        let keep = text.len().min(room);
        self.line.extend_from_slice(&text[..keep]);
        self.dropped += (text.len() - keep) as u64;
        (used, ended)
    }

    /// Whether part of a line is waiting for its end.
    fn pending(&self) -> bool {
        !self.line.is_empty() || self.dropped > 0
    }

    /// The line read so far (a trailing `\r` removed, invalid UTF-8 replaced), noting what was
    /// dropped; starts the next line.
    fn take(&mut self) -> String {
        let dropped = std::mem::take(&mut self.dropped);
        let mut bytes = std::mem::take(&mut self.line);
        if dropped == 0 && bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let text = String::from_utf8_lossy(&bytes);
        protocol::bounded_line(&text, dropped).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8], chunk: usize) -> Vec<String> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for mut piece in input.chunks(chunk) {
            while !piece.is_empty() {
                let (used, ended) = lines.feed(piece);
                piece = &piece[used..];
                if ended {
                    out.push(lines.take());
                }
            }
        }
        if lines.pending() {
            out.push(lines.take());
        }
        out
    }

    #[test]
    fn short_lines_pass_whole_whatever_the_chunks() {
        for chunk in [1, 3, 1024] {
            assert_eq!(
                split(b"one\r\ntwo\n\nthree", chunk),
                ["one", "two", "", "three"],
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn a_long_line_keeps_its_start_and_counts_the_rest() {
        let limit = contract::MAX_LOG_LINE;
        let mut input = vec![b'x'; limit + 5000];
        input.extend_from_slice(b"\nnext\n");
        for chunk in [7, 4096, 1 << 20] {
            let lines = split(&input, chunk);
            assert_eq!(lines.len(), 2, "chunks of {chunk}");
            assert_eq!(
                lines[0],
                format!("{} … [truncated: 5000 more bytes]", "x".repeat(limit))
            );
            assert_eq!(lines[1], "next");
        }
    }

    #[test]
    fn a_line_exactly_at_the_limit_is_not_marked() {
        let limit = contract::MAX_LOG_LINE;
        let mut input = vec![b'y'; limit];
        input.push(b'\n');
        assert_eq!(split(&input, 1000), ["y".repeat(limit)]);
    }
}
