//! Apply: carry out a plan on a platform — creates and updates first (in parallel, each waited
//! for until ready), then deletes — under an advisory lock.

use std::path::PathBuf;
use std::time::Duration;

use crate::schedule::Selection;
use crate::{Context, ExitCode, Result};

/// Resolved `fusionizer apply` arguments.
#[derive(Debug, Clone)]
pub struct ApplyArgs {
    pub plan_file: Option<PathBuf>,
    pub selection: Selection,
    pub auto_approve: bool,
    pub parallelism: usize,
    pub lock_timeout: Duration,
}

/// `fusionizer apply`.
pub fn command(ctx: &Context, args: ApplyArgs) -> Result<ExitCode> {
    let _ = (ctx, args);
    todo!("apply")
}
