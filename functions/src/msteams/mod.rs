//! The Microsoft Teams provider: an Adaptive Card per event, posted to a
//! Power Automate Workflows webhook ("When a Teams webhook request is
//! received" → "Post card in a chat or channel").

pub mod card;

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderMap, StatusCode};
use relay_core::field::FieldErrors;
use relay_core::chat::{ChatView, template_text};
use relay_core::config::ProviderDoc;
use relay_core::provider::{
    DeliveryInput, Outbound, OutboundRequest, Provider, ProviderFactory, Verdict, parse_settings,
};
use relay_core::secret::SecretFile;
use relay_core::secret_url;
use relay_core::transport::Http;
use serde::Deserialize;

pub const TYPE: &str = "msteams";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MsteamsSettings {
    /// A file holding the workflow's HTTP URL (its `sig` query parameter is
    /// the credential).
    pub url_file: SecretFile,
}

pub struct Msteams {
    url_file: SecretFile,
}

pub struct MsteamsFactory;

impl ProviderFactory for MsteamsFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: MsteamsSettings = parse_settings(doc)?;
        Ok(Arc::new(Msteams {
            url_file: s.url_file,
        }))
    }
}

#[async_trait]
impl Provider for Msteams {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    async fn deliver(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
        let text = template_text(input)?;
        let body = card::message(&ChatView::of(input.event), text.as_deref());
        let url = secret_url::read(&self.url_file, "urlFile").await?;
        let req = OutboundRequest::post_json(url.clone(), body.to_string());
        let resp = http
            .send(&Outbound::Http(req))
            .await
            .map_err(|v| secret_url::redact(v, &url))?;
        if let Some(v) = failure_in_body(&resp.body) {
            return Err(secret_url::redact(v, &url));
        }
        Ok(format!("card posted ({})", input.event.state))
    }

    /// Workflows answer 202 once the flow is triggered; 400 for a body its
    /// trigger schema refuses, 401/403 for a bad `sig`, 404 for a deleted
    /// flow, 429 when throttled: the default classification, with the
    /// whole answer kept until masked.
    fn classify(
        &self,
        _request: &OutboundRequest,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
    ) -> Verdict {
        secret_url::classify(status, headers, body)
    }
}

/// Office 365 connector URLs (still forwarded in places) answer 200 and
/// put Teams' refusal in the body: `Webhook message delivery failed with
/// error: Microsoft Teams endpoint returned HTTP error 429 …`.
pub fn failure_in_body(body: &[u8]) -> Option<Verdict> {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    if !text.to_ascii_lowercase().contains("delivery failed") {
        return None;
    }
    let message = format!("answered 2xx: {}", relay_core::escape::one_line(&text, 200));
    let status = text
        .split("HTTP error ")
        .nth(1)
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok());
    Some(match status {
        Some(s) if s == 408 || s == 429 || s >= 500 => Verdict::Retryable {
            status: Some(s),
            retry_after: None,
            message,
        },
        _ => Verdict::Permanent { status, message },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("teams", TYPE, settings)
    }

    #[test]
    fn settings_errors_name_their_path() {
        let errs = |v| MsteamsFactory.build(&doc(v)).err().expect("rejected");
        assert!(errs(json!({}))[0].message.contains("missing field `urlFile`"));
        let e = errs(json!({"urlFile": "/u", "url": "https://x"}));
        assert!(e[0].message.contains("unknown field `url`"), "{e:?}");
        assert!(MsteamsFactory.build(&doc(json!({"urlFile": "/u"}))).is_ok());
    }

    #[test]
    fn a_refusal_in_a_200_body_is_a_failure() {
        assert_eq!(failure_in_body(b""), None);
        assert_eq!(failure_in_body(b"1"), None);
        let v = failure_in_body(
            b"Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 413 with ContextId tcid=0,server=msgapi",
        );
        assert!(
            matches!(
                v,
                Some(Verdict::Permanent {
                    status: Some(413),
                    ..
                })
            ),
            "{v:?}"
        );
        let v = failure_in_body(
            b"Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId x",
        );
        assert!(
            matches!(
                v,
                Some(Verdict::Retryable {
                    status: Some(429),
                    ..
                })
            ),
            "{v:?}"
        );
        let v = failure_in_body(b"Webhook message delivery failed with error: Unknown");
        assert!(
            matches!(v, Some(Verdict::Permanent { status: None, .. })),
            "{v:?}"
        );
    }
}
