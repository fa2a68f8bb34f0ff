//! `edge::path::normalize` under all four policies (the first byte picks one).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzz::path_normalize(data));
