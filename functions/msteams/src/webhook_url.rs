//! The webhook URL is the credential (its path or query carries the
//! token): read from `urlFile` on every use, and kept out of every message
//! even when an answer echoes it back.

use http::{HeaderMap, StatusCode};
use relay_core::escape::one_line;
use relay_core::provider::{Verdict, default_classify};
use relay_core::secret::SecretFile;

/// Parts of a URL shorter than this are not worth masking (`api`, `v1`).
const SECRET_MIN: usize = 8;
/// A lowercase word this long or longer might still be a token.
const WORD_MAX: usize = 16;
/// How much of an answer a failure message keeps, once masked.
const MESSAGE_MAX: usize = 400;
/// A secret's cut-off start at the end of a message is masked from this long.
const PREFIX_MIN: usize = 4;

/// Reads and checks the URL; errors name the file, never its content.
pub async fn read(file: &SecretFile) -> Result<url::Url, Verdict> {
    let secret = file
        .read()
        .await
        .map_err(|e| Verdict::permanent(e.to_string()))?;
    url::Url::parse(secret.expose().trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
        .ok_or_else(|| {
            Verdict::permanent(format!(
                "urlFile {} does not hold an http(s) URL",
                file.0.display()
            ))
        })
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

/// `v` with every part of `url` that may be secret (path segments, query
/// values, raw or percent-decoded) masked in its message.
pub fn redact(v: Verdict, url: &url::Url) -> Verdict {
    let mut parts: Vec<String> = vec![url.as_str().to_string()];
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
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mask = |m: String| {
        let mut m = parts
            .iter()
            .fold(m, |m, p| m.replace(p.as_str(), "<redacted>"));
        // An answer cut short may end in the start of a secret.
        for p in &parts {
            if let Some(k) = (PREFIX_MIN..p.len())
                .rev()
                .find(|k| p.is_char_boundary(*k) && m.ends_with(&p[..*k]))
            {
                m.truncate(m.len() - k);
                m.push_str("<redacted>");
            }
        }
        one_line(&m, MESSAGE_MAX)
    };
    match v {
        Verdict::Retryable {
            status,
            retry_after,
            message,
        } => Verdict::Retryable {
            status,
            retry_after,
            message: mask(message),
        },
        Verdict::Permanent { status, message } => Verdict::Permanent {
            status,
            message: mask(message),
        },
        Verdict::Success => Verdict::Success,
    }
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
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("url");
        std::fs::write(&p, "ftp://h.example/secret-token-value\n").unwrap();
        let Err(Verdict::Permanent { message, .. }) = read(&SecretFile(p.clone())).await else {
            panic!("accepted ftp")
        };
        assert!(
            message.contains("urlFile") && !message.contains("secret-token"),
            "{message}"
        );
        std::fs::write(&p, "https://h.example/x?token=t\n").unwrap();
        assert_eq!(
            read(&SecretFile(p)).await.unwrap().as_str(),
            "https://h.example/x?token=t"
        );
    }
}
