//! A plugin's request action through the caps, the verdict and the edit applied to a request.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: gateway::fuzz::RequestActionInput| {
    gateway::fuzz::request_action(input)
});
