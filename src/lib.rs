//! fusionizer: fuse Nuclio Python tasks into fewer functions, declaratively.
//!
//! The library core behind the `fusionizer` binary. Data flows
//! [`config`] → [`schedule`] → [`fuse`] → [`plan`] → [`apply`] → [`platform`], and [`serve`] runs
//! the proxy and the schedule runner on top. Config, schedule, fuse and plan are pure; platforms
//! and the proxy are the only places that spawn, listen or sleep.

pub mod apply;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod fuse;
pub mod lock;
pub mod plan;
pub mod platform;
pub mod proc;
pub mod schedule;
pub mod serve;
pub mod status;
pub mod taskspec;
pub mod ui;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Parser;

pub use error::{Error, ExitCode, Result};

use crate::cli::{Cli, Command, SelectionArgs};
use crate::schedule::Selection;

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
    match run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            ui::print_error(&err);
            err.code.into()
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
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
    let ui = ui::Ui::new(cli.global.color, cli.global.quiet, cli.global.verbose);
    ui::init_logging(&ui);
    let ctx = Context {
        config_override: cli.global.config.as_ref().map(|p| absolute(&cwd, p)),
        cwd,
        ui,
    };
    match cli.command {
        Command::Validate => commands::validate(&ctx),
        Command::Build {
            selection: sel,
            out,
            output,
        } => commands::build(&ctx, selection(&sel)?, out, output),
        Command::Init { dir, name } => commands::init(&ctx, dir, name),
        Command::Completions { shell } => commands::completions(shell),
        Command::Plan {
            selection: sel,
            output,
            detailed_exitcode,
            out,
        } => plan::command(&ctx, selection(&sel)?, output, detailed_exitcode, out),
        Command::Apply {
            plan_file,
            selection: sel,
            auto_approve,
            parallelism,
            lock_timeout,
        } => {
            let lock_timeout = config::parse_duration(&lock_timeout).map_err(|e| {
                Error::usage(format!(
                    "invalid value `{lock_timeout}` for `--lock-timeout`: {e}"
                ))
            })?;
            apply::command(
                &ctx,
                apply::ApplyArgs {
                    plan_file,
                    selection: selection(&sel)?,
                    auto_approve,
                    parallelism: parallelism as usize,
                    lock_timeout,
                },
            )
        }
        Command::Status {
            selection: sel,
            output,
        } => status::command(&ctx, selection(&sel)?, output),
        Command::Serve {
            listen,
            phase,
            no_schedule,
            insecure,
            watch,
        } => serve::command(
            &ctx,
            serve::ServeArgs {
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
        } => serve::invoke_command(&ctx, &task, data, headers, server),
    }
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}
