//! The execute-webhook body: one embed (title, link, colour, the facts as
//! inline fields), the Notification's template as `content`, and no
//! mention allowed to fire.

use relay_core::chat::ChatView;
use serde_json::{Map, Value, json};

/// Discord's limits, in characters (a longer field is a 400).
pub const TITLE_MAX: usize = 256;
pub const DESCRIPTION_MAX: usize = 4096;
pub const FIELD_NAME_MAX: usize = 256;
pub const FIELD_VALUE_MAX: usize = 1024;
pub const FIELDS_MAX: usize = 25;
pub const CONTENT_MAX: usize = 2000;

/// Who posts: the webhook's own name and avatar unless overridden.
#[derive(Debug, Clone, Default)]
pub struct Sender {
    pub username: Option<String>,
    pub avatar_url: Option<String>,
}

/// The body for one event; `text` is the rendered template, if any.
pub fn body(view: &ChatView, time: Option<&str>, text: Option<&str>, sender: &Sender) -> Value {
    let mut embed = Map::new();
    embed.insert(
        "title".into(),
        fit(
            &format!("{} {}", view.style.emoji, markdown(&view.title)),
            TITLE_MAX,
        )
        .into(),
    );
    if let Some(u) = view.url.as_deref().and_then(relay_core::escape::link) {
        embed.insert("url".into(), u.into());
    }
    if let Some(m) = &view.message {
        embed.insert(
            "description".into(),
            fit(&markdown(m), DESCRIPTION_MAX).into(),
        );
    }
    embed.insert("color".into(), view.style.color.into());
    let fields: Vec<Value> = view
        .facts
        .iter()
        .take(FIELDS_MAX)
        .map(|f| {
            let value = match (f.label, view.repository_url.as_deref()) {
                // The repository's page, as a masked link.
                ("Repository", Some(page)) => format!("[{}]({page})", markdown(&f.value)),
                _ => markdown(&f.value),
            };
            json!({
                "name": fit(f.label, FIELD_NAME_MAX),
                "value": fit(&value, FIELD_VALUE_MAX),
                "inline": true,
            })
        })
        .collect();
    if !fields.is_empty() {
        embed.insert("fields".into(), fields.into());
    }
    // An unparsable time would make Discord refuse the whole message.
    if let Some(t) = time.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
        embed.insert(
            "timestamp".into(),
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into(),
        );
    }
    embed.insert("footer".into(), json!({"text": "Tekton"}));

    let mut body = Map::new();
    if let Some(t) = text.filter(|t| !t.trim().is_empty()) {
        body.insert("content".into(), fit(t, CONTENT_MAX).into());
    }
    body.insert("embeds".into(), json!([embed]));
    // No @everyone, @here, user or role mention fires, whatever the text says.
    body.insert("allowed_mentions".into(), json!({"parse": []}));
    if let Some(u) = &sender.username {
        body.insert("username".into(), u.clone().into());
    }
    if let Some(a) = &sender.avatar_url {
        body.insert("avatar_url".into(), a.clone().into());
    }
    Value::Object(body)
}

/// Discord markdown made inert: every markup character backslash-escaped
/// (Discord drops the backslash before any punctuation), and `@` followed
/// by a zero-width space so `@everyone` is not even spelled as a mention.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '<' | '#' | '[' | ']' | '(' | ')' | '-'
            | ':' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@\u{200B}"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `s` within `max` characters, cut on a character boundary with `…`,
/// never leaving a dangling escape backslash before it.
pub fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    let trailing = cut.chars().rev().take_while(|c| *c == '\\').count();
    if trailing % 2 == 1 {
        cut.pop();
    }
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_mentions_are_inert() {
        let s = markdown("@everyone <@123> **x** [a](https://evil) `c` ||s|| # h\n> q");
        assert!(!s.contains("@everyone") && !s.contains("<@1"), "{s}");
        let chars: Vec<char> = s.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if "*_~`|<>#[]()".contains(*c) {
                assert_eq!(chars[i - 1], '\\', "unescaped {c} at {i} in {s}");
            }
        }
        assert!(!s.contains('\n'));
    }

    #[test]
    fn cuts_keep_characters_and_escapes_whole() {
        let long = "é".repeat(300);
        let cut = fit(&long, TITLE_MAX);
        assert_eq!(cut.chars().count(), TITLE_MAX);
        assert!(cut.ends_with('…'));
        // 255 characters of `\*` pairs would end on a lone backslash.
        let escaped = markdown(&"*".repeat(200));
        let cut = fit(&escaped, TITLE_MAX);
        assert!(cut.chars().count() <= TITLE_MAX);
        assert!(cut.ends_with("\\*…"), "{cut}");
        assert_eq!(fit("short", 10), "short");
    }

    #[test]
    fn the_sample_event_as_an_embed() {
        let ev = relay_core::sample::run_event();
        let v = ChatView::of(&ev);
        let b = body(
            &v,
            ev.time.as_deref(),
            Some("deploy **now**"),
            &Sender {
                username: Some("Tekton".into()),
                avatar_url: None,
            },
        );
        let e = &b["embeds"][0];
        assert_eq!(
            e["title"],
            "❌ PipelineRun build\\-and\\-test\\-abcde failed"
        );
        assert_eq!(e["color"], 0xE01E5A);
        assert_eq!(
            e["url"],
            "https://tekton.example/#/namespaces/ci/pipelineruns/build-and-test-abcde"
        );
        assert_eq!(e["timestamp"], "2024-05-14T10:58:00Z");
        assert_eq!(
            e["fields"][0],
            json!({"name": "Pipeline", "value": "build\\-and\\-test", "inline": true})
        );
        let repo = e["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "Repository")
            .unwrap();
        assert_eq!(
            repo["value"],
            "[acme/widgets](https://github.com/acme/widgets)"
        );
        assert_eq!(
            b["content"], "deploy **now**",
            "the template is the user's own text"
        );
        assert_eq!(b["allowed_mentions"], json!({"parse": []}));
        assert_eq!(b["username"], "Tekton");
        assert!(b.get("avatar_url").is_none());
    }

    #[test]
    fn a_bad_time_is_left_out() {
        let ev = relay_core::sample::run_event();
        let b = body(
            &ChatView::of(&ev),
            Some("yesterday"),
            None,
            &Sender::default(),
        );
        assert!(b["embeds"][0].get("timestamp").is_none());
        assert!(b.get("content").is_none());
    }
}
