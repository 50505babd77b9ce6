//! In-process store for `relay serve` and single-replica installs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

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

/// Sweep expired records once the map has grown by this many inserts.
const SWEEP_EVERY: usize = 4096;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    records: HashMap<String, Record>,
    versioned: HashMap<String, (Versioned, Instant)>,
    inserts_since_sweep: usize,
}

impl Inner {
    fn live(&mut self, key: &str, now: Instant) -> Option<&Record> {
        if self.records.get(key).is_some_and(|r| !r.live(now)) {
            self.records.remove(key);
        }
        self.records.get(key)
    }

    fn insert(&mut self, key: &str, rec: Record, now: Instant) {
        self.records.insert(key.to_string(), rec);
        self.inserts_since_sweep += 1;
        if self.inserts_since_sweep >= SWEEP_EVERY {
            self.records.retain(|_, r| r.live(now));
            self.versioned.retain(|_, (_, until)| *until > now);
            self.inserts_since_sweep = 0;
        }
    }
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a record half-written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn claim(&self, key: &str, owner: &str, lease: Duration) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.live(key, now) {
            Some(Record::Done { .. }) => Ok(Claim::Done),
            Some(Record::Held { .. }) => Ok(Claim::InProgress),
            None => {
                let rec = Record::Held {
                    owner: owner.to_string(),
                    until: now + lease,
                };
                inner.insert(key, rec, now);
                Ok(Claim::Acquired)
            }
        }
    }

    async fn complete(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.live(key, now) {
            Some(Record::Held { owner: o, .. }) if o == owner => {
                inner.insert(key, Record::Done { until: now + ttl }, now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, key: &str, owner: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.live(key, now) {
            Some(Record::Held { owner: o, .. }) if o == owner => {
                inner.records.remove(key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn mark_done(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        self.lock()
            .insert(key, Record::Done { until: now + ttl }, now);
        Ok(())
    }

    async fn is_done(&self, key: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        Ok(matches!(
            self.lock().live(key, now),
            Some(Record::Done { .. })
        ))
    }

    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let now = Instant::now();
        let inner = self.lock();
        Ok(inner
            .versioned
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.clone()))
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
        let current = inner
            .versioned
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.version);
        if current != expected {
            return Ok(None);
        }
        let version = current.unwrap_or(0) + 1;
        let rec = Versioned {
            version,
            value: value.to_vec(),
        };
        inner.versioned.insert(key.to_string(), (rec, now + ttl));
        inner.inserts_since_sweep += 1;
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
}
