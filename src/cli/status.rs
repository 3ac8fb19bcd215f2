//! `fusionizer status`: the live functions of this project and whether they match fusion.toml.

use super::Context;
use crate::error::{ExitCode, Result};
use crate::schedule::Selection;
use crate::status::{add_kept, compute, optimizer_note, render_text, LiveGrouping};
use crate::ui::{self, OutputFormat};
use crate::workspace::{fuse_selection, open_for, resolve, runtime};

/// `fusionizer status`: against the grouping `selection` picks, or (`None`) the one the live
/// state records.
pub(super) fn command(
    ctx: &Context,
    selection: Option<Selection>,
    output: OutputFormat,
) -> Result<ExitCode> {
    let rt = runtime()?;
    let mut prepared = open_for(ctx.workspace()?, false)?;
    let observed = rt.block_on(resolve(&mut prepared, selection))?;
    let mut status = compute(prepared.project(), &prepared.artifacts, &observed.owned);
    add_kept(&mut status, &observed.kept);
    status.grouping.clone_from(&prepared.grouping);
    // The note compares the live grouping with fusion.toml's: when the live state made status
    // follow serve's optimizer, fusion.toml's is the one at `0s`.
    let fusion_toml = match prepared.grouping.as_ref().map(|g| g.owner.as_str()) {
        Some("feedback" | "command") => fuse_selection(&prepared.workspace, Selection::default())?,
        _ => prepared.artifacts.clone(),
    };
    status.optimizer = optimizer_note(
        LiveGrouping::read(&prepared.workspace.config.state_dir()),
        prepared.project(),
        &fusion_toml,
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
