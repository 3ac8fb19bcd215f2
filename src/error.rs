//! Top-level errors and exit codes.
//!
//! Every layer has its own `thiserror` enum; they all convert into [`Error`], which knows its exit
//! code (DESIGN.md "CLI and exit codes") and renders once, at the top, as
//! `error: …` / `  caused by: …` / `hint: …`.

use std::fmt;

/// Exit codes, exactly as DESIGN.md lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    Failure = 1,
    /// `plan --detailed-exitcode` found changes.
    Changes = 2,
    Usage = 64,
    /// The platform is unavailable (no `nuctl`, unreachable cluster).
    Unavailable = 69,
    /// A saved plan is stale, or another apply holds the lock.
    TempFail = 75,
    /// `fusion.toml` or a task's `function.yaml` is invalid.
    Config = 78,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// The error every command returns.
#[derive(Debug)]
pub struct Error {
    pub code: ExitCode,
    pub message: String,
    pub causes: Vec<String>,
    /// Items listed under the message as they are (e.g. every problem of a config), each
    /// indented; unlike `causes` they are not a chain.
    pub details: Vec<String>,
    pub hint: Option<String>,
}

impl Error {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            causes: Vec::new(),
            details: Vec::new(),
            hint: None,
        }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Failure, message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn caused_by(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self
    }

    /// Builds an error from any `std::error::Error`, walking its `source()` chain into `causes`.
    pub fn from_std(code: ExitCode, err: &(dyn std::error::Error + 'static)) -> Self {
        let mut out = Error::new(code, err.to_string());
        let mut source = err.source();
        while let Some(cause) = source {
            out.causes.push(cause.to_string());
            source = cause.source();
        }
        out
    }
}

impl fmt::Display for Error {
    /// Renders the whole error: the message, one `caused by:` line per cause, then the hint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        for detail in &self.details {
            for line in detail.lines() {
                write!(f, "\n  {line}")?;
            }
        }
        for cause in &self.causes {
            write!(f, "\n  caused by: {cause}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
