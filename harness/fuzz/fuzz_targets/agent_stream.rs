#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repro::fuzzing::agent_stream(data);
});
