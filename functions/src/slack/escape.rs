//! Slack mrkdwn for user-controlled text (run, pipeline and task names,
//! condition messages, branches). Slack has no backslash escape: `&`, `<` and
//! `>` become entities (so no `<link|…>`, `<!here>` or `<@U…>` can be
//! formed), `@` is followed by a word joiner (no `@channel`, `@here`,
//! `@everyone`), and a formatting character that could open or close bold,
//! italic, strike or code becomes a look-alike (a zero-width space would
//! *enable* the formatting: Slack reads it as a word boundary).

/// Invisible, not a word boundary: `@\u{2060}channel` is no mention.
const WORD_JOINER: char = '\u{2060}';

/// User text fit for a mrkdwn text object or the message's `text`.
pub fn mrkdwn(s: &str) -> String {
    // Invisible formatting characters first, so the word joiners added
    // below stay and `inside_word` sees the text as it shows.
    let chars: Vec<char> = relay_core::escape::strip_format(s).chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => {
                // A leading `>` quotes the line; a soft hyphen before it does not.
                if out.is_empty() {
                    out.push('\u{00AD}');
                }
                out.push_str("&gt;")
            }
            '@' => {
                out.push('@');
                out.push(WORD_JOINER);
            }
            '*' | '_' | '~' | '`' if !inside_word(&chars, i) => out.push(lookalike(c)),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Slack formats only markers at a word boundary: `build_and_test` stays
/// as written, `_now_` would be italic.
fn inside_word(chars: &[char], i: usize) -> bool {
    let alnum = |j: Option<usize>| {
        j.and_then(|j| chars.get(j))
            .is_some_and(|c| c.is_alphanumeric())
    };
    alnum(i.checked_sub(1)) && alnum(Some(i + 1))
}

fn lookalike(c: char) -> char {
    match c {
        '*' => '\u{2217}', // asterisk operator
        '_' => '\u{02CD}', // modifier letter low macron
        '~' => '\u{223C}', // tilde operator
        '`' => '\u{02CB}', // modifier letter grave accent
        c => c,
    }
}

/// Text interpolated into a Notification's template: no link, mention or
/// entity can be formed from it (`&`, `<`, `>`, `@` as in [`mrkdwn`]), while
/// URLs and names stay usable in the template's own `<{{ event.url }}|…>`.
pub fn template_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in relay_core::escape::strip_format(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push('\u{2223}'), // would end a link's target inside `<…|…>`
            '@' => {
                out.push('@');
                out.push(WORD_JOINER);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_mentions_and_markers_are_neutralised() {
        let s = mrkdwn("@channel <!here> <@U0123> a & b *bold* _now_ ~x~ `rm -rf /`");
        for bad in [
            "@channel", "<!here>", "<@U0123>", "*bold*", "_now_", "~x~", "`rm",
        ] {
            assert!(!s.contains(bad), "{bad} survived in {s}");
        }
        assert!(s.contains("&lt;!here&gt;"), "{s}");
        assert!(s.contains("a &amp; b"), "{s}");
        assert!(s.contains("@\u{2060}channel"), "{s}");
        assert!(s.contains("\u{2217}bold\u{2217}"), "{s}");
        // No formatting character is left at all here.
        assert!(!s.contains(['*', '_', '~', '`', '<', '>']), "{s}");
    }

    #[test]
    fn invisible_formatting_characters_are_dropped() {
        // The zero-width space no longer makes `_` a word boundary.
        assert_eq!(mrkdwn("a\u{202E}b\u{200B}_c_"), "ab_c\u{02CD}");
        assert_eq!(template_value("@\u{200B}here\u{2066}"), "@\u{2060}here");
    }

    #[test]
    fn names_keep_their_inner_underscores() {
        assert_eq!(mrkdwn("build_and_test-x7k2p"), "build_and_test-x7k2p");
        assert_eq!(mrkdwn("_lead"), "\u{02CD}lead");
        assert_eq!(mrkdwn("line\nbreak"), "line break");
        assert_eq!(mrkdwn("> quoted"), "\u{00AD}&gt; quoted");
    }

    #[test]
    fn template_values_keep_urls_but_form_no_links() {
        assert_eq!(
            template_value("https://t.example/?a=1&b=2"),
            "https://t.example/?a=1&amp;b=2"
        );
        assert_eq!(
            template_value("<!channel>|x @here"),
            "&lt;!channel&gt;\u{2223}x @\u{2060}here"
        );
    }
}
