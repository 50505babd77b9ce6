//! The ingress's front door, secure by default: on Lambda (a public
//! Function URL) it does not start without inbound auth, whatever it is
//! told; on Knative it does not serve beyond loopback without it unless
//! told to. Its inbound limit keys on the caller's address as AWS saw it,
//! not on what the caller wrote; a failed forward does not tell the sender
//! where the ingress forwards to.

use std::process::Stdio;
use std::time::{Duration, Instant};

use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::lambda_api::{RuntimeApi, function_url_event_from};
use relay_tests::process::{FunctionProcess, free_port};
use relay_tests::receiver::Receiver;
use serde_json::Value;

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "ingress");
const WITHIN: Duration = Duration::from_secs(30);

fn config(spec: &str) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n{spec}\n"
    )
}

fn event() -> RequestFile {
    RequestFile::load(&dir().join("tekton-pipelinerun-success/017-pipelinerun-successful.json"))
}

/// Runs the ingress with `env` until it exits (it must, within
/// [`WITHIN`], and fail): its stderr.
fn refused(cfg: &str, env: &[(String, String)]) -> String {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("relay.yaml");
    std::fs::write(&path, cfg).unwrap();
    let mut child = BIN
        .command()
        .env("RELAY_CONFIG", &path)
        .env_remove("RELAY_LISTEN")
        .env_remove("RELAY_INSECURE_NO_AUTH")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(d.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WITHIN;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the ingress started");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    std::fs::read_to_string(d.path().join("stderr")).unwrap()
}

#[tokio::test]
async fn on_lambda_without_inbound_auth_it_does_not_start_even_when_told_insecure() {
    let api = RuntimeApi::start().await;
    let mut env = api.env("relay-ingress");
    env.push(("K_SINK".into(), "http://127.0.0.1:9/".into()));
    env.push(("RELAY_INSECURE_NO_AUTH".into(), "true".into()));
    let stderr = tokio::task::spawn_blocking(move || refused(&config("  {}"), &env))
        .await
        .unwrap();
    assert!(
        stderr.contains("refusing to start on Lambda without spec.inboundAuth")
            && stderr.contains("Function URL is public"),
        "{stderr}"
    );
}

#[tokio::test]
async fn on_knative_beyond_loopback_without_auth_it_refuses_unless_told() {
    let rx = Receiver::start().await;
    let port = free_port();
    let env = vec![
        ("K_SINK".to_string(), rx.url("/broker")),
        ("PORT".to_string(), port.to_string()),
    ];
    let cfg = config("  {}");
    let (c, e) = (cfg.clone(), env.clone());
    let stderr = tokio::task::spawn_blocking(move || refused(&c, &e))
        .await
        .unwrap();
    assert!(
        stderr.contains(&format!("refusing to serve events on 0.0.0.0:{port}"))
            && stderr.contains("RELAY_INSECURE_NO_AUTH=true"),
        "{stderr}"
    );

    // Told: it serves, forwards, and says so.
    let mut env = env;
    env.push(("RELAY_INSECURE_NO_AUTH".into(), "true".into()));
    let f = FunctionProcess::start(BIN, &cfg, &env);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WITHIN;
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "{}", f.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ev = event();
    let mut req = client.post(format!("{base}/")).body(ev.body_bytes());
    for (k, v) in ev.send_headers() {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    assert_eq!(rx.accepted_on("/broker").len(), 1);
    assert!(f.stderr().contains("INSECURE"), "{}", f.stderr());
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("relay_insecure_no_auth 1"), "{metrics}");
}

/// The attack: on Lambda there is no peer address, so the limit used to
/// key on nothing (and limit nothing); a caller's own X-Forwarded-For must
/// not choose its bucket either. The request context's source IP does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_the_limit_keys_on_the_source_ip_aws_saw() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(
        secrets.path().join("token"),
        "ingress-token-0123456789abcdef-0123456789",
    )
    .unwrap();
    let api = RuntimeApi::start().await;
    let mut env = api.env("relay-ingress");
    env.push(("K_SINK".into(), rx.url("/broker")));
    let cfg = config(&format!(
        "  inboundAuth: {{bearerTokenFile: {}}}\n  limits: {{inboundPerSource: {{ratePerSecond: 0.001, burst: 1}}}}",
        secrets.path().join("token").display()
    ));
    let function = FunctionProcess::start(BIN, &cfg, &env);
    let ev = event();
    let auth = (
        "authorization",
        "Bearer ingress-token-0123456789abcdef-0123456789",
    );
    let mut statuses = Vec::new();
    for i in 0..3 {
        let spoof = format!("198.51.100.{i}");
        let r = api
            .invoke(function_url_event_from(
                &ev,
                "203.0.113.7",
                &[auth, ("x-forwarded-for", &spoof)],
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", function.stderr()));
        statuses.push(r["statusCode"].as_u64().unwrap());
    }
    assert_eq!(statuses, [200, 429, 429], "{}", function.stderr());
    let other = api
        .invoke(function_url_event_from(&ev, "203.0.113.8", &[auth]))
        .await
        .unwrap();
    assert_eq!(other["statusCode"], 200, "another caller, its own bucket");
    assert_eq!(rx.accepted_on("/broker").len(), 2);
}

/// The attack: a sender learns where the ingress forwards (the sink's
/// address) from its answer. It learns that the forward failed, to retry.
#[tokio::test]
async fn a_failed_forward_does_not_tell_the_sender_where_to() {
    let down = free_port();
    let sink = format!("http://127.0.0.1:{down}/internal-broker");
    let env = vec![("K_SINK".to_string(), sink)];
    let (f, base) = FunctionProcess::start_http(BIN, &config("  {}"), &env).await;
    let ev = event();
    let mut req = reqwest::Client::new().post(&base).body(ev.body_bytes());
    for (k, v) in ev.send_headers() {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "forward_failed", "{text}");
    assert!(
        !text.contains(&down.to_string()) && !text.contains("internal-broker"),
        "{text}"
    );
    assert!(f.stderr().contains("forward failed"), "{}", f.stderr());
}
