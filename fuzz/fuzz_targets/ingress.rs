#![no_main]
//! See `relay_core::host::fuzz::ingress`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_core::host::fuzz::ingress(data));
