//! The ingress handler and a Trigger's delivery: filter, subscriber with
//! retries, dead letter, reply. See the module documentation of
//! [`super`] for the Knative sources each step follows.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Event};

use super::filter::{extension_string, rfc3339_nano};
use super::{
    Attempt, DeadLetter, Decision, Delivery, EventFormat, InFlight, Ingested, IngressMode, Outcome,
    Reply, Shared, Target, TriggerRt,
};

/// The largest request the ingress reads.
pub(super) const BODY_LIMIT: usize = 16 << 20;
const TTL: &str = "knativebrokerttl";
const ARRIVAL: &str = "knativearrivaltime";
/// `attributes.KnativeErrorDataExtensionMaxLength`.
const ERROR_DATA_MAX: usize = 1024;
const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

/// `SelectiveRetry` (`pkg/kncloudevents/retries.go`) for an answered
/// request: every status >= 500, 404, 408, 409 and 429.
pub fn retried_status(status: u16) -> bool {
    status >= 500 || matches!(status, 404 | 408 | 409 | 429)
}

/// `utils.PassThroughHeaders` (`pkg/utils/headers.go`).
fn pass_through(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if matches!(n, "x-request-id" | "retry-after")
            || n.starts_with("knative-")
            || n.starts_with("x-b3-")
        {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Structured,
    Batch,
    Binary,
    Unknown,
}

/// The CloudEvents Go SDK's `cehttp.NewMessage` / `ReadEncoding`: the
/// media type (lower case, before `;`) names a format, else a known
/// `ce-specversion` header means binary mode.
fn encoding(headers: &HeaderMap) -> Encoding {
    let media = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match media.as_deref() {
        Some(STRUCTURED) => Encoding::Structured,
        Some(BATCH) => Encoding::Batch,
        _ => match headers.get("ce-specversion").map(|v| v.as_bytes()) {
            Some(b"1.0") | Some(b"0.3") => Encoding::Binary,
            _ => Encoding::Unknown,
        },
    }
}

enum Decoded {
    Event(Box<Event>),
    /// Go's SDK decodes it, but `event.Validate()` at the ingress refuses
    /// it: a required attribute is missing.
    Invalid(String),
    /// Go's SDK cannot decode it.
    Unreadable(String),
}

/// A request or response as a CloudEvent.
fn decode(headers: &HeaderMap, body: &[u8]) -> Decoded {
    let required = ["id", "source", "type"];
    match encoding(headers) {
        Encoding::Unknown => {
            Decoded::Unreadable("not a CloudEvent (no ce-specversion, not structured)".into())
        }
        Encoding::Batch => Decoded::Unreadable("a batch of CloudEvents is not one event".into()),
        Encoding::Binary => {
            if let Some(a) = required
                .iter()
                .find(|a| !headers.contains_key(format!("ce-{a}").as_str()))
            {
                return Decoded::Invalid(format!("missing required attribute {a}"));
            }
            match cloudevents::binding::http::to_event(headers, body.to_vec()) {
                Ok(e) => Decoded::Event(Box::new(e)),
                Err(e) => Decoded::Unreadable(e.to_string()),
            }
        }
        Encoding::Structured => {
            let object: serde_json::Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return Decoded::Unreadable(format!("structured event: {e}")),
            };
            if object.get("specversion").is_some()
                && let Some(a) = required.iter().find(|a| object.get(**a).is_none())
            {
                return Decoded::Invalid(format!("missing required attribute {a}"));
            }
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_static(STRUCTURED));
            match cloudevents::binding::http::to_event(&h, body.to_vec()) {
                Ok(e) => Decoded::Event(Box::new(e)),
                Err(e) => Decoded::Unreadable(e.to_string()),
            }
        }
    }
}

/// The headers and body of `event` in binary or structured mode.
fn encode(event: &Event, format: EventFormat) -> Result<(HeaderMap, Vec<u8>), String> {
    match format {
        EventFormat::Binary => {
            let request = axum::http::Request::<Option<Vec<u8>>>::try_from(event.clone())
                .map_err(|e| e.to_string())?;
            let (parts, body) = request.into_parts();
            Ok((parts.headers, body.unwrap_or_default()))
        }
        EventFormat::Json => {
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_static(STRUCTURED));
            Ok((h, serde_json::to_vec(event).map_err(|e| e.to_string())?))
        }
    }
}

fn status(code: u16) -> Response {
    StatusCode::from_u16(code)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

/// The broker ingress (`ingress_handler.go`, `ServeHTTP` and `receive`).
pub(super) async fn ingress(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut response = ingress_inner(&shared, method, uri, headers, body).await;
    response
        .headers_mut()
        .insert("allow", HeaderValue::from_static("POST, OPTIONS"));
    response
}

async fn ingress_inner(
    shared: &Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::OPTIONS {
        let mut r = StatusCode::OK.into_response();
        r.headers_mut()
            .insert("webhook-allowed-origin", HeaderValue::from_static("*"));
        r.headers_mut()
            .insert("webhook-allowed-rate", HeaderValue::from_static("*"));
        return r;
    }
    if method != Method::POST {
        return status(405);
    }
    let path = uri.path();
    if path == "/" {
        return status(404);
    }
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if parts.len() != 3 {
        return status(400);
    }
    let _guard = InFlight::new(shared);
    let broker_id = format!("{}/{}", parts[1], parts[2]);
    let refuse = |code: u16, event: Option<Event>, why: String| {
        shared.log.lock().unwrap().ingested.push(Ingested {
            broker: broker_id.clone(),
            status: code,
            event,
            refusal: Some(why),
        });
        status(code)
    };
    let mut event = match decode(&headers, &body) {
        Decoded::Event(e) => *e,
        Decoded::Invalid(why) | Decoded::Unreadable(why) => return refuse(400, None, why),
    };
    let Some(broker) = shared
        .brokers
        .iter()
        .find(|b| b.namespace == parts[1] && b.name == parts[2])
    else {
        return refuse(404, Some(event), format!("no Broker {broker_id}"));
    };
    event.set_extension(ARRIVAL, rfc3339_nano(&chrono::Utc::now()));
    // TTLDefaulter, then the check in `receive`.
    let ttl = match event
        .extension(TTL)
        .map(extension_string)
        .and_then(|s| s.parse::<i32>().ok())
    {
        None => shared.options.max_ttl,
        Some(t) => (t - 1).max(0),
    };
    event.set_extension(TTL, ExtensionValue::Integer(i64::from(ttl)));
    if ttl <= 0 {
        return refuse(400, Some(event), "knativebrokerttl is 0: dropped".into());
    }
    let index = {
        let mut log = shared.log.lock().unwrap();
        log.ingested.push(Ingested {
            broker: broker_id.clone(),
            status: 202,
            event: Some(event.clone()),
            refusal: None,
        });
        log.ingested.len() - 1
    };
    let pass = pass_through(&headers);
    let deliveries: Vec<_> = broker
        .triggers
        .iter()
        .map(|t| {
            let guard = InFlight::new(shared);
            let (shared, t, event, pass) = (shared.clone(), t.clone(), event.clone(), pass.clone());
            let reply_to = broker.url.clone();
            tokio::spawn(async move {
                let result = deliver(&shared, &t, &reply_to, event, pass).await;
                drop(guard);
                result
            })
        })
        .collect();
    if shared.options.ingress == IngressMode::Asynchronous {
        return status(202);
    }
    let mut failures = Vec::new();
    for d in deliveries {
        match d.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("delivery task failed: {e}")),
        }
    }
    if failures.is_empty() {
        return status(202);
    }
    let mut log = shared.log.lock().unwrap();
    log.ingested[index].status = 500;
    log.ingested[index].refusal = Some(failures.join("; "));
    status(500)
}

/// A reply found in a subscriber's 2xx answer.
enum ReplyBody {
    Event(Box<Event>),
    Invalid(String),
}

/// How a delivery ended.
enum Final {
    Delivered {
        status: u16,
        reply: Option<ReplyBody>,
        headers: HeaderMap,
    },
    Failed(Failure),
}

/// What the dispatcher knows of a failed delivery: the status
/// (`DispatchInfo.ResponseCode`, 500 without an answer) and, where the
/// error extensions can be made, the destination and body they describe.
struct Failure {
    code: u16,
    described: Option<(String, Vec<u8>)>,
    cause: String,
}

/// One attempt's answer, as the channel dispatcher sees it.
struct Answer {
    outcome: Outcome,
    broker_status: Option<u16>,
    headers: HeaderMap,
    reply: Option<ReplyBody>,
    described: Option<(String, Vec<u8>)>,
    note: Option<String>,
}

impl Answer {
    fn delivered(&self) -> bool {
        self.broker_status.is_some_and(|s| (200..300).contains(&s))
    }

    fn retryable(&self) -> bool {
        self.broker_status.is_none_or(retried_status)
    }
}

/// One request of a delivery.
struct Send<'a> {
    target: Target,
    trigger: &'a TriggerRt,
    event: &'a Event,
    /// The name attempts are logged under.
    subscriber: &'a str,
    url: &'a str,
    headers: HeaderMap,
    format: EventFormat,
    /// Through broker-filter (a subscriber), which reads the answer.
    via_filter: bool,
}

impl Shared {
    fn record(&self, s: &Send<'_>, attempt: u32, delay: std::time::Duration, a: &Answer) {
        self.log.lock().unwrap().attempts.push(Attempt {
            event_id: s.event.id().to_string(),
            event_type: s.event.ty().to_string(),
            trigger: s.trigger.name.clone(),
            target: s.target,
            subscriber: s.subscriber.to_string(),
            url: s.url.to_string(),
            attempt,
            delay,
            outcome: a.outcome.clone(),
            broker_status: a.broker_status,
            retryable: a.retryable(),
            note: a.note.clone(),
        });
    }

    /// `Dispatcher.executeRequest` with `DoWithRetries`.
    async fn send(&self, s: Send<'_>) -> Final {
        let delivery: Option<&Delivery> = s.trigger.delivery.as_ref();
        let (mut headers, body) = match encode(s.event, s.format) {
            Ok(x) => x,
            Err(e) => {
                let a = Answer {
                    outcome: Outcome::Error(format!("could not write the request: {e}")),
                    broker_status: None,
                    headers: HeaderMap::new(),
                    reply: None,
                    described: None,
                    note: Some("not sent: Knative fails before its retry loop".into()),
                };
                self.record(&s, 1, std::time::Duration::ZERO, &a);
                return Final::Failed(Failure {
                    code: 500,
                    described: None,
                    cause: format!("could not write the request: {e}"),
                });
            }
        };
        for (name, value) in &s.headers {
            headers.insert(name.clone(), value.clone());
        }
        // Without a delivery spec there is no RetryConfig: one request, no
        // timeout (DoWithRetries with a nil config).
        let max = delivery.map_or(1, |d| d.max_attempts());
        let timeout = delivery.and_then(|d| d.timeout);
        let mut attempt = 1;
        let mut delay = std::time::Duration::ZERO;
        loop {
            let answer = self.attempt(&s, &headers, &body, timeout).await;
            self.record(&s, attempt, delay, &answer);
            if answer.delivered() {
                return Final::Delivered {
                    status: answer.broker_status.unwrap_or(200),
                    reply: answer.reply,
                    headers: answer.headers,
                };
            }
            if !answer.retryable() || attempt >= max {
                let cause = match (&answer.outcome, answer.broker_status) {
                    (Outcome::Status(raw), Some(b)) if *raw != b => {
                        format!("{} answered {raw}, broker-filter {b}", s.url)
                    }
                    (Outcome::Status(raw), _) => format!("{} answered {raw}", s.url),
                    (Outcome::Timeout, _) => format!("{} timed out", s.url),
                    (Outcome::Error(e), _) => format!("{}: {e}", s.url),
                };
                let tries = if attempt > 1 {
                    format!(" (after {attempt} attempts)")
                } else {
                    String::new()
                };
                return Final::Failed(Failure {
                    code: answer.broker_status.unwrap_or(500),
                    described: answer.described,
                    cause: format!("{cause}{tries}"),
                });
            }
            // go-retryablehttp: Backoff(min, max, i, resp), i from 0.
            let intended = delivery.map_or(std::time::Duration::ZERO, |d| d.backoff(attempt - 1));
            tokio::time::sleep(intended.mul_f64(self.options.backoff_scale.max(0.0))).await;
            delay = intended;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        s: &Send<'_>,
        headers: &HeaderMap,
        body: &[u8],
        timeout: Option<std::time::Duration>,
    ) -> Answer {
        let mut request = self
            .client
            .post(s.url)
            .headers(headers.clone())
            .body(body.to_vec());
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        let result = async {
            let response = request.send().await?;
            let code = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((code, headers, body))
        }
        .await;
        let (code, headers, body) = match result {
            Err(e) => {
                let text = error_chain(&e);
                let dispatch_error = format!("dispatch error: {text}").into_bytes();
                let timed_out = e.is_timeout();
                return Answer {
                    outcome: if timed_out {
                        Outcome::Timeout
                    } else {
                        Outcome::Error(text)
                    },
                    // broker-filter answers a failed request to the
                    // subscriber with 500 and its description; a timeout is
                    // the channel's own request failing, with no answer.
                    broker_status: (s.via_filter && !timed_out).then_some(500),
                    headers: HeaderMap::new(),
                    reply: None,
                    described: (!(s.via_filter && timed_out))
                        .then(|| (s.url.to_string(), dispatch_error)),
                    note: (s.via_filter && timed_out).then(|| {
                        "the channel's request to broker-filter timed out: a dead letter \
                         gets no knativeerror* extensions"
                            .to_string()
                    }),
                };
            }
            Ok(x) => x,
        };
        let mut answer = Answer {
            outcome: Outcome::Status(code),
            broker_status: Some(code),
            headers,
            reply: None,
            described: None,
            note: None,
        };
        if !(200..300).contains(&code) {
            answer.described = Some((s.url.to_string(), body.to_vec()));
            return answer;
        }
        if !s.via_filter {
            return answer;
        }
        // broker-filter's writeResponse.
        match decode(&answer.headers, &body) {
            Decoded::Event(e) => answer.reply = Some(ReplyBody::Event(e)),
            Decoded::Invalid(why) => answer.reply = Some(ReplyBody::Invalid(why)),
            Decoded::Unreadable(_)
                if body.is_empty() && encoding(&answer.headers) == Encoding::Unknown => {}
            Decoded::Unreadable(why) => {
                answer.broker_status = Some(502);
                answer.note = Some(format!(
                    "a {code} with a body that is not a CloudEvent ({why}): broker-filter \
                     answers 502; a dead letter gets no knativeerror* extensions"
                ));
            }
        }
        answer
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One Trigger's delivery of one event, as the channel (fan-out) and
/// broker-filter do it. Err: the delivery failed and nothing took the
/// event (the fan-out error that makes the ingress answer 500).
async fn deliver(
    shared: &Arc<Shared>,
    t: &TriggerRt,
    broker_url: &str,
    event: Event,
    pass: HeaderMap,
) -> Result<(), String> {
    let ttl = event.extension(TTL).cloned();
    let mut to_subscriber = event.clone();
    to_subscriber.remove_extension(TTL);
    let result = t.filter.evaluate(&to_subscriber);
    shared.log.lock().unwrap().decisions.push(Decision {
        event_id: event.id().to_string(),
        event_type: event.ty().to_string(),
        trigger: t.name.clone(),
        result,
    });
    if !result.delivers() {
        return Ok(());
    }
    let namespace = HeaderValue::from_str(&t.namespace).map_err(|e| e.to_string())?;
    let mut headers = pass.clone();
    headers.insert(
        HeaderName::from_static("prefer"),
        HeaderValue::from_static("reply"),
    );
    headers.insert(HeaderName::from_static("kn-namespace"), namespace.clone());
    let format = t
        .delivery
        .as_ref()
        .and_then(|d| d.format)
        .unwrap_or(EventFormat::Binary);
    let outcome = shared
        .send(Send {
            target: Target::Subscriber,
            trigger: t,
            event: &to_subscriber,
            subscriber: &t.subscriber,
            url: &t.subscriber_url,
            headers,
            format,
            via_filter: true,
        })
        .await;
    let (reply, response_headers) = match outcome {
        Final::Failed(f) => return dead_letter(shared, t, &event, f, &pass).await,
        Final::Delivered { reply: None, .. } => return Ok(()),
        Final::Delivered {
            reply: Some(r),
            headers,
            ..
        } => (r, headers),
    };
    let mut reply = match reply {
        ReplyBody::Event(e) => *e,
        ReplyBody::Invalid(why) => {
            // Knative sends it; the ingress refuses it with 400, which is
            // not retried. The stand-in cannot write such an event.
            let a = Answer {
                outcome: Outcome::Status(400),
                broker_status: Some(400),
                headers: HeaderMap::new(),
                reply: None,
                described: None,
                note: Some(format!("reply not sent: the ingress refuses it ({why})")),
            };
            let s = Send {
                target: Target::Reply,
                trigger: t,
                event: &event,
                subscriber: broker_url,
                url: broker_url,
                headers: HeaderMap::new(),
                format: EventFormat::Binary,
                via_filter: false,
            };
            shared.record(&s, 1, std::time::Duration::ZERO, &a);
            let failure = Failure {
                code: 400,
                described: Some((broker_url.to_string(), Vec::new())),
                cause: format!("the reply was refused by the ingress: {why}"),
            };
            return dead_letter(shared, t, &event, failure, &pass).await;
        }
    };
    if let Some(ttl) = ttl {
        reply.set_extension(TTL, ttl);
    }
    let reply_pass = pass_through(&response_headers);
    let mut headers = reply_pass.clone();
    headers.insert(HeaderName::from_static("kn-namespace"), namespace);
    let outcome = shared
        .send(Send {
            target: Target::Reply,
            trigger: t,
            event: &reply,
            subscriber: broker_url,
            url: broker_url,
            headers,
            format: EventFormat::Binary,
            via_filter: false,
        })
        .await;
    let answer = match &outcome {
        Final::Delivered { status, .. } => Ok(*status),
        Final::Failed(f) => Err(f.cause.clone()),
    };
    shared.log.lock().unwrap().replies.push(Reply {
        trigger: t.name.clone(),
        in_reply_to: event.id().to_string(),
        event: reply,
        answer,
    });
    match outcome {
        Final::Delivered { .. } => Ok(()),
        // The original event, with the reply's pass-through headers.
        Final::Failed(f) => dead_letter(shared, t, &event, f, &reply_pass).await,
    }
}

/// The dead-letter step of `Dispatcher.send`.
async fn dead_letter(
    shared: &Arc<Shared>,
    t: &TriggerRt,
    event: &Event,
    failure: Failure,
    pass: &HeaderMap,
) -> Result<(), String> {
    let Some(sink) = &t.dead_letter_url else {
        return Err(format!(
            "trigger {}: {}; no dead-letter sink",
            t.name, failure.cause
        ));
    };
    let mut letter = event.clone();
    let (mut code, mut dest, mut data) = (None, None, None);
    if let Some((destination, body)) = &failure.described {
        let encoded = base64::engine::general_purpose::STANDARD.encode(body);
        let cut = encoded[..encoded.len().min(ERROR_DATA_MAX)].to_string();
        if body.len() > ERROR_DATA_MAX / 4 * 3 {
            shared.log.lock().unwrap().panics.push(format!(
                "trigger {}: event {}: the {}-byte error body from {destination} (status {}) \
                 is over 768 bytes: Knative's base64.StdEncoding.Encode into a 1024-byte \
                 buffer panics (index out of range) and the dispatcher crashes",
                t.name,
                event.id(),
                body.len(),
                failure.code
            ));
        }
        letter.set_extension("knativeerrordest", destination.clone());
        letter.set_extension(
            "knativeerrorcode",
            ExtensionValue::Integer(i64::from(failure.code)),
        );
        letter.set_extension("knativeerrordata", cut.clone());
        (code, dest, data) = (
            Some(failure.code.to_string()),
            Some(destination.clone()),
            Some(cut),
        );
    }
    let mut headers = pass.clone();
    let namespace = HeaderValue::from_str(&t.namespace).map_err(|e| e.to_string())?;
    headers.insert(HeaderName::from_static("kn-namespace"), namespace);
    let outcome = shared
        .send(Send {
            target: Target::DeadLetterSink,
            trigger: t,
            event: &letter,
            subscriber: sink,
            url: sink,
            headers,
            format: EventFormat::Binary,
            via_filter: false,
        })
        .await;
    let sink_answer = match &outcome {
        Final::Delivered { status, .. } => Ok(*status),
        Final::Failed(f) => Err(f.cause.clone()),
    };
    shared.log.lock().unwrap().dead_letters.push(DeadLetter {
        trigger: t.name.clone(),
        sink: sink.clone(),
        event: letter,
        error_code: code,
        error_dest: dest,
        error_data: data,
        cause: failure.cause.clone(),
        sink_answer: sink_answer.clone(),
    });
    match sink_answer {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "trigger {}: {}; and the dead-letter sink failed: {e}",
            t.name, failure.cause
        )),
    }
}
