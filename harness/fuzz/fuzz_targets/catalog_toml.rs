#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repro::fuzzing::catalog_toml(data);
});
