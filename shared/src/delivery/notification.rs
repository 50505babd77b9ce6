//! A Notification compiled once, at load: its provider parses the `action`
//! and `params` into its own types ([`crate::delivery::provider::Provider::compile_notification`])
//! and the engine keeps the result in the [`crate::delivery::engine::Plan`]; a
//! delivery reads it back ([`crate::delivery::provider::DeliveryInput::compiled`]),
//! never the raw map.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::delivery::verdict::Verdict;
use crate::event::field::{FieldError, FieldErrors};

/// What a provider made of one Notification's `action` and `params`, kept
/// in the plan. Providers store any type (`Compiled::new`) and read it back
/// with [`Compiled::get`] — the same provider's own type, so the downcast
/// cannot fail unless the engine handed it another provider's.
#[derive(Clone)]
pub struct Compiled(Arc<dyn Any + Send + Sync>);

impl Compiled {
    pub fn new<T: Any + Send + Sync>(value: T) -> Compiled {
        Compiled(Arc::new(value))
    }

    /// For a Notification with neither action nor params.
    pub fn none() -> Compiled {
        Compiled::new(())
    }

    /// The provider's own type back; a mismatch is an internal error,
    /// failed permanently (never a panic in the delivery path).
    pub fn get<T: Any>(&self) -> Result<&T, Verdict> {
        self.0.downcast_ref::<T>().ok_or_else(|| {
            Verdict::permanent(format!(
                "internal error: the Notification was not compiled as {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Compiled(..)")
    }
}

/// A Notification's parsed action and params, as most providers keep them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<A, P> {
    pub action: A,
    pub params: P,
}

/// A Notification's `params` as `P`, unknown keys rejected.
pub fn params<P: serde::de::DeserializeOwned>(
    params: &Map<String, Value>,
) -> Result<P, FieldError> {
    crate::event::config::parse_at::<P>(Value::Object(params.clone()), "params").map_err(Into::into)
}

/// Parses the action (already read: `Err` is its message) and typed params
/// of a Notification, every error at once; a blank string param (a context,
/// say) is an error too, since it would post an unnamed status.
pub fn parse<A, P: serde::de::DeserializeOwned>(
    action: Result<A, String>,
    raw: &Map<String, Value>,
) -> Result<Parsed<A, P>, FieldErrors> {
    let mut errs = FieldErrors::new();
    let action = action.map_err(|e| errs.push("action", e));
    let parsed = match params::<P>(raw) {
        Err(e) => {
            errs.extend([e]);
            None
        }
        Ok(p) => {
            errs.extend(
                raw.iter()
                    .filter(|(_, v)| v.as_str().is_some_and(|s| s.trim().is_empty()))
                    .map(|(k, _)| FieldError::new(format!("params.{k}"), "must not be empty")),
            );
            Some(p)
        }
    };
    match (action, parsed) {
        (Ok(action), Some(params)) if errs.is_empty() => Ok(Parsed { action, params }),
        _ => Err(errs),
    }
}

/// [`parse`], kept as a [`Compiled`].
pub fn compile<A, P>(
    action: Result<A, String>,
    raw: &Map<String, Value>,
) -> Result<Compiled, FieldErrors>
where
    A: Send + Sync + 'static,
    P: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    parse::<A, P>(action, raw).map(Compiled::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiled_notification_reads_back_as_its_own_type_only() {
        let c = Compiled::new(Parsed {
            action: 1u8,
            params: "p".to_string(),
        });
        assert_eq!(c.get::<Parsed<u8, String>>().unwrap().params, "p");
        match c.get::<u8>() {
            Err(Verdict::Permanent { message, .. }) => {
                assert!(message.contains("internal error"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
