//! `fusionizer status`: the live owned functions, their tasks, state and digest, and drift
//! against the chosen grouping.

use crate::cli::OutputFormat;
use crate::schedule::Selection;
use crate::{Context, ExitCode, Result};

/// `fusionizer status`.
pub fn command(ctx: &Context, selection: Selection, output: OutputFormat) -> Result<ExitCode> {
    let _ = (ctx, selection, output);
    todo!("status")
}
