//! Dead letters: the entry format of DESIGN.md and the sinks that keep them.

pub mod dynamodb;
pub mod file;
pub mod sqs;
pub mod valkey;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

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

/// The DESIGN.md listing of a sink's entries (already oldest first):
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

pub async fn open(
    url: &str,
    max_bytes: u64,
    metrics: Arc<Metrics>,
) -> Result<DeadLetterTarget, String> {
    check_url(url)?;
    if url == "respond" {
        return Ok(DeadLetterTarget::Respond);
    }
    if url.starts_with("sqs://") {
        return Ok(DeadLetterTarget::Sink(Arc::new(
            sqs::SqsSink::open(url).await?,
        )));
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    let sink = file::FileSink::open(path.into(), max_bytes, metrics)?;
    Ok(DeadLetterTarget::Sink(Arc::new(sink)))
}

/// Opens a dead-letter store for the Knative dead-letter function:
/// `file:///…`, `valkey://…` (`redis://…`) or `dynamodb://…`.
pub async fn open_store(
    url: &str,
    max_bytes: u64,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn DeadLetterSink>, String> {
    let scheme = url.split("://").next().unwrap_or(url);
    match scheme {
        "file" => Ok(Arc::new(file::FileSink::open(
            url["file://".len()..].into(),
            max_bytes,
            metrics,
        )?)),
        "valkey" | "valkeys" | "redis" | "rediss" => {
            Ok(Arc::new(valkey::ValkeySink::open(url).await?))
        }
        "dynamodb" => Ok(Arc::new(dynamodb::DynamoSink::open(url).await?)),
        _ => Err(format!(
            "unknown dead-letter store {url:?}, expected file:///path.jsonl, valkey://… or dynamodb://…"
        )),
    }
}
