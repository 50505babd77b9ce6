#![no_main]
//! See `relay_core::host::fuzz::cdevents`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_core::host::fuzz::cdevents(data));
