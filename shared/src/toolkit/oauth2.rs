//! Short-lived access tokens: fetched with the OAuth2 client-credentials or
//! refresh-token grant, or minted by a provider (a GitHub App installation
//! token), cached and refreshed before they expire. The long-lived secret
//! behind a token is a file read at each refresh, so a rotated client
//! secret, refresh token or private key applies at the next refresh without
//! a restart.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine;
use http::{HeaderValue, Method};
use serde::Deserialize;

use crate::delivery::outbound::{Outbound, OutboundRequest};
use crate::delivery::transport::Http;
use crate::delivery::verdict::Verdict;
use crate::event::secret::{Secret, SecretFile};

/// The longest a token is used before its expiry: five minutes, or a
/// quarter of a short lifetime.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Lifetime assumed when a token endpoint does not say (`expires_in`).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest a token is kept, whatever lifetime its issuer gives: a day.
/// The lifetime is remote input (`expires_in`, a GitHub App token's
/// `expires_at`): unbounded, it could overflow the clock.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

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
                refresh_at: crate::delivery::transport::instant_after(refresh_after(lifetime)),
            },
        );
        Ok(token)
    }

    /// Forgets a token the provider refused, so the next use fetches anew.
    pub async fn invalidate(&self, key: &str) {
        self.tokens.lock().await.remove(key);
    }
}

/// How long a token of `lifetime` (at most [`MAX_LIFETIME`]) is used before
/// it is refreshed.
pub fn refresh_after(lifetime: Duration) -> Duration {
    let lifetime = lifetime.min(MAX_LIFETIME);
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

/// `oauth2:` settings of a provider: the client-credentials grant
/// (`clientSecretFile`), or the refresh-token grant (`refreshTokenFile`,
/// with `clientSecretFile` for a confidential client).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawSettings")]
pub struct ClientCredentialsSettings {
    pub token_url: url::Url,
    pub client_id: String,
    pub client_secret_file: Option<SecretFile>,
    pub refresh_token_file: Option<SecretFile>,
    pub scopes: Vec<String>,
    pub client_auth: ClientAuth,
}

/// The settings as written, checked into [`ClientCredentialsSettings`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSettings {
    #[serde(rename = "tokenURL")]
    token_url: url::Url,
    #[serde(alias = "clientID")]
    client_id: String,
    #[serde(default)]
    client_secret_file: Option<SecretFile>,
    #[serde(default)]
    refresh_token_file: Option<SecretFile>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    client_auth: ClientAuth,
}

impl TryFrom<RawSettings> for ClientCredentialsSettings {
    type Error = String;

    fn try_from(r: RawSettings) -> Result<Self, String> {
        if r.client_secret_file.is_none() && r.refresh_token_file.is_none() {
            return Err(
                "give clientSecretFile (client-credentials grant) or refreshTokenFile \
                 (refresh-token grant)"
                    .into(),
            );
        }
        if r.client_id.is_empty() {
            return Err("clientId must not be empty".into());
        }
        Ok(ClientCredentialsSettings {
            token_url: r.token_url,
            client_id: r.client_id,
            client_secret_file: r.client_secret_file,
            refresh_token_file: r.refresh_token_file,
            scopes: r.scopes,
            client_auth: r.client_auth,
        })
    }
}

/// A refresh token the server issued in place of the one from the file
/// (rotating refresh tokens), kept in memory while the file still holds
/// `bootstrap`; a new file content starts over from the file.
struct Rotated {
    bootstrap: Secret,
    current: Secret,
}

/// An OAuth2 client (client-credentials or refresh-token grant) with its
/// cached access token.
pub struct ClientCredentials {
    settings: ClientCredentialsSettings,
    cache: TokenCache,
    rotated: std::sync::Mutex<Option<Rotated>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The refresh token to present: the one the server rotated to, unless the
/// file changed since (an operator's new token wins).
fn refresh_token_to_use(rotated: &Option<Rotated>, from_file: &Secret) -> Secret {
    match rotated {
        Some(r) if &r.bootstrap == from_file => r.current.clone(),
        _ => from_file.clone(),
    }
}

/// The token request's form body. `refresh_token`: the refresh-token grant,
/// else client credentials. A client without a secret (a public client)
/// names itself in the body.
fn grant_form(
    s: &ClientCredentialsSettings,
    secret: Option<&Secret>,
    refresh_token: Option<&Secret>,
) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    match refresh_token {
        Some(t) => {
            form.append_pair("grant_type", "refresh_token");
            form.append_pair("refresh_token", t.expose());
        }
        None => {
            form.append_pair("grant_type", "client_credentials");
        }
    }
    if !s.scopes.is_empty() {
        form.append_pair("scope", &s.scopes.join(" "));
    }
    match secret {
        Some(secret) if s.client_auth == ClientAuth::Body => {
            form.append_pair("client_id", &s.client_id);
            form.append_pair("client_secret", secret.expose());
        }
        None => {
            form.append_pair("client_id", &s.client_id);
        }
        Some(_) => {}
    }
    form.finish()
}

impl ClientCredentials {
    pub fn new(settings: ClientCredentialsSettings) -> ClientCredentials {
        ClientCredentials {
            settings,
            cache: TokenCache::new(),
            rotated: std::sync::Mutex::new(None),
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
        let read = |f: &SecretFile| {
            let f = f.clone();
            async move { f.read().await.map_err(Verdict::from) }
        };
        let secret = match &s.client_secret_file {
            Some(f) => Some(read(f).await?),
            None => None,
        };
        let from_file = match &s.refresh_token_file {
            Some(f) => Some(read(f).await?),
            None => None,
        };
        let refresh_token = from_file
            .as_ref()
            .map(|f| refresh_token_to_use(&self.rotated.lock().unwrap(), f));
        let body = grant_form(s, secret.as_ref(), refresh_token.as_ref());
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
        if let Some(secret) = &secret
            && s.client_auth == ClientAuth::Basic
        {
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
        if let (Some(bootstrap), Some(used), Some(new)) =
            (from_file, refresh_token, answer.refresh_token)
            && new != used.expose()
        {
            *self.rotated.lock().unwrap() = Some(Rotated {
                bootstrap,
                current: Secret::new(new),
            });
        }
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Ok((Secret::new(answer.access_token), lifetime))
    }
}

/// Says that it was the token endpoint that failed, keeping the verdict.
fn token_failure(v: Verdict, url: &url::Url) -> Verdict {
    let host = url.host_str().unwrap_or("?");
    v.map_message(|m| format!("OAuth2 token request to {host} failed: {m}"))
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
        // A lifetime from a hostile or broken issuer is held to a day.
        assert_eq!(
            refresh_after(Duration::from_secs(u64::MAX)),
            MAX_LIFETIME - REFRESH_MARGIN
        );
        assert_eq!(refresh_after(Duration::MAX), MAX_LIFETIME - REFRESH_MARGIN);
    }

    /// `expires_in: 18446744073709551615` (or a GitHub App token expiring in
    /// the year 9999) is cached, not a panic, and used for at most a day.
    #[tokio::test]
    async fn a_huge_token_lifetime_does_not_overflow_the_clock() {
        let cache = TokenCache::new();
        for (key, lifetime) in [
            ("u64", Duration::from_secs(u64::MAX)),
            ("max", Duration::MAX),
            ("i64", Duration::from_secs(1 << 63)),
        ] {
            let t = cache
                .get(key, || async { Ok((Secret::new("t"), lifetime)) })
                .await
                .unwrap();
            assert_eq!(t.expose(), "t");
            let refresh_at = cache.tokens.lock().await[key].refresh_at;
            assert!(refresh_at <= Instant::now() + MAX_LIFETIME, "{key}");
        }
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

    fn settings(extra: serde_json::Value) -> Result<ClientCredentialsSettings, String> {
        let mut v =
            serde_json::json!({"tokenURL": "https://auth.example/token", "clientId": "app"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn settings_take_one_grant_or_the_other() {
        let err = settings(serde_json::json!({})).unwrap_err();
        assert!(
            err.contains("clientSecretFile") && err.contains("refreshTokenFile"),
            "{err}"
        );
        let err = settings(serde_json::json!({"clientSecretFil": "/s"})).unwrap_err();
        assert!(err.contains("unknown field `clientSecretFil`"), "{err}");
        let s = settings(serde_json::json!({"refreshTokenFile": "/r"})).unwrap();
        assert!(s.client_secret_file.is_none());
        // `clientID` as the issue spells it is accepted too.
        let s: ClientCredentialsSettings = serde_json::from_value(serde_json::json!({
            "tokenURL": "https://auth.example/token", "clientID": "app2", "clientSecretFile": "/s"
        }))
        .unwrap();
        assert_eq!(s.client_id, "app2");
    }

    fn form(body: &str) -> HashMap<String, String> {
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn grant_forms() {
        let secret = Secret::new("sec");
        let rt = Secret::new("rt-1");
        let s =
            settings(serde_json::json!({"clientSecretFile": "/s", "scopes": ["a", "b"]})).unwrap();
        // Client credentials, secret in the Basic header (not the body).
        let f = form(&grant_form(&s, Some(&secret), None));
        assert_eq!(f["grant_type"], "client_credentials");
        assert_eq!(f["scope"], "a b");
        assert!(!f.contains_key("client_secret") && !f.contains_key("client_id"));
        // Refresh token, secret in the body.
        let s = settings(
            serde_json::json!({"refreshTokenFile": "/r", "clientSecretFile": "/s",
            "clientAuth": "body"}),
        )
        .unwrap();
        let f = form(&grant_form(&s, Some(&secret), Some(&rt)));
        assert_eq!(f["grant_type"], "refresh_token");
        assert_eq!(f["refresh_token"], "rt-1");
        assert_eq!(
            (f["client_id"].as_str(), f["client_secret"].as_str()),
            ("app", "sec")
        );
        // A public client names itself and sends no secret.
        let s = settings(serde_json::json!({"refreshTokenFile": "/r"})).unwrap();
        let f = form(&grant_form(&s, None, Some(&rt)));
        assert_eq!(f["client_id"], "app");
        assert!(!f.contains_key("client_secret"));
    }

    #[test]
    fn a_rotated_refresh_token_is_used_until_the_file_changes() {
        let file = Secret::new("from-file");
        assert_eq!(refresh_token_to_use(&None, &file).expose(), "from-file");
        let rotated = Some(Rotated {
            bootstrap: file.clone(),
            current: Secret::new("from-server"),
        });
        assert_eq!(
            refresh_token_to_use(&rotated, &file).expose(),
            "from-server"
        );
        // The operator wrote a new token to the file: it wins.
        let new_file = Secret::new("new-from-file");
        assert_eq!(
            refresh_token_to_use(&rotated, &new_file).expose(),
            "new-from-file"
        );
    }

    #[test]
    fn basic_auth() {
        assert_eq!(
            basic("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
