//! Secrets in AWS: SSM Parameter Store parameters and Secrets Manager
//! secrets, fetched with the SDK and cached per reference.
//!
//! - One client per service and process, built on first use from the
//!   default AWS configuration (region and credentials from the
//!   environment or the role; `AWS_ENDPOINT_URL` for a stand-in).
//! - A value is used for [`TTL_ENV`] seconds (default [`DEFAULT_TTL`]);
//!   the next read after that fetches it again, so a rotation applies
//!   within the TTL. Concurrent reads of one reference wait for one fetch.
//! - When a fetch fails for a passing reason (throttling, AWS's 5xx, a
//!   timeout, no connection) the value fetched last serves on while it is
//!   younger than [`STALE_FACTOR`] TTLs, with a warning (never the value).
//!   An answer such as "not found" or "access denied" is the error at once,
//!   and drops the value.
//! - A failure is remembered for [`FAILURE_HOLD`] (at most the TTL), so a
//!   burst of requests does not become a burst of calls to AWS.
//! - Errors name the reference and AWS's error code and message; a value
//!   is never in an error, a log line, a dead letter or a metric.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use tokio::sync::OnceCell;

use super::{SECRETS_MANAGER_SCHEME, SSM_SCHEME, SecretSource, non_empty};

/// How long a fetched value is used, unless [`TTL_ENV`] says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// The environment variable with the TTL in whole seconds (0: fetch on
/// every read).
pub const TTL_ENV: &str = "RELAY_SECRET_TTL_SECONDS";
/// The longest TTL taken: a day.
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// A value serves on through passing AWS failures for this many TTLs.
pub const STALE_FACTOR: u32 = 10;
/// How long a failed fetch stands before the next read tries again.
pub const FAILURE_HOLD: Duration = Duration::from_secs(5);

/// The AWS secret sources of a process: its clients and its cache.
pub struct AwsSecrets {
    /// Given (tests), or loaded from the environment on first use.
    given: Option<aws_config::SdkConfig>,
    config: OnceCell<aws_config::SdkConfig>,
    ssm: OnceCell<aws_sdk_ssm::Client>,
    secrets_manager: OnceCell<aws_sdk_secretsmanager::Client>,
    ttl: Duration,
    /// One slot per reference; the async lock makes concurrent reads of
    /// one reference wait for one fetch. References come from the config,
    /// so the map stays as small as it is.
    slots: Mutex<HashMap<SecretSource, Arc<tokio::sync::Mutex<Slot>>>>,
}

#[derive(Default)]
struct Slot {
    value: Option<(String, Instant)>,
    failure: Option<(FetchError, Instant)>,
}

/// Why a fetch failed, with no part of any value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct FetchError {
    pub reason: String,
    /// Throttling, a server error, a timeout or no connection: worth
    /// serving the last value through, and worth a retry.
    pub transient: bool,
}

impl FetchError {
    fn lasting(reason: impl Into<String>) -> FetchError {
        FetchError {
            reason: reason.into(),
            transient: false,
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "{}", p.display()),
            SecretSource::Ssm { name } => write!(f, "{SSM_SCHEME}{name}"),
            SecretSource::SecretsManager { id, key: None } => {
                write!(f, "{SECRETS_MANAGER_SCHEME}{id}")
            }
            SecretSource::SecretsManager { id, key: Some(k) } => {
                write!(f, "{SECRETS_MANAGER_SCHEME}{id}#{k}")
            }
        }
    }
}

/// The TTL [`TTL_ENV`] gives (`None`: unset).
fn ttl_from(value: Option<&str>) -> Result<Duration, String> {
    let Some(v) = value else {
        return Ok(DEFAULT_TTL);
    };
    v.trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
        .filter(|d| *d <= MAX_TTL)
        .ok_or_else(|| {
            format!(
                "{TTL_ENV}={v:?} is not a whole number of seconds from 0 to {}",
                MAX_TTL.as_secs()
            )
        })
}

impl AwsSecrets {
    /// The sources over `config` (tests, or a host with its own), values
    /// kept for `ttl`.
    pub fn new(config: aws_config::SdkConfig, ttl: Duration) -> AwsSecrets {
        AwsSecrets::build(Some(config), ttl)
    }

    fn build(given: Option<aws_config::SdkConfig>, ttl: Duration) -> AwsSecrets {
        AwsSecrets {
            given,
            config: OnceCell::new(),
            ssm: OnceCell::new(),
            secrets_manager: OnceCell::new(),
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The process's sources: the default AWS configuration, the TTL from
    /// [`TTL_ENV`] (an invalid one fails every AWS read, naming it).
    pub(super) fn global() -> &'static Result<AwsSecrets, String> {
        static GLOBAL: OnceLock<Result<AwsSecrets, String>> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let ttl = ttl_from(std::env::var(TTL_ENV).ok().as_deref())?;
            Ok(AwsSecrets::build(None, ttl))
        })
    }

    async fn sdk_config(&self) -> &aws_config::SdkConfig {
        if let Some(c) = &self.given {
            return c;
        }
        self.config
            .get_or_init(|| async {
                crate::event::config::aws::loader()
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(3))
                            .operation_attempt_timeout(Duration::from_secs(5))
                            .operation_timeout(Duration::from_secs(10))
                            .build(),
                    )
                    .load()
                    .await
            })
            .await
    }

    /// The value `source` (an AWS one) names: cached, or fetched now.
    pub async fn read(&self, source: &SecretSource) -> Result<String, FetchError> {
        self.read_at(source, Instant::now()).await
    }

    /// [`AwsSecrets::read`] as if it were `now`: tests step the clock
    /// through TTLs this way instead of waiting them out.
    #[doc(hidden)]
    pub async fn read_at(&self, source: &SecretSource, now: Instant) -> Result<String, FetchError> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(source.clone())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        let age = |at: Instant| now.saturating_duration_since(at);
        let fresh_value = slot.value.as_ref().filter(|(_, at)| age(*at) < self.ttl);
        if let Some((v, _)) = fresh_value {
            return Ok(v.clone());
        }
        let hold = FAILURE_HOLD.min(self.ttl);
        let failure = match slot.failure.as_ref().filter(|(_, at)| age(*at) < hold) {
            Some((f, _)) => f.clone(),
            None => match self.fetch(source).await {
                Ok(v) => {
                    *slot = Slot {
                        value: Some((v.clone(), now)),
                        failure: None,
                    };
                    return Ok(v);
                }
                Err(f) => {
                    slot.failure = Some((f.clone(), now));
                    if let Some((_, at)) = &slot.value {
                        tracing::warn!(
                            secret = %source,
                            error = %f.reason,
                            age_seconds = age(*at).as_secs(),
                            serving_last_value = f.transient && age(*at) < self.ttl * STALE_FACTOR,
                            "cannot fetch a secret again"
                        );
                    }
                    if !f.transient {
                        // Deleted, or access revoked: the old value goes too.
                        slot.value = None;
                    }
                    f
                }
            },
        };
        match &slot.value {
            Some((v, at)) if failure.transient && age(*at) < self.ttl * STALE_FACTOR => {
                Ok(v.clone())
            }
            _ => Err(failure),
        }
    }

    async fn fetch(&self, source: &SecretSource) -> Result<String, FetchError> {
        match source {
            SecretSource::Ssm { name } => {
                let config = self.sdk_config().await;
                let client = self
                    .ssm
                    .get_or_init(|| async { aws_sdk_ssm::Client::new(config) })
                    .await;
                let out = client
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| describe(&e))?;
                let value = out.parameter().and_then(|p| p.value()).unwrap_or_default();
                non_empty(value, "the parameter is empty").map_err(FetchError::lasting)
            }
            SecretSource::SecretsManager { id, key } => {
                let config = self.sdk_config().await;
                let client = self
                    .secrets_manager
                    .get_or_init(|| async { aws_sdk_secretsmanager::Client::new(config) })
                    .await;
                let out = client
                    .get_secret_value()
                    .secret_id(id)
                    .send()
                    .await
                    .map_err(|e| describe(&e))?;
                let Some(text) = out.secret_string() else {
                    return Err(FetchError::lasting(
                        "the secret has no SecretString (a binary secret is not taken)",
                    ));
                };
                match key {
                    None => non_empty(text, "the secret is empty").map_err(FetchError::lasting),
                    Some(k) => json_key(text, k).map_err(FetchError::lasting),
                }
            }
            SecretSource::File(_) => Err(FetchError::lasting("a file is not an AWS secret")),
        }
    }
}

/// The string at `key` of the JSON object `text`. Errors say where and
/// what, never what is there: serde's own messages can quote the input.
fn json_key(text: &str, key: &str) -> Result<String, String> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| {
            format!(
                "`#{key}` needs a secret holding a JSON object; this one is not one \
                 (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
    match object.get(key) {
        Some(serde_json::Value::String(s)) => non_empty(s, &format!("key {key:?} is empty")),
        Some(_) => Err(format!("key {key:?} does not hold a string")),
        None => Err(format!("the secret's JSON object has no key {key:?}")),
    }
}

/// An SDK error as a [`FetchError`]: the service's code and message (AWS's
/// answers carry no value), or what went wrong on the way.
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(e: &SdkError<E>) -> FetchError {
    match e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("an unnamed error");
            let reason = match s.err().message() {
                Some(m) => format!("AWS answered {code} (HTTP {status}): {m}"),
                None => format!("AWS answered {code} (HTTP {status})"),
            };
            FetchError {
                reason,
                transient: status >= 500 || status == 429 || code.contains("Throttl"),
            }
        }
        SdkError::TimeoutError(_) => FetchError {
            reason: "AWS did not answer in time".into(),
            transient: true,
        },
        SdkError::DispatchFailure(_) => FetchError {
            reason: format!("cannot reach AWS: {}", chain(e)),
            transient: true,
        },
        // The answer could not be read: it is not quoted, as it may hold
        // the value.
        SdkError::ResponseError(_) => FetchError {
            reason: "AWS's answer could not be read".into(),
            transient: true,
        },
        _ => FetchError::lasting(format!(
            "cannot ask AWS (check the region and credentials): {}",
            chain(e)
        )),
    }
}

/// `e` and its sources, `: `-separated (each once: some repeat their
/// source's message).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_comes_from_the_environment_within_bounds() {
        assert_eq!(ttl_from(None).unwrap(), DEFAULT_TTL);
        assert_eq!(ttl_from(Some("1")).unwrap(), Duration::from_secs(1));
        assert_eq!(ttl_from(Some("0")).unwrap(), Duration::ZERO);
        assert_eq!(ttl_from(Some("86400")).unwrap(), MAX_TTL);
        for bad in ["", "-1", "1.5", "1m", "86401"] {
            let e = ttl_from(Some(bad)).unwrap_err();
            assert!(e.starts_with(TTL_ENV), "{e}");
        }
    }

    #[test]
    fn a_json_key_is_taken_and_errors_never_quote_the_secret() {
        let text = r#"{"token": "tok-s3cr3t", "n": 7, "empty": ""}"#;
        assert_eq!(json_key(text, "token").unwrap(), "tok-s3cr3t");
        for (key, want) in [
            ("n", "does not hold a string"),
            ("empty", "is empty"),
            ("other", "has no key \"other\""),
        ] {
            let e = json_key(text, key).unwrap_err();
            assert!(e.contains(want) && !e.contains("s3cr3t"), "{e}");
        }
        let e = json_key("tok-s3cr3t", "token").unwrap_err();
        assert!(e.contains("JSON object") && !e.contains("s3cr3t"), "{e}");
        let e = json_key(r#"["tok-s3cr3t"]"#, "token").unwrap_err();
        assert!(e.contains("JSON object") && !e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn a_source_shows_as_its_canonical_reference() {
        let s = SecretSource::parse("ssm://a/b").unwrap();
        assert_eq!(s.to_string(), "ssm:///a/b");
        let s = SecretSource::parse("secretsmanager://x#k").unwrap();
        assert_eq!(s.to_string(), "secretsmanager://x#k");
    }
}
