//! The `opsgenie` provider: a failed (or timed out) run creates an alert
//! whose alias names its pipeline, repository and branch; the next
//! successful run there closes it by that alias.

pub mod alert;

use std::sync::Arc;

use async_trait::async_trait;
use relay_core::RunState;
use relay_core::chat::template_text;
use relay_core::config::{ProviderDoc, check};
use relay_core::escape;
use relay_core::field::FieldErrors;
use relay_core::incident::{IncidentProvider, IncidentService, KeyFormat, Lifecycle, Step, Verbs};
use relay_core::provider::{
    DeliveryInput, OutboundRequest, Provider, ProviderFactory, Verdict, parse_settings,
};
use relay_core::secret::SecretFile;
use serde::Deserialize;

pub use alert::Priority;

pub const TYPE: &str = "opsgenie";
const DEFAULT_BASE_URL: &str = "https://api.opsgenie.com";
const DEFAULT_SOURCE: &str = "Tekton";
/// The alert's `alias`: the PagerDuty provider's `dedup_key` with `:` for
/// `/` (closing by alias puts it in the URL path, and an encoded slash may
/// not survive there), a task after `+`, within Opsgenie's 512 characters.
pub const ALIAS_FORMAT: KeyFormat = KeyFormat {
    separator: ':',
    task_separator: '+',
    max: 512,
};
const VERBS: Verbs = Verbs {
    open: "create",
    close: "close",
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpsgenieSettings {
    /// The API key of an API integration (sent as `Authorization: GenieKey …`);
    /// the integration's team gets the alerts.
    pub api_key_file: SecretFile,
    /// `https://api.opsgenie.com` (default); `https://api.eu.opsgenie.com`.
    #[serde(rename = "baseURL", default)]
    pub base_url: Option<url::Url>,
    /// Of created alerts (default `P3`); a Notification's `params.priority`
    /// overrides it.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// The states that create an alert (default `failed`, `timed_out`);
    /// `succeeded` closes it.
    #[serde(default)]
    pub create_on: Option<Vec<RunState>>,
    /// The event kinds acted on (default `PipelineRun`).
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// Tags added to every alert.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The alert's `source` (default `Tekton`).
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpsgenieParams {
    #[serde(default)]
    pub priority: Option<Priority>,
}

pub struct Opsgenie {
    base: url::Url,
    api_key: SecretFile,
    priority: Priority,
    /// `createOn` and `kinds`: what creates, what closes.
    lifecycle: Lifecycle,
    tags: Vec<String>,
    source: String,
}

pub struct OpsgenieFactory;

impl ProviderFactory for OpsgenieFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        Ok(Arc::new(IncidentProvider(Opsgenie::new(parse_settings(
            doc,
        )?)?)))
    }
}

impl Opsgenie {
    pub fn new(s: OpsgenieSettings) -> Result<Opsgenie, FieldErrors> {
        let mut errs = FieldErrors::new();
        let mut base = s
            .base_url
            .unwrap_or_else(|| url::Url::parse(DEFAULT_BASE_URL).expect("a valid URL"));
        errs.extend(check::http_url("baseURL", &base));
        base.set_query(None);
        let lifecycle = Lifecycle::new("createOn", s.create_on, s.kinds, VERBS, &mut errs);
        for (i, t) in s.tags.iter().enumerate() {
            if t.trim().is_empty() || t.chars().count() > alert::TAG_MAX {
                errs.push(
                    format!("tags[{i}]"),
                    format!("a tag has 1 to {} characters", alert::TAG_MAX),
                );
            }
        }
        if s.source.as_deref().is_some_and(|s| s.trim().is_empty()) {
            errs.push("source", "must not be empty");
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Opsgenie {
            base,
            api_key: s.api_key_file,
            priority: s.priority.unwrap_or(Priority::P3),
            lifecycle,
            tags: s.tags,
            source: s.source.unwrap_or_else(|| DEFAULT_SOURCE.into()),
        })
    }

    /// `<base>/v2/alerts[/<alias>/close]`, the alias one encoded segment.
    fn url(&self, alias: Option<&str>) -> Result<url::Url, Verdict> {
        let mut path = format!("{}/v2/alerts", self.base.path().trim_end_matches('/'));
        let mut url = self.base.clone();
        if let Some(a) = alias {
            let seg = escape::path_segment(a).ok_or_else(|| {
                Verdict::permanent(format!("alias {a:?} cannot be a URL segment"))
            })?;
            path.push_str(&format!("/{seg}/close"));
            url.set_query(Some("identifierType=alias"));
        }
        url.set_path(&path);
        Ok(url)
    }
}

#[async_trait]
impl IncidentService for Opsgenie {
    const TYPE: &'static str = TYPE;
    const NO_ACTION: &'static str = "failures create an alert, successes close it";
    const KEY_FORMAT: KeyFormat = ALIAS_FORMAT;
    // Opsgenie answers 202 and processes the request later: a close of an
    // alias with no open alert is accepted and does nothing.
    const DONE: Verbs = Verbs {
        open: "created alert",
        close: "closed alert",
    };
    type Params = OpsgenieParams;

    fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    async fn request(
        &self,
        input: &DeliveryInput<'_>,
        params: &OpsgenieParams,
        step: Step,
        alias: &str,
    ) -> Result<OutboundRequest, Verdict> {
        let ev = input.event;
        let (url, body) = match step {
            Step::Open => (
                self.url(None)?,
                alert::create(
                    ev,
                    alert::Create {
                        alias,
                        priority: params.priority.unwrap_or(self.priority),
                        source: &self.source,
                        tags: &self.tags,
                        template: template_text(input)?,
                    },
                ),
            ),
            Step::Close => (self.url(Some(alias))?, alert::close(ev, &self.source)),
        };
        let mut req = OutboundRequest::post_json(url, body.to_string());
        self.api_key
            .authorize(&mut req, "GenieKey")
            .await
            .map_err(|e| Verdict::permanent(e.to_string()))?;
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("og", TYPE, settings)
    }

    fn parse(settings: Value) -> OpsgenieSettings {
        parse_settings(&doc(settings)).unwrap()
    }

    fn errors(settings: Value) -> FieldErrors {
        crate::testkit::refused(&OpsgenieFactory, &doc(settings))
    }

    #[test]
    fn settings_errors_name_their_path() {
        assert!(
            OpsgenieFactory
                .build(&doc(json!({"apiKeyFile": "/k"})))
                .is_ok()
        );
        let e = errors(json!({}));
        assert!(e[0].message.contains("missing field `apiKeyFile`"), "{e:?}");
        let e = errors(json!({"apiKeyFile": "/k", "priority": "P6"}));
        assert_eq!(e[0].path, "priority");
        assert!(e[0].message.contains("expected one of `P1`"), "{e:?}");
        let e = errors(json!({"apiKeyFile": "/k", "createOn": ["succeeded"]}));
        assert_eq!(e[0].path, "createOn[0]", "{e:?}");
        let e = errors(json!({"apiKeyFile": "/k", "baseURL": "ftp://x", "tags": ["ok", ""]}));
        assert_eq!(e[0].path, "baseURL");
        assert_eq!(e[1].path, "tags[1]");
        let e = errors(json!({"apiKeyFile": "/k", "apiKey": "x"}));
        assert!(e[0].message.contains("unknown field `apiKey`"), "{e:?}");
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_the_alias() {
        let og = Opsgenie::new(parse(json!({"apiKeyFile": "/k"}))).unwrap();
        assert_eq!(
            og.url(None).unwrap().as_str(),
            "https://api.opsgenie.com/v2/alerts"
        );
        let og = Opsgenie::new(parse(
            json!({"apiKeyFile": "/k", "baseURL": "http://mock:1/og/?x=1"}),
        ))
        .unwrap();
        assert_eq!(
            og.url(Some("tekton:ci:p@fix/x y")).unwrap().as_str(),
            "http://mock:1/og/v2/alerts/tekton%3Aci%3Ap%40fix%2Fx%20y/close?identifierType=alias"
        );
    }

    #[test]
    fn only_create_and_close_states_of_chosen_kinds_are_sent() {
        let og = IncidentProvider(Opsgenie::new(parse(json!({"apiKeyFile": "/k"}))).unwrap());
        let mut ev = relay_core::sample::run_event();
        for (state, sent) in [
            (RunState::Failed, true),
            (RunState::TimedOut, true),
            (RunState::Succeeded, true),
            (RunState::Cancelled, false),
            (RunState::Running, false),
        ] {
            ev.state = state;
            assert_eq!(og.declines(&ev).is_none(), sent, "{state}");
        }
        ev.kind = "TaskRun".into();
        assert!(og.declines(&ev).unwrap().contains("not TaskRun"));
    }

    #[test]
    fn notifications_take_a_priority_only() {
        let og = IncidentProvider(Opsgenie::new(parse(json!({"apiKeyFile": "/k"}))).unwrap());
        let mut p = Map::new();
        p.insert("priority".into(), "P1".into());
        assert!(og.compile_notification(None, &p).is_ok());
        p.insert("priority".into(), "urgent".into());
        let e = og.compile_notification(Some("create"), &p).unwrap_err();
        assert_eq!(e[0].path, "action");
        assert_eq!(e[1].path, "params.priority", "{e:?}");
    }
}
