//! The Google Chat provider: a card message per event through a space's
//! incoming webhook, optionally all of one PipelineRun's messages in one
//! thread.

pub mod card;

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderMap, StatusCode};
use relay_core::field::FieldErrors;
use relay_core::chat::{ChatView, template_text};
use relay_core::config::ProviderDoc;
use relay_core::model::RunEvent;
use relay_core::provider::{
    DeliveryInput, Outbound, OutboundRequest, Provider, ProviderFactory, Verdict, parse_settings,
};
use relay_core::secret::SecretFile;
use relay_core::secret_url;
use relay_core::transport::Http;
use serde::Deserialize;

pub const TYPE: &str = "googlechat";

/// Reply in the keyed thread, or start it when there is none yet.
const REPLY_OPTION: &str = "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GooglechatSettings {
    /// A file holding the space's webhook URL (its `key` and `token` query
    /// parameters are the credential).
    pub url_file: SecretFile,
    /// Every message about one PipelineRun (its TaskRuns' too) in one thread.
    #[serde(default)]
    pub thread_per_run: bool,
}

pub struct Googlechat {
    settings: GooglechatSettings,
}

pub struct GooglechatFactory;

impl ProviderFactory for GooglechatFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let settings: GooglechatSettings = parse_settings(doc)?;
        Ok(Arc::new(Googlechat { settings }))
    }
}

/// The thread of the PipelineRun an event belongs to: stable across its
/// events, whichever replica posts them.
pub fn thread_key(ev: &RunEvent) -> String {
    let uid = ev
        .pipeline_run
        .as_ref()
        .and_then(|r| r.uid.as_deref())
        .unwrap_or(&ev.uid);
    let clean: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    relay_core::escape::bounded_key(&format!("tekton-{clean}"), 120)
}

/// The webhook URL, told to reply in the message's thread when it has one.
/// The query is extended as written, not re-encoded: the token is signed.
pub fn post_url(mut url: url::Url, threaded: bool) -> url::Url {
    let query = url.query().unwrap_or("").to_string();
    if threaded && !query.contains("messageReplyOption=") {
        let option = format!("messageReplyOption={REPLY_OPTION}");
        if query.is_empty() {
            url.set_query(Some(&option));
        } else {
            url.set_query(Some(&format!("{query}&{option}")));
        }
    }
    url
}

#[async_trait]
impl Provider for Googlechat {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    async fn deliver(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
        let text = template_text(input)?;
        let ev = input.event;
        let threaded = self.settings.thread_per_run;
        let key = threaded.then(|| thread_key(ev));
        let body = card::message(
            &ChatView::of(ev),
            &ev.namespace,
            text.as_deref(),
            key.as_deref(),
        );
        let url = secret_url::read(&self.settings.url_file, "urlFile").await?;
        let req = OutboundRequest::post_json(post_url(url.clone(), threaded), body.to_string());
        http.send(&Outbound::Http(req))
            .await
            .map_err(|v| secret_url::redact(v, &url))?;
        Ok(match key {
            Some(_) => format!("card posted in the run's thread ({})", ev.state),
            None => format!("card posted ({})", ev.state),
        })
    }

    /// Chat answers 200 with the message; 400 (INVALID_ARGUMENT), 401/403
    /// (a bad key or token) and 404 (a deleted space) are permanent, 429
    /// (a space takes about one message a second) and 5xx retried: the
    /// default classification, with the whole answer kept until masked.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("chat", TYPE, settings)
    }

    #[test]
    fn settings_errors_name_their_path() {
        let errs = |v| GooglechatFactory.build(&doc(v)).err().expect("rejected");
        assert!(errs(json!({}))[0].message.contains("missing field `urlFile`"));
        let e = errs(json!({"urlFile": "/u", "threadPerRun": "yes"}));
        assert_eq!(e[0].path, "threadPerRun", "{e:?}");
        let e = errs(json!({"urlFile": "/u", "threadKey": "x"}));
        assert!(e[0].message.contains("unknown field `threadKey`"), "{e:?}");
        assert!(
            GooglechatFactory
                .build(&doc(json!({"urlFile": "/u", "threadPerRun": true})))
                .is_ok()
        );
    }

    #[test]
    fn one_thread_per_pipeline_run() {
        let pr = relay_core::sample::run_event();
        let mut tr = pr.clone();
        tr.kind = "TaskRun".into();
        tr.uid = "0d6c0f51-0000-4000-8000-000000000001".into();
        assert_eq!(
            thread_key(&pr),
            "tekton-6cad4a26-8d11-4ece-9738-f7d93d9c1724"
        );
        assert_eq!(thread_key(&tr), thread_key(&pr));
        tr.pipeline_run = None;
        assert_eq!(
            thread_key(&tr),
            "tekton-0d6c0f51-0000-4000-8000-000000000001"
        );
    }

    #[test]
    fn the_reply_option_joins_the_credentials() {
        let u = url::Url::parse(
            "https://chat.googleapis.com/v1/spaces/AAA/messages?key=K&token=T~x%3D",
        )
        .unwrap();
        assert_eq!(post_url(u.clone(), false), u);
        assert_eq!(
            post_url(u, true).as_str(),
            "https://chat.googleapis.com/v1/spaces/AAA/messages?key=K&token=T~x%3D&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
        );
    }
}
