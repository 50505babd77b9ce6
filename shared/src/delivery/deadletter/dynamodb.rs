//! Dead letters in the DynamoDB state table: items keyed `dlq/<id>` holding
//! the entry, expiring after 14 days. Listing scans for that prefix (a
//! dead-letter queue is small; the scan is an operator's action).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{DeadLetterEntry, DeadLetterSink, SinkError};
use crate::delivery::store::dynamodb::{DynamoStore, PARTITION_KEY, TTL_ATTRIBUTE};

const RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

pub struct DynamoSink {
    store: DynamoStore,
}

fn err(e: impl std::error::Error + 'static) -> SinkError {
    SinkError(DisplayErrorContext(e).to_string())
}

fn key(id: &str) -> AttributeValue {
    AttributeValue::S(format!("dlq/{id}"))
}

fn expiry() -> (AttributeValue, AttributeValue) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        + RETENTION.as_millis() as i64;
    (
        AttributeValue::N(ms.to_string()),
        AttributeValue::N((ms / 1000).to_string()),
    )
}

impl DynamoSink {
    pub async fn open(url: &str) -> Result<DynamoSink, String> {
        Ok(DynamoSink {
            store: DynamoStore::open(url).await?,
        })
    }

    pub fn new(store: DynamoStore) -> DynamoSink {
        DynamoSink { store }
    }

    async fn write(&self, entry: &DeadLetterEntry, must_exist: bool) -> Result<bool, SinkError> {
        let (client, table) = self.store.client();
        let json = serde_json::to_string(entry).map_err(|e| SinkError(e.to_string()))?;
        let (exp, ttl) = expiry();
        let mut put = client
            .put_item()
            .table_name(table)
            .item(PARTITION_KEY, key(&entry.id))
            .item("entry", AttributeValue::S(json))
            .item("exp_ms", exp)
            .item(TTL_ATTRIBUTE, ttl);
        if must_exist {
            put = put.condition_expression("attribute_exists(pk)");
        }
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().and_then(ProvideErrorMetadata::code)
                    == Some("ConditionalCheckFailedException") =>
            {
                Ok(false)
            }
            Err(e) => Err(err(e)),
        }
    }
}

#[async_trait]
impl DeadLetterSink for DynamoSink {
    async fn put(&self, entry: &DeadLetterEntry) -> Result<(), SinkError> {
        self.write(entry, false).await.map(|_| ())
    }

    async fn list(
        &self,
        limit: Option<usize>,
        notification: Option<&str>,
    ) -> Result<(usize, Vec<DeadLetterEntry>), SinkError> {
        let (client, table) = self.store.client();
        let mut entries = Vec::new();
        let mut start = None;
        loop {
            let out = client
                .scan()
                .table_name(table)
                .filter_expression("begins_with(pk, :p)")
                .expression_attribute_values(":p", AttributeValue::S("dlq/".into()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err)?;
            for item in out.items() {
                if let Some(e) = item
                    .get("entry")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|s| serde_json::from_str::<DeadLetterEntry>(s).ok())
                {
                    entries.push(e);
                }
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        entries.sort_by(|a, b| a.failed_at.cmp(&b.failed_at));
        Ok(super::page(entries, limit, notification))
    }

    async fn update(&self, entry: &DeadLetterEntry) -> Result<bool, SinkError> {
        self.write(entry, true).await
    }

    async fn remove(&self, id: &str) -> Result<bool, SinkError> {
        let (client, table) = self.store.client();
        let out = client
            .delete_item()
            .table_name(table)
            .key(PARTITION_KEY, key(id))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(err)?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }
}
