//! Inbound authentication of requests from outside: a bearer token, an
//! HMAC-SHA256 signature over a canonical form of the request (timestamped,
//! each signature accepted once), or a JWT (HS256, RS256 or a JSON Web Key
//! Set; audience, expiry, not-before, lifetime and optionally issuer
//! checked); and for Flux notification-controller payloads, Flux's
//! `generic-hmac` signature (`X-Signature: sha256=<hex>`).
//! Secrets are files read per request (a rotated Secret applies on the next
//! request); comparisons are constant-time; secrets shorter than
//! [`MIN_SECRET_BYTES`] are refused.
//!
//! # The canonical request (`hmacSecretFile`)
//!
//! A sender signs these bytes with HMAC-SHA256 and sends
//! `<hmacHeader>: sha256=<lower-case hex of the MAC>` with
//! `<hmacTimestampHeader>: <timestamp>`:
//!
//! ```text
//! <timestamp>\n
//! <method>\n
//! <path and query>\n
//! <name>:<value>\n       one line per ce-* header, none if there are none
//! \n                     an empty line ends the CloudEvent attributes
//! <content type>\n
//! <body>
//! ```
//!
//! - `timestamp`: Unix seconds in decimal ASCII digits, exactly as in the
//!   timestamp header; it must be within `hmacToleranceSeconds` of the
//!   relay's clock.
//! - `method`: the HTTP method as sent (`POST`, `GET`, `DELETE`).
//! - `path and query`: the request target as the relay receives it, e.g.
//!   `/` or `/api/v1/dlq?limit=5`, not decoded or normalised (`/` when
//!   empty). A proxy in front that rewrites paths breaks signatures.
//! - the CloudEvent attributes: every header whose name starts with `ce-`
//!   (binary mode; in structured mode the attributes are in the body and
//!   there are usually none), its name in lower case, then `:`, then its
//!   value without surrounding spaces or tabs, byte for byte. The lines are
//!   sorted by name, then by value (byte order), duplicates kept.
//! - `content type`: the `Content-Type` header's value without surrounding
//!   spaces or tabs, empty when there is none.
//! - `body`: the body bytes as sent.
//!
//! No header value, method or path can hold a newline, so the form is
//! unambiguous. [`hmac_signature`] and [`sign_hmac`] build it; senders in
//! other languages must reproduce it exactly.
//!
//! A signature is accepted once: the relay remembers the signatures it took
//! until their timestamp leaves the window (in memory, per process, at most
//! [`REPLAY_CACHE_CAPACITY`] of them; past that it answers 503 until old ones
//! expire). A sender retrying a request signs it again with a new timestamp
//! (a later second). With several relay processes behind one address, a
//! replay can still reach another process within the window.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::event::config::auth::{
    InboundAuth, JwtAuth, default_header, default_timestamp_header, default_tolerance,
};
use crate::event::secret::{Secret, SecretFile};
use crate::host::ingress::{self, RequestKind};

/// The header Flux's `generic-hmac` provider signs with.
pub const FLUX_SIGNATURE_HEADER: &str = "x-signature";

/// The shortest bearer token, HMAC secret, Flux token or HS256 key taken:
/// 256 bits, the strength of the HMAC-SHA256 they key.
pub const MIN_SECRET_BYTES: usize = 32;

/// The most signatures remembered against replays (each about 50 bytes).
pub const REPLAY_CACHE_CAPACITY: usize = 100_000;

/// Which door a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `POST /`: CloudEvents, and Flux payloads.
    Events,
    /// The dead-letter API: never open when any auth is configured.
    Api,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// Credentials cannot be checked (a secret unreadable or too short, the
    /// replay cache full): a server problem, not the caller's. The message
    /// names files, never their content.
    #[error("{0}")]
    Unavailable(String),
}

/// Reads a secret used as a key, refusing one shorter than
/// [`MIN_SECRET_BYTES`]: a short secret is guessable offline from one
/// signed request.
async fn read_key(f: &SecretFile, field: &str) -> Result<Secret, AuthError> {
    let secret = read(f).await?;
    check_length(secret.expose().len(), f, field)?;
    Ok(secret)
}

fn check_length(len: usize, f: &SecretFile, field: &str) -> Result<(), AuthError> {
    if len < MIN_SECRET_BYTES {
        return Err(AuthError::Unavailable(format!(
            "{field} {} holds a secret shorter than {MIN_SECRET_BYTES} bytes; use a longer random one",
            f.0.display()
        )));
    }
    Ok(())
}

async fn read(f: &SecretFile) -> Result<Secret, AuthError> {
    f.read()
        .await
        .map_err(|e| AuthError::Unavailable(e.to_string()))
}

/// The credentials of `Authorization: Bearer <credentials>`; the scheme is
/// case-insensitive (RFC 7235).
fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Unauthorized)?;
    let (scheme, token) = value
        .trim_start()
        .split_once(' ')
        .ok_or(AuthError::Unauthorized)?;
    let token = token.trim_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Unauthorized);
    }
    Ok(token)
}

/// The token of a request authenticated with `bearerTokenFile`: the
/// credentials of `Authorization: Bearer <token>`, or the password of
/// `Authorization: Basic base64(<user>:<token>)` (any user). A sender that
/// cannot set headers — Tekton's CloudEvents sink — can still send the token:
/// Go's HTTP client turns the userinfo of the sink URL
/// (`https://tekton:<token>@…`) into Basic credentials.
fn token(headers: &HeaderMap) -> Result<Vec<u8>, AuthError> {
    if let Ok(token) = bearer(headers) {
        return Ok(token.as_bytes().to_vec());
    }
    use base64::Engine;
    let value = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Unauthorized)?;
    let (scheme, encoded) = value
        .trim_start()
        .split_once(' ')
        .ok_or(AuthError::Unauthorized)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Unauthorized);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_matches(' '))
        .map_err(|_| AuthError::Unauthorized)?;
    let colon = decoded
        .iter()
        .position(|b| *b == b':')
        .ok_or(AuthError::Unauthorized)?;
    let password = &decoded[colon + 1..];
    if password.is_empty() {
        return Err(AuthError::Unauthorized);
    }
    Ok(password.to_vec())
}

/// Compares digests of both, so neither the time taken nor an early return
/// tells the length of the expected token.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// Checks a request's credentials against `auth`. `method`, `uri` and the
/// headers are the request as received: HMAC signatures cover them.
///
/// Which credential applies: a Flux payload (by [`ingress::classify`]) on
/// [`Entry::Events`] with `fluxHmacSecretFile` set needs Flux's signature and
/// nothing else; everything else needs the bearer token, HMAC signature or
/// JWT, and is refused when only `fluxHmacSecretFile` is set.
pub async fn verify(
    auth: &InboundAuth,
    entry: Entry,
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), AuthError> {
    if let Some(f) = &auth.flux_hmac_secret_file
        && entry == Entry::Events
        && ingress::classify(headers) == RequestKind::Flux
    {
        let secret = read_key(f, "fluxHmacSecretFile").await?;
        let given = headers
            .get(FLUX_SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Unauthorized)?;
        return verify_flux_signature(secret.expose().as_bytes(), given, body);
    }
    if let Some(f) = &auth.bearer_token_file {
        let token = read_key(f, "bearerTokenFile").await?;
        let given = self::token(headers)?;
        return if same_token(&given, token.expose().as_bytes()) {
            Ok(())
        } else {
            Err(AuthError::Unauthorized)
        };
    }
    if let Some(f) = &auth.hmac_secret_file {
        let secret = read_key(f, "hmacSecretFile").await?;
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        let now = chrono::Utc::now().timestamp();
        let (sig, ts) = check_hmac(
            auth,
            secret.expose().as_bytes(),
            method.as_str(),
            path,
            headers,
            body,
            now,
        )?;
        let tolerance = auth.hmac_tolerance_seconds as i64;
        return REPLAYS.first_use(sig, ts.saturating_add(tolerance), now);
    }
    if let Some(j) = &auth.jwt {
        return verify_jwt(j, bearer(headers)?).await;
    }
    // Only Flux's secret is set: it admits Flux payloads and nothing else,
    // neither CloudEvents (whatever their type) nor the dead-letter API.
    Err(AuthError::Unauthorized)
}

/// The canonical request of the module documentation, the bytes an HMAC
/// signature covers.
pub fn canonical_request(
    timestamp: &str,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<u8> {
    fn trim(v: &[u8]) -> &[u8] {
        let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
        let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
        match (start, end) {
            (Some(s), Some(e)) => &v[s..=e],
            _ => &[],
        }
    }
    let mut attributes: Vec<(&str, &[u8])> = headers
        .iter()
        // HeaderName is lower case already.
        .filter(|(k, _)| k.as_str().starts_with("ce-"))
        .map(|(k, v)| (k.as_str(), trim(v.as_bytes())))
        .collect();
    attributes.sort_unstable();
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .map_or(&[][..], |v| trim(v.as_bytes()));
    let path = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    let mut out = Vec::with_capacity(
        timestamp.len()
            + method.len()
            + path.len()
            + content_type.len()
            + body.len()
            + attributes
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>()
            + 5,
    );
    for part in [timestamp.as_bytes(), method.as_bytes(), path.as_bytes()] {
        out.extend_from_slice(part);
        out.push(b'\n');
    }
    for (name, value) in attributes {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(content_type);
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// `sha256=<hex>`: the value of `hmacHeader` for a request (see the module
/// documentation). `headers` are the ones the request is sent with.
pub fn hmac_signature(
    secret: &[u8],
    timestamp: &str,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&canonical_request(
        timestamp,
        method,
        path_and_query,
        headers,
        body,
    ));
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Signs a request for a relay with `hmacSecretFile` and the default header
/// names: sets `X-Relay-Timestamp` to `timestamp` (Unix seconds, normally
/// now) and `X-Relay-Signature-256` in `headers`, which must already hold
/// every `ce-*` header and the content type the request goes with.
pub fn sign_hmac(
    secret: &[u8],
    timestamp: i64,
    method: &str,
    path_and_query: &str,
    headers: &mut HeaderMap,
    body: &[u8],
) {
    let ts = timestamp.to_string();
    let sig = hmac_signature(secret, &ts, method, path_and_query, headers, body);
    headers.insert(
        http::HeaderName::from_static("x-relay-timestamp"),
        http::HeaderValue::from_str(&ts).expect("digits"),
    );
    headers.insert(
        http::HeaderName::from_static("x-relay-signature-256"),
        http::HeaderValue::from_str(&sig).expect("hex"),
    );
}

/// Checks the signature and the timestamp's window (not the replay cache);
/// returns the signature and the timestamp. `now` in Unix seconds.
fn check_hmac(
    auth: &InboundAuth,
    key: &[u8],
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<([u8; 32], i64), AuthError> {
    let given: [u8; 32] = headers
        .get(auth.hmac_header.as_str())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or(AuthError::Unauthorized)?;
    let ts = headers
        .get(auth.hmac_timestamp_header.as_str())
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or(AuthError::Unauthorized)?;
    let secs = parse_timestamp(ts).ok_or(AuthError::Unauthorized)?;
    if now.abs_diff(secs) > auth.hmac_tolerance_seconds {
        return Err(AuthError::Unauthorized);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&canonical_request(
        ts,
        method,
        path_and_query,
        headers,
        body,
    ));
    // verify_slice compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| AuthError::Unauthorized)?;
    Ok((given, secs))
}

/// Unix seconds as decimal digits only: no sign, no spaces, no exponent,
/// so a timestamp has one spelling and one signature.
fn parse_timestamp(ts: &str) -> Option<i64> {
    if ts.is_empty() || ts.len() > 15 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ts.parse().ok()
}

/// The signatures accepted within their window, so each is accepted once.
/// Only verified signatures get in, so a caller without the secret cannot
/// fill it.
struct ReplayCache {
    inner: Mutex<Seen>,
    capacity: usize,
}

struct Seen {
    /// Signature -> the last second its timestamp is within the window.
    until: HashMap<[u8; 32], i64>,
    purged_at: i64,
}

static REPLAYS: LazyLock<ReplayCache> = LazyLock::new(|| ReplayCache::new(REPLAY_CACHE_CAPACITY));

impl ReplayCache {
    fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(Seen {
                until: HashMap::new(),
                purged_at: i64::MIN,
            }),
            capacity,
        }
    }

    /// Records `sig` (valid until `until`); `Unauthorized` if it was seen
    /// before. When full of unexpired signatures, refuses rather than forget
    /// one: forgetting would reopen that request to replay.
    fn first_use(&self, sig: [u8; 32], until: i64, now: i64) -> Result<(), AuthError> {
        let mut seen = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Expired entries go at most once a second (or when full), so the
        // sweep costs nothing per request.
        if now != seen.purged_at || seen.until.len() >= self.capacity {
            seen.until.retain(|_, t| *t >= now);
            seen.purged_at = now;
        }
        if seen.until.contains_key(&sig) {
            return Err(AuthError::Unauthorized);
        }
        if seen.until.len() >= self.capacity {
            return Err(AuthError::Unavailable(format!(
                "the replay cache holds {} signatures within their window; try again later",
                self.capacity
            )));
        }
        seen.until.insert(sig, until);
        Ok(())
    }
}

async fn verify_jwt(j: &JwtAuth, token: &str) -> Result<(), AuthError> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let (alg, key) = match (&j.hs256_secret_file, &j.rs256_public_key_file, &j.jwks_file) {
        (Some(f), _, _) => (
            Algorithm::HS256,
            DecodingKey::from_secret(
                read_key(f, "jwt.hs256SecretFile")
                    .await?
                    .expose()
                    .as_bytes(),
            ),
        ),
        (None, Some(f), _) => (
            Algorithm::RS256,
            DecodingKey::from_rsa_pem(read(f).await?.expose().as_bytes())
                .map_err(|e| AuthError::Unavailable(format!("jwt public key: {e}")))?,
        ),
        (None, None, Some(f)) => jwks_key(f, token).await?,
        (None, None, None) => return Err(AuthError::Unavailable("jwt has no key".into())),
    };
    let mut v = Validation::new(alg);
    v.set_audience(&[&j.audience]);
    v.validate_nbf = true;
    match &j.issuer {
        Some(iss) => {
            v.set_issuer(&[iss]);
            v.set_required_spec_claims(&["exp", "aud", "iss"]);
        }
        None => v.set_required_spec_claims(&["exp", "aud"]),
    }
    v.leeway = j.leeway_seconds;
    let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .map_err(|_| AuthError::Unauthorized)?
        .claims;
    if !j.subject_allowed(claims.get("sub").and_then(serde_json::Value::as_str)) {
        return Err(AuthError::Unauthorized);
    }
    check_lifetime(j, &claims, chrono::Utc::now().timestamp())
}

/// `iat` present, not in the future, and `exp` - `iat` within
/// `maxLifetimeSeconds`: a leaked long-lived token is not taken.
fn check_lifetime(j: &JwtAuth, claims: &serde_json::Value, now: i64) -> Result<(), AuthError> {
    let time = |name: &str| {
        let v = claims.get(name)?;
        v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
    };
    let (Some(iat), Some(exp)) = (time("iat"), time("exp")) else {
        return Err(AuthError::Unauthorized);
    };
    let leeway = j.leeway_seconds.min(i64::MAX as u64) as i64;
    let max = j.max_lifetime_seconds.min(i64::MAX as u64) as i64;
    if iat > now.saturating_add(leeway) || exp.saturating_sub(iat) > max {
        return Err(AuthError::Unauthorized);
    }
    Ok(())
}

/// The key of a JWKS the token's `kid` names, with the one algorithm it is
/// for. A token without `kid`, or naming no key, is refused; a file that is
/// no key set, or a key that cannot be used, is a server problem.
async fn jwks_key(
    f: &SecretFile,
    token: &str,
) -> Result<(jsonwebtoken::Algorithm, jsonwebtoken::DecodingKey), AuthError> {
    use jsonwebtoken::jwk::{
        AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse,
    };
    use jsonwebtoken::{Algorithm, DecodingKey};
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Unauthorized)?;
    let kid = header.kid.ok_or(AuthError::Unauthorized)?;
    let set: JwkSet = serde_json::from_str(read(f).await?.expose()).map_err(|e| {
        // The position only: serde's message can quote the file.
        AuthError::Unavailable(format!(
            "jwt.jwksFile {} is not a JSON Web Key Set (line {}, column {})",
            f.0.display(),
            e.line(),
            e.column()
        ))
    })?;
    let jwk = set
        .keys
        .iter()
        .find(|k| {
            k.common.key_id.as_deref() == Some(kid.as_str())
                && k.common.public_key_use != Some(PublicKeyUse::Encryption)
        })
        .ok_or(AuthError::Unauthorized)?;
    let unusable = |why: &str| {
        AuthError::Unavailable(format!("jwt.jwksFile {}: key {kid:?} {why}", f.0.display()))
    };
    let alg = match jwk.common.key_algorithm {
        Some(KeyAlgorithm::HS256) => Algorithm::HS256,
        Some(KeyAlgorithm::HS384) => Algorithm::HS384,
        Some(KeyAlgorithm::HS512) => Algorithm::HS512,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::ES384) => Algorithm::ES384,
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::RS384) => Algorithm::RS384,
        Some(KeyAlgorithm::RS512) => Algorithm::RS512,
        Some(KeyAlgorithm::PS256) => Algorithm::PS256,
        Some(KeyAlgorithm::PS384) => Algorithm::PS384,
        Some(KeyAlgorithm::PS512) => Algorithm::PS512,
        Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
        Some(_) => return Err(unusable("has an algorithm that does not sign")),
        None => match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
                Algorithm::ES384
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
            _ => return Err(unusable("has no alg and a type that names none")),
        },
    };
    let fits = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        AlgorithmParameters::EllipticCurve(_) => {
            matches!(alg, Algorithm::ES256 | Algorithm::ES384)
        }
        AlgorithmParameters::OctetKeyPair(_) => alg == Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => {
            matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
        }
    };
    if !fits {
        return Err(unusable("is not of the kind its alg needs"));
    }
    if let AlgorithmParameters::OctetKey(p) = &jwk.algorithm {
        use base64::Engine;
        let len = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.value.trim_end_matches('='))
            .map_or(0, |k| k.len());
        check_length(len, f, "jwt.jwksFile")?;
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| unusable("is not a valid key"))?;
    Ok((alg, key))
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

/// The body of the `auth` fuzz target (`fuzz/fuzz_targets/auth.rs`). Input:
/// a request line `<method> <path>`, `Name: value` header lines, a blank
/// line, the body. Whatever the bytes: the classifier and the parser agree;
/// a request signed by [`hmac_signature`] verifies, and not once its body,
/// path, method or a `ce-*` header changes; the signature and Flux header
/// parsers never panic.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    use http::{HeaderName, HeaderValue};
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let request_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let (method, path) = request_line
        .split_once(' ')
        .unwrap_or((request_line.as_str(), "/"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            headers.append(k, v);
        }
    }

    // One classifier: a parsed request is of the kind it was classified as.
    let kind = ingress::classify(&headers);
    match ingress::parse_request(&headers, bytes::Bytes::copy_from_slice(body)) {
        Ok(ingress::Inbound::CloudEvent(_)) => assert!(kind.is_cloudevent(), "{kind:?}"),
        Ok(ingress::Inbound::Flux { .. }) => assert_eq!(kind, RequestKind::Flux),
        Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
    }

    let auth = InboundAuth {
        bearer_token_file: None,
        hmac_secret_file: None,
        hmac_header: default_header(),
        hmac_timestamp_header: default_timestamp_header(),
        hmac_tolerance_seconds: default_tolerance(),
        jwt: None,
        flux_hmac_secret_file: None,
    };
    let key = [7u8; MIN_SECRET_BYTES];
    let now = 1_700_000_000;
    // Whatever signature and timestamp headers came: refused or accepted,
    // never a panic.
    let _ = check_hmac(&auth, &key, method, path, &headers, body, now);
    if let Some(v) = headers
        .get(FLUX_SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        let _ = verify_flux_signature(&key, v, body);
    }
    let _ = bearer(&headers);

    let mut signed = headers.clone();
    sign_hmac(&key, now, method, path, &mut signed, body);
    assert_eq!(
        check_hmac(&auth, &key, method, path, &signed, body, now).map(|(_, ts)| ts),
        Ok(now),
        "a request signed as documented verifies"
    );
    let refused = |method: &str, path: &str, headers: &HeaderMap, body: &[u8]| {
        check_hmac(&auth, &key, method, path, headers, body, now) == Err(AuthError::Unauthorized)
    };
    let mut other_body = body.to_vec();
    other_body.push(b'x');
    assert!(refused(method, path, &signed, &other_body));
    assert!(refused(method, &format!("{path}x"), &signed, body));
    assert!(refused(&format!("{method}X"), path, &signed, body));
    let mut retyped = signed.clone();
    retyped.append(
        HeaderName::from_static("ce-type"),
        HeaderValue::from_static("dev.tekton.event.pipelinerun.successful.v1"),
    );
    assert!(refused(method, path, &retyped, body));
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::testkit::headers;
    use crate::event::config::auth::default_max_lifetime;

    /// Long enough for `MIN_SECRET_BYTES`.
    const TOKEN: &str = "relay-test-token-0123456789abcdef";
    const FLUX: &str = "flux-test-token-0123456789abcdefgh";
    const JWT_SECRET: &str = "jwt-test-secret-0123456789abcdefgh";

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

    fn none() -> InboundAuth {
        InboundAuth {
            bearer_token_file: None,
            hmac_secret_file: None,
            hmac_header: default_header(),
            hmac_timestamp_header: default_timestamp_header(),
            hmac_tolerance_seconds: default_tolerance(),
            jwt: None,
            flux_hmac_secret_file: None,
        }
    }

    fn post() -> (http::Method, http::Uri) {
        (http::Method::POST, http::Uri::from_static("/"))
    }

    /// `verify` of `POST /`.
    async fn events(auth: &InboundAuth, h: &HeaderMap, body: &[u8]) -> Result<(), AuthError> {
        let (m, u) = post();
        verify(auth, Entry::Events, &m, &u, h, body).await
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    /// A binary-mode Tekton event as Tekton sends it.
    fn binary(ty: &str, id: &str) -> HeaderMap {
        headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            (
                "ce-source",
                "/apis/tekton.dev/v1/namespaces/ci/pipelineruns/build",
            ),
            ("ce-type", ty),
            ("content-type", "application/json"),
        ])
    }

    #[tokio::test]
    async fn bearer_and_hmac() {
        let (_d, f) = files(&format!("{TOKEN}\n"));
        let bearer = InboundAuth {
            bearer_token_file: Some(f.clone()),
            ..none()
        };
        let mut h = HeaderMap::new();
        assert_eq!(events(&bearer, &h, b"").await, Err(AuthError::Unauthorized));
        h.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        assert_eq!(events(&bearer, &h, b"").await, Ok(()));
        h.insert("authorization", format!("Bearer {TOKEN}2").parse().unwrap());
        assert_eq!(events(&bearer, &h, b"").await, Err(AuthError::Unauthorized));

        let hmac = InboundAuth {
            hmac_secret_file: Some(f),
            ..none()
        };
        let mut h = HeaderMap::new();
        sign_hmac(TOKEN.as_bytes(), now(), "POST", "/", &mut h, b"body");
        assert_eq!(
            events(&hmac, &h, b"bodY").await,
            Err(AuthError::Unauthorized)
        );
        assert_eq!(events(&hmac, &h, b"body").await, Ok(()));
    }

    #[tokio::test]
    async fn the_bearer_scheme_is_case_insensitive() {
        let (_d, f) = files(TOKEN);
        let auth = InboundAuth {
            bearer_token_file: Some(f),
            ..none()
        };
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let h = headers(&[("authorization", &format!("{scheme} {TOKEN}"))]);
            assert_eq!(events(&auth, &h, b"").await, Ok(()), "{scheme}");
        }
        for bad in [
            format!("Basic {TOKEN}"),
            format!("Basic {}", basic("tekton", &TOKEN[..TOKEN.len() - 1])),
            format!("Basic {}", basic("tekton", "")),
            format!("Basic {}", b64(TOKEN)),
            format!("Bearer {}", basic("tekton", TOKEN)),
            format!("Bearer{TOKEN}"),
            "Bearer ".to_string(),
            TOKEN.to_string(),
            format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
            format!("Bearer {TOKEN}{TOKEN}"),
        ] {
            let h = headers(&[("authorization", &bad)]);
            assert_eq!(
                events(&auth, &h, b"").await,
                Err(AuthError::Unauthorized),
                "{bad}"
            );
        }
    }

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    /// What Go's HTTP client sends for a URL with `user:password@`.
    fn basic(user: &str, password: &str) -> String {
        b64(&format!("{user}:{password}"))
    }

    /// Tekton's sink URL carries the token as its password: any user, the
    /// scheme in any case.
    #[tokio::test]
    async fn the_token_may_come_as_the_password_of_basic_credentials() {
        let (_d, f) = files(TOKEN);
        let auth = InboundAuth {
            bearer_token_file: Some(f),
            ..none()
        };
        for (scheme, user) in [
            ("Basic", "tekton"),
            ("basic", ""),
            ("BASIC", "tekton relay"),
        ] {
            let h = headers(&[("authorization", &format!("{scheme} {}", basic(user, TOKEN)))]);
            assert_eq!(events(&auth, &h, b"").await, Ok(()), "{scheme} {user}");
        }
    }

    #[tokio::test]
    async fn short_secrets_are_refused_without_showing_them() {
        let short = "0123456789abcdef0123456789abcde"; // 31 bytes
        let (_d, f) = files(short);
        let body = br#"{"involvedObject":{},"severity":"info"}"#;
        let json = headers(&[("content-type", "application/json")]);
        let (m, u) = post();
        let mut jwt = jwt_auth(Some(f.clone()), None);
        jwt.jwt.as_mut().unwrap().issuer = None;
        for (auth, h) in [
            (
                InboundAuth {
                    bearer_token_file: Some(f.clone()),
                    ..none()
                },
                headers(&[("authorization", &format!("Bearer {short}"))]),
            ),
            (
                InboundAuth {
                    hmac_secret_file: Some(f.clone()),
                    ..none()
                },
                {
                    let mut h = HeaderMap::new();
                    sign_hmac(short.as_bytes(), now(), "POST", "/", &mut h, body);
                    h
                },
            ),
            (
                InboundAuth {
                    flux_hmac_secret_file: Some(f.clone()),
                    ..none()
                },
                {
                    let mut h = json.clone();
                    let mut mac = Hmac::<Sha256>::new_from_slice(short.as_bytes()).unwrap();
                    mac.update(body);
                    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                    h.insert("x-signature", sig.parse().unwrap());
                    h
                },
            ),
            (
                jwt,
                with_bearer(&hs256(&claims(now(), now() + 60), short.as_bytes())),
            ),
        ] {
            match verify(&auth, Entry::Events, &m, &u, &h, body).await {
                Err(AuthError::Unavailable(msg)) => {
                    assert!(msg.contains("shorter than 32 bytes"), "{msg}");
                    assert!(!msg.contains(short), "the secret leaked: {msg}");
                }
                other => panic!("{auth:?}: {other:?}"),
            }
        }
        // Exactly 32 bytes is enough.
        std::fs::write(&f.0, format!("{short}x")).unwrap();
        let bearer = InboundAuth {
            bearer_token_file: Some(f),
            ..none()
        };
        let h = headers(&[("authorization", &format!("Bearer {short}x"))]);
        assert_eq!(events(&bearer, &h, b"").await, Ok(()));
    }

    #[tokio::test]
    async fn flux_payloads_carry_the_generic_hmac_signature() {
        let (_d, f) = files(&format!("{FLUX}\n"));
        let (_d2, bearer) = files(TOKEN);
        let auth = InboundAuth {
            bearer_token_file: Some(bearer),
            flux_hmac_secret_file: Some(f),
            ..none()
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
        assert_eq!(events(&auth, &h, body).await, Err(AuthError::Unauthorized));
        h.insert("x-signature", sign(b"wrong").parse().unwrap());
        assert_eq!(events(&auth, &h, body).await, Err(AuthError::Unauthorized));
        h.insert("x-signature", sign(FLUX.as_bytes()).parse().unwrap());
        assert_eq!(events(&auth, &h, body).await, Ok(()));
        h.insert("x-signature", "md5=00".parse().unwrap());
        assert_eq!(events(&auth, &h, body).await, Err(AuthError::Unauthorized));
        // A bearer token does not stand in for a Flux signature...
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        assert_eq!(events(&auth, &h, body).await, Err(AuthError::Unauthorized));
        // ...and CloudEvents still need the bearer token.
        h.insert("ce-specversion", "1.0".parse().unwrap());
        assert_eq!(events(&auth, &h, body).await, Ok(()));
        h.remove("authorization");
        assert_eq!(events(&auth, &h, body).await, Err(AuthError::Unauthorized));
    }

    /// Issue #13 item 6: with only `fluxHmacSecretFile`, a CloudEvent of a
    /// Flux type (binary or structured, any spelling of the content type)
    /// passed without any signature and was decoded as a Flux event.
    #[tokio::test]
    async fn a_flux_typed_cloudevent_without_signature_is_refused_when_only_flux_is_configured() {
        let (_d, f) = files(FLUX);
        let auth = InboundAuth {
            flux_hmac_secret_file: Some(f),
            ..none()
        };
        let data = br#"{"involvedObject":{"kind":"Kustomization","name":"apps","namespace":"flux-system"},"severity":"info","reason":"ReconciliationSucceeded","message":"ok","reportingController":"kustomize-controller","timestamp":"2024-05-16T00:00:00Z"}"#;
        let binary = binary("io.fluxcd.notification.info", "forged-1");
        let structured = serde_json::to_vec(&serde_json::json!({
            "specversion": "1.0", "id": "forged-2", "source": "/flux",
            "type": "io.fluxcd.notification.info",
            "datacontenttype": "application/json",
            "data": serde_json::from_slice::<serde_json::Value>(data).unwrap(),
        }))
        .unwrap();
        for (h, body) in [
            (binary, &data[..]),
            (
                headers(&[("content-type", "application/cloudevents+json")]),
                &structured[..],
            ),
            (
                headers(&[(
                    "content-type",
                    " Application/CloudEvents+JSON ; charset=utf-8",
                )]),
                &structured[..],
            ),
        ] {
            // The request is one the relay would decode as a Flux event...
            let parsed = ingress::parse_request(&h, bytes::Bytes::copy_from_slice(body));
            assert!(
                matches!(parsed, Ok(ingress::Inbound::CloudEvent(_))),
                "{parsed:?}"
            );
            // ...and it is refused without a credential.
            assert_eq!(
                events(&auth, &h, body).await,
                Err(AuthError::Unauthorized),
                "{h:?}"
            );
        }
    }

    fn hmac_auth(f: SecretFile) -> InboundAuth {
        InboundAuth {
            hmac_secret_file: Some(f),
            ..none()
        }
    }

    #[tokio::test]
    async fn a_timestamped_signature_is_refused_outside_its_window() {
        let (_d, f) = files(TOKEN);
        let auth = hmac_auth(f);
        let sign = |ts: i64, body: &[u8]| {
            let mut h = HeaderMap::new();
            sign_hmac(TOKEN.as_bytes(), ts, "POST", "/", &mut h, body);
            h
        };
        let now = now();
        let ok = sign(now, b"body");
        // The same request an hour later: a replay.
        let old = sign(now - 3600, b"body");
        assert_eq!(
            events(&auth, &old, b"body").await,
            Err(AuthError::Unauthorized)
        );
        // A fresh timestamp does not fit an old signature.
        let mut moved = old.clone();
        moved.insert("x-relay-timestamp", now.to_string().parse().unwrap());
        assert_eq!(
            events(&auth, &moved, b"body").await,
            Err(AuthError::Unauthorized)
        );
        let mut missing = ok.clone();
        missing.remove("x-relay-timestamp");
        assert_eq!(
            events(&auth, &missing, b"body").await,
            Err(AuthError::Unauthorized)
        );
        // Another spelling of the same second is not the signed timestamp.
        let mut respelled = ok.clone();
        respelled.insert("x-relay-timestamp", format!("+{now}").parse().unwrap());
        assert_eq!(
            events(&auth, &respelled, b"body").await,
            Err(AuthError::Unauthorized)
        );
        assert_eq!(events(&auth, &ok, b"body").await, Ok(()));
    }

    /// Issue #13 item 4: a signed "failed" event re-sent with its signature,
    /// another `Ce-Type` and a new `Ce-Id` was accepted (the signature
    /// covered the body only).
    #[tokio::test]
    async fn a_retyped_binary_event_with_the_original_signature_is_refused() {
        let (_d, f) = files(TOKEN);
        let auth = hmac_auth(f);
        let body = br#"{"pipelineRun":{"metadata":{"name":"build"}}}"#;
        let mut failed = binary("dev.tekton.event.pipelinerun.failed.v1", "id-1");
        sign_hmac(TOKEN.as_bytes(), now(), "POST", "/", &mut failed, body);

        let mut retyped = failed.clone();
        retyped.insert(
            "ce-type",
            "dev.tekton.event.pipelinerun.successful.v1"
                .parse()
                .unwrap(),
        );
        retyped.insert("ce-id", "id-2".parse().unwrap());
        assert_eq!(
            events(&auth, &retyped, body).await,
            Err(AuthError::Unauthorized)
        );
        // Nor a new attribute, nor another content type.
        let mut extended = failed.clone();
        extended.insert("ce-subject", "main".parse().unwrap());
        assert_eq!(
            events(&auth, &extended, body).await,
            Err(AuthError::Unauthorized)
        );
        let mut structured = failed.clone();
        structured.insert(
            "content-type",
            "application/cloudevents+json".parse().unwrap(),
        );
        assert_eq!(
            events(&auth, &structured, body).await,
            Err(AuthError::Unauthorized)
        );
        // Header names are case-insensitive; the event as signed passes.
        assert_eq!(events(&auth, &failed, body).await, Ok(()));
    }

    #[tokio::test]
    async fn the_same_signed_request_twice_is_refused_the_second_time() {
        let (_d, f) = files(TOKEN);
        let auth = hmac_auth(f);
        let body = br#"{"n":1}"#;
        let mut h = binary("dev.tekton.event.pipelinerun.successful.v1", "twice");
        sign_hmac(TOKEN.as_bytes(), now(), "POST", "/", &mut h, body);
        assert_eq!(events(&auth, &h, body).await, Ok(()));
        assert_eq!(events(&auth, &h, body).await, Err(AuthError::Unauthorized));
        // A retry signed again, a second later, is a new request.
        let mut again = binary("dev.tekton.event.pipelinerun.successful.v1", "twice");
        sign_hmac(TOKEN.as_bytes(), now() + 1, "POST", "/", &mut again, body);
        assert_eq!(events(&auth, &again, body).await, Ok(()));
    }

    /// Issue #13 item 4: the dead-letter API signed an empty body, so one
    /// signature authorized list, delete and replay.
    #[tokio::test]
    async fn an_api_signature_is_valid_for_its_own_route_and_method_only() {
        let (_d, f) = files(TOKEN);
        let auth = hmac_auth(f);
        let api = |method: &str, target: &'static str, h: &HeaderMap| {
            let m = http::Method::from_bytes(method.as_bytes()).unwrap();
            let u = http::Uri::from_static(target);
            let (auth, h) = (auth.clone(), h.clone());
            async move { verify(&auth, Entry::Api, &m, &u, &h, b"").await }
        };
        let mut list = HeaderMap::new();
        sign_hmac(
            TOKEN.as_bytes(),
            now(),
            "GET",
            "/api/v1/dlq?limit=1",
            &mut list,
            b"",
        );
        for (method, target) in [
            ("DELETE", "/api/v1/dlq/some-id"),
            ("POST", "/api/v1/dlq/replay"),
            ("GET", "/api/v1/dlq"),
            ("GET", "/api/v1/dlq?limit=1000"),
            ("POST", "/api/v1/dlq?limit=1"),
        ] {
            assert_eq!(
                api(method, target, &list).await,
                Err(AuthError::Unauthorized),
                "{method} {target}"
            );
        }
        assert_eq!(api("GET", "/api/v1/dlq?limit=1", &list).await, Ok(()));
    }

    #[test]
    fn the_canonical_request_is_as_documented() {
        let mut h = headers(&[
            ("ce-type", "dev.tekton.event.pipelinerun.failed.v1"),
            ("content-type", " application/json "),
            ("ce-id", "\tabc "),
            ("authorization", "not signed"),
            ("ce-source", "/s"),
        ]);
        h.append("ce-id", "0".parse().unwrap());
        let c = canonical_request("1700000000", "POST", "/?a=b", &h, b"{\"x\":1}\n");
        assert_eq!(
            String::from_utf8(c).unwrap(),
            "1700000000\nPOST\n/?a=b\nce-id:0\nce-id:abc\nce-source:/s\n\
             ce-type:dev.tekton.event.pipelinerun.failed.v1\n\napplication/json\n{\"x\":1}\n"
        );
        let bare = canonical_request("1", "GET", "", &HeaderMap::new(), b"");
        assert_eq!(bare, b"1\nGET\n/\n\n\n");
        // The known answer senders in other languages can test against.
        assert_eq!(
            hmac_signature(
                b"0123456789abcdef0123456789abcdef",
                "1",
                "GET",
                "/",
                &HeaderMap::new(),
                b""
            ),
            {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
                mac.update(b"1\nGET\n/\n\n\n");
                format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
            }
        );
    }

    #[test]
    fn the_replay_cache_refuses_when_full_and_forgets_expired_signatures() {
        let cache = ReplayCache::new(2);
        assert_eq!(cache.first_use([1; 32], 10, 0), Ok(()));
        assert_eq!(
            cache.first_use([1; 32], 10, 0),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(cache.first_use([2; 32], 20, 0), Ok(()));
        // Full of signatures within their window: refused, none forgotten.
        assert!(matches!(
            cache.first_use([3; 32], 30, 5),
            Err(AuthError::Unavailable(_))
        ));
        assert_eq!(
            cache.first_use([1; 32], 10, 5),
            Err(AuthError::Unauthorized)
        );
        // Once the first leaves its window there is room again; a replay of
        // it is then refused by the timestamp check instead.
        assert_eq!(cache.first_use([3; 32], 30, 11), Ok(()));
        assert_eq!(
            cache.first_use([2; 32], 20, 11),
            Err(AuthError::Unauthorized)
        );
    }

    fn claims(iat: i64, exp: i64) -> serde_json::Value {
        serde_json::json!({"aud": "tekton-relay", "iss": "https://issuer.example", "iat": iat, "exp": exp, "sub": "tekton"})
    }

    fn hs256(c: &serde_json::Value, key: &[u8]) -> String {
        use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
        encode(
            &Header::new(Algorithm::HS256),
            c,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    }

    fn jwt_auth(hs: Option<SecretFile>, rs: Option<SecretFile>) -> InboundAuth {
        InboundAuth {
            jwt: Some(JwtAuth {
                hs256_secret_file: hs,
                rs256_public_key_file: rs,
                jwks_file: None,
                audience: "tekton-relay".into(),
                issuer: Some("https://issuer.example".into()),
                leeway_seconds: 0,
                max_lifetime_seconds: default_max_lifetime(),
                subjects: Vec::new(),
            }),
            ..none()
        }
    }

    fn with_bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    async fn api(auth: &InboundAuth, h: &HeaderMap) -> Result<(), AuthError> {
        let (m, u) = (http::Method::GET, http::Uri::from_static("/api/v1/dlq"));
        verify(auth, Entry::Api, &m, &u, h, b"").await
    }

    /// Kubernetes signs tokens for any audience a pod asks for: with
    /// `subjects`, only the named service accounts' tokens pass.
    #[tokio::test]
    async fn jwt_subjects_admit_only_the_named_service_accounts() {
        let (_d, f) = files(JWT_SECRET);
        let mut auth = jwt_auth(Some(f), None);
        auth.jwt.as_mut().unwrap().subjects = vec!["system:serviceaccount:tekton-relay:*".into()];
        assert!(auth.check_config().is_ok());
        let now = now();
        let token = |sub: Option<&str>| {
            let mut c = serde_json::json!({"aud": "tekton-relay", "iss": "https://issuer.example", "iat": now, "exp": now + 60});
            if let Some(s) = sub {
                c["sub"] = s.into();
            }
            hs256(&c, JWT_SECRET.as_bytes())
        };
        let broker = token(Some("system:serviceaccount:tekton-relay:oidc-relay-github"));
        assert_eq!(api(&auth, &with_bearer(&broker)).await, Ok(()));
        for other in [token(Some("system:serviceaccount:ci:default")), token(None)] {
            assert_eq!(
                api(&auth, &with_bearer(&other)).await,
                Err(AuthError::Unauthorized)
            );
        }
    }

    #[tokio::test]
    async fn jwts_are_checked_for_signature_audience_issuer_and_expiry() {
        let (_d, f) = files(JWT_SECRET);
        let auth = jwt_auth(Some(f), None);
        assert!(auth.check_config().is_ok());
        let now = now();
        let claims = |aud: &str, iss: &str, exp: i64| serde_json::json!({"aud": aud, "iss": iss, "iat": now, "exp": exp, "sub": "tekton"});
        let key = JWT_SECRET.as_bytes();
        let good = hs256(
            &claims("tekton-relay", "https://issuer.example", now + 60),
            key,
        );
        assert_eq!(api(&auth, &with_bearer(&good)).await, Ok(()));
        for bad in [
            hs256(
                &claims("tekton-relay", "https://issuer.example", now + 60),
                b"other-secret-0123456789abcdefghij",
            ),
            hs256(
                &claims("someone-else", "https://issuer.example", now + 60),
                key,
            ),
            hs256(
                &claims("tekton-relay", "https://evil.example", now + 60),
                key,
            ),
            hs256(
                &claims("tekton-relay", "https://issuer.example", now - 60),
                key,
            ),
            hs256(
                &serde_json::json!({"aud": "tekton-relay", "iss": "https://issuer.example"}),
                key,
            ),
            "not.a.jwt".to_string(),
        ] {
            assert_eq!(
                events(&auth, &with_bearer(&bad), b"").await,
                Err(AuthError::Unauthorized),
                "{bad}"
            );
        }
        assert_eq!(
            events(&auth, &HeaderMap::new(), b"").await,
            Err(AuthError::Unauthorized)
        );
    }

    /// Issue #13 item 13: a token without `iss` passed with an issuer
    /// configured, `nbf` was not checked, any lifetime was taken.
    #[tokio::test]
    async fn jwts_without_iss_not_yet_valid_or_overlong_are_refused() {
        let (_d, f) = files(JWT_SECRET);
        let auth = jwt_auth(Some(f), None);
        let key = JWT_SECRET.as_bytes();
        let now = now();
        let mut no_iss = claims(now, now + 60);
        no_iss.as_object_mut().unwrap().remove("iss");
        let mut not_yet = claims(now, now + 600);
        not_yet["nbf"] = (now + 300).into();
        let mut no_iat = claims(now, now + 60);
        no_iat.as_object_mut().unwrap().remove("iat");
        for (what, c) in [
            ("no iss", no_iss),
            ("nbf in the future", not_yet),
            ("a year long", claims(now, now + 365 * 86400)),
            ("issued long ago, valid long", claims(now - 86400, now + 60)),
            ("issued in the future", claims(now + 600, now + 1200)),
            ("no iat", no_iat),
        ] {
            assert_eq!(
                events(&auth, &with_bearer(&hs256(&c, key)), b"").await,
                Err(AuthError::Unauthorized),
                "{what}"
            );
        }
        // An hour exactly, and a past nbf, are fine.
        let mut ok = claims(now - 10, now + 3590);
        ok["nbf"] = (now - 10).into();
        assert_eq!(
            events(&auth, &with_bearer(&hs256(&ok, key)), b"").await,
            Ok(())
        );
        // Without a configured issuer, iss is not required.
        let mut open = auth.clone();
        open.jwt.as_mut().unwrap().issuer = None;
        let mut no_iss = claims(now, now + 60);
        no_iss.as_object_mut().unwrap().remove("iss");
        assert_eq!(
            events(&open, &with_bearer(&hs256(&no_iss, key)), b"").await,
            Ok(())
        );
    }

    fn openssl(args: &[&str]) {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "openssl {args:?}");
    }

    fn rsa_key(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let private = dir.join(format!("{name}.pem"));
        openssl(&["genrsa", "-out", private.to_str().unwrap(), "2048"]);
        private
    }

    #[tokio::test]
    async fn rs256_jwts_are_checked_with_the_public_key() {
        use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
        let d = tempfile_free::Dir::new();
        let private = rsa_key(&d.0, "key");
        let public = d.0.join("pub.pem");
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
        let now = now();
        let c = claims(now, now + 60);
        let good = encode(&Header::new(Algorithm::RS256), &c, &key).unwrap();
        assert_eq!(events(&auth, &with_bearer(&good), b"").await, Ok(()));
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
            events(&auth, &with_bearer(&confused), b"").await,
            Err(AuthError::Unauthorized)
        );
    }

    /// Issue #13 item 13: no `kid`/JWKS, so no key rotation.
    #[tokio::test]
    async fn a_jwks_key_is_chosen_by_kid_and_rotated_by_updating_the_file() {
        use jsonwebtoken::jwk::{Jwk, JwkSet};
        use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
        let d = tempfile_free::Dir::new();
        let jwks = d.0.join("jwks.json");
        let private = rsa_key(&d.0, "rsa");
        let rsa = EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap();
        use base64::Engine;
        let b64url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        // The JWK of an HMAC secret, as a JWKS file holds it.
        let oct = |secret: &[u8], kid: &str| -> Jwk {
            serde_json::from_value(serde_json::json!({
                "kty": "oct", "alg": "HS256", "kid": kid, "k": b64url(secret)
            }))
            .unwrap()
        };
        // The public JWK of the RSA key: its modulus, as openssl prints it.
        let out = std::process::Command::new("openssl")
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(&private)
            .output()
            .unwrap();
        let modulus = String::from_utf8(out.stdout).unwrap();
        let modulus = hex::decode(modulus.trim().trim_start_matches("Modulus=")).unwrap();
        let rsa_jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA", "alg": "RS256", "kid": "rsa", "use": "sig",
            "n": b64url(&modulus), "e": "AQAB"
        }))
        .unwrap();
        const OLD: &[u8] = b"old-oct-key-0123456789abcdefghijk";
        const NEW: &[u8] = b"new-oct-key-0123456789abcdefghijk";
        let old = EncodingKey::from_secret(OLD);
        let new = EncodingKey::from_secret(NEW);
        let write = |keys: Vec<Jwk>| {
            std::fs::write(&jwks, serde_json::to_vec(&JwkSet { keys }).unwrap()).unwrap()
        };
        write(vec![oct(OLD, "old"), rsa_jwk.clone()]);
        let mut auth = jwt_auth(None, None);
        auth.jwt.as_mut().unwrap().jwks_file = Some(SecretFile(jwks.clone()));
        assert!(auth.check_config().is_ok());
        let now = now();
        let c = claims(now, now + 60);
        let token = |alg, kid: Option<&str>, key: &EncodingKey| {
            let mut h = Header::new(alg);
            h.kid = kid.map(str::to_string);
            with_bearer(&encode(&h, &c, key).unwrap())
        };
        assert_eq!(
            api(&auth, &token(Algorithm::HS256, Some("old"), &old)).await,
            Ok(())
        );
        assert_eq!(
            api(&auth, &token(Algorithm::RS256, Some("rsa"), &rsa)).await,
            Ok(())
        );
        for (what, h) in [
            ("no kid", token(Algorithm::HS256, None, &old)),
            ("an unknown kid", token(Algorithm::HS256, Some("new"), &new)),
            (
                "another key under a kid",
                token(Algorithm::HS256, Some("old"), &new),
            ),
            // The RSA key's modulus as an HMAC secret: algorithm confusion.
            (
                "HS256 under an RSA kid",
                token(
                    Algorithm::HS256,
                    Some("rsa"),
                    &EncodingKey::from_secret(&std::fs::read(&private).unwrap()),
                ),
            ),
        ] {
            assert_eq!(api(&auth, &h).await, Err(AuthError::Unauthorized), "{what}");
        }
        // Rotation: the new key is in, the old one out, on the next request.
        write(vec![oct(NEW, "new")]);
        assert_eq!(
            api(&auth, &token(Algorithm::HS256, Some("new"), &new)).await,
            Ok(())
        );
        assert_eq!(
            api(&auth, &token(Algorithm::HS256, Some("old"), &old)).await,
            Err(AuthError::Unauthorized)
        );
        // A short oct key is refused as a server problem; a broken file too,
        // and neither message quotes the file.
        let short = EncodingKey::from_secret(b"short-secret");
        write(vec![oct(b"short-secret", "short")]);
        match api(&auth, &token(Algorithm::HS256, Some("short"), &short)).await {
            Err(AuthError::Unavailable(m)) => assert!(m.contains("shorter than 32"), "{m}"),
            other => panic!("{other:?}"),
        }
        std::fs::write(&jwks, r#"{"keys": "secret-material"}"#).unwrap();
        match api(&auth, &token(Algorithm::HS256, Some("new"), &new)).await {
            Err(AuthError::Unavailable(m)) => assert!(!m.contains("secret-material"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_api_is_closed_when_only_flux_is_signed() {
        let (_d, f) = files(FLUX);
        let auth = InboundAuth {
            flux_hmac_secret_file: Some(f),
            ..none()
        };
        assert!(auth.check_config().is_ok());
        let mut ce = HeaderMap::new();
        ce.insert("ce-specversion", "1.0".parse().unwrap());
        // Issue #13 item 6: a CloudEvent passed without auth here.
        assert_eq!(events(&auth, &ce, b"").await, Err(AuthError::Unauthorized));
        assert_eq!(api(&auth, &ce).await, Err(AuthError::Unauthorized));
        // With a bearer token too, the API takes the token, not a Flux signature.
        let (_d2, t) = files(TOKEN);
        let auth = InboundAuth {
            bearer_token_file: Some(t),
            ..auth
        };
        assert_eq!(api(&auth, &with_bearer(TOKEN)).await, Ok(()));
    }

    #[test]
    fn config_errors_name_their_path() {
        let (_d, f) = files("x");
        let mut auth = jwt_auth(Some(f.clone()), Some(f.clone()));
        assert_eq!(auth.check_config().unwrap_err().0, "jwt");
        auth.jwt.as_mut().unwrap().rs256_public_key_file = None;
        auth.jwt.as_mut().unwrap().jwks_file = Some(f.clone());
        assert_eq!(auth.check_config().unwrap_err().0, "jwt");
        auth.jwt.as_mut().unwrap().jwks_file = None;
        auth.jwt.as_mut().unwrap().max_lifetime_seconds = 0;
        assert_eq!(auth.check_config().unwrap_err().0, "jwt.maxLifetimeSeconds");
        auth.jwt.as_mut().unwrap().max_lifetime_seconds = 60;
        auth.jwt.as_mut().unwrap().audience = " ".into();
        assert_eq!(auth.check_config().unwrap_err().0, "jwt.audience");
        auth.bearer_token_file = Some(f);
        assert!(auth.check_config().unwrap_err().1.contains("one of"));
        let mut h = hmac_auth(SecretFile("/x".into()));
        h.hmac_timestamp_header = "bad header".into();
        assert_eq!(h.check_config().unwrap_err().0, "hmacTimestampHeader");
        h.hmac_timestamp_header = "x-relay-signature-256".into();
        assert_eq!(h.check_config().unwrap_err().0, "hmacTimestampHeader");
        let mut h = hmac_auth(SecretFile("/x".into()));
        h.hmac_tolerance_seconds = 0;
        assert_eq!(h.check_config().unwrap_err().0, "hmacToleranceSeconds");
        h.hmac_tolerance_seconds = 86400;
        assert_eq!(h.check_config().unwrap_err().0, "hmacToleranceSeconds");
    }

    /// A config without `hmacTimestampHeader` gets the default one: the
    /// timestamp is never optional.
    #[test]
    fn the_timestamp_header_defaults_and_is_required() {
        let auth: InboundAuth = serde_yaml_ng::from_str("hmacSecretFile: /s").unwrap();
        assert_eq!(auth.hmac_timestamp_header, "X-Relay-Timestamp");
        assert!(auth.check_config().is_ok());
    }

    #[test]
    fn the_fuzz_body_holds_on_seeds() {
        for seed in [
            &b"POST /\nce-specversion: 1.0\nce-type: t\nce-id: 1\nce-source: /s\ncontent-type: application/json\n\n{}"[..],
            b"GET /api/v1/dlq?limit=2\n\n",
            b"POST /\ncontent-type: application/json\nx-signature: sha256=00\n\n{\"involvedObject\":{},\"severity\":\"info\"}",
            b"POST /\ncontent-type: application/cloudevents-batch+json\nx-relay-signature-256: sha256=zz\nx-relay-timestamp: 99999999999999999999\n\n[]",
            b"",
            b"\n\n",
        ] {
            fuzz(seed);
        }
    }
}
