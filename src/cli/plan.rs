//! `fusionizer plan`: what apply would change (or, with `--destroy`, what destroy would delete),
//! rendered for people, programs or pull requests; optionally saved for `fusionizer apply FILE`.

use std::path::PathBuf;

use super::Context;
use crate::apply::progress::Progress;
use crate::error::{ExitCode, Result};
use crate::plan::saved::SavedPlan;
use crate::plan::{render, Desired, Plan};
use crate::platform::LiveFunction;
use crate::schedule::{Grouping, Selection};
use crate::ui::{self, OutputFormat};
use crate::workspace::{self, runtime, Operation};

/// Resolved `fusionizer plan` arguments.
#[derive(Debug, Clone)]
pub(super) struct PlanArgs {
    /// `--at`/`--phase`, or `None` to follow what is live.
    pub(super) selection: Option<Selection>,
    pub(super) output: OutputFormat,
    pub(super) detailed_exitcode: bool,
    pub(super) out: Option<PathBuf>,
    /// Plan against an empty desired set: delete every owned function.
    pub(super) destroy: bool,
}

/// Renders `plan` in `output` format.
pub(super) fn render(plan: &Plan, output: OutputFormat, color: bool) -> String {
    match output {
        OutputFormat::Text => render::text(plan, color),
        OutputFormat::Json => render::json(plan),
        OutputFormat::Markdown => render::markdown(plan),
    }
}

/// `fusionizer plan`.
pub(super) fn command(ctx: &Context, args: PlanArgs) -> Result<ExitCode> {
    let PlanArgs {
        selection,
        output,
        detailed_exitcode,
        out,
        destroy,
    } = args;
    let rt = runtime()?;
    let (workspace, desired) = if destroy {
        (ctx.workspace()?, Desired::Nothing)
    } else {
        (ctx.checked_workspace()?, Desired::given(selection))
    };
    let mut prepared = workspace::open(workspace, desired)?;
    let workspace::Outcome { observed, plan, .. } = rt.block_on(workspace::run(
        &mut prepared,
        Operation {
            lock: None,
            saved: None,
            observer: &Progress,
            execution: None,
        },
    ))?;
    if output == OutputFormat::Markdown {
        // The grouping before → after: the live functions' task sets, then the desired ones.
        let before: Grouping = observed.owned.iter().map(LiveFunction::tasks).collect();
        let after: Grouping = prepared.artifacts.iter().map(|a| a.tasks.clone()).collect();
        ui::out(&render::markdown_with_grouping(&plan, &before, &after));
    } else {
        ui::out(&render(&plan, output, ctx.ui.color));
    }
    if let Some(written) = out {
        let saved = SavedPlan::new(
            plan.clone(),
            prepared.selection,
            prepared.platform.identity(),
            &prepared.artifacts,
            &observed.owned,
        )
        .made_for(prepared.desired);
        saved.write(&ctx.resolve(&written))?;
        ctx.ui.status(&format!(
            "Saved the plan to `{}`; apply exactly this plan with `fusionizer apply {}`",
            written.display(),
            written.display()
        ));
    }
    Ok(if detailed_exitcode && plan.has_changes() {
        ExitCode::Changes
    } else {
        ExitCode::Success
    })
}
