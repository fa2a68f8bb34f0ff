//! Config text through parse and the static half of compiling (`gateway check` minus plugins).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzz::config_check(data));
