//! Flux in, end to end through `relay serve`: notification-controller's
//! generic-hmac payloads are signature-checked, decoded and delivered like
//! any run event (once each, whether they come as Flux JSON or as the
//! CloudEvent the ingress wraps them in), and a CEL filter picks out the
//! commit-status updates as the scenario's ground truth counts them.

use std::path::Path;

use hmac::Mac;
use relay_tests::fixtures::{RequestFile, Scenario, dir};
use relay_tests::process::{RelayProcess, send, send_structured};
use relay_tests::receiver::Receiver;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_relay");
const FLUX_TOKEN: &str = "flux-generic-hmac-token-0123456789ab";
/// CloudEvents need a credential of their own: Flux's secret admits Flux
/// payloads only.
const CE_TOKEN: &str = "cloudevents-bearer-token-0123456789ab";

fn signed(f: &RequestFile, key: &str) -> RequestFile {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(&f.body_bytes());
    let mut f = f.clone();
    f.headers.insert(
        "X-Signature".into(),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
    );
    f
}

#[tokio::test]
async fn flux_events_are_verified_decoded_and_delivered_once() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let key = secrets.path().join("token");
    std::fs::write(&key, format!("{FLUX_TOKEN}\n")).unwrap();
    let ce_token = secrets.path().join("ce-token");
    std::fs::write(&ce_token, CE_TOKEN).unwrap();
    let provider = |name: &str| {
        format!(
            "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: {name}}}\nspec:\n  type: webhook\n  webhook: {{url: \"{}\"}}\n",
            rx.url(&format!("/{name}"))
        )
    };
    let cfg = format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  deadLetter: file://$DIR/dl.jsonl\n  inboundAuth: {{fluxHmacSecretFile: {}, bearerTokenFile: {}}}\n{}{}---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: all-flux}}\nspec:\n  providerRef: {{name: all}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: commit-status}}\nspec:\n  providerRef: {{name: status}}\n  filter:\n    when: '\"commit_status\" in event.annotations && event.annotations.commit_status == \"update\"'\n",
        key.display(),
        ce_token.display(),
        provider("all"),
        provider("status"),
    );
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let client = reqwest::Client::new();
    let sc = Scenario::load(&dir().join("flux-events"));

    // Unsigned, or signed with another key: refused before decoding.
    let first = &sc.files[0];
    let (status, body) = send(&client, &relay.base, first).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = send(&client, &relay.base, &signed(first, "other")).await;
    assert_eq!(status, 401);
    assert!(rx.requests().is_empty());

    for f in &sc.files {
        let (status, body) = send(&client, &relay.base, &signed(f, FLUX_TOKEN)).await;
        assert_eq!(status, 200, "{}: {body}", f.file_name);
        assert_eq!(body["outcome"], "delivered", "{}: {body}", f.file_name);
    }
    // notification-controller retries: the same payload is a duplicate.
    let (_, body) = send(&client, &relay.base, &signed(first, FLUX_TOKEN)).await;
    assert_eq!(body["outcome"], "duplicate", "{body}");

    // The CloudEvent the ingress forwards (Broker, EventBridge) is the same
    // event: a duplicate too, not a second delivery.
    let raw = first.body_bytes();
    let ev = relay_core::decode::flux::decode(&raw, &first.body).unwrap();
    let ce = relay_core::decode::flux::to_cloudevent(&ev, first.body.clone());
    let r = client
        .post(&relay.base)
        .header("content-type", "application/cloudevents+json")
        .bearer_auth(CE_TOKEN)
        .body(serde_json::to_vec(&ce).unwrap())
        .send()
        .await
        .unwrap();
    let (status, body) = (r.status().as_u16(), r.json::<Value>().await.unwrap());
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("duplicate")),
        "{body}"
    );

    let all = rx.accepted_on("/all");
    assert_eq!(all.len(), sc.files.len());
    let objects: Vec<String> = all
        .iter()
        .map(|r| {
            let p = r.json();
            format!(
                "{}/{}/{}:{}",
                p["kind"], p["namespace"], p["name"], p["state"]
            )
        })
        .collect();
    assert!(
        objects.contains(&r#""GitRepository"/"flux-system"/"widgets":"succeeded""#.to_string()),
        "{objects:?}"
    );

    // Only Kustomization events carry commit_status: the scenario's counts.
    let status_deliveries: Vec<Value> =
        rx.accepted_on("/status").iter().map(|r| r.json()).collect();
    let want = sc.expect["notificationsTotal"].as_u64().unwrap() as usize;
    assert_eq!(status_deliveries.len(), want, "{status_deliveries:?}");
    for (object, counts) in sc.expect["notifications"].as_object().unwrap() {
        let mut parts = object.splitn(3, '/');
        let (kind, ns, name) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let got: Vec<&Value> = status_deliveries
            .iter()
            .filter(|p| p["kind"] == kind && p["namespace"] == ns && p["name"] == name)
            .collect();
        let label = counts.as_object().unwrap().keys().next().unwrap();
        let state = if label == "success" {
            "succeeded"
        } else {
            "failed"
        };
        assert_eq!(got.len(), 1, "{object}");
        assert_eq!(got[0]["state"], state, "{object}");
        assert_eq!(got[0]["sha"], "247aabb58d323d9e0d3be8ee03cc2f9b21460c5a");
    }
    assert!(
        !relay.stderr().contains(FLUX_TOKEN),
        "the Flux token was logged"
    );
}

/// Issue #13 item 6: with only `fluxHmacSecretFile`, a CloudEvent of a Flux
/// type passed without any signature and was delivered as a Flux event.
/// CloudEvents, in either mode, are now refused; signed Flux payloads pass.
#[tokio::test]
async fn a_flux_typed_cloudevent_without_signature_is_refused_when_only_flux_is_configured() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let key = secrets.path().join("token");
    std::fs::write(&key, FLUX_TOKEN).unwrap();
    let cfg = format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  inboundAuth: {{fluxHmacSecretFile: {}}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: all}}\nspec:\n  type: webhook\n  webhook: {{url: \"{}\"}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: all}}\nspec:\n  providerRef: {{name: all}}\n",
        key.display(),
        rx.url("/all"),
    );
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let client = reqwest::Client::new();
    let sc = Scenario::load(&dir().join("flux-events"));
    let first = &sc.files[0];
    let ev = relay_core::decode::flux::decode(&first.body_bytes(), &first.body).unwrap();
    let ce = relay_core::decode::flux::to_cloudevent(&ev, first.body.clone());
    let structured = serde_json::to_value(&ce).unwrap();

    let (status, body) = send_structured(&client, &relay.base, &structured).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    // Binary mode, the Flux payload as data.
    let mut binary = first.clone();
    for (k, v) in [
        ("Ce-Specversion", "1.0"),
        ("Ce-Id", "forged-binary"),
        ("Ce-Source", "/flux/GitRepository/flux-system/widgets"),
        ("Ce-Type", structured["type"].as_str().unwrap()),
    ] {
        binary.headers.insert(k.into(), v.into());
    }
    let (status, body) = send(&client, &relay.base, &binary).await;
    assert_eq!(status, 401, "{body}");
    assert!(rx.requests().is_empty(), "nothing was delivered");

    let (status, body) = send(&client, &relay.base, &signed(first, FLUX_TOKEN)).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
}
