//! `fusionizer status`: the live functions of this project and whether they match fusion.toml.

use super::Context;
use crate::error::{ExitCode, Result};
use crate::schedule::Selection;
use crate::status::{compute, optimizer_note, render_text, LiveGrouping};
use crate::ui::{self, OutputFormat};
use crate::workspace::{observe, prepare, runtime};

/// `fusionizer status`.
pub(super) fn command(
    ctx: &Context,
    selection: Selection,
    output: OutputFormat,
) -> Result<ExitCode> {
    let rt = runtime()?;
    let prepared = prepare(ctx.workspace()?, selection)?;
    let observed = rt.block_on(observe(prepared.platform.as_ref(), prepared.project(), &[]))?;
    let mut status = compute(prepared.project(), &prepared.artifacts, &observed.owned);
    status.optimizer = optimizer_note(
        LiveGrouping::read(&prepared.workspace.config.state_dir()),
        prepared.project(),
        &prepared.artifacts,
        &observed.owned,
    );
    match output {
        OutputFormat::Json => {
            let mut text = serde_json::to_string_pretty(&status).expect("serialisable");
            text.push('\n');
            ui::out(&text);
        }
        _ => ui::out(&render_text(&status, ctx.ui.color)),
    }
    Ok(ExitCode::Success)
}
