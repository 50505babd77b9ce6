//! The Alert API bodies: create (by alias) and close (by alias), each field
//! within Opsgenie's limits (a longer one fails the whole request with 422).

use std::collections::BTreeSet;

use relay_core::chat::ChatView;
use relay_core::escape::{self, inert};
use relay_core::incident;
use relay_core::model::RunEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub const MESSAGE_MAX: usize = 130;
const DESCRIPTION_MAX: usize = 15_000;
const SOURCE_MAX: usize = 100;
const ENTITY_MAX: usize = 512;
const NOTE_MAX: usize = 25_000;
pub const TAG_MAX: usize = 50;
pub const TAGS_MAX: usize = 20;
/// Opsgenie's limit is 8000 characters over all keys and values.
const DETAIL_VALUE_MAX: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Priority {
    P1,
    P2,
    P3,
    P4,
    P5,
}

/// What a create request says beside the event.
pub struct Create<'a> {
    pub alias: &'a str,
    pub priority: Priority,
    pub source: &'a str,
    pub tags: &'a [String],
    /// The Notification's template, rendered: the alert's message.
    pub template: Option<String>,
}

pub fn create(ev: &RunEvent, c: Create<'_>) -> Value {
    let view = ChatView::of(ev);
    // A template is the user's own text, sent as written.
    let message = escape::one_line(
        &c.template.unwrap_or_else(|| incident::headline(&view)),
        MESSAGE_MAX,
    );
    let mut details = Map::new();
    details.insert(
        "Run".into(),
        escape::one_line(&inert(&ev.display_name()), DETAIL_VALUE_MAX).into(),
    );
    for f in &view.facts {
        details.insert(
            f.label.into(),
            escape::one_line(&inert(&f.value), DETAIL_VALUE_MAX).into(),
        );
    }
    if let Some(u) = &view.url {
        details.insert("Link".into(), u.clone().into());
    }
    let entity = ev.scm.repo.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            ev.namespace,
            ev.pipeline.as_ref().unwrap_or(&ev.name)
        )
    });
    json!({
        "message": message,
        "alias": c.alias,
        "description": description(&view),
        "priority": c.priority,
        "tags": tags(ev, c.tags),
        "details": details,
        "source": escape::one_line(c.source, SOURCE_MAX),
        "entity": escape::one_line(&inert(&entity), ENTITY_MAX),
    })
}

/// Closing names the alert in the URL; the body only says who and why.
pub fn close(ev: &RunEvent, source: &str) -> Value {
    let view = ChatView::of(ev);
    let mut note = inert(&view.title);
    if let Some(u) = &view.url {
        note.push_str(&format!(": {u}"));
    }
    json!({
        "source": escape::one_line(source, SOURCE_MAX),
        "note": escape::one_line(&note, NOTE_MAX),
    })
}

/// The condition message, the facts and the run's link, as plain lines.
fn description(view: &ChatView) -> String {
    let mut lines = Vec::new();
    if let Some(m) = &view.message {
        lines.push(inert(m));
        lines.push(String::new());
    }
    lines.extend(
        view.facts
            .iter()
            .map(|f| format!("{}: {}", f.label, inert(&f.value))),
    );
    if let Some(u) = &view.url {
        lines.push(format!("Run: {u}"));
    }
    // Cut, keeping the lines (`one_line` would join them).
    escape::cut(&lines.join("\n"), DESCRIPTION_MAX)
}

/// `tekton`, the namespace, pipeline and repository, then the configured
/// tags: each one line within 50 characters, no repeats, 20 at most.
fn tags(ev: &RunEvent, extra: &[String]) -> Vec<String> {
    let mut out = vec!["tekton".to_string(), format!("namespace:{}", ev.namespace)];
    if let Some(p) = &ev.pipeline {
        out.push(format!("pipeline:{p}"));
    }
    if let (Some(o), Some(n)) = (&ev.scm.owner, &ev.scm.name) {
        out.push(format!("repository:{o}/{n}"));
    }
    out.extend(extra.iter().cloned());
    let mut seen = BTreeSet::new();
    out.into_iter()
        .map(|t| escape::one_line(&inert(&t), TAG_MAX))
        .filter(|t| !t.is_empty() && seen.insert(t.clone()))
        .take(TAGS_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_sample(template: Option<String>, tags: &[String]) -> Value {
        let ev = relay_core::sample::run_event();
        create(
            &ev,
            Create {
                alias: "a",
                priority: Priority::P2,
                source: "Tekton",
                tags,
                template,
            },
        )
    }

    #[test]
    fn a_create_describes_the_run() {
        let b = create_sample(None, &[]);
        assert_eq!(
            b["message"],
            "PipelineRun build-and-test-abcde failed (acme/widgets@main)"
        );
        assert_eq!(b["alias"], "a");
        assert_eq!(b["priority"], "P2");
        assert_eq!(b["source"], "Tekton");
        assert_eq!(b["entity"], "github.com/acme/widgets");
        assert_eq!(
            b["tags"],
            json!([
                "tekton",
                "namespace:ci",
                "pipeline:build-and-test",
                "repository:acme/widgets"
            ])
        );
        assert_eq!(b["details"]["Branch"], "main");
        assert_eq!(b["details"]["Reason"], "Failed");
        let d = b["description"].as_str().unwrap();
        assert!(
            d.starts_with("Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1\n\nPipeline: build-and-test\n"),
            "{d}"
        );
        assert!(d.ends_with(
            "\nRun: https://tekton.example/#/namespaces/ci/pipelineruns/build-and-test-abcde"
        ));
    }

    #[test]
    fn the_message_is_the_template_bounded_and_tags_are_bounded() {
        let tags: Vec<String> = (0..30)
            .map(|i| format!("t{i}-{}", "x".repeat(60)))
            .collect();
        let b = create_sample(Some("é".repeat(500)), &tags);
        let m = b["message"].as_str().unwrap();
        assert_eq!(m.chars().count(), MESSAGE_MAX);
        assert!(m.starts_with("éé") && m.ends_with('…'));
        let t = b["tags"].as_array().unwrap();
        assert_eq!(t.len(), TAGS_MAX);
        assert!(
            t.iter()
                .all(|t| t.as_str().unwrap().chars().count() <= TAG_MAX)
        );
    }

    #[test]
    fn a_long_description_is_cut_keeping_its_lines() {
        let mut ev = relay_core::sample::run_event();
        ev.scm.branch = Some("b".repeat(20_000));
        let d = description(&ChatView::of(&ev));
        assert_eq!(d.chars().count(), DESCRIPTION_MAX);
        assert!(d.ends_with('…') && d.contains("\nPipeline: build-and-test\n"));
    }

    #[test]
    fn a_close_says_why() {
        let mut ev = relay_core::sample::run_event();
        ev.state = relay_core::RunState::Succeeded;
        let b = close(&ev, "Tekton");
        assert_eq!(
            b,
            json!({"source": "Tekton", "note": "PipelineRun build-and-test-abcde succeeded: https://tekton.example/#/namespaces/ci/pipelineruns/build-and-test-abcde"})
        );
    }
}
