//! The `webhook` provider: POSTs the webhook payload v1 (or a rendered
//! template) to a URL, with extra headers, an optional bearer token and an
//! optional HMAC-SHA256 signature, each secret read from a file when used;
//! or a bearer token fetched with OAuth2 (see [`oauth`]).

pub mod oauth;
pub mod payload;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use relay_core::field::FieldErrors;
use relay_core::config::ProviderDoc;
use relay_core::engine::template_context;
use relay_core::oauth2::ClientCredentialsSettings;
use relay_core::provider::{
    DeliveryInput, Outbound, OutboundRequest, Provider, ProviderError, ProviderFactory, Verdict,
    parse_settings,
};
use relay_core::secret::SecretFile;
use relay_core::template::Template;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use serde::Deserialize;
use sha2::Sha256;

pub const TYPE: &str = "webhook";
/// The signature header: `sha256=<hex of HMAC-SHA256 over the body>`.
pub const SIGNATURE_HEADER: &str = "x-relay-signature-256";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookSettings {
    /// Where to send; or `urlFile` when the URL itself is a secret.
    #[serde(default)]
    pub url: Option<url::Url>,
    #[serde(default)]
    pub url_file: Option<SecretFile>,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token_file: Option<SecretFile>,
    /// An OAuth2 access token (client-credentials or refresh-token grant),
    /// sent as `Authorization: Bearer <token>`; instead of `tokenFile`.
    #[serde(default)]
    pub oauth2: Option<ClientCredentialsSettings>,
    /// Signs the body into `X-Relay-Signature-256`.
    #[serde(default)]
    pub hmac_secret_file: Option<SecretFile>,
    /// A minijinja body template; a Notification's `template` overrides it.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
}

fn default_method() -> String {
    "POST".into()
}

pub struct Webhook {
    settings: WebhookSettings,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    content_type: HeaderValue,
    /// The body is JSON: templates render with values escaped for JSON
    /// strings, so event text cannot add keys ([`Template::render_json`]).
    json_body: bool,
    template: Option<Template>,
    oauth: Option<oauth::OAuth>,
}

pub struct WebhookFactory;

impl ProviderFactory for WebhookFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: WebhookSettings = parse_settings(doc)?;
        let mut errs = FieldErrors::new();
        errs.extend(relay_core::config::check::url_or_file(
            s.url.as_ref(),
            s.url_file.as_ref(),
        ));
        let method = Method::from_bytes(s.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| errs.push("method", format!("invalid method {:?}", s.method)))
            .unwrap_or(Method::POST);
        if s.token_file.is_some() && s.oauth2.is_some() {
            errs.push("oauth2", "give tokenFile or oauth2, not both");
        }
        let headers = relay_core::config::check::headers(&s.headers, &mut errs);
        let content_type = s.content_type.as_deref().unwrap_or("application/json");
        let json_body = relay_core::decode::is_json_content_type(content_type);
        let content_type = HeaderValue::from_str(content_type).unwrap_or_else(|_| {
            errs.push("contentType", "not a valid header value");
            HeaderValue::from_static("application/json")
        });
        let template = match s.template.as_deref().map(Template::compile) {
            None => None,
            Some(Ok(t)) => {
                let sample = relay_core::sample::run_event();
                let ctx = template_context(&sample, "sample");
                let rendered = if json_body {
                    t.render_json(ctx)
                } else {
                    t.render(ctx)
                };
                if let Err(e) = rendered {
                    errs.push("template", e);
                }
                Some(t)
            }
            Some(Err(e)) => {
                errs.push("template", e);
                None
            }
        };
        if !errs.is_empty() {
            return Err(errs);
        }
        let oauth = s.oauth2.clone().map(oauth::OAuth::new);
        Ok(Arc::new(Webhook {
            oauth,
            settings: s,
            method,
            headers,
            content_type,
            json_body,
            template,
        }))
    }
}

fn permanent(e: impl ToString) -> ProviderError {
    ProviderError::Permanent(e.to_string())
}

/// `sha256=<hex>` of HMAC-SHA256 over `body`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Provider for Webhook {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    async fn build(&self, input: &DeliveryInput<'_>) -> Result<Vec<Outbound>, ProviderError> {
        let template = input.template.or(self.template.as_ref());
        let body = match template {
            Some(t) => {
                let ctx = template_context(input.event, input.notification);
                if self.json_body {
                    t.render_json(ctx)
                } else {
                    t.render(ctx)
                }
                .map_err(|e| permanent(format!("template: {e}")))?
            }
            None => payload::v1(input.event).to_string(),
        };
        let url = relay_core::secret_url::resolve(
            self.settings.url.as_ref(),
            self.settings.url_file.as_ref(),
        )
        .await
        .map_err(ProviderError::from)?;
        let mut req = OutboundRequest::post_json(url, body);
        req.method = self.method.clone();
        req.headers.insert(CONTENT_TYPE, self.content_type.clone());
        for (k, v) in &self.headers {
            req.headers.insert(k.clone(), v.clone());
        }
        if let Ok(v) = HeaderValue::from_str(&input.event.event_id) {
            req.headers.insert("x-relay-event-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(input.notification) {
            req.headers.insert("x-relay-notification", v);
        }
        if let Some(f) = &self.settings.token_file {
            let token = f.read().await?;
            req.sensitive_header(AUTHORIZATION, &format!("Bearer {}", token.expose()))?;
        }
        if let Some(f) = &self.settings.hmac_secret_file {
            let secret = f.read().await?;
            let sig = signature(secret.expose().as_bytes(), &req.body);
            req.sensitive_header(HeaderName::from_static(SIGNATURE_HEADER), &sig)?;
        }
        Ok(vec![Outbound::Http(req)])
    }

    async fn deliver(
        &self,
        input: &DeliveryInput<'_>,
        http: &relay_core::transport::Http<'_>,
    ) -> Result<String, Verdict> {
        let outbounds = self.build(input).await.map_err(|e| match e {
            ProviderError::Permanent(m) => Verdict::permanent(m),
            ProviderError::Retryable(message) => Verdict::Retryable {
                status: None,
                retry_after: None,
                message,
            },
        })?;
        let mut done = Vec::new();
        for ob in outbounds {
            done.push(relay_core::transport::describe(&ob));
            match (&self.oauth, ob) {
                (Some(o), Outbound::Http(req)) => o.send(http, req).await.map(drop)?,
                (_, ob) => http.send(&ob).await.map(drop)?,
            }
        }
        Ok(done.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("hook", TYPE, settings)
    }

    #[test]
    fn signature_matches_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn settings_errors_name_their_path() {
        let errs = WebhookFactory
            .build(&doc(serde_json::json!({})))
            .err()
            .unwrap();
        assert!(errs[0].message.contains("`url` or `urlFile`"));
        let errs = WebhookFactory
            .build(&doc(
                serde_json::json!({"url": "http://x", "tokenFil": "/t"}),
            ))
            .err()
            .unwrap();
        assert!(errs[0].message.contains("unknown field `tokenFil`"), "{errs:?}");
        let errs = WebhookFactory
            .build(&doc(serde_json::json!({"url": "ftp://x"})))
            .err()
            .unwrap();
        assert_eq!(errs[0].path, "url");
        let errs = WebhookFactory
            .build(&doc(
                serde_json::json!({"url": "http://x", "template": "{{ event.nope }}"}),
            ))
            .err()
            .unwrap();
        assert_eq!(errs[0].path, "template");
        let oauth = serde_json::json!({"tokenURL": "http://a/t", "clientId": "c", "clientSecretFile": "/s"});
        let errs = WebhookFactory
            .build(&doc(
                serde_json::json!({"url": "http://x", "tokenFile": "/t", "oauth2": oauth}),
            ))
            .err()
            .unwrap();
        assert_eq!(errs[0].path, "oauth2", "{errs:?}");
        let errs = WebhookFactory
            .build(&doc(
                serde_json::json!({"url": "http://x", "oauth2": {"tokenURL": "http://a/t", "clientId": "c"}}),
            ))
            .err()
            .unwrap();
        assert!(errs[0].path.starts_with("oauth2"), "{errs:?}");
        assert!(errs[0].message.contains("refreshTokenFile"), "{errs:?}");
        assert!(
            WebhookFactory
                .build(&doc(
                    serde_json::json!({"url": "http://x", "oauth2": oauth})
                ))
                .is_ok()
        );
    }

    #[tokio::test]
    async fn builds_signed_authorized_request() {
        let dir = std::env::temp_dir().join(format!("relay-wh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "tok-123\n").unwrap();
        std::fs::write(dir.join("hmac"), "key").unwrap();
        let p = WebhookFactory
            .build(&doc(serde_json::json!({
                "url": "http://127.0.0.1:9/hook?k=v",
                "headers": {"X-Team": "ci"},
                "tokenFile": dir.join("token"),
                "hmacSecretFile": dir.join("hmac"),
            })))
            .unwrap();
        let ev = relay_core::sample::run_event();
        let store: relay_core::store::SharedStore =
            std::sync::Arc::new(relay_core::store::memory::MemoryStore::default());
        let compiled = relay_core::provider::Compiled::none();
        let out = p
            .build(&DeliveryInput {
                event: &ev,
                original: None,
                notification: "n",
                template: None,
                summary: None,
                compiled: &compiled,
                state: relay_core::state::State::new(&store, "test"),
            })
            .await
            .unwrap();
        let Outbound::Http(req) = &out[0] else {
            panic!("not http")
        };
        assert_eq!(req.headers["authorization"], "Bearer tok-123");
        assert!(req.headers["authorization"].is_sensitive());
        assert_eq!(req.headers["x-team"], "ci");
        assert_eq!(
            req.headers[SIGNATURE_HEADER],
            signature(b"key", &req.body).as_str()
        );
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["version"], "1");
        assert_eq!(body["state"], "failed");
        assert_eq!(body["pull_request"], 47);
        assert_eq!(
            req.target(),
            "POST http://127.0.0.1:9",
            "no path or query in errors"
        );
    }
}
