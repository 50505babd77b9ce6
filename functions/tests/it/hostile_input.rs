//! Hostile input through a real `relay serve` process and `relay validate`:
//! too many headers are cut by the server and the process keeps answering;
//! configs built to exhaust the parser are refused; templates cannot read
//! files or the environment, neither at validate nor at render. (Oversized,
//! deeply nested and malformed bodies, answered by the router, are in
//! `http_contract/relay.rs`.)

use std::path::Path;
use std::process::Command;

use relay_tests::fixtures::{RequestFile, fresh_pipelinerun};
use relay_tests::process::{RelayProcess, send};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_relay");

/// A 16 MiB body limit, and a `log` Notification whose template reads a
/// file only for a run named `hostile-include` (the sample run `relay
/// validate` renders is not, so the config validates).
const CONFIG: &str = r#"apiVersion: relay.tekton.dev/v1alpha1
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
  template: "{% if event.name == 'hostile-include' %}{% include '/etc/passwd' %}{% endif %}{{ event.name }}"
"#;

async fn relay() -> RelayProcess {
    RelayProcess::start(Path::new(BIN), CONFIG).await
}

/// A successful-PipelineRun event with a fresh id and uid.
fn event(tag: &str) -> RequestFile {
    fresh_pipelinerun(&format!("hostile-{tag}"))
}

/// `POST /` with these headers and body: `(status, body)`.
async fn post(
    base: &str,
    headers: &[(&str, &[u8])],
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{base}/")).body(body);
    for (k, v) in headers {
        req = req.header(*k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
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

/// The process is alive and serving: `/healthz` answers, and a normal event
/// is still delivered.
async fn still_serving(relay: &RelayProcess, tag: &str) {
    let r = reqwest::get(format!("{}/healthz", relay.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "stderr:\n{}", relay.stderr());
    let (status, body) = send(&reqwest::Client::new(), &relay.base, &event(tag)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "delivered", "{body}");
}

#[tokio::test]
async fn a_huge_number_of_headers_is_431() {
    let relay = relay().await;
    // 500 short headers (5x the server's limit) fit one read: the server has
    // read the whole request when it answers, so the 431 is not lost to a reset.
    let names: Vec<String> = (0..500).map(|i| format!("x{i}")).collect();
    let mut headers = binary_headers(b"many-headers");
    headers.extend(names.iter().map(|n| (n.as_str(), &b"v"[..])));
    let (status, _) = post(&relay.base, &headers, Vec::new()).await;
    assert_eq!(status, 431);
    // 100,000 headers (1.8 MB): the server stops reading and drops the
    // connection; the process lives on.
    let mut raw = tokio::net::TcpStream::connect(relay.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let mut req = b"POST / HTTP/1.1\r\nhost: relay\r\n".to_vec();
    for i in 0..100_000 {
        req.extend_from_slice(format!("x-hostile-{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"content-length: 0\r\n\r\n");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = raw.write_all(&req).await;
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    still_serving(&relay, "after-headers").await;
}

#[tokio::test]
async fn a_template_cannot_include_a_file_at_render() {
    let relay = relay().await;
    let mut f = event("include");
    f.body["pipelineRun"]["metadata"]["name"] = Value::String("hostile-include".into());
    let (status, body) = send(&reqwest::Client::new(), &relay.base, &f).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "dead_lettered", "{body}");
    let detail = body["deliveries"][0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("template"), "{body}");
    let dead = std::fs::read_to_string(relay.path("dead-letters.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 1);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let first = passwd.lines().next().unwrap_or("root:x:0:0");
    assert!(!dead.contains(first) && !relay.stdout().contains(first));
    still_serving(&relay, "after-include").await;
}

/// `relay validate` on one file: `(success, output)`.
fn validate(text: &str) -> (bool, String) {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("relay.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn a_yaml_alias_bomb_is_refused() {
    let mut bomb = String::from(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {name: relay}\nspec:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        bomb += &format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        );
    }
    let (ok, out) = validate(&bomb);
    assert!(!ok, "{out}");
    assert!(out.contains("repetition limit exceeded"), "{out}");
}

#[test]
fn deeply_nested_yaml_is_refused() {
    for deep in [
        "[".repeat(5_000),
        "{a: ".repeat(5_000),
        "- ".repeat(5_000) + "x",
    ] {
        let (ok, out) = validate(&deep);
        assert!(!ok, "{out}");
        assert!(out.contains("recursion limit exceeded"), "{out}");
    }
}

#[test]
fn templates_cannot_read_files_or_the_environment() {
    // No loader and no env function: each is an error naming the template.
    let head = "apiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {name: stdout}\nspec: {type: log}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {name: n}\nspec:\n  providerRef: {name: stdout}\n  template: ";
    for template in [
        r#""{% include '/etc/passwd' %}""#,
        r#""{% import '/etc/passwd' as p %}{{ p }}""#,
        r#""{% from '/etc/passwd' import x %}{{ x }}""#,
        r#""{% extends '/etc/passwd' %}""#,
        r#""{{ env.HOME }}""#,
        r#""{{ env('HOME') }}""#,
        r#""{{ lookup('env', 'HOME') }}""#,
        r#""{{ range(10) | map('env') | list }}""#,
    ] {
        let (ok, out) = validate(&format!("{head}{template}\n"));
        assert!(!ok, "{template} validated:\n{out}");
        assert!(
            out.contains("Notification/n") && out.contains("spec.template"),
            "{template}:\n{out}"
        );
        assert!(!out.contains("root:"), "{out}");
    }
}
