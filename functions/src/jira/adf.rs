//! Comment bodies in the Atlassian Document Format (API v3): a `doc` of
//! paragraphs of text nodes. Text nodes are never parsed as markup, so
//! user-controlled text is inert by construction; no mention node is ever
//! made, and `@` gets a word joiner in case a client linkifies text.

use relay_core::chat::ChatView;
use serde_json::{Value, json};

/// A plain text node, or nothing for empty text (ADF rejects empty text).
fn text(s: &str, marks: Vec<Value>) -> Option<Value> {
    let clean: String = s
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| {
            let joiner = (c == '@').then_some('\u{2060}');
            std::iter::once(c).chain(joiner)
        })
        .collect();
    if clean.is_empty() {
        return None;
    }
    let mut node = json!({"type": "text", "text": clean});
    if !marks.is_empty() {
        node["marks"] = Value::Array(marks);
    }
    Some(node)
}

fn plain(s: &str) -> Option<Value> {
    text(s, Vec::new())
}

fn strong() -> Value {
    json!({"type": "strong"})
}

/// A link mark, for http(s) targets only (percent-encoded by `escape::link`).
fn link(href: Option<&str>) -> Option<Value> {
    let href = relay_core::escape::link(href?)?;
    Some(json!({"type": "link", "attrs": {"href": href}}))
}

fn hard_break() -> Value {
    json!({"type": "hardBreak"})
}

fn paragraph(content: Vec<Value>) -> Option<Value> {
    (!content.is_empty()).then(|| json!({"type": "paragraph", "content": content}))
}

/// Lines of text as one paragraph, separated by hard breaks.
fn lines(text: &str) -> Option<Value> {
    let mut content = Vec::new();
    for line in text.lines().filter_map(plain) {
        if !content.is_empty() {
            content.push(hard_break());
        }
        content.push(line);
    }
    paragraph(content)
}

pub fn doc(content: Vec<Value>) -> Value {
    json!({"type": "doc", "version": 1, "content": content})
}

/// A Notification's template text: its blank-line separated blocks as
/// paragraphs, its other line breaks kept.
pub fn from_template(rendered: &str) -> Value {
    let normalized = rendered.replace("\r\n", "\n");
    let paragraphs: Vec<Value> = normalized.split("\n\n").filter_map(lines).collect();
    doc(paragraphs)
}

/// The default comment: the headline (linked to the run), the facts (the
/// repository linked to its page), and the condition message.
pub fn from_view(v: &ChatView) -> Value {
    let mut content = Vec::new();
    let mut head = Vec::new();
    head.extend(plain(&format!("{} ", v.style.emoji)));
    let mut marks = vec![strong()];
    marks.extend(link(v.url.as_deref()));
    head.extend(text(&v.subject, marks));
    head.extend(plain(&format!(" {}", v.style.word)));
    content.extend(paragraph(head));

    let mut facts = Vec::new();
    for f in &v.facts {
        if !facts.is_empty() {
            facts.push(hard_break());
        }
        facts.extend(text(&format!("{}: ", f.label), vec![strong()]));
        let marks = match f.label {
            "Repository" => link(v.repository_url.as_deref()).into_iter().collect(),
            _ => Vec::new(),
        };
        facts.extend(text(&f.value, marks));
    }
    content.extend(paragraph(facts));
    if let Some(m) = &v.message {
        content.extend(paragraph(plain(m).into_iter().collect()));
    }
    doc(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_comment_links_the_run_and_holds_the_facts() {
        let ev = relay_core::sample::run_event();
        let d = from_view(&ChatView::of(&ev));
        assert_eq!(d["type"], "doc");
        assert_eq!(d["version"], 1);
        let head = &d["content"][0]["content"];
        assert_eq!(head[0]["text"], "❌ ");
        assert_eq!(head[1]["text"], "PipelineRun build-and-test-abcde");
        assert_eq!(head[1]["marks"][0]["type"], "strong");
        assert_eq!(
            head[1]["marks"][1]["attrs"]["href"],
            ev.url.clone().unwrap()
        );
        assert_eq!(head[2]["text"], " failed");
        let facts = d["content"][1]["content"].as_array().unwrap();
        assert_eq!(facts[0]["text"], "Pipeline: ");
        assert_eq!(facts[1]["text"], "build-and-test");
        assert_eq!(facts[2]["type"], "hardBreak");
        let repo = facts.iter().find(|n| n["text"] == "acme/widgets").unwrap();
        assert_eq!(
            repo["marks"][0]["attrs"]["href"],
            "https://github.com/acme/widgets"
        );
        assert_eq!(
            d["content"][2]["content"][0]["text"],
            "Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1"
        );
    }

    #[test]
    fn text_is_inert_and_never_empty() {
        let d = from_template("Deployed @here\n<b>x</b>\n\n\n\nsecond\u{7} block\n");
        let p = d["content"].as_array().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0]["content"][0]["text"], "Deployed @\u{2060}here");
        assert_eq!(p[0]["content"][1]["type"], "hardBreak");
        assert_eq!(p[0]["content"][2]["text"], "<b>x</b>");
        assert_eq!(p[1]["content"][0]["text"], "second block");
        assert_eq!(from_template("")["content"], json!([]));
        assert!(link(Some("javascript:alert(1)")).is_none());
    }
}
