//! `fusionizer validate`: loads fusion.toml with every task, checks the tasks' Python (syntax,
//! handler; `config::pycheck`) and also fuses the grouping of every phase, so a merge conflict
//! is caught before anything is deployed.

use std::time::Duration;

use super::Context;
use crate::config;
use crate::error::{Error, ExitCode, Result};
use crate::fuse::FuseProblem;
use crate::schedule::{self, Selection};
use crate::ui::plural;
use crate::workspace;

/// `fusionizer validate`: every problem of fusion.toml, the task specs and the merge of every
/// phase's groups at once (exit 78), or a one-line summary on stdout.
pub(super) fn command(ctx: &Context) -> Result<ExitCode> {
    let ws = ctx.checked_workspace()?;
    // Prebuilt images are named after the registry: without one, nothing can deploy.
    if ws.config.nuctl.images == config::ImageMode::Prebuilt {
        workspace::check_deploy_settings(&ws)?;
    }

    // The groupings to check: the start (when it is not already a phase) and every phase.
    let mut selections: Vec<(String, Selection)> = Vec::new();
    if schedule::phase_at(&ws.config, Duration::ZERO).is_none() {
        selections.push(("start".to_string(), Selection::At(Duration::ZERO)));
    }
    for n in 1..=ws.config.phases.len() {
        selections.push((format!("phase {n}"), Selection::Phase(n)));
    }
    // Each distinct problem → the groupings where it occurs, in order of first appearance.
    let mut problems: Vec<(FuseProblem, Vec<String>)> = Vec::new();
    for (label, selection) in selections {
        let Err(failure) = workspace::fuse_problems(&ws, selection)? else {
            continue;
        };
        for problem in failure.problems {
            if problem.error.is_io() {
                return Err(Error::from(crate::fuse::FuseFailure {
                    failed_groups: 1,
                    problems: vec![problem],
                }));
            }
            match problems.iter_mut().find(|(p, _)| *p == problem) {
                Some((_, labels)) => labels.push(label.clone()),
                None => problems.push((problem, vec![label.clone()])),
            }
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        let mut err = Error::new(
            ExitCode::Config,
            format!(
                "invalid configuration: the groups cannot be fused ({n} problem{})",
                plural(n)
            ),
        );
        err.hint = crate::fuse::hints(&problems.iter().map(|(p, _)| p).collect::<Vec<_>>());
        err.details = problems
            .iter()
            .map(|(problem, labels)| format!("{}: {problem}", labels.join(", ")))
            .collect();
        return Err(err);
    }

    let tasks = ws.config.tasks.len();
    let uploads = tasks - ws.specs.len();
    let phases = ws.config.phases.len();
    let file = ws
        .config
        .file
        .file_name()
        .map_or_else(|| config::FILE_NAME.into(), |f| f.to_string_lossy());
    let uploads = if uploads > 0 {
        format!(" ({uploads} by upload)")
    } else {
        String::new()
    };
    crate::ui::outln(&format!(
        "{file} is valid: {tasks} task{}{uploads}, {phases} phase{}",
        plural(tasks),
        plural(phases)
    ));
    Ok(ExitCode::Success)
}
