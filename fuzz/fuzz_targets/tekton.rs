#![no_main]
//! See `relay_core::host::fuzz::tekton`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_core::host::fuzz::tekton(data));
