//! Inbound authentication of requests from outside: a bearer token, an
//! HMAC-SHA256 signature over the body (optionally with a timestamp inside
//! a window, against replays), or a JWT (HS256 or RS256; audience, expiry
//! and optionally issuer checked); and for Flux notification-controller
//! payloads, Flux's `generic-hmac` signature (`X-Signature: sha256=<hex>`).
//! Secrets are files read per request; comparisons are constant-time.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::SecretFile;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InboundAuth {
    /// Requests carry `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token_file: Option<SecretFile>,
    /// Requests carry `<hmacHeader>: sha256=<hex of HMAC-SHA256 of the body>`.
    #[serde(default)]
    pub hmac_secret_file: Option<SecretFile>,
    #[serde(default = "default_header")]
    pub hmac_header: String,
    /// With it, the signature covers `<timestamp>.<body>`, the timestamp
    /// (Unix seconds) in this header, and one outside `hmacToleranceSeconds`
    /// of now is refused: a captured request cannot be replayed later.
    #[serde(default)]
    pub hmac_timestamp_header: Option<String>,
    #[serde(default = "default_tolerance")]
    pub hmac_tolerance_seconds: u64,
    /// Requests carry `Authorization: Bearer <JWT>`.
    #[serde(default)]
    pub jwt: Option<JwtAuth>,
    /// Flux payloads (requests that are not CloudEvents) must carry Flux's
    /// `generic-hmac` signature made with this secret (the `token` of the
    /// Flux Provider's Secret). Without it, they are checked like the rest.
    #[serde(default)]
    pub flux_hmac_secret_file: Option<SecretFile>,
}

/// A JWT checked with a shared secret (HS256) or a public key (RS256).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtAuth {
    #[serde(default)]
    pub hs256_secret_file: Option<SecretFile>,
    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`).
    #[serde(default)]
    pub rs256_public_key_file: Option<SecretFile>,
    /// The `aud` a token must name.
    pub audience: String,
    /// The `iss` a token must name, when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

/// The header Flux's `generic-hmac` provider signs with.
pub const FLUX_SIGNATURE_HEADER: &str = "x-signature";

fn default_header() -> String {
    "X-Relay-Signature-256".into()
}

fn default_tolerance() -> u64 {
    300
}

fn default_leeway() -> u64 {
    60
}

/// Which door a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `POST /`: CloudEvents, and Flux payloads.
    Events,
    /// The dead-letter API: never open when any auth is configured.
    Api,
}

impl InboundAuth {
    /// Errors as `(path under spec.inboundAuth, message)`.
    pub fn check_config(&self) -> Result<(), (String, String)> {
        let set = [
            self.bearer_token_file.is_some(),
            self.hmac_secret_file.is_some(),
            self.jwt.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set == 0 && self.flux_hmac_secret_file.is_none() {
            return Err((
                String::new(),
                "set bearerTokenFile, hmacSecretFile, jwt or fluxHmacSecretFile".into(),
            ));
        }
        if set > 1 {
            return Err((
                String::new(),
                "set one of bearerTokenFile, hmacSecretFile or jwt".into(),
            ));
        }
        for (path, name) in [
            ("hmacHeader", Some(&self.hmac_header)),
            ("hmacTimestampHeader", self.hmac_timestamp_header.as_ref()),
        ] {
            if let Some(n) = name
                && http::HeaderName::from_bytes(n.as_bytes()).is_err()
            {
                return Err((path.into(), "not a valid header name".into()));
            }
        }
        if let Some(j) = &self.jwt {
            if j.hs256_secret_file.is_some() == j.rs256_public_key_file.is_some() {
                return Err((
                    "jwt".into(),
                    "set one of hs256SecretFile or rs256PublicKeyFile".into(),
                ));
            }
            if j.audience.trim().is_empty() {
                return Err(("jwt.audience".into(), "must not be empty".into()));
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// The secret itself could not be read: a server problem, not the caller's.
    #[error("{0}")]
    Unavailable(String),
}

/// Is this request a CloudEvent (binary or structured)? Anything else is
/// taken for a Flux payload, and decoding decides whether it is one.
fn is_cloudevent(headers: &HeaderMap) -> bool {
    headers.contains_key("ce-specversion")
        || headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/cloudevents")
            })
}

async fn read(f: &SecretFile) -> Result<crate::secret::Secret, AuthError> {
    f.read()
        .await
        .map_err(|e| AuthError::Unavailable(e.to_string()))
}

fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AuthError::Unauthorized)
}

pub async fn verify(
    auth: &InboundAuth,
    entry: Entry,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), AuthError> {
    if let Some(f) = &auth.flux_hmac_secret_file
        && entry == Entry::Events
        && !is_cloudevent(headers)
    {
        let secret = read(f).await?;
        let given = headers
            .get(FLUX_SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Unauthorized)?;
        return verify_flux_signature(secret.expose().as_bytes(), given, body);
    }
    if let Some(f) = &auth.bearer_token_file {
        let token = read(f).await?;
        let given = bearer(headers)?;
        return if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
            Ok(())
        } else {
            Err(AuthError::Unauthorized)
        };
    }
    if let Some(f) = &auth.hmac_secret_file {
        let secret = read(f).await?;
        return verify_hmac(auth, secret.expose().as_bytes(), headers, body);
    }
    if let Some(j) = &auth.jwt {
        return verify_jwt(j, bearer(headers)?).await;
    }
    match entry {
        // Only Flux's secret is set: CloudEvents pass as without auth.
        Entry::Events => Ok(()),
        // The API must not be open because only Flux payloads are signed.
        Entry::Api => Err(AuthError::Unauthorized),
    }
}

fn verify_hmac(
    auth: &InboundAuth,
    key: &[u8],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), AuthError> {
    let given = headers
        .get(auth.hmac_header.as_str())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or(AuthError::Unauthorized)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    if let Some(h) = &auth.hmac_timestamp_header {
        let ts = headers
            .get(h.as_str())
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Unauthorized)?;
        let secs: i64 = ts.trim().parse().map_err(|_| AuthError::Unauthorized)?;
        let skew = (chrono::Utc::now().timestamp() - secs).unsigned_abs();
        if skew > auth.hmac_tolerance_seconds {
            return Err(AuthError::Unauthorized);
        }
        mac.update(ts.trim().as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| AuthError::Unauthorized)
}

async fn verify_jwt(j: &JwtAuth, token: &str) -> Result<(), AuthError> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let (alg, key) = match (&j.hs256_secret_file, &j.rs256_public_key_file) {
        (Some(f), _) => (
            Algorithm::HS256,
            DecodingKey::from_secret(read(f).await?.expose().as_bytes()),
        ),
        (None, Some(f)) => (
            Algorithm::RS256,
            DecodingKey::from_rsa_pem(read(f).await?.expose().as_bytes())
                .map_err(|e| AuthError::Unavailable(format!("jwt public key: {e}")))?,
        ),
        (None, None) => return Err(AuthError::Unavailable("jwt has no key".into())),
    };
    let mut v = Validation::new(alg);
    v.set_audience(&[&j.audience]);
    v.set_required_spec_claims(&["exp", "aud"]);
    if let Some(iss) = &j.issuer {
        v.set_issuer(&[iss]);
    }
    v.leeway = j.leeway_seconds;
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .map(|_| ())
        .map_err(|_| AuthError::Unauthorized)
}

/// `<hash>=<hex>` as Flux writes it: HMAC with SHA-224, -256, -384 or -512.
fn verify_flux_signature(key: &[u8], header: &str, body: &[u8]) -> Result<(), AuthError> {
    fn check<M: Mac + hmac::digest::KeyInit>(key: &[u8], body: &[u8], sig: &[u8]) -> bool {
        let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    }
    let (alg, hex_sig) = header
        .trim()
        .split_once('=')
        .ok_or(AuthError::Unauthorized)?;
    let sig = hex::decode(hex_sig).map_err(|_| AuthError::Unauthorized)?;
    let ok = match alg {
        "sha224" => check::<Hmac<sha2::Sha224>>(key, body, &sig),
        "sha256" => check::<Hmac<Sha256>>(key, body, &sig),
        "sha384" => check::<Hmac<sha2::Sha384>>(key, body, &sig),
        "sha512" => check::<Hmac<sha2::Sha512>>(key, body, &sig),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(AuthError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(token: &str) -> (tempfile_free::Dir, SecretFile) {
        let d = tempfile_free::Dir::new();
        let p = d.0.join("secret");
        std::fs::write(&p, token).unwrap();
        (d, SecretFile(p))
    }

    mod tempfile_free {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!("relay-auth-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[tokio::test]
    async fn bearer_and_hmac() {
        let (_d, f) = files("tok\n");
        let bearer = InboundAuth {
            bearer_token_file: Some(f.clone()),
            hmac_secret_file: None,
            hmac_header: default_header(),
            hmac_timestamp_header: None,
            hmac_tolerance_seconds: default_tolerance(),
            jwt: None,
            flux_hmac_secret_file: None,
        };
        let mut h = HeaderMap::new();
        assert_eq!(
            verify(&bearer, Entry::Events, &h, b"").await,
            Err(AuthError::Unauthorized)
        );
        h.insert("authorization", "Bearer tok".parse().unwrap());
        assert_eq!(verify(&bearer, Entry::Events, &h, b"").await, Ok(()));
        h.insert("authorization", "Bearer tok2".parse().unwrap());
        assert_eq!(
            verify(&bearer, Entry::Events, &h, b"").await,
            Err(AuthError::Unauthorized)
        );

        let hmac = InboundAuth {
            bearer_token_file: None,
            hmac_secret_file: Some(f),
            hmac_header: default_header(),
            hmac_timestamp_header: None,
            hmac_tolerance_seconds: default_tolerance(),
            jwt: None,
            flux_hmac_secret_file: None,
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(b"tok").unwrap();
        mac.update(b"body");
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let mut h = HeaderMap::new();
        h.insert("x-relay-signature-256", sig.parse().unwrap());
        assert_eq!(verify(&hmac, Entry::Events, &h, b"body").await, Ok(()));
        assert_eq!(
            verify(&hmac, Entry::Events, &h, b"bodY").await,
            Err(AuthError::Unauthorized)
        );
    }

    #[tokio::test]
    async fn flux_payloads_carry_the_generic_hmac_signature() {
        let (_d, f) = files("flux-token\n");
        let (_d2, bearer) = files("tok");
        let auth = InboundAuth {
            bearer_token_file: Some(bearer),
            hmac_secret_file: None,
            hmac_header: default_header(),
            hmac_timestamp_header: None,
            hmac_tolerance_seconds: default_tolerance(),
            jwt: None,
            flux_hmac_secret_file: Some(f),
        };
        assert!(auth.check_config().is_ok());
        let body = br#"{"involvedObject":{},"severity":"info"}"#;
        let sign = |key: &[u8]| {
            let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
            mac.update(body);
            format!("sha512={}", hex::encode(mac.finalize().into_bytes()))
        };
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        assert_eq!(
            verify(&auth, Entry::Events, &h, body).await,
            Err(AuthError::Unauthorized)
        );
        h.insert("x-signature", sign(b"wrong").parse().unwrap());
        assert_eq!(
            verify(&auth, Entry::Events, &h, body).await,
            Err(AuthError::Unauthorized)
        );
        h.insert("x-signature", sign(b"flux-token").parse().unwrap());
        assert_eq!(verify(&auth, Entry::Events, &h, body).await, Ok(()));
        h.insert("x-signature", "md5=00".parse().unwrap());
        assert_eq!(
            verify(&auth, Entry::Events, &h, body).await,
            Err(AuthError::Unauthorized)
        );
        // A bearer token does not stand in for a Flux signature...
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer tok".parse().unwrap());
        assert_eq!(
            verify(&auth, Entry::Events, &h, body).await,
            Err(AuthError::Unauthorized)
        );
        // ...and CloudEvents still need the bearer token.
        h.insert("ce-specversion", "1.0".parse().unwrap());
        assert_eq!(verify(&auth, Entry::Events, &h, body).await, Ok(()));
        h.remove("authorization");
        assert_eq!(
            verify(&auth, Entry::Events, &h, body).await,
            Err(AuthError::Unauthorized)
        );
    }

    fn hmac_auth(f: SecretFile, timestamp: bool) -> InboundAuth {
        InboundAuth {
            bearer_token_file: None,
            hmac_secret_file: Some(f),
            hmac_header: default_header(),
            hmac_timestamp_header: timestamp.then(|| "X-Relay-Timestamp".to_string()),
            hmac_tolerance_seconds: 300,
            jwt: None,
            flux_hmac_secret_file: None,
        }
    }

    #[tokio::test]
    async fn a_timestamped_signature_is_refused_outside_its_window() {
        let (_d, f) = files("shh");
        let auth = hmac_auth(f, true);
        let sign = |ts: i64, body: &[u8]| {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"shh").unwrap();
            mac.update(format!("{ts}.").as_bytes());
            mac.update(body);
            let mut h = HeaderMap::new();
            h.insert("x-relay-timestamp", ts.to_string().parse().unwrap());
            h.insert(
                "x-relay-signature-256",
                format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
                    .parse()
                    .unwrap(),
            );
            h
        };
        let now = chrono::Utc::now().timestamp();
        let ok = sign(now, b"body");
        assert_eq!(verify(&auth, Entry::Events, &ok, b"body").await, Ok(()));
        // The same request an hour later: a replay.
        let old = sign(now - 3600, b"body");
        assert_eq!(
            verify(&auth, Entry::Events, &old, b"body").await,
            Err(AuthError::Unauthorized)
        );
        // A fresh timestamp does not fit an old signature.
        let mut moved = old.clone();
        moved.insert("x-relay-timestamp", now.to_string().parse().unwrap());
        assert_eq!(
            verify(&auth, Entry::Events, &moved, b"body").await,
            Err(AuthError::Unauthorized)
        );
        let mut missing = ok.clone();
        missing.remove("x-relay-timestamp");
        assert_eq!(
            verify(&auth, Entry::Events, &missing, b"body").await,
            Err(AuthError::Unauthorized)
        );
    }

    fn jwt_auth(hs: Option<SecretFile>, rs: Option<SecretFile>) -> InboundAuth {
        InboundAuth {
            bearer_token_file: None,
            hmac_secret_file: None,
            hmac_header: default_header(),
            hmac_timestamp_header: None,
            hmac_tolerance_seconds: 300,
            jwt: Some(JwtAuth {
                hs256_secret_file: hs,
                rs256_public_key_file: rs,
                audience: "tekton-relay".into(),
                issuer: Some("https://issuer.example".into()),
                leeway_seconds: 0,
            }),
            flux_hmac_secret_file: None,
        }
    }

    fn with_bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    #[tokio::test]
    async fn jwts_are_checked_for_signature_audience_issuer_and_expiry() {
        use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
        let (_d, f) = files("jwt-secret");
        let auth = jwt_auth(Some(f), None);
        assert!(auth.check_config().is_ok());
        let now = chrono::Utc::now().timestamp();
        let claims = |aud: &str, iss: &str, exp: i64| serde_json::json!({"aud": aud, "iss": iss, "exp": exp, "sub": "tekton"});
        let hs = |c: serde_json::Value, key: &[u8]| {
            encode(
                &Header::new(Algorithm::HS256),
                &c,
                &EncodingKey::from_secret(key),
            )
            .unwrap()
        };
        let good = hs(
            claims("tekton-relay", "https://issuer.example", now + 60),
            b"jwt-secret",
        );
        assert_eq!(
            verify(&auth, Entry::Api, &with_bearer(&good), b"").await,
            Ok(())
        );
        for bad in [
            hs(
                claims("tekton-relay", "https://issuer.example", now + 60),
                b"other",
            ),
            hs(
                claims("someone-else", "https://issuer.example", now + 60),
                b"jwt-secret",
            ),
            hs(
                claims("tekton-relay", "https://evil.example", now + 60),
                b"jwt-secret",
            ),
            hs(
                claims("tekton-relay", "https://issuer.example", now - 60),
                b"jwt-secret",
            ),
            hs(
                serde_json::json!({"aud": "tekton-relay", "iss": "https://issuer.example"}),
                b"jwt-secret",
            ),
            "not.a.jwt".to_string(),
        ] {
            assert_eq!(
                verify(&auth, Entry::Events, &with_bearer(&bad), b"").await,
                Err(AuthError::Unauthorized),
                "{bad}"
            );
        }
        assert_eq!(
            verify(&auth, Entry::Events, &HeaderMap::new(), b"").await,
            Err(AuthError::Unauthorized)
        );
    }

    #[tokio::test]
    async fn rs256_jwts_are_checked_with_the_public_key() {
        use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
        let d = tempfile_free::Dir::new();
        let private = d.0.join("key.pem");
        let public = d.0.join("pub.pem");
        let openssl = |args: &[&str]| {
            let ok = std::process::Command::new("openssl")
                .args(args)
                .status()
                .unwrap();
            assert!(ok.success(), "openssl {args:?}");
        };
        openssl(&["genrsa", "-out", private.to_str().unwrap(), "2048"]);
        openssl(&[
            "rsa",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        let auth = jwt_auth(None, Some(SecretFile(public)));
        let key = EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap();
        let now = chrono::Utc::now().timestamp();
        let c = serde_json::json!({"aud": "tekton-relay", "iss": "https://issuer.example", "exp": now + 60});
        let good = encode(&Header::new(Algorithm::RS256), &c, &key).unwrap();
        assert_eq!(
            verify(&auth, Entry::Events, &with_bearer(&good), b"").await,
            Ok(())
        );
        // An HS256 token signed with the public key as secret: the
        // algorithm-confusion attack.
        let pem = std::fs::read(d.0.join("pub.pem")).unwrap();
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(&pem),
        )
        .unwrap();
        assert_eq!(
            verify(&auth, Entry::Events, &with_bearer(&confused), b"").await,
            Err(AuthError::Unauthorized)
        );
    }

    #[tokio::test]
    async fn the_api_is_closed_when_only_flux_is_signed() {
        let (_d, f) = files("flux");
        let auth = InboundAuth {
            bearer_token_file: None,
            hmac_secret_file: None,
            hmac_header: default_header(),
            hmac_timestamp_header: None,
            hmac_tolerance_seconds: 300,
            jwt: None,
            flux_hmac_secret_file: Some(f),
        };
        assert!(auth.check_config().is_ok());
        let mut ce = HeaderMap::new();
        ce.insert("ce-specversion", "1.0".parse().unwrap());
        assert_eq!(verify(&auth, Entry::Events, &ce, b"").await, Ok(()));
        assert_eq!(
            verify(&auth, Entry::Api, &ce, b"").await,
            Err(AuthError::Unauthorized)
        );
        // With a bearer token too, the API takes the token, not a Flux signature.
        let (_d2, t) = files("tok");
        let auth = InboundAuth {
            bearer_token_file: Some(t),
            ..auth
        };
        assert_eq!(
            verify(&auth, Entry::Api, &with_bearer("tok"), b"").await,
            Ok(())
        );
    }

    #[test]
    fn config_errors_name_their_path() {
        let (_d, f) = files("x");
        let mut auth = jwt_auth(Some(f.clone()), Some(f.clone()));
        assert_eq!(auth.check_config().unwrap_err().0, "jwt");
        auth.jwt.as_mut().unwrap().rs256_public_key_file = None;
        auth.jwt.as_mut().unwrap().audience = " ".into();
        assert_eq!(auth.check_config().unwrap_err().0, "jwt.audience");
        auth.bearer_token_file = Some(f);
        assert!(auth.check_config().unwrap_err().1.contains("one of"));
        let mut h = hmac_auth(SecretFile("/x".into()), true);
        h.hmac_timestamp_header = Some("bad header".into());
        assert_eq!(h.check_config().unwrap_err().0, "hmacTimestampHeader");
    }
}
