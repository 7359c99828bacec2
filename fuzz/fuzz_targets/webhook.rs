#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| callbridge_fuzz_targets::webhook(data));
