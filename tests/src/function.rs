//! What the provider functions' integration tests share: secret files in a
//! temporary folder, the config documents (a RelayConfig with a file dead
//! letter and fast retries, one Provider, its Notifications), a started
//! function binary with its answers, dead letters and log, and a binary run
//! on a config it must refuse.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use relay_core::config::RelayConfig;
use relay_core::engine::Plan;
use relay_core::provider::Registry;
use serde_json::Value;

use crate::expect::{Outgoing, outgoing};
use crate::fixtures::{RequestFile, Scenario};
use crate::process::{Binary, FunctionProcess, free_port, send};

/// The dead-letter file's name in the function's own folder.
pub const DEAD_LETTERS: &str = "dl.jsonl";

/// How long a binary may take to refuse a config before it counts as serving.
const REFUSE_WITHIN: Duration = Duration::from_secs(30);

/// A request file of the fixtures, by its path below the fixtures folder.
pub fn fixture(path: &str) -> RequestFile {
    RequestFile::load(&crate::fixtures::dir().join(path))
}

/// The example config `examples/<name>.yaml` of the repository.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/{name}.yaml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What `relay validate` says of a config with `registry`'s providers.
pub fn validate(text: &str, registry: &Registry) -> Result<(), String> {
    RelayConfig::parse(text)
        .and_then(|cfg| Plan::compile(&cfg, registry).map(|_| ()))
        .map_err(|e| e.to_string())
}

/// Secret files in a temporary folder, kept as long as the function runs.
pub struct Secrets {
    dir: tempfile::TempDir,
}

impl Default for Secrets {
    fn default() -> Secrets {
        Secrets::new()
    }
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes `content` to the file `name`; its path, as a config names it.
    pub fn file(&self, name: &str, content: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    /// Writes `secret` and a trailing newline (as `kubectl create secret
    /// --from-file` leaves it) to the file `name`; its path.
    pub fn line(&self, name: &str, secret: &str) -> String {
        self.file(name, &format!("{secret}\n"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A YAML document: `kind` with `metadata: {name}` and `spec` (YAML lines
/// under `spec:`, already indented).
pub fn document(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n{spec}\n"
    )
}

/// A RelayConfig dead-lettering to [`DEAD_LETTERS`] in the function's folder
/// (`$DIR`), retrying quickly.
pub fn relay_config() -> String {
    relay_config_with("")
}

/// As [`relay_config`], with more lines of its spec (`  store: …`).
pub fn relay_config_with(more: &str) -> String {
    document(
        "RelayConfig",
        "relay",
        &format!(
            "  deadLetter: file://$DIR/{DEAD_LETTERS}\n  delivery: {{initialBackoffMs: 10, maxBackoffMs: 20}}\n{more}"
        ),
    )
}

/// A Provider `name` of type `kind` whose settings block (`spec.<kind>`) is
/// `settings`: a flow mapping (`{url: …}`) or block lines, as they stand
/// under `<kind>:` but not indented (this indents them).
pub fn provider(name: &str, kind: &str, settings: &str) -> String {
    let settings: String = settings
        .lines()
        .map(|l| match l.trim().is_empty() {
            true => "\n".to_string(),
            false => format!("\n    {l}"),
        })
        .collect();
    document(
        "Provider",
        name,
        &format!("  type: {kind}\n  {kind}:{settings}"),
    )
}

/// A Notification `name` of Provider `provider`; `spec`: more YAML lines
/// under `spec:`, indented by two as they stand there.
pub fn notification(name: &str, provider: &str, spec: &str) -> String {
    document(
        "Notification",
        name,
        &format!("  providerRef: {{name: {provider}}}\n{spec}"),
    )
}

/// The Provider `name` of type `kind` with `settings`, and `notifications`
/// (`name`, spec lines) of it.
pub fn served(name: &str, kind: &str, settings: &str, notifications: &[(&str, &str)]) -> String {
    let mut docs = provider(name, kind, settings);
    for (n, spec) in notifications {
        docs.push_str(&notification(n, name, spec));
    }
    docs
}

/// The whole config: [`relay_config`] and what [`served`] gives.
pub fn config(name: &str, kind: &str, settings: &str, notifications: &[(&str, &str)]) -> String {
    relay_config() + &served(name, kind, settings, notifications)
}

/// A function binary serving HTTP on a free port, its secrets kept beside it.
pub struct Function {
    pub f: FunctionProcess,
    pub base: String,
    pub client: reqwest::Client,
    /// The secret files it was started with (to rotate one, say).
    pub secrets: Secrets,
}

impl Function {
    /// Starts `bin` on `config` (`$DIR`: its own folder) and waits until it
    /// answers; `env`: more environment variables.
    pub async fn start(
        bin: Binary<'_>,
        config: &str,
        secrets: Secrets,
        env: &[(&str, &str)],
    ) -> Function {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (f, base) = FunctionProcess::start_http(bin, config, &env).await;
        Function {
            f,
            base,
            client: reqwest::Client::new(),
            secrets,
        }
    }

    /// The URL events are posted to.
    pub fn url(&self) -> String {
        format!("{}/", self.base)
    }

    /// Sends one request file: the function's status and answer.
    pub async fn send_raw(&self, f: &RequestFile) -> (u16, Value) {
        send(&self.client, &self.url(), f).await
    }

    /// Sends one request file, which must be answered 200: the answer.
    pub async fn send(&self, f: &RequestFile) -> Value {
        let (status, body) = self.send_raw(f).await;
        assert_eq!(status, 200, "{}: {body}", f.file_name);
        body
    }

    /// As [`Function::send`]: what became of the first (or only) Notification.
    pub async fn delivery(&self, f: &RequestFile) -> Value {
        self.send(f).await["deliveries"][0].clone()
    }

    /// Sends every request of the fixture scenario `name`, each answered 200.
    pub async fn scenario(&self, name: &str) {
        let sc = Scenario::load(&crate::fixtures::dir().join(name));
        self.send_all(&outgoing(&sc), 200).await;
    }

    /// Sends every request, each answered `want`: the answers.
    pub async fn send_all(&self, reqs: &[Outgoing], want: u16) -> Vec<Value> {
        let mut answers = Vec::new();
        for req in reqs {
            let (status, body) = req.send(&self.client, &self.url()).await;
            assert_eq!(status, want, "{}: {body}", req.file_name());
            answers.push(body);
        }
        answers
    }

    pub fn stderr(&self) -> String {
        self.f.stderr()
    }

    pub fn dead_letter_path(&self) -> PathBuf {
        self.f.dir.path().join(DEAD_LETTERS)
    }

    /// The dead-letter file, which must exist.
    pub fn dead_letter_text(&self) -> String {
        std::fs::read_to_string(self.dead_letter_path())
            .unwrap_or_else(|e| panic!("no dead letters ({e}); stderr:\n{}", self.stderr()))
    }

    /// Every dead letter, parsed.
    pub fn dead_letters(&self) -> Vec<Value> {
        self.dead_letter_text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The one dead letter there must be.
    pub fn only_dead_letter(&self) -> Value {
        let text = self.dead_letter_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        serde_json::from_str(lines[0]).unwrap()
    }

    /// The one dead letter there must be, of a permanent failure: by a
    /// provider of type `provider_type`, answered `status`.
    pub fn only_permanent_dead_letter(&self, provider_type: &str, status: u16) -> Value {
        let entry = self.only_dead_letter();
        assert_eq!(entry["provider_type"], provider_type, "{entry}");
        assert_eq!(entry["cause"]["kind"], "permanent", "{entry}");
        assert_eq!(entry["cause"]["status"], status, "{entry}");
        entry
    }

    /// None of `secrets` is in the dead letters (if any), the log or `answer`.
    pub fn assert_secrets_absent(&self, secrets: &[&str], answer: &Value) {
        let dead = std::fs::read_to_string(self.dead_letter_path()).unwrap_or_default();
        assert_absent(
            secrets,
            &[
                ("dead letter", &dead),
                ("log", &self.stderr()),
                ("answer", &answer.to_string()),
            ],
        );
    }
}

/// None of `secrets` is in any of `places` (`what`, text).
pub fn assert_absent(secrets: &[&str], places: &[(&str, &str)]) {
    for secret in secrets {
        for (what, text) in places {
            assert!(!text.contains(secret), "{secret} in the {what}: {text}");
        }
    }
}

/// Runs `bin` on `config`, which it must refuse: its stderr. A binary that
/// accepts the config and serves is killed after a while, failing the test.
pub fn refused(bin: Binary<'_>, config: &str) -> String {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("relay.yaml");
    std::fs::write(&cfg, config).unwrap();
    let port = free_port();
    let child = bin
        .command()
        .env("RELAY_CONFIG", &cfg)
        .env("PORT", port.to_string())
        // Loopback: refused for what the config says, not for a listener
        // beyond loopback without inbound auth.
        .env("RELAY_LISTEN", format!("127.0.0.1:{port}"))
        .current_dir(d.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("function binary starts");
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(REFUSE_WITHIN) {
        Ok(out) => {
            let out = out.unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!out.status.success(), "the config was accepted: {stderr}");
            stderr
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("the function accepted the config and is serving");
        }
    }
}
