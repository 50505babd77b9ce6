//! Dead letters: the entry format of docs/design.md and the sinks that keep them.

pub mod aws_queue;
pub mod dynamodb;
pub mod file;
pub mod sqs;
pub mod valkey;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::delivery::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    Permanent,
    RetriesExhausted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub kind: CauseKind,
    pub status: Option<u16>,
    pub message: String,
}

/// One dead letter (JSONL line, SQS message body, DLQ store record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterEntry {
    pub id: String,
    pub failed_at: String,
    pub notification: String,
    pub provider: String,
    pub provider_type: String,
    pub cause: Cause,
    pub attempts: u32,
    pub replays: u32,
    /// The original event, as a structured CloudEvent.
    pub event: serde_json::Value,
    /// Set when the entry was over the per-entry size cap
    /// (`spec.deadLetterMaxEntryBytes`): the event was kept without its
    /// data (its context attributes stay, shortened), so the entry still
    /// says what failed and why, but it cannot be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
    /// The Knative dead-letter function's mark: the destination the Broker
    /// reported is not one of its configured subscribers. The entry is
    /// kept, but replay refuses it (it never goes to a URL from an event).
    #[serde(default, skip_serializing_if = "is_false")]
    pub unknown_destination: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What the per-entry size cap took out of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncated {
    /// The size of the whole entry, serialized, before it was cut.
    pub original_bytes: u64,
}

/// The most an SQS message holds.
const SQS_MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// DynamoDB items hold at most 400 KB, key and other attributes included.
const DYNAMODB_MAX_ENTRY_BYTES: usize = 384 * 1024;

/// Bounds of the free-text fields of an entry cut to fit the cap.
const MAX_MESSAGE_BYTES: usize = 4096;
const MAX_FIELD_BYTES: usize = 1024;

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary, marked with `…` when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn entry_len(e: &DeadLetterEntry) -> usize {
    serde_json::to_vec(e).map_or(usize::MAX, |v| v.len())
}

/// `entry` cut to fit `max_bytes` when it does not (`None` when it fits).
/// Nothing that identifies the failure is dropped: id, time, Notification,
/// provider and cause stay (long texts shortened); the event keeps its
/// scalar top-level fields (a CloudEvent's context attributes, shortened)
/// and loses its data, and `truncated` says so. A flood of huge events thus
/// costs a bounded amount of queue each, and the entry is never lost.
pub fn fit(entry: &DeadLetterEntry, max_bytes: usize) -> Option<DeadLetterEntry> {
    let original = entry_len(entry);
    if original <= max_bytes {
        return None;
    }
    let mut cut = entry.clone();
    cut.truncated = Some(Truncated {
        original_bytes: original as u64,
    });
    cut.notification = shorten(&cut.notification, MAX_FIELD_BYTES);
    cut.provider = shorten(&cut.provider, MAX_FIELD_BYTES);
    cut.provider_type = shorten(&cut.provider_type, MAX_FIELD_BYTES);
    cut.cause.message = shorten(&cut.cause.message, MAX_MESSAGE_BYTES);
    cut.event = match &entry.event {
        serde_json::Value::Object(fields) => serde_json::Value::Object(
            fields
                .iter()
                .filter(|(k, _)| k.as_str() != "data" && k.as_str() != "data_base64")
                .filter_map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => {
                            serde_json::Value::String(shorten(s, MAX_FIELD_BYTES))
                        }
                        serde_json::Value::Object(_) | serde_json::Value::Array(_) => return None,
                        scalar => scalar.clone(),
                    };
                    Some((shorten(k, MAX_FIELD_BYTES), v))
                })
                .collect(),
        ),
        serde_json::Value::String(s) => serde_json::Value::String(shorten(s, MAX_FIELD_BYTES)),
        _ => serde_json::Value::Null,
    };
    if entry_len(&cut) > max_bytes {
        // Still over (many or long attributes, or a tiny cap): the event's
        // identity alone.
        cut.event = match &cut.event {
            serde_json::Value::Object(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .filter(|(k, _)| ["id", "source", "type", "specversion"].contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            _ => serde_json::Value::Null,
        };
    }
    Some(cut)
}

#[derive(Debug, thiserror::Error)]
#[error("dead-letter sink: {0}")]
pub struct SinkError(pub String);

/// A place that keeps dead letters for inspection and replay.
#[async_trait]
pub trait DeadLetterSink: Send + Sync + 'static {
    async fn put(&self, entry: &DeadLetterEntry) -> Result<(), SinkError>;
    /// Oldest first; `total` counts all entries matching `notification`.
    async fn list(
        &self,
        limit: Option<usize>,
        notification: Option<&str>,
    ) -> Result<(usize, Vec<DeadLetterEntry>), SinkError>;
    /// Replaces the entry with the same id; false when it is gone.
    async fn update(&self, entry: &DeadLetterEntry) -> Result<bool, SinkError>;
    async fn remove(&self, id: &str) -> Result<bool, SinkError>;
}

/// The dead-letter API's listing (docs/operations.md "HTTP API") of a sink's entries (already oldest first):
/// `total` counts those of `notification`, `limit` cuts the page.
pub fn page(
    entries: Vec<DeadLetterEntry>,
    limit: Option<usize>,
    notification: Option<&str>,
) -> (usize, Vec<DeadLetterEntry>) {
    let matching: Vec<DeadLetterEntry> = entries
        .into_iter()
        .filter(|e| notification.is_none_or(|n| e.notification == n))
        .collect();
    let total = matching.len();
    (
        total,
        matching
            .into_iter()
            .take(limit.unwrap_or(usize::MAX))
            .collect(),
    )
}

/// Applies the per-entry size cap ([`fit`]) to every entry written to
/// `inner`, counting each entry cut.
pub struct Capped {
    inner: Arc<dyn DeadLetterSink>,
    max_entry_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Capped {
    pub fn new(
        inner: Arc<dyn DeadLetterSink>,
        max_entry_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Capped {
        Capped {
            inner,
            max_entry_bytes,
            metrics,
        }
    }

    fn fitted<'a>(&self, entry: &'a DeadLetterEntry) -> std::borrow::Cow<'a, DeadLetterEntry> {
        match fit(entry, self.max_entry_bytes) {
            None => std::borrow::Cow::Borrowed(entry),
            Some(cut) => {
                self.metrics.dead_letters_truncated.inc();
                tracing::warn!(
                    id = %entry.id,
                    bytes = cut.truncated.as_ref().map_or(0, |t| t.original_bytes),
                    max = self.max_entry_bytes,
                    "dead letter over the per-entry size cap; kept without its event data"
                );
                std::borrow::Cow::Owned(cut)
            }
        }
    }
}

#[async_trait]
impl DeadLetterSink for Capped {
    async fn put(&self, entry: &DeadLetterEntry) -> Result<(), SinkError> {
        self.inner.put(&self.fitted(entry)).await
    }

    async fn list(
        &self,
        limit: Option<usize>,
        notification: Option<&str>,
    ) -> Result<(usize, Vec<DeadLetterEntry>), SinkError> {
        self.inner.list(limit, notification).await
    }

    async fn update(&self, entry: &DeadLetterEntry) -> Result<bool, SinkError> {
        self.inner.update(&self.fitted(entry)).await
    }

    async fn remove(&self, id: &str) -> Result<bool, SinkError> {
        self.inner.remove(id).await
    }
}

/// Where permanent failures go.
#[derive(Clone)]
pub enum DeadLetterTarget {
    /// Answer 422 so the sender (the Knative Broker) dead-letters the event.
    Respond,
    Sink(Arc<dyn DeadLetterSink>),
}

impl DeadLetterTarget {
    pub fn describe(&self) -> &'static str {
        match self {
            DeadLetterTarget::Respond => "respond",
            DeadLetterTarget::Sink(_) => "sink",
        }
    }
}

/// Checks a dead-letter URL without opening anything.
pub fn check_url(url: &str) -> Result<(), String> {
    if url == "respond" {
        return Ok(());
    }
    if let Some(path) = url.strip_prefix("file://") {
        return if path.is_empty() {
            Err("file:// needs a path".into())
        } else {
            Ok(())
        };
    }
    let scheme = url.split("://").next().unwrap_or(url);
    match scheme {
        "sqs" => sqs::queue_url(url).map(|_| ()),
        "http" | "https" => Err(format!(
            "dead-letter target {scheme:?} is not built into this version; use `file://…`, `sqs://…` or `respond`"
        )),
        _ => Err(format!(
            "unknown dead-letter target {url:?}, expected `file:///path.jsonl`, `respond`, `sqs://…` or `http(s)://…`"
        )),
    }
}

/// Opens `url` (see [`check_url`]); every sink's entries are cut to
/// `max_entry_bytes` ([`fit`]).
pub async fn open(
    url: &str,
    max_bytes: u64,
    max_entry_bytes: usize,
    metrics: Arc<Metrics>,
) -> Result<DeadLetterTarget, String> {
    check_url(url)?;
    if url == "respond" {
        return Ok(DeadLetterTarget::Respond);
    }
    let (sink, max_entry_bytes): (Arc<dyn DeadLetterSink>, usize) = if url.starts_with("sqs://") {
        // A larger message is refused by SQS: the entry would be lost.
        (
            Arc::new(sqs::SqsSink::open(url).await?),
            max_entry_bytes.min(SQS_MAX_MESSAGE_BYTES),
        )
    } else {
        let path = url.strip_prefix("file://").unwrap_or(url);
        (
            file::FileSink::open(path.into(), max_bytes, metrics.clone())?,
            max_entry_bytes,
        )
    };
    Ok(DeadLetterTarget::Sink(Arc::new(Capped::new(
        sink,
        max_entry_bytes,
        metrics,
    ))))
}

/// Opens a dead-letter store for the Knative dead-letter function:
/// `file:///…`, `valkey://…` (`redis://…`) or `dynamodb://…`; entries are
/// cut to `max_entry_bytes` ([`fit`]).
pub async fn open_store(
    url: &str,
    max_bytes: u64,
    mut max_entry_bytes: usize,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn DeadLetterSink>, String> {
    let scheme = url.split("://").next().unwrap_or(url);
    let sink: Arc<dyn DeadLetterSink> = match scheme {
        "file" => file::FileSink::open(url["file://".len()..].into(), max_bytes, metrics.clone())?,
        "valkey" | "valkeys" | "redis" | "rediss" => Arc::new(valkey::ValkeySink::open(url).await?),
        "dynamodb" => {
            // A larger item is refused by DynamoDB: the entry would be lost.
            max_entry_bytes = max_entry_bytes.min(DYNAMODB_MAX_ENTRY_BYTES);
            Arc::new(dynamodb::DynamoSink::open(url).await?)
        }
        _ => {
            return Err(format!(
                "unknown dead-letter store {url:?}, expected file:///path.jsonl, valkey://… or dynamodb://…"
            ));
        }
    };
    Ok(Arc::new(Capped::new(sink, max_entry_bytes, metrics)))
}

#[cfg(test)]
/// The dead letter `id` of a permanent failure (`status`, `message`) of the
/// Notification `notification` of the webhook Provider `hook`, first
/// attempt, never replayed, with `event`.
pub(crate) fn dead_letter(
    id: &str,
    notification: &str,
    status: u16,
    message: &str,
    event: serde_json::Value,
) -> DeadLetterEntry {
    DeadLetterEntry {
        id: id.into(),
        failed_at: "2024-01-01T00:00:00Z".into(),
        notification: notification.into(),
        provider: "hook".into(),
        provider_type: "webhook".into(),
        cause: Cause {
            kind: CauseKind::Permanent,
            status: Some(status),
            message: message.into(),
        },
        attempts: 1,
        replays: 0,
        event,
        truncated: None,
        unknown_destination: false,
    }
}

#[cfg(test)]
mod tests {
    use super::dead_letter;
    use super::*;

    fn entry(event: serde_json::Value, message: &str) -> DeadLetterEntry {
        dead_letter("id-1", "hook", 400, message, event)
    }

    #[test]
    fn an_entry_within_the_cap_is_kept_whole() {
        let e = entry(
            serde_json::json!({"id": "e1", "data": {"x": 1}}),
            "answered 400",
        );
        assert_eq!(fit(&e, 4096), None);
    }

    #[test]
    fn an_oversized_entry_keeps_its_identity_and_cause_and_loses_its_data() {
        let e = entry(
            serde_json::json!({
                "specversion": "1.0", "id": "e1", "type": "t", "source": "/s",
                "subject": "€".repeat(2000), "traceparent": "00-ab-cd-01",
                "data": {"blob": "x".repeat(100_000)},
                "data_base64": "eA==",
            }),
            &"é".repeat(10_000),
        );
        let cut = fit(&e, 8192).expect("over the cap");
        assert!(serde_json::to_vec(&cut).unwrap().len() <= 8192);
        assert_eq!(
            cut.truncated.as_ref().unwrap().original_bytes,
            serde_json::to_vec(&e).unwrap().len() as u64
        );
        assert_eq!(
            (cut.id.as_str(), cut.notification.as_str(), cut.cause.status),
            ("id-1", "hook", Some(400))
        );
        assert_eq!(cut.event["id"], "e1");
        assert_eq!(cut.event["traceparent"], "00-ab-cd-01");
        assert!(cut.event.get("data").is_none());
        assert!(cut.event.get("data_base64").is_none());
        // Shortened on character boundaries, and marked.
        let subject = cut.event["subject"].as_str().unwrap();
        assert!(subject.len() <= 1024 + '…'.len_utf8() && subject.ends_with('…'));
        assert!(cut.cause.message.len() <= 4096 + '…'.len_utf8());
    }

    #[test]
    fn a_tiny_cap_still_keeps_the_metadata() {
        let mut event = serde_json::Map::new();
        event.insert("id".into(), "e1".into());
        for i in 0..500 {
            event.insert(format!("ext{i}"), "v".repeat(100).into());
        }
        let cut = fit(&entry(event.into(), "m"), 600).expect("over the cap");
        assert_eq!(cut.event, serde_json::json!({"id": "e1"}));
        assert_eq!(cut.cause.message, "m");
        assert!(cut.truncated.is_some());
    }

    /// Every sink behind `open`/`open_store` gets the cap, counted.
    #[tokio::test]
    async fn the_cap_applies_to_puts_and_updates_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(Metrics::new());
        let url = format!("file://{}/dl.jsonl", dir.path().display());
        let sink = open_store(&url, 1 << 20, 2048, m.clone()).await.unwrap();
        let mut e = entry(serde_json::json!({"id": "e1"}), "m");
        sink.put(&e).await.unwrap();
        e.event = serde_json::json!({"id": "e1", "data": "x".repeat(10_000)});
        assert!(sink.update(&e).await.unwrap());
        let (_, got) = sink.list(None, None).await.unwrap();
        assert!(got[0].truncated.is_some());
        assert_eq!(m.dead_letters_truncated.get(), 1);
        let on_disk = std::fs::metadata(dir.path().join("dl.jsonl"))
            .unwrap()
            .len();
        assert!(on_disk < 4096, "{on_disk}");
    }
}
