//! How an answer (or its absence) is to be treated: the verdict a provider
//! gives, the default classification of an HTTP answer and `Retry-After`.
//! Below the transport and the provider contract, which both speak it.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

/// The longest wait a provider's `Retry-After` (or rate-limit reset) is
/// taken at: a larger one is an hour, so no answer can ask for a wait that
/// overflows a clock or holds a sender back for ever.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How an answer (or its absence) is to be treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Retryable {
        status: Option<u16>,
        retry_after: Option<Duration>,
        message: String,
    },
    Permanent {
        status: Option<u16>,
        message: String,
    },
}

impl Verdict {
    /// The same verdict with `f` applied to its message (to add context,
    /// or mask a secret), status and `Retry-After` kept.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Verdict {
        match self {
            Verdict::Retryable {
                status,
                retry_after,
                message,
            } => Verdict::Retryable {
                status,
                retry_after,
                message: f(message),
            },
            Verdict::Permanent { status, message } => Verdict::Permanent {
                status,
                message: f(message),
            },
            Verdict::Success => Verdict::Success,
        }
    }

    /// A permanent failure with no HTTP status (bad input, missing data).
    pub fn permanent(message: impl Into<String>) -> Verdict {
        Verdict::Permanent {
            status: None,
            message: message.into(),
        }
    }
}

/// A secret that cannot be read fails the delivery: for a while when AWS
/// could not be reached or was busy (retried), for good otherwise.
impl From<crate::event::secret::SecretError> for Verdict {
    fn from(e: crate::event::secret::SecretError) -> Verdict {
        if e.transient {
            Verdict::Retryable {
                status: None,
                retry_after: None,
                message: e.to_string(),
            }
        } else {
            Verdict::permanent(e.to_string())
        }
    }
}

pub fn default_classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Verdict {
    if status.is_success() {
        return Verdict::Success;
    }
    let snippet: String = body.chars().take(200).collect();
    let message = if snippet.trim().is_empty() {
        format!("answered {status}")
    } else {
        format!("answered {status}: {}", snippet.trim())
    };
    if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Verdict::Retryable {
            status: Some(status.as_u16()),
            retry_after: retry_after(headers),
            message,
        }
    } else {
        Verdict::Permanent {
            status: Some(status.as_u16()),
            message,
        }
    }
}

/// `Retry-After` as seconds or an HTTP date, at most
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let max = MAX_RETRY_AFTER;
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(max));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.signed_duration_since(chrono::Utc::now());
    Some(delta.to_std().unwrap_or(Duration::ZERO).min(max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// An AWS secret that could not be fetched for a passing reason is
    /// retried; any other secret that cannot be read fails for good.
    #[test]
    fn an_unreadable_secret_is_retried_only_when_aws_was_out_of_reach() {
        let error = |transient| crate::event::secret::SecretError {
            kind: "SSM parameter",
            path: "ssm://relay/token".into(),
            reason: "AWS did not answer in time".into(),
            transient,
        };
        let message = "cannot read SSM parameter ssm://relay/token: AWS did not answer in time";
        assert_eq!(
            Verdict::from(error(true)),
            Verdict::Retryable {
                status: None,
                retry_after: None,
                message: message.into()
            }
        );
        assert_eq!(Verdict::from(error(false)), Verdict::permanent(message));
    }

    /// A provider asking for a wait past what any clock holds gets an hour.
    #[test]
    fn retry_after_is_held_to_an_hour() {
        let mut h = HeaderMap::new();
        for (v, want) in [
            ("18446744073709551615", 3600),
            ("9223372036854775808", 3600),
            ("120", 120),
            ("Fri, 31 Dec 9999 23:59:59 GMT", 3600),
        ] {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from_static(v));
            assert_eq!(retry_after(&h), Some(Duration::from_secs(want)), "{v}");
        }
        h.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_static("184467440737095516150"),
        );
        assert_eq!(retry_after(&h), None, "not a number, not a date");
    }
}
