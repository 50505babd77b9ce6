//! `relay validate`: every example config in the repo validates; a broken
//! one prints every error with its document and path and exits non-zero.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_relay");

/// Every relay config in the repository: `examples/`, and the embedded default.
fn example_configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for dir in ["examples", "shared/src/config"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_example_config_validates() {
    let files = example_configs();
    assert!(files.len() >= 3, "{files:?}");
    let out = Command::new(BIN)
        .arg("validate")
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(": ok")).count(),
        files.len()
    );
}

/// The relay configs inside Knative ConfigMaps (`data["relay.yaml"]`).
#[test]
fn configs_in_knative_configmaps_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let mut extracted = Vec::new();
    for f in [
        "knative/base/configmap.yaml",
        "knative/overlays/valkey/relay-config.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        let cm: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        let config = cm["data"]["relay.yaml"].as_str().unwrap();
        let out = dir.path().join(f.replace('/', "_"));
        std::fs::write(&out, config).unwrap();
        extracted.push(out);
    }
    let out = Command::new(BIN)
        .arg("validate")
        .args(&extracted)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn invalid_config_reports_every_error_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        r#"
apiVersion: relay.tekton.dev/v1alpha1
kind: RelayConfig
metadata: {name: relay}
spec: {store: "mongodb://x", deadLetter: "ftp://x"}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Provider
metadata: {name: hook}
spec:
  type: webhook
  webhook: {url: "http://x", tokenFil: /t}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Provider
metadata: {name: pager}
spec: {type: pagerduty}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Notification
metadata: {name: n}
spec:
  providerRef: {name: hook}
  filter: {states: [exploded], when: "event.name ==", namespaces: ["[bad"]}
  template: "{{ event.nmae }}"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = [
        "RelayConfig/relay: spec.store: unknown store \"mongodb://x\"",
        "RelayConfig/relay: spec.deadLetter: unknown dead-letter target \"ftp://x\"",
        "Provider/hook: spec.webhook.tokenFil: unknown field `tokenFil`",
        "Provider/pager: spec.type: unknown provider type \"pagerduty\", expected one of webhook, log",
        "Notification/n: spec.filter.namespaces[0]: invalid glob",
        "Notification/n: spec.filter.states[0]: unknown state \"exploded\"",
        "Notification/n: spec.filter.when: invalid CEL",
        "Notification/n: spec.template: ",
    ];
    for e in expected {
        assert!(stdout.contains(e), "missing {e:?} in:\n{stdout}");
    }
}
