//! The Block Kit layout of a message: the state's emoji and the title
//! (linked to the run), the facts as fields, the condition message, a
//! context line (repository, time), a "View run" button, and a plain `text`
//! fallback for notifications. Every user-controlled string goes through
//! [`crate::slack::escape::mrkdwn`]; a Notification's template replaces the title,
//! facts and message with its own text.

use relay_core::RunEvent;
use relay_core::accumulator::RunSummary;
use relay_core::chat::{ChatView, Fact, StateStyle};
use relay_core::escape::cut;
use relay_core::model::RunState;
use relay_core::summary::SummaryView;
use serde_json::{Value, json};

use crate::slack::escape::mrkdwn;

/// Slack's limit for a section's text.
const SECTION_MAX: usize = 3000;
/// Slack's limit for one field's text, and for the number of fields.
const FIELD_MAX: usize = 2000;
const FIELDS_MAX: usize = 10;
/// Facts of the run (not of one task) shown on a run's message.
const RUN_FACTS: [&str; 6] = [
    "Pipeline",
    "Namespace",
    "Repository",
    "Branch",
    "Pull request",
    "Commit",
];

/// What is posted: the notification text and the blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub blocks: Vec<Value>,
}

impl Message {
    /// `text` and `blocks` added to a request body.
    pub fn fill(&self, body: &mut Value) {
        body["text"] = self.text.clone().into();
        body["blocks"] = self.blocks.clone().into();
    }
}

/// The message for one event; `custom` is the Notification's rendered template.
pub fn event_message(ev: &RunEvent, custom: Option<&str>) -> Message {
    let view = ChatView::of(ev);
    let heading = Heading {
        emoji: view.style.emoji,
        title: mrkdwn(&view.title),
        url: view.url.clone(),
    };
    let mut b = Vec::new();
    match custom {
        Some(text) => b.push(section(&cut(text, SECTION_MAX))),
        None => {
            b.push(heading.section());
            push_fields(&mut b, &view.facts);
            if let Some(m) = &view.message {
                b.push(section(&format!(">{}", mrkdwn(m))));
            }
        }
    }
    b.push(context(
        ev,
        view.repository_url.as_deref(),
        ev.time.as_deref(),
    ));
    push_button(&mut b, view.url.as_deref());
    Message {
        text: custom.map_or_else(|| heading.text(), |t| cut(t, SECTION_MAX)),
        blocks: b,
    }
}

/// The message of a whole PipelineRun (`mode: update`): its state, facts,
/// every task with its state and duration, kept current in place.
pub fn run_message(ev: &RunEvent, summary: &RunSummary, custom: Option<&str>) -> Message {
    let sv = SummaryView::of(summary);
    let state = state_of(&sv.state);
    let name = sv
        .name
        .clone()
        .or_else(|| ev.pipeline_run.as_ref().map(|r| r.name.clone()))
        .unwrap_or_else(|| ev.name.clone());
    let url = sv
        .url
        .clone()
        .or_else(|| (ev.kind == "PipelineRun").then(|| ev.url.clone()).flatten());
    let heading = Heading {
        emoji: state.emoji,
        title: mrkdwn(&format!("PipelineRun {name} {}", state.word)),
        url: url.clone(),
    };
    let view = ChatView::of(ev);
    let mut b = Vec::new();
    match custom {
        Some(text) => b.push(section(&cut(text, SECTION_MAX))),
        None => {
            b.push(heading.section());
            let mut facts: Vec<Fact> = view
                .facts
                .iter()
                .filter(|f| RUN_FACTS.contains(&f.label))
                .cloned()
                .collect();
            if let Some(d) = &sv.duration {
                facts.push(Fact {
                    label: "Duration",
                    value: d.clone(),
                });
            }
            if let Some(r) = sv.reason.as_ref().filter(|_| state_failed(&sv.state)) {
                facts.push(Fact {
                    label: "Reason",
                    value: r.clone(),
                });
            }
            push_fields(&mut b, &facts);
        }
    }
    if !sv.tasks.is_empty() {
        b.push(section(&tasks(&sv)));
    }
    if custom.is_none()
        && let Some(m) = summary
            .run
            .as_ref()
            .and_then(|r| r.message.as_deref())
            .map(|m| relay_core::escape::one_line(m, 300))
            .filter(|m| !m.is_empty())
    {
        b.push(section(&format!(">{}", mrkdwn(&m))));
    }
    // No event time: the message would change with every event.
    b.push(context(ev, view.repository_url.as_deref(), None));
    push_button(&mut b, url.as_deref());
    Message {
        text: custom.map_or_else(|| heading.text(), |t| cut(t, SECTION_MAX)),
        blocks: b,
    }
}

struct Heading {
    emoji: &'static str,
    /// Already escaped.
    title: String,
    url: Option<String>,
}

impl Heading {
    fn section(&self) -> Value {
        let title = match &self.url {
            Some(u) => format!("<{}|{}>", link_target(u), self.title),
            None => self.title.clone(),
        };
        section(&format!("{} *{title}*", self.emoji))
    }

    fn text(&self) -> String {
        format!("{} {}", self.emoji, self.title)
    }
}

/// A link target inside `<…|…>`: the engine already percent-encoded every
/// character that could end it; `&` is still written as an entity.
fn link_target(u: &str) -> String {
    u.replace('&', "&amp;")
}

fn mrkdwn_text(text: &str) -> Value {
    // verbatim: no auto-linking of URLs, channel names or bare mentions.
    json!({"type": "mrkdwn", "text": text, "verbatim": true})
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": mrkdwn_text(text)})
}

fn push_fields(blocks: &mut Vec<Value>, facts: &[Fact]) {
    let fields: Vec<Value> = facts
        .iter()
        .take(FIELDS_MAX)
        .map(|f| {
            mrkdwn_text(&cut(
                &format!("*{}*\n{}", f.label, mrkdwn(&f.value)),
                FIELD_MAX,
            ))
        })
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
}

/// `Tekton · <repository> · <time>`: the time in the reader's time zone.
fn context(ev: &RunEvent, repository_url: Option<&str>, time: Option<&str>) -> Value {
    let mut parts = vec!["Tekton".to_string()];
    if let Some(u) = repository_url {
        let name = match (&ev.scm.owner, &ev.scm.name) {
            (Some(o), Some(n)) => format!("{o}/{n}"),
            _ => "repository".into(),
        };
        parts.push(format!("<{}|{}>", link_target(u), mrkdwn(&name)));
    }
    if let Some(t) = time.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
        parts.push(format!(
            "<!date^{}^{{date_short_pretty}} {{time_secs}}|{}>",
            t.timestamp(),
            t.to_rfc3339()
        ));
    }
    json!({"type": "context", "elements": [mrkdwn_text(&parts.join(" · "))]})
}

fn push_button(blocks: &mut Vec<Value>, url: Option<&str>) {
    if let Some(u) = url {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "action_id": "view-run",
            "text": {"type": "plain_text", "text": "View run"},
            "url": u,
        }]}));
    }
}

/// One line per task, in pipeline order.
fn tasks(sv: &SummaryView) -> String {
    let lines: Vec<String> = sv
        .tasks
        .iter()
        .map(|t| {
            let style = state_of(&t.state);
            let mut name = mrkdwn(&t.name);
            if let Some(u) = &t.url {
                name = format!("<{}|{name}>", link_target(u));
            }
            let mut line = format!("{} {name} · {}", style.emoji, style.word);
            if let Some(d) = &t.duration {
                line.push_str(&format!(" · {d}"));
            }
            if t.finally {
                line.push_str(" _(finally)_");
            }
            line
        })
        .collect();
    cut(&format!("*Tasks*\n{}", lines.join("\n")), SECTION_MAX)
}

/// The style of a summary state word (`pending`, `skipped`, `waiting` are
/// the summary's own).
fn state_of(word: &str) -> Shown {
    match word {
        "skipped" => Shown {
            emoji: "⏭️",
            word: "skipped",
        },
        "pending" | "waiting" => Shown {
            emoji: "⏳",
            word: if word == "pending" {
                "pending"
            } else {
                "waiting"
            },
        },
        w => {
            let s = StateStyle::of(RunState::parse(w).unwrap_or(RunState::Running));
            Shown {
                emoji: s.emoji,
                word: s.word,
            }
        }
    }
}

fn state_failed(word: &str) -> bool {
    RunState::parse(word).is_some_and(|s| s.is_terminal() && s != RunState::Succeeded)
}

struct Shown {
    emoji: &'static str,
    word: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_message_has_title_fields_message_context_and_button() {
        let ev = relay_core::sample::run_event();
        let m = event_message(&ev, None);
        assert_eq!(m.text, "❌ PipelineRun build-and-test-abcde failed");
        let types: Vec<&str> = m
            .blocks
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["section", "section", "section", "context", "actions"]
        );
        assert_eq!(
            m.blocks[0]["text"]["text"],
            "❌ *<https://tekton.example/#/namespaces/ci/pipelineruns/build-and-test-abcde|PipelineRun build-and-test-abcde failed>*"
        );
        assert_eq!(
            m.blocks[1]["fields"][0]["text"],
            "*Pipeline*\nbuild-and-test"
        );
        assert!(
            m.blocks[2]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with(">Tasks Completed: 2")
        );
        let ctx = m.blocks[3]["elements"][0]["text"].as_str().unwrap();
        assert!(
            ctx.contains("<https://github.com/acme/widgets|acme/widgets>"),
            "{ctx}"
        );
        assert!(ctx.contains("<!date^1715684280^"), "{ctx}");
        assert_eq!(
            m.blocks[4]["elements"][0]["url"],
            ev.url.as_deref().unwrap()
        );
    }

    #[test]
    fn a_template_replaces_title_facts_and_message() {
        let ev = relay_core::sample::run_event();
        let m = event_message(&ev, Some("*custom* <!here>"));
        assert_eq!(m.text, "*custom* <!here>");
        assert_eq!(m.blocks[0]["text"]["text"], "*custom* <!here>");
        assert_eq!(m.blocks.len(), 3, "text, context, button");
    }

    #[test]
    fn run_message_lists_every_task() {
        let mut ev = relay_core::sample::run_event();
        ev.pipeline_tasks = vec!["fetch".into(), "test_all".into()];
        let summary = RunSummary::from_event(&ev).unwrap();
        let m = run_message(&ev, &summary, None);
        let all = serde_json::to_string(&m.blocks).unwrap();
        assert!(
            all.contains("PipelineRun build-and-test-abcde failed"),
            "{all}"
        );
        assert!(all.contains("⏭️ fetch · skipped"), "{all}");
        assert!(all.contains("⏭️ test_all · skipped"), "{all}");
        assert!(all.contains("*Reason*\\nFailed"), "{all}");
    }
}
