//! What relay-core's unit tests share (the crate `relay-tests` is the kit
//! of the other crates' tests, but depends on this one).

use http::HeaderMap;

/// A header map of `(name, value)` pairs.
pub(crate) fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                http::HeaderName::from_static(k),
                http::HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}
