//! Comment bodies in Jira wiki markup, for REST API v2 (Jira Data Center
//! has no v3 nor ADF). Every markup character of user-controlled text is
//! backslash-escaped, so names cannot format, link (`[x|url]`), embed
//! (`!img!`) or mention (`[~user]`). No emoji: a Data Center database in
//! MySQL's 3-byte `utf8` refuses them.

use relay_core::chat::ChatView;

/// `s` as literal wiki text, on one line.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' | '*' | '_' | '?' | '-' | '+' | '^' | '~' | '{' | '}' | '[' | ']' | '|' | '!'
            | '#' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@\u{2060}"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A line of user text: escaped, and kept from starting a heading, quote
/// or other line-start block (`h1. `, `bq. `) by a zero-width space.
fn line(s: &str) -> String {
    let e = escape(s);
    let block = e.split_once(". ").is_some_and(|(head, _)| {
        head == "bq"
            || (head.len() == 2 && head.starts_with('h') && head[1..].parse::<u8>().is_ok())
    });
    if block { format!("\u{200B}{e}") } else { e }
}

/// `text` linked to `href` when it is an http(s) URL (percent-encoded, so
/// it holds no `|` or `]`).
fn linked(text: &str, href: Option<&str>) -> String {
    match href.and_then(relay_core::escape::link) {
        Some(u) => format!("[{}|{u}]", escape(text)),
        None => escape(text),
    }
}

/// The default comment: the headline linked to the run, the facts, the
/// condition message.
pub fn from_view(v: &ChatView) -> String {
    let mut lines = vec![format!(
        "*{}* {}",
        linked(&v.subject, v.url.as_deref()),
        v.style.word
    )];
    for f in &v.facts {
        let value = match f.label {
            "Repository" => linked(&f.value, v.repository_url.as_deref()),
            _ => escape(&f.value),
        };
        lines.push(format!("*{}:* {value}", f.label));
    }
    if let Some(m) = &v.message {
        lines.push(String::new());
        lines.push(line(m));
    }
    lines.join("\n")
}

/// A Notification's template text, shown as written, line breaks kept.
pub fn from_template(rendered: &str) -> String {
    rendered
        .replace("\r\n", "\n")
        .trim_end()
        .lines()
        .map(line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape("[~admin] *b* {html}<b>{html} !x.png! @here\nnext"),
            "\\[\\~admin\\] \\*b\\* \\{html\\}<b>\\{html\\} \\!x.png\\! @\u{2060}here next"
        );
        assert_eq!(from_template("a-b\n\nc|d\n"), "a\\-b\n\nc\\|d");
        assert_eq!(
            from_template("h1. Big\nbq. quote\nh1.x"),
            "\u{200B}h1. Big\n\u{200B}bq. quote\nh1.x"
        );
    }

    #[test]
    fn the_default_comment_links_the_run() {
        let ev = relay_core::sample::run_event();
        let t = from_view(&ChatView::of(&ev));
        assert!(
            t.starts_with(
                "*[PipelineRun build\\-and\\-test\\-abcde|https://tekton.example/#/namespaces/ci/pipelineruns/build-and-test-abcde]* failed\n*Pipeline:* build\\-and\\-test\n"
            ),
            "{t}"
        );
        assert!(t.contains("\n*Repository:* [acme/widgets|https://github.com/acme/widgets]\n"));
        assert!(t.ends_with("\n\nTasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1"));
    }
}
