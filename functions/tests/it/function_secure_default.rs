//! A provider function (here: webhook) started as Knative starts it, on
//! `0.0.0.0:$PORT`: without `spec.inboundAuth` it refuses to serve events
//! unless `RELAY_INSECURE_NO_AUTH=true` says to, and then warns.

use std::process::Stdio;
use std::time::{Duration, Instant};

use relay_tests::function::{Secrets, config, fixture};
use relay_tests::process::{FunctionProcess, free_port, send};
use relay_tests::receiver::Receiver;

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "webhook");
const WITHIN: Duration = Duration::from_secs(30);

#[test]
fn beyond_loopback_without_inbound_auth_a_function_refuses_to_start() {
    let d = Secrets::new();
    let path = d.path("relay.yaml");
    std::fs::write(
        &path,
        config(
            "hook",
            "webhook",
            "{url: \"http://127.0.0.1:9/\"}",
            &[("hook", "")],
        )
        .replace("$DIR", &d.dir().display().to_string()),
    )
    .unwrap();
    let port = free_port();
    let mut child = BIN
        .command()
        .env("RELAY_CONFIG", &path)
        .env("PORT", port.to_string())
        .env_remove("RELAY_LISTEN")
        .env_remove("RELAY_INSECURE_NO_AUTH")
        .current_dir(d.dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.path("stderr")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WITHIN;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the function serves events without inbound auth");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(d.path("stderr")).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("refusing to serve events on 0.0.0.0:{port}"))
            && stderr.contains("spec.inboundAuth")
            && stderr.contains("RELAY_INSECURE_NO_AUTH=true"),
        "{stderr}"
    );
}

#[tokio::test]
async fn told_insecure_a_function_serves_beyond_loopback_and_warns() {
    let rx = Receiver::start().await;
    let cfg = config(
        "hook",
        "webhook",
        &format!("{{url: \"{}\"}}", rx.url("/hook")),
        &[("hook", "")],
    );
    let port = free_port();
    let env = [
        ("PORT".to_string(), port.to_string()),
        ("RELAY_INSECURE_NO_AUTH".to_string(), "true".to_string()),
    ];
    let f = FunctionProcess::start(BIN, &cfg, &env);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WITHIN;
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "{}", f.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ev = fixture("tekton-pipelinerun-success/017-pipelinerun-successful.json");
    let (status, body) = send(&client, &format!("{base}/"), &ev).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rx.accepted_on("/hook").len(), 1);
    assert!(
        f.stderr()
            .contains("INSECURE: serving events without spec.inboundAuth"),
        "{}",
        f.stderr()
    );
}
