//! Jira credentials: an Atlassian account's email with an API token (Jira
//! Cloud, HTTP Basic), a bearer token (a Data Center personal access
//! token), or OAuth2 client credentials (an Atlassian service account,
//! through `https://api.atlassian.com/ex/jira/<cloudId>`). Exactly one.

use relay_core::field::FieldErrors;
use relay_core::oauth2::{ClientCredentials, basic};
use relay_core::provider::Verdict;
use relay_core::secret::{Secret, SecretFile};
use relay_core::transport::Http;

use crate::jira::JiraSettings;

pub enum Credential {
    ApiToken { email: String, token: SecretFile },
    Bearer(SecretFile),
    OAuth2(Box<ClientCredentials>),
}

impl Credential {
    /// The one credential the settings give; errors are `(path, message)`.
    pub fn from_settings(s: &JiraSettings) -> Result<Credential, FieldErrors> {
        let err = |path: &str, msg: &str| Err(FieldErrors::one(path.to_string(), msg.to_string()));
        let given = [
            s.email.is_some() || s.api_token_file.is_some(),
            s.token_file.is_some(),
            s.oauth2.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            let path = if s.oauth2.is_some() {
                "oauth2"
            } else {
                "tokenFile"
            };
            return err(
                path,
                "give one of email with apiTokenFile, tokenFile, or oauth2",
            );
        }
        if let Some(o) = &s.oauth2 {
            return Ok(Credential::OAuth2(Box::new(ClientCredentials::new(
                o.clone(),
            ))));
        }
        match (&s.email, &s.api_token_file, &s.token_file) {
            (_, _, Some(t)) => Ok(Credential::Bearer(t.clone())),
            (Some(e), Some(t), None) => {
                if e.trim().is_empty() || e.contains(':') {
                    return err("email", "must be an email address (no `:`)");
                }
                Ok(Credential::ApiToken {
                    email: e.trim().to_string(),
                    token: t.clone(),
                })
            }
            (Some(_), None, None) => err("apiTokenFile", "required with email"),
            (None, Some(_), None) => err("email", "required with apiTokenFile"),
            (None, None, None) => err(
                "",
                "no credentials: give email and apiTokenFile (Jira Cloud), \
                 tokenFile (a Data Center personal access token), or oauth2",
            ),
        }
    }

    /// The `Authorization` value, secrets read now (a rotated Secret
    /// applies at once).
    pub async fn authorization(&self, http: &Http<'_>) -> Result<String, Verdict> {
        match self {
            Credential::ApiToken { email, token } => Ok(basic(email, read(token).await?.expose())),
            Credential::Bearer(token) => Ok(format!("Bearer {}", read(token).await?.expose())),
            Credential::OAuth2(client) => Ok(format!(
                "Bearer {}",
                client.access_token(http).await?.expose()
            )),
        }
    }

    /// Forgets a fetched token Jira refused, so the next delivery fetches anew.
    pub async fn refused(&self) {
        if let Credential::OAuth2(client) = self {
            client.invalidate().await;
        }
    }
}

async fn read(f: &SecretFile) -> Result<Secret, Verdict> {
    f.read()
        .await
        .map_err(Verdict::from)
}
