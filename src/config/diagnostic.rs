//! Problems found in a file, with their location and a hint, and how they are shown.

use std::path::{Path, PathBuf};

use crate::error::{Error, ExitCode};

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line and column, where known.
    pub line: Option<usize>,
    /// 1-based column, where known (set together with `line`).
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is a suggestion.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A problem with `file` as a whole (no location).
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line: None,
            column: None,
            message: message.into(),
            hint: None,
        }
    }

    /// Sets the 1-based line and column.
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Sets the hint (how to fix the problem).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// `path` relative to `base` when it lies below it, else `None`.
pub fn relative_to<'a>(path: &'a Path, base: &Path) -> Option<&'a Path> {
    let relative = path.strip_prefix(base).ok()?;
    (!relative.as_os_str().is_empty()).then_some(relative)
}

/// `path` for a message: relative to the process's working directory when it lies below it
/// (`tasks/taskb/function.yaml`), otherwise as given.
pub fn display_path(path: &Path) -> String {
    if path.is_absolute() {
        if let Ok(cwd) = std::env::current_dir() {
            if let Some(relative) = relative_to(path, &cwd) {
                return relative.display().to_string();
            }
            if let Ok(canonical) = cwd.canonicalize() {
                if let Some(relative) = relative_to(path, &canonical) {
                    return relative.display().to_string();
                }
            }
        }
    }
    path.display().to_string()
}

impl std::fmt::Display for Diagnostic {
    /// `file:line:col: message` (location parts omitted when unknown), then `  hint: …`. The file
    /// is shown relative to the working directory when it lies below it ([`display_path`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", display_path(&self.file))?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one run. Converts into an exit-78 [`Error`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl From<Diagnostics> for Error {
    fn from(d: Diagnostics) -> Self {
        let n = d.0.len();
        let mut e = Error::new(
            ExitCode::Config,
            format!(
                "invalid configuration ({n} problem{})",
                if n == 1 { "" } else { "s" }
            ),
        );
        e.details = d.0.iter().map(ToString::to_string).collect();
        e
    }
}
