//! The effects a provider builds: an HTTP request or a line for standard
//! output, and the errors met while building them.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::delivery::verdict::Verdict;
use crate::event::secret::SecretFile;

/// One effect to perform.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built once per delivery; boxing buys nothing
pub enum Outbound {
    Http(OutboundRequest),
    /// A line for the process's standard output.
    Stdout(String),
}

#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: Method,
    pub url: url::Url,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Secrets the request carries outside its sensitive headers (a
    /// routing key in the body) that an answer may echo: the transport
    /// masks them in the answer before it is classified, so no verdict,
    /// retry log or dead letter shows them.
    pub masked: Vec<crate::event::secret::Secret>,
}

impl OutboundRequest {
    /// A JSON request that expects JSON back (`Accept: application/json`;
    /// a provider may set another `Accept`, as GitHub's media type).
    pub fn post_json(url: url::Url, body: impl Into<Bytes>) -> OutboundRequest {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        OutboundRequest {
            method: Method::POST,
            url,
            headers,
            body: body.into(),
            masked: Vec::new(),
        }
    }

    /// Masks `secret` wherever an answer to this request shows it.
    pub fn mask_in_answer(&mut self, secret: crate::event::secret::Secret) {
        self.masked.push(secret);
    }

    /// Adds a header whose value must never be logged.
    pub fn sensitive_header(&mut self, name: HeaderName, value: &str) -> Result<(), ProviderError> {
        let mut v = HeaderValue::from_str(value)
            .map_err(|_| ProviderError::Permanent(format!("{name} value is not a valid header")))?;
        v.set_sensitive(true);
        self.headers.insert(name, v);
        Ok(())
    }

    /// Where the request goes, for errors and logs: scheme, host and port
    /// only, since paths and queries of webhook URLs often embed tokens.
    pub fn target(&self) -> String {
        let host = self.url.host_str().unwrap_or("?");
        match self.url.port() {
            Some(p) => format!("{} {}://{host}:{p}", self.method, self.url.scheme()),
            None => format!("{} {}://{host}", self.method, self.url.scheme()),
        }
    }
}

/// Errors raised while building requests.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// Cannot succeed by retrying (bad template, unreadable secret, ...).
    #[error("{0}")]
    Permanent(String),
    #[error("{0}")]
    Retryable(String),
}

/// A delivery failure met while building requests (a secret URL that does
/// not read, a template that does not render) keeps its kind.
impl From<Verdict> for ProviderError {
    fn from(v: Verdict) -> ProviderError {
        match v {
            Verdict::Permanent { message, .. } => ProviderError::Permanent(message),
            Verdict::Retryable { message, .. } => ProviderError::Retryable(message),
            Verdict::Success => ProviderError::Permanent("unexpected success".into()),
        }
    }
}

/// A secret that cannot be read, as [`Verdict`] takes it.
impl From<crate::event::secret::SecretError> for ProviderError {
    fn from(e: crate::event::secret::SecretError) -> ProviderError {
        Verdict::from(e).into()
    }
}

/// A credential read from its file onto an outbound request: here, beside
/// the request, so the secret types below need not know requests.
impl SecretFile {
    /// Reads the credential now and sets `Authorization: <scheme> <it>`
    /// (`Bearer`, `GenieKey`) on `req`, marked sensitive so it is never
    /// logged. Errors name the file, never its content.
    pub async fn authorize(
        &self,
        req: &mut OutboundRequest,
        scheme: &str,
    ) -> Result<(), ProviderError> {
        let secret = self.read().await?;
        req.sensitive_header(
            http::header::AUTHORIZATION,
            &format!("{scheme} {}", secret.expose()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn authorize_sets_a_sensitive_header() {
        let dir = std::env::temp_dir().join(format!("relay-secret-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "k3y\n").unwrap();
        let u = url::Url::parse("https://h.example/x").unwrap();
        let mut req = OutboundRequest::post_json(u.clone(), String::new());
        SecretFile(path.clone())
            .authorize(&mut req, "GenieKey")
            .await
            .unwrap();
        assert_eq!(req.headers["authorization"], "GenieKey k3y");
        assert!(req.headers["authorization"].is_sensitive());
        std::fs::write(&path, "bad\nvalue").unwrap();
        let err = SecretFile(path.clone())
            .authorize(
                &mut OutboundRequest::post_json(u.clone(), String::new()),
                "Bearer",
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(!err.contains("bad"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = SecretFile(path)
            .authorize(&mut OutboundRequest::post_json(u, String::new()), "Bearer")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("key"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
