//! `fusionizer serve`: the invocation proxy and the schedule runner (see [`crate::serve`]).

use super::Context;
use crate::error::{ExitCode, Result};
use crate::serve::{self, ServeArgs};

/// `fusionizer serve`.
pub(super) fn command(ctx: &Context, args: ServeArgs) -> Result<ExitCode> {
    serve::run(&ctx.ui, ctx.workspace()?, args)
}
