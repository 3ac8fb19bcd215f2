//! Carrying out a plan from the command line, for `apply` and `destroy`: the plan shown, the
//! prompt (or the refusal without a terminal), the run through [`workspace::run`] under the
//! apply lock, and the outcome's words. Which words is decided by what is desired: a destroy
//! (`Desired::Nothing`) says `destroy`, anything else `apply`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use super::Context;
use crate::apply::progress::Progress;
use crate::apply::{ApplyReport, NoHooks, Outcome};
use crate::error::{Error, ExitCode, Result};
use crate::plan::render::{self, NO_CHANGES};
use crate::plan::saved::SavedPlan;
use crate::plan::Plan;
use crate::ui;
use crate::workspace::{self, Execution, Locking, Operation, Prepared};

/// How a command carries out what it prepared.
pub(super) struct CarryOut<'a> {
    /// The command line the lock file names (`fusionizer apply plan.json`).
    pub(super) command_line: &'a str,
    /// How long to wait for the apply lock.
    pub(super) lock_timeout: Duration,
    /// The saved plan to carry out, and where it was read from.
    pub(super) saved: Option<(&'a SavedPlan, &'a Path)>,
    /// Ask for `yes` before changing anything.
    pub(super) ask: bool,
    /// How many changes run at once.
    pub(super) parallelism: usize,
}

/// Takes the apply lock, observes and plans ([`workspace::run`]), shows the plan (or the
/// no-changes line, exit 0), asks for `yes` when `ask`, executes it, and reports: exit 0 when
/// every change went through, else 1.
pub(super) fn carry_out(
    ctx: &Context,
    rt: &tokio::runtime::Runtime,
    prepared: &mut Prepared,
    how: &CarryOut<'_>,
) -> Result<ExitCode> {
    let destroy = prepared.desired.is_nothing();
    let confirm = |plan: &Plan| -> Result<()> {
        ui::out(&render::text(plan, ctx.ui.color));
        if how.ask {
            confirm(ctx, destroy)?;
        }
        ctx.ui.status("");
        Ok(())
    };
    let outcome = rt.block_on(workspace::run(
        prepared,
        Operation {
            lock: Some(Locking {
                owner: how.command_line,
                timeout: how.lock_timeout,
            }),
            saved: how.saved,
            observer: &Progress,
            execution: Some(Execution {
                parallelism: how.parallelism,
                hooks: &NoHooks,
                without_changes: false,
                confirm: &confirm,
            }),
        },
    ))?;
    let Some(report) = outcome.report else {
        ui::outln(NO_CHANGES);
        return Ok(ExitCode::Success);
    };
    rt.block_on(prepared.platform.shutdown());
    finish(ctx, &report, destroy)
}

/// The command's word: `destroy` when nothing is desired, else `apply`.
fn word(destroy: bool) -> &'static str {
    if destroy {
        "destroy"
    } else {
        "apply"
    }
}

/// Asks on the terminal for `yes`; without a terminal, refuses and says how to go on.
fn confirm(ctx: &Context, destroy: bool) -> Result<()> {
    let word = word(destroy);
    if !ctx.ui.interactive {
        let flag = if destroy { " --destroy" } else { "" };
        let command = word;
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
        Err(Error::failure(format!("{word} cancelled")))
    }
}

/// Exit 0 with `Apply complete: …` (`Destroy complete: N destroyed.`) when everything applied;
/// otherwise exit 1 naming every failed and skipped change.
fn finish(ctx: &Context, report: &ApplyReport, destroy: bool) -> Result<ExitCode> {
    let word = word(destroy);
    if report.is_success() {
        ctx.ui.status("");
        ui::outln(&if destroy {
            format!("Destroy complete: {} destroyed.", report.applied())
        } else {
            format!("Apply complete: {}.", report.summary())
        });
        return Ok(ExitCode::Success);
    }
    let mut err = Error::failure(format!("{word} incomplete: {}", report.summary())).with_hint(
        format!("fix the cause and run `fusionizer {word}` again; it picks up from the live state"),
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
