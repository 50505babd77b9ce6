//! Performs provider effects: HTTP requests with a timeout and bounded
//! retries inside the delivery's deadline, or stdout lines.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::config::{DeliverySettings, OutboundLimits};
use crate::metrics::Metrics;
use crate::provider::{Outbound, Provider, Verdict};
use crate::ratelimit::OutboundLimiter;

/// Most of an error body worth keeping for a message.
const BODY_SNIPPET: usize = 4096;

pub struct Transport {
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    /// Per-host token buckets, shared by every Notification using this transport.
    outbound: Option<OutboundLimiter>,
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Verdict> {
        serde_json::from_slice(&self.body).map_err(|e| Verdict::Permanent {
            status: Some(self.status.as_u16()),
            message: format!("unexpected answer body: {e}"),
        })
    }
}

impl Transport {
    pub fn new(timeout: Duration, metrics: Arc<Metrics>) -> Transport {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("tekton-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the TLS backend initialises");
        Transport {
            client,
            metrics,
            outbound: None,
        }
    }

    /// Limits requests per provider host (`spec.limits.outbound`).
    pub fn with_outbound_limits(mut self, limits: &OutboundLimits) -> Transport {
        self.outbound = OutboundLimiter::new(limits, self.metrics.clone());
        self
    }

    /// Waits for `ob`'s host to allow one more request, at most until
    /// `deadline` (a retryable failure if it would take longer).
    pub async fn admit(&self, ob: &Outbound, deadline: Instant) -> Result<(), Verdict> {
        match (&self.outbound, ob) {
            (Some(limiter), Outbound::Http(req)) => limiter.acquire(&req.url, deadline).await,
            _ => Ok(()),
        }
    }

    /// One attempt: the answer if the provider classifies it a success. An
    /// HTTP request is a client span under `trace`, whose context it carries
    /// in `traceparent`.
    pub async fn exchange(
        &self,
        ob: &Outbound,
        provider: &dyn Provider,
        provider_name: &str,
        trace: &opentelemetry::Context,
    ) -> Result<Response, Verdict> {
        let mut span = None;
        let result = match ob {
            Outbound::Stdout(line) => {
                let mut out = std::io::stdout().lock();
                match writeln!(out, "{line}").and_then(|_| out.flush()) {
                    Ok(()) => Ok(Response {
                        status: StatusCode::OK,
                        headers: HeaderMap::new(),
                        body: Bytes::new(),
                    }),
                    Err(e) => Err(Verdict::Retryable {
                        status: None,
                        retry_after: None,
                        message: format!("cannot write to stdout: {e}"),
                    }),
                }
            }
            Outbound::Http(req) => {
                let cx = crate::otel::start_request(trace, &req.method, &req.url);
                let mut headers = req.headers.clone();
                crate::otel::inject(&cx, &mut headers);
                span = Some(cx);
                let sent = self
                    .client
                    .request(req.method.clone(), req.url.clone())
                    .headers(headers)
                    .body(req.body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(resp) => {
                        let status = resp.status();
                        let headers = resp.headers().clone();
                        let body = resp.bytes().await.unwrap_or_default();
                        let text = if status.is_success() {
                            String::new()
                        } else {
                            String::from_utf8_lossy(&body[..body.len().min(BODY_SNIPPET)])
                                .into_owned()
                        };
                        match provider.classify(status, &headers, &text) {
                            Verdict::Success => Ok(Response {
                                status,
                                headers,
                                body,
                            }),
                            other => Err(other),
                        }
                    }
                    // No answer at all: connect errors, resets and timeouts are retried.
                    Err(e) => Err(Verdict::Retryable {
                        status: None,
                        retry_after: None,
                        message: network_error(&e),
                    }),
                }
            }
        };
        let label = match &result {
            Ok(_) => "success",
            Err(Verdict::Retryable { .. }) => "retryable",
            Err(_) => "permanent",
        };
        if let Some(cx) = &span {
            let status = match &result {
                Ok(r) => Some(r.status.as_u16()),
                Err(Verdict::Retryable { status, .. } | Verdict::Permanent { status, .. }) => {
                    *status
                }
                Err(Verdict::Success) => None,
            };
            crate::otel::end_request(cx, status, label, result.is_err());
        }
        self.metrics
            .provider_requests
            .with_label_values(&[provider_name, label])
            .inc();
        // A rate limit is a 429, or a 403 the provider classified retryable
        // (GitHub's primary and secondary limits).
        if let Err(Verdict::Retryable {
            status: Some(429 | 403),
            ..
        }) = &result
        {
            self.metrics
                .provider_rate_limited
                .with_label_values(&[provider_name])
                .inc();
        }
        result
    }
}

/// The HTTP side of one delivery: sends with the engine's retry policy, so a
/// provider that needs several requests (search, then create or update)
/// writes only the requests.
pub struct Http<'a> {
    pub(crate) transport: &'a Transport,
    pub(crate) provider: &'a dyn Provider,
    pub(crate) provider_name: &'a str,
    pub(crate) policy: &'a DeliverySettings,
    pub(crate) deadline: Instant,
    pub(crate) attempts: AtomicU32,
    /// The Notification's span: each request is a child of it.
    pub(crate) trace: opentelemetry::Context,
}

impl Http<'_> {
    /// Sends `ob`, retrying retryable failures (honouring `Retry-After`)
    /// while attempts and the deadline allow.
    pub async fn send(&self, ob: &Outbound) -> Result<Response, Verdict> {
        let mut tries = 0;
        loop {
            // Every request, retries too, spends a token of its host; a wait
            // past the deadline is not an attempt and is not retried here.
            if let Err(v) = self.transport.admit(ob, self.deadline).await {
                return Err(v.map_message(|m| format!("{}: {m}", describe(ob))));
            }
            tries += 1;
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let failure = match self
                .transport
                .exchange(ob, self.provider, self.provider_name, &self.trace)
                .await
            {
                Ok(r) => return Ok(r),
                Err(v @ Verdict::Permanent { .. }) => return Err(prefix(ob, v)),
                Err(Verdict::Success) => unreachable!("exchange returns success as Ok"),
                Err(v) => v,
            };
            let Verdict::Retryable {
                status,
                retry_after,
                message,
            } = failure
            else {
                unreachable!()
            };
            let wait = retry_after.unwrap_or_else(|| backoff(self.policy, tries));
            if tries >= self.policy.max_attempts || Instant::now() + wait > self.deadline {
                return Err(Verdict::Retryable {
                    status,
                    retry_after: Some(wait.max(Duration::from_secs(1))),
                    message: format!("{}: {message} (after {tries} attempts)", describe(ob)),
                });
            }
            tracing::info!(provider = %self.provider_name, attempt = tries,
                wait_ms = wait.as_millis() as u64, error = %message, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }
}

fn prefix(ob: &Outbound, v: Verdict) -> Verdict {
    match v {
        Verdict::Permanent { status, message } => Verdict::Permanent {
            status,
            message: format!("{}: {message}", describe(ob)),
        },
        other => other,
    }
}

pub fn describe(ob: &Outbound) -> String {
    match ob {
        Outbound::Http(r) => r.target(),
        Outbound::Stdout(_) => "stdout".into(),
    }
}

/// Exponential backoff with equal jitter.
fn backoff(policy: &DeliverySettings, attempt: u32) -> Duration {
    let base = policy
        .initial_backoff_ms
        .saturating_mul(1u64 << (attempt.saturating_sub(1)).min(20))
        .min(policy.max_backoff_ms);
    let jitter = if base > 1 {
        rand::random_range(0..base / 2)
    } else {
        0
    };
    Duration::from_millis(base / 2 + jitter)
}

/// A reqwest error without its URL (which may embed a token).
fn network_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    let mut src = std::error::Error::source(e);
    let mut cause = String::new();
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}
