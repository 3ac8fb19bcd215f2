//! `fusionizer traces export FILE [--from URL]`: fetches the trace document from a running
//! `fusionizer serve` (`GET /-/traces`) and writes it as JSON Lines (docs/traces.md).

use std::path::Path;

use http_body_util::{BodyExt, Full};

use super::args::TracesCommand;
use super::Context;
use crate::config;
use crate::error::{Error, ExitCode, Result};
use crate::http_client::http_client;
use crate::ui;
use crate::workspace::runtime;

/// `fusionizer traces …`.
pub(super) fn command(ctx: &Context, command: TracesCommand) -> Result<ExitCode> {
    match command {
        TracesCommand::Export { file, from } => export(ctx, &file, from),
    }
}

/// The base URL of the serve to ask: `--from`, else `[serve] listen` of fusion.toml, else the
/// default listen address.
fn base_url(ctx: &Context, from: Option<String>) -> String {
    let server = from.unwrap_or_else(|| match ctx.config_path().ok().map(|p| config::load(&p)) {
        Some(Ok(ws)) => ws.config.serve.listen.clone(),
        _ => config::ServeConfig::default().listen,
    });
    let server = server.trim_end_matches('/');
    let server = server.strip_suffix("/-/traces").unwrap_or(server);
    if server.starts_with("http://") || server.starts_with("https://") {
        server.to_string()
    } else {
        format!("http://{server}")
    }
}

fn export(ctx: &Context, file: &Path, from: Option<String>) -> Result<ExitCode> {
    let base = base_url(ctx, from);
    let url = format!("{base}/-/traces");
    let request = hyper::Request::get(&url)
        .header("Accept", "application/json")
        .body(Full::new(bytes::Bytes::new()))
        .map_err(|e| Error::usage(format!("invalid URL `{url}`: {e}")))?;
    let rt = runtime()?;
    let (status, body) = rt.block_on(async {
        let response = http_client().request(request).await.map_err(|e| {
            Error::new(
                ExitCode::Unavailable,
                format!("could not reach fusionizer serve at `{base}`: {e}"),
            )
            .with_hint("start it with `fusionizer serve`, or pass `--from URL`")
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::failure(format!("reading `{url}` failed: {e}")))?
            .to_bytes();
        Ok::<_, Error>((status, body))
    })?;
    if !status.is_success() {
        return Err(Error::failure(format!(
            "`{url}` answered {status}: {}",
            String::from_utf8_lossy(&body).trim_end()
        ))
        .with_hint("is this a fusionizer serve that records traces?"));
    }
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
