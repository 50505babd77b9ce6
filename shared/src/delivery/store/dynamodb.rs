//! DynamoDB store: one table, conditional writes that treat an expired
//! record as absent (DynamoDB's TTL deletion is lazy, so an item may outlive
//! its expiry by hours), and a TTL attribute in epoch seconds.
//!
//! # Table schema
//!
//! This is the one description of the table; `infra/` creates it from here.
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `pk` | S, partition key | the key (`n/<notification>/id/<ce-id>`, `acc/<uid>`, …) |
//! | `st` | S | claims: `held` or `done` |
//! | `owner` | S | claims: who holds a `held` claim |
//! | `ver` | N | records: version, for compare-and-set |
//! | `val` | B | records: the value |
//! | `exp_ms` | N | expiry in epoch milliseconds; past it the item counts as absent |
//! | `ttl` | N | expiry in epoch seconds: the table's TTL attribute |
//!
//! No sort key, no indexes; billing on demand suits the bursty load.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveSpecification,
};

use super::{Claim, IdempotencyStore, StoreError, Versioned};

const BACKEND: &str = "dynamodb";
pub const PARTITION_KEY: &str = "pk";
pub const TTL_ATTRIBUTE: &str = "ttl";

/// Parsed `dynamodb://TABLE?region=…&endpoint=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoUrl {
    pub table: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

impl DynamoUrl {
    pub fn parse(raw: &str) -> Result<DynamoUrl, String> {
        let rest = raw
            .strip_prefix("dynamodb://")
            .ok_or_else(|| format!("not a dynamodb:// URL: {raw:?}"))?;
        let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
        let table = table.trim_end_matches('/');
        let valid = (3..=255).contains(&table.len())
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(format!("invalid DynamoDB table name {table:?}"));
        }
        let mut url = DynamoUrl {
            table: table.to_string(),
            region: None,
            endpoint: None,
        };
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "region" => url.region = Some(v.into_owned()),
                "endpoint" => url.endpoint = Some(v.into_owned()),
                other => {
                    return Err(format!(
                        "unknown store URL parameter {other:?}, expected region or endpoint"
                    ));
                }
            }
        }
        Ok(url)
    }
}

pub struct DynamoStore {
    client: Client,
    table: String,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn err<E>(op: &'static str, e: E) -> StoreError
where
    E: std::error::Error + 'static,
{
    StoreError {
        backend: BACKEND,
        op,
        message: DisplayErrorContext(e).to_string(),
    }
}

/// Is this a conditional-check failure (someone else's write won)?
fn conditional<E: ProvideErrorMetadata>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool {
    e.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

fn num(item: &std::collections::HashMap<String, AttributeValue>, k: &str) -> Option<i64> {
    item.get(k)?.as_n().ok()?.parse().ok()
}

impl DynamoStore {
    pub async fn open(raw: &str) -> Result<DynamoStore, String> {
        let url = DynamoUrl::parse(raw)?;
        let mut loader = crate::event::config::aws::loader().timeout_config(
            // Generous: past these the relay fails open (delivers without
            // idempotency), which a slow moment must not trigger.
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        );
        if let Some(r) = &url.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(e) = &url.endpoint {
            loader = loader.endpoint_url(e);
        }
        let conf = loader.load().await;
        Ok(DynamoStore::from_conf(&conf, &url.table))
    }

    /// A store over an already-built SDK configuration.
    pub fn from_conf(conf: &aws_config::SdkConfig, table: &str) -> DynamoStore {
        DynamoStore {
            client: Client::new(conf),
            table: table.to_string(),
        }
    }

    pub(crate) fn client(&self) -> (&Client, &str) {
        (&self.client, &self.table)
    }

    /// Creates the table with the schema above (for local development and
    /// tests; production tables come from `infra/`).
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(PARTITION_KEY)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| err("create_table", e))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(PARTITION_KEY)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| err("create_table", e))?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error().and_then(ProvideErrorMetadata::code)
                    == Some("ResourceInUseException") =>
            {
                return Ok(());
            }
            Err(e) => return Err(err("create_table", e)),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .map_err(|e| err("create_table", e))?,
            )
            .send()
            .await
            .map_err(|e| err("create_table", e))?;
        Ok(())
    }

    fn expiry(ttl: Duration) -> (AttributeValue, AttributeValue) {
        // Saturating: a TTL past what an i64 of milliseconds holds is the
        // far future, not an overflow.
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let exp = now_ms().saturating_add(ttl_ms);
        (n(exp), n(exp / 1000 + 1))
    }

    async fn item(
        &self,
        op: &'static str,
        key: &str,
    ) -> Result<Option<std::collections::HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| err(op, e))?;
        let now = now_ms();
        Ok(out
            .item
            .filter(|i| num(i, "exp_ms").is_some_and(|e| e >= now)))
    }
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn claim(&self, key: &str, owner: &str, lease: Duration) -> Result<Claim, StoreError> {
        let (exp, ttl) = Self::expiry(lease);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PARTITION_KEY, s(key))
            .item("st", s("held"))
            .item("owner", s(owner))
            .item("exp_ms", exp)
            .item(TTL_ATTRIBUTE, ttl)
            .condition_expression("attribute_not_exists(pk) OR exp_ms < :now")
            .expression_attribute_values(":now", n(now_ms()))
            // A refused claim returns the item that refused it: whether it
            // is done or held is known without a second request.
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claim::Acquired),
            Err(e) if conditional(&e) => {
                // Someone holds it, or it is done. If it vanished meanwhile,
                // answer in-progress: the sender's retry settles it.
                use aws_sdk_dynamodb::operation::put_item::PutItemError;
                let refused = match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(c)) => c.item.clone(),
                    _ => None,
                };
                let item = match refused {
                    Some(item) => Some(item),
                    // A store that does not return it (DynamoDB always does).
                    None => self.item("claim", key).await?,
                };
                let done = item.is_some_and(|i| {
                    i.get("st")
                        .and_then(|v| v.as_s().ok())
                        .is_some_and(|v| v == "done")
                });
                Ok(if done { Claim::Done } else { Claim::InProgress })
            }
            Err(e) => Err(err("claim", e)),
        }
    }

    async fn complete(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (exp, ttl) = Self::expiry(ttl);
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(key))
            .update_expression("SET st = :done, exp_ms = :exp, #ttl = :ttl REMOVE #owner")
            .condition_expression("st = :held AND #owner = :owner AND exp_ms >= :now")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":held", s("held"))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":exp", exp)
            .expression_attribute_values(":ttl", ttl)
            .expression_attribute_values(":now", n(now_ms()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if conditional(&e) => Ok(false),
            Err(e) => Err(err("complete", e)),
        }
    }

    async fn release(&self, key: &str, owner: &str) -> Result<bool, StoreError> {
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(key))
            .condition_expression("st = :held AND #owner = :owner AND exp_ms >= :now")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":held", s("held"))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now", n(now_ms()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if conditional(&e) => Ok(false),
            Err(e) => Err(err("release", e)),
        }
    }

    async fn mark_done(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        let (exp, ttl) = Self::expiry(ttl);
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PARTITION_KEY, s(key))
            .item("st", s("done"))
            .item("exp_ms", exp)
            .item(TTL_ATTRIBUTE, ttl)
            .send()
            .await
            .map_err(|e| err("mark_done", e))?;
        Ok(())
    }

    async fn is_done(&self, key: &str) -> Result<bool, StoreError> {
        let item = self.item("is_done", key).await?;
        Ok(item.is_some_and(|i| {
            i.get("st")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|v| v == "done")
        }))
    }

    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let item = self.item("get", key).await?;
        Ok(item.and_then(|i| {
            let version = u64::try_from(num(&i, "ver")?).ok()?;
            let value = i.get("val")?.as_b().ok()?.as_ref().to_vec();
            Some(Versioned { version, value })
        }))
    }

    async fn put_if_version(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<u64>,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let (exp, ttl) = Self::expiry(ttl);
        let version = expected.unwrap_or(0) + 1;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PARTITION_KEY, s(key))
            .item("ver", n(version as i64))
            .item("val", AttributeValue::B(Blob::new(value)))
            .item("exp_ms", exp)
            .item(TTL_ATTRIBUTE, ttl)
            .expression_attribute_values(":now", n(now_ms()));
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk) OR exp_ms < :now"),
            Some(v) => put
                .condition_expression("ver = :ver AND exp_ms >= :now")
                .expression_attribute_values(":ver", n(v as i64)),
        };
        match put.send().await {
            Ok(_) => Ok(Some(version)),
            Err(e) if conditional(&e) => Ok(None),
            Err(e) => Err(err("put", e)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| err("ping", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            DynamoUrl::parse(
                "dynamodb://relay-state?region=eu-west-1&endpoint=http://127.0.0.1:5000"
            )
            .unwrap(),
            DynamoUrl {
                table: "relay-state".into(),
                region: Some("eu-west-1".into()),
                endpoint: Some("http://127.0.0.1:5000".into()),
            }
        );
        assert!(DynamoUrl::parse("dynamodb://x").is_err(), "too short");
        assert!(DynamoUrl::parse("dynamodb://table?consistent=1").is_err());
    }
}
