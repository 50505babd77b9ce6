//! Bitbucket Cloud credentials: an app password (HTTP Basic with the
//! account's username), an access token (Bearer), or an OAuth consumer's
//! client credentials (a fetched, cached Bearer token). Exactly one is given.

use base64::Engine;
use relay_core::field::FieldErrors;
use relay_core::oauth2::ClientCredentials;
use relay_core::provider::Verdict;
use relay_core::secret::{Secret, SecretFile};
use relay_core::transport::Http;

use crate::bitbucket::BitbucketSettings;

/// How requests authenticate. A new kind (OAuth2 client credentials, say)
/// is one more variant here and one more arm in [`Credential::authorization`].
pub enum Credential {
    AppPassword {
        username: String,
        password: SecretFile,
    },
    Token(SecretFile),
    OAuth2(Box<ClientCredentials>),
}

impl Credential {
    /// The one credential the settings give; errors are `(path, message)`.
    pub fn from_settings(s: &BitbucketSettings) -> Result<Credential, FieldErrors> {
        let err = |path: &str, msg: &str| Err(FieldErrors::one(path.to_string(), msg.to_string()));
        if let Some(o) = &s.oauth2 {
            if s.username.is_some() || s.app_password_file.is_some() || s.token_file.is_some() {
                return err(
                    "oauth2",
                    "give one of oauth2, tokenFile, or username with appPasswordFile",
                );
            }
            return Ok(Credential::OAuth2(Box::new(ClientCredentials::new(
                o.clone(),
            ))));
        }
        match (&s.username, &s.app_password_file, &s.token_file) {
            (_, Some(_), Some(_)) => err(
                "tokenFile",
                "give either tokenFile or username with appPasswordFile, not both",
            ),
            (Some(_), None, Some(_)) => err(
                "username",
                "username goes with appPasswordFile; a tokenFile needs no username",
            ),
            (None, None, Some(t)) => Ok(Credential::Token(t.clone())),
            (Some(u), Some(p), None) => {
                if u.is_empty() || u.contains(':') {
                    return err("username", "must be a non-empty username without `:`");
                }
                Ok(Credential::AppPassword {
                    username: u.clone(),
                    password: p.clone(),
                })
            }
            (Some(_), None, None) => err("appPasswordFile", "required with username"),
            (None, Some(_), None) => err("username", "required with appPasswordFile"),
            (None, None, None) => err(
                "",
                "no credentials: give tokenFile (an access token), username and appPasswordFile, or oauth2",
            ),
        }
    }

    /// The `Authorization` header value, secrets read now (so a rotated
    /// Secret applies at once). `http` is for credentials that fetch a
    /// token first (OAuth2).
    pub async fn authorization(&self, http: &Http<'_>) -> Result<String, Verdict> {
        match self {
            Credential::AppPassword { username, password } => {
                let password = read(password).await?;
                let pair = format!("{username}:{}", password.expose());
                Ok(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            Credential::Token(token) => Ok(format!("Bearer {}", read(token).await?.expose())),
            Credential::OAuth2(client) => Ok(format!(
                "Bearer {}",
                client.access_token(http).await?.expose()
            )),
        }
    }
}

async fn read(f: &SecretFile) -> Result<Secret, Verdict> {
    f.read()
        .await
        .map_err(Verdict::from)
}
