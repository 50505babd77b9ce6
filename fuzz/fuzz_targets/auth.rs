#![no_main]
//! See `relay_core::auth::fuzz`: the request classifier, the canonical
//! request and HMAC signature, and the signature header parsers.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_core::auth::fuzz(data));
