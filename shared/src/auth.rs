//! Inbound authentication of requests from outside: a bearer token, or an
//! HMAC-SHA256 signature over the body. Secrets are files read per request;
//! every comparison is constant-time.

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
}

fn default_header() -> String {
    "X-Relay-Signature-256".into()
}

impl InboundAuth {
    /// Errors as `(path under spec.inboundAuth, message)`.
    pub fn check_config(&self) -> Result<(), (String, String)> {
        match (&self.bearer_token_file, &self.hmac_secret_file) {
            (None, None) => Err((
                String::new(),
                "set bearerTokenFile or hmacSecretFile".into(),
            )),
            (Some(_), Some(_)) => Err((
                String::new(),
                "set bearerTokenFile or hmacSecretFile, not both".into(),
            )),
            _ => http::HeaderName::from_bytes(self.hmac_header.as_bytes())
                .map(|_| ())
                .map_err(|_| ("hmacHeader".into(), "not a valid header name".into())),
        }
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

pub async fn verify(auth: &InboundAuth, headers: &HeaderMap, body: &[u8]) -> Result<(), AuthError> {
    if let Some(f) = &auth.bearer_token_file {
        let token = f
            .read()
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let given = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AuthError::Unauthorized)?;
        return if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
            Ok(())
        } else {
            Err(AuthError::Unauthorized)
        };
    }
    if let Some(f) = &auth.hmac_secret_file {
        let secret = f
            .read()
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let given = headers
            .get(auth.hmac_header.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("sha256="))
            .and_then(|h| hex::decode(h).ok())
            .ok_or(AuthError::Unauthorized)?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
        mac.update(body);
        // verify_slice compares in constant time.
        return mac
            .verify_slice(&given)
            .map_err(|_| AuthError::Unauthorized);
    }
    Ok(())
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
        };
        let mut h = HeaderMap::new();
        assert_eq!(verify(&bearer, &h, b"").await, Err(AuthError::Unauthorized));
        h.insert("authorization", "Bearer tok".parse().unwrap());
        assert_eq!(verify(&bearer, &h, b"").await, Ok(()));
        h.insert("authorization", "Bearer tok2".parse().unwrap());
        assert_eq!(verify(&bearer, &h, b"").await, Err(AuthError::Unauthorized));

        let hmac = InboundAuth {
            bearer_token_file: None,
            hmac_secret_file: Some(f),
            hmac_header: default_header(),
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(b"tok").unwrap();
        mac.update(b"body");
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let mut h = HeaderMap::new();
        h.insert("x-relay-signature-256", sig.parse().unwrap());
        assert_eq!(verify(&hmac, &h, b"body").await, Ok(()));
        assert_eq!(
            verify(&hmac, &h, b"bodY").await,
            Err(AuthError::Unauthorized)
        );
    }
}
