//! `fusionizer plan`: what apply would change, rendered for people, programs or pull requests;
//! optionally saved for `fusionizer apply FILE`.

use std::path::PathBuf;

use super::Context;
use crate::error::{ExitCode, Result};
use crate::plan::saved::SavedPlan;
use crate::plan::{render, Plan};
use crate::schedule::Selection;
use crate::ui::{self, OutputFormat};
use crate::workspace::{make_plan, runtime};

/// Renders `plan` in `output` format.
pub(super) fn render(plan: &Plan, output: OutputFormat, color: bool) -> String {
    match output {
        OutputFormat::Text => render::text(plan, color),
        OutputFormat::Json => render::json(plan),
        OutputFormat::Markdown => render::markdown(plan),
    }
}

/// `fusionizer plan`.
pub(super) fn command(
    ctx: &Context,
    selection: Selection,
    output: OutputFormat,
    detailed_exitcode: bool,
    out: Option<PathBuf>,
) -> Result<ExitCode> {
    let rt = runtime()?;
    let (prepared, observed, plan) = make_plan(ctx.workspace()?, &rt, selection)?;
    ui::out(&render(&plan, output, ctx.ui.color));
    if let Some(written) = out {
        SavedPlan::new(
            plan.clone(),
            selection,
            prepared.platform.identity(),
            &prepared.artifacts,
            &observed.owned,
        )
        .write(&ctx.resolve(&written))?;
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
