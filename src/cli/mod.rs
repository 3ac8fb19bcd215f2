//! The command line: arguments ([`args`], clap derive) and one thin file per command. Each
//! command parses its arguments, calls the core (mostly [`crate::workspace`]) and renders the
//! outcome; errors are rendered once, in [`main_with_args`], honouring `--color`/`NO_COLOR`.

mod apply;
pub mod args;
mod build;
mod carry_out;
mod completions;
mod destroy;
mod images;
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

pub use args::{Cli, Command, SelectionArgs};

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
    /// `--state-dir`, else `FUSIONIZER_STATE_DIR`, resolved against `cwd`.
    pub state_dir: Option<Given>,
    /// `--overlay`, else `FUSIONIZER_OVERLAY`, resolved against `cwd`.
    pub overlay: Option<Given>,
    pub ui: ui::Ui,
}

/// A path given by a global option or, without it, by its environment variable.
#[derive(Debug, Clone)]
pub struct Given {
    /// The path, absolute.
    pub path: PathBuf,
    /// Who gave it, as errors name it: `--state-dir` or `FUSIONIZER_STATE_DIR`.
    pub by: &'static str,
}

impl Given {
    /// `flag`'s value, else the environment variable `var` when set and not empty, resolved
    /// against `cwd`.
    fn pick(cwd: &Path, flag: (&'static str, Option<&PathBuf>), var: &'static str) -> Option<Self> {
        let (by, path) = match (flag.1, std::env::var_os(var)) {
            (Some(path), _) => (flag.0, path.clone()),
            (None, Some(value)) if !value.is_empty() => (var, PathBuf::from(value)),
            (None, _) => return None,
        };
        Some(Given {
            path: absolute(cwd, &path),
            by,
        })
    }
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

    /// What [`config::load_with`] takes from the global options.
    pub fn load_options(&self) -> config::LoadOptions {
        config::LoadOptions {
            state_dir: self.state_dir.as_ref().map(|given| given.path.clone()),
            overlay: self.overlay.as_ref().map(|given| given.path.clone()),
        }
    }

    /// Loads and validates the workspace (exit 78 with every problem on failure). A state
    /// directory given by `--state-dir` or `FUSIONIZER_STATE_DIR` is created first, so that one
    /// that cannot be is refused before anything runs.
    pub fn workspace(&self) -> Result<config::Workspace> {
        let path = self.config_path()?;
        if let Some(given) = &self.state_dir {
            create_state_dir(given)?;
        }
        Ok(config::load_with(&path, &self.load_options())?)
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

/// `--at` / `--phase` as a [`Selection`] (the one in force at 0s when neither was given).
pub fn selection(args: &SelectionArgs) -> Selection {
    given_selection(args).unwrap_or_default()
}

/// `--at` / `--phase` when either was given; `None` lets `plan`, `apply` and `status` read the
/// grouping from what is live (`workspace::resolve`).
pub fn given_selection(args: &SelectionArgs) -> Option<Selection> {
    match (args.phase, args.at) {
        (Some(n), _) => Some(Selection::Phase(n as usize)),
        (None, Some(at)) => Some(Selection::At(at)),
        (None, None) => None,
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
            if let Some(err) = bad_duration(&err) {
                ui::print_error(&err, ui::stderr_color(ui::ColorChoice::Auto));
                return err.code.into();
            }
            let code = if err.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Success
            };
            let _ = err.print();
            return code.into();
        }
    };
    let color = cli.global.color.into();
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

/// A clap error about a duration ([`args::duration`]) as a usage error (exit 64) worded as the
/// crate's errors are: `invalid value `soon` for `--after`: …`, naming the flag and the forms
/// it takes. `None` for clap's other errors, which clap words itself.
fn bad_duration(err: &clap::Error) -> Option<Error> {
    use clap::error::{ContextKind, ContextValue};
    let why = std::error::Error::source(err)?.downcast_ref::<args::DurationError>()?;
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(text)) => Some(text.as_str()),
        _ => None,
    };
    // clap names the argument with its value (`--after <DURATION>`): the flag is the first word.
    let flag = context(ContextKind::InvalidArg)?.split(' ').next()?;
    let value = context(ContextKind::InvalidValue)?;
    Some(Error::usage(format!(
        "invalid value `{value}` for `{flag}`: {why}"
    )))
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
    let ui = ui::Ui::new(
        cli.global.color.into(),
        cli.global.quiet,
        cli.global.verbose,
    )
    .with_log_format(cli.global.log_format.into());
    ui::init_logging(&ui);
    let ctx = Context {
        config_override: cli.global.config.as_ref().map(|p| absolute(&cwd, p)),
        state_dir: Given::pick(
            &cwd,
            ("--state-dir", cli.global.state_dir.as_ref()),
            crate::contract::ENV_STATE_DIR,
        ),
        overlay: Given::pick(
            &cwd,
            ("--overlay", cli.global.overlay.as_ref()),
            crate::contract::ENV_OVERLAY,
        ),
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
        } => build::command(ctx, selection(&sel), out, output.into()),
        Command::Images { dry_run } => images::command(ctx, dry_run),
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
                selection: given_selection(&sel),
                output: output.into(),
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
            lock,
        } => apply::command(
            ctx,
            apply::ApplyArgs {
                plan_file,
                selection: given_selection(&sel),
                auto_approve,
                parallelism: parallelism as usize,
                lock_timeout: lock.lock_timeout,
            },
        ),
        Command::Destroy {
            auto_approve,
            parallelism,
            lock,
        } => destroy::command(
            ctx,
            destroy::DestroyArgs {
                auto_approve,
                parallelism: parallelism as usize,
                lock_timeout: lock.lock_timeout,
            },
        ),
        Command::Status {
            selection: sel,
            output,
        } => status::command(ctx, given_selection(&sel), output.into()),
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
                output: output.into(),
                after,
                write,
                detailed_exitcode,
                memory: memory.then_some(memory_headroom),
                live,
            },
        ),
    }
}

/// `-C`, `--config`, `--state-dir` or `--overlay` given to `init` or `completions`, which read no
/// fusion.toml: a usage error
/// (exit 64) that says what to do instead, rather than an option silently ignored.
fn refuse_project_options(cli: &Cli) -> Result<()> {
    let (name, no_project) = match &cli.command {
        Command::Init { no_project, .. } => ("init", no_project),
        Command::Completions { no_project, .. } => ("completions", no_project),
        _ => return Ok(()),
    };
    let global = &cli.global;
    let given_globally = global.directory.is_some()
        || global.config.is_some()
        || global.state_dir.is_some()
        || global.overlay.is_some();
    if !(no_project.given() || given_globally) {
        return Ok(());
    }
    let hint = if name == "init" {
        "pass the directory to create the project in as `fusionizer init DIR`"
    } else {
        "leave them out: a completion script is the same for every project"
    };
    Err(Error::usage(format!(
        "`-C`, `--config`, `--state-dir` and `--overlay` mean nothing to `fusionizer {name}`: it \
         reads no fusion.toml"
    ))
    .with_hint(hint))
}

/// Creates the state directory `given` names, or says which option or variable to fix.
fn create_state_dir(given: &Given) -> Result<()> {
    std::fs::create_dir_all(&given.path).map_err(|e| {
        Error::usage(format!(
            "`{}`: cannot create the state directory `{}`: {e}",
            given.by,
            given.path.display()
        ))
        .with_hint(format!(
            "point `--state-dir` or `{}` at a directory fusionizer may write to",
            crate::contract::ENV_STATE_DIR
        ))
    })
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("fusionizer").chain(args.iter().copied()))
    }

    #[test]
    fn durations_are_parsed_by_clap_in_the_config_syntax() {
        let Command::Apply {
            selection, lock, ..
        } = parse(&["apply", "--at", "1h30m", "--lock-timeout", "2m"])
            .unwrap()
            .command
        else {
            panic!("not apply");
        };
        assert_eq!(selection.at, Some(Duration::from_secs(5400)));
        assert_eq!(lock.lock_timeout, Duration::from_secs(120));
        let Command::Destroy { lock, .. } = parse(&["destroy"]).unwrap().command else {
            panic!("not destroy");
        };
        assert_eq!(
            lock.lock_timeout,
            Duration::ZERO,
            "the default fails at once"
        );
        let Command::Optimize { after, client, .. } =
            parse(&["optimize", "--after", "90s"]).unwrap().command
        else {
            panic!("not optimize");
        };
        assert_eq!(after, Some(Duration::from_secs(90)));
        assert_eq!(client.timeout, Duration::from_secs(30));
    }

    #[test]
    fn a_bad_duration_is_a_usage_error_naming_the_flag_and_the_forms() {
        for (args, flag, value) in [
            (&["plan", "--at", "soon"][..], "--at", "soon"),
            (&["apply", "--lock-timeout", "90"], "--lock-timeout", "90"),
            (&["optimize", "--after", "1.5"], "--after", "1.5"),
            (&["invoke", "t", "--timeout", "x"], "--timeout", "x"),
        ] {
            let err = bad_duration(&parse(args).unwrap_err()).expect("a duration error");
            assert_eq!(err.code, ExitCode::Usage);
            let why = args::duration(value).unwrap_err();
            assert_eq!(
                err.message,
                format!("invalid value `{value}` for `{flag}`: {why}")
            );
            assert!(why.0.contains("e.g. `500ms`, `90s`") || why.0.contains("add a unit"));
        }
        let err = bad_duration(&parse(&["invoke", "t", "--timeout", "0s"]).unwrap_err()).unwrap();
        assert!(
            err.message.contains("would give up at once"),
            "{}",
            err.message
        );
    }

    #[test]
    fn other_clap_errors_stay_claps() {
        assert!(bad_duration(&parse(&["plan", "--phase", "0"]).unwrap_err()).is_none());
        assert!(bad_duration(&parse(&["--color", "sometimes", "plan"]).unwrap_err()).is_none());
    }

    #[test]
    fn choices_convert_into_uis_plain_types() {
        let cli = parse(&[
            "--color",
            "never",
            "--log-format",
            "json",
            "plan",
            "--output",
            "markdown",
        ])
        .unwrap();
        assert_eq!(
            ui::ColorChoice::from(cli.global.color),
            ui::ColorChoice::Never
        );
        assert_eq!(
            ui::LogFormat::from(cli.global.log_format),
            ui::LogFormat::Json
        );
        let Command::Plan { output, .. } = cli.command else {
            panic!("not plan");
        };
        assert_eq!(ui::OutputFormat::from(output), ui::OutputFormat::Markdown);
        let Command::Status { output, .. } =
            parse(&["status", "--output", "json"]).unwrap().command
        else {
            panic!("not status");
        };
        assert_eq!(ui::OutputFormat::from(output), ui::OutputFormat::Json);
    }
}
