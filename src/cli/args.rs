//! Command-line arguments (clap derive), and nothing else: these types are resolved into
//! settings by [`super::run`]; core modules never see them. The choices (`--color`,
//! `--log-format`, `--output`) are clap enums here that convert into [`crate::ui`]'s plain
//! types, and every duration is parsed once, by [`duration`], so a field is a [`Duration`].

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::ui;

#[derive(Debug, Parser)]
#[command(
    name = "fusionizer",
    version,
    about = "Fuse Nuclio Python tasks into fewer functions, declaratively",
    long_about = "Fuse Nuclio Python tasks into fewer functions so calls between them run \
                  in-process, and move that grouping from phase to phase without dropping a \
                  request. Everything is declared in fusion.toml."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The heading of the options every command takes, apart from each command's own.
const GLOBAL: &str = "Global options";

/// The options every command takes (`init` and `completions` take no `-C`, `--config`,
/// `--state-dir` or `--overlay`: [`NoProjectArgs`]).
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Run as if started in DIR
    #[arg(short = 'C', global = true, value_name = "DIR", help_heading = GLOBAL)]
    pub directory: Option<PathBuf>,
    /// Use this fusion.toml instead of searching upwards from the working directory
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// Write everything (build output, local state, the lock, serve's records) in DIR instead of
    /// `.fusionizer/` beside fusion.toml; env `FUSIONIZER_STATE_DIR`
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    pub state_dir: Option<PathBuf>,
    /// Merge this TOML file's `[serve]` and `[nuctl]` tables over fusion.toml's; env
    /// `FUSIONIZER_OVERLAY`
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub overlay: Option<PathBuf>,
    /// When to colour output (`NO_COLOR` is respected with `auto`)
    #[arg(long, global = true, value_enum, default_value_t = ColorArg::Auto, help_heading = GLOBAL)]
    pub color: ColorArg,
    /// Print less: only errors
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL)]
    pub quiet: bool,
    /// Print more: timestamped log lines (repeat for debug output)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// How progress and logs are written to stderr: `text` for people, `json` for log shippers
    /// (one object per line)
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text, help_heading = GLOBAL)]
    pub log_format: LogFormatArg,
}

/// `-C`, `--config`, `--state-dir` and `--overlay` of a command that works without a project
/// (`init`, `completions`):
/// these take the place of the global ones there, so that help and completions do not offer
/// them, and [`super::run`] refuses them with a usage error.
#[derive(Debug, Args, Clone, Default)]
pub struct NoProjectArgs {
    /// Refused: this command reads no fusion.toml
    #[arg(short = 'C', value_name = "DIR", hide = true)]
    pub directory: Option<PathBuf>,
    /// Refused: this command reads no fusion.toml
    #[arg(long, value_name = "FILE", hide = true)]
    pub config: Option<PathBuf>,
    /// Refused: this command reads no fusion.toml
    #[arg(long, value_name = "DIR", hide = true)]
    pub state_dir: Option<PathBuf>,
    /// Refused: this command reads no fusion.toml
    #[arg(long, value_name = "FILE", hide = true)]
    pub overlay: Option<PathBuf>,
}

impl NoProjectArgs {
    /// Whether `-C`, `--config`, `--state-dir` or `--overlay` was given after the command's name.
    pub fn given(&self) -> bool {
        self.directory.is_some()
            || self.config.is_some()
            || self.state_dir.is_some()
            || self.overlay.is_some()
    }
}

/// `--at DURATION` or `--phase N`.
#[derive(Debug, Args, Clone, Default)]
pub struct SelectionArgs {
    /// Use the grouping in force at this offset from serve start (e.g. 0s, 90s, 1h30m)
    #[arg(long, value_name = "DURATION", conflicts_with = "phase", value_parser = duration)]
    pub at: Option<Duration>,
    /// Use the N-th [[phase]] of fusion.toml (counting from 1)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub phase: Option<u32>,
}

/// `--timeout`, for the commands that talk to a running serve.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// How long to wait for the running serve: connecting, sending and reading its whole answer
    /// (e.g. 10s, 2m)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = timeout)]
    pub timeout: Duration,
}

/// `--lock-timeout`, for the commands that take the apply lock.
#[derive(Debug, Args, Clone)]
pub struct LockArgs {
    /// How long to wait for another apply's lock (e.g. 30s; default: fail at once)
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = duration)]
    pub lock_timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check fusion.toml and every task's function.yaml; report every problem at once
    Validate,
    /// Fuse the chosen grouping into deployable function directories
    Build {
        #[command(flatten)]
        selection: SelectionArgs,
        /// Write the artifacts here (default: .fusionizer/build beside fusion.toml)
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Output format
        #[arg(long, default_value = "text", value_parser = text_or_json())]
        output: OutputArg,
    },
    /// Build and push the image of every function any phase can deploy (for `[nuctl] images =
    /// "prebuilt"`: serve deploys them without Docker)
    Images {
        /// List the images without building any
        #[arg(long)]
        dry_run: bool,
    },
    /// Show what apply would change on the platform
    Plan {
        #[command(flatten)]
        selection: SelectionArgs,
        /// Output format
        #[arg(long, value_enum, default_value_t = OutputArg::Text)]
        output: OutputArg,
        /// Exit 0 when there are no changes, 2 when there are, 1 on error
        #[arg(long)]
        detailed_exitcode: bool,
        /// Save the plan to FILE for `fusionizer apply FILE`
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Plan the deletion of every function this project owns (what `destroy` would do)
        #[arg(long, conflicts_with_all = ["at", "phase"])]
        destroy: bool,
    },
    /// Fuse and deploy the chosen grouping (or apply a saved plan)
    Apply {
        /// A plan saved with `plan --out`; applied exactly, without prompting
        #[arg(value_name = "PLAN_FILE")]
        plan_file: Option<PathBuf>,
        #[command(flatten)]
        selection: SelectionArgs,
        /// Do not ask for confirmation
        #[arg(long)]
        auto_approve: bool,
        /// How many functions to deploy at once
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        parallelism: u32,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Delete every function this project owns on the platform
    Destroy {
        /// Do not ask for confirmation
        #[arg(long)]
        auto_approve: bool,
        /// How many functions to delete at once
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        parallelism: u32,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Show the live functions of this project and whether they match fusion.toml
    Status {
        #[command(flatten)]
        selection: SelectionArgs,
        /// Output format
        #[arg(long, default_value = "text", value_parser = text_or_json())]
        output: OutputArg,
    },
    /// Run the invocation proxy and the schedule runner
    Serve {
        /// Listen on ADDR (default: [serve] listen, or 127.0.0.1:8000)
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Start in the N-th phase instead of the one in force at 0s
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        phase: Option<u32>,
        /// Stay in the start phase; do not follow the schedule
        #[arg(long)]
        no_schedule: bool,
        /// Allow a non-loopback listen address without a token
        #[arg(long)]
        insecure: bool,
        /// Reload fusion.toml and task files when they change
        #[arg(long)]
        watch: bool,
    },
    /// Invoke a task through a running `fusionizer serve`
    #[command(
        long_about = "Invoke a task through a running `fusionizer serve` (a POST to /TASK) and \
                      print the answer's body; a non-2xx answer exits 1. At most 64 MiB of \
                      answer is read. serve itself waits for a task up to its [serve] \
                      request-timeout (60s by default), longer than the 30s this command waits \
                      by default: pass e.g. `--timeout 2m` for slow tasks."
    )]
    Invoke {
        /// The task to invoke
        task: String,
        /// Request body: JSON text, @FILE, or - for stdin
        #[arg(short, long, value_name = "DATA")]
        data: Option<String>,
        /// Extra header, `Name: value` (repeatable)
        #[arg(short = 'H', long = "header", value_name = "HEADER")]
        headers: Vec<String>,
        /// The running serve, `http://HOST:PORT` or `HOST:PORT` (default: the serve running for
        /// this project, else [serve] listen)
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Work with the call traces a running `fusionizer serve` recorded (docs/traces.md)
    Traces {
        #[command(subcommand)]
        command: TracesCommand,
    },
    /// Propose the next grouping from observed calls, as a diff of fusion.toml
    #[command(
        long_about = "Propose the next grouping from the calls serve observed (Fusionize's \
                      rules: tasks joined by synchronous calls share a function, asynchronous \
                      callees stay apart, groups never mix runtimes or conflicting specs), as a \
                      unified diff of fusion.toml that appends a [[phase]]. See docs/optimize.md."
    )]
    Optimize {
        /// The traces: a running serve (`http://HOST:PORT`, reads `/-/traces`, at most 64 MiB)
        /// or a file written by `fusionizer traces export` or saved from `/-/traces` (JSON or
        /// JSON Lines) (default: the running serve, as `--server`)
        #[arg(long, value_name = "URL|FILE", conflicts_with = "server")]
        from: Option<String>,
        /// The running serve to read traces (and with `--live`, routes) from:
        /// `http://HOST:PORT` or `HOST:PORT` (default: the serve running for this project, else
        /// [serve] listen)
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
        /// Ignore edges with fewer calls (default: [optimizer] min-calls, which defaults to 10)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        min_calls: Option<u64>,
        /// Print the call graph and why each edge was inlined or not
        #[arg(long)]
        explain: bool,
        /// Output format
        #[arg(long, value_enum, default_value_t = OutputArg::Text)]
        output: OutputArg,
        /// The appended phase's `after` (default: one second after the last [[phase]], or 0s)
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        after: Option<Duration>,
        /// Write the proposal into fusion.toml, keeping its comments and formatting
        #[arg(long)]
        write: bool,
        /// Exit 0 when nothing changes, 2 when a change is proposed, 1 on error
        #[arg(long)]
        detailed_exitcode: bool,
        /// Also propose a memory limit per group: the p99 peak RSS of its tasks plus headroom,
        /// as `[[override]]` tables
        #[arg(long)]
        memory: bool,
        /// The headroom of `--memory`, in percent of the measured p99 peak RSS
        #[arg(
            long,
            value_name = "PERCENT",
            default_value_t = 25,
            requires = "memory"
        )]
        memory_headroom: u32,
        /// Propose the grouping the running serve has live (from its `/-/routes`), not one from
        /// the traces: the change that makes fusion.toml describe what an optimizer chose
        #[arg(long)]
        live: bool,
    },
    /// Scaffold a fusion.toml and two example tasks that call each other
    Init {
        /// Where to create the project (default: the working directory)
        dir: Option<PathBuf>,
        /// Project name (default: the directory's name)
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        no_project: NoProjectArgs,
    },
    /// Print a shell completion script (README: "Install the command, and shell completions")
    Completions {
        /// The shell
        shell: clap_complete::Shell,
        #[command(flatten)]
        no_project: NoProjectArgs,
    },
}

/// `fusionizer traces …`.
#[derive(Debug, Subcommand)]
pub enum TracesCommand {
    /// Fetch `GET /-/traces` from a running serve (at most 64 MiB) and write it as JSON Lines
    Export {
        /// Where to write (`-` for stdout)
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The running serve: `http://HOST:PORT` or `HOST:PORT` (default: the serve running for
        /// this project, else [serve] listen)
        #[arg(long, visible_alias = "from", value_name = "URL")]
        server: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Why a duration on the command line was refused. Its own type, so that
/// [`super::main_with_args`] can tell a bad duration from clap's other errors and word it as the
/// crate's errors are worded (`invalid value `soon` for `--at`: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(pub String);

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DurationError {}

/// A duration given on the command line (`--at`, `--after`, `--lock-timeout`): the syntax of
/// fusion.toml's durations ([`crate::config::parse_duration`]: `30s`, `2m`, `1h30m`), so a
/// duration means the same everywhere.
pub fn duration(value: &str) -> Result<Duration, DurationError> {
    crate::config::parse_duration(value).map_err(DurationError)
}

/// `--timeout`: a [`duration`] longer than zero.
pub fn timeout(value: &str) -> Result<Duration, DurationError> {
    match duration(value)? {
        Duration::ZERO => Err(DurationError(
            "a timeout of 0s would give up at once; use e.g. `30s`".to_string(),
        )),
        duration => Ok(duration),
    }
}

/// `--color`: when to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    /// Colour on a terminal unless `NO_COLOR` is set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl From<ColorArg> for ui::ColorChoice {
    fn from(arg: ColorArg) -> Self {
        match arg {
            ColorArg::Auto => ui::ColorChoice::Auto,
            ColorArg::Always => ui::ColorChoice::Always,
            ColorArg::Never => ui::ColorChoice::Never,
        }
    }
}

/// `--log-format`: how progress and log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Lines for people (spinners on a terminal; plain lines elsewhere).
    Text,
    /// One JSON object per event and log line, for log shippers.
    Json,
}

impl From<LogFormatArg> for ui::LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Text => ui::LogFormat::Text,
            LogFormatArg::Json => ui::LogFormat::Json,
        }
    }
}

/// `--output`: how a command renders its result on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    /// For people.
    Text,
    /// For programs (schemas in `docs/`).
    Json,
    /// For pull requests.
    Markdown,
}

impl From<OutputArg> for ui::OutputFormat {
    fn from(arg: OutputArg) -> Self {
        match arg {
            OutputArg::Text => ui::OutputFormat::Text,
            OutputArg::Json => ui::OutputFormat::Json,
            OutputArg::Markdown => ui::OutputFormat::Markdown,
        }
    }
}

/// `--output` for commands that have no markdown rendering: `text` or `json`, listed in help
/// and in the error for any other value.
fn text_or_json() -> impl TypedValueParser<Value = OutputArg> {
    PossibleValuesParser::new([
        PossibleValue::new("text").help("For people"),
        PossibleValue::new("json").help("For programs (schemas in docs/)"),
    ])
    .map(|value| match value.as_str() {
        "json" => OutputArg::Json,
        _ => OutputArg::Text,
    })
}
