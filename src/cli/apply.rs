//! `fusionizer apply`: plan (or read a saved plan and check it is still fresh), confirm, lock,
//! execute, report.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::Context;
use crate::apply::progress::Progress;
use crate::apply::{execute, ApplyOptions, ApplyReport, NoHooks, Outcome};
use crate::error::{Error, ExitCode, Result};
use crate::lock;
use crate::plan::render::{self, NO_CHANGES};
use crate::plan::saved::SavedPlan;
use crate::plan::{self, Plan};
use crate::schedule::Selection;
use crate::ui;
use crate::workspace::{observe, prepare, runtime, Prepared};

/// Resolved `fusionizer apply` arguments.
#[derive(Debug, Clone)]
pub(super) struct ApplyArgs {
    pub(super) plan_file: Option<PathBuf>,
    pub(super) selection: Selection,
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
            if args.selection != Selection::default() {
                return Err(Error::usage(
                    "a saved plan carries its own grouping; drop `--at` / `--phase`",
                ));
            }
            Some(SavedPlan::read(path)?)
        }
        None => None,
    };
    let selection = saved
        .as_ref()
        .map_or(args.selection, |s| s.selection.into());
    let prepared = prepare(ctx.workspace()?, selection)?;
    let lock_file = lock::lock_path(
        &prepared.workspace.config.state_dir(),
        &prepared.platform.identity(),
    );
    let command_line = match &args.plan_file {
        Some(p) => format!("fusionizer apply {}", p.display()),
        None => "fusionizer apply".to_string(),
    };
    if !args.lock_timeout.is_zero() {
        tracing::debug!(
            "waiting up to {:?} for `{}`",
            args.lock_timeout,
            lock_file.display()
        );
    }
    let _lock = lock::acquire(&lock_file, &command_line, args.lock_timeout)?;

    let observed = rt.block_on(observe(
        prepared.platform.as_ref(),
        prepared.project(),
        &prepared.artifacts,
    ))?;
    // Also refuses to touch same-named functions this project does not own.
    let fresh = plan::compute(
        prepared.project(),
        &prepared.artifacts,
        &observed.owned,
        &observed.unowned,
    )?;

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
    if !plan.has_changes() {
        ui::outln(NO_CHANGES);
        return Ok(ExitCode::Success);
    }
    ui::out(&render::text(&plan, ctx.ui.color));
    if plan_file.is_none() && !args.auto_approve {
        confirm(ctx)?;
    }
    let report = run(ctx, &rt, &prepared, &plan, args.parallelism);
    rt.block_on(prepared.platform.shutdown());
    finish(ctx, &report)
}

fn confirm(ctx: &Context) -> Result<()> {
    if !ctx.ui.interactive {
        return Err(Error::failure(
            "refusing to apply without confirmation: there is no terminal to ask on",
        )
        .with_hint(
            "pass `--auto-approve`, or save a plan with `fusionizer plan --out FILE` and apply \
             it with `fusionizer apply FILE`",
        ));
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
        Err(Error::failure("apply cancelled"))
    }
}

fn run(
    ctx: &Context,
    rt: &tokio::runtime::Runtime,
    prepared: &Prepared,
    plan: &Plan,
    parallelism: usize,
) -> ApplyReport {
    let observer = Progress::new(&ctx.ui);
    let options = ApplyOptions {
        parallelism,
        observer: &observer,
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

/// Exit 0 with `Apply complete: …` when everything applied; otherwise exit 1 naming every
/// failed and skipped change.
fn finish(ctx: &Context, report: &ApplyReport) -> Result<ExitCode> {
    if report.is_success() {
        ctx.ui.status("");
        ui::outln(&format!("Apply complete: {}.", report.summary()));
        return Ok(ExitCode::Success);
    }
    let mut err = Error::failure(format!("apply incomplete: {}", report.summary())).with_hint(
        "fix the cause and run `fusionizer apply` again; it picks up from the live state",
    );
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
