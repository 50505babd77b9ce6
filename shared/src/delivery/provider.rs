//! The interface every provider implements: build the request(s) for an
//! event, and classify the answer. Policy (idempotency, retries, dead
//! letters) lives in the engine, written once.

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::delivery::accumulator::RunSummary;
pub use crate::delivery::notification::{Compiled, Parsed};
use crate::delivery::original::Original;
use crate::delivery::outbound::{Outbound, OutboundRequest, ProviderError};
use crate::delivery::transport::{Http, describe};
use crate::delivery::verdict::{Verdict, default_classify};
use crate::event::config::ProviderDoc;
pub use crate::event::field::{FieldError, FieldErrors};
use crate::event::model::RunEvent;
use crate::event::template::Template;

/// What a provider is given for one event and Notification.
pub struct DeliveryInput<'a> {
    pub event: &'a RunEvent,
    /// The event as received (a replay: as dead-lettered), for providers
    /// that forward it unchanged; `None` where there is none (unit tests).
    pub original: Option<&'a Original>,
    pub notification: &'a str,
    /// The Notification's template, when it has one.
    pub template: Option<&'a Template>,
    /// The run's accumulated summary, for providers that ask for it
    /// ([`Provider::uses_summary`]) when the event belongs to a PipelineRun.
    pub summary: Option<&'a RunSummary>,
    /// The Notification's `action` and `params` as the provider compiled
    /// them at load ([`Provider::compile_notification`]).
    pub compiled: &'a Compiled,
    /// This provider type's part of the shared store, for providers that
    /// remember what they posted.
    pub state: crate::delivery::state::State<'a>,
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
    async fn deliver(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
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
            done.push(describe(ob));
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
