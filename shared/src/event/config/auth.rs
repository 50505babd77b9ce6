//! The settings of inbound authentication (`spec.inboundAuth`,
//! `spec.apiAuth`; docs/configuration.md "Inbound authentication") and
//! their check at load. Verifying a request against them is the host's
//! (`host::auth`).

use serde::Deserialize;

use crate::event::secret::SecretFile;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InboundAuth {
    /// Requests carry `Authorization: Bearer <token>` (the scheme in any
    /// case). The token must be at least 32 bytes.
    #[serde(default)]
    pub bearer_token_file: Option<SecretFile>,
    /// Requests carry `<hmacHeader>: sha256=<hex>`, the HMAC-SHA256 with this
    /// secret (at least 32 bytes) of the canonical request described in the
    /// module documentation (timestamp, method, path and query, `ce-*`
    /// headers, content type, body), and `<hmacTimestampHeader>`.
    #[serde(default)]
    pub hmac_secret_file: Option<SecretFile>,
    /// The header with the signature (default `X-Relay-Signature-256`).
    #[serde(default = "default_header")]
    pub hmac_header: String,
    /// The header with the request's Unix time in seconds, required with
    /// `hmacSecretFile` (default `X-Relay-Timestamp`). A timestamp outside
    /// `hmacToleranceSeconds` of now is refused, and a signature is accepted
    /// only once within that window, so a captured request cannot be
    /// replayed.
    #[serde(default = "default_timestamp_header")]
    pub hmac_timestamp_header: String,
    /// 1 to 3600; default 300.
    #[serde(default = "default_tolerance")]
    pub hmac_tolerance_seconds: u64,
    /// Requests carry `Authorization: Bearer <JWT>`.
    #[serde(default)]
    pub jwt: Option<JwtAuth>,
    /// Flux payloads (requests that are not CloudEvents: no `ce-specversion`
    /// header, a JSON or no content type; see `ingress::classify`) must
    /// carry Flux's `generic-hmac` signature made with this secret (the
    /// `token` of the Flux Provider's Secret, at least 32 bytes); nothing
    /// else stands in for it. Without it, Flux payloads are checked like the
    /// rest. On its own it admits Flux payloads only: every CloudEvent, and
    /// the dead-letter API, is refused (401) — whatever the event's type,
    /// an `io.fluxcd.notification.*` CloudEvent included.
    #[serde(default)]
    pub flux_hmac_secret_file: Option<SecretFile>,
}

/// A JWT checked with a shared secret (HS256), a public key (RS256) or a
/// JSON Web Key Set; exactly one of them.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtAuth {
    /// At least 32 bytes.
    #[serde(default)]
    pub hs256_secret_file: Option<SecretFile>,
    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`).
    #[serde(default)]
    pub rs256_public_key_file: Option<SecretFile>,
    /// A JSON Web Key Set (`{"keys": [...]}`, RFC 7517), read per request:
    /// rotating keys is updating the file. A token names its key with the
    /// `kid` header (required); the key's `alg` (or, without one, its type:
    /// RSA → RS256, EC P-256/P-384 → ES256/ES384, Ed25519 → EdDSA,
    /// `oct` → HS256, at least 32 bytes) is the only algorithm accepted for
    /// it. Keys with `"use": "enc"` are never used.
    #[serde(default)]
    pub jwks_file: Option<SecretFile>,
    /// The `aud` a token must name.
    pub audience: String,
    /// The `iss` a token must name, when set (then a token without `iss`
    /// is refused).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// The longest lifetime (`exp` - `iat`) a token may have; `iat` is
    /// required. Default 3600 (a Kubernetes projected service-account token
    /// with the default `expirationSeconds`).
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_seconds: u64,
    /// When set, the `sub` a token must name: one of these, where a
    /// trailing `*` stands for any rest. Kubernetes signs a token for any
    /// audience a pod asks for, so a cluster's tokens (Knative's OIDC
    /// sender identity) need this: `system:serviceaccount:tekton-relay:*`
    /// takes only the relay namespace's service accounts (the Triggers').
    #[serde(default)]
    pub subjects: Vec<String>,
}

impl JwtAuth {
    /// Whether `sub` is one of [`JwtAuth::subjects`] (any, when none are set).
    pub fn subject_allowed(&self, sub: Option<&str>) -> bool {
        if self.subjects.is_empty() {
            return true;
        }
        let Some(sub) = sub else { return false };
        self.subjects.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => sub.starts_with(prefix),
            None => sub == p,
        })
    }
}

/// The default `hmacHeader`.
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Relay-Signature-256";

/// The default `hmacTimestampHeader`.
pub const DEFAULT_TIMESTAMP_HEADER: &str = "X-Relay-Timestamp";

const MAX_TOLERANCE_SECONDS: u64 = 3600;

pub(crate) fn default_header() -> String {
    DEFAULT_SIGNATURE_HEADER.into()
}

pub(crate) fn default_timestamp_header() -> String {
    DEFAULT_TIMESTAMP_HEADER.into()
}

pub(crate) fn default_tolerance() -> u64 {
    300
}

pub(crate) fn default_leeway() -> u64 {
    60
}

pub(crate) fn default_max_lifetime() -> u64 {
    3600
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
            ("hmacHeader", &self.hmac_header),
            ("hmacTimestampHeader", &self.hmac_timestamp_header),
        ] {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err((path.into(), "not a valid header name".into()));
            }
        }
        if self
            .hmac_header
            .eq_ignore_ascii_case(&self.hmac_timestamp_header)
        {
            return Err((
                "hmacTimestampHeader".into(),
                "must differ from hmacHeader".into(),
            ));
        }
        if !(1..=MAX_TOLERANCE_SECONDS).contains(&self.hmac_tolerance_seconds) {
            return Err((
                "hmacToleranceSeconds".into(),
                format!("must be 1 to {MAX_TOLERANCE_SECONDS}"),
            ));
        }
        if let Some(j) = &self.jwt {
            let keys = [
                j.hs256_secret_file.is_some(),
                j.rs256_public_key_file.is_some(),
                j.jwks_file.is_some(),
            ];
            if keys.iter().filter(|k| **k).count() != 1 {
                return Err((
                    "jwt".into(),
                    "set one of hs256SecretFile, rs256PublicKeyFile or jwksFile".into(),
                ));
            }
            if j.audience.trim().is_empty() {
                return Err(("jwt.audience".into(), "must not be empty".into()));
            }
            if j.max_lifetime_seconds == 0 {
                return Err(("jwt.maxLifetimeSeconds".into(), "must be at least 1".into()));
            }
            if let Some(i) = j
                .subjects
                .iter()
                .position(|p| p.trim().is_empty() || p == "*" || p[..p.len() - 1].contains('*'))
            {
                return Err((
                    format!("jwt.subjects[{i}]"),
                    "a subject, or a prefix followed by one `*` (not `*` alone)".into(),
                ));
            }
        }
        Ok(())
    }
}
