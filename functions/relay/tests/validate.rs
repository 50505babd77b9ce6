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

/// The relay configs inside Knative ConfigMaps (every `data` key ending in
/// `.yaml`: the provider functions', the ingress's and the dead-letter
/// function's).
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
        for (key, config) in cm["data"].as_object().unwrap() {
            let out = dir.path().join(format!("{}_{key}", f.replace('/', "_")));
            std::fs::write(&out, config.as_str().unwrap()).unwrap();
            extracted.push(out);
        }
    }
    assert!(extracted.len() >= 4, "{extracted:?}");
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
spec: {type: pagerdooty}
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
        "Provider/pager: spec.type: unknown provider type \"pagerdooty\", expected one of webhook, log",
        "Notification/n: spec.filter.namespaces[0]: invalid glob",
        "Notification/n: spec.filter.states[0]: unknown state \"exploded\"",
        "Notification/n: spec.filter.when: invalid CEL",
        "Notification/n: spec.template: ",
    ];
    for e in expected {
        assert!(stdout.contains(e), "missing {e:?} in:\n{stdout}");
    }
}

/// The provider types the relay knows, as `relay validate` lists them.
fn provider_types() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("types.yaml");
    std::fs::write(
        &f,
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {name: p}\nspec: {type: nosuchtype}\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("validate").arg(&f).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let list = stdout
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no type list in {stdout}"));
    list.lines()
        .next()
        .unwrap()
        .split(", ")
        .map(|t| t.trim().to_string())
        .collect()
}

/// Every provider takes a Notification template, and `relay validate`
/// compiles and renders it against a sample event: a broken template fails
/// validation (naming its document and path) for every provider type, a
/// good one passes. The examples give each type's valid settings.
#[test]
fn every_provider_validates_notification_templates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let types = provider_types();
    assert!(types.len() >= 20, "{types:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut covered = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = e.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let types_of: std::collections::BTreeMap<String, String> = docs
            .iter()
            .filter(|d| d["kind"] == "Provider")
            .map(|d| {
                (
                    d["metadata"]["name"].as_str().unwrap().to_string(),
                    d["spec"]["type"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for (i, n) in docs.iter().enumerate() {
            if n["kind"] != "Notification" {
                continue;
            }
            let name = n["metadata"]["name"].as_str().unwrap();
            let ptype = &types_of[n["spec"]["providerRef"]["name"].as_str().unwrap()];
            for (template, ok) in [
                (
                    "{{ event.name }} is {{ event.state }} ({{ notification }})",
                    true,
                ),
                ("{{ event.nmae }}", false),
                ("{% if %}", false),
            ] {
                let mut docs = docs.clone();
                docs[i]["spec"]["template"] = template.into();
                let file = dir.path().join(format!("{name}.yaml"));
                let yaml: Vec<String> = docs
                    .iter()
                    .map(|d| serde_yaml_ng::to_string(d).unwrap())
                    .collect();
                std::fs::write(&file, yaml.join("---\n")).unwrap();
                let out = Command::new(BIN)
                    .arg("validate")
                    .arg(&file)
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert_eq!(
                    out.status.success(),
                    ok,
                    "{}: {template:?}: {stdout}",
                    path.display()
                );
                if !ok {
                    let want = format!("Notification/{name}: spec.template: ");
                    assert!(stdout.contains(&want), "{want:?} not in {stdout}");
                }
            }
            covered.insert(ptype.clone());
        }
    }
    let missing: Vec<&String> = types.iter().filter(|t| !covered.contains(*t)).collect();
    assert!(
        missing.is_empty(),
        "provider types with no Notification in examples/: {missing:?}"
    );
}

/// A summary provider's template sees the run's `summary` (and the event):
/// `relay validate` renders it in that context, so a good summary template
/// passes and a misspelt field fails.
#[test]
fn summary_templates_validate_against_a_sample_summary() {
    let dir = tempfile::tempdir().unwrap();
    let write = |template: &str| {
        let f = dir.path().join("summary.yaml");
        std::fs::write(
            &f,
            format!(
                "apiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: gh}}\nspec:\n  type: github\n  github: {{tokenFile: /var/run/secrets/relay/github/token}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: pr}}\nspec:\n  providerRef: {{name: gh}}\n  action: comment\n  template: '{template}'\n"
            ),
        )
        .unwrap();
        let out = Command::new(BIN).arg("validate").arg(&f).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = write(
        "{{ event.name }}: {% for t in summary.tasks %}{{ t.name }} {{ t.state }} {% endfor %}{{ summary.state }}",
    );
    assert!(ok, "{out}");
    let (ok, out) = write("{{ summary.taks }}");
    assert!(!ok, "{out}");
    assert!(out.contains("Notification/pr: spec.template: "), "{out}");
}

/// The README's YAML: every block parses, and every block of relay
/// documents (a Provider with its Notifications, say) passes `relay validate`,
/// so the docs never show a config the relay would refuse.
#[test]
fn yaml_in_the_readme_parses_and_relay_configs_in_it_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut configs = Vec::new();
    for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
        let block = block.split("```").next().unwrap();
        let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(block)
            .map(|d| {
                serde::Deserialize::deserialize(d)
                    .unwrap_or_else(|e| panic!("README yaml block {i}: {e}\n{block}"))
            })
            .filter(|d: &serde_json::Value| !d.is_null())
            .collect();
        assert!(!docs.is_empty(), "README yaml block {i} is empty");
        if docs
            .iter()
            .all(|d| d["apiVersion"] == "relay.tekton.dev/v1alpha1")
        {
            let f = dir.path().join(format!("readme-{i:02}.yaml"));
            std::fs::write(&f, block).unwrap();
            configs.push(f);
        }
    }
    assert!(configs.len() >= 15, "{configs:?}");
    let out = Command::new(BIN)
        .arg("validate")
        .args(&configs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
}
