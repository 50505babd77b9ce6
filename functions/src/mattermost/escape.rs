//! Markdown for Mattermost, which renders message and attachment text as
//! Markdown and fires `@channel`, `@all` and `@here` mentions from it.
//! relay-core's markdown escaping backslash-escapes every markup character
//! and puts a word joiner after each `@`; the fallback (shown in
//! notifications, unrendered) and template values get only what they need.

const WORD_JOINER: char = '\u{2060}';

/// User text fit for Mattermost Markdown: no markup, link, HTML or mention.
pub fn markdown(s: &str) -> String {
    relay_core::escape::markdown(s)
}

/// Plain text (the attachment's `fallback`): only mentions neutralised.
pub fn plain(s: &str) -> String {
    relay_core::escape::strip_format(s).replace('@', &format!("@{WORD_JOINER}"))
}

/// Text interpolated into a Notification's template: no mention, link or
/// HTML can be formed from it, while URLs stay usable as link targets.
pub fn template_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in relay_core::escape::strip_format(s).chars() {
        match c {
            '@' => {
                out.push('@');
                out.push(WORD_JOINER);
            }
            '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_markup_and_links_are_neutralised() {
        let s = markdown("@channel @all @here <!here> *bold* [x](https://evil) `rm` ~town-square");
        for bad in [
            "@channel", "@all", "@here", "<!here>", "*bold*", "[x](", "`rm`",
        ] {
            assert!(!s.contains(bad), "{bad} survived in {s}");
        }
        assert!(s.contains("@\u{2060}all"), "{s}");
        assert!(s.contains("\\*bold\\*"), "{s}");
        assert_eq!(plain("hi @here *x*"), "hi @\u{2060}here *x*");
    }

    #[test]
    fn invisible_formatting_characters_are_dropped() {
        for out in [
            markdown("a\u{202E}b\u{FEFF}"),
            plain("a\u{202E}b\u{FEFF}"),
            template_value("a\u{202E}b\u{FEFF}"),
        ] {
            assert_eq!(out, "ab");
        }
        assert_eq!(plain("@\u{200B}all"), "@\u{2060}all");
    }

    #[test]
    fn template_values_form_no_links_or_mentions() {
        assert_eq!(
            template_value("@all see [logs](https://evil) <b>"),
            "@\u{2060}all see \\[logs\\](https://evil) &lt;b&gt;"
        );
        assert_eq!(template_value("https://t/x?a=1&b=2"), "https://t/x?a=1&b=2");
    }
}
