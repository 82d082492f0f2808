//! Typed HTTP statuses for the retry loop and for our errors.
//!
//! object_store retries 5xx and 429 answers itself, but reports the final
//! one through an error type it does not export, so a caller could only
//! tell "throttled" from "quorum lost" by reading message text. This
//! connector wraps object_store's own reqwest client and turns such answers
//! into an [`HttpError`] of kind [`HttpErrorKind::Request`] carrying a
//! [`ServerStatus`]: object_store still retries it with its backoff (a
//! request-kind error is always retryable), and once retries run out we
//! find the [`ServerStatus`] by downcasting along the error's source chain.

use async_trait::async_trait;
use http::StatusCode;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};
use object_store::ClientOptions;

/// A 5xx or 429 answer.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}{}", if *.throttled { " (slow down)" } else { "" })]
pub(crate) struct ServerStatus {
    pub status: u16,
    /// 429, or 503 with the S3 error code `SlowDown`.
    pub throttled: bool,
}

/// object_store's reqwest connector, with 5xx and 429 answers turned into
/// typed errors.
#[derive(Debug, Default)]
pub(crate) struct StatusConnector;

impl HttpConnector for StatusConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(StatusService { inner }))
    }
}

#[derive(Debug)]
struct StatusService {
    inner: HttpClient,
}

#[async_trait]
impl HttpService for StatusService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let resp = self.inner.execute(req).await?;
        let status = resp.status();
        if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
            return Ok(resp);
        }
        let throttled = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::SERVICE_UNAVAILABLE && {
                // An S3 error body is a small XML document; its <Code> is
                // the protocol's error code (not a message to match).
                let body = resp.into_body().bytes().await.unwrap_or_default();
                body.windows(b"<Code>SlowDown</Code>".len())
                    .any(|w| w == b"<Code>SlowDown</Code>")
            });
        Err(HttpError::new(
            HttpErrorKind::Request,
            ServerStatus {
                status: status.as_u16(),
                throttled,
            },
        ))
    }
}
