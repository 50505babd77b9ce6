//! The Knative Broker stand-in (`relay_tests::broker`) against real HTTP
//! servers: filters, the ingress's answers, which statuses are retried and
//! how often and when, dead letters and their error extensions, replies and
//! the TTL loop guard, and the project's rendered manifests.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use cloudevents::{AttributesReader, EventBuilder};
use relay_tests::broker::{
    BackoffPolicy, Broker, BrokerOptions, Filter, FilterResult, IngressMode, Manifests, Outcome,
    Target, TriggerFilter, manifests::iso8601,
};

// ---------------------------------------------------------------------------
// A subscriber / dead-letter sink: records requests, answers from a script.

#[derive(Clone)]
enum Answer {
    Plain {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        delay: Duration,
    },
    /// A 200 carrying a new CloudEvent of this type (ids numbered).
    Reply { ty: String, structured: bool },
}

fn status(code: u16) -> Answer {
    Answer::Plain {
        status: code,
        headers: vec![],
        body: vec![],
        delay: Duration::ZERO,
    }
}

fn with_body(code: u16, content_type: &str, body: &[u8]) -> Answer {
    Answer::Plain {
        status: code,
        headers: vec![("content-type", content_type.to_string())],
        body: body.to_vec(),
        delay: Duration::ZERO,
    }
}

#[derive(Clone, Debug)]
struct Got {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

impl Got {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
    fn id(&self) -> String {
        self.header("ce-id").unwrap_or_default()
    }
}

#[derive(Default)]
struct SinkState {
    got: Vec<Got>,
    script: HashMap<String, VecDeque<Answer>>,
    always: HashMap<String, Answer>,
    replies: u64,
}

#[derive(Clone)]
struct Sink {
    state: Arc<Mutex<SinkState>>,
    base: String,
}

impl Sink {
    async fn start() -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Sink {
            state: Arc::default(),
            base: format!("http://{}", listener.local_addr().unwrap()),
        };
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        sink
    }
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    fn script(&self, path: &str, answers: Vec<Answer>) {
        self.state
            .lock()
            .unwrap()
            .script
            .insert(path.into(), answers.into());
    }
    fn always(&self, path: &str, a: Answer) {
        self.state.lock().unwrap().always.insert(path.into(), a);
    }
    fn got(&self, path: &str) -> Vec<Got> {
        let s = self.state.lock().unwrap();
        s.got.iter().filter(|g| g.path == path).cloned().collect()
    }
    fn ids(&self, path: &str) -> BTreeSet<String> {
        self.got(path).iter().map(|g| g.id()).collect()
    }
}

async fn answer(State(sink): State<Sink>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let a = {
        let mut s = sink.state.lock().unwrap();
        s.got.push(Got {
            path: path.clone(),
            headers,
            body,
            at: Instant::now(),
        });
        let scripted = s.script.get_mut(&path).and_then(|q| q.pop_front());
        let a = scripted
            .or_else(|| s.always.get(&path).cloned())
            .unwrap_or_else(|| status(202));
        if let Answer::Reply { .. } = a {
            s.replies += 1;
        }
        (a, s.replies)
    };
    match a {
        (
            Answer::Plain {
                status,
                headers,
                body,
                delay,
            },
            _,
        ) => {
            tokio::time::sleep(delay).await;
            let mut r = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (k, v) in headers {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            r
        }
        (Answer::Reply { ty, structured }, n) => {
            let id = format!("reply-{n}");
            if structured {
                let body = serde_json::json!({
                    "specversion": "1.0", "id": id, "type": ty,
                    "source": "/replier", "data": {"n": n}
                });
                let mut r = (StatusCode::OK, body.to_string()).into_response();
                r.headers_mut().insert(
                    "content-type",
                    "application/cloudevents+json".parse().unwrap(),
                );
                r
            } else {
                let mut r = (StatusCode::OK, format!("{{\"n\":{n}}}")).into_response();
                let h = r.headers_mut();
                h.insert("ce-specversion", "1.0".parse().unwrap());
                h.insert("ce-id", id.parse().unwrap());
                h.insert("ce-type", ty.parse().unwrap());
                h.insert("ce-source", "/replier".parse().unwrap());
                h.insert("content-type", "application/json".parse().unwrap());
                h.insert("x-request-id", "from-replier".parse().unwrap());
                r
            }
        }
    }
}

/// A URL that refuses connections: a port that was just free.
fn refusing_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

// ---------------------------------------------------------------------------
// Manifests and events.

const BROKER: &str = "
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: ns}
";

fn broker_with(delivery: &str) -> String {
    format!("{BROKER}spec:\n  delivery:\n{}\n", indent(delivery, 4))
}

fn indent(s: &str, n: usize) -> String {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{}{l}", " ".repeat(n)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Trigger of Broker `default` delivering to `sink` at `/t/<name>`;
/// `spec` holds more of its spec (filter, filters, delivery).
fn trigger(name: &str, spec: &str) -> String {
    format!(
        "---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: {name}, namespace: ns}}
spec:
  broker: default
  subscriber:
    ref: {{apiVersion: serving.knative.dev/v1, kind: Service, name: sink}}
    uri: /t/{name}
{}
",
        indent(spec, 2)
    )
}

fn subscribers(sink: &Sink) -> HashMap<String, String> {
    HashMap::from([
        ("sink".to_string(), sink.base.clone()),
        ("dls".to_string(), sink.url("/dls")),
    ])
}

const FAST: BrokerOptions = BrokerOptions {
    backoff_scale: 0.0,
    max_ttl: 255,
    ingress: IngressMode::Synchronous,
};

async fn start(yaml: &str, sink: &Sink, options: BrokerOptions) -> Broker {
    let m = Manifests::parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let b = Broker::start_with(&m, &subscribers(sink), options)
        .await
        .unwrap();
    assert_eq!(b.unready(), vec![], "unready triggers");
    b
}

async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> reqwest::Response {
    let mut r = reqwest::Client::new().post(url).body(body.to_string());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

/// Posts a binary-mode event; returns the ingress's status.
async fn send(url: &str, id: &str, ty: &str, more: &[(&str, &str)]) -> u16 {
    let defaults = [
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-type", ty),
        ("ce-source", "/test"),
        ("content-type", "application/json"),
    ];
    // `more` replaces a default of the same name.
    let mut h: Vec<(&str, &str)> = defaults
        .into_iter()
        .filter(|(k, _)| !more.iter().any(|(m, _)| m == k))
        .collect();
    h.extend_from_slice(more);
    post(url, &h, r#"{"hello":"world"}"#)
        .await
        .status()
        .as_u16()
}

const SETTLE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Filters.

/// Every dialect, the legacy filter, absent attributes, and Knative's
/// three-valued results where they show (a filter entry that does not
/// materialize is skipped; `any` returns its last member's result).
#[tokio::test]
async fn filter_truth_table() {
    let sink = Sink::start().await;
    let triggers = [
        ("exact", "filters: [{exact: {type: a.b.c}}]"),
        ("prefix", "filters: [{prefix: {type: a.b.}}]"),
        ("suffix", "filters: [{suffix: {type: .c}}]"),
        ("exact2", "filters: [{exact: {type: a.b.c, source: /s1}}]"),
        (
            "all",
            "filters: [{all: [{prefix: {type: a.}}, {exact: {source: /s2}}]}]",
        ),
        (
            "any",
            "filters: [{any: [{exact: {type: x.y}}, {exact: {source: /s2}}]}]",
        ),
        ("not", "filters: [{not: {exact: {type: a.b.c}}}]"),
        (
            "listisall",
            "filters: [{prefix: {type: a.}}, {suffix: {type: .d}}]",
        ),
        ("extexact", "filters: [{exact: {myext: v}}]"),
        ("extprefix", "filters: [{prefix: {myext: v}}]"),
        ("notext", "filters: [{not: {exact: {myext: v}}}]"),
        ("subject", "filters: [{exact: {subject: sub}}]"),
        ("intext", "filters: [{exact: {myint: \"10\"}}]"),
        ("ttlgone", "filters: [{prefix: {knativebrokerttl: \"2\"}}]"),
        (
            "arrival",
            "filters: [{prefix: {knativearrivaltime: \"2\"}}]",
        ),
        // Skipped entries: exact with an empty value does not materialize.
        ("invalid", "filters: [{exact: {type: \"\"}}]"),
        (
            "anylastnofilter",
            "filters: [{any: [{exact: {type: nope}}, {not: {exact: {type: \"\"}}}]}]",
        ),
        (
            "anylastfail",
            "filters: [{any: [{not: {exact: {type: \"\"}}}, {exact: {type: nope}}]}]",
        ),
        ("legacy", "filter: {attributes: {type: a.b.c, source: /s1}}"),
        ("legacyany", "filter: {attributes: {myext: \"\"}}"),
        ("legacysubject", "filter: {attributes: {subject: \"\"}}"),
        ("legacyempty", "filter: {attributes: {}}"),
        ("legacynil", "filter: {}"),
        ("nofilter", ""),
        // spec.filters wins over spec.filter.
        (
            "both",
            "filter: {attributes: {type: a.b.c}}\nfilters: [{exact: {type: a.b.d}}]",
        ),
    ];
    let yaml: String = std::iter::once(BROKER.to_string())
        .chain(triggers.iter().map(|(n, s)| trigger(n, s)))
        .collect();
    let broker = start(&yaml, &sink, FAST).await;
    let url = broker.url();

    // e1: a.b.c from /s1, myext=v, subject sub (binary).
    assert_eq!(
        send(
            &url,
            "e1",
            "a.b.c",
            &[
                ("ce-myext", "v"),
                ("ce-subject", "sub"),
                ("ce-source", "/s1")
            ]
        )
        .await,
        202
    );
    // e2: a.b.d from /s2 (structured), myint 10 as a JSON number, no myext.
    let e2 = serde_json::json!({"specversion": "1.0", "id": "e2", "type": "a.b.d",
        "source": "/s2", "myint": 10, "data": {"k": 1}});
    let r = post(
        &url,
        &[(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )],
        &e2.to_string(),
    )
    .await;
    assert_eq!(r.status(), 202);
    // e3: x.y from /s3, myext=vv, empty subject absent.
    assert_eq!(
        send(
            &url,
            "e3",
            "x.y",
            &[("ce-myext", "vv"), ("ce-source", "/s3")]
        )
        .await,
        202
    );
    broker.settled(SETTLE).await.unwrap();

    let want: &[(&str, &[&str])] = &[
        ("exact", &["e1"]),
        ("prefix", &["e1", "e2"]),
        ("suffix", &["e1"]),
        ("exact2", &["e1"]),
        ("all", &["e2"]),
        ("any", &["e2", "e3"]),
        ("not", &["e2", "e3"]),
        ("listisall", &["e2"]),
        ("extexact", &["e1"]),
        ("extprefix", &["e1", "e3"]),
        ("notext", &["e2", "e3"]),
        ("subject", &["e1"]),
        // The JSON number arrives at broker-filter as the string "10".
        ("intext", &["e2"]),
        // broker-filter removes knativebrokerttl before filtering.
        ("ttlgone", &[]),
        // The ingress added knativearrivaltime (this century).
        ("arrival", &["e1", "e2", "e3"]),
        ("invalid", &["e1", "e2", "e3"]),
        ("anylastnofilter", &["e1", "e2", "e3"]),
        ("anylastfail", &[]),
        ("legacy", &["e1"]),
        // "" means any value, but a non-empty one.
        ("legacyany", &["e1", "e3"]),
        ("legacysubject", &["e1"]),
        ("legacyempty", &["e1", "e2", "e3"]),
        ("legacynil", &["e1", "e2", "e3"]),
        ("nofilter", &["e1", "e2", "e3"]),
        ("both", &["e2"]),
    ];
    let mut wrong = Vec::new();
    for (name, ids) in want {
        let got = sink.ids(&format!("/t/{name}"));
        let ids: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
        if got != ids {
            wrong.push(format!("{name}: got {got:?}, want {ids:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The decisions name Knative's three results.
    let d = broker.decisions();
    let result = |t: &str, id: &str| {
        d.iter()
            .find(|d| d.trigger == t && d.event_id == id)
            .unwrap()
            .result
    };
    assert_eq!(result("nofilter", "e1"), FilterResult::NoFilter);
    assert_eq!(result("invalid", "e1"), FilterResult::NoFilter);
    assert_eq!(result("anylastnofilter", "e1"), FilterResult::NoFilter);
    assert_eq!(result("exact", "e1"), FilterResult::Pass);
    assert_eq!(result("exact", "e2"), FilterResult::Fail);
    assert_eq!(result("legacyempty", "e2"), FilterResult::Pass);
    assert_eq!(result("legacynil", "e2"), FilterResult::NoFilter);
}

// ---------------------------------------------------------------------------
// The ingress.

#[tokio::test]
async fn ingress_answers_and_what_the_subscriber_receives() {
    let sink = Sink::start().await;
    let yaml = format!("{BROKER}{}", trigger("all", ""));
    let broker = start(&yaml, &sink, FAST).await;
    let url = broker.url();
    let c = reqwest::Client::new();

    // A binary event with headers Knative passes through and one it does not.
    let more = [
        ("x-request-id", "rid-1"),
        ("knative-foo", "bar"),
        ("authorization", "Bearer secret"),
    ];
    assert_eq!(send(&url, "ok-1", "t", &more).await, 202);
    let got = sink.got("/t/all");
    assert_eq!(
        got.len(),
        1,
        "the synchronous ingress answered after delivering"
    );
    let g = &got[0];
    assert_eq!(g.header("ce-id").unwrap(), "ok-1");
    assert_eq!(g.header("ce-specversion").unwrap(), "1.0");
    assert_eq!(g.header("prefer").unwrap(), "reply");
    assert_eq!(g.header("kn-namespace").unwrap(), "ns");
    assert_eq!(g.header("x-request-id").unwrap(), "rid-1");
    assert_eq!(g.header("knative-foo").unwrap(), "bar");
    assert_eq!(g.header("authorization"), None);
    assert_eq!(
        g.header("ce-knativebrokerttl"),
        None,
        "removed by broker-filter"
    );
    let arrival = g.header("ce-knativearrivaltime").unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&arrival).is_ok(),
        "{arrival}"
    );
    assert_eq!(g.body.as_ref(), br#"{"hello":"world"}"#);
    assert_eq!(g.header("content-type").unwrap(), "application/json");

    // Structured mode is accepted and delivered in binary mode.
    let ev = serde_json::json!({"specversion": "1.0", "id": "ok-2", "type": "t",
        "source": "/s", "datacontenttype": "application/json", "data": {"a": 1}});
    let r = post(
        &url,
        &[("content-type", "application/cloudevents+json")],
        &ev.to_string(),
    )
    .await;
    assert_eq!(r.status(), 202);
    let g = sink.got("/t/all").pop().unwrap();
    assert_eq!(g.header("ce-id").unwrap(), "ok-2");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&g.body).unwrap(),
        serde_json::json!({"a": 1})
    );

    // Not CloudEvents: 400.
    let plain = post(&url, &[("content-type", "application/json")], "{}").await;
    assert_eq!(plain.status(), 400);
    let no_id = post(
        &url,
        &[
            ("ce-specversion", "1.0"),
            ("ce-type", "t"),
            ("ce-source", "/s"),
        ],
        "",
    )
    .await;
    assert_eq!(no_id.status(), 400);
    let bad_version = post(
        &url,
        &[
            ("ce-specversion", "9.9"),
            ("ce-id", "x"),
            ("ce-type", "t"),
            ("ce-source", "/s"),
        ],
        "",
    )
    .await;
    assert_eq!(bad_version.status(), 400);
    let broken = post(
        &url,
        &[("content-type", "application/cloudevents+json")],
        "{",
    )
    .await;
    assert_eq!(broken.status(), 400);
    // The TTL guard: an event arriving with knativebrokerttl 1 is dropped.
    assert_eq!(
        send(&url, "ttl-1", "t", &[("ce-knativebrokerttl", "1")]).await,
        400
    );
    assert_eq!(
        send(&url, "ttl-2", "t", &[("ce-knativebrokerttl", "2")]).await,
        202
    );
    // Paths and methods.
    let base = url.trim_end_matches("/ns/default");
    assert_eq!(send(&format!("{base}/"), "p", "t", &[]).await, 404);
    assert_eq!(send(&format!("{base}/ns"), "p", "t", &[]).await, 400);
    assert_eq!(send(&format!("{base}/ns/other"), "p", "t", &[]).await, 404);
    assert_eq!(
        send(&format!("{base}/ns/default/"), "p2", "t", &[]).await,
        202
    );
    assert_eq!(c.get(&url).send().await.unwrap().status(), 405);
    let options = c
        .request(reqwest::Method::OPTIONS, &url)
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 200);
    assert_eq!(options.headers()["webhook-allowed-origin"], "*");

    broker.settled(SETTLE).await.unwrap();
    assert_eq!(
        sink.ids("/t/all"),
        ["ok-1", "ok-2", "ttl-2", "p2"].map(String::from).into()
    );
    let refused: Vec<u16> = broker
        .ingested()
        .iter()
        .filter(|i| i.refusal.is_some())
        .map(|i| i.status)
        .collect();
    assert_eq!(refused, vec![400, 400, 400, 400, 400, 404]);
}

// ---------------------------------------------------------------------------
// Retries.

/// Each status Knative retries is retried `retry` times then dead-lettered;
/// each it does not retry is dead-lettered after one attempt.
#[tokio::test]
async fn retries_exactly_the_statuses_knative_retries() {
    let sink = Sink::start().await;
    let retried = [
        500, 501, 502, 503, 504, 505, 507, 511, 599, 404, 408, 409, 429,
    ];
    let not_retried = [
        300, 301, 304, 307, 400, 401, 402, 403, 405, 406, 410, 411, 412, 413, 415, 418, 422, 425,
        426, 428, 431, 451, 499,
    ];
    let mut yaml = broker_with(
        "retry: 2\nbackoffPolicy: linear\nbackoffDelay: PT1S\ndeadLetterSink:\n  ref: {apiVersion: v1, kind: Service, name: dls}",
    );
    for code in retried.iter().chain(&not_retried) {
        let name = format!("s{code}");
        yaml.push_str(&trigger(
            &name,
            &format!("filters: [{{exact: {{type: t{code}}}}}]"),
        ));
        sink.always(&format!("/t/{name}"), status(*code));
    }
    let broker = start(&yaml, &sink, FAST).await;
    for code in retried.iter().chain(&not_retried) {
        assert_eq!(
            send(&broker.url(), &format!("e{code}"), &format!("t{code}"), &[]).await,
            202
        );
    }
    broker.settled(SETTLE).await.unwrap();
    for code in retried.iter().chain(&not_retried) {
        let want = retried.contains(code);
        assert_eq!(relay_tests::broker::retried_status(*code), want, "{code}");
    }
    for code in retried {
        let calls = broker.invocations(&format!("e{code}"));
        assert_eq!(
            calls.get("sink"),
            Some(&3),
            "{code} is retried twice: {calls:?}"
        );
    }
    for code in not_retried {
        let calls = broker.invocations(&format!("e{code}"));
        assert_eq!(
            calls.get("sink"),
            Some(&1),
            "{code} is not retried: {calls:?}"
        );
    }
    // All were dead-lettered, with their status.
    let letters = broker.dead_letters();
    assert_eq!(letters.len(), retried.len() + not_retried.len());
    for code in retried.iter().chain(&not_retried) {
        let id = format!("e{code}");
        let l = letters.iter().find(|l| l.event.id() == id).unwrap();
        assert_eq!(l.error_code.as_deref(), Some(code.to_string().as_str()));
    }

    // A delivery that succeeds on the third attempt is not dead-lettered.
    sink.script("/t/s503", vec![status(503), status(500)]);
    sink.always("/t/s503", status(200));
    assert_eq!(send(&broker.url(), "late", "t503", &[]).await, 202);
    assert_eq!(broker.invocations("late").get("sink"), Some(&3));
    assert!(broker.dead_letters().iter().all(|l| l.event.id() != "late"));
}

/// The waits the manifest implies, recorded per attempt, and really slept
/// when not scaled.
#[tokio::test]
async fn backoff_schedule_follows_the_manifest() {
    // The project's delivery: 5 retries, exponential from 0.5 s.
    let m = Manifests::parse(&broker_with(
        "retry: 5\nbackoffPolicy: exponential\nbackoffDelay: PT0.5S\ntimeout: PT30S",
    ))
    .unwrap();
    let d = m.brokers[0].delivery.clone().unwrap();
    assert_eq!(d.backoff_policy, Some(BackoffPolicy::Exponential));
    let ms = |v: &[u64]| {
        v.iter()
            .map(|m| Duration::from_millis(*m))
            .collect::<Vec<_>>()
    };
    assert_eq!(d.schedule(), ms(&[500, 1000, 2000, 4000, 8000]));
    assert_eq!(d.max_attempts(), 6);
    assert_eq!(d.timeout, Some(Duration::from_secs(30)));

    let sink = Sink::start().await;
    let yaml = format!(
        "{}{}{}",
        broker_with("retry: 5\nbackoffPolicy: exponential\nbackoffDelay: PT0.5S"),
        trigger("exp", "filters: [{exact: {type: exp}}]"),
        trigger(
            "lin",
            "filters: [{exact: {type: lin}}]\ndelivery: {retry: 3, backoffPolicy: linear, backoffDelay: PT1S}"
        ),
    );
    sink.always("/t/exp", status(503));
    sink.always("/t/lin", status(503));
    let options = BrokerOptions {
        backoff_scale: 0.01,
        ..BrokerOptions::default()
    };
    let broker = start(&yaml, &sink, options).await;
    // No dead-letter sink: the synchronous ingress reports the loss.
    let started = Instant::now();
    assert_eq!(send(&broker.url(), "x", "exp", &[]).await, 500);
    assert!(
        started.elapsed() >= Duration::from_millis(155),
        "slept 1% of 15.5 s"
    );
    assert_eq!(send(&broker.url(), "y", "lin", &[]).await, 500);
    let delays = |id: &str| {
        broker
            .attempts_for(id)
            .iter()
            .filter(|a| a.target == Target::Subscriber)
            .map(|a| a.delay)
            .collect::<Vec<_>>()
    };
    assert_eq!(delays("x"), ms(&[0, 500, 1000, 2000, 4000, 8000]));
    // Linear: delay * attemptNum, so the first retry does not wait.
    assert_eq!(delays("y"), ms(&[0, 0, 1000, 2000]));

    // Unscaled: the subscriber sees the gaps.
    let yaml = format!(
        "{}{}",
        broker_with("retry: 3\nbackoffPolicy: exponential\nbackoffDelay: PT0.1S"),
        trigger("real", ""),
    );
    let sink = Sink::start().await;
    sink.always("/t/real", status(500));
    let broker = start(&yaml, &sink, BrokerOptions::default()).await;
    assert_eq!(send(&broker.url(), "r", "t", &[]).await, 500);
    let at: Vec<Instant> = sink.got("/t/real").iter().map(|g| g.at).collect();
    assert_eq!(at.len(), 4);
    for (i, want) in [100u64, 200, 400].iter().enumerate() {
        let gap = at[i + 1] - at[i];
        assert!(
            gap >= Duration::from_millis(*want) && gap < Duration::from_millis(want + 1000),
            "gap {i}: {gap:?}, want {want} ms"
        );
    }
}

/// `timeout` bounds each attempt; a timed-out delivery is retried and its
/// dead letter has no knativeerror* extensions (the channel never got
/// broker-filter's description).
#[tokio::test]
async fn timeouts_are_per_attempt_and_leave_no_error_extensions() {
    let sink = Sink::start().await;
    let yaml = format!(
        "{}{}",
        broker_with(
            "retry: 1\ntimeout: PT0.3S\ndeadLetterSink:\n  ref: {apiVersion: v1, kind: Service, name: dls}"
        ),
        trigger("slow", ""),
    );
    sink.always(
        "/t/slow",
        Answer::Plain {
            status: 200,
            headers: vec![],
            body: vec![],
            delay: Duration::from_secs(3),
        },
    );
    let broker = start(&yaml, &sink, FAST).await;
    let started = Instant::now();
    assert_eq!(send(&broker.url(), "slow-1", "t", &[]).await, 202);
    assert!(started.elapsed() < Duration::from_secs(3));
    let attempts = broker.attempts_for("slow-1");
    let outcomes: Vec<_> = attempts
        .iter()
        .filter(|a| a.target == Target::Subscriber)
        .map(|a| a.outcome.clone())
        .collect();
    assert_eq!(outcomes, vec![Outcome::Timeout, Outcome::Timeout]);
    let dls = sink.got("/dls");
    assert_eq!(dls.len(), 1);
    let d = &dls[0];
    assert_eq!(d.id(), "slow-1");
    for ext in ["knativeerrorcode", "knativeerrordest", "knativeerrordata"] {
        assert_eq!(d.header(&format!("ce-{ext}")), None, "{ext}");
    }
    // The event as the channel had it.
    assert_eq!(d.header("ce-knativebrokerttl").as_deref(), Some("255"));
    assert!(d.header("ce-knativearrivaltime").is_some());
    assert_eq!(d.header("prefer"), None);
    assert_eq!(d.header("kn-namespace").as_deref(), Some("ns"));
}

// ---------------------------------------------------------------------------
// Dead letters.

#[tokio::test]
async fn dead_letters_carry_the_knative_error_extensions() {
    let sink = Sink::start().await;
    let dls =
        "deadLetterSink:\n  ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: dls}";
    let refusing = refusing_url();
    let yaml = format!(
        "{}{}{}{}{}---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: gone, namespace: ns}}
spec:
  broker: default
  filters: [{{exact: {{type: gone}}}}]
  subscriber: {{ref: {{apiVersion: v1, kind: Service, name: gone}}}}
",
        broker_with(&format!("retry: 2\n{dls}")),
        trigger("unprocessable", "filters: [{exact: {type: unprocessable}}]"),
        trigger("long", "filters: [{exact: {type: long}}]"),
        trigger("jsonok", "filters: [{exact: {type: jsonok}}]"),
        trigger("mixed", "filters: [{exact: {type: mixed}}]"),
    );
    sink.always(
        "/t/unprocessable",
        with_body(
            422,
            "application/json",
            br#"{"error":"no such repository"}"#,
        ),
    );
    let long_body = "x".repeat(2000);
    sink.always(
        "/t/long",
        with_body(500, "text/plain", long_body.as_bytes()),
    );
    // What relay functions answer on success: 200 with a JSON summary.
    sink.always(
        "/t/jsonok",
        with_body(200, "application/json", br#"{"outcome":"delivered"}"#),
    );
    sink.script(
        "/t/mixed",
        vec![
            with_body(503, "text/plain", b"busy"),
            with_body(500, "text/plain", b"broken"),
            with_body(409, "text/plain", b"last"),
        ],
    );
    let m = Manifests::parse(&yaml).unwrap();
    let mut subs = subscribers(&sink);
    subs.insert("gone".into(), refusing.clone());
    let broker = Broker::start_with(&m, &subs, FAST).await.unwrap();
    for ty in ["unprocessable", "long", "jsonok", "mixed", "gone"] {
        assert_eq!(
            send(&broker.url(), ty, ty, &[("x-request-id", "r1")]).await,
            202
        );
    }
    let dls = sink.got("/dls");
    let by_id = |id: &str| dls.iter().find(|g| g.id() == id).unwrap().clone();
    let data = |g: &Got| {
        base64::engine::general_purpose::STANDARD
            .decode(g.header("ce-knativeerrordata").unwrap())
            .unwrap()
    };

    // 422: not retried; code, destination and body.
    let g = by_id("unprocessable");
    assert_eq!(broker.invocations("unprocessable")["sink"], 1);
    assert_eq!(g.header("ce-knativeerrorcode").unwrap(), "422");
    assert_eq!(
        g.header("ce-knativeerrordest").unwrap(),
        sink.url("/t/unprocessable")
    );
    assert_eq!(data(&g), br#"{"error":"no such repository"}"#);
    assert_eq!(g.header("ce-type").unwrap(), "unprocessable");
    assert_eq!(g.body.as_ref(), br#"{"hello":"world"}"#);
    assert_eq!(g.header("x-request-id").unwrap(), "r1");

    // The last answer's status and body.
    let g = by_id("mixed");
    assert_eq!(broker.invocations("mixed")["sink"], 3);
    assert_eq!(g.header("ce-knativeerrorcode").unwrap(), "409");
    assert_eq!(data(&g), b"last");

    // A connection error: 500 and the dispatcher's error text; retried.
    let g = by_id("gone");
    assert_eq!(broker.invocations("gone")["gone"], 3);
    assert_eq!(g.header("ce-knativeerrorcode").unwrap(), "500");
    assert_eq!(g.header("ce-knativeerrordest").unwrap(), refusing);
    let text = String::from_utf8(data(&g)).unwrap();
    assert!(text.starts_with("dispatch error: "), "{text}");

    // Over 768 bytes: cut to 1024 base64 characters, and Knative's Go
    // dispatcher would have panicked.
    let g = by_id("long");
    let encoded = g.header("ce-knativeerrordata").unwrap();
    assert_eq!(encoded.len(), 1024);
    assert_eq!(data(&g), long_body.as_bytes()[..768]);
    let panics = broker.knative_panics();
    assert_eq!(panics.len(), 1, "{panics:?}");
    assert!(panics[0].contains("2000-byte"), "{}", panics[0]);

    // 200 with a body that is not a CloudEvent: broker-filter answers 502,
    // which is retried and dead-lettered without error extensions.
    let g = by_id("jsonok");
    assert_eq!(broker.invocations("jsonok")["sink"], 3);
    assert_eq!(g.header("ce-knativeerrorcode"), None);
    let a = broker.attempts_for("jsonok");
    assert_eq!(a[0].outcome, Outcome::Status(200));
    assert_eq!(a[0].broker_status, Some(502));
    assert!(a[0].note.as_deref().unwrap().contains("502"));
    let letter = broker
        .dead_letters()
        .into_iter()
        .find(|l| l.event.ty() == "jsonok")
        .unwrap();
    assert_eq!(letter.error_code, None);
    assert_eq!(letter.sink_answer, Ok(202));

    // The record matches what the sink received.
    let l = broker
        .dead_letters()
        .into_iter()
        .find(|l| l.event.id() == "unprocessable")
        .unwrap();
    assert_eq!(
        l.error_body().unwrap(),
        br#"{"error":"no such repository"}"#
    );
    assert_eq!(l.error_dest.unwrap(), sink.url("/t/unprocessable"));
}

/// A Trigger's own delivery replaces the Broker's as a whole: without its
/// own deadLetterSink it has none, and the synchronous ingress reports the
/// loss with 500.
#[tokio::test]
async fn a_triggers_delivery_replaces_the_brokers() {
    let sink = Sink::start().await;
    let yaml = format!(
        "{}{}{}",
        broker_with("retry: 3\ndeadLetterSink:\n  ref: {apiVersion: v1, kind: Service, name: dls}"),
        trigger("inherits", "filters: [{exact: {type: inherits}}]"),
        trigger(
            "own",
            "filters: [{exact: {type: own}}]\ndelivery: {retry: 1}"
        ),
    );
    sink.always("/t/inherits", status(500));
    sink.always("/t/own", status(500));
    let broker = start(&yaml, &sink, FAST).await;
    assert_eq!(send(&broker.url(), "i", "inherits", &[]).await, 202);
    assert_eq!(broker.invocations("i")["sink"], 4);
    assert_eq!(send(&broker.url(), "o", "own", &[]).await, 500);
    assert_eq!(broker.invocations("o")["sink"], 2);
    assert_eq!(sink.ids("/dls"), ["i".to_string()].into());
    // Without any delivery spec: one attempt, the loss reported.
    let yaml = format!("{BROKER}{}", trigger("bare", ""));
    let sink = Sink::start().await;
    sink.always("/t/bare", status(503));
    let broker = start(&yaml, &sink, FAST).await;
    assert_eq!(send(&broker.url(), "b", "t", &[]).await, 500);
    assert_eq!(broker.invocations("b")["sink"], 1);
}

// ---------------------------------------------------------------------------
// Replies.

#[tokio::test]
async fn replies_go_back_through_the_broker() {
    let sink = Sink::start().await;
    let yaml = format!(
        "{}{}{}{}",
        broker_with("retry: 1\ndeadLetterSink:\n  ref: {apiVersion: v1, kind: Service, name: dls}"),
        trigger("first", "filters: [{exact: {type: start}}]"),
        trigger("second", "filters: [{exact: {type: answer}}]"),
        trigger("third", "filters: [{exact: {type: structured}}]"),
    );
    sink.script(
        "/t/first",
        vec![
            Answer::Reply {
                ty: "answer".into(),
                structured: false,
            },
            Answer::Reply {
                ty: "structured".into(),
                structured: true,
            },
        ],
    );
    let broker = start(&yaml, &sink, FAST).await;
    assert_eq!(send(&broker.url(), "s1", "start", &[]).await, 202);
    assert_eq!(send(&broker.url(), "s2", "start", &[]).await, 202);
    broker.settled(SETTLE).await.unwrap();
    assert_eq!(sink.ids("/t/second"), ["reply-1".to_string()].into());
    assert_eq!(sink.ids("/t/third"), ["reply-2".to_string()].into());
    let g = &sink.got("/t/second")[0];
    assert_eq!(g.header("ce-source").unwrap(), "/replier");
    assert_eq!(g.header("ce-knativebrokerttl"), None);
    assert!(g.header("ce-knativearrivaltime").is_some());
    // The replier's x-request-id passes through to the next hop.
    assert_eq!(g.header("x-request-id").unwrap(), "from-replier");
    assert_eq!(g.body.as_ref(), br#"{"n":1}"#);
    let replies = broker.replies();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].in_reply_to, "s1");
    assert_eq!(replies[0].answer, Ok(202));
    // Sent back with the TTL the original had at the channel (255), then
    // decremented by the ingress.
    assert_eq!(
        replies[0]
            .event
            .extension("knativebrokerttl")
            .unwrap()
            .to_string(),
        "255"
    );
    let reingested = broker
        .ingested()
        .into_iter()
        .find(|i| i.event.as_ref().is_some_and(|e| e.id() == "reply-1"))
        .unwrap();
    assert_eq!(
        reingested
            .event
            .unwrap()
            .extension("knativebrokerttl")
            .unwrap()
            .to_string(),
        "254"
    );
    assert!(sink.got("/dls").is_empty());
}

/// A subscriber that answers every event with another it matches loops
/// until the TTL runs out: 255 deliveries (the first and 254 replies); the
/// 255th reply is refused with 400, and the event it answered is
/// dead-lettered with the Broker's address as destination.
#[tokio::test]
async fn reply_loops_end_at_the_ttl() {
    let sink = Sink::start().await;
    let yaml = format!(
        "{}{}",
        broker_with("retry: 2\ndeadLetterSink:\n  ref: {apiVersion: v1, kind: Service, name: dls}"),
        trigger("loop", "filters: [{exact: {type: loop}}]"),
    );
    sink.always(
        "/t/loop",
        Answer::Reply {
            ty: "loop".into(),
            structured: false,
        },
    );
    let broker = start(&yaml, &sink, FAST).await;
    assert_eq!(send(&broker.url(), "seed", "loop", &[]).await, 202);
    broker.settled(SETTLE).await.unwrap();
    assert_eq!(sink.got("/t/loop").len(), 255);
    let refused: Vec<_> = broker
        .ingested()
        .into_iter()
        .filter(|i| i.status == 400)
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].event.as_ref().unwrap().id(), "reply-255");
    // 400 is not retried.
    let reply_attempts = broker
        .attempts()
        .into_iter()
        .filter(|a| a.target == Target::Reply && a.outcome == Outcome::Status(400))
        .count();
    assert_eq!(reply_attempts, 1);
    let dls = sink.got("/dls");
    assert_eq!(dls.len(), 1);
    assert_eq!(dls[0].id(), "reply-254");
    assert_eq!(dls[0].header("ce-knativeerrorcode").unwrap(), "400");
    assert_eq!(dls[0].header("ce-knativeerrordest").unwrap(), broker.url());
    assert_eq!(dls[0].header("ce-knativeerrordata").as_deref(), Some(""));
    assert_eq!(dls[0].header("ce-knativebrokerttl").as_deref(), Some("1"));
}

// ---------------------------------------------------------------------------
// The ingress modes and settling.

#[tokio::test]
async fn asynchronous_ingress_answers_first_and_settled_waits() {
    let sink = Sink::start().await;
    let yaml = format!(
        "{}{}",
        broker_with("retry: 2\nbackoffPolicy: linear\nbackoffDelay: PT0.2S"),
        trigger("fails", ""),
    );
    sink.always("/t/fails", status(500));
    let options = BrokerOptions {
        ingress: IngressMode::Asynchronous,
        ..BrokerOptions::default()
    };
    let broker = start(&yaml, &sink, options).await;
    assert_eq!(send(&broker.url(), "a", "t", &[]).await, 202);
    // Linear 0.2 s: the retries wait 0 and 0.2 s.
    assert!(broker.settled(Duration::from_millis(50)).await.is_err());
    broker.settled(SETTLE).await.unwrap();
    assert_eq!(broker.invocations("a")["sink"], 3);
}

// ---------------------------------------------------------------------------
// Manifests.

#[test]
fn parse_refuses_what_knative_refuses() {
    let t = |spec: &str| format!("{BROKER}{}", trigger("t", spec));
    let cases = [
        (t("filters: [{cesql: \"type = 'a'\"}]"), "CESQL"),
        (t("filters: [{exact: {type: a}, prefix: {type: b}}]"), "multiple dialects"),
        (t("filters: [{all: [{exact: {Type: a}}]}]"), "spec.filters[0].all[0].exact[Type]"),
        (t("filter: {attributes: {my-ext: a}}"), "spec.filter.attributes[my-ext]"),
        (t("delivery: {retry: -1}"), "spec.delivery.retry"),
        (t("delivery: {timeout: PT0S}"), "spec.delivery.timeout"),
        (t("delivery: {backoffPolicy: fibonacci}"), "backoffPolicy"),
        (t("delivery: {backoffDelay: 5s}"), "backoffDelay"),
        (t("delivery: {retryAfterMax: PT1S}"), "delivery-retryafter"),
        (t("delivery: {format: xml}"), "format"),
        (t("delivery: {retries: 3}"), "unknown field `retries`"),
        (t("filters: [{exact: {type: a}, exactly: 1}]"), "unknown field `exactly`"),
        (
            format!("{BROKER}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: x}}\nspec:\n  brokerRef: {{name: default}}\n  subscriber: {{uri: http://127.0.0.1/}}\n"),
            "brokerRef",
        ),
        (
            format!("{BROKER}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: x}}\nspec:\n  subscriber: {{uri: http://127.0.0.1/}}\n"),
            "spec.broker",
        ),
        (
            format!("{BROKER}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: x}}\nspec:\n  broker: default\n  subscriber: {{uri: relative/path}}\n"),
            "absolute",
        ),
        (
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: k\n  annotations: {eventing.knative.dev/broker.class: Kafka}\n".to_string(),
            "MTChannelBasedBroker",
        ),
    ];
    for (yaml, want) in cases {
        match Manifests::parse(&yaml) {
            Ok(_) => panic!("accepted:\n{yaml}"),
            Err(e) => assert!(e.contains(want), "{e:?} should name {want:?}"),
        }
    }
    // Durations as Knative's period parser reads them.
    let ms = Duration::from_millis;
    assert_eq!(iso8601("PT0.5S").unwrap(), ms(500));
    assert_eq!(
        iso8601("PT0.25S").unwrap(),
        ms(200),
        "one decimal digit kept"
    );
    assert_eq!(iso8601("PT0.7S").unwrap(), ms(700));
    assert_eq!(iso8601("PT30S").unwrap(), ms(30_000));
    assert_eq!(iso8601("PT1.5M").unwrap(), ms(90_000));
    assert_eq!(iso8601("PT1H").unwrap(), ms(3_600_000));
    assert_eq!(iso8601("P1D").unwrap(), ms(86_400_000));
    assert_eq!(iso8601("P1W").unwrap(), ms(7 * 86_400_000));
    assert!(iso8601("5s").is_err());

    // Precedence and materialization.
    let m = Manifests::parse(&t("filter: {attributes: {type: a}}\nfilters: [{exact: {type: \"\"}}, {not: {prefix: {type: b}}}]")).unwrap();
    let mut not_b = std::collections::BTreeMap::new();
    not_b.insert("type".to_string(), "b".to_string());
    assert_eq!(
        m.triggers[0].filter,
        TriggerFilter::Filters(Filter::All(vec![Filter::Not(Some(Box::new(
            Filter::Prefix(not_b)
        )))]))
    );
    let m = Manifests::parse(&t("")).unwrap();
    assert_eq!(m.triggers[0].filter, TriggerFilter::None);
}

/// Unready Triggers get nothing; URLs off loopback are refused.
#[tokio::test]
async fn unresolved_triggers_are_not_ready() {
    let sink = Sink::start().await;
    let yaml = format!(
        "{BROKER}{}---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: nobody, namespace: ns}}
spec:
  broker: default
  subscriber: {{ref: {{apiVersion: v1, kind: Service, name: nobody}}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: elsewhere, namespace: ns}}
spec:
  broker: other
  subscriber: {{ref: {{apiVersion: v1, kind: Service, name: sink}}}}
",
        trigger("ok", "")
    );
    let m = Manifests::parse(&yaml).unwrap();
    let broker = Broker::start_with(&m, &subscribers(&sink), FAST)
        .await
        .unwrap();
    let unready = broker.unready();
    assert_eq!(unready.len(), 2, "{unready:?}");
    assert!(unready[0].0 == "ns/nobody" && unready[0].1.contains("nobody"));
    assert!(unready[1].0 == "ns/elsewhere" && unready[1].1.contains("BrokerDoesNotExist"));
    assert_eq!(send(&broker.url(), "u", "t", &[]).await, 202);
    assert_eq!(broker.invocations("u").len(), 1);

    let yaml = format!(
        "{BROKER}---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: far, namespace: ns}}
spec:
  broker: default
  subscriber: {{uri: \"http://hooks.example.com/x\"}}
"
    );
    let m = Manifests::parse(&yaml).unwrap();
    let e = Broker::start(&m, &HashMap::new()).await.err().unwrap();
    assert!(e.contains("not loopback"), "{e}");
}

/// The project's own manifests, rendered by kubectl as a cluster would get
/// them: the Broker's delivery, every Trigger's filter, and a Broker
/// started from them.
#[tokio::test]
async fn the_rendered_base_manifests() {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../knative/base");
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&base)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "kubectl is needed to render {} (kubectl kustomize): {e}",
                base.display()
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        base.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let m = Manifests::parse(&yaml).unwrap();
    assert_eq!(m.brokers.len(), 1);
    let b = &m.brokers[0];
    assert_eq!(
        (b.namespace.as_str(), b.name.as_str()),
        ("tekton-relay", "default")
    );
    let d = b.delivery.as_ref().unwrap();
    assert_eq!(d.retry, Some(5));
    assert_eq!(d.backoff_policy, Some(BackoffPolicy::Exponential));
    assert_eq!(d.backoff_delay, Some(Duration::from_millis(500)));
    assert_eq!(d.timeout, Some(Duration::from_secs(30)));
    assert_eq!(d.dead_letter_sink.as_ref().unwrap().key(), "relay-dlq");
    let waits: Duration = d.schedule().iter().sum();
    assert_eq!(waits, Duration::from_millis(15_500));

    let trigger_docs = yaml.matches("\nkind: Trigger\n").count();
    assert_eq!(m.triggers.len(), trigger_docs);
    let names: BTreeSet<&str> = m.triggers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["relay-log", "relay-router"]));
    for t in &m.triggers {
        assert_eq!(t.broker, "default", "{}", t.name);
        assert_eq!(
            t.subscriber.key(),
            t.name,
            "{} delivers to its own Service",
            t.name
        );
        assert!(
            t.delivery.is_none(),
            "{} uses the Broker's delivery",
            t.name
        );
    }
    // The router takes Tekton's, CDEvents' and Flux's events once, never
    // its own (marked) replies; the log function only events marked for it.
    let event = |ty: &str, marks: &[&str]| {
        let mut b = cloudevents::EventBuilderV10::new()
            .id("1")
            .ty(ty)
            .source("/x");
        for m in marks {
            b = b.extension(m, "true");
        }
        b.build().unwrap()
    };
    let tekton = event("dev.tekton.event.pipelinerun.successful.v1", &[]);
    let routed = event(
        "dev.tekton.event.pipelinerun.successful.v1",
        &["relaylog", "relayrouted"],
    );
    let flux = event("io.fluxcd.v1.HelmRelease.ready", &[]);
    let other = event("com.example.unrelated", &[]);
    let by_name = |n: &str| m.triggers.iter().find(|t| t.name == n).unwrap();
    let (router, log) = (by_name("relay-router"), by_name("relay-log"));
    assert_eq!(router.filter.evaluate(&tekton), FilterResult::Pass);
    assert_eq!(router.filter.evaluate(&flux), FilterResult::Pass);
    assert_eq!(router.filter.evaluate(&routed), FilterResult::Fail);
    assert_eq!(router.filter.evaluate(&other), FilterResult::Fail);
    assert_eq!(log.filter.evaluate(&tekton), FilterResult::Fail);
    assert_eq!(log.filter.evaluate(&routed), FilterResult::Pass);

    // A Broker from them: the router (standing in: it marks t1 for the log
    // function, and wants nothing of t2) and the log function.
    let sink = Sink::start().await;
    let subs = HashMap::from([
        ("relay-router".to_string(), sink.url("/router")),
        ("relay-log".to_string(), sink.url("/log")),
        ("relay-dlq".to_string(), sink.url("/dlq")),
    ]);
    let reply = serde_json::json!({"specversion": "1.0", "id": "t1", "source": "/x",
        "type": "dev.tekton.event.pipelinerun.failed.v1", "relaylog": "true", "relayrouted": "true"});
    sink.script(
        "/router",
        vec![
            with_body(
                200,
                "application/cloudevents+json",
                reply.to_string().as_bytes(),
            ),
            status(202),
        ],
    );
    let broker = Broker::start_with(&m, &subs, FAST).await.unwrap();
    assert_eq!(broker.unready(), Vec::<(String, String)>::new());
    assert!(broker.url().ends_with("/tekton-relay/default"));
    for id in ["t1", "t2"] {
        let sent = send(
            &broker.url(),
            id,
            "dev.tekton.event.pipelinerun.failed.v1",
            &[],
        )
        .await;
        assert_eq!(sent, 202);
    }
    broker.settled(SETTLE).await.unwrap();
    assert_eq!(sink.ids("/router"), ["t1", "t2"].map(String::from).into());
    assert_eq!(sink.ids("/log"), ["t1".to_string()].into());
    assert!(sink.got("/dlq").is_empty());
}
