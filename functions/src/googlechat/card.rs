//! The incoming-webhook message: one card (header, state, facts, the
//! condition message, buttons to the run and repository), the
//! Notification's template as the message text, and optionally the run's
//! thread.

use relay_core::chat::ChatView;
use relay_core::escape::cut;
use serde_json::{Map, Value, json};

/// Chat refuses longer message text.
pub const TEXT_MAX: usize = 4096;

/// The body for one event; `text` is the rendered template, if any;
/// `thread_key` names the run's thread.
pub fn message(
    view: &ChatView,
    namespace: &str,
    text: Option<&str>,
    thread_key: Option<&str>,
) -> Value {
    let mut widgets = vec![json!({"decoratedText": {
        "topLabel": "State",
        "text": format!("<font color=\"{}\"><b>{}</b></font>", view.style.hex(), view.style.word),
    }})];
    widgets.extend(
        view.facts
            .iter()
            .map(|f| json!({"decoratedText": {"topLabel": f.label, "text": html(&f.value)}})),
    );
    if let Some(m) = &view.message {
        widgets.push(json!({"textParagraph": {"text": html(m)}}));
    }
    let mut buttons = Vec::new();
    if let Some(u) = view.url.as_deref().and_then(relay_core::escape::link) {
        buttons.push(json!({"text": "View run", "onClick": {"openLink": {"url": u}}}));
    }
    if let Some(u) = &view.repository_url {
        buttons.push(json!({"text": "Repository", "onClick": {"openLink": {"url": u}}}));
    }
    if !buttons.is_empty() {
        widgets.push(json!({"buttonList": {"buttons": buttons}}));
    }
    let pipeline = view.facts.iter().find(|f| f.label == "Pipeline");
    let subtitle = match pipeline {
        Some(p) => format!("{namespace} · {}", p.value),
        None => namespace.to_string(),
    };
    let headline = format!("{} {}", view.style.emoji, view.title);

    let mut body = Map::new();
    if let Some(t) = text.filter(|t| !t.trim().is_empty()) {
        body.insert("text".into(), cut(&disarm_mentions(t), TEXT_MAX).into());
    }
    // What notifications and clients that cannot show cards display.
    body.insert("fallbackText".into(), plain(&headline).into());
    body.insert(
        "cardsV2".into(),
        json!([{
            "cardId": "tekton-run",
            "card": {
                "header": {"title": plain(&headline), "subtitle": plain(&subtitle)},
                "sections": [{"widgets": widgets}],
            },
        }]),
    );
    if let Some(k) = thread_key {
        body.insert("thread".into(), json!({"threadKey": k}));
    }
    Value::Object(body)
}

/// Text for a card's formatted fields, which read a small HTML subset.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Text for unformatted fields (header, fallback): shown as written, with a
/// word joiner after `<` and `@` so no tag or mention is ever spelled.
pub fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '<' => out.push_str("<\u{2060}"),
            '@' => out.push_str("@\u{2060}"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The operator's text, as written, except that `<users/all>` and
/// `<users/…>` mentions are broken: a run name in a template must not
/// page the whole space.
pub fn disarm_mentions(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.char_indices() {
        out.push(c);
        let rest = &s.as_bytes()[i + 1..];
        if c == '<' && rest.len() >= 6 && rest[..6].eq_ignore_ascii_case(b"users/") {
            out.push('\u{2060}');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_mentions_are_inert() {
        assert_eq!(
            html("<b>x</b> & <users/all>"),
            "&lt;b&gt;x&lt;/b&gt; &amp; &lt;users/all&gt;"
        );
        assert_eq!(
            plain("<users/all> @all"),
            "<\u{2060}users/all> @\u{2060}all"
        );
        assert_eq!(
            disarm_mentions("*fix it* <USERS/all> <users/123> <https://x|logs> a<b"),
            "*fix it* <\u{2060}USERS/all> <\u{2060}users/123> <https://x|logs> a<b"
        );
        assert_eq!(disarm_mentions("<user"), "<user");
    }

    #[test]
    fn the_sample_event_as_a_card() {
        let ev = relay_core::sample::run_event();
        let m = message(&ChatView::of(&ev), &ev.namespace, None, None);
        assert!(m.get("text").is_none());
        assert!(m.get("thread").is_none());
        assert_eq!(
            m["fallbackText"],
            "❌ PipelineRun build-and-test-abcde failed"
        );
        let card = &m["cardsV2"][0]["card"];
        assert_eq!(m["cardsV2"][0]["cardId"], "tekton-run");
        assert_eq!(
            card["header"]["title"],
            "❌ PipelineRun build-and-test-abcde failed"
        );
        assert_eq!(card["header"]["subtitle"], "ci · build-and-test");
        let w = card["sections"][0]["widgets"].as_array().unwrap();
        assert_eq!(
            w[0]["decoratedText"]["text"],
            "<font color=\"#E01E5A\"><b>failed</b></font>"
        );
        assert_eq!(
            w[1],
            json!({"decoratedText": {"topLabel": "Pipeline", "text": "build-and-test"}})
        );
        let buttons = &w.last().unwrap()["buttonList"]["buttons"];
        assert_eq!(
            buttons[0]["onClick"]["openLink"]["url"],
            ev.url.clone().unwrap()
        );
        assert_eq!(
            buttons[1]["onClick"]["openLink"]["url"],
            "https://github.com/acme/widgets"
        );

        let long = "x".repeat(5000);
        let m = message(&ChatView::of(&ev), &ev.namespace, Some(&long), Some("k"));
        assert_eq!(m["text"].as_str().unwrap().chars().count(), TEXT_MAX);
        assert_eq!(m["thread"]["threadKey"], "k");
    }
}
