//! Performs provider effects: HTTP requests with a timeout, or stdout lines.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::provider::{Outbound, Provider, Verdict};

/// Most of an error body worth keeping for a message.
const BODY_SNIPPET: usize = 4096;

pub struct Transport {
    client: reqwest::Client,
    metrics: Arc<Metrics>,
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
        Transport { client, metrics }
    }

    pub async fn send(
        &self,
        ob: &Outbound,
        provider: &dyn Provider,
        provider_name: &str,
    ) -> Verdict {
        let verdict = match ob {
            Outbound::Stdout(line) => {
                let mut out = std::io::stdout().lock();
                match writeln!(out, "{line}").and_then(|_| out.flush()) {
                    Ok(()) => Verdict::Success,
                    Err(e) => Verdict::Retryable {
                        status: None,
                        retry_after: None,
                        message: format!("cannot write to stdout: {e}"),
                    },
                }
            }
            Outbound::Http(req) => {
                let sent = self
                    .client
                    .request(req.method.clone(), req.url.clone())
                    .headers(req.headers.clone())
                    .body(req.body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(resp) => {
                        let status = resp.status();
                        let headers = resp.headers().clone();
                        let body = if status.is_success() {
                            String::new()
                        } else {
                            let bytes = resp.bytes().await.unwrap_or_default();
                            String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_SNIPPET)])
                                .into_owned()
                        };
                        provider.classify(status, &headers, &body)
                    }
                    // No answer at all: connect errors, resets and timeouts are retried.
                    Err(e) => Verdict::Retryable {
                        status: None,
                        retry_after: None,
                        message: network_error(&e),
                    },
                }
            }
        };
        let result = match &verdict {
            Verdict::Success => "success",
            Verdict::Retryable { .. } => "retryable",
            Verdict::Permanent { .. } => "permanent",
        };
        self.metrics
            .provider_requests
            .with_label_values(&[provider_name, result])
            .inc();
        verdict
    }
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
