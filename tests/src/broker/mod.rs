//! A stand-in for a Knative Eventing Broker (the default class,
//! `MTChannelBasedBroker` over an `InMemoryChannel`), configured from the
//! rendered manifests (`kubectl kustomize knative/base`), for end-to-end
//! tests that run the relay's functions as processes.
//!
//! One HTTP server on 127.0.0.1 plays the three parts of the real data
//! plane: the broker ingress (`POST /<namespace>/<broker>`), the channel
//! dispatcher (fan-out to every Trigger, retries, dead letters, replies)
//! and broker-filter (filters, the request to the subscriber, the reading of
//! its answer). What it does and where that comes from in knative/eventing
//! (commit 8cf4c4b, June 2026):
//!
//! **Ingress** (`pkg/broker/ingress/ingress_handler.go`): `OPTIONS` 200,
//! other methods but `POST` 405, `/` 404, a path that is not
//! `/<namespace>/<name>` 400; a request that is not a valid CloudEvent
//! (binary or structured mode) 400; an unknown Broker 404. It sets
//! `knativearrivaltime`, then the TTL (`pkg/broker/ttl.go`,
//! `TTLDefaulter`): `knativebrokerttl` is set to `MAX_TTL` (255,
//! `cmd/broker/ingress/main.go`) when absent or not an integer, else
//! decremented; an event whose TTL is then 0 is refused with 400. This is
//! Knative's guard against reply loops. The answer is the channel's: with
//! the InMemoryChannel's default synchronous handler
//! (`pkg/channel/fanout/fanout_event_handler.go`, `AsyncHandler` false
//! unless the channel carries `messaging.knative.dev/async-handler`;
//! `pkg/channel/event_receiver.go`) that is 202 after every Trigger's
//! delivery has finished (dead letters and replies included), 500 if one of
//! them failed with nowhere left to send the event. [`IngressMode::Asynchronous`]
//! answers 202 at once instead.
//!
//! **Fan-out and filtering**: every Trigger of the Broker gets the event
//! concurrently (one goroutine per subscription); broker-filter
//! (`pkg/broker/filter/filter_handler.go`) removes `knativebrokerttl`,
//! applies the Trigger's filter ([`filter`]) and sends the event to the
//! subscriber in binary mode (structured with a Trigger's `delivery.format:
//! json`) with `Prefer: reply`, `Kn-Namespace` and the pass-through headers
//! of the original request (`pkg/utils/headers.go`: `x-request-id`,
//! `retry-after`, `knative-*`, `x-b3-*`).
//!
//! **Retries** (`pkg/kncloudevents/event_dispatcher.go`, `retries.go`,
//! go-retryablehttp v0.7.7): the Trigger's `spec.delivery`, or as a whole
//! the Broker's when the Trigger has none. Without any, one attempt and no
//! timeout. An attempt is retried on a connection error or timeout and on
//! the statuses `SelectiveRetry` names: every status >= 500, 404, 408, 409,
//! 429; nothing else (3xx, 400, 401, 403, 410, 413, 422, ...). Up to
//! `retry` retries, waiting [`Delivery::backoff`] before each; `timeout`
//! bounds each attempt. `Retry-After` is ignored (`retryAfterMax` needs a
//! feature that is disabled by default). The status that decides is
//! broker-filter's answer to the channel, which differs from the
//! subscriber's in one case: a 2xx with a non-empty body that is not a
//! CloudEvent (no `ce-specversion` header, not `application/cloudevents+json`)
//! makes broker-filter answer 502 ("received a non-empty response not
//! recognized as CloudEvent"), which is retried and dead-lettered.
//!
//! **Dead letters** (`event_dispatcher.go`, `send` and
//! `dispatchExecutionInfoTransformers`; `pkg/kncloudevents/attributes/
//! knative_error.go`): when the attempts end without a 2xx the event, as
//! the channel had it (with `knativearrivaltime` and `knativebrokerttl`),
//! goes to the delivery's `deadLetterSink` (with the same retries) with
//! `knativeerrorcode` (the last status; 500 for a connection error),
//! `knativeerrordest` (the subscriber's URL) and `knativeerrordata` (the
//! last response body in base64, cut to 1024 characters). The dead-letter
//! sink is the effective delivery's: a Trigger with its own `spec.delivery`
//! and no `deadLetterSink` has none, even if the Broker has one (without
//! OIDC, `pkg/reconciler/broker/trigger/trigger.go` copies the delivery into
//! the Subscription as is). Those extensions are absent when the channel
//! never got broker-filter's error description: when an attempt timed out
//! and when broker-filter answered 502 for an unreadable 2xx body (its
//! `json.Unmarshal` of the body fails and no transformer is added).
//!
//! A body longer than 768 bytes is encoded into a 1024-byte buffer by Go's
//! `base64.StdEncoding.Encode`, which panics (index out of range) and
//! crashes the dispatcher: see eventing-natss issue #434; the code is
//! unchanged at the commit above. The stand-in sends the intended truncated
//! value and records the panic in [`Broker::knative_panics`], which tests
//! should expect to be empty.
//!
//! **Replies**: a 2xx carrying a CloudEvent (binary or structured) is a
//! reply: broker-filter puts back the TTL the event had, and the channel
//! sends it to the Broker's ingress (with the same retries), where it is
//! matched against every Trigger again and its TTL decremented. When the
//! reply cannot be delivered the original event is dead-lettered, with the
//! Broker's address as `knativeerrordest`.

mod dispatch;
pub mod filter;
pub mod manifests;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use cloudevents::Event;

pub use dispatch::retried_status;
pub use filter::{Filter, FilterResult, TriggerFilter};
pub use manifests::{
    BackoffPolicy, BrokerManifest, Delivery, Destination, EventFormat, Manifests, Reference,
    TriggerManifest,
};

/// How [`Broker::start_with`] runs.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Multiplies the backoff waits that are slept (0.01: a hundredth). The
    /// attempt log keeps the waits the manifests imply. Timeouts are not
    /// scaled.
    pub backoff_scale: f64,
    /// The ingress's `MAX_TTL`.
    pub max_ttl: i32,
    pub ingress: IngressMode,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            backoff_scale: 1.0,
            max_ttl: 255,
            ingress: IngressMode::Synchronous,
        }
    }
}

/// When the ingress answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressMode {
    /// The InMemoryChannel's default: once every Trigger's delivery has
    /// finished; 202, or 500 when one failed with no dead-letter sink left.
    Synchronous,
    /// `messaging.knative.dev/async-handler: "true"` on the channel (or a
    /// Kafka-backed broker): 202 before delivering.
    Asynchronous,
}

/// What a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Subscriber,
    DeadLetterSink,
    /// The Broker's ingress, with a subscriber's reply.
    Reply,
}

/// What one attempt got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// No answer: connection refused or reset, an unreadable answer.
    Error(String),
    /// The delivery's `timeout` passed.
    Timeout,
}

/// One request of a delivery.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub event_id: String,
    pub event_type: String,
    pub trigger: String,
    pub target: Target,
    /// For subscriber attempts the subscriber's name (its Service's, else
    /// its URI); else the URL.
    pub subscriber: String,
    pub url: String,
    /// 1 for the first request.
    pub attempt: u32,
    /// The wait before this attempt that the manifests imply (0 for the
    /// first); [`BrokerOptions::backoff_scale`] times it was slept.
    pub delay: Duration,
    pub outcome: Outcome,
    /// The status Knative's dispatcher decides on: for a subscriber, what
    /// broker-filter answers the channel (the subscriber's status, 500 for
    /// a connection error, 502 for an unreadable 2xx body); None after a
    /// timeout.
    pub broker_status: Option<u16>,
    /// Whether that answer is one Knative retries (true also for the last
    /// attempt when the retries ran out).
    pub retryable: bool,
    pub note: Option<String>,
}

/// An event sent to a dead-letter sink.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub trigger: String,
    pub sink: String,
    /// The event as sent (the original, with the error extensions).
    pub event: Event,
    /// `knativeerrorcode`, `knativeerrordest`, `knativeerrordata`, when set.
    pub error_code: Option<String>,
    pub error_dest: Option<String>,
    pub error_data: Option<String>,
    /// Why the event was dead-lettered.
    pub cause: String,
    /// The sink's last answer: a status, else the error.
    pub sink_answer: Result<u16, String>,
}

impl DeadLetter {
    /// `knativeerrordata` decoded (Knative's 1024-character cut can leave
    /// a partial last group; that is decoded as far as it goes).
    pub fn error_body(&self) -> Option<Vec<u8>> {
        let data = self.error_data.as_ref()?;
        let whole = &data[..data.len() - data.len() % 4];
        base64::engine::general_purpose::STANDARD.decode(whole).ok()
    }
}

/// A reply a subscriber answered with, sent back to the Broker.
#[derive(Debug, Clone)]
pub struct Reply {
    pub trigger: String,
    /// The id of the event the subscriber was answering.
    pub in_reply_to: String,
    /// The reply as sent to the ingress (with `knativebrokerttl`).
    pub event: Event,
    /// The ingress's last answer: a status, else the error.
    pub answer: Result<u16, String>,
}

/// An event the ingress received (from outside or as a reply).
#[derive(Debug, Clone)]
pub struct Ingested {
    /// `<namespace>/<name>` of the Broker (as the path named it).
    pub broker: String,
    /// The ingress's status: 202, or the refusal.
    pub status: u16,
    /// The event as the channel got it (after TTL and arrival time); None
    /// when it was not a CloudEvent.
    pub event: Option<Event>,
    pub refusal: Option<String>,
}

/// Whether a Trigger's filter let an event through.
#[derive(Debug, Clone)]
pub struct Decision {
    pub event_id: String,
    pub event_type: String,
    pub trigger: String,
    pub result: FilterResult,
}

#[derive(Default)]
struct Log {
    attempts: Vec<Attempt>,
    dead_letters: Vec<DeadLetter>,
    replies: Vec<Reply>,
    ingested: Vec<Ingested>,
    decisions: Vec<Decision>,
    panics: Vec<String>,
}

struct TriggerRt {
    namespace: String,
    name: String,
    filter: TriggerFilter,
    subscriber: String,
    subscriber_url: String,
    delivery: Option<Delivery>,
    dead_letter_url: Option<String>,
}

struct BrokerRt {
    namespace: String,
    name: String,
    url: String,
    triggers: Vec<Arc<TriggerRt>>,
}

struct Shared {
    options: BrokerOptions,
    client: reqwest::Client,
    brokers: Vec<BrokerRt>,
    log: Mutex<Log>,
    inflight: tokio::sync::watch::Sender<usize>,
}

/// Counts a request or delivery in flight while it lives.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: &Arc<Shared>) -> InFlight {
        shared.inflight.send_modify(|n| *n += 1);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.send_modify(|n| *n -= 1);
    }
}

/// A running Broker stand-in; stops serving when dropped.
pub struct Broker {
    shared: Arc<Shared>,
    addr: SocketAddr,
    unready: Vec<(String, String)>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Broker {
    /// Starts with [`BrokerOptions::default`]: real backoff, synchronous
    /// ingress.
    pub async fn start(
        manifests: &Manifests,
        subscribers: &HashMap<String, String>,
    ) -> Result<Broker, String> {
        Broker::start_with(manifests, subscribers, BrokerOptions::default()).await
    }

    /// Serves every Broker of `manifests` on a free port of 127.0.0.1.
    /// `subscribers` maps a Service's name (or a Destination's literal
    /// URI) to the base URL it is served at; a Destination's relative `uri`
    /// is resolved against it. A Trigger whose Broker, subscriber or
    /// dead-letter sink does not resolve is not ready, as in Knative: it
    /// gets no events and is listed by [`Broker::unready`]. Refuses URLs
    /// that are not loopback.
    pub async fn start_with(
        manifests: &Manifests,
        subscribers: &HashMap<String, String>,
        options: BrokerOptions,
    ) -> Result<Broker, String> {
        if manifests.brokers.is_empty() {
            return Err("the manifests have no eventing.knative.dev/v1 Broker".into());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut brokers: Vec<BrokerRt> = manifests
            .brokers
            .iter()
            .map(|b| BrokerRt {
                namespace: b.namespace.clone(),
                name: b.name.clone(),
                url: format!("http://{addr}/{}/{}", b.namespace, b.name),
                triggers: Vec::new(),
            })
            .collect();
        let mut unready = Vec::new();
        for t in &manifests.triggers {
            let id = format!("{}/{}", t.namespace, t.name);
            let Some(index) = manifests
                .brokers
                .iter()
                .position(|b| b.namespace == t.namespace && b.name == t.broker)
            else {
                unready.push((id, format!("BrokerDoesNotExist: {}", t.broker)));
                continue;
            };
            let delivery = t
                .delivery
                .clone()
                .or_else(|| manifests.brokers[index].delivery.clone());
            let subscriber_url = match resolve(&t.subscriber, subscribers)? {
                Some(u) => u,
                None => {
                    let reason = format!("subscriber {:?} not resolved", t.subscriber.key());
                    unready.push((id, reason));
                    continue;
                }
            };
            let dead_letter_url = match delivery.as_ref().and_then(|d| d.dead_letter_sink.as_ref())
            {
                None => None,
                Some(dls) => match resolve(dls, subscribers)? {
                    Some(u) => Some(u),
                    None => {
                        let reason = format!("deadLetterSink {:?} not resolved", dls.key());
                        unready.push((id, reason));
                        continue;
                    }
                },
            };
            brokers[index].triggers.push(Arc::new(TriggerRt {
                namespace: t.namespace.clone(),
                name: t.name.clone(),
                filter: t.filter.clone(),
                subscriber: t.subscriber.key().to_string(),
                subscriber_url,
                delivery,
                dead_letter_url,
            }));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            options,
            client,
            brokers,
            log: Mutex::new(Log::default()),
            inflight: tokio::sync::watch::Sender::new(0),
        });
        let app = axum::Router::new()
            .fallback(dispatch::ingress)
            .layer(axum::extract::DefaultBodyLimit::max(dispatch::BODY_LIMIT))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Broker {
            shared,
            addr,
            unready,
            server,
        })
    }

    /// The address of the first Broker (`http://127.0.0.1:<port>/<ns>/<name>`),
    /// what a SinkBinding's `K_SINK` would be.
    pub fn url(&self) -> String {
        self.shared.brokers[0].url.clone()
    }

    /// The address of the Broker `namespace/name`.
    pub fn broker_url(&self, namespace: &str, name: &str) -> Option<String> {
        self.shared
            .brokers
            .iter()
            .find(|b| b.namespace == namespace && b.name == name)
            .map(|b| b.url.clone())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Triggers that get no events, as `(namespace/name, reason)`.
    pub fn unready(&self) -> Vec<(String, String)> {
        self.unready.clone()
    }

    /// Every request made to subscribers, dead-letter sinks and (replies)
    /// the ingress, in the order they were answered.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.shared.log.lock().unwrap().attempts.clone()
    }

    /// The attempts for one event id.
    pub fn attempts_for(&self, event_id: &str) -> Vec<Attempt> {
        let log = self.shared.log.lock().unwrap();
        log.attempts
            .iter()
            .filter(|a| a.event_id == event_id)
            .cloned()
            .collect()
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.shared.log.lock().unwrap().dead_letters.clone()
    }

    pub fn replies(&self) -> Vec<Reply> {
        self.shared.log.lock().unwrap().replies.clone()
    }

    pub fn ingested(&self) -> Vec<Ingested> {
        self.shared.log.lock().unwrap().ingested.clone()
    }

    pub fn decisions(&self) -> Vec<Decision> {
        self.shared.log.lock().unwrap().decisions.clone()
    }

    /// Where Knative's Go dispatcher would have panicked (see the module
    /// documentation); empty when the run is one Knative survives.
    pub fn knative_panics(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().panics.clone()
    }

    /// How many requests each subscriber got for `event_id`.
    pub fn invocations(&self, event_id: &str) -> BTreeMap<String, u32> {
        let log = self.shared.log.lock().unwrap();
        let mut counts = BTreeMap::new();
        for a in &log.attempts {
            if a.event_id == event_id && a.target == Target::Subscriber {
                *counts.entry(a.subscriber.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Waits until no request to the ingress and no delivery is in flight,
    /// at most `within`.
    pub async fn settled(&self, within: Duration) -> Result<(), String> {
        let mut rx = self.shared.inflight.subscribe();
        let waited =
            tokio::time::timeout(within, async { rx.wait_for(|n| *n == 0).await.map(|_| ()) })
                .await;
        match waited {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "{} requests or deliveries still in flight after {within:?}",
                *self.shared.inflight.borrow()
            )),
        }
    }
}

/// A Destination's URL: the mapped base URL, joined with a relative `uri`
/// (knative.dev/pkg's resolver: `URL.ResolveReference`). Ok(None): not
/// mapped. Err: a URL that is not loopback.
fn resolve(
    dest: &Destination,
    subscribers: &HashMap<String, String>,
) -> Result<Option<String>, String> {
    let url = match (&dest.reference, &dest.uri) {
        (Some(r), uri) => {
            let Some(base) = subscribers.get(&r.name) else {
                return Ok(None);
            };
            match uri {
                None => base.clone(),
                Some(rel) => reqwest::Url::parse(base)
                    .and_then(|b| b.join(rel))
                    .map_err(|e| format!("{base} + {rel}: {e}"))?
                    .to_string(),
            }
        }
        (None, Some(uri)) => subscribers.get(uri).cloned().unwrap_or_else(|| uri.clone()),
        (None, None) => return Ok(None),
    };
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("{url}: {e}"))?;
    let host = parsed.host_str().unwrap_or("");
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!(
            "{:?} resolves to {url}, which is not loopback: map it to a local server",
            dest.key()
        ));
    }
    Ok(Some(url))
}
