//! Dead letters in Valkey: one key per entry (with a TTL) and a sorted set
//! indexing them by failure time, oldest first.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{DeadLetterEntry, DeadLetterSink, SinkError};
use crate::delivery::store::valkey::ValkeyStore;

/// Dead letters are kept this long (14 days, as SQS at most).
const RETENTION_SECS: u64 = 14 * 24 * 3600;

pub struct ValkeySink {
    store: ValkeyStore,
}

fn err(e: redis::RedisError) -> SinkError {
    SinkError(e.to_string())
}

fn score(e: &DeadLetterEntry) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&e.failed_at).map_or(0, |t| t.timestamp_millis())
}

impl ValkeySink {
    pub async fn open(url: &str) -> Result<ValkeySink, String> {
        Ok(ValkeySink {
            store: ValkeyStore::open(url).await?,
        })
    }

    fn keys(&self, id: &str) -> (String, String) {
        let (_, prefix) = self.store.connection();
        (
            format!("{prefix}dlq:index"),
            format!("{prefix}dlq:entry:{id}"),
        )
    }
}

#[async_trait]
impl DeadLetterSink for ValkeySink {
    async fn put(&self, entry: &DeadLetterEntry) -> Result<(), SinkError> {
        let (mut conn, _) = self.store.connection();
        let (index, key) = self.keys(&entry.id);
        let json = serde_json::to_string(entry).map_err(|e| SinkError(e.to_string()))?;
        redis::pipe()
            .atomic()
            .set_ex(&key, json, RETENTION_SECS)
            .zadd(&index, &entry.id, score(entry))
            .query_async::<()>(&mut conn)
            .await
            .map_err(err)
    }

    async fn list(
        &self,
        limit: Option<usize>,
        notification: Option<&str>,
    ) -> Result<(usize, Vec<DeadLetterEntry>), SinkError> {
        let (mut conn, _) = self.store.connection();
        let (index, _) = self.keys("");
        let ids: Vec<String> = conn.zrange(&index, 0, -1).await.map_err(err)?;
        let mut entries = Vec::new();
        for id in ids {
            let (_, key) = self.keys(&id);
            let json: Option<String> = conn.get(&key).await.map_err(err)?;
            match json.and_then(|j| serde_json::from_str::<DeadLetterEntry>(&j).ok()) {
                Some(e) => entries.push(e),
                // Expired: drop it from the index too.
                None => {
                    let _: () = conn.zrem(&index, &id).await.map_err(err)?;
                }
            }
        }
        Ok(super::page(entries, limit, notification))
    }

    async fn update(&self, entry: &DeadLetterEntry) -> Result<bool, SinkError> {
        let (mut conn, _) = self.store.connection();
        let (_, key) = self.keys(&entry.id);
        let json = serde_json::to_string(entry).map_err(|e| SinkError(e.to_string()))?;
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(json)
            .arg("XX")
            .arg("KEEPTTL")
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(set.is_some())
    }

    async fn remove(&self, id: &str) -> Result<bool, SinkError> {
        let (mut conn, _) = self.store.connection();
        let (index, key) = self.keys(id);
        let (deleted, _): (i64, i64) = redis::pipe()
            .atomic()
            .del(&key)
            .zrem(&index, id)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(deleted == 1)
    }
}
