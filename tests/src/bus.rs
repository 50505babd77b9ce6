//! An EventBridge bus on moto whose rules send what they match to SQS
//! queues, as a rule's Lambda target would get it: moto evaluates each
//! rule's event pattern and routes within `PutEvents`, so once a put has
//! been answered, every queue holds what its rule matched.

use std::time::{Duration, Instant};

use aws_sdk_eventbridge::types::Target;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::servers::MotoServer;

/// The bus `name` on a moto server.
pub struct Bus {
    pub name: String,
    eb: aws_sdk_eventbridge::Client,
    moto: aws_config::SdkConfig,
}

impl Bus {
    /// Creates the bus `name`.
    pub async fn create(moto: &MotoServer, name: &str) -> Bus {
        let conf = moto.sdk_config();
        let eb = aws_sdk_eventbridge::Client::new(&conf);
        eb.create_event_bus().name(name).send().await.unwrap();
        Bus {
            name: name.into(),
            eb,
            moto: conf,
        }
    }

    /// The rule `rule` with the event pattern `pattern`, its target a new
    /// SQS queue of the same name.
    pub async fn rule(&self, rule: &str, pattern: &str) -> Queue {
        let sqs = aws_sdk_sqs::Client::new(&self.moto);
        let url = sqs
            .create_queue()
            .queue_name(rule)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&QueueAttributeName::QueueArn]
            .clone();
        self.eb
            .put_rule()
            .name(rule)
            .event_bus_name(&self.name)
            .event_pattern(pattern)
            .send()
            .await
            .unwrap_or_else(|e| panic!("rule {rule} ({pattern}): {e:?}"));
        self.eb
            .put_targets()
            .rule(rule)
            .event_bus_name(&self.name)
            .targets(Target::builder().id(rule).arn(arn).build().unwrap())
            .send()
            .await
            .unwrap();
        Queue { sqs, url }
    }
}

/// An SQS queue: a rule's target, or any other.
pub struct Queue {
    sqs: aws_sdk_sqs::Client,
    pub url: String,
}

impl Queue {
    /// The queue at `url`.
    pub fn at(moto: &MotoServer, url: &str) -> Queue {
        Queue {
            sqs: aws_sdk_sqs::Client::new(&moto.sdk_config()),
            url: url.into(),
        }
    }

    /// The message bodies on the queue now, as JSON, taken off it (each
    /// receive returns at most 10; this receives until one returns none).
    pub async fn take_all(&self) -> Vec<Value> {
        let mut bodies = Vec::new();
        loop {
            let got = self.receive(0).await;
            if got.is_empty() {
                return bodies;
            }
            bodies.extend(got);
        }
    }

    /// The next `n` message bodies, waiting for them (long polls, up to
    /// 30 s in all); more than `n` fails.
    pub async fn take(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut bodies = Vec::new();
        while bodies.len() < n {
            assert!(Instant::now() < deadline, "{bodies:#?}");
            bodies.extend(self.receive(1).await);
        }
        assert_eq!(bodies.len(), n, "{bodies:#?}");
        bodies
    }

    /// Sends `body` as a message.
    pub async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    async fn receive(&self, wait_seconds: i32) -> Vec<Value> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .send()
            .await
            .unwrap();
        let mut bodies = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let body = m.body.as_deref().unwrap_or_default();
            bodies.push(
                serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: not JSON: {body}")),
            );
            self.sqs
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
        bodies
    }
}
