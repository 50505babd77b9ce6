//! The ingress's router (`relay::ingress::router`), forwarding to a sink
//! (Knative's `K_SINK`) that is a recording receiver.

use std::sync::Arc;

use relay::ingress::{Forward, Ingress, router};
use relay_core::config::RelayConfig;
use relay_core::metrics::Metrics;
use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::metrics::sample;
use relay_tests::receiver::Receiver;
use relay_tests::router::Call;
use serde_json::json;

use super::assert_error_body;

const TOKEN: &str = "ingress-token-0123456789abcdefghijk";

/// The ingress on `spec` lines of a RelayConfig, forwarding to `sink`.
fn ingress(spec: &str, sink: String) -> (Arc<Ingress>, axum::Router) {
    let text = format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n{spec}\n"
    );
    let cfg = RelayConfig::parse(&text).unwrap();
    let ing = Arc::new(Ingress {
        forward: Forward::Sink {
            client: reqwest::Client::new(),
            url: sink,
        },
        routes: Default::default(),
        auth: cfg.settings.inbound_auth.clone(),
        max_body_bytes: cfg.settings.limits.max_body_bytes,
        metrics: Metrics::new(),
        inbound_limit: cfg.settings.limits.inbound_per_source.clone(),
    });
    (ing.clone(), router(ing))
}

fn started() -> RequestFile {
    RequestFile::load(&dir().join("tekton-pipelinerun-success/001-pipelinerun-started.json"))
}

fn with_bearer(mut f: RequestFile) -> RequestFile {
    f.headers
        .insert("Authorization".into(), format!("Bearer {TOKEN}"));
    f
}

/// Inbound auth first (401, counted), then the event is decoded at the
/// door (a malformed one is refused with its code, an unrelated type is
/// acknowledged as ignored), then forwarded: `forwarded`.
#[tokio::test]
async fn events_are_authenticated_decoded_and_forwarded() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let (ing, router) = ingress(
        &format!("  inboundAuth: {{bearerTokenFile: {}}}", token.display()),
        rx.url("/broker"),
    );
    let a = Call::event(&started()).send(&router).await;
    assert_eq!(a.status, 401, "{}", a.text);
    assert_eq!(
        a.json,
        json!({"error": {"code": "unauthorized", "message": "missing or invalid credentials"}})
    );
    assert!(rx.requests().is_empty());

    let a = Call::event(&with_bearer(started())).send(&router).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json, json!({"outcome": "forwarded"}));
    assert_eq!(rx.accepted_on("/broker").len(), 1);

    let unknown = RequestFile::load(&dir().join("bad-input/004-unknown-type.json"));
    let a = Call::event(&with_bearer(unknown)).send(&router).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json, json!({"outcome": "ignored"}));

    for (file, status, code) in [
        ("001-invalid-json.json", 400, "invalid_json"),
        ("002-missing-ce-id.json", 400, "invalid_cloudevent"),
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
        let f = with_bearer(RequestFile::load(&dir().join("bad-input").join(file)));
        let a = Call::event(&f).send(&router).await;
        assert_eq!(a.status, status, "{file}: {}", a.text);
        assert_error_body(&a.json, code);
    }
    assert_eq!(
        rx.accepted_on("/broker").len(),
        1,
        "nothing malformed forwarded"
    );
    let scrape = ing.metrics.render();
    assert_eq!(
        sample(
            &scrape,
            "relay_requests_rejected_total{code=\"unauthorized\"}"
        ),
        1,
        "{scrape}"
    );
    assert_eq!(
        sample(
            &scrape,
            "relay_requests_rejected_total{code=\"body_too_large\"}"
        ),
        1,
        "{scrape}"
    );
}

/// What the sink answers decides the sender's: a refusal is 400
/// `sink_rejected` (do not retry), a failure or no sink at all 503
/// `forward_failed` with Retry-After, and neither says where the sink is.
#[tokio::test]
async fn a_sink_that_refuses_or_fails_is_400_or_503() {
    let rx = Receiver::start().await;
    rx.always("/refuses", Some((400, None)));
    rx.always("/fails", Some((500, None)));
    let closed = format!("http://127.0.0.1:{}/", relay_tests::process::free_port());
    for (sink, status, code) in [
        (rx.url("/refuses"), 400, "sink_rejected"),
        (rx.url("/fails"), 503, "forward_failed"),
        (closed.clone(), 503, "forward_failed"),
    ] {
        let (_, router) = ingress("  {}", sink.clone());
        let a = Call::event(&started()).send(&router).await;
        assert_eq!(a.status, status, "{sink}: {}", a.text);
        assert_error_body(&a.json, code);
        if status == 503 {
            assert_eq!(a.header("retry-after"), Some("1"));
            assert_eq!(
                a.json["error"]["message"],
                "the event could not be forwarded; retry later"
            );
        }
        assert!(!a.text.contains("127.0.0.1"), "{}", a.text);
    }
}

/// Probes and metrics, and the routes and methods it does not serve.
#[tokio::test]
async fn probes_metrics_and_unknown_routes() {
    let rx = Receiver::start().await;
    let (_, router) = ingress("  {}", rx.url("/broker"));
    for path in ["/healthz", "/readyz"] {
        let a = Call::get(path).send(&router).await;
        assert_eq!((a.status, a.text.as_str()), (200, "ok"), "{path}");
    }
    let a = Call::get("/metrics").send(&router).await;
    assert_eq!(a.status, 200);
    assert!(a.text.contains("relay_"), "{}", a.text);
    assert_eq!(Call::get("/nope").send(&router).await.status, 404);
    assert_eq!(Call::get("/api/v1/dlq").send(&router).await.status, 404);
    assert_eq!(Call::get("/").send(&router).await.status, 405);
    assert_eq!(Call::post("/healthz").send(&router).await.status, 405);
}
