//! Checks that several providers make of their settings, so the same
//! mistake reads the same whichever provider it is made in. Each returns
//! [`FieldError`]s, the path relative to the provider's settings (or
//! `params.` for a Notification's).

use crate::event::field::{FieldError, FieldErrors};

/// The error for a URL setting at `path` (a base URL, an avatar or icon)
/// that is not http(s), if it is not.
pub fn http_url(path: &str, url: &url::Url) -> Option<FieldError> {
    (!matches!(url.scheme(), "http" | "https")).then(|| {
        FieldError::new(
            path,
            format!("scheme {:?} is not http or https", url.scheme()),
        )
    })
}

/// The error, if any, of a target given as `url` or, when the URL itself is
/// a secret, `urlFile`: exactly one, and an inline one http(s).
pub fn url_or_file(
    url: Option<&url::Url>,
    file: Option<&crate::event::secret::SecretFile>,
) -> Option<FieldError> {
    match (url, file) {
        (None, None) => Some(FieldError::new("", "one of `url` or `urlFile` is required")),
        (Some(_), Some(_)) => Some(FieldError::new(
            "urlFile",
            "give `url` or `urlFile`, not both",
        )),
        (Some(u), None) => http_url("url", u),
        (None, Some(_)) => None,
    }
}

/// The `headers` setting as header names and values; an error at
/// `headers.<name>` for each that is not a valid HTTP header.
pub fn headers(
    map: &std::collections::BTreeMap<String, String>,
    errs: &mut FieldErrors,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let mut out = Vec::new();
    for (k, v) in map {
        match (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            (Ok(n), Ok(v)) => out.push((n, v)),
            _ => errs.push(format!("headers.{k}"), "not a valid HTTP header"),
        }
    }
    out
}

/// An error for each blank item of the list setting at `path` (`tags`,
/// `kinds`, `projects`), at `path[i]`.
pub fn blank_items<'a>(
    path: &'a str,
    items: &'a [String],
) -> impl Iterator<Item = FieldError> + 'a {
    items
        .iter()
        .enumerate()
        .filter(|(_, t)| t.trim().is_empty())
        .map(move |(i, _)| FieldError::new(format!("{path}[{i}]"), "must not be empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_one_http_url_or_a_file_and_headers_are_valid() {
        let u = url::Url::parse("ftp://x").unwrap();
        let f = crate::event::secret::SecretFile("/f".into());
        assert_eq!(url_or_file(None, None).unwrap().path, "");
        assert_eq!(url_or_file(Some(&u), Some(&f)).unwrap().path, "urlFile");
        assert_eq!(url_or_file(Some(&u), None).unwrap().path, "url");
        assert_eq!(url_or_file(None, Some(&f)), None);
        let mut errs = FieldErrors::new();
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
            FieldErrors::one("headers.a b", "not a valid HTTP header")
        );
    }

    #[test]
    fn urls_must_be_http_and_list_items_not_blank() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(http_url("baseURL", &u("https://x.example")), None);
        assert_eq!(http_url("baseURL", &u("http://x.example")), None);
        assert_eq!(
            http_url("iconURL", &u("ftp://x/i.png")),
            Some(FieldError::new(
                "iconURL",
                "scheme \"ftp\" is not http or https"
            ))
        );
        let items = ["a".to_string(), " ".into(), "b".into(), "".into()];
        let errs: Vec<_> = blank_items("params.tags", &items).collect();
        assert_eq!(
            errs,
            [
                FieldError::new("params.tags[1]", "must not be empty"),
                FieldError::new("params.tags[3]", "must not be empty"),
            ]
        );
    }
}
