//! A JSONL file of dead letters, bounded in size: when a write pushes it over
//! the bound, the oldest entries are dropped (and counted).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{DeadLetterEntry, DeadLetterSink, SinkError};
use crate::metrics::Metrics;

pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    metrics: Arc<Metrics>,
    // Serialises writers within this process; the file has one writer.
    lock: Mutex<()>,
}

fn io(e: std::io::Error) -> SinkError {
    SinkError(e.to_string())
}

impl FileSink {
    pub fn open(path: PathBuf, max_bytes: u64, metrics: Arc<Metrics>) -> Result<FileSink, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        Ok(FileSink {
            path,
            max_bytes,
            metrics,
            lock: Mutex::new(()),
        })
    }

    async fn read_all(&self) -> Result<Vec<DeadLetterEntry>, SinkError> {
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        // A torn last line (crash mid-write) is skipped rather than fatal.
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    async fn write_all(&self, entries: &[DeadLetterEntry]) -> Result<(), SinkError> {
        let mut buf = String::new();
        for e in entries {
            buf.push_str(&serde_json::to_string(e).map_err(|e| SinkError(e.to_string()))?);
            buf.push('\n');
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        tokio::fs::write(&tmp, buf).await.map_err(io)?;
        tokio::fs::rename(&tmp, &self.path).await.map_err(io)
    }

    /// Drops the oldest entries until the file fits its bound.
    async fn enforce_bound(&self) -> Result<(), SinkError> {
        let len = tokio::fs::metadata(&self.path).await.map_err(io)?.len();
        if len <= self.max_bytes {
            return Ok(());
        }
        let entries = self.read_all().await?;
        let sizes: Vec<u64> = entries
            .iter()
            .map(|e| serde_json::to_string(e).map_or(0, |s| s.len() as u64 + 1))
            .collect();
        let mut total: u64 = sizes.iter().sum();
        let mut skip = 0;
        while total > self.max_bytes && skip < entries.len() {
            total -= sizes[skip];
            skip += 1;
        }
        self.metrics.dead_letters_dropped.inc_by(skip as u64);
        tracing::warn!(
            dropped = skip,
            "dead-letter file over its bound; dropped the oldest entries"
        );
        self.write_all(&entries[skip..]).await
    }
}

#[async_trait]
impl DeadLetterSink for FileSink {
    async fn put(&self, entry: &DeadLetterEntry) -> Result<(), SinkError> {
        let _g = self.lock.lock().await;
        let mut line = serde_json::to_string(entry).map_err(|e| SinkError(e.to_string()))?;
        line.push('\n');
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(io)?;
        f.write_all(line.as_bytes()).await.map_err(io)?;
        f.flush().await.map_err(io)?;
        drop(f);
        self.enforce_bound().await
    }

    async fn list(
        &self,
        limit: Option<usize>,
        notification: Option<&str>,
    ) -> Result<(usize, Vec<DeadLetterEntry>), SinkError> {
        let _g = self.lock.lock().await;
        Ok(super::page(self.read_all().await?, limit, notification))
    }

    async fn update(&self, entry: &DeadLetterEntry) -> Result<bool, SinkError> {
        let _g = self.lock.lock().await;
        let mut entries = self.read_all().await?;
        let Some(slot) = entries.iter_mut().find(|e| e.id == entry.id) else {
            return Ok(false);
        };
        *slot = entry.clone();
        self.write_all(&entries).await?;
        Ok(true)
    }

    async fn remove(&self, id: &str) -> Result<bool, SinkError> {
        let _g = self.lock.lock().await;
        let mut entries = self.read_all().await?;
        let before = entries.len();
        entries.retain(|e| e.id != id);
        if entries.len() == before {
            return Ok(false);
        }
        self.write_all(&entries).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadletter::{Cause, CauseKind};

    fn entry(i: usize) -> DeadLetterEntry {
        DeadLetterEntry {
            id: format!("id-{i}"),
            failed_at: "2024-01-01T00:00:00Z".into(),
            notification: if i.is_multiple_of(2) { "even" } else { "odd" }.into(),
            provider: "hook".into(),
            provider_type: "webhook".into(),
            cause: Cause {
                kind: CauseKind::Permanent,
                status: Some(401),
                message: "answered 401".into(),
            },
            attempts: 1,
            replays: 0,
            event: serde_json::json!({"id": i}),
        }
    }

    fn sink(max: u64) -> (FileSink, Arc<Metrics>) {
        let dir = std::env::temp_dir().join(format!("relay-dlq-{}", uuid::Uuid::new_v4()));
        let m = Arc::new(Metrics::new());
        (
            FileSink::open(dir.join("dl.jsonl"), max, m.clone()).unwrap(),
            m,
        )
    }

    #[tokio::test]
    async fn lists_oldest_first_filters_updates_and_removes() {
        let (s, _) = sink(1 << 20);
        for i in 0..5 {
            s.put(&entry(i)).await.unwrap();
        }
        let (total, got) = s.list(Some(2), Some("even")).await.unwrap();
        assert_eq!(total, 3);
        assert_eq!(
            got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["id-0", "id-2"]
        );
        let mut e = entry(2);
        e.replays = 1;
        assert!(s.update(&e).await.unwrap());
        assert_eq!(s.list(None, None).await.unwrap().1[2].replays, 1);
        assert!(s.remove("id-0").await.unwrap());
        assert!(!s.remove("id-0").await.unwrap());
        assert_eq!(s.list(None, None).await.unwrap().0, 4);
    }

    #[tokio::test]
    async fn drops_oldest_over_the_bound_and_counts_it() {
        let line = serde_json::to_string(&entry(0)).unwrap().len() as u64 + 1;
        let (s, m) = sink(line * 3);
        for i in 0..5 {
            s.put(&entry(i)).await.unwrap();
        }
        let (_, got) = s.list(None, None).await.unwrap();
        assert_eq!(
            got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["id-2", "id-3", "id-4"]
        );
        assert_eq!(m.dead_letters_dropped.get(), 2);
    }
}
