//! `fusionizer serve`: the invocation proxy, the schedule runner and the HTTP API; and
//! `fusionizer invoke`, its client.

use crate::{Context, ExitCode, Result};

/// Resolved `fusionizer serve` arguments.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    pub listen: Option<String>,
    pub phase: Option<usize>,
    pub no_schedule: bool,
    pub insecure: bool,
    pub watch: bool,
}

/// `fusionizer serve`.
pub fn command(ctx: &Context, args: ServeArgs) -> Result<ExitCode> {
    let _ = (ctx, args);
    todo!("serve")
}

/// `fusionizer invoke TASK`.
pub fn invoke_command(
    ctx: &Context,
    task: &str,
    data: Option<String>,
    headers: Vec<String>,
    server: Option<String>,
) -> Result<ExitCode> {
    let _ = (ctx, task, data, headers, server);
    todo!("invoke")
}
