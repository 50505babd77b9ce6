//! Message-id records for in-place updates (a PR comment id, a Slack `ts`):
//! only one replica ever creates the message; the others update it.

use std::future::Future;
use std::time::Duration;

use crate::delivery::state::{State, StateKey};
use crate::delivery::store::{Claim, SharedStore, StoreError};

/// What `create_or_update` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageAction<E> {
    Created(String),
    Updated(String),
    /// Another replica is creating the message right now: retry shortly.
    CreationInProgress,
    Failed(E),
}

pub struct MessageIds {
    store: SharedStore,
    ttl: Duration,
    lease: Duration,
}

impl MessageIds {
    /// The message ids of `state`'s provider.
    pub fn new(state: State<'_>, ttl: Duration, lease: Duration) -> MessageIds {
        MessageIds {
            store: state.store().clone(),
            ttl,
            lease,
        }
    }

    /// Where the record of `key` is kept in the store.
    fn record_key(key: &StateKey) -> String {
        format!("msg/{key}")
    }

    pub async fn get(&self, key: &StateKey) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .get(&Self::record_key(key))
            .await?
            .and_then(|r| String::from_utf8(r.value).ok()))
    }

    /// Replaces the record of `key` with `new` if it still holds `old`: the
    /// message it named is gone and another was posted in its place. `false`
    /// when there is no such record, or another replica changed it first
    /// (its record is kept: it names a message too).
    pub async fn replace(&self, key: &StateKey, old: &str, new: &str) -> Result<bool, StoreError> {
        let k = Self::record_key(key);
        match self.store.get(&k).await? {
            Some(r) if r.value == old.as_bytes() => Ok(self
                .store
                .put_if_version(&k, new.as_bytes(), Some(r.version), self.ttl)
                .await?
                .is_some()),
            _ => Ok(false),
        }
    }

    /// Updates the message recorded under `key`, or creates it when there
    /// is none — the create guarded by a claim, so exactly one replica runs it.
    pub async fn create_or_update<E, C, CF, U, UF>(
        &self,
        key: &StateKey,
        owner: &str,
        create: C,
        update: U,
    ) -> Result<MessageAction<E>, StoreError>
    where
        C: FnOnce() -> CF,
        CF: Future<Output = Result<String, E>>,
        U: FnOnce(String) -> UF,
        UF: Future<Output = Result<(), E>>,
    {
        if let Some(id) = self.get(key).await? {
            return Ok(match update(id.clone()).await {
                Ok(()) => MessageAction::Updated(id),
                Err(e) => MessageAction::Failed(e),
            });
        }
        let guard = format!("msg-create/{key}");
        match self.store.claim(&guard, owner, self.lease).await? {
            Claim::InProgress => Ok(MessageAction::CreationInProgress),
            Claim::Done => match self.get(key).await? {
                Some(id) => Ok(match update(id.clone()).await {
                    Ok(()) => MessageAction::Updated(id),
                    Err(e) => MessageAction::Failed(e),
                }),
                // Created, but its record expired: treat as in progress once more.
                None => Ok(MessageAction::CreationInProgress),
            },
            Claim::Acquired => match create().await {
                Ok(id) => {
                    self.store
                        .put_if_version(&Self::record_key(key), id.as_bytes(), None, self.ttl)
                        .await?;
                    self.store.complete(&guard, owner, self.ttl).await?;
                    Ok(MessageAction::Created(id))
                }
                Err(e) => {
                    self.store.release(&guard, owner).await?;
                    Ok(MessageAction::Failed(e))
                }
            },
        }
    }
}

impl MessageAction<crate::delivery::verdict::Verdict> {
    /// The delivery result: a detail on success, a retry while another
    /// replica is creating the message.
    pub fn into_result(self, what: &str) -> Result<String, crate::delivery::verdict::Verdict> {
        use crate::delivery::verdict::Verdict;
        match self {
            MessageAction::Created(id) => Ok(format!("{what} {id} created")),
            MessageAction::Updated(id) => Ok(format!("{what} {id} updated")),
            MessageAction::CreationInProgress => Err(Verdict::Retryable {
                status: None,
                retry_after: Some(Duration::from_secs(1)),
                message: format!("the {what} is being created by another replica"),
            }),
            MessageAction::Failed(v) => Err(v),
        }
    }
}

/// Without the store nobody can decide who creates a message: retry later.
pub fn store_unavailable(e: StoreError) -> crate::delivery::verdict::Verdict {
    crate::delivery::verdict::Verdict::Retryable {
        status: None,
        retry_after: None,
        message: e.to_string(),
    }
}

/// Every item of a paged list whose `body` starts with `marker`, in order:
/// pages of `per_page` are fetched until one is short (at most 100 pages).
/// Which of them the relay may adopt is [`adopt_own`]'s to say.
pub async fn find_marked<F, Fut>(
    per_page: usize,
    marker: &str,
    mut page: F,
) -> Result<Vec<serde_json::Value>, crate::delivery::verdict::Verdict>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<Vec<serde_json::Value>, crate::delivery::verdict::Verdict>>,
{
    let mut found = Vec::new();
    for n in 1..=100 {
        let items = page(n).await?;
        found.extend(
            items
                .iter()
                .filter(|c| c["body"].as_str().is_some_and(|b| b.starts_with(marker)))
                .cloned(),
        );
        if items.len() < per_page {
            break;
        }
    }
    Ok(found)
}

/// Who the relay is on a git host, as the author field of its own comments
/// shows it (a login, a user id): asked once, and again after an hour, so a
/// credential rotated to another account is noticed.
#[derive(Default)]
pub struct Identity {
    known: tokio::sync::Mutex<Option<(String, std::time::Instant)>>,
}

const IDENTITY_MEMORY: Duration = Duration::from_secs(3600);

impl Identity {
    /// The remembered identity, or what `ask` answers (then remembered).
    /// `ask` must not use this `Identity`: it runs under its lock.
    pub async fn get<F, Fut>(&self, ask: F) -> Result<String, crate::delivery::verdict::Verdict>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, crate::delivery::verdict::Verdict>>,
    {
        let mut known = self.known.lock().await;
        if let Some((who, at)) = known.as_ref()
            && at.elapsed() < IDENTITY_MEMORY
        {
            return Ok(who.clone());
        }
        let who = ask().await?;
        *known = Some((who.clone(), std::time::Instant::now()));
        Ok(who)
    }
}

/// A JSON string or number as text (an author's login or numeric id).
pub fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first of `marked` (messages that start with the relay's marker, in
/// order) whose `author` is the relay itself, as `identity` knows it
/// (`ask`ing the host the first time). Anyone can post a comment starting
/// with the marker: adopting theirs would have the relay overwrite another
/// person's comment, and keep it as its summary. Authors are compared
/// ignoring ASCII case (GitHub logins). Nothing is adopted, so a new
/// message is posted, when none is the relay's, or when the host will not
/// say who the credential is (a permanent failure: some tokens may not
/// read their own user); a retryable failure is the delivery's.
pub async fn adopt_own<F, Fut>(
    marked: Vec<serde_json::Value>,
    author: impl Fn(&serde_json::Value) -> Option<String>,
    identity: &Identity,
    ask: F,
) -> Result<Option<serde_json::Value>, crate::delivery::verdict::Verdict>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<String, crate::delivery::verdict::Verdict>>,
{
    if marked.is_empty() {
        return Ok(None);
    }
    let me = match identity.get(ask).await {
        Ok(me) => me,
        Err(crate::delivery::verdict::Verdict::Permanent { status, message }) => {
            tracing::warn!(
                ?status,
                error = %message,
                "cannot tell who the relay is on the git host: a marked message is not adopted"
            );
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut others = 0;
    for m in marked {
        match author(&m) {
            Some(a) if a.eq_ignore_ascii_case(&me) => return Ok(Some(m)),
            _ => others += 1,
        }
    }
    tracing::warn!(
        count = others,
        "messages carrying the relay's marker were written by someone else: not adopted"
    );
    Ok(None)
}

/// What a provider last posted under a key (a commit status's state and
/// description), so an unchanged one is not posted again.
pub struct LastPosted<'a> {
    store: &'a SharedStore,
    key: String,
    version: Option<u64>,
}

impl<'a> LastPosted<'a> {
    /// Reads the record; `Ok(None)` when `value` is what was last posted.
    /// A store error reads as "not posted" (the post is repeated, not lost).
    pub async fn unless_same(
        state: State<'a>,
        key: StateKey,
        value: &str,
    ) -> Option<LastPosted<'a>> {
        let store = state.store();
        let key = key.to_string();
        let last = store.get(&key).await.ok().flatten();
        if last.as_ref().is_some_and(|r| r.value == value.as_bytes()) {
            return None;
        }
        Some(LastPosted {
            store,
            key,
            version: last.map(|r| r.version),
        })
    }

    /// Records `value` as posted (best effort: a lost race only re-posts).
    pub async fn record(self, value: &str, ttl: Duration) {
        let _ = self
            .store
            .put_if_version(&self.key, value.as_bytes(), self.version, ttl)
            .await;
    }
}

/// How long a message id or a posted status is remembered.
pub const MEMORY: Duration = Duration::from_secs(14 * 24 * 3600);
/// How long one replica may take to create a message before another may.
const CREATE_LEASE: Duration = Duration::from_secs(30);

/// A pull/merge request message holding a run's summary (a PR comment, an
/// MR note, a review thread), as one git host finds, creates and updates it.
#[async_trait::async_trait]
pub trait SummaryMessages: Sync {
    /// An existing message whose text starts with `marker`: one posted
    /// before the store knew it (a lost store, say) is adopted, not duplicated.
    async fn find(&self, marker: &str)
    -> Result<Option<String>, crate::delivery::verdict::Verdict>;
    /// Posts `text`; the new message's id.
    async fn create(&self, text: &str) -> Result<String, crate::delivery::verdict::Verdict>;
    async fn update(&self, id: &str, text: &str) -> Result<(), crate::delivery::verdict::Verdict>;
}

/// Keeps one message per `key` holding `text` (which starts with `marker`):
/// created once — by exactly one replica, the store's message-id record
/// decides — then updated in place.
pub async fn upsert_summary(
    state: State<'_>,
    key: &StateKey,
    marker: &str,
    text: &str,
    messages: &dyn SummaryMessages,
) -> Result<MessageAction<crate::delivery::verdict::Verdict>, crate::delivery::verdict::Verdict> {
    let ids = MessageIds::new(state, MEMORY, CREATE_LEASE);
    let owner = uuid::Uuid::new_v4().to_string();
    ids.create_or_update(
        key,
        &owner,
        || async {
            if let Some(id) = messages.find(marker).await? {
                messages.update(&id, text).await?;
                return Ok(id);
            }
            messages.create(text).await
        },
        |id| async move { messages.update(&id, text).await },
    )
    .await
    .map_err(store_unavailable)
}

/// The summary text of the run an event belongs to, after a hidden
/// `marker` line; `None` when the event belongs to no PipelineRun.
pub fn summary_text(
    input: &crate::delivery::provider::DeliveryInput<'_>,
    marker: &str,
) -> Result<Option<String>, crate::delivery::verdict::Verdict> {
    let Some(summary) = input.summary else {
        return Ok(None);
    };
    let text = crate::delivery::summary::render(summary, input)
        .map_err(|e| crate::delivery::verdict::Verdict::permanent(format!("template: {e}")))?;
    Ok(Some(format!("{marker}\n{text}")))
}

/// Posts a commit status through `post` unless the last one posted under
/// `key` (a host, repository, commit and context) had the same `state` and
/// `description`; the delivery detail either way.
pub async fn post_status_once<F, Fut>(
    memory: State<'_>,
    key: StateKey,
    context: &str,
    state: &str,
    description: &str,
    post: F,
) -> Result<String, crate::delivery::verdict::Verdict>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), crate::delivery::verdict::Verdict>>,
{
    let posted = format!("{state}\u{1f}{description}");
    let Some(last) = LastPosted::unless_same(memory, key, &posted).await else {
        return Ok(format!("status {context} already {state}"));
    };
    post().await?;
    last.record(&posted, MEMORY).await;
    Ok(format!("status {context} {state}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::delivery::store::memory::MemoryStore;

    fn comment(id: u64, login: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "body": "<!-- m -->", "user": {"login": login}})
    }

    /// Anyone can post a comment starting with the marker: only the relay's
    /// own is adopted, and its identity is asked once.
    #[tokio::test]
    async fn only_a_marked_message_by_the_relay_itself_is_adopted() {
        let author = |c: &serde_json::Value| json_text(&c["user"]["login"]);
        let identity = Identity::default();
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let ask = || async {
            asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, crate::delivery::verdict::Verdict>("Relay-Bot".to_string())
        };
        let marked = vec![comment(1, "mallory"), comment(2, "relay-bot")];
        let found = adopt_own(marked, author, &identity, ask).await.unwrap();
        assert_eq!(found.unwrap()["id"], 2, "the relay's, not the first");
        let found = adopt_own(vec![comment(3, "mallory")], author, &identity, ask)
            .await
            .unwrap();
        assert_eq!(found, None, "someone else's is never adopted");
        let unsigned = serde_json::json!({"id": 4, "body": "<!-- m -->"});
        let found = adopt_own(vec![unsigned], author, &identity, ask)
            .await
            .unwrap();
        assert_eq!(found, None, "nor one without an author");
        assert_eq!(
            adopt_own(vec![], author, &identity, ask).await.unwrap(),
            None
        );
        assert_eq!(
            asked.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "asked once"
        );

        // A host that will not say who the credential is: nothing adopted.
        let found = adopt_own(
            vec![comment(5, "relay-bot")],
            author,
            &Identity::default(),
            || async { Err(crate::delivery::verdict::Verdict::permanent("answered 403")) },
        )
        .await
        .unwrap();
        assert_eq!(found, None);
        // Unless it is only for now: the delivery is retried.
        let err = adopt_own(
            vec![comment(5, "relay-bot")],
            author,
            &Identity::default(),
            || async {
                Err(crate::delivery::verdict::Verdict::Retryable {
                    status: Some(503),
                    retry_after: None,
                    message: "answered 503".into(),
                })
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(
            err,
            crate::delivery::verdict::Verdict::Retryable { .. }
        ));
    }

    #[tokio::test]
    async fn every_marked_item_is_found_on_every_page() {
        let found = find_marked(2, "<!-- m -->", |n| async move {
            Ok(match n {
                1 => vec![
                    comment(1, "a"),
                    serde_json::json!({"id": 2, "body": "lgtm"}),
                ],
                _ => vec![comment(3, "b")],
            })
        })
        .await
        .unwrap();
        let ids: Vec<_> = found.iter().map(|c| c["id"].clone()).collect();
        assert_eq!(ids, [1, 3]);
    }

    #[tokio::test]
    async fn a_record_is_replaced_only_while_it_holds_the_old_message() {
        let store: SharedStore = Arc::new(MemoryStore::default());
        let state = State::new(&store, "test");
        let ids = MessageIds::new(state, MEMORY, CREATE_LEASE);
        let k = &state.key(crate::delivery::state::Kind::ChatMessage, &["k"]);
        assert!(
            !ids.replace(k, "C1 1.0", "C1 2.0").await.unwrap(),
            "none yet"
        );
        assert_eq!(ids.get(k).await.unwrap(), None);
        let created = ids
            .create_or_update(
                k,
                "me",
                || async { Ok::<_, ()>("C1 1.0".to_string()) },
                |_| async { Ok(()) },
            )
            .await
            .unwrap();
        assert_eq!(created, MessageAction::Created("C1 1.0".into()));
        assert!(ids.replace(k, "C1 1.0", "C1 2.0").await.unwrap());
        assert_eq!(ids.get(k).await.unwrap().as_deref(), Some("C1 2.0"));
        // Another replica replaced it first: its record stays.
        assert!(!ids.replace(k, "C1 1.0", "C1 3.0").await.unwrap());
        assert_eq!(ids.get(k).await.unwrap().as_deref(), Some("C1 2.0"));
        // Later events update the replacement.
        let updated = ids
            .create_or_update(
                k,
                "me",
                || async { Ok::<_, ()>("never".to_string()) },
                |id| async move {
                    assert_eq!(id, "C1 2.0");
                    Ok(())
                },
            )
            .await
            .unwrap();
        assert_eq!(updated, MessageAction::Updated("C1 2.0".into()));
    }
}
