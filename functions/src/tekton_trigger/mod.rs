//! The `tekton-trigger` provider: POSTs each event to a Tekton Triggers
//! EventListener (so a Flux revision, or a finished run, can start a
//! PipelineRun), with a depth marker that cuts forwarding loops.
//!
//! The loop marker: the request carries `X-Relay-Trigger-Depth: d+1`, where
//! `d` is the depth of the run the event is about (its label
//! `relay.tekton.dev/trigger-depth`, 0 when absent). The EventListener's
//! binding copies the header into that label on the PipelineRun it creates
//! (`knative/examples/tekton-trigger.yaml`), so that run's events come back
//! with depth `d+1`, and are declined once the depth reaches `maxDepth`.

pub mod payload;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use relay_core::field::FieldErrors;
use relay_core::RunEvent;
use relay_core::config::ProviderDoc;
use relay_core::model::EventFormat;
use relay_core::provider::{
    DeliveryInput, Outbound, OutboundRequest, Provider, ProviderError, ProviderFactory,
    parse_settings,
};
use relay_core::secret::SecretFile;
use serde::Deserialize;

pub const TYPE: &str = "tekton-trigger";
/// The request header holding the depth of the run a request may start.
pub const DEPTH_HEADER: &str = "X-Relay-Trigger-Depth";
/// The label holding a run's depth: set by the EventListener's template
/// from [`DEPTH_HEADER`], read back from the run's events.
pub const DEPTH_LABEL: &str = "relay.tekton.dev/trigger-depth";
/// The GitHub-style signature Tekton's `github` interceptor checks:
/// `sha256=<hex of HMAC-SHA256 over the body>`.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

fn default_max_depth() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TektonTriggerSettings {
    /// The EventListener, e.g. `http://el-relay.ci.svc.cluster.local:8080`;
    /// or `urlFile` when the URL itself is a secret.
    #[serde(default)]
    pub url: Option<url::Url>,
    #[serde(default)]
    pub url_file: Option<SecretFile>,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token_file: Option<SecretFile>,
    /// Signs the body into `X-Hub-Signature-256`.
    #[serde(default)]
    pub hmac_secret_file: Option<SecretFile>,
    /// Events of runs this deep in a trigger chain are not forwarded.
    #[serde(default = "default_max_depth")]
    pub max_depth: u32,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

pub struct TektonTrigger {
    settings: TektonTriggerSettings,
    headers: Vec<(HeaderName, HeaderValue)>,
}

pub struct TektonTriggerFactory;

impl ProviderFactory for TektonTriggerFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: TektonTriggerSettings = parse_settings(doc)?;
        let mut errs = FieldErrors::new();
        errs.extend(relay_core::config::check::url_or_file(
            s.url.as_ref(),
            s.url_file.as_ref(),
        ));
        if s.max_depth == 0 {
            errs.push(
                "maxDepth",
                "must be at least 1 (0 would forward nothing)",
            );
        }
        let headers = relay_core::config::check::headers(&s.headers, &mut errs);
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Arc::new(TektonTrigger {
            settings: s,
            headers,
        }))
    }
}

/// A run's depth in a trigger chain, from its label: 0 without the label
/// (a run nobody triggered through the relay, a Flux object), `Err` with
/// the raw value when it is not a number. A CDEvent has no labels: its
/// `customData` (decoded as annotations) carries the label when the
/// producer forwarded it, as the `cloudevents` provider does.
pub fn depth(ev: &RunEvent) -> Result<u32, &str> {
    let marker = ev.labels.get(DEPTH_LABEL).or_else(|| {
        (ev.format == EventFormat::Cdevents)
            .then(|| ev.annotations.get(DEPTH_LABEL))
            .flatten()
    });
    match marker {
        None => Ok(0),
        Some(v) => v.trim().parse().map_err(|_| v.as_str()),
    }
}

fn permanent(e: impl ToString) -> ProviderError {
    ProviderError::Permanent(e.to_string())
}

impl TektonTrigger {
    async fn url(&self) -> Result<url::Url, ProviderError> {
        relay_core::secret_url::resolve(self.settings.url.as_ref(), self.settings.url_file.as_ref())
            .await
            .map_err(ProviderError::from)
    }
}

#[async_trait]
impl Provider for TektonTrigger {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn declines(&self, event: &RunEvent) -> Option<String> {
        let max = self.settings.max_depth;
        match depth(event) {
            Ok(d) if d < max => None,
            Ok(d) => Some(format!(
                "loop cut: {} was started by a trigger at depth {d}, maxDepth is {max}",
                event.display_name()
            )),
            // Unreadable: as if at the limit, since forwarding it could loop.
            Err(raw) => Some(format!(
                "loop cut: {} has label {DEPTH_LABEL}={raw:?}, not a number",
                event.display_name()
            )),
        }
    }

    async fn build(&self, input: &DeliveryInput<'_>) -> Result<Vec<Outbound>, ProviderError> {
        let ev = input.event;
        // `declines` ran first; a malformed label never gets here.
        let next = depth(ev).map_err(|_| permanent("malformed depth label"))? + 1;
        let body = match relay_core::chat::template_text(input).map_err(ProviderError::from)? {
            // An EventListener reads JSON: a template that renders
            // anything else is a mistake to surface, not to send.
            Some(text) => {
                serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                    permanent(format!(
                        "template: an EventListener takes JSON, the template rendered invalid JSON ({e})"
                    ))
                })?;
                text
            }
            None => payload::body(ev, next).to_string(),
        };
        let mut req = OutboundRequest::post_json(self.url().await?, body);
        for (k, v) in &self.headers {
            req.headers.insert(k.clone(), v.clone());
        }
        req.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        req.headers.insert(
            HeaderName::from_static("x-relay-trigger-depth"),
            HeaderValue::from(next),
        );
        if let Ok(v) = HeaderValue::from_str(&ev.event_id) {
            req.headers.insert("x-relay-event-id", v);
        }
        if let Some(f) = &self.settings.token_file {
            let token = f.read().await?;
            req.sensitive_header(AUTHORIZATION, &format!("Bearer {}", token.expose()))?;
        }
        if let Some(f) = &self.settings.hmac_secret_file {
            let secret = f.read().await?;
            let sig = crate::webhook::signature(secret.expose().as_bytes(), &req.body);
            req.sensitive_header(HeaderName::from_static("x-hub-signature-256"), &sig)?;
        }
        Ok(vec![Outbound::Http(req)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("el", TYPE, settings)
    }

    #[test]
    fn header_constants_match_their_wire_form() {
        assert_eq!(DEPTH_HEADER.to_ascii_lowercase(), "x-relay-trigger-depth");
        assert_eq!(SIGNATURE_HEADER.to_ascii_lowercase(), "x-hub-signature-256");
    }

    #[test]
    fn settings_errors_name_their_path() {
        let e = TektonTriggerFactory.build(&doc(json!({}))).err().unwrap();
        assert!(e[0].message.contains("`url` or `urlFile`"));
        let e = TektonTriggerFactory
            .build(&doc(
                json!({"url": "http://el:8080", "maxDepth": 0, "headers": {"a b": "c"}}),
            ))
            .err()
            .unwrap();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["maxDepth", "headers.a b"]);
        let e = TektonTriggerFactory
            .build(&doc(json!({"url": "http://el:8080", "maxDepth": "two"})))
            .err()
            .unwrap();
        assert_eq!(e[0].path, "maxDepth");
        let e = TektonTriggerFactory
            .build(&doc(json!({"url": "http://el:8080", "hmacSecret": "x"})))
            .err()
            .unwrap();
        assert!(e[0].message.contains("unknown field `hmacSecret`"), "{e:?}");
    }

    #[test]
    fn depth_decides_what_is_declined() {
        let p = TektonTriggerFactory
            .build(&doc(json!({"url": "http://el:8080"})))
            .unwrap();
        let mut ev = relay_core::sample::run_event();
        assert_eq!(depth(&ev), Ok(0));
        assert_eq!(p.declines(&ev), None);
        ev.labels.insert(DEPTH_LABEL.into(), "1".into());
        let why = p.declines(&ev).unwrap();
        assert!(
            why.starts_with("loop cut:") && why.contains("depth 1"),
            "{why}"
        );
        ev.labels.insert(DEPTH_LABEL.into(), "many".into());
        assert!(p.declines(&ev).unwrap().contains("not a number"));
        let p = TektonTriggerFactory
            .build(&doc(json!({"url": "http://el:8080", "maxDepth": 2})))
            .unwrap();
        ev.labels.insert(DEPTH_LABEL.into(), "1".into());
        assert_eq!(p.declines(&ev), None);
    }

    #[test]
    fn a_cdevent_carries_its_depth_in_custom_data() {
        let mut ev = relay_core::sample::run_event();
        ev.annotations.insert(DEPTH_LABEL.into(), "2".into());
        assert_eq!(
            depth(&ev),
            Ok(0),
            "a Tekton run's annotations are not the marker"
        );
        ev.format = EventFormat::Cdevents;
        assert_eq!(depth(&ev), Ok(2));
    }
}
