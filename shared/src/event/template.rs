//! minijinja templates for provider texts and bodies. The environment has no
//! loader and no functions that reach files or the process environment.
//!
//! A template whose output is JSON (a webhook body, CloudEvent data) renders
//! with [`Template::render_json`]: every value it interpolates is escaped for
//! a JSON string, so text from an event cannot close a string and add keys.

use minijinja::{AutoEscape, Environment, Output, State, UndefinedBehavior, Value};
use serde::Serialize;

use crate::event::model::RunEvent;

const NAME: &str = "template";
/// The auto-escape mode of JSON templates (see [`json_string_formatter`]).
const JSON_STRING: AutoEscape = AutoEscape::Custom("json-string");

pub struct Template {
    env: Environment<'static>,
    /// The same template, rendering values escaped for JSON strings.
    json: Environment<'static>,
    source: String,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

fn environment(source: &str, json: bool) -> Result<Environment<'static>, String> {
    let mut env = Environment::new();
    // A misspelt field is an error, not an empty string.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    if json {
        env.set_auto_escape_callback(|_| JSON_STRING);
        env.set_formatter(json_string_formatter);
    }
    env.add_template_owned(NAME, source.to_string())
        .map_err(|e| describe(&e))?;
    Ok(env)
}

impl Template {
    pub fn compile(source: &str) -> Result<Template, String> {
        Ok(Template {
            env: environment(source, false)?,
            json: environment(source, true)?,
            source: source.to_string(),
        })
    }

    /// Renders as text: values are written as they are.
    pub fn render<S: Serialize>(&self, ctx: S) -> Result<String, String> {
        render(&self.env, ctx)
    }

    /// Renders a JSON document. Each interpolated value is escaped so that,
    /// inside a JSON string (`"{{ event.name }}"`), it reads back as itself,
    /// and, outside one, it can be no more than a bare word (a number,
    /// `true`): quotes, backslashes, control characters and the structural
    /// characters `{ } [ ] , :` are written as JSON escapes, so event text
    /// can never open or close a string, an object or an array. `tojson`
    /// writes a whole JSON value (quotes included) and `safe` opts out.
    pub fn render_json<S: Serialize>(&self, ctx: S) -> Result<String, String> {
        render(&self.json, ctx)
    }
}

fn render<S: Serialize>(env: &Environment<'static>, ctx: S) -> Result<String, String> {
    let tmpl = env.get_template(NAME).map_err(|e| describe(&e))?;
    tmpl.render(ctx).map_err(|e| describe(&e))
}

/// Writes a value escaped for the inside of a JSON string (see
/// [`Template::render_json`]); safe values (`tojson`, `safe`) as they are.
fn json_string_formatter(
    out: &mut Output,
    state: &State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if state.auto_escape() != JSON_STRING || value.is_safe() {
        // A value marked safe, or inside `{% autoescape false %}`: as it is.
        return minijinja::escape_formatter(out, state, value);
    }
    let text = value.to_string();
    out.write_str(&json_string_escape(&text))
        .map_err(minijinja::Error::from)
}

/// `s` escaped for the inside of a JSON string, structural characters too.
pub fn json_string_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '{' | '}' | '[' | ']' | ',' | ':' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!(
            "{} (line {line})",
            e.detail().unwrap_or(&e.kind().to_string())
        ),
        None => e.to_string(),
    }
}

/// The context templates render with: the event and the Notification name.
pub fn template_context<'a>(event: &'a RunEvent, notification: &'a str) -> impl Serialize + 'a {
    #[derive(Serialize)]
    struct Ctx<'a> {
        event: &'a RunEvent,
        notification: &'a str,
    }
    Ctx {
        event,
        notification,
    }
}

/// The context of a template for a provider that renders run summaries:
/// the event, the Notification name and the run's `summary` (the view
/// `delivery::summary` makes of it).
pub fn summary_template_context(
    event: &RunEvent,
    notification: &str,
    summary: &impl Serialize,
) -> serde_json::Value {
    serde_json::json!({
        "event": event,
        "notification": notification,
        "summary": summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_rejects_unknown_fields() {
        let t = Template::compile("{{ event.name }} is {{ event.state }}").unwrap();
        let ctx = serde_json::json!({"event": {"name": "p", "state": "succeeded"}});
        assert_eq!(t.render(&ctx).unwrap(), "p is succeeded");
        let bad = Template::compile("{{ event.nmae }}").unwrap();
        assert!(bad.render(&ctx).is_err());
        assert!(bad.render_json(&ctx).is_err());
        assert!(Template::compile("{% if %}").is_err());
    }

    #[test]
    fn cannot_include_files() {
        let t = Template::compile("{% include '/etc/passwd' %}").unwrap();
        assert!(t.render(serde_json::json!({})).is_err());
        assert!(t.render_json(serde_json::json!({})).is_err());
    }

    const INJECTION: &str = r#"x", "admin": true, "y": ""#;

    fn keys(body: &str) -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// The webhook docs' template (docs/providers/webhook.md) with a run name built to add a key: the body
    /// keeps exactly the template's keys, and the name reads back whole.
    #[test]
    fn a_run_name_cannot_add_keys_to_a_json_template() {
        let ctx = serde_json::json!({"event": {"name": INJECTION, "state": "failed"}});
        let readme = r#"{"text": "{{ event.name }} {{ event.state }}"}"#;
        // As text, the docs' template is injectable: why JSON bodies
        // render with render_json.
        let text = Template::compile(readme).unwrap().render(&ctx).unwrap();
        assert!(keys(&text).contains(&"admin".to_string()), "{text}");
        for source in [
            readme,
            r#"{"text": {{ event.name | tojson }}, "state": {{ event.state | tojson }}}"#,
        ] {
            let t = Template::compile(source).unwrap();
            let body = t.render_json(&ctx).unwrap();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(
                keys(&body) == ["text"] || keys(&body) == ["state", "text"],
                "{body}"
            );
            assert!(v["text"].as_str().unwrap().starts_with(INJECTION), "{body}");
        }
    }

    /// Outside a string, event text is a bare word at most: braces,
    /// brackets, commas, colons and quotes are escapes, which no JSON
    /// parser takes as structure.
    #[test]
    fn outside_a_string_event_text_cannot_make_structure() {
        let t = Template::compile(r#"{"n": {{ event.name }}}"#).unwrap();
        for name in [
            r#"1, "admin": true"#,
            "1}, {\"a\": 1",
            "[1, 2]",
            "{}",
            "1,\"x\":2",
        ] {
            let body = t
                .render_json(serde_json::json!({"event": {"name": name}}))
                .unwrap();
            assert!(
                serde_json::from_str::<serde_json::Value>(&body).is_err(),
                "{name:?} made valid JSON: {body}"
            );
        }
        // A plain number is still a number.
        let body = t
            .render_json(serde_json::json!({"event": {"name": 7}}))
            .unwrap();
        assert_eq!(body, r#"{"n": 7}"#);
    }

    #[test]
    fn json_escapes_read_back_as_the_text() {
        let text = "a\"b\\c\nd\u{1}e{f}g[h]i,j:k\u{2028}€";
        let doc = format!("\"{}\"", json_string_escape(text));
        assert_eq!(serde_json::from_str::<String>(&doc).unwrap(), text);
        let t = Template::compile("{{ x }}|{{ x | e }}|{{ x | safe }}").unwrap();
        let out = t.render_json(serde_json::json!({"x": "\""})).unwrap();
        assert_eq!(out, "\\\"|\\\"|\"");
    }
}
