//! Where the bucket is and how hard to try.

use std::time::Duration;

use crate::error::{RemoteError, Result};

/// How failed requests are retried: exponential backoff with jitter,
/// bounded both in attempts and in total time. Applies to connection
/// errors, timeouts, 5xx answers and throttling (429, 503 `SlowDown`).
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt. Default: 4.
    pub max_retries: usize,
    /// Wait before the first retry; doubles each time. Default: 50 ms.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts. Default: 1 s.
    pub max_backoff: Duration,
    /// No retry starts after this long since the first attempt.
    /// Default: 10 s.
    pub retry_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            retry_timeout: Duration::from_secs(10),
        }
    }
}

/// Configuration of the remote tier: an S3-compatible bucket.
///
/// ```
/// use agentmem_remote::RemoteConfig;
/// let cfg = RemoteConfig::new("agentmem")
///     .endpoint("http://127.0.0.1:3900")
///     .region("garage")
///     .credentials("GK0123456789abcdef01234567", "secret")
///     .allow_http(true);
/// assert_eq!(cfg.bucket(), "agentmem");
/// ```
#[derive(Clone)]
pub struct RemoteConfig {
    pub(crate) bucket: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) region: String,
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
    pub(crate) prefix: String,
    pub(crate) allow_http: bool,
    pub(crate) retry: RetryPolicy,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

impl std::fmt::Debug for RemoteConfig {
    // The secret never goes to a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl RemoteConfig {
    /// The bucket `bucket`, with every other setting at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        RemoteConfig {
            bucket: bucket.into(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            prefix: "agentmem".into(),
            allow_http: false,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// The settings in `AGENTMEM_S3_*` environment variables, as
    /// `scripts/garage-cluster.sh` writes them: `AGENTMEM_S3_BUCKET`
    /// (required), `AGENTMEM_S3_ENDPOINT`, `AGENTMEM_S3_REGION`,
    /// `AGENTMEM_S3_ACCESS_KEY_ID`, `AGENTMEM_S3_SECRET_ACCESS_KEY`,
    /// `AGENTMEM_S3_PREFIX`, `AGENTMEM_S3_ALLOW_HTTP` (`1` or `true`).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`RemoteConfig::from_env`], reading variables through `get`
    /// (e.g. from a parsed env file).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let bucket = get("AGENTMEM_S3_BUCKET")
            .ok_or_else(|| RemoteError::Config("AGENTMEM_S3_BUCKET is not set".into()))?;
        let mut cfg = RemoteConfig::new(bucket);
        if let Some(e) = get("AGENTMEM_S3_ENDPOINT") {
            cfg = cfg.endpoint(e);
        }
        if let Some(r) = get("AGENTMEM_S3_REGION") {
            cfg = cfg.region(r);
        }
        if let (Some(k), Some(s)) = (
            get("AGENTMEM_S3_ACCESS_KEY_ID"),
            get("AGENTMEM_S3_SECRET_ACCESS_KEY"),
        ) {
            cfg = cfg.credentials(k, s);
        }
        if let Some(p) = get("AGENTMEM_S3_PREFIX") {
            cfg = cfg.prefix(p);
        }
        if let Some(h) = get("AGENTMEM_S3_ALLOW_HTTP") {
            cfg = cfg.allow_http(matches!(h.as_str(), "1" | "true" | "yes"));
        }
        Ok(cfg)
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The S3 endpoint URL, for stores other than AWS (Garage, MinIO...).
    /// Path-style requests are used. Default: AWS's endpoint for the region.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The region requests are signed for (Garage: its `s3_region`).
    /// Default: `us-east-1`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Static credentials. Default: none (requests go unsigned, which only
    /// a public bucket accepts).
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key.into());
        self
    }

    /// The key prefix under which agentmem's objects live, so that a
    /// bucket can be shared with other data. Default: `agentmem`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().trim_matches('/').to_string();
        self
    }

    /// Allow plain-http endpoints (loopback, in-cluster). Default: false.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// How failed requests are retried. Default: [`RetryPolicy::default`].
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Longest time one request may take (each attempt). Default: 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Longest time to open a connection. Default: 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}
