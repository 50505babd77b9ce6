//! Secrets from AWS through the real webhook function and a real moto
//! server: the inbound bearer token from Secrets Manager, the outbound
//! token from SSM Parameter Store, the HMAC key from one key of a JSON
//! secret. Rotated in moto, the new values are used once the TTL (1 s
//! here) has passed, without a restart; a missing parameter dead-letters
//! the event with an error naming it; no value is ever in the log, the
//! answers, the dead letters or the metrics. `relay validate` takes the
//! forms and refuses malformed ones.

use std::time::{Duration, Instant};

use relay::webhook::{SIGNATURE_HEADER, signature};
use relay_tests::fixtures::{RequestFile, fresh_pipelinerun};
use relay_tests::function::{Function, Secrets, assert_absent, config, relay_config_with, served};
use relay_tests::process::{Binary, send};
use relay_tests::receiver::{Receiver, Recorded};
use relay_tests::servers::MotoServer;
use serde_json::Value;

const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "webhook");

/// Every value the test puts into AWS: none may leak.
const VALUES: [&str; 6] = [
    "inbound-one-0123456789abcdef0123456789abcdef",
    "inbound-two-0123456789abcdef0123456789abcdef",
    "bearer-one-7f3a",
    "bearer-two-9c1e",
    "hmac-one-52d8",
    "hmac-two-e04b",
];

/// The webhook function over `moto`, its secrets there, cached for 1 s.
async fn start(moto: &MotoServer, cfg: &str) -> Function {
    let env: Vec<(String, String)> = moto
        .process_env()
        .into_iter()
        .chain([("RELAY_SECRET_TTL_SECONDS".to_string(), "1".to_string())])
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Function::start(BIN, cfg, Secrets::new(), &env).await
}

/// A new event (its own id) with `Authorization: Bearer <token>`.
fn event(id: &str, token: &str) -> RequestFile {
    let mut f = fresh_pipelinerun(id);
    f.headers
        .insert("Authorization".into(), format!("Bearer {token}"));
    f
}

/// Sends `ev`: the status, the answer, and the webhook requests it made.
async fn post(f: &Function, rx: &Receiver, ev: &RequestFile) -> (u16, Value, Vec<Recorded>) {
    let before = rx.requests_on("/hook").len();
    let (status, body) = send(&f.client, &f.url(), ev).await;
    (status, body, rx.requests_on("/hook")[before..].to_vec())
}

/// Is `hook` made with the token `bearer` and signed with `hmac`?
fn made_with(hook: &Recorded, bearer: &str, hmac: &str) -> bool {
    hook.headers["authorization"] == format!("Bearer {bearer}")
        && hook.headers[SIGNATURE_HEADER] == signature(hmac.as_bytes(), &hook.body).as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_ssm_and_secrets_manager_are_used_and_a_rotation_applies_within_the_ttl() {
    let [
        inbound_one,
        inbound_two,
        bearer_one,
        bearer_two,
        hmac_one,
        hmac_two,
    ] = VALUES;
    let moto = MotoServer::start();
    moto.secret("tekton-relay/ingress", inbound_one).await;
    moto.ssm_parameter("/tekton-relay/webhook/token", bearer_one)
        .await;
    moto.secret(
        "tekton-relay/webhook",
        &format!(r#"{{"hmac": "{hmac_one}"}}"#),
    )
    .await;
    let rx = Receiver::start().await;
    let cfg = relay_config_with(
        "  inboundAuth: {bearerTokenFile: \"secretsmanager://tekton-relay/ingress\"}\n",
    ) + &served(
        "hook",
        "webhook",
        &format!(
            "url: \"{}\"\ntokenFile: ssm://tekton-relay/webhook/token\n\
             hmacSecretFile: \"secretsmanager://tekton-relay/webhook#hmac\"",
            rx.url("/hook")
        ),
        &[("hook", "")],
    );
    let f = start(&moto, &cfg).await;

    let (status, body, hooks) = post(&f, &rx, &event("aws-1", inbound_one)).await;
    assert_eq!(status, 200, "{body}\n{}", f.stderr());
    assert_eq!(body["outcome"], "delivered", "{body}");
    assert_eq!(hooks.len(), 1);
    assert!(made_with(&hooks[0], bearer_one, hmac_one), "{:?}", hooks[0]);
    let (status, body, _) = post(&f, &rx, &event("aws-bad", "not-the-token")).await;
    assert_eq!(status, 401, "{body}");

    // Rotated in AWS; the process keeps running.
    moto.secret("tekton-relay/ingress", inbound_two).await;
    moto.ssm_parameter("/tekton-relay/webhook/token", bearer_two)
        .await;
    moto.secret(
        "tekton-relay/webhook",
        &format!(r#"{{"hmac": "{hmac_two}"}}"#),
    )
    .await;
    let mut answers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let (status, body, hooks) = post(&f, &rx, &event(&format!("aws-r{n}"), inbound_two)).await;
        // Until the inbound token's TTL passes, the new one is refused;
        // until the outbound ones' pass, the old ones are used.
        match status {
            401 => {}
            200 => {
                assert_eq!(body["outcome"], "delivered", "{body}");
                assert_eq!(hooks.len(), 1);
                if made_with(&hooks[0], bearer_two, hmac_two) {
                    break;
                }
                assert!(
                    made_with(&hooks[0], bearer_one, hmac_one)
                        || made_with(&hooks[0], bearer_two, hmac_one)
                        || made_with(&hooks[0], bearer_one, hmac_two),
                    "{:?}",
                    hooks[0]
                );
            }
            other => panic!("{other}: {body}\n{}", f.stderr()),
        }
        answers.push(body);
        assert!(
            Instant::now() < deadline,
            "the rotated secrets were not used within 30 s: {answers:?}\n{}",
            f.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The old inbound token is refused now.
    let (status, body, _) = post(&f, &rx, &event("aws-old", inbound_one)).await;
    assert_eq!(status, 401, "{body}");

    let metrics = f
        .client
        .get(format!("{}/metrics", f.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("relay_"), "{metrics}");
    assert_absent(
        &VALUES,
        &[
            ("log", &f.stderr()),
            ("stdout", &f.f.stdout()),
            ("answers", &format!("{answers:?}")),
            ("metrics", &metrics),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_parameter_dead_letters_the_event_naming_it() {
    let moto = MotoServer::start();
    moto.secret(
        "tekton-relay/webhook",
        &format!(r#"{{"hmac": "{}"}}"#, VALUES[4]),
    )
    .await;
    let rx = Receiver::start().await;
    let cfg = config(
        "hook",
        "webhook",
        &format!(
            "url: \"{}\"\ntokenFile: ssm://tekton-relay/webhook/absent\n\
             hmacSecretFile: \"secretsmanager://tekton-relay/webhook#hmac\"",
            rx.url("/hook")
        ),
        &[("hook", "")],
    );
    let f = start(&moto, &cfg).await;
    let (status, body, hooks) = post(&f, &rx, &fresh_pipelinerun("aws-missing")).await;
    assert_eq!(status, 200, "{body}\n{}", f.stderr());
    assert_eq!(body["outcome"], "dead_lettered", "{body}");
    assert!(hooks.is_empty(), "{hooks:?}");
    let entry = f.only_dead_letter();
    let message = entry["cause"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot read SSM parameter ssm://tekton-relay/webhook/absent")
            && message.contains("ParameterNotFound"),
        "{entry}"
    );
    f.assert_secrets_absent(&VALUES, &body);
}

#[test]
fn validate_takes_the_aws_forms_and_refuses_malformed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.yaml");
    // The inbound token, the store password, the webhook's token and HMAC key.
    let relay = |[inbound, password, token, hmac]: [&str; 4]| {
        relay_config_with(&format!(
            "  inboundAuth: {{bearerTokenFile: \"{inbound}\"}}\n  \
             store: \"valkey://cache:6379?passwordFile={password}\"\n"
        )) + &served(
            "hook",
            "webhook",
            &format!(
                "url: \"http://hook.example/\"\ntokenFile: \"{token}\"\nhmacSecretFile: \"{hmac}\""
            ),
            &[("hook", "")],
        )
    };
    let validate = |cfg: &str| {
        std::fs::write(&file, cfg).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
            .arg("validate")
            .arg(&file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), stdout)
    };
    let good = [
        "secretsmanager://tekton-relay/ingress",
        // `#` written `%23` in a URL's query.
        "secretsmanager://tekton-relay/valkey%23password",
        "ssm://tekton-relay/github/token",
        "secretsmanager://tekton-relay/webhook#hmac",
    ];
    let (ok, stdout) = validate(&relay(good));
    assert!(ok, "{stdout}");
    for (i, bad, want) in [
        (
            0,
            "ssm://",
            "RelayConfig/relay: spec.inboundAuth.bearerTokenFile: ssm:// needs a parameter name",
        ),
        (
            1,
            "secretsmanager://x%23",
            "RelayConfig/relay: spec.store: passwordFile: secretsmanager://x#…: after `#` give one key",
        ),
        (
            2,
            "ssm://a//b",
            "Provider/hook: spec.webhook.tokenFile: ssm://a//b: a hierarchical parameter name has no empty part",
        ),
        (
            3,
            "secretsmanager://tekton-relay/webhook#a#b",
            "Provider/hook: spec.webhook.hmacSecretFile: secretsmanager://tekton-relay/webhook#…: after `#` give one key",
        ),
    ] {
        let mut refs = good;
        refs[i] = bad;
        let (ok, stdout) = validate(&relay(refs));
        assert!(
            !ok && stdout.contains(want),
            "missing {want:?} in:\n{stdout}"
        );
    }
}
