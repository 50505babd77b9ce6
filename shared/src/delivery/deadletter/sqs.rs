//! Dead letters in an SQS queue (AWS): one message per entry. Listing
//! receives every message (hiding it briefly), then makes each visible
//! again, so inspecting the queue consumes nothing; update and remove use
//! the receipt handles of the last listing (SQS messages cannot be edited:
//! an update sends the new entry and deletes the old message).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;

use super::{DeadLetterEntry, DeadLetterSink, SinkError};

pub struct SqsSink {
    client: Client,
    queue_url: String,
    /// Entry id -> receipt handle, from the last `list`.
    receipts: Mutex<HashMap<String, String>>,
}

fn err(e: impl std::error::Error + 'static) -> SinkError {
    SinkError(DisplayErrorContext(e).to_string())
}

/// `sqs://https://sqs.<region>.amazonaws.com/<account>/<queue>` (or
/// `sqs://` followed by the host and path) -> the queue URL.
pub fn queue_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("sqs://")
        .ok_or_else(|| format!("not an sqs:// URL: {url:?}"))?;
    let q = if rest.starts_with("http://") || rest.starts_with("https://") {
        rest.to_string()
    } else {
        format!("https://{rest}")
    };
    url::Url::parse(&q).map_err(|e| format!("invalid SQS queue URL: {e}"))?;
    Ok(q)
}

impl SqsSink {
    /// Credentials, region and endpoint (`AWS_ENDPOINT_URL`) from the environment.
    pub async fn open(url: &str) -> Result<SqsSink, String> {
        let queue_url = queue_url(url)?;
        let conf = crate::event::config::aws::loader().load().await;
        Ok(SqsSink::from_conf(&conf, &queue_url))
    }

    pub fn from_conf(conf: &aws_config::SdkConfig, queue_url: &str) -> SqsSink {
        SqsSink {
            client: Client::new(conf),
            queue_url: queue_url.to_string(),
            receipts: Mutex::new(HashMap::new()),
        }
    }

    fn receipt(&self, id: &str) -> Option<String> {
        self.receipts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }
}

#[async_trait]
impl DeadLetterSink for SqsSink {
    async fn put(&self, entry: &DeadLetterEntry) -> Result<(), SinkError> {
        let body = serde_json::to_string(entry).map_err(|e| SinkError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn list(
        &self,
        limit: Option<usize>,
        notification: Option<&str>,
    ) -> Result<(usize, Vec<DeadLetterEntry>), SinkError> {
        let mut all = Vec::new();
        let mut handles = Vec::new();
        loop {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .wait_time_seconds(0)
                .send()
                .await
                .map_err(err)?;
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let (Some(body), Some(handle)) = (m.body, m.receipt_handle) else {
                    continue;
                };
                handles.push(handle.clone());
                match serde_json::from_str::<DeadLetterEntry>(&body) {
                    Ok(e) => {
                        self.receipts
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(e.id.clone(), handle);
                        all.push(e);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "SQS dead letter is not an entry; left in place")
                    }
                }
            }
        }
        // Visible again at once: listing consumes nothing.
        for h in handles {
            let _ = self
                .client
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(h)
                .visibility_timeout(0)
                .send()
                .await;
        }
        all.sort_by(|a, b| a.failed_at.cmp(&b.failed_at));
        Ok(super::page(all, limit, notification))
    }

    async fn update(&self, entry: &DeadLetterEntry) -> Result<bool, SinkError> {
        let Some(handle) = self.receipt(&entry.id) else {
            return Ok(false);
        };
        self.put(entry).await?;
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(handle)
            .send()
            .await
            .map_err(err)?;
        Ok(true)
    }

    async fn remove(&self, id: &str) -> Result<bool, SinkError> {
        let handle = match self.receipt(id) {
            Some(h) => h,
            None => {
                // Not seen yet: look for it.
                self.list(None, None).await?;
                match self.receipt(id) {
                    Some(h) => h,
                    None => return Ok(false),
                }
            }
        };
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(handle)
            .send()
            .await
            .map_err(err)?;
        Ok(true)
    }
}
