//! `fusionizer invoke TASK`: posts to a running `fusionizer serve` and prints the body.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::Context;
use crate::config;
use crate::error::{Error, ExitCode, Result};
use crate::http_client::http_client;
use crate::ui;
use crate::workspace::runtime;

/// `fusionizer invoke TASK`: posts to the running proxy and prints the body; non-2xx exits 1.
pub(super) fn command(
    ctx: &Context,
    task: &str,
    data: Option<String>,
    headers: Vec<String>,
    server: Option<String>,
) -> Result<ExitCode> {
    let server = match server {
        Some(s) => s,
        None => match ctx.config_path().ok().map(|p| config::load(&p)) {
            Some(Ok(ws)) => ws.config.serve.listen.clone(),
            _ => config::ServeConfig::default().listen,
        },
    };
    let base = if server.starts_with("http://") || server.starts_with("https://") {
        server
    } else {
        format!("http://{server}")
    };
    let body = read_body(data.as_deref())?;
    let request = build_request(&format!("{base}/{task}"), &headers, body)?;
    let rt = runtime()?;
    let (status, bytes) = rt.block_on(async {
        let response = http_client().request(request).await.map_err(|e| {
            Error::new(
                ExitCode::Unavailable,
                format!("could not reach fusionizer serve at `{base}`: {e}"),
            )
            .with_hint("start it with `fusionizer serve`, or pass `--server HOST:PORT`")
        })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::failure(format!("reading the response failed: {e}")))?
            .to_bytes();
        Ok::<_, Error>((status, bytes))
    })?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if !text.ends_with('\n') && !text.is_empty() {
        text.push('\n');
    }
    if status.is_success() {
        ui::out(&text);
        Ok(ExitCode::Success)
    } else {
        Err(Error::failure(format!(
            "`{task}` answered {status}: {}",
            text.trim_end()
        )))
    }
}

/// `--data`: JSON text, `@FILE`, or `-` for stdin.
fn read_body(data: Option<&str>) -> Result<Vec<u8>> {
    Ok(match data {
        None => Vec::new(),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| Error::failure(format!("cannot read stdin: {e}")))?;
            buf
        }
        Some(text) if text.starts_with('@') => std::fs::read(&text[1..])
            .map_err(|e| Error::failure(format!("cannot read `{}`: {e}", &text[1..])))?,
        Some(text) => text.as_bytes().to_vec(),
    })
}

/// A POST to `url` with the `-H` headers; `Content-Type` defaults to JSON when the body parses
/// as JSON and to text otherwise.
fn build_request(
    url: &str,
    headers: &[String],
    body: Vec<u8>,
) -> Result<hyper::Request<Full<Bytes>>> {
    let mut builder = hyper::Request::post(url);
    let mut has_content_type = false;
    for header in headers {
        let Some((name, value)) = header.split_once(':') else {
            return Err(Error::usage(format!(
                "invalid header `{header}`: use `Name: value`"
            )));
        };
        has_content_type |= name.trim().eq_ignore_ascii_case("content-type");
        builder = builder.header(name.trim(), value.trim());
    }
    if !has_content_type && !body.is_empty() {
        let looks_json = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
        builder = builder.header(
            "Content-Type",
            if looks_json {
                "application/json"
            } else {
                "text/plain"
            },
        );
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Error::usage(format!("invalid request to `{url}`: {e}")))
}
