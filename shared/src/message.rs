//! Message-id records for in-place updates (a PR comment id, a Slack `ts`):
//! only one replica ever creates the message; the others update it.

use std::future::Future;
use std::time::Duration;

use crate::store::{Claim, SharedStore, StoreError};

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
    pub fn new(store: SharedStore, ttl: Duration, lease: Duration) -> MessageIds {
        MessageIds { store, ttl, lease }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .get(&format!("msg/{key}"))
            .await?
            .and_then(|r| String::from_utf8(r.value).ok()))
    }

    /// Updates the message recorded under `key`, or creates it when there
    /// is none — the create guarded by a claim, so exactly one replica runs it.
    pub async fn create_or_update<E, C, CF, U, UF>(
        &self,
        key: &str,
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
                        .put_if_version(&format!("msg/{key}"), id.as_bytes(), None, self.ttl)
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
