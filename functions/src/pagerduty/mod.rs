//! The `pagerduty` provider: PagerDuty Events API v2. A failed (or timed
//! out) run triggers an alert keyed by its pipeline, repository and branch
//! (`dedup_key`), and the next successful run there resolves it.

pub mod event;

use std::sync::Arc;

use async_trait::async_trait;
use relay_core::RunState;
use relay_core::chat::template_text;
use relay_core::config::{ProviderDoc, check};
use relay_core::field::FieldErrors;
use relay_core::incident::{IncidentProvider, IncidentService, KeyFormat, Lifecycle, Step, Verbs};
use relay_core::provider::{
    DeliveryInput, OutboundRequest, Provider, ProviderFactory, Verdict, parse_settings,
};
use relay_core::secret::SecretFile;
use serde::Deserialize;

pub use event::Severity;

pub const TYPE: &str = "pagerduty";
const DEFAULT_BASE_URL: &str = "https://events.pagerduty.com";
/// `dedup_key`: `tekton/<namespace>/<pipeline>/<owner>/<repo>@<branch>`, a
/// task after `:`, within PagerDuty's 255 characters.
pub const KEY_FORMAT: KeyFormat = KeyFormat {
    separator: '/',
    task_separator: ':',
    max: 255,
};
const VERBS: Verbs = Verbs {
    open: "trigger",
    close: "resolve",
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PagerdutySettings {
    /// The integration key of an Events API v2 integration (or a ruleset's
    /// routing key). It travels in the body, so it is never logged.
    pub routing_key_file: SecretFile,
    /// `https://events.pagerduty.com` (default); `https://events.eu.pagerduty.com`.
    #[serde(rename = "baseURL", default)]
    pub base_url: Option<url::Url>,
    /// Of triggered alerts (default `error`); a Notification's
    /// `params.severity` overrides it.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// The states that trigger (default `failed`, `timed_out`); `succeeded`
    /// resolves.
    #[serde(default)]
    pub trigger_on: Option<Vec<RunState>>,
    /// The event kinds acted on (default `PipelineRun`): a task's failure is
    /// its pipeline's, paged once.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// `payload.source` (default the repository, else `tekton/<namespace>`).
    #[serde(default)]
    pub source: Option<String>,
}

/// A Notification's params.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PagerdutyParams {
    #[serde(default)]
    pub severity: Option<Severity>,
}

pub struct Pagerduty {
    enqueue: url::Url,
    routing_key: SecretFile,
    severity: Severity,
    /// `triggerOn` and `kinds`: what triggers, what resolves.
    lifecycle: Lifecycle,
    source: Option<String>,
}

pub struct PagerdutyFactory;

impl ProviderFactory for PagerdutyFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        Ok(Arc::new(IncidentProvider(Pagerduty::new(parse_settings(
            doc,
        )?)?)))
    }
}

impl Pagerduty {
    pub fn new(s: PagerdutySettings) -> Result<Pagerduty, FieldErrors> {
        let mut errs = FieldErrors::new();
        let base = s
            .base_url
            .unwrap_or_else(|| url::Url::parse(DEFAULT_BASE_URL).expect("a valid URL"));
        errs.extend(check::http_url("baseURL", &base));
        let mut enqueue = base.clone();
        enqueue.set_path(&format!("{}/v2/enqueue", base.path().trim_end_matches('/')));
        enqueue.set_query(None);
        let lifecycle = Lifecycle::new("triggerOn", s.trigger_on, s.kinds, VERBS, &mut errs);
        if s.source.as_deref().is_some_and(|s| s.trim().is_empty()) {
            errs.push("source", "must not be empty");
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Pagerduty {
            enqueue,
            routing_key: s.routing_key_file,
            severity: s.severity.unwrap_or(Severity::Error),
            lifecycle,
            source: s.source,
        })
    }
}

#[async_trait]
impl IncidentService for Pagerduty {
    const TYPE: &'static str = TYPE;
    const NO_ACTION: &'static str = "failures trigger, successes resolve";
    const KEY_FORMAT: KeyFormat = KEY_FORMAT;
    const DONE: Verbs = Verbs {
        open: "triggered",
        close: "resolved",
    };
    type Params = PagerdutyParams;

    fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    async fn request(
        &self,
        input: &DeliveryInput<'_>,
        params: &PagerdutyParams,
        step: Step,
        key: &str,
    ) -> Result<OutboundRequest, Verdict> {
        let ev = input.event;
        let mut body = match step {
            Step::Open => event::trigger(
                ev,
                key,
                params.severity.unwrap_or(self.severity),
                self.source.as_deref(),
                template_text(input)?,
            ),
            Step::Close => event::resolve(key),
        };
        let routing_key = self
            .routing_key
            .read()
            .await
            .map_err(Verdict::from)?;
        body["routing_key"] = routing_key.expose().into();
        let mut req = OutboundRequest::post_json(self.enqueue.clone(), body.to_string());
        // PagerDuty's 400 answers may echo the body: classified (the
        // default: 202 accepted; 400 invalid event, permanent; 429 and 5xx
        // retried) with the routing key masked.
        req.mask_in_answer(routing_key);
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("pd", TYPE, settings)
    }

    fn parse(settings: Value) -> PagerdutySettings {
        parse_settings(&doc(settings)).unwrap()
    }

    fn errors(settings: Value) -> FieldErrors {
        crate::testkit::refused(&PagerdutyFactory, &doc(settings))
    }

    #[test]
    fn settings_errors_name_their_path() {
        assert!(
            PagerdutyFactory
                .build(&doc(json!({"routingKeyFile": "/k"})))
                .is_ok()
        );
        let e = errors(json!({}));
        assert!(
            e[0].message.contains("missing field `routingKeyFile`"),
            "{e:?}"
        );
        let e = errors(json!({"routingKeyFile": "/k", "severity": "fatal"}));
        assert_eq!(e[0].path, "severity");
        assert!(e[0].message.contains("expected one of `critical`"), "{e:?}");
        let e = errors(json!({"routingKeyFile": "/k", "triggerOn": ["failed", "broken"]}));
        assert_eq!(e[0].path, "triggerOn[1]", "{e:?}");
        let e = errors(json!({"routingKeyFile": "/k", "triggerOn": ["failed", "succeeded"]}));
        assert_eq!(e[0].path, "triggerOn[1]", "{e:?}");
        let e = errors(json!({"routingKeyFile": "/k", "baseURL": "ftp://x", "kinds": []}));
        assert_eq!(e[0].path, "baseURL");
        assert_eq!(e[1].path, "kinds");
        let e = errors(json!({"routingKeyFile": "/k", "routingKey": "R0UT1NG"}));
        assert!(e[0].message.contains("unknown field `routingKey`"), "{e:?}");
    }

    fn provider(settings: Value) -> Arc<dyn Provider> {
        PagerdutyFactory.build(&doc(settings)).ok().unwrap()
    }

    #[test]
    fn only_trigger_and_resolve_states_of_chosen_kinds_are_sent() {
        let pd = provider(json!({"routingKeyFile": "/k"}));
        let mut ev = relay_core::sample::run_event();
        for (state, sent) in [
            (RunState::Failed, true),
            (RunState::TimedOut, true),
            (RunState::Succeeded, true),
            (RunState::Cancelled, false),
            (RunState::Running, false),
            (RunState::Started, false),
        ] {
            ev.state = state;
            assert_eq!(pd.declines(&ev).is_none(), sent, "{state}");
        }
        ev.state = RunState::Cancelled;
        assert_eq!(
            pd.declines(&ev).unwrap(),
            "a cancelled run neither triggers nor resolves an alert"
        );
        ev.state = RunState::Failed;
        ev.kind = "TaskRun".into();
        assert!(pd.declines(&ev).unwrap().contains("not TaskRun"));
        let pd = provider(
            json!({"routingKeyFile": "/k", "kinds": ["TaskRun"], "triggerOn": ["cancelled"]}),
        );
        assert!(pd.declines(&ev).is_some(), "failed no longer triggers");
        ev.state = RunState::Cancelled;
        assert!(pd.declines(&ev).is_none());
    }

    #[test]
    fn notifications_take_a_severity_only() {
        let pd = provider(json!({"routingKeyFile": "/k"}));
        let mut p = Map::new();
        p.insert("severity".into(), "warning".into());
        assert!(pd.compile_notification(None, &p).is_ok());
        p.insert("severity".into(), "high".into());
        let e = pd.compile_notification(Some("trigger"), &p).unwrap_err();
        assert_eq!(e[0].path, "action");
        assert_eq!(e[1].path, "params.severity", "{e:?}");
    }

    #[test]
    fn the_enqueue_url_keeps_the_base_path() {
        let pd = Pagerduty::new(parse(json!({"routingKeyFile": "/k"}))).unwrap();
        assert_eq!(
            pd.enqueue.as_str(),
            "https://events.pagerduty.com/v2/enqueue"
        );
        let pd = Pagerduty::new(parse(
            json!({"routingKeyFile": "/k", "baseURL": "http://mock:8080/pd/?x=1"}),
        ))
        .unwrap();
        assert_eq!(pd.enqueue.as_str(), "http://mock:8080/pd/v2/enqueue");
    }
}
