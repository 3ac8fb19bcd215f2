//! `fusionizer apply`: read a saved plan if given, then lock, plan (or check the saved plan is
//! still fresh), confirm, execute and report, as [`super::carry_out`] does for `destroy` too.

use std::path::PathBuf;
use std::time::Duration;

use super::carry_out::{carry_out, CarryOut};
use super::Context;
use crate::error::{Error, ExitCode, Result};
use crate::plan::saved::SavedPlan;
use crate::plan::Desired;
use crate::schedule::Selection;
use crate::workspace::{self, runtime};

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
    // The grouping: the saved plan's, the one given, or the one the live state records.
    let desired = match &saved {
        Some(saved) => saved.desired(),
        None => Desired::given(args.selection),
    };
    // A destroy (a saved `plan --destroy`) is checked against an empty desired set: nothing to
    // fuse, so fusion.toml's tasks need not be valid.
    let workspace = if desired.is_nothing() {
        ctx.workspace()?
    } else {
        ctx.checked_workspace()?
    };
    let mut prepared = workspace::open(workspace, desired)?;
    let command_line = match &args.plan_file {
        Some(p) => format!("fusionizer apply {}", p.display()),
        None => "fusionizer apply".to_string(),
    };
    let how = CarryOut {
        command_line: &command_line,
        lock_timeout: args.lock_timeout,
        saved: saved.as_ref().zip(args.plan_file.as_deref()),
        ask: plan_file.is_none() && !args.auto_approve,
        parallelism: args.parallelism,
    };
    carry_out(ctx, &rt, &mut prepared, &how)
}
