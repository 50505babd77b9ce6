#![no_main]
//! See `relay_core::decode::fuzz::tekton`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_core::decode::fuzz::tekton(data));
