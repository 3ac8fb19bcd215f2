//! Plan: the diff between the fused artifacts of a grouping and the live functions owned by the
//! project, its renderings (text, JSON, markdown) and saved plan files.

use std::path::PathBuf;

use crate::cli::OutputFormat;
use crate::schedule::Selection;
use crate::{Context, ExitCode, Result};

/// `fusionizer plan`.
pub fn command(
    ctx: &Context,
    selection: Selection,
    output: OutputFormat,
    detailed_exitcode: bool,
    out: Option<PathBuf>,
) -> Result<ExitCode> {
    let _ = (ctx, selection, output, detailed_exitcode, out);
    todo!("plan")
}
