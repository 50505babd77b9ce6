//! Annotation text. Grafana shows it as sanitised HTML (the tooltip and the
//! annotation list), so every user-controlled string is HTML-escaped, line
//! breaks become `<br>`, and the one link, to the run, is an escaped
//! http(s) URL. `@` gets a word joiner, so no mention can fire in an
//! alerting or chat integration that forwards the text.

use relay_core::chat::ChatView;

/// `s` as HTML text.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '@' => out.push_str("@\u{2060}"),
            '\n' => out.push_str("<br>"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The default text: the headline, the facts, the condition message and a
/// link to the run.
pub fn default_text(v: &ChatView) -> String {
    let mut lines = vec![format!("{} <b>{}</b>", v.style.emoji, html(&v.title))];
    lines.extend(
        v.facts
            .iter()
            .map(|f| format!("{}: {}", f.label, html(&f.value))),
    );
    if let Some(m) = &v.message {
        lines.push(html(m));
    }
    if let Some(href) = v.url.as_deref().and_then(relay_core::escape::link) {
        lines.push(format!("<a href=\"{}\">Open the run</a>", html(&href)));
    }
    lines.join("<br>")
}

/// A Notification's template text, shown as written (not as HTML).
pub fn from_template(rendered: &str) -> String {
    html(rendered.replace("\r\n", "\n").trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_mentions_are_broken() {
        assert_eq!(
            html("<b>\"x\" & 'y'</b>\n@here"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;<br>@\u{2060}here"
        );
        assert_eq!(from_template("Deployed\r\n\n"), "Deployed");
    }

    #[test]
    fn the_default_text_links_the_run() {
        let ev = relay_core::sample::run_event();
        let t = default_text(&ChatView::of(&ev));
        assert!(
            t.starts_with(
                "❌ <b>PipelineRun build-and-test-abcde failed</b><br>Pipeline: build-and-test<br>"
            ),
            "{t}"
        );
        assert!(t.contains("<br>Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1<br>"));
        assert!(t.ends_with(
            "<a href=\"https://tekton.example/#/namespaces/ci/pipelineruns/build-and-test-abcde\">Open the run</a>"
        ));
    }
}
