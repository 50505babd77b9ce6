//! Hot reload through a real `relay serve`: a config file renamed over the
//! old one, a Kubernetes ConfigMap `..data` symlink swap, and SIGHUP each
//! swap in the new Notifications; an invalid config is rejected whole; an
//! event in flight finishes on the old Notifications; idempotency state
//! survives the swap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use relay_tests::fixtures::{RequestFile, fresh_pipelinerun};
use relay_tests::function::{notification, provider, relay_config};
use relay_tests::process::{RelayProcess, free_port, send};
use relay_tests::receiver::Receiver;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_relay");

fn event(tag: &str) -> RequestFile {
    fresh_pipelinerun(&format!("reload-{tag}"))
}

/// A config of webhook Notifications, each `(name, url)` with its own Provider.
fn config(hooks: &[(&str, &str)]) -> String {
    let mut cfg = relay_config();
    for (name, url) in hooks {
        cfg.push_str(&provider(name, "webhook", &format!("{{url: \"{url}\"}}")));
        cfg.push_str(&notification(name, name, ""));
    }
    cfg
}

/// Replaces `path` atomically (write beside it, rename over), as editors and
/// config management do.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn hangup(pid: u32) {
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

async fn reloads(base: &str, result: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("relay_config_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
}

/// Polls `/metrics` until `relay_config_reloads_total{result}` reaches `n`.
async fn wait_reloads(base: &str, result: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reloads(base, result).await < n {
        assert!(
            Instant::now() < deadline,
            "no {result} reload #{n} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `notification -> outcome` of one answer.
fn outcomes(body: &Value) -> BTreeMap<String, String> {
    body["deliveries"]
        .as_array()
        .unwrap_or_else(|| panic!("no deliveries in {body}"))
        .iter()
        .map(|d| {
            (
                d["notification"].as_str().unwrap().to_string(),
                d["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn post(base: &str, f: &RequestFile) -> BTreeMap<String, String> {
    let (status, body) = send(&reqwest::Client::new(), &format!("{base}/"), f).await;
    assert_eq!(status, 200, "{body}");
    outcomes(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_renamed_over_the_old_one_swaps_the_notifications_and_keeps_idempotency() {
    let rx = Receiver::start().await;
    let (keep, gone, added) = (rx.url("/keep"), rx.url("/gone"), rx.url("/added"));
    let p = RelayProcess::start(Path::new(BIN), &config(&[("keep", &keep), ("gone", &gone)])).await;
    assert_eq!(reloads(&p.base, "applied").await, 0);

    let a = event("a");
    let before = post(&p.base, &a).await;
    assert_eq!(before, map(&[("keep", "delivered"), ("gone", "delivered")]));

    let dir = p.dir.path().display().to_string();
    let v2 = config(&[("keep", &keep), ("added", &added)]).replace("$DIR", &dir);
    replace_file(&p.path("relay.yaml"), &v2);
    wait_reloads(&p.base, "applied", 1).await;

    let after = post(&p.base, &event("b")).await;
    assert_eq!(after, map(&[("keep", "delivered"), ("added", "delivered")]));
    // The memory store was carried over: `keep` already delivered `a`.
    let again = post(&p.base, &a).await;
    assert_eq!(again, map(&[("keep", "duplicate"), ("added", "delivered")]));
    assert_eq!(rx.accepted_on("/keep").len(), 2);
    assert_eq!(rx.accepted_on("/gone").len(), 1);
    assert_eq!(rx.accepted_on("/added").len(), 2);
    assert_eq!(reloads(&p.base, "rejected").await, 0);
    let ready: Value = reqwest::get(format!("{}/readyz", p.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = ready["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, ["keep", "added"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_is_rejected_whole_and_sighup_rereads_the_file() {
    let rx = Receiver::start().await;
    let (old, added) = (rx.url("/old"), rx.url("/added"));
    let p = RelayProcess::start(Path::new(BIN), &config(&[("old", &old)])).await;
    let dir = p.dir.path().display().to_string();

    // A valid new Notification beside one naming a Provider that does not
    // exist: nothing of it may apply.
    let broken = config(&[("added", &added)]).replace("$DIR", &dir)
        + &notification("orphan", "no-such-provider", "");
    replace_file(&p.path("relay.yaml"), &broken);
    wait_reloads(&p.base, "rejected", 1).await;
    assert_eq!(
        post(&p.base, &event("a")).await,
        map(&[("old", "delivered")])
    );
    assert!(rx.requests_on("/added").is_empty());
    let log = p.stderr();
    assert!(
        log.contains("config reload rejected") && log.contains("no-such-provider"),
        "{log}"
    );

    // The file did not change: only SIGHUP can make it be read again.
    hangup(p.pid());
    wait_reloads(&p.base, "rejected", 2).await;
    assert_eq!(reloads(&p.base, "applied").await, 0);

    // A valid config written in place, then SIGHUP: it applies (the
    // change may also be seen by the file watch; either reloads it).
    let fixed = config(&[("added", &added)]).replace("$DIR", &dir);
    std::fs::write(p.path("relay.yaml"), fixed).unwrap();
    hangup(p.pid());
    wait_reloads(&p.base, "applied", 1).await;
    assert_eq!(
        post(&p.base, &event("b")).await,
        map(&[("added", "delivered")])
    );
    assert_eq!(rx.accepted_on("/old").len(), 1);
    assert_eq!(rx.accepted_on("/added").len(), 1);
}

/// A provider that holds each request until released: proves an event is in
/// flight at a known moment, without timing.
struct Gate {
    url: String,
    arrived: tokio::sync::mpsc::Receiver<()>,
    release: tokio::sync::mpsc::Sender<()>,
}

impl Gate {
    async fn start() -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/gate", listener.local_addr().unwrap());
        let (arrived_tx, arrived) = tokio::sync::mpsc::channel(8);
        let (release, mut release_rx) = tokio::sync::mpsc::channel::<()>(8);
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                read_request(&mut conn).await;
                arrived_tx.send(()).await.unwrap();
                release_rx.recv().await;
                conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await
                .unwrap();
            }
        });
        Gate {
            url,
            arrived,
            release,
        }
    }
}

/// Reads one HTTP/1.1 request with a `content-length` body.
async fn read_request(conn: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-request");
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        if buf.len() >= end + 4 + len {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_in_flight_during_a_reload_finishes_on_the_old_notifications() {
    let rx = Receiver::start().await;
    let mut gate = Gate::start().await;
    let p = RelayProcess::start(Path::new(BIN), &config(&[("before", &gate.url)])).await;
    let base = p.base.clone();
    let in_flight = tokio::spawn(async move { post(&base, &event("a")).await });
    tokio::time::timeout(Duration::from_secs(30), gate.arrived.recv())
        .await
        .expect("the event reached the provider");

    let dir = p.dir.path().display().to_string();
    let after_url = rx.url("/after");
    let v2 = config(&[("after", &after_url)]).replace("$DIR", &dir);
    replace_file(&p.path("relay.yaml"), &v2);
    hangup(p.pid());
    wait_reloads(&p.base, "applied", 1).await;
    // New events go to the new Notifications while the old event still waits.
    assert_eq!(
        post(&p.base, &event("b")).await,
        map(&[("after", "delivered")])
    );
    assert!(!in_flight.is_finished());

    gate.release.send(()).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), in_flight)
        .await
        .expect("the in-flight event finished")
        .unwrap();
    assert_eq!(first, map(&[("before", "delivered")]));
    assert_eq!(rx.accepted_on("/after").len(), 1);
}

/// `relay serve` on a Kubernetes ConfigMap volume layout:
/// `relay.yaml -> ..data/relay.yaml`, `..data -> ..<timestamp>`.
struct ConfigMapRelay {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl ConfigMapRelay {
    async fn start(text: &str) -> ConfigMapRelay {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("config");
        std::fs::create_dir(&mount).unwrap();
        publish(&mount, "..2026_01_01_00_00_00.1", text);
        std::os::unix::fs::symlink("..data/relay.yaml", mount.join("relay.yaml")).unwrap();
        let port = free_port();
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(mount.join("relay.yaml"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("RELAY_CONFIG")
            .env("RELAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let r = ConfigMapRelay {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{}/healthz", r.base)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "relay did not start: {}",
                r.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        r
    }

    fn mount(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for ConfigMapRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the kubelet does on a ConfigMap update: write a new timestamped
/// folder, point `..data` at it by renaming a fresh symlink over it, then
/// remove the old folder.
fn publish(mount: &Path, version: &str, text: &str) {
    let old = std::fs::read_link(mount.join("..data")).ok();
    std::fs::create_dir(mount.join(version)).unwrap();
    std::fs::write(mount.join(version).join("relay.yaml"), text).unwrap();
    std::os::unix::fs::symlink(version, mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    if let Some(old) = old {
        std::fs::remove_dir_all(mount.join(old)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_is_picked_up_without_a_signal() {
    let rx = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dl = tmp.path().display().to_string();
    let r = ConfigMapRelay::start(&config(&[("v1", &rx.url("/v1"))]).replace("$DIR", &dl)).await;
    assert_eq!(
        post(&r.base, &event("a")).await,
        map(&[("v1", "delivered")])
    );

    let v2 = config(&[("v2", &rx.url("/v2"))]).replace("$DIR", &dl);
    publish(&r.mount(), "..2026_01_01_00_05_00.2", &v2);
    wait_reloads(&r.base, "applied", 1).await;
    assert_eq!(
        post(&r.base, &event("b")).await,
        map(&[("v2", "delivered")])
    );
    assert_eq!(rx.accepted_on("/v1").len(), 1);
    assert_eq!(rx.accepted_on("/v2").len(), 1);
    assert!(r.stderr().contains("config reloaded"), "{}", r.stderr());
}
