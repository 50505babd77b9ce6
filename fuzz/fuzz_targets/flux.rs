#![no_main]
//! See `relay_core::decode::fuzz::flux`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_core::decode::fuzz::flux(data));
