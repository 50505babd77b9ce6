//! The `cloudevents` provider: forwards each run event to any CloudEvents
//! sink (a Knative Broker, another relay, an event bus), as the event
//! received (`format: original`) or converted to CDEvents spec 0.4
//! (`format: cdevents`), in binary or structured mode.

pub mod cdevent;
pub mod resource;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use cloudevents::{AttributesReader, Event};
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use relay_core::field::FieldErrors;
use relay_core::RunEvent;
use relay_core::config::ProviderDoc;
use relay_core::ingress::Original;
use relay_core::provider::{
    DeliveryInput, Outbound, Provider, ProviderError, ProviderFactory, parse_settings,
};
use relay_core::secret::SecretFile;
use serde::Deserialize;
use serde_json::Value;

pub use wire::Mode;

pub const TYPE: &str = "cloudevents";

/// What is forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The event as received.
    #[default]
    Original,
    /// A CDEvent, spec 0.4 (TEP-0137).
    Cdevents,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudeventsSettings {
    /// The sink; or `urlFile` when the URL itself is a secret.
    #[serde(default)]
    pub url: Option<url::Url>,
    #[serde(default)]
    pub url_file: Option<SecretFile>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub format: Format,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token_file: Option<SecretFile>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The CDEvents context `source` (the producer); default the run's
    /// API path, as Tekton's own CDEvents controller sets it.
    #[serde(default)]
    pub source: Option<String>,
}

pub struct Cloudevents {
    settings: CloudeventsSettings,
    headers: Vec<(HeaderName, HeaderValue)>,
}

pub struct CloudeventsFactory;

impl ProviderFactory for CloudeventsFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: CloudeventsSettings = parse_settings(doc)?;
        let mut errs = FieldErrors::new();
        errs.extend(relay_core::config::check::url_or_file(
            s.url.as_ref(),
            s.url_file.as_ref(),
        ));
        let headers = relay_core::config::check::headers(&s.headers, &mut errs);
        if let Some(src) = &s.source
            && cdevents_sdk::UriReference::try_from(src.as_str()).is_err()
        {
            errs.push("source", format!("{src:?} is not a URI-reference"));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Arc::new(Cloudevents {
            settings: s,
            headers,
        }))
    }
}

fn permanent(e: impl ToString) -> ProviderError {
    ProviderError::Permanent(e.to_string())
}

/// The Notification's template, rendered: the user's data. A template that
/// renders JSON is rendered with every value escaped for a JSON string, so
/// event text cannot change its structure (add keys); anything else is
/// rendered as text and sent as a JSON string.
fn template_data(input: &DeliveryInput<'_>) -> Result<Option<Value>, ProviderError> {
    let Some(t) = input.template else {
        return Ok(None);
    };
    let ctx = relay_core::engine::template_context(input.event, input.notification);
    let json = t
        .render_json(&ctx)
        .map_err(|e| permanent(format!("template: {e}")))?;
    if let Ok(v) = serde_json::from_str(&json) {
        return Ok(Some(v));
    }
    let text = t
        .render(&ctx)
        .map_err(|e| permanent(format!("template: {e}")))?;
    Ok(Some(Value::String(text)))
}

/// The SCM context a receiving relay (or any CDEvents consumer) reads back:
/// the run's Pipelines-as-Code and relay annotations and labels.
fn scm_custom_data(ev: &RunEvent) -> Option<Value> {
    let map: serde_json::Map<String, Value> = ev
        .labels
        .iter()
        .chain(ev.annotations.iter())
        .filter(|(k, _)| {
            k.starts_with("pipelinesascode.tekton.dev/") || k.starts_with("relay.tekton.dev/")
        })
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    (!map.is_empty()).then_some(Value::Object(map))
}

impl Cloudevents {
    fn cdevent(
        &self,
        ev: &RunEvent,
        source: &str,
        data: Option<Value>,
    ) -> Result<Event, ProviderError> {
        let cd =
            cdevent::build(ev, source, data.or_else(|| scm_custom_data(ev))).map_err(permanent)?;
        Event::try_from(cd).map_err(|e| permanent(format!("CDEvent as CloudEvent: {e}")))
    }

    /// The event as received (a replay: as dead-lettered), sent on
    /// unchanged but for its data when a template replaces it. A Flux
    /// payload travels as the CloudEvent the relay wraps it in.
    fn original(
        &self,
        input: &DeliveryInput<'_>,
        data: Option<Value>,
    ) -> Result<Event, ProviderError> {
        let mut event = match input.original {
            Some(Original::CloudEvent(ce)) => (**ce).clone(),
            Some(Original::Json(v)) if relay_core::decode::flux::is_flux(v) => {
                relay_core::decode::flux::to_cloudevent(input.event, v.clone())
            }
            Some(Original::Json(v)) => relay_core::decode::wrappers::structured(v.clone())
                .map_err(|e| permanent(format!("the event as received: {e}")))?,
            None => return Err(permanent("the event as received is not available")),
        };
        match data {
            // JSON data as JSON (not base64) in structured mode too, however it arrived.
            None => {
                if let Ok(v) = relay_core::decode::data_json(&event) {
                    let ct = event
                        .datacontenttype()
                        .unwrap_or("application/json")
                        .to_string();
                    event.set_data(ct, v);
                }
            }
            Some(Value::String(s)) => {
                event.set_data("text/plain", s);
            }
            Some(v) => {
                event.set_data("application/json", v);
            }
        }
        Ok(event)
    }

    async fn url(&self) -> Result<url::Url, ProviderError> {
        relay_core::secret_url::resolve(self.settings.url.as_ref(), self.settings.url_file.as_ref())
            .await
            .map_err(ProviderError::from)
    }
}

#[async_trait]
impl Provider for Cloudevents {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn declines(&self, event: &RunEvent) -> Option<String> {
        match self.settings.format {
            Format::Cdevents => cdevent::mapping(event).err(),
            Format::Original => None,
        }
    }

    async fn build(&self, input: &DeliveryInput<'_>) -> Result<Vec<Outbound>, ProviderError> {
        let ev = input.event;
        let data = template_data(input)?;
        let event = match self.settings.format {
            Format::Original => self.original(input, data)?,
            Format::Cdevents => {
                let path = resource::path(ev);
                let source = self.settings.source.as_deref().unwrap_or(&path);
                self.cdevent(ev, source, data)?
            }
        };
        let mut req =
            wire::request(self.settings.mode, event, self.url().await?).map_err(permanent)?;
        // The event's own headers (ce-*, content type) win over configured ones.
        for (k, v) in &self.headers {
            if !req.headers.contains_key(k) {
                req.headers.insert(k.clone(), v.clone());
            }
        }
        if let Some(f) = &self.settings.token_file {
            let token = f.read().await?;
            req.sensitive_header(AUTHORIZATION, &format!("Bearer {}", token.expose()))?;
        }
        Ok(vec![Outbound::Http(req)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("ce", TYPE, settings)
    }

    fn errors(settings: Value) -> FieldErrors {
        crate::testkit::refused(&CloudeventsFactory, &doc(settings))
    }

    #[test]
    fn settings_errors_name_their_path() {
        assert!(
            errors(serde_json::json!({}))[0]
                .message
                .contains("`url` or `urlFile`")
        );
        let e = errors(serde_json::json!({"url": "http://x", "mode": "batch"}));
        assert_eq!(e[0].path, "mode", "{e:?}");
        let e = errors(serde_json::json!({"url": "http://x", "format": "cdevent"}));
        assert_eq!(e[0].path, "format", "{e:?}");
        let e = errors(serde_json::json!({"url": "http://x", "tokenFil": "/t"}));
        assert!(e[0].message.contains("unknown field `tokenFil`"), "{e:?}");
        let e =
            errors(serde_json::json!({"url": "ftp://x", "source": "a b", "headers": {"a b": "c"}}));
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["url", "headers.a b", "source"]);
    }

    #[test]
    fn only_mapped_events_are_taken_as_cdevents() {
        let p = CloudeventsFactory
            .build(&doc(
                serde_json::json!({"url": "http://x", "format": "cdevents"}),
            ))
            .unwrap();
        let mut ev = relay_core::sample::run_event();
        assert_eq!(p.declines(&ev), None);
        ev.state = relay_core::model::RunState::Running;
        assert!(p.declines(&ev).unwrap().contains("running"));
        let p = CloudeventsFactory
            .build(&doc(serde_json::json!({"url": "http://x"})))
            .unwrap();
        assert_eq!(p.declines(&ev), None, "original takes every event");
    }

    /// A run name built to add a key to the data keeps the template's keys;
    /// a text template stays text.
    #[test]
    fn a_run_name_cannot_add_keys_to_the_data() {
        let mut ev = relay_core::sample::run_event();
        ev.name = r#"x", "admin": true, "y": ""#.into();
        let store: relay_core::store::SharedStore =
            Arc::new(relay_core::store::memory::MemoryStore::default());
        let compiled = relay_core::provider::Compiled::none();
        let data = |source: &str| {
            let t = relay_core::template::Template::compile(source).unwrap();
            template_data(&DeliveryInput {
                event: &ev,
                original: None,
                notification: "n",
                template: Some(&t),
                summary: None,
                compiled: &compiled,
                state: relay_core::state::State::new(&store, "test"),
            })
            .unwrap()
            .unwrap()
        };
        let v = data(r#"{"run": "{{ event.name }}", "team": "payments"}"#);
        assert_eq!(v, serde_json::json!({"run": ev.name, "team": "payments"}));
        let v = data(r#"{"run": {{ event.name | tojson }}}"#);
        assert_eq!(v, serde_json::json!({"run": ev.name}));
        let v = data("done: {{ event.name }}");
        assert_eq!(v, Value::String(format!("done: {}", ev.name)));
    }
}
