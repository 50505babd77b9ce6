//! Secure by default, through a real `relay serve`: beyond loopback it does
//! not serve events without inbound auth unless told to (and then says so);
//! the dead-letter API is off without its own credential, which is not the
//! event senders'; callers beyond loopback learn outcomes, not provider
//! detail or the deployment's Notifications; slow and idle connections are
//! cut and capped, so they cannot starve a normal request. (What the
//! router answers, on loopback or beyond it, is pinned in-process in
//! `http_contract/relay.rs`: the API off without apiAuth, readiness and
//! metrics for the admin.)

use std::path::Path;
use std::time::{Duration, Instant};

use relay_tests::fixtures::{RequestFile, fresh_pipelinerun};
use relay_tests::process::{RelayProcess, Serve, send};
use relay_tests::receiver::Receiver;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_relay");

/// How long anything asked of the relay here may take at most.
const WITHIN: Duration = Duration::from_secs(30);

fn event(tag: &str) -> RequestFile {
    fresh_pipelinerun(&format!("secure-{tag}"))
}

fn signed(tag: &str, token: &str) -> RequestFile {
    let mut f = event(tag);
    f.headers
        .insert("Authorization".into(), format!("Bearer {token}"));
    f
}

/// A RelayConfig with `spec` lines and one webhook Notification to `url`.
fn config(spec: &str, url: &str) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  deadLetter: file://$DIR/dl.jsonl\n  delivery: {{initialBackoffMs: 10, maxBackoffMs: 20, maxAttempts: 2}}\n{spec}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: hook}}\nspec:\n  type: webhook\n  webhook: {{url: \"{url}\"}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: hook-notification}}\nspec:\n  providerRef: {{name: hook}}\n"
    )
}

/// Secret files: the event senders' token and the API's.
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

    fn inbound(&self) -> String {
        format!(
            "  inboundAuth: {{bearerTokenFile: {}}}\n",
            self.dir.path().join("sender").display()
        )
    }

    fn api(&self) -> String {
        format!(
            "  apiAuth: {{bearerTokenFile: {}}}\n",
            self.dir.path().join("admin").display()
        )
    }
}

async fn status_of(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `relay serve` on every interface with `config` (which authenticates).
async fn public_relay(config: &str) -> RelayProcess {
    RelayProcess::start_with(
        Path::new(BIN),
        &Serve {
            config: Some(config),
            listen_ip: "0.0.0.0",
            ..Serve::default()
        },
    )
    .await
}

/// `relay serve` on every interface with `config` and `args`; it must
/// refuse to start: its stderr.
async fn refused_to_serve(config: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut relay = RelayProcess::launch(
        Path::new(BIN),
        &Serve {
            config: Some(config),
            args,
            env,
            listen_ip: "0.0.0.0",
            ..Serve::default()
        },
    );
    let status = relay
        .wait_exit(WITHIN)
        .await
        .unwrap_or_else(|| panic!("it serves; stderr:\n{}", relay.stderr()));
    assert!(!status.success(), "{status:?}");
    assert!(
        reqwest::get(format!("{}/healthz", relay.base))
            .await
            .is_err(),
        "nothing listens"
    );
    relay.stderr()
}

#[tokio::test]
async fn beyond_loopback_without_inbound_auth_the_relay_refuses_to_start() {
    let cfg = config("", "http://127.0.0.1:9/");
    let stderr = refused_to_serve(&cfg, &[], &[]).await;
    assert!(
        stderr.contains("refusing to serve events on 0.0.0.0:")
            && stderr.contains("Set spec.inboundAuth")
            && stderr.contains("--insecure-no-auth (or RELAY_INSECURE_NO_AUTH=true)"),
        "{stderr}"
    );
    // apiAuth is the admin's credential, not the senders': no way in either.
    let tokens = Tokens::new();
    let stderr = refused_to_serve(&config(&tokens.api(), "http://127.0.0.1:9/"), &[], &[]).await;
    assert!(stderr.contains("refusing to serve events"), "{stderr}");
    // Flux's signature alone guards Flux payloads, not CloudEvents.
    let flux = format!(
        "  inboundAuth: {{fluxHmacSecretFile: {}}}\n",
        tokens.dir.path().join("sender").display()
    );
    let stderr = refused_to_serve(&config(&flux, "http://127.0.0.1:9/"), &[], &[]).await;
    assert!(
        stderr.contains("fluxHmacSecretFile alone leaves CloudEvents open"),
        "{stderr}"
    );
    // A switch that is neither true nor false is not taken for either.
    let stderr = refused_to_serve(&cfg, &[], &[("RELAY_INSECURE_NO_AUTH", "yes")]).await;
    assert!(
        stderr.contains("RELAY_INSECURE_NO_AUTH must be true or false"),
        "{stderr}"
    );
}

#[tokio::test]
async fn told_to_serve_without_auth_it_serves_and_says_so_loudly() {
    let rx = Receiver::start().await;
    let cfg = config("", &rx.url("/hook"));
    for (args, env) in [
        (&["--insecure-no-auth"][..], &[][..]),
        (&[][..], &[("RELAY_INSECURE_NO_AUTH", "true")][..]),
    ] {
        let relay = RelayProcess::start_with(
            Path::new(BIN),
            &Serve {
                config: Some(&cfg),
                args,
                env,
                listen_ip: "0.0.0.0",
                ..Serve::default()
            },
        )
        .await;
        let (status, body) = send(&reqwest::Client::new(), &relay.base, &event("open")).await;
        assert_eq!(status, 200, "{body}");
        let stderr = relay.stderr();
        assert!(
            stderr.contains("WARN")
                && stderr.contains("INSECURE: serving events without spec.inboundAuth"),
            "{stderr}"
        );
        let metrics = reqwest::get(format!("{}/metrics", relay.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("relay_insecure_no_auth 1"), "{metrics}");
    }
}

#[tokio::test]
async fn with_inbound_auth_it_serves_beyond_loopback_without_a_warning() {
    let rx = Receiver::start().await;
    let tokens = Tokens::new();
    let relay = public_relay(&config(&tokens.inbound(), &rx.url("/hook"))).await;
    let client = reqwest::Client::new();
    assert_eq!(send(&client, &relay.base, &event("anon")).await.0, 401);
    assert_eq!(
        send(&client, &relay.base, &signed("ok", SENDER)).await.0,
        200
    );
    assert!(!relay.stderr().contains("INSECURE"), "{}", relay.stderr());
}

/// A reload cannot do what the start refused: a config without inbound
/// auth is rejected whole while the relay listens beyond loopback.
#[tokio::test]
async fn a_reload_cannot_drop_inbound_auth_beyond_loopback() {
    let rx = Receiver::start().await;
    let tokens = Tokens::new();
    let relay = public_relay(&config(&tokens.inbound(), &rx.url("/hook"))).await;
    let path = relay.path("relay.yaml");
    let open =
        config("", &rx.url("/hook")).replace("$DIR", &relay.dir.path().display().to_string());
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, open).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let deadline = Instant::now() + WITHIN;
    while !relay.stderr().contains("refusing to serve events on") {
        assert!(Instant::now() < deadline, "no reload: {}", relay.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = reqwest::Client::new();
    assert_eq!(send(&client, &relay.base, &event("after")).await.0, 401);
    assert!(rx.requests().is_empty());
}

#[tokio::test]
async fn sender_and_admin_credentials_do_not_open_each_others_door() {
    let rx = Receiver::start().await;
    rx.always("/hook", Some((401, None)));
    let tokens = Tokens::new();
    let relay = RelayProcess::start(
        Path::new(BIN),
        &config(&(tokens.inbound() + &tokens.api()), &rx.url("/hook")),
    )
    .await;
    let client = reqwest::Client::new();
    let base = &relay.base;
    // The admin's token sends no events.
    let (status, body) = send(&client, base, &signed("by-admin", ADMIN)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert!(rx.requests().is_empty());
    assert_eq!(
        send(&client, base, &signed("by-sender", SENDER)).await.0,
        200
    );
    // The senders' token reads, replays and deletes no dead letters.
    for req in [
        client.get(format!("{base}/api/v1/dlq")).bearer_auth(SENDER),
        client
            .post(format!("{base}/api/v1/dlq/replay"))
            .bearer_auth(SENDER),
        client
            .delete(format!("{base}/api/v1/dlq/x"))
            .bearer_auth(SENDER),
        client.get(format!("{base}/metrics")).bearer_auth(SENDER),
    ] {
        let (status, body) = status_of(req).await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, list) =
        status_of(client.get(format!("{base}/api/v1/dlq")).bearer_auth(ADMIN)).await;
    assert_eq!((status, list["total"].as_u64()), (200, Some(1)), "{list}");
    // The CLI sends the API's token from its file.
    let out = tokio::process::Command::new(BIN)
        .args(["dlq", "list", "--url", base, "--token-file"])
        .arg(tokens.dir.path().join("admin"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = tokio::process::Command::new(BIN)
        .args(["dlq", "list", "--url", base, "--token-file"])
        .arg(tokens.dir.path().join("sender"))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
}

/// `relay validate` on `text`: `(success, output)`.
fn validate(text: &str) -> (bool, String) {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("relay.yaml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn api_auth_takes_a_credential_of_its_own() {
    let tokens = Tokens::new();
    let sender = tokens.dir.path().join("sender");
    let sender = sender.display();
    for (spec, want) in [
        (
            format!("  apiAuth: {{fluxHmacSecretFile: {sender}}}"),
            "spec.apiAuth.fluxHmacSecretFile: the dead-letter API takes bearerTokenFile, hmacSecretFile or jwt",
        ),
        (
            "  apiAuth: {}".to_string(),
            "spec.apiAuth: set bearerTokenFile",
        ),
        (
            format!(
                "{}  apiAuth: {{bearerTokenFile: {sender}}}",
                tokens.inbound()
            ),
            "spec.apiAuth: uses the same credential as spec.inboundAuth",
        ),
        (
            format!(
                "  inboundAuth: {{jwt: {{hs256SecretFile: {sender}, audience: relay}}}}\n  apiAuth: {{jwt: {{hs256SecretFile: {sender}, audience: relay}}}}"
            ),
            "spec.apiAuth: uses the same credential as spec.inboundAuth",
        ),
    ] {
        let (ok, out) = validate(&config(&spec, "http://127.0.0.1:9/"));
        assert!(!ok && out.contains(want), "{spec}\n{out}");
    }
    // The same JWT key for another audience is a credential of its own.
    let (ok, out) = validate(&config(
        &format!(
            "  inboundAuth: {{jwt: {{hs256SecretFile: {sender}, audience: relay}}}}\n  apiAuth: {{jwt: {{hs256SecretFile: {sender}, audience: relay-admin}}}}"
        ),
        "http://127.0.0.1:9/",
    ));
    assert!(ok, "{out}");
}

/// The attack: a sender (or anyone, in insecure mode) learns the provider's
/// error text and address from the answer. Beyond loopback it gets each
/// delivery's outcome only; the detail is in the log and the dead letter.
#[tokio::test]
async fn beyond_loopback_answers_carry_outcomes_but_no_provider_detail() {
    let rx = Receiver::start().await;
    rx.always("/hook", Some((401, None)));
    let tokens = Tokens::new();
    // A provider that refuses (401), and one nothing listens on.
    let down = relay_tests::process::free_port();
    let cfg = config(&tokens.inbound(), &rx.url("/hook"))
        + &format!(
            "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: down}}\nspec:\n  type: webhook\n  webhook: {{url: \"http://127.0.0.1:{down}/internal\"}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: down}}\nspec:\n  providerRef: {{name: down}}\n"
        );
    let relay = public_relay(&cfg).await;
    let (status, answer) = send(
        &reqwest::Client::new(),
        &relay.base,
        &signed("detail", SENDER),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    let deliveries = answer["deliveries"].as_array().unwrap();
    let outcome = |n: &str| {
        deliveries
            .iter()
            .find(|d| d["notification"] == n)
            .map(|d| d["outcome"].clone())
    };
    assert_eq!(
        outcome("hook-notification"),
        Some("dead_lettered".into()),
        "{answer}"
    );
    assert_eq!(outcome("down"), Some("failed".into()), "{answer}");
    assert!(
        deliveries
            .iter()
            .all(|d| d.get("detail").is_none_or(Value::is_null)),
        "{answer}"
    );
    let text = answer.to_string();
    assert!(
        !text.contains(&down.to_string()) && !text.contains("401"),
        "{text}"
    );
    // The detail is where the operator looks.
    let dead = std::fs::read_to_string(relay.path("dl.jsonl")).unwrap();
    assert!(dead.contains("401"), "{dead}");
    assert!(
        relay.stderr().contains(&down.to_string()),
        "{}",
        relay.stderr()
    );
}

/// Reads from `conn` until the server closes it (end of stream or reset),
/// at most until `deadline`: what it sent before closing.
async fn until_closed(conn: &mut tokio::net::TcpStream, deadline: Instant) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open past the deadline"),
        }
    }
}

/// The attack: 80 connections that send part of their headers and then
/// nothing (or nothing at all), against a relay with 64 file descriptors.
/// With a cap of 16 connections and a 1 s header timeout, the slow ones
/// are cut, the process never runs out of descriptors, and a normal
/// request is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_are_cut_and_capped_and_a_normal_request_is_served() {
    let rx = Receiver::start().await;
    let cfg = config(
        "  limits: {maxConnections: 16, headerReadTimeoutSeconds: 1}",
        &rx.url("/hook"),
    );
    let relay = RelayProcess::start_with(
        Path::new(BIN),
        &Serve {
            config: Some(&cfg),
            wrapper: &["sh", "-c", "ulimit -n 64 && exec \"$0\" \"$@\""],
            ..Serve::default()
        },
    )
    .await;
    let addr = relay.base.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for i in 0..80 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 0 {
            c.write_all(b"POST / HTTP/1.1\r\nhost: relay\r\nx-slow: ")
                .await
                .unwrap();
        }
        slow.push(c);
    }
    let deadline = Instant::now() + WITHIN;
    let (status, body) = tokio::time::timeout(
        WITHIN,
        send(&reqwest::Client::new(), &relay.base, &event("normal")),
    )
    .await
    .expect("the normal request was answered");
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    for c in &mut slow {
        let got = until_closed(c, deadline).await;
        // Cut without an answer, or with hyper's 408 for a request timeout.
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    let stderr = relay.stderr();
    assert!(!stderr.contains("accept failed"), "{stderr}");
    assert_eq!(rx.accepted_on("/hook").len(), 1);
}

/// The attack: a body promised by Content-Length and trickled (here: ten
/// bytes, then nothing) would hold the connection and its slot for ever.
/// After `bodyReadTimeoutSeconds` it is answered 408 and closed.
#[tokio::test]
async fn a_body_that_does_not_arrive_is_answered_408_and_the_connection_closed() {
    let rx = Receiver::start().await;
    let cfg = config("  limits: {bodyReadTimeoutSeconds: 1}", &rx.url("/hook"));
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let mut c = tokio::net::TcpStream::connect(relay.base.trim_start_matches("http://"))
        .await
        .unwrap();
    c.write_all(
        b"POST / HTTP/1.1\r\nhost: relay\r\ncontent-type: application/cloudevents+json\r\ncontent-length: 1000\r\n\r\n{\"specvers",
    )
    .await
    .unwrap();
    let got = until_closed(&mut c, Instant::now() + WITHIN).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    let metrics = reqwest::get(format!("{}/metrics", relay.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"relay_requests_rejected_total{code="request_timeout"} 1"#),
        "{metrics}"
    );
    assert!(rx.requests().is_empty());
}
