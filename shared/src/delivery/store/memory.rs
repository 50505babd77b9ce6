//! In-process store for `relay serve` and single-replica installs.
//!
//! Bounded: at most `maxEntries` records and about `maxBytes` of keys and
//! values (`memory://?maxEntries=…&maxBytes=…`); past either, the least
//! recently used records go first, each counted in
//! `relay_store_evictions_total`. Without the bound, anyone who can send
//! events could fill the process with distinct ids kept for a day.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lru::LruCache;

use super::{Claim, IdempotencyStore, StoreError, Versioned};

#[derive(Debug, Clone)]
enum Record {
    Held { owner: String, until: Instant },
    Done { until: Instant },
}

impl Record {
    fn live(&self, now: Instant) -> bool {
        match self {
            Record::Held { until, .. } | Record::Done { until } => *until > now,
        }
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Record(Record),
    Versioned(Versioned, Instant),
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        match self {
            Entry::Record(r) => r.live(now),
            Entry::Versioned(_, until) => *until > now,
        }
    }

    /// About what the entry takes, its key included.
    fn weight(&self, key: &str) -> usize {
        const OVERHEAD: usize = 96;
        OVERHEAD
            + key.len()
            + match self {
                Entry::Record(Record::Held { owner, .. }) => owner.len(),
                Entry::Record(Record::Done { .. }) => 0,
                Entry::Versioned(v, _) => v.value.len(),
            }
    }
}

/// Records and versioned records live in separate key spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Record,
    Versioned,
}

type Key = (Kind, String);

/// Sweep expired records once the map has grown by this many inserts.
const SWEEP_EVERY: usize = 4096;

/// The bounds of a memory store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Records kept at most (`maxEntries`, default 100000).
    pub max_entries: usize,
    /// Bytes of keys and values kept at most, about (`maxBytes`, default
    /// 256 MiB).
    pub max_bytes: usize,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryLimits {
            max_entries: 100_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

impl MemoryLimits {
    /// `memory`, or `memory://` with `maxEntries` and `maxBytes` query
    /// parameters.
    pub fn parse(url: &str) -> Result<MemoryLimits, String> {
        let mut limits = MemoryLimits::default();
        let Some(rest) = url.strip_prefix("memory") else {
            return Err(format!("not a memory store URL: {url:?}"));
        };
        let query = match rest {
            "" | "://" => return Ok(limits),
            r => r
                .strip_prefix("://?")
                .or_else(|| r.strip_prefix("?"))
                .ok_or_else(|| {
                    "write the memory store as `memory` or `memory://?maxEntries=N&maxBytes=N`"
                        .to_string()
                })?,
        };
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let n = v
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{k} must be a whole number above 0, got {v:?}"));
            match k.as_ref() {
                "maxEntries" => limits.max_entries = n?,
                "maxBytes" => limits.max_bytes = n?,
                other => {
                    return Err(format!(
                        "unknown memory store parameter {other:?}, expected maxEntries or maxBytes"
                    ));
                }
            }
        }
        Ok(limits)
    }
}

pub struct MemoryStore {
    inner: Mutex<Inner>,
    limits: MemoryLimits,
    /// Counts records dropped to stay within the limits, once the engine
    /// hands its metric over.
    evictions: OnceLock<prometheus::IntCounter>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(MemoryLimits::default())
    }
}

struct Inner {
    entries: LruCache<Key, Entry>,
    bytes: usize,
    inserts_since_sweep: usize,
}

impl Inner {
    /// The live entry under `key` (now the most recently used); an expired
    /// one is dropped.
    fn live(&mut self, kind: Kind, key: &str, now: Instant) -> Option<&Entry> {
        let k = (kind, key.to_string());
        if self.entries.peek(&k).is_some_and(|e| !e.live(now)) {
            self.remove(&k);
            return None;
        }
        self.entries.get(&k)
    }

    fn remove(&mut self, k: &Key) {
        if let Some(e) = self.entries.pop(k) {
            self.bytes = self.bytes.saturating_sub(e.weight(&k.1));
        }
    }

    /// Inserts, then drops expired entries now and then and the least
    /// recently used ones while over `limits`; returns how many of the
    /// latter it dropped.
    fn insert(
        &mut self,
        kind: Kind,
        key: &str,
        entry: Entry,
        now: Instant,
        limits: MemoryLimits,
    ) -> u64 {
        self.bytes += entry.weight(key);
        if let Some((k, old)) = self.entries.push((kind, key.to_string()), entry) {
            self.bytes = self.bytes.saturating_sub(old.weight(&k.1));
        }
        self.inserts_since_sweep += 1;
        if self.inserts_since_sweep >= SWEEP_EVERY {
            let expired: Vec<Key> = self
                .entries
                .iter()
                .filter(|(_, e)| !e.live(now))
                .map(|(k, _)| k.clone())
                .collect();
            for k in &expired {
                self.remove(k);
            }
            self.inserts_since_sweep = 0;
        }
        let mut evicted = 0;
        // The entry just written is the most recently used: it goes last,
        // and only if it alone is over the byte bound.
        while self.entries.len() > limits.max_entries || self.bytes > limits.max_bytes {
            let Some((k, e)) = self.entries.pop_lru() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(e.weight(&k.1));
            evicted += 1;
        }
        evicted
    }
}

/// `now + d`, or far ahead when that is past what the clock holds (a TTL
/// from configuration must not panic a store operation).
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

impl MemoryStore {
    pub fn new(limits: MemoryLimits) -> MemoryStore {
        MemoryStore {
            inner: Mutex::new(Inner {
                entries: LruCache::unbounded(),
                bytes: 0,
                inserts_since_sweep: 0,
            }),
            limits,
            evictions: OnceLock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a record half-written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, inner: &mut Inner, kind: Kind, key: &str, entry: Entry, now: Instant) {
        let evicted = inner.insert(kind, key, entry, now, self.limits);
        if evicted > 0 {
            if let Some(c) = self.evictions.get() {
                c.inc_by(evicted);
            }
            tracing::debug!(
                evicted,
                "memory store full: least recently used records dropped"
            );
        }
    }

    /// Records held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// About how many bytes of keys and values the store holds.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn limits(&self) -> MemoryLimits {
        self.limits
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn count_evictions(&self, counter: prometheus::IntCounter) {
        let _ = self.evictions.set(counter);
    }

    async fn claim(&self, key: &str, owner: &str, lease: Duration) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.live(Kind::Record, key, now) {
            Some(Entry::Record(Record::Done { .. })) => Ok(Claim::Done),
            Some(_) => Ok(Claim::InProgress),
            None => {
                let rec = Record::Held {
                    owner: owner.to_string(),
                    until: after(now, lease),
                };
                self.insert(&mut inner, Kind::Record, key, Entry::Record(rec), now);
                Ok(Claim::Acquired)
            }
        }
    }

    async fn complete(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.live(Kind::Record, key, now) {
            Some(Entry::Record(Record::Held { owner: o, .. })) if o == owner => {
                let done = Record::Done {
                    until: after(now, ttl),
                };
                self.insert(&mut inner, Kind::Record, key, Entry::Record(done), now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, key: &str, owner: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.live(Kind::Record, key, now) {
            Some(Entry::Record(Record::Held { owner: o, .. })) if o == owner => {
                inner.remove(&(Kind::Record, key.to_string()));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn mark_done(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let done = Record::Done {
            until: after(now, ttl),
        };
        let mut inner = self.lock();
        self.insert(&mut inner, Kind::Record, key, Entry::Record(done), now);
        Ok(())
    }

    async fn is_done(&self, key: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        Ok(matches!(
            self.lock().live(Kind::Record, key, now),
            Some(Entry::Record(Record::Done { .. }))
        ))
    }

    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let now = Instant::now();
        Ok(match self.lock().live(Kind::Versioned, key, now) {
            Some(Entry::Versioned(v, _)) => Some(v.clone()),
            _ => None,
        })
    }

    async fn put_if_version(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<u64>,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let current = match inner.live(Kind::Versioned, key, now) {
            Some(Entry::Versioned(v, _)) => Some(v.version),
            _ => None,
        };
        if current != expected {
            return Ok(None);
        }
        let version = current.unwrap_or(0) + 1;
        let rec = Versioned {
            version,
            value: value.to_vec(),
        };
        let entry = Entry::Versioned(rec, after(now, ttl));
        self.insert(&mut inner, Kind::Versioned, key, entry, now);
        Ok(Some(version))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn claim_complete_release_cycle() {
        let s = MemoryStore::default();
        assert_eq!(s.claim("k", "a", LONG).await.unwrap(), Claim::Acquired);
        assert_eq!(s.claim("k", "b", LONG).await.unwrap(), Claim::InProgress);
        assert!(
            !s.release("k", "b").await.unwrap(),
            "only the owner releases"
        );
        assert!(s.release("k", "a").await.unwrap());
        assert_eq!(s.claim("k", "b", LONG).await.unwrap(), Claim::Acquired);
        assert!(
            !s.complete("k", "a", LONG).await.unwrap(),
            "only the owner completes"
        );
        assert!(s.complete("k", "b", LONG).await.unwrap());
        assert_eq!(s.claim("k", "c", LONG).await.unwrap(), Claim::Done);
        assert!(s.is_done("k").await.unwrap());
    }

    #[tokio::test]
    async fn expired_lease_and_ttl_count_as_absent() {
        let s = MemoryStore::default();
        assert_eq!(
            s.claim("k", "a", Duration::ZERO).await.unwrap(),
            Claim::Acquired
        );
        assert_eq!(s.claim("k", "b", LONG).await.unwrap(), Claim::Acquired);
        assert!(
            !s.complete("k", "a", LONG).await.unwrap(),
            "a's lease ran out"
        );
        s.mark_done("d", Duration::ZERO).await.unwrap();
        assert!(!s.is_done("d").await.unwrap());
    }

    #[tokio::test]
    async fn concurrent_claims_have_one_winner() {
        let s = Arc::new(MemoryStore::default());
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.claim("k", &format!("o{i}"), LONG).await.unwrap() })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            if t.await.unwrap() == Claim::Acquired {
                won += 1;
            }
        }
        assert_eq!(won, 1);
    }

    #[test]
    fn limits_from_the_url() {
        assert_eq!(MemoryLimits::parse("memory"), Ok(MemoryLimits::default()));
        assert_eq!(
            MemoryLimits::parse("memory://"),
            Ok(MemoryLimits::default())
        );
        assert_eq!(
            MemoryLimits::parse("memory://?maxEntries=10&maxBytes=4096"),
            Ok(MemoryLimits {
                max_entries: 10,
                max_bytes: 4096
            })
        );
        for bad in [
            "memory://?maxEntries=0",
            "memory://?maxEntries=-1",
            "memory://?maxentries=5",
            "memory://host",
        ] {
            assert!(MemoryLimits::parse(bad).is_err(), "{bad}");
        }
    }

    /// Ten thousand distinct ids (each near the body limit's worth of key
    /// after the store's key bound) keep the store at its bounds, the
    /// evictions counted; the most recent records are the ones kept.
    #[tokio::test]
    async fn a_flood_of_distinct_keys_stays_within_the_bounds() {
        let limits = MemoryLimits {
            max_entries: 1000,
            max_bytes: 1 << 30,
        };
        let s = MemoryStore::new(limits);
        let evictions = prometheus::IntCounter::new("e", "e").unwrap();
        s.count_evictions(evictions.clone());
        let day = Duration::from_secs(86400);
        for i in 0..10_000 {
            let k = format!("n/x/id/{i}");
            assert_eq!(s.claim(&k, "o", LONG).await.unwrap(), Claim::Acquired);
            assert!(s.complete(&k, "o", day).await.unwrap());
            assert!(s.len() <= 1000);
        }
        assert_eq!(s.len(), 1000);
        assert_eq!(evictions.get(), 9000);
        assert!(s.is_done("n/x/id/9999").await.unwrap());
        assert!(!s.is_done("n/x/id/0").await.unwrap());

        // The byte bound holds too: big versioned values push out old ones.
        let s = MemoryStore::new(MemoryLimits {
            max_entries: 1_000_000,
            max_bytes: 1 << 20,
        });
        let value = vec![b'x'; 64 * 1024];
        for i in 0..100 {
            s.put_if_version(&format!("acc/{i}"), &value, None, day)
                .await
                .unwrap();
            assert!(s.bytes() <= 1 << 20, "{}", s.bytes());
        }
        assert!(s.len() < 20, "{}", s.len());
        assert!(s.get("acc/99").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_ttl_past_the_clock_does_not_panic() {
        let s = MemoryStore::default();
        assert_eq!(
            s.claim("k", "a", Duration::MAX).await.unwrap(),
            Claim::Acquired
        );
        assert!(
            s.complete("k", "a", Duration::from_secs(u64::MAX))
                .await
                .unwrap()
        );
        s.mark_done("d", Duration::MAX).await.unwrap();
        assert!(s.is_done("d").await.unwrap());
        assert_eq!(
            s.put_if_version("v", b"1", None, Duration::MAX)
                .await
                .unwrap(),
            Some(1)
        );
    }
}
