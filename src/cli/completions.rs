//! `fusionizer completions SHELL`.

use crate::error::{ExitCode, Result};

/// `fusionizer completions <shell>`.
pub(super) fn command(shell: clap_complete::Shell) -> Result<ExitCode> {
    use clap::CommandFactory;
    let mut cmd = super::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "fusionizer", &mut buf);
    crate::ui::out(&String::from_utf8_lossy(&buf));
    Ok(ExitCode::Success)
}
