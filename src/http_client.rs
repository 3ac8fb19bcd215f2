//! The one HTTP client stack fusionizer uses (hyper-util's pooled legacy client): serve's calls
//! to functions on Nuclio and the CLI's calls to a running serve (`cli::serve_client`, which adds
//! its own deadline and body limit).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// A pooled keep-alive HTTP/1 client with full-buffer request bodies.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client with `TCP_NODELAY`, a 10 s connect timeout and a 60 s idle pool timeout. Call it
/// inside a tokio runtime.
pub fn http_client() -> HttpClient {
    http_client_connecting_within(Duration::from_secs(10))
}

/// [`http_client`] with another connect timeout. It bounds only the TCP connect: a caller that
/// must not wait for ever on a server that accepts and never answers puts its own deadline
/// around the request and a limit on the body it reads.
pub fn http_client_connecting_within(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}
