//! Performs provider effects: HTTP requests with a timeout and bounded
//! retries inside the delivery's deadline, or stdout lines.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::delivery::metrics::Metrics;
use crate::delivery::outbound::{Outbound, OutboundRequest};
use crate::delivery::ratelimit::OutboundLimiter;
use crate::delivery::verdict::{MAX_RETRY_AFTER, Verdict};
use crate::event::config::{DeliverySettings, OutboundLimits};

/// How a provider reads the answer to a request it sent (its
/// `Provider::classify`): the transport sees only this, so it stays below
/// the provider contract.
pub type Classify<'a> =
    &'a (dyn Fn(&OutboundRequest, StatusCode, &HeaderMap, &str) -> Verdict + Send + Sync);

/// Most of an error body worth keeping for a message.
const BODY_SNIPPET: usize = 4096;
/// Most of a provider's answer that is read: the rest is never buffered
/// (the connection is dropped), so a provider, or whatever a URL points
/// at, cannot make the relay hold an answer of any size. Provider APIs
/// answer a few kilobytes.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The HTTP client every outbound request of the relay goes through
/// (providers, token endpoints, the ingress's forwarding): redirects are
/// never followed, since a redirect would carry the request's credentials
/// (`PRIVATE-TOKEN`, `x-api-key`, signatures) to wherever the answer
/// points; a 3xx is an answer like any other (a permanent failure).
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tekton-relay/", env!("CARGO_PKG_VERSION")))
}

/// [`client_builder`] with a timeout for the whole exchange.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    client_builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A number of seconds from configuration as a duration: negative or not a
/// number is zero, too large for a duration is the largest.
pub fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

/// The instant `d` from now, or far in the future when that is past what
/// the clock holds (a duration from configuration or a remote answer must
/// not overflow `Instant + Duration`).
pub fn instant_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

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
    /// At most [`MAX_ANSWER_BYTES`] of the answer.
    pub body: Bytes,
    /// The answer was longer than [`MAX_ANSWER_BYTES`]: `body` is its start.
    pub truncated: bool,
}

impl Response {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Verdict> {
        if self.truncated {
            return Err(Verdict::Permanent {
                status: Some(self.status.as_u16()),
                message: format!("the answer is over {MAX_ANSWER_BYTES} bytes: not read"),
            });
        }
        serde_json::from_slice(&self.body).map_err(|e| Verdict::Permanent {
            status: Some(self.status.as_u16()),
            message: format!("unexpected answer body: {e}"),
        })
    }
}

impl Transport {
    pub fn new(timeout: Duration, metrics: Arc<Metrics>) -> Transport {
        let client = client_builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
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
        classify: Classify<'_>,
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
                        truncated: false,
                    }),
                    Err(e) => Err(Verdict::Retryable {
                        status: None,
                        retry_after: None,
                        message: format!("cannot write to stdout: {e}"),
                    }),
                }
            }
            Outbound::Http(req) => {
                let cx = crate::delivery::otel::start_request(trace, &req.method, &req.url);
                let mut headers = req.headers.clone();
                crate::delivery::otel::inject(&cx, &mut headers);
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
                        let (body, truncated) = read_capped(resp, MAX_ANSWER_BYTES).await;
                        let text = if status.is_success() {
                            String::new()
                        } else {
                            String::from_utf8_lossy(&body[..body.len().min(BODY_SNIPPET)])
                                .into_owned()
                        };
                        let masked: Vec<&str> = req.masked.iter().map(|s| s.expose()).collect();
                        let text = if masked.is_empty() {
                            text
                        } else {
                            crate::delivery::secret_url::mask(&text, &masked)
                        };
                        match classify(req, status, &headers, &text) {
                            Verdict::Success => Ok(Response {
                                status,
                                headers,
                                body,
                                truncated,
                            }),
                            other => Err(clamp_retry_after(other)),
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
            crate::delivery::otel::end_request(cx, status, label, result.is_err());
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
    pub(crate) classify: Classify<'a>,
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
                .exchange(ob, self.classify, self.provider_name, &self.trace)
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
            let wait = retry_after
                .unwrap_or_else(|| backoff(self.policy, tries))
                .min(MAX_RETRY_AFTER);
            let past_deadline = Instant::now()
                .checked_add(wait)
                .is_none_or(|t| t > self.deadline);
            if tries >= self.policy.max_attempts || past_deadline {
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

/// Reads at most `cap` bytes of an answer's body, as it arrives; the rest is
/// left unread (dropping the answer closes its connection). `true` when
/// there was more. A body that fails midway keeps what arrived.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> (Bytes, bool) {
    let mut buf = bytes::BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - buf.len();
                if chunk.len() > room {
                    buf.extend_from_slice(&chunk[..room]);
                    return (buf.freeze(), true);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) | Err(_) => return (buf.freeze(), false),
        }
    }
}

/// A provider's verdict with its `Retry-After` held to [`MAX_RETRY_AFTER`].
fn clamp_retry_after(v: Verdict) -> Verdict {
    match v {
        Verdict::Retryable {
            status,
            retry_after,
            message,
        } => Verdict::Retryable {
            status,
            retry_after: retry_after.map(|w| w.min(MAX_RETRY_AFTER)),
            message,
        },
        other => other,
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
