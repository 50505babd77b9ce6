//! Escaping user-controlled text (run, task and pipeline names, condition
//! messages) for the places it is rendered, so it cannot inject markup,
//! links or mentions.

/// Markdown (GitHub, GitLab, Gitea, Bitbucket, Azure DevOps comments and
/// check-run output): every markup character is backslash-escaped, HTML
/// angle brackets and ampersands become entities, and `@` is followed by a
/// zero-width joiner so no mention (`@channel`, `@team`) fires.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut prev = None;
    for c in s.chars() {
        let after = prev.replace(c);
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '@' => out.push_str("@\u{2060}"),
            '\\' | '`' | '*' | '_' | '{' | '}' | '[' | ']' | '(' | ')' | '#' | '+' | '-' | '.'
            | '!' | '|' | '~' | '"' | '\'' | ':' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\u{2028}' | '\u{2029}' => out.push(' '),
            c if c.is_control() || dropped(after, c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether `c` is an invisible formatting character: bidi embeddings,
/// overrides and isolates (an RLO shows `exe.txt` for `txt.exe`),
/// zero-width spaces and joiners, invisible operators, the byte-order mark.
/// They pass every markup escaper unchanged and make text read other than
/// it is, so every escaper here drops them.
pub fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Whether `c`, after `prev`, is an invisible formatting character to
/// drop. A word joiner after `@` or `<` stays: it is what the escapers
/// here put there to break a mention (`@\u{2060}channel`, `<\u{2060}!here>`),
/// so text escaped once (`inert`) keeps it when cut to one line after.
fn dropped(prev: Option<char>, c: char) -> bool {
    is_format(c) && !(c == '\u{2060}' && matches!(prev, Some('@' | '<')))
}

/// `s` without [invisible formatting characters](is_format) (but for the
/// word joiners that break mentions): for escapers kept beside a provider's
/// own markup (Slack, Mattermost), which run it first.
pub fn strip_format(s: &str) -> String {
    let mut prev = None;
    s.chars()
        .filter(|&c| !dropped(prev.replace(c), c))
        .collect()
}

/// Text from the event fit for a log line: every control character (C0,
/// DEL, C1), line separator and invisible formatting character is written
/// as an escape (`\n`, `\u{1b}`, `\u{202e}`), so a name can neither start a
/// forged line, nor colour or clear the terminal, nor reorder what follows.
pub fn log_text(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_format(c) || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A link target that cannot break out of `(<…>)` nor carry markup: only
/// http(s) (no `javascript:`), with every character markdown or HTML could
/// read percent-encoded. Dashboard and log links are built from run names,
/// and without `dashboardURL` a run's link is its own annotation: a URL
/// with credentials (`https://user:token@host`, `https://tekton.example@evil`,
/// which shows one host and goes to another) or one that does not parse
/// is no link.
pub fn link(u: &str) -> Option<String> {
    if !(u.starts_with("https://") || u.starts_with("http://")) {
        return None;
    }
    let parsed = url::Url::parse(u).ok()?;
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.host().is_none() {
        return None;
    }
    let mut out = String::with_capacity(u.len());
    for c in u.chars() {
        match c {
            '<' | '>' | '(' | ')' | '[' | ']' | '*' | '_' | '`' | '|' | '"' | '\'' | ' ' | '@'
            | '~' | '!' | '\u{2028}' | '\u{2029}' => percent_encode(c, &mut out),
            // Kept, but visible: they would reorder or hide what a reader sees.
            c if is_format(c) => percent_encode(c, &mut out),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

fn percent_encode(c: char, out: &mut String) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        out.push_str(&format!("%{b:02X}"));
    }
}

/// A clone URL as the repository's web page, fit to link to: http(s) only,
/// without credentials, query or `.git`.
pub fn repository_page(clone: &str) -> Option<String> {
    let mut u = url::Url::parse(clone).ok()?;
    if !matches!(u.scheme(), "https" | "http") {
        return None;
    }
    u.set_username("").ok()?;
    u.set_password(None).ok()?;
    u.set_query(None);
    u.set_fragment(None);
    let page = u.as_str().trim_end_matches('/');
    link(page.strip_suffix(".git").unwrap_or(page))
}

/// `s` within `max` characters: itself, or a prefix of it and a hash of the
/// whole — stable, so a status keyed by it is updated, not duplicated.
pub fn bounded_key(s: &str, max: usize) -> String {
    use sha2::Digest;
    if s.chars().count() <= max {
        return s.to_string();
    }
    let hash = hex::encode(&sha2::Sha256::digest(s.as_bytes())[..5]);
    let prefix: String = s.chars().take(max.saturating_sub(hash.len() + 1)).collect();
    format!("{prefix}-{hash}")
}

/// One URL path segment, percent-encoded; `None` for what would climb or
/// vanish (`.`, `..`, empty).
pub fn path_segment(s: &str) -> Option<String> {
    if s.is_empty() || s == "." || s == ".." {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}

/// Plain one-line text (commit status descriptions): no newlines or control
/// characters, cut to `max` characters on a character boundary with `…`.
pub fn one_line(s: &str, max: usize) -> String {
    let clean: String = strip_format(s)
        .chars()
        .map(|c| {
            if matches!(c, '\n' | '\r' | '\t' | '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .filter(|c| !c.is_control())
        .collect();
    cut(clean.trim(), max)
}

/// `s` within `max` characters, cut on a character boundary with `…`; its
/// lines are kept (services count characters, not bytes, in their limits).
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The first `n` characters of `s` (all of it when shorter), cut on a
/// character boundary: a byte index would panic inside `€`.
pub fn prefix(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

/// Text from the event, made inert where a service passes it on to chat
/// (PagerDuty's and Opsgenie's Slack and Teams extensions, Sentry's Slack
/// notifications): no `@channel`, `<!here>` or `<@U…>` can fire. Those
/// services show such fields as plain text, so nothing else is escaped.
pub fn inert(s: &str) -> String {
    strip_format(s)
        .replace('@', "@\u{2060}")
        .replace("<!", "<\u{2060}!")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_neutralises_markup_links_html_and_mentions() {
        let s = markdown(
            "<script>alert(1)</script>*bold* @channel [logs](https://evil.example.com) `rm -rf /` | x",
        );
        for bad in ["<script>", "@channel"] {
            assert!(!s.contains(bad), "{bad} survived in {s}");
        }
        // Every markup character is preceded by its escape.
        let chars: Vec<char> = s.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if "*`[]()|_".contains(*c) {
                assert_eq!(
                    chars.get(i.wrapping_sub(1)),
                    Some(&'\\'),
                    "unescaped {c} at {i} in {s}"
                );
            }
        }
        assert!(s.contains("&lt;script&gt;"));
    }

    #[test]
    fn one_line_cuts_on_characters() {
        assert_eq!(one_line("a\nb", 10), "a b");
        let long = "é".repeat(200);
        let cut = one_line(&long, 140);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn cut_keeps_lines_and_counts_characters() {
        assert_eq!(cut("ééé", 3), "ééé");
        assert_eq!(cut("éééé", 3), "éé…");
        assert_eq!(cut("a\nb\nc", 4), "a\nb…");
    }

    #[test]
    fn links_are_http_only_and_carry_no_markup() {
        assert_eq!(link("javascript:alert(1)"), None);
        assert_eq!(link("data:text/html,x"), None);
        assert_eq!(
            link("https://t.example/#/ns/ci/pipelineruns/<script>x</script>(a)@b").unwrap(),
            "https://t.example/#/ns/ci/pipelineruns/%3Cscript%3Ex%3C/script%3E%28a%29%40b"
        );
        assert_eq!(link("http://h/ok?x=1").unwrap(), "http://h/ok?x=1");
    }

    #[test]
    fn repository_pages_keys_and_segments() {
        assert_eq!(
            repository_page("https://x-token:s3cret@bitbucket.org/acme/widgets.git?a=1").unwrap(),
            "https://bitbucket.org/acme/widgets"
        );
        assert_eq!(repository_page("git@bitbucket.org:acme/widgets.git"), None);
        assert_eq!(bounded_key("tekton/ci", 40), "tekton/ci");
        let long = "tekton/a-very-long-pipeline-name-that-goes-on-and-on";
        let key = bounded_key(long, 40);
        assert_eq!(key.chars().count(), 40);
        assert_eq!(key, bounded_key(long, 40));
        assert_ne!(key, bounded_key(&format!("{long}-2"), 40));
        assert_eq!(path_segment("a b/c").unwrap(), "a%20b%2Fc");
        assert_eq!(path_segment(".."), None);
    }

    /// RLO, zero-width and bidi-isolate characters pass markup escapers
    /// unchanged and make a name read other than it is.
    #[test]
    fn invisible_formatting_characters_are_dropped_by_every_escaper() {
        let hostile =
            "build\u{202E}exe.txt\u{200B}\u{200F}\u{2060}\u{2064}\u{2066}x\u{2069}\u{FEFF}";
        for (what, out) in [
            ("markdown", markdown(hostile)),
            ("one_line", one_line(hostile, 100)),
            ("inert", inert(hostile).replace("@\u{2060}", "@")),
            ("strip_format", strip_format(hostile)),
        ] {
            assert!(!out.chars().any(is_format), "{what}: {out:?}");
            assert!(out.contains("exe"), "{what}: {out:?}");
        }
        // In a link they stay, visible: the URL still goes where it went.
        assert_eq!(
            link("https://t.example/a\u{202E}b").unwrap(),
            "https://t.example/a%E2%80%AEb"
        );
        // The escapers' own word joiners are added after stripping, and
        // kept when escaped text is cut to one line.
        assert_eq!(markdown("@\u{200B}here"), "@\u{2060}here");
        assert_eq!(
            one_line(&inert("@channel <!here>"), 40),
            inert("@channel <!here>")
        );
        assert_eq!(one_line("a\u{2060}b@\u{2060}c", 10), "ab@\u{2060}c");
        assert_eq!(one_line("a\u{2028}b", 10), "a b");
    }

    #[test]
    fn log_text_shows_control_characters_as_escapes() {
        let s =
            log_text("run\n{\"level\":\"ERROR\"}\u{1b}[31mred\r\t\u{7f}\u{9b}\u{202e}\u{2028}ok");
        assert_eq!(
            s,
            "run\\n{\"level\":\"ERROR\"}\\u{1b}[31mred\\r\\t\\u{7f}\\u{9b}\\u{202e}\\u{2028}ok"
        );
        assert!(!s.chars().any(|c| c.is_control() || is_format(c)), "{s:?}");
        assert_eq!(log_text("été"), "été");
    }

    #[test]
    fn prefixes_cut_on_characters_not_bytes() {
        assert_eq!(prefix("0123456789ab€€", 12), "0123456789ab");
        assert_eq!(prefix("01234567890€€", 12), "01234567890€");
        assert_eq!(prefix("€", 12), "€");
        assert_eq!(prefix("", 3), "");
    }

    #[test]
    fn links_with_credentials_are_no_links() {
        for bad in [
            "https://x-access-token:ghs_s3cret@github.com/acme/widgets",
            "https://tekton.acme.dev@evil.example.com/#/pipelineruns/x",
            "https://user@host/x",
            "https://",
            "http://[::1/x",
        ] {
            assert_eq!(link(bad), None, "{bad}");
        }
        assert_eq!(
            link("https://tekton.acme.dev/#/pipelineruns/x@y").unwrap(),
            "https://tekton.acme.dev/#/pipelineruns/x%40y"
        );
    }

    #[test]
    fn inert_text_fires_no_mention() {
        let s = inert("@channel <!here> <@U0123> a@b");
        for bad in ["@channel", "<!here>", "<@U0123>"] {
            assert!(!s.contains(bad), "{bad} in {s}");
        }
        assert_eq!(s.replace('\u{2060}', ""), "@channel <!here> <@U0123> a@b");
    }
}
