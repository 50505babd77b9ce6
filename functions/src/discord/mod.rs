//! The Discord provider: one message per event through a channel webhook
//! (`/api/webhooks/<id>/<token>`), an embed coloured by state, the
//! Notification's template as the message text, and no mention allowed.

pub mod embed;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, StatusCode};
use relay_core::field::FieldErrors;
use relay_core::chat::{ChatView, template_text};
use relay_core::config::{ProviderDoc, check};
use relay_core::provider::{
    DeliveryInput, Outbound, OutboundRequest, Provider, ProviderFactory, Verdict, parse_settings,
};
use relay_core::secret::SecretFile;
use relay_core::secret_url;
use relay_core::transport::Http;
use serde::Deserialize;

pub const TYPE: &str = "discord";

/// A `retry_after` beyond this is not waited for here (the sender retries).
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscordSettings {
    /// A file holding the webhook URL, `https://discord.com/api/webhooks/<id>/<token>`
    /// (a `?thread_id=` in it is kept).
    pub url_file: SecretFile,
    /// Overrides the webhook's name.
    #[serde(default)]
    pub username: Option<String>,
    /// Overrides the webhook's avatar.
    #[serde(default, rename = "avatarURL")]
    pub avatar_url: Option<url::Url>,
}

pub struct Discord {
    url_file: SecretFile,
    sender: embed::Sender,
}

pub struct DiscordFactory;

impl ProviderFactory for DiscordFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: DiscordSettings = parse_settings(doc)?;
        let mut errs = FieldErrors::new();
        if let Some(u) = &s.username {
            // Discord refuses these names with a 400 on every message.
            let lower = u.to_lowercase();
            if u.trim().is_empty() || u.chars().count() > 80 {
                errs.push("username", "must be 1 to 80 characters");
            } else if lower.contains("discord") || lower.contains("clyde") {
                errs.push(
                    "username",
                    "Discord refuses webhook names containing \"discord\" or \"clyde\"",
                );
            }
        }
        if let Some(a) = &s.avatar_url {
            errs.extend(check::http_url("avatarURL", a));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Arc::new(Discord {
            url_file: s.url_file,
            sender: embed::Sender {
                username: s.username,
                avatar_url: s.avatar_url.map(String::from),
            },
        }))
    }
}

/// The webhook URL with `wait=true`, so Discord answers only once the
/// message exists (and says why when it does not).
pub fn execute_url(mut url: url::Url) -> url::Url {
    if !url.query_pairs().any(|(k, _)| k == "wait") {
        url.query_pairs_mut().append_pair("wait", "true");
    }
    url
}

#[async_trait]
impl Provider for Discord {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    async fn deliver(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
        let text = template_text(input)?;
        let ev = input.event;
        let body = embed::body(
            &ChatView::of(ev),
            ev.time.as_deref().or(ev.completed_at.as_deref()),
            text.as_deref(),
            &self.sender,
        );
        let url = execute_url(secret_url::read(&self.url_file, "urlFile").await?);
        let req = OutboundRequest::post_json(url.clone(), body.to_string());
        http.send(&Outbound::Http(req))
            .await
            .map_err(|v| secret_url::redact(v, &url))?;
        Ok(format!("message posted ({})", ev.state))
    }

    /// A 429 says how long to wait in its body (`retry_after`, seconds,
    /// fractional), more precisely than its `Retry-After` header.
    fn classify(
        &self,
        _request: &OutboundRequest,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
    ) -> Verdict {
        match secret_url::classify(status, headers, body) {
            Verdict::Retryable {
                status: Some(429),
                retry_after,
                message,
            } => Verdict::Retryable {
                status: Some(429),
                retry_after: body_retry_after(body).or(retry_after),
                message,
            },
            other => other,
        }
    }
}

fn body_retry_after(body: &str) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let secs = v["retry_after"]
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)?;
    // `try_`: a finite number may still be past what a Duration holds
    // (1e300), which `from_secs_f64` would panic on.
    Some(
        Duration::try_from_secs_f64(secs)
            .unwrap_or(RETRY_AFTER_MAX)
            .min(RETRY_AFTER_MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a classification answers; its content does not matter here.
    fn any_request() -> OutboundRequest {
        OutboundRequest::post_json(url::Url::parse("https://example.com/").unwrap(), "")
    }
    use serde_json::json;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("dc", TYPE, settings)
    }

    fn errors(settings: serde_json::Value) -> FieldErrors {
        crate::testkit::refused(&DiscordFactory, &doc(settings))
    }

    #[test]
    fn settings_errors_name_their_path() {
        assert!(errors(json!({}))[0].message.contains("missing field `urlFile`"));
        let e = errors(json!({"urlFile": "/u", "url": "https://discord.com/api/webhooks/1/t"}));
        assert!(e[0].message.contains("unknown field `url`"), "{e:?}");
        let e = errors(
            json!({"urlFile": "/u", "username": "Discord Bot", "avatarURL": "ftp://x/a.png"}),
        );
        assert_eq!(e[0].path, "username");
        assert_eq!(e[1].path, "avatarURL");
        assert_eq!(
            errors(json!({"urlFile": "/u", "username": " "}))[0].path,
            "username"
        );
        assert!(
            DiscordFactory
                .build(&doc(
                    json!({"urlFile": "/u", "username": "Tekton", "avatarURL": "https://x/a.png"})
                ))
                .is_ok()
        );
    }

    #[test]
    fn wait_is_added_and_a_thread_kept() {
        let u = |s: &str| execute_url(url::Url::parse(s).unwrap()).to_string();
        assert_eq!(
            u("https://discord.com/api/webhooks/1/t"),
            "https://discord.com/api/webhooks/1/t?wait=true"
        );
        assert_eq!(
            u("https://discord.com/api/webhooks/1/t?thread_id=9"),
            "https://discord.com/api/webhooks/1/t?thread_id=9&wait=true"
        );
        assert_eq!(
            u("https://discord.com/api/webhooks/1/t?wait=false"),
            "https://discord.com/api/webhooks/1/t?wait=false"
        );
    }

    #[test]
    fn rate_limits_wait_as_the_body_says() {
        let p = Discord {
            url_file: SecretFile("/u".into()),
            sender: Default::default(),
        };
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        let v = p.classify(&any_request(), 
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            r#"{"message": "You are being rate limited.", "retry_after": 0.25, "global": false}"#,
        );
        let Verdict::Retryable { retry_after, .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(retry_after, Some(Duration::from_millis(250)));
        // A wait past what a Duration holds is the bound, not a panic.
        for huge in ["1e300", "18446744073709551616"] {
            let body = format!(r#"{{"retry_after": {huge}}}"#);
            let Verdict::Retryable { retry_after, .. } =
                p.classify(&any_request(), StatusCode::TOO_MANY_REQUESTS, &h, &body)
            else {
                panic!("{huge}")
            };
            assert_eq!(retry_after, Some(RETRY_AFTER_MAX), "{huge}");
        }
        // A Cloudflare 429 has only the header.
        let Verdict::Retryable { retry_after, .. } =
            p.classify(&any_request(), StatusCode::TOO_MANY_REQUESTS, &h, "<html>1015</html>")
        else {
            panic!()
        };
        assert_eq!(retry_after, Some(Duration::from_secs(2)));
        for status in [401, 403, 404, 400] {
            let v = p.classify(&any_request(), 
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                r#"{"message": "Unknown Webhook", "code": 10015}"#,
            );
            assert!(matches!(v, Verdict::Permanent { .. }), "{status}: {v:?}");
        }
        assert!(matches!(
            p.classify(&any_request(), StatusCode::BAD_GATEWAY, &HeaderMap::new(), ""),
            Verdict::Retryable { .. }
        ));
    }
}
