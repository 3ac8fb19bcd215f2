//! Top-level errors and exit codes.
//!
//! Every layer has its own `thiserror` enum; they all convert into [`Error`], which knows its exit
//! code (README, "Commands") and renders once, at the edge ([`Error::render`]), as
//! `error: …` / `  caused by: …` / `hint: …`.

use std::fmt;

/// Exit codes (sysexits), as the README lists them.
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

    /// Builds an error from any `std::error::Error`, its `source()` chain becoming `causes`.
    pub fn from_std(code: ExitCode, err: &(dyn std::error::Error + 'static)) -> Self {
        let mut out = Error::new(code, err.to_string());
        out.causes = sources(err).map(ToString::to_string).collect();
        out
    }

    /// `err` and its causes on one line: `message: cause: cause`.
    pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
        std::iter::once(err.to_string())
            .chain(sources(err).map(ToString::to_string))
            .collect::<Vec<_>>()
            .join(": ")
    }
}

impl Error {
    /// The whole terminal form, rendered once at the edge: `<label> message`, the details
    /// indented, one `  caused by:` line per cause, then `hint:`. `label` is `error:`, possibly
    /// coloured.
    pub fn render(&self, label: &str) -> String {
        use fmt::Write as _;
        let mut out = format!("{label} {}", self.message);
        for detail in &self.details {
            for line in detail.lines() {
                let _ = write!(out, "\n  {line}");
            }
        }
        for cause in &self.causes {
            let _ = write!(out, "\n  caused by: {cause}");
        }
        if let Some(hint) = &self.hint {
            let _ = write!(out, "\nhint: {hint}");
        }
        out
    }
}

impl fmt::Display for Error {
    /// The message alone, so an error can be a cause of another without nesting `error:`;
    /// [`Error::render`] gives the whole terminal form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The causes of `err`, nearest first (the one place the `source()` chain is walked).
pub fn sources<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(err.source(), |e| e.source())
}

/// A fusionizer result: [`Error`] unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;
