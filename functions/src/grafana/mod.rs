//! The `grafana` provider: an annotation per finished run (`POST
//! /api/annotations`), spanning the run's start to its completion, tagged
//! with the pipeline, namespace, state and repository so dashboards can
//! query them; organisation-wide, or on one dashboard (and panel).

pub mod text;

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use relay_core::field::FieldErrors;
use relay_core::RunEvent;
use relay_core::chat::{ChatView, template_text};
use relay_core::config::{ProviderDoc, check};
use relay_core::escape;
use relay_core::provider::{
    DeliveryInput, Outbound, OutboundRequest, Provider, ProviderError, ProviderFactory,
    Compiled, notification_params, parse_settings,
};
use relay_core::secret::SecretFile;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub const TYPE: &str = "grafana";
/// Grafana stores a tag's key and value in columns of 100 characters.
const TAG_MAX: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrafanaSettings {
    /// The Grafana root: `https://grafana.example.com`,
    /// `https://acme.grafana.net`, or one under a sub-path.
    #[serde(rename = "baseURL")]
    pub base_url: url::Url,
    /// A service account token with `annotations:create` (role Editor).
    pub token_file: SecretFile,
    /// Sent as `X-Grafana-Org-Id`, for a token of another organisation
    /// than the default.
    #[serde(default)]
    pub org_id: Option<u64>,
    /// Tags added to every annotation.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A Notification's `params`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrafanaParams {
    /// More tags, after the provider's.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Annotate this dashboard rather than the organisation.
    #[serde(default, rename = "dashboardUID")]
    pub dashboard_uid: Option<String>,
    /// And only this panel of it.
    #[serde(default)]
    pub panel_id: Option<u64>,
}

pub struct Grafana {
    url: url::Url,
    token: SecretFile,
    org_id: Option<HeaderValue>,
    tags: Vec<String>,
}

pub struct GrafanaFactory;

impl ProviderFactory for GrafanaFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: GrafanaSettings = parse_settings(doc)?;
        let mut errs: FieldErrors = check::blank_items("tags", &s.tags).collect();
        let mut url = s.base_url.clone();
        let path = url.path().trim_end_matches('/').to_string();
        if !matches!(url.scheme(), "http" | "https")
            || url.cannot_be_a_base()
            || path.contains("/api/")
            || path.ends_with("/api")
            || path.contains("/d/")
        {
            errs.push(
                "baseURL",
                format!(
                    "expected Grafana's root URL (https://grafana.example.com), \
                     without /api or a dashboard path, got {url}"
                ),
            );
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        url.set_path(&format!("{path}/api/annotations"));
        url.set_query(None);
        url.set_fragment(None);
        Ok(Arc::new(Grafana {
            url,
            token: s.token_file,
            org_id: s.org_id.map(HeaderValue::from),
            tags: s.tags,
        }))
    }
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn millis(t: Option<&str>) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t?)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A tag: one line, cut to what Grafana stores.
fn tag(s: &str) -> String {
    escape::one_line(s, TAG_MAX)
}

/// The event's tags, then the provider's, then the Notification's; each once.
pub fn tags(ev: &RunEvent, provider: &[String], notification: &[String]) -> Vec<String> {
    let mut out = vec!["tekton".to_string()];
    if let Some(p) = &ev.pipeline {
        out.push(tag(&format!("pipeline:{p}")));
    }
    out.push(tag(&format!("namespace:{}", ev.namespace)));
    out.push(format!("state:{}", ev.state));
    let repo = match (&ev.scm.owner, &ev.scm.name) {
        (Some(o), Some(n)) => Some(format!("{o}/{n}")),
        _ => ev.scm.repo.clone(),
    };
    if let Some(r) = repo {
        out.push(tag(&format!("repo:{r}")));
    }
    for t in provider.iter().chain(notification) {
        out.push(tag(t));
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|t| seen.insert(t.clone()));
    out
}

/// The annotation: from the run's start to its completion (a region), or
/// at the one time known.
pub fn body(ev: &RunEvent, text: String, tags: Vec<String>, params: &GrafanaParams) -> Value {
    let end = millis(ev.completed_at.as_deref());
    let start = millis(ev.started_at.as_deref())
        .or(end)
        .or_else(|| millis(ev.time.as_deref()))
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let mut b = json!({"time": start, "tags": tags, "text": text});
    if let Some(end) = end.filter(|e| *e >= start) {
        b["timeEnd"] = end.into();
    }
    if let Some(d) = &params.dashboard_uid {
        b["dashboardUID"] = d.clone().into();
    }
    if let Some(p) = params.panel_id {
        b["panelId"] = p.into();
    }
    b
}

#[async_trait]
impl Provider for Grafana {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn compile_notification(
        &self,
        action: Option<&str>,
        params: &Map<String, Value>,
    ) -> Result<Compiled, FieldErrors> {
        let mut errs = FieldErrors::new();
        if let Some(a) = action {
            errs.push(
                "action",
                format!("grafana providers take no action (got {a:?}): they annotate"),
            );
        }
        let parsed = notification_params::<GrafanaParams>(params);
        match &parsed {
            Err(e) => errs.extend([e.clone()]),
            Ok(p) => {
                errs.extend(check::blank_items("params.tags", &p.tags));
                if p.dashboard_uid
                    .as_deref()
                    .is_some_and(|d| d.trim().is_empty())
                {
                    errs.push("params.dashboardUID", "must not be empty");
                }
                if p.panel_id.is_some() && p.dashboard_uid.is_none() {
                    errs.push(
                        "params.panelId",
                        "needs params.dashboardUID (the panel's dashboard)",
                    );
                }
            }
        }
        match parsed {
            Ok(p) if errs.is_empty() => Ok(Compiled::new(p)),
            _ => Err(errs),
        }
    }

    /// Finished runs only: the annotation spans the run, and a TaskRun of a
    /// PipelineRun is inside its PipelineRun's annotation already.
    fn declines(&self, ev: &RunEvent) -> Option<String> {
        if !ev.state.is_terminal() {
            return Some(format!(
                "grafana annotates finished runs; this one is {}",
                ev.state
            ));
        }
        match &ev.pipeline_run {
            Some(parent) if ev.kind != "PipelineRun" => Some(format!(
                "a task of PipelineRun {}: its PipelineRun's annotation covers it",
                parent.name
            )),
            _ => None,
        }
    }

    async fn build(&self, input: &DeliveryInput<'_>) -> Result<Vec<Outbound>, ProviderError> {
        let ev = input.event;
        let params: &GrafanaParams = input.compiled.get().map_err(ProviderError::from)?;
        let text = match template_text(input).map_err(ProviderError::from)? {
            Some(t) => text::from_template(&t),
            None => text::default_text(&ChatView::of(ev)),
        };
        let b = body(ev, text, tags(ev, &self.tags, &params.tags), params);
        let mut req = OutboundRequest::post_json(self.url.clone(), b.to_string());
        if let Some(org) = &self.org_id {
            req.headers
                .insert(HeaderName::from_static("x-grafana-org-id"), org.clone());
        }
        self.token.authorize(&mut req, "Bearer").await?;
        Ok(vec![Outbound::Http(req)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("grafana", TYPE, settings)
    }

    fn grafana() -> Grafana {
        Grafana {
            url: url::Url::parse("https://g.example/api/annotations").unwrap(),
            token: SecretFile("/t".into()),
            org_id: None,
            tags: Vec::new(),
        }
    }

    #[test]
    fn settings_errors_name_their_path() {
        let f = GrafanaFactory;
        assert!(
            f.build(&doc(
                json!({"baseURL": "https://g.example/grafana/", "tokenFile": "/t",
                                "orgId": 2, "tags": ["ci"]})
            ))
            .is_ok()
        );
        for (bad, path, msg) in [
            (json!({"tokenFile": "/t"}), "", "missing field `baseURL`"),
            (
                json!({"baseURL": "https://g.example"}),
                "",
                "missing field `tokenFile`",
            ),
            (
                json!({"baseURL": "https://g.example/api/annotations", "tokenFile": "/t"}),
                "baseURL",
                "without /api",
            ),
            (
                json!({"baseURL": "https://g.example", "tokenFile": "/t", "orgId": "main"}),
                "orgId",
                "invalid type",
            ),
            (
                json!({"baseURL": "https://g.example", "tokenFile": "/t", "tags": ["ci", " "]}),
                "tags[1]",
                "must not be empty",
            ),
        ] {
            let errs = f.build(&doc(bad)).err().unwrap();
            assert_eq!(errs[0].path, path, "{errs:?}");
            assert!(errs[0].message.contains(msg), "{errs:?}");
        }
    }

    #[test]
    fn notification_params_are_checked() {
        let g = grafana();
        let p = |v: Value| v.as_object().unwrap().clone();
        assert!(g.compile_notification(None, &Map::new()).is_ok());
        assert!(
            g.compile_notification(
                None,
                &p(json!({"dashboardUID": "abc", "panelId": 2, "tags": ["x"]}))
            )
            .is_ok()
        );
        let errs = g
            .compile_notification(Some("annotate"), &p(json!({"panelId": 2, "tags": [""]})))
            .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["action", "params.tags[0]", "params.panelId"],
            "{errs:?}"
        );
        let errs = g
            .compile_notification(None, &p(json!({"dashboardUid": "x"})))
            .unwrap_err();
        assert!(
            errs[0].message.contains("unknown field `dashboardUid`"),
            "{errs:?}"
        );
    }

    #[test]
    fn the_annotation_spans_the_run_with_its_tags() {
        let ev = relay_core::sample::run_event();
        let t = tags(
            &ev,
            &["env:prod".into(), "tekton".into()],
            &["team:pay".into()],
        );
        assert_eq!(
            t,
            [
                "tekton",
                "pipeline:build-and-test",
                "namespace:ci",
                "state:failed",
                "repo:acme/widgets",
                "env:prod",
                "team:pay"
            ]
        );
        let params = GrafanaParams {
            dashboard_uid: Some("ci-dash".into()),
            panel_id: Some(4),
            ..Default::default()
        };
        let b = body(&ev, "x".into(), t, &params);
        assert_eq!(b["time"], 1715684040000i64);
        assert_eq!(b["timeEnd"], 1715684280000i64);
        assert_eq!(b["dashboardUID"], "ci-dash");
        assert_eq!(b["panelId"], 4);
        let mut ev = ev;
        ev.started_at = None;
        let b = body(&ev, "x".into(), Vec::new(), &GrafanaParams::default());
        assert_eq!(b["time"], 1715684280000i64);
        assert_eq!(b["timeEnd"], 1715684280000i64);
        assert!(b.get("dashboardUID").is_none() && b.get("panelId").is_none());
    }

    #[test]
    fn only_finished_runs_are_annotated() {
        let g = grafana();
        let mut ev = relay_core::sample::run_event();
        assert_eq!(g.declines(&ev), None);
        ev.kind = "TaskRun".into();
        assert!(g.declines(&ev).unwrap().contains("a task of PipelineRun"));
        ev.pipeline_run = None;
        assert_eq!(g.declines(&ev), None);
        ev.state = relay_core::RunState::Running;
        assert!(g.declines(&ev).unwrap().contains("this one is running"));
    }
}
