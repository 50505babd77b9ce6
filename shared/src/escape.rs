//! Escaping user-controlled text (run, task and pipeline names, condition
//! messages) for the places it is rendered, so it cannot inject markup,
//! links or mentions.

/// Markdown (GitHub, GitLab, Gitea, Bitbucket, Azure DevOps comments and
/// check-run output): every markup character is backslash-escaped, HTML
/// angle brackets and ampersands become entities, and `@` is followed by a
/// zero-width joiner so no mention (`@channel`, `@team`) fires.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
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
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A link target that cannot break out of `(<…>)` nor carry markup: only
/// http(s) (no `javascript:`), with every character markdown or HTML could
/// read percent-encoded. Dashboard and log links are built from run names.
pub fn link(u: &str) -> Option<String> {
    if !(u.starts_with("https://") || u.starts_with("http://")) {
        return None;
    }
    let mut out = String::with_capacity(u.len());
    for c in u.chars() {
        match c {
            '<' | '>' | '(' | ')' | '[' | ']' | '*' | '_' | '`' | '|' | '"' | '\'' | ' ' | '@'
            | '~' | '!' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// Plain one-line text (commit status descriptions): no newlines or control
/// characters, cut to `max` characters on a character boundary with `…`.
pub fn one_line(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c == '\n' || c == '\r' || c == '\t' {
                ' '
            } else {
                c
            }
        })
        .filter(|c| !c.is_control())
        .collect();
    let clean = clean.trim();
    if clean.chars().count() <= max {
        return clean.to_string();
    }
    let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
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
    fn links_are_http_only_and_carry_no_markup() {
        assert_eq!(link("javascript:alert(1)"), None);
        assert_eq!(link("data:text/html,x"), None);
        assert_eq!(
            link("https://t.example/#/ns/ci/pipelineruns/<script>x</script>(a)@b").unwrap(),
            "https://t.example/#/ns/ci/pipelineruns/%3Cscript%3Ex%3C/script%3E%28a%29%40b"
        );
        assert_eq!(link("http://h/ok?x=1").unwrap(), "http://h/ok?x=1");
    }
}
