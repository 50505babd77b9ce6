//! The incoming-webhook payload: Slack-compatible `attachments` (colour
//! bar, title linked to the run, the facts as short fields, the condition
//! message) that Mattermost renders as Markdown. A Notification's template
//! replaces the title, facts and message with its own text.

use relay_core::RunEvent;
use relay_core::chat::ChatView;
use serde_json::{Value, json};

use crate::mattermost::escape::{markdown, plain};

/// Where and as whom to post (each optional: the hook's own otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Poster {
    pub channel: Option<String>,
    pub username: Option<String>,
    pub icon_url: Option<String>,
}

/// The webhook body for one event; `custom` is the rendered template.
pub fn body(ev: &RunEvent, poster: &Poster, custom: Option<&str>) -> Value {
    let view = ChatView::of(ev);
    let headline = format!("{} {}", view.style.emoji, view.title);
    let mut attachment = json!({
        "fallback": plain(&headline),
        "color": view.style.hex(),
    });
    match custom {
        Some(text) => attachment["text"] = text.into(),
        None => {
            attachment["title"] = format!("{} {}", view.style.emoji, markdown(&view.title)).into();
            if let Some(u) = &view.url {
                attachment["title_link"] = u.clone().into();
            }
            if let Some(m) = &view.message {
                attachment["text"] = markdown(m).into();
            }
            let mut fields: Vec<Value> = view
                .facts
                .iter()
                .map(|f| json!({"title": f.label, "value": markdown(&f.value), "short": true}))
                .collect();
            if let (Some(u), Some(f)) = (
                &view.repository_url,
                fields.iter_mut().find(|f| f["title"] == "Repository"),
            ) {
                // The engine's link sanitising left no `(`, `)` or space in it.
                f["value"] = format!("[{}]({u})", f["value"].as_str().unwrap_or_default()).into();
            }
            if !fields.is_empty() {
                attachment["fields"] = fields.into();
            }
            attachment["footer"] = "Tekton".into();
        }
    }
    let mut body = json!({"attachments": [attachment]});
    for (key, value) in [
        ("channel", &poster.channel),
        ("username", &poster.username),
        ("icon_url", &poster.icon_url),
    ] {
        if let Some(v) = value {
            body[key] = v.clone().into();
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_becomes_one_coloured_attachment() {
        let ev = relay_core::sample::run_event();
        let b = body(&ev, &Poster::default(), None);
        assert!(b.get("channel").is_none() && b.get("text").is_none());
        let a = &b["attachments"][0];
        assert_eq!(a["color"], "#E01E5A");
        assert_eq!(a["fallback"], "❌ PipelineRun build-and-test-abcde failed");
        assert_eq!(
            a["title"],
            "❌ PipelineRun build\\-and\\-test\\-abcde failed"
        );
        assert_eq!(a["title_link"], ev.url.as_deref().unwrap());
        assert_eq!(
            a["fields"][0],
            json!({"title": "Pipeline", "value": "build\\-and\\-test", "short": true})
        );
        let repo = a["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["title"] == "Repository")
            .unwrap();
        assert_eq!(
            repo["value"],
            "[acme/widgets](https://github.com/acme/widgets)"
        );
        assert!(
            a["text"]
                .as_str()
                .unwrap()
                .starts_with("Tasks Completed\\: 2 \\(Failed\\: 1")
        );
    }

    #[test]
    fn a_template_replaces_the_text_and_poster_overrides_apply() {
        let ev = relay_core::sample::run_event();
        let poster = Poster {
            channel: Some("builds".into()),
            username: Some("tekton".into()),
            icon_url: Some("https://example.com/t.png".into()),
        };
        let b = body(&ev, &poster, Some("**done**"));
        assert_eq!(b["channel"], "builds");
        assert_eq!(b["username"], "tekton");
        assert_eq!(b["icon_url"], "https://example.com/t.png");
        let a = &b["attachments"][0];
        assert_eq!(a["text"], "**done**");
        assert!(a.get("title").is_none() && a.get("fields").is_none());
    }
}
