//! Inbound authentication of requests from outside: a bearer token, or an
//! HMAC-SHA256 signature over the body; and for Flux notification-controller
//! payloads, Flux's `generic-hmac` signature (`X-Signature: sha256=<hex>`).
//! Secrets are files read per request; every comparison is constant-time.

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
    /// Flux payloads (requests that are not CloudEvents) must carry Flux's
    /// `generic-hmac` signature made with this secret (the `token` of the
    /// Flux Provider's Secret). Without it, they are checked like the rest.
    #[serde(default)]
    pub flux_hmac_secret_file: Option<SecretFile>,
}

/// The header Flux's `generic-hmac` provider signs with.
pub const FLUX_SIGNATURE_HEADER: &str = "x-signature";

fn default_header() -> String {
    "X-Relay-Signature-256".into()
}

impl InboundAuth {
    /// Errors as `(path under spec.inboundAuth, message)`.
    pub fn check_config(&self) -> Result<(), (String, String)> {
        match (&self.bearer_token_file, &self.hmac_secret_file) {
            (None, None) if self.flux_hmac_secret_file.is_none() => Err((
                String::new(),
                "set bearerTokenFile, hmacSecretFile or fluxHmacSecretFile".into(),
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

pub async fn verify(auth: &InboundAuth, headers: &HeaderMap, body: &[u8]) -> Result<(), AuthError> {
    if let Some(f) = &auth.flux_hmac_secret_file
        && !is_cloudevent(headers)
    {
        let secret = f
            .read()
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let given = headers
            .get(FLUX_SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Unauthorized)?;
        return verify_flux_signature(secret.expose().as_bytes(), given, body);
    }
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
            flux_hmac_secret_file: None,
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
            flux_hmac_secret_file: None,
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

    #[tokio::test]
    async fn flux_payloads_carry_the_generic_hmac_signature() {
        let (_d, f) = files("flux-token\n");
        let (_d2, bearer) = files("tok");
        let auth = InboundAuth {
            bearer_token_file: Some(bearer),
            hmac_secret_file: None,
            hmac_header: default_header(),
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
        assert_eq!(verify(&auth, &h, body).await, Err(AuthError::Unauthorized));
        h.insert("x-signature", sign(b"wrong").parse().unwrap());
        assert_eq!(verify(&auth, &h, body).await, Err(AuthError::Unauthorized));
        h.insert("x-signature", sign(b"flux-token").parse().unwrap());
        assert_eq!(verify(&auth, &h, body).await, Ok(()));
        h.insert("x-signature", "md5=00".parse().unwrap());
        assert_eq!(verify(&auth, &h, body).await, Err(AuthError::Unauthorized));
        // A bearer token does not stand in for a Flux signature...
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer tok".parse().unwrap());
        assert_eq!(verify(&auth, &h, body).await, Err(AuthError::Unauthorized));
        // ...and CloudEvents still need the bearer token.
        h.insert("ce-specversion", "1.0".parse().unwrap());
        assert_eq!(verify(&auth, &h, body).await, Ok(()));
        h.remove("authorization");
        assert_eq!(verify(&auth, &h, body).await, Err(AuthError::Unauthorized));
    }
}
