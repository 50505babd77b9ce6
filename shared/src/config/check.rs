//! Checks that several providers make of their settings, so the same
//! mistake reads the same whichever provider it is made in. Each returns
//! errors as `(path, message)`, the path relative to the provider's
//! settings (or `params.` for a Notification's).

/// The error for a URL setting at `path` (a base URL, an avatar or icon)
/// that is not http(s), if it is not.
pub fn http_url(path: &str, url: &url::Url) -> Option<(String, String)> {
    (!matches!(url.scheme(), "http" | "https")).then(|| {
        (
            path.to_string(),
            format!("scheme {:?} is not http or https", url.scheme()),
        )
    })
}

/// An error for each blank item of the list setting at `path` (`tags`,
/// `kinds`, `projects`), at `path[i]`.
pub fn blank_items<'a>(
    path: &'a str,
    items: &'a [String],
) -> impl Iterator<Item = (String, String)> + 'a {
    items
        .iter()
        .enumerate()
        .filter(|(_, t)| t.trim().is_empty())
        .map(move |(i, _)| (format!("{path}[{i}]"), "must not be empty".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_and_list_items_not_blank() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(http_url("baseURL", &u("https://x.example")), None);
        assert_eq!(http_url("baseURL", &u("http://x.example")), None);
        assert_eq!(
            http_url("iconURL", &u("ftp://x/i.png")),
            Some((
                "iconURL".into(),
                "scheme \"ftp\" is not http or https".into()
            ))
        );
        let items = ["a".to_string(), " ".into(), "b".into(), "".into()];
        let errs: Vec<_> = blank_items("params.tags", &items).collect();
        assert_eq!(
            errs,
            [
                (
                    "params.tags[1]".to_string(),
                    "must not be empty".to_string()
                ),
                (
                    "params.tags[3]".to_string(),
                    "must not be empty".to_string()
                ),
            ]
        );
    }
}
