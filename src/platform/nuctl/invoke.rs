//! Invoking a Nuclio function over HTTP, straight to its invocation URL.
//!
//! One pooled keep-alive client (hyper-util's legacy client) per platform. The address comes
//! from the platform's endpoint cache, never from a nuctl run per request; when a connection is
//! refused the cache entry is refreshed with one `nuctl get` and the request retried once (a
//! redeploy may have moved the function to another port).

use std::sync::Arc;

use async_trait::async_trait;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};

use crate::contract::is_hop_by_hop;
use crate::platform::{InvokeError, InvokeRequest, InvokeResponse, Invoker};

use super::Inner;

/// Sends requests to one function.
pub struct NuctlInvoker {
    pub(super) name: String,
    pub(super) inner: Arc<Inner>,
}

enum Attempt {
    Done(InvokeResponse),
    Refused(String),
}

impl NuctlInvoker {
    async fn attempt(&self, base: &str, request: &InvokeRequest) -> Result<Attempt, InvokeError> {
        let mut uri = format!("http://{base}");
        if !request.path.starts_with('/') {
            uri.push('/');
        }
        uri.push_str(&request.path);
        if !request.query.is_empty() {
            uri.push('?');
            uri.push_str(&request.query);
        }
        let method = if request.method.is_empty() {
            "POST"
        } else {
            &request.method
        };
        let mut builder = hyper::Request::builder().method(method).uri(&uri);
        for (name, value) in &request.headers {
            if is_hop_by_hop(name)
                || name.eq_ignore_ascii_case("task-name")
                || name.eq_ignore_ascii_case("x-nuclio-target")
            {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                builder = builder.header(n, v);
            }
        }
        if !request.task.is_empty() {
            builder = builder.header("task-name", request.task.as_str());
        }
        // Nuclio's DLX wakes scaled-to-zero functions by this header.
        builder = builder.header("x-nuclio-target", self.name.as_str());
        let http_request = builder.body(Full::new(request.body.clone())).map_err(|e| {
            InvokeError::Unavailable {
                function: self.name.clone(),
                reason: format!("cannot build a request to `{uri}`: {e}"),
            }
        })?;

        let response = match self.inner.http.request(http_request).await {
            Ok(response) => response,
            Err(e) if e.is_connect() => {
                return Ok(Attempt::Refused(format!("`{uri}`: {}", error_chain(&e))))
            }
            Err(e) => {
                return Err(InvokeError::Crashed {
                    function: self.name.clone(),
                    reason: error_chain(&e),
                })
            }
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| !is_hop_by_hop(name.as_str()))
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| InvokeError::Crashed {
                function: self.name.clone(),
                reason: format!("the response body broke off: {}", error_chain(&e)),
            })?
            .to_bytes();
        Ok(Attempt::Done(InvokeResponse {
            status,
            headers,
            body,
        }))
    }

    async fn invoke_inner(&self, request: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        let base = self.inner.address(&self.name, false).await?;
        match self.attempt(&base, &request).await? {
            Attempt::Done(response) => Ok(response),
            Attempt::Refused(first) => {
                tracing::debug!(function = %self.name, reason = %first, "connect failed; refreshing the endpoint");
                let base = self.inner.address(&self.name, true).await?;
                match self.attempt(&base, &request).await? {
                    Attempt::Done(response) => Ok(response),
                    Attempt::Refused(reason) => Err(InvokeError::Connect {
                        function: self.name.clone(),
                        reason,
                    }),
                }
            }
        }
    }
}

#[async_trait]
impl Invoker for NuctlInvoker {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        let timeout = self.inner.request_timeout;
        match tokio::time::timeout(timeout, self.invoke_inner(request)).await {
            Ok(result) => result,
            Err(_) => Err(InvokeError::Timeout {
                function: self.name.clone(),
                timeout,
            }),
        }
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    crate::error::Error::chain(err)
}
