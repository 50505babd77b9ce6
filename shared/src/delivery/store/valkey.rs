//! Valkey / Redis store. Claims are atomic scripts (`SET NX PX` semantics with
//! a check of what is there), transitions are conditional on the owner, and
//! every key carries a TTL. The connection manager reconnects by itself, and
//! connects lazily, so a relay starts (and fails open) while the server is down.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::{Claim, IdempotencyStore, StoreError, Versioned};
use crate::event::secret::SecretFile;

const BACKEND: &str = "valkey";
const DONE: &str = "done";

/// Parsed `valkey://`, `redis://` or `rediss://` URL.
#[derive(Debug, Clone)]
pub struct ValkeyUrl {
    /// The URL handed to the client, without any password.
    url: url::Url,
    pub prefix: String,
    pub password_file: Option<SecretFile>,
}

impl ValkeyUrl {
    /// `valkey[s]://[user@]host:port[/db]?prefix=relay:&passwordFile=/path`.
    /// A password written into the URL is refused: it belongs in a file.
    pub fn parse(raw: &str) -> Result<ValkeyUrl, String> {
        let mut url = url::Url::parse(raw).map_err(|e| format!("invalid store URL: {e}"))?;
        let scheme = match url.scheme() {
            "valkey" | "redis" => "redis",
            "valkeys" | "rediss" => "rediss",
            other => return Err(format!("not a Valkey URL scheme: {other}")),
        };
        // The client reads `#insecure` as "skip TLS verification": refused,
        // with every other fragment (none means anything here).
        if url.fragment().is_some() {
            return Err(
                "the store URL has a fragment (`#…`): remove it; TLS verification \
                 cannot be turned off"
                    .into(),
            );
        }
        if url.password().is_some() {
            return Err(
                "put the store password in a file (?passwordFile=/path), not in the URL".into(),
            );
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the store URL needs a host".into());
        }
        let mut prefix = "relay:".to_string();
        let mut password_file = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "prefix" => prefix = v.into_owned(),
                "passwordFile" => {
                    password_file =
                        Some(SecretFile::parse(&v).map_err(|e| format!("passwordFile: {e}"))?);
                }
                other => {
                    return Err(format!(
                        "unknown store URL parameter {other:?}, expected prefix or passwordFile"
                    ));
                }
            }
        }
        url.set_query(None);
        // `url` cannot change a special scheme to a non-special one; rebuild.
        let rebuilt = format!("{scheme}{}", &url.as_str()[url.scheme().len()..]);
        let url = url::Url::parse(&rebuilt).map_err(|e| e.to_string())?;
        Ok(ValkeyUrl {
            url,
            prefix,
            password_file,
        })
    }
}

pub struct ValkeyStore {
    conn: ConnectionManager,
    prefix: String,
    claim: Script,
    complete: Script,
    release: Script,
    put_versioned: Script,
}

fn err(op: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError {
        backend: BACKEND,
        op,
        message: e.to_string(),
    }
}

/// A TTL in milliseconds as `PX` takes it: at least 1, and at most what
/// the server accepts (a larger one would be an error, not a long TTL).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, i64::MAX as u64 / 2)
}

impl ValkeyStore {
    /// Prepares the client; the first connection is made on first use.
    pub async fn open(raw: &str) -> Result<ValkeyStore, String> {
        let parsed = ValkeyUrl::parse(raw)?;
        let mut url = parsed.url.clone();
        if let Some(f) = &parsed.password_file {
            let pw = f.read().await.map_err(|e| e.to_string())?;
            url.set_password(Some(pw.expose()))
                .map_err(|()| "cannot set the store password".to_string())?;
        }
        let client = redis::Client::open(url.as_str()).map_err(|e| {
            // The client's error may echo the URL: report the kind only.
            format!("invalid Valkey URL ({:?})", e.kind())
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("cannot create the Valkey client: {:?}", e.kind()))?;
        Ok(ValkeyStore {
            conn,
            prefix: parsed.prefix,
            // Absent (or expired): take it. Done: say so. Held: in progress.
            claim: Script::new(
                r"local v = redis.call('GET', KEYS[1])
                  if not v then redis.call('SET', KEYS[1], 'h:' .. ARGV[1], 'PX', ARGV[2]) return 'acquired' end
                  if v == 'done' then return 'done' end
                  return 'held'",
            ),
            complete: Script::new(
                r"if redis.call('GET', KEYS[1]) == 'h:' .. ARGV[1] then
                    redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2]) return 1 end
                  return 0",
            ),
            release: Script::new(
                r"if redis.call('GET', KEYS[1]) == 'h:' .. ARGV[1] then
                    redis.call('DEL', KEYS[1]) return 1 end
                  return 0",
            ),
            // ARGV[1]: expected version ('' = must be absent); ARGV[2]: value; ARGV[3]: ttl ms.
            put_versioned: Script::new(
                r"local v = redis.call('HGET', KEYS[1], 'v')
                  if ARGV[1] == '' then
                    if v then return 0 end
                  elseif v ~= ARGV[1] then return 0 end
                  local nv = (tonumber(v) or 0) + 1
                  redis.call('HSET', KEYS[1], 'v', nv, 'd', ARGV[2])
                  redis.call('PEXPIRE', KEYS[1], ARGV[3])
                  return nv",
            ),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A handle on the same connection, for other records under the prefix.
    pub(crate) fn connection(&self) -> (ConnectionManager, &str) {
        (self.conn.clone(), &self.prefix)
    }
}

#[async_trait]
impl IdempotencyStore for ValkeyStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn claim(&self, key: &str, owner: &str, lease: Duration) -> Result<Claim, StoreError> {
        let mut conn = self.conn.clone();
        let r: String = self
            .claim
            .key(self.key(key))
            .arg(owner)
            .arg(millis(lease))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| err("claim", e))?;
        Ok(match r.as_str() {
            "acquired" => Claim::Acquired,
            "done" => Claim::Done,
            _ => Claim::InProgress,
        })
    }

    async fn complete(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let r: i64 = self
            .complete
            .key(self.key(key))
            .arg(owner)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| err("complete", e))?;
        Ok(r == 1)
    }

    async fn release(&self, key: &str, owner: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let r: i64 = self
            .release
            .key(self.key(key))
            .arg(owner)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| err("release", e))?;
        Ok(r == 1)
    }

    async fn mark_done(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let opts = redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(millis(ttl)));
        let _: () = conn
            .set_options(self.key(key), DONE, opts)
            .await
            .map_err(|e| err("mark_done", e))?;
        Ok(())
    }

    async fn is_done(&self, key: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let v: Option<String> = conn
            .get(self.key(key))
            .await
            .map_err(|e| err("is_done", e))?;
        Ok(v.as_deref() == Some(DONE))
    }

    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let mut conn = self.conn.clone();
        let (v, d): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(self.key(key))
            .arg("v")
            .arg("d")
            .query_async(&mut conn)
            .await
            .map_err(|e| err("get", e))?;
        Ok(v.zip(d)
            .map(|(version, value)| Versioned { version, value }))
    }

    async fn put_if_version(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<u64>,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let r: u64 = self
            .put_versioned
            .key(self.key(key))
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(value)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| err("put", e))?;
        Ok((r > 0).then_some(r))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| err("ping", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_refuses_inline_passwords() {
        let u = ValkeyUrl::parse("valkey://cache:6379/2?prefix=ci:&passwordFile=/run/pw").unwrap();
        assert_eq!(u.url.as_str(), "redis://cache:6379/2");
        assert_eq!(u.prefix, "ci:");
        assert_eq!(u.password_file, Some(SecretFile("/run/pw".into())));
        assert_eq!(
            ValkeyUrl::parse("rediss://h:1").unwrap().url.scheme(),
            "rediss"
        );
        let e = ValkeyUrl::parse("redis://:hunter2@h:1").unwrap_err();
        assert!(!e.contains("hunter2") && e.contains("passwordFile"));
        assert!(
            ValkeyUrl::parse("redis://h:1?db=2")
                .unwrap_err()
                .contains("unknown store URL parameter")
        );
    }

    /// The password may come from AWS (`#` of a JSON key written `%23`, as
    /// a store URL takes no fragment); a malformed reference is refused.
    #[test]
    fn the_password_may_be_an_aws_secret() {
        let u = ValkeyUrl::parse(
            "valkeys://cache:6379?passwordFile=secretsmanager://tekton-relay/valkey%23password",
        )
        .unwrap();
        assert_eq!(
            u.password_file.unwrap().source().unwrap(),
            crate::event::secret::SecretSource::SecretsManager {
                id: "tekton-relay/valkey".into(),
                key: Some("password".into())
            }
        );
        let u = ValkeyUrl::parse("valkey://cache:6379?passwordFile=ssm://relay/valkey").unwrap();
        assert_eq!(
            u.password_file,
            Some(SecretFile("ssm://relay/valkey".into()))
        );
        let e = ValkeyUrl::parse("valkey://cache:6379?passwordFile=ssm://").unwrap_err();
        assert!(e.starts_with("passwordFile: ssm:// needs"), "{e}");
    }

    /// `rediss://…#insecure` would make the client skip TLS verification.
    #[test]
    fn insecure_fragment_is_refused() {
        for url in [
            "rediss://h:6379/#insecure",
            "valkeys://h:1#insecure",
            "redis://h:1#x",
        ] {
            let e = ValkeyUrl::parse(url).unwrap_err();
            assert!(e.contains("fragment"), "{url}: {e}");
        }
    }
}
