//! `fusionizer traces export FILE [--server URL]`: fetches the trace document from a running
//! `fusionizer serve` (`GET /-/traces`) and writes it as JSON Lines (docs/traces.md).

use std::path::Path;
use std::time::Duration;

use super::args::TracesCommand;
use super::serve_client::{default_address, ServeClient, MAX_TRACES_BYTES, SERVER_FLAG};
use super::Context;
use crate::error::{Error, ExitCode, Result};
use crate::ui;

/// `fusionizer traces …`.
pub(super) fn command(ctx: &Context, command: TracesCommand) -> Result<ExitCode> {
    match command {
        TracesCommand::Export {
            file,
            server,
            client,
        } => export(ctx, &file, server, client.timeout),
    }
}

/// The serve to ask: `--server` (alias `--from`), else the one running for this project, else
/// `[serve] listen` of fusion.toml, else the default listen address.
fn serve(ctx: &Context, server: Option<String>, timeout: Duration) -> Result<ServeClient> {
    let server = server.unwrap_or_else(|| default_address(ctx));
    ServeClient::new(&server, SERVER_FLAG, timeout)
}

fn export(
    ctx: &Context,
    file: &Path,
    server: Option<String>,
    timeout: Duration,
) -> Result<ExitCode> {
    let client = serve(ctx, server, timeout)?;
    // The address may name the endpoint itself, or a path prefix in front of serve.
    let prefix = client.path().trim_end_matches('/');
    let path = format!(
        "{}/-/traces",
        prefix.strip_suffix("/-/traces").unwrap_or(prefix)
    );
    let url = client.url(&path);
    let body = client.get(&path, MAX_TRACES_BYTES)?;
    let text = String::from_utf8_lossy(&body);
    let doc = crate::traces::parse(&text, &url).map_err(|e| Error::failure(e.to_string()))?;
    let lines = doc.to_json_lines();
    if file == Path::new("-") {
        ui::out(&lines);
    } else {
        let path = ctx.resolve(file);
        std::fs::write(&path, lines).map_err(|e| {
            Error::failure(format!("cannot write `{}`: {e}", path.display()))
                .with_hint("check that the directory exists and is writable")
        })?;
        ctx.ui.status(&format!(
            "Wrote {} edges, {} tasks and {} spans to {}",
            doc.edges.len(),
            doc.tasks.len(),
            doc.spans.len(),
            path.display()
        ));
    }
    Ok(ExitCode::Success)
}
