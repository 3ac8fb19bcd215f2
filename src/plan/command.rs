//! `fusionizer plan`, and the glue plan, apply and status share: load the workspace, fuse the
//! selected grouping, open the platform and observe what is live.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::cli::OutputFormat;
use crate::config::Workspace;
use crate::fuse::{self, Artifact};
use crate::plan::{self, render, saved::SavedPlan, Plan};
use crate::platform::{self, LiveFunction, Platform, PlatformError};
use crate::schedule::{self, Selection};
use crate::{ui, Context, Error, ExitCode, Result};

/// The workspace, the fused artifacts of the selected grouping and the platform.
pub struct Prepared {
    pub workspace: Workspace,
    pub selection: Selection,
    pub artifacts: Vec<Artifact>,
    pub platform: Arc<dyn Platform>,
}

impl Prepared {
    pub fn project(&self) -> &str {
        &self.workspace.config.project.name
    }
}

/// Loads the workspace (exit 78 when invalid), fuses the grouping `selection` picks over the
/// declared path tasks, and opens the configured platform (exit 69 when unavailable).
pub fn prepare(ctx: &Context, selection: Selection) -> Result<Prepared> {
    let workspace = ctx.workspace()?;
    let artifacts = fuse_selection(&workspace, selection)?;
    let platform = platform::open(&workspace.config, None)?;
    Ok(Prepared {
        workspace,
        selection,
        artifacts,
        platform,
    })
}

/// The fused artifacts of the grouping `selection` picks over the declared path tasks.
pub fn fuse_selection(workspace: &Workspace, selection: Selection) -> Result<Vec<Artifact>> {
    let present: BTreeSet<String> = workspace.specs.keys().cloned().collect();
    let grouping = schedule::grouping(&workspace.config, selection, &present)?;
    fuse::fuse_all(workspace, &workspace.specs, &grouping)
}

/// What is live: the owned functions, and unowned ones under a desired name.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub owned: Vec<LiveFunction>,
    pub unowned: Vec<LiveFunction>,
}

/// Lists the owned functions, then looks up every desired name that is not among them so a
/// same-named unowned function is found (a few lookups at a time).
pub async fn observe(
    platform: &dyn Platform,
    project: &str,
    desired: &[Artifact],
) -> Result<Observed, PlatformError> {
    let (mut owned, mut unowned): (Vec<LiveFunction>, Vec<LiveFunction>) = platform
        .list(project)
        .await?
        .into_iter()
        .partition(|f| f.is_owned_by(project));
    let known: BTreeSet<String> = owned
        .iter()
        .chain(unowned.iter())
        .map(|f| f.name.clone())
        .collect();
    let missing: Vec<&str> = desired
        .iter()
        .map(|a| a.name.as_str())
        .filter(|n| !known.contains(*n))
        .collect();
    let found: Vec<Option<LiveFunction>> = stream::iter(missing)
        .map(|name| platform.get(name))
        .buffered(8)
        .try_collect()
        .await?;
    for f in found.into_iter().flatten() {
        if f.is_owned_by(project) {
            owned.push(f);
        } else {
            unowned.push(f);
        }
    }
    owned.sort_by(|a, b| a.name.cmp(&b.name));
    unowned.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Observed { owned, unowned })
}

/// A tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new()
        .map_err(|e| Error::failure("cannot start the async runtime").caused_by(e.to_string()))
}

/// Prepares, observes and computes the plan.
pub fn make_plan(
    ctx: &Context,
    rt: &tokio::runtime::Runtime,
    selection: Selection,
) -> Result<(Prepared, Observed, Plan)> {
    let prepared = prepare(ctx, selection)?;
    let observed = rt.block_on(observe(
        prepared.platform.as_ref(),
        prepared.project(),
        &prepared.artifacts,
    ))?;
    let plan = plan::compute(
        prepared.project(),
        &prepared.artifacts,
        &observed.owned,
        &observed.unowned,
    )?;
    Ok((prepared, observed, plan))
}

/// Renders `plan` in `output` format.
pub fn render(plan: &Plan, output: OutputFormat, color: bool) -> String {
    match output {
        OutputFormat::Text => render::text(plan, color),
        OutputFormat::Json => render::json(plan),
        OutputFormat::Markdown => render::markdown(plan),
    }
}

/// `fusionizer plan`.
pub fn command(
    ctx: &Context,
    selection: Selection,
    output: OutputFormat,
    detailed_exitcode: bool,
    out: Option<PathBuf>,
) -> Result<ExitCode> {
    let rt = runtime()?;
    let (prepared, observed, plan) = make_plan(ctx, &rt, selection)?;
    ui::out(&render(&plan, output, ctx.ui.color));
    if let Some(written) = out {
        let path = if written.is_absolute() {
            written.clone()
        } else {
            ctx.cwd.join(&written)
        };
        SavedPlan::new(
            plan.clone(),
            selection,
            prepared.platform.identity(),
            &prepared.artifacts,
            &observed.owned,
        )
        .write(&path)?;
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
