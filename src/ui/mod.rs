//! Terminal presentation: colour decisions, stdout writes that survive a closed pipe, error
//! rendering and log setup. Data goes to stdout; progress, logs and errors to stderr (through
//! [`report`], which draws progress events as lines, spinners or JSON).

pub mod report;

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Error;

pub use report::LogFormat;

/// When to colour output (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    /// Colour on a terminal unless `NO_COLOR` is set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// How a command renders its result on stdout (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// For people.
    #[default]
    Text,
    /// For programs (schemas in `docs/`).
    Json,
    /// For pull requests.
    Markdown,
}

/// How to talk to the user.
#[derive(Debug, Clone)]
pub struct Ui {
    /// Colour on stdout.
    pub color: bool,
    /// Colour on stderr.
    pub color_stderr: bool,
    pub quiet: bool,
    pub verbose: u8,
    /// stdin and stderr are terminals (prompts and progress bars are allowed).
    pub interactive: bool,
    pub stderr_is_tty: bool,
    /// `--log-format`.
    pub log_format: LogFormat,
}

impl Ui {
    pub fn new(choice: ColorChoice, quiet: bool, verbose: u8) -> Self {
        let stderr_is_tty = std::io::stderr().is_terminal();
        Ui {
            color: decide(choice, std::io::stdout().is_terminal()),
            color_stderr: decide(choice, stderr_is_tty),
            quiet,
            verbose,
            interactive: std::io::stdin().is_terminal() && stderr_is_tty,
            stderr_is_tty,
            log_format: LogFormat::Text,
        }
    }

    /// A Ui for tests and non-interactive library use: no colour, not interactive.
    pub fn plain() -> Self {
        Ui {
            color: false,
            color_stderr: false,
            quiet: false,
            verbose: 0,
            interactive: false,
            stderr_is_tty: false,
            log_format: LogFormat::Text,
        }
    }

    /// Wraps `text` in an ANSI colour when colour is on for stdout.
    pub fn paint(&self, style: Style, text: &str) -> String {
        paint(self.color, style, text)
    }

    /// With `--log-format`.
    pub fn with_log_format(mut self, format: LogFormat) -> Self {
        self.log_format = format;
        self
    }

    /// A status line on stderr (suppressed by `-q`; above any spinner on a terminal, a JSON
    /// `message` with `--log-format json`).
    pub fn status(&self, line: &str) {
        if self.quiet {
            return;
        }
        if report::is_active() {
            report::emit(report::Event::Message {
                text: line.to_string(),
            });
        } else {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
        }
    }
}

/// Whether to colour stderr under `choice` (for errors rendered before a [`Ui`] exists).
pub fn stderr_color(choice: ColorChoice) -> bool {
    decide(choice, std::io::stderr().is_terminal())
}

/// `--color` and `NO_COLOR` applied to a stream that is (`tty`) or is not a terminal.
fn decide(choice: ColorChoice, tty: bool) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => tty && !no_color,
    }
}

/// `""` for one, `"s"` otherwise.
pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The few styles fusionizer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Green,
    Yellow,
    Red,
    Cyan,
    Bold,
    Dim,
}

/// Wraps `text` in the ANSI codes for `style` when `on`.
pub fn paint(on: bool, style: Style, text: &str) -> String {
    if !on {
        return text.to_string();
    }
    let code = match style {
        Style::Green => "32",
        Style::Yellow => "33",
        Style::Red => "31",
        Style::Cyan => "36",
        Style::Bold => "1",
        Style::Dim => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Set once stdout turned out to be a closed pipe.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes data to stdout. Once the reader has gone (`fusionizer plan | head`), further output is
/// dropped and [`stdout_closed`] says so; the command still finishes, and exits 0.
pub fn out(text: &str) {
    if stdout_closed() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let result = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if let Err(e) = result {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }
}

/// Whether stdout's reader has gone (see [`out`]).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// [`out`] plus a newline.
pub fn outln(text: &str) {
    out(&format!("{text}\n"));
}

/// Prints an error once, at the edge: `error: …`, its details, `  caused by: …`, `hint: …`;
/// `error:` in red when `color`.
/// With `--log-format json`, one `log` object at level `error` whose message is the whole text.
pub fn print_error(err: &Error, color: bool) {
    if report::is_json() {
        report::emit(report::Event::Log {
            level: report::Level::Error,
            target: "fusionizer".to_string(),
            message: err.render("error:"),
            fields: serde_json::Map::new(),
        });
        return;
    }
    let rendered = err.render(&paint(color, Style::Red, "error:"));
    let _ = writeln!(std::io::stderr().lock(), "{rendered}");
}

/// Sets up the progress reporter and `tracing` on stderr (see [`report::init`]): human lines
/// (spinners on a terminal), or JSON with `--log-format json`; timestamped `tracing` lines with
/// `-v` (info) and `-vv` (debug); errors only with `-q`; `FUSIONIZER_LOG` (an env-filter)
/// overrides the levels.
pub fn init_logging(ui: &Ui) {
    report::init(report::Setup {
        format: ui.log_format,
        verbose: ui.verbose,
        quiet: ui.quiet,
        stderr_is_tty: ui.stderr_is_tty,
        color: ui.color_stderr,
    });
}
