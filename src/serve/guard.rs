//! Who may talk to serve at all, checked before any handler runs (docs/security.md).
//!
//! - **`Host`** must name this server: `localhost`, a loopback address, the listen address, the
//!   address the connection arrived on, `[serve] advertise`, the host of `[nuctl] proxy-url`, or
//!   an entry of `[serve] allowed-hosts`. A web page that rebinds its own name to 127.0.0.1 (DNS
//!   rebinding) still sends its own name, and is refused with 403.
//! - **`Origin`**, when a request carries one (browsers send it on every cross-origin `POST`,
//!   and on CORS requests; curl, SDKs and Nuclio functions don't), must be serve's own (its
//!   host and port are the request's `Host`) or an entry of `[serve] allowed-origins`. A page on
//!   another origin cannot make serve run anything, even with a "simple" `POST` that the browser
//!   sends without a preflight. serve grants no CORS: no response carries
//!   `Access-Control-Allow-*`, so a browser never sends a preflighted request at all.
//!
//! Ports are not compared in `Host`: a rebinding page cannot choose its name, while any page can
//! choose a port.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The connection a request came on: the peer, and the local address it arrived at. Set on
/// every request by the listener (`serve::listener`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Connection {
    /// The client's address.
    pub(super) peer: SocketAddr,
    /// This server's address on that connection (for a listener on `0.0.0.0`, the interface the
    /// client reached).
    pub(super) local: SocketAddr,
}

/// A host name pattern of `allowed-hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `*`: any host.
    Any,
    /// `*.example.com`: any subdomain (not the domain itself).
    Subdomains(String),
    /// One name or address, lowercase, IPv6 without brackets.
    Exact(String),
}

impl HostPattern {
    fn parse(text: &str) -> Self {
        let text = text.to_ascii_lowercase();
        if text == "*" {
            HostPattern::Any
        } else if let Some(domain) = text.strip_prefix("*.") {
            HostPattern::Subdomains(format!(".{}", domain.trim_end_matches('.')))
        } else {
            HostPattern::Exact(normalize_host(&text))
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Subdomains(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Exact(name) => name == host,
        }
    }
}

/// The policy: see the module docs.
#[derive(Debug, Clone)]
pub(super) struct Guard {
    listen: IpAddr,
    hosts: Vec<HostPattern>,
    any_origin: bool,
    origins: Vec<String>,
}

/// Where a request's `Host` (or `:authority`) points, lowercase, IPv6 without brackets, no
/// trailing dot, and its port if it has one.
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
}

impl Authority {
    /// `host`, `host:port`, `[v6]`, `[v6]:port`; `None` for anything else.
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inner, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?.parse().ok()?),
            };
            (inner, port)
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port.parse().ok()?)),
                None => (text, None),
            }
        };
        if host.is_empty() {
            return None;
        }
        Some(Authority {
            host: normalize_host(host),
            port,
        })
    }

    /// This authority with `default` as its port when it names none.
    fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }
}

fn normalize_host(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` (normalized) is a name or address of this machine's loopback.
pub(super) fn is_loopback_name(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `Host` names another server.
    Host(String),
    /// `Origin` is a page of another origin.
    Origin(String),
}

impl Guard {
    /// The policy for serve listening on `listen`, with `advertise` and `proxy_host` (the host
    /// functions reach serve at), and the two lists of `[serve]`.
    pub(super) fn new(
        listen: IpAddr,
        advertise: &str,
        proxy_host: Option<&str>,
        allowed_hosts: &[String],
        allowed_origins: &[String],
    ) -> Self {
        let mut hosts = vec![HostPattern::parse(advertise)];
        hosts.extend(proxy_host.map(HostPattern::parse));
        hosts.extend(allowed_hosts.iter().map(|h| HostPattern::parse(h)));
        Guard {
            listen: listen.to_canonical(),
            hosts,
            any_origin: allowed_origins.iter().any(|o| o == "*"),
            origins: allowed_origins
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Checks a request's `Host` and `Origin` (see the module docs).
    pub(super) fn check(
        &self,
        headers: &HeaderMap,
        uri: &axum::http::Uri,
        connection: Option<Connection>,
    ) -> Result<(), Refusal> {
        let host_text = match headers.get(header::HOST) {
            // A `Host` that is not text names nothing serve answers for.
            Some(value) => Some(value.to_str().unwrap_or("\u{fffd}").to_string()),
            None => uri.authority().map(ToString::to_string),
        };
        // No `Host` at all: HTTP/1.0 from a tool; no browser omits it.
        let host = match host_text.as_deref() {
            None => None,
            Some(text) => match Authority::parse(text) {
                Some(authority) if self.host_allowed(&authority.host, connection) => {
                    Some(authority)
                }
                _ => return Err(Refusal::Host(shown(host_text.as_deref().unwrap_or("")))),
            },
        };
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("");
        if self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return Ok(());
        }
        if host.is_some_and(|host| same_origin(origin, &host)) {
            return Ok(());
        }
        Err(Refusal::Origin(shown(origin)))
    }

    fn host_allowed(&self, host: &str, connection: Option<Connection>) -> bool {
        if is_loopback_name(host) || self.hosts.iter().any(|p| p.matches(host)) {
            return true;
        }
        let Ok(ip) = host.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            return false;
        };
        !ip.is_unspecified()
            && (ip == self.listen || connection.is_some_and(|c| c.local.ip().to_canonical() == ip))
    }

    /// Whether a request came from this machine and names it: `/-/state` then needs no token. A
    /// request relayed by a local proxy for a remote client names another host, so it does not
    /// count.
    pub(super) fn is_local(headers: &HeaderMap, connection: Option<Connection>) -> bool {
        let peer_local = connection.is_some_and(|c| c.peer.ip().to_canonical().is_loopback());
        let host_local = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(Authority::parse)
            .is_some_and(|a| is_loopback_name(&a.host));
        peer_local && host_local
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the page of the server reached at `host`.
fn same_origin(origin: &str, host: &Authority) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let Some(origin) = Authority::parse(rest) else {
        return false;
    };
    // The scheme is not compared: a TLS-terminating proxy in front of serve makes its pages
    // `https://` while serve itself speaks HTTP; the host already passed the `Host` check.
    origin.host == host.host && origin.port_or(default) == host.port_or(default)
}

/// At most the first 100 characters of a client's value, escaped, for a message.
fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(100)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > 100 {
        out.push('…');
    }
    out
}

/// The middleware: refuses with 403 what [`Guard::check`] refuses, before any handler runs,
/// with `Connection: close` (the rest of a refused body is not read).
pub(super) async fn enforce(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let connection = request.extensions().get::<Connection>().copied();
    match guard.check(request.headers(), request.uri(), connection) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            let message = match &refusal {
                Refusal::Host(host) => {
                    tracing::warn!(
                        host = %host,
                        "refused a request for another host (DNS rebinding?); list the name in \
                         `[serve] allowed-hosts` if it is serve's"
                    );
                    format!(
                        "serve does not answer for host `{host}`; if this is serve's name, add it \
                         to `[serve] allowed-hosts` in fusion.toml\n"
                    )
                }
                Refusal::Origin(origin) => {
                    tracing::warn!(
                        origin = %origin,
                        "refused a request from a web page of another origin; list it in \
                         `[serve] allowed-origins` to allow it"
                    );
                    format!(
                        "serve does not answer pages of origin `{origin}`; to allow it, add it to \
                         `[serve] allowed-origins` in fusion.toml\n"
                    )
                }
            };
            (
                StatusCode::FORBIDDEN,
                [
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (header::CONNECTION, "close"),
                ],
                message,
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, Uri};

    fn guard() -> Guard {
        Guard::new(
            "127.0.0.1".parse().unwrap(),
            "127.0.0.1",
            Some("fusionizer.tools.svc.cluster.local"),
            &["serve.example.test".to_string(), "*.apps.test".to_string()],
            &["http://localhost:3000".to_string()],
        )
    }

    fn check(guard: &Guard, host: Option<&str>, origin: Option<&str>) -> Result<(), Refusal> {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        let connection = Connection {
            peer: "127.0.0.1:50000".parse().unwrap(),
            local: "192.0.2.7:8000".parse().unwrap(),
        };
        guard.check(&headers, &Uri::from_static("/taska"), Some(connection))
    }

    #[test]
    fn hosts_that_name_this_server_pass() {
        let g = guard();
        for host in [
            "localhost",
            "LOCALHOST:8000",
            "localhost.",
            "app.localhost:1",
            "127.0.0.1:8000",
            "127.1.2.3",
            "[::1]:8000",
            "[::ffff:127.0.0.1]",
            "192.0.2.7:8000",
            "serve.example.test",
            "a.apps.test",
            "fusionizer.tools.svc.cluster.local:8000",
        ] {
            assert_eq!(check(&g, Some(host), None), Ok(()), "{host}");
        }
        assert_eq!(check(&g, None, None), Ok(()));
    }

    #[test]
    fn a_host_that_is_not_text_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_bytes(b"evil\xff.test").unwrap(),
        );
        assert!(matches!(
            guard().check(&headers, &Uri::from_static("/taska"), None),
            Err(Refusal::Host(_))
        ));
    }

    #[test]
    fn other_hosts_are_refused() {
        let g = guard();
        for host in [
            "evil.test",
            "evil.test:8000",
            "127.0.0.1.evil.test",
            "localhost.evil.test",
            "apps.test",
            "192.0.2.8",
            "[::2]",
            "",
            "a:b:c",
        ] {
            assert!(
                matches!(check(&g, Some(host), None), Err(Refusal::Host(_))),
                "{host}"
            );
        }
    }

    #[test]
    fn any_host_allows_everything() {
        let g = Guard::new(
            "0.0.0.0".parse().unwrap(),
            "127.0.0.1",
            None,
            &["*".to_string()],
            &[],
        );
        assert_eq!(check(&g, Some("whatever.test"), None), Ok(()));
    }

    #[test]
    fn origins_must_be_serves_own_or_listed() {
        let g = guard();
        let host = Some("127.0.0.1:8000");
        assert_eq!(check(&g, host, Some("http://127.0.0.1:8000")), Ok(()));
        assert_eq!(check(&g, host, Some("https://127.0.0.1:8000")), Ok(()));
        assert_eq!(check(&g, host, Some("http://localhost:3000")), Ok(()));
        assert_eq!(
            check(&g, Some("localhost"), Some("http://localhost:80")),
            Ok(())
        );
        for origin in [
            "http://127.0.0.1:9000",
            "http://evil.test",
            "null",
            "http://localhost:3001",
            "file://",
            "",
        ] {
            assert!(
                matches!(check(&g, host, Some(origin)), Err(Refusal::Origin(_))),
                "{origin}"
            );
        }
        // Without `Host` nothing is serve's own origin.
        assert!(check(&g, None, Some("http://127.0.0.1:8000")).is_err());
    }

    #[test]
    fn only_a_local_peer_naming_a_loopback_host_is_local() {
        let connection = |peer: &str| Connection {
            peer: peer.parse().unwrap(),
            local: "127.0.0.1:8000".parse().unwrap(),
        };
        let headers = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            h
        };
        assert!(Guard::is_local(
            &headers("127.0.0.1:8000"),
            Some(connection("127.0.0.1:1"))
        ));
        assert!(!Guard::is_local(
            &headers("serve.example.test"),
            Some(connection("127.0.0.1:1"))
        ));
        assert!(!Guard::is_local(
            &headers("localhost"),
            Some(connection("192.0.2.1:1"))
        ));
        assert!(!Guard::is_local(&headers("localhost"), None));
    }
}
