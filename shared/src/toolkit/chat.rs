//! What a chat, incident or annotation provider shows for one event, in
//! plain (unescaped) parts: a headline, the state as a word, emoji and
//! colour, a list of facts and the run's link. Each provider escapes these
//! parts for its own markup; the Notification's template, when it has one,
//! replaces the text.

use crate::delivery::provider::DeliveryInput;
use crate::delivery::verdict::Verdict;
use crate::event::model::{RunEvent, RunState};

/// How a state is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateStyle {
    /// `succeeded`, `failed`, `timed out`, ...
    pub word: &'static str,
    /// A Unicode emoji (the same on every platform; no `:shortcode:`).
    pub emoji: &'static str,
    /// `0xRRGGBB`.
    pub color: u32,
}

impl StateStyle {
    pub fn of(state: RunState) -> StateStyle {
        let (word, emoji, color) = match state {
            RunState::Queued => ("queued", "⏳", 0x9E9E9E),
            RunState::Started => ("started", "▶️", 0x1D9BD1),
            RunState::Running => ("running", "🔄", 0x1D9BD1),
            RunState::Succeeded => ("succeeded", "✅", 0x2EB67D),
            RunState::Failed => ("failed", "❌", 0xE01E5A),
            RunState::Cancelled => ("cancelled", "⏹️", 0x9E9E9E),
            RunState::TimedOut => ("timed out", "⌛", 0xECB22E),
        };
        StateStyle { word, emoji, color }
    }

    /// `#RRGGBB`.
    pub fn hex(&self) -> String {
        format!("#{:06X}", self.color)
    }
}

/// One labelled value (`Namespace: ci`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub label: &'static str,
    pub value: String,
}

/// The parts of a message about one event. Every string is raw text from
/// the event (user-controlled): escape it for the target markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatView {
    /// `PipelineRun widgets-ci-x7k2p`.
    pub subject: String,
    /// `PipelineRun widgets-ci-x7k2p failed`.
    pub title: String,
    pub state: RunState,
    pub style: StateStyle,
    pub facts: Vec<Fact>,
    /// The condition message, on one line, at most 300 characters.
    pub message: Option<String>,
    /// The run's dashboard link (already sanitised by the engine).
    pub url: Option<String>,
    /// The repository's web page, when the clone URL is http(s).
    pub repository_url: Option<String>,
}

impl ChatView {
    pub fn of(ev: &RunEvent) -> ChatView {
        use crate::event::escape::strip_format;
        let style = StateStyle::of(ev.state);
        // Invisible formatting characters (an RLO reversing a name) pass
        // every markup escaper: gone here, for every chat's default text.
        let subject = strip_format(&format!("{} {}", ev.kind, ev.name));
        let mut facts = Vec::new();
        let mut fact = |label: &'static str, value: Option<String>| {
            if let Some(value) = value.map(|v| strip_format(&v)).filter(|v| !v.is_empty()) {
                facts.push(Fact { label, value });
            }
        };
        fact("Pipeline", ev.pipeline.clone());
        fact("Task", ev.pipeline_task.clone().or_else(|| ev.task.clone()));
        fact("Namespace", Some(ev.namespace.clone()));
        fact(
            "Repository",
            match (&ev.scm.owner, &ev.scm.name) {
                (Some(o), Some(n)) => Some(format!("{o}/{n}")),
                _ => ev.scm.repo.clone(),
            },
        );
        fact("Branch", ev.scm.branch.clone());
        fact("Pull request", ev.scm.pull_request.map(|n| format!("#{n}")));
        fact(
            "Commit",
            ev.scm.sha.as_deref().map(|s| s.chars().take(7).collect()),
        );
        fact("Duration", duration(ev));
        if ev.state.is_terminal() && ev.state != RunState::Succeeded {
            fact("Reason", ev.reason.clone());
        }
        ChatView {
            title: format!("{subject} {}", style.word),
            subject,
            state: ev.state,
            style,
            facts,
            message: ev
                .message
                .as_deref()
                .map(|m| crate::event::escape::one_line(m, 300))
                .filter(|m| !m.is_empty()),
            url: ev.url.clone(),
            repository_url: ev
                .scm
                .url
                .as_deref()
                .and_then(crate::event::escape::repository_page),
        }
    }

    /// The facts as `Label: value` lines, unescaped.
    pub fn plain_facts(&self) -> String {
        self.facts
            .iter()
            .map(|f| format!("{}: {}", f.label, f.value))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The run's duration, when it has both ends.
pub fn duration(ev: &RunEvent) -> Option<String> {
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let (a, b) = (parse(&ev.started_at)?, parse(&ev.completed_at)?);
    Some(crate::delivery::summary::human(
        (b - a).num_seconds().max(0),
    ))
}

/// The Notification's template rendered over the event, when it has one.
/// The result is the user's own text: providers send it as given (they
/// still encode it for their payload format, e.g. as a JSON string).
pub fn template_text(input: &DeliveryInput<'_>) -> Result<Option<String>, Verdict> {
    let Some(t) = input.template else {
        return Ok(None);
    };
    t.render(crate::event::template::template_context(
        input.event,
        input.notification,
    ))
    .map(Some)
    .map_err(|e| Verdict::permanent(format!("template: {e}")))
}

/// As [`template_text`], every string of the context — values and object
/// keys (an annotation named `<!channel>`) — passed through `escape` first,
/// after its invisible formatting characters are dropped: for chats that
/// render the result as markup (Slack, Mattermost), so no link, mention or
/// reordered text can come from a run while the template's own markup
/// still works.
pub fn escaped_template_text(
    input: &DeliveryInput<'_>,
    escape: impl Fn(&str) -> String,
) -> Result<Option<String>, Verdict> {
    let Some(t) = input.template else {
        return Ok(None);
    };
    let ctx = serde_json::to_value(crate::event::template::template_context(
        input.event,
        input.notification,
    ))
    .map_err(|e| Verdict::permanent(format!("template: {e}")))?;
    let escape = |s: &str| escape(&crate::event::escape::strip_format(s));
    t.render(map_strings(ctx, &escape))
        .map(Some)
        .map_err(|e| Verdict::permanent(format!("template: {e}")))
}

/// `v` with `f` applied to every string in it, object keys included: a
/// template can print keys (`{% for k, v in event.annotations|items %}`),
/// and annotation and label keys are the run author's. A key `f` leaves
/// alone (every key of the context's own shape) is still found by name.
fn map_strings(v: serde_json::Value, f: &impl Fn(&str) -> String) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(f(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| map_strings(v, f)).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (f(&k), map_strings(v, f)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_of_a_context_is_mapped() {
        let v = map_strings(
            serde_json::json!({"event": {"url": "a<b", "n": [1, "<"], "ok": true}}),
            &|s: &str| s.replace('<', "&lt;"),
        );
        assert_eq!(
            v,
            serde_json::json!({"event": {"url": "a&lt;b", "n": [1, "&lt;"], "ok": true}})
        );
    }

    #[test]
    fn keys_are_mapped_too() {
        let v = map_strings(
            serde_json::json!({"annotations": {"<!channel>": "<!here>", "ok": "x"}}),
            &|s: &str| s.replace('<', "&lt;"),
        );
        assert_eq!(
            v,
            serde_json::json!({"annotations": {"&lt;!channel>": "&lt;!here>", "ok": "x"}})
        );
    }

    #[test]
    fn an_escaped_template_escapes_keys_and_drops_invisible_characters() {
        let mut ev = crate::event::sample::run_event();
        ev.name = "a\u{202E}b\u{200B}c".into();
        ev.annotations.insert("<!channel>".into(), "v".into());
        let store: crate::delivery::store::SharedStore =
            std::sync::Arc::new(crate::delivery::store::memory::MemoryStore::default());
        let t = crate::event::template::Template::compile(
            "{{ event.name }} {% for k, v in event.annotations|items %}{% if v == 'v' %}{{ k }}{% endif %}{% endfor %}",
        )
        .unwrap();
        let compiled = crate::delivery::provider::Compiled::none();
        let input = DeliveryInput {
            event: &ev,
            original: None,
            notification: "n",
            template: Some(&t),
            summary: None,
            compiled: &compiled,
            state: crate::delivery::state::State::new(&store, "test"),
        };
        assert_eq!(
            escaped_template_text(&input, |s| s.replace('<', "&lt;")).unwrap(),
            Some("abc &lt;!channel>".into())
        );
    }

    #[test]
    fn an_escaped_template_escapes_only_interpolated_values() {
        let mut ev = crate::event::sample::run_event();
        ev.name = "<!here>".into();
        let store: crate::delivery::store::SharedStore =
            std::sync::Arc::new(crate::delivery::store::memory::MemoryStore::default());
        let t = crate::event::template::Template::compile("*{{ event.name }}*").unwrap();
        let compiled = crate::delivery::provider::Compiled::none();
        let input = DeliveryInput {
            event: &ev,
            original: None,
            notification: "n",
            template: Some(&t),
            summary: None,
            compiled: &compiled,
            state: crate::delivery::state::State::new(&store, "test"),
        };
        assert_eq!(
            escaped_template_text(&input, |s| s.replace('<', "&lt;")).unwrap(),
            Some("*&lt;!here>*".into())
        );
        let input = DeliveryInput {
            template: None,
            ..input
        };
        assert_eq!(escaped_template_text(&input, str::to_string).unwrap(), None);
    }

    #[test]
    fn a_view_holds_no_invisible_formatting_characters() {
        let mut ev = crate::event::sample::run_event();
        ev.name = "build\u{202E}exe.txt".into();
        ev.pipeline = Some("p\u{2066}q\u{2069}\u{FEFF}".into());
        let v = ChatView::of(&ev);
        assert_eq!(v.subject, format!("{} buildexe.txt", ev.kind));
        assert!(!v.title.chars().any(crate::event::escape::is_format));
        assert_eq!(v.facts[0].value, "pq");
    }

    #[test]
    fn view_of_the_sample_event() {
        let ev = crate::event::sample::run_event();
        let v = ChatView::of(&ev);
        assert_eq!(v.state, ev.state);
        assert!(v.title.starts_with(&format!("{} {}", ev.kind, ev.name)));
        assert!(v.title.ends_with(v.style.word));
        assert!(v.facts.iter().any(|f| f.label == "Namespace"));
        assert_eq!(StateStyle::of(RunState::Failed).hex(), "#E01E5A");
    }

    #[test]
    fn every_state_has_its_own_word() {
        let words: std::collections::BTreeSet<_> = RunState::ALL
            .iter()
            .map(|s| StateStyle::of(*s).word)
            .collect();
        assert_eq!(words.len(), RunState::ALL.len());
    }
}
