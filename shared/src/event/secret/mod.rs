//! Credentials are references, read when used (so a rotated secret applies
//! without a restart) and never printed. Every `…File` setting takes one:
//!
//! - a file path, read on every use (a rotated Kubernetes Secret applies on
//!   the next request);
//! - `ssm://<name>`: an AWS SSM Parameter Store parameter, decrypted (a
//!   `SecureString`). A name with a `/` is hierarchical, and SSM wants
//!   those fully qualified: the leading `/` may be left out,
//!   `ssm://tekton-relay/github/token` and `ssm:///tekton-relay/github/token`
//!   both read `/tekton-relay/github/token`. A name without `/` is read as
//!   written, and so is an ARN (`ssm://arn:aws:ssm:…:parameter/…`);
//! - `secretsmanager://<secret id or ARN>`: an AWS Secrets Manager secret's
//!   `SecretString`, or with `#<key>` the string at that key of a secret
//!   holding a JSON object.
//!
//! AWS values are fetched with the SDK ([`aws`]) and cached for a short
//! TTL, so a rotation applies within it.

mod aws;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use aws::{AwsSecrets, DEFAULT_TTL, FAILURE_HOLD, FetchError, STALE_FACTOR, TTL_ENV};

/// The scheme of an SSM Parameter Store reference.
pub const SSM_SCHEME: &str = "ssm://";
/// The scheme of a Secrets Manager reference.
pub const SECRETS_MANAGER_SCHEME: &str = "secretsmanager://";

/// A reference to a secret: a file path, `ssm://<name>` or
/// `secretsmanager://<id>[#<key>]` (see the module). Deserializing checks
/// the form, so `relay validate` refuses a malformed reference.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct SecretFile(pub PathBuf);

impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretFile({})", self.0.display())
    }
}

impl TryFrom<String> for SecretFile {
    type Error = String;

    fn try_from(reference: String) -> Result<SecretFile, String> {
        SecretFile::parse(&reference)
    }
}

/// Where a [`SecretFile`] points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretSource {
    File(PathBuf),
    /// The parameter's name as `GetParameter` takes it (a hierarchical
    /// name with its leading `/`), or its ARN.
    Ssm {
        name: String,
    },
    /// The secret's name or ARN, and the key of its JSON object to take.
    SecretsManager {
        id: String,
        key: Option<String>,
    },
}

impl SecretSource {
    /// The reference `text` names: an AWS form when it starts with one of
    /// their schemes, else a file path. Refuses a malformed AWS reference.
    pub fn parse(text: &str) -> Result<SecretSource, String> {
        if let Some(name) = text.strip_prefix(SSM_SCHEME) {
            return ssm_name(name).map(|name| SecretSource::Ssm { name });
        }
        if let Some(rest) = text.strip_prefix(SECRETS_MANAGER_SCHEME) {
            let (id, key) = match rest.split_once('#') {
                Some((id, key)) => (id, Some(key)),
                None => (rest, None),
            };
            aws_name(SECRETS_MANAGER_SCHEME, "a secret name or ARN", id)?;
            if let Some(key) = key {
                if key.is_empty() || key.contains('#') {
                    return Err(format!(
                        "{SECRETS_MANAGER_SCHEME}{id}#…: after `#` give one key of the \
                         secret's JSON object (`{SECRETS_MANAGER_SCHEME}<id>#<key>`)"
                    ));
                }
                if key.chars().any(char::is_control) {
                    return Err(format!(
                        "{SECRETS_MANAGER_SCHEME}{id}#…: the key has a control character"
                    ));
                }
            }
            return Ok(SecretSource::SecretsManager {
                id: id.to_string(),
                key: key.map(str::to_string),
            });
        }
        if text.is_empty() {
            return Err("the secret file path is empty".into());
        }
        Ok(SecretSource::File(PathBuf::from(text)))
    }

    /// What the error of a failed read calls it.
    fn kind(&self) -> &'static str {
        match self {
            SecretSource::File(_) => "secret file",
            SecretSource::Ssm { .. } => "SSM parameter",
            SecretSource::SecretsManager { .. } => "Secrets Manager secret",
        }
    }
}

/// The `GetParameter` name of `ssm://<name>`.
fn ssm_name(name: &str) -> Result<String, String> {
    aws_name(SSM_SCHEME, "a parameter name or ARN", name)?;
    if name.contains('#') {
        return Err(format!(
            "{SSM_SCHEME}{name}: a parameter is read whole (`#<key>` is for {SECRETS_MANAGER_SCHEME})"
        ));
    }
    if name.starts_with("arn:") || !name.contains('/') {
        return Ok(name.to_string());
    }
    let full = format!("/{}", name.trim_start_matches('/'));
    if full[1..].split('/').any(str::is_empty) {
        return Err(format!(
            "{SSM_SCHEME}{name}: a hierarchical parameter name has no empty part \
             (`ssm://tekton-relay/github/token` reads /tekton-relay/github/token)"
        ));
    }
    Ok(full)
}

/// The checks both AWS forms share: something named, no blanks.
fn aws_name(scheme: &str, what: &str, name: &str) -> Result<(), String> {
    if name.trim_start_matches('/').is_empty() {
        return Err(format!("{scheme} needs {what} after it"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{scheme}{name}: {what} has no blanks"));
    }
    Ok(())
}

/// A secret's value. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for building the one request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret that could not be read: what it is (`secret file`, `SSM
/// parameter`, `Secrets Manager secret`), its reference and why, never any
/// of its content.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {kind} {path}: {reason}")]
pub struct SecretError {
    pub kind: &'static str,
    pub path: String,
    pub reason: String,
    /// AWS could not be reached, or was busy: a later try may succeed (a
    /// delivery is retried, not dead-lettered at once).
    pub transient: bool,
}

impl SecretFile {
    /// The reference `text`, checked as [`SecretSource::parse`] checks it.
    pub fn parse(text: &str) -> Result<SecretFile, String> {
        SecretSource::parse(text)?;
        Ok(SecretFile(PathBuf::from(text)))
    }

    /// Where it points.
    pub fn source(&self) -> Result<SecretSource, String> {
        match self.0.to_str() {
            Some(text) => SecretSource::parse(text),
            // Not UTF-8, so none of the AWS forms: a path.
            None => Ok(SecretSource::File(self.0.clone())),
        }
    }

    /// Reads the secret now (a file) or from the cache of AWS values (see
    /// [`AwsSecrets`]). A trailing newline (as `kubectl create secret
    /// --from-file` often leaves) is dropped; an empty value is an error.
    pub async fn read(&self) -> Result<Secret, SecretError> {
        let error = |kind: &'static str, reason: String, transient: bool| SecretError {
            kind,
            path: self.0.display().to_string(),
            reason,
            transient,
        };
        let source = self.source().map_err(|r| error("secret", r, false))?;
        let value = match &source {
            SecretSource::File(path) => read_file(path)
                .await
                .map_err(|r| error(source.kind(), r, false))?,
            aws => match AwsSecrets::global() {
                Ok(sources) => sources
                    .read(aws)
                    .await
                    .map_err(|e| error(source.kind(), e.reason, e.transient))?,
                Err(e) => return Err(error(source.kind(), e.clone(), false)),
            },
        };
        Ok(Secret(value))
    }
}

async fn read_file(path: &Path) -> Result<String, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| e.kind().to_string())?;
    non_empty(&text, "file is empty")
}

/// `text` without its trailing newline, if anything is left.
fn non_empty(text: &str, empty: &str) -> Result<String, String> {
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(empty.into());
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_fresh_value_each_time_and_never_prints_it() {
        let dir = std::env::temp_dir().join(format!("relay-secret-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "s3cr3t-one\n").unwrap();
        let file = SecretFile(path.clone());
        let s = file.read().await.unwrap();
        assert_eq!(s.expose(), "s3cr3t-one");
        assert!(!format!("{s:?} {s}").contains("s3cr3t"));
        std::fs::write(&path, "s3cr3t-two").unwrap();
        assert_eq!(file.read().await.unwrap().expose(), "s3cr3t-two");
        std::fs::remove_file(&path).unwrap();
        let err = file.read().await.unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read secret file ") && err.contains("token"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    fn ssm(name: &str) -> SecretSource {
        SecretSource::Ssm { name: name.into() }
    }

    fn sm(id: &str, key: Option<&str>) -> SecretSource {
        SecretSource::SecretsManager {
            id: id.into(),
            key: key.map(Into::into),
        }
    }

    #[test]
    fn parses_files_ssm_parameters_and_secrets_manager_secrets() {
        let p = |s: &str| SecretSource::parse(s).unwrap();
        assert_eq!(
            p("/var/run/secrets/relay/token"),
            SecretSource::File("/var/run/secrets/relay/token".into())
        );
        assert_eq!(p("token"), SecretSource::File("token".into()));
        // A hierarchical name, with or without its leading slash.
        assert_eq!(
            p("ssm://tekton-relay/github/token"),
            ssm("/tekton-relay/github/token")
        );
        assert_eq!(
            p("ssm:///tekton-relay/github/token"),
            ssm("/tekton-relay/github/token")
        );
        // A flat name and an ARN as written (with a version selector too).
        assert_eq!(p("ssm://relay-token"), ssm("relay-token"));
        assert_eq!(p("ssm://relay-token:3"), ssm("relay-token:3"));
        let arn = "arn:aws:ssm:eu-west-1:123456789012:parameter/tekton-relay/github/token";
        assert_eq!(p(&format!("ssm://{arn}")), ssm(arn));
        assert_eq!(
            p("secretsmanager://tekton-relay/slack"),
            sm("tekton-relay/slack", None)
        );
        assert_eq!(
            p("secretsmanager://tekton-relay/slack#botToken"),
            sm("tekton-relay/slack", Some("botToken"))
        );
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:relay-AbCdEf";
        assert_eq!(
            p(&format!("secretsmanager://{arn}#hmac")),
            sm(arn, Some("hmac"))
        );
        // Another scheme is no reference of ours: a (relative) path.
        assert_eq!(p("vault://x/y"), SecretSource::File("vault://x/y".into()));
    }

    #[test]
    fn refuses_malformed_references_naming_the_form() {
        for (text, want) in [
            ("ssm://", "ssm:// needs a parameter name"),
            ("ssm:///", "ssm:// needs a parameter name"),
            ("ssm://a//b", "no empty part"),
            ("ssm://a/b/", "no empty part"),
            ("ssm://a b", "has no blanks"),
            ("ssm://a/b#k", "`#<key>` is for secretsmanager://"),
            ("secretsmanager://", "secretsmanager:// needs a secret name"),
            (
                "secretsmanager://#k",
                "secretsmanager:// needs a secret name",
            ),
            ("secretsmanager://s#", "after `#` give one key"),
            ("secretsmanager://s#a#b", "after `#` give one key"),
            ("secretsmanager://s\n", "has no blanks"),
            ("", "the secret file path is empty"),
        ] {
            let err = SecretSource::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    /// A setting refuses a malformed reference when it is loaded, with the
    /// reason, so `relay validate` reports it at the setting's path.
    #[test]
    fn a_setting_checks_its_reference_when_deserialized() {
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Settings {
            #[allow(dead_code)]
            token_file: SecretFile,
        }
        let ok: Settings = serde_json::from_str(r#"{"tokenFile": "ssm://relay/token"}"#).unwrap();
        assert_eq!(ok.token_file.0, PathBuf::from("ssm://relay/token"));
        assert_eq!(ok.token_file.source().unwrap(), ssm("/relay/token"));
        let err = serde_json::from_str::<Settings>(r#"{"tokenFile": "secretsmanager://s#"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("after `#` give one key"), "{err}");
    }

    /// A malformed reference built past the checks (the CLI's paths) fails
    /// its read with the reason, touching no file and no AWS.
    #[tokio::test]
    async fn reading_a_malformed_reference_fails_with_the_reason() {
        let err = SecretFile("ssm://".into()).read().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read secret ssm://: ssm:// needs a parameter name or ARN after it"
        );
    }
}
