//! The `slack` provider: a Block Kit message per event through an incoming
//! webhook, or with a bot token through the Web API — per event
//! (`mode: post`), or one message per PipelineRun updated in place with the
//! run's task summary (`mode: update`), optionally with a thread per run.

pub mod api;
pub mod blocks;
pub mod escape;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use relay_core::field::FieldErrors;
use relay_core::chat::escaped_template_text;
use relay_core::config::ProviderDoc;
use relay_core::message::{LastPosted, MEMORY, MessageIds, store_unavailable};
use relay_core::state::Kind;
use relay_core::provider::{
    DeliveryInput, Provider, ProviderFactory, Verdict, Compiled, notification_params,
};
use relay_core::secret::SecretFile;
use relay_core::transport::Http;
use serde_json::{Map, Value};

use crate::slack::api::{Posted, WebApi};
use crate::slack::blocks::{Message, event_message, run_message};
pub use crate::slack::settings::{Mode, SlackParams, SlackSettings};

pub const TYPE: &str = "slack";
/// How long one replica may take to post a run's message before another may.
const CREATE_LEASE: Duration = Duration::from_secs(30);

/// Where messages go.
enum Target {
    Webhook(SecretFile),
    Api {
        base: url::Url,
        token: SecretFile,
        channel: Option<String>,
    },
}

pub struct Slack {
    target: Target,
    mode: Mode,
    thread: bool,
}

pub struct SlackFactory;

impl ProviderFactory for SlackFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: SlackSettings = relay_core::provider::parse_settings(doc)?;
        s.check()?;
        let target = match (s.webhook_url_file, s.token_file) {
            (Some(f), _) => Target::Webhook(f),
            (None, Some(token)) => Target::Api {
                base: s.base_url.unwrap_or_else(settings::default_base),
                token,
                channel: s.channel,
            },
            (None, None) => unreachable!("checked"),
        };
        Ok(Arc::new(Slack {
            target,
            mode: s.mode,
            thread: s.thread,
        }))
    }
}

/// The uid of the PipelineRun an event belongs to.
fn run_uid(input: &DeliveryInput<'_>) -> Option<String> {
    let ev = input.event;
    input
        .summary
        .map(|s| s.uid.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| match ev.kind.as_str() {
            "PipelineRun" => Some(ev.uid.clone()),
            _ => ev.pipeline_run.as_ref()?.uid.clone(),
        })
}

/// The Notification's template over the event, every interpolated value
/// neutralised (no link or mention can come from a run name); `None` without
/// a template.
fn custom_text(input: &DeliveryInput<'_>) -> Result<Option<String>, Verdict> {
    escaped_template_text(input, escape::template_value)
}

impl Slack {
    /// One message per run, updated in place (and, with `thread`, every
    /// later event as a reply under it).
    async fn update_run(
        &self,
        api: &WebApi<'_, '_>,
        input: &DeliveryInput<'_>,
        channel: &str,
        uid: &str,
        custom: Option<&str>,
    ) -> Result<String, Verdict> {
        let ev = input.event;
        let Some(summary) = input.summary else {
            return self
                .post_one(api, channel, &event_message(ev, custom))
                .await;
        };
        let msg = &run_message(ev, summary, custom);
        let ids = &MessageIds::new(input.state, MEMORY, CREATE_LEASE);
        let owner = uuid::Uuid::new_v4().to_string();
        // What the message shows, so an event that changes nothing in it
        // (a duplicate state, say) costs no chat.update.
        let shown = &serde_json::to_string(&(&msg.text, &msg.blocks)).unwrap_or_default();
        let parts = [input.notification, channel, uid];
        let key = &input.state.key(Kind::ChatMessage, &parts);
        let last_key = &input.state.key(Kind::ChatShown, &parts);
        ids.create_or_update(
            key,
            &owner,
            || async move {
                let posted = api.post(channel, msg, None, false).await?;
                if let Some(last) =
                    LastPosted::unless_same(input.state, last_key.clone(), shown).await
                {
                    last.record(shown, MEMORY).await;
                }
                Ok(posted.record())
            },
            |record| async move {
                let mut posted = Posted::parse(&record)?;
                if let Some(last) =
                    LastPosted::unless_same(input.state, last_key.clone(), shown).await
                {
                    match api.update(&posted, msg).await {
                        Ok(()) => {}
                        // Deleted by someone: post it anew and remember the new one.
                        Err(e) if e.is("message_not_found") => {
                            tracing::info!(notification = %input.notification,
                                "the run's Slack message is gone; posting a new one");
                            posted = api.post(channel, msg, None, false).await?;
                            // Best effort: a lost race keeps the other replica's
                            // record; one left stale costs one more repost.
                            let _ = ids.replace(key, &record, &posted.record()).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                    last.record(shown, MEMORY).await;
                }
                if self.thread {
                    let reply = event_message(ev, custom);
                    api.post(&posted.channel, &reply, Some(&posted.ts), false)
                        .await?;
                }
                Ok(())
            },
        )
        .await
        .map_err(store_unavailable)?
        .into_result("message")
    }

    /// A thread per run: its first event is the parent, every later one a
    /// reply; the run's final state is also shown in the channel.
    async fn thread_run(
        &self,
        api: &WebApi<'_, '_>,
        input: &DeliveryInput<'_>,
        channel: &str,
        uid: &str,
        custom: Option<&str>,
    ) -> Result<String, Verdict> {
        let ev = input.event;
        let msg = &event_message(ev, custom);
        let ids = MessageIds::new(input.state, MEMORY, CREATE_LEASE);
        let key = &input
            .state
            .key(Kind::ChatMessage, &[input.notification, channel, uid]);
        let owner = uuid::Uuid::new_v4().to_string();
        let broadcast = ev.kind == "PipelineRun" && ev.state.is_terminal();
        ids.create_or_update(
            key,
            &owner,
            || async move { Ok(api.post(channel, msg, None, false).await?.record()) },
            |record| async move {
                let parent = Posted::parse(&record)?;
                api.post(&parent.channel, msg, Some(&parent.ts), broadcast)
                    .await
                    .map(|_| ())
                    .map_err(Verdict::from)
            },
        )
        .await
        .map_err(store_unavailable)?
        .into_result("thread")
    }

    async fn post_one(
        &self,
        api: &WebApi<'_, '_>,
        channel: &str,
        msg: &Message,
    ) -> Result<String, Verdict> {
        let p = api.post(channel, msg, None, false).await?;
        Ok(format!("message {} posted", p.ts))
    }
}

#[async_trait]
impl Provider for Slack {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn uses_summary(&self) -> bool {
        self.mode == Mode::Update
    }

    fn compile_notification(
        &self,
        action: Option<&str>,
        params: &Map<String, Value>,
    ) -> Result<Compiled, FieldErrors> {
        let mut errs = FieldErrors::new();
        if let Some(a) = action {
            errs.push(
                "action",
                format!("slack providers take no action (got {a:?}): set `mode` on the Provider"),
            );
        }
        let parsed = notification_params::<SlackParams>(params);
        match &parsed {
            Err(e) => errs.extend([e.clone()]),
            Ok(p) => {
                let channel = p.channel.as_deref();
                match &self.target {
                    Target::Webhook(_) if channel.is_some() => errs.push(
                        "params.channel",
                        "an incoming webhook posts to the channel it was created for; \
                         use a bot token (tokenFile) to choose channels",
                    ),
                    _ if channel.is_some_and(|c| c.trim().is_empty()) => {
                        errs.push("params.channel", "must not be empty")
                    }
                    Target::Api { channel: None, .. } if channel.is_none() => errs.push(
                        "params.channel",
                        "required: the Provider names no channel",
                    ),
                    _ => {}
                }
            }
        }
        match parsed {
            Ok(p) if errs.is_empty() => Ok(Compiled::new(p)),
            _ => Err(errs),
        }
    }

    async fn deliver(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
        let params: &SlackParams = input.compiled.get()?;
        let custom = custom_text(input)?;
        if custom.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Ok("the template rendered nothing: not posted".into());
        }
        let custom = custom.as_deref();
        let (base, token, channel) = match &self.target {
            Target::Webhook(file) => {
                api::post_webhook(file, http, &event_message(input.event, custom)).await?;
                return Ok("posted to the incoming webhook".into());
            }
            Target::Api {
                base,
                token,
                channel,
            } => (base, token, params.channel.as_ref().or(channel.as_ref())),
        };
        let channel = channel.ok_or_else(|| Verdict::permanent("no channel configured"))?;
        let api = WebApi { base, token, http };
        let run = run_uid(input);
        match (self.mode, self.thread, run) {
            (Mode::Update, _, Some(uid)) => {
                self.update_run(&api, input, channel, &uid, custom)
                    .await
            }
            (Mode::Post, true, Some(uid)) => {
                self.thread_run(&api, input, channel, &uid, custom)
                    .await
            }
            // Per event, or an event of no PipelineRun (nothing to group by).
            _ => {
                self.post_one(&api, channel, &event_message(input.event, custom))
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("slack", TYPE, settings)
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn notifications_choose_channels_only_with_a_token() {
        let hook = SlackFactory
            .build(&doc(json!({"webhookURLFile": "/h"})))
            .unwrap();
        assert!(hook.compile_notification(None, &Map::new()).is_ok());
        let errs = hook
            .compile_notification(Some("post"), &params(json!({"channel": "#ci"})))
            .unwrap_err();
        assert_eq!(errs[0].path, "action");
        assert_eq!(errs[1].path, "params.channel");
        assert!(!hook.uses_summary());

        let bot = SlackFactory
            .build(&doc(json!({"tokenFile": "/t", "mode": "update"})))
            .unwrap();
        assert!(bot.uses_summary());
        let errs = bot.compile_notification(None, &Map::new()).unwrap_err();
        assert_eq!(errs[0].path, "params.channel");
        assert!(errs[0].message.contains("required"), "{errs:?}");
        assert!(
            bot.compile_notification(None, &params(json!({"channel": "C0123"})))
                .is_ok()
        );
        let errs = bot
            .compile_notification(None, &params(json!({"channel": " ", "chanel": "x"})))
            .unwrap_err();
        assert!(errs[0].message.contains("unknown field `chanel`"), "{errs:?}");
    }

    #[test]
    fn the_run_of_a_taskrun_is_its_parent() {
        let mut ev = relay_core::sample::run_event();
        ev.kind = "TaskRun".into();
        ev.uid = "task-uid".into();
        let store: relay_core::store::SharedStore =
            Arc::new(relay_core::store::memory::MemoryStore::default());
        let input = DeliveryInput {
            event: &ev,
            original: None,
            notification: "n",
            template: None,
            summary: None,
            compiled: &relay_core::provider::Compiled::none(),
            state: relay_core::state::State::new(&store, "test"),
        };
        assert_eq!(
            run_uid(&input).as_deref(),
            Some("6cad4a26-8d11-4ece-9738-f7d93d9c1724")
        );
    }
}
