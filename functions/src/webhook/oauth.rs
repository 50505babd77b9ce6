//! `oauth2:` for the webhook: an access token fetched with the
//! client-credentials or refresh-token grant, cached until shortly before it
//! expires, and sent as `Authorization: Bearer <token>`.

use relay_core::oauth2::{ClientCredentials, ClientCredentialsSettings};
use relay_core::provider::{Outbound, OutboundRequest, Verdict};
use relay_core::transport::{Http, Response};
use reqwest::header::AUTHORIZATION;

pub struct OAuth {
    client: ClientCredentials,
}

impl OAuth {
    pub fn new(settings: ClientCredentialsSettings) -> OAuth {
        OAuth {
            client: ClientCredentials::new(settings),
        }
    }

    /// Sends `req` with a bearer token. A 401 drops the token and sends
    /// once more with a fresh one (revoked, or its client secret rotated);
    /// a second 401 is the answer.
    pub async fn send(
        &self,
        http: &Http<'_>,
        mut req: OutboundRequest,
    ) -> Result<Response, Verdict> {
        self.authorize(http, &mut req).await?;
        match http.send(&Outbound::Http(req.clone())).await {
            Err(Verdict::Permanent {
                status: Some(401), ..
            }) => {
                self.client.invalidate().await;
                self.authorize(http, &mut req).await?;
                http.send(&Outbound::Http(req)).await
            }
            other => other,
        }
    }

    async fn authorize(&self, http: &Http<'_>, req: &mut OutboundRequest) -> Result<(), Verdict> {
        let token = self.client.access_token(http).await?;
        req.sensitive_header(AUTHORIZATION, &format!("Bearer {}", token.expose()))
            .map_err(|e| Verdict::permanent(e.to_string()))
    }
}
