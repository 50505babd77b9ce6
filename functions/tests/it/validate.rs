//! `relay validate`: every example config in the repo validates; a broken
//! one prints every error with its document and path and exits non-zero.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_relay");

/// Every relay config in the repository: `examples/`, and the embedded default.
fn example_configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for dir in ["examples", "shared/src/config", "infra/examples/basic"] {
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

/// The relay configs of the Knative install (knative/base/config/: the
/// provider functions' and the router's, the ingress's and the dead-letter
/// function's), which kustomize puts in the relay-config ConfigMap.
#[test]
fn configs_of_the_knative_install_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("knative/base/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["dlq.yaml", "ingress.yaml", "relay.yaml"]);
    let out = Command::new(BIN)
        .arg("validate")
        .args(&files)
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let types: Vec<String> = relay::PROVIDERS
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    // `relay validate` knows exactly the table's types, in its order.
    assert_eq!(provider_types(), types);
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

/// The Markdown docs: README.md, SECURITY.md and every `.md` under `docs/`.
fn markdown_docs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = vec![root.join("README.md"), root.join("SECURITY.md")];
    walk(&root.join("docs"), &mut out);
    out.sort();
    out
}

/// The YAML of the README and of `docs/`: every block parses, and every
/// block of relay documents (a Provider with its Notifications, say) passes
/// `relay validate`, so the docs never show a config the relay would refuse.
#[test]
fn yaml_in_the_readme_parses_and_relay_configs_in_it_validate() {
    let files: Vec<PathBuf> = markdown_docs()
        .into_iter()
        .filter(|f| !f.ends_with("SECURITY.md"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut configs = Vec::new();
    let mut blocks = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.display();
        for (i, block) in text.split("```yaml\n").skip(1).enumerate() {
            blocks += 1;
            let block = block.split("```").next().unwrap();
            let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(block)
                .map(|d| {
                    serde::Deserialize::deserialize(d)
                        .unwrap_or_else(|e| panic!("{name} yaml block {i}: {e}\n{block}"))
                })
                .filter(|d: &serde_json::Value| !d.is_null())
                .collect();
            assert!(!docs.is_empty(), "{name} yaml block {i} is empty");
            if docs
                .iter()
                .all(|d| d["apiVersion"] == "relay.tekton.dev/v1alpha1")
            {
                let f = dir.path().join(format!("doc-{blocks:03}.yaml"));
                std::fs::write(&f, block).unwrap();
                configs.push(f);
            }
        }
    }
    // The README held 28 yaml blocks before the provider and configuration
    // reference moved to docs/: all of them must still be seen here.
    assert!(blocks >= 28, "only {blocks} yaml blocks in {files:?}");
    assert!(configs.len() >= 15, "{configs:?}");
    let out = Command::new(BIN)
        .arg("validate")
        .args(&configs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
}

/// The text of a Markdown file without its fenced blocks and code spans,
/// where a `[text](path)` is an example, not a link.
fn markdown_prose(text: &str) -> String {
    let mut prose = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    // Code spans may run over a line break, so they are cut from the whole text.
    prose
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, s)| s)
        .collect()
}

/// The anchors GitHub gives a Markdown file's headings: lower case, spaces
/// to `-`, punctuation (backticks included) dropped; a repeated heading
/// gets `-1`, `-2`, ….
fn heading_anchors(text: &str) -> Vec<String> {
    let mut anchors: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if fenced || hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let seen = anchors
            .iter()
            .filter(|a| {
                **a == slug
                    || a.strip_prefix(&format!("{slug}-"))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count();
        anchors.push(if seen == 0 {
            slug
        } else {
            format!("{slug}-{seen}")
        });
    }
    anchors
}

/// Every relative link of the README, SECURITY.md and `docs/` leads to a
/// file that exists, and every `#anchor` to a heading of its target, so
/// moving a section cannot leave a link behind.
#[test]
fn relative_links_in_the_docs_resolve_to_files_and_headings() {
    let mut links = 0;
    let mut broken = Vec::new();
    for file in markdown_docs() {
        let text = std::fs::read_to_string(&file).unwrap();
        let prose = markdown_prose(&text);
        for piece in prose.split("](").skip(1) {
            let Some(end) = piece.find([')', ' ']) else {
                continue;
            };
            let target = &piece[..end];
            if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                continue;
            }
            links += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !dest.exists() {
                broken.push(format!("{}: {target}: no such file", file.display()));
                continue;
            }
            if !anchor.is_empty() {
                let headings = std::fs::read_to_string(&dest)
                    .map(|t| heading_anchors(&t))
                    .unwrap_or_default();
                if !headings.iter().any(|h| h == anchor) {
                    broken.push(format!("{}: {target}: no such heading", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    // The provider index alone links 20 pages: the links were seen.
    assert!(links >= 30, "only {links} relative links found");
}

/// Every repository path the README, SECURITY.md and `docs/` name in a code
/// span (`functions/src/github/`, `shared/src/auth.rs::…`) exists, so a move
/// cannot leave the docs pointing at files that are gone. Braces expand
/// (`functions/src/{a,b}/function_tests.rs`).
#[test]
fn repository_paths_named_in_the_docs_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tops = [
        "shared/",
        "functions/",
        "tests/",
        "knative/",
        "infra/",
        "scripts/",
        "examples/",
        "fuzz/",
        "docs/",
    ];
    let mut seen = 0;
    let mut missing = Vec::new();
    for file in markdown_docs() {
        let text = std::fs::read_to_string(&file).unwrap();
        for span in text.split('`').skip(1).step_by(2) {
            let path = span
                .split("::")
                .next()
                .unwrap()
                .trim_end_matches(['.', ',', ':']);
            if !tops.iter().any(|t| path.starts_with(t)) || path.contains([' ', '*', '<', '$', '?'])
            {
                continue;
            }
            for p in expand_braces(path) {
                seen += 1;
                if !root.join(&p).exists() {
                    missing.push(format!("{}: {p}", file.display()));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "paths named in the docs that do not exist:\n{}",
        missing.join("\n")
    );
    assert!(seen >= 30, "only {seen} paths seen");
}

/// `a/{b,c}/d` as `a/b/d` and `a/c/d` (one pair of braces).
fn expand_braces(path: &str) -> Vec<String> {
    match (path.find('{'), path.find('}')) {
        (Some(i), Some(j)) if i < j => path[i + 1..j]
            .split(',')
            .map(|alt| format!("{}{alt}{}", &path[..i], &path[j + 1..]))
            .collect(),
        _ => vec![path.to_string()],
    }
}

#[test]
fn heading_anchors_follow_github_rules() {
    let text = "# `webhook`\n## How run states show\n```sh\n# not a heading\n```\n## On Lambda\n## On Lambda\n## HTTP API: the contract\n";
    assert_eq!(
        heading_anchors(text),
        [
            "webhook",
            "how-run-states-show",
            "on-lambda",
            "on-lambda-1",
            "http-api-the-contract"
        ]
    );
}
