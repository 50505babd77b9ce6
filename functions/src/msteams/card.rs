//! The Workflows webhook body: a `message` with one Adaptive Card (title
//! with the state's emoji and colour, the facts, the condition message or
//! the Notification's template, a button to the run).

use relay_core::chat::ChatView;
use relay_core::model::RunState;
use serde_json::{Value, json};

pub const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// The body for one event; `text` is the rendered template, if any.
pub fn message(view: &ChatView, text: Option<&str>) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": format!("{} {}", view.style.emoji, markdown(&view.title)),
        "weight": "Bolder",
        "size": "Medium",
        "color": color(view.state),
        "wrap": true,
    })];
    if !view.facts.is_empty() {
        let facts: Vec<Value> = view
            .facts
            .iter()
            .map(|f| json!({"title": f.label, "value": markdown(&f.value)}))
            .collect();
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    // The template is the operator's own text (Teams markdown), as written.
    let text = match text.filter(|t| !t.trim().is_empty()) {
        Some(t) => Some(t.to_string()),
        None => view.message.as_deref().map(markdown),
    };
    if let Some(t) = text {
        body.push(json!({"type": "TextBlock", "text": t, "wrap": true}));
    }
    let mut actions = Vec::new();
    if let Some(u) = view.url.as_deref().and_then(relay_core::escape::link) {
        actions.push(json!({"type": "Action.OpenUrl", "title": "View run", "url": u}));
    }
    if let Some(u) = &view.repository_url {
        actions.push(json!({"type": "Action.OpenUrl", "title": "Repository", "url": u}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": CONTENT_TYPE,
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": body,
                "actions": actions,
            },
        }],
    })
}

/// The TextBlock colour of a state.
fn color(state: RunState) -> &'static str {
    match state {
        RunState::Succeeded => "Good",
        RunState::Failed => "Attention",
        RunState::TimedOut => "Warning",
        RunState::Started | RunState::Running => "Accent",
        RunState::Queued | RunState::Cancelled => "Default",
    }
}

/// Text for a TextBlock or fact, inert: Teams renders a markdown subset
/// (emphasis, links, lists), so its characters are backslash-escaped, as
/// are list markers at the start; `<` and `@` are followed by a word
/// joiner, so no HTML tag or `<at>` mention is ever spelled.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut at_start = true;
    let mut leading_digits = true;
    for c in s.chars() {
        match c {
            // Code and strikethrough are not in Teams' subset: left as is.
            '\\' | '*' | '_' | '[' | ']' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            // Lists are; headings and quotes are not.
            '-' | '+' if at_start => {
                out.push('\\');
                out.push(c);
            }
            // `1. x` would start a numbered list.
            '.' if leading_digits && !at_start => out.push_str("\\."),
            '<' => out.push_str("<\u{2060}"),
            '@' => out.push_str("@\u{2060}"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
        leading_digits = leading_digits && c.is_ascii_digit();
        at_start = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_html_and_mentions_are_inert() {
        let s = markdown("<at>everyone</at> **x** [a](https://evil) _i_ @channel");
        for bad in ["<at>", "</at>", "@channel"] {
            assert!(!s.contains(bad), "{bad} in {s}");
        }
        let chars: Vec<char> = s.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if "*_[]()".contains(*c) {
                assert_eq!(chars[i - 1], '\\', "unescaped {c} at {i} in {s}");
            }
        }
        assert_eq!(markdown("- a-b"), "\\- a-b");
        assert_eq!(markdown("12. x 1.5"), "12\\. x 1.5");
        assert_eq!(markdown("build-and-test"), "build-and-test");
        assert_eq!(markdown("a\nb"), "a b");
    }

    #[test]
    fn the_sample_event_as_a_card() {
        let ev = relay_core::sample::run_event();
        let m = message(&ChatView::of(&ev), None);
        assert_eq!(m["type"], "message");
        let a = &m["attachments"][0];
        assert_eq!(a["contentType"], CONTENT_TYPE);
        assert!(a["contentUrl"].is_null());
        let card = &a["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        let body = card["body"].as_array().unwrap();
        assert_eq!(
            body[0]["text"],
            "❌ PipelineRun build-and-test-abcde failed"
        );
        assert_eq!(body[0]["color"], "Attention");
        assert_eq!(body[1]["type"], "FactSet");
        assert_eq!(
            body[1]["facts"][0],
            json!({"title": "Pipeline", "value": "build-and-test"})
        );
        assert_eq!(
            body[2]["text"],
            "Tasks Completed: 2 \\(Failed: 1, Cancelled 0\\), Skipped: 1"
        );
        assert_eq!(card["actions"][0]["url"], ev.url.clone().unwrap());
        assert_eq!(card["actions"][1]["url"], "https://github.com/acme/widgets");

        let m = message(&ChatView::of(&ev), Some("**deploy** now"));
        let body = m["attachments"][0]["content"]["body"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(body.len(), 3);
        assert_eq!(
            body[2]["text"], "**deploy** now",
            "the template, as written"
        );
    }
}
