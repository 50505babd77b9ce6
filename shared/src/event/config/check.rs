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

/// The error, if any, of a target given as `url` or, when the URL itself is
/// a secret, `urlFile`: exactly one, and an inline one http(s).
pub fn url_or_file(
    url: Option<&url::Url>,
    file: Option<&crate::event::secret::SecretFile>,
) -> Option<(String, String)> {
    match (url, file) {
        (None, None) => Some((
            String::new(),
            "one of `url` or `urlFile` is required".into(),
        )),
        (Some(_), Some(_)) => Some(("urlFile".into(), "give `url` or `urlFile`, not both".into())),
        (Some(u), None) => http_url("url", u),
        (None, Some(_)) => None,
    }
}

/// The `headers` setting as header names and values; an error at
/// `headers.<name>` for each that is not a valid HTTP header.
pub fn headers(
    map: &std::collections::BTreeMap<String, String>,
    errs: &mut Vec<(String, String)>,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let mut out = Vec::new();
    for (k, v) in map {
        match (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            (Ok(n), Ok(v)) => out.push((n, v)),
            _ => errs.push((format!("headers.{k}"), "not a valid HTTP header".into())),
        }
    }
    out
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
    fn a_target_is_one_http_url_or_a_file_and_headers_are_valid() {
        let u = url::Url::parse("ftp://x").unwrap();
        let f = crate::event::secret::SecretFile("/f".into());
        assert_eq!(url_or_file(None, None).unwrap().0, "");
        assert_eq!(url_or_file(Some(&u), Some(&f)).unwrap().0, "urlFile");
        assert_eq!(url_or_file(Some(&u), None).unwrap().0, "url");
        assert_eq!(url_or_file(None, Some(&f)), None);
        let mut errs = Vec::new();
        let map = [
            ("X-Team".to_string(), "ci".to_string()),
            ("a b".into(), "c".into()),
        ]
        .into_iter()
        .collect();
        let h = headers(&map, &mut errs);
        assert_eq!(h.len(), 1);
        assert_eq!(
            errs,
            [(
                "headers.a b".to_string(),
                "not a valid HTTP header".to_string()
            )]
        );
    }

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
