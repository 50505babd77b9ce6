//! The rules at the door, shared by the server and the runtime: who may
//! send events on which address, and the error a request body yields once
//! its read deadline has passed.

use crate::event::config::auth::InboundAuth;

/// Does `auth` require a credential of every event? Bearer, HMAC or JWT
/// do; `fluxHmacSecretFile` alone guards Flux payloads only, and lets
/// CloudEvents through.
pub fn guards_events(auth: Option<&InboundAuth>) -> bool {
    auth.is_some_and(|a| {
        a.bearer_token_file.is_some() || a.hmac_secret_file.is_some() || a.jwt.is_some()
    })
}

/// Whether events may be served on `addr`: always on loopback; beyond it
/// only with inbound auth, or when the operator said so (`switch`, the
/// flag or variable that does, for the message).
pub fn door_check(
    addr: &str,
    loopback: bool,
    has_auth: bool,
    insecure: bool,
    switch: &str,
) -> Result<(), String> {
    if loopback || has_auth || insecure {
        return Ok(());
    }
    Err(format!(
        "refusing to serve events on {addr} without spec.inboundAuth: anyone who can reach it could send events. \
         Set spec.inboundAuth (bearerTokenFile, hmacSecretFile or jwt; fluxHmacSecretFile alone leaves CloudEvents open), or listen on loopback only \
         (RELAY_LISTEN=127.0.0.1:8080), or, if a network policy or a private network keeps senders out, \
         start with {switch}"
    ))
}

/// The error a request body yields once its read deadline has passed.
#[derive(Debug)]
pub struct BodyReadTimeout;

impl std::fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyReadTimeout {}

/// Is `e`, or any error it wraps, the body read deadline?
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyReadTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}
