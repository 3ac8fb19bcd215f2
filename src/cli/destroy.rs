//! `fusionizer destroy`: plan the deletion of every function this project owns (`plan
//! --destroy`), then lock, confirm, execute and report as `apply` does ([`super::carry_out`]).

use std::time::Duration;

use super::carry_out::{carry_out, CarryOut};
use super::Context;
use crate::error::{ExitCode, Result};
use crate::plan::Desired;
use crate::workspace::{self, runtime};

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
    let mut prepared = workspace::open(ctx.workspace()?, Desired::Nothing)?;
    let how = CarryOut {
        command_line: "fusionizer destroy",
        lock_timeout: args.lock_timeout,
        saved: None,
        ask: !args.auto_approve,
        parallelism: args.parallelism,
    };
    carry_out(ctx, &rt, &mut prepared, &how)
}
