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
}

pub type SharedStore = Arc<dyn IdempotencyStore>;

/// Checks a store URL without connecting.
pub fn check_url(url: &str) -> Result<(), String> {
    if url == "memory" || url == "memory://" {
        return Ok(());
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
        return Ok(Arc::new(memory::MemoryStore::default()));
    }
    if url.starts_with("dynamodb://") {
        return Ok(Arc::new(dynamodb::DynamoStore::open(url).await?));
    }
    Ok(Arc::new(valkey::ValkeyStore::open(url).await?))
}
