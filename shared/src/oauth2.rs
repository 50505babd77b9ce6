//! Short-lived access tokens: fetched with the OAuth2 client-credentials
//! grant, or minted by a provider (a GitHub App installation token), cached
//! and refreshed before they expire. The long-lived secret behind a token is
//! a file read at each refresh, so a rotated client secret or private key
//! applies at the next refresh without a restart.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine;
use http::{HeaderValue, Method};
use serde::Deserialize;

use crate::provider::{Outbound, OutboundRequest, Verdict};
use crate::secret::{Secret, SecretFile};
use crate::transport::Http;

/// The longest a token is used before its expiry: five minutes, or a
/// quarter of a short lifetime.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Lifetime assumed when a token endpoint does not say (`expires_in`).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// Tokens by key (an installation, a client), each refreshed when due.
#[derive(Default)]
pub struct TokenCache {
    tokens: tokio::sync::Mutex<HashMap<String, Cached>>,
}

impl TokenCache {
    pub fn new() -> TokenCache {
        TokenCache::default()
    }

    /// The token cached under `key`, or a new one from `fetch` (which returns
    /// the token and its lifetime) when none is cached or it is due for
    /// refresh. Concurrent callers wait for one fetch rather than each
    /// fetching.
    pub async fn get<F, Fut>(&self, key: &str, fetch: F) -> Result<Secret, Verdict>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Secret, Duration), Verdict>>,
    {
        let mut tokens = self.tokens.lock().await;
        if let Some(c) = tokens.get(key)
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = fetch().await?;
        tokens.insert(
            key.to_string(),
            Cached {
                token: token.clone(),
                refresh_at: Instant::now() + refresh_after(lifetime),
            },
        );
        Ok(token)
    }

    /// Forgets a token the provider refused, so the next use fetches anew.
    pub async fn invalidate(&self, key: &str) {
        self.tokens.lock().await.remove(key);
    }
}

/// How long a token of `lifetime` is used before it is refreshed.
pub fn refresh_after(lifetime: Duration) -> Duration {
    lifetime.saturating_sub((lifetime / 4).min(REFRESH_MARGIN))
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Body,
}

/// `oauth2:` settings of a provider: the client-credentials grant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientCredentialsSettings {
    #[serde(rename = "tokenURL")]
    pub token_url: url::Url,
    pub client_id: String,
    pub client_secret_file: SecretFile,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// A client-credentials client with its cached token.
pub struct ClientCredentials {
    settings: ClientCredentialsSettings,
    cache: TokenCache,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl ClientCredentials {
    pub fn new(settings: ClientCredentialsSettings) -> ClientCredentials {
        ClientCredentials {
            settings,
            cache: TokenCache::new(),
        }
    }

    /// A valid access token, fetched through `http` (the delivery's retry
    /// policy) when none is cached or the cached one is due for refresh.
    pub async fn access_token(&self, http: &Http<'_>) -> Result<Secret, Verdict> {
        self.cache.get("", || self.fetch(http)).await
    }

    /// Forgets the cached token (after the provider answered 401 with it).
    pub async fn invalidate(&self) {
        self.cache.invalidate("").await;
    }

    async fn fetch(&self, http: &Http<'_>) -> Result<(Secret, Duration), Verdict> {
        let s = &self.settings;
        let secret = s
            .client_secret_file
            .read()
            .await
            .map_err(|e| Verdict::permanent(e.to_string()))?;
        // The serializer is not Send: it must not live across an await.
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if !s.scopes.is_empty() {
                form.append_pair("scope", &s.scopes.join(" "));
            }
            if s.client_auth == ClientAuth::Body {
                form.append_pair("client_id", &s.client_id);
                form.append_pair("client_secret", secret.expose());
            }
            form.finish()
        };
        let mut req = OutboundRequest::post_json(s.token_url.clone(), body);
        req.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        req.headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        req.method = Method::POST;
        if s.client_auth == ClientAuth::Basic {
            req.sensitive_header(
                http::header::AUTHORIZATION,
                &basic(&s.client_id, secret.expose()),
            )
            .map_err(|e| Verdict::permanent(e.to_string()))?;
        }
        let answer: TokenAnswer = http
            .send(&Outbound::Http(req))
            .await
            .map_err(|v| token_failure(v, &s.token_url))?
            .json()?;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Ok((Secret::new(answer.access_token), lifetime))
    }
}

/// Says that it was the token endpoint that failed, keeping the verdict.
fn token_failure(v: Verdict, url: &url::Url) -> Verdict {
    let host = url.host_str().unwrap_or("?");
    match v {
        Verdict::Permanent { status, message } => Verdict::Permanent {
            status,
            message: format!("OAuth2 token request to {host} failed: {message}"),
        },
        Verdict::Retryable {
            status,
            retry_after,
            message,
        } => Verdict::Retryable {
            status,
            retry_after,
            message: format!("OAuth2 token request to {host} failed: {message}"),
        },
        Verdict::Success => Verdict::Success,
    }
}

/// An HTTP Basic `Authorization` value.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn tokens_are_refreshed_before_they_expire() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3300)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(60)),
            Duration::from_secs(45)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_cached_token_is_reused_until_due_and_refetched_after() {
        let cache = TokenCache::new();
        let fetches = AtomicU32::new(0);
        let fetch = |lifetime: u64| {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                Ok::<_, Verdict>((Secret::new(format!("t{n}")), Duration::from_secs(lifetime)))
            }
        };
        assert_eq!(cache.get("a", || fetch(3600)).await.unwrap().expose(), "t1");
        assert_eq!(cache.get("a", || fetch(3600)).await.unwrap().expose(), "t1");
        // Another key is another token.
        assert_eq!(cache.get("b", || fetch(3600)).await.unwrap().expose(), "t2");
        // A token with no lifetime left is refreshed at every use.
        assert_eq!(cache.get("c", || fetch(0)).await.unwrap().expose(), "t3");
        assert_eq!(cache.get("c", || fetch(0)).await.unwrap().expose(), "t4");
        cache.invalidate("a").await;
        assert_eq!(cache.get("a", || fetch(3600)).await.unwrap().expose(), "t5");
        // A failed fetch caches nothing.
        let failed = cache
            .get("d", || async { Err(Verdict::permanent("no")) })
            .await;
        assert!(failed.is_err());
        assert_eq!(cache.get("d", || fetch(3600)).await.unwrap().expose(), "t6");
    }

    #[test]
    fn basic_auth() {
        assert_eq!(
            basic("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
