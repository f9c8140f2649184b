#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repro::fuzzing::rpm_package(data);
});
