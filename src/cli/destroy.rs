//! `fusionizer destroy`: plan the deletion of every function this project owns (`plan
//! --destroy`), then confirm, lock, execute and report exactly as `apply` does.

use std::time::Duration;

use super::apply::{carry_out, lock, Verb};
use super::Context;
use crate::error::{ExitCode, Result};
use crate::workspace::{compute_plan, observe, prepare_destroy, runtime};

/// Resolved `fusionizer destroy` arguments.
#[derive(Debug, Clone)]
pub(super) struct DestroyArgs {
    pub(super) auto_approve: bool,
    pub(super) parallelism: usize,
    pub(super) lock_timeout: Duration,
}

/// `fusionizer destroy`.
pub(super) fn command(ctx: &Context, args: DestroyArgs) -> Result<ExitCode> {
    let rt = runtime()?;
    let prepared = prepare_destroy(ctx.workspace()?)?;
    let _lock = lock(&prepared, "fusionizer destroy", args.lock_timeout)?;
    let observed = rt.block_on(observe(
        prepared.platform.as_ref(),
        prepared.project(),
        &prepared.artifacts,
    ))?;
    let plan = compute_plan(&prepared, &observed)?;
    carry_out(
        ctx,
        &rt,
        &prepared,
        &plan,
        !args.auto_approve,
        args.parallelism,
        Verb::Destroy,
    )
}
