//! The `mattermost` provider: a message per event through an incoming
//! webhook, as a Slack-compatible attachment (colour bar, title linked to
//! the run, facts, condition message) rendered as Markdown.

pub mod escape;
pub mod payload;

use std::sync::Arc;

use async_trait::async_trait;
use relay_core::field::FieldErrors;
use relay_core::chat::escaped_template_text;
use relay_core::config::{ProviderDoc, check};
use relay_core::notification::compile;
use relay_core::provider::{
    DeliveryInput, Outbound, OutboundRequest, Provider, ProviderFactory, Verdict,
    Compiled, Parsed, parse_settings,
};
use relay_core::secret::SecretFile;
use relay_core::secret_url;
use relay_core::transport::Http;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::mattermost::payload::Poster;

pub const TYPE: &str = "mattermost";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MattermostSettings {
    /// The incoming webhook's URL (`https://chat.example.com/hooks/<id>`):
    /// whoever holds it can post, so it is read from a file.
    pub url_file: SecretFile,
    /// A channel name (`town-square`) instead of the hook's own, when the
    /// hook is not locked to its channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// Shown as the poster, when the server lets integrations override it.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default, rename = "iconURL")]
    pub icon_url: Option<url::Url>,
}

/// A Notification's `params`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MattermostParams {
    /// Overrides the Provider's channel.
    #[serde(default)]
    pub channel: Option<String>,
}

pub struct Mattermost {
    url: SecretFile,
    poster: Poster,
}

pub struct MattermostFactory;

impl ProviderFactory for MattermostFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: MattermostSettings = parse_settings(doc)?;
        let mut errs = FieldErrors::new();
        for (path, v) in [("channel", &s.channel), ("username", &s.username)] {
            if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                errs.push(path.to_string(), "must not be empty".to_string());
            }
        }
        if let Some(u) = &s.icon_url {
            errs.extend(check::http_url("iconURL", u));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Arc::new(Mattermost {
            url: s.url_file,
            poster: Poster {
                channel: s.channel,
                username: s.username,
                icon_url: s.icon_url.map(String::from),
            },
        }))
    }
}

/// The Notification's template over the event, every interpolated value
/// neutralised; `None` without a template.
fn custom_text(input: &DeliveryInput<'_>) -> Result<Option<String>, Verdict> {
    escaped_template_text(input, escape::template_value)
}

#[async_trait]
impl Provider for Mattermost {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn compile_notification(
        &self,
        action: Option<&str>,
        params: &Map<String, Value>,
    ) -> Result<Compiled, FieldErrors> {
        let action = match action {
            None => Ok(()),
            Some(a) => Err(format!("mattermost providers take no action (got {a:?})")),
        };
        // A blank channel is refused with the other blank params.
        compile::<(), MattermostParams>(action, params)
    }

    async fn deliver(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
        let Parsed { params, .. } = input.compiled.get::<Parsed<(), MattermostParams>>()?;
        let custom = custom_text(input)?;
        if custom.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Ok("the template rendered nothing: not posted".into());
        }
        let mut poster = self.poster.clone();
        if params.channel.is_some() {
            poster.channel = params.channel.clone();
        }
        let body = payload::body(input.event, &poster, custom.as_deref());
        let url = secret_url::read(&self.url, "urlFile").await?;
        let req = OutboundRequest::post_json(url.clone(), body.to_string());
        http.send(&Outbound::Http(req))
            .await
            .map_err(|v| secret_url::redact(v, &url))?;
        Ok(match &poster.channel {
            Some(c) => format!("posted to {c}"),
            None => "posted to the hook's channel".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("mm", TYPE, settings)
    }

    #[test]
    fn settings_are_checked_with_their_paths() {
        let f = MattermostFactory;
        assert!(
            f.build(&doc(
                json!({"urlFile": "/h", "channel": "builds", "username": "tekton",
                "iconURL": "https://example.com/t.png"})
            ))
            .is_ok()
        );
        for (bad, path, msg) in [
            (json!({}), "", "missing field `urlFile`"),
            (
                json!({"url": "https://x/hooks/abc"}),
                "url",
                "unknown field `url`",
            ),
            (
                json!({"urlFile": "/h", "iconURL": "ftp://x/i.png"}),
                "iconURL",
                "not http or https",
            ),
            (
                json!({"urlFile": "/h", "channel": " "}),
                "channel",
                "must not be empty",
            ),
        ] {
            let errs = f.build(&doc(bad)).err().unwrap();
            assert_eq!(errs[0].path, path, "{errs:?}");
            assert!(errs[0].message.contains(msg), "{errs:?}");
        }
    }

    #[test]
    fn notifications_may_choose_a_channel() {
        let p = MattermostFactory
            .build(&doc(json!({"urlFile": "/h"})))
            .unwrap();
        let params = |v: Value| v.as_object().unwrap().clone();
        assert!(
            p.compile_notification(None, &params(json!({"channel": "builds"})))
                .is_ok()
        );
        let errs = p
            .compile_notification(Some("post"), &params(json!({"chanel": "x"})))
            .unwrap_err();
        assert_eq!(errs[0].path, "action");
        assert!(errs[1].message.contains("unknown field `chanel`"), "{errs:?}");
        let errs = p
            .compile_notification(None, &params(json!({"channel": ""})))
            .unwrap_err();
        assert_eq!(errs[0].path, "params.channel");
    }
}
