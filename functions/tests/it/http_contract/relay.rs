//! The relay's router (`relay_core::server`, built by
//! `relay_core::runtime::build_app`): `POST /` events, `/healthz`,
//! `/readyz`, `/metrics`, the dead-letter API.

use relay_tests::fixtures::{RequestFile, dir, fresh_pipelinerun};
use relay_tests::function::{document, notification, provider};
use relay_tests::metrics::sample;
use relay_tests::receiver::Receiver;
use relay_tests::router::{Call, RelayApp};
use serde_json::{Value, json};

use super::assert_error_body;

/// A fresh successful-PipelineRun event: its own CloudEvent id and run uid.
fn event(tag: &str) -> RequestFile {
    fresh_pipelinerun(&format!("contract-{tag}"))
}

fn with_bearer(mut f: RequestFile, token: &str) -> RequestFile {
    f.headers
        .insert("Authorization".into(), format!("Bearer {token}"));
    f
}

/// A RelayConfig with `spec` lines (indented by two).
fn relay_config(spec: &str) -> String {
    document("RelayConfig", "relay", spec)
}

/// A webhook Provider `name` to `url` and a Notification of the same name;
/// `spec`: more lines of the Notification's spec.
fn webhook(name: &str, url: &str, spec: &str) -> String {
    provider(name, "webhook", &format!("{{url: \"{url}\"}}")) + &notification(name, name, spec)
}

/// Dead letters in `$DIR`, fast retries.
const FAST: &str = "  deadLetter: file://$DIR/dl.jsonl\n  delivery: {initialBackoffMs: 10, maxBackoffMs: 20, maxAttempts: 2}\n";

/// Secret files: the event senders' token and the dead-letter API's.
struct Tokens {
    dir: tempfile::TempDir,
}

const SENDER: &str = "event-sender-token-0123456789abcdef";
const ADMIN: &str = "dead-letter-admin-token-9876543210";

impl Tokens {
    fn new() -> Tokens {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sender"), format!("{SENDER}\n")).unwrap();
        std::fs::write(dir.path().join("admin"), format!("{ADMIN}\n")).unwrap();
        Tokens { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn inbound(&self) -> String {
        format!(
            "  inboundAuth: {{bearerTokenFile: {}}}\n",
            self.path("sender").display()
        )
    }

    fn api(&self) -> String {
        format!(
            "  apiAuth: {{bearerTokenFile: {}}}\n",
            self.path("admin").display()
        )
    }
}

fn registry() -> relay_core::provider::Registry {
    relay::registry()
}

/// Each outcome of an event, with its exact answer: delivered, filtered,
/// duplicate, ignored, dead-lettered (200: the relay took care of it),
/// and the detail of a delivery for a local caller only.
#[tokio::test]
async fn each_outcome_of_an_event_has_its_answer() {
    let rx = Receiver::start().await;
    rx.always("/gone", Some((410, None)));
    let cfg = relay_config(FAST)
        + &webhook("hook", &rx.url("/hook"), "")
        + &webhook(
            "tasks-only",
            &rx.url("/hook"),
            "  filter: {kinds: [TaskRun]}\n",
        );
    // No listener: callers are not local, no delivery's detail is told.
    let relay = RelayApp::build(&cfg, &registry()).await;

    let a = relay.send(&event("outcomes")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json,
        json!({"outcome": "delivered", "deliveries": [
            {"notification": "hook", "provider": "hook", "outcome": "delivered", "detail": null},
            {"notification": "tasks-only", "provider": "tasks-only", "outcome": "filtered", "detail": null},
        ]})
    );
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(rx.accepted_on("/hook").len(), 1);

    // The same event again: nothing is sent twice.
    let a = relay.send(&event("outcomes")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json,
        json!({"outcome": "duplicate", "deliveries": [
            {"notification": "hook", "provider": "hook", "outcome": "duplicate", "detail": null},
            {"notification": "tasks-only", "provider": "tasks-only", "outcome": "filtered", "detail": null},
        ]})
    );
    assert_eq!(rx.accepted_on("/hook").len(), 1);

    // A CloudEvent of a type the relay does not handle is acknowledged.
    let unknown = RequestFile::load(&dir().join("bad-input/004-unknown-type.json"));
    let a = relay.send(&unknown).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json, json!({"outcome": "ignored", "deliveries": []}));

    // A permanent failure is dead-lettered: 200, the sender must not retry.
    let cfg = relay_config(FAST) + &webhook("gone", &rx.url("/gone"), "");
    for loopback in [true, false] {
        let relay = RelayApp::with_door(&cfg, &registry(), loopback).await;
        let a = relay.send(&event("dead")).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.json["outcome"], "dead_lettered", "{}", a.text);
        let d = &a.json["deliveries"][0];
        assert_eq!(
            (d["notification"].as_str(), d["outcome"].as_str()),
            (Some("gone"), Some("dead_lettered"))
        );
        // The provider's answer is for a caller on this host only.
        match loopback {
            true => assert!(d["detail"].as_str().unwrap().contains("410"), "{d}"),
            false => assert_eq!(d["detail"], Value::Null, "{d}"),
        }
        assert_eq!(
            std::fs::read_to_string(relay.path("dl.jsonl"))
                .unwrap()
                .lines()
                .count(),
            1
        );
    }
}

/// A provider that keeps failing: 503 with Retry-After, and each
/// delivery's outcome, so the sender retries.
#[tokio::test]
async fn a_retryable_failure_is_503_with_retry_after() {
    let rx = Receiver::start().await;
    rx.always("/down", Some((500, None)));
    let cfg = relay_config(FAST) + &webhook("down", &rx.url("/down"), "");
    let relay = RelayApp::build(&cfg, &registry()).await;
    let a = relay.send(&event("retryable")).await;
    assert_eq!(a.status, 503, "{}", a.text);
    let secs: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!(secs >= 1);
    assert_eq!(
        a.json,
        json!({"outcome": "failed", "deliveries": [
            {"notification": "down", "provider": "down", "outcome": "failed", "detail": null},
        ]})
    );
}

/// Moved from `e2e_delivery.rs` (it started a `relay serve` process).
#[tokio::test]
async fn retry_after_beyond_the_deadline_is_passed_back_to_the_sender() {
    let rx = Receiver::start().await;
    rx.always("/busy", Some((429, Some(120))));
    let cfg =
        relay_config("  deadLetter: file://$DIR/dl.jsonl\n  delivery: {deadlineSeconds: 5}\n")
            + &webhook("busy", &rx.url("/busy"), "");
    let relay = RelayApp::build(&cfg, &registry()).await;
    let a = relay.send(&event("busy")).await;
    assert_eq!(a.status, 503);
    assert_eq!(
        a.header("retry-after"),
        Some("120"),
        "the provider's Retry-After, not a guess"
    );
    assert_eq!(
        rx.requests_on("/busy").len(),
        1,
        "no retry that the deadline cannot fit"
    );
}

/// Moved from `e2e_delivery.rs` (it started a `relay serve` process); the
/// 404's code is new.
#[tokio::test]
async fn respond_mode_answers_422_and_limits_are_configurable() {
    let rx = Receiver::start().await;
    rx.always("/gone", Some((410, None)));
    let tokens = Tokens::new();
    let cfg = relay_config(&format!(
        "  deadLetter: respond\n  limits: {{maxBodyBytes: 20000}}\n{}",
        tokens.api()
    )) + &webhook("gone", &rx.url("/gone"), "");
    let relay = RelayApp::build(&cfg, &registry()).await;
    let mut small = event("respond-small");
    small.body["pipelineRun"]["status"] =
        json!({"conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}]});
    small.body["pipelineRun"]["spec"] = json!({});
    let a = relay.send(&small).await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert_eq!(a.json["error"]["code"], "permanent_failure");
    assert!(a.json["error"]["message"].as_str().unwrap().contains("410"));
    assert_eq!(a.json["deliveries"][0]["outcome"], "rejected", "{}", a.text);
    let mut big = event("respond-big");
    big.body["pipelineRun"]["metadata"]["annotations"]["padding"] =
        Value::String("x".repeat(30_000));
    assert!(big.body_bytes().len() > 20000);
    let a = relay.send(&big).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.json["error"]["code"], "body_too_large");
    let a = relay.call(Call::get("/api/v1/dlq").bearer(ADMIN)).await;
    assert_eq!(a.status, 404, "respond keeps nothing");
    assert_error_body(&a.json, "no_dead_letter_queue");
}

/// A Knative Broker sends `Prefer: reply` and takes a 2xx body that is no
/// CloudEvent for a bad reply (502, retried, dead-lettered): it gets a 2xx
/// with no body, and error bodies short enough for its dispatcher's
/// `knativeerrordata` (at most 512 bytes, still the error body).
#[tokio::test]
async fn a_broker_gets_an_empty_success_and_a_short_error() {
    let rx = Receiver::start().await;
    rx.always("/gone", Some((410, None)));
    let mut cfg = relay_config("  deadLetter: respond\n") + &webhook("ok", &rx.url("/ok"), "");
    let relay = RelayApp::build(&cfg, &registry()).await;
    let broker = |f: &RequestFile| Call::event(f).header("prefer", "reply");
    let a = relay.call(broker(&event("broker-ok"))).await;
    assert_eq!((a.status, a.text.as_str()), (200, ""));
    assert_eq!(a.header("content-type"), None);
    assert_eq!(rx.accepted_on("/ok").len(), 1, "delivered all the same");
    // Without the header, the answer of the HTTP contract.
    let a = relay.send(&event("direct-ok")).await;
    assert_eq!(a.json["outcome"], "delivered", "{}", a.text);

    // Twenty failing Notifications: a long 422 for a direct caller, a
    // short one for the Broker.
    for i in 0..20 {
        cfg += &webhook(
            &format!("gone-with-a-long-name-{i:02}"),
            &rx.url("/gone"),
            "",
        );
    }
    let relay = RelayApp::with_door(&cfg, &registry(), true).await;
    let direct = relay.send(&event("direct-gone")).await;
    assert_eq!(direct.status, 422);
    assert!(direct.text.len() > 512, "{}", direct.text.len());
    let a = relay.call(broker(&event("broker-gone"))).await;
    assert_eq!(a.status, 422, "{}", a.text);
    assert!(a.text.len() <= 512, "{} bytes", a.text.len());
    assert_error_body(&a.json, "permanent_failure");
    assert!(a.json["error"]["message"].as_str().unwrap().contains("410"));
}

/// Every malformed request of the fixtures is answered with its status and
/// an error body naming why; so are the content types the relay does not
/// take. Each is counted by its code.
#[tokio::test]
async fn malformed_requests_are_4xx_with_an_error_code() {
    let relay = RelayApp::build(&relay_config(FAST), &registry()).await;
    for (file, status, code) in [
        ("001-invalid-json.json", 400, "invalid_json"),
        ("002-missing-ce-id.json", 400, "invalid_cloudevent"),
        ("003-bogus-specversion.json", 400, "invalid_cloudevent"),
        (
            "005-tekton-type-without-run-key.json",
            400,
            "missing_run_object",
        ),
        ("006-oversized-body.json", 413, "body_too_large"),
        (
            "009-unsupported-content-type.json",
            415,
            "unsupported_content_type",
        ),
    ] {
        let f = RequestFile::load(&dir().join("bad-input").join(file));
        assert_eq!(f.expect_status, Some(status), "{file}");
        let a = relay.send(&f).await;
        assert_eq!(a.status, status, "{file}: {}", a.text);
        assert_error_body(&a.json, code);
    }
    for (content_type, status, code) in [
        (
            "application/cloudevents-batch+json",
            415,
            "batch_not_supported",
        ),
        (
            "application/cloudevents+xml",
            415,
            "unsupported_event_format",
        ),
        ("text/plain", 400, "not_a_cloudevent"),
    ] {
        let a = relay
            .call(
                Call::post("/")
                    .header("content-type", content_type)
                    .body("{}"),
            )
            .await;
        assert_eq!(a.status, status, "{content_type}: {}", a.text);
        assert_error_body(&a.json, code);
    }
    let scrape = relay.metrics().await;
    for (code, n) in [
        ("invalid_json", 1),
        ("invalid_cloudevent", 2),
        ("body_too_large", 1),
        ("not_a_cloudevent", 1),
    ] {
        let series = format!("relay_requests_rejected_total{{code=\"{code}\"}}");
        assert_eq!(sample(&scrape, &series), n, "{series}\n{scrape}");
    }
}

/// Routes and methods the relay does not serve: axum's 404 and 405.
#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let relay = RelayApp::build(&relay_config(FAST), &registry()).await;
    for c in [
        Call::get("/nope"),
        Call::post("/v1/events"),
        Call::post("/api/v1"),
    ] {
        assert_eq!(relay.call(c).await.status, 404);
    }
    for c in [
        Call::get("/"),
        Call::post("/healthz"),
        Call::post("/readyz"),
        Call::post("/metrics"),
        Call::delete("/api/v1/dlq"),
        Call::get("/api/v1/dlq/replay"),
        Call::get("/api/v1/dlq/some-id"),
    ] {
        assert_eq!(relay.call(c).await.status, 405);
    }
}

/// `/healthz` is `ok`; `/readyz` names the store, dead letters and
/// Notifications to a local caller; `/metrics` is Prometheus text, open
/// without `spec.apiAuth`.
#[tokio::test]
async fn health_readiness_and_metrics_answer_without_credentials() {
    let rx = Receiver::start().await;
    let cfg = relay_config(FAST) + &webhook("hook", &rx.url("/hook"), "");
    let relay = RelayApp::with_door(&cfg, &registry(), true).await;
    let a = relay.call(Call::get("/healthz")).await;
    assert_eq!((a.status, a.text.as_str()), (200, "ok"));
    let a = relay.call(Call::get("/readyz")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["status"], "ready", "{}", a.text);
    assert_eq!(
        a.json["store"],
        json!({"backend": "memory", "status": "ok"}),
        "{}",
        a.text
    );
    assert_eq!(
        a.json["notifications"],
        json!([{"name": "hook", "provider": "hook", "type": "webhook"}])
    );
    assert!(a.json["deadLetter"].is_string() || a.json["deadLetter"].is_object());
    let a = relay.call(Call::get("/metrics")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/plain; version=0.0.4"));
}

/// `spec.inboundAuth`: no credential or a wrong one is 401 `unauthorized`
/// (counted), the right one passes, and a secret that cannot be read is
/// 503 `auth_unavailable`, the sender retries.
#[tokio::test]
async fn inbound_auth_missing_wrong_right_and_unreadable() {
    let rx = Receiver::start().await;
    let tokens = Tokens::new();
    let cfg = relay_config(&(FAST.to_string() + &tokens.inbound()))
        + &webhook("hook", &rx.url("/hook"), "");
    let relay = RelayApp::build(&cfg, &registry()).await;
    for f in [event("no-auth"), with_bearer(event("bad-auth"), "wrong")] {
        let a = relay.send(&f).await;
        assert_eq!(a.status, 401, "{}", a.text);
        assert_eq!(
            a.json,
            json!({"error": {"code": "unauthorized", "message": "missing or invalid credentials"}})
        );
    }
    assert!(rx.requests().is_empty());
    let a = relay.send(&with_bearer(event("good-auth"), SENDER)).await;
    assert_eq!(
        (a.status, a.json["outcome"].as_str()),
        (200, Some("delivered"))
    );
    assert_eq!(
        sample(
            &relay.metrics().await,
            "relay_requests_rejected_total{code=\"unauthorized\"}"
        ),
        2
    );
    std::fs::remove_file(tokens.path("sender")).unwrap();
    let a = relay.send(&with_bearer(event("gone-auth"), SENDER)).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(
        a.json,
        json!({"error": {"code": "auth_unavailable", "message": "credentials cannot be checked right now"}})
    );
}

/// The dead-letter API with its credential: list, replay, delete, and the
/// answers to what it cannot do (a body that is not the replay request, an
/// id it does not have).
#[tokio::test]
async fn the_dead_letter_api_lists_replays_and_deletes() {
    let rx = Receiver::start().await;
    rx.always("/gone", Some((410, None)));
    let tokens = Tokens::new();
    let cfg =
        relay_config(&(FAST.to_string() + &tokens.api())) + &webhook("gone", &rx.url("/gone"), "");
    let relay = RelayApp::build(&cfg, &registry()).await;
    assert_eq!(
        relay.send(&event("api")).await.json["outcome"],
        "dead_lettered"
    );
    let a = relay.call(Call::get("/api/v1/dlq").bearer(ADMIN)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["total"], 1, "{}", a.text);
    let id = a.json["entries"][0]["id"].as_str().unwrap().to_string();
    let a = relay
        .call(Call::get("/api/v1/dlq?limit=1&notification=other").bearer(ADMIN))
        .await;
    assert_eq!(a.json["entries"], json!([]), "{}", a.text);

    for body in ["not json", r#"{"ids": ["x"], "more": 1}"#] {
        let a = relay
            .call(Call::post("/api/v1/dlq/replay").bearer(ADMIN).body(body))
            .await;
        assert_eq!(a.status, 400, "{body}: {}", a.text);
        assert_error_body(&a.json, "invalid_json");
    }
    // Still failing: replayed, kept.
    let a = relay
        .call(Call::post("/api/v1/dlq/replay").bearer(ADMIN))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json, json!({"replayed": 1, "succeeded": 0, "failed": 1}));

    let a = relay
        .call(Call::delete("/api/v1/dlq/no-such-id").bearer(ADMIN))
        .await;
    assert_eq!(a.status, 404);
    assert_eq!(
        a.json,
        json!({"error": {"code": "not_found", "message": "no dead letter with id \"no-such-id\""}})
    );
    let a = relay
        .call(Call::delete(&format!("/api/v1/dlq/{id}")).bearer(ADMIN))
        .await;
    assert_eq!((a.status, a.text.as_str()), (204, ""));
    let a = relay.call(Call::get("/api/v1/dlq").bearer(ADMIN)).await;
    assert_eq!(a.json["total"], 0, "{}", a.text);
}

/// Moved from `secure_default.rs` (it started a `relay serve` process on
/// loopback).
#[tokio::test]
async fn without_api_auth_the_dead_letter_api_is_off_even_for_event_senders() {
    let rx = Receiver::start().await;
    rx.always("/hook", Some((401, None)));
    let tokens = Tokens::new();
    let cfg = relay_config(&(FAST.to_string() + &tokens.inbound()))
        + &webhook("hook-notification", &rx.url("/hook"), "");
    // On loopback, which does not open it either.
    let relay = RelayApp::with_door(&cfg, &registry(), true).await;
    let answer = relay.send(&with_bearer(event("dead"), SENDER)).await;
    assert_eq!(answer.json["outcome"], "dead_lettered", "{}", answer.text);
    for c in [
        Call::get("/api/v1/dlq"),
        Call::get("/api/v1/dlq").bearer(SENDER),
        Call::post("/api/v1/dlq/replay").bearer(SENDER),
        Call::delete("/api/v1/dlq/some-id").bearer(SENDER),
    ] {
        let a = relay.call(c).await;
        assert_eq!(a.status, 404, "{}", a.text);
        assert_eq!(a.json["error"]["code"], "api_disabled", "{}", a.text);
        assert_eq!(
            a.json,
            json!({"error": {"code": "api_disabled",
                "message": "the dead-letter API is off: it needs its own credential, spec.apiAuth"}})
        );
    }
    assert_eq!(
        std::fs::read_to_string(relay.path("dl.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1,
        "nothing was replayed or deleted"
    );
}

/// The senders' credential opens no part of the dead-letter API, nor the
/// metrics; the admin's sends no events. (The CLI's half of this stays in
/// `secure_default.rs`, against a process.)
#[tokio::test]
async fn sender_and_admin_credentials_do_not_open_each_others_door_in_process() {
    let rx = Receiver::start().await;
    rx.always("/hook", Some((401, None)));
    let tokens = Tokens::new();
    let cfg = relay_config(&(FAST.to_string() + &tokens.inbound() + &tokens.api()))
        + &webhook("hook-notification", &rx.url("/hook"), "");
    let relay = RelayApp::build(&cfg, &registry()).await;
    let a = relay.send(&with_bearer(event("by-admin"), ADMIN)).await;
    assert_eq!(a.status_code(), (401, "unauthorized"));
    assert!(rx.requests().is_empty());
    for c in [
        Call::get("/api/v1/dlq").bearer(SENDER),
        Call::post("/api/v1/dlq/replay").bearer(SENDER),
        Call::delete("/api/v1/dlq/x").bearer(SENDER),
        Call::get("/metrics").bearer(SENDER),
        Call::get("/api/v1/dlq"),
        Call::get("/metrics"),
    ] {
        let a = relay.call(c).await;
        assert_eq!(a.status, 401, "{}", a.text);
        assert_error_body(&a.json, "unauthorized");
    }
}

/// Moved from `secure_default.rs` (it started a `relay serve` process on
/// every interface).
#[tokio::test]
async fn readiness_detail_and_metrics_are_for_the_admin_beyond_loopback() {
    let rx = Receiver::start().await;
    let tokens = Tokens::new();
    let cfg = relay_config(&(FAST.to_string() + &tokens.inbound() + &tokens.api()))
        + &webhook("hook-notification", &rx.url("/hook"), "");
    let relay = RelayApp::with_door(&cfg, &registry(), false).await;
    // A probe (or anyone, or a sender) learns ready or not, nothing more.
    for c in [Call::get("/readyz"), Call::get("/readyz").bearer(SENDER)] {
        let a = relay.call(c).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.json, json!({"status": "ready"}));
    }
    let full = relay.call(Call::get("/readyz").bearer(ADMIN)).await.json;
    assert_eq!(
        full["notifications"][0]["name"], "hook-notification",
        "{full}"
    );
    assert_eq!(full["store"]["backend"], "memory");
    // Metrics name Notifications too: the admin's credential, when set.
    for c in [Call::get("/metrics"), Call::get("/metrics").bearer(SENDER)] {
        assert_eq!(relay.call(c).await.status, 401);
    }
    let a = relay.call(Call::get("/metrics").bearer(ADMIN)).await;
    assert_eq!(a.status, 200);
    assert!(a.text.contains("relay_requests_rejected_total"));
}

/// Moved from `secure_default.rs` (it started a `relay serve` process on
/// every interface).
#[tokio::test]
async fn without_api_auth_readiness_beyond_loopback_is_ready_or_degraded_only() {
    let rx = Receiver::start().await;
    let tokens = Tokens::new();
    let cfg = relay_config(&(FAST.to_string() + &tokens.inbound()))
        + &webhook("hook-notification", &rx.url("/hook"), "");
    let relay = RelayApp::with_door(&cfg, &registry(), false).await;
    for token in [None, Some(SENDER)] {
        let mut c = Call::get("/readyz");
        if let Some(t) = token {
            c = c.bearer(t);
        }
        let a = relay.call(c).await;
        assert_eq!((a.status, a.json), (200, json!({"status": "ready"})));
    }
}

/// Moved from `e2e_delivery.rs` (it started a `relay serve` process).
/// A JWT guards events and the dead-letter API alike: a token with the
/// configured audience and a future expiry passes; an expired one, or one
/// for another audience, is a 401; a rotated signing secret applies to the
/// next request.
#[tokio::test]
async fn inbound_jwt_guards_events_and_the_dead_letter_api() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let key = secrets.path().join("jwt");
    std::fs::write(&key, "first-jwt-secret-0123456789abcdefgh").unwrap();
    // The dead-letter API takes tokens of the same issuer for its own
    // audience (spec.apiAuth): an event sender's token does not open it.
    let cfg = relay_config(&format!(
        "{FAST}  inboundAuth: {{jwt: {{hs256SecretFile: {0}, audience: tekton-relay}}}}\n  apiAuth: {{jwt: {{hs256SecretFile: {0}, audience: tekton-relay-admin}}}}\n",
        key.display()
    )) + &webhook("hook", &rx.url("/hook"), "");
    let relay = RelayApp::build(&cfg, &registry()).await;
    let now = chrono::Utc::now().timestamp();
    let token = |aud: &str, exp: i64, secret: &[u8]| {
        encode(
            &Header::new(Algorithm::HS256),
            &json!({"aud": aud, "iat": now, "exp": exp, "sub": "tekton"}),
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let mut n = 0;
    let mut with = |t: String| {
        n += 1;
        with_bearer(event(&format!("jwt-{n}")), &t)
    };
    for bad in [
        token(
            "tekton-relay",
            now - 120,
            b"first-jwt-secret-0123456789abcdefgh",
        ),
        token(
            "another-service",
            now + 60,
            b"first-jwt-secret-0123456789abcdefgh",
        ),
        token("tekton-relay", now + 60, b"guessed"),
    ] {
        let a = relay.send(&with(bad)).await;
        assert_eq!(a.status, 401, "{}", a.text);
    }
    assert!(rx.requests().is_empty());
    let good = token(
        "tekton-relay",
        now + 60,
        b"first-jwt-secret-0123456789abcdefgh",
    );
    assert_eq!(relay.send(&with(good.clone())).await.status, 200);
    let dlq = |t: Option<&str>| {
        let c = Call::get("/api/v1/dlq");
        relay.call(match t {
            Some(t) => c.bearer(t),
            None => c,
        })
    };
    let admin = token(
        "tekton-relay-admin",
        now + 60,
        b"first-jwt-secret-0123456789abcdefgh",
    );
    assert_eq!(dlq(None).await.status, 401);
    assert_eq!(dlq(Some(&admin)).await.status, 200);
    assert_eq!(
        dlq(Some(&good)).await.status,
        401,
        "an event sender's token is not the API's"
    );
    // Rotation: the old secret's tokens stop working on the next request.
    std::fs::write(&key, "second-jwt-secret-0123456789abcdefgh").unwrap();
    assert_eq!(dlq(Some(&admin)).await.status, 401);
    let rotated = token(
        "tekton-relay",
        now + 60,
        b"second-jwt-secret-0123456789abcdefgh",
    );
    assert_eq!(relay.send(&with(rotated)).await.status, 200);
    assert_eq!(rx.accepted_on("/hook").len(), 2);
}

/// From `hostile_input.rs`: a 16 MiB body limit, and a `log` Notification.
const HOSTILE: &str = r#"apiVersion: relay.tekton.dev/v1alpha1
kind: RelayConfig
metadata: {name: relay}
spec:
  deadLetter: file://$DIR/dead-letters.jsonl
  limits: {maxBodyBytes: 16777216}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Provider
metadata: {name: stdout}
spec:
  type: log
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Notification
metadata: {name: everything}
spec:
  providerRef: {name: stdout}
  template: "{{ event.name }}"
"#;

const LIMIT: usize = 16 * 1024 * 1024;

async fn hostile() -> RelayApp {
    RelayApp::build(HOSTILE, &registry()).await
}

/// `POST /` with these headers and body.
fn post(headers: &[(&str, &[u8])], body: impl Into<Vec<u8>>) -> Call {
    headers
        .iter()
        .fold(Call::post("/"), |c, (k, v)| c.header(k, v))
        .body(body)
}

/// Binary-mode headers of a Tekton PipelineRun event.
fn binary_headers(id: &'static [u8]) -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("ce-specversion", b"1.0"),
        ("ce-id", id),
        (
            "ce-source",
            b"/apis/tekton.dev/v1/namespaces/ci/pipelineruns/p",
        ),
        ("ce-type", b"dev.tekton.event.pipelinerun.successful.v1"),
        ("content-type", b"application/json"),
    ]
}

fn rejected(metrics: &str, code: &str) -> u64 {
    sample(
        metrics,
        &format!("relay_requests_rejected_total{{code=\"{code}\"}}"),
    )
}

/// The router still serves: `/healthz` answers, and a normal event is
/// still delivered.
async fn still_serving(relay: &RelayApp, tag: &str) {
    let a = relay.call(Call::get("/healthz")).await;
    assert_eq!(a.status, 200);
    let a = relay.send(&event(tag)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["outcome"], "delivered", "{}", a.text);
}

/// Moved from `hostile_input.rs` (it started a `relay serve` process).
#[tokio::test]
async fn body_over_the_limit_is_413_and_counted() {
    let relay = hostile().await;
    let a = relay
        .call(post(&binary_headers(b"big"), vec![b' '; LIMIT + 1]))
        .await;
    assert_eq!(a.status, 413, "{}", a.text);
    assert_eq!(a.json["error"]["code"], "body_too_large");
    assert_error_body(&a.json, "body_too_large");
    assert_eq!(rejected(&relay.metrics().await, "body_too_large"), 1);
    still_serving(&relay, "after-413").await;
}

/// Moved from `hostile_input.rs` (it started a `relay serve` process).
#[tokio::test]
async fn ten_megabytes_of_data_under_the_limit_is_delivered() {
    let relay = hostile().await;
    let mut f = event("ten-mb");
    f.body["pipelineRun"]["spec"]["padding"] = Value::String("x".repeat(10 * 1024 * 1024));
    let a = relay.send(&f).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["outcome"], "delivered", "{}", a.text);
    still_serving(&relay, "after-ten-mb").await;
}

/// Moved from `hostile_input.rs` (it started a `relay serve` process).
#[tokio::test]
async fn json_nested_100k_deep_is_400() {
    let relay = hostile().await;
    let mut deep = vec![b'['; 100_000];
    deep.extend(vec![b']'; 100_000]);
    // Structured mode: the whole event is the deep document.
    let a = relay
        .call(post(
            &[("content-type", b"application/cloudevents+json")],
            deep.clone(),
        ))
        .await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["error"]["code"], "invalid_json", "{}", a.text);
    // Binary mode: the data is the deep document.
    let mut data = b"{\"pipelineRun\": ".to_vec();
    data.extend_from_slice(&deep);
    data.push(b'}');
    let a = relay.call(post(&binary_headers(b"deep"), data)).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["error"]["code"], "invalid_json", "{}", a.text);
    assert_eq!(rejected(&relay.metrics().await, "invalid_json"), 2);
    still_serving(&relay, "after-deep").await;
}

/// Moved from `hostile_input.rs` (it started a `relay serve` process).
#[tokio::test]
async fn invalid_utf8_in_body_and_headers_is_400() {
    let relay = hostile().await;
    let junk: &[u8] = b"\xff\xfe\xc3(\x80";
    let a = relay.call(post(&binary_headers(b"utf8-body"), junk)).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["error"]["code"], "invalid_json", "{}", a.text);
    let a = relay
        .call(post(
            &[("content-type", b"application/cloudevents+json")],
            junk,
        ))
        .await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["error"]["code"], "invalid_json", "{}", a.text);
    // An id that is not UTF-8 cannot become a CloudEvent attribute.
    let data = serde_json::to_vec(&event("utf8-header").body).unwrap();
    let a = relay.call(post(&binary_headers(b"\xff\xfe"), data)).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["error"]["code"], "invalid_cloudevent", "{}", a.text);
    // Not UTF-8 in the content type: not a CloudEvent, not a Flux payload.
    let a = relay
        .call(post(&[("content-type", b"application/\xffjson")], junk))
        .await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["error"]["code"], "not_a_cloudevent", "{}", a.text);
    still_serving(&relay, "after-utf8").await;
}
