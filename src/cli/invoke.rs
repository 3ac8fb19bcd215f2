//! `fusionizer invoke TASK`: posts to a running `fusionizer serve` and prints the body.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use super::serve_client::{default_address, ServeClient, MIB, SERVER_FLAG};
use super::Context;
use crate::error::{Error, ExitCode, Result};
use crate::ui;

/// The largest answer read: far above what a task usually answers (serve bounds request bodies
/// by `[serve] max-body-size`, 4 MiB by default), and bounded.
const MAX_ANSWER_BYTES: usize = 64 * MIB;

/// `fusionizer invoke TASK`: posts to the running proxy and prints the body; non-2xx exits 1.
pub(super) fn command(
    ctx: &Context,
    task: &str,
    data: Option<String>,
    headers: Vec<String>,
    server: Option<String>,
    timeout: Duration,
) -> Result<ExitCode> {
    let server = server.unwrap_or_else(|| default_address(ctx));
    let client = ServeClient::new(&server, SERVER_FLAG, timeout)?;
    let body = read_body(data.as_deref())?;
    let url = client.url(&format!("{}/{task}", client.path().trim_end_matches('/')));
    let request = build_request(&url, &headers, body)?;
    let body = client
        .send(request, MAX_ANSWER_BYTES)?
        .success(&format!("`{task}`"))?;
    let mut text = String::from_utf8_lossy(&body).into_owned();
    if !text.ends_with('\n') && !text.is_empty() {
        text.push('\n');
    }
    ui::out(&text);
    Ok(ExitCode::Success)
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
