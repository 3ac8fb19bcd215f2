//! Progress events and how they are shown on stderr.
//!
//! Layers below the command line (the apply engine, the local platform's environment build, the
//! serve runner) describe what they do as [`Event`]s and hand them to [`emit`]. How an event
//! looks is decided here, once, by the process-wide reporter [`init`] sets up:
//!
//! - on a terminal, cargo-style lines (a right-aligned coloured verb, then the subject) and an
//!   indicatif spinner with the elapsed time for each long step, which collapses into one line
//!   when the step ends; task output and log lines are printed above the spinners;
//! - off a terminal, the same lines without colour or control codes, and no spinners;
//! - with `--log-format json`, one JSON object per event (and per log line);
//! - with `-v`, every event as a timestamped `tracing` line.
//!
//! The text rendering is pure ([`render`], [`running`], [`frame`]): given an event, a width and
//! whether to colour, it returns the text, so it is tested without a terminal. Only [`emit`]
//! touches indicatif and stderr. Before [`init`] (library use, unit tests) events go nowhere.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde_json::{json, Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, Layer};

use super::{paint, Style};

/// The width of the verb column (as cargo's).
pub const VERB_WIDTH: usize = 12;

/// How progress and log lines are written to stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Lines for people (spinners on a terminal; plain lines elsewhere).
    #[default]
    Text,
    /// One JSON object per event and log line, for log shippers.
    Json,
}

/// How an outcome went: it colours the verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Done, as asked (green).
    Good,
    /// Information, or work under way (cyan).
    Info,
    /// Done, but not everything (yellow).
    Warn,
    /// Failed (red).
    Bad,
}

impl Tone {
    fn style(self) -> Style {
        match self {
            Tone::Good => Style::Green,
            Tone::Info => Style::Cyan,
            Tone::Warn => Style::Yellow,
            Tone::Bad => Style::Red,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Tone::Good => "ok",
            Tone::Info => "info",
            Tone::Warn => "warn",
            Tone::Bad => "failed",
        }
    }
}

/// The level of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// Something worth telling the person (or program) watching stderr.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A one-line statement: `Listening on http://127.0.0.1:8000 (local platform)`.
    Status {
        verb: String,
        subject: String,
        tone: Tone,
    },
    /// A long step begins (a spinner on a terminal). `id` pairs it with its [`Event::Step`]s
    /// and its [`Event::End`].
    Begin {
        id: String,
        verb: String,
        subject: String,
    },
    /// A wait that only a terminal shows (a spinner that goes away with [`Event::Clear`] and
    /// leaves no line): reading the live state before a plan, whose result is the plan itself.
    Spin {
        id: String,
        verb: String,
        subject: String,
    },
    /// The end of an [`Event::Spin`]: its spinner goes; nothing is printed.
    Clear { id: String },
    /// What a long step is doing now (the spinner's message; not printed off a terminal).
    Step { id: String, message: String },
    /// A long step ended: `Deployed quickstart-taska in 4.6s`; `detail` lines follow it.
    End {
        id: String,
        verb: String,
        subject: String,
        elapsed: Option<Duration>,
        tone: Tone,
        detail: Vec<String>,
    },
    /// A small table under a verb (the route table, the schedule). The first row is the header.
    Table {
        verb: String,
        subject: String,
        rows: Vec<Vec<String>>,
    },
    /// A line a task's handler printed or logged (forwarded by the local platform), with the
    /// structured fields of a logger call (`context.logger.info_with("archived", body=…)`).
    TaskOutput {
        task: String,
        function: String,
        stream: String,
        level: Level,
        line: String,
        fields: Map<String, Value>,
    },
    /// A log line (from `tracing`).
    Log {
        level: Level,
        target: String,
        message: String,
        fields: Map<String, Value>,
    },
    /// Free text (a status line written by a command).
    Message { text: String },
}

/// How to render text: the terminal's width (`None` off a terminal: never cut) and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    pub width: Option<usize>,
    pub color: bool,
}

/// `4.6s`, `126ms`, `1m05s`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// The elapsed time of a running step, in whole seconds (`0s`, `12s`).
pub fn elapsed_short(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// The verb, right-aligned in its column and coloured.
fn verb_cell(verb: &str, tone: Tone, color: bool) -> String {
    let padded = format!("{verb:>VERB_WIDTH$}");
    if verb.is_empty() {
        return padded;
    }
    paint(color, tone.style(), &padded)
}

/// Cuts `text` to `width` characters (with `…`) when a width is known.
fn fit(text: &str, width: Option<usize>) -> String {
    match width {
        Some(w) if text.chars().count() > w => {
            let mut cut: String = text.chars().take(w.saturating_sub(1)).collect();
            cut.push('…');
            cut
        }
        _ => text.to_string(),
    }
}

/// Room for the subject after the verb column and a space.
fn subject_room(width: Option<usize>, reserve: usize) -> Option<usize> {
    width.map(|w| w.saturating_sub(VERB_WIDTH + 1 + reserve).max(10))
}

/// The finished text of `event` (one or more lines, no trailing newline), or `None` for events
/// that only show on a terminal's spinner ([`Event::Step`]).
pub fn render(event: &Event, opts: RenderOptions) -> Option<String> {
    let line = |verb: &str, tone: Tone, subject: &str| {
        format!(
            "{} {}",
            verb_cell(verb, tone, opts.color),
            fit(subject, subject_room(opts.width, 0))
        )
    };
    let indent = " ".repeat(VERB_WIDTH + 1);
    match event {
        Event::Status {
            verb,
            subject,
            tone,
        } => Some(line(verb, *tone, subject)),
        Event::Begin { verb, subject, .. } => Some(line(verb, Tone::Info, subject)),
        Event::Step { .. } | Event::Spin { .. } | Event::Clear { .. } => None,
        Event::End {
            verb,
            subject,
            elapsed,
            tone,
            detail,
            ..
        } => {
            let subject = match elapsed {
                Some(d) => format!("{subject} in {}", duration(*d)),
                None => subject.clone(),
            };
            let mut text = line(verb, *tone, &subject);
            for d in detail {
                text.push('\n');
                text.push_str(&indent);
                text.push_str(&fit(d, subject_room(opts.width, 0)));
            }
            Some(text)
        }
        Event::Table {
            verb,
            subject,
            rows,
        } => Some(render_table(verb, subject, rows, opts)),
        Event::TaskOutput {
            task,
            level,
            line,
            fields,
            ..
        } => {
            let tone = match level {
                Level::Error => Tone::Bad,
                Level::Warn => Tone::Warn,
                Level::Info | Level::Debug => Tone::Info,
            };
            let name = paint(opts.color, Style::Dim, &format!("{task:>VERB_WIDTH$}"));
            let bar = paint(opts.color, tone.style(), "|");
            Some(format!(
                "{name} {bar} {}",
                fit(&with_fields(line, fields), subject_room(opts.width, 2))
            ))
        }
        Event::Log {
            level,
            message,
            fields,
            ..
        } => Some(render_log(*level, message, fields, opts)),
        Event::Message { text } => Some(text.clone()),
    }
}

/// An [`Event::Table`]: the verb (with the subject, if any), then the rows in aligned columns,
/// the first row dimmed as a header.
fn render_table(verb: &str, subject: &str, rows: &[Vec<String>], opts: RenderOptions) -> String {
    let indent = " ".repeat(VERB_WIDTH + 1);
    let mut text = if subject.is_empty() {
        // The header goes on the verb's own line.
        verb_cell(verb, Tone::Info, opts.color)
    } else {
        format!(
            "{} {}",
            verb_cell(verb, Tone::Info, opts.color),
            fit(subject, subject_room(opts.width, 0))
        )
    };
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let mut cells = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                cells.push_str(cell);
            } else {
                let _ = write!(cells, "{cell:<w$}  ", w = widths[c]);
            }
        }
        let cells = fit(&cells, subject_room(opts.width, 0));
        if i == 0 && subject.is_empty() {
            text.push(' ');
        } else {
            text.push('\n');
            text.push_str(&indent);
        }
        text.push_str(&if i == 0 {
            paint(opts.color, Style::Dim, &cells)
        } else {
            cells
        });
    }
    text
}

/// An [`Event::Log`]: the message with its fields as `key=value`, after its level.
fn render_log(
    level: Level,
    message: &str,
    fields: &serde_json::Map<String, Value>,
    opts: RenderOptions,
) -> String {
    let mut text = message.to_string();
    for (key, value) in fields {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = write!(text, " {key}={value}");
    }
    let text = fit(&text, opts.width.map(|w| w.saturating_sub(9)));
    match level {
        Level::Error => format!("{} {text}", paint(opts.color, Style::Red, "error:")),
        Level::Warn => format!("{} {text}", paint(opts.color, Style::Yellow, "warning:")),
        Level::Info => text,
        Level::Debug => format!("{} {text}", paint(opts.color, Style::Dim, "debug:")),
    }
}

/// A running step's spinner as two parts, the prefix (the verb cell) and the message (subject,
/// then what it is doing now), the message cut so the whole line fits `opts.width` with the
/// spinner and the elapsed time after it.
pub fn running(
    verb: &str,
    subject: &str,
    step: Option<&str>,
    opts: RenderOptions,
) -> (String, String) {
    let text = match step {
        Some(step) if !step.is_empty() => format!("{subject}: {step}"),
        _ => subject.to_string(),
    };
    (
        verb_cell(verb, Tone::Info, opts.color),
        fit(&text, subject_room(opts.width, 8)),
    )
}

/// The indicatif template of a running step; [`frame`] draws the same line without indicatif.
const TEMPLATE: &str = "{prefix} {msg} {spinner} {secs}";

/// One frame of a running step's spinner as the terminal shows it, e.g.
/// `    Building env quickstart-taska (pip: nuclio-sdk, requests) ⠙ 3s`.
pub fn frame(
    verb: &str,
    subject: &str,
    step: Option<&str>,
    elapsed: Duration,
    spinner: char,
    opts: RenderOptions,
) -> String {
    let (prefix, msg) = running(verb, subject, step, opts);
    TEMPLATE
        .replace("{prefix}", &prefix)
        .replace("{msg}", &msg)
        .replace("{spinner}", &spinner.to_string())
        .replace("{secs}", &elapsed_short(elapsed))
}

/// `event` as one JSON line: `ts` (RFC 3339, UTC, milliseconds) first, then [`to_json`]'s
/// fields.
pub fn json_line(event: &Event, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut object = Map::new();
    object.insert(
        "ts".into(),
        json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    if let Value::Object(fields) = to_json(event) {
        object.extend(fields);
    }
    Value::Object(object).to_string()
}

/// `event` as one JSON object, without a timestamp. Every object has `event` (its kind) and
/// `message` (the line a person would read, without padding or colour).
pub fn to_json(event: &Event) -> Value {
    let mut object = to_json_fields(event);
    let message = match event {
        Event::Step { message, .. } | Event::Log { message, .. } => Some(message.clone()),
        Event::Spin { verb, subject, .. } => Some(format!("{verb} {subject}")),
        Event::Clear { .. } => Some(String::new()),
        Event::TaskOutput { line, .. } => Some(line.clone()),
        Event::Message { text } => Some(text.clone()),
        Event::Status { .. } | Event::Begin { .. } | Event::End { .. } | Event::Table { .. } => {
            render(
                event,
                RenderOptions {
                    width: None,
                    color: false,
                },
            )
            .and_then(|text| text.lines().next().map(|l| l.trim_start().to_string()))
        }
    };
    if let (Value::Object(map), Some(message)) = (&mut object, message) {
        map.insert("message".into(), json!(message));
    }
    object
}

fn to_json_fields(event: &Event) -> Value {
    match event {
        Event::Status {
            verb,
            subject,
            tone,
        } => json!({"event": "status", "verb": verb, "subject": subject, "tone": tone.name()}),
        Event::Begin { id, verb, subject } => {
            json!({"event": "begin", "id": id, "verb": verb, "subject": subject})
        }
        Event::Step { id, .. } => json!({"event": "step", "id": id}),
        Event::Spin { id, verb, subject } => {
            json!({"event": "spin", "id": id, "verb": verb, "subject": subject})
        }
        Event::Clear { id } => json!({"event": "clear", "id": id}),
        Event::End {
            id,
            verb,
            subject,
            elapsed,
            tone,
            detail,
        } => {
            let mut object = json!({"event": "end", "id": id, "verb": verb, "subject": subject,
                                    "tone": tone.name()});
            if let Some(d) = elapsed {
                object["elapsed_ms"] = json!(d.as_millis() as u64);
            }
            if !detail.is_empty() {
                object["detail"] = json!(detail);
            }
            object
        }
        Event::Table {
            verb,
            subject,
            rows,
        } => {
            let header = rows.first().cloned().unwrap_or_default();
            let rows: Vec<Value> = rows
                .iter()
                .skip(1)
                .map(|row| {
                    Value::Object(
                        header
                            .iter()
                            .zip(row)
                            .map(|(k, v)| (k.to_lowercase(), json!(v)))
                            .collect(),
                    )
                })
                .collect();
            json!({"event": "table", "verb": verb, "subject": subject, "rows": rows})
        }
        Event::TaskOutput {
            task,
            function,
            stream,
            level,
            fields,
            ..
        } => {
            let mut object = json!({"event": "task_output", "task": task, "function": function,
                                    "stream": stream, "level": level.name()});
            if !fields.is_empty() {
                object["fields"] = Value::Object(fields.clone());
            }
            object
        }
        Event::Log {
            level,
            target,
            fields,
            ..
        } => {
            let mut object = json!({"event": "log", "level": level.name(), "target": target});
            if !fields.is_empty() {
                object["fields"] = Value::Object(fields.clone());
            }
            object
        }
        Event::Message { .. } => json!({"event": "message"}),
    }
}

/// Where events go.
enum Sink {
    /// Text lines on stderr; spinners when `bars` is set (a terminal).
    Text {
        opts: RenderOptions,
        bars: Option<Bars>,
    },
    /// One JSON object per line on stderr.
    Json,
    /// `tracing` lines (`-v`).
    Trace,
}

/// The spinners of the long steps under way.
struct Bars {
    multi: MultiProgress,
    running: Mutex<HashMap<String, Running>>,
}

struct Running {
    bar: ProgressBar,
    verb: String,
    subject: String,
}

struct Reporter {
    sink: Sink,
    quiet: bool,
}

static REPORTER: OnceLock<Reporter> = OnceLock::new();

/// The `tracing` target of events written as log lines (`-v`).
pub const PROGRESS_TARGET: &str = "fusionizer::progress";

/// What [`init`] needs to know about the terminal.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub format: LogFormat,
    /// `-v`/`-vv`: timestamped `tracing` lines instead.
    pub verbose: u8,
    pub quiet: bool,
    pub stderr_is_tty: bool,
    pub color: bool,
}

/// Sets up the process-wide reporter and `tracing` (once; later calls change nothing).
///
/// `tracing` levels: warnings and task output by default (info for JSON), info with `-v`,
/// debug with `-vv`, everything with `-vvv`, errors only with `-q`; `FUSIONIZER_LOG` (an
/// env-filter) overrides.
pub fn init(setup: Setup) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;

    let verbose = setup.verbose > 0 && setup.format == LogFormat::Text;
    let sink = match setup.format {
        LogFormat::Json => Sink::Json,
        LogFormat::Text if verbose => Sink::Trace,
        LogFormat::Text => {
            let width = setup.stderr_is_tty.then(|| terminal_width().unwrap_or(80));
            let bars = (setup.stderr_is_tty && !setup.quiet)
                .then(|| Bars::new(ProgressDrawTarget::stderr()));
            Sink::Text {
                opts: RenderOptions {
                    width,
                    color: setup.color,
                },
                bars,
            }
        }
    };
    let _ = REPORTER.set(Reporter {
        sink,
        quiet: setup.quiet,
    });

    let default = match (setup.quiet, setup.verbose, setup.format) {
        (true, _, _) => "error",
        (false, 0, LogFormat::Text) => {
            "fusionizer=warn,fusionizer::task=info,fusionizer::worker=info"
        }
        (false, 0 | 1, _) => "fusionizer=info",
        (false, 2, _) => "fusionizer=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env(crate::contract::ENV_LOG)
        .unwrap_or_else(|_| EnvFilter::new(default));
    let registry = tracing_subscriber::registry().with(filter);
    if verbose {
        let _ = registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(setup.color)
                    .with_target(false),
            )
            .try_init();
    } else {
        let _ = registry.with(ReportLayer).try_init();
    }
}

/// stderr's terminal width (as indicatif measures it), when it is a terminal of sane size.
fn terminal_width() -> Option<usize> {
    console::Term::stderr()
        .size_checked()
        .map(|(_, w)| usize::from(w))
        .filter(|w| *w >= 20)
}

/// Whether [`init`] has run (events are shown).
pub fn is_active() -> bool {
    REPORTER.get().is_some()
}

/// Whether events are written as JSON.
pub fn is_json() -> bool {
    matches!(REPORTER.get().map(|r| &r.sink), Some(Sink::Json))
}

/// Shows `event` as the reporter was set up to (see the module docs); nothing before [`init`].
pub fn emit(event: Event) {
    let Some(reporter) = REPORTER.get() else {
        return;
    };
    let always = matches!(
        &event,
        Event::Log {
            level: Level::Error | Level::Warn,
            ..
        }
    );
    if reporter.quiet && !always {
        return;
    }
    match &reporter.sink {
        // A blank status line only spaces text out.
        Sink::Json if matches!(&event, Event::Message { text } if text.is_empty()) => {}
        Sink::Json => write_stderr(&json_line(&event, chrono::Utc::now())),
        Sink::Trace => trace(&event),
        Sink::Text { opts, bars: None } => {
            if let Some(text) = render(&event, *opts) {
                write_stderr(&text);
            }
        }
        Sink::Text {
            opts,
            bars: Some(bars),
        } => bars.show(event, *opts),
    }
}

fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// `-v`: the event as a `tracing` line.
fn trace(event: &Event) {
    let opts = RenderOptions {
        width: None,
        color: false,
    };
    match event {
        Event::Step { id, message } => {
            tracing::info!(target: PROGRESS_TARGET, "{}: {message}", step_subject(id));
        }
        Event::Log { .. } | Event::TaskOutput { .. } | Event::Spin { .. } | Event::Clear { .. } => {
        }
        other => {
            if let Some(text) = render(other, opts) {
                for line in text.lines() {
                    tracing::info!(target: PROGRESS_TARGET, "{}", line.trim_start());
                }
            }
        }
    }
}

/// The subject part of an event id (`deploy:quickstart-taska` → `quickstart-taska`).
fn step_subject(id: &str) -> &str {
    id.split_once(':').map_or(id, |(_, rest)| rest)
}

impl Bars {
    fn new(target: ProgressDrawTarget) -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(target),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Draws `event`: a spinner for a step that begins, its message for a step, and every
    /// finished line above the spinners.
    fn show(&self, event: Event, opts: RenderOptions) {
        let mut under_way = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Begin { id, verb, subject } | Event::Spin { id, verb, subject } => {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template(TEMPLATE)
                        .expect("valid template")
                        .with_key(
                            "secs",
                            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                                let _ = w.write_str(&elapsed_short(state.elapsed()));
                            },
                        ),
                );
                let (prefix, msg) = running(&verb, &subject, None, opts);
                bar.set_prefix(prefix);
                bar.set_message(msg);
                let bar = self.multi.add(bar);
                // Drawn now, not at the first tick.
                bar.tick();
                bar.enable_steady_tick(Duration::from_millis(100));
                if let Some(old) = under_way.insert(id, Running { bar, verb, subject }) {
                    old.bar.finish_and_clear();
                }
            }
            Event::Step { id, message } => {
                if let Some(r) = under_way.get(&id) {
                    let (_, msg) = running_msg(r, &message, opts);
                    r.bar.set_message(msg);
                }
            }
            Event::Clear { id } => {
                if let Some(r) = under_way.remove(&id) {
                    r.bar.finish_and_clear();
                    self.multi.remove(&r.bar);
                }
            }
            Event::End { ref id, .. } => {
                if let Some(r) = under_way.remove(id) {
                    r.bar.finish_and_clear();
                    self.multi.remove(&r.bar);
                }
                if let Some(text) = render(&event, opts) {
                    let _ = self.multi.println(text);
                }
            }
            other => {
                if let Some(text) = render(&other, opts) {
                    let _ = self.multi.println(text);
                }
            }
        }
    }
}

/// A task's log line followed by its fields as `key=value` (logfmt): a string that needs no
/// quoting as it is, anything else as JSON (`archived body="two words" size=3`).
fn with_fields(line: &str, fields: &Map<String, Value>) -> String {
    let mut text = line.to_string();
    for (key, value) in fields {
        let value = match value {
            Value::String(s)
                if !s.is_empty()
                    && !s
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=')) =>
            {
                s.clone()
            }
            other => other.to_string(),
        };
        text.push_str(&format!(" {key}={value}"));
    }
    text
}

fn running_msg(r: &Running, step: &str, opts: RenderOptions) -> (String, String) {
    running(&r.verb, &r.subject, Some(step), opts)
}

/// Routes `tracing` events to the reporter: task and worker output as [`Event::TaskOutput`],
/// everything else as [`Event::Log`] (what reaches it has passed the level filter).
struct ReportLayer;

impl<S: tracing::Subscriber> Layer<S> for ReportLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        if meta.target() == PROGRESS_TARGET {
            return;
        }
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let level = match *meta.level() {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::INFO => Level::Info,
            _ => Level::Debug,
        };
        let target = meta.target();
        let task_output = target == TASK_TARGET || target == WORKER_TARGET;
        if task_output {
            let take = |fields: &mut Map<String, Value>, key: &str| match fields.remove(key) {
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let function = take(&mut visitor.fields, "function");
            let mut task = take(&mut visitor.fields, "task");
            if task.is_empty() || task == "-" {
                // A line the worker process wrote itself, not a task: named after its function.
                task.clone_from(&function);
            }
            let stream = take(&mut visitor.fields, "stream");
            // A logger call's fields arrive as one JSON object (`platform::local::protocol`).
            let fields = match visitor.fields.remove("with") {
                Some(Value::String(with)) => serde_json::from_str(&with).unwrap_or_default(),
                _ => Map::new(),
            };
            emit(Event::TaskOutput {
                task,
                function,
                stream,
                level,
                line: visitor.message,
                fields,
            });
        } else {
            emit(Event::Log {
                level,
                target: target.to_string(),
                message: visitor.message,
                fields: visitor.fields,
            });
        }
    }
}

/// The `tracing` target of task log lines (filter with `FUSIONIZER_LOG=fusionizer::task=debug`).
pub const TASK_TARGET: &str = "fusionizer::task";
/// The `tracing` target of what workers write to their real stdout/stderr.
pub const WORKER_TARGET: &str = "fusionizer::worker";

#[derive(Default)]
struct Fields {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else if !(field.name() == "with" && value.is_empty()) {
            self.fields.insert(field.name().to_string(), json!(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().to_string(), json!(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().to_string(), json!(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().to_string(), json!(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .insert(field.name().to_string(), json!(format!("{value:?}")));
        }
    }
}

#[cfg(test)]
mod tests;
