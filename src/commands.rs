//! The configuration-level commands: `validate`, `build`, `init`, `completions`.

use std::path::PathBuf;

use crate::cli::OutputFormat;
use crate::schedule::Selection;
use crate::{Context, ExitCode, Result};

/// `fusionizer validate`.
pub fn validate(ctx: &Context) -> Result<ExitCode> {
    let _ = ctx;
    todo!("validate")
}

/// `fusionizer build`.
pub fn build(
    ctx: &Context,
    selection: Selection,
    out: Option<PathBuf>,
    output: OutputFormat,
) -> Result<ExitCode> {
    let _ = (ctx, selection, out, output);
    todo!("build")
}

/// `fusionizer init`.
pub fn init(ctx: &Context, dir: Option<PathBuf>, name: Option<String>) -> Result<ExitCode> {
    let _ = (ctx, dir, name);
    todo!("init")
}

/// `fusionizer completions <shell>`.
pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    use clap::CommandFactory;
    let mut cmd = crate::cli::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "fusionizer", &mut buf);
    crate::ui::out(&String::from_utf8_lossy(&buf));
    Ok(ExitCode::Success)
}
