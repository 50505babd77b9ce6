//! The request files and ground truth of `../shared/fixtures/` (see its README).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// The fixtures folder: `$RELAY_FIXTURES`, else `../shared/fixtures` beside the checkout.
pub fn dir() -> PathBuf {
    let dir = std::env::var_os("RELAY_FIXTURES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
        PathBuf::from,
    );
    assert!(
        dir.join("README.md").exists(),
        "fixtures not found at {} (set RELAY_FIXTURES)",
        dir.display()
    );
    dir
}

/// The successful PipelineRun of the fixtures, the event most tests send.
pub const PIPELINERUN_SUCCEEDED: &str =
    "tekton-pipelinerun-success/017-pipelinerun-successful.json";

/// [`PIPELINERUN_SUCCEEDED`] as a new event: CloudEvent id `id`, run uid
/// `uid-{id}`, so no two ids are duplicates of each other.
pub fn fresh_pipelinerun(id: &str) -> RequestFile {
    let mut f = RequestFile::load(&dir().join(PIPELINERUN_SUCCEEDED));
    f.headers.insert("Ce-Id".into(), id.to_string());
    f.body["pipelineRun"]["metadata"]["uid"] = Value::String(format!("uid-{id}"));
    f
}

/// The Knative Broker's dead-letter delivery of the fixtures (a TaskRun
/// event with its `knativeerror*` attributes), naming `dest` as the
/// subscriber that failed and carrying the Broker's `bearer` token.
pub fn knative_dead_letter(dest: &str, bearer: &str) -> RequestFile {
    let mut f = RequestFile::load(&dir().join("wrappers/knative-dead-lettered.json"));
    f.headers
        .insert("ce-knativeerrordest".into(), dest.to_string());
    f.headers
        .insert("authorization".into(), format!("Bearer {bearer}"));
    f
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequestFile {
    #[serde(skip)]
    pub file_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "post")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    #[serde(default)]
    pub transport: Option<String>,
    #[serde(default)]
    pub expect_status: Option<u16>,
    #[serde(default)]
    pub expect_outcome: Option<String>,
}

fn post() -> String {
    "POST".into()
}

impl RequestFile {
    pub fn load(path: &Path) -> RequestFile {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut f: RequestFile =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        f.file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        f
    }

    /// The body bytes as a sender puts them on the wire.
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            Value::String(s) => s.clone().into_bytes(),
            v => serde_json::to_vec(v).unwrap(),
        }
    }

    pub fn is_http(&self) -> bool {
        self.transport.as_deref().is_none_or(|t| t == "http")
    }

    /// This request signed now for a relay with `inboundAuth.hmacSecretFile`
    /// (default header names), sent to `path_and_query` (`/` for events):
    /// `X-Relay-Timestamp` and `X-Relay-Signature-256` added by
    /// `relay_core::auth::sign_hmac`, the one implementation of the canonical
    /// request. Each signed copy is accepted once.
    pub fn hmac_signed(&self, secret: &[u8], path_and_query: &str) -> RequestFile {
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in self.send_headers() {
            headers.append(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                reqwest::header::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        relay_core::auth::sign_hmac(
            secret,
            now,
            &self.method,
            path_and_query,
            &mut headers,
            &self.body_bytes(),
        );
        let mut signed = self.clone();
        for name in ["X-Relay-Timestamp", "X-Relay-Signature-256"] {
            let v = headers[name].to_str().unwrap().to_string();
            signed.headers.insert(name.to_string(), v);
        }
        signed
    }

    /// The headers with the ones a sender computes itself left out.
    pub fn send_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .filter(|(k, _)| !matches!(k.to_ascii_lowercase().as_str(), "content-length" | "host"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

pub struct Scenario {
    pub name: String,
    pub dir: PathBuf,
    pub files: Vec<RequestFile>,
    pub expect: Value,
}

impl Scenario {
    pub fn load(dir: &Path) -> Scenario {
        let truth: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("scenario.json")).unwrap())
                .unwrap();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json") && !p.ends_with("scenario.json"))
            .collect();
        paths.sort();
        Scenario {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            dir: dir.to_path_buf(),
            files: paths.iter().map(|p| RequestFile::load(p)).collect(),
            expect: truth["expect"].clone(),
        }
    }

    pub fn all() -> Vec<Scenario> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("scenario.json").exists())
            .collect();
        dirs.sort();
        dirs.iter().map(|d| Scenario::load(d)).collect()
    }

    /// `notifications`: per `Kind/name`, state label -> count.
    pub fn notifications(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        serde_json::from_value(self.expect["notifications"].clone()).unwrap_or_default()
    }
}

/// The fixtures' state label for an event: `started`, `unknown`, `running`,
/// `success`, `failure`, `cancelled`, `timeout`.
pub fn state_label(phase: &str, state: &str) -> String {
    match (phase, state) {
        ("unknown", _) => "unknown",
        (_, "succeeded") => "success",
        (_, "failed") => "failure",
        (_, "timed_out") => "timeout",
        (_, other) => return other.to_string(),
    }
    .to_string()
}
