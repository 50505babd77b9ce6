#![no_main]
//! See `relay_core::host::fuzz::sqs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_core::host::fuzz::sqs(data));
