//! The dead-letter function's router (`relay::dlq::router`), on a file
//! store in a folder of its own, set up by `DeadLetters::open` as the
//! binary sets it up.

use std::net::SocketAddr;
use std::sync::Arc;

use relay::dlq::{DeadLetters, Subscribers, router};
use relay_core::config::RelayConfig;
use relay_tests::fixtures::{RequestFile, dir, knative_dead_letter};
use relay_tests::metrics::counter;
use relay_tests::receiver::Receiver;
use relay_tests::router::{Answer, Call};
use serde_json::{Value, json};

use super::assert_error_body;

/// The Broker's credential (`spec.inboundAuth`) and the operator's
/// (`spec.apiAuth`): different, each good for its own door only.
const EVENTS_TOKEN: &str = "broker-token-0123456789abcdef0123456789";
const API_TOKEN: &str = "operator-token-fedcba9876543210fedcba98";

/// The function in-process, its folder (store and secrets) beside it.
struct Dlq {
    router: axum::Router,
    dir: tempfile::TempDir,
}

/// The secrets of both credentials, in `dir`.
fn secrets(dir: &std::path::Path) -> (String, String) {
    std::fs::write(dir.join("events"), EVENTS_TOKEN).unwrap();
    std::fs::write(dir.join("api"), API_TOKEN).unwrap();
    (
        format!(
            "  inboundAuth: {{bearerTokenFile: {}}}\n",
            dir.join("events").display()
        ),
        format!(
            "  apiAuth: {{bearerTokenFile: {}}}\n",
            dir.join("api").display()
        ),
    )
}

impl Dlq {
    /// With both credentials, `extra` spec lines and `subscribers`
    /// (`RELAY_DLQ_SUBSCRIBERS`).
    async fn start(extra: &str, subscribers: &str) -> Dlq {
        Dlq::with(true, true, extra, subscribers).await
    }

    async fn with(events: bool, api: bool, extra: &str, subscribers: &str) -> Dlq {
        let dir = tempfile::tempdir().unwrap();
        let (inbound, api_auth) = secrets(dir.path());
        let mut spec = String::new();
        if events {
            spec += &inbound;
        }
        if api {
            spec += &api_auth;
        }
        spec += extra;
        let spec = match spec.is_empty() {
            true => " {}\n".to_string(),
            false => format!("\n{spec}"),
        };
        let text = format!(
            "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:{spec}"
        );
        let cfg = RelayConfig::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let store = format!("file://{}", dir.path().join("dl.jsonl").display());
        let subscribers = Subscribers::parse(subscribers, None).unwrap();
        let dl = DeadLetters::open(&cfg.settings, &store, subscribers)
            .await
            .unwrap();
        Dlq {
            router: router(Arc::new(dl)),
            dir,
        }
    }

    async fn call(&self, c: Call) -> Answer {
        c.send(&self.router).await
    }

    async fn post(&self, f: &RequestFile) -> Answer {
        self.call(Call::event(f)).await
    }

    async fn list(&self) -> Value {
        let a = self.call(Call::get("/api/v1/dlq").bearer(API_TOKEN)).await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json
    }

    async fn replay(&self) -> Value {
        let a = self
            .call(Call::post("/api/v1/dlq/replay").bearer(API_TOKEN))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json
    }

    async fn metrics(&self) -> String {
        self.call(Call::get("/metrics")).await.text
    }
}

/// The Broker's dead-letter delivery of the fixture, to `dest`, with the
/// Broker's credential.
fn dead_letter(dest: &str) -> RequestFile {
    knative_dead_letter(dest, EVENTS_TOKEN)
}

const GITHUB: &str = "http://relay-github.tekton-relay.svc.cluster.local";

/// A dead letter is kept: 202 and its id for a direct caller; for the
/// Broker (`Prefer: reply`, as the fixture's real request has it) 202 with
/// no body, since a body that is no CloudEvent is a bad reply to it. Listed,
/// deleted (204), and the API's answers to what it does not have or
/// understand.
#[tokio::test]
async fn a_dead_letter_is_kept_listed_and_deleted() {
    let dlq = Dlq::start("", "").await;
    let from_broker = dead_letter(GITHUB);
    assert_eq!(from_broker.headers["Prefer"], "reply");
    let a = dlq.post(&from_broker).await;
    assert_eq!((a.status, a.text.as_str()), (202, ""));
    let mut direct = dead_letter(GITHUB);
    direct.headers.remove("Prefer");
    direct.headers.insert("ce-id".into(), "direct-1".into());
    let a = dlq.post(&direct).await;
    assert_eq!(a.status, 202, "{}", a.text);
    let id = a.json["id"].as_str().unwrap().to_string();
    assert_eq!(a.json, json!({"id": id}));
    let list = dlq.list().await;
    assert_eq!(list["total"], 2, "{list}");
    assert!(
        list["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == id.as_str()),
        "{list}"
    );
    let other = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .find(|e| *e != id)
        .unwrap();
    let a = dlq
        .call(Call::delete(&format!("/api/v1/dlq/{other}")).bearer(API_TOKEN))
        .await;
    assert_eq!((a.status, a.text.as_str()), (204, ""));

    for body in ["not json", r#"{"what": 1}"#] {
        let a = dlq
            .call(
                Call::post("/api/v1/dlq/replay")
                    .bearer(API_TOKEN)
                    .body(body),
            )
            .await;
        assert_eq!(a.status, 400, "{body}: {}", a.text);
        assert_error_body(&a.json, "invalid_json");
    }
    let a = dlq
        .call(Call::delete("/api/v1/dlq/no-such-id").bearer(API_TOKEN))
        .await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert_error_body(&a.json, "not_found");
    let a = dlq
        .call(Call::delete(&format!("/api/v1/dlq/{id}")).bearer(API_TOKEN))
        .await;
    assert_eq!((a.status, a.text.as_str()), (204, ""));
    assert_eq!(dlq.list().await["total"], 0);

    // Not a CloudEvent: refused, counted.
    let mut flux =
        RequestFile::load(&dir().join("flux-events/001-flux-gitrepository-widgets-info.json"));
    flux.headers
        .insert("authorization".into(), format!("Bearer {EVENTS_TOKEN}"));
    let a = dlq.post(&flux).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_error_body(&a.json, "not_a_cloudevent");
    let a = dlq
        .call(
            Call::post("/")
                .bearer(EVENTS_TOKEN)
                .header("content-type", "application/cloudevents+json")
                .body("{"),
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_error_body(&a.json, "invalid_json");
    let scrape = dlq.metrics().await;
    assert_eq!(
        counter(
            &scrape,
            "relay_requests_rejected_total{code=\"not_a_cloudevent\"}"
        ),
        1,
        "{scrape}"
    );
}

/// Over `spec.limits.maxBodyBytes`: 413 `body_too_large`.
#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let dlq = Dlq::start("  limits: {maxBodyBytes: 2000}\n", "").await;
    let a = dlq.post(&dead_letter(GITHUB)).await;
    assert_eq!(a.status, 413, "{}", a.text);
    assert_eq!(
        a.json,
        json!({"error": {"code": "body_too_large", "message": "body is over the limit of 2000 bytes"}})
    );
    assert_eq!(dlq.list().await["total"], 0);
}

/// Probes and metrics answer without credentials; routes and methods it
/// does not serve are axum's 404 and 405.
#[tokio::test]
async fn probes_metrics_and_unknown_routes() {
    let dlq = Dlq::start("", "").await;
    for path in ["/healthz", "/readyz"] {
        let a = dlq.call(Call::get(path)).await;
        assert_eq!((a.status, a.text.as_str()), (200, "ok"), "{path}");
    }
    assert!(dlq.metrics().await.contains("relay_"));
    assert_eq!(dlq.call(Call::get("/nope")).await.status, 404);
    assert_eq!(dlq.call(Call::get("/")).await.status, 405);
    assert_eq!(dlq.call(Call::delete("/api/v1/dlq")).await.status, 405);
}

/// Moved from `dlq.rs` (it started the function's process).
#[tokio::test]
async fn an_unauthenticated_dead_letter_is_refused_and_nothing_is_kept() {
    let dlq = Dlq::start("", "").await;
    let mut f = dead_letter(GITHUB);
    for auth in [
        None,
        Some("Bearer wrong-token".to_string()),
        // The operator's credential is not the Broker's.
        Some(format!("Bearer {API_TOKEN}")),
    ] {
        match &auth {
            Some(a) => f.headers.insert("authorization".into(), a.clone()),
            None => f.headers.remove("authorization"),
        };
        let a = dlq.post(&f).await;
        assert_eq!(a.status, 401, "{auth:?}");
        assert_eq!(a.json["error"]["code"], "unauthorized");
        assert_error_body(&a.json, "unauthorized");
    }
    assert_eq!(dlq.list().await["total"], 0);
    assert!(
        dlq.metrics()
            .await
            .contains(r#"relay_requests_rejected_total{code="unauthorized"} 3"#)
    );
    // And the Broker's credential does not open the API.
    let a = dlq
        .call(Call::get("/api/v1/dlq").bearer(EVENTS_TOKEN))
        .await;
    assert_eq!(a.status, 401, "{}", a.text);
}

/// Moved from `dlq.rs` (it started the function's process); the error
/// body's message is new.
#[tokio::test]
async fn the_api_is_off_without_its_own_credential() {
    // Events are authenticated; no spec.apiAuth.
    let dlq = Dlq::with(true, false, "", "").await;
    assert_eq!(dlq.post(&dead_letter(GITHUB)).await.status, 202);
    for c in [
        Call::get("/api/v1/dlq"),
        Call::post("/api/v1/dlq/replay"),
        Call::delete("/api/v1/dlq/some-id"),
    ] {
        // Not even the events credential opens it.
        let a = dlq.call(c.bearer(EVENTS_TOKEN)).await;
        assert_eq!(a.status, 404);
        assert_eq!(a.json["error"]["code"], "api_disabled", "{}", a.text);
        assert_eq!(
            a.json,
            json!({"error": {"code": "api_disabled",
                "message": "the dead-letter API is off: it needs its own credential, spec.apiAuth"}})
        );
    }
}

/// Moved from `dlq.rs` (it started the function's process).
#[tokio::test]
async fn an_eviction_shows_on_the_served_metrics() {
    // Smaller than two dead letters of the fixture.
    let dlq = Dlq::start("  deadLetterMaxBytes: 4000\n", "").await;
    let f = dead_letter(GITHUB);
    for _ in 0..4 {
        assert_eq!(dlq.post(&f).await.status, 202);
    }
    let dropped = counter(&dlq.metrics().await, "relay_dead_letters_dropped_total");
    assert!(dropped >= 1);
    assert_eq!(dlq.list().await["total"].as_u64().unwrap() + dropped, 4);
}

/// Moved from `dlq.rs` (it started the function's process): the source is
/// the peer address a listener gives (`ConnectInfo`), here one for all.
#[tokio::test]
async fn a_flood_from_one_source_is_answered_429_with_retry_after() {
    let dlq = Dlq::start(
        "  limits: {inboundPerSource: {ratePerSecond: 0.01, burst: 2}}\n",
        "",
    )
    .await;
    let peer: SocketAddr = "10.0.0.7:40000".parse().unwrap();
    let f = dead_letter(GITHUB);
    let mut anonymous = f.clone();
    anonymous.headers.remove("authorization");
    for _ in 0..5 {
        let a = dlq.call(Call::event(&anonymous).from_peer(peer)).await;
        assert_eq!(a.status, 401);
    }
    for _ in 0..2 {
        let a = dlq.call(Call::event(&f).from_peer(peer)).await;
        assert_eq!(a.status, 202);
    }
    let a = dlq.call(Call::event(&f).from_peer(peer)).await;
    assert_eq!(a.status, 429);
    let retry_after: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(a.json["error"]["code"], "rate_limited");
    assert_error_body(&a.json, "rate_limited");
    assert_eq!(dlq.list().await["total"], 2);
    assert!(
        dlq.metrics()
            .await
            .contains(r#"relay_rate_limited_total{direction="inbound",key="source"} 1"#)
    );
}

/// Moved from `dlq.rs` (it started the function's process).
#[tokio::test]
async fn an_oversized_dead_letter_is_kept_without_its_data_and_not_replayed() {
    let subscriber = Receiver::start().await;
    let dest = subscriber.url("/relay-webhook");
    let dlq = Dlq::start(
        "  deadLetterMaxEntryBytes: 4096\n",
        &format!("webhook={dest}"),
    )
    .await;
    let mut f = dead_letter(&dest);
    f.body["taskRun"]["status"]["podName"] = json!("x".repeat(200_000));
    assert_eq!(dlq.post(&f).await.status, 202);

    let entries = dlq.list().await;
    assert_eq!(entries["total"], 1);
    let e = &entries["entries"][0];
    assert!(
        e["truncated"]["original_bytes"].as_u64().unwrap() > 200_000,
        "{e}"
    );
    assert_eq!(e["event"]["id"], "83db6e3a-f635-4250-9f8f-f2ca3cd16876");
    assert_eq!(e["event"]["type"], "dev.tekton.event.taskrun.successful.v1");
    assert!(e["event"].get("data").is_none());
    assert_eq!(e["cause"]["status"], 503);
    assert_eq!(e["provider"], dest.as_str());
    assert!(e.to_string().len() <= 4096);
    let stored = std::fs::metadata(dlq.dir.path().join("dl.jsonl"))
        .unwrap()
        .len();
    assert!(stored <= 4097, "{stored}");

    let r = dlq.replay().await;
    assert_eq!(r["failed"], 1, "{r}");
    assert_eq!(r["refused"][0]["code"], "truncated");
    assert!(subscriber.requests().is_empty());
    assert_eq!(
        counter(&dlq.metrics().await, "relay_dead_letters_truncated_total"),
        1
    );
}
