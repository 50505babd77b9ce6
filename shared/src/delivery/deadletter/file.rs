//! Dead letters in JSONL segment files, appended to and never rewritten.
//!
//! `<path>` is the active segment. When an append would take it past the
//! segment size (an eighth of the bound), it is renamed `<path>.<n>` (`n`
//! increasing, oldest lowest) and a new active segment begins. Each line is
//! a record: an entry as it was put, `{"op":"update","entry":{…}}` (a newer
//! version of an entry), or `{"op":"remove","id":"…"}` (a tombstone). A
//! listing reads the segments oldest first and applies the records in
//! order. Over the size bound the oldest whole segment is deleted, and the
//! entries whose latest version it held are counted as dropped.
//!
//! So a write costs one append whatever the queue's size (a flood of
//! permanent failures no longer rewrites the file under the lock for each
//! event), and the files are only readable by the relay's user (0600 in a
//! 0700 directory it creates).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{DeadLetterEntry, DeadLetterSink, SinkError};
use crate::delivery::metrics::Metrics;

/// Segments per bound: dropping the oldest frees about this fraction.
const SEGMENTS_PER_BOUND: u64 = 8;
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// A line that is not an entry. Entries themselves have no `op` field, so
/// a file of plain entries (the format before segments) reads as puts.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Update { entry: DeadLetterEntry },
    Remove { id: String },
}

/// [`Op`] as written, borrowing.
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum OpRef<'a> {
    Update { entry: &'a DeadLetterEntry },
    Remove { id: &'a str },
}

/// The tag serde writes first on every [`Op`] line.
const OP_PREFIX: &str = r#"{"op":"#;

enum Record {
    Put(DeadLetterEntry),
    Update(DeadLetterEntry),
    Remove(String),
}

/// One line; `None` for a line that does not parse (a torn last line after
/// a crash is skipped rather than fatal).
fn parse(line: &str) -> Option<Record> {
    if line.starts_with(OP_PREFIX) {
        match serde_json::from_str(line).ok()? {
            Op::Update { entry } => Some(Record::Update(entry)),
            Op::Remove { id } => Some(Record::Remove(id)),
        }
    } else {
        serde_json::from_str(line).ok().map(Record::Put)
    }
}

/// The segments and where each live entry's latest version is.
struct State {
    /// Segment number -> bytes, oldest first; the last is the active one.
    segments: BTreeMap<u64, u64>,
    /// Live entry id -> the segment holding its latest record.
    live: HashMap<String, u64>,
}

impl State {
    fn active(&self) -> u64 {
        *self
            .segments
            .keys()
            .next_back()
            .expect("always an active segment")
    }

    fn total(&self) -> u64 {
        self.segments.values().sum()
    }
}

pub struct FileSink {
    path: PathBuf,
    /// The bounds, changed in place when a reload reopens the same queue.
    max_bytes: AtomicU64,
    segment_bytes: AtomicU64,
    metrics: Arc<Metrics>,
    // Serialises writers within this process; the files have one writer.
    state: Mutex<State>,
}

fn io(e: std::io::Error) -> SinkError {
    SinkError(e.to_string())
}

fn json(e: serde_json::Error) -> SinkError {
    SinkError(e.to_string())
}

/// Only the relay's user reads dead letters: they hold whole events.
fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
        && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot restrict the dead-letter file's permissions");
    }
}

fn segment_bytes(max_bytes: u64) -> u64 {
    (max_bytes / SEGMENTS_PER_BOUND).max(1)
}

/// The file of segment `n` of the queue at `path`, whose active segment
/// is `active`.
fn segment_path(path: &Path, n: u64, active: u64) -> PathBuf {
    if n == active {
        path.to_path_buf()
    } else {
        sealed_path(path, n)
    }
}

/// `<path>.<n>`.
fn sealed_path(path: &Path, n: u64) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    p.into()
}

/// The numbers of the sealed segments of `<dir>/<name>`, oldest first.
fn sealed_segments(dir: &Path, name: &str) -> Result<Vec<u64>, String> {
    let listing =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut sealed: Vec<u64> = listing
        .flatten()
        .filter_map(|f| {
            let n = f
                .file_name()
                .to_str()?
                .strip_prefix(name)?
                .strip_prefix('.')?
                .to_string();
            // Digits only: `dl.jsonl.tmp` and the like are not segments.
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n.parse().ok()
        })
        .collect();
    sealed.sort_unstable();
    Ok(sealed)
}

/// An active segment larger than a segment (a queue written before there
/// were segments, or a smaller bound now) is split into sealed segments
/// once, so the bound can still drop an eighth of it rather than all.
/// Returns the sealed segments as they are after. A crash in between
/// leaves records twice, which a listing merges (the same id is one entry).
fn split_active(path: &Path, mut sealed: Vec<u64>, segment_bytes: u64) -> Result<Vec<u64>, String> {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size <= segment_bytes {
        return Ok(sealed);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut next = sealed.last().map_or(1, |n| n + 1);
    let mut chunk = String::new();
    let mut chunks = Vec::new();
    for line in text.lines() {
        if !chunk.is_empty() && (chunk.len() + line.len() + 1) as u64 > segment_bytes {
            chunks.push(std::mem::take(&mut chunk));
        }
        chunk.push_str(line);
        chunk.push('\n');
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    for chunk in chunks {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let file = sealed_path(path, next);
        let mut tmp = file.clone().into_os_string();
        tmp.push(".tmp");
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .and_then(|mut f| f.write_all(chunk.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &file))
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        sealed.push(next);
        next += 1;
    }
    std::fs::remove_file(path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    tracing::info!(
        segments = sealed.len(),
        "dead-letter file split into segments"
    );
    Ok(sealed)
}

/// Reads every segment once: their sizes and the live entries.
fn load(path: &Path, sealed: Vec<u64>) -> Result<State, String> {
    let active = sealed.last().map_or(1, |n| n + 1);
    let mut state = State {
        segments: BTreeMap::new(),
        live: HashMap::new(),
    };
    for n in sealed.into_iter().chain([active]) {
        let file = segment_path(path, n, active);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
        };
        restrict(&file, FILE_MODE);
        // A torn last line (a crash mid-write) must not swallow the next
        // record: end it, and parsing skips it.
        if n == active && !text.is_empty() && !text.ends_with('\n') {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .and_then(|mut f| f.write_all(b"\n"))
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        }
        for line in text.lines() {
            match parse(line) {
                Some(Record::Put(e) | Record::Update(e)) => {
                    state.live.insert(e.id, n);
                }
                Some(Record::Remove(id)) => {
                    state.live.remove(&id);
                }
                None => {}
            }
        }
        let len = std::fs::metadata(&file).map_or(0, |m| m.len());
        state.segments.insert(n, len);
    }
    Ok(state)
}

impl FileSink {
    /// Opens (or creates) the queue at `path`, reading its segments once to
    /// know the live entries. Within a process there is one sink per queue:
    /// opening it again (a config reload, while the old engine still
    /// finishes its events) returns the same one with the new bounds, so two
    /// writers never seal a segment under the same name.
    pub fn open(
        path: PathBuf,
        max_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<FileSink>, String> {
        static OPEN: LazyLock<std::sync::Mutex<HashMap<PathBuf, Weak<FileSink>>>> =
            LazyLock::new(Default::default);
        let key = std::path::absolute(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|_, s| s.strong_count() > 0);
        if let Some(sink) = open.get(&key).and_then(Weak::upgrade) {
            sink.max_bytes.store(max_bytes, Ordering::Relaxed);
            sink.segment_bytes
                .store(segment_bytes(max_bytes), Ordering::Relaxed);
            return Ok(sink);
        }
        let sink = Arc::new(FileSink::open_new(path, max_bytes, metrics)?);
        open.insert(key, Arc::downgrade(&sink));
        Ok(sink)
    }

    fn open_new(path: PathBuf, max_bytes: u64, metrics: Arc<Metrics>) -> Result<FileSink, String> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{} is not a file path", path.display()))?;
        let segment_bytes = segment_bytes(max_bytes);
        let sealed = split_active(&path, sealed_segments(&dir, name)?, segment_bytes)?;
        let state = load(&path, sealed)?;
        Ok(FileSink {
            segment_bytes: AtomicU64::new(segment_bytes),
            path,
            max_bytes: AtomicU64::new(max_bytes),
            metrics,
            state: Mutex::new(state),
        })
    }

    /// Every segment file, oldest first.
    fn files(&self, state: &State) -> Vec<PathBuf> {
        let active = state.active();
        state
            .segments
            .keys()
            .map(|n| segment_path(&self.path, *n, active))
            .collect()
    }

    /// Appends one record to the active segment, sealing it first when the
    /// record would take it past the segment size.
    async fn append(&self, state: &mut State, line: &str) -> Result<(), SinkError> {
        let len = line.len() as u64;
        let active = state.active();
        let size = state.segments[&active];
        if size > 0 && size + len > self.segment_bytes.load(Ordering::Relaxed) {
            // A rename: the sealed segment keeps its inode and bytes.
            tokio::fs::rename(&self.path, sealed_path(&self.path, active))
                .await
                .map_err(io)?;
            state.segments.insert(active + 1, 0);
        }
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .open(&self.path)
            .await
            .map_err(io)?;
        f.write_all(line.as_bytes()).await.map_err(io)?;
        f.flush().await.map_err(io)?;
        let active = state.active();
        *state.segments.get_mut(&active).expect("the active segment") += len;
        Ok(())
    }

    /// Deletes the oldest whole segments while the queue is over its bound
    /// (never the active one, which holds the record just written).
    async fn enforce_bound(&self, state: &mut State) -> Result<(), SinkError> {
        let max_bytes = self.max_bytes.load(Ordering::Relaxed);
        while state.total() > max_bytes && state.segments.len() > 1 {
            let oldest = *state.segments.keys().next().expect("two segments");
            match tokio::fs::remove_file(segment_path(&self.path, oldest, state.active())).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
            state.segments.remove(&oldest);
            let before = state.live.len();
            state.live.retain(|_, n| *n != oldest);
            let dropped = (before - state.live.len()) as u64;
            self.metrics.dead_letters_dropped.inc_by(dropped);
            tracing::warn!(
                dropped,
                "dead-letter queue over its bound; dropped its oldest segment"
            );
        }
        Ok(())
    }

    /// Appends the latest version of `id` (a put or an update).
    async fn write_version(
        &self,
        state: &mut State,
        id: &str,
        line: &str,
    ) -> Result<(), SinkError> {
        self.append(state, line).await?;
        let active = state.active();
        state.live.insert(id.to_string(), active);
        self.enforce_bound(state).await
    }
}

fn line_of<T: Serialize>(record: &T) -> Result<String, SinkError> {
    let mut line = serde_json::to_string(record).map_err(json)?;
    line.push('\n');
    Ok(line)
}

#[async_trait]
impl DeadLetterSink for FileSink {
    async fn put(&self, entry: &DeadLetterEntry) -> Result<(), SinkError> {
        let line = line_of(entry)?;
        let mut state = self.state.lock().await;
        self.write_version(&mut state, &entry.id, &line).await
    }

    async fn list(
        &self,
        limit: Option<usize>,
        notification: Option<&str>,
    ) -> Result<(usize, Vec<DeadLetterEntry>), SinkError> {
        let state = self.state.lock().await;
        // Oldest first, by first appearance; a newer version replaces an
        // older one in place.
        let mut slots: Vec<Option<DeadLetterEntry>> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for file in self.files(&state) {
            let text = match tokio::fs::read_to_string(&file).await {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            for line in text.lines() {
                match parse(line) {
                    Some(Record::Put(e) | Record::Update(e)) => match at.get(&e.id) {
                        Some(&i) => slots[i] = Some(e),
                        None => {
                            at.insert(e.id.clone(), slots.len());
                            slots.push(Some(e));
                        }
                    },
                    Some(Record::Remove(id)) => {
                        if let Some(i) = at.remove(&id) {
                            slots[i] = None;
                        }
                    }
                    None => {}
                }
            }
        }
        let entries = slots
            .into_iter()
            .flatten()
            .filter(|e| state.live.contains_key(&e.id))
            .collect();
        Ok(super::page(entries, limit, notification))
    }

    async fn update(&self, entry: &DeadLetterEntry) -> Result<bool, SinkError> {
        let line = line_of(&OpRef::Update { entry })?;
        let mut state = self.state.lock().await;
        if !state.live.contains_key(&entry.id) {
            return Ok(false);
        }
        self.write_version(&mut state, &entry.id, &line).await?;
        Ok(true)
    }

    async fn remove(&self, id: &str) -> Result<bool, SinkError> {
        let line = line_of(&OpRef::Remove { id })?;
        let mut state = self.state.lock().await;
        let Some(at) = state.live.remove(id) else {
            return Ok(false);
        };
        if let Err(e) = self.append(&mut state, &line).await {
            state.live.insert(id.to_string(), at);
            return Err(e);
        }
        self.enforce_bound(&mut state).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::deadletter::dead_letter;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn entry(i: usize) -> DeadLetterEntry {
        let notification = if i.is_multiple_of(2) { "even" } else { "odd" };
        let event = serde_json::json!({"id": i});
        dead_letter(&format!("id-{i}"), notification, 401, "answered 401", event)
    }

    fn sink(max: u64) -> (Arc<FileSink>, Arc<Metrics>, PathBuf) {
        let dir = std::env::temp_dir().join(format!("relay-dlq-{}", uuid::Uuid::new_v4()));
        let m = Arc::new(Metrics::new());
        (
            FileSink::open(dir.join("dl.jsonl"), max, m.clone()).unwrap(),
            m,
            dir,
        )
    }

    fn ids(entries: &[DeadLetterEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.id.as_str()).collect()
    }

    #[tokio::test]
    async fn lists_oldest_first_filters_updates_and_removes() {
        let (s, _, _) = sink(1 << 20);
        for i in 0..5 {
            s.put(&entry(i)).await.unwrap();
        }
        let (total, got) = s.list(Some(2), Some("even")).await.unwrap();
        assert_eq!(total, 3);
        assert_eq!(ids(&got), ["id-0", "id-2"]);
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
        let (s, m, _) = sink(line * 3);
        for i in 0..5 {
            s.put(&entry(i)).await.unwrap();
        }
        let (_, got) = s.list(None, None).await.unwrap();
        assert_eq!(ids(&got), ["id-2", "id-3", "id-4"]);
        assert_eq!(m.dead_letters_dropped.get(), 2);
    }

    /// The flood of issue #13: each dead letter used to rewrite the whole
    /// file. Now a write appends: the bytes already written stay where they
    /// are, in the same files (same inodes), sealed segments untouched.
    #[tokio::test]
    async fn appending_to_a_large_queue_does_not_rewrite_it() {
        let line = serde_json::to_string(&entry(0)).unwrap().len() as u64 + 1;
        // Segments of about 25 entries.
        let (s, m, dir) = sink(line * 200);
        let active = dir.join("dl.jsonl");
        // Until the second segment is sealed: the active one has just begun.
        let mut n = 0;
        while !dir.join("dl.jsonl.2").exists() {
            s.put(&entry(n)).await.unwrap();
            n += 1;
        }
        let sealed = dir.join("dl.jsonl.1");
        let before_active = std::fs::read(&active).unwrap();
        let before_sealed = std::fs::read(&sealed).unwrap();
        let (ino_active, ino_sealed) = (
            std::fs::metadata(&active).unwrap().ino(),
            std::fs::metadata(&sealed).unwrap().ino(),
        );

        // A put, an update and a removal of entries in a sealed segment.
        s.put(&entry(n)).await.unwrap();
        let mut e = entry(0);
        e.replays = 1;
        assert!(s.update(&e).await.unwrap());
        assert!(s.remove("id-1").await.unwrap());

        let after_active = std::fs::read(&active).unwrap();
        assert_eq!(std::fs::metadata(&active).unwrap().ino(), ino_active);
        assert_eq!(std::fs::metadata(&sealed).unwrap().ino(), ino_sealed);
        assert_eq!(std::fs::read(&sealed).unwrap(), before_sealed);
        assert!(after_active.starts_with(&before_active), "appended only");
        assert_eq!(
            after_active[before_active.len()..]
                .iter()
                .filter(|b| **b == b'\n')
                .count(),
            3,
            "three records appended"
        );

        let (total, got) = s.list(None, None).await.unwrap();
        assert_eq!(total, n);
        assert_eq!(got[0].id, "id-0");
        assert_eq!(got[0].replays, 1, "the update replaced it in place");
        assert!(!ids(&got).contains(&"id-1"));
        assert_eq!(got.last().unwrap().id, format!("id-{n}"));
        assert_eq!(m.dead_letters_dropped.get(), 0);
    }

    /// Over the bound, whole segments go, oldest first; an entry updated
    /// since (its latest version in a newer segment) survives, and only the
    /// entries lost are counted.
    #[tokio::test]
    async fn the_bound_drops_whole_segments_and_keeps_entries_updated_since() {
        let line = serde_json::to_string(&entry(0)).unwrap().len() as u64 + 1;
        // Segments of two entries: [id-0 id-1] [id-2] [update of id-0] ...
        let (s, m, dir) = sink(line * 16);
        for i in 0..3 {
            s.put(&entry(i)).await.unwrap();
        }
        let mut kept = entry(0);
        kept.replays = 1;
        assert!(s.update(&kept).await.unwrap());
        let mut n = 3;
        while m.dead_letters_dropped.get() == 0 {
            s.put(&entry(n)).await.unwrap();
            n += 1;
        }
        assert!(!dir.join("dl.jsonl.1").exists(), "the oldest segment went");
        assert!(dir.join("dl.jsonl.3").exists(), "the update's stayed");
        let (total, got) = s.list(None, None).await.unwrap();
        // id-0 now stands where its surviving version is, after id-2.
        assert_eq!(&ids(&got)[..2], ["id-2", "id-0"]);
        assert_eq!(got[1].replays, 1);
        assert!(!ids(&got).contains(&"id-1"));
        assert_eq!(m.dead_letters_dropped.get(), 1, "id-1 only");
        assert_eq!(total, n - 1);
        let on_disk: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .map(|f| f.unwrap().metadata().unwrap().len())
            .sum();
        assert!(on_disk <= line * 16, "{on_disk}");
    }

    /// A queue written before segments (one file up to the bound) is split
    /// when opened: the bound then drops its oldest part, not all of it.
    #[tokio::test]
    async fn a_single_file_queue_is_split_so_the_bound_drops_only_its_oldest_part() {
        let line = serde_json::to_string(&entry(0)).unwrap().len() as u64 + 1;
        let dir = std::env::temp_dir().join(format!("relay-dlq-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dl.jsonl");
        let old: String = (0..8)
            .map(|i| serde_json::to_string(&entry(i)).unwrap() + "\n")
            .collect();
        std::fs::write(&path, old).unwrap();
        let m = Arc::new(Metrics::new());
        // Segments of two entries; the file holds eight.
        let s = FileSink::open(path.clone(), line * 16, m.clone()).unwrap();
        assert!(!path.exists());
        assert!(dir.join("dl.jsonl.4").exists());
        assert_eq!(s.list(None, None).await.unwrap().0, 8);
        for i in 8..17 {
            s.put(&entry(i)).await.unwrap();
        }
        let (total, got) = s.list(None, None).await.unwrap();
        assert_eq!(m.dead_letters_dropped.get(), 2);
        assert_eq!(total, 15);
        assert_eq!(got[0].id, "id-2");
    }

    #[tokio::test]
    async fn reopening_reads_every_segment_and_skips_a_torn_line() {
        let line = serde_json::to_string(&entry(0)).unwrap().len() as u64 + 1;
        let (s, _, dir) = sink(line * 32);
        for i in 0..10 {
            s.put(&entry(i)).await.unwrap();
        }
        assert!(s.remove("id-3").await.unwrap());
        drop(s);
        // A crash in the middle of a write.
        let active = dir.join("dl.jsonl");
        let mut text = std::fs::read(&active).unwrap();
        text.extend_from_slice(br#"{"id":"torn","failed_at"#);
        std::fs::write(&active, text).unwrap();

        let m = Arc::new(Metrics::new());
        let s = FileSink::open(active, line * 32, m).unwrap();
        s.put(&entry(10)).await.unwrap();
        let (total, got) = s.list(None, None).await.unwrap();
        assert_eq!(total, 10);
        assert!(!ids(&got).contains(&"id-3"));
        assert_eq!(got.last().unwrap().id, "id-10");
        assert!(!s.remove("id-3").await.unwrap());
        assert!(s.remove("id-4").await.unwrap());
    }

    /// A reload opens the queue again while the old engine may still write:
    /// one sink per queue, so two writers never seal segments under the
    /// same name; the new bound applies.
    #[tokio::test]
    async fn opening_an_open_queue_shares_its_sink_with_the_new_bound() {
        let line = serde_json::to_string(&entry(0)).unwrap().len() as u64 + 1;
        let (s, m, dir) = sink(1 << 20);
        for i in 0..4 {
            s.put(&entry(i)).await.unwrap();
        }
        let again = FileSink::open(dir.join("dl.jsonl"), line * 2, m.clone()).unwrap();
        assert!(Arc::ptr_eq(&s, &again));
        s.put(&entry(4)).await.unwrap();
        assert_eq!(again.list(None, None).await.unwrap().0, 1, "the new bound");
        assert_eq!(m.dead_letters_dropped.get(), 4);
        drop((s, again));
        let fresh = FileSink::open(dir.join("dl.jsonl"), 1 << 20, m).unwrap();
        assert_eq!(fresh.list(None, None).await.unwrap().0, 1);
    }

    /// Issue #13: dead letters hold whole events; they were created
    /// world-readable.
    #[tokio::test]
    async fn files_are_private_to_the_relay_user() {
        let line = serde_json::to_string(&entry(0)).unwrap().len() as u64 + 1;
        let base = std::env::temp_dir().join(format!("relay-dlq-{}", uuid::Uuid::new_v4()));
        let dir = base.join("nested");
        let m = Arc::new(Metrics::new());
        let s = FileSink::open(dir.join("dl.jsonl"), line * 8, m).unwrap();
        for i in 0..4 {
            s.put(&entry(i)).await.unwrap();
        }
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&base), 0o700);
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|f| f.unwrap().path())
            .collect();
        assert!(files.len() > 1, "sealed segments too: {files:?}");
        for f in files {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }

        // A file left world-readable by an earlier version is restricted.
        let old = base.join("old.jsonl");
        std::fs::write(&old, "").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        FileSink::open(old.clone(), 1 << 20, Arc::new(Metrics::new())).unwrap();
        assert_eq!(mode(&old), 0o600);
    }
}
