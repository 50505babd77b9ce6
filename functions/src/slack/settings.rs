//! The `spec.slack` settings block and each Notification's `params`.

use relay_core::field::FieldErrors;
use relay_core::config::check;
use relay_core::secret::SecretFile;
use serde::Deserialize;

/// Slack's Web API root.
pub const DEFAULT_BASE: &str = "https://slack.com/api";

pub fn default_base() -> url::Url {
    url::Url::parse(DEFAULT_BASE).expect("a valid URL")
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A message per event.
    #[default]
    Post,
    /// One message per PipelineRun, updated in place with its task summary.
    Update,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlackSettings {
    /// An incoming webhook's URL (the URL is the credential).
    #[serde(default, rename = "webhookURLFile")]
    pub webhook_url_file: Option<SecretFile>,
    /// A bot token (`xoxb-…`) with `chat:write`, for the Web API.
    #[serde(default)]
    pub token_file: Option<SecretFile>,
    /// Channel id or name; a Notification's `params.channel` overrides it.
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default, rename = "baseURL")]
    pub base_url: Option<url::Url>,
    #[serde(default)]
    pub mode: Mode,
    /// A thread per PipelineRun: its later events as replies.
    #[serde(default)]
    pub thread: bool,
}

impl SlackSettings {
    /// Every inconsistency at once, each with its path.
    pub fn check(&self) -> Result<(), FieldErrors> {
        let mut errs = FieldErrors::new();
        let mut err = |path: &str, msg: &str| errs.push(path, msg);
        match (&self.webhook_url_file, &self.token_file) {
            (None, None) => err("", "one of `webhookURLFile` or `tokenFile` is required"),
            (Some(_), Some(_)) => err(
                "tokenFile",
                "give `webhookURLFile` or `tokenFile`, not both",
            ),
            (Some(_), None) => {
                let token_only = "needs a bot token (tokenFile): an incoming webhook can only post";
                if self.channel.is_some() {
                    err(
                        "channel",
                        "an incoming webhook posts to the channel it was created for",
                    );
                }
                if self.base_url.is_some() {
                    err("baseURL", "is the Web API's root, used with tokenFile only");
                }
                if self.mode == Mode::Update {
                    err("mode", &format!("`update` {token_only}"));
                }
                if self.thread {
                    err("thread", &format!("a thread {token_only}"));
                }
            }
            (None, Some(_)) => {
                if self.channel.as_deref().is_some_and(|c| c.trim().is_empty()) {
                    err("channel", "must not be empty");
                }
            }
        }
        if let Some(u) = &self.base_url {
            errs.extend(check::http_url("baseURL", u));
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

/// A Notification's `params`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlackParams {
    /// Overrides the Provider's channel (bot token only).
    #[serde(default)]
    pub channel: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_core::config::ProviderDoc;
    use serde_json::{Value, json};

    fn parse(v: Value) -> Result<SlackSettings, FieldErrors> {
        let doc = ProviderDoc {
            name: "s".into(),
            provider_type: "slack".into(),
            settings: v,
        };
        let s: SlackSettings = relay_core::provider::parse_settings(&doc)?;
        s.check().map(|()| s)
    }

    #[test]
    fn webhook_or_token_and_what_each_allows() {
        let s =
            parse(json!({"tokenFile": "/t", "channel": "C1", "mode": "update", "thread": true}))
                .unwrap();
        assert_eq!((s.mode, s.thread), (Mode::Update, true));
        assert!(parse(json!({"webhookURLFile": "/h"})).is_ok());
        let errs = parse(
            json!({"webhookURLFile": "/h", "channel": "#x", "mode": "update",
            "thread": true, "baseURL": "ftp://x"}),
        )
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["channel", "baseURL", "mode", "thread", "baseURL"],
            "{errs:?}"
        );
        for (bad, path, msg) in [
            (json!({}), "", "one of `webhookURLFile` or `tokenFile`"),
            (
                json!({"webhookURLFile": "/h", "tokenFile": "/t"}),
                "tokenFile",
                "not both",
            ),
            (
                json!({"tokenFile": "/t", "mode": "edit"}),
                "mode",
                "unknown variant `edit`",
            ),
            (
                json!({"tokenFile": "/t", "token": "xoxb"}),
                "token",
                "unknown field `token`",
            ),
            (
                json!({"tokenFile": "/t", "channel": ""}),
                "channel",
                "must not be empty",
            ),
        ] {
            let errs = parse(bad).unwrap_err();
            assert_eq!(errs[0].path, path, "{errs:?}");
            assert!(errs[0].message.contains(msg), "{errs:?}");
        }
    }
}
