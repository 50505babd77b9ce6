//! Shared idempotency state. The trait is shaped for a remote, shared,
//! concurrent store: every transition is a single atomic, conditional
//! operation, so two replicas can race on one key safely.

pub mod dynamodb;
pub mod memory;
pub mod valkey;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// Result of trying to claim a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the key until its lease runs out.
    Acquired,
    /// Someone else holds it and has not finished.
    InProgress,
    /// The effect behind the key already happened.
    Done,
}

/// A record with its version, for compare-and-set updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    pub value: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("{backend} store {op} failed: {message}")]
pub struct StoreError {
    pub backend: &'static str,
    pub op: &'static str,
    pub message: String,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Short backend name for metrics and `/readyz` (`memory`, `valkey`, …).
    fn backend(&self) -> &'static str;

    /// Atomic put-if-absent: takes `key` for `owner` with a lease. An expired
    /// lease counts as absent, so a crashed holder never blocks a key forever.
    async fn claim(&self, key: &str, owner: &str, lease: Duration) -> Result<Claim, StoreError>;

    /// Marks `key` done for `ttl`, only if `owner` still holds it.
    async fn complete(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Drops the claim, only if `owner` still holds it, so a retry runs again.
    async fn release(&self, key: &str, owner: &str) -> Result<bool, StoreError>;

    /// Unconditionally records `key` as done for `ttl`.
    async fn mark_done(&self, key: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Is `key` recorded as done (and not expired)?
    async fn is_done(&self, key: &str) -> Result<bool, StoreError>;

    /// Reads a versioned record (absent or expired: `None`).
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Compare-and-set: writes `value` only if the record is at version
    /// `expected` (`None`: absent or expired), with a fresh TTL. Returns the
    /// new version, or `None` when someone else wrote first.
    async fn put_if_version(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<u64>,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError>;

    /// Cheap reachability check for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Counts on `counter` the records a bounded store drops to stay within
    /// its bounds (the memory store); remote stores expire records by TTL
    /// only and ignore it.
    fn count_evictions(&self, _counter: prometheus::IntCounter) {}
}

/// Longest store key kept as written, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// How much of a long key is kept readable before its digest.
const KEY_PREFIX_BYTES: usize = 64;
/// Marks a key that stands for a longer one; a key that holds it is always
/// digested too, so no key as written can equal another's digest form.
const DIGEST_MARK: &str = "#sha256=";

/// A store key of bounded size. Keys carry event text (an event id, a run's
/// uid) that a sender makes as long as the body limit allows, and records
/// live for a day: a key over [`MAX_KEY_BYTES`] is stored as its start and
/// the SHA-256 of the whole, the same key for the same text, so
/// idempotency holds while no key (and no remote store item) grows with
/// the input.
pub fn bounded_key(key: &str) -> std::borrow::Cow<'_, str> {
    use sha2::Digest;
    if key.len() <= MAX_KEY_BYTES && !key.contains(DIGEST_MARK) {
        return std::borrow::Cow::Borrowed(key);
    }
    let mut cut = KEY_PREFIX_BYTES.min(key.len());
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = sha2::Sha256::digest(key.as_bytes());
    std::borrow::Cow::Owned(format!(
        "{}{DIGEST_MARK}{}",
        &key[..cut],
        hex::encode(digest)
    ))
}

/// A store whose every key goes through [`bounded_key`]: the one place
/// store keys are bounded, whatever built them (the engine's claims, the
/// accumulator, the message ids of chat providers) and whatever backend.
pub struct BoundedKeys<S>(pub S);

#[async_trait]
impl<S: IdempotencyStore> IdempotencyStore for BoundedKeys<S> {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }

    async fn claim(&self, key: &str, owner: &str, lease: Duration) -> Result<Claim, StoreError> {
        self.0.claim(&bounded_key(key), owner, lease).await
    }

    async fn complete(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.0.complete(&bounded_key(key), owner, ttl).await
    }

    async fn release(&self, key: &str, owner: &str) -> Result<bool, StoreError> {
        self.0.release(&bounded_key(key), owner).await
    }

    async fn mark_done(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        self.0.mark_done(&bounded_key(key), ttl).await
    }

    async fn is_done(&self, key: &str) -> Result<bool, StoreError> {
        self.0.is_done(&bounded_key(key)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.0.get(&bounded_key(key)).await
    }

    async fn put_if_version(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<u64>,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        self.0
            .put_if_version(&bounded_key(key), value, expected, ttl)
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.0.ping().await
    }

    fn count_evictions(&self, counter: prometheus::IntCounter) {
        self.0.count_evictions(counter)
    }
}

pub type SharedStore = Arc<dyn IdempotencyStore>;

/// Checks a store URL without connecting.
pub fn check_url(url: &str) -> Result<(), String> {
    // A fragment means nothing to a store but something to a client: the
    // Valkey client reads `#insecure` as "do not verify the server's TLS
    // certificate". None is taken, so no URL can turn verification off.
    if url.contains('#') {
        return Err(format!(
            "the store URL {:?} has a fragment (`#…`): remove it; store URLs take none \
             (TLS verification cannot be turned off)",
            url.split('#').next().unwrap_or_default()
        ));
    }
    if url.starts_with("memory") {
        return memory::MemoryLimits::parse(url).map(|_| ());
    }
    let scheme = url.split("://").next().unwrap_or(url);
    match scheme {
        "valkey" | "valkeys" | "redis" | "rediss" => valkey::ValkeyUrl::parse(url).map(|_| ()),
        "dynamodb" => dynamodb::DynamoUrl::parse(url).map(|_| ()),
        _ => Err(format!(
            "unknown store {url:?}, expected `memory`, `valkey://…`, `redis://…` or `dynamodb://…`"
        )),
    }
}

/// Opens the store named by a `RelayConfig` store URL. Remote stores connect
/// lazily: an unreachable server does not stop the relay (it fails open).
pub async fn open(url: &str) -> Result<SharedStore, String> {
    check_url(url)?;
    if url.starts_with("memory") {
        let limits = memory::MemoryLimits::parse(url)?;
        return Ok(Arc::new(BoundedKeys(memory::MemoryStore::new(limits))));
    }
    if url.starts_with("dynamodb://") {
        return Ok(Arc::new(BoundedKeys(
            dynamodb::DynamoStore::open(url).await?,
        )));
    }
    Ok(Arc::new(BoundedKeys(valkey::ValkeyStore::open(url).await?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fragment_cannot_turn_tls_verification_off() {
        for url in [
            "rediss://cache.example:6379/#insecure",
            "valkeys://cache.example:6379#insecure",
            "redis://cache.example:6379/0?prefix=r:#x",
            "dynamodb://table#insecure",
            "memory#insecure",
        ] {
            let e = check_url(url).unwrap_err();
            assert!(e.contains("fragment"), "{url}: {e}");
        }
        check_url("rediss://cache.example:6379/0?prefix=relay:").unwrap();
    }

    #[test]
    fn long_keys_are_bounded_and_stay_distinct() {
        assert_eq!(bounded_key("n/a/id/1"), "n/a/id/1");
        let long = format!("n/a/id/{}", "€".repeat(100_000));
        let k = bounded_key(&long);
        assert!(k.len() <= MAX_KEY_BYTES, "{}", k.len());
        assert!(long.starts_with(k.split(DIGEST_MARK).next().unwrap()));
        assert_eq!(bounded_key(&long), k, "the same text, the same key");
        let other = format!("{long}x");
        assert_ne!(bounded_key(&other), k);
        // A short key written to look like a digest form is digested too.
        assert_ne!(bounded_key(&k), k);
    }

    /// A store opened from a URL bounds its keys: ten thousand ids each
    /// longer than the bound do not make the memory store hold their text.
    #[tokio::test]
    async fn an_opened_store_bounds_long_keys() {
        let s = open("memory://?maxEntries=100").await.unwrap();
        let pad = "x".repeat(4 * MAX_KEY_BYTES);
        for i in 0..10_000 {
            let k = format!("n/a/id/{i}{pad}");
            assert_eq!(
                s.claim(&k, "o", Duration::from_secs(60)).await.unwrap(),
                Claim::Acquired
            );
            assert_eq!(
                s.claim(&k, "p", Duration::from_secs(60)).await.unwrap(),
                Claim::InProgress,
                "the bounded key still identifies the id"
            );
        }
        let mem = memory::MemoryStore::new(memory::MemoryLimits {
            max_entries: 100,
            max_bytes: usize::MAX,
        });
        let bounded = BoundedKeys(mem);
        for i in 0..10_000 {
            let k = format!("n/a/id/{i}{pad}");
            bounded
                .claim(&k, "o", Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(bounded.0.len(), 100);
        // Each record holds its bounded key, not the id's text.
        assert!(
            bounded.0.bytes() <= 100 * (MAX_KEY_BYTES + 200),
            "{}",
            bounded.0.bytes()
        );
    }
}
