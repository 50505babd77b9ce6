//! The interface every provider implements: build the request(s) for an
//! event, and classify the answer. Policy (idempotency, retries, dead
//! letters) lives in the engine, written once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;

use crate::config::ProviderDoc;
pub use crate::field::{FieldError, FieldErrors};
use crate::model::RunEvent;
pub use crate::notification::{Compiled, Parsed};
use crate::template::Template;

/// What a provider is given for one event and Notification.
pub struct DeliveryInput<'a> {
    pub event: &'a RunEvent,
    /// The event as received (a replay: as dead-lettered), for providers
    /// that forward it unchanged; `None` where there is none (unit tests).
    pub original: Option<&'a crate::ingress::Original>,
    pub notification: &'a str,
    /// The Notification's template, when it has one.
    pub template: Option<&'a Template>,
    /// The run's accumulated summary, for providers that ask for it
    /// ([`Provider::uses_summary`]) when the event belongs to a PipelineRun.
    pub summary: Option<&'a crate::accumulator::RunSummary>,
    /// The Notification's `action` and `params` as the provider compiled
    /// them at load ([`Provider::compile_notification`]).
    pub compiled: &'a Compiled,
    /// This provider type's part of the shared store, for providers that
    /// remember what they posted.
    pub state: crate::state::State<'a>,
}

/// One effect to perform.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built once per delivery; boxing buys nothing
pub enum Outbound {
    Http(OutboundRequest),
    /// A line for the process's standard output.
    Stdout(String),
}

#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: Method,
    pub url: url::Url,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Secrets the request carries outside its sensitive headers (a
    /// routing key in the body) that an answer may echo: the transport
    /// masks them in the answer before it is classified, so no verdict,
    /// retry log or dead letter shows them.
    pub masked: Vec<crate::secret::Secret>,
}

impl OutboundRequest {
    /// A JSON request that expects JSON back (`Accept: application/json`;
    /// a provider may set another `Accept`, as GitHub's media type).
    pub fn post_json(url: url::Url, body: impl Into<Bytes>) -> OutboundRequest {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        OutboundRequest {
            method: Method::POST,
            url,
            headers,
            body: body.into(),
            masked: Vec::new(),
        }
    }

    /// Masks `secret` wherever an answer to this request shows it.
    pub fn mask_in_answer(&mut self, secret: crate::secret::Secret) {
        self.masked.push(secret);
    }

    /// Adds a header whose value must never be logged.
    pub fn sensitive_header(&mut self, name: HeaderName, value: &str) -> Result<(), ProviderError> {
        let mut v = HeaderValue::from_str(value)
            .map_err(|_| ProviderError::Permanent(format!("{name} value is not a valid header")))?;
        v.set_sensitive(true);
        self.headers.insert(name, v);
        Ok(())
    }

    /// Where the request goes, for errors and logs: scheme, host and port
    /// only, since paths and queries of webhook URLs often embed tokens.
    pub fn target(&self) -> String {
        let host = self.url.host_str().unwrap_or("?");
        match self.url.port() {
            Some(p) => format!("{} {}://{host}:{p}", self.method, self.url.scheme()),
            None => format!("{} {}://{host}", self.method, self.url.scheme()),
        }
    }
}

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

/// Errors raised while building requests.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// Cannot succeed by retrying (bad template, unreadable secret, ...).
    #[error("{0}")]
    Permanent(String),
    #[error("{0}")]
    Retryable(String),
}

/// A delivery failure met while building requests (a secret URL that does
/// not read, a template that does not render) keeps its kind.
impl From<Verdict> for ProviderError {
    fn from(v: Verdict) -> ProviderError {
        match v {
            Verdict::Permanent { message, .. } => ProviderError::Permanent(message),
            Verdict::Retryable { message, .. } => ProviderError::Retryable(message),
            Verdict::Success => ProviderError::Permanent("unexpected success".into()),
        }
    }
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    fn type_name(&self) -> &'static str;

    /// Whether this provider renders PipelineRun summaries, so the engine
    /// feeds the accumulator before delivering.
    fn uses_summary(&self) -> bool {
        false
    }

    /// Compiles a Notification's `action` and `params` at load time, once:
    /// what is returned is what every delivery reads
    /// ([`DeliveryInput::compiled`]); errors' paths are under the
    /// Notification's spec. The default takes neither.
    fn compile_notification(
        &self,
        action: Option<&str>,
        params: &serde_json::Map<String, Value>,
    ) -> Result<Compiled, FieldErrors> {
        let mut errs = FieldErrors::new();
        if let Some(a) = action {
            errs.push(
                "action",
                format!("{} providers take no action (got {a:?})", self.type_name()),
            );
        }
        for k in params.keys() {
            errs.push(
                format!("params.{k}"),
                format!("{} providers take no params", self.type_name()),
            );
        }
        errs.into_result(Compiled::none())
    }

    /// Why this provider will not act on `event` at all (a forwarding loop
    /// cut, say), reported as `filtered` with the reason; `None` to go on.
    /// Checked after the Notification's filter, before any claim.
    fn declines(&self, _event: &RunEvent) -> Option<String> {
        None
    }

    /// Builds the effects for one event. Providers that override
    /// [`Provider::deliver`] (several dependent requests) build nothing here.
    async fn build(&self, _input: &DeliveryInput<'_>) -> Result<Vec<Outbound>, ProviderError> {
        Ok(Vec::new())
    }

    /// Performs the effects for one event. The default sends what `build`
    /// made, in order; providers that need several dependent requests
    /// (search, then create or update) override it and use `http`, which
    /// applies the retry policy to each request. The `Ok` value is a short
    /// description of what was done.
    async fn deliver(
        &self,
        input: &DeliveryInput<'_>,
        http: &crate::transport::Http<'_>,
    ) -> Result<String, Verdict> {
        let outbounds = self.build(input).await.map_err(|e| match e {
            ProviderError::Permanent(m) => Verdict::Permanent {
                status: None,
                message: m,
            },
            ProviderError::Retryable(m) => Verdict::Retryable {
                status: None,
                retry_after: None,
                message: m,
            },
        })?;
        let mut done = Vec::new();
        for ob in &outbounds {
            http.send(ob).await?;
            done.push(crate::transport::describe(ob));
        }
        Ok(done.join("; "))
    }

    /// Classifies the answer to `request` (one this delivery sent: what it
    /// asked, and the secrets it carried, already masked in `body`). The
    /// default: 2xx succeed; 408, 429 and 5xx are retried (honouring
    /// `Retry-After`); anything else is permanent.
    fn classify(
        &self,
        _request: &OutboundRequest,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
    ) -> Verdict {
        default_classify(status, headers, body)
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
/// [`MAX_RETRY_AFTER`](crate::transport::MAX_RETRY_AFTER).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let max = crate::transport::MAX_RETRY_AFTER;
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(max));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.signed_duration_since(chrono::Utc::now());
    Some(delta.to_std().unwrap_or(Duration::ZERO).min(max))
}

/// Builds a provider from its `Provider` document.
pub trait ProviderFactory: Send + Sync {
    fn type_name(&self) -> &'static str;
    /// Errors' paths are under `spec.<type>`.
    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors>;
}

/// The provider types a function knows.
#[derive(Default)]
pub struct Registry {
    factories: Vec<Box<dyn ProviderFactory>>,
    serve_only: Option<&'static str>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn with(mut self, factory: impl ProviderFactory + 'static) -> Registry {
        self.factories.push(Box::new(factory));
        self
    }

    /// A per-provider function serves only Notifications of its type, and
    /// ignores documents of other types (another function serves those).
    pub fn serving_only(mut self, provider_type: &'static str) -> Registry {
        self.serve_only = Some(provider_type);
        self
    }

    pub fn serves(&self, provider_type: &str) -> bool {
        self.serve_only.is_none_or(|t| t == provider_type)
    }

    pub fn factory(&self, provider_type: &str) -> Option<&dyn ProviderFactory> {
        self.factories
            .iter()
            .find(|f| f.type_name() == provider_type)
            .map(|f| f.as_ref())
    }

    pub fn type_names(&self) -> Vec<&'static str> {
        self.factories.iter().map(|f| f.type_name()).collect()
    }
}

/// Parses a provider's settings block with unknown keys rejected.
pub fn parse_settings<T: serde::de::DeserializeOwned>(doc: &ProviderDoc) -> Result<T, FieldErrors> {
    crate::config::parse_at::<T>(doc.settings.clone(), "").map_err(FieldErrors::from)
}

/// The settings block as JSON, for providers with nothing to configure.
pub fn require_empty(doc: &ProviderDoc) -> Result<(), FieldErrors> {
    match &doc.settings {
        Value::Object(m) if m.is_empty() => Ok(()),
        Value::Null => Ok(()),
        Value::Object(m) => Err(m
            .keys()
            .map(|k| {
                FieldError::new(
                    k.clone(),
                    format!("unknown field `{k}`: this provider takes no settings"),
                )
            })
            .collect()),
        _ => Err(FieldErrors::one("", "expected a map")),
    }
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

/// The numeric `id` of a JSON object a provider API answered with.
pub fn json_id(v: &Value) -> Result<String, Verdict> {
    match &v["id"] {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => Ok(s.clone()),
        _ => Err(Verdict::permanent("the provider answered without an id")),
    }
}

/// The commit an event names, or why no status can be posted: 40 or 64
/// hexadecimal digits (SHA-1 or SHA-256), nothing else, since hosts put it
/// into their API paths ([`crate::githost`]).
pub fn commit_sha(ev: &RunEvent) -> Result<&str, Verdict> {
    let sha = ev
        .scm
        .sha
        .as_deref()
        .ok_or_else(|| Verdict::permanent("the event names no commit"))?;
    if !crate::decode::scm::is_commit_sha(sha) {
        return Err(Verdict::permanent(format!(
            "refused commit {} from the event: a commit is 40 or 64 hexadecimal digits",
            crate::githost::quoted(sha)
        )));
    }
    Ok(sha)
}

/// A status context: the Notification's, else `tekton/<pipeline>`.
pub fn status_context(configured: Option<&str>, ev: &RunEvent) -> String {
    configured.map_or_else(
        || format!("tekton/{}", ev.pipeline.as_deref().unwrap_or(&ev.name)),
        str::to_string,
    )
}

pub use crate::notification::params as notification_params;

/// What most git hosts do for a Notification: post a commit status (the
/// default action, `status`), or keep the run's summary message, whose
/// action the host names (`comment`, `note`, `thread`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitAction {
    Status,
    Summary,
}

impl GitAction {
    pub fn parse(action: Option<&str>, summary: &str) -> Result<GitAction, String> {
        match action.unwrap_or("status") {
            "status" => Ok(GitAction::Status),
            a if a == summary => Ok(GitAction::Summary),
            other => Err(format!(
                "unknown action {other:?}, expected status or {summary}"
            )),
        }
    }
}

/// Notification params of a host whose only setting is the status context.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusParams {
    /// Status context (default `tekton/<pipeline>`).
    #[serde(default)]
    pub context: Option<String>,
}

/// The action check of a provider that takes none: `what` says what it
/// does instead, so the error tells the user why.
pub fn no_action(provider: &str, action: Option<&str>, what: &str) -> Result<(), String> {
    match action {
        None => Ok(()),
        Some(a) => Err(format!("{provider} takes no action (got {a:?}): {what}")),
    }
}

/// The check of a provider with named actions and typed params
/// ([`crate::notification::parse`]), its result dropped.
pub fn check_action_and_params<P: serde::de::DeserializeOwned>(
    action: Result<(), String>,
    params: &serde_json::Map<String, Value>,
) -> Result<(), FieldErrors> {
    crate::notification::parse::<(), P>(action, params).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_commit_is_40_or_64_hex_digits_and_nothing_else() {
        let mut ev = crate::sample::run_event();
        for ok in [
            "a".repeat(40),
            "0123456789ABCDEFabcdef".repeat(3)[..64].to_string(),
        ] {
            ev.scm.sha = Some(ok.clone());
            assert_eq!(commit_sha(&ev).unwrap(), ok);
        }
        for bad in [
            "../../../../../user/repos#",
            "0c5c7fd0a6a3",
            "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4/../x",
            "0c5c7fd0a6a3a4506513270e269e0d37f2a7€",
            "",
        ] {
            ev.scm.sha = Some(bad.into());
            match commit_sha(&ev) {
                Err(Verdict::Permanent {
                    status: None,
                    message,
                }) => {
                    assert!(message.contains("40 or 64 hexadecimal"), "{message}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        ev.scm.sha = None;
        assert!(commit_sha(&ev).is_err());
    }

    #[test]
    fn actions_and_params_are_checked_together() {
        assert_eq!(GitAction::parse(None, "note"), Ok(GitAction::Status));
        assert_eq!(
            GitAction::parse(Some("note"), "note"),
            Ok(GitAction::Summary)
        );
        let mut params = serde_json::Map::new();
        params.insert("context".into(), " ".into());
        let errs = check_action_and_params::<StatusParams>(
            GitAction::parse(Some("comment"), "note").map(|_| ()),
            &params,
        )
        .unwrap_err();
        assert_eq!(errs[0].path, "action");
        assert!(
            errs[0].message.contains("expected status or note"),
            "{errs:?}"
        );
        assert_eq!(
            errs[1],
            FieldError::new("params.context", "must not be empty")
        );
        params.insert("contxt".into(), "x".into());
        let errs = check_action_and_params::<StatusParams>(Ok(()), &params).unwrap_err();
        assert!(
            errs[0].message.contains("unknown field `contxt`"),
            "{errs:?}"
        );
        params.clear();
        params.insert("context".into(), "ci".into());
        assert!(check_action_and_params::<StatusParams>(Ok(()), &params).is_ok());
    }
}
