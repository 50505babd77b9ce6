//! The Events API v2 bodies, without the routing key (added when sent, so
//! what is built here can be shown in tests and errors).

use relay_core::chat::ChatView;
use relay_core::escape::{self, inert};
use relay_core::incident;
use relay_core::model::RunEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// PagerDuty's limit on `payload.summary`.
pub const SUMMARY_MAX: usize = 1024;
/// PagerDuty shows `source`, `component`, `group` and `class` as one-line
/// fields; bounded so a long name cannot make the event invalid.
const FIELD_MAX: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

/// `trigger`: the alert is opened (or, with the same key, added to).
pub fn trigger(
    ev: &RunEvent,
    key: &str,
    severity: Severity,
    source: Option<&str>,
    template: Option<String>,
) -> Value {
    let view = ChatView::of(ev);
    // A template is the user's own text, sent as written.
    let summary = escape::one_line(&template.unwrap_or_else(|| summary(&view)), SUMMARY_MAX);
    let source = source.map(str::to_string).unwrap_or_else(|| {
        ev.scm
            .repo
            .clone()
            .unwrap_or_else(|| format!("tekton/{}", ev.namespace))
    });
    let component = ev
        .pipeline_task
        .as_ref()
        .or(ev.task.as_ref())
        .or(ev.pipeline.as_ref())
        .unwrap_or(&ev.name);
    let mut details = Map::new();
    details.insert("Run".into(), inert(&ev.display_name()).into());
    for f in &view.facts {
        details.insert(f.label.into(), inert(&f.value).into());
    }
    if let Some(m) = &view.message {
        details.insert("Message".into(), inert(m).into());
    }
    let mut payload = json!({
        "summary": summary,
        "source": escape::one_line(&source, FIELD_MAX),
        "severity": severity,
        "component": escape::one_line(&inert(component), FIELD_MAX),
        "group": escape::one_line(&ev.namespace, FIELD_MAX),
        "class": escape::one_line(&ev.kind, FIELD_MAX),
        "custom_details": details,
    });
    if let Some(t) = timestamp(ev) {
        payload["timestamp"] = t.into();
    }
    let mut body = json!({
        "event_action": "trigger",
        "dedup_key": key,
        "payload": payload,
        "client": "Tekton",
    });
    let mut links = Vec::new();
    if let Some(u) = &view.url {
        body["client_url"] = u.clone().into();
        let text = inert(&escape::one_line(&view.subject, FIELD_MAX));
        links.push(json!({"href": u, "text": text}));
    }
    if let Some(u) = &view.repository_url {
        links.push(json!({"href": u, "text": "Repository"}));
    }
    if !links.is_empty() {
        body["links"] = links.into();
    }
    body
}

/// `resolve`: closes the alert of `key`, if one is open (PagerDuty accepts
/// a resolve for a key with no open alert, and ignores it).
pub fn resolve(key: &str) -> Value {
    json!({"event_action": "resolve", "dedup_key": key})
}

/// `PipelineRun build-and-test-x7k2p failed (acme/widgets@main): <message>`,
/// each part from the event made inert.
fn summary(view: &ChatView) -> String {
    let mut s = incident::headline(view);
    if let Some(m) = &view.message {
        s.push_str(": ");
        s.push_str(&inert(m));
    }
    s
}

/// When it happened, as ISO 8601 (PagerDuty rejects anything else).
fn timestamp(ev: &RunEvent) -> Option<String> {
    [&ev.completed_at, &ev.time]
        .into_iter()
        .flatten()
        .find(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_describes_the_run() {
        let ev = relay_core::sample::run_event();
        let b = trigger(&ev, "k", Severity::Critical, None, None);
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["dedup_key"], "k");
        let p = &b["payload"];
        assert_eq!(
            p["summary"],
            "PipelineRun build-and-test-abcde failed (acme/widgets@main): \
             Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1"
        );
        assert_eq!(p["severity"], "critical");
        assert_eq!(p["source"], "github.com/acme/widgets");
        assert_eq!(p["component"], "build-and-test");
        assert_eq!(p["group"], "ci");
        assert_eq!(p["class"], "PipelineRun");
        assert_eq!(p["timestamp"], "2024-05-14T10:58:00Z");
        assert_eq!(p["custom_details"]["Branch"], "main");
        assert_eq!(p["custom_details"]["Reason"], "Failed");
        assert_eq!(b["links"][0]["href"], ev.url.clone().unwrap());
        assert_eq!(b["links"][1]["href"], "https://github.com/acme/widgets");
        assert!(b.get("routing_key").is_none());
    }

    #[test]
    fn a_template_is_the_summary_bounded() {
        let ev = relay_core::sample::run_event();
        let b = trigger(
            &ev,
            "k",
            Severity::Error,
            Some("prod-ci"),
            Some("é\n".repeat(900)),
        );
        let s = b["payload"]["summary"].as_str().unwrap();
        assert_eq!(s.chars().count(), SUMMARY_MAX);
        assert!(s.starts_with("é é") && !s.contains('\n'));
        assert_eq!(b["payload"]["source"], "prod-ci");
    }

    #[test]
    fn a_resolve_names_only_the_key() {
        assert_eq!(
            resolve("tekton/ci/p"),
            json!({"event_action": "resolve", "dedup_key": "tekton/ci/p"})
        );
    }
}
