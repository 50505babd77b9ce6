//! GitHub credentials: a token file, or a GitHub App. An App's installation
//! token (valid an hour) is minted from a short JWT signed with the App's
//! private key, cached per installation and refreshed before it expires;
//! the key file is read at each refresh, so a rotated key applies then.

use std::collections::HashMap;
use std::time::Duration;

use http::Method;
use relay_core::githost::RepoPath;
use relay_core::oauth2::TokenCache;
use relay_core::provider::Verdict;
use relay_core::secret::{Secret, SecretFile};
use relay_core::transport::Http;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `github.app`: act as a GitHub App installation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AppSettings {
    /// The App's id, or its client id (`Iv1.…`): the JWT's issuer.
    pub app_id: AppId,
    /// The installation to act as. Without it, the installation on each
    /// event's repository is looked up (and remembered).
    #[serde(default)]
    pub installation_id: Option<u64>,
    /// The App's private key (PEM, as GitHub generates it).
    pub private_key_file: SecretFile,
}

/// A number or a client id string, both written as YAML scalars.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum AppId {
    Number(u64),
    ClientId(String),
}

impl std::fmt::Display for AppId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppId::Number(n) => write!(f, "{n}"),
            AppId::ClientId(s) => f.write_str(s),
        }
    }
}

pub enum Credentials {
    Token(SecretFile),
    App(Box<App>),
}

pub struct App {
    settings: AppSettings,
    tokens: TokenCache,
    /// Installation ids by `owner/repo`, when not configured.
    installations: tokio::sync::Mutex<HashMap<String, u64>>,
}

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

impl App {
    pub fn new(settings: AppSettings) -> App {
        App {
            settings,
            tokens: TokenCache::new(),
            installations: Default::default(),
        }
    }

    /// A JWT for the App itself: issued a minute in the past (clock
    /// drift), valid nine minutes (GitHub allows ten).
    pub async fn jwt(&self) -> Result<Secret, Verdict> {
        let pem = self
            .settings
            .private_key_file
            .read()
            .await
            .map_err(Verdict::from)?;
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose().as_bytes()).map_err(|e| {
                Verdict::permanent(format!(
                    "GitHub App private key in {:?} is not an RSA PEM key: {e}",
                    self.settings.private_key_file
                ))
            })?;
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iat: now - 60,
            exp: now + 540,
            iss: self.settings.app_id.to_string(),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .map(Secret::new)
        .map_err(|e| Verdict::permanent(format!("cannot sign the GitHub App JWT: {e}")))
    }
}

impl Credentials {
    /// The bearer token for a request on `owner/repo`.
    pub async fn token(
        &self,
        api: &super::Api,
        repo: &RepoPath,
        http: &Http<'_>,
    ) -> Result<Secret, Verdict> {
        let app = match self {
            Credentials::Token(file) => {
                return file
                    .read()
                    .await
                    .map_err(Verdict::from);
            }
            Credentials::App(app) => app,
        };
        let installation = match app.settings.installation_id {
            Some(id) => id,
            None => installation_of(app, api, repo, http).await?,
        };
        app.tokens
            .get(&installation.to_string(), || async {
                let jwt = app.jwt().await?;
                let id = installation.to_string();
                let url = api.url(&["app", "installations", &id, "access_tokens"], None)?;
                let answer: Value = http
                    .send(&api.request(Method::POST, url, None, &jwt)?)
                    .await?
                    .json()?;
                let token = answer["token"]
                    .as_str()
                    .ok_or_else(|| Verdict::permanent("GitHub answered no installation token"))?;
                let lifetime = answer["expires_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    // Already past: refreshed at the next use, not trusted for an hour.
                    .map(|t| {
                        (t.to_utc() - chrono::Utc::now())
                            .to_std()
                            .unwrap_or(Duration::ZERO)
                    })
                    .unwrap_or(Duration::from_secs(3600));
                Ok((Secret::new(token), lifetime))
            })
            .await
    }
}

/// The App's installation on `owner/repo`, looked up once.
async fn installation_of(
    app: &App,
    api: &super::Api,
    repo: &RepoPath,
    http: &Http<'_>,
) -> Result<u64, Verdict> {
    let key = repo.to_string();
    let mut known = app.installations.lock().await;
    if let Some(id) = known.get(&key) {
        return Ok(*id);
    }
    let jwt = app.jwt().await?;
    let url = api.url(&["repos", repo.owner(), repo.name(), "installation"], None)?;
    let answer: Value = http
        .send(&api.request(Method::GET, url, None, &jwt)?)
        .await?
        .json()?;
    let id = answer["id"]
        .as_u64()
        .ok_or_else(|| Verdict::permanent(format!("the GitHub App is not installed on {key}")))?;
    known.insert(key, id);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_are_numbers_or_client_ids() {
        let n: AppSettings =
            serde_json::from_value(serde_json::json!({"appId": 123, "privateKeyFile": "/k"}))
                .unwrap();
        assert_eq!(n.app_id.to_string(), "123");
        let c: AppSettings = serde_json::from_value(
            serde_json::json!({"appId": "Iv1.abc", "installationId": 9, "privateKeyFile": "/k"}),
        )
        .unwrap();
        assert_eq!(
            (c.app_id.to_string(), c.installation_id),
            ("Iv1.abc".into(), Some(9))
        );
    }

    #[tokio::test]
    async fn an_unreadable_or_bad_key_is_a_permanent_error_naming_the_file() {
        let d = std::env::temp_dir().join(format!("relay-gh-app-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        let key = d.join("key.pem");
        std::fs::write(&key, "not a key").unwrap();
        let app = App::new(AppSettings {
            app_id: AppId::Number(1),
            installation_id: None,
            private_key_file: SecretFile(key),
        });
        match app.jwt().await {
            Err(Verdict::Permanent { message, .. }) => {
                assert!(
                    message.contains("key.pem") && message.contains("RSA PEM"),
                    "{message}"
                );
                assert!(!message.contains("not a key"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
