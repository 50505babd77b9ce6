//! `relay send`: posts request files in the fixture format
//! (`{"description", "method", "headers", "body"}`) in name order.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct RequestFile {
    #[serde(default = "post")]
    method: String,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    body: Value,
    #[serde(default)]
    transport: Option<String>,
}

fn post() -> String {
    "POST".into()
}

/// Files named on the command line, with directories expanded to their
/// `*.json` files (but not `scenario.json`), each sorted by name.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension().is_some_and(|x| x == "json")
                        && f.file_name().is_some_and(|n| n != "scenario.json")
                })
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub async fn send(paths: &[PathBuf], to: &str) -> Result<ExitCode, String> {
    // No redirects: an answer cannot send the credentials elsewhere.
    let client = relay_core::transport::client_builder()
        .build()
        .map_err(|e| e.to_string())?;
    let mut failed = false;
    for file in expand(paths)? {
        match send_one(&client, &file, to).await {
            Ok(line) => println!("{}: {line}", file.display()),
            Err(e) => {
                failed = true;
                println!("{}: error: {e}", file.display());
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn send_one(client: &reqwest::Client, file: &Path, to: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let req: RequestFile =
        serde_json::from_str(&text).map_err(|e| format!("not a request file: {e}"))?;
    if let Some(t) = req.transport.as_deref().filter(|t| *t != "http") {
        return Ok(format!(
            "skipped: transport {t} is a Lambda payload, not an HTTP request"
        ));
    }
    let body = match req.body {
        Value::String(s) => s.into_bytes(),
        other => serde_json::to_vec(&other).map_err(|e| e.to_string())?,
    };
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut builder = client.request(method, to).body(body);
    for (k, v) in &req.headers {
        let lower = k.to_ascii_lowercase();
        if lower == "content-length" || lower == "host" {
            continue;
        }
        if let Some(v) = v.as_str() {
            builder = builder.header(k.as_str(), v);
        }
    }
    let resp = builder.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let answer = resp.text().await.unwrap_or_default();
    Ok(format!("{} {answer}", status.as_u16()))
}
