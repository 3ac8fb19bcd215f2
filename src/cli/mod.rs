//! The command line: arguments ([`args`], clap derive) and one thin file per command. Each
//! command parses its arguments, calls the core (mostly [`crate::workspace`]) and renders the
//! outcome; errors are rendered once, in [`main_with_args`], honouring `--color`/`NO_COLOR`.

mod apply;
pub mod args;
mod build;
mod carry_out;
mod completions;
mod destroy;
mod init;
mod invoke;
mod optimize;
mod plan;
mod serve;
mod serve_client;
mod status;
mod traces;
mod validate;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Parser;

pub use args::{Cli, Command, OutputFormat, SelectionArgs};

use crate::config;
use crate::error::{Error, ExitCode, Result};
use crate::schedule::Selection;
use crate::ui;

/// Everything a command needs from the global options, resolved.
#[derive(Debug, Clone)]
pub struct Context {
    /// The working directory after `-C`.
    pub cwd: PathBuf,
    /// `--config`, resolved against `cwd`.
    pub config_override: Option<PathBuf>,
    pub ui: ui::Ui,
}

impl Context {
    /// The fusion.toml to use: `--config`, else the first found walking up from `cwd`.
    pub fn config_path(&self) -> Result<PathBuf> {
        if let Some(path) = &self.config_override {
            if !path.is_file() {
                return Err(Error::new(
                    ExitCode::Config,
                    format!("`{}` does not exist", path.display()),
                ));
            }
            return Ok(path.clone());
        }
        config::discover(&self.cwd).ok_or_else(|| {
            Error::new(
                ExitCode::Config,
                format!(
                    "could not find `{}` in `{}` or any parent directory",
                    config::FILE_NAME,
                    self.cwd.display()
                ),
            )
            .with_hint("run `fusionizer init` to create one, or pass `-C DIR` / `--config FILE`")
        })
    }

    /// Loads and validates the workspace (exit 78 with every problem on failure).
    pub fn workspace(&self) -> Result<config::Workspace> {
        let path = self.config_path()?;
        Ok(config::load(&path)?)
    }

    /// [`Context::workspace`], with the tasks' Python checked too ([`config::check_python`]):
    /// for the commands that validate before a deploy (`validate`, `plan`, `apply`).
    pub fn checked_workspace(&self) -> Result<config::Workspace> {
        let ws = self.workspace()?;
        config::check_python(&ws)?;
        Ok(ws)
    }

    /// `path` resolved against the working directory (after `-C`).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        absolute(&self.cwd, path)
    }
}

/// Resolves `--at` / `--phase` into a [`Selection`] (usage error, exit 64, on a bad duration).
pub fn selection(args: &SelectionArgs) -> Result<Selection> {
    if let Some(n) = args.phase {
        return Ok(Selection::Phase(n as usize));
    }
    match &args.at {
        None => Ok(Selection::default()),
        Some(text) => config::parse_duration(text)
            .map(Selection::At)
            .map_err(|e| Error::usage(format!("invalid value `{text}` for `--at`: {e}"))),
    }
}

/// `--at` / `--phase` when either was given; `None` lets `plan`, `apply` and `status` read the
/// grouping from what is live (`workspace::resolve`).
pub fn given_selection(args: &SelectionArgs) -> Result<Option<Selection>> {
    if args.phase.is_none() && args.at.is_none() {
        return Ok(None);
    }
    selection(args).map(Some)
}

/// Parses `--lock-timeout` (usage error, exit 64, on a bad duration).
fn lock_timeout(text: &str) -> Result<std::time::Duration> {
    config::parse_duration(text)
        .map_err(|e| Error::usage(format!("invalid value `{text}` for `--lock-timeout`: {e}")))
}

/// Parses `args` and runs the command; returns the process exit code.
pub fn main_with_args<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Success
            };
            let _ = err.print();
            return code.into();
        }
    };
    let color = cli.global.color;
    let outcome = run(cli);
    if ui::stdout_closed() {
        // The reader of stdout has gone (`fusionizer plan | head`): as a filter does, exit 0.
        return ExitCode::Success.into();
    }
    match outcome {
        Ok(code) => code.into(),
        Err(err) => {
            ui::print_error(&err, ui::stderr_color(color));
            err.code.into()
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    refuse_project_options(&cli)?;
    let base = std::env::current_dir()
        .map_err(|e| Error::failure(format!("cannot read the working directory: {e}")))?;
    let cwd = match &cli.global.directory {
        Some(dir) => {
            let dir = absolute(&base, dir);
            if !dir.is_dir() {
                return Err(Error::usage(format!(
                    "`-C {}`: no such directory",
                    dir.display()
                )));
            }
            dir
        }
        None => base,
    };
    let ui = ui::Ui::new(cli.global.color, cli.global.quiet, cli.global.verbose)
        .with_log_format(cli.global.log_format);
    ui::init_logging(&ui);
    let ctx = Context {
        config_override: cli.global.config.as_ref().map(|p| absolute(&cwd, p)),
        cwd,
        ui,
    };
    dispatch(&ctx, cli.command)
}

/// Runs `command` in `ctx`: each command's arguments resolved, then its module's `command`.
// Long by design: one match arm per command, each only resolving its arguments.
fn dispatch(ctx: &Context, command: Command) -> Result<ExitCode> {
    match command {
        Command::Validate => validate::command(ctx),
        Command::Build {
            selection: sel,
            out,
            output,
        } => build::command(ctx, selection(&sel)?, out, output),
        Command::Init { dir, name, .. } => init::command(ctx, dir, name),
        Command::Completions { shell, .. } => completions::command(shell),
        Command::Plan {
            selection: sel,
            output,
            detailed_exitcode,
            out,
            destroy,
        } => plan::command(
            ctx,
            plan::PlanArgs {
                selection: given_selection(&sel)?,
                output,
                detailed_exitcode,
                out,
                destroy,
            },
        ),
        Command::Apply {
            plan_file,
            selection: sel,
            auto_approve,
            parallelism,
            lock_timeout: timeout,
        } => apply::command(
            ctx,
            apply::ApplyArgs {
                plan_file,
                selection: given_selection(&sel)?,
                auto_approve,
                parallelism: parallelism as usize,
                lock_timeout: lock_timeout(&timeout)?,
            },
        ),
        Command::Destroy {
            auto_approve,
            parallelism,
            lock_timeout: timeout,
        } => destroy::command(
            ctx,
            destroy::DestroyArgs {
                auto_approve,
                parallelism: parallelism as usize,
                lock_timeout: lock_timeout(&timeout)?,
            },
        ),
        Command::Status {
            selection: sel,
            output,
        } => status::command(ctx, given_selection(&sel)?, output),
        Command::Serve {
            listen,
            phase,
            no_schedule,
            insecure,
            watch,
        } => serve::command(
            ctx,
            crate::serve::ServeArgs {
                listen,
                phase: phase.map(|p| p as usize),
                no_schedule,
                insecure,
                watch,
            },
        ),
        Command::Invoke {
            task,
            data,
            headers,
            server,
            client,
        } => invoke::command(ctx, &task, data, headers, server, client.timeout),
        Command::Traces { command } => traces::command(ctx, command),
        Command::Optimize {
            from,
            server,
            client,
            min_calls,
            explain,
            output,
            after,
            write,
            detailed_exitcode,
            memory,
            memory_headroom,
            live,
        } => optimize::command(
            ctx,
            optimize::OptimizeArgs {
                from,
                server,
                timeout: client.timeout,
                min_calls,
                explain,
                output,
                after: after.map(|text| parse_after(&text)).transpose()?,
                write,
                detailed_exitcode,
                memory: memory.then_some(memory_headroom),
                live,
            },
        ),
    }
}

/// `optimize --after`: a duration (usage error, exit 64, otherwise).
fn parse_after(text: &str) -> Result<std::time::Duration> {
    config::parse_duration(text)
        .map_err(|e| Error::usage(format!("invalid value `{text}` for `--after`: {e}")))
}

/// `-C`/`--config` given to `init` or `completions`, which read no fusion.toml: a usage error
/// (exit 64) that says what to do instead, rather than an option silently ignored.
fn refuse_project_options(cli: &Cli) -> Result<()> {
    let (name, no_project) = match &cli.command {
        Command::Init { no_project, .. } => ("init", no_project),
        Command::Completions { no_project, .. } => ("completions", no_project),
        _ => return Ok(()),
    };
    if !(no_project.given() || cli.global.directory.is_some() || cli.global.config.is_some()) {
        return Ok(());
    }
    let hint = if name == "init" {
        "pass the directory to create the project in as `fusionizer init DIR`"
    } else {
        "leave them out: a completion script is the same for every project"
    };
    Err(Error::usage(format!(
        "`-C` and `--config` mean nothing to `fusionizer {name}`: it reads no fusion.toml"
    ))
    .with_hint(hint))
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}
