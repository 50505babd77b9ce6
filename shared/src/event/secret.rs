//! Credentials are file references, read when used (so a rotated Kubernetes
//! Secret applies on the next request) and never printed.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A path to a file holding a secret.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretFile(pub PathBuf);

impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretFile({})", self.0.display())
    }
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

#[derive(Debug, thiserror::Error)]
#[error("cannot read secret file {path}: {reason}")]
pub struct SecretError {
    pub path: String,
    pub reason: String,
}

impl SecretFile {
    /// Reads the file now; a trailing newline (as `kubectl create secret
    /// --from-file` often leaves) is dropped.
    pub async fn read(&self) -> Result<Secret, SecretError> {
        let text = tokio::fs::read_to_string(&self.0)
            .await
            .map_err(|e| SecretError {
                path: self.0.display().to_string(),
                reason: e.kind().to_string(),
            })?;
        let value = text.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(SecretError {
                path: self.0.display().to_string(),
                reason: "file is empty".into(),
            });
        }
        Ok(Secret(value))
    }
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
        assert!(err.contains("token") && !err.contains("s3cr3t"), "{err}");
    }
}
