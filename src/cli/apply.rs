//! `fusionizer apply`: plan (or read a saved plan and check it is still fresh), confirm, lock,
//! execute, report. `fusionizer destroy` (`super::destroy`) shares the lock, the confirmation and
//! the execution ([`lock`], [`carry_out`]).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::Context;
use crate::apply::progress::Progress;
use crate::apply::{execute, ApplyOptions, ApplyReport, NoHooks, Outcome};
use crate::error::{Error, ExitCode, Result};
use crate::lock::{self, ApplyLock};
use crate::plan::render::{self, NO_CHANGES};
use crate::plan::saved::SavedPlan;
use crate::plan::Plan;
use crate::schedule::Selection;
use crate::ui;
use crate::workspace::{
    compute_plan, observe, open_for, prepare_destroy, resolve, runtime, Prepared,
};

/// Which command carries out a plan: the words of its prompt, refusal and outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verb {
    /// `apply`, or `apply FILE` of an ordinary plan.
    Apply,
    /// `destroy`, or `apply FILE` of a plan saved with `plan --destroy`.
    Destroy,
}

impl Verb {
    fn word(self) -> &'static str {
        match self {
            Verb::Apply => "apply",
            Verb::Destroy => "destroy",
        }
    }
}

/// Resolved `fusionizer apply` arguments.
#[derive(Debug, Clone)]
pub(super) struct ApplyArgs {
    pub(super) plan_file: Option<PathBuf>,
    /// `--at`/`--phase`, or `None` to follow what is live.
    pub(super) selection: Option<Selection>,
    pub(super) auto_approve: bool,
    pub(super) parallelism: usize,
    pub(super) lock_timeout: Duration,
}

/// `fusionizer apply`.
pub(super) fn command(ctx: &Context, args: ApplyArgs) -> Result<ExitCode> {
    let rt = runtime()?;
    let plan_file = args.plan_file.as_ref().map(|p| ctx.resolve(p));
    let saved = match &plan_file {
        Some(path) => {
            if args.selection.is_some() {
                return Err(Error::usage(
                    "a saved plan carries its own grouping; drop `--at` / `--phase`",
                ));
            }
            Some(SavedPlan::read(path)?)
        }
        None => None,
    };
    let mut prepared = match &saved {
        // A saved destroy plan is checked against an empty desired set: nothing to fuse.
        Some(saved) if saved.destroy => prepare_destroy(ctx.workspace()?)?,
        _ => open_for(ctx.checked_workspace()?, true)?,
    };
    let command_line = match &args.plan_file {
        Some(p) => format!("fusionizer apply {}", p.display()),
        None => "fusionizer apply".to_string(),
    };
    let _lock = lock(&prepared, &command_line, args.lock_timeout)?;

    let observed = if prepared.destroy {
        rt.block_on(observe(prepared.platform.as_ref(), prepared.project(), &[]))?
    } else {
        // The grouping: the saved plan's, the one given, or the one the live state records.
        let given = match &saved {
            Some(saved) if saved.follows_live => None,
            Some(saved) => Some(saved.selection.into()),
            None => args.selection,
        };
        rt.block_on(resolve(&mut prepared, given))?
    };
    // Also refuses to touch same-named functions this project does not own.
    let fresh = compute_plan(&prepared, &observed)?;

    let plan = match (saved, &args.plan_file) {
        (Some(saved), Some(written)) => {
            saved.check_fresh(
                written,
                &prepared.platform.identity(),
                prepared.project(),
                &prepared.artifacts,
                &observed.owned,
            )?;
            saved.plan
        }
        _ => fresh,
    };
    let verb = if prepared.destroy {
        Verb::Destroy
    } else {
        Verb::Apply
    };
    let ask = plan_file.is_none() && !args.auto_approve;
    carry_out(ctx, &rt, &prepared, &plan, ask, args.parallelism, verb)
}

/// Takes the apply lock of `prepared`'s platform for `command_line`, waiting up to `timeout`
/// (exit 75 naming the holder when it is not free).
pub(super) fn lock(
    prepared: &Prepared,
    command_line: &str,
    timeout: Duration,
) -> Result<ApplyLock> {
    let lock_file = lock::lock_path(
        &prepared.workspace.config.state_dir(),
        &prepared.platform.identity(),
    );
    if !timeout.is_zero() {
        tracing::debug!("waiting up to {timeout:?} for `{}`", lock_file.display());
    }
    Ok(lock::acquire(&lock_file, command_line, timeout)?)
}

/// Shows `plan` (or the no-changes line, exit 0), asks for `yes` when `ask`, executes it with
/// `parallelism`, and reports like apply: exit 0 when every change went through, else 1.
pub(super) fn carry_out(
    ctx: &Context,
    rt: &tokio::runtime::Runtime,
    prepared: &Prepared,
    plan: &Plan,
    ask: bool,
    parallelism: usize,
    verb: Verb,
) -> Result<ExitCode> {
    if !plan.has_changes() {
        ui::outln(NO_CHANGES);
        return Ok(ExitCode::Success);
    }
    ui::out(&render::text(plan, ctx.ui.color));
    if ask {
        confirm(ctx, verb)?;
    }
    let report = run(ctx, rt, prepared, plan, parallelism);
    rt.block_on(prepared.platform.shutdown());
    finish(ctx, &report, verb)
}

fn confirm(ctx: &Context, verb: Verb) -> Result<()> {
    if !ctx.ui.interactive {
        let (flag, command) = match verb {
            Verb::Apply => ("", "apply"),
            Verb::Destroy => (" --destroy", "destroy"),
        };
        return Err(Error::failure(format!(
            "refusing to {command} without confirmation: there is no terminal to ask on"
        ))
        .with_hint(format!(
            "pass `--auto-approve`, or save a plan with `fusionizer plan{flag} --out FILE` and \
             apply it with `fusionizer apply FILE`"
        )));
    }
    {
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\nDo you want to perform these actions?\n  Only `yes` will be accepted to approve.\n\n  Enter a value: "
        );
        let _ = err.flush();
    }
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::failure("cannot read the answer").caused_by(e.to_string()))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Error::failure(format!("{} cancelled", verb.word())))
    }
}

fn run(
    ctx: &Context,
    rt: &tokio::runtime::Runtime,
    prepared: &Prepared,
    plan: &Plan,
    parallelism: usize,
) -> ApplyReport {
    let options = ApplyOptions {
        parallelism,
        observer: &Progress,
        hooks: &NoHooks,
    };
    ctx.ui.status("");
    rt.block_on(execute(
        prepared.platform.as_ref(),
        plan,
        &prepared.artifacts,
        &options,
    ))
}

/// Exit 0 with `Apply complete: …` (`Destroy complete: N destroyed.`) when everything applied;
/// otherwise exit 1 naming every failed and skipped change.
fn finish(ctx: &Context, report: &ApplyReport, verb: Verb) -> Result<ExitCode> {
    if report.is_success() {
        ctx.ui.status("");
        ui::outln(&match verb {
            Verb::Apply => format!("Apply complete: {}.", report.summary()),
            Verb::Destroy => format!("Destroy complete: {} destroyed.", report.applied()),
        });
        return Ok(ExitCode::Success);
    }
    let mut err = Error::failure(format!("{} incomplete: {}", verb.word(), report.summary()))
        .with_hint(format!(
            "fix the cause and run `fusionizer {}` again; it picks up from the live state",
            verb.word()
        ));
    for r in &report.results {
        match &r.outcome {
            Outcome::Applied => {}
            Outcome::Failed(message) => err.causes.push(format!(
                "{} `{}` failed: {}",
                r.change.action.word(),
                r.change.function,
                message.replace('\n', "\n    ")
            )),
            Outcome::NotAttempted(why) => err.causes.push(format!(
                "{} `{}` not attempted: {why}",
                r.change.action.word(),
                r.change.function
            )),
        }
    }
    Err(err)
}
