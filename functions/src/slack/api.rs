//! Talking to Slack: the Web API (`chat.postMessage`, `chat.update`) with a
//! bot token, and incoming webhooks. The Web API answers HTTP 200 with
//! `{"ok": false, "error": "…"}`, so its verdict is read from the body
//! here (the engine's classifier only sees the bodies of failed statuses).

use http::HeaderValue;
use relay_core::provider::{Outbound, OutboundRequest, Verdict, retry_after};
use relay_core::secret::SecretFile;
use relay_core::secret_url;
use relay_core::transport::Http;
use serde_json::{Value, json};

use crate::slack::blocks::Message;

/// Slack's errors that a later attempt can get past; any other is permanent.
const TRANSIENT: [&str; 5] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// A failed Web API call.
#[derive(Debug)]
pub enum ApiError {
    /// Slack answered `ok: false` with `error`.
    Slack {
        method: &'static str,
        error: String,
        detail: String,
        status: u16,
        retry_after: Option<std::time::Duration>,
    },
    /// No usable answer (network, HTTP status, unreadable secret).
    Failed(Verdict),
}

impl ApiError {
    pub fn is(&self, code: &str) -> bool {
        matches!(self, ApiError::Slack { error, .. } if error == code)
    }
}

impl From<ApiError> for Verdict {
    fn from(e: ApiError) -> Verdict {
        match e {
            ApiError::Failed(v) => v,
            ApiError::Slack {
                method,
                error,
                detail,
                status,
                retry_after,
            } => {
                let message = format!("Slack {method}: {error}{detail}");
                if TRANSIENT.contains(&error.as_str()) {
                    Verdict::Retryable {
                        status: Some(status),
                        retry_after,
                        message,
                    }
                } else {
                    Verdict::Permanent {
                        status: Some(status),
                        message,
                    }
                }
            }
        }
    }
}

/// A message Slack holds: its channel id and timestamp, kept in the store
/// as `"<channel> <ts>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

impl Posted {
    pub fn record(&self) -> String {
        format!("{} {}", self.channel, self.ts)
    }

    pub fn parse(record: &str) -> Result<Posted, Verdict> {
        match record.split_once(' ') {
            Some((c, t)) if !c.is_empty() && !t.is_empty() => Ok(Posted {
                channel: c.into(),
                ts: t.into(),
            }),
            _ => Err(Verdict::permanent("unreadable Slack message record")),
        }
    }
}

/// The Web API with a bot token.
pub struct WebApi<'a, 'h> {
    pub base: &'a url::Url,
    pub token: &'a SecretFile,
    pub http: &'a Http<'h>,
}

impl WebApi<'_, '_> {
    /// Calls `method` with a JSON body; the answer when `ok`.
    pub async fn call(&self, method: &'static str, body: &Value) -> Result<Value, ApiError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ApiError::Failed(Verdict::permanent("baseURL cannot have a path")))?
            .pop_if_empty()
            .push(method);
        let token = self
            .token
            .read()
            .await
            .map_err(|e| ApiError::Failed(e.into()))?;
        let mut req = OutboundRequest::post_json(url, body.to_string());
        // Without the charset Slack answers with a `missing_charset` warning.
        req.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        req.sensitive_header(
            http::header::AUTHORIZATION,
            &format!("Bearer {}", token.expose()),
        )
        .map_err(|_| ApiError::Failed(Verdict::permanent("tokenFile holds an invalid token")))?;
        let resp = self
            .http
            .send(&Outbound::Http(req))
            .await
            .map_err(|v| ApiError::Failed(secret_url::scrub(v, &[token.expose()])))?;
        let answer: Value = resp.json().map_err(ApiError::Failed)?;
        if answer["ok"].as_bool() == Some(true) {
            return Ok(answer);
        }
        let error = answer["error"]
            .as_str()
            .unwrap_or("answered without ok")
            .to_string();
        // `invalid_blocks` and friends explain themselves here.
        let notes: Vec<&str> = answer["response_metadata"]["messages"]
            .as_array()
            .map(|m| m.iter().filter_map(Value::as_str).take(3).collect())
            .unwrap_or_default();
        Err(ApiError::Slack {
            method,
            detail: if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            },
            error,
            status: resp.status.as_u16(),
            retry_after: retry_after(&resp.headers),
        })
    }

    /// `chat.postMessage`; in a thread when `thread_ts` is given,
    /// `broadcast` also showing the reply in the channel.
    pub async fn post(
        &self,
        channel: &str,
        msg: &Message,
        thread_ts: Option<&str>,
        broadcast: bool,
    ) -> Result<Posted, ApiError> {
        let mut body = json!({
            "channel": channel,
            // A run link to a dashboard unfurled under every message is noise.
            "unfurl_links": false,
            "unfurl_media": false,
        });
        msg.fill(&mut body);
        if let Some(ts) = thread_ts {
            body["thread_ts"] = ts.into();
            if broadcast {
                body["reply_broadcast"] = true.into();
            }
        }
        let answer = self.call("chat.postMessage", &body).await?;
        match (answer["channel"].as_str(), answer["ts"].as_str()) {
            (Some(c), Some(t)) => Ok(Posted {
                channel: c.into(),
                ts: t.into(),
            }),
            _ => Err(ApiError::Failed(Verdict::permanent(
                "Slack chat.postMessage answered without channel and ts",
            ))),
        }
    }

    /// `chat.update` of a message this provider posted.
    pub async fn update(&self, posted: &Posted, msg: &Message) -> Result<(), ApiError> {
        let mut body = json!({"channel": posted.channel, "ts": posted.ts});
        msg.fill(&mut body);
        self.call("chat.update", &body).await.map(|_| ())
    }
}

/// Posts to an incoming webhook, whose URL (read from `file`) is the
/// secret. It answers `ok`, or a 4xx with a plain-text reason
/// (`invalid_payload`, `no_service`, `channel_is_archived`, …) that the
/// default classifier already treats as permanent.
pub async fn post_webhook(
    file: &SecretFile,
    http: &Http<'_>,
    msg: &Message,
) -> Result<(), Verdict> {
    let url = secret_url::read(file, "webhookURLFile").await?;
    let mut body = json!({"unfurl_links": false, "unfurl_media": false});
    msg.fill(&mut body);
    let req = OutboundRequest::post_json(url.clone(), body.to_string());
    http.send(&Outbound::Http(req))
        .await
        .map(|_| ())
        .map_err(|v| secret_url::redact(v, &url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack(error: &str) -> ApiError {
        ApiError::Slack {
            method: "chat.postMessage",
            error: error.into(),
            detail: String::new(),
            status: 200,
            retry_after: None,
        }
    }

    #[test]
    fn slack_errors_are_classified_as_the_api_documents_them() {
        for e in ["ratelimited", "internal_error", "service_unavailable"] {
            assert!(
                matches!(Verdict::from(slack(e)), Verdict::Retryable { .. }),
                "{e}"
            );
        }
        for e in [
            "invalid_auth",
            "not_authed",
            "channel_not_found",
            "not_in_channel",
            "account_inactive",
            "token_revoked",
            "message_not_found",
            "invalid_blocks",
        ] {
            match Verdict::from(slack(e)) {
                Verdict::Permanent { status, message } => {
                    assert_eq!(status, Some(200));
                    assert_eq!(message, format!("Slack chat.postMessage: {e}"));
                }
                other => panic!("{e}: {other:?}"),
            }
        }
        assert!(slack("message_not_found").is("message_not_found"));
    }

    #[test]
    fn records_round_trip() {
        let p = Posted {
            channel: "C0123".into(),
            ts: "1700000000.000100".into(),
        };
        assert_eq!(Posted::parse(&p.record()).unwrap(), p);
        assert!(Posted::parse("nothing").is_err());
    }
}
