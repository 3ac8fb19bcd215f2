//! The one client for a running `fusionizer serve`, used by `invoke`, `traces export` and
//! `optimize --from/--live`. It reads an address one way (`HOST:PORT` or `http://HOST:PORT`,
//! optionally with a path; `https://` is refused, since serve and this client speak plain HTTP),
//! words "could not reach" one way, puts one deadline (`--timeout`) around the whole exchange
//! (connect, request, answer and body), reads at most a given number of body bytes, and cuts
//! error pages short in messages: a server that accepts and never answers, or that sends an
//! endless body, ends the command with a clear error instead of holding it. Without `--server`
//! it finds the serve running for this project ([`default_address`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body as _;
use hyper::{Request, StatusCode, Uri};

use super::Context;
use crate::config;
use crate::error::{Error, ExitCode, Result};
use crate::http_client::http_client_connecting_within;
use crate::serve::address::{Found, ServeAddress};
use crate::workspace::runtime;

/// The flag that names a running serve, in every command that talks to one.
pub(super) const SERVER_FLAG: &str = "--server";

/// One mebibyte, for the body limits.
pub(super) const MIB: usize = 1024 * 1024;

/// The largest trace document read from serve (`traces export`, `optimize --from`); serve's
/// bounds keep it far smaller.
pub(super) const MAX_TRACES_BYTES: usize = 64 * MIB;

/// The longest a TCP connect may take, even with a longer `--timeout`: a host that does not
/// complete a handshake in that time is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an error page a message shows.
const EXCERPT_BYTES: usize = 2048;

/// A running serve at one address.
#[derive(Debug)]
pub(super) struct ServeClient {
    /// `http://HOST:PORT`.
    origin: String,
    /// The path of the address as given (`/` when it had none).
    path: String,
    /// The flag the address came from (`--server`, `--from`), for hints.
    flag: &'static str,
    /// The deadline of one exchange.
    timeout: Duration,
}

/// What serve answered.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Bytes,
}

impl Answer {
    /// The body of a 2xx answer; any other status is an error saying that `who` answered it,
    /// with the start of the body ([`excerpt`]).
    pub(super) fn success(self, who: &str) -> Result<Bytes> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(Error::failure(format!(
                "{who} answered {}: {}",
                self.status,
                excerpt(&self.body)
            )))
        }
    }
}

impl ServeClient {
    /// The serve at `address` (`HOST:PORT`, `http://HOST:PORT[/PATH]`), given with `flag`. A
    /// usage error (exit 64) names the address when it is not one this client can talk to.
    pub(super) fn new(address: &str, flag: &'static str, timeout: Duration) -> Result<Self> {
        let text = address.trim();
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let invalid = |reason: String| {
            Error::usage(format!("`{flag} {address}`: {reason}"))
                .with_hint("pass `HOST:PORT` or `http://HOST:PORT` of a running `fusionizer serve`")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|e| invalid(format!("not an address: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(
                    Error::usage(format!("`{flag} {address}`: HTTPS is not supported")).with_hint(
                        "serve speaks plain HTTP: use `http://HOST:PORT` (for a serve on another \
                     machine, through a tunnel such as `ssh -L`)",
                    ),
                )
            }
            _ => {
                return Err(invalid(
                    "only `http://` addresses are supported".to_string(),
                ))
            }
        }
        let Some(authority) = uri.authority() else {
            return Err(invalid("no host".to_string()));
        };
        Ok(ServeClient {
            origin: format!("http://{authority}"),
            path: uri.path().to_string(),
            flag,
            timeout,
        })
    }

    /// The path of the address as given: `/` when it had none.
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    /// The URL of `path` (which starts with `/`) on this serve.
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// `GET path` (JSON accepted), requiring a 2xx answer; at most `limit` body bytes. Any other
    /// status is an error naming the URL and the start of the body.
    pub(super) fn get(&self, path: &str, limit: usize) -> Result<Bytes> {
        let url = self.url(path);
        let request = Request::get(&url)
            .header("Accept", "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::usage(format!("invalid URL `{url}`: {e}")))?;
        self.send(request, limit)?
            .success(&format!("`{url}`"))
            .map_err(|e| {
                e.with_hint(format!(
                    "is `{}` a fusionizer serve of this version?",
                    self.origin
                ))
            })
    }

    /// Sends `request` (its URI from [`ServeClient::url`]) and reads the answer, at most
    /// `limit` body bytes, all within the timeout. Blocks; call it outside a runtime.
    pub(super) fn send(&self, request: Request<Full<Bytes>>, limit: usize) -> Result<Answer> {
        runtime()?.block_on(self.exchange(request, limit))
    }

    async fn exchange(&self, request: Request<Full<Bytes>>, limit: usize) -> Result<Answer> {
        let what = format!("{} {}", request.method(), request.uri().path());
        let url = request.uri().to_string();
        let client = http_client_connecting_within(self.timeout.min(CONNECT_TIMEOUT));
        let work = async {
            let response = client.request(request).await.map_err(|e| {
                Error::new(
                    ExitCode::Unavailable,
                    format!(
                        "could not reach fusionizer serve at `{}`: {}",
                        self.origin,
                        Error::chain(&e)
                    ),
                )
                .with_hint(format!(
                    "start it with `fusionizer serve`, or pass `{} http://HOST:PORT` of the one \
                     that runs",
                    self.flag
                ))
            })?;
            let status = response.status();
            let over_limit = || {
                Error::failure(format!(
                    "`{url}` answered {status} with a body over {}, the most fusionizer reads \
                     here",
                    size(limit)
                ))
                .with_hint(format!("is `{}` a fusionizer serve?", self.origin))
            };
            // A declared length over the limit is refused before a byte of it is read.
            if response.body().size_hint().lower() > limit as u64 {
                return Err(over_limit());
            }
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        over_limit()
                    } else {
                        Error::failure(format!("reading the answer of `{url}` failed: {e}"))
                    }
                })?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| {
                Error::new(
                    ExitCode::Unavailable,
                    format!(
                        "fusionizer serve at `{}` did not answer `{what}` within {}",
                        self.origin,
                        humantime::format_duration(self.timeout)
                    ),
                )
                .with_hint(format!(
                    "pass a longer `--timeout` (e.g. `--timeout 2m`) to wait longer, or check \
                     that `{}` is a fusionizer serve",
                    self.origin
                ))
            })?
    }
}

/// The serve to talk to when no `--server` is given: the one running for this project (recorded
/// in its state dir by serve), else `[serve] listen` of fusion.toml, else the default listen
/// address. A record left by a serve that is gone is not used, and a note on stderr says so.
pub(super) fn default_address(ctx: &Context) -> String {
    let config_path = ctx.config_path().ok();
    let loaded = config_path
        .as_deref()
        .map(|path| config::load_with(path, &ctx.load_options()))
        .and_then(Result::ok);
    let state_dir = match (&loaded, &config_path, &ctx.state_dir) {
        (Some(ws), _, _) => Some(ws.config.state_dir()),
        // A fusion.toml with problems still has a state dir: the one given, else beside it.
        (None, _, Some(given)) => Some(given.path.clone()),
        (None, Some(path), None) => path
            .parent()
            .map(|dir| dir.join(crate::contract::STATE_DIR)),
        (None, None, None) => None,
    };
    let fallback = loaded.map_or_else(
        || config::ServeConfig::default().listen,
        |ws| ws.config.serve.listen.clone(),
    );
    match state_dir.map(|dir| ServeAddress::find(&dir)) {
        Some(Found::Running(record)) => record.url,
        Some(Found::Stale { file, why }) => {
            ctx.ui.status(&format!(
                "note: `{}` {why}; using {fallback} (pass `{SERVER_FLAG} URL` to choose)",
                config::display_path(&file)
            ));
            fallback
        }
        Some(Found::None) | None => fallback,
    }
}

/// `limit` in words: `64 MiB`, or bytes when it is not a whole number of MiB.
fn size(limit: usize) -> String {
    if limit >= MIB && limit.is_multiple_of(MIB) {
        format!("{} MiB", limit / MIB)
    } else {
        format!("{limit} bytes")
    }
}

/// The start of `body` for an error message: at most [`EXCERPT_BYTES`], cut on a character
/// boundary, control characters (a terminal's escape sequences) replaced, and how many bytes
/// were left out.
fn excerpt(body: &[u8]) -> String {
    let mut cut = body.len().min(EXCERPT_BYTES);
    if let Err(e) = std::str::from_utf8(&body[..cut]) {
        if e.error_len().is_none() {
            // A character cut in two at the end: leave it out whole.
            cut = e.valid_up_to();
        }
    }
    let text: String = String::from_utf8_lossy(&body[..cut])
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect();
    let text = text.trim();
    match body.len() - cut {
        0 => text.to_string(),
        rest => format!("{text}… ({rest} more bytes)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_one_way_and_https_is_refused_naming_it() {
        let second = Duration::from_secs(1);
        let client = ServeClient::new("127.0.0.1:8000", "--server", second).unwrap();
        assert_eq!(client.url("/-/traces"), "http://127.0.0.1:8000/-/traces");
        assert_eq!(client.path(), "/");
        let client = ServeClient::new("http://localhost:9/prefix/", "--from", second).unwrap();
        assert_eq!(client.url("/x"), "http://localhost:9/x");
        assert_eq!(client.path(), "/prefix/");
        let err = ServeClient::new("https://127.0.0.1:8000", "--from", second).unwrap_err();
        assert_eq!(err.code, ExitCode::Usage);
        assert!(
            err.message
                .contains("`--from https://127.0.0.1:8000`: HTTPS is not supported"),
            "{err:?}"
        );
        let err = ServeClient::new("ftp://host", "--server", second).unwrap_err();
        assert!(err.message.contains("only `http://`"), "{err:?}");
        let err = ServeClient::new("http://", "--server", second).unwrap_err();
        assert_eq!(err.code, ExitCode::Usage, "{err:?}");
    }

    #[test]
    fn an_excerpt_keeps_the_start_and_counts_the_rest() {
        assert_eq!(excerpt(b"  busy\n"), "busy");
        let page = vec![b'x'; 5_000_000];
        let shown = excerpt(&page);
        assert!(shown.starts_with(&"x".repeat(EXCERPT_BYTES)), "{shown}");
        assert!(shown.ends_with(&format!("… ({} more bytes)", 5_000_000 - EXCERPT_BYTES)));
        assert!(shown.len() < EXCERPT_BYTES + 40, "{}", shown.len());
        // A two-byte character across the cut is left out whole; escapes do not reach the
        // terminal.
        let mut page = vec![b'a'; EXCERPT_BYTES - 1];
        page.extend_from_slice("é and more".as_bytes());
        assert!(excerpt(&page).ends_with("a… (11 more bytes)"));
        assert_eq!(excerpt(b"\x1b[2Jgone"), "\u{FFFD}[2Jgone");
    }
}
