//! A webhook URL that is itself the credential (its path or query carries
//! the token, as Discord's, Teams', Google Chat's, Slack's and Mattermost's
//! incoming webhooks do): read from its file on every use, and kept out of
//! every message even when an answer echoes it back.

use http::{HeaderMap, StatusCode};

use crate::delivery::verdict::{Verdict, default_classify};
use crate::event::escape::one_line;
use crate::event::secret::SecretFile;

/// Parts of a URL shorter than this are not worth masking (`api`, `v1`).
const SECRET_MIN: usize = 8;
/// A lowercase word this long or longer might still be a token.
const WORD_MAX: usize = 16;
/// How much of an answer a failure message keeps, once masked.
pub const MESSAGE_MAX: usize = 400;
/// A secret's cut-off start at the end of a text is masked from this long.
const PREFIX_MIN: usize = 4;
const MASK: &str = "<redacted>";

/// Reads and checks the URL in `file`, the value of the setting `setting`
/// (`urlFile`, `webhookURLFile`); errors name the file, never its content.
pub async fn read(file: &SecretFile, setting: &str) -> Result<url::Url, Verdict> {
    let secret = file.read().await.map_err(Verdict::from)?;
    url::Url::parse(secret.expose().trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
        .ok_or_else(|| {
            Verdict::permanent(format!(
                "{setting} {} does not hold an http(s) URL",
                file.0.display()
            ))
        })
}

/// The URL of a target given as `url`, or read from `urlFile` when the URL
/// itself is a secret (checked at load: one of them is set).
pub async fn resolve(
    url: Option<&url::Url>,
    file: Option<&SecretFile>,
) -> Result<url::Url, Verdict> {
    match (url, file) {
        (Some(u), _) => Ok(u.clone()),
        (None, Some(f)) => read(f, "urlFile").await,
        (None, None) => Err(Verdict::permanent("no `url` or `urlFile` is set")),
    }
}

/// The default classification, with the whole answer (as much as the
/// transport read) in a permanent failure's message, so [`redact`] sees
/// whole tokens before the message is cut. A retryable failure names its
/// status only: the transport logs it between attempts, before any mask.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Verdict {
    match default_classify(status, headers, "") {
        Verdict::Permanent { status, message } => Verdict::Permanent {
            status,
            message: match body.trim() {
                "" => message,
                b => format!("{message}: {b}"),
            },
        },
        other => other,
    }
}

/// `v` with every part of `url` that may be secret (the whole URL, its
/// path, path segments and query values, raw or percent-decoded) masked in
/// its message, which is then cut to one line of [`MESSAGE_MAX`].
pub fn redact(v: Verdict, url: &url::Url) -> Verdict {
    // The whole path too: its segments may be too short to mask alone
    // (Slack's `/services/T0001/B0002/…`), yet together name the hook.
    let mut parts: Vec<String> = vec![url.as_str().to_string(), url.path().to_string()];
    if let Some(segs) = url.path_segments() {
        parts.extend(segs.flat_map(|s| [s.to_string(), percent_decoded(s)]));
    }
    parts.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
    if let Some(q) = url.query() {
        parts.extend(
            q.split('&')
                .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.to_string())),
        );
    }
    // Plain path words (`webhooks`, `workflows`) are left readable.
    parts.retain(|p| {
        p.len() >= SECRET_MIN && (p.len() >= WORD_MAX || !p.chars().all(|c| c.is_ascii_lowercase()))
    });
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    v.map_message(|m| one_line(&mask(&m, &parts), MESSAGE_MAX))
}

/// `v` with each of `secrets` (a token, say) masked in its message, whole
/// or cut off at its end; the message is otherwise kept as it is.
pub fn scrub(v: Verdict, secrets: &[&str]) -> Verdict {
    v.map_message(|m| mask(&m, secrets))
}

/// `text` with every occurrence of each of `secrets` masked, and its end
/// too when that is the start of one: an answer is cut before it is
/// classified, so an echoed secret may be cut short. Empty and one-character
/// secrets are passed over (masking them would mask everything).
pub fn mask(text: &str, secrets: &[&str]) -> String {
    let mut secrets: Vec<&str> = secrets.iter().copied().filter(|s| s.len() > 1).collect();
    // Longest first, so a secret holding another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = secrets
        .iter()
        .fold(text.to_string(), |m, s| m.replace(s, MASK));
    for s in &secrets {
        if let Some(k) = (PREFIX_MIN..s.len())
            .rev()
            .find(|k| s.is_char_boundary(*k) && out.ends_with(&s[..*k]))
        {
            out.truncate(out.len() - k);
            out.push_str(MASK);
        }
    }
    out
}

/// `%XX` sequences decoded (lossily: only for matching).
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_tokens_are_masked() {
        let u = url::Url::parse(
            "https://h.example/api/webhooks/1234567890/tok%2Fen-abcdef?k=AIzaSyXYZ123",
        )
        .unwrap();
        let v = redact(
            Verdict::permanent(
                "answered 401: bad tok/en-abcdef for webhooks at https://h.example/api/webhooks/1234567890/tok%2Fen-abcdef?k=AIzaSyXYZ123 (AIzaSyXYZ123)",
            ),
            &u,
        );
        let Verdict::Permanent { message, .. } = v else {
            panic!()
        };
        for secret in ["tok/en-abcdef", "tok%2Fen", "AIzaSyXYZ123", "1234567890"] {
            assert!(!message.contains(secret), "{secret} in {message}");
        }
        assert!(
            message.starts_with("answered 401: bad <redacted>"),
            "{message}"
        );
    }

    #[test]
    fn a_path_of_short_segments_is_masked_whole() {
        let u = url::Url::parse("https://h.example/services/T0001/B0002/h00kS3cretPart").unwrap();
        let v = redact(
            Verdict::permanent("answered 404: no hook /services/T0001/B0002/h00kS3cretPart"),
            &u,
        );
        assert_eq!(v, Verdict::permanent("answered 404: no hook <redacted>"));
        // Alone, a plain word stays readable and a secret segment does not.
        let v = redact(Verdict::permanent("services: h00kS3cretPart unknown"), &u);
        assert_eq!(v, Verdict::permanent("services: <redacted> unknown"));
    }

    #[test]
    fn a_cut_off_secret_is_masked_and_the_message_bounded() {
        let u = url::Url::parse("https://h.example/hooks/1/SeCrEtToKeN-0123456789").unwrap();
        let v = redact(
            Verdict::permanent("answered 403: see https://h.example/hooks/1/SeCrEtTo"),
            &u,
        );
        assert_eq!(v, Verdict::permanent("answered 403: see <redacted>"));
        let long = format!("answered 400: {}", "x".repeat(5000));
        let Verdict::Permanent { message, .. } = redact(Verdict::permanent(long), &u) else {
            panic!()
        };
        assert_eq!(message.chars().count(), MESSAGE_MAX);
    }

    #[test]
    fn secrets_are_masked_whole_and_cut_off() {
        let key = "R0UT1NG-0123456789";
        assert_eq!(
            mask(&format!("bad key {key}, {key}!"), &[key]),
            "bad key <redacted>, <redacted>!"
        );
        assert_eq!(
            mask("cut short: R0UT1NG-01", &[key]),
            "cut short: <redacted>"
        );
        assert_eq!(mask("ends in R0U", &[key]), "ends in R0U");
        assert_eq!(mask("a b", &["", "a"]), "a b", "too short to mask");
        let v = scrub(
            Verdict::Retryable {
                status: Some(503),
                retry_after: None,
                message: format!("answered 503: Bearer {key}\nretry"),
            },
            &[key],
        );
        assert_eq!(
            v,
            Verdict::Retryable {
                status: Some(503),
                retry_after: None,
                message: "answered 503: Bearer <redacted>\nretry".into(),
            },
            "masked, otherwise kept"
        );
        assert_eq!(scrub(Verdict::Success, &[key]), Verdict::Success);
    }

    #[test]
    fn the_whole_answer_is_kept_until_masked() {
        let body = format!("{{\"error\": \"{}\"}}", "y".repeat(1000));
        let v = classify(StatusCode::FORBIDDEN, &HeaderMap::new(), &body);
        assert_eq!(
            v,
            Verdict::Permanent {
                status: Some(403),
                message: format!("answered 403 Forbidden: {body}"),
            }
        );
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                &h,
                "echo https://h/hooks/1/SeCrEt"
            ),
            Verdict::Retryable {
                status: Some(429),
                retry_after: Some(std::time::Duration::from_secs(3)),
                message: "answered 429 Too Many Requests".into(),
            },
            "logged between attempts: no answer text"
        );
        assert_eq!(classify(StatusCode::ACCEPTED, &h, ""), Verdict::Success);
    }

    #[tokio::test]
    async fn a_bad_url_file_is_named_not_shown() {
        let dir = std::env::temp_dir().join(format!("relay-secret-url-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("url");
        std::fs::write(&p, "ftp://h.example/secret-token-value\n").unwrap();
        let Err(Verdict::Permanent { message, .. }) =
            read(&SecretFile(p.clone()), "webhookURLFile").await
        else {
            panic!("accepted ftp")
        };
        assert!(
            message.starts_with("webhookURLFile ") && !message.contains("secret-token"),
            "{message}"
        );
        std::fs::write(&p, "https://h.example/x?token=t\n").unwrap();
        assert_eq!(
            read(&SecretFile(p), "urlFile").await.unwrap().as_str(),
            "https://h.example/x?token=t"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
