//! Distributed tracing through a real `relay serve`: the W3C trace context
//! an event carries is continued into every provider request (each attempt
//! a client span), spans are exported over OTLP/HTTP to a collector stand-in
//! only when an endpoint is set, the context survives a dead letter and its
//! replay, and nothing secret reaches a span.

use std::path::Path;

use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::otlp::{self, CollectedSpan, split_traceparent};
use relay_tests::process::{RelayProcess, send};
use relay_tests::receiver::Receiver;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_relay");
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE}-{PARENT}-01")
}

/// The binary-mode success fixture as a new event of a new run.
fn event(tag: &str) -> RequestFile {
    let mut f = RequestFile::load(
        &dir().join("tekton-pipelinerun-success/017-pipelinerun-successful.json"),
    );
    f.headers.insert("Ce-Id".into(), format!("trace-{tag}"));
    f.body["pipelineRun"]["metadata"]["uid"] = format!("uid-trace-{tag}").into();
    f
}

/// The same event in structured mode.
fn structured(f: &RequestFile) -> Value {
    let mut ev =
        json!({"specversion": "1.0", "datacontenttype": "application/json", "data": f.body});
    for (k, v) in &f.headers {
        if let Some(attr) = k.to_ascii_lowercase().strip_prefix("ce-")
            && attr != "specversion"
        {
            ev[attr] = v.clone().into();
        }
    }
    ev
}

fn config(url: &str, extra: &str) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  deadLetter: file://$DIR/dead-letters.jsonl\n  delivery: {{initialBackoffMs: 10, maxBackoffMs: 40, maxAttempts: 3}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: hook}}\nspec:\n  type: webhook\n  webhook: {{{url}{extra}}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: hook}}\nspec:\n  providerRef: {{name: hook}}\n"
    )
}

fn outgoing(rx: &Receiver, path: &str) -> Vec<String> {
    rx.requests_on(path)
        .iter()
        .map(|r| {
            let (trace, span, flags) = r.traceparent();
            format!("00-{trace}-{span}-{flags}")
        })
        .collect()
}

/// `relay serve` exporting spans to `endpoint`, with the collector's API key
/// (`k3y-0f-the-collector`) in a headers file in `secrets`.
async fn exporting_relay(cfg: &str, endpoint: &str, secrets: &Path) -> RelayProcess {
    let headers_file = secrets.join("otlp-headers");
    std::fs::write(&headers_file, "x-api-key=k3y-0f-the-collector\n").unwrap();
    let headers_path = headers_file.display().to_string();
    RelayProcess::start_with_env(
        Path::new(BIN),
        cfg,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("RELAY_OTLP_HEADERS_FILE", headers_path.as_str()),
        ],
    )
    .await
}

fn one(spans: &[CollectedSpan], what: impl Fn(&CollectedSpan) -> bool) -> &CollectedSpan {
    let found: Vec<_> = spans.iter().filter(|s| what(s)).collect();
    assert_eq!(found.len(), 1, "{spans:#?}");
    found[0]
}

// Multi-threaded: the collector must answer while the test waits for the
// relay to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_is_continued_into_each_provider_request_and_exported() {
    let rx = Receiver::start().await;
    let collector = Receiver::start().await;
    // The URL's path is a secret (as a Slack hook's is): it must reach no span.
    let path = "/hook/s3cr3t-path-token";
    rx.script(path, &[(500, None)]);
    let secrets = tempfile::tempdir().unwrap();
    let url_file = secrets.path().join("url");
    std::fs::write(&url_file, rx.url(path)).unwrap();
    let cfg = config(&format!("urlFile: \"{}\"", url_file.display()), "");
    let mut relay = exporting_relay(&cfg, &collector.url(""), secrets.path()).await;

    let mut ev = event("exported");
    ev.headers.insert("Ce-Traceparent".into(), traceparent());
    let (status, body) = send(&reqwest::Client::new(), &relay.base, &ev).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );

    // Each attempt (a 500, then a 200) carried the run's trace, as a new span.
    let sent = outgoing(&rx, path);
    assert_eq!(sent.len(), 2, "{sent:?}");
    let attempts: Vec<_> = sent.iter().map(|tp| split_traceparent(tp)).collect();
    for (trace, span, flags) in &attempts {
        assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "01"));
        assert_ne!(span, PARENT, "a child span, not the sender's");
    }
    assert_ne!(attempts[0].1, attempts[1].1, "one span per attempt");
    // The event's log lines name its trace.
    let processed = relay
        .stderr()
        .lines()
        .find(|l| l.contains("event processed"))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .expect("a log line for the event");
    assert_eq!(processed["span"]["trace_id"], TRACE);

    // SIGTERM ends the relay, and the spans still batched are exported.
    assert!(relay.terminate().success(), "{}", relay.stderr());
    let spans = otlp::spans(&collector);
    let event_span = one(&spans, |s| s.name == "process event");
    assert_eq!(event_span.service, "relay");
    assert_eq!(event_span.kind, 5, "consumer");
    assert_eq!(
        (
            event_span.trace_id.as_str(),
            event_span.parent_span_id.as_str()
        ),
        (TRACE, PARENT)
    );
    assert_eq!(
        event_span.attributes["cloudevents.event_id"],
        "trace-exported"
    );
    assert_eq!(event_span.attributes["relay.outcome"], "delivered");
    let deliver = one(&spans, |s| s.name == "deliver hook");
    assert_eq!(deliver.parent_span_id, event_span.span_id);
    assert_eq!(deliver.attributes["relay.provider_type"], "webhook");
    assert_eq!(deliver.attributes["relay.outcome"], "delivered");
    let requests: Vec<_> = spans.iter().filter(|s| s.name == "POST").collect();
    assert_eq!(requests.len(), 2, "{spans:#?}");
    for (r, (_, span_id, _)) in requests.iter().zip(&attempts) {
        assert_eq!(&r.span_id, span_id, "the header names the client span");
        assert_eq!(r.parent_span_id, deliver.span_id);
        assert_eq!((r.kind, r.trace_id.as_str()), (3, TRACE));
        assert_eq!(r.attributes["server.address"], "127.0.0.1");
    }
    assert_eq!(requests[0].attributes["http.response.status_code"], "500");
    assert_eq!(requests[0].status, 2, "a failed attempt is an error span");
    assert_eq!(requests[1].attributes["http.response.status_code"], "200");

    let exports = collector.requests_on("/v1/traces");
    assert!(
        exports
            .iter()
            .all(|r| r.headers["x-api-key"] == "k3y-0f-the-collector")
    );
    assert!(
        !relay.stderr().contains("k3y-0f"),
        "the key reached the log"
    );
    let exported: Vec<u8> = collector
        .requests_on("/v1/traces")
        .iter()
        .flat_map(|r| r.body.to_vec())
        .collect();
    assert!(
        !String::from_utf8_lossy(&exported).contains("s3cr3t"),
        "the secret URL path reached an exported span"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_borne_context_survives_a_dead_letter_and_its_replay() {
    let rx = Receiver::start().await;
    let collector = Receiver::start().await;
    rx.always("/hook", Some((401, None)));
    // The dead-letter API is on with its own credential (spec.apiAuth).
    let secrets = tempfile::tempdir().unwrap();
    let api_token = secrets.path().join("api-token");
    std::fs::write(&api_token, "tracing-admin-token-0123456789abcdef").unwrap();
    let cfg = config(&format!("url: \"{}\"", rx.url("/hook")), "").replacen(
        "spec:\n",
        &format!(
            "spec:\n  apiAuth: {{bearerTokenFile: {}}}\n",
            api_token.display()
        ),
        1,
    );
    let endpoint = collector.url("");
    let mut relay = RelayProcess::start_with_env(
        Path::new(BIN),
        &cfg,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ],
    )
    .await;
    let client = reqwest::Client::new();

    // Structured mode, the context only in the HTTP header (as a Knative
    // Broker sends it).
    let ev = structured(&event("dead-letter"));
    assert!(ev.get("traceparent").is_none());
    let resp = client
        .post(&relay.base)
        .header("content-type", "application/cloudevents+json")
        .header("traceparent", traceparent())
        .header("tracestate", "vendor=abc")
        .body(ev.to_string())
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["outcome"], "dead_lettered", "{body}");
    let letters = std::fs::read_to_string(relay.path("dead-letters.jsonl")).unwrap();
    let entry: Value = serde_json::from_str(letters.lines().next().unwrap()).unwrap();
    assert_eq!(entry["event"]["traceparent"], traceparent().as_str());
    assert_eq!(entry["event"]["tracestate"], "vendor=abc");

    // Fixed and replayed: the replay continues the same trace.
    rx.always("/hook", None);
    rx.clear();
    let r: Value = client
        .post(format!("{}/api/v1/dlq/replay", relay.base))
        .bearer_auth("tracing-admin-token-0123456789abcdef")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r, json!({"replayed": 1, "succeeded": 1, "failed": 0}));
    let sent = outgoing(&rx, "/hook");
    assert_eq!(sent.len(), 1);
    assert_eq!(split_traceparent(&sent[0]).0, TRACE);
    let state = rx.requests_on("/hook")[0].headers["tracestate"].clone();
    assert_eq!(state, "vendor=abc", "tracestate travels with the context");

    assert!(relay.terminate().success(), "{}", relay.stderr());
    let spans = otlp::spans(&collector);
    let live = one(&spans, |s| s.name == "process event");
    assert_eq!(
        (live.trace_id.as_str(), live.parent_span_id.as_str()),
        (TRACE, PARENT)
    );
    assert_eq!(live.attributes["relay.outcome"], "dead_lettered");
    assert_eq!(live.status, 2);
    let replay = one(&spans, |s| s.name == "replay dead letter");
    assert_eq!(
        (replay.trace_id.as_str(), replay.parent_span_id.as_str()),
        (TRACE, PARENT)
    );
    assert_eq!(replay.attributes["relay.replay"], "hook");
    assert_eq!(replay.attributes["relay.outcome"], "delivered");
}

#[tokio::test]
async fn without_a_valid_context_a_new_trace_starts_and_nothing_is_exported() {
    let rx = Receiver::start().await;
    let cfg = config(&format!("url: \"{}\"", rx.url("/hook")), "");
    let relay = RelayProcess::start_with_env(
        Path::new(BIN),
        &cfg,
        // An exporter variable without an endpoint does not turn export on.
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    )
    .await;
    let client = reqwest::Client::new();
    let mut bad = event("malformed");
    bad.headers
        .insert("Ce-Traceparent".into(), "00-not-a-trace-01".into());
    let (status, body) = send(&client, &relay.base, &bad).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    let (status, _) = send(&client, &relay.base, &event("absent")).await;
    assert_eq!(status, 200);

    let sent = outgoing(&rx, "/hook");
    assert_eq!(sent.len(), 2);
    // Valid (`outgoing` checks), and new.
    let traces: Vec<String> = sent.iter().map(|tp| split_traceparent(tp).0).collect();
    assert_ne!(traces[0], traces[1], "each event its own new trace");
    assert!(
        !relay.stderr().contains("exporting traces"),
        "export is off by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_collector_is_logged_without_its_credentials() {
    let rx = Receiver::start().await;
    let collector = Receiver::start().await;
    collector.always("/v1/traces", Some((503, None)));
    let secrets = tempfile::tempdir().unwrap();
    let cfg = config(&format!("url: \"{}\"", rx.url("/hook")), "");
    // Credentials in the endpoint URL too, as some collectors take them.
    let endpoint = collector
        .url("")
        .replace("http://", "http://tenant:pa55w0rd@");
    let mut relay = exporting_relay(&cfg, &endpoint, secrets.path()).await;
    let (status, body) = send(
        &reqwest::Client::new(),
        &relay.base,
        &event("collector-down"),
    )
    .await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    assert!(relay.terminate().success());

    assert!(!collector.requests_on("/v1/traces").is_empty());
    let log = relay.stderr();
    let failed = log
        .lines()
        .find(|l| l.contains("spans could not be exported"))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .unwrap_or_else(|| panic!("no export failure logged:\n{log}"));
    assert_eq!(failed["fields"]["status"], 503, "{failed}\n{log}");
    assert!(failed["fields"]["spans"].as_u64().unwrap() >= 3);
    for secret in ["k3y-0f", "pa55w0rd"] {
        assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
    }
}

/// Issue #13: the exporter's client followed redirects, so a collector
/// answering `307` sent the spans, and the collector's API key from the
/// headers file, on to wherever it pointed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_redirect_is_not_followed_with_its_key() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rx = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let to = elsewhere.url("/v1/traces");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        let to = to.clone();
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, to)],
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let secrets = tempfile::tempdir().unwrap();
    let cfg = config(&format!("url: \"{}\"", rx.url("/hook")), "");
    let mut relay = exporting_relay(&cfg, &collector, secrets.path()).await;
    let (status, body) = send(&reqwest::Client::new(), &relay.base, &event("redirected")).await;
    assert_eq!(status, 200, "{body}");
    // SIGTERM flushes the batch: the collector is asked, and only it.
    assert!(relay.terminate().success(), "{}", relay.stderr());
    assert!(hits.load(Ordering::SeqCst) >= 1, "{}", relay.stderr());
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect was followed: {:?}",
        elsewhere.requests()
    );
}
