//! minijinja templates for provider texts and bodies. The environment has no
//! loader and no functions that reach files or the process environment.

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

const NAME: &str = "template";

pub struct Template {
    env: Environment<'static>,
    source: String,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

impl Template {
    pub fn compile(source: &str) -> Result<Template, String> {
        let mut env = Environment::new();
        // A misspelt field is an error, not an empty string.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| describe(&e))?;
        Ok(Template {
            env,
            source: source.to_string(),
        })
    }

    pub fn render<S: Serialize>(&self, ctx: S) -> Result<String, String> {
        let tmpl = self.env.get_template(NAME).map_err(|e| describe(&e))?;
        tmpl.render(ctx).map_err(|e| describe(&e))
    }
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
        assert!(Template::compile("{% if %}").is_err());
    }

    #[test]
    fn cannot_include_files() {
        let t = Template::compile("{% include '/etc/passwd' %}").unwrap();
        assert!(t.render(serde_json::json!({})).is_err());
    }
}
